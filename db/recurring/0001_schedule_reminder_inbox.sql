-- Recurring-task service schema. Runs with search_path = recurring.

-- One row per series of a recurring task (its RecurrenceSchedule). The series
-- id is the id of its first task.
create table recurrence_schedule (
    id              uuid        primary key,
    user_id         text        not null,
    title           text        not null,
    frequency       text        not null check (frequency in ('daily', 'weekly', 'monthly')),
    timezone        text        not null,
    -- What the series keeps from its first due date (local day of month and
    -- time of day): 31 Jan -> 28 Feb -> 31 Mar.
    anchor_day      smallint    not null check (anchor_day between 1 and 31),
    anchor_time     time        not null,
    -- Due date of the newest instance (the one waiting to be completed).
    next_due_date   timestamptz not null,
    current_task_id uuid        not null,
    -- The completed instance the newest one follows (null for the first).
    parent_task_id  uuid,
    instances       integer     not null default 1,
    is_active       boolean     not null default true,
    -- Why it ended: 'deleted' is final; 'not_recurring' (recurrence switched
    -- off on the current instance) ends until it is switched back on.
    ended_reason    text        check (ended_reason in ('deleted', 'not_recurring')),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);

create index recurrence_schedule_listing on recurrence_schedule (created_at, id);

-- Which series each instance belongs to.
create table series_task (
    task_id   uuid primary key,
    series_id uuid not null references recurrence_schedule (id)
);

create index series_task_series on series_task (series_id);

-- The reminder of each task (at most one: a new time replaces the old) and
-- the state of its Dapr job `reminder-<task_id>`.
create table reminder (
    task_id    uuid        primary key,
    user_id    text        not null,
    title      text        not null,
    due_date   timestamptz,
    remind_at  timestamptz not null,
    status     text        not null check (status in ('scheduled', 'fired', 'cancelled')),
    fired_at   timestamptz,
    updated_at timestamptz not null default now()
);

create index reminder_scheduled on reminder (remind_at) where status = 'scheduled';

-- Inbox of the shared consumer machinery (dedupe on event id).
create table inbox (
    event_id    uuid        not null,
    topic       text        not null,
    received_at timestamptz not null default now(),
    primary key (event_id, topic)
);
