-- Restore drills: a job's newest backup restored into a throwaway place and checked. At most
-- one runs per job: the unique index refuses a second.

CREATE TABLE drills (
    id          TEXT PRIMARY KEY,
    job_id      TEXT NOT NULL REFERENCES backup_jobs (id) ON DELETE CASCADE,
    record_id   TEXT NOT NULL,
    -- When the record drilled was taken: what a passed drill proves restorable, kept should
    -- the record go.
    record_at   TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    phase       TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    restore_ms  INTEGER,
    checks      TEXT NOT NULL DEFAULT '[]',
    error       TEXT
);

CREATE INDEX drills_by_job ON drills (job_id, started_at);
CREATE UNIQUE INDEX drills_one_running ON drills (job_id) WHERE status = 'running';
