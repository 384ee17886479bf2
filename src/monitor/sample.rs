//! What one sample of the database asks for and what it read, whichever the database: the
//! monitor's task and its one-off samples build a [`Request`], the database's own sampling
//! (`crate::postgres::sample`) answers with a [`Sampled`] for the pure policy to judge.

use std::path::Path;
use std::time::Duration;

use super::policy::{Load, Locks, Wal};

/// The server process a transaction runs on, identified together with the transaction's start:
/// behind PgBouncer the pid alone may belong to another client's transaction a moment later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// The server process (`pg_backend_pid()` on PostgreSQL).
    pub pid: i64,
    /// `now()` (the transaction's start) in microseconds since the epoch, computed the same way
    /// as from `pg_stat_activity.xact_start` in the sample (`crate::postgres::OUR_BACKENDS`).
    pub xact_start_us: i64,
}

/// What one sample read; `load` and `throttle_query` only on a full sample.
pub struct Sampled {
    pub locks: Locks,
    /// Our batches and statements (pids) that another session waits for, or that wait
    /// themselves: the ones a yield cancels.
    pub in_the_way: Vec<i64>,
    /// Our batches and statements (pids) waiting for a lock.
    pub waiting: Vec<i64>,
    /// The backend (pid) running each of our statements that runs now, by marker.
    pub statements: Vec<(String, i64)>,
    pub load: Option<(Load, Wal)>,
    pub throttle_query: Option<f64>,
}

/// What a sample needs to know.
pub struct Request<'a> {
    /// The relations batches update, as SQL (`"public"."items"`, or a partitioned table and
    /// its leaves).
    pub relations: &'a [String],
    /// The job's own sessions' application names.
    pub ours: &'a [String],
    /// The sessions (pids) of this process's workers, each as of its last batch, whether it
    /// runs one now or not; a superset of `batches`' pids.
    pub sessions: &'a [i64],
    /// Our running batches.
    pub batches: &'a [Backend],
    /// The markers of our running statements (the comment their text starts with).
    pub statements: &'a [String],
    /// Read load, WAL retention and `throttle_query` too, not only locks.
    pub full: bool,
    pub throttle_query: Option<&'a str>,
    /// Bounds each statement of the sample.
    pub timeout: Duration,
}

/// Longest query text kept for a reason.
const QUERY_CHARS: usize = 120;

/// A query on one line without its closing semicolons (the reason goes on after it), cut to
/// at most [`QUERY_CHARS`] characters at a space, so that no name or number is cut in two.
pub fn shorten(query: &str) -> String {
    let one_line = query.split_whitespace().collect::<Vec<_>>().join(" ");
    let one_line = one_line.trim_end_matches([';', ' ']);
    match one_line.char_indices().nth(QUERY_CHARS) {
        Some((cut, _)) => {
            let head = &one_line[..cut];
            // A single word longer than the limit is all there is to cut.
            let head = head.rfind(' ').map_or(head, |space| &head[..space]);
            format!("{}…", head.trim_end_matches([',', ';']))
        }
        None => one_line.to_owned(),
    }
}

/// Whether the operator's brake file exists.
pub fn file_exists(path: &Path) -> bool {
    path.try_exists().unwrap_or(true)
}

/// The comment a vacuum's text starts with, unique to it: `token` tells this process from
/// others of the job, `round` this vacuum from its others. The job name is safe inside a
/// comment (`A-Z a-z 0-9 _ . -`), the token is the caller's digits.
pub fn vacuum_marker(job: &str, token: &str, round: u64) -> String {
    format!("/* backfill:{job} vacuum {token}.{round} */ ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_put_on_one_line_and_cut() {
        assert_eq!(
            shorten("ALTER TABLE items\n   ADD COLUMN x int"),
            "ALTER TABLE items ADD COLUMN x int"
        );
        assert_eq!(
            shorten("BEGIN; LOCK TABLE items; ;\n"),
            "BEGIN; LOCK TABLE items"
        );
        let long = "x".repeat(200);
        assert_eq!(shorten(&long).chars().count(), QUERY_CHARS + 1);
        let words = format!(
            "UPDATE items SET note = 'x' WHERE id IN ({})",
            "12345, ".repeat(30)
        );
        let short = shorten(&words);
        assert!(short.chars().count() <= QUERY_CHARS + 1, "{short}");
        assert!(short.ends_with("12345…"), "{short}");
    }
}
