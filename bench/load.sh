#!/usr/bin/env bash
# Load test of `coffer serve` (not part of CI): wrk against 127.0.0.1, authenticated
# `GET /api/auth/me` (token and API key) and public `GET /api/health`. Prints requests/second
# and latency percentiles; docs/benchmarks.md records a run.
#
#   bench/load.sh                  # 20 s per endpoint, 2 wrk threads, 32 connections
#   DURATION=60s CONNECTIONS=128 bench/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-32}
command -v wrk >/dev/null || apt-get install -y wrk
source bench/lib.sh
start_coffer
key=$(curl -sf -X POST "$B/api/keys" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"name": "load"}' | jq -r .key)

run() { # name, path, header...
    local name=$1 path=$2
    shift 2
    local args=()
    for h in "$@"; do args+=(-H "$h"); done
    local out
    out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "${args[@]}" "$B$path")
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    printf '| %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p50" "$p99" "${errors:-0}"
}

echo "coffer serve under wrk: $CONNECTIONS connections, 2 threads, $DURATION each, $(nproc) cores"
echo
echo '| endpoint | requests/s | p50 | p99 | non-2xx |'
echo '|---|---|---|---|---|'
run 'GET /api/health' /api/health
run 'GET /api/auth/me (Bearer token)' /api/auth/me "Authorization: Bearer $token"
run 'GET /api/auth/me (X-API-Key)' /api/auth/me "X-API-Key: $key"
rss=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
echo
echo "server peak RSS: $((rss / 1024)) MiB"
