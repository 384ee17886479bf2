//! The job file: TOML text → `RawJob` (serde, no invariants) → [`Job`]
//! (validated).
//!
//! Owns the job file's format (docs/job-file.md), its defaults and every check that needs only
//! the text, with errors that point at `file:line:column`. Reading the file in [`Job::load`] is
//! its only I/O. It does not resolve anything against the database (which primary key, which
//! column types, whether the table exists: that is `catalog`), and it builds no SQL (`plan`).
//!
//! Layout: `raw` is the serde shape, `validate` turns it into a [`Job`], `throttle` reads
//! `[throttle]`, `vacuum` reads `[vacuum]`, `guard` reads `[guard]`, `rate` reads byte rates
//! (`"32MiB/s"`), `table` reads PostgreSQL table names, `hash` computes
//! [`Job::definition_hash`], `error` holds the errors.

mod error;
mod guard;
mod hash;
mod rate;
mod ratio;
mod raw;
mod settings;
mod table;
mod throttle;
mod vacuum;
mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{JobError, Location, Problem};
pub use table::{MAX_IDENTIFIER_BYTES, TableName};
pub use validate::is_valid_job_name;

/// Values a job file may leave out, and the bounds on batch sizes.
pub mod defaults {
    use std::time::Duration;

    /// Starting rows per batch, clamped into `min..=max`.
    pub const SIZE: u32 = 2000;
    /// Smallest batch the adaptive sizer may choose.
    pub const MIN: u32 = 1000;
    /// Largest batch the adaptive sizer may choose.
    pub const MAX: u32 = 5000;
    /// Upper bound for `size`, `min` and `max`: a larger batch holds row locks for too long.
    pub const LIMIT: u32 = 100_000;
    /// Duration the adaptive sizer aims each batch at.
    pub const TARGET: Duration = Duration::from_millis(200);
    /// Sleep between batches.
    pub const PAUSE: Duration = Duration::ZERO;
    /// Sleep after each batch, in multiples of the batch's own time: none.
    pub const PAUSE_RATIO: f64 = 0.0;
    /// Batch loops in one process.
    pub const WORKERS: u32 = 1;
    /// The most batch loops one process may run: each holds a connection.
    pub const MAX_WORKERS: u32 = 64;
    /// `statement_timeout` for every batch transaction.
    pub const STATEMENT: Duration = Duration::from_secs(30);
    /// `lock_timeout` for every batch transaction.
    pub const LOCK: Duration = Duration::from_secs(2);

    /// `[throttle]` defaults (ARCHITECTURE.md).
    pub mod throttle {
        use std::time::Duration;

        /// How often the monitor samples the database.
        pub const POLL: Duration = Duration::from_millis(250);
        /// How often, while a batch runs, the monitor looks for sessions waiting on its locks.
        pub const BATCH_POLL: Duration = Duration::from_millis(50);
        /// The shortest `poll` and `batch_poll`: sampling faster loads the server for nothing.
        pub const FASTEST_POLL: Duration = Duration::from_millis(10);
        /// How long every signal must stay clear before full speed returns.
        pub const COOLDOWN: Duration = Duration::from_secs(2);
        /// Throttle above this fraction of `max_connections` in use.
        pub const MAX_CONNECTION_USE: f64 = 0.70;
        /// Throttle while a session is idle in transaction for longer than this.
        pub const MAX_IDLE_IN_TRANSACTION: Duration = Duration::from_secs(60);
        /// Pause while a replica's replay lag is longer than this.
        pub const MAX_REPLICA_LAG: Duration = Duration::from_secs(5);
        /// Pause while a replica has more WAL than this left to replay (128 MiB).
        pub const MAX_REPLICA_LAG_BYTES: u64 = 128 * 1024 * 1024;
        /// Pause while a replication slot retains more WAL than this (1 GiB): a slot whose
        /// consumer is down keeps every byte the run writes until the disk is full.
        pub const MAX_SLOT_LAG_BYTES: u64 = 1024 * 1024 * 1024;
        /// Pause while the archiver is more WAL segments behind than this: 64 segments is
        /// 1 GiB at the default 16 MiB segment size, the same budget as a slot's.
        pub const MAX_ARCHIVE_LAG: u64 = 64;
        /// Throttle while more other sessions are active than this; 0 is off, because how
        /// many active sessions a healthy server has depends on its cores and its workload.
        pub const MAX_ACTIVE_SESSIONS: u64 = 0;
        /// Throttle while InnoDB's history list is longer than this (MySQL and MariaDB), and
        /// pause while it is longer than twice this. An entry is one committed transaction's
        /// undo log, not a row: where purge keeps up, a busy OLTP server's list stays in the
        /// thousands to tens of thousands, and a million means purge is badly behind (an open
        /// snapshot holds it back, or the writes outrun it), every consistent read walks long
        /// version chains, and the undo tablespace grows. High enough never to hold a healthy
        /// server's run back; the run's own batches add one entry each.
        pub const MAX_HISTORY_LENGTH: u64 = 1_000_000;
        /// Pause when the monitor has had no successful sample for this long.
        pub const FAIL_CLOSED_AFTER: Duration = Duration::from_secs(5);
        /// The longest sleep between batches while throttled.
        pub const MAX_PAUSE: Duration = Duration::from_secs(2);
    }

    /// `[vacuum]` defaults.
    pub mod vacuum {
        /// Vacuum after this share of the table's rows changed (percent): small enough that
        /// the space the vacuum frees is there for the next batches long before the heap has
        /// grown much, large enough that the vacuums (each rescans every page changed so far,
        /// since `INDEX_CLEANUP OFF` leaves them not all-visible) stay few. Measured, see the
        /// docs/disk.md.
        pub const EVERY_PERCENT: f64 = 5.0;
        /// The fewest rows between two vacuums, whatever the share says: on a small table a
        /// vacuum after every batch or two would cost more than the little heap it saves.
        pub const MIN_EVERY: u64 = 10_000;
    }

    /// `[guard]` defaults: see `guard`'s documentation for how they were chosen.
    pub mod guard {
        use std::time::Duration;

        /// How often the probe runs: ten samples a second, enough for a p90 over a couple of
        /// seconds, and a negligible load (one index lookup each).
        pub const POLL: Duration = Duration::from_millis(100);
        /// The span of recent probes whose p90 is judged, and how often the back-off may
        /// change: long enough to hold 20 probes, short enough to react within seconds.
        pub const WINDOW: Duration = Duration::from_secs(2);
        /// Back off while the probe's p90 is more than this many times its baseline.
        pub const MAX_LATENCY_RATIO: f64 = 3.0;
        /// Never back off while the probe's p90 is under this, whatever its baseline: a probe
        /// of a fraction of a millisecond that doubles is jitter, not harm.
        pub const MIN_LATENCY: Duration = Duration::from_millis(5);
        /// The most the guard sleeps after a batch, in multiples of the batch's time: 16 leaves
        /// the run about 6 % of the time.
        pub const MAX_PAUSE_RATIO: f64 = 16.0;
    }
}

/// A validated backfill job: which rows of which table to change, how, and at what pace.
///
/// Built only by [`Job::parse`] (or [`Job::load`]), so every `Job` satisfies the rules of the
/// job file: required keys present, identifiers PostgreSQL keeps whole, sane batch bounds and
/// timeouts.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job's name in the state table: the file stem unless `name = "…"` is given;
    /// always matches [`is_valid_job_name`].
    pub name: String,
    /// The table to fill.
    pub table: TableName,
    /// Exact key column names to walk, in order; `None` means the table's primary key, which
    /// the catalog resolves.
    pub key: Option<Vec<String>>,
    /// The `where` expression, trimmed: rows that still need the backfill.
    pub filter: String,
    /// The `[set]` assignments, sorted by column so that the order never depends on the file.
    pub set: Vec<Assignment>,
    /// Batch sizing and pacing.
    pub batch: BatchSettings,
    /// Per-batch timeouts.
    pub timeouts: Timeouts,
    /// What the monitor watches and how the run gives way.
    pub throttle: ThrottlePolicy,
    /// Vacuum pacing while the job runs, and the vacuum at its end.
    pub vacuum: VacuumPolicy,
    /// The latency guard.
    pub guard: GuardPolicy,
    /// The file the job came from.
    pub source: PathBuf,
}

/// One `column = "expression"` line of `[set]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The exact column name (no quoting, no case folding).
    pub column: String,
    /// The SQL expression over the same row, trimmed; trusted like a migration file.
    pub expr: String,
}

/// The `[batch]` table, with defaults filled in.
///
/// Invariant: `1 <= min <= size <= max <= 100000`, `target > 0`, `pause_ratio` finite and
/// `>= 0`, and `1 <= workers <= 64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchSettings {
    /// Rows in the first batch.
    pub size: u32,
    /// Smallest batch the adaptive sizer may choose.
    pub min: u32,
    /// Largest batch the adaptive sizer may choose.
    pub max: u32,
    /// Duration the adaptive sizer aims each batch at.
    pub target: Duration,
    /// Sleep between batches.
    pub pause: Duration,
    /// Sleep after each batch this many times the batch's own time, on top of `pause` (gh-ost's
    /// nice-ratio): a duty cycle that leaves the application `ratio / (1 + ratio)` of the time.
    pub pause_ratio: f64,
    /// Batch loops `run` starts in one process, each on its own connection, sharing the job's
    /// key range (`run --workers` overrides it).
    pub workers: u32,
    /// What a row that cannot be backfilled does to the run.
    pub on_error: OnError,
}

/// `[batch] on_error`: what a row whose data the `[set]` expressions (or a constraint) refuse
/// does to the run. Either way the batch is narrowed down to that row, and the rows before it
/// are committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnError {
    /// The run stops at the row, naming it: the operator fixes the data and runs again, which
    /// resumes at that row.
    #[default]
    Stop,
    /// The row goes to the `failures` table with the server's message and the run goes on past
    /// it; `verify` fails while such rows exist, and `run --retry-failures` tries them again.
    Skip,
}

impl OnError {
    /// The word the job file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Stop => "stop",
            OnError::Skip => "skip",
        }
    }
}

/// The `[timeouts]` table, with defaults filled in.
///
/// Invariant: `lock >= 1ms`, `statement > lock` and `statement > batch.target`; both are set
/// with `SET LOCAL` in every batch transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `statement_timeout`: bounds one batch.
    pub statement: Duration,
    /// `lock_timeout`: bounds a wait for a lock, so a batch never queues behind DDL for long.
    pub lock: Duration,
}

/// The `[throttle]` table, with defaults filled in: the thresholds of the monitor's signals
/// (ARCHITECTURE.md) and how a throttled run paces itself.
///
/// Invariant: `10ms <= batch_poll <= poll < fail_closed_after`, `0 < max_connection_use <= 1`,
/// and every name in `ignore_slots` is one a replication slot can have. A zero
/// `max_idle_in_transaction`, `max_replica_lag`, `max_replica_lag_bytes`, `max_slot_lag_bytes`,
/// `max_archive_lag`, `max_active_sessions` or `max_history_length` turns that signal off.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottlePolicy {
    /// `false`: no monitor runs; the run never throttles, pauses or yields on its own.
    pub enabled: bool,
    /// How often the monitor samples the database.
    pub poll: Duration,
    /// How often, while a batch runs, the monitor looks for sessions waiting on its locks.
    pub batch_poll: Duration,
    /// How long every signal must stay clear before full speed returns.
    pub cooldown: Duration,
    /// Cancel our own running batch when another session waits for a lock it holds.
    pub yield_to_waiters: bool,
    /// Pause while another session holds, or waits for, a lock on the table that conflicts
    /// with our `UPDATE` (DDL, `LOCK TABLE`, `CREATE INDEX`).
    pub pause_on_table_locks: bool,
    /// Throttle above this fraction of `max_connections` in use.
    pub max_connection_use: f64,
    /// Throttle while a session is idle in transaction for longer than this.
    pub max_idle_in_transaction: Duration,
    /// Pause while a replica's replay lag is longer than this.
    pub max_replica_lag: Duration,
    /// Pause while a replica has more than this many bytes of WAL left to replay.
    pub max_replica_lag_bytes: u64,
    /// Pause while a replication slot (physical or logical, with or without a consumer)
    /// retains more than this many bytes of WAL.
    pub max_slot_lag_bytes: u64,
    /// Slots that `max_slot_lag_bytes` leaves out: ones the operator knows are abandoned.
    pub ignore_slots: Vec<String>,
    /// Pause while the WAL archiver fails, or is more than this many segments behind (only
    /// when `archive_mode` is on).
    pub max_archive_lag: u64,
    /// Throttle while more than this many sessions other than the job's are active.
    pub max_active_sessions: u64,
    /// Throttle while InnoDB's history list (the undo logs purge has yet to remove) is longer
    /// than this; pause while it is longer than twice this. MySQL and MariaDB only.
    pub max_history_length: u64,
    /// Throttle while autovacuum works on the table; pause while it does so to prevent
    /// wraparound, which must never be competed with.
    pub watch_autovacuum: bool,
    /// A query whose result > 0 throttles (the first column of the first row; no row or NULL
    /// is 0).
    pub throttle_query: Option<String>,
    /// Pause while this file exists: the operator's emergency brake.
    pub throttle_file: Option<PathBuf>,
    /// Pause when the monitor has had no successful sample for this long.
    pub fail_closed_after: Duration,
    /// The longest sleep between batches while throttled.
    pub max_pause: Duration,
    /// The most WAL the run may write, in bytes per second, averaged over a few seconds: the
    /// run sleeps after its batches to stay under it (a pace, not a pause). `None`: no budget.
    pub max_wal_rate: Option<u64>,
}

impl Default for ThrottlePolicy {
    fn default() -> ThrottlePolicy {
        use defaults::throttle::*;
        ThrottlePolicy {
            enabled: true,
            poll: POLL,
            batch_poll: BATCH_POLL,
            cooldown: COOLDOWN,
            yield_to_waiters: true,
            pause_on_table_locks: true,
            max_connection_use: MAX_CONNECTION_USE,
            max_idle_in_transaction: MAX_IDLE_IN_TRANSACTION,
            max_replica_lag: MAX_REPLICA_LAG,
            max_replica_lag_bytes: MAX_REPLICA_LAG_BYTES,
            max_slot_lag_bytes: MAX_SLOT_LAG_BYTES,
            ignore_slots: Vec::new(),
            max_archive_lag: MAX_ARCHIVE_LAG,
            max_active_sessions: MAX_ACTIVE_SESSIONS,
            max_history_length: MAX_HISTORY_LENGTH,
            watch_autovacuum: true,
            throttle_query: None,
            throttle_file: None,
            fail_closed_after: FAIL_CLOSED_AFTER,
            max_pause: MAX_PAUSE,
            max_wal_rate: None,
        }
    }
}

/// The `[guard]` table, with defaults filled in: a probe query run every `poll` on a
/// connection of its own, whose recent p90 against its baseline (measured before the first
/// batch) backs the run off.
///
/// Invariant: `10ms <= poll`, `window >= 5 × poll` (enough probes for a p90),
/// `max_latency_ratio > 1`, `max_latency > 0` when given, `max_pause_ratio >= 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardPolicy {
    /// `false` (the default): no probe, no back-off.
    pub enabled: bool,
    /// The probe, trimmed; `None`: a one-row read of the table by its key, at keys sampled
    /// from the job's range, and a commit that waits for the WAL flush.
    pub probe: Option<String>,
    /// How often the probe runs.
    pub poll: Duration,
    /// The span of recent probes whose p90 is judged, and the least time between two changes
    /// of the back-off (the time a change takes to show in the p90).
    pub window: Duration,
    /// Back off while the recent p90 is more than this many times the baseline.
    pub max_latency_ratio: f64,
    /// Back off while the recent p90 is longer than this, whatever the baseline.
    pub max_latency: Option<Duration>,
    /// Never back off while the recent p90 is under this (unless `max_latency` is lower).
    pub min_latency: Duration,
    /// The most the guard sleeps after a batch, in multiples of the batch's time.
    pub max_pause_ratio: f64,
}

impl Default for GuardPolicy {
    fn default() -> GuardPolicy {
        use defaults::guard::*;
        GuardPolicy {
            enabled: false,
            probe: None,
            poll: POLL,
            window: WINDOW,
            max_latency_ratio: MAX_LATENCY_RATIO,
            max_latency: None,
            min_latency: MIN_LATENCY,
            max_pause_ratio: MAX_PAUSE_RATIO,
        }
    }
}

/// The `[vacuum]` table, with defaults filled in.
///
/// Invariant: `every` is at least one row, or a share in `(0, 100]` percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VacuumPolicy {
    /// Vacuum the relations batches update while the job runs, so that the next batches'
    /// new row versions reuse the space of the old ones instead of growing the heap.
    pub enabled: bool,
    /// How many changed rows between two of those vacuums.
    pub every: Every,
    /// Those vacuums clean the indexes too: slower vacuums, but the old versions' line pointers
    /// are freed as well (see [`crate::postgres::plan::vacuum::pacing_options`]).
    pub index_cleanup: bool,
    /// One `VACUUM (ANALYZE)` of the table when the job is done: index entries of the old row
    /// versions cleaned, statistics fresh for the contract migration.
    pub final_vacuum: bool,
}

impl Default for VacuumPolicy {
    fn default() -> VacuumPolicy {
        VacuumPolicy {
            enabled: true,
            every: Every::Percent(defaults::vacuum::EVERY_PERCENT),
            index_cleanup: false,
            final_vacuum: true,
        }
    }
}

/// How many changed rows between two vacuums.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Every {
    /// This many rows (`every = 50000`).
    Rows(u64),
    /// This share of the table's rows, in percent (`every = "5%"`), but at least
    /// [`defaults::vacuum::MIN_EVERY`] rows.
    Percent(f64),
}

impl Every {
    /// The rows between two vacuums on a table of `table_rows` rows.
    pub fn rows(&self, table_rows: u64) -> u64 {
        match *self {
            Every::Rows(n) => n.max(1),
            Every::Percent(percent) => ((table_rows as f64 * percent / 100.0).round() as u64)
                .max(defaults::vacuum::MIN_EVERY),
        }
    }
}

impl std::fmt::Display for Every {
    /// As the job file writes it: `50000` or `5%`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Every::Rows(n) => write!(f, "{n}"),
            Every::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Job {
    /// Reads and validates the job file at `path`.
    pub fn load(path: &Path) -> Result<Job, JobError> {
        let text = std::fs::read_to_string(path).map_err(|source| JobError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Job::parse(&text, path)
    }

    /// Validates the job file `text`; `source` names it in errors and gives the default name.
    /// Pure: nothing is read.
    pub fn parse(text: &str, source: &Path) -> Result<Job, JobError> {
        let raw = toml::from_str(text).map_err(|err| toml_error(&err, text, source))?;
        Job::try_from(validate::Draft { raw, text, source })
    }

    /// A hash of what decides which rows change and how: table, key, filter and `[set]`.
    ///
    /// Batch and timeout settings are left out, so retuning them keeps a checkpoint valid.
    /// 16 lowercase hex characters of FNV-1a 64, the same on every platform and Rust version.
    pub fn definition_hash(&self) -> String {
        hash::definition_hash(self)
    }

    /// The job file `text` as `jobs/t.toml`, for the planners' unit tests; it must be valid.
    #[cfg(test)]
    pub(crate) fn example(text: &str) -> Job {
        Job::parse(text, Path::new("jobs/t.toml")).expect("valid job")
    }
}

/// A TOML or serde error, located, with serde's wording made to fit a job file.
fn toml_error(err: &toml::de::Error, text: &str, source: &Path) -> JobError {
    let span = err.span();
    let found = span.clone().and_then(|span| text.get(span)).unwrap_or("");
    JobError::Toml {
        at: Location::new(source, text, span),
        message: explain(err.message(), found),
    }
}

/// Rewords a TOML/serde message: "key" rather than "field", a hint for durations, and the
/// offending text when the message does not already quote it.
fn explain(message: &str, found: &str) -> String {
    let mut message = message
        .replacen("unknown field", "unknown key", 1)
        .replacen("expected i64", "expected an integer", 1)
        .replacen(
            "data did not match any variant of untagged enum RawRate",
            "expected a rate such as \"32MiB/s\"",
            1,
        );
    if message.ends_with("expected a duration") {
        message.push_str("; write a duration such as \"250ms\", \"2s\" or \"5m\"");
    }
    let found = found.trim();
    if !found.is_empty() && found.len() <= 60 && !found.contains('\n') && !message.contains(found) {
        message.push_str(&format!(" (at {})", error::show(found)));
    }
    message
}
