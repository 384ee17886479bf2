//! What an error means, whichever database raised it: each database's classes answer for
//! their own server's errors, and PostgreSQL's for the client's (a lost connection, a timeout
//! of the pool) as well.

use crate::{mysql, postgres};

pub use crate::failure::Failure;

/// How to go on after `err`.
pub fn classify(err: &sqlx::Error) -> Failure {
    mysql::classify(err).unwrap_or_else(|| postgres::classify(err))
}

/// Whether `err` is about one row's data, so that a batch narrows down to that row.
pub fn is_row_error(err: &sqlx::Error) -> bool {
    mysql::is_row_error(err).unwrap_or_else(|| postgres::is_row_error(err))
}

/// Whether `err`, or one of its causes, is a statement that gave up waiting for a lock, so
/// that trying again later may succeed.
pub fn gave_up_on_lock(err: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(err), |e| e.source())
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .any(|e| mysql::gave_up_on_lock(e).unwrap_or_else(|| postgres::gave_up_on_lock(e)))
}
