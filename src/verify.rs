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
//!
//! Layout: this file counts and advises; `comparable.rs` refuses what cannot be compared,
//! `walk.rs` is the `--values` walk, `report.rs` prints the verdict.

mod report;
pub(crate) mod walk;

pub use report::{json, text};

use thiserror::Error;

use crate::job::Job;

use crate::catalog::Catalog;

use crate::plan::Plan;

use crate::report::rows;

use crate::state::{FailedRow, JobRow};

/// How many differing rows `verify --values` shows.
pub const SHOWN: usize = 10;

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

    /// `Count` on `s`'s table: what a failed count of the rows matching `where` (or of those
    /// past the range end) becomes, on either database.
    pub(crate) fn count(s: &Subject<'_>, source: sqlx::Error) -> VerifyError {
        VerifyError::Count {
            table: s.plan.table.clone(),
            source,
        }
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

/// The rows the job could not backfill and set aside (`[batch] on_error = "skip"`), as its
/// `failures` table holds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failed {
    /// How many.
    pub count: u64,
    /// The first [`SHOWN`] of them, in the order they first failed.
    pub first: Vec<FailedRow>,
}

/// The verdict and what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Rows still matching `where`.
    pub pending: u64,
    /// Of those, the rows whose key is past the job's range end (when the job has one).
    pub past_end: Option<u64>,
    /// With `--values`.
    pub values: Option<Values>,
    /// The rows the job set aside: each still matches `where`, and a contract migration that
    /// relies on the column would meet it.
    pub failed: Failed,
}

impl Verdict {
    /// Nothing pending, nothing set aside, and no value differs: the contract migration may go
    /// ahead.
    pub fn ok(&self) -> bool {
        self.pending == 0
            && self.failed.count == 0
            && self.values.as_ref().is_none_or(|v| v.differing == 0)
    }
}

/// Everything `verify` needs about the job.
pub struct Subject<'a> {
    /// The job file.
    pub job: &'a Job,
    /// Its table's facts (key columns, `[set]` column types).
    pub catalog: &'a Catalog,
    /// Its statements.
    pub plan: &'a Plan,
    /// The job's row in the state table, if it has one.
    pub state: Option<&'a JobRow>,
    /// The rows the job set aside.
    pub failed: &'a Failed,
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
            let failed = verdict.failed.count;
            let inside = verdict.pending.saturating_sub(past).saturating_sub(failed);
            let mut parts = Vec::new();
            if failed > 0 {
                parts.push(format!(
                    "{} could not be backfilled (below)",
                    rows(failed.min(verdict.pending))
                ));
            }
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
            // The rows set aside have their own advice, below the verdict.
            let fix = if inside + past > 0 {
                format!("; `backfill run --restart {name}` fills them again")
            } else {
                String::new()
            };
            format!("the job is done, yet {}{fix}", parts.join(", and "))
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
