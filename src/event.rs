//! What a running job reports about itself.
//!
//! The engine emits these and never prints; `progress` turns them into a progress bar, plain
//! lines or NDJSON, and `metrics` into Prometheus metrics. Every field is plain data so that a
//! consumer needs nothing from the engine.

use std::fmt::Debug;
use std::time::Duration;

use serde::Serialize;

/// A duration in whole milliseconds, as events carry durations.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A latency in milliseconds with their fractions, as events carry latencies.
pub fn millis_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One thing that happened to a job, in the order it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The job is about to run its first batch (or its first batch since a resume).
    Started {
        job: String,
        /// Rows the job expects to change in all, including `rows_done`.
        total_estimate: u64,
        /// Rows already changed by earlier runs of this job (non-zero on a resume).
        rows_done: u64,
        /// True when the job continues from a checkpoint.
        resumed: bool,
        /// Batch loops this process runs (`--workers`).
        workers: u32,
        /// True when this process joined a job that another process runs (`--join`).
        joined: bool,
    },
    /// A worker took a range to walk: a free one, or the upper part of a range it split.
    Claimed {
        job: String,
        worker: u32,
        range: u32,
        /// The relation its batches update (the table, or one leaf partition).
        relation: String,
        /// The range it was split off, when the worker stole it.
        split_from: Option<u32>,
    },
    /// Another process took over the range a worker was walking (this process was frozen or
    /// cut off for longer than its lease): the worker leaves it without writing and looks for
    /// other work.
    Lost {
        job: String,
        worker: u32,
        range: u32,
        /// Who holds the range now.
        owner: String,
    },
    /// The workers running the job changed: live workers of every process, those processes,
    /// and their hosts.
    Workers {
        job: String,
        workers: u32,
        processes: u32,
        hosts: u32,
    },
    /// A batch committed together with its checkpoint.
    Batch {
        job: String,
        /// The worker of this process that ran it, and the range it belongs to.
        worker: u32,
        range: u32,
        /// Rows this batch changed.
        rows: u64,
        /// Rows changed by the job so far, all runs and processes together, as far as this
        /// process knows (other processes' batches arrive with the heartbeat).
        rows_done: u64,
        /// Batches committed so far, all runs and processes together, as far as known.
        batches_done: u64,
        /// Rows the job is now expected to change in all: the start's estimate refined from
        /// what the walk has seen (rows changed per key walked); above `rows_done` until the
        /// job finishes — unless nothing is known of what is left, when it is `rows_done`
        /// (shown as an unknown total).
        total_estimate: u64,
        /// Rows per batch asked for by this batch (its key span).
        batch_size: u32,
        /// Time the batch transaction took, in milliseconds.
        elapsed_ms: u64,
        /// The sleep before this worker's next batch, in milliseconds: `[batch] pause` and
        /// `pause_ratio`, the throttle, the latency guard and the WAL budget, whichever is
        /// longest.
        pause_ms: u64,
        /// Under `[throttle] max_wal_rate`: the WAL charged to this batch (the server's WAL
        /// position moved this much while it ran, not counting what was already charged to
        /// another batch of this process).
        #[serde(skip_serializing_if = "Option::is_none")]
        wal_bytes: Option<u64>,
        /// With the latency guard on: the recent p90 of its probe, in milliseconds, as it
        /// changes from batch to batch (its baseline is in `guard_ready`).
        #[serde(skip_serializing_if = "Option::is_none")]
        probe_ms: Option<f64>,
    },
    /// A row that cannot be backfilled was set aside in the `failures` table (`[batch] on_error =
    /// "skip"`, or it failed again under `run --retry-failures`); the run goes on past it.
    Skipped {
        job: String,
        worker: u32,
        /// The range it lies in; `None` under `run --retry-failures`.
        range: Option<u32>,
        /// The row as PostgreSQL names keys: `(id)=(77777)`.
        row: String,
        /// Its key columns' values, as text.
        key: Vec<String>,
        sqlstate: String,
        /// The server's message (with its detail and hint), then `[SQLSTATE …]`.
        message: String,
    },
    /// A row that had failed is backfilled now (`run --retry-failures`) and left the
    /// `failures` table.
    Filled {
        job: String,
        worker: u32,
        /// The row as PostgreSQL names keys: `(id)=(77777)`.
        row: String,
        key: Vec<String>,
        /// Rows changed by the job so far, as far as this process knows.
        rows_done: u64,
    },
    /// A batch rolled back on a transient error and will be tried again after `delay_ms`.
    Retry {
        job: String,
        worker: u32,
        /// The range of the batch; `None` when the worker was looking for a range.
        range: Option<u32>,
        attempt: u32,
        delay_ms: u64,
        error: String,
        /// The connection was lost: the retry reconnects first.
        reconnecting: bool,
    },
    /// No batch starts until the reason clears (`reason` is a human sentence).
    Paused {
        job: String,
        reason: String,
        /// The monitor's signal behind it ([`signal_name`]); `None` for an operator's pause.
        signal: Option<String>,
    },
    /// Batches run, but smaller and further apart, until the reason clears.
    Throttled {
        job: String,
        reason: String,
        /// The monitor's signal behind it ([`signal_name`]).
        signal: Option<String>,
    },
    /// The monitor cancelled the running batch so that a session waiting for its locks could go
    /// ahead; the batch rolled back and runs again once the way is clear. Not an error.
    Yielded {
        job: String,
        worker: u32,
        /// The batch's range; `None` under `run --retry-failures`, whose rows have none.
        range: Option<u32>,
        reason: String,
    },
    /// The latency guard measured its probe's baseline, before the first batch of this
    /// process: what the probe costs while the run is not running.
    GuardReady {
        job: String,
        /// The p90 of the probe over one `window`, in milliseconds.
        baseline_ms: f64,
    },
    /// The latency guard holds the run back (longer sleeps after each batch) because its probe
    /// is slower than its baseline allows, until the probe is healthy again.
    Guarded {
        job: String,
        /// `probe 4.1 ms (baseline 1.2 ms)`.
        reason: String,
        /// The recent p90 of the probe, and its baseline, in milliseconds.
        probe_ms: f64,
        baseline_ms: f64,
    },
    /// The latency guard let the run go back to full speed: its probe is under its threshold
    /// again.
    Released {
        job: String,
        /// `probe 1.1 ms (baseline 0.6 ms)`.
        reason: String,
        /// The recent p90 of the probe, and its baseline, in milliseconds.
        probe_ms: f64,
        baseline_ms: f64,
    },
    /// Full speed again after a pause or a throttle (after the guard's hold: `released`).
    Running { job: String },
    /// The table's heap now (read with the heartbeat, about once a second, while it changes)
    /// and when the job started: how far the run has grown it.
    Heap {
        job: String,
        heap_bytes_before: u64,
        heap_bytes: u64,
    },
    /// A vacuum of a relation the job changes: a pacing vacuum when it ended, the final
    /// `VACUUM (ANALYZE)` when it starts and when it ended.
    Vacuum {
        job: String,
        /// The relation vacuumed, as SQL.
        relation: String,
        /// The final vacuum, not a pacing one.
        #[serde(rename = "final")]
        final_vacuum: bool,
        state: VacuumState,
        /// Time it took, in milliseconds (0 when it starts).
        elapsed_ms: u64,
        /// Why it was skipped, yielded or failed.
        reason: Option<String>,
    },
    /// Every range of the job is walked to its end.
    Finished {
        job: String,
        rows_done: u64,
        batches_done: u64,
        /// Wall time of this run (not of earlier runs), in milliseconds.
        elapsed_ms: u64,
        /// The table's heap in bytes when the job started, and now that it is done (after the
        /// final vacuum), when they could be read.
        heap_bytes_before: Option<u64>,
        heap_bytes_after: Option<u64>,
    },
    /// The run stopped on Ctrl-C (or SIGTERM) after its last batch committed or rolled back.
    Interrupted { job: String, rows_done: u64 },
    /// The job stopped with an error; it is recorded in the state table too.
    Error { job: String, message: String },
}

/// Where a vacuum stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VacuumState {
    /// The final vacuum begins (it may take a while on a large table).
    Started,
    /// It ran to its end.
    Done,
    /// Another session held or waited for a conflicting lock (an autovacuum, DDL): this round
    /// is left out.
    Skipped,
    /// The monitor cancelled it so that a session waiting for its lock could go ahead.
    Yielded,
    /// It was cancelled because the run was stopped.
    Cancelled,
    /// It failed; the run goes on.
    Failed,
}

/// A monitor signal's name for scripts and metric labels: the `snake_case` of its variant
/// (`ReplicaLag` → `replica_lag`), so that a signal added to the monitor needs no change here.
pub fn signal_name(signal: &impl Debug) -> String {
    let variant = format!("{signal:?}");
    let mut name = String::new();
    for c in variant.chars().take_while(|c| c.is_alphanumeric()) {
        if c.is_uppercase() && !name.is_empty() {
            name.push('_');
        }
        name.extend(c.to_lowercase());
    }
    name
}

impl Event {
    /// The job the event belongs to.
    pub fn job(&self) -> &str {
        match self {
            Event::Started { job, .. }
            | Event::Claimed { job, .. }
            | Event::Lost { job, .. }
            | Event::Workers { job, .. }
            | Event::Batch { job, .. }
            | Event::Skipped { job, .. }
            | Event::Filled { job, .. }
            | Event::Retry { job, .. }
            | Event::Paused { job, .. }
            | Event::Throttled { job, .. }
            | Event::Yielded { job, .. }
            | Event::GuardReady { job, .. }
            | Event::Guarded { job, .. }
            | Event::Released { job, .. }
            | Event::Running { job }
            | Event::Heap { job, .. }
            | Event::Vacuum { job, .. }
            | Event::Finished { job, .. }
            | Event::Interrupted { job, .. }
            | Event::Error { job, .. } => job,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum Signal {
        ReplicaLag,
        Custom(#[allow(dead_code)] u8),
    }

    #[test]
    fn signal_names_are_snake_case_variants() {
        assert_eq!(signal_name(&Signal::ReplicaLag), "replica_lag");
        assert_eq!(signal_name(&Signal::Custom(3)), "custom");
    }
}
