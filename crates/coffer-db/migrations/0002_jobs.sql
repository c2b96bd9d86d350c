-- Backup jobs and their records. Sources and calendar retention are JSON documents.

CREATE TABLE backup_jobs (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    node_id         TEXT NOT NULL,
    sources         TEXT NOT NULL,
    schedule        TEXT,
    timezone        TEXT NOT NULL,
    retention_count INTEGER,
    retention_days  INTEGER,
    retention       TEXT,
    dest_path       TEXT,
    repository_id   TEXT,
    encrypted       INTEGER NOT NULL,
    enabled         INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    -- The latest schedule time the scheduler has acted on (fired, or skipped as missed).
    scheduled_until TEXT
);

CREATE TABLE backup_records (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES backup_jobs (id) ON DELETE CASCADE,
    status       TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    phase        TEXT NOT NULL,
    size_bytes   INTEGER,
    stored_bytes INTEGER,
    checksum     TEXT,
    file_path    TEXT,
    snapshot_id  TEXT,
    encrypted    INTEGER NOT NULL,
    trigger      TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    finished_at  TEXT,
    duration_ms  INTEGER,
    error        TEXT,
    warnings     TEXT NOT NULL DEFAULT '[]'
);

CREATE INDEX backup_records_by_job ON backup_records (job_id, started_at);

-- A job never runs twice at once: at most one running record per job, enforced by SQLite.
CREATE UNIQUE INDEX backup_records_one_running ON backup_records (job_id) WHERE status = 'running';
