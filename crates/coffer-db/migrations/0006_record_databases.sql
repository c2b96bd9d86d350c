-- What database dumps a record holds (JSON list: engine, database, tool, size) and the tools
-- that made them.

ALTER TABLE backup_records ADD COLUMN databases TEXT NOT NULL DEFAULT '[]';
ALTER TABLE backup_records ADD COLUMN backup_tool TEXT;
