//! The server's check of a job before anything is written: reads the key range and the first
//! batch's bounds, and `EXPLAIN`s the key walk and the first batch's `UPDATE` so that PostgreSQL
//! itself parses and plans the job's `where` and `[set]` expressions. Runs in a read-only
//! transaction bounded by the job's timeouts; writes nothing, creates nothing. Used by `plan`
//! (which prints the result) and by `run` (which stops on a rejected expression). Runs the
//! `[throttle]` `throttle_query` once, so that a broken one stops the run before it starts
//! rather than pausing it later. Also estimates how many rows are still pending.

use sqlx::{PgConnection, Row as _};
use thiserror::Error;

use crate::db::{begin_bounded, begin_read_only, bind_keys, fetch_key, statement};
use crate::job::Job;
use crate::monitor::throttle_query_sql;
use crate::plan::Plan;

/// What the server said about the job's first batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Preflight {
    /// The greatest key now (`None`: the table is empty).
    pub range_end: Option<Vec<String>>,
    /// The first batch's inclusive upper key.
    pub first_upper: Option<Vec<String>>,
    /// `EXPLAIN` of the key walk that finds each batch's upper bound.
    pub walk_plan: String,
    /// `EXPLAIN` of the first batch's `UPDATE`.
    pub update_plan: String,
    /// What `throttle_query` returns now, when the job has one.
    pub throttle_query: Option<f64>,
}

impl Preflight {
    /// True when the key walk reads an index rather than scanning the table; without one,
    /// every batch costs a full scan and a run over a large table is quadratic.
    pub fn walk_uses_index(&self) -> bool {
        self.walk_plan.contains("Index Only Scan") || self.walk_plan.contains("Index Scan")
    }
}

/// Why the check failed.
#[derive(Debug, Error)]
pub enum PreflightError {
    #[error(
        "PostgreSQL rejected the job's SQL; check `where` and the [set] expressions\n  statement: {sql}"
    )]
    Rejected {
        sql: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "throttle.throttle_query failed; it must be a read-only SELECT whose first column is a \
         number (a result > 0 throttles the run)\n  statement: {sql}"
    )]
    ThrottleQuery {
        sql: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "{} worker{} would hold {} connections ({} batch, {}) and take the server to {} of max_connections {}, past max_connection_use {} ({}); at most {} worker{} fit now — use fewer (`run --workers`, `[batch] workers`) or add processes on other hosts later with `run --join`",
        .0.workers, plural(.0.workers), .0.per_process(), .0.workers, .0.extras_text(),
        .0.in_use + .0.per_process(), .0.max_connections, .0.share, .0.limit(), .0.most_workers(),
        plural(.0.most_workers())
    )]
    TooManyWorkers(Budget),
    #[error("cannot check the job against the database")]
    Database(#[source] sqlx::Error),
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The connections one process of a job holds, against the server's room for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// Batch loops of the process, one connection each.
    pub workers: u32,
    /// The monitor runs (one more connection); the heartbeat always does.
    pub monitor: bool,
    /// Client connections in use now, other than the one asking.
    pub in_use: u32,
    pub max_connections: u32,
    /// `[throttle] max_connection_use`.
    pub share: f64,
}

impl Budget {
    /// Connections one process holds: its workers', the heartbeat's and the monitor's.
    pub fn per_process(&self) -> u32 {
        self.workers + 1 + u32::from(self.monitor)
    }

    fn extras_text(&self) -> &'static str {
        if self.monitor {
            "the monitor's and the heartbeat's"
        } else {
            "the heartbeat's"
        }
    }

    /// The connections the monitor throttles above.
    pub fn limit(&self) -> u32 {
        (self.share * f64::from(self.max_connections)).floor() as u32
    }

    /// True unless the workers alone would push the server past `max_connection_use`. One
    /// worker always fits: that is how a run behaved before workers, and the monitor throttles
    /// it if the server is busy.
    pub fn fits(&self) -> bool {
        self.workers <= 1 || self.in_use + self.per_process() <= self.limit()
    }

    /// The most workers that fit now (at least one).
    pub fn most_workers(&self) -> u32 {
        let room = self.limit().saturating_sub(self.in_use);
        room.saturating_sub(self.per_process() - self.workers)
            .max(1)
    }
}

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

impl PreflightError {
    /// True when the job's own SQL is at fault (exit code 2).
    pub fn is_invalid_job(&self) -> bool {
        matches!(
            self,
            PreflightError::Rejected { .. }
                | PreflightError::ThrottleQuery { .. }
                | PreflightError::TooManyWorkers(_)
        )
    }
}

/// Reads the range and `EXPLAIN`s the first batch (of the first leaf partition, for a
/// partitioned table; a partitioned table without partitions has nothing to check).
pub async fn check(
    conn: &mut PgConnection,
    job: &Job,
    plan: &Plan,
    size: u32,
) -> Result<Preflight, PreflightError> {
    let Some(first) = plan.walks.first() else {
        return Ok(Preflight {
            range_end: None,
            first_upper: None,
            walk_plan: "(the table has no partitions)".into(),
            update_plan: "(the table has no partitions)".into(),
            throttle_query: None,
        });
    };
    let (mut tx, _) = begin_bounded(conn, job.timeouts.statement, job.timeouts.lock, true)
        .await
        .map_err(PreflightError::Database)?;
    let range_end = fetch_key(statement(&first.range_end), &mut tx)
        .await
        .map_err(PreflightError::Database)?;
    let end: Vec<Option<&str>> = match &range_end {
        Some(end) => end.iter().map(|v| Some(v.as_str())).collect(),
        None => vec![None; plan.key_len],
    };
    let walk = &first.upper_bound.from_start;
    let walk_query =
        bind_keys(statement(walk), end.iter().copied()).bind(i64::from(size.saturating_sub(1)));
    let first_upper = fetch_key(walk_query, &mut tx)
        .await
        .map_err(PreflightError::Database)?;
    let upper: Vec<Option<&str>> = match &first_upper {
        Some(u) => u.iter().map(|v| Some(v.as_str())).collect(),
        None => end.clone(),
    };
    let walk_plan = explain(&mut tx, walk, &end, Some(size)).await?;
    let update_plan = explain(&mut tx, &first.update.from_start, &upper, None).await?;
    let throttle_query = match &job.throttle.throttle_query {
        Some(query) => Some(throttle_query(&mut tx, query).await?),
        None => None,
    };
    tx.commit().await.map_err(PreflightError::Database)?;
    Ok(Preflight {
        range_end,
        first_upper,
        walk_plan,
        update_plan,
        throttle_query,
    })
}

/// `EXPLAIN` of `sql` with its key binds (and the walk's offset), as text lines.
async fn explain(
    conn: &mut PgConnection,
    sql: &str,
    keys: &[Option<&str>],
    size: Option<u32>,
) -> Result<String, PreflightError> {
    let text = format!("EXPLAIN {sql}");
    let mut query = bind_keys(statement(&text), keys.iter().copied());
    if let Some(size) = size {
        query = query.bind(i64::from(size.saturating_sub(1)));
    }
    let rows = query
        .fetch_all(&mut *conn)
        .await
        .map_err(|source| PreflightError::Rejected {
            sql: sql.to_owned(),
            source,
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

/// Rows still matching `where`: the planner's estimate, or an exact `count(*)`.
pub async fn pending_rows(
    conn: &mut PgConnection,
    plan: &Plan,
    exact: bool,
) -> Result<u64, sqlx::Error> {
    let mut tx = begin_read_only(conn).await?;
    let rows = if exact {
        let n: i64 = statement(&plan.pending_count)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        u64::try_from(n).unwrap_or_default()
    } else {
        // EXPLAIN's column is `json`, whose binary form is its text.
        let doc: String = statement(&plan.pending_estimate)
            .fetch_one(&mut *tx)
            .await?
            .try_get_unchecked(0)?;
        plan_rows(&doc)
    };
    tx.commit().await?;
    Ok(rows)
}

/// `Plan Rows` of the top node of an `EXPLAIN (FORMAT JSON)` document (0 when unreadable).
fn plan_rows(doc: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(doc)
        .ok()
        .and_then(|v| v.get(0)?.get("Plan")?.get("Plan Rows")?.as_f64())
        .map_or(0, |rows| rows.max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(workers: u32, in_use: u32) -> Budget {
        Budget {
            workers,
            monitor: true,
            in_use,
            max_connections: 100,
            share: 0.70,
        }
    }

    #[test]
    fn workers_that_fit_under_max_connection_use_are_allowed() {
        assert_eq!(budget(4, 10).per_process(), 6);
        assert!(budget(4, 10).fits());
        assert!(budget(4, 64).fits(), "64 + 6 = 70, at the limit");
        assert!(!budget(4, 65).fits());
    }

    #[test]
    fn one_worker_always_fits() {
        assert!(budget(1, 99).fits());
    }

    #[test]
    fn the_refusal_says_how_many_workers_fit() {
        let err = PreflightError::TooManyWorkers(budget(8, 61));
        assert!(err.is_invalid_job());
        assert_eq!(
            err.to_string(),
            "8 workers would hold 10 connections (8 batch, the monitor's and the heartbeat's) and take the server to 71 of max_connections 100, past max_connection_use 0.7 (70); at most 7 workers fit now — use fewer (`run --workers`, `[batch] workers`) or add processes on other hosts later with `run --join`"
        );
    }

    #[test]
    fn plan_rows_reads_the_top_node() {
        let doc = r#"[{"Plan": {"Node Type": "Seq Scan", "Plan Rows": 1234, "Plan Width": 0}}]"#;
        assert_eq!(plan_rows(doc), 1234);
    }

    #[test]
    fn unreadable_plan_is_zero() {
        assert_eq!(plan_rows("not json"), 0);
    }
}
