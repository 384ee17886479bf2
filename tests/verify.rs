//! `backfill verify` against a real PostgreSQL: `--values` finds the rows whose `[set]`
//! columns differ from their expressions (and refuses expressions that cannot be compared),
//! and a failing verify says what is true of the job and what to do.

mod common;

use common::orders::{TOTAL, orders, orders_job};
use common::{Finished, TestDb, number, path_str, run_backfill, write_job};
use serde_json::Value;

/// `total_cents = qty * price_cents` over `orders`; batches of at most 500 keys, so that
/// `verify --values` walks 3000 rows in six.
fn job() -> String {
    orders_job(TOTAL, 500, "0ms")
}

fn cli(db: &TestDb, args: &[&str]) -> Finished {
    run_backfill(&db.url, args)
}

async fn sql(db: &TestDb, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn values_that_differ_are_counted_and_the_first_shown_with_both_values() {
    let (db, dir) = orders(3000).await;
    let path = write_job(&dir, "fill", &job());
    cli(&db, &["run", path_str(&path)]).expect_code(0, "run");
    let clean = cli(&db, &["verify", "--values", path_str(&path)]);
    clean.expect_code(0, "verify --values after the run");
    assert!(
        clean
            .stdout
            .contains("the [set] columns of all 3000 rows equal their expressions"),
        "{}",
        clean.stdout
    );

    // The application's dual write got three rows wrong and cleared one.
    sql(
        &db,
        "UPDATE orders SET total_cents = total_cents + 1 WHERE id IN (17, 1742, 2999);
         UPDATE orders SET total_cents = NULL WHERE id = 500;",
    )
    .await;
    let output = cli(&db, &["verify", "--values", path_str(&path)]);
    output.expect_code(3, "verify --values with wrong values");
    let text = &output.stdout;
    assert!(
        text.contains(
            "fill: 4 of 3000 rows differ from their [set] expressions (3 of them no longer match `where`"
        ),
        "{text}"
    );
    let shown: Vec<&str> = text.lines().filter(|l| l.starts_with("  (id)=")).collect();
    assert_eq!(
        shown,
        [
            "  (id)=(17): \"total_cents\" 89, expected 88",
            "  (id)=(500): \"total_cents\" NULL, expected 2020",
            "  (id)=(1742): \"total_cents\" 5230, expected 5229",
            "  (id)=(2999): \"total_cents\" 4017, expected 4016",
        ],
        "{text}"
    );
    assert!(
        text.contains("1 row of \"public\".\"orders\" still matches"),
        "{text}"
    );

    let output = cli(&db, &["verify", "--values", "--json", path_str(&path)]);
    output.expect_code(3, "verify --values --json");
    let v: Value = serde_json::from_str(&output.stdout).expect("one JSON object");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["pending"], 1, "{v}");
    assert_eq!(v["values"]["rows"], 3000, "{v}");
    assert_eq!(v["values"]["differing"], 4, "{v}");
    assert_eq!(v["values"]["first"][0]["key"]["id"], "17", "{v}");
    assert_eq!(
        v["values"]["first"][0]["columns"]["total_cents"],
        serde_json::json!({"value": "89", "expected": "88"}),
        "{v}"
    );

    sql(
        &db,
        "UPDATE orders SET total_cents = qty::bigint * price_cents WHERE id IN (17, 500, 1742, 2999)",
    )
    .await;
    cli(&db, &["verify", "--values", path_str(&path)]).expect_code(0, "verify after the fix");
}

#[tokio::test]
async fn expressions_whose_value_depends_on_when_they_run_are_refused() {
    let (db, dir) = orders(3000).await;
    for (name, expr, culprit) in [
        (
            "clock",
            "extract(epoch FROM now())::bigint",
            "now() reads the clock",
        ),
        (
            "keyword",
            "extract(epoch FROM CURRENT_TIMESTAMP)::bigint",
            "CURRENT_TIMESTAMP reads the clock",
        ),
        ("dice", "(random() * 100)::bigint", "random() is volatile"),
    ] {
        let job = orders_job(expr, 500, "0ms");
        let path = write_job(&dir, name, &job);
        let output = cli(&db, &["verify", "--values", path_str(&path)]);
        output.expect_code(2, &format!("verify --values of {expr}"));
        assert!(output.stderr.contains(culprit), "{expr}: {}", output.stderr);
        assert!(
            output.stderr.contains("cannot be verified with --values"),
            "{}",
            output.stderr
        );
    }
    // A stable function that does not read the clock compares fine.
    let job = orders_job("length(concat(qty, 'x'))", 500, "0ms");
    let path = write_job(&dir, "stable", &job);
    cli(&db, &["verify", "--values", path_str(&path)]).expect_code(3, "verify of concat()");
    assert_eq!(
        number(
            &db.pool,
            "SELECT count(*) FROM orders WHERE total_cents IS NOT NULL"
        )
        .await,
        0,
        "verify wrote rows"
    );
}

#[tokio::test]
async fn a_failing_verify_says_what_is_true_of_the_job_and_what_to_do() {
    let (db, dir) = orders(3000).await;
    let path = write_job(&dir, "fill", &job());
    let verify = |what: &str| {
        let output = cli(&db, &["verify", path_str(&path)]);
        output.expect_code(3, what);
        output.stdout
    };

    let never = verify("verify before any run");
    assert!(
        never.contains("3000 rows of \"public\".\"orders\" still match `total_cents IS NULL`; the job has no state here: it never ran against this database, or it was reset; `backfill run fill` fills them"),
        "{never}"
    );

    cli(&db, &["run", path_str(&path)]).expect_code(0, "run");
    sql(
        &db,
        "UPDATE orders SET total_cents = NULL WHERE id BETWEEN 10 AND 14;
         INSERT INTO orders (id, qty, price_cents) VALUES (3001, 1, 1), (3002, 1, 1);",
    )
    .await;
    let cleared = verify("verify after rows were cleared again");
    assert!(
        cleared.contains("7 rows of \"public\".\"orders\" still match `total_cents IS NULL`; the job is done, yet 5 rows inside its key range match `where` again since it ran"),
        "{cleared}"
    );
    assert!(
        cleared.contains("2 rows past its range end (3000) were inserted after it started"),
        "{cleared}"
    );
    assert!(
        cleared.contains("`backfill run --restart fill`"),
        "{cleared}"
    );

    cli(&db, &["reset", "fill"]).expect_code(0, "reset");
    let reset = verify("verify after a reset");
    assert!(
        reset.contains(
            "the job has no state here: it never ran against this database, or it was reset"
        ),
        "{reset}"
    );
}
