#!/usr/bin/env bash
# How far the binlog archive of point-in-time recovery trails the server (the recovery point
# objective) under a steady write load (not part of CI): a MariaDB server of its own with a
# binary log, a credential with "pitr": true, a writer committing RATE small transactions a
# second for DURATION seconds, and every second the archive's lag
# (`coffer_pitr_archive_lag_seconds`) and how far its latest event trails the clock. Prints
# percentiles; docs/benchmarks.md records a run.
#
#   bench/pitr.sh                  # 50 transactions/s for 60 s
#   RATE=500 DURATION=120 bench/pitr.sh
#   RATE=200 NOTE_BYTES=20000 DURATION=150 bench/pitr.sh   # one binlog file growing 4 MB/s
#
# Also printed: the binary log's size at the end and the CPU time the Coffer server spent.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-50}
DURATION=${DURATION:-60}
source bench/lib.sh
start_coffer
auth=(-H "Authorization: Bearer $token")

start_mariadb
sql "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6) DEFAULT NOW(6), note TEXT)"
cred=$(pitr_credential)

# The writer: RATE transactions a second, each its own commit.
python3 bench/mariadb-writer.py "$port" "$RATE" "$DURATION" &
writer=$!

samples=$work/samples
for _ in $(seq "$DURATION"); do
    sleep 1
    lag=$(curl -sf "$B/metrics" | awk -v c="$cred" 'index($0, "coffer_pitr_archive_lag_seconds{credential=\"" c "\"") == 1 {print $2}')
    latest=$(curl -sf "${auth[@]}" "$B/api/credentials/$cred/pitr/coverage" | jq -r .latest_event)
    behind=$(python3 -c "import datetime,sys; t=sys.argv[1]; print('' if t=='null' else (datetime.datetime.now(datetime.timezone.utc)-datetime.datetime.fromisoformat(t.replace('Z','+00:00'))).total_seconds())" "$latest")
    echo "${lag:-} ${behind}" >>"$samples"
done
wait "$writer"
total=$(curl -sf "${auth[@]}" "$B/api/credentials/$cred/pitr/coverage" | jq -r .total_events)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
# utime + stime, in clock ticks.
cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$server/stat")
binlog=$(sql "SHOW BINARY LOGS" | awk '{s += $2} END {printf "%.0f", s / 1048576}')

python3 - "$samples" "$RATE" "$DURATION" "$total" "$rss" "$cpu" "$binlog" <<'EOF'
import statistics, sys
path, rate, duration, total, rss, cpu, binlog = sys.argv[1:]
lags, behinds = [], []
for line in open(path):
    parts = line.split()
    if len(parts) == 2:
        lags.append(float(parts[0]))
        behinds.append(float(parts[1]))
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]
print(f"{rate} transactions/s for {duration} s; {total} transactions archived; binary log {binlog} MiB; server CPU {cpu} s; server peak RSS {int(rss) // 1024} MiB")
print()
print("| measure | median | p95 | max |")
print("|---|---|---|---|")
print(f"| archive lag (coffer_pitr_archive_lag_seconds) | {statistics.median(lags):.1f} s | {pct(lags, .95):.1f} s | {max(lags):.1f} s |")
print(f"| latest archived event behind the clock | {statistics.median(behinds):.1f} s | {pct(behinds, .95):.1f} s | {max(behinds):.1f} s |")
EOF
