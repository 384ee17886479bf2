//! The state table: one row per job in `backfill.jobs` (schema configurable) holding its cursor,
//! counters, lease and control flag. Owns every statement about that table, including the
//! checkpoint that the engine runs inside each batch transaction; owns nothing about the target
//! table. Who may run a job is decided by the pure [`admit`], so the rules are unit-tested.
//!
//! The lease is a row (`owner`, `heartbeat_at`) rather than an advisory lock because session
//! advisory locks do not survive PgBouncer's transaction pooling. Ages are computed with the
//! database's clock (`now() - heartbeat_at`) so hosts with skewed clocks agree.

use std::time::Duration;

use sqlx::{Connection as _, PgConnection, Row as _};
use thiserror::Error;

use crate::db::{begin_read_only, statement};
use crate::sql::{Ident, Qualified};

/// A lease with no heartbeat for this long is stale and may be taken over. The runner beats
/// every [`HEARTBEAT_EVERY`], so this allows several missed beats (a busy server, a GC pause).
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(15);

/// How often a running job refreshes its lease and reads its control flag.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Where the state lives: the schema holding the `jobs` table.
#[derive(Debug, Clone)]
pub struct Store {
    jobs: String,
    schema: String,
    /// The checkpoint statement, built once: it runs in every batch.
    checkpoint: String,
}

/// Who runs a job: `host:pid:nonce`. The host and pid let a runner on the same host see at
/// once that a previous owner died (kill -9) instead of waiting for its lease to go stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(pub String);

impl Owner {
    /// An owner id for this process.
    pub fn this_process() -> Owner {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Owner(format!("{}:{}:{nanos:08x}", hostname(), std::process::id()))
    }

    /// True when the owner ran on this host and its process no longer exists.
    fn is_dead_here(&self) -> bool {
        let mut parts = self.0.rsplitn(3, ':');
        let (_nonce, pid, host) = (parts.next(), parts.next(), parts.next());
        match (host, pid.and_then(|p| p.parse::<u32>().ok())) {
            (Some(host), Some(pid)) => {
                host == hostname()
                    && pid != std::process::id()
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// A job's row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub name: String,
    pub table_name: String,
    pub definition_hash: String,
    pub status: String,
    pub cursor: Option<Vec<String>>,
    pub range_end: Option<Vec<String>>,
    pub rows_done: u64,
    pub batches_done: u64,
    pub batch_size: Option<u32>,
    pub owner: Option<Owner>,
    /// Seconds since the last heartbeat (database clock), when there is an owner.
    pub heartbeat_age: Option<f64>,
    /// Seconds since the row last changed.
    pub updated_age: Option<f64>,
    pub control: Option<String>,
    pub last_error: Option<String>,
    /// Rows per second over the runner's recent window, written with the heartbeat.
    pub rate: Option<f64>,
    /// Why the runner is paused or throttled, written with the heartbeat.
    pub note: Option<String>,
}

impl JobRow {
    /// True while an owner holds a lease that has not gone stale.
    pub fn lease_is_live(&self) -> bool {
        match (&self.owner, self.heartbeat_age) {
            (Some(owner), Some(age)) => age < LEASE_TIMEOUT.as_secs_f64() && !owner.is_dead_here(),
            _ => false,
        }
    }
}

/// What `run` asks for.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub name: &'a str,
    pub table_name: &'a str,
    pub definition_hash: &'a str,
    pub owner: &'a Owner,
    /// Start over: forget the cursor and counters (`run --restart`).
    pub restart: bool,
    /// Continue a cancelled job from its checkpoint (`run --resume-cancelled`).
    pub resume_cancelled: bool,
}

/// What `admit` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Take the lease and continue from the stored cursor (none for a new job).
    Run,
    /// Take the lease and start over from the first key.
    Restart,
    /// The job finished before; nothing to do.
    AlreadyDone,
}

/// Why a job may not run now, or why the state table could not be used.
#[derive(Debug, Error)]
pub enum StateError {
    #[error(
        "job {name:?} is being run by {owner} (last heartbeat {age:.0}s ago); wait for it, or stop it there"
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

/// Decides whether `claim` may take the job whose row is `row`. Pure.
pub fn admit(row: &JobRow, claim: &Claim) -> Result<Admission, StateError> {
    if row.lease_is_live() && row.owner.as_ref() != Some(claim.owner) {
        return Err(StateError::Busy {
            name: row.name.clone(),
            owner: row.owner.as_ref().map_or_else(String::new, |o| o.0.clone()),
            age: row.heartbeat_age.unwrap_or_default(),
        });
    }
    if claim.restart {
        return Ok(Admission::Restart);
    }
    if row.definition_hash != claim.definition_hash {
        return Err(StateError::DefinitionChanged {
            name: row.name.clone(),
        });
    }
    if row.status == "done" {
        return Ok(Admission::AlreadyDone);
    }
    if row.status == "cancelled" && !claim.resume_cancelled {
        return Err(StateError::Cancelled {
            name: row.name.clone(),
        });
    }
    Ok(Admission::Run)
}

/// How a runner leaves a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// The key range is walked to its end.
    Done,
    /// Stopped by Ctrl-C or SIGTERM; `run` resumes it.
    Stopped,
    /// Cancelled by an operator; resumes only with `--resume-cancelled` (or `--restart`).
    Cancelled,
    /// Stopped by an error, recorded for `status`.
    Failed(String),
}

/// What an operator asks of a job from another terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel,
}

/// What the runner publishes with each heartbeat, for `status` on another host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    pub rate: Option<f64>,
    pub note: Option<String>,
}

const SELECT_ROW: &str = "SELECT name, coalesce(table_name, ''), definition_hash, status, \
    cursor::text, range_end::text, rows_done, batches_done, batch_size, owner, \
    extract(epoch FROM now() - heartbeat_at)::float8, extract(epoch FROM now() - updated_at)::float8, \
    control, last_error, rate, note";

impl Store {
    /// The state table in `schema` (default `backfill`).
    pub fn new(schema: &str) -> Store {
        let jobs = Qualified {
            schema,
            name: "jobs",
        }
        .to_string();
        let checkpoint = format!(
            "UPDATE {jobs} SET cursor = $3::jsonb, rows_done = rows_done + $4, batches_done = batches_done + 1, \
             batch_size = $5, updated_at = now(), heartbeat_at = now() WHERE name = $1 AND owner = $2"
        );
        Store {
            jobs,
            schema: schema.to_owned(),
            checkpoint,
        }
    }

    /// The state table's name as written in SQL, for messages.
    pub fn table(&self) -> &str {
        &self.jobs
    }

    fn db(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> StateError + '_ {
        move |source| StateError::Database {
            table: self.jobs.clone(),
            action,
            source,
        }
    }

    /// Creates the schema and table if they are missing. Serialised by a transaction-scoped
    /// advisory lock (fine behind PgBouncer) so that two first runs do not race.
    pub async fn ensure(&self, conn: &mut PgConnection) -> Result<(), StateError> {
        let mut tx = conn.begin().await.map_err(self.db("create"))?;
        statement("SELECT pg_advisory_xact_lock(hashtext('backfill state schema'))")
            .execute(&mut *tx)
            .await
            .map_err(self.db("create"))?;
        let ddl = [
            format!("CREATE SCHEMA IF NOT EXISTS {}", Ident(&self.schema)),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (
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
                    note text)",
                self.jobs
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

    /// Takes the job's lease if [`admit`] allows it, creating its row on first use, and returns
    /// the row as it now stands together with the admission.
    pub async fn claim(
        &self,
        conn: &mut PgConnection,
        claim: &Claim<'_>,
    ) -> Result<(Admission, JobRow), StateError> {
        let mut tx = conn.begin().await.map_err(self.db("claim"))?;
        let insert = format!(
            "INSERT INTO {} (name, table_name, definition_hash, status) VALUES ($1, $2, $3, 'pending') \
             ON CONFLICT (name) DO NOTHING",
            self.jobs
        );
        statement(&insert)
            .bind(claim.name)
            .bind(claim.table_name)
            .bind(claim.definition_hash)
            .execute(&mut *tx)
            .await
            .map_err(self.db("claim"))?;
        let row = self.fetch(&mut tx, claim.name, true).await?;
        let admission = admit(&row, claim)?;
        if admission == Admission::AlreadyDone {
            tx.commit().await.map_err(self.db("claim"))?;
            return Ok((admission, row));
        }
        let take = format!(
            "UPDATE {} SET owner = $2, heartbeat_at = now(), updated_at = now(), status = 'running', \
             control = CASE WHEN control = 'pause' THEN control END, last_error = NULL, note = NULL, rate = NULL, table_name = $3, \
             started_at = CASE WHEN $4 THEN now() ELSE coalesce(started_at, now()) END, \
             definition_hash = $5, \
             cursor = CASE WHEN $4 THEN NULL ELSE cursor END, \
             range_end = CASE WHEN $4 THEN NULL ELSE range_end END, \
             rows_done = CASE WHEN $4 THEN 0 ELSE rows_done END, \
             batches_done = CASE WHEN $4 THEN 0 ELSE batches_done END, \
             finished_at = NULL WHERE name = $1",
            self.jobs
        );
        statement(&take)
            .bind(claim.name)
            .bind(&claim.owner.0)
            .bind(claim.table_name)
            .bind(admission == Admission::Restart)
            .bind(claim.definition_hash)
            .execute(&mut *tx)
            .await
            .map_err(self.db("claim"))?;
        let row = self.fetch(&mut tx, claim.name, false).await?;
        tx.commit().await.map_err(self.db("claim"))?;
        Ok((admission, row))
    }

    /// Reads one job's row (locking it when `lock` is set).
    async fn fetch(
        &self,
        conn: &mut PgConnection,
        name: &str,
        lock: bool,
    ) -> Result<JobRow, StateError> {
        let sql = format!(
            "{SELECT_ROW} FROM {} WHERE name = $1{}",
            self.jobs,
            if lock { " FOR UPDATE" } else { "" }
        );
        let row = statement(&sql).bind(name).fetch_optional(&mut *conn).await;
        let row = match row {
            // No state table yet: no job has ever run here.
            Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P01") => {
                None
            }
            other => other.map_err(self.db("read"))?,
        };
        match row {
            Some(row) => decode_row(&row).map_err(self.db("read")),
            None => Err(StateError::UnknownJob {
                name: name.into(),
                table: self.jobs.clone(),
            }),
        }
    }

    /// Re-reads the job's row, e.g. after a failed batch whose commit may or may not have
    /// happened: the stored cursor is the truth.
    pub async fn load(&self, conn: &mut PgConnection, name: &str) -> Result<JobRow, StateError> {
        let mut tx = conn.begin().await.map_err(self.db("read"))?;
        let row = self.fetch(&mut tx, name, false).await?;
        tx.commit().await.map_err(self.db("read"))?;
        Ok(row)
    }

    /// Records the end of the key range, captured once when the job first starts.
    pub async fn set_range_end(
        &self,
        conn: &mut PgConnection,
        name: &str,
        owner: &Owner,
        range_end: &[String],
    ) -> Result<(), StateError> {
        let sql = format!(
            "UPDATE {} SET range_end = $3::jsonb, updated_at = now() WHERE name = $1 AND owner = $2",
            self.jobs
        );
        let mut tx = conn
            .begin()
            .await
            .map_err(self.db("record the range end"))?;
        let done = statement(&sql)
            .bind(name)
            .bind(&owner.0)
            .bind(to_json(range_end))
            .execute(&mut *tx)
            .await
            .map_err(self.db("record the range end"))?;
        self.require_lease(done.rows_affected(), name, &mut tx)
            .await?;
        tx.commit().await.map_err(self.db("record the range end"))
    }

    /// The checkpoint statement: `$1` name, `$2` owner, `$3` cursor (jsonb text), `$4` rows
    /// changed, `$5` batch size. The owner condition makes a runner that lost its lease fail
    /// instead of overwriting the new owner's progress.
    pub fn checkpoint_sql(&self) -> &str {
        &self.checkpoint
    }

    /// The checkpoint, run inside the batch's own transaction: the batch and its record commit
    /// together or not at all. Fails with `LeaseLost` if another runner took the job.
    pub async fn checkpoint(
        &self,
        tx: &mut PgConnection,
        name: &str,
        owner: &Owner,
        cursor: &[String],
        rows: u64,
        batch_size: u32,
    ) -> Result<(), StateError> {
        let done = statement(&self.checkpoint)
            .bind(name)
            .bind(&owner.0)
            .bind(to_json(cursor))
            .bind(i64::try_from(rows).unwrap_or(i64::MAX))
            .bind(i32::try_from(batch_size).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await
            .map_err(self.db("checkpoint"))?;
        self.require_lease(done.rows_affected(), name, tx).await
    }

    /// Refreshes the lease and publishes `live`; returns the control flag set by an operator.
    pub async fn heartbeat(
        &self,
        conn: &mut PgConnection,
        name: &str,
        owner: &Owner,
        live: &Live,
    ) -> Result<Option<String>, StateError> {
        let sql = format!(
            "UPDATE {} SET heartbeat_at = now(), rate = $3, note = $4 WHERE name = $1 AND owner = $2 \
             RETURNING control",
            self.jobs
        );
        let mut tx = conn.begin().await.map_err(self.db("heartbeat"))?;
        let row = statement(&sql)
            .bind(name)
            .bind(&owner.0)
            .bind(live.rate)
            .bind(live.note.as_deref())
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.db("heartbeat"))?;
        let Some(row) = row else {
            self.require_lease(0, name, &mut tx).await?;
            return Ok(None);
        };
        tx.commit().await.map_err(self.db("heartbeat"))?;
        Ok(row.get(0))
    }

    /// Gives up the lease, recording how the run ended.
    pub async fn release(
        &self,
        conn: &mut PgConnection,
        name: &str,
        owner: &Owner,
        how: &Release,
    ) -> Result<(), StateError> {
        let (status, error) = match how {
            Release::Done => ("done", None),
            Release::Stopped => ("stopped", None),
            Release::Cancelled => ("cancelled", None),
            Release::Failed(e) => ("failed", Some(e.as_str())),
        };
        let sql = format!(
            "UPDATE {} SET status = $3, last_error = $4, owner = NULL, heartbeat_at = NULL, rate = NULL, \
             note = NULL, control = CASE WHEN control = 'pause' THEN control END, updated_at = now(), finished_at = CASE WHEN $3 = 'done' THEN now() END \
             WHERE name = $1 AND owner = $2",
            self.jobs
        );
        let mut tx = conn.begin().await.map_err(self.db("release"))?;
        statement(&sql)
            .bind(name)
            .bind(&owner.0)
            .bind(status)
            .bind(error)
            .execute(&mut *tx)
            .await
            .map_err(self.db("release"))?;
        tx.commit().await.map_err(self.db("release"))
    }

    /// Every job's row, by name; empty when the state table does not exist yet (nothing is
    /// created by reading).
    pub async fn list(&self, conn: &mut PgConnection) -> Result<Vec<JobRow>, StateError> {
        let mut tx = begin_read_only(conn).await.map_err(self.db("list"))?;
        let exists: bool = statement("SELECT to_regclass($1) IS NOT NULL")
            .bind(&self.jobs)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.db("list"))?
            .get(0);
        if !exists {
            return Ok(vec![]);
        }
        let sql = format!("{SELECT_ROW} FROM {} ORDER BY name", self.jobs);
        let rows = statement(&sql)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.db("list"))?;
        let rows = rows
            .iter()
            .map(decode_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db("list"))?;
        tx.commit().await.map_err(self.db("list"))?;
        Ok(rows)
    }

    /// Forgets a job (cursor, counters, lease) so that the next `run` starts over. Refuses
    /// while a live runner holds the lease.
    pub async fn reset(&self, conn: &mut PgConnection, name: &str) -> Result<JobRow, StateError> {
        let mut tx = conn.begin().await.map_err(self.db("reset"))?;
        let row = self.fetch(&mut tx, name, true).await?;
        if row.lease_is_live() {
            return Err(StateError::Busy {
                name: name.into(),
                owner: row.owner.as_ref().map_or_else(String::new, |o| o.0.clone()),
                age: row.heartbeat_age.unwrap_or_default(),
            });
        }
        let sql = format!("DELETE FROM {} WHERE name = $1", self.jobs);
        statement(&sql)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(self.db("reset"))?;
        tx.commit().await.map_err(self.db("reset"))?;
        Ok(row)
    }

    /// Sets the operator's control flag: `pause` and `resume` (clears it) reach a running job
    /// at its next heartbeat. `cancel` does too; a job nobody runs is marked cancelled at once.
    pub async fn control(
        &self,
        conn: &mut PgConnection,
        name: &str,
        control: Control,
    ) -> Result<JobRow, StateError> {
        let mut tx = conn.begin().await.map_err(self.db("control"))?;
        let row = self.fetch(&mut tx, name, true).await?;
        let (flag, status) = match control {
            Control::Pause => (Some("pause"), None),
            Control::Resume => (None, None),
            Control::Cancel if row.lease_is_live() => (Some("cancel"), None),
            Control::Cancel => (None, Some("cancelled")),
        };
        let sql = format!(
            "UPDATE {} SET control = $2, status = coalesce($3, status), updated_at = now() WHERE name = $1",
            self.jobs
        );
        statement(&sql)
            .bind(name)
            .bind(flag)
            .bind(status)
            .execute(&mut *tx)
            .await
            .map_err(self.db("control"))?;
        let row = self.fetch(&mut tx, name, false).await?;
        tx.commit().await.map_err(self.db("control"))?;
        Ok(row)
    }

    /// Turns "no row updated" into `LeaseLost`, naming who holds the job now.
    async fn require_lease(
        &self,
        rows_affected: u64,
        name: &str,
        conn: &mut PgConnection,
    ) -> Result<(), StateError> {
        if rows_affected > 0 {
            return Ok(());
        }
        let owner = match self.fetch(conn, name, false).await {
            Ok(row) => row.owner.map_or_else(|| "nobody".into(), |o| o.0),
            Err(_) => "a reset".into(),
        };
        Err(StateError::LeaseLost {
            name: name.into(),
            owner,
        })
    }
}

fn to_json(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

/// A jsonb array of strings as stored by this module; anything else is corruption.
fn from_json(text: Option<String>) -> Result<Option<Vec<String>>, sqlx::Error> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

fn decode_row(row: &sqlx::postgres::PgRow) -> Result<JobRow, sqlx::Error> {
    let rows_done: i64 = row.try_get(6)?;
    let batches_done: i64 = row.try_get(7)?;
    let batch_size: Option<i32> = row.try_get(8)?;
    Ok(JobRow {
        name: row.try_get(0)?,
        table_name: row.try_get(1)?,
        definition_hash: row.try_get(2)?,
        status: row.try_get(3)?,
        cursor: from_json(row.try_get(4)?)?,
        range_end: from_json(row.try_get(5)?)?,
        rows_done: u64::try_from(rows_done).unwrap_or_default(),
        batches_done: u64::try_from(batches_done).unwrap_or_default(),
        batch_size: batch_size.and_then(|b| u32::try_from(b).ok()),
        owner: row.try_get::<Option<String>, _>(9)?.map(Owner),
        heartbeat_age: row.try_get(10)?,
        updated_age: row.try_get(11)?,
        control: row.try_get(12)?,
        last_error: row.try_get(13)?,
        rate: row.try_get(14)?,
        note: row.try_get(15)?,
    })
}

#[cfg(test)]
mod tests;
