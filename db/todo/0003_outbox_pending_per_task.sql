-- The relay takes the oldest pending event of each (topic, task) in id order,
-- so many events queued for one busy task do not hold back anybody else's
-- (a task's later events wait for its earlier ones, which keeps its order).
-- Deciding whether a pending row is the oldest of its (topic, task) is one
-- probe of this index; like `outbox_pending` it holds only pending rows.
create index outbox_pending_task on outbox (topic, task_id, id) where published_at is null;
