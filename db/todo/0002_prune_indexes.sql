-- The pruner deletes published events and expired idempotency keys by age, in
-- small batches, oldest first, whatever the load; these indexes make each
-- batch an index range scan. Pending events are not in the first one (its
-- predicate), so it never slows the relay's scan of what is still to publish.
create index outbox_published_at on outbox (published_at) where published_at is not null;
create index idempotency_key_created_at on idempotency_key (created_at);
