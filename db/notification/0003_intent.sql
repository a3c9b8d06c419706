-- Remote calls decided in a transaction and made after it commits (issue 10
-- §4): the consumer batch, a row lock or a trigger's transaction never waits
-- on the sidecar. Each row is one thing to bring about, keyed by what it
-- brings about (so deciding it again merges into the row and bumps
-- `generation`); any replica's dispatcher claims due rows for a lease
-- (`claimed_until`, `for update skip locked`), acts with no transaction open,
-- and deletes the row if its generation is unchanged
-- (`platform/todo-core/src/intent.rs`).
create table intent (
    key           text        primary key,
    kind          text        not null,
    -- The task it is about (for logs), if any.
    task_id       uuid,
    payload       jsonb       not null,
    generation    bigint      not null default 1,
    -- Attempts started since it was last decided.
    attempts      integer     not null default 0,
    -- Not to be tried before (retries back off).
    not_before    timestamptz not null default now(),
    claimed_until timestamptz,
    last_error    text,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

create index intent_due on intent (not_before);
