//! `backfill verify`: the gate in front of the contract migration.
//!
//! Without `--values` it counts the rows still matching `where` and, when some do, says what is
//! true of the job from its row in the state table (it never ran here, it is still running, it
//! finished and rows were cleared again since, rows arrived past its range end) and what to do.
//! With `--values` it also walks the whole table in read-only keyset batches — the same key
//! ranges as a run, each in a transaction bounded by the job's timeouts, the job's pause
//! between them — and counts the rows whose `[set]` columns differ from their expressions
//! (`IS DISTINCT FROM`), keeping the first ones with both values: the check that the
//! application's dual write wrote what the backfill would have. An expression whose value
//! depends on when it runs (`now()`, `random()`) cannot be compared and is refused first.
//! Writes nothing. Owns verify's output; the walk's progress display is `progress::scan`'s.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{PgConnection, Row as _};
use thiserror::Error;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::db::{
    Failure, begin_bounded, begin_read_only, bind_keys, classify, fetch_key, statement,
};
use crate::job::Job;
use crate::plan::Plan;
use crate::plan::compare::Comparison;
use crate::preflight;
use crate::progress::scan::Scan;
use crate::sql::Ident;
use crate::sql::words::words;
use crate::state::JobRow;

/// How many differing rows `verify --values` shows.
pub const SHOWN: usize = 10;

/// Names that read the clock: SQL's `CURRENT_DATE`… keywords and the functions behind them.
/// Stable, not volatile, so `provolatile` alone lets them through; but their value is the time
/// of the transaction, which is not the time the backfill wrote the row.
const CLOCK: [&str; 10] = [
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "clock_timestamp",
    "timeofday",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
];

/// The volatilities (`i`, `s`, `v`) of the functions named `$2` (in schema `$1`, or visible
/// on the search path): the expression's text does not say which overload it calls, so every
/// one is looked at; NULL when no function has the name (`CAST(`, `COALESCE(` are syntax).
const VOLATILITY: &str = "SELECT string_agg(DISTINCT p.provolatile::text, '') FROM pg_proc p \
    WHERE p.proname = $2 AND CASE WHEN $1::text IS NULL THEN pg_function_is_visible(p.oid) \
    ELSE p.pronamespace = to_regnamespace($1)::oid END";

/// Why `verify` could not give its verdict.
#[derive(Debug, Error)]
pub enum VerifyError {
    #[error(
        "[set] {column} = {expr:?} cannot be verified with --values: {function} {why}, so its \
         value now is not the one the backfill wrote; verify without --values still counts the \
         rows matching `where`"
    )]
    NotComparable {
        column: String,
        expr: String,
        function: String,
        why: &'static str,
    },
    #[error("cannot look up the functions that the [set] expressions call")]
    Lookup(#[source] sqlx::Error),
    #[error("cannot count the rows of {table} that match `where`")]
    Count {
        table: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "verify --values stopped at the batch after {cursor} of {table}; run it again \
         (it writes nothing, so it may simply start over)"
    )]
    Walk {
        table: String,
        cursor: String,
        #[source]
        source: sqlx::Error,
    },
}

impl VerifyError {
    /// True when the job itself cannot be verified as asked (exit code 2).
    pub fn is_invalid_job(&self) -> bool {
        matches!(self, VerifyError::NotComparable { .. })
    }
}

/// One row whose `[set]` columns differ from their expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The row's key, as text.
    pub key: Vec<String>,
    /// For each `[set]` column: its value and its expression's (`None`: NULL).
    pub values: Vec<(Option<String>, Option<String>)>,
}

/// What the walk of `verify --values` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    /// Rows compared.
    pub rows: u64,
    /// Rows whose `[set]` columns differ from their expressions.
    pub differing: u64,
    /// Of those, the rows that no longer match `where`: something other than the backfill
    /// wrote them, and no run will rewrite them.
    pub written: u64,
    /// The first [`SHOWN`] of them, in key order.
    pub first: Vec<Difference>,
}

/// The verdict and what it rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Rows still matching `where`.
    pub pending: u64,
    /// Of those, the rows whose key is past the job's range end (when the job has one).
    pub past_end: Option<u64>,
    /// With `--values`.
    pub values: Option<Values>,
}

impl Verdict {
    /// Nothing pending and no value differs: the contract migration may go ahead.
    pub fn ok(&self) -> bool {
        self.pending == 0 && self.values.as_ref().is_none_or(|v| v.differing == 0)
    }
}

/// Everything `verify` needs about the job.
pub struct Subject<'a> {
    pub job: &'a Job,
    pub catalog: &'a Catalog,
    pub plan: &'a Plan,
    /// The job's row in the state table, if it has one.
    pub state: Option<&'a JobRow>,
}

/// Refuses, before anything is read, an expression whose value depends on when it is
/// evaluated: it calls a volatile function (any overload of the name), or reads the clock.
pub async fn check_comparable(conn: &mut PgConnection, job: &Job) -> Result<(), VerifyError> {
    let mut tx = begin_read_only(conn).await.map_err(VerifyError::Lookup)?;
    for a in &job.set {
        for word in words(&a.expr) {
            let refuse = |why| VerifyError::NotComparable {
                column: a.column.clone(),
                expr: a.expr.clone(),
                function: if word.call {
                    format!("{}()", word.name)
                } else {
                    word.name.to_uppercase()
                },
                why,
            };
            if !word.quoted && CLOCK.contains(&word.name.as_str()) {
                return Err(refuse("reads the clock"));
            }
            if !word.call {
                continue;
            }
            let kinds: Option<String> = statement(VOLATILITY)
                .bind(word.qualifier.as_deref())
                .bind(&word.name)
                .fetch_one(&mut *tx)
                .await
                .map_err(VerifyError::Lookup)?
                .get(0);
            if kinds.is_some_and(|k| k.contains('v')) {
                return Err(refuse(
                    "is volatile (it may return something else at every call)",
                ));
            }
        }
    }
    tx.commit().await.map_err(VerifyError::Lookup)?;
    Ok(())
}

/// Counts the rows still matching `where` (and, for a job with a range end, those past it).
pub async fn pending(conn: &mut PgConnection, s: &Subject<'_>) -> Result<Verdict, VerifyError> {
    let pending = preflight::pending_rows(conn, s.plan, true)
        .await
        .map_err(|source| count_error(s, source))?
        .rows;
    let verdict = Verdict {
        pending,
        past_end: None,
        values: None,
    };
    with_past_end(conn, s, verdict).await
}

fn count_error(s: &Subject<'_>, source: sqlx::Error) -> VerifyError {
    VerifyError::Count {
        table: s.plan.table.clone(),
        source,
    }
}

/// Adds how many of the pending rows are past the job's range end, when it has one.
async fn with_past_end(
    conn: &mut PgConnection,
    s: &Subject<'_>,
    verdict: Verdict,
) -> Result<Verdict, VerifyError> {
    let Some(end) = s.state.and_then(|row| row.range_end.as_ref()) else {
        return Ok(verdict);
    };
    if verdict.pending == 0 {
        return Ok(verdict);
    }
    let comparison = Comparison::new(s.job, s.catalog);
    let count = async {
        let mut tx = begin_read_only(conn).await?;
        let n: i64 = bind_keys(statement(&comparison.pending_after), end.iter().map(Some))
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        tx.commit().await?;
        Ok(u64::try_from(n).unwrap_or_default())
    };
    let past_end = count.await.map_err(|source| count_error(s, source))?;
    Ok(Verdict {
        past_end: Some(past_end),
        ..verdict
    })
}

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
    let estimate = preflight::pending_rows(conn, s.plan, false)
        .await
        .map_err(walk_error(None))?;
    let end = {
        let mut tx = begin_read_only(conn).await.map_err(walk_error(None))?;
        let end = preflight::range_end(&mut tx, s.plan).await;
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
    let walk = s.plan.upper_bound.pick(cursor.is_some());
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

/// What is true of the job when rows still match `where`, and what to do about it.
pub fn advice(job: &Job, state: Option<&JobRow>, verdict: &Verdict) -> String {
    let name = &job.name;
    let Some(row) = state else {
        return format!(
            "the job has no state here: it never ran against this database, or it was reset; \
             `backfill run {name}` fills them"
        );
    };
    if row.definition_hash != job.definition_hash() {
        return format!(
            "the job file changed since the job ran (its state is for another table, key, \
             `where` or [set]); `backfill run --restart {name}` runs the job as it is now"
        );
    }
    match row.status.as_str() {
        "done" => {
            let past = verdict.past_end.unwrap_or_default();
            let inside = verdict.pending.saturating_sub(past);
            let mut parts = Vec::new();
            if inside > 0 {
                parts.push(format!(
                    "{} inside its key range {} `where` again since it ran (cleared, or \
                     written so by the application)",
                    rows(inside),
                    if inside == 1 { "matches" } else { "match" }
                ));
            }
            if past > 0 {
                parts.push(format!(
                    "{} past its range end ({}) were inserted after it started and left to the \
                     application's dual write",
                    rows(past),
                    row.range_end.as_deref().unwrap_or_default().join(", ")
                ));
            }
            format!(
                "the job is done, yet {}; `backfill run --restart {name}` fills them again",
                parts.join(", and ")
            )
        }
        "cancelled" => format!(
            "the job was cancelled after {} rows; `backfill run --resume-cancelled {name}` \
             continues it",
            row.rows_done
        ),
        "failed" => format!(
            "the job failed after {} rows ({}); fix that, then `backfill run {name}` continues it",
            row.rows_done,
            row.last_error.as_deref().unwrap_or("no error recorded")
        ),
        _ if row.lease_is_live() => format!(
            "the job is running ({} rows so far); verify again once it is done",
            row.rows_done
        ),
        status => format!(
            "the job is {status} after {} rows; `backfill run {name}` continues it",
            row.rows_done
        ),
    }
}

/// `1 row`, `2 rows`.
fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".to_owned()
    } else {
        format!("{n} rows")
    }
}

/// The verdict as text for a person.
pub fn text(s: &Subject<'_>, verdict: &Verdict) -> String {
    let (job, table) = (s.job, &s.plan.table);
    let mut out = String::new();
    if verdict.pending == 0 {
        let _ = writeln!(
            out,
            "{}: no row of {table} matches `{}`",
            job.name, job.filter
        );
    } else {
        let verb = if verdict.pending == 1 {
            "matches"
        } else {
            "match"
        };
        let _ = writeln!(
            out,
            "{}: {} of {table} still {verb} `{}`; {}",
            job.name,
            rows(verdict.pending),
            job.filter,
            advice(job, s.state, verdict)
        );
    }
    if let Some(values) = &verdict.values {
        if values.differing == 0 {
            let _ = writeln!(
                out,
                "{}: the [set] columns of all {} equal their expressions",
                job.name,
                rows(values.rows)
            );
        } else {
            let _ = writeln!(
                out,
                "{}: {} of {} differ from their [set] expressions ({} of them no longer match `where`, so no run rewrites them); the first:",
                job.name,
                values.differing,
                rows(values.rows),
                values.written
            );
            for d in &values.first {
                let _ = writeln!(out, "  {}", difference_text(s, d));
            }
            if values.written > 0 {
                let _ = writeln!(
                    out,
                    "{}: something other than the backfill wrote those values (the \
                     application's dual write?): fix that writer, then correct the rows",
                    job.name
                );
            }
        }
    }
    if verdict.ok() {
        let _ = writeln!(
            out,
            "{}: verified — the contract migration may go ahead",
            job.name
        );
    }
    out
}

/// `(id)=(17): total_cents 119, expected 120`, as PostgreSQL writes keys in its messages.
fn difference_text(s: &Subject<'_>, d: &Difference) -> String {
    let names: Vec<String> = s.catalog.key.iter().map(|c| c.name.clone()).collect();
    let null = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".to_owned());
    let columns: Vec<String> = s
        .job
        .set
        .iter()
        .zip(&d.values)
        .filter(|(_, (value, expected))| value != expected)
        .map(|(a, (value, expected))| {
            format!(
                "{} {}, expected {}",
                Ident(&a.column),
                null(value),
                null(expected)
            )
        })
        .collect();
    format!(
        "({})=({}): {}",
        names.join(", "),
        d.key.join(", "),
        columns.join("; ")
    )
}

/// The verdict as one JSON object for a script.
pub fn json(s: &Subject<'_>, verdict: &Verdict) -> Value {
    let values = verdict.values.as_ref().map(|v| {
        let first: Vec<Value> = v
            .first
            .iter()
            .map(|d| {
                let key: serde_json::Map<String, Value> = s
                    .catalog
                    .key
                    .iter()
                    .zip(&d.key)
                    .map(|(c, k)| (c.name.clone(), json!(k)))
                    .collect();
                let columns: serde_json::Map<String, Value> = s
                    .job
                    .set
                    .iter()
                    .zip(&d.values)
                    .map(|(a, (value, expected))| {
                        (a.column.clone(), json!({"value": value, "expected": expected}))
                    })
                    .collect();
                json!({"key": key, "columns": columns})
            })
            .collect();
        json!({"rows": v.rows, "differing": v.differing, "no_longer_pending": v.written, "first": first})
    });
    json!({
        "job": s.job.name,
        "table": s.plan.table,
        "pending": verdict.pending,
        "past_range_end": verdict.past_end,
        "values": values,
        "advice": (verdict.pending > 0).then(|| advice(s.job, s.state, verdict)),
        "ok": verdict.ok(),
    })
}
