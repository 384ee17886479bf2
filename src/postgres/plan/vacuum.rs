//! The vacuums' statements: the pacing vacuum of one relation a job changes, the final vacuum
//! of the table, the comment that marks each so that the monitor can find it, and the look at
//! the relation's locks before a pacing vacuum. Pure text; relations arrive already quoted
//! (the [`Plan`](super::Plan)'s relations).
//!
//! Both vacuums run outside a transaction block, as PostgreSQL requires, as one statement sent
//! alone (a simple query): behind PgBouncer's transaction pooling that is a transaction of its
//! own, like any statement outside `BEGIN`. No session setting can bound them there (a `SET`
//! would stay on whichever server session ran it), so:
//! - the pacing vacuum takes `SKIP_LOCKED`: it never waits for the relation's lock (nor its
//!   TOAST table's); when another session holds a conflicting one, or waits for one, the
//!   vacuum skips the relation at once — which is what a `lock_timeout` would have bought;
//! - the monitor cancels either vacuum when a session waits for a lock it holds (an
//!   `ALTER TABLE` queued behind its `SHARE UPDATE EXCLUSIVE`), as it cancels a batch.

/// The pacing vacuum's options: no truncation (which takes an `ACCESS EXCLUSIVE` lock), never
/// waiting for a lock, and heap only (no index pass, which reads every index whole each time)
/// unless `index_cleanup`. Heap only leaves each old version's line pointer dead (4 bytes) until
/// the indexes are cleaned, and a heap page holds at most 291 line pointers: on a narrow table
/// (rows under ~50 bytes) a page freed of its old versions then takes fewer new ones than it
/// held, and the heap grows by half even when every byte freed is reused; cleaning the indexes
/// frees the line pointers too.
pub fn pacing_options(index_cleanup: bool) -> &'static str {
    if index_cleanup {
        "INDEX_CLEANUP ON, TRUNCATE OFF, SKIP_LOCKED"
    } else {
        "INDEX_CLEANUP OFF, TRUNCATE OFF, SKIP_LOCKED"
    }
}

/// The vacuum of `relation` while the job runs: the space of the row versions its batches
/// replaced goes into the free space map, for the next batches' new versions.
pub fn pacing(relation: &str, index_cleanup: bool) -> String {
    format!("VACUUM ({}) {relation}", pacing_options(index_cleanup))
}

/// The vacuum of `table` once the job is done: the index entries of the old row versions are
/// removed and the statistics are fresh for the contract migration's plans. A partitioned
/// table's vacuum covers every leaf, and its `ANALYZE` the table as a whole, which autovacuum
/// never analyzes.
pub fn last(table: &str) -> String {
    format!("VACUUM (ANALYZE) {table}")
}

/// `statement` marked with `marker`, as it is sent.
pub fn marked(marker: &str, statement: &str) -> String {
    format!("{marker}{statement}")
}

/// Another session that holds, or waits for, a lock on `$1` (a relation as SQL) that
/// conflicts with a vacuum's `SHARE UPDATE EXCLUSIVE` — an autovacuum, another process's
/// vacuum, `ANALYZE`, `CREATE INDEX`, DDL: the one a `SKIP_LOCKED` vacuum would skip for.
/// Asked first so that a skip is a line in the debug log rather than the server's warning.
pub const LOCK_HOLDER: &str = "\
SELECT l.pid, l.mode, l.granted, coalesce(a.backend_type, ''), coalesce(a.application_name, '')
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.relation = $1::regclass
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.pid IS DISTINCT FROM pg_backend_pid()
   AND l.mode IN ('ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock',
                  'ExclusiveLock', 'AccessExclusiveLock')
 ORDER BY l.granted DESC LIMIT 1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacing_vacuum_is_heap_only_and_never_waits() {
        assert_eq!(
            pacing("\"public\".\"we\"\"ird\"", false),
            "VACUUM (INDEX_CLEANUP OFF, TRUNCATE OFF, SKIP_LOCKED) \"public\".\"we\"\"ird\""
        );
        assert_eq!(
            pacing("\"public\".\"items\"", true),
            "VACUUM (INDEX_CLEANUP ON, TRUNCATE OFF, SKIP_LOCKED) \"public\".\"items\""
        );
    }

    #[test]
    fn the_final_vacuum_analyzes() {
        assert_eq!(
            last("\"public\".\"items\""),
            "VACUUM (ANALYZE) \"public\".\"items\""
        );
    }

    #[test]
    fn a_marked_statement_starts_with_its_comment() {
        let marker = crate::monitor::sample::vacuum_marker("users_flag", "4242.1a2b", 7);
        assert_eq!(marker, "/* backfill:users_flag vacuum 4242.1a2b.7 */ ");
        assert_eq!(
            marked(&marker, "VACUUM (ANALYZE) \"t\""),
            "/* backfill:users_flag vacuum 4242.1a2b.7 */ VACUUM (ANALYZE) \"t\""
        );
    }
}
