//! DDL wait: while `backfill run` works through batches made slow on purpose (~2 s each), an
//! `ALTER TABLE … ADD COLUMN` is issued 10 times from another session, and each one's wait for
//! its ACCESS EXCLUSIVE lock is timed — with the monitor's yield on (the job's defaults) and
//! off (the job plus a `[throttle]` text given as a parameter).
//!
//! Without a yield an `ALTER` waits for the running batch to commit (0–2 s here); with it, the
//! monitor should cancel our batch as soon as it sees the waiter.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::fixture::{Copy, Server};
use crate::runner::{Outcome, Running};
use crate::stats::{Random, Summary};

const ALTERS: usize = 10;

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
    pub error: Option<String>,
}

/// Runs every mode on a fresh copy of the `rows` table.
pub async fn run(server: &mut Server, rows: u64, modes: &[Mode]) -> Result<Vec<Waits>> {
    let mut results = Vec::new();
    for mode in modes {
        eprintln!("  ddl wait: {}", mode.label);
        let copy = server.fresh(rows).await?;
        let dir = tempfile::tempdir()?;
        let job = format!("{SLOW_JOB}{}", mode.extra_toml);
        let waits = measure(&copy, &job, dir.path()).await;
        server.discard(copy).await?;
        let (waits_ms, outcome, error) = match waits {
            Ok((waits, outcome)) => (waits, Some(outcome), None),
            Err(error) => (Vec::new(), None, Some(format!("{error:#}"))),
        };
        results.push(Waits {
            mode: mode.label.to_string(),
            summary: Summary::of(&waits_ms),
            waits_ms,
            batch_ms_p50: outcome.as_ref().map_or(0.0, median_batch_ms),
            batches: outcome.as_ref().map_or(0, |o| o.batches.len()),
            retries: outcome.as_ref().map_or(0, |o| o.retries),
            error,
        });
    }
    Ok(results)
}

/// Starts the job, times the `ALTER`s while it runs, then stops it.
async fn measure(copy: &Copy, job: &str, dir: &Path) -> Result<(Vec<f64>, Outcome)> {
    let mut running = Running::spawn(copy, job, dir, &[])?;
    let mut ddl = PgConnection::connect(&copy.url).await?;
    // No lock_timeout: the ALTER waits as long as it has to, which is what we measure.
    sqlx::raw_sql("SET lock_timeout = 0; SET statement_timeout = 0")
        .execute(&mut ddl)
        .await?;
    let waits = match alter_while_running(&mut running, &mut ddl).await {
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

async fn alter_while_running(running: &mut Running, ddl: &mut PgConnection) -> Result<Vec<f64>> {
    wait_for_slow_batch(running, ddl).await?;
    let mut random = Random::new(5);
    let mut waits = Vec::new();
    for n in 1..=ALTERS {
        tokio::time::sleep(Duration::from_secs_f64(random.between(0.5, 2.5))).await;
        anyhow::ensure!(!running.has_exited(), "backfill ended before ALTER {n}");
        let sql = format!("ALTER TABLE orders ADD COLUMN ddl_{n} int");
        let started = Instant::now();
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *ddl).await?;
        waits.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(waits)
}

/// Waits until a batch `UPDATE` of the job runs (its `pg_sleep` shows in `pg_stat_activity`).
async fn wait_for_slow_batch(running: &mut Running, conn: &mut PgConnection) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(
            !running.has_exited(),
            "backfill ended before its first batch"
        );
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name LIKE 'backfill:%' AND state = 'active' \
               AND query LIKE '%pg_sleep%'",
        )
        .fetch_one(&mut *conn)
        .await?;
        if active > 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "no batch started within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
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
