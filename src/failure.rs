//! What a failed statement means to a run, whichever the database: each database's error
//! classes (`crate::postgres::classify`, `crate::mysql::classify`) answer with a [`Failure`].

/// What to do about a failed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Roll back and try the same batch again after a backoff.
    Transient {
        /// The statement ran out of time: try again with a smaller batch.
        halve: bool,
        /// The connection is gone: reconnect before trying again.
        reconnect: bool,
    },
    /// Anything else: stop the job and record the error.
    Fatal,
}
