//! What a batch asks of the target table, whichever the database: the batch's upper key, its
//! `UPDATE`, the keys of a failed batch (to narrow it down to a row), one row's `UPDATE`, and
//! the server's WAL position. Each runs the [`Walk`]'s statement as the database's planner
//! wrote it.

use crate::mysql;
use crate::plan::{Key, RelationSize, Sampled, Walk};
use crate::postgres;

use super::Conn;

impl Conn<'_> {
    /// The `n`-th key after `lower` (from the relation's first key without it), at most
    /// `upper`, by a walk of the key's index; `None` when fewer keys are left.
    pub async fn upper_bound(
        self,
        walk: &Walk,
        lower: Option<&[String]>,
        upper: &[String],
        n: u64,
    ) -> Result<Option<Key>, sqlx::Error> {
        match self {
            Conn::Postgres(c) => postgres::table::upper_bound(c, walk, lower, upper, n).await,
            Conn::Mysql(c) => mysql::table::upper_bound(c, walk, lower, upper, n).await,
        }
    }

    /// Updates the rows in `(lower, upper]` that still match `where`; how many.
    pub async fn update(
        self,
        walk: &Walk,
        lower: Option<&[String]>,
        upper: &[String],
    ) -> Result<u64, sqlx::Error> {
        match self {
            Conn::Postgres(c) => postgres::table::update(c, walk, lower, upper).await,
            Conn::Mysql(c) => mysql::table::update(c, walk, lower, upper).await,
        }
    }

    /// The keys in `(lower, upper]`, in key order.
    pub async fn keys(
        self,
        walk: &Walk,
        lower: Option<&[String]>,
        upper: &[String],
    ) -> Result<Vec<Key>, sqlx::Error> {
        match self {
            Conn::Postgres(c) => postgres::table::keys(c, walk, lower, upper).await,
            Conn::Mysql(c) => mysql::table::keys(c, walk, lower, upper).await,
        }
    }

    /// Updates the one row at `key`, if it still matches `where`; how many (0 or 1).
    pub async fn update_key(self, walk: &Walk, key: &[String]) -> Result<u64, sqlx::Error> {
        match self {
            Conn::Postgres(c) => postgres::table::update_key(c, walk, key).await,
            Conn::Mysql(c) => mysql::table::update_key(c, walk, key).await,
        }
    }

    /// The relation's greatest key now, where a new job's range ends; `None` when it is empty.
    pub async fn range_end(self, walk: &Walk) -> Result<Option<Key>, sqlx::Error> {
        match self {
            Conn::Postgres(c) => postgres::table::range_end(c, walk).await,
            Conn::Mysql(c) => mysql::table::range_end(c, walk).await,
        }
    }

    /// The relation's size: its blocks, what a sample's share is worked out from, and its rows
    /// as last counted.
    pub async fn relation_size(self, relation: &str) -> Result<RelationSize, sqlx::Error> {
        match self {
            Conn::Postgres(c) => postgres::table::relation_size(c, relation).await,
            Conn::Mysql(c) => mysql::table::relation_size(c, relation).await,
        }
    }

    /// A block sample (`percent` of the relation's blocks) of the keys in `(lower, upper]`,
    /// in key order, each with whether its row still matches `where`.
    pub async fn sample(
        self,
        walk: &Walk,
        lower: Option<&[String]>,
        upper: &[String],
        percent: f64,
    ) -> Result<Vec<Sampled>, sqlx::Error> {
        match self {
            Conn::Postgres(c) => postgres::table::sample(c, walk, lower, upper, percent).await,
            Conn::Mysql(c) => mysql::table::sample(c, walk, lower, upper, percent).await,
        }
    }

    /// The server's write-ahead log position, in bytes: what a WAL budget charges a batch.
    pub async fn wal_position(self) -> Result<u64, sqlx::Error> {
        match self {
            Conn::Postgres(c) => postgres::wal_position(c).await,
            Conn::Mysql(_) => Err(mysql::not_yet("wal position")),
        }
    }
}
