-- A job's restore drill schedule (cron, in the job's time zone; none: drills by hand only), and
-- the latest drill schedule time the scheduler acted on.
ALTER TABLE backup_jobs ADD COLUMN drill_schedule TEXT;
ALTER TABLE backup_jobs ADD COLUMN drill_scheduled_until TEXT;
