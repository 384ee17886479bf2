//! The operator's own brakes, as on PostgreSQL: a `throttle_query` that reads a row of the
//! operator's table throttles the run while its first column is more than 0 (here an unnamed
//! `DECIMAL` beside a second column), and a `throttle_file` that exists pauses it; with both
//! released the run finishes, every row filled once.

use tempfile::TempDir;

use crate::common::mysql::{FLAVORS, assert_all_done_once, create_items, exec, start};
use crate::common::watched::assert_clean;
use crate::common::{Runner, path_str, write_job};
use crate::{held_back, job};

const ROWS: i64 = 1_000;

#[tokio::test(flavor = "multi_thread")]
async fn the_throttle_query_throttles_and_the_throttle_file_pauses_the_run() {
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        exec(&db.pool, "CREATE TABLE brake (busy INT NOT NULL)").await;
        exec(&db.pool, "INSERT INTO brake VALUES (1)").await;
        let dir = TempDir::new().unwrap();
        let file = dir.path().join("stop-backfill");
        let throttle = format!(
            "throttle_query = \"SELECT busy * 1.5, 'x' FROM brake\"\nthrottle_file = \"{}\"",
            file.display()
        );
        let text = job("size = 50\nmin = 20\nmax = 50", "0.002", &throttle);
        let job = write_job(&dir, "items_total", &text);
        let mut run = Runner::spawn(&db.url, &dir, "run", &["run", "--json", path_str(&job)]);
        let reason = held_back(&mut run, flavor, "throttle_query").await;
        // Its first column, a DECIMAL, named by nothing.
        assert_eq!(reason, "throttle_query returned 1.5", "{flavor}");
        std::fs::write(&file, "").unwrap();
        exec(&db.pool, "UPDATE brake SET busy = 0").await;
        let reason = held_back(&mut run, flavor, "throttle_file").await;
        assert!(
            reason.contains("throttle_file") && reason.contains("exists"),
            "{flavor}: {reason}"
        );
        std::fs::remove_file(&file).unwrap();
        let out = run.finish().await;
        assert_clean(&out, &format!("{flavor}: run"));
        assert_all_done_once(&db.pool, ROWS).await;
    }
}
