//! The purge backlog: a consistent snapshot held open in another session keeps InnoDB from
//! purging the undo logs of the run's batches, one per batch, and the history list grows past
//! a small `max_history_length`. The run throttles, or pauses past twice the limit, naming the
//! snapshot's session; once that session commits, purge catches up and the run finishes,
//! every row filled once.

use std::time::Duration;

use sqlx::{Connection as _, MySqlConnection};
use tempfile::TempDir;

use crate::common::mysql::{FLAVORS, assert_all_done_once, create_items, start};
use crate::common::watched::assert_clean;
use crate::common::{Runner, path_str, write_job};
use crate::{held_back, job};

/// 400 batches of 20 rows: the run's own undo logs pass the limit of 100 after a quarter of
/// them.
const ROWS: i64 = 8_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_that_holds_purge_back_throttles_the_run_until_it_commits() {
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        let mut snapshot = MySqlConnection::connect(&db.url).await.unwrap();
        let thread: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
            .fetch_one(&mut snapshot)
            .await
            .unwrap();
        sqlx::raw_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT; SELECT COUNT(*) FROM items")
            .execute(&mut snapshot)
            .await
            .unwrap();
        // `trx_started` has whole seconds: begun in an earlier second than any of the run's
        // own transactions, the snapshot is the oldest beyond doubt.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let dir = TempDir::new().unwrap();
        // Its idle time is not what this test is about.
        let throttle = "max_history_length = 100\nmax_idle_in_transaction = \"0s\"\n\
                        max_pause = \"200ms\"";
        let text = job("size = 20\nmin = 20\nmax = 20", "0", throttle);
        let job = write_job(&dir, "items_total", &text);
        let mut run = Runner::spawn(&db.url, &dir, "run", &["run", "--json", path_str(&job)]);
        let reason = held_back(&mut run, flavor, "history_length").await;
        assert!(
            reason.starts_with("InnoDB's history list is ")
                && reason.contains(" long (limit 100): the oldest open transaction")
                && reason.contains(&format!("(thread {thread}, root@")),
            "{flavor}: {reason}"
        );
        sqlx::raw_sql("COMMIT")
            .execute(&mut snapshot)
            .await
            .unwrap();
        let out = run.finish().await;
        assert_clean(&out, &format!("{flavor}: run"));
        assert_all_done_once(&db.pool, ROWS).await;
    }
}
