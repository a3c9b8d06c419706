-- A user reads only the records of their own tasks (identity, issue 11): their
-- listing is `where user_id = $1 order by event_timestamp, seq`.
create index audit_record_user_time on audit_record (user_id, event_timestamp, seq);
