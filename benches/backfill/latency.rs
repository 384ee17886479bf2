//! Foreground latency: `pgbench` at a fixed rate (`-R`) runs random single-row `UPDATE`s and
//! `SELECT`s on `orders`, idle, during `backfill run`, and during one `UPDATE` of the table.
//!
//! Latency is pgbench's per-transaction log value: from the transaction's *scheduled* start
//! (so it includes any queueing behind a blocked client, as pgbench's own `-R` report does)
//! to its end. The transactions *scheduled* inside the phase's window count, also when they
//! end after it (a client blocked by the phase's work ends when it commits). pgbench runs in
//! short segments, each writing complete logs, so that a phase of unknown length needs no
//! signal to end it (pgbench loses its buffered log when killed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::fixture::{self, Copy, Server};
use crate::runner;
use crate::stats::Summary;

/// Seconds of one pgbench segment.
const SEGMENT_S: u32 = 5;
/// Load before a phase's window opens, so that connections are up and caches warm.
const WARM_UP: Duration = Duration::from_secs(2);

/// The foreground workload: one row read and "updated" (to its own value, so that the
/// backfill's result does not change) by primary key. `qty = qty` still writes a new row
/// version and takes the row lock, like an application's update.
fn script(rows: u64) -> String {
    format!(
        "\\set id random(1, {rows})\n\
         UPDATE orders SET qty = qty WHERE id = :id;\n\
         SELECT qty, price_cents, total_cents FROM orders WHERE id = :id;\n"
    )
}

/// Latency of the foreground workload during one phase, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub phase: String,
    pub window_s: f64,
    pub latency_ms: Summary,
    /// p99 relative to the idle phase's p99.
    pub p99_vs_idle: f64,
}

/// How pgbench is run.
pub struct Workload {
    pub bindir: PathBuf,
    pub port: u16,
    pub rate: u32,
    pub idle_seconds: u32,
    /// The `backfill run` job of the "during" phase.
    pub job: String,
}

/// Runs the three phases, each on a fresh copy of the `rows` table.
pub async fn run(server: &mut Server, rows: u64, workload: &Workload) -> Result<Vec<Phase>> {
    let idle = Duration::from_secs(workload.idle_seconds.into());
    let mut phases = vec![
        phase(server, rows, workload, "idle", async |_: &Copy| {
            tokio::time::sleep(idle).await;
            Ok(())
        })
        .await?,
        phase(
            server,
            rows,
            workload,
            "during backfill run",
            async |copy: &Copy| runner::run_to_end(copy, &workload.job, &[]).await.map(drop),
        )
        .await?,
        phase(
            server,
            rows,
            workload,
            "during single UPDATE",
            async |copy: &Copy| {
                let sql = "UPDATE orders SET total_cents = qty::bigint * price_cents \
                       WHERE total_cents IS NULL";
                fixture::timed(copy, sql).await.map(drop)
            },
        )
        .await?,
    ];
    let idle_p99 = phases[0].latency_ms.p99;
    for phase in &mut phases {
        phase.p99_vs_idle = phase.latency_ms.p99 / idle_p99;
    }
    Ok(phases)
}

/// Starts the load on a fresh copy, runs `work` inside the window, and summarises the
/// transactions scheduled in it.
async fn phase(
    server: &mut Server,
    rows: u64,
    workload: &Workload,
    label: &str,
    work: impl AsyncFnOnce(&Copy) -> Result<()>,
) -> Result<Phase> {
    eprintln!("  latency: {label}");
    let copy = server.fresh(rows).await?;
    let load = Load::start(workload, &copy)?;
    tokio::time::sleep(WARM_UP).await;
    let opened = epoch_seconds();
    let worked = work(&copy).await;
    let closed = epoch_seconds();
    let transactions = load.finish().await;
    server.discard(copy).await?;
    worked?;
    let latencies: Vec<f64> = transactions?
        .into_iter()
        .filter(|t| (opened..=closed).contains(&t.scheduled))
        .map(|t| t.latency_ms)
        .collect();
    Ok(Phase {
        phase: label.to_string(),
        window_s: closed - opened,
        latency_ms: Summary::of(&latencies),
        p99_vs_idle: 0.0,
    })
}

fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// One logged pgbench transaction.
struct Transaction {
    /// When it was due to start, seconds since the epoch (its end less its latency).
    scheduled: f64,
    latency_ms: f64,
}

/// pgbench segments, one after another, until told to stop.
struct Load {
    stop: Arc<AtomicBool>,
    segments: JoinHandle<Result<()>>,
    logs: tempfile::TempDir,
}

impl Load {
    fn start(workload: &Workload, copy: &Copy) -> Result<Load> {
        let logs = tempfile::tempdir()?;
        let script_path = logs.path().join("foreground.sql");
        std::fs::write(&script_path, script(copy.rows))?;
        let stop = Arc::new(AtomicBool::new(false));
        let command = pgbench(workload, copy, &script_path);
        let (flag, dir) = (stop.clone(), logs.path().to_path_buf());
        let segments = tokio::spawn(async move {
            for segment in 0.. {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                run_segment(&command, &dir, segment).await?;
            }
            Ok(())
        });
        Ok(Load {
            stop,
            segments,
            logs,
        })
    }

    /// Lets the current segment end and reads every transaction logged.
    async fn finish(self) -> Result<Vec<Transaction>> {
        self.stop.store(true, Ordering::Relaxed);
        self.segments.await??;
        read_logs(self.logs.path())
    }
}

/// The pgbench argv, without the per-segment log prefix.
fn pgbench(workload: &Workload, copy: &Copy, script: &Path) -> Vec<String> {
    let args = [
        "-n",
        "-c",
        "4",
        "-j",
        "2",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-l",
    ];
    let mut command = vec![workload.bindir.join("pgbench").display().to_string()];
    command.extend(args.map(String::from));
    command.extend([
        format!("-p{}", workload.port),
        format!("-R{}", workload.rate),
        format!("-T{SEGMENT_S}"),
        format!("-f{}", script.display()),
        copy.name.clone(),
    ]);
    command
}

async fn run_segment(command: &[String], dir: &Path, segment: u32) -> Result<()> {
    let output = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .arg(format!(
            "--log-prefix={}",
            dir.join(format!("seg{segment}")).display()
        ))
        .output()
        .await
        .context("run pgbench")?;
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}",
        runner::tail(&String::from_utf8_lossy(&output.stderr))
    );
    Ok(())
}

/// Every transaction in the per-thread logs (`seg*.PID[.THREAD]`). A line is
/// `client transaction latency_us script epoch_s epoch_us [schedule_lag_us]`.
fn read_logs(dir: &Path) -> Result<Vec<Transaction>> {
    let mut transactions = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("seg"))
        {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        transactions.extend(text.lines().filter_map(parse_log_line));
    }
    Ok(transactions)
}

fn parse_log_line(line: &str) -> Option<Transaction> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let latency_us: f64 = fields.get(2)?.parse().ok()?;
    let seconds: f64 = fields.get(4)?.parse().ok()?;
    let micros: f64 = fields.get(5)?.parse().ok()?;
    Some(Transaction {
        scheduled: seconds + micros / 1e6 - latency_us / 1e6,
        latency_ms: latency_us / 1000.0,
    })
}
