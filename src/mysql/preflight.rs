//! The server's check of a job on MySQL and MariaDB: the key range, the next batch's bounds,
//! `EXPLAIN FORMAT=JSON` of its key walk and its `UPDATE` (so that the server itself parses the
//! job's `where` and `[set]`), the job's throttle query and probe run once, the connections in
//! use, and the pending rows' estimate (see `crate::preflight` for what each is for).
//!
//! Neither server can sample blocks, so the estimate's sample (`RAND(0) < p`) reads the whole
//! table once, on the first run of a job (later runs use the estimate the job keeps); a table
//! of at most [`COUNT_BELOW`] rows, as InnoDB last estimated them, is simply counted.

use sqlx::mysql::MySqlRow;
use sqlx::{MySqlConnection, Row as _};

use super::session::{begin_reading, statement};
use super::table::{bind_compared, range_end, relation_size, upper_bound};
use crate::db::Failure;
use crate::job::Job;
use crate::plan::{Plan, START_LOCK_TIMEOUT};
use crate::preflight::estimate::{Estimate, Method, Sample, choose, count, sample_percent};
use crate::preflight::{Preflight, PreflightError, Start};

/// Tables of at most this many rows are counted rather than sampled: as fast, and exact.
pub const COUNT_BELOW: u64 = 1_000_000;

/// Client connections in use (other than this one) and `max_connections`. `Threads_connected`
/// counts every client session, and needs no privilege to read, unlike the process list, which
/// shows a user without `PROCESS` only its own sessions.
pub async fn connections(conn: &mut MySqlConnection) -> Result<(u32, u32), sqlx::Error> {
    let status = statement("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        .fetch_one(&mut *conn)
        .await?;
    let connected: u32 = text(&status, 1)?.trim().parse().unwrap_or(0);
    let max: i64 = statement("SELECT CAST(@@GLOBAL.max_connections AS SIGNED)")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    Ok((
        connected.saturating_sub(1),
        u32::try_from(max).unwrap_or(u32::MAX),
    ))
}

/// A text column that MySQL 9 may send as bytes (`SHOW`'s columns, launchbadge/sqlx#3387).
fn text(row: &MySqlRow, i: usize) -> Result<String, sqlx::Error> {
    match row.try_get::<String, _>(i) {
        Ok(text) => Ok(text),
        Err(_) => Ok(String::from_utf8_lossy(&row.try_get::<Vec<u8>, _>(i)?).into_owned()),
    }
}

/// Reads the range and `EXPLAIN`s the batch that `start` names, in one read-only transaction.
pub async fn check(
    conn: &mut MySqlConnection,
    job: &Job,
    plan: &Plan,
    start: &Start,
) -> Result<Preflight, PreflightError> {
    // Writes nothing, but `EXPLAIN UPDATE` needs a transaction that could (MariaDB).
    let mut tx = begin_reading(conn, START_LOCK_TIMEOUT, false)
        .await
        .map_err(PreflightError::Database)?;
    let conn = &mut *tx;
    first_json_format(conn).await?;
    let range_end = match &start.range_end {
        Some(end) => Some(end.clone()),
        None => range_end(conn, &plan.walk)
            .await
            .map_err(PreflightError::Database)?,
    };
    let after = start.after.as_deref();
    let (upper, walk_plan, update_plan) = match &range_end {
        None => (None, String::new(), String::new()),
        Some(end) => {
            let n = u64::from(start.size);
            let upper = upper_bound(conn, &plan.walk, after, end, n)
                .await
                .map_err(|e| rejected(e, plan.walk.upper_bound.pick(after.is_some())))?;
            let walk = plan.walk.upper_bound.pick(after.is_some());
            let walk_plan = explain(conn, walk, after, end, Some(n)).await?;
            // No key left before the end: the batch runs up to the end itself.
            let bound = upper.as_deref().unwrap_or(end);
            let update = plan.walk.update.pick(after.is_some());
            let update_plan = explain(conn, update, after, bound, None).await?;
            (upper, walk_plan, update_plan)
        }
    };
    let throttle_query = match &job.throttle.throttle_query {
        Some(query) => {
            let value = super::monitor::throttle_value(conn, query).await;
            Some(value.map_err(|source| PreflightError::ThrottleQuery {
                sql: query.clone(),
                source,
            })?)
        }
        None => None,
    };
    if let (true, Some(probe)) = (job.guard.enabled, &job.guard.probe) {
        statement(probe)
            .execute(&mut *conn)
            .await
            .map_err(|source| PreflightError::Probe {
                sql: probe.clone(),
                source,
            })?;
    }
    tx.commit().await.map_err(PreflightError::Database)?;
    Ok(Preflight {
        range_end,
        after: start.after.clone(),
        upper,
        walk_plan,
        update_plan,
        throttle_query,
    })
}

/// Has `EXPLAIN FORMAT=JSON` write its first format, as MariaDB and MySQL before 8.3 do:
/// MySQL 9's default second format explains a single-table `UPDATE` as only `<not executable
/// by iterator executor>`. A server without the setting (`ER_UNKNOWN_SYSTEM_VARIABLE`) writes
/// the first format anyway.
async fn first_json_format(conn: &mut MySqlConnection) -> Result<(), PreflightError> {
    match statement("SET SESSION explain_json_format_version = 1")
        .execute(conn)
        .await
    {
        Err(e) if super::errors::number(&e) != Some(1193) => Err(PreflightError::Database(e)),
        _ => Ok(()),
    }
}

/// A failed statement of the check: a lock wait, a timeout or a lost connection says nothing
/// about the job's SQL; anything else is the server refusing it.
fn rejected(source: sqlx::Error, sql: &str) -> PreflightError {
    match crate::db::classify(&source) {
        Failure::Transient { .. } => PreflightError::Database(source),
        Failure::Fatal => PreflightError::Rejected {
            sql: sql.to_owned(),
            source,
        },
    }
}

/// `EXPLAIN FORMAT=JSON` of `sql` over `(lower, upper]` (and the walk's offset `n - 1`).
async fn explain(
    conn: &mut MySqlConnection,
    sql: &str,
    lower: Option<&[String]>,
    upper: &[String],
    n: Option<u64>,
) -> Result<String, PreflightError> {
    let mut query = statement(&format!("EXPLAIN FORMAT=JSON {sql}"));
    if let Some(lower) = lower {
        query = bind_compared(query, lower);
    }
    query = bind_compared(query, upper);
    if let Some(n) = n {
        query = query.bind(n.saturating_sub(1));
    }
    let row = query.fetch_one(conn).await.map_err(|e| rejected(e, sql))?;
    text(&row, 0).map_err(PreflightError::Database)
}

/// Rows still matching `where`: counted with `exact` or on a table of at most [`COUNT_BELOW`]
/// rows, else scaled from a sample of about as many rows as PostgreSQL's block sample reads.
pub async fn pending_rows(
    conn: &mut MySqlConnection,
    plan: &Plan,
    exact: bool,
) -> Result<Estimate, sqlx::Error> {
    let mut tx = begin_reading(conn, START_LOCK_TIMEOUT, true).await?;
    let conn = &mut *tx;
    let size = relation_size(conn, &plan.table).await?;
    let small = size.rows.is_none_or(|rows| rows <= COUNT_BELOW);
    let estimate = if exact || small {
        let n: i64 = statement(&plan.pending_count)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        Estimate {
            rows: count(n),
            table_rows: None,
            method: Method::Exact,
        }
    } else {
        let percent = sample_percent(size.blocks);
        let row = statement(&plan.pending_sample)
            .bind(percent)
            .fetch_one(&mut *conn)
            .await?;
        choose(
            None,
            Sample {
                matched: count(row.try_get(0)?),
                rows: count(row.try_get(1)?),
                percent,
                counted: size.rows.map(|rows| rows as f64),
            },
        )
    };
    tx.commit().await?;
    Ok(estimate)
}
