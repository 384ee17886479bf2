//! Profile: where the time of a `backfill run` batch goes. The copy's database gets
//! `log_min_duration_statement = 0`, so the server logs every statement of the run with its
//! duration (parse, bind and execute separately); those are summed per kind of statement
//! and set against the batch times the run itself reports. What the server did not spend is
//! round trips and client work. Logging slows the run a little; this run is not a throughput
//! number.

use std::collections::BTreeMap;
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

/// The monitor's lock query opens with this. The monitor runs it on every sample; the batch
/// connection runs it too, once, to check for a conflicting lock before the first batch.
const MONITOR_MARK: &str = "WITH act AS MATERIALIZED";
/// Pacing vacuums run on a connection of their own (the final one on the batch connection).
const PACING_VACUUM_MARK: &str = "VACUUM (INDEX_CLEANUP ";
/// The heartbeat renews the job's lease on a connection of its own.
const HEARTBEAT_MARK: &str = "SET heartbeat_at = now()";

/// Sums the statements of the server log per kind of statement; the statements of the run's
/// own side connections (monitor, pacing vacuums, heartbeat) each in one line of their own,
/// so that their `BEGIN` and `COMMIT` do not count as the batches'.
fn costs(log: &str, batches: usize) -> Vec<Cost> {
    let entries = logged(log);
    let roles = roles(&entries);
    let mut by_kind: BTreeMap<&'static str, (u64, f64)> = BTreeMap::new();
    for entry in &entries {
        let kind = roles
            .get(entry.pid)
            .copied()
            .unwrap_or_else(|| kind(&entry.statement));
        let totals = by_kind.entry(kind).or_default();
        totals.0 += u64::from(entry.phase != "parse" && entry.phase != "bind");
        totals.1 += entry.ms;
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

/// The run's side connections, by server pid, told by what they ran: the monitor is the
/// session that ran its sample most often (one monitor per process).
fn roles<'a>(entries: &[Logged<'a>]) -> BTreeMap<&'a str, &'static str> {
    let mut samples: BTreeMap<&str, usize> = BTreeMap::new();
    let mut roles = BTreeMap::new();
    for entry in entries {
        if entry.statement.starts_with(MONITOR_MARK) {
            *samples.entry(entry.pid).or_default() += 1;
        } else if entry.statement.contains(PACING_VACUUM_MARK) {
            roles.insert(entry.pid, "pacing vacuums (own connection)");
        } else if entry.statement.contains(HEARTBEAT_MARK) {
            roles.insert(entry.pid, "heartbeat (own connection)");
        }
    }
    if let Some((pid, _)) = samples.into_iter().max_by_key(|(_, n)| *n) {
        roles.insert(pid, "monitor (own connection)");
    }
    roles
}

/// One statement's `duration:` line of the server log, with the lines that continue it.
struct Logged<'a> {
    pid: &'a str,
    phase: &'a str,
    ms: f64,
    statement: String,
}

/// Every `duration:` entry; a statement written over several lines continues on lines that
/// start with a tab (`DETAIL:` lines with the parameters are not part of it).
fn logged(log: &str) -> Vec<Logged<'_>> {
    let mut entries: Vec<Logged> = Vec::new();
    let mut continues = false;
    for line in log.lines() {
        if let Some(entry) = parse_duration_line(line) {
            entries.push(entry);
            continues = true;
        } else if let (true, Some(more), Some(last)) =
            (continues, line.strip_prefix('\t'), entries.last_mut())
        {
            last.statement.push(' ');
            last.statement.push_str(more.trim());
        } else {
            continues = false;
        }
    }
    entries
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
        statement: statement.trim().to_string(),
    })
}

/// The kind of a statement run on the batch connection (or one the run opened at start).
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
    } else if statement.contains("SET cursor = ") {
        // The range's and the job's counters, one statement since ranges came.
        "checkpoint"
    } else if statement.contains("VACUUM (ANALYZE)") {
        "final VACUUM (ANALYZE)"
    } else {
        "other (start-up, catalog, EXPLAIN)"
    }
}
