//! Errors of the job module: what is wrong with a job file, and where.
//!
//! Owns [`JobError`], the [`Problem`]s that validation finds, and the [`Location`] that turns a
//! byte span of the TOML text into `file:line:column`. It does not decide what is valid (that
//! is `validate`) and it never reads files.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a job file could not become a [`Job`](super::Job).
///
/// Every variant but [`JobError::Read`] says where in the file the problem is, quotes the
/// offending value and says what would be valid.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The file could not be read at all.
    #[error("cannot read job file {}", path.display())]
    Read {
        /// The path as the user gave it.
        path: PathBuf,
        /// Why the operating system refused.
        #[source]
        source: std::io::Error,
    },
    /// The TOML parser or serde refused the text: bad syntax, an unknown key, a value of the
    /// wrong type, a string that is not a duration.
    #[error("{at}: {message}")]
    Toml {
        /// Where the parser stopped.
        at: Location,
        /// The parser's explanation, with a hint added where we have one.
        message: String,
    },
    /// The TOML is well-formed but describes a job that cannot run.
    #[error("{at}: {problem}")]
    Invalid {
        /// The value at fault, or the file alone when the problem is a missing key.
        at: Location,
        /// What is wrong and how to fix it.
        problem: Problem,
    },
}

impl JobError {
    /// The semantic problem, if this is one; lets callers and tests match without parsing text.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            JobError::Invalid { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// A well-formed job file that describes a job which cannot run.
///
/// The messages are written to be read after `file:line:column: `; each variant's message is
/// its documentation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error(
        "job name {} {}is not valid; use 1 to 63 characters from A-Z a-z 0-9 _ . -{}",
        show(name),
        if *from_file_stem { "(taken from the file name) " } else { "" },
        if *from_file_stem { ", or set name = \"…\"" } else { "" }
    )]
    BadName { name: String, from_file_stem: bool },
    #[error("missing `table`; add the table to fill, e.g. table = \"public.users\"")]
    MissingTable,
    #[error("invalid table: {0}")]
    BadTable(String),
    #[error(
        "key is empty; list the key columns, e.g. key = [\"id\"], or leave key out to walk the \
         primary key"
    )]
    EmptyKey,
    #[error("key lists column {} twice; list each key column once", show(.0))]
    DuplicateKey(String),
    #[error(
        "missing `where`; say which rows still need the backfill, e.g. where = \"new_col IS NULL\", \
         or where = \"true\" to rewrite every row"
    )]
    MissingWhere,
    #[error(
        "`where` is empty; write the condition of rows that still need the backfill, e.g. \
         where = \"new_col IS NULL\", or where = \"true\" to rewrite every row"
    )]
    BlankWhere,
    #[error(
        "missing [set]; add a [set] table with one column = \"SQL expression\" per column to \
         fill, e.g. total_cents = \"qty * price_cents\""
    )]
    MissingSet,
    #[error(
        "[set] is empty; add at least one column = \"SQL expression\", e.g. \
         total_cents = \"qty * price_cents\""
    )]
    EmptySet,
    #[error(
        "set.{} has an empty expression; write the SQL that computes the column, e.g. \
         \"qty * price_cents\"",
        show(.0)
    )]
    BlankExpression(String),
    #[error("{what} contains a NUL byte, which PostgreSQL does not accept in SQL text; remove it")]
    NulInExpression { what: String },
    #[error(
        "[set] assigns {}, which is also a key column; changing the key while walking it would \
         skip or repeat rows, so remove it from [set] or choose another key",
        show(.0)
    )]
    SetsKeyColumn(String),
    #[error("{what} is empty; write the exact column name")]
    EmptyIdentifier { what: String },
    #[error(
        "{what} {} contains a NUL byte; PostgreSQL names cannot contain one",
        show(name)
    )]
    NulInIdentifier { what: String, name: String },
    #[error(
        "{what} {} is {len} bytes long; PostgreSQL would silently truncate it to 63 bytes, so \
         use a name of at most 63 bytes",
        show(name)
    )]
    LongIdentifier {
        what: String,
        name: String,
        len: usize,
    },
    #[error("batch.{field} ({value}) is outside 1..=100000; pick a value in that range")]
    BatchOutOfBounds { field: &'static str, value: i64 },
    #[error(
        "batch.workers ({0}) is outside 1..={max}; each worker holds a connection of its own, so \
         pick a value in that range",
        max = super::defaults::MAX_WORKERS
    )]
    WorkersOutOfBounds(i64),
    #[error(
        "batch.on_error = {} is not one of \"stop\" (stop at a row that cannot be backfilled, \
         naming it) or \"skip\" (record it in the failures table and go on)",
        show(.0)
    )]
    BadOnError(String),
    #[error("batch.min ({min}) is larger than batch.max ({max}); make min <= max")]
    MinAboveMax { min: u32, max: u32 },
    #[error(
        "batch.size ({size}) is outside batch.min..=batch.max ({min}..={max}); pick a starting \
         size in that range"
    )]
    SizeOutsideRange { size: u32, min: u32, max: u32 },
    #[error(
        "batch.target (0s) must be larger than zero; it is the duration adaptive sizing aims \
         each batch at, e.g. target = \"200ms\""
    )]
    ZeroTarget,
    #[error(
        "timeouts.lock ({}) is less than 1ms; PostgreSQL counts lock_timeout in whole \
         milliseconds and 0 disables the timeout, so a batch could wait behind DDL forever while \
         every other query queues behind it; use e.g. lock = \"2s\"",
        human(*.0)
    )]
    LockTooShort(Duration),
    #[error(
        "timeouts.statement ({}) is less than 1ms; PostgreSQL counts statement_timeout in whole \
         milliseconds and 0 disables the timeout; use e.g. statement = \"30s\"",
        human(*.0)
    )]
    StatementTooShort(Duration),
    #[error(
        "timeouts.statement ({}) is longer than PostgreSQL allows (2147483647ms, about 24.8 \
         days); use e.g. statement = \"30s\"",
        human(*.0)
    )]
    StatementTooLong(Duration),
    #[error(
        "timeouts.statement ({}) must be larger than timeouts.lock ({}), or a batch stuck \
         behind a lock would end as a statement timeout instead of a lock timeout; raise \
         statement or lower lock",
        human(*statement),
        human(*lock)
    )]
    StatementNotAboveLock { statement: Duration, lock: Duration },
    #[error(
        "timeouts.statement ({}) must be larger than batch.target ({}), or batches of the target \
         duration would be cancelled; raise statement or lower target",
        human(*statement),
        human(*target)
    )]
    StatementNotAboveTarget {
        statement: Duration,
        target: Duration,
    },
    #[error(
        "{field} ({}) is shorter than 10ms; sampling that often loads the server for nothing, \
         use e.g. {} = \"{}\"",
        human(*value),
        field.rsplit('.').next().unwrap_or(field),
        human(*suggested)
    )]
    PollTooFast {
        field: &'static str,
        value: Duration,
        suggested: Duration,
    },
    #[error(
        "throttle.batch_poll ({}) is longer than throttle.poll ({}); it is the faster check made \
         while a batch runs, so make it at most poll",
        human(*batch_poll),
        human(*poll)
    )]
    BatchPollAbovePoll {
        batch_poll: Duration,
        poll: Duration,
    },
    #[error(
        "throttle.fail_closed_after ({}) must be longer than throttle.poll ({}), or every run \
         would pause as soon as it starts; raise fail_closed_after or lower poll",
        human(*fail_closed_after),
        human(*poll)
    )]
    FailClosedNotAbovePoll {
        fail_closed_after: Duration,
        poll: Duration,
    },
    #[error(
        "throttle.max_connection_use ({0}) must be above 0 and at most 1; it is the fraction of \
         max_connections in use above which the run throttles, e.g. max_connection_use = 0.7"
    )]
    ConnectionUseOutOfRange(String),
    #[error(
        "throttle.{key} ({value}) is negative; write {what}, e.g. {example}, or 0 to turn the \
         check off"
    )]
    NegativeLimit {
        key: &'static str,
        value: i64,
        /// What the number counts, e.g. `a number of bytes`.
        what: &'static str,
        /// A sensible value, e.g. `134217728 for 128 MiB`.
        example: &'static str,
    },
    #[error(
        "throttle.ignore_slots lists {}, which no replication slot can be named (slot names \
         are 1 to 63 lower-case letters, digits and underscores); write the name as \
         pg_replication_slots.slot_name shows it",
        show(.0)
    )]
    BadSlotName(String),
    #[error(
        "vacuum.every ({}) is not a number of rows or a share of the table; write e.g. \
         every = 50000 or every = \"5%\" (more than 0%, at most 100%)",
        show(.0)
    )]
    BadEvery(String),
    #[error("throttle.{key} is empty; {hint}")]
    BlankThrottleSetting {
        key: &'static str,
        hint: &'static str,
    },
    #[error("{} ({value}) must be {}; {}", ratio.key(), ratio.bounds(), ratio.meaning())]
    RatioOutOfRange {
        ratio: super::ratio::Ratio,
        value: String,
    },
    #[error(
        "throttle.max_wal_rate ({value}) is not a rate: {why}; {}",
        super::rate::RATE_FORMS
    )]
    BadWalRate { value: String, why: String },
    #[error(
        "guard.window ({}) holds fewer than 5 probes of guard.poll ({}), too few for a p90; \
         make window at least 5 times poll",
        human(*window),
        human(*poll)
    )]
    GuardWindowTooShort { window: Duration, poll: Duration },
    #[error(
        "guard.max_latency (0s) must be longer than zero; it is the probe latency above which \
         the run backs off, e.g. max_latency = \"20ms\", or leave it out"
    )]
    ZeroMaxLatency,
    #[error(
        "guard.probe is empty; write the query whose latency stands for the application's, \
         e.g. \"SELECT * FROM orders WHERE id = 42\", or leave it out to read one row of the \
         table by its key"
    )]
    BlankProbe,
}

/// Where in a job file something is: the file, and the line and column when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file as the user named it.
    pub file: PathBuf,
    /// 1-based line and column (in characters), when the problem has a place in the text.
    pub line_col: Option<(usize, usize)>,
}

impl Location {
    /// The place of byte `span.start` in `text`, or the file alone when there is no span.
    pub fn new(file: &Path, text: &str, span: Option<Range<usize>>) -> Location {
        Location {
            file: file.to_path_buf(),
            line_col: span.map(|span| line_col(text, span.start)),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.line_col {
            write!(f, ":{line}:{column}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (counted in characters) of byte `offset` in `text`.
///
/// Offsets past the end or inside a multi-byte character are moved back to the nearest
/// character boundary, so any offset is safe.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A user's value for an error message: in backticks, control characters escaped.
pub fn show(value: &str) -> String {
    let mut shown = String::with_capacity(value.len() + 2);
    shown.push('`');
    for c in value.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown.push('`');
    shown
}

/// A duration the way the job file writes it ("2s", "250ms").
pub fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("a = 1\nbb = 2\n", 0), (1, 1));
        assert_eq!(line_col("a = 1\nbb = 2\n", 11), (2, 6));
    }

    #[test]
    fn line_col_counts_characters_not_bytes() {
        assert_eq!(line_col("é = 'x'", 4), (1, 4));
    }

    #[test]
    fn line_col_survives_offsets_inside_a_character_or_past_the_end() {
        assert_eq!(line_col("é", 1), (1, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn location_without_span_is_the_file() {
        let at = Location::new(Path::new("jobs/x.toml"), "", None);
        assert_eq!(at.to_string(), "jobs/x.toml");
    }

    #[test]
    fn show_escapes_control_characters() {
        assert_eq!(show("a\0b\n"), "`a\\u{0}b\\n`");
    }
}
