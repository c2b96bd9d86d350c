-- How far running records and restores are: files and bytes done, and the total when known.
ALTER TABLE backup_records ADD COLUMN progress TEXT;
ALTER TABLE restore_tasks ADD COLUMN progress TEXT;
