-- Notification channels (a resource with a sealed secret: URL, signing secret, token or SMTP
-- password), and the notifications sent through them with every delivery attempt.

CREATE TABLE notification_channels (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    events        TEXT NOT NULL DEFAULT '[]',
    enabled       INTEGER NOT NULL DEFAULT 1,
    target        TEXT NOT NULL,
    email         TEXT,
    secret_sealed BLOB,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    channel_id      TEXT NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    channel_name    TEXT NOT NULL,
    event           TEXT NOT NULL,
    job_id          TEXT,
    title           TEXT NOT NULL,
    text            TEXT NOT NULL,
    -- The JSON body a webhook receives (what the message says, for machines).
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        TEXT NOT NULL DEFAULT '[]',
    next_attempt_at TEXT,
    created_at      TEXT NOT NULL
);

CREATE INDEX notifications_by_time ON notifications (created_at);
CREATE INDEX notifications_pending ON notifications (next_attempt_at) WHERE status = 'pending';
