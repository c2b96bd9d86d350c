-- Database credentials that postgres and mysql sources name. The password is sealed with the
-- server key; it never appears here in clear.

CREATE TABLE credentials (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    engine          TEXT NOT NULL CHECK (engine IN ('postgres', 'mysql')),
    host            TEXT,
    port            INTEGER NOT NULL,
    socket          TEXT,
    user            TEXT NOT NULL,
    password_sealed BLOB,
    tls             TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
