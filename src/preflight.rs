//! The server's check of a job before anything is written: reads the key range and the bounds
//! of the batch that would run next (the first, or the one after a stopped job's checkpoint),
//! and `EXPLAIN`s its key walk and its `UPDATE` so that PostgreSQL itself parses and plans the
//! job's `where` and `[set]` expressions. Runs in a read-only
//! transaction bounded by the job's statement timeout and a short lock timeout (the caller
//! waits for DDL first, see `lockwait`); writes nothing, creates nothing. Used by `plan`
//! (which prints the result) and by `run` (which stops on a rejected expression). Runs the
//! `[throttle]` `throttle_query` and the `[guard]` `probe` once, so that a broken one stops the
//! run before it starts rather than pausing or misleading it later. Also estimates how many rows
//! are still pending (`estimate.rs`).

pub mod estimate;

pub use estimate::{Estimate, Method};

use thiserror::Error;

use crate::job::Job;

use crate::state::JobRow;

/// Which batch [`Conn::preflight`](crate::db::Conn::preflight) looks at: the first, or the next one of a job that stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The checkpoint the batch starts after (`None`: the first key).
    pub after: Option<Vec<String>>,
    /// The walk's end as the job captured it (`None`: the greatest key now).
    pub range_end: Option<Vec<String>>,
    /// Keys in the batch.
    pub size: u32,
}

impl Start {
    /// The first batch of `job`.
    pub fn first(job: &Job) -> Start {
        Start {
            after: None,
            range_end: None,
            size: job.batch.size,
        }
    }

    /// The batch `run` would run next, given the job's row in the state table: after its
    /// checkpoint, at its last batch size, unless the job is done or its file changed (then a
    /// run starts over, or only with `--restart`).
    pub fn next(job: &Job, row: Option<&JobRow>) -> Start {
        match row {
            Some(row)
                if row.status != "done"
                    && row.cursor.is_some()
                    && row.definition_hash == job.definition_hash() =>
            {
                let b = &job.batch;
                Start {
                    after: row.cursor.clone(),
                    range_end: row.range_end.clone(),
                    size: row.batch_size.unwrap_or(b.size).clamp(b.min, b.max),
                }
            }
            _ => Start::first(job),
        }
    }
}

/// What the server said about the batch that would run next.
#[derive(Debug, Clone, PartialEq)]
pub struct Preflight {
    /// The walk's end: the greatest key now, or the one a stopped job captured (`None`: the
    /// table is empty).
    pub range_end: Option<Vec<String>>,
    /// The checkpoint the batch starts after (`None`: the first batch).
    pub after: Option<Vec<String>>,
    /// The batch's inclusive upper key (`None`: no key is left before the range end).
    pub upper: Option<Vec<String>>,
    /// `EXPLAIN` of the key walk that finds the batch's upper bound.
    pub walk_plan: String,
    /// `EXPLAIN` of the batch's `UPDATE`.
    pub update_plan: String,
    /// What `throttle_query` returns now, when the job has one.
    pub throttle_query: Option<f64>,
}

impl Preflight {
    /// True when the key walk reads an index rather than scanning the table; without one,
    /// every batch costs a full scan and a run over a large table is quadratic.
    pub fn walk_uses_index(&self) -> bool {
        // PostgreSQL's text plan; MySQL's and MariaDB's JSON name the index they read (`"key"`,
        // or `"index_name"` in MySQL 9's second JSON format).
        self.walk_plan.contains("Index Only Scan")
            || self.walk_plan.contains("Index Scan")
            || self.walk_plan.contains("\"key\": \"")
            || self.walk_plan.contains("\"index_name\": \"")
    }
}

/// Why the check failed.
#[derive(Debug, Error)]
pub enum PreflightError {
    #[error(
        "the server rejected the job's SQL; check `where` and the [set] expressions\n  statement: {sql}"
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
        "guard.probe failed; it must be a read-only query that the job's role may run, whose \
         time stands for the application's\n  statement: {sql}"
    )]
    Probe {
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
    /// The run vacuums (one more connection, for its vacuums).
    pub vacuum: bool,
    /// The latency guard runs (one more connection).
    pub guard: bool,
    /// Client connections in use now, other than the one asking.
    pub in_use: u32,
    pub max_connections: u32,
    /// `[throttle] max_connection_use`.
    pub share: f64,
}

impl Budget {
    /// Connections one process holds: its workers', the heartbeat's, the monitor's and the
    /// vacuum's and the guard's.
    pub fn per_process(&self) -> u32 {
        self.workers + self.extras().len() as u32
    }

    /// Whose the connections besides the workers' are: `monitor`, `guard`, `heartbeat`,
    /// `vacuum`, in the order they start.
    pub fn extras(&self) -> Vec<&'static str> {
        let mut extras = Vec::new();
        if self.monitor {
            extras.push("monitor");
        }
        if self.guard {
            extras.push("guard");
        }
        extras.push("heartbeat");
        if self.vacuum {
            extras.push("vacuum");
        }
        extras
    }

    /// `the monitor's, the guard's, the heartbeat's and the vacuum's`.
    fn extras_text(&self) -> String {
        let owned: Vec<String> = self.extras().iter().map(|e| format!("the {e}'s")).collect();
        match owned.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
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

impl PreflightError {
    /// True when the job's own SQL is at fault (exit code 2).
    pub fn is_invalid_job(&self) -> bool {
        matches!(
            self,
            PreflightError::Rejected { .. }
                | PreflightError::ThrottleQuery { .. }
                | PreflightError::Probe { .. }
                | PreflightError::TooManyWorkers(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(monitor: bool, guard: bool) -> Budget {
        Budget {
            workers: 8,
            monitor,
            vacuum: false,
            guard,
            in_use: 60,
            max_connections: 100,
            share: 0.7,
        }
    }

    #[test]
    fn the_guard_holds_a_connection_of_its_own() {
        assert_eq!(budget(true, false).per_process(), 10);
        assert_eq!(budget(true, true).per_process(), 11);
        assert_eq!(budget(false, true).extras(), ["guard", "heartbeat"]);
        let vacuuming = Budget {
            vacuum: true,
            ..budget(true, true)
        };
        assert_eq!(
            vacuuming.extras(),
            ["monitor", "guard", "heartbeat", "vacuum"]
        );
        assert_eq!(vacuuming.per_process(), 12);
        assert_eq!(
            PreflightError::TooManyWorkers(budget(true, true)).to_string(),
            "8 workers would hold 11 connections (8 batch, the monitor's, the guard's and the \
             heartbeat's) and take the server to 71 of max_connections 100, past \
             max_connection_use 0.7 (70); at most 7 workers fit now — use fewer (`run \
             --workers`, `[batch] workers`) or add processes on other hosts later with `run \
             --join`"
        );
    }
}
