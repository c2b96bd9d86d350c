-- A job's restore drill schedule (cron, in the job's time zone; none: drills by hand only), and
-- the latest drill schedule time the scheduler acted on.
ALTER TABLE backup_jobs ADD COLUMN drill_schedule TEXT;
ALTER TABLE backup_jobs ADD COLUMN drill_scheduled_until TEXT;

-- A URL pinged after each backup (its `/fail` when one failed), for dead-man's-switch services.
ALTER TABLE backup_jobs ADD COLUMN ping_url TEXT;
-- Since when the job has been told overdue (none: it is not): it is told once.
ALTER TABLE backup_jobs ADD COLUMN overdue_since TEXT;
