//! How `backfill` talks to PostgreSQL: connection settings and statement execution that work
//! the same directly and behind PgBouncer in transaction mode, and the classification of errors
//! into "roll back and try again" and "stop".
//!
//! PgBouncer (ARCHITECTURE.md): named prepared statements break under transaction pooling, so every
//! statement is unnamed (`persistent(false)`) and runs inside an explicit transaction, and the
//! `extra_float_digits` startup parameter (which PgBouncer rejects) is not sent. This module
//! knows nothing about jobs or tables.
//!
//! Here: statements, the bounded transactions every session opens, the server's version, keys
//! bound and read back; `target.rs` reads where to connect, `errors.rs` what an error means.

use std::time::Duration;

use sqlx::postgres::PgArguments;

use crate::monitor::sample::Backend;
use crate::rows::{Fields, key};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, Postgres, Row as _, Transaction};

/// A statement ready for binds: unnamed, so it works behind PgBouncer's transaction pooling.
pub fn statement(sql: &str) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    sqlx::query(AssertSqlSafe(sql.to_owned())).persistent(false)
}

/// A join that keeps, of `pg_stat_activity` (or the function behind it) aliased `a`, exactly
/// the [`Backend`]s bound as `$1` (pids, `int8[]`) and `$2` (transaction starts, `int8[]`):
/// behind PgBouncer a pid alone may be running another client's transaction by now.
pub const OUR_BACKENDS: &str = "JOIN unnest($1::int8[], $2::int8[]) AS ours(pid, xact_start_us) \
    ON a.pid = ours.pid AND (extract(epoch FROM a.xact_start) * 1000000)::int8 = ours.xact_start_us";

/// Opens a transaction whose statements are bounded by `statement_timeout` and `lock_timeout`
/// (`SET LOCAL`, via `set_config(…, true)`, so nothing outlives the transaction — which matters
/// behind PgBouncer, where the next transaction may run on another client's server session).
/// Its commit does not wait for the WAL flush (`synchronous_commit = off`): a batch and its
/// checkpoint commit together, so a server crash can lose the last few batches only together
/// with their checkpoints, and the next run redoes them; nothing is lost or applied twice, and
/// no batch waits for a disk flush. The same round trip reads which [`Backend`] runs it.
pub async fn begin_bounded<'c>(
    conn: &'c mut PgConnection,
    statement_timeout: Duration,
    lock_timeout: Duration,
    read_only: bool,
) -> Result<(Transaction<'c, Postgres>, Backend), sqlx::Error> {
    let limits = Limits {
        statement_timeout,
        lock_timeout,
        idle_in_transaction: None,
        wal: false,
        flushed_commit: false,
    };
    let (tx, backend, _) = begin_limited(conn, &limits, read_only).await?;
    Ok((tx, backend))
}

/// A read-only transaction for the latency guard's probe: bounded by `timeout` like
/// [`begin_bounded`]'s, but its commit keeps the server's `synchronous_commit`, so that a probe
/// that takes a transaction id waits for the WAL flush as an application's write does.
pub async fn begin_probe(
    conn: &mut PgConnection,
    timeout: Duration,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    let limits = Limits {
        statement_timeout: timeout,
        lock_timeout: timeout,
        idle_in_transaction: None,
        wal: false,
        flushed_commit: true,
    };
    let (tx, _, _) = begin_limited(conn, &limits, true).await?;
    Ok(tx)
}

/// A batch transaction: [`begin_bounded`], and ended by the server if the client leaves it
/// idle for `idle_in_transaction` (`idle_in_transaction_session_timeout`) — a frozen or cut
/// off process must not hold its rows locked until someone notices. With `wal`, the same round
/// trip also reads the server's WAL insert position ([`WAL_POSITION`]), the start of what the
/// batch writes.
pub async fn begin_batch<'c>(
    conn: &'c mut PgConnection,
    statement_timeout: Duration,
    lock_timeout: Duration,
    idle_in_transaction: Duration,
    wal: bool,
) -> Result<(Transaction<'c, Postgres>, Backend, Option<u64>), sqlx::Error> {
    let limits = Limits {
        statement_timeout,
        lock_timeout,
        idle_in_transaction: Some(idle_in_transaction),
        wal,
        flushed_commit: false,
    };
    begin_limited(conn, &limits, false).await
}

/// The server's WAL insert position in bytes, as a number (`pg_current_wal_insert_lsn()`, which
/// every role may call). Not on a standby, where no batch runs.
pub const WAL_POSITION: &str = "pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::int8";

/// The statement that reads [`WAL_POSITION`] before a batch commits.
pub fn wal_position_sql() -> String {
    format!("SELECT {WAL_POSITION} AS wal_lsn")
}

/// Reads the server's WAL insert position inside `tx`: one round trip, as a simple query.
pub async fn wal_position(tx: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let row = sqlx::raw_sql(AssertSqlSafe(wal_position_sql()))
        .fetch_one(tx)
        .await?;
    Ok(u64::try_from(row.try_get::<i64, _>("wal_lsn")?).unwrap_or(0))
}

/// What [`limits_sql`] sets and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    /// `idle_in_transaction_session_timeout`: a batch's (a third of the lease), else
    /// [`IDLE_IN_TRANSACTION`].
    pub idle_in_transaction: Option<Duration>,
    /// Read the WAL insert position too.
    pub wal: bool,
    /// Keep the server's `synchronous_commit` rather than turning it off.
    pub flushed_commit: bool,
}

/// The statement that opens every bounded transaction: its `SET LOCAL` limits (with
/// `synchronous_commit = off` unless [`Limits::flushed_commit`]), and the [`Backend`] that runs
/// it (`pid`, `xact_start_us`), and with [`Limits::wal`] the WAL insert position (`wal_lsn`). Sent as a simple query — one round trip where a statement with binds
/// takes two — since the values are our own integers, never user text.
pub fn limits_sql(limits: &Limits) -> String {
    let idle = format!(
        "set_config('idle_in_transaction_session_timeout', '{}ms', true), ",
        limits
            .idle_in_transaction
            .unwrap_or(IDLE_IN_TRANSACTION)
            .as_millis()
    );
    let wal = if limits.wal {
        format!(", {WAL_POSITION} AS wal_lsn")
    } else {
        String::new()
    };
    let commit = if limits.flushed_commit {
        ""
    } else {
        "set_config('synchronous_commit', 'off', true), "
    };
    format!(
        "SELECT set_config('statement_timeout', '{}ms', true), \
         set_config('lock_timeout', '{}ms', true), {commit}\
         {idle}pg_backend_pid() AS pid, (extract(epoch FROM now()) * 1000000)::int8 AS xact_start_us{wal}",
        limits.statement_timeout.as_millis(),
        limits.lock_timeout.as_millis()
    )
}

async fn begin_limited<'c>(
    conn: &'c mut PgConnection,
    limits: &Limits,
    read_only: bool,
) -> Result<(Transaction<'c, Postgres>, Backend, Option<u64>), sqlx::Error> {
    let mut tx = begin_idle_bounded(conn, read_only).await?;
    let row = sqlx::raw_sql(AssertSqlSafe(limits_sql(limits)))
        .fetch_one(&mut *tx)
        .await?;
    let backend = Backend {
        pid: i64::from(row.try_get::<i32, _>("pid")?),
        xact_start_us: row.try_get("xact_start_us")?,
    };
    let wal = if limits.wal {
        Some(u64::try_from(row.try_get::<i64, _>("wal_lsn")?).unwrap_or(0))
    } else {
        None
    };
    Ok((tx, backend, wal))
}

/// How long any transaction of ours may sit idle before the server ends it, unless it says
/// otherwise (a batch: a third of the lease). Ours never pause between statements, so only a
/// frozen process (SIGSTOP, a paused VM) reaches it — and must not keep the rows it locked (a
/// heartbeat's, a claim's, a release's) nor its snapshot while the other processes wait.
pub const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(5);

/// A transaction that writes the state tables: ended by the server once idle for
/// [`IDLE_IN_TRANSACTION`]; no statement or lock timeout (a lock it waits for is another
/// process's short state transaction, or a frozen one the server ends), and the server's
/// `synchronous_commit`, so that a lease or a claim outlives a crash of the server.
pub async fn begin_state(
    conn: &mut PgConnection,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    let limits = Limits {
        statement_timeout: Duration::ZERO,
        lock_timeout: Duration::ZERO,
        idle_in_transaction: None,
        wal: false,
        flushed_commit: true,
    };
    let (tx, _, _) = begin_limited(conn, &limits, false).await?;
    Ok(tx)
}

/// Opens a read-only transaction: what reads that must write nothing run in (and, behind
/// PgBouncer, every statement runs in an explicit transaction).
/// Ended by the server once idle for [`IDLE_IN_TRANSACTION`], set in the same round trip.
pub async fn begin_read_only(
    conn: &mut PgConnection,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    begin_idle_bounded(conn, true).await
}

/// `BEGIN` and its [`IDLE_IN_TRANSACTION`] in one message, so that no moment exists in which a
/// process frozen right after `BEGIN` leaves an open transaction the server never ends.
async fn begin_idle_bounded(
    conn: &mut PgConnection,
    read_only: bool,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    let mode = if read_only { " READ ONLY" } else { "" };
    conn.begin_with(AssertSqlSafe(format!(
        "BEGIN{mode}; SELECT set_config('idle_in_transaction_session_timeout', '{}ms', true)",
        IDLE_IN_TRANSACTION.as_millis()
    )))
    .await
}

/// The oldest PostgreSQL `backfill` supports (and CI tests), as `server_version_num`.
pub const OLDEST_SERVER: u32 = 130000;
/// The newest PostgreSQL major version CI tests; a newer server works but is not vouched for.
pub const NEWEST_TESTED_MAJOR: u32 = 18;

/// The server's version as `server_version_num` (`160004` for 16.4, `90624` for 9.6.24): what
/// a query that differs between major versions branches on. Read in a read-only transaction,
/// like every statement, so that it works behind PgBouncer.
pub async fn server_version(conn: &mut PgConnection) -> Result<u32, sqlx::Error> {
    let mut tx = begin_read_only(conn).await?;
    let num: i32 = statement("SELECT current_setting('server_version_num')::int4")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    tx.commit().await?;
    u32::try_from(num).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// A `server_version_num` as people write it: `160004` → `16.4`, `90624` → `9.6.24`.
pub fn version_name(num: u32) -> String {
    if num >= 100000 {
        format!("{}.{}", num / 10000, num % 10000)
    } else {
        format!("{}.{}.{}", num / 10000, num / 100 % 100, num % 100)
    }
}

/// PostgreSQL's rows decode every column type `backfill` reads, so the decoders shared with
/// MySQL read them.
impl Fields for sqlx::postgres::PgRow {}

/// Runs a query that returns at most one key (a row of text columns).
pub async fn fetch_key(
    query: sqlx::query::Query<'_, Postgres, PgArguments>,
    conn: &mut PgConnection,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    query
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(key)
        .transpose()
}

/// Runs a query that returns keys (rows of text columns), in its order.
pub async fn fetch_keys(
    query: sqlx::query::Query<'_, Postgres, PgArguments>,
    conn: &mut PgConnection,
) -> Result<Vec<Vec<String>>, sqlx::Error> {
    query.fetch_all(conn).await?.iter().map(key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn versions_are_named_as_people_write_them() {
        assert_eq!(version_name(160004), "16.4");
        assert_eq!(version_name(180000), "18.0");
        assert_eq!(version_name(130023), "13.23");
        assert_eq!(version_name(90624), "9.6.24");
    }
}
