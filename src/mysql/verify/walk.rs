//! The walk of `verify --values` on MySQL and MariaDB: the whole table in read-only keyset
//! batches over the same key ranges as a run (the plan's upper-bound walk), each in a
//! transaction whose lock waits the job's lock timeout bounds and whose statements its
//! statement timeout bounds (MariaDB's `max_statement_time`, MySQL's `max_execution_time`,
//! which bounds only `SELECT`s — all the walk runs), the job's pause between them, lock waits,
//! deadlocks and timeouts tried again.

use std::time::Duration;

use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::query::Query;
use sqlx::{MySql, MySqlConnection, Row as _};
use tokio::sync::watch;

use crate::db::{Failure, classify};
use crate::mysql::Flavor;
use crate::mysql::plan::compare::{Comparison, comparison};
use crate::mysql::session::{begin_reading, statement};
use crate::mysql::table::{bind_compared, range_end, relation_size, upper_bound};
use crate::plan::Statements;
use crate::progress::scan::Scan;
use crate::verify::{Difference, SHOWN, Subject, Values, Verdict, VerifyError};

/// Counts of one key range.
struct Counts {
    rows: u64,
    differing: u64,
    written: u64,
    pending: u64,
}

/// Walks the whole table in read-only batches of the job's `batch.max` keys, the job's pause
/// between them, comparing values. `None` when `shutdown` stopped it.
pub async fn values(
    conn: &mut MySqlConnection,
    s: &Subject<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Verdict>, VerifyError> {
    let bound = Bound::set(conn, s.job.timeouts.statement)
        .await
        .map_err(walk_error(s, None))?;
    let walked = walk(conn, s, shutdown).await;
    bound.reset(conn).await.map_err(walk_error(s, None))?;
    let Some((found, pending)) = walked? else {
        return Ok(None);
    };
    let past_end = super::past_end(conn, s, pending)
        .await
        .map_err(|source| super::count_error(s, source))?;
    Ok(Some(Verdict {
        pending,
        past_end,
        values: Some(found),
        failed: s.failed.clone(),
    }))
}

/// The walk itself: what it found and the rows still pending; `None` when stopped.
async fn walk(
    conn: &mut MySqlConnection,
    s: &Subject<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<(Values, u64)>, VerifyError> {
    let table = &s.plan.table;
    let comparison = comparison(s.job, s.catalog);
    let size = s.job.batch.max;
    let (rows, end) = {
        let mut tx = begin_reading(conn, s.job.timeouts.lock, true)
            .await
            .map_err(walk_error(s, None))?;
        let rows = relation_size(&mut tx, table).await.map(|size| size.rows);
        let end = range_end(&mut tx, &s.plan.walk).await;
        tx.commit().await.map_err(walk_error(s, None))?;
        (
            rows.map_err(walk_error(s, None))?,
            end.map_err(walk_error(s, None))?,
        )
    };
    let mut scan = Scan::new(&s.job.name, rows);
    let mut found = Values::default();
    let mut pending = 0;
    let mut cursor: Option<Vec<String>> = None;
    while let Some(end) = &end {
        let mut attempt = 0;
        let (upper, counts) = loop {
            let batch = compare_batch(conn, s, &comparison, cursor.as_deref(), end, size).await;
            match batch {
                Ok(done) => break done,
                Err(e) if transient(&e) && attempt < crate::engine::MAX_ATTEMPTS => {
                    attempt += 1;
                    if pause(shutdown, Duration::from_secs(1)).await {
                        scan.finish();
                        return Ok(None);
                    }
                }
                Err(e) => {
                    scan.finish();
                    return Err(walk_error(s, cursor.as_deref())(e));
                }
            }
        };
        if counts.differing > 0 && found.first.len() < SHOWN {
            let limit = SHOWN - found.first.len();
            let rows = differences(conn, s, &comparison, cursor.as_deref(), &upper, limit)
                .await
                .map_err(walk_error(s, cursor.as_deref()))?;
            found.first.extend(rows);
        }
        found.rows += counts.rows;
        found.differing += counts.differing;
        found.written += counts.written;
        pending += counts.pending;
        scan.advance(found.rows, found.differing);
        if &upper == end {
            break;
        }
        cursor = Some(upper);
        if pause(shutdown, s.job.batch.pause).await {
            scan.finish();
            return Ok(None);
        }
    }
    scan.finish();
    Ok(Some((found, pending)))
}

/// What stops the walk at the batch after `cursor` (`None`: the first).
fn walk_error(
    s: &Subject<'_>,
    cursor: Option<&[String]>,
) -> impl FnOnce(sqlx::Error) -> VerifyError + use<> {
    let table = s.plan.table.clone();
    let cursor = cursor.map_or("the start".to_owned(), |c| format!("({})", c.join(", ")));
    move |source| VerifyError::Walk {
        table,
        cursor,
        source,
    }
}

/// The session variable that bounds the walk's statements, set for the walk and put back to
/// the server's default after it.
struct Bound(Option<&'static str>);

impl Bound {
    /// Bounds every statement of this session by `limit` (none when zero): MariaDB's
    /// `max_statement_time` in seconds, MySQL's `max_execution_time` in milliseconds.
    async fn set(conn: &mut MySqlConnection, limit: Duration) -> Result<Bound, sqlx::Error> {
        if limit.is_zero() {
            return Ok(Bound(None));
        }
        let version: String = statement("SELECT CAST(VERSION() AS CHAR)")
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        let (variable, value) = match Flavor::of_version(&version) {
            Flavor::MariaDb => ("max_statement_time", limit.as_secs_f64().to_string()),
            Flavor::MySql => ("max_execution_time", limit.as_millis().max(1).to_string()),
        };
        statement(&format!("SET SESSION {variable} = {value}"))
            .execute(&mut *conn)
            .await?;
        Ok(Bound(Some(variable)))
    }

    async fn reset(self, conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
        if let Some(variable) = self.0 {
            statement(&format!("SET SESSION {variable} = DEFAULT"))
                .execute(conn)
                .await?;
        }
        Ok(())
    }
}

/// Lock waits, deadlocks and statement timeouts: try the batch again.
fn transient(e: &sqlx::Error) -> bool {
    matches!(
        classify(e),
        Failure::Transient {
            reconnect: false,
            ..
        }
    )
}

/// Sleeps `d`; true when `shutdown` came first (or had come).
async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// A range's statement with its binds: the lower key when there is one, then the upper.
fn ranged(
    sql: &Statements,
    cursor: Option<&[String]>,
    upper: &[String],
) -> Query<'static, MySql, MySqlArguments> {
    let mut query = statement(sql.pick(cursor.is_some()));
    if let Some(cursor) = cursor {
        query = bind_compared(query, cursor);
    }
    bind_compared(query, upper)
}

/// The batch after `cursor`: its upper key and its counts, in one bounded read-only
/// transaction.
async fn compare_batch(
    conn: &mut MySqlConnection,
    s: &Subject<'_>,
    comparison: &Comparison,
    cursor: Option<&[String]>,
    end: &[String],
    size: u32,
) -> Result<(Vec<String>, Counts), sqlx::Error> {
    let mut tx = begin_reading(conn, s.job.timeouts.lock, true).await?;
    let upper = upper_bound(&mut tx, &s.plan.walk, cursor, end, u64::from(size))
        .await?
        .unwrap_or_else(|| end.to_vec());
    let row = ranged(&comparison.counts, cursor, &upper)
        .fetch_one(&mut *tx)
        .await?;
    let n = |i: usize| -> Result<u64, sqlx::Error> {
        Ok(u64::try_from(row.try_get::<i64, _>(i)?).unwrap_or_default())
    };
    let counts = Counts {
        rows: n(0)?,
        differing: n(1)?,
        written: n(2)?,
        pending: n(3)?,
    };
    tx.commit().await?;
    Ok((upper, counts))
}

/// The first `limit` differing rows in `(cursor, upper]`.
async fn differences(
    conn: &mut MySqlConnection,
    s: &Subject<'_>,
    comparison: &Comparison,
    cursor: Option<&[String]>,
    upper: &[String],
    limit: usize,
) -> Result<Vec<Difference>, sqlx::Error> {
    let mut tx = begin_reading(conn, s.job.timeouts.lock, true).await?;
    let rows = ranged(&comparison.differences, cursor, upper)
        .bind(u64::try_from(limit).unwrap_or(u64::MAX))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let n = s.plan.key_len;
    rows.iter()
        .map(|row| difference(row, n, s.job.set.len()))
        .collect()
}

/// One differing row: its `n` key columns, then each of `columns` `[set]` columns' value and
/// its expression's.
fn difference(row: &MySqlRow, n: usize, columns: usize) -> Result<Difference, sqlx::Error> {
    let key = (0..n).map(|i| row.try_get(i)).collect::<Result<_, _>>()?;
    let values = (0..columns)
        .map(|c| Ok((row.try_get(n + 2 * c)?, row.try_get(n + 2 * c + 1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Difference { key, values })
}
