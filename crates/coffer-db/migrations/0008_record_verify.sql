-- The last verify of a record: when, and whether its data was whole.
ALTER TABLE backup_records ADD COLUMN verified_at TEXT;
ALTER TABLE backup_records ADD COLUMN verify_ok INTEGER;
