# Shared by the benchmark scripts (sourced): `coffer serve` on a free port of 127.0.0.1 with a
# fresh data directory, and an admin token. Sets `work`, `server`, `B` and `token`; the server
# and the directory go away when the script exits.
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
