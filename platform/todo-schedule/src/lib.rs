//! Recurrence and reminders as plain functions, no I/O and no Dapr: the
//! schedule math ([`schedule`]) and what each task event calls for
//! ([`plan`]). The recurring-task service turns a plan into workflow starts,
//! Jobs API calls and rows; the durable workflows themselves live next to the
//! activities they call, in the services that host them.

pub mod plan;
pub mod schedule;
