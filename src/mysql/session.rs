//! Sessions on MySQL and MariaDB, and the bounded transactions every session opens.
//!
//! A batch runs at `READ COMMITTED`: under the default `REPEATABLE READ`, the last batch's gap
//! lock past the end of the key blocks the application's inserts of new auto-increment rows.
//! Lock waits are bounded per session (`innodb_lock_wait_timeout` for rows,
//! `lock_wait_timeout` for metadata locks), in whole seconds, the servers' unit. A statement's
//! time is bounded by MariaDB itself (`max_statement_time`); MySQL's `max_execution_time`
//! bounds only `SELECT`, so there a [`Watchdog`] on its own connection sends `KILL QUERY` when
//! the transaction overruns, and the batch, failing with error 1317, rolls back at once (a
//! killed statement alone leaves the transaction open and holding its locks).

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
}

impl Server {
    /// Puts the session in strict mode and reads what it reached, in one round trip; on
    /// MySQL, also has `information_schema.TABLES` read the table's size now rather than from
    /// a cache up to a day old (`information_schema_stats_expiry`; MariaDB has no such cache).
    pub(super) async fn learn(conn: &mut MySqlConnection) -> Result<Server, sqlx::Error> {
        let sql = format!(
            "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), '{}'); \
             SELECT CAST(VERSION() AS CHAR), CONNECTION_ID()",
            super::target::SQL_MODES
        );
        let row = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await?;
        let version: String = row.try_get(0)?;
        let flavor = Flavor::of_version(&version);
        if flavor == Flavor::MySql {
            sqlx::raw_sql("SET SESSION information_schema_stats_expiry = 0")
                .execute(&mut *conn)
                .await?;
        }
        Ok(Server {
            flavor,
            version,
            connection_id: row.try_get(1)?,
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

/// Whole seconds, at least 1: the unit of MySQL's lock waits.
fn seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

impl Session {
    /// A transaction whose statements are bounded by `statement_timeout` (zero: unbounded) and
    /// whose lock waits by `lock_timeout` (zero: the server's default), at `READ COMMITTED`.
    pub async fn begin_bounded(
        &mut self,
        statement_timeout: Duration,
        lock_timeout: Duration,
        read_only: bool,
    ) -> Result<(Tx<'_>, Backend), sqlx::Error> {
        let native = self.server.flavor == Flavor::MariaDb;
        let statement_bound = native.then_some(statement_timeout);
        let begin = begin_sql(statement_bound, lock_timeout, read_only);
        let watchdog = (!native && !statement_timeout.is_zero())
            .then(|| Watchdog::arm(&self.options, self.server.connection_id, statement_timeout));
        let backend = Backend {
            pid: i32::try_from(self.server.connection_id).unwrap_or(i32::MAX),
            xact_start_us: now_us(),
        };
        let tx = self.conn.begin_with(AssertSqlSafe(begin)).await?;
        Ok((Tx { tx, watchdog }, backend))
    }

    /// A transaction that only reads, with no bound of ours.
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

/// The statements that begin a transaction at `READ COMMITTED`, its lock waits bounded by
/// `lock_timeout` and, on MariaDB (`statement_timeout` given), its statements by
/// `max_statement_time`. Session variables outlive the transaction, so each is set every time,
/// back to the server's own value (`DEFAULT`) when there is no bound of ours.
fn begin_sql(
    statement_timeout: Option<Duration>,
    lock_timeout: Duration,
    read_only: bool,
) -> String {
    let wait = if lock_timeout.is_zero() {
        "DEFAULT".to_owned()
    } else {
        seconds(lock_timeout).to_string()
    };
    let mut sql = format!(
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; \
         SET SESSION innodb_lock_wait_timeout = {wait}, lock_wait_timeout = {wait}"
    );
    if let Some(limit) = statement_timeout {
        sql.push_str(&format!(", max_statement_time = {}", limit.as_secs_f64()));
    }
    let mode = if read_only { " READ ONLY" } else { "" };
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
    conn.begin_with(AssertSqlSafe(begin_sql(None, lock_timeout, read_only)))
        .await
}

/// Now in microseconds since the epoch, as the client sees it.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Binds `values` (key parts as text; `None` as NULL) as the next parameters of `query`.
pub fn bind_keys<'q, I, S>(
    mut query: sqlx::query::Query<'q, MySql, MySqlArguments>,
    values: I,
) -> sqlx::query::Query<'q, MySql, MySqlArguments>
where
    I: IntoIterator<Item = Option<S>>,
    S: AsRef<str>,
{
    for v in values {
        query = query.bind(v.map(|s| s.as_ref().to_owned()));
    }
    query
}

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
