-- Todo service schema. Runs with search_path = todo (set on the service's role),
-- so every name below lives in the `todo` schema.

-- One row per task. `version` grows by one with every change and is carried in
-- every event, so consumers can tell snapshots of one task apart.
create table task (
    id                  uuid        primary key,
    user_id             text        not null,
    title               text        not null,
    description         text,
    status              text        not null,
    due_date            timestamptz,
    reminder_time       timestamptz,
    is_recurring        boolean     not null default false,
    recurrence_schedule text,
    timezone            text        not null default 'UTC',
    parent_task_id      uuid,
    created_at          timestamptz not null,
    updated_at          timestamptz not null,
    version             bigint      not null default 1,
    constraint task_title_length check (char_length(title) between 1 and 255),
    constraint task_status_known check (status in ('pending', 'in_progress', 'complete')),
    constraint task_schedule_known check (recurrence_schedule in ('daily', 'weekly', 'monthly')),
    constraint task_recurrence_consistent check (is_recurring = (recurrence_schedule is not null))
);

-- Lists are per user, optionally per status, in creation order.
create index task_user_created on task (user_id, created_at, id);
create index task_user_status_created on task (user_id, status, created_at, id);

-- Transactional outbox: a task change and its events are committed together;
-- the relay publishes unpublished rows in id order through Dapr and stamps
-- published_at. One row per (event, topic).
create table outbox (
    id           bigserial   primary key,
    event_id     uuid        not null,
    topic        text        not null,
    task_id      uuid        not null,
    cloud_event  bytea       not null,
    created_at   timestamptz not null default now(),
    published_at timestamptz,
    constraint outbox_event_topic_unique unique (event_id, topic)
);

-- The relay only ever scans what is still pending.
create index outbox_pending on outbox (id) where published_at is null;

-- Idempotency-Key records: a retried create/complete with the same key returns
-- the first answer instead of acting twice. `outbox_ids` are the events that
-- answer waited for, so a replay also waits until they are on Kafka.
create table idempotency_key (
    user_id      text        not null,
    key          text        not null,
    operation    text        not null,
    request_hash text        not null,
    status_code  integer,
    response     jsonb,
    outbox_ids   bigint[]    not null default '{}',
    created_at   timestamptz not null default now(),
    primary key (user_id, key)
);
