//! The walk of `verify --values`, whichever the database: the whole table in read-only keyset
//! batches of the job's `batch.max` keys over the same key ranges as a run (the plan's
//! upper-bound walk), the job's pause between them, a batch that met a lock or statement
//! timeout, a deadlock or a serialization failure tried again, and what the batches found
//! added up. Writes nothing.
//!
//! Each database runs one batch's statements ([`Batches`]), in a transaction bounded as it
//! bounds them, and decodes their rows with [`Counts::read`] and [`differing_rows`]. A trait, not
//! the seam's enum: the walk is one loop that both databases' `values` call with their own
//! connection, and no caller outside them sees it.

use std::time::Duration;

use tokio::sync::watch;

use crate::failure::Failure;
use crate::plan::Key;
use crate::progress::scan::Scan;
use crate::rows::Fields;

use super::{Difference, SHOWN, Subject, Values, VerifyError};

/// Counts of one key range.
pub struct Counts {
    rows: u64,
    differing: u64,
    written: u64,
    pending: u64,
}

impl Counts {
    /// The row of the comparison's `counts` statement: the range's rows, those whose `[set]`
    /// columns differ, those of them that no longer match `where`, and those still matching
    /// it, each a `bigint`.
    pub fn read(row: &impl Fields) -> Result<Counts, sqlx::Error> {
        let n = |i: usize| -> Result<u64, sqlx::Error> {
            Ok(u64::try_from(row.field::<i64>(i)?).unwrap_or_default())
        };
        Ok(Counts {
            rows: n(0)?,
            differing: n(1)?,
            written: n(2)?,
            pending: n(3)?,
        })
    }
}

/// The rows of the comparison's `differences` statement: each the key's columns, then for each
/// of the job's `[set]` columns its value and its expression's, all as text.
pub fn differing_rows(
    rows: &[impl Fields],
    s: &Subject<'_>,
) -> Result<Vec<Difference>, sqlx::Error> {
    let n = s.plan.key_len;
    rows.iter()
        .map(|row| {
            let key = (0..n).map(|i| row.field(i)).collect::<Result<_, _>>()?;
            let values = (0..s.job.set.len())
                .map(|c| Ok((row.field(n + 2 * c)?, row.field(n + 2 * c + 1)?)))
                .collect::<Result<_, sqlx::Error>>()?;
            Ok(Difference { key, values })
        })
        .collect()
}

/// What the walk asks of a database, one batch at a time, each in its own read-only
/// transaction.
pub(crate) trait Batches {
    /// The batch of at most `size` keys after `cursor` (`None`: from the first), up to `end`:
    /// its upper key (`end` when fewer keys are left) and its counts.
    async fn compare(
        &mut self,
        cursor: Option<&[String]>,
        end: &[String],
        size: u32,
    ) -> Result<(Key, Counts), sqlx::Error>;

    /// The first `limit` differing rows in `(cursor, upper]`.
    async fn differences(
        &mut self,
        cursor: Option<&[String]>,
        upper: &[String],
        limit: usize,
    ) -> Result<Vec<Difference>, sqlx::Error>;

    /// What `err`, from either, means: the database's own error classes.
    fn classify(&self, err: &sqlx::Error) -> Failure;
}

/// Walks the keys up to `end` (`None`: an empty table) with `batches`, comparing values;
/// `rows` is the table's size as far as the database knows, for the progress display. What it
/// found and the rows still pending; `None` when `shutdown` stopped it.
pub(crate) async fn walk(
    batches: &mut impl Batches,
    s: &Subject<'_>,
    end: Option<Key>,
    rows: Option<u64>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<(Values, u64)>, VerifyError> {
    let size = s.job.batch.max;
    let mut scan = Scan::new(&s.job.name, rows);
    let mut found = Values::default();
    let mut pending = 0;
    let mut cursor: Option<Vec<String>> = None;
    while let Some(end) = &end {
        let mut attempt = 0;
        let (upper, counts) = loop {
            match batches.compare(cursor.as_deref(), end, size).await {
                Ok(done) => break done,
                Err(e)
                    if transient(batches.classify(&e)) && attempt < crate::engine::MAX_ATTEMPTS =>
                {
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
            let rows = batches
                .differences(cursor.as_deref(), &upper, limit)
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

/// What stops the walk at the batch after `cursor` (`None`: the first, or before it).
pub(crate) fn walk_error(
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

/// Lock and statement timeouts, deadlocks and serialization failures: try the batch again
/// (on the same connection: one that is gone stops the walk).
fn transient(failure: Failure) -> bool {
    matches!(
        failure,
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
