//! The monitor's load and lag signals on real MariaDB and MySQL servers, with the same events
//! and reasons as on PostgreSQL: sessions at work (`Threads_running`) throttle a run
//! (`active.rs`), a replica whose SQL thread is stopped pauses it (`replica.rs`), and a
//! snapshot that holds InnoDB's purge back while the run grows the history list throttles or
//! pauses it, naming that session (`history.rs`); the operator's `throttle_query` throttles it
//! and `throttle_file` pauses it (`operator.rs`). Each run then finishes once the cause is gone,
//! every row filled exactly once.
//!
//! Each test prints the reasons the run gave past the harness's capture, so that a reader sees
//! the sentences an operator would. A flavor whose programs are missing is skipped, saying why.

#[path = "../common/mod.rs"]
mod common;

mod active;
mod history;
mod operator;
mod replica;

use std::io::Write as _;

use backfill::mysql::throwaway::Flavor;
use serde_json::Value;

use common::Runner;
use common::mysql::items_job;

/// The job over `items` (see `items_job`) with these `[batch]` and `[throttle]` settings: rows
/// sleep `sleep` seconds each, and every signal lets the run go 300 ms after it is gone.
fn job(batch: &str, sleep: &str, throttle: &str) -> String {
    format!(
        "{}\n[throttle]\ncooldown = \"300ms\"\n{throttle}\n",
        items_job(batch, sleep)
    )
}

/// Waits for the run's first `paused` or `throttled` event for `signal` (`replica_lag`, …) and
/// gives back its reason, printed past the harness's capture as `FLAVOR: KIND: REASON`.
async fn held_back(run: &mut Runner, flavor: Flavor, signal: &str) -> String {
    let line = run
        .wait_for_line(&[&format!("\"signal\":\"{signal}\"")])
        .await;
    let event: Value = serde_json::from_str(&line).expect("an NDJSON event");
    let kind = event["event"].as_str().unwrap_or_default();
    let reason = event["reason"].as_str().unwrap_or_default();
    let _ = writeln!(std::io::stderr(), "{flavor}: {kind}: {reason}");
    reason.to_owned()
}
