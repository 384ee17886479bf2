//! A worker's hold on a range: taking a free or abandoned range (`FOR UPDATE SKIP LOCKED`),
//! splitting a running one and taking its upper part, the checkpoint that moves a range's
//! cursor with each batch, and marking a walked range done. Every statement that needs the
//! worker's lease checks it, and says why when it is gone.

use std::time::Duration;

use crate::db::Conn;
use crate::postgres::state::{RangeSql, StateSql};

use super::lease::Owner;
use super::{Key, RangeRow, StateError, Store};

/// One worker of this process on one job: who claims, checkpoints and releases.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub job: &'a str,
    pub owner: &'a Owner,
    /// The worker's number within its process (0-based).
    pub worker: u32,
    pub lease_timeout: Duration,
}

/// A split of a running range at `at`: the victim keeps `(cursor, at]`, the new range is
/// `(at, upper]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub victim: u32,
    /// The victim's upper end as read; the split fails if it moved meanwhile.
    pub upper: Key,
    pub at: Key,
    pub relation: String,
    /// Estimated keys left to the victim and given to the new range.
    pub keys_kept: Option<u64>,
    pub keys_taken: Option<u64>,
}

impl Store {
    /// Takes the first range that is free, or whose holder is gone: its lease went stale, or
    /// its owner is among `gone` (processes of this host that no longer exist). Ranges locked
    /// by another claimer are skipped, never waited for.
    pub async fn claim_range(
        &self,
        conn: Conn<'_>,
        w: &Holder<'_>,
        gone: &[Owner],
    ) -> Result<Option<RangeRow>, StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).claim_range(c, w, gone).await,
        }
    }

    /// Splits a running range as `split` says and takes the upper part, in the caller's
    /// transaction (which holds [`Store::lock_layout`]). `None` when the victim moved on in
    /// the meantime: its upper end changed, or its cursor passed the split point.
    pub async fn split(
        &self,
        tx: Conn<'_>,
        sql: &RangeSql,
        w: &Holder<'_>,
        split: &Split,
    ) -> Result<Option<RangeRow>, StateError> {
        match tx {
            Conn::Postgres(c) => StateSql(self).split(c, sql, w, split).await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn checkpoint(
        &self,
        tx: Conn<'_>,
        sql: &RangeSql,
        w: &Holder<'_>,
        range: u32,
        cursor: &[String],
        rows: u64,
        batch_size: u32,
    ) -> Result<(), StateError> {
        match tx {
            Conn::Postgres(c) => {
                StateSql(self)
                    .checkpoint(c, sql, w, range, cursor, rows, batch_size)
                    .await
            }
        }
    }

    /// Marks a walked range done and gives up its lease.
    pub async fn finish_range(
        &self,
        conn: Conn<'_>,
        w: &Holder<'_>,
        range: u32,
    ) -> Result<(), StateError> {
        match conn {
            Conn::Postgres(c) => StateSql(self).finish_range(c, w, range).await,
        }
    }
}
