//! The range rows in `ranges`: a job's key range split into pieces `(cursor, upper]` of one
//! relation (the table, or one leaf partition), each with its own cursor, counters, status
//! (`pending`, `running`, `done`) and lease (the owning process and its worker number): what a
//! row holds, reading rows, and laying out a job's first ranges. Every change to the set of
//! ranges (laying them out, splitting one) holds a transaction-scoped advisory lock of the job,
//! so range ids never collide. How a worker holds a range is `hold`'s.

use super::Key;
use super::lease::Lease;

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
    /// Where a batch of this range stands, for messages: `batch after cursor (5000) of range
    /// 3`.
    pub fn at(&self) -> String {
        let cursor = match &self.cursor {
            Some(values) => format!("({})", values.join(", ")),
            None => "(start)".into(),
        };
        format!("batch after cursor {cursor} of range {}", self.id)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_says_where_in_which_range() {
        let range = RangeRow {
            id: 3,
            relation: "\"public\".\"t\"".into(),
            lower: None,
            upper: vec!["acme".into(), "99".into()],
            cursor: Some(vec!["acme".into(), "42".into()]),
            status: "running".into(),
            lease: None,
            worker: None,
            rows_done: 0,
            batches_done: 0,
            keys_estimate: None,
            keys_walked: 0,
            batch_size: None,
            rate: None,
            note: None,
        };
        assert_eq!(range.at(), "batch after cursor (acme, 42) of range 3");
        let start = RangeRow {
            cursor: None,
            ..range
        };
        assert_eq!(start.at(), "batch after cursor (start) of range 3");
    }
}
