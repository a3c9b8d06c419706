//! Recurrence and reminders: the schedule math the recurring-task service and
//! its workflows rely on, as plain functions ([`schedule`]).

pub mod schedule;
