# Shared by the benchmark scripts (sourced): `coffer serve` on a free port of 127.0.0.1 with a
# fresh data directory, and an admin token. Sets `work`, `server`, `B` and `token`; the server
# and the directory go away when the script exits. For point-in-time recovery, a MariaDB server
# with a binary log and a credential archiving it.
#
# PROFILE=release (default) builds and runs the release binary; PROFILE=dev the debug one.

command -v jq >/dev/null || apt-get install -y jq

start_coffer() {
    local profile=${PROFILE:-release} dir=release
    [ "$profile" = dev ] && dir=debug
    cargo build --profile "$profile" -p coffer
    local bin=${CARGO_TARGET_DIR:-target}/$dir/coffer
    work=$(mktemp -d)
    trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    B=http://127.0.0.1:$port
    printf 'a long benchmark password' >"$work/admin-password"
    COFFER_ADMIN_PASSWORD_FILE="$work/admin-password" COFFER_LOG=warn \
        "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" &
    server=$!
    for _ in $(seq 100); do curl -sf "$B/api/health" >/dev/null && break; sleep 0.1; done
    token=$(curl -sf -X POST "$B/api/auth/login" -H 'Content-Type: application/json' \
        -d '{"username": "admin", "password": "a long benchmark password"}' | jq -r .token)
}

# A MariaDB server of the benchmark's own (after start_coffer): its data in `$work/mariadb`, a
# free port of 127.0.0.1, a binary log (ROW), a user `coffer` with a password; stopped with the
# server when the script exits. Sets `port`; `sql` runs SQL as root.
start_mariadb() {
    local my=$work/mariadb
    chmod o+x "$work" # mariadbd runs as mysql and must reach its directory
    mkdir -p "$my" && chmod 777 "$my"
    mariadb-install-db --no-defaults --user=mysql --datadir="$my/data" \
        --auth-root-authentication-method=normal --skip-test-db >/dev/null
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mariadbd --no-defaults --user=mysql --datadir="$my/data" --port="$port" --bind-address=127.0.0.1 \
        --socket="$my/sock" --pid-file="$my/pid" --log-error="$my/err" \
        --log-bin=binlog --server-id=1 --binlog-format=ROW "$@" &
    mariadb_pid=$!
    trap 'kill "$mariadb_pid" "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
    for _ in $(seq 100); do sql "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
    sql "CREATE USER 'coffer'@'%' IDENTIFIED BY 'bench-password'; GRANT ALL ON *.* TO 'coffer'@'%'"
}

sql() { mariadb --no-defaults -h 127.0.0.1 -P "$port" -u root -N -B -e "$1"; }

# A credential for that server with its binary log archived; prints its id.
pitr_credential() {
    curl -sf -H "Authorization: Bearer $token" -X POST "$B/api/credentials" -H 'Content-Type: application/json' \
        -d "{\"name\": \"bench\", \"engine\": \"mysql\", \"host\": \"127.0.0.1\", \"port\": $port,
             \"user\": \"coffer\", \"password\": \"bench-password\", \"tls\": \"disable\", \"pitr\": true}" | jq -r .id
}
