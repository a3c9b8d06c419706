-- A user's series and reminders, a page at a time in the API's order, and
-- their count: found through the user's rows alone, however many users there are.
create index recurrence_schedule_user on recurrence_schedule (user_id, created_at, id);
create index reminder_user on reminder (user_id, remind_at, task_id);

-- Finished rows are pruned by age (RECURRING_RETENTION_HOURS), oldest first
-- in small batches: reminders that fired or were cancelled, next instances
-- created or withdrawn, and series ended by a deletion with the rows that
-- link their tasks and next instances to them. Active series, paused ones and
-- scheduled reminders are never pruned.
create index reminder_finished on reminder (updated_at) where status <> 'scheduled';
create index next_instance_finished on next_instance (updated_at) where state in ('created', 'withdrawn');
create index recurrence_schedule_ended on recurrence_schedule (updated_at) where ended_reason = 'deleted';
create index next_instance_series on next_instance (series_id);
