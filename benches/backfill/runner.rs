//! The `backfill` binary as a user runs it: a job file, a subprocess, its NDJSON events, and
//! its peak resident memory.
//!
//! Peak RSS is the kernel's high-water mark `VmHWM` from `/proc/PID/status`, read every
//! [`RSS_POLL`] while the process lives (with `VmRSS` and the CPU time, as of the last look). The mark only grows, so polling loses at most what
//! the process gained in its last interval (its exit path, which allocates nothing big).
//! `getrusage(RUSAGE_CHILDREN)` or `wait4` would be exact, but std has neither and `libc` is
//! not a dependency; `/usr/bin/time` is not on every machine.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::process::{Child, Command};

use crate::fixture::Copy;

const RSS_POLL: Duration = Duration::from_millis(10);

/// The demo's job: `total_cents` from the row's quantity and price, for rows still NULL.
pub const ORDERS_JOB: &str = "table = \"public.orders\"\n\
    where = \"total_cents IS NULL\"\n\
    [set]\n\
    total_cents = \"qty::bigint * price_cents\"\n";

/// The job with a `[batch]` section of its own (fixed at `min..=max`, starting at the middle).
pub fn job_with_batch(min: u32, max: u32) -> String {
    let size = min + (max - min) / 2;
    format!("{ORDERS_JOB}[batch]\nsize = {size}\nmin = {min}\nmax = {max}\n")
}

/// A finished `backfill run`.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Process start to exit, as a user waits for it.
    pub wall_s: f64,
    pub peak_rss_kb: u64,
    /// Resident memory at the last look before the exit (`VmRSS`): what the run settled at.
    pub last_rss_kb: u64,
    /// The process's CPU time (user and system) at the last look before the exit.
    pub cpu_s: f64,
    pub exit_code: Option<i32>,
    /// Rows changed, from the last `batch` event.
    pub rows_done: u64,
    /// `retry` events: batches rolled back (by a timeout, or by the monitor's yield).
    pub retries: usize,
    #[serde(skip)]
    pub batches: Vec<BatchEvent>,
    /// Every NDJSON event of the run, for what a scenario reads beyond batches.
    #[serde(skip)]
    pub events: Vec<serde_json::Value>,
    #[serde(skip)]
    pub stderr: String,
}

/// The vacuums of one run, from its `vacuum` events in state `done`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Vacuums {
    /// Pacing vacuums that ran to their end.
    pub pacing: usize,
    /// How long the final `VACUUM (ANALYZE)` took, when it ran to its end.
    pub final_ms: Option<u64>,
}

/// The `finished` event's heap readings: when the job started, and after the final vacuum.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FinishedHeap {
    pub heap_bytes_before: Option<u64>,
    pub heap_bytes_after: Option<u64>,
}

/// One `batch` event: progress and how long its transaction took.
#[derive(Debug, Clone, Copy)]
pub struct BatchEvent {
    /// Rows changed by the job so far.
    pub rows_done: u64,
    pub elapsed_ms: u64,
}

impl Outcome {
    /// Errors unless the run exited 0, with the tail of its stderr.
    pub fn ensure_success(&self) -> Result<()> {
        anyhow::ensure!(
            self.exit_code == Some(0),
            "backfill run exited with {:?}: {}",
            self.exit_code,
            tail(&self.stderr)
        );
        Ok(())
    }

    /// How many events named `event` the run printed (`guarded`, `paused`…).
    pub fn count(&self, event: &str) -> usize {
        self.named(event).count()
    }

    /// The vacuums that ran to their end.
    pub fn vacuums(&self) -> Vacuums {
        let done = || self.named("vacuum").filter(|e| e["state"] == "done");
        Vacuums {
            pacing: done().filter(|e| e["final"] == false).count(),
            final_ms: done()
                .find(|e| e["final"] == true)
                .and_then(|e| e["elapsed_ms"].as_u64()),
        }
    }

    /// What the `finished` event says of the heap (nothing when the run did not finish).
    pub fn finished_heap(&self) -> FinishedHeap {
        self.named("finished")
            .last()
            .map_or_else(FinishedHeap::default, |e| FinishedHeap {
                heap_bytes_before: e["heap_bytes_before"].as_u64(),
                heap_bytes_after: e["heap_bytes_after"].as_u64(),
            })
    }

    /// The events named `event`, in order.
    pub fn named(&self, event: &str) -> impl Iterator<Item = &serde_json::Value> {
        self.events.iter().filter(move |e| e["event"] == event)
    }

    /// Sum of the batch transactions' own times, in seconds.
    pub fn batch_seconds(&self) -> f64 {
        self.batches
            .iter()
            .map(|b| b.elapsed_ms as f64)
            .sum::<f64>()
            / 1000.0
    }
}

/// A `backfill run` in progress.
pub struct Running {
    child: Child,
    started: Instant,
    peak_rss_kb: u64,
    last_rss_kb: u64,
    cpu_s: f64,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    /// Writes `job` to `dir` and starts `backfill run --json ARGS` on it against `copy`.
    pub fn spawn(copy: &Copy, job: &str, dir: &Path, args: &[String]) -> Result<Running> {
        let job_path = dir.join("orders_total.toml");
        std::fs::write(&job_path, job)?;
        let stdout = dir.join("stdout.ndjson");
        let stderr = dir.join("stderr.txt");
        let child = Command::new(env!("CARGO_BIN_EXE_backfill"))
            .arg("--database-url")
            .arg(&copy.url)
            .args(["run", "--json"])
            .args(args)
            .arg(&job_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .kill_on_drop(true)
            .spawn()
            .context("start the backfill binary")?;
        Ok(Running {
            child,
            started: Instant::now(),
            peak_rss_kb: 0,
            last_rss_kb: 0,
            cpu_s: 0.0,
            stdout,
            stderr,
        })
    }

    /// Waits for the exit, sampling the memory high-water mark meanwhile.
    pub async fn finish(mut self) -> Result<Outcome> {
        let status = loop {
            if let Some(pid) = self.child.id() {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                self.peak_rss_kb = self.peak_rss_kb.max(kb(&status, "VmHWM:"));
                // An exiting process has no `VmRSS` line left: keep the last one it had.
                let rss = kb(&status, "VmRSS:");
                if rss > 0 {
                    self.last_rss_kb = rss;
                }
                self.cpu_s = self.cpu_s.max(process_cpu_s(pid));
            }
            tokio::select! {
                status = self.child.wait() => break status?,
                () = tokio::time::sleep(RSS_POLL) => {}
            }
        };
        self.outcome(status)
    }

    /// True once the process has exited (it is then reaped by `finish`).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Asks the run to stop after its current batch (SIGTERM), then waits; SIGKILL after
    /// `grace`.
    pub async fn stop(mut self, grace: Duration) -> Result<Outcome> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.child.kill().await?;
                self.child.wait().await?
            }
        };
        self.outcome(status)
    }

    fn outcome(&self, status: ExitStatus) -> Result<Outcome> {
        let wall = self.started.elapsed();
        let stdout = std::fs::read_to_string(&self.stdout)?;
        let events = events(&stdout);
        let batches = batch_events(&events);
        Ok(Outcome {
            wall_s: wall.as_secs_f64(),
            peak_rss_kb: self.peak_rss_kb,
            last_rss_kb: self.last_rss_kb,
            cpu_s: self.cpu_s,
            exit_code: status.code(),
            rows_done: batches.last().map_or(0, |b| b.rows_done),
            retries: events.iter().filter(|e| e["event"] == "retry").count(),
            batches,
            events,
            stderr: std::fs::read_to_string(&self.stderr)?,
        })
    }
}

/// Runs `job` against `copy` with `run`'s `args` to the end and checks that it succeeded.
pub async fn run_to_end(copy: &Copy, job: &str, args: &[String]) -> Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let outcome = Running::spawn(copy, job, dir.path(), args)?
        .finish()
        .await?;
    outcome.ensure_success()?;
    Ok(outcome)
}

/// A `/proc/PID/status` field in kB (`VmHWM:`, `VmRSS:`); 0 when the process is gone.
fn kb(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User and system CPU time of process `pid` from `/proc/PID/stat`, in seconds (clock ticks
/// of 1/100 s, Linux's `USER_HZ` on every architecture it ships); 0 when it is gone.
pub fn process_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name, in parentheses, may hold spaces: count the fields after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are the line's fields 14 and 15: 12th and 13th after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The events of an NDJSON stream (lines that are not JSON are skipped).
fn events(ndjson: &str) -> Vec<serde_json::Value> {
    ndjson
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn batch_events(events: &[serde_json::Value]) -> Vec<BatchEvent> {
    events
        .iter()
        .filter(|event| event["event"] == "batch")
        .map(|event| BatchEvent {
            rows_done: event["rows_done"].as_u64().unwrap_or(0),
            elapsed_ms: event["elapsed_ms"].as_u64().unwrap_or(0),
        })
        .collect()
}

/// The last lines of a process's stderr, for error messages.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
