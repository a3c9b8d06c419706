-- Notification service schema. Runs with search_path = notification.

-- One notification per reminder and channel. Its id is derived from the
-- reminder event's id, so a reminder delivered twice is one notification.
create table notification (
    id                uuid        primary key,
    reminder_event_id uuid        not null,
    task_id           uuid        not null,
    user_id           text        not null,
    notification_type text        not null default 'reminder',
    channel           text        not null check (channel in ('in_app')),
    title             text        not null,
    due_date          timestamptz,
    remind_at         timestamptz not null,
    status            text        not null check (status in ('pending', 'sent', 'failed')),
    -- Delivery attempts started (a manual retry starts the next one).
    attempts          integer     not null default 1,
    last_error        text,
    created_at        timestamptz not null default now(),
    sent_at           timestamptz,
    updated_at        timestamptz not null default now(),
    constraint notification_once_per_channel unique (reminder_event_id, channel)
);

create index notification_listing on notification (created_at desc, id);
create index notification_status on notification (status, created_at desc);
create index notification_task on notification (task_id, created_at desc);

-- Inbox of the shared consumer machinery (dedupe on event id).
create table inbox (
    event_id    uuid        not null,
    topic       text        not null,
    received_at timestamptz not null default now(),
    primary key (event_id, topic)
);
