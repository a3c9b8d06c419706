-- Dead letters: an event this service's consumer can never apply (malformed,
-- of a schema version it does not know, or refused by its handler: a
-- constraint violation, a row it needs that does not exist) is kept here
-- with the reason, the consumer and the number of deliveries that failed,
-- instead of being dropped or retried forever: the partition moves on. An
-- operator lists them and redrives one or all once the cause is fixed
-- (`/api/v1/dead-letters`, platform/todo-core/src/consumer/dead_letters.rs);
-- a redrive applies the event through the same inbox, so at most once.
create table dead_letter (
    id              bigserial   primary key,
    topic           text        not null,
    -- The envelope's event id, or the CloudEvent id of one without a
    -- readable envelope: a redelivery of the same event counts an attempt.
    event_key       text        not null,
    task_id         uuid,
    consumer        text        not null,
    reason          text        not null,
    attempts        integer     not null default 1,
    cloud_event     jsonb       not null,
    first_failed_at timestamptz not null default now(),
    failed_at       timestamptz not null default now(),
    -- Set when a redrive applied it (or found it already applied).
    redriven_at     timestamptz,
    unique (topic, event_key)
);

-- Operators list the open ones newest first.
create index dead_letter_open on dead_letter (failed_at desc) where redriven_at is null;
