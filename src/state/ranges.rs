//! The range rows in `ranges`: a job's key range split into pieces `(cursor, upper]` of one
//! relation (the table, or one leaf partition), each with its own cursor, counters, status
//! (`pending`, `running`, `done`) and lease (the owning process and its worker number): what a
//! row holds, reading rows, and laying out a job's first ranges. Every change to the set of
//! ranges (laying them out, splitting one) holds a transaction-scoped advisory lock of the job,
//! so range ids never collide. How a worker holds a range is `hold`'s.

use crate::db::Conn;
use crate::postgres::state::StateSql;

use super::lease::Lease;
use super::{Key, StateError, Store};

/// A range's row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeRow {
    pub id: u32,
    /// The relation its batches update, as SQL (`"public"."orders_2024"`).
    pub relation: String,
    /// The key the range started after (`None`: the relation's first key).
    pub lower: Option<Key>,
    /// The range's last key, inclusive.
    pub upper: Key,
    /// The last committed key (`None`: nothing committed and no lower bound).
    pub cursor: Option<Key>,
    pub status: String,
    pub lease: Option<Lease>,
    pub worker: Option<u32>,
    pub rows_done: u64,
    pub batches_done: u64,
    /// Keys in the range when it was laid out or split off, estimated from a sample.
    pub keys_estimate: Option<u64>,
    /// Keys the batches have walked so far (the sum of their sizes).
    pub keys_walked: u64,
    pub batch_size: Option<u32>,
    pub rate: Option<f64>,
    pub note: Option<String>,
}

impl RangeRow {
    /// Keys still to walk, as far as the estimate knows: `None` when there is no estimate or
    /// the walk has already gone past it.
    pub fn remaining_keys(&self) -> Option<u64> {
        self.keys_estimate
            .and_then(|e| e.checked_sub(self.keys_walked))
            .filter(|&left| left > 0)
    }

    /// True when the range's cursor has reached its upper end.
    pub fn is_walked(&self) -> bool {
        self.cursor.as_ref() == Some(&self.upper)
    }
}

/// A range to lay out: the whole relation or a piece of it, or a job migrated from a version
/// without ranges (with its cursor and counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRange {
    pub relation: String,
    pub lower: Option<Key>,
    pub upper: Key,
    pub keys_estimate: Option<u64>,
    /// Where the walk resumes: `lower` for a new range.
    pub cursor: Option<Key>,
    pub rows_done: u64,
    pub batches_done: u64,
}

impl Store {
    /// The leases held on the job's ranges, one per owner (its freshest heartbeat).
    pub async fn range_leases(&self, conn: Conn<'_>, job: &str) -> Result<Vec<Lease>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).range_leases(c, job).await,
        }
    }

    /// Serialises changes to the set of the job's ranges until the transaction ends.
    pub async fn lock_layout(&self, tx: Conn<'_>, job: &str) -> Result<(), StateError> {
        match tx {
            Conn::Postgres(c) => StateSql(self).lock_layout(c, job).await,
        }
    }

    /// Every range of the job, by id.
    pub async fn ranges(&self, conn: Conn<'_>, job: &str) -> Result<Vec<RangeRow>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).ranges(c, job).await,
        }
    }

    /// Every range of every job, by job and id; empty when the ranges table does not exist
    /// (nothing is created by reading).
    pub async fn all_ranges(&self, conn: Conn<'_>) -> Result<Vec<(String, RangeRow)>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).all_ranges(c).await,
        }
    }

    /// One range of the job.
    pub async fn range(
        &self,
        conn: Conn<'_>,
        job: &str,
        id: u32,
    ) -> Result<Option<RangeRow>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).range(c, job, id).await,
        }
    }

    /// Lays out the job's first ranges (ids 1, 2, …) and records the job's overall range end.
    /// The caller holds [`Store::lock_layout`] and has seen that the job has no ranges yet.
    pub async fn lay_out(
        &self,
        tx: Conn<'_>,
        job: &str,
        ranges: &[NewRange],
        range_end: Option<&Key>,
    ) -> Result<(), StateError> {
        match tx {
            Conn::Postgres(c) => StateSql(self).lay_out(c, job, ranges, range_end).await,
        }
    }
}
