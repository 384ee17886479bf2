//! The state tables, in schema `backfill` (configurable): `jobs`, one row per job with its
//! definition, status, control flag, the job's lease and its counters; `ranges`, the job's
//! key range split into pieces that workers claim, each with its own cursor, counters and
//! lease; and `failures`, the rows a job could not backfill and set aside. Owns every statement
//! about these tables, including the checkpoint that the engine
//! runs inside each batch transaction; owns nothing about the target table.
//!
//! Layout: this file names the tables and says why they could not be used; `lease` says who holds what and when a
//! holder is presumed gone (pure); `jobs` is the job row (admission, lease, control, status);
//! `ranges` is the range rows (what they hold, reading them, laying them out); `hold` is a
//! worker's hold on one (claiming, splitting, the checkpoint, finishing); `beat` is
//! what a running process does for all its leases at once (heartbeat, release); `failures` is
//! the failed rows; `stored` is how counts and keys are stored, and `decode` how rows are read,
//! whichever the database.
//!
//! Who may run a job is decided by the pure [`admit`], and leases by [`Lease::is_live`], so the
//! rules are unit-tested.

mod admission;
mod checkpoint;
pub(crate) mod decode;
mod failures;
mod heartbeat;
mod jobs;
mod lease;
mod ranges;
pub mod stored;
#[cfg(test)]
mod tests;
mod total;

use thiserror::Error;

pub use crate::plan::Key;
pub use admission::{Admission, Claim, admit};
pub use checkpoint::{Holder, Split};
pub use failures::{FailedRow, key_text};
pub use heartbeat::{Live, Release, Settled, beat_row, lease_lost};
pub use jobs::{Control, JobRow};
pub use lease::{
    HEARTBEAT_EVERY, LEASE_TIMEOUT, Lease, MIN_LEASE_TIMEOUT, Owner, hostname,
    idle_in_transaction_timeout, timeout_secs,
};
pub use ranges::{NewRange, RangeRow};
pub use total::{Pending, Progress, total};

/// Where the state lives: the schema holding the `jobs`, `ranges` and `failures` tables.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) schema: String,
    pub(crate) jobs: String,
    pub(crate) ranges: String,
    pub(crate) failures: String,
}

/// Why a job may not run now, or why the state tables could not be used.
#[derive(Debug, Error)]
pub enum StateError {
    #[error(
        "job {name:?} is being run by {owner} (last heartbeat {age:.0}s ago); wait for it, stop it there, or add workers to it with `run --join`"
    )]
    Busy {
        name: String,
        owner: String,
        age: f64,
    },
    #[error(
        "job file for {name:?} changed since its checkpoint was written (the table, key, where or [set] differ); run `backfill reset {name}` or `backfill run --restart` to start over"
    )]
    DefinitionChanged { name: String },
    #[error("range {range} of job {name:?} was taken over by {owner}; this worker leaves it")]
    RangeTaken {
        name: String,
        range: u32,
        owner: String,
    },
    #[error("range {range} of job {name:?} was split while a batch ran; the batch runs again")]
    RangeShrunk { name: String, range: u32 },
    #[error(
        "job {name:?} lost its lease to {owner}; another runner took over, so this one stops without writing"
    )]
    LeaseLost { name: String, owner: String },
    #[error(
        "job {name:?} was cancelled; run it with --resume-cancelled to continue from its checkpoint, or --restart to start over"
    )]
    Cancelled { name: String },
    #[error("no job named {name:?} in the state table {table}")]
    UnknownJob { name: String, table: String },
    #[error("state table {table}: {action} failed")]
    Database {
        table: String,
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

impl StateError {
    /// True when the operator must act before anything runs (exit code 2).
    pub fn is_invalid_job(&self) -> bool {
        matches!(
            self,
            StateError::DefinitionChanged { .. }
                | StateError::UnknownJob { .. }
                | StateError::Cancelled { .. }
        )
    }
}

impl Store {
    /// The state tables `jobs`, `ranges` and `failures` in `schema`, each named as the
    /// database writes it (`quoted(schema, table)`): see `db::Target::store`.
    pub fn new(schema: &str, quoted: impl Fn(&str, &str) -> String) -> Store {
        Store {
            schema: schema.to_owned(),
            jobs: quoted(schema, "jobs"),
            ranges: quoted(schema, "ranges"),
            failures: quoted(schema, "failures"),
        }
    }

    /// The jobs table's name as written in SQL, for messages.
    pub fn table(&self) -> &str {
        &self.jobs
    }

    /// The ranges table's name as written in SQL.
    pub fn ranges_table(&self) -> &str {
        &self.ranges
    }

    /// The failures table's name as written in SQL.
    pub fn failures_table(&self) -> &str {
        &self.failures
    }

    /// What a failed statement of `action` on the state tables becomes, for `map_err`: the
    /// same on either database.
    pub(crate) fn db(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> StateError + '_ {
        move |source| StateError::Database {
            table: self.jobs.clone(),
            action,
            source,
        }
    }
}
