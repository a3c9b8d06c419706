-- The next instance of a completed recurring task is now requested in the
-- consumer's transaction ('requested', with the recurrence workflow's input),
-- so a watchdog can start the workflow again when the engine lost its
-- instance, finished it without the step done, or left it without progress:
-- rescues counts those starts (instances recurrence-<task>-r<n>). 'skipped':
-- no instance is made (the series ended or had moved past it, or the Todo
-- service refused the request), which the workflow used to leave unrecorded.
alter table next_instance drop constraint next_instance_state_check;
alter table next_instance add constraint next_instance_state_check
    check (state in ('requested', 'creating', 'created', 'withdrawing', 'withdrawn', 'skipped'));
alter table next_instance add column input jsonb;
alter table next_instance add column rescues integer not null default 0;
create index next_instance_unfinished on next_instance (updated_at)
    where state in ('requested', 'creating', 'withdrawing');
drop index next_instance_finished;
create index next_instance_finished on next_instance (updated_at)
    where state in ('created', 'withdrawn', 'skipped');
