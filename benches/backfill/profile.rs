//! Profile: where the time of a `backfill run` batch goes. The copy's database gets
//! `log_min_duration_statement = 0`, so the server logs every statement of the run with its
//! duration (parse, bind and execute separately); those are summed per kind of statement
//! and set against the batch times the run itself reports. What the server did not spend is
//! round trips and client work. Logging slows the run a little; this run is not a throughput
//! number.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::fixture::Server;
use crate::runner;

/// Server time of one kind of statement, over the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub kind: String,
    /// Statements executed (parse and bind messages are counted in the time, not here).
    pub executed: u64,
    pub total_ms: f64,
    pub ms_per_batch: f64,
}

/// The breakdown of one profiled run.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub rows: u64,
    pub batches: usize,
    pub wall_s: f64,
    /// Mean batch transaction time as the run reports it (BEGIN to COMMIT, client side).
    pub batch_ms: f64,
    /// Mean server time per batch: the sum of the batch's statement kinds below.
    pub server_ms_per_batch: f64,
    /// Mean rows per batch.
    pub rows_per_batch: f64,
    pub costs: Vec<Cost>,
}

/// The statement kinds of a batch transaction, in the order they run.
const BATCH_KINDS: &[&str] = &[
    "BEGIN",
    "set_config",
    "key walk",
    "UPDATE rows",
    "checkpoint",
    "COMMIT",
];

/// Runs `job` once with statement logging on and reads the log back.
pub async fn run(server: &mut Server, job: &str, rows: u64) -> Result<Profile> {
    eprintln!("  profile: backfill run with log_min_duration_statement = 0");
    let copy = server.fresh(rows).await?;
    server.log_statements(&copy).await?;
    let log = server.log_path();
    let offset = std::fs::metadata(&log)?.len();
    let outcome = runner::run_to_end(&copy, job, &[]).await?;
    server.discard(copy).await?;
    let costs = costs(&read_from(&log, offset)?, outcome.batches.len());
    let batches = outcome.batches.len().max(1) as f64;
    let server_ms = costs
        .iter()
        .filter(|c| BATCH_KINDS.contains(&c.kind.as_str()))
        .map(|c| c.total_ms)
        .sum::<f64>();
    Ok(Profile {
        rows,
        batches: outcome.batches.len(),
        wall_s: outcome.wall_s,
        batch_ms: outcome.batch_seconds() * 1000.0 / batches,
        server_ms_per_batch: server_ms / batches,
        rows_per_batch: outcome.rows_done as f64 / batches,
        costs,
    })
}

fn read_from(path: &Path, offset: u64) -> Result<String> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// The monitor's lock query opens with this; every statement of a session that ran it is the
/// monitor's (its `BEGIN`, `set_config` and `COMMIT` look like a batch's).
const MONITOR_MARK: &str = "WITH act AS MATERIALIZED";

/// Sums `duration: X ms  <phase>: <statement>` lines per kind of statement.
fn costs(log: &str, batches: usize) -> Vec<Cost> {
    let lines: Vec<Logged> = log.lines().filter_map(parse_duration_line).collect();
    let monitors: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.statement.starts_with(MONITOR_MARK))
        .map(|l| l.pid)
        .collect();
    let mut by_kind: BTreeMap<&'static str, (u64, f64)> = BTreeMap::new();
    for line in &lines {
        let kind = if monitors.contains(line.pid) {
            "monitor (own connection)"
        } else {
            kind(line.statement)
        };
        let entry = by_kind.entry(kind).or_default();
        entry.0 += u64::from(line.phase != "parse" && line.phase != "bind");
        entry.1 += line.ms;
    }
    let batches = batches.max(1) as f64;
    let order = |kind: &str| {
        BATCH_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(usize::MAX)
    };
    let mut costs: Vec<Cost> = by_kind
        .into_iter()
        .map(|(kind, (executed, total_ms))| Cost {
            kind: kind.to_string(),
            executed,
            total_ms,
            ms_per_batch: total_ms / batches,
        })
        .collect();
    costs.sort_by_key(|c| order(&c.kind));
    costs
}

/// One `duration:` line of the server log.
struct Logged<'a> {
    pid: &'a str,
    phase: &'a str,
    ms: f64,
    statement: &'a str,
}

/// `… [4242] LOG:  duration: 0.052 ms  execute <unnamed>: BEGIN` → pid 4242, `execute`, 0.052,
/// `BEGIN`; also `statement: …` for the simple protocol.
fn parse_duration_line(line: &str) -> Option<Logged<'_>> {
    let (head, rest) = line.split_once("duration: ")?;
    let pid = head.split_once(" [")?.1.split_once(']')?.0;
    let (ms, rest) = rest.split_once(" ms  ")?;
    let (phase, statement) = rest.split_once(": ")?;
    Some(Logged {
        pid,
        phase: phase.split_whitespace().next()?,
        ms: ms.parse().ok()?,
        statement: statement.trim(),
    })
}

fn kind(statement: &str) -> &'static str {
    let upper = statement.to_ascii_uppercase();
    if upper.starts_with("BEGIN") {
        "BEGIN"
    } else if upper.starts_with("COMMIT") {
        "COMMIT"
    } else if statement.contains("set_config") {
        "set_config"
    } else if upper.starts_with("SELECT") && upper.contains("OFFSET") {
        "key walk"
    } else if upper.starts_with("UPDATE") && statement.contains("orders") {
        "UPDATE rows"
    } else if upper.starts_with("UPDATE")
        && statement.contains("heartbeat_at")
        && !statement.contains("cursor")
    {
        "heartbeat (own connection)"
    } else if upper.starts_with("UPDATE") && statement.contains("jobs") {
        "checkpoint"
    } else {
        "other (start-up, catalog, EXPLAIN)"
    }
}
