-- WebSocket service schema. Runs with search_path = websocket (set on the service's role).

-- The durable, bounded log of `task-updates`: what a reconnecting client
-- replays after its cursor. `seq` is that cursor; it only grows. Rows older
-- than the retention window are pruned (see `log_horizon`).
create table update_log (
    seq         bigserial   primary key,
    event_id    uuid        not null,
    user_id     text        not null,
    -- The event envelope exactly as received.
    envelope    jsonb       not null,
    received_at timestamptz not null default clock_timestamp(),
    created_at  timestamptz not null default now(),
    constraint update_log_event_once unique (event_id)
);

-- Replay of one user's updates after a cursor.
create index update_log_user_seq on update_log (user_id, seq);
-- Pruning by age.
create index update_log_received_at on update_log (received_at);

-- One row: the highest seq ever pruned. A client whose cursor is below it has
-- missed updates that are gone and is told to resync (seq alone cannot say so:
-- a sequence has gaps where a transaction rolled back).
create table log_horizon (
    id            boolean     primary key default true check (id),
    pruned_through bigint     not null default 0,
    updated_at    timestamptz not null default now()
);
insert into log_horizon default values;

-- Inbox of the shared consumer machinery: an event id is recorded in the same
-- transaction as its effect, so a redelivered event changes nothing. Pruned
-- with the log.
create table inbox (
    event_id    uuid        not null,
    topic       text        not null,
    received_at timestamptz not null default now(),
    primary key (event_id, topic)
);
create index inbox_received_at on inbox (received_at);
