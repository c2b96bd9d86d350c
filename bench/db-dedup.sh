#!/usr/bin/env bash
# Deduplication of database dumps (not part of CI): a PostgreSQL database of about 200 MB on
# the machine's server (127.0.0.1:5432, trust auth), backed up ten times by a Coffer job with
# about 1 % of its rows changed between runs: a contiguous range of rows (as when recent
# records are edited), or with SCATTER=1 every hundredth row. Prints each record's stored bytes
# next to the dump's size; docs/benchmarks.md records runs.
#
#   bench/db-dedup.sh              # PROFILE=dev to use the debug build (stored bytes do not
#   SCATTER=1 bench/db-dedup.sh    # depend on the build)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DB=coffer_bench_dedup_$$
ROWS=${ROWS:-1600000}
pg() { psql -h 127.0.0.1 -U postgres -X -q -A -t "$@"; }
pg -d postgres -c "CREATE DATABASE $DB"
cleanup_db() { pg -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null; }
pg -d "$DB" -c "CREATE TABLE t (id int PRIMARY KEY, a text, b text, c text);
    INSERT INTO t SELECT i, md5(i::text), md5((i * 7)::text), md5((i * 13)::text)
    FROM generate_series(1, $ROWS) i;"

start_coffer
trap 'cleanup_db; kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
auth=(-H "Authorization: Bearer $token" -H 'Content-Type: application/json')
cred=$(curl -sf -X POST "$B/api/credentials" "${auth[@]}" \
    -d '{"name": "bench", "engine": "postgres", "host": "127.0.0.1", "user": "postgres"}' | jq -r .id)
job=$(curl -sf -X POST "$B/api/backup-jobs" "${auth[@]}" -d "{\"name\": \"dedup\",
    \"sources\": [{\"type\": \"postgres\", \"credential_id\": \"$cred\", \"database\": \"$DB\"}]}" | jq -r .id)

echo "PostgreSQL $(pg -d postgres -c 'SHOW server_version'), $ROWS rows, $(nproc) cores"
echo
echo '| run | dump size | stored bytes | stored / dump |'
echo '|---|---|---|---|'
for run in $(seq 1 10); do
    rec=$(curl -sf -X POST "$B/api/backup-jobs/$job/run" "${auth[@]}" | jq -r .id)
    while [ "$(curl -sf "$B/api/backup-jobs/$job/records/$rec" "${auth[@]}" | jq -r .status)" = running ]; do
        sleep 0.5
    done
    r=$(curl -sf "$B/api/backup-jobs/$job/records/$rec" "${auth[@]}")
    [ "$(jq -r .status <<<"$r")" = success ] || { echo "run $run failed: $(jq -r .error <<<"$r")" >&2; exit 1; }
    dump=$(jq -r '.databases[0].size_bytes' <<<"$r")
    stored=$(jq -r .stored_bytes <<<"$r")
    ratio=$(awk -v s="$stored" -v d="$dump" 'BEGIN { printf "%.1f", 100 * s / d }')
    printf '| %s | %s | %s | %s %% |\n' "$run" "$dump" "$stored" "$ratio"
    # About 1 % of the rows change before the next run.
    if [ "${SCATTER:-0}" = 1 ]; then
        pg -d "$DB" -c "UPDATE t SET a = md5(random()::text) WHERE id % 100 = $run"
    else
        first=$((run * ROWS / 12))
        pg -d "$DB" -c "UPDATE t SET a = md5(random()::text) WHERE id > $first AND id <= $first + $ROWS / 100"
    fi
done
