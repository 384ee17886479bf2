//! The state tables, in schema `backfill` (configurable): `jobs`, one row per job with its
//! definition, status, control flag, the job's lease and its counters; `ranges`, the job's
//! key range split into pieces that workers claim, each with its own cursor, counters and
//! lease; and `failures`, the rows a job could not backfill and set aside. Owns every statement
//! about these tables, including the checkpoint that the engine
//! runs inside each batch transaction; owns nothing about the target table.
//!
//! Layout: this file creates and migrates the schema; `lease` says who holds what and when a
//! holder is presumed gone (pure); `jobs` is the job row (admission, lease, control, status);
//! `ranges` is the range rows (what they hold, reading them, laying them out); `hold` is a
//! worker's hold on one (claiming, splitting, the checkpoint, finishing); `beat` is
//! what a running process does for all its leases at once (heartbeat, release); `failures` is
//! the failed rows.
//!
//! Who may run a job is decided by the pure [`admit`], and leases by [`Lease::is_live`], so the
//! rules are unit-tested.

mod admission;
mod checkpoint;
mod failures;
mod heartbeat;
mod jobs;
mod lease;
mod ranges;

#[cfg(test)]
mod tests;

use std::time::Duration;

use sqlx::{PgConnection, Row as _};
use thiserror::Error;

use crate::postgres::sql::{Ident, Qualified};
use crate::postgres::{begin_bounded, begin_read_only, statement};

pub use admission::{Admission, Claim, admit};
pub use checkpoint::{Holder, RangeSql, Split};
pub use failures::{FailedRow, key_text};
pub use heartbeat::{Live, Release};
pub use jobs::{Control, JobRow};
pub use lease::{
    HEARTBEAT_EVERY, LEASE_TIMEOUT, Lease, MIN_LEASE_TIMEOUT, Owner, hostname,
    idle_in_transaction_timeout, timeout_secs,
};
pub use ranges::{Key, NewRange, RangeRow};

/// Where the state lives: the schema holding the `jobs`, `ranges` and `failures` tables.
#[derive(Debug, Clone)]
pub struct Store {
    schema: String,
    jobs: String,
    ranges: String,
    failures: String,
}

/// What of the state schema exists: a schema made by an older version that no run of this
/// version has touched lacks the later tables and columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tables {
    pub jobs: bool,
    pub ranges: bool,
    pub failures: bool,
    /// Every column added to a table after its first version ([`ADDED`]) is there.
    pub columns: bool,
}

impl Tables {
    /// Everything this version uses is there.
    fn current(&self) -> bool {
        self.jobs && self.ranges && self.failures && self.columns
    }
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
    /// The state tables in `schema` (default `backfill`).
    pub fn new(schema: &str) -> Store {
        let table = |name| Qualified { schema, name }.to_string();
        Store {
            schema: schema.to_owned(),
            jobs: table("jobs"),
            ranges: table("ranges"),
            failures: table("failures"),
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

    /// What of the state schema exists, in the caller's transaction.
    pub(crate) async fn tables(&self, conn: &mut PgConnection) -> Result<Tables, StateError> {
        let (tables, columns): (Vec<String>, Vec<String>) = ADDED
            .iter()
            .map(|(table, column, _)| (self.state_table(table), column.to_string()))
            .unzip();
        let row = statement(
            "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL, \
                    to_regclass($3) IS NOT NULL, \
                    NOT EXISTS (SELECT FROM unnest($4::text[], $5::text[]) AS added(tab, col) \
                      WHERE NOT EXISTS (SELECT FROM pg_attribute \
                        WHERE attrelid = to_regclass(added.tab) AND attname = added.col \
                          AND NOT attisdropped))",
        )
        .bind(&self.jobs)
        .bind(&self.ranges)
        .bind(&self.failures)
        .bind(tables)
        .bind(columns)
        .fetch_one(conn)
        .await
        .map_err(self.db("read"))?;
        Ok(Tables {
            jobs: row.get(0),
            ranges: row.get(1),
            failures: row.get(2),
            columns: row.get(3),
        })
    }

    fn db(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> StateError + '_ {
        move |source| StateError::Database {
            table: self.jobs.clone(),
            action,
            source,
        }
    }

    /// Creates the schema and tables if they are missing, and brings tables made by an older
    /// version up to date (new columns only; rows migrate when their job next runs).
    ///
    /// Looks before it alters: `ALTER TABLE … ADD COLUMN IF NOT EXISTS` takes an `ACCESS
    /// EXCLUSIVE` lock on the table even when the column is there, so it would queue behind
    /// any open transaction that read the jobs table (a `pg_dump`, a dashboard) and hold up
    /// every other job's heartbeat behind it. When something is missing, the DDL waits at
    /// most `lock_timeout` for its locks, and is serialised by a transaction-scoped advisory
    /// lock (fine behind PgBouncer) so that two first runs do not race.
    pub async fn ensure(
        &self,
        conn: &mut PgConnection,
        lock_timeout: Duration,
    ) -> Result<(), StateError> {
        let mut tx = begin_read_only(conn).await.map_err(self.db("create"))?;
        let tables = self.tables(&mut tx).await?;
        tx.commit().await.map_err(self.db("create"))?;
        if tables.current() {
            return Ok(());
        }
        let (mut tx, _) = begin_bounded(conn, Duration::ZERO, lock_timeout, false)
            .await
            .map_err(self.db("create"))?;
        statement("SELECT pg_advisory_xact_lock(hashtext('backfill state schema'))")
            .execute(&mut *tx)
            .await
            .map_err(self.db("create"))?;
        let (jobs, ranges) = (&self.jobs, &self.ranges);
        let create = [
            format!("CREATE SCHEMA IF NOT EXISTS {}", Ident(&self.schema)),
            format!(
                "CREATE TABLE IF NOT EXISTS {jobs} (
                    name text PRIMARY KEY,
                    table_name text,
                    definition_hash text NOT NULL,
                    status text NOT NULL,
                    cursor jsonb,
                    range_end jsonb,
                    rows_done bigint NOT NULL DEFAULT 0,
                    batches_done bigint NOT NULL DEFAULT 0,
                    batch_size int,
                    started_at timestamptz,
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    finished_at timestamptz,
                    owner text,
                    heartbeat_at timestamptz,
                    control text,
                    last_error text,
                    rate double precision,
                    note text)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ranges} (
                    job text NOT NULL REFERENCES {jobs} (name) ON DELETE CASCADE,
                    id int NOT NULL,
                    relation text NOT NULL,
                    lower jsonb,
                    upper jsonb NOT NULL,
                    cursor jsonb,
                    status text NOT NULL DEFAULT 'pending',
                    owner text,
                    worker int,
                    heartbeat_at timestamptz,
                    lease_s int,
                    rows_done bigint NOT NULL DEFAULT 0,
                    batches_done bigint NOT NULL DEFAULT 0,
                    keys_estimate bigint,
                    keys_walked bigint NOT NULL DEFAULT 0,
                    batch_size int,
                    rate double precision,
                    note text,
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (job, id))"
            ),
            self.failures_ddl(),
        ];
        let added = ADDED.iter().map(|(table, column, type_sql)| {
            format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {type_sql}",
                self.state_table(table),
                Ident(column)
            )
        });
        for sql in create.into_iter().chain(added) {
            statement(&sql)
                .execute(&mut *tx)
                .await
                .map_err(self.db("create"))?;
        }
        tx.commit().await.map_err(self.db("create"))
    }

    /// `jobs` or `ranges`, as written in SQL.
    fn state_table(&self, name: &str) -> String {
        match name {
            "ranges" => self.ranges.clone(),
            _ => self.jobs.clone(),
        }
    }
}

/// Columns added after a table's first version: table (`jobs`, `ranges`), column, type.
/// [`Store::ensure`] adds the missing ones, and looks for all of them before it alters.
const ADDED: [(&str, &str, &str); 2] = [
    ("jobs", "lease_s", "int"),
    ("jobs", "heap_bytes_start", "bigint"),
];

/// A key as stored: a jsonb array of the key columns' text.
fn to_json(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

/// A jsonb array of strings as stored by this module; anything else is corruption.
fn from_json(text: Option<String>) -> Result<Option<Vec<String>>, sqlx::Error> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

/// Whether `e` says the state tables do not exist yet (no job has ever run here).
fn is_missing_table(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P01")
}
