-- The shared consumer prunes its inbox by age (rows older than
-- <PREFIX>INBOX_RETENTION_HOURS, in small batches, oldest first); this index
-- makes each batch an index range scan instead of a scan of the whole inbox.
create index inbox_received_at on inbox (received_at);
