-- Restores of records, polled by clients while they run.

CREATE TABLE restore_tasks (
    id               TEXT PRIMARY KEY,
    job_id           TEXT NOT NULL REFERENCES backup_jobs (id) ON DELETE CASCADE,
    record_id        TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    phase            TEXT NOT NULL,
    target           TEXT NOT NULL,
    paths            TEXT NOT NULL,
    safety_record_id TEXT,
    files            INTEGER,
    bytes            INTEGER,
    started_at       TEXT NOT NULL,
    finished_at      TEXT,
    error            TEXT
);

CREATE INDEX restore_tasks_by_job ON restore_tasks (job_id, started_at);
