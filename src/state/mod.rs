//! The state tables, in schema `backfill` (configurable): `jobs`, one row per job with its
//! definition, status, control flag, the job's lease and its counters; and `ranges`, the job's
//! key range split into pieces that workers claim, each with its own cursor, counters and
//! lease. Owns every statement about these tables, including the checkpoint that the engine
//! runs inside each batch transaction; owns nothing about the target table.
//!
//! Layout: this file creates and migrates the schema; `lease` says who holds what and when a
//! holder is presumed gone (pure); `jobs` is the job row (admission, lease, control, status);
//! `ranges` is the range rows (laying out, claiming, splitting, the checkpoint); `beat` is
//! what a running process does for all its leases at once (heartbeat, release).
//!
//! Who may run a job is decided by the pure [`admit`], and leases by [`Lease::is_live`], so the
//! rules are unit-tested.

mod beat;
mod jobs;
mod lease;
mod ranges;

#[cfg(test)]
mod tests;

use sqlx::{Connection as _, PgConnection};
use thiserror::Error;

use crate::db::statement;
use crate::sql::{Ident, Qualified};

pub use beat::{Live, Release};
pub use jobs::{Admission, Claim, Control, JobRow, admit};
pub use lease::{
    HEARTBEAT_EVERY, LEASE_TIMEOUT, Lease, MIN_LEASE_TIMEOUT, Owner, hostname,
    idle_in_transaction_timeout, timeout_secs,
};
pub use ranges::{Holder, Key, NewRange, RangeRow, RangeSql, Split};

/// Where the state lives: the schema holding the `jobs` and `ranges` tables.
#[derive(Debug, Clone)]
pub struct Store {
    schema: String,
    jobs: String,
    ranges: String,
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

    fn db(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> StateError + '_ {
        move |source| StateError::Database {
            table: self.jobs.clone(),
            action,
            source,
        }
    }

    /// Creates the schema and tables if they are missing, and brings tables made by an older
    /// version up to date (new columns only; rows migrate when their job next runs).
    /// Serialised by a transaction-scoped advisory lock (fine behind PgBouncer) so that two
    /// first runs do not race.
    pub async fn ensure(&self, conn: &mut PgConnection) -> Result<(), StateError> {
        let mut tx = conn.begin().await.map_err(self.db("create"))?;
        statement("SELECT pg_advisory_xact_lock(hashtext('backfill state schema'))")
            .execute(&mut *tx)
            .await
            .map_err(self.db("create"))?;
        let (jobs, ranges) = (&self.jobs, &self.ranges);
        let ddl = [
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
            // Added after the first version.
            format!("ALTER TABLE {jobs} ADD COLUMN IF NOT EXISTS lease_s int"),
            format!("ALTER TABLE {jobs} ADD COLUMN IF NOT EXISTS heap_bytes_start bigint"),
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
        ];
        for sql in &ddl {
            statement(sql)
                .execute(&mut *tx)
                .await
                .map_err(self.db("create"))?;
        }
        tx.commit().await.map_err(self.db("create"))
    }
}

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
