-- Where a credential's binary log archive lives: a registered repository (a repository of its
-- own inside it), or, when NULL, under the data directory.
ALTER TABLE credentials ADD COLUMN pitr_repository_id TEXT;
