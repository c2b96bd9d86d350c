#!/usr/bin/env bash
# Deduplication of database dumps (not part of CI): a database of about 200 MB on the machine's
# server (PostgreSQL on 127.0.0.1:5432, trust auth; or ENGINE=mysql: MariaDB on 127.0.0.1:3306,
# root without password), backed up ten times by a Coffer job with about 1 % of its rows changed
# between runs: a contiguous range of rows (as when recent records are edited), or with
# SCATTER=1 every hundredth row. Prints each record's stored bytes next to the dump's size;
# docs/benchmarks.md records runs.
#
#   bench/db-dedup.sh                           # PROFILE=dev to use the debug build (stored
#   SCATTER=1 bench/db-dedup.sh                 # bytes do not depend on the build)
#   ENGINE=mysql TOOL=mydumper bench/db-dedup.sh  # TOOL=mariadb-dump for the other tool
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DB=coffer_bench_dedup_$$
ROWS=${ROWS:-1600000}
ENGINE=${ENGINE:-postgres}
case $ENGINE in
postgres)
    sql() { psql -h 127.0.0.1 -U postgres -X -q -A -t -d "$DB" -c "$1"; }
    psql -h 127.0.0.1 -U postgres -X -q -d postgres -c "CREATE DATABASE $DB"
    cleanup_db() { psql -h 127.0.0.1 -U postgres -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null; }
    sql "CREATE TABLE t (id int PRIMARY KEY, a text, b text, c text);
        INSERT INTO t SELECT i, md5(i::text), md5((i * 7)::text), md5((i * 13)::text)
        FROM generate_series(1, $ROWS) i;"
    random='random()::text'
    version="PostgreSQL $(sql 'SHOW server_version')"
    credential='{"name": "bench", "engine": "postgres", "host": "127.0.0.1", "user": "postgres"}'
    tool=''
    ;;
mysql)
    sql() { mariadb -h 127.0.0.1 -u root -N -B -e "$1" "$DB"; }
    mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE $DB"
    cleanup_db() { mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $DB" >/dev/null; }
    sql "CREATE TABLE t (id int PRIMARY KEY, a text, b text, c text) ENGINE=InnoDB;
        INSERT INTO t SELECT seq, md5(seq), md5(seq * 7), md5(seq * 13) FROM seq_1_to_$ROWS;"
    random='rand()'
    version="MariaDB $(sql 'SELECT VERSION()'), ${TOOL:-default tool}"
    credential='{"name": "bench", "engine": "mysql", "host": "127.0.0.1", "user": "root"}'
    tool=${TOOL:+", \"backup_tool\": \"$TOOL\""}
    ;;
*) echo "ENGINE is postgres or mysql" >&2; exit 2 ;;
esac

start_coffer
trap 'cleanup_db; kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
auth=(-H "Authorization: Bearer $token" -H 'Content-Type: application/json')
cred=$(curl -sf -X POST "$B/api/credentials" "${auth[@]}" -d "$credential" | jq -r .id)
job=$(curl -sf -X POST "$B/api/backup-jobs" "${auth[@]}" -d "{\"name\": \"dedup\",
    \"sources\": [{\"type\": \"$ENGINE\", \"credential_id\": \"$cred\", \"database\": \"$DB\"$tool}]}" | jq -r .id)

echo "$version, $ROWS rows, $(nproc) cores"
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
        sql "UPDATE t SET a = md5($random) WHERE id % 100 = $run"
    else
        first=$((run * ROWS / 12))
        sql "UPDATE t SET a = md5($random) WHERE id > $first AND id <= $first + $ROWS / 100"
    fi
done
