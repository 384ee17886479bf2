//! The job file as TOML spells it: [`RawJob`], read by serde with no invariants.
//!
//! Owns the shape of the file (which keys exist, their TOML types) and keeps each value's
//! byte span so that validation can point at it. It does not check any value: that is
//! `validate`, which turns a `RawJob` into a [`Job`](super::Job).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// A string with the place it was written.
pub type RawText = Spanned<String>;

/// The whole job file. Every key is optional here; `validate` says which are required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    /// `name = "…"`: overrides the file stem.
    pub name: Option<RawText>,
    /// `table = "public.users"`, written as in SQL.
    pub table: Option<RawText>,
    /// `key = ["tenant", "id"]`: exact column names; absent means the primary key.
    pub key: Option<Spanned<Vec<RawText>>>,
    /// `where = "…"`: the rows that still need the backfill.
    #[serde(rename = "where")]
    pub filter: Option<RawText>,
    /// `[set]`: exact column name → SQL expression, sorted by column.
    pub set: Option<Spanned<BTreeMap<RawText, RawText>>>,
    /// `[batch]`: batch sizing and pacing.
    #[serde(default)]
    pub batch: RawBatch,
    /// `[timeouts]`: per-batch `statement_timeout` and `lock_timeout`.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// `[throttle]`: what the monitor watches and when it slows or stops the run.
    #[serde(default)]
    pub throttle: RawThrottle,
    /// `[vacuum]`: vacuum pacing during the run and the vacuum at its end.
    #[serde(default)]
    pub vacuum: RawVacuum,
    /// `[guard]`: the latency guard, which backs the run off while a probe is slow.
    #[serde(default)]
    pub guard: RawGuard,
}

/// The `[batch]` table. Numbers stay `i64` so that negative values get our own message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Starting rows per batch.
    pub size: Option<Spanned<i64>>,
    /// Smallest batch the adaptive sizer may choose.
    pub min: Option<Spanned<i64>>,
    /// Largest batch the adaptive sizer may choose.
    pub max: Option<Spanned<i64>>,
    /// Duration the adaptive sizer aims each batch at.
    pub target: Option<Spanned<RawDuration>>,
    /// Sleep between batches.
    pub pause: Option<Spanned<RawDuration>>,
    /// Sleep after each batch this many times the batch's own time.
    pub pause_ratio: Option<Spanned<f64>>,
    /// Batch loops that `run` starts in one process.
    pub workers: Option<Spanned<i64>>,
    /// What a row that cannot be backfilled does to the run: `"stop"` or `"skip"`.
    pub on_error: Option<RawText>,
}

/// The `[timeouts]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// `SET LOCAL statement_timeout` in every batch transaction.
    pub statement: Option<Spanned<RawDuration>>,
    /// `SET LOCAL lock_timeout` in every batch transaction.
    pub lock: Option<Spanned<RawDuration>>,
}

/// The `[throttle]` table (ARCHITECTURE.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThrottle {
    /// `false` runs without a monitor: no throttle, no pause, no yield.
    pub enabled: Option<bool>,
    /// How often the monitor samples the database.
    pub poll: Option<Spanned<RawDuration>>,
    /// How often, while a batch runs, the monitor looks for sessions waiting on its locks.
    pub batch_poll: Option<Spanned<RawDuration>>,
    /// How long every signal must stay clear before full speed returns.
    pub cooldown: Option<Spanned<RawDuration>>,
    /// Cancel our own batch when another session waits for a lock it holds.
    #[serde(rename = "yield")]
    pub yield_to_waiters: Option<bool>,
    /// Pause while another session holds or waits for a conflicting lock on the table.
    pub pause_on_table_locks: Option<bool>,
    /// Throttle above this fraction of `max_connections` in use.
    pub max_connection_use: Option<Spanned<f64>>,
    /// Throttle while a session is idle in transaction for longer; "0s" turns it off.
    pub max_idle_in_transaction: Option<Spanned<RawDuration>>,
    /// Pause while a replica's replay lag is longer; "0s" turns it off.
    pub max_replica_lag: Option<Spanned<RawDuration>>,
    /// Pause while a replica has more WAL than this left to replay; 0 turns it off.
    pub max_replica_lag_bytes: Option<Spanned<i64>>,
    /// Pause while a replication slot retains more WAL than this; 0 turns it off.
    pub max_slot_lag_bytes: Option<Spanned<i64>>,
    /// Slots that `max_slot_lag_bytes` leaves out, by name.
    pub ignore_slots: Option<Vec<RawText>>,
    /// Pause while the archiver fails or is more WAL segments behind; 0 turns it off.
    pub max_archive_lag: Option<Spanned<i64>>,
    /// Throttle while more other sessions are active; 0 turns it off.
    pub max_active_sessions: Option<Spanned<i64>>,
    /// Throttle while InnoDB's history list is longer, pause over twice that (MySQL and
    /// MariaDB); 0 turns it off.
    pub max_history_length: Option<Spanned<i64>>,
    /// Throttle while autovacuum works on the table; pause while it does so to prevent
    /// wraparound.
    pub watch_autovacuum: Option<bool>,
    /// A query whose result > 0 throttles.
    pub throttle_query: Option<RawText>,
    /// Pause while this file exists.
    pub throttle_file: Option<RawText>,
    /// Pause when the monitor has had no sample for this long.
    pub fail_closed_after: Option<Spanned<RawDuration>>,
    /// The longest sleep between batches while throttled.
    pub max_pause: Option<Spanned<RawDuration>>,
    /// The most WAL per second the run may write, e.g. `"32MiB/s"`.
    pub max_wal_rate: Option<Spanned<RawRate>>,
}

/// The `[guard]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuard {
    /// `true` turns the guard on.
    pub enabled: Option<bool>,
    /// The query whose latency stands for the application's.
    pub probe: Option<RawText>,
    /// How often the probe runs.
    pub poll: Option<Spanned<RawDuration>>,
    /// The span of recent probes whose p90 is judged.
    pub window: Option<Spanned<RawDuration>>,
    /// Back off while the p90 is more than this many times the baseline.
    pub max_latency_ratio: Option<Spanned<f64>>,
    /// Back off while the p90 is longer than this.
    pub max_latency: Option<Spanned<RawDuration>>,
    /// Never back off while the p90 is shorter than this.
    pub min_latency: Option<Spanned<RawDuration>>,
    /// The most the guard may sleep after a batch, in multiples of the batch's time.
    pub max_pause_ratio: Option<Spanned<f64>>,
}

/// A rate as the file writes it: a string such as `"32MiB/s"`, or (refused with a hint) a
/// bare number, which has no unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawRate {
    Text(String),
    Number(f64),
}

/// The `[vacuum]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVacuum {
    /// `false`: no vacuum while the job runs.
    pub enabled: Option<bool>,
    /// Rows changed between two vacuums: a number, or a share of the table (`"5%"`).
    pub every: Option<Spanned<RawEvery>>,
    /// One `VACUUM (ANALYZE)` of the table when the job is done.
    #[serde(rename = "final")]
    pub final_vacuum: Option<bool>,
    /// `true`: the pacing vacuums clean the indexes too.
    pub index_cleanup: Option<bool>,
}

/// `every = 50000` or `every = "5%"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawEvery {
    Rows(i64),
    Text(String),
}

/// A humantime duration string ("250ms", "2s", "5m").
///
/// A newtype because `Spanned` needs a type that deserializes on its own.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RawDuration(#[serde(with = "humantime_serde")] pub Duration);
