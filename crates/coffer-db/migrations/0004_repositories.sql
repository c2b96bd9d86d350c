-- Repositories registered for jobs. The S3 secret key is sealed with the server key (it never
-- appears here in clear); a job names one in backup_jobs.repository_id.

CREATE TABLE repositories (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    url           TEXT NOT NULL,
    endpoint      TEXT,
    region        TEXT,
    access_key_id TEXT,
    secret_sealed BLOB,
    encrypted     INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE INDEX backup_jobs_repository ON backup_jobs (repository_id);
