-- Each dead letter is also announced on its topic's dead-letter topic
-- (`<topic>-dlq`, platform/todo-contract/src/dead_letter.rs), after the
-- transaction that kept it: `published_at` says it was (cleared when the
-- event fails again, so the new attempt is announced too);
-- `publishing_until` is a publisher's short claim, so replicas do not
-- announce the same one at once and a claim of a publisher that died runs out.
alter table dead_letter
    add column published_at     timestamptz,
    add column publishing_until timestamptz;

create index dead_letter_unpublished on dead_letter (id) where published_at is null;
