//! The load half of a full sample on MySQL and MariaDB, for the same policy as PostgreSQL's:
//!
//! - other sessions at work: `Threads_running`, as gh-ost's `--max-load` reads it, less the
//!   monitor, our running batches and the server's own threads (the event scheduler, a
//!   replica's binary log dump, replication threads), which it counts too;
//! - connections in use: `Threads_connected` against `@@max_connections`;
//! - InnoDB's purge backlog: the history list's length (MariaDB's `Innodb_history_list_length`,
//!   MySQL's `trx_rseg_history_len` in `INNODB_METRICS`, else `SHOW ENGINE INNODB STATUS`), and
//!   the oldest open transaction (`INNODB_TRX` and the processlist);
//! - the session idle in transaction for longest.
//!
//! The status counters need no privilege. What needs `PROCESS` — the purge backlog on MySQL,
//! every transaction but the account's own — is left out without it, so that the sample goes
//! on; `plan` and `run` say what the account cannot see. Replicas are read on their own
//! connections (`replicas`).

use std::time::Duration;

use sqlx::mysql::MySqlRow;
use sqlx::{AssertSqlSafe, MySqlConnection, Row as _};

use super::super::Flavor;
use super::super::errors::number;
use super::super::session::{Session, statement};
use crate::monitor::policy::{self, Holder, Load, OpenTransaction, Purge};
use crate::monitor::sample::{Backend, Request, shorten};

/// `ER_SPECIFIC_ACCESS_DENIED_ERROR`: the account lacks a privilege (`PROCESS`) the statement
/// needs.
const ACCESS_DENIED: u16 = 1227;

/// The server's own threads, which `Threads_running` counts and the application does not run:
/// by the processlist's `COMMAND` (the event scheduler, a replica's binary log dump, MariaDB's
/// replication threads), or its `USER` (MySQL's replication threads).
const SERVER_THREADS: &str = "(COMMAND IN ('Daemon', 'Binlog Dump', 'Binlog Dump GTID', \
    'Slave_IO', 'Slave_SQL', 'Slave_worker') OR USER = 'system user')";

/// The counters of one full sample, from `SHOW GLOBAL STATUS` and the processlist.
struct Counters {
    running: u64,
    connected: u64,
    max_connections: u64,
    /// Running threads that are the server's own or our batches (not the monitor).
    not_theirs: u64,
    /// `Innodb_history_list_length`, where the server has it (MariaDB).
    history_length: Option<u64>,
}

/// The server's load for the monitor's full sample, in one read-only transaction bounded by
/// the request's timeout.
pub async fn read(session: &mut Session, request: &Request<'_>) -> Result<Load, sqlx::Error> {
    let flavor = session.server.flavor;
    let (mut tx, _) = session
        .begin_bounded(request.timeout, request.timeout, true)
        .await?;
    let conn = &mut *tx.tx;
    let counters = counters(conn, request.batches).await?;
    let history_length = match counters.history_length {
        Some(length) => Some(length),
        None => permitted(history_length(conn, flavor).await)?.flatten(),
    };
    let (holder, idle) = match permitted(transactions(conn, request.sessions).await)? {
        Some((oldest, idle)) => (oldest.map_or(Holder::Nobody, Holder::Oldest), idle),
        None => (Holder::Unseen, None),
    };
    tx.commit().await?;
    Ok(Load {
        connections: u32::try_from(counters.connected).unwrap_or(u32::MAX),
        max_connections: u32::try_from(counters.max_connections).unwrap_or(u32::MAX),
        idle_in_transaction: idle,
        replicas: Vec::new(),
        // The monitor's own statement runs too.
        active_sessions: counters
            .running
            .saturating_sub(1)
            .saturating_sub(counters.not_theirs),
        autovacuum: Vec::new(),
        purge: history_length.map(|history_length| Purge {
            history_length,
            holder,
        }),
    })
}

/// `Ok(None)` for a statement the account may not run.
fn permitted<T>(result: Result<T, sqlx::Error>) -> Result<Option<T>, sqlx::Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if number(&e) == Some(ACCESS_DENIED) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The list of `IN (…)` for `n` bound thread ids: `?, ?, …`, or for none an id no thread has
/// (`NOT IN` an empty list would be a syntax error, and `NOT IN (NULL)` never true).
fn placeholders(n: usize) -> String {
    if n == 0 {
        return "-1".to_owned();
    }
    vec!["?"; n].join(", ")
}

/// The status counters, `max_connections`, and how many running threads are not the
/// application's: the server's own and our `batches` (as far as the processlist shows them).
async fn counters(
    conn: &mut MySqlConnection,
    batches: &[Backend],
) -> Result<Counters, sqlx::Error> {
    let status = sqlx::raw_sql(
        "SHOW GLOBAL STATUS WHERE Variable_name IN \
         ('Threads_running', 'Threads_connected', 'Innodb_history_list_length')",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut counters = Counters {
        running: 0,
        connected: 0,
        max_connections: 0,
        not_theirs: 0,
        history_length: None,
    };
    for row in &status {
        let name: String = row.try_get(0)?;
        let value: String = row.try_get(1)?;
        let value = value.trim().parse().unwrap_or(0);
        match name.to_ascii_lowercase().as_str() {
            "threads_running" => counters.running = value,
            "threads_connected" => counters.connected = value,
            _ => counters.history_length = Some(value),
        }
    }
    let sql = format!(
        "SELECT CAST(@@max_connections AS SIGNED), CAST(COUNT(*) AS SIGNED) \
           FROM information_schema.PROCESSLIST \
          WHERE COMMAND <> 'Sleep' AND ID <> CONNECTION_ID() \
            AND ({SERVER_THREADS} OR ID IN ({}))",
        placeholders(batches.len())
    );
    let mut query = statement(&sql);
    for batch in batches {
        query = query.bind(batch.pid);
    }
    let row = query.fetch_one(&mut *conn).await?;
    counters.max_connections = unsigned(row.try_get(0)?);
    counters.not_theirs = unsigned(row.try_get(1)?);
    Ok(counters)
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The history list's length where `Innodb_history_list_length` is not a status variable:
/// MySQL's `trx_rseg_history_len` while that counter is enabled (it is by default), else the
/// line `SHOW ENGINE INNODB STATUS` prints. Both need `PROCESS`.
async fn history_length(
    conn: &mut MySqlConnection,
    flavor: Flavor,
) -> Result<Option<u64>, sqlx::Error> {
    if flavor == Flavor::MySql {
        let metric: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(COUNT AS SIGNED) FROM information_schema.INNODB_METRICS \
             WHERE NAME = 'trx_rseg_history_len' AND STATUS = 'enabled'",
        )
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(length) = metric {
            return Ok(Some(unsigned(length)));
        }
    }
    let status = sqlx::raw_sql(AssertSqlSafe("SHOW ENGINE INNODB STATUS".to_owned()))
        .fetch_optional(&mut *conn)
        .await?;
    match status {
        Some(row) => Ok(history_in(&row.try_get::<String, _>("Status")?)),
        None => Ok(None),
    }
}

/// The number on `History list length N` in `SHOW ENGINE INNODB STATUS`.
fn history_in(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.trim().strip_prefix("History list length "))
        .and_then(|n| n.trim().parse().ok())
}

/// The open transactions the policy names: the oldest, and the longest idle one (its session
/// asleep between statements), each with how long; neither the monitor's nor one on our
/// workers' `sessions`. All of those, not only the batches running when the sample began: a
/// worker's next batch may begin while the sample runs, and `trx_started` has whole seconds,
/// so a batch begun in the same second as the transaction that holds purge back would tie
/// with it. `INNODB_TRX` shows other accounts' transactions only with `PROCESS`.
async fn transactions(
    conn: &mut MySqlConnection,
    sessions: &[i64],
) -> Result<(Option<OpenTransaction>, Option<(policy::Session, Duration)>), sqlx::Error> {
    let rows = transactions_query(sessions).fetch_all(conn).await?;
    let mut oldest = None;
    let mut idle = None;
    for row in &rows {
        let trx = open_transaction(row)?;
        if row.try_get::<i64, _>("kind")? == 0 {
            oldest = Some(trx);
        } else {
            let idle_s = unsigned(row.try_get("idle_s")?);
            idle = Some((trx.session, Duration::from_secs(idle_s)));
        }
    }
    Ok((oldest, idle))
}

/// Two rows at most: `kind` 0 the oldest open transaction, 1 the one idle for longest.
fn transactions_query(
    sessions: &[i64],
) -> sqlx::query::Query<'static, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    let one = |kind: u8, filter: &str, order: &str| {
        format!(
            "(SELECT {kind} AS kind, CAST(t.trx_id AS UNSIGNED) AS id, \
                     CAST(t.trx_mysql_thread_id AS SIGNED) AS thread, \
                     CAST(TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) AS SIGNED) AS age_us, \
                     CAST(COALESCE(CONCAT(p.USER, '@', p.HOST), '') AS CHAR) AS account, \
                     CAST(COALESCE(t.trx_query, '') AS CHAR) AS query, \
                     CAST(COALESCE(p.TIME, 0) AS SIGNED) AS idle_s \
                FROM information_schema.INNODB_TRX t \
                LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
               WHERE t.trx_mysql_thread_id <> CONNECTION_ID() \
                 AND t.trx_mysql_thread_id NOT IN ({}){filter} \
               ORDER BY {order} LIMIT 1)",
            placeholders(sessions.len())
        )
    };
    let sql = format!(
        "{} UNION ALL {}",
        one(0, "", "t.trx_started"),
        one(1, " AND p.COMMAND = 'Sleep'", "p.TIME DESC")
    );
    let mut query = statement(&sql);
    for _ in 0..2 {
        for pid in sessions {
            query = query.bind(*pid);
        }
    }
    query
}

fn open_transaction(row: &MySqlRow) -> Result<OpenTransaction, sqlx::Error> {
    Ok(OpenTransaction {
        id: row.try_get("id")?,
        session: policy::Session {
            pid: row.try_get("thread")?,
            query: shorten(&row.try_get::<String, _>("query")?),
        },
        account: row.try_get("account")?,
        age: Duration::from_micros(unsigned(row.try_get("age_us")?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_list_length_is_read_from_the_innodb_status() {
        let status = "------------\nTRANSACTIONS\n------------\nTrx id counter 52232\n\
                      Purge done for trx's n:o < 0 undo n:o < 0 state: running but idle\n\
                      History list length 1234567\nLIST OF TRANSACTIONS FOR EACH SESSION:\n";
        assert_eq!(history_in(status), Some(1_234_567));
        assert_eq!(history_in("no such line"), None);
    }

    #[test]
    fn an_empty_list_of_threads_matches_none() {
        assert_eq!(placeholders(0), "-1");
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
