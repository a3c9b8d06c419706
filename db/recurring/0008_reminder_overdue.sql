-- The reconciler looks for scheduled reminders whose time has passed without
-- their Dapr job firing them (a job whose failure policy gave up during an
-- outage, or one lost with the scheduler's state): found through the
-- scheduled rows alone, by time.
create index reminder_overdue on reminder (remind_at) where status = 'scheduled';
