//! The total a run shows, refined as it walks (issue 13): when the start's estimate is far off,
//! the `batch` events' `total_estimate` converges to the truth, and no `batch` event ever has
//! `rows_done >= total_estimate` — the bar never reads 100 % before the `finished` event.
//!
//! The start's estimate is a block sample (`TABLESAMPLE SYSTEM … REPEATABLE (0)`), so the same
//! blocks are read every time: a table whose pending rows all lie in the blocks the sample does
//! not read makes it see none, deterministically — pending rows clustered where the sample
//! did not look, with statistics from an `ANALYZE` taken before the rows became pending.

mod common;

use common::watched::of_kind;
use common::{TestDb, events, fresh_database, number, path_str, run_backfill, write_job};
use serde_json::Value;
use tempfile::TempDir;

/// Rows of `t`: three a block (240-byte rows, `fillfactor = 10`), 4000 blocks — more than the
/// 2000 blocks the estimate reads, so it samples about half of them.
const ROWS: i64 = 12_000;

/// `t` with every row done (`flag = 'd'`) and analyzed, then the rows of the blocks the
/// estimate's sample does not read made pending (`'p'`, a HOT update that stays in its block);
/// how many are pending.
async fn pending_where_the_sample_does_not_look(db: &TestDb) -> i64 {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE t (id bigint PRIMARY KEY, flag char(1) NOT NULL, pad char(200) NOT NULL)
           WITH (fillfactor = 10);
         INSERT INTO t SELECT g, 'd', 'x' FROM generate_series(1, {ROWS}) g;
         ANALYZE t;"
    )))
    .execute(&db.pool)
    .await
    .expect("create t");
    let blocks = number(
        &db.pool,
        "SELECT pg_relation_size('t') / current_setting('block_size')::int8",
    )
    .await;
    assert!(
        blocks > 2000,
        "t has {blocks} blocks, too few to be sampled"
    );
    // The estimate's own percentage (preflight/estimate.rs), as the float4 it binds.
    let percent = (2000.0 * 100.0 / blocks as f64) as f32;
    sqlx::query(
        "UPDATE t SET flag = 'p' WHERE (ctid::text::point)[0]::int8 NOT IN (
             SELECT (ctid::text::point)[0]::int8 FROM t TABLESAMPLE SYSTEM ($1) REPEATABLE (0))",
    )
    .bind(percent)
    .execute(&db.pool)
    .await
    .expect("make the unsampled blocks pending");
    number(&db.pool, "SELECT count(*) FROM t WHERE flag = 'p'").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_far_off_estimate_converges_and_the_bar_never_fills_early() {
    let db = fresh_database().await;
    let truth = pending_where_the_sample_does_not_look(&db).await;
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "t_flag",
        "table = \"t\"\nwhere = \"flag = 'p'\"\n[set]\nflag = \"'d'\"\n\
         [batch]\nsize = 300\nmin = 300\nmax = 300\n",
    );
    let out = run_backfill(&db.url, &["run", "--json", path_str(&job)]);
    out.expect_code(0, "the run");
    let events = events(&out.stdout);
    let started = of_kind(&events, "started")[0]["total_estimate"]
        .as_u64()
        .unwrap();
    let batches: Vec<(u64, u64)> = of_kind(&events, "batch")
        .iter()
        .map(|e| field(e, "rows_done", "total_estimate"))
        .collect();
    let finished = of_kind(&events, "finished")[0]["rows_done"]
        .as_u64()
        .unwrap();
    let truth = u64::try_from(truth).unwrap();

    let at = |share: f64| batches[((batches.len() - 1) as f64 * share) as usize];
    eprintln!(
        "truth {truth}; started at {started}; (rows_done, total) after 10% of the batches {:?}, \
         25% {:?}, 50% {:?}, 75% {:?}, the last {:?}; {} batches; finished at {finished}",
        at(0.1),
        at(0.25),
        at(0.5),
        at(0.75),
        at(1.0),
        batches.len()
    );
    assert!(
        started * 4 < truth,
        "the start's estimate ({started}) is not far off the truth ({truth}): the test's premise"
    );
    assert_eq!(finished, truth);
    for (rows_done, total) in &batches {
        assert!(
            total > rows_done,
            "a batch event at {rows_done} rows with a total of {total}: the bar would be full"
        );
    }
    // From a tenth of the way on, within a third of the truth; at the end, within a tenth.
    let off = |total: u64| (total as f64 - truth as f64).abs() / truth as f64;
    for (i, (_, total)) in batches.iter().enumerate().skip(batches.len() / 10) {
        assert!(
            off(*total) < 0.34,
            "batch {i}: total {total}, truth {truth}"
        );
    }
    assert!(off(at(1.0).1) < 0.1, "the last total {:?}", at(1.0));
    assert!(
        off(at(0.1).1) < off(started),
        "no convergence from the start"
    );
}

fn field(e: &Value, a: &str, b: &str) -> (u64, u64) {
    (e[a].as_u64().unwrap(), e[b].as_u64().unwrap())
}
