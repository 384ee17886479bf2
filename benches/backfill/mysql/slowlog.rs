//! Profile of a `backfill run` on MySQL or MariaDB: one more run, after the timed rounds, with
//! the slow query log on at `long_query_time = 0`, so that the server logs every statement of
//! the run with its time (a prepared statement's execution with its parameters written in).
//! The log is summed per kind of statement, and the heartbeat's connection on a line of its
//! own, and set against the batch times the run reports. What the server did not spend is
//! round trips and client work. `performance_schema`'s digests would cost less, but leave out
//! the executions of prepared statements (every batch statement) on MariaDB. Logging slows the
//! run a little; this run is not a throughput number.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::server::Bench;

/// Server time of one kind of statement, over the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub kind: String,
    pub executed: u64,
    pub total_ms: f64,
    pub ms_per_batch: f64,
    /// Of which waiting for locks (the log's `Lock_time`).
    pub lock_ms: f64,
}

/// The breakdown of one profiled run.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub method: String,
    pub wall_s: f64,
    pub batches: usize,
    pub rows_per_batch: f64,
    /// Mean batch transaction time as the run reports it (begin to commit, at the client).
    pub batch_ms: f64,
    /// Mean server time per batch: the batch's kinds of statement below, summed.
    pub server_ms_per_batch: f64,
    pub costs: Vec<Cost>,
}

/// The kinds of statement of a batch transaction, in the order they run.
const BATCH_KINDS: &[&str] = &[
    "begin (isolation, lock waits; START TRANSACTION)",
    "key walk (SELECT … LIMIT 1 OFFSET ?)",
    "UPDATE rows",
    "checkpoint (UPDATE jobs ⋈ ranges)",
    "progress (SELECT after the checkpoint)",
    "wait_timeout put back (MySQL)",
    "COMMIT",
];
const HEARTBEAT: &str = "heartbeat (own connection)";

/// Turns the slow log on for connections opened from now on, into `path`; the log's length
/// before, where the run's entries start.
pub async fn start(bench: &mut Bench, path: &Path) -> Result<u64> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    bench
        .set_global("slow_query_log_file", &path.to_string_lossy())
        .await?;
    bench.set_global("long_query_time", "0").await?;
    bench.set_global("slow_query_log", "1").await?;
    Ok(std::fs::metadata(path).map_or(0, |m| m.len()))
}

/// Turns the slow log off again; what it logged from `offset` on.
pub async fn finish(bench: &mut Bench, path: &Path, offset: u64) -> Result<String> {
    bench.set_global("slow_query_log", "0").await?;
    bench.set_global("long_query_time", "10").await?;
    let log = std::fs::read(path)?;
    let from = usize::try_from(offset).unwrap_or(usize::MAX).min(log.len());
    Ok(String::from_utf8_lossy(&log[from..]).into_owned())
}

/// The profile of a run from its costs and what it reported.
pub fn profile(method: &str, outcome: &crate::runner::Outcome, costs: Vec<Cost>) -> Profile {
    let batches = outcome.batches.len().max(1) as f64;
    let server_ms = costs
        .iter()
        .filter(|c| BATCH_KINDS.contains(&c.kind.as_str()))
        .map(|c| c.total_ms)
        .sum::<f64>();
    Profile {
        method: method.to_string(),
        wall_s: outcome.wall_s,
        batches: outcome.batches.len(),
        rows_per_batch: outcome.rows_done as f64 / batches,
        batch_ms: outcome.batch_seconds() * 1000.0 / batches,
        server_ms_per_batch: server_ms / batches,
        costs,
    }
}

/// One statement of the slow log.
#[derive(Default)]
struct Logged {
    /// The connection: MariaDB's `Thread_id:`, MySQL's `Id:`.
    connection: String,
    seconds: f64,
    lock_seconds: f64,
    statement: String,
}

/// Sums the log's statements per kind; the heartbeat's connection on a line of its own, so
/// that its `BEGIN` and `COMMIT` do not count as the batches'.
pub fn costs(log: &str, batches: usize) -> Vec<Cost> {
    let entries = logged(log);
    let heartbeat: Vec<&str> = entries
        .iter()
        .filter(|e| e.statement.contains("SET heartbeat_at"))
        .map(|e| e.connection.as_str())
        .collect();
    let mut by_kind: BTreeMap<&'static str, (u64, f64, f64)> = BTreeMap::new();
    for entry in &entries {
        let kind = if heartbeat.contains(&entry.connection.as_str()) {
            HEARTBEAT
        } else {
            kind(&entry.statement)
        };
        let totals = by_kind.entry(kind).or_default();
        totals.0 += 1;
        totals.1 += entry.seconds * 1000.0;
        totals.2 += entry.lock_seconds * 1000.0;
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
        .map(|(kind, (executed, total_ms, lock_ms))| Cost {
            kind: kind.to_string(),
            executed,
            total_ms,
            ms_per_batch: total_ms / batches,
            lock_ms,
        })
        .collect();
    costs.sort_by_key(|c| order(&c.kind));
    costs
}

/// The log's entries. Each starts with `# User@Host:` (MySQL puts the connection's `Id:` on
/// that line, MariaDB on a `# Thread_id:` line after it), has a `# Query_time:` line, and ends
/// with the statement, over as many lines as it takes, after `SET timestamp=…;` (and `use db;`
/// when the database changed).
fn logged(log: &str) -> Vec<Logged> {
    let mut entries: Vec<Logged> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("# User@Host:") {
            let connection = rest.split_once("Id:").map(|(_, id)| id.trim());
            entries.push(Logged {
                connection: connection.unwrap_or_default().to_string(),
                ..Logged::default()
            });
            continue;
        }
        let Some(entry) = entries.last_mut() else {
            continue;
        };
        if let Some(rest) = line.strip_prefix("# Thread_id:") {
            entry.connection = rest.split_whitespace().next().unwrap_or("").to_string();
        } else if let Some(rest) = line.strip_prefix("# Query_time:") {
            let mut words = rest.split_whitespace();
            entry.seconds = words.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
            let lock = words.skip_while(|w| *w != "Lock_time:").nth(1);
            entry.lock_seconds = lock.and_then(|s| s.parse().ok()).unwrap_or(0.0);
        } else if line.starts_with('#')
            || line.starts_with("SET timestamp=")
            || (line.starts_with("use ") && entry.statement.is_empty())
        {
            continue;
        } else {
            if !entry.statement.is_empty() {
                entry.statement.push(' ');
            }
            entry.statement.push_str(line.trim());
        }
    }
    entries
}

/// The kind of a statement run on a batch connection (or at the start).
fn kind(statement: &str) -> &'static str {
    let upper = statement.to_ascii_uppercase();
    if upper.starts_with("SET TRANSACTION")
        || upper.starts_with("SET SESSION INNODB_LOCK_WAIT_TIMEOUT")
        || upper.starts_with("START TRANSACTION")
    {
        BATCH_KINDS[0]
    } else if upper.starts_with("SELECT") && upper.contains("LIMIT 1 OFFSET") {
        BATCH_KINDS[1]
    } else if upper.starts_with("UPDATE `BENCH`.") {
        BATCH_KINDS[2]
    } else if statement.contains("STRAIGHT_JOIN") && upper.starts_with("UPDATE") {
        BATCH_KINDS[3]
    } else if statement.starts_with("SELECT j.rows_done, j.batches_done") {
        BATCH_KINDS[4]
    } else if upper.starts_with("SET SESSION WAIT_TIMEOUT") {
        BATCH_KINDS[5]
    } else if upper.starts_with("COMMIT") {
        BATCH_KINDS[6]
    } else if upper.contains("RAND(0)") {
        "start: the estimate's and the layout's samples (each reads the table)"
    } else {
        "other (start-up, catalog, EXPLAIN, claims)"
    }
}
