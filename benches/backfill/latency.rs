//! Foreground latency: the application's transactions (see `pgbench`) while the table is
//! idle, during `backfill run` at its defaults, with the latency guard on, with the
//! `[batch] pause_ratio` that gives the guarded run's throughput (the guard's price in the
//! same coin), and during one `UPDATE` of the table; then, with no application at all, the
//! default run and the guarded one again (what the guard costs where there is nothing to
//! protect) — each window on a fresh copy, and the whole sequence repeated in rounds.
//!
//! This machine is shared and noisy, so the modes are interleaved (every mode once, then again
//! in the same order) and each figure reported is the median over rounds: a burst of someone
//! else's work hits one window of every mode rather than every window of one. Ratios are taken
//! within a round (against that round's idle window and default run, loaded or quiet) before
//! their median. The transactions *scheduled* inside a window count, also when they end after
//! it (a client blocked by the window's work ends when it commits).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde::Serialize;

use crate::fixture::{self, Copy, Server};
use crate::pgbench::{Foreground, Load};
use crate::runner;
use crate::runqueue::RunQueue;
use crate::stats::{Summary, median};

/// Load before a window opens, so that connections are up and caches warm.
const WARM_UP: Duration = Duration::from_secs(2);

/// The label of the idle window, which every other mode is compared with.
pub const IDLE: &str = "idle";
/// The label of the run at the job's defaults, whose throughput the other runs are priced in.
pub const DEFAULT_RUN: &str = "backfill run (defaults)";
/// The label of the run with the latency guard on (its job text is `--guard-toml`).
pub const GUARDED_RUN: &str = "backfill run, guard on";
/// The label of the run whose `pause_ratio` gives the guarded run's throughput of its round.
pub const MATCHED_RUN: &str = "backfill run, pause_ratio at the guard's rows/s";
/// The labels of the default and guarded runs with no application.
pub const QUIET_RUN: &str = "backfill run (defaults), no application";
pub const QUIET_GUARDED_RUN: &str = "backfill run, guard on, no application";

/// The modes in the order every round runs them.
const MODES: [&str; 7] = [
    IDLE,
    DEFAULT_RUN,
    GUARDED_RUN,
    MATCHED_RUN,
    "single UPDATE",
    QUIET_RUN,
    QUIET_GUARDED_RUN,
];

/// What happens to the table during a window.
#[derive(Debug, Clone)]
enum Work {
    /// Nothing: the foreground alone, for `--latency-seconds`.
    Idle,
    /// `backfill run` on the default job with this text appended.
    Run(String),
    /// One `UPDATE` of the whole table.
    SingleUpdate,
}

impl Workload {
    /// What mode `label` does in a round whose earlier windows are `round`, and whether the
    /// application runs meanwhile.
    fn work(&self, label: &str, round: &[Window]) -> (Work, bool) {
        let rate = |mode: &str| {
            round
                .iter()
                .find(|w| w.mode == mode)
                .and_then(|w| w.work.map(|f| f.rows_per_s))
        };
        match label {
            IDLE => (Work::Idle, true),
            DEFAULT_RUN => (Work::Run(String::new()), true),
            GUARDED_RUN => (Work::Run(self.guard_toml.clone()), true),
            // A duty of guarded/default: a sleep of default/guarded − 1 times each batch.
            MATCHED_RUN => {
                let ratio = match (rate(DEFAULT_RUN), rate(GUARDED_RUN)) {
                    (Some(default), Some(guarded)) if guarded > 0.0 => {
                        (default / guarded - 1.0).max(0.0)
                    }
                    _ => 0.0,
                };
                (
                    Work::Run(format!("[batch]\npause_ratio = {ratio:.3}\n")),
                    true,
                )
            }
            QUIET_RUN => (Work::Run(String::new()), false),
            QUIET_GUARDED_RUN => (Work::Run(self.guard_toml.clone()), false),
            _ => (Work::SingleUpdate, true),
        }
    }
}

/// How the scenario runs.
pub struct Workload {
    pub foreground: Foreground,
    /// Length of the idle window.
    pub idle_seconds: u32,
    /// How many times every mode runs.
    pub rounds: u32,
    /// The default job; the runs' modes append to it.
    pub job: String,
    /// What the guarded run appends to the job.
    pub guard_toml: String,
}

/// What the scenario found: every window, and the medians per mode.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub rounds: u32,
    /// The guarded run's job text.
    pub guard_toml: String,
    pub modes: Vec<ModeSummary>,
    pub windows: Vec<Window>,
}

/// One mode in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub round: u32,
    pub mode: String,
    pub window_s: f64,
    /// The foreground's latency, in milliseconds.
    pub latency_ms: Summary,
    /// Mean runnable tasks on the machine during the window (see `runqueue`).
    pub run_queue: f64,
    /// What the window's work achieved (none when idle).
    pub work: Option<Figures>,
}

/// The work of one window: how fast it filled the column and how much of its time it spent
/// in batch transactions.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figures {
    pub wall_s: f64,
    pub rows_per_s: f64,
    /// Time in batch transactions / wall time (1 for the single `UPDATE`): the duty cycle.
    pub in_batches: f64,
    /// `guarded` events: how often the latency guard started holding the run back.
    pub guarded: usize,
    /// With the guard on: its probe's baseline, and the median over batches of its recent p90.
    pub probe_baseline_ms: Option<f64>,
    pub probe_ms: Option<f64>,
}

/// One mode over every round: medians.
#[derive(Debug, Clone, Serialize)]
pub struct ModeSummary {
    pub mode: String,
    pub transactions: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Median over rounds of p99 / that round's idle p99.
    pub p99_vs_idle: f64,
    pub run_queue: f64,
    /// Medians of the work's figures (none when idle).
    pub wall_s: Option<f64>,
    pub rows_per_s: Option<f64>,
    /// Median over rounds of rows/s / that round's default run's rows/s.
    pub vs_default_run: Option<f64>,
    pub in_batches: Option<f64>,
    pub guarded: Option<f64>,
    pub probe_baseline_ms: Option<f64>,
    pub probe_ms: Option<f64>,
}

/// Runs every mode `rounds` times, in the same order each round, each on a fresh copy of the
/// `rows` table.
pub async fn run(server: &mut Server, rows: u64, workload: &Workload) -> Result<Latency> {
    let mut windows: Vec<Window> = Vec::new();
    for round in 1..=workload.rounds {
        let first = windows.len();
        for label in MODES {
            let (work, loaded) = workload.work(label, &windows[first..]);
            let window = Shape {
                round,
                label,
                work,
                loaded,
            };
            windows.push(window.measure(server, rows, workload).await?);
        }
    }
    Ok(Latency {
        rounds: workload.rounds,
        guard_toml: workload.guard_toml.clone(),
        modes: MODES
            .iter()
            .map(|label| summarise(label, &windows))
            .collect(),
        windows,
    })
}

/// One window to measure.
struct Shape<'a> {
    round: u32,
    label: &'a str,
    work: Work,
    /// The application runs during the window.
    loaded: bool,
}

impl Shape<'_> {
    /// Starts the load (when `loaded`) on a fresh copy, does the work inside the window,
    /// summarises the transactions scheduled in it, and checks the copy's totals.
    async fn measure(self, server: &mut Server, rows: u64, workload: &Workload) -> Result<Window> {
        let Shape {
            round,
            label,
            work,
            loaded,
        } = self;
        eprintln!("  latency, round {round}: {label}");
        let copy = server.fresh(rows).await?;
        let load = if loaded {
            let load = Load::start(&workload.foreground, &copy)?;
            tokio::time::sleep(WARM_UP).await;
            Some(load)
        } else {
            None
        };
        let queue = RunQueue::sample();
        let opened = epoch_seconds();
        let worked = perform(work, &copy, workload).await;
        let closed = epoch_seconds();
        let run_queue = queue.mean().await;
        let transactions = match load {
            Some(load) => load.finish().await,
            None => Ok(Vec::new()),
        };
        let checked = match &worked {
            Ok(Some((_, changed))) => fixture::check_filled(&copy, label, *changed).await,
            _ => Ok(()),
        };
        server.discard(copy).await?;
        let figures = worked?.map(|(figures, _)| figures);
        checked?;
        let latencies: Vec<f64> = transactions?
            .into_iter()
            .filter(|t| (opened..=closed).contains(&t.scheduled))
            .map(|t| t.latency_ms)
            .collect();
        Ok(Window {
            round,
            mode: label.to_string(),
            window_s: closed - opened,
            latency_ms: Summary::of(&latencies),
            run_queue,
            work: figures,
        })
    }
}

/// Does a window's work: its figures and the rows it changed (none when idle).
async fn perform(work: Work, copy: &Copy, workload: &Workload) -> Result<Option<(Figures, u64)>> {
    match work {
        Work::Idle => {
            tokio::time::sleep(Duration::from_secs(workload.idle_seconds.into())).await;
            Ok(None)
        }
        Work::Run(extra) => {
            let job = format!("{}{extra}", workload.job);
            let outcome = runner::run_to_end(copy, &job, &[]).await?;
            let figures = Figures {
                wall_s: outcome.wall_s,
                rows_per_s: copy.rows as f64 / outcome.wall_s,
                in_batches: outcome.batch_seconds() / outcome.wall_s,
                guarded: outcome.count("guarded"),
                probe_baseline_ms: outcome
                    .named("guard_ready")
                    .find_map(|e| e["baseline_ms"].as_f64()),
                probe_ms: {
                    let probes: Vec<f64> = outcome
                        .named("batch")
                        .filter_map(|e| e["probe_ms"].as_f64())
                        .collect();
                    (!probes.is_empty()).then(|| median(probes))
                },
            };
            Ok(Some((figures, outcome.rows_done)))
        }
        Work::SingleUpdate => {
            let (took, changed) = fixture::timed(copy, fixture::SINGLE_UPDATE).await?;
            let wall_s = took.as_secs_f64();
            let figures = Figures {
                wall_s,
                rows_per_s: copy.rows as f64 / wall_s,
                in_batches: 1.0,
                guarded: 0,
                probe_baseline_ms: None,
                probe_ms: None,
            };
            Ok(Some((figures, changed)))
        }
    }
}

/// The medians of `mode`'s windows; ratios against the idle window and the default run of
/// the same round.
fn summarise(mode: &str, windows: &[Window]) -> ModeSummary {
    // The quiet runs are priced against the quiet default run, the others against the loaded.
    let default_run = if mode == QUIET_GUARDED_RUN {
        QUIET_RUN
    } else {
        DEFAULT_RUN
    };
    let same_round =
        |label: &'static str, round: u32| of(windows, label).find(|w| w.round == round);
    let figures = |pick: fn(&Figures) -> Option<f64>| {
        let values: Vec<f64> = of(windows, mode)
            .filter_map(|w| w.work.as_ref().and_then(pick))
            .collect();
        (!values.is_empty()).then(|| median(values))
    };
    let latency =
        |pick: fn(&Summary) -> f64| median(of(windows, mode).map(|w| pick(&w.latency_ms)));
    let vs_default: Vec<f64> = of(windows, mode)
        .filter_map(|w| {
            let base = same_round(default_run, w.round)?.work?.rows_per_s;
            Some(w.work?.rows_per_s / base)
        })
        .collect();
    ModeSummary {
        mode: mode.to_string(),
        transactions: latency(|s| s.count as f64),
        p50_ms: latency(|s| s.p50),
        p95_ms: latency(|s| s.p95),
        p99_ms: latency(|s| s.p99),
        max_ms: latency(|s| s.max),
        p99_vs_idle: median(of(windows, mode).filter_map(|w| {
            let idle = same_round(IDLE, w.round)?.latency_ms.p99;
            Some(w.latency_ms.p99 / idle)
        })),
        run_queue: median(of(windows, mode).map(|w| w.run_queue)),
        wall_s: figures(|f| Some(f.wall_s)),
        rows_per_s: figures(|f| Some(f.rows_per_s)),
        vs_default_run: (!vs_default.is_empty()).then(|| median(vs_default)),
        in_batches: figures(|f| Some(f.in_batches)),
        guarded: figures(|f| Some(f.guarded as f64)),
        probe_baseline_ms: figures(|f| f.probe_baseline_ms),
        probe_ms: figures(|f| f.probe_ms),
    }
}

/// The windows of one mode, round by round.
fn of<'a>(windows: &'a [Window], mode: &'a str) -> impl Iterator<Item = &'a Window> {
    windows.iter().filter(move |w| w.mode == mode)
}

fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}
