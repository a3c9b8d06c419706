-- A poison intent: one whose request the sidecar refused (a 4xx other than
-- credentials or load, an unreadable payload) is tried a few times, then
-- failed: kept with its reason (`last_error`) and never claimed again, until
-- an operator retries it or its key is decided anew (both clear `failed_at`
-- and `refusals`). Transient failures never count here: they retry with
-- backoff for as long as it takes (platform/todo-core/src/intent.rs).
alter table intent
    add column refusals  integer     not null default 0,
    add column failed_at timestamptz;

-- Operators list failed intents newest first; claims read only the others.
create index intent_failed on intent (failed_at desc) where failed_at is not null;
drop index intent_due;
create index intent_due on intent (not_before) where failed_at is null;
