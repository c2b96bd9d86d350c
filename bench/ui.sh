#!/usr/bin/env bash
# What the web interface's two busiest pages cost the server (not part of CI): 100 jobs with
# 200 records each (20,000), then the requests the dashboard makes (`GET /api/backup-jobs`)
# and those a job's page makes (the job, its newest 200 records, its restores), timed on
# loopback with curl. Prints median and 95th percentile; docs/benchmarks.md records a run.
#
#   bench/ui.sh              # 100 jobs × 200 records, 50 timed rounds
#   JOBS=500 RECORDS=100 ROUNDS=20 bench/ui.sh
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-100}
RECORDS=${RECORDS:-200}
ROUNDS=${ROUNDS:-50}
source bench/lib.sh
start_coffer
auth=(-H "Authorization: Bearer $token")
mkdir -p "$work/src"
echo "a file" >"$work/src/file.txt"

# The jobs, through the API; one real run gives a record to copy.
for i in $(seq "$JOBS"); do
    curl -sf "${auth[@]}" -X POST "$B/api/backup-jobs" -H 'Content-Type: application/json' \
        -d "{\"name\": \"job $i\", \"sources\": [{\"type\": \"path\", \"path\": \"$work/src\"}],
             \"schedule\": \"0 3 * * *\", \"retention_count\": 1000}" >/dev/null
done
first=$(curl -sf "${auth[@]}" "$B/api/backup-jobs" | jq -r '.[0].id')
curl -sf "${auth[@]}" -X POST "$B/api/backup-jobs/$first/run" >/dev/null
for _ in $(seq 100); do
    status=$(curl -sf "${auth[@]}" "$B/api/backup-jobs/$first" | jq -r .last_status)
    [ "$status" = success ] && break
    sleep 0.1
done

# The records: copies of that one, every job, an hour apart, one in ten failed.
python3 - "$work/data/coffer.db" "$RECORDS" <<'EOF'
import sqlite3, sys, datetime, secrets
db, per_job = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db, timeout=30)
c.row_factory = sqlite3.Row
model = dict(c.execute("SELECT * FROM backup_records LIMIT 1").fetchone())
jobs = [r[0] for r in c.execute("SELECT id FROM backup_jobs")]
start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
rows = []
for job in jobs:
    for n in range(per_job):
        r = dict(model, id=secrets.token_hex(16), job_id=job)
        at = start + datetime.timedelta(hours=n)
        r["started_at"] = at.isoformat().replace("+00:00", "Z")
        r["finished_at"] = (at + datetime.timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
        if n % 10 == 9:
            r.update(status="failed", error="source /srv/gone: No such file or directory", snapshot_id=None)
        rows.append(r)
cols = list(model)
c.executemany(
    f"INSERT INTO backup_records ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
    [[r[k] for k in cols] for r in rows],
)
c.commit()
print(f"{len(rows)} records inserted for {len(jobs)} jobs", file=sys.stderr)
EOF

time_of() { # path...: total seconds of the requests, one after another
    local total=0 t
    for path in "$@"; do
        t=$(curl -sf -o /dev/null -w '%{time_total}' "${auth[@]}" "$B$path")
        total=$(python3 -c "print($total + $t)")
    done
    echo "$total"
}

measure() { # name, path...
    local name=$1
    shift
    time_of "$@" >/dev/null # warm
    local samples=()
    for _ in $(seq "$ROUNDS"); do samples+=("$(time_of "$@")"); done
    printf '%s\n' "${samples[@]}" | python3 -c '
import sys, statistics
s = sorted(float(x) * 1000 for x in sys.stdin)
p95 = s[min(len(s) - 1, int(len(s) * 0.95))]
print(f"| {sys.argv[1]} | {statistics.median(s):.1f} ms | {p95:.1f} ms |")' "$name"
}

job=$(curl -sf "${auth[@]}" "$B/api/backup-jobs" | jq -r '.[50].id')
echo "coffer serve, $JOBS jobs × $RECORDS records, $ROUNDS rounds, $(nproc) cores"
echo
echo '| page (its API requests) | median | p95 |'
echo '|---|---|---|'
measure 'dashboard (GET /api/backup-jobs)' /api/backup-jobs
measure "a job's page (job, 200 newest records, restores)" \
    "/api/backup-jobs/$job" "/api/backup-jobs/$job/records?limit=200" "/api/backup-jobs/$job/restores"
measure 'the page and its modules (GET /, /ui/app.js)' / /ui/app.js
