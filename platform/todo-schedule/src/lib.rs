//! Recurrence and reminders: the schedule math ([`schedule`]) and what each
//! task event calls for ([`plan`]) as plain functions; the reminder data and
//! its derived ids ([`reminder`]); and the durable workflows built on them
//! ([`recurrence`], [`delivery`]): versioned names, deterministic
//! orchestrators, explicit retry policies. Their activities, which do the I/O,
//! are registered by the services that host them.

pub mod delivery;
pub mod plan;
pub mod recurrence;
pub mod reminder;
pub mod schedule;
