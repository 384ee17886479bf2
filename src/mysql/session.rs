//! Sessions on MySQL and MariaDB, and the bounded transactions every session opens.
//!
//! A batch runs at `READ COMMITTED`: under the default `REPEATABLE READ`, the last batch's gap
//! lock past the end of the key blocks the application's inserts of new auto-increment rows.
//! Lock waits are bounded per session (`innodb_lock_wait_timeout` for rows,
//! `lock_wait_timeout` for metadata locks), in whole seconds, the servers' unit. A statement's
//! time is bounded by MariaDB itself (`max_statement_time`); MySQL's `max_execution_time`
//! bounds only `SELECT`, so there a [`Watchdog`] on its own connection sends `KILL QUERY` when
//! the transaction overruns, and the batch, failing with error 1317, rolls back at once (a
//! killed statement alone leaves the transaction open and holding its locks). A transaction's
//! idle time is bounded too ([`Session::begin_limited`]).

use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::{MySqlArguments, MySqlConnectOptions};
use sqlx::{AssertSqlSafe, Connection as _, MySql, MySqlConnection, Row as _, Transaction};

use super::Flavor;
use crate::monitor::sample::Backend;

/// One of our statements, text built by us (identifiers through `crate::mysql::sql`, values as
/// `?` parameters).
pub fn statement(sql: &str) -> sqlx::query::Query<'static, MySql, MySqlArguments> {
    sqlx::query(AssertSqlSafe(sql.to_owned()))
}

/// Which server a session reached, learnt when it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub flavor: Flavor,
    /// `VERSION()` as the server gives it: `9.7.4-2`, `10.11.19-MariaDB-0+deb12u1`.
    pub version: String,
    /// The session's `CONNECTION_ID()`: what `KILL QUERY` and the processlist name it by.
    pub connection_id: u64,
    /// `@@performance_schema`: on by default on MySQL, off on MariaDB.
    pub performance_schema: bool,
}

impl Server {
    /// Puts the session in strict mode and reads what it reached; on MySQL, also has
    /// `information_schema.TABLES` read the table's size now rather than from a cache up to a
    /// day old (`information_schema_stats_expiry`; MariaDB has no such cache).
    pub(super) async fn learn(conn: &mut MySqlConnection) -> Result<Server, sqlx::Error> {
        let sql = format!(
            "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), '{}'); \
             SELECT CAST(VERSION() AS CHAR), CONNECTION_ID(), @@performance_schema = 1",
            super::target::SQL_MODES
        );
        let row = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await?;
        let version: String = row.try_get(0)?;
        let flavor = Flavor::of_version(&version);
        // MariaDB: every transaction of the session, also those the state tables' statements
        // open on a bare connection, ends once idle for IDLE_IN_TRANSACTION (a transaction of
        // ours may set its own). MySQL has no such limit; see `Session::begin_limited`.
        let session = match flavor {
            Flavor::MySql => "SET SESSION information_schema_stats_expiry = 0".to_owned(),
            Flavor::MariaDb => format!(
                "SET SESSION idle_transaction_timeout = {}",
                seconds(IDLE_IN_TRANSACTION)
            ),
        };
        sqlx::raw_sql(AssertSqlSafe(session))
            .execute(&mut *conn)
            .await?;
        Ok(Server {
            flavor,
            version,
            connection_id: row.try_get(1)?,
            performance_schema: row.try_get(2)?,
        })
    }
}

/// An open session: the connection, the server it reached, and where it came from (for the
/// [`Watchdog`]'s connection).
pub struct Session {
    pub conn: MySqlConnection,
    pub server: Server,
    pub(super) options: Arc<MySqlConnectOptions>,
}

/// An open transaction, with the watchdog that bounds it on MySQL.
pub struct Tx<'c> {
    pub tx: Transaction<'c, MySql>,
    pub watchdog: Option<Watchdog>,
    /// The session's `wait_timeout` bounds the transaction's idle time, to be put back at
    /// commit (MySQL).
    pub restore_wait: bool,
}

/// Sends `KILL QUERY` to a session from a connection of its own once its time is up, unless
/// dropped first.
pub struct Watchdog(tokio::task::JoinHandle<()>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Watchdog {
    fn arm(options: &Arc<MySqlConnectOptions>, connection_id: u64, after: Duration) -> Watchdog {
        let options = Arc::clone(options);
        Watchdog(tokio::spawn(async move {
            tokio::time::sleep(after).await;
            // Best effort: if the kill cannot be sent, the batch still ends at the lock or
            // idle limits, and the error of the next statement says why.
            if let Ok(mut conn) = super::target::connect_plain(&options).await {
                let _ = statement(&format!("KILL QUERY {connection_id}"))
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        }))
    }
}

/// Whole seconds, at least 1: the unit of the servers' lock waits and idle limits.
pub(crate) fn seconds(d: Duration) -> u64 {
    u64::try_from(d.as_millis().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// How long a transaction of ours may sit idle before the server ends it, unless told
/// otherwise: as PostgreSQL's `idle_in_transaction_session_timeout` does for us there, so that a
/// process frozen mid-transaction does not hold its locks for ever.
pub const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(5);

/// The bounds of one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Each statement's time (zero: unbounded).
    pub statement_timeout: Duration,
    /// Each lock wait (zero: the server's default).
    pub lock_timeout: Duration,
    /// How long the transaction may idle between statements (`None`: unbounded).
    pub idle: Option<Duration>,
    pub read_only: bool,
}

impl Session {
    /// A transaction at `READ COMMITTED` with the bounds of `limits`, and the [`Backend`] that
    /// runs it. The idle bound is MariaDB's `idle_transaction_timeout`; MySQL has none of its
    /// own, so there the session's `wait_timeout` is lowered for the transaction and put back
    /// before it commits ([`Tx::commit`]): a frozen client's connection, and with it its
    /// transaction, is closed by the server.
    pub async fn begin_limited(
        &mut self,
        limits: Limits,
    ) -> Result<(Tx<'_>, Backend), sqlx::Error> {
        let flavor = self.server.flavor;
        let begin = begin_sql(flavor, &limits);
        let watchdog =
            (flavor == Flavor::MySql && !limits.statement_timeout.is_zero()).then(|| {
                Watchdog::arm(
                    &self.options,
                    self.server.connection_id,
                    limits.statement_timeout,
                )
            });
        let backend = Backend {
            pid: i64::try_from(self.server.connection_id).unwrap_or(i64::MAX),
            xact_start_us: now_us(),
        };
        let tx = self.conn.begin_with(AssertSqlSafe(begin)).await?;
        let restore_wait = flavor == Flavor::MySql && limits.idle.is_some();
        Ok((
            Tx {
                tx,
                watchdog,
                restore_wait,
            },
            backend,
        ))
    }

    /// A transaction whose statements are bounded by `statement_timeout` (zero: unbounded) and
    /// whose lock waits by `lock_timeout` (zero: the server's default), ended by the server if
    /// it idles for [`IDLE_IN_TRANSACTION`].
    pub async fn begin_bounded(
        &mut self,
        statement_timeout: Duration,
        lock_timeout: Duration,
        read_only: bool,
    ) -> Result<(Tx<'_>, Backend), sqlx::Error> {
        self.begin_limited(Limits {
            statement_timeout,
            lock_timeout,
            idle: Some(IDLE_IN_TRANSACTION),
            read_only,
        })
        .await
    }

    /// A transaction that only reads, with no bound of ours but the idle one.
    pub async fn begin_read_only(&mut self) -> Result<Tx<'_>, sqlx::Error> {
        Ok(self
            .begin_bounded(Duration::ZERO, Duration::ZERO, true)
            .await?
            .0)
    }

    /// A transaction that writes the state tables: no statement or lock limit of ours.
    pub async fn begin_state(&mut self) -> Result<Tx<'_>, sqlx::Error> {
        Ok(self
            .begin_bounded(Duration::ZERO, Duration::ZERO, false)
            .await?
            .0)
    }
}

/// What a MySQL batch sends before its `COMMIT` to put the session's idle limit back.
pub(crate) const RESTORE_WAIT: &str = "SET SESSION wait_timeout = DEFAULT";

impl Tx<'_> {
    /// Commits; on MySQL, first puts back the session's `wait_timeout` that bounded the
    /// transaction's idle time, so that the session may idle between transactions.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        if self.restore_wait {
            sqlx::raw_sql(RESTORE_WAIT).execute(&mut *self.tx).await?;
        }
        self.tx.commit().await
    }
}

/// The statements that begin a transaction at `READ COMMITTED` with the bounds of `limits` on
/// `flavor` (see [`Session::begin_limited`]). Session variables outlive the transaction, so each
/// is set every time, back to the server's own value (`DEFAULT`) when there is no bound of
/// ours. MariaDB bounds statements itself (`max_statement_time`); MySQL's `max_execution_time`
/// bounds only `SELECT`, so there the [`Watchdog`] does.
pub(crate) fn begin_sql(flavor: Flavor, limits: &Limits) -> String {
    let wait = if limits.lock_timeout.is_zero() {
        "DEFAULT".to_owned()
    } else {
        seconds(limits.lock_timeout).to_string()
    };
    let mut sql = format!(
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; \
         SET SESSION innodb_lock_wait_timeout = {wait}, lock_wait_timeout = {wait}"
    );
    let idle = limits.idle.map(|d| seconds(d).to_string());
    match flavor {
        Flavor::MariaDb => {
            sql.push_str(&format!(
                ", max_statement_time = {}, idle_transaction_timeout = {}",
                limits.statement_timeout.as_secs_f64(),
                idle.as_deref().unwrap_or("0")
            ));
        }
        Flavor::MySql => {
            if let Some(idle) = idle {
                sql.push_str(&format!(", wait_timeout = {idle}"));
            }
        }
    }
    let mode = if limits.read_only { " READ ONLY" } else { "" };
    sql.push_str(&format!("; START TRANSACTION{mode}"));
    sql
}

/// A transaction on a bare connection (a [`crate::db::Conn`]'s), its lock waits bounded by
/// `lock_timeout` and its statements by nothing of ours: the checks before a run, which only
/// read. Not `READ ONLY` unless `read_only`: MariaDB refuses even `EXPLAIN UPDATE` in a
/// read-only transaction.
pub async fn begin_reading(
    conn: &mut MySqlConnection,
    lock_timeout: Duration,
    read_only: bool,
) -> Result<Transaction<'_, MySql>, sqlx::Error> {
    let limits = Limits {
        statement_timeout: Duration::ZERO,
        lock_timeout,
        idle: None,
        read_only,
    };
    // Either flavor's form without the idle and statement bounds: MySQL's sets neither.
    conn.begin_with(AssertSqlSafe(begin_sql(Flavor::MySql, &limits)))
        .await
}

/// Now in microseconds since the epoch, as the client sees it.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// MySQL's rows decode every column type `backfill` reads, so the decoders shared with
/// PostgreSQL read them.
impl crate::rows::Fields for sqlx::mysql::MySqlRow {}

/// Ends the session politely: a `COM_QUIT`, so the server does not log an aborted connection.
pub async fn hang_up(session: Session) {
    let _ = session.conn.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_waits_round_up_to_whole_seconds() {
        assert_eq!(seconds(Duration::from_millis(200)), 1);
        assert_eq!(seconds(Duration::from_millis(1000)), 1);
        assert_eq!(seconds(Duration::from_millis(1001)), 2);
        assert_eq!(seconds(Duration::from_secs(5)), 5);
    }
}
