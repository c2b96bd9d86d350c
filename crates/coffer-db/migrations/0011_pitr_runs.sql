-- Point-in-time recoveries of a MySQL/MariaDB server, polled by clients while they run. At
-- most one runs per server: the unique index refuses a second.

CREATE TABLE pitr_runs (
    id                 TEXT PRIMARY KEY,
    credential_id      TEXT NOT NULL REFERENCES credentials (id) ON DELETE CASCADE,
    target_time        TEXT NOT NULL,
    database           TEXT,
    tables_filter      TEXT,
    allow_gaps         INTEGER NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    phase              TEXT NOT NULL,
    baseline_record_id TEXT,
    job_id             TEXT,
    record_id          TEXT,
    file_path          TEXT,
    size_bytes         INTEGER,
    file_count         INTEGER,
    started_at         TEXT NOT NULL,
    completed_at       TEXT,
    error_message      TEXT
);

CREATE INDEX pitr_runs_by_credential ON pitr_runs (credential_id, started_at);
CREATE UNIQUE INDEX pitr_runs_one_running ON pitr_runs (credential_id) WHERE status = 'running';
