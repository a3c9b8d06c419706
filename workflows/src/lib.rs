//! Recurrence and reminders as plain functions: the schedule math
//! ([`schedule`]) and what each task event calls for ([`plan`]). The
//! recurring-task service and its durable workflows are built on these.

pub mod plan;
pub mod schedule;
