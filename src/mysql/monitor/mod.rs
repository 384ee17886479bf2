//! What the monitor and the latency guard ask of MySQL and MariaDB: the role, what it may see,
//! a sample, cancelling our own batches, and the guard's timed probe.
//!
//! A sample reads the metadata locks on the table every time (`locks`), and on a full sample
//! the server's load and InnoDB's purge backlog (`load`) and the job's `throttle_query`.

use std::time::{Duration, Instant};

use sqlx::{MySqlConnection, Row as _};

use super::Flavor;
use super::errors::ends_in_time;
use super::session::{Session, statement};
use crate::monitor::policy::Wal;
use crate::monitor::sample::{Backend, Request, Sampled};
use crate::postgres::privileges::MysqlSight;
use crate::rows::bind_keys;

mod load;
mod locks;
pub mod replicas;

/// `CURRENT_USER()`: the account (`user@host`) whose privileges the session has.
pub async fn role(conn: &mut MySqlConnection) -> Result<String, sqlx::Error> {
    statement("SELECT CAST(CURRENT_USER() AS CHAR)")
        .fetch_one(conn)
        .await?
        .try_get(0)
}

/// Whether the session's account holds the global `PROCESS` privilege, which it needs to see
/// other accounts' sessions in the processlist.
pub async fn sees_all(conn: &mut MySqlConnection) -> Result<bool, sqlx::Error> {
    let grants: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe("SHOW GRANTS".to_owned()))
        .fetch_all(conn)
        .await?;
    Ok(grants.iter().any(|g| {
        let g = g.to_ascii_uppercase();
        g.contains(" ON *.*") && (g.contains("ALL PRIVILEGES") || g.contains("PROCESS"))
    }))
}

/// What the monitor sees of metadata locks on this server (see `locks`).
pub async fn sight(session: &mut Session) -> Result<MysqlSight, sqlx::Error> {
    let mariadb = session.server.flavor == Flavor::MariaDb;
    let metadata_locks =
        !mariadb && session.server.performance_schema && locks::readable(&mut session.conn).await?;
    Ok(MysqlSight {
        mariadb,
        metadata_locks,
    })
}

/// The job's `throttle_query` as a number: the first column of its first row, 0 for no row or
/// NULL. It runs as written, as one prepared statement (so one statement only), and its column
/// is read in the type the server sends: a float, an integer, or a `DECIMAL` or text number,
/// which travel as text. (PostgreSQL names the column by wrapping the query, `AS t(v)`; MariaDB
/// has no column list for a derived table, and MySQL's must name every column.)
pub async fn throttle_value(conn: &mut MySqlConnection, query: &str) -> Result<f64, sqlx::Error> {
    let Some(row) = statement(query).fetch_optional(conn).await? else {
        return Ok(0.0);
    };
    if let Ok(value) = row.try_get::<Option<f64>, _>(0) {
        return Ok(value.unwrap_or(0.0));
    }
    if let Ok(value) = row.try_get::<Option<i64>, _>(0) {
        return Ok(value.map_or(0.0, |v| v as f64));
    }
    if let Ok(value) = row.try_get::<Option<u64>, _>(0) {
        return Ok(value.map_or(0.0, |v| v as f64));
    }
    let Some(text) = row.try_get_unchecked::<Option<String>, _>(0)? else {
        return Ok(0.0);
    };
    text.trim().parse().map_err(|_| {
        sqlx::Error::Decode(format!("its first column, {text:?}, is not a number").into())
    })
}

/// One sample: on a full sample, the job's `throttle_query` and the server's load.
pub async fn sample(session: &mut Session, request: &Request<'_>) -> Result<Sampled, sqlx::Error> {
    let throttle_query = match (request.full, request.throttle_query) {
        (true, Some(query)) => {
            let (mut tx, _) = session
                .begin_bounded(request.timeout, request.timeout, true)
                .await?;
            let value = throttle_value(&mut tx.tx, query).await?;
            tx.commit().await?;
            Some(value)
        }
        _ => None,
    };
    let load = if request.full {
        Some((load::read(session, request).await?, Wal::default()))
    } else {
        None
    };
    let found = locks::read(session, request).await?;
    Ok(Sampled {
        locks: found.locks,
        in_the_way: found.in_the_way,
        waiting: found.waiting,
        statements: vec![],
        load,
        throttle_query,
    })
}

/// `KILL QUERY` for each of our `batches`; how many were signalled. A killed statement leaves
/// its transaction open, and the batch that sees error 1317 rolls it back.
pub async fn cancel(conn: &mut MySqlConnection, batches: &[Backend]) -> Result<usize, sqlx::Error> {
    let mut sent = 0;
    for batch in batches {
        match statement(&format!("KILL QUERY {}", batch.pid))
            .execute(&mut *conn)
            .await
        {
            Ok(_) => sent += 1,
            // ER_NO_SUCH_THREAD: the batch ended meanwhile.
            Err(e) if super::errors::number(&e) == Some(1094) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Times the guard's probe `sql` (bound to `key` when it reads one row by key) in a read-only
/// transaction bounded by `timeout`; a probe that runs into its timeout counts as that slow.
pub async fn time_probe(
    session: &mut Session,
    sql: &str,
    key: Option<&[String]>,
    timeout: Duration,
) -> Result<Duration, sqlx::Error> {
    let (mut tx, _) = session.begin_bounded(timeout, timeout, true).await?;
    let query = match key {
        Some(key) => bind_keys(statement(sql), key.iter().map(Some)),
        None => statement(sql),
    };
    let started = Instant::now();
    match query.execute(&mut *tx.tx).await {
        Ok(_) => {
            tx.commit().await?;
            Ok(started.elapsed())
        }
        Err(e) if ends_in_time(&e) => {
            let latency = started.elapsed();
            tx.tx.rollback().await?;
            Ok(latency)
        }
        Err(e) => Err(e),
    }
}
