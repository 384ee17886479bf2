//! `backfill serve` over HTTP, as a browser's fetch, a script and Prometheus use it: every job
//! of the state tables with the same fields as `status --json`, its page, its metrics, and
//! pause, resume and cancel only with the token — refused without it, and changing nothing.
//! (`tests/browser.rs` clicks the same page in a real browser.)

mod common;

use common::served::{Served, TOKEN, operator_paused};
use common::yielding::slow_items_job;
use common::{Runner, fresh_database, number, run_backfill};

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_the_api_show_a_running_job_and_its_controls_need_the_token() {
    let db = fresh_database().await;
    let (dir, job) = slow_items_job(
        &db.pool,
        20_000,
        "0.0002",
        "size = 500\nmin = 500\nmax = 500",
        "",
    )
    .await;
    let mut run = Runner::spawn(
        &db.url,
        &dir,
        "run",
        &["run", "--json", "--workers", "2", &job],
    );
    run.wait_until(&db.pool, "(SELECT rows_done > 0 FROM backfill.jobs)")
        .await;
    let served = Served::start(&db.url, &dir, true).await;

    let list: serde_json::Value = serde_json::from_str(&served.get("/api/jobs").body).unwrap();
    let first = &list[0];
    assert_eq!(first["name"], "items_total");
    assert_eq!(first["status"], "running");
    assert!(
        first["total_estimate"].as_u64().unwrap() >= 20_000,
        "{first}"
    );
    let index = served.get("/");
    assert_eq!(index.status, 200);
    assert!(
        index.body.contains("items_total") && index.body.contains("Pause"),
        "{}",
        index.body
    );
    let page = served.get("/jobs/items_total");
    assert!(
        page.body.contains("Ranges") && page.body.contains("qty * price"),
        "{}",
        page.body
    );
    let metrics = served.get("/metrics").body;
    assert!(
        metrics.contains("backfill_rows_done_total{job=\"items_total\"}"),
        "{metrics}"
    );

    // Without the token, or with a wrong one: 401, and the job goes on.
    for bearer in [None, Some("wrong")] {
        let refused = served.post("/api/jobs/items_total/pause", bearer);
        assert_eq!(refused.status, 401, "{}", refused.body);
    }
    assert_eq!(
        number(
            &db.pool,
            "SELECT count(*) FROM backfill.jobs WHERE control IS NOT NULL"
        )
        .await,
        0
    );

    let paused = served.post("/api/jobs/items_total/pause", Some(TOKEN));
    assert_eq!(paused.status, 200, "{}", paused.body);
    operator_paused(&mut run, &db).await;
    assert_eq!(served.job("items_total")["status"], "paused");

    assert_eq!(
        served
            .post("/api/jobs/items_total/resume", Some(TOKEN))
            .status,
        200
    );
    run.wait_until(
        &db.pool,
        "(SELECT note IS DISTINCT FROM 'paused: by operator' FROM backfill.jobs)",
    )
    .await;
    assert_eq!(
        served
            .post("/api/jobs/items_total/cancel", Some(TOKEN))
            .status,
        200
    );
    run.finish().await.expect_code(1, "the cancelled run");
    assert_eq!(served.job("items_total")["status"], "cancelled");
    assert_eq!(served.get("/api/jobs/nosuch").status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_the_page_is_read_only_and_an_open_address_is_refused() {
    let db = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&db.url, &dir, false).await;
    assert_eq!(served.get("/api/jobs").body, "[]");
    let index = served.get("/").body;
    assert!(
        index.contains("Read-only") && !index.contains("<button"),
        "{index}"
    );
    assert_eq!(served.post("/api/jobs/any/pause", Some(TOKEN)).status, 401);

    // A name that points at 127.0.0.1 from another site gets nothing; loopback names do, with
    // headers that keep the page out of frames.
    let rebound = served.head_as("evil.example");
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    let local = served
        .head_as(&format!("localhost:{}", served.port))
        .to_ascii_lowercase();
    assert!(local.starts_with("http/1.1 200"), "{local}");
    assert!(local.contains("x-frame-options: deny"), "{local}");
    assert!(local.contains("frame-ancestors 'none'"), "{local}");

    let open = run_backfill(&db.url, &["serve", "--addr", "0.0.0.0:0"]);
    open.expect_code(2, "serve on an open address without a token");
    assert!(
        open.stderr.contains("BACKFILL_SERVE_TOKEN"),
        "{}",
        open.stderr
    );
}

/// Fifty jobs on one page: every one listed, in the API and on the page. How long `GET /` took
/// is printed for the record (the benchmark, not the tests, holds timed targets).
#[tokio::test(flavor = "multi_thread")]
async fn fifty_jobs_are_all_on_the_page() {
    let db = fresh_database().await;
    let (dir, job) =
        slow_items_job(&db.pool, 1_000, "0", "size = 500\nmin = 500\nmax = 500", "").await;
    run_backfill(&db.url, &["run", &job]).expect_code(0, "the first job");
    sqlx::raw_sql(
        "INSERT INTO backfill.jobs (name, table_name, definition_hash, status, rows_done, batches_done)
         SELECT 'job_' || lpad(g::text, 2, '0'), table_name, definition_hash, 'done', rows_done, batches_done
           FROM backfill.jobs, generate_series(1, 49) g",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let served = Served::start(&db.url, &dir, false).await;
    let mut took = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let page = served.get("/");
        took.push(started.elapsed());
        assert_eq!(page.status, 200);
        assert_eq!(
            page.body.matches("class=\"job\"").count(),
            50,
            "{}",
            page.body
        );
    }
    let list: serde_json::Value = serde_json::from_str(&served.get("/api/jobs").body).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(50));
    took.sort();
    println!(
        "GET / with 50 jobs took {:?} (median of 5: {:?})",
        took, took[2]
    );
}
