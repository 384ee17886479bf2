//! DDL wait: while `backfill run` works through batches made slow on purpose (~2 s each), an
//! `ALTER TABLE … ADD COLUMN` is issued 10 times from another session, and each one's wait for
//! its lock is timed — with the monitor's yield on (the job's defaults) and off (the job plus
//! a `[throttle]` text given as a parameter).
//!
//! Without a yield an `ALTER` waits for the running batch to commit (0–2 s here); with it, the
//! monitor should cancel our batch as soon as it sees the waiter.
//!
//! Owns the scenario's timing loop and its figures, for both databases: a server comes in
//! through [`Ddl`] (PostgreSQL's is here, MySQL's and MariaDB's in `mysql::ddl`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::fixture::{Copy, Server};
use crate::runner::{Outcome, Running};
use crate::stats::{Random, Summary, median};

/// `ALTER`s per window.
pub const ALTERS: usize = 10;

/// Each batch runs 500 rows × 4 ms of `pg_sleep` ≈ 2 s, fixed in size. The sleep's argument
/// names the row: a function scan whose arguments do not change is not run again on rescan.
const SLOW_JOB: &str = "table = \"public.orders\"\n\
    where = \"total_cents IS NULL\"\n\
    [set]\n\
    total_cents = \"(SELECT orders.qty::bigint * orders.price_cents FROM pg_sleep(0.004 + 0 * orders.qty))\"\n\
    [batch]\nsize = 500\nmin = 500\nmax = 500\ntarget = \"2s\"\n\
    [timeouts]\nstatement = \"30s\"\n";

/// One way of running the slow job.
pub struct Mode {
    pub label: &'static str,
    /// Appended to the job text (empty: throttling at its defaults).
    pub extra_toml: String,
}

/// Yield on (the job's throttling at its defaults), then yield off (`yield_off_toml`
/// appended), on both databases.
pub fn modes(yield_off_toml: &str) -> [Mode; 2] {
    [
        Mode {
            label: "yield on (throttle defaults)",
            extra_toml: String::new(),
        },
        Mode {
            label: "yield off",
            extra_toml: yield_off_toml.to_string(),
        },
    ]
}

/// When the `ALTER`s come, after the first batch is seen running.
#[derive(Debug, Clone, Copy)]
pub struct Spacing {
    /// The seeded pause before each `ALTER`, in seconds (lowest, highest).
    pub pause_s: (f64, f64),
    /// Whether every `ALTER` waits for a batch to run before its pause, so that it lands
    /// inside one (and not in the pause a yield leaves behind it).
    pub each_in_a_batch: bool,
}

/// PostgreSQL's spacing, as it was first measured: random moments of the run, some of which
/// fall in the pause after a yield, where an `ALTER` waits for nothing.
const ANYWHERE: Spacing = Spacing {
    pause_s: (0.5, 2.5),
    each_in_a_batch: false,
};

/// A database's side of the scenario: a session of its own beside the run, that waits for
/// locks as long as it has to.
pub trait Ddl {
    /// How many of the job's slow batch statements run now.
    async fn slow_batches(&mut self) -> Result<i64>;
    /// Runs `ALTER TABLE orders ADD COLUMN ddl_{n} …`.
    async fn alter(&mut self, n: usize) -> Result<()>;
}

/// The waits of one mode, or why it could not be measured.
#[derive(Debug, Clone, Serialize)]
pub struct Waits {
    pub mode: String,
    pub waits_ms: Vec<f64>,
    pub summary: Summary,
    /// Median time of the job's committed batches (should be ~2000).
    pub batch_ms_p50: f64,
    pub batches: usize,
    pub retries: usize,
    /// Batches the monitor cancelled for a waiter (`yielded` events): one per `ALTER` that
    /// found a batch in its way, with the yield on.
    pub yields: usize,
    pub error: Option<String>,
}

impl Waits {
    /// What one window measured: its waits and its run, or the error that ended it.
    pub fn of(mode: &str, measured: Result<(Vec<f64>, Outcome)>) -> Waits {
        let (waits_ms, outcome, error) = match measured {
            Ok((waits, outcome)) => (waits, Some(outcome), None),
            Err(error) => (Vec::new(), None, Some(format!("{error:#}"))),
        };
        Waits {
            mode: mode.to_string(),
            summary: Summary::of(&waits_ms),
            waits_ms,
            batch_ms_p50: outcome.as_ref().map_or(0.0, median_batch_ms),
            batches: outcome.as_ref().map_or(0, |o| o.batches.len()),
            retries: outcome.as_ref().map_or(0, |o| o.retries),
            yields: outcome.as_ref().map_or(0, |o| o.count("yielded")),
            error,
        }
    }

    /// Several windows of `mode` as one: every wait in one sample, batches and retries added
    /// up, the median of the windows' batch times, and the first error.
    pub fn pooled<'a>(mode: &str, windows: impl IntoIterator<Item = &'a Waits>) -> Waits {
        let windows: Vec<&Waits> = windows.into_iter().collect();
        let waits_ms: Vec<f64> = windows.iter().flat_map(|w| w.waits_ms.clone()).collect();
        let measured = windows.iter().filter(|w| w.error.is_none());
        Waits {
            mode: mode.to_string(),
            summary: Summary::of(&waits_ms),
            waits_ms,
            batch_ms_p50: median(measured.map(|w| w.batch_ms_p50)),
            batches: windows.iter().map(|w| w.batches).sum(),
            retries: windows.iter().map(|w| w.retries).sum(),
            yields: windows.iter().map(|w| w.yields).sum(),
            error: windows.iter().find_map(|w| w.error.clone()),
        }
    }
}

/// Runs every mode on a fresh copy of the `rows` table.
pub async fn run(server: &mut Server, rows: u64, modes: &[Mode]) -> Result<Vec<Waits>> {
    let mut results = Vec::new();
    for mode in modes {
        eprintln!("  ddl wait: {}", mode.label);
        let copy = server.fresh(rows).await?;
        let dir = tempfile::tempdir()?;
        let job = format!("{SLOW_JOB}{}", mode.extra_toml);
        let waits = measure_postgres(&copy, &job, dir.path()).await;
        server.discard(copy).await?;
        results.push(Waits::of(mode.label, waits));
    }
    Ok(results)
}

async fn measure_postgres(copy: &Copy, job: &str, dir: &Path) -> Result<(Vec<f64>, Outcome)> {
    let running = Running::spawn(copy, job, dir, &[])?;
    let mut ddl = PgConnection::connect(&copy.url).await?;
    // No lock_timeout: the ALTER waits as long as it has to, which is what we measure.
    sqlx::raw_sql("SET lock_timeout = 0; SET statement_timeout = 0")
        .execute(&mut ddl)
        .await?;
    measure(running, &mut ddl, ANYWHERE).await
}

impl Ddl for PgConnection {
    /// Batch `UPDATE`s of the job running (their `pg_sleep` shows in `pg_stat_activity`).
    async fn slow_batches(&mut self) -> Result<i64> {
        let active = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name LIKE 'backfill:%' AND state = 'active' \
               AND query LIKE '%pg_sleep%'",
        )
        .fetch_one(&mut *self)
        .await?;
        Ok(active)
    }

    async fn alter(&mut self, n: usize) -> Result<()> {
        let sql = format!("ALTER TABLE orders ADD COLUMN ddl_{n} int");
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *self)
            .await?;
        Ok(())
    }
}

/// Times the `ALTER`s while `running` runs, then stops it; an error carries the run's exit
/// and the tail of its stderr.
pub async fn measure(
    mut running: Running,
    ddl: &mut impl Ddl,
    spacing: Spacing,
) -> Result<(Vec<f64>, Outcome)> {
    let waits = match alter_while_running(&mut running, ddl, spacing).await {
        Ok(waits) => waits,
        Err(error) => {
            let outcome = running.stop(Duration::from_secs(10)).await?;
            return Err(error.context(format!(
                "backfill exited with {:?}: {}",
                outcome.exit_code,
                crate::runner::tail(&outcome.stderr)
            )));
        }
    };
    let outcome = running.stop(Duration::from_secs(10)).await?;
    Ok((waits, outcome))
}

async fn alter_while_running(
    running: &mut Running,
    ddl: &mut impl Ddl,
    spacing: Spacing,
) -> Result<Vec<f64>> {
    let mut random = Random::new(5);
    let mut waits = Vec::new();
    for n in 1..=ALTERS {
        if n == 1 || spacing.each_in_a_batch {
            wait_for_slow_batch(running, ddl, n).await?;
        }
        let (low, high) = spacing.pause_s;
        tokio::time::sleep(Duration::from_secs_f64(random.between(low, high))).await;
        anyhow::ensure!(!running.has_exited(), "backfill ended before ALTER {n}");
        let started = Instant::now();
        ddl.alter(n).await?;
        waits.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(waits)
}

/// Waits until a batch statement of the job runs, looking every 10 ms (a batch takes ~2 s).
async fn wait_for_slow_batch(running: &mut Running, ddl: &mut impl Ddl, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(
            !running.has_exited(),
            "backfill ended before a batch for ALTER {n}"
        );
        if ddl.slow_batches().await? > 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no batch ran within 60 s before ALTER {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn median_batch_ms(outcome: &Outcome) -> f64 {
    let times: Vec<f64> = outcome
        .batches
        .iter()
        .map(|b| b.elapsed_ms as f64)
        .collect();
    Summary::of(&times).p50
}
