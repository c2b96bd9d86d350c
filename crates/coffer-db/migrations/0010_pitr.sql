-- Point-in-time recovery: a MySQL/MariaDB credential whose server's binary log is archived.

ALTER TABLE credentials ADD COLUMN pitr INTEGER NOT NULL DEFAULT 0;
