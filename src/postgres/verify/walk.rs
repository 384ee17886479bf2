//! The walk of `verify --values`: the whole table in read-only keyset batches over the same
//! key ranges as a run (the plan's upper-bound walk), each in a transaction bounded by the
//! job's timeouts, the job's pause between them, lock and statement timeouts tried again.

use std::time::Duration;

use sqlx::{PgConnection, Row as _};
use tokio::sync::watch;

use crate::postgres::plan::compare::Comparison;
use crate::postgres::{
    Failure, begin_bounded, begin_read_only, bind_keys, classify, fetch_key, statement,
};
use crate::progress::scan::Scan;

use crate::verify::{Difference, SHOWN, Subject, Values, Verdict, VerifyError};

use super::with_past_end;

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
    conn: &mut PgConnection,
    s: &Subject<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Verdict>, VerifyError> {
    let comparison = Comparison::new(s.job, s.catalog);
    let table = &s.plan.table;
    let walk_error = |cursor: Option<&[String]>| {
        let cursor = cursor.map_or("the start".to_owned(), |c| format!("({})", c.join(", ")));
        move |source| VerifyError::Walk {
            table: table.clone(),
            cursor,
            source,
        }
    };
    let size = s.job.batch.max;
    let estimate = crate::postgres::preflight::estimate::pending_rows(conn, s.plan, false)
        .await
        .map_err(walk_error(None))?;
    let end = {
        let mut tx = begin_read_only(conn).await.map_err(walk_error(None))?;
        let end = crate::postgres::table::range_end(&mut tx, &s.plan.walk).await;
        tx.commit().await.map_err(walk_error(None))?;
        end.map_err(walk_error(None))?
    };
    let mut scan = Scan::new(&s.job.name, estimate.table_rows);
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
                    return Err(walk_error(cursor.as_deref())(e));
                }
            }
        };
        if counts.differing > 0 && found.first.len() < SHOWN {
            let limit = SHOWN - found.first.len();
            let rows = differences(conn, s, &comparison, cursor.as_deref(), &upper, limit)
                .await
                .map_err(walk_error(cursor.as_deref()))?;
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
    let verdict = Verdict {
        pending,
        past_end: None,
        values: Some(found),
        failed: s.failed.clone(),
    };
    with_past_end(conn, s, verdict).await.map(Some)
}

/// Lock and statement timeouts, deadlocks and serialization failures: try the batch again.
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

/// The batch after `cursor`: its upper key and its counts, in one bounded read-only
/// transaction.
async fn compare_batch(
    conn: &mut PgConnection,
    s: &Subject<'_>,
    comparison: &Comparison,
    cursor: Option<&[String]>,
    end: &[String],
    size: u32,
) -> Result<(Vec<String>, Counts), sqlx::Error> {
    let t = &s.job.timeouts;
    let (mut tx, _) = begin_bounded(conn, t.statement, t.lock, true).await?;
    let after = cursor.unwrap_or_default();
    let walk = s.plan.walk.upper_bound.pick(cursor.is_some());
    let query = bind_keys(statement(walk), after.iter().chain(end).map(Some))
        .bind(i64::from(size.saturating_sub(1)));
    let upper = fetch_key(query, &mut tx)
        .await?
        .unwrap_or_else(|| end.to_vec());
    let counts = comparison.counts.pick(cursor.is_some());
    let row = bind_keys(statement(counts), after.iter().chain(&upper).map(Some))
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
    conn: &mut PgConnection,
    s: &Subject<'_>,
    comparison: &Comparison,
    cursor: Option<&[String]>,
    upper: &[String],
    limit: usize,
) -> Result<Vec<Difference>, sqlx::Error> {
    let t = &s.job.timeouts;
    let (mut tx, _) = begin_bounded(conn, t.statement, t.lock, true).await?;
    let after = cursor.unwrap_or_default();
    let sql = comparison.differences.pick(cursor.is_some());
    let rows = bind_keys(statement(sql), after.iter().chain(upper).map(Some))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let n = s.plan.key_len;
    rows.iter()
        .map(|row| {
            let key = (0..n).map(|i| row.try_get(i)).collect::<Result<_, _>>()?;
            let values = (0..s.job.set.len())
                .map(|c| Ok((row.try_get(n + 2 * c)?, row.try_get(n + 2 * c + 1)?)))
                .collect::<Result<_, sqlx::Error>>()?;
            Ok(Difference { key, values })
        })
        .collect()
}
