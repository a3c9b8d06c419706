//! SQL of the todo schema, beside the aggregate it serves. Functions take a
//! connection or a transaction; callers own transactions.

pub mod idempotency;
pub mod outbox;
pub mod task;
