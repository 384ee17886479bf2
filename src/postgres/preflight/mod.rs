//! The server's check of a job on PostgreSQL: the key range, the next batch's bounds, `EXPLAIN`
//! of its key walk and its `UPDATE`, and the job's own throttle query and probe run once (see
//! `crate::preflight` for what the check is for).

use sqlx::{PgConnection, Row as _};

use crate::job::Job;
use crate::plan::Plan;
use crate::plan::START_LOCK_TIMEOUT;
use crate::postgres::sample::throttle_query_sql;
use crate::postgres::{Failure, begin_bounded, begin_read_only, classify, fetch_key, statement};
use crate::preflight::{Preflight, PreflightError, Start};
use crate::rows::bind_keys;

/// Client connections in use (other than this one) and `max_connections`.
pub async fn connections(conn: &mut PgConnection) -> Result<(u32, u32), sqlx::Error> {
    let mut tx = begin_read_only(conn).await?;
    let row = statement(
        "SELECT (SELECT count(*) FROM pg_stat_activity \
                  WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())::int4, \
                current_setting('max_connections')::int4",
    )
    .fetch_one(&mut *tx)
    .await?;
    let (in_use, max): (i32, i32) = (row.try_get(0)?, row.try_get(1)?);
    tx.commit().await?;
    Ok((
        u32::try_from(in_use).unwrap_or(0),
        u32::try_from(max).unwrap_or(0),
    ))
}

/// Reads the range and `EXPLAIN`s the batch that `start` names.
pub async fn check(
    conn: &mut PgConnection,
    job: &Job,
    plan: &Plan,
    start: &Start,
) -> Result<Preflight, PreflightError> {
    // Not the job's lock timeout: the caller waits for DDL before the check, not in it.
    let (mut tx, _) = begin_bounded(conn, job.timeouts.statement, START_LOCK_TIMEOUT, true)
        .await
        .map_err(PreflightError::Database)?;
    let range_end = match &start.range_end {
        Some(end) => Some(end.clone()),
        None => super::table::range_end(&mut tx, &plan.walk)
            .await
            .map_err(PreflightError::Database)?,
    };
    let keys = |key: &Option<Vec<String>>| -> Vec<Option<String>> {
        match key {
            Some(key) => key.iter().cloned().map(Some).collect(),
            None => vec![None; plan.key_len],
        }
    };
    let after = start.after.iter().flatten().cloned().map(Some);
    let walk_binds: Vec<Option<String>> = after.clone().chain(keys(&range_end)).collect();
    let walk = plan.walk.upper_bound.pick(start.after.is_some());
    let walk_query = bind_keys(statement(walk), walk_binds.iter().map(Option::as_deref))
        .bind(i64::from(start.size.saturating_sub(1)));
    let upper = fetch_key(walk_query, &mut tx)
        .await
        .map_err(PreflightError::Database)?;
    // No key left before the end: the batch runs up to the end itself.
    let bound = upper.clone().or_else(|| range_end.clone());
    let update_binds: Vec<Option<String>> = after.chain(keys(&bound)).collect();
    let walk_plan = explain(&mut tx, walk, &walk_binds, Some(start.size)).await?;
    let update = plan.walk.update.pick(start.after.is_some());
    let update_plan = explain(&mut tx, update, &update_binds, None).await?;
    let throttle_query = match &job.throttle.throttle_query {
        Some(query) => Some(throttle_query(&mut tx, query).await?),
        None => None,
    };
    if let (true, Some(probe)) = (job.guard.enabled, &job.guard.probe) {
        statement(&crate::guard::custom_probe_sql(probe))
            .execute(&mut *tx)
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

/// `EXPLAIN` of `sql` with its key binds (and the walk's offset), as text lines.
async fn explain(
    conn: &mut PgConnection,
    sql: &str,
    keys: &[Option<String>],
    size: Option<u32>,
) -> Result<String, PreflightError> {
    let text = format!("EXPLAIN {sql}");
    let mut query = bind_keys(statement(&text), keys.iter().map(Option::as_deref));
    if let Some(size) = size {
        query = query.bind(i64::from(size.saturating_sub(1)));
    }
    let rows = query
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| match classify(&source) {
            // A lock wait, a timeout or a lost connection says nothing about the job's SQL.
            Failure::Transient { .. } => PreflightError::Database(source),
            Failure::Fatal => PreflightError::Rejected {
                sql: sql.to_owned(),
                source,
            },
        })?;
    let lines: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(lines.join("\n"))
}

/// Runs `throttle_query` as the monitor will.
async fn throttle_query(conn: &mut PgConnection, query: &str) -> Result<f64, PreflightError> {
    let sql = throttle_query_sql(query);
    let row = statement(&sql).fetch_one(conn).await;
    row.and_then(|row| row.try_get(0))
        .map_err(|source| PreflightError::ThrottleQuery {
            sql: query.to_owned(),
            source,
        })
}
pub mod estimate;
