#!/usr/bin/env bash
# Docker volume backups (not part of CI): the same ~1 GiB of files in two volumes, one a plain
# local volume (read in place through its mount point, like a path) and one bound to a host
# directory with mount options (mounted only while in use, so read whole through a temporary
# container's archive). Each is backed up, then ~1 % of its files are rewritten and it is
# backed up again. Prints the duration of every run; docs/benchmarks.md records a run.
#
#   bench/volume.sh              # MB=1024 files of 1 MiB (half text, half random)
#   MB=256 bench/volume.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MB=${MB:-1024}
docker version >/dev/null 2>&1 || { echo "start dockerd first (scripts/test shows how)" >&2; exit 1; }
source bench/lib.sh
start_coffer
auth=(-H "Authorization: Bearer $token" -H 'Content-Type: application/json')

# The dataset: MB files of 1 MiB under $1, deterministic.
fill() {
    python3 - "$1" "$MB" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
words = [bytes(rng.choice(b"abcdefghij") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
for i in range(n):
    d = os.path.join(root, f"d{i % 32:02}")
    os.makedirs(d, exist_ok=True)
    if i % 2:
        data = rng.randbytes(1 << 20)
    else:
        data = b" ".join(rng.choice(words) for _ in range(200_000))[: 1 << 20]
    with open(os.path.join(d, f"f{i:05}"), "wb") as f:
        f.write(data)
PY
}

# Rewrite every 100th file of $1 with new random bytes.
change() {
    python3 - "$1" <<'PY'
import os, random, sys
rng = random.Random(7)
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs)
for path in files[::100]:
    with open(path, "wb") as f:
        f.write(rng.randbytes(1 << 20))
PY
}

plain=coffer-bench-plain-$$
bound=coffer-bench-bound-$$
mkdir -p "$work/bound"
docker volume create "$plain" >/dev/null
docker volume create -o type=none -o o=bind -o device="$work/bound" "$bound" >/dev/null
trap 'docker volume rm -f "$plain" "$bound" >/dev/null; kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
fill "$(docker volume inspect -f '{{.Mountpoint}}' "$plain")"
fill "$work/bound"

# Run job $1 to its end; print its duration in seconds.
run() {
    local rid status
    rid=$(curl -sf -X POST "${auth[@]}" "$B/api/backup-jobs/$1/run" | jq -r .id)
    for _ in $(seq 6000); do
        status=$(curl -sf "${auth[@]}" "$B/api/backup-jobs/$1/records/$rid" | jq -r .status)
        [ "$status" != running ] && break
        sleep 0.1
    done
    [ "$status" = success ] || { echo "run failed: $status" >&2; exit 1; }
    curl -sf "${auth[@]}" "$B/api/backup-jobs/$1/records/$rid" | jq -r '.duration_ms / 1000'
}

job() {
    curl -sf -X POST "${auth[@]}" "$B/api/backup-jobs" \
        -d "{\"name\": \"$1\", \"volumes\": [\"$1\"], \"schedule\": \"@daily\"}" | jq -r .id
}

echo "Docker volumes of $MB MiB, $(nproc) cores"
echo
echo '| volume | first backup | after ~1 % changed |'
echo '|---|---|---|'
for v in "$plain" "$bound"; do
    id=$(job "$v")
    first=$(run "$id")
    if [ "$v" = "$plain" ]; then
        change "$(docker volume inspect -f '{{.Mountpoint}}' "$v")"
        name='plain local (read in place)'
    else
        change "$work/bound"
        name='with mount options (read through a container)'
    fi
    second=$(run "$id")
    printf '| %s | %s s | %s s |\n' "$name" "$first" "$second"
done
