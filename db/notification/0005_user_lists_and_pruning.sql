-- A user's notifications, newest first a page at a time, and their count:
-- found through the user's rows alone, however many users there are.
create index notification_user on notification (user_id, created_at desc, id);

-- Sent notifications are pruned by age (NOTIFICATION_RETENTION_HOURS), oldest
-- first in small batches; pending and failed ones never are.
create index notification_sent on notification (sent_at) where status = 'sent';
