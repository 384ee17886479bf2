//! `backfill serve`'s page in a real browser (headless Chromium): a running 2-worker job's
//! progress moves on the page without a reload; its buttons, with the token typed in, pause it
//! (`status` says so, and its rows stand still), resume it and cancel it; without the token the
//! button is refused and nothing changes; a hostile table name shows as text and runs nothing.
//! Skipped, saying why, only when Chromium or chromedriver is missing.

mod common;

use std::path::Path;

use common::browser::Browser;
use common::served::{Served, TOKEN, operator_paused};
use common::yielding::slow_items_job;
use common::{Runner, fresh_database, number, run_backfill};

/// The job page's screenshot, for a person to look at (and the README's picture).
const SCREENSHOT: &str = "target/serve-job-page.png";

/// rows_done as the card on the page shows it.
async fn rows_shown(browser: &Browser) -> u64 {
    browser
        .text("[data-field=rows_done]")
        .await
        .parse()
        .expect("a number of rows")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_jobs_page_moves_and_its_buttons_pause_resume_and_cancel_it() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let db = fresh_database().await;
    let batch = "size = 500\nmin = 500\nmax = 500";
    let (dir, job) = slow_items_job(&db.pool, 30_000, "0.0002", batch, "").await;
    let mut run = Runner::spawn(&db.url, &dir, "run", &["run", "--workers", "2", &job]);
    run.wait_until(&db.pool, "(SELECT rows_done > 0 FROM backfill.jobs)")
        .await;
    let served = Served::start(&db.url, &dir, true).await;

    browser.goto(&served.url("/jobs/items_total")).await;
    let first = rows_shown(&browser).await;
    let moved = browser
        .wait_for_text("[data-field=rows_done]", |t| {
            t.parse::<u64>().is_ok_and(|n| n > first)
        })
        .await;
    let range_rows = "#ranges tr.range td:nth-child(7)";
    let range_first = browser.text(range_rows).await;
    let range_moved = browser
        .wait_for_text(range_rows, |t| t != range_first)
        .await;
    println!(
        "the page showed {first} rows, then {moved} without a reload; range 1 went from \
         {range_first} to {range_moved} rows"
    );
    browser
        .wait_for_text("[data-field=crew]", |t| t.starts_with("2 workers"))
        .await;

    browser.type_into("#token", TOKEN).await;
    browser.click("button[data-control=pause]").await;
    let answer = browser
        .wait_for_text("#answer", |t| t.contains("pause requested"))
        .await;
    operator_paused(&mut run, &db).await;
    browser
        .wait_for_text("[data-field=status]", |t| t == "paused")
        .await;
    let still = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let after = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    assert_eq!(still, after, "rows moved while paused");
    println!("pause: the page said {answer:?}; status said paused; rows stood at {still}");

    browser.click("button[data-control=resume]").await;
    browser
        .wait_for_text("#answer", |t| t.ends_with("resumed"))
        .await;
    run.wait_until(
        &db.pool,
        &format!("(SELECT rows_done > {after} FROM backfill.jobs)"),
    )
    .await;
    // The rate chart has a few of the server's samples by now.
    browser.screenshot(Path::new(SCREENSHOT)).await;
    browser.click("button[data-control=cancel]").await;
    browser
        .wait_for_text("#answer", |t| t.contains("cancel requested"))
        .await;
    run.finish().await.expect_code(1, "the cancelled run");
    browser
        .wait_for_text("[data-field=status]", |t| t == "cancelled")
        .await;
    println!("resume moved the rows past {after}; cancel ended the run with exit 1");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_token_the_button_is_refused_and_nothing_changes() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let db = fresh_database().await;
    let batch = "size = 500\nmin = 500\nmax = 500";
    let (dir, job) = slow_items_job(&db.pool, 20_000, "0.0002", batch, "").await;
    let mut run = Runner::spawn(&db.url, &dir, "run", &["run", &job]);
    run.wait_until(&db.pool, "(SELECT rows_done > 0 FROM backfill.jobs)")
        .await;
    let served = Served::start(&db.url, &dir, true).await;
    browser.goto(&served.url("/")).await;
    for typed in ["", "not-the-token"] {
        browser.type_into("#token", typed).await;
        browser.click("button[data-control=pause]").await;
        let answer = browser
            .wait_for_text("#answer", |t| t.contains("token"))
            .await;
        println!("with {typed:?} typed, the page said {answer:?}");
        browser
            .eval("document.getElementById('answer').textContent = ''; return null")
            .await;
    }
    let before = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    run.wait_until(
        &db.pool,
        &format!("(SELECT rows_done > {before} AND control IS NULL FROM backfill.jobs)"),
    )
    .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_table_name_shows_as_text_and_runs_no_script() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let db = fresh_database().await;
    let hostile = "<img src=x onerror=alert(1)>";
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE \"{hostile}\" (id int PRIMARY KEY, v int);
         INSERT INTO \"{hostile}\" SELECT g, NULL FROM generate_series(1, 100) g"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = common::write_job(
        &dir,
        "hostile",
        &format!("table = '\"{hostile}\"'\nwhere = \"v IS NULL\"\n[set]\nv = \"id\"\n"),
    );
    run_backfill(&db.url, &["run", common::path_str(&job)]).expect_code(0, "the run");
    let served = Served::start(&db.url, &dir, false).await;
    for page in ["/", "/jobs/hostile"] {
        browser.goto(&served.url(page)).await;
        let shown = browser
            .wait_for_text("[data-field=table]", |t| t.contains("onerror"))
            .await;
        let images = browser
            .eval("return document.querySelectorAll('img').length")
            .await;
        println!("{page}: the table shows as {shown:?}; images on the page: {images}");
        assert!(shown.contains(hostile), "{shown}");
        assert_eq!(images, 0, "the name became an element on {page}");
    }
    browser.close().await;
}
