-- Audit service schema. Runs with search_path = audit (set on the service's role).

-- One row per task event, written once and never changed.
create table audit_record (
    id              uuid        primary key,
    -- Arrival order, the tie-breaker of "chronological" for equal timestamps.
    seq             bigserial   not null unique,
    event_id        uuid        not null,
    event_type      text        not null,
    schema_version  text        not null,
    task_id         uuid        not null,
    user_id         text        not null,
    payload         jsonb       not null,
    event_timestamp timestamptz not null,
    recorded_at     timestamptz not null default clock_timestamp(),
    constraint audit_record_event_once unique (event_id)
);

create index audit_record_task_time on audit_record (task_id, event_timestamp, seq);
create index audit_record_time on audit_record (event_timestamp, seq);
create index audit_record_type_time on audit_record (event_type, event_timestamp, seq);

-- Immutability, enforced by the database itself, twice over:
-- 1. the service's own role (which owns the table, since it runs the
--    migrations) gives up UPDATE, DELETE and TRUNCATE on it, so such a
--    statement fails with "permission denied";
-- 2. a trigger refuses any UPDATE or DELETE that a privileged role attempts.
revoke update, delete, truncate on audit_record from current_user;

create function audit_record_is_immutable() returns trigger
language plpgsql as $$
begin
    raise exception 'audit records are immutable (% refused)', tg_op
        using errcode = 'insufficient_privilege';
end;
$$;

create trigger audit_record_immutable
    before update or delete on audit_record
    for each row execute function audit_record_is_immutable();

create trigger audit_record_no_truncate
    before truncate on audit_record
    for each statement execute function audit_record_is_immutable();

-- Inbox of the shared consumer machinery: an event id is recorded in the same
-- transaction as its effect, so a redelivered event changes nothing.
create table inbox (
    event_id    uuid        not null,
    topic       text        not null,
    received_at timestamptz not null default now(),
    primary key (event_id, topic)
);
