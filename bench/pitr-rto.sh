#!/usr/bin/env bash
# How long point-in-time recovery takes (the recovery time objective) for a database of SIZE_MB
# (default ~1 GiB) and the binary log of a write load after its full backup (not part of CI):
# a MariaDB server of its own, a credential with "pitr": true, the database filled (outside the
# binary log), a full backup by the job (the baseline), then RATE transactions a second for
# DURATION seconds (updates and inserts, each its own commit), then a recovery to the last
# second of the load, timed per phase. Prints one row for docs/benchmarks.md.
#
#   bench/pitr-rto.sh                               # ~1 GiB, 200 transactions/s for 600 s
#   SIZE_MB=200 RATE=100 DURATION=120 bench/pitr-rto.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${SIZE_MB:-1024}
RATE=${RATE:-200}
DURATION=${DURATION:-600}
source bench/lib.sh
start_coffer
auth=(-H "Authorization: Bearer $token")
start_mariadb --innodb-buffer-pool-size=512M
cred=$(pitr_credential)

# The database: rows of ~300 bytes with a secondary index, written outside the binary log.
rows=$((SIZE_MB * 1024 * 1024 / 300))
sql "CREATE DATABASE shop;
     CREATE TABLE shop.orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer INT, total INT,
         note VARCHAR(255), KEY (customer));
     USE shop;
     SET sql_log_bin = 0;
     INSERT INTO shop.orders (customer, total, note)
         SELECT seq % 100000, seq % 1000, REPEAT(MD5(seq), 6) FROM seq_1_to_$rows;"
sql "ANALYZE TABLE shop.orders" >/dev/null
size=$(sql "SELECT ROUND(SUM(data_length + index_length) / 1048576) FROM information_schema.tables WHERE table_schema = 'shop'")

job=$(curl -sf "${auth[@]}" -X POST "$B/api/backup-jobs" -H 'Content-Type: application/json' \
    -d "{\"name\": \"shop\", \"sources\": [{\"type\": \"mysql\", \"credential_id\": \"$cred\", \"database\": \"shop\"}]}" | jq -r .id)
curl -sf "${auth[@]}" -X POST "$B/api/backup-jobs/$job/run" >/dev/null
while [ "$(curl -sf "${auth[@]}" "$B/api/backup-jobs/$job" | jq -r .last_status)" != success ]; do
    [ "$(curl -sf "${auth[@]}" "$B/api/backup-jobs/$job" | jq -r .last_status)" = failed ] && { echo "the baseline failed" >&2; exit 1; }
    sleep 1
done
sleep 1.1

# The load: RATE transactions a second for DURATION seconds.
python3 bench/mariadb-writer.py "$port" "$RATE" "$DURATION" "$rows"
target=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 1.1
binlog_mb=$(sql "SHOW BINARY LOGS" | awk '{s += $2} END {printf "%.0f", s / 1048576}')
while :; do
    coverage=$(curl -s "${auth[@]}" "$B/api/credentials/$cred/pitr/coverage")
    [[ "$(jq -r '.archived_until // ""' <<<"$coverage")" > "$target" ]] && break
    jq -e .code <<<"$coverage" >/dev/null 2>&1 && echo "coverage: $coverage" >&2
    sleep 0.5
done
transactions=$(curl -sf "${auth[@]}" "$B/api/credentials/$cred/pitr/coverage" | jq -r .total_events)

# The recovery, its phases timed as they show.
started=$(date +%s.%N)
asked=$(curl -s "${auth[@]}" -X POST "$B/api/credentials/$cred/pitr" -H 'Content-Type: application/json' \
    -d "{\"target_time\": \"$target\"}")
pitr=$(jq -r '.id // empty' <<<"$asked")
[ -n "$pitr" ] || { echo "the recovery was refused: $asked" >&2; exit 1; }
declare -A seen
while :; do
    run=$(curl -sf "${auth[@]}" "$B/api/credentials/$cred/pitr/$pitr")
    phase=$(jq -r .phase <<<"$run")
    [ -z "${seen[$phase]:-}" ] && seen[$phase]=$(date +%s.%N)
    [ "$(jq -r .status <<<"$run")" != running ] && break
    sleep 0.2
done
[ "$(jq -r .status <<<"$run")" = completed ] || { echo "the recovery failed: $run" >&2; exit 1; }
ended=$(date +%s.%N)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
span() { python3 -c "print(f'{float(\"$2\") - float(\"$1\"):.0f} s')"; }
echo "| database | binary log replayed | total | preparing (scratch server, baseline loaded) | reconstructing (replay) | uploading (dump stored) | server peak RSS |"
echo "|---|---|---|---|---|---|---|"
echo "| ${size} MiB | ${binlog_mb} MiB, $transactions transactions ($RATE/s for $DURATION s) | $(span "$started" "$ended") | $(span "$started" "${seen[reconstructing]}") | $(span "${seen[reconstructing]}" "${seen[uploading]}") | $(span "${seen[uploading]}" "$ended") | $((rss / 1024)) MiB |"
