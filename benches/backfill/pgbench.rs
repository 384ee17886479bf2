//! The foreground workload: `pgbench` at a fixed rate (`-R`) running random single-row
//! `UPDATE`s and `SELECT`s on `orders` while something else happens, and its per-transaction
//! log read back.
//!
//! Latency is pgbench's per-transaction log value: from the transaction's *scheduled* start
//! (so it includes any queueing behind a blocked client, as pgbench's own `-R` report does)
//! to its end. pgbench runs in short segments, each writing complete logs, so that a window
//! of unknown length needs no signal to end it (pgbench loses its buffered log when killed).
//! Owns: the script, the command line, the segments and their logs; not which transactions
//! count (the latency scenario picks them by scheduled start).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use tokio::task::JoinHandle;

use crate::fixture::Copy;
use crate::runner;

/// Seconds of one pgbench segment.
const SEGMENT_S: u32 = 5;

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

/// Where pgbench runs and how hard it pushes.
pub struct Foreground {
    pub bindir: PathBuf,
    pub port: u16,
    /// `pgbench -R`: transactions per second.
    pub rate: u32,
}

/// One logged pgbench transaction.
pub struct Transaction {
    /// When it was due to start, seconds since the epoch (its end less its latency).
    pub scheduled: f64,
    pub latency_ms: f64,
}

/// pgbench segments, one after another, until told to stop.
pub struct Load {
    stop: Arc<AtomicBool>,
    segments: JoinHandle<Result<()>>,
    logs: tempfile::TempDir,
}

impl Load {
    /// Starts the first segment against `copy`.
    pub fn start(foreground: &Foreground, copy: &Copy) -> Result<Load> {
        let logs = tempfile::tempdir()?;
        let script_path = logs.path().join("foreground.sql");
        std::fs::write(&script_path, script(copy.rows))?;
        let stop = Arc::new(AtomicBool::new(false));
        let command = pgbench(foreground, copy, &script_path);
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
    pub async fn finish(self) -> Result<Vec<Transaction>> {
        self.stop.store(true, Ordering::Relaxed);
        self.segments.await??;
        read_logs(self.logs.path())
    }
}

/// The pgbench argv, without the per-segment log prefix.
fn pgbench(foreground: &Foreground, copy: &Copy, script: &Path) -> Vec<String> {
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
    let mut command = vec![foreground.bindir.join("pgbench").display().to_string()];
    command.extend(args.map(String::from));
    command.extend([
        format!("-p{}", foreground.port),
        format!("-R{}", foreground.rate),
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
