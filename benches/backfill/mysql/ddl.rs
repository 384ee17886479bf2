//! DDL wait on MySQL and MariaDB (issue 19): PostgreSQL's scenario (`crate::ddl`) on the
//! section's server. A job made slow on purpose (500 rows a batch, `SLEEP(0.004)` a row: ~2 s)
//! runs on a fresh copy of the table while another session times `ALTER TABLE orders ADD
//! COLUMN ddl_N INT` 10 times — instant on both servers, so that what is timed is the wait for
//! the table's metadata lock. Each `ALTER` waits for a batch to run, then 0.2–1.5 s, so that
//! it lands inside one on both sides of a yield (after a yield the run pauses for a
//! `cooldown`, where an `ALTER` would wait for nothing). Yield on and off alternate, a fresh
//! table each, for the section's rounds; each mode's waits are pooled over the rounds.
//!
//! Owns the job and the server's `Ddl` session; the timing loop and the figures are
//! `crate::ddl`'s, the table `server`'s.

use anyhow::Result;
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection as _, MySqlConnection};

use super::server::{Bench, EXPR, TABLE};
use crate::ddl::{self, Ddl, Mode, Spacing, Waits};
use crate::fixture::Copy;
use crate::runner::Running;

/// Every `ALTER` lands inside a batch, 0.2–1.5 s after it is seen to start (batches take
/// ~2 s).
const IN_A_BATCH: Spacing = Spacing {
    pause_s: (0.2, 1.5),
    each_in_a_batch: true,
};

/// The `ALTER`s wait this long at most (`lock_wait_timeout`, seconds): for ever, as far as a
/// 2 s batch is concerned.
const LOCK_WAIT_S: u32 = 600;

/// The waits of every window and of every mode over the rounds.
#[derive(Debug, Default, Serialize)]
pub struct DdlWait {
    pub rounds: u32,
    /// Per mode, every window's waits pooled.
    pub modes: Vec<Waits>,
    /// Every window in the order they ran (mode by mode within a round).
    pub windows: Vec<Window>,
}

/// One mode in one round.
#[derive(Debug, Serialize)]
pub struct Window {
    pub round: u32,
    pub waits: Waits,
}

/// The slow job under its own `name` (every window is a new job), with `extra` appended.
fn job(name: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\ntable = \"{TABLE}\"\nwhere = \"total_cents IS NULL\"\n\n\
         [set]\ntotal_cents = \"{EXPR} + SLEEP(0.004)\"\n\n\
         [batch]\nsize = 500\nmin = 500\nmax = 500\ntarget = \"2s\"\n\n\
         [timeouts]\nstatement = \"30s\"\n{extra}"
    )
}

/// Runs `modes` in turn, `rounds` times, each on a fresh copy of the table.
pub async fn run(bench: &mut Bench, rounds: u32, modes: &[Mode]) -> Result<DdlWait> {
    let mut windows = Vec::new();
    for round in 1..=rounds {
        for (i, mode) in modes.iter().enumerate() {
            bench.fresh().await?;
            eprintln!("  {} round {round}: ddl wait, {}", bench.flavor, mode.label);
            let name = format!("ddl_{round}_{i}");
            let job = job(&name, &mode.extra_toml);
            let waits = Waits::of(mode.label, measure(bench, &job).await);
            eprintln!(
                "    p50 {:.0} ms, p99 {:.0} ms{}",
                waits.summary.p50,
                waits.summary.p99,
                waits
                    .error
                    .as_deref()
                    .map_or(String::new(), |e| format!("; {e}"))
            );
            windows.push(Window { round, waits });
        }
    }
    let modes = modes
        .iter()
        .map(|mode| {
            let mine = windows.iter().filter(|w| w.waits.mode == mode.label);
            Waits::pooled(mode.label, mine.map(|w| &w.waits))
        })
        .collect();
    Ok(DdlWait {
        rounds,
        modes,
        windows,
    })
}

async fn measure(bench: &Bench, job: &str) -> Result<(Vec<f64>, crate::runner::Outcome)> {
    let copy = Copy {
        name: TABLE.to_string(),
        url: bench.url.clone(),
        rows: bench.rows,
    };
    let dir = tempfile::tempdir()?;
    let running = Running::spawn(&copy, job, dir.path(), &[])?;
    let mut ddl = MySqlConnection::connect(&bench.url).await?;
    let sql = format!("SET SESSION lock_wait_timeout = {LOCK_WAIT_S}");
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut ddl).await?;
    let measured = ddl::measure(running, &mut ddl, IN_A_BATCH).await;
    ddl.close().await?;
    measured
}

impl Ddl for MySqlConnection {
    /// The job's batch `UPDATE`s running: their `SLEEP` shows in the processlist (on both
    /// servers, whether the statement was prepared or not).
    async fn slow_batches(&mut self) -> Result<i64> {
        let running = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS SIGNED) FROM information_schema.PROCESSLIST \
              WHERE ID <> CONNECTION_ID() AND INFO LIKE 'UPDATE%SLEEP(%'",
        )
        .fetch_one(&mut *self)
        .await?;
        Ok(running)
    }

    async fn alter(&mut self, n: usize) -> Result<()> {
        let sql = format!("ALTER TABLE {TABLE} ADD COLUMN ddl_{n} INT");
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *self)
            .await?;
        Ok(())
    }
}
