//! Other sessions at work: three sessions running `SELECT SLEEP(…)` push `Threads_running` over
//! `max_active_sessions = 2`, and the run throttles, saying how many; once their queries end it
//! finishes, every row filled once.

use sqlx::{Connection as _, MySqlConnection};
use tempfile::TempDir;

use crate::common::mysql::{FLAVORS, assert_all_done_once, create_items, exec, start, wait_for};
use crate::common::watched::assert_clean;
use crate::common::{Runner, path_str, write_job};
use crate::{held_back, job};

const ROWS: i64 = 1_000;

/// Sessions asleep in a query, as `SHOW PROCESSLIST` shows them.
const ASLEEP: &str =
    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User sleep'";

#[tokio::test(flavor = "multi_thread")]
async fn sessions_at_work_over_the_limit_throttle_the_run() {
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        let mut sleepers = Vec::new();
        for _ in 0..3 {
            let mut conn = MySqlConnection::connect(&db.url).await.unwrap();
            let id: u64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            sleepers.push((
                id,
                tokio::spawn(async move {
                    // Ended by `KILL QUERY` below, long before its time.
                    let _ = sqlx::raw_sql("SELECT SLEEP(600)").execute(&mut conn).await;
                }),
            ));
        }
        wait_for(&db.pool, &format!("SELECT ({ASLEEP}) = 3")).await;
        let dir = TempDir::new().unwrap();
        let text = job(
            "size = 100\nmin = 20\nmax = 100",
            "0.002",
            "max_active_sessions = 2",
        );
        let job = write_job(&dir, "items_total", &text);
        let mut run = Runner::spawn(&db.url, &dir, "run", &["run", "--json", path_str(&job)]);
        let reason = held_back(&mut run, flavor, "active_sessions").await;
        // The three, and at most a statement of the run's own besides its batches (its
        // heartbeat's, say) that was running at that moment.
        let (count, rest) = reason.split_once(' ').unwrap_or_default();
        assert!(
            ["3", "4"].contains(&count) && rest == "other sessions are active (limit 2)",
            "{flavor}: {reason}"
        );
        for (id, _) in &sleepers {
            exec(&db.pool, &format!("KILL QUERY {id}")).await;
        }
        for (_, sleeper) in sleepers {
            sleeper.await.unwrap();
        }
        let out = run.finish().await;
        assert_clean(&out, &format!("{flavor}: run"));
        assert_all_done_once(&db.pool, ROWS).await;
    }
}
