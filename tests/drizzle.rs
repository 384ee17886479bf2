//! The Drizzle example (`examples/drizzle`) run for real, as its README tells a user to: its
//! `run.sh` against a database of the shared scratch cluster, with drizzle-kit, drizzle-orm and
//! node-postgres from the npm registry and this build's `backfill`. The script generates and
//! applies the expand migration, keeps an application dual-writing, runs `backfill plan`, `run`
//! and `verify`, applies the contract migration and checks every row; this test checks its exit
//! code and what it printed, then the table itself in SQL.
//!
//! The npm install and the run are [`common::node`]'s; the test skips, saying why, only when
//! `node` or `npm` is missing.

mod common;

use common::{holds, node, number};

/// Users in the table before the change.
const ROWS: i64 = 100_000;

#[tokio::test(flavor = "multi_thread")]
async fn drizzle_example_expands_backfills_verifies_and_contracts() {
    if !node::installed("the Drizzle example") {
        return;
    }
    let node_modules = node::dependencies("drizzle").await;
    let db = common::fresh_database().await;

    let story = node::run_story("drizzle", &db.url, &node_modules, ROWS).await;
    story.expect_code(0, "examples/drizzle/run.sh");
    let log = &story.stdout;
    for line in [
        "verify before the run: exit 3",
        "users_full_name: no row of \"public\".\"users\" matches `full_name IS NULL`",
        "users_full_name: verified — the contract migration may go ahead",
        "ALTER TABLE \"users\" ALTER COLUMN \"full_name\" SET NOT NULL;",
        "check: all ",
        "run.sh: the whole story passed",
    ] {
        assert!(log.contains(line), "run.sh did not print {line:?}:\n{log}");
    }

    let pool = &db.pool;
    assert_eq!(
        number(
            pool,
            "SELECT count(*) FROM users WHERE full_name IS DISTINCT FROM first_name || ' ' || last_name"
        )
        .await,
        0,
        "users whose full_name is not their first and last name"
    );
    assert!(
        number(pool, "SELECT count(*) FROM users").await > ROWS,
        "the application inserted no user during the story"
    );
    assert!(
        holds(
            pool,
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'full_name'"
        )
        .await,
        "the contract migration did not make users.full_name NOT NULL"
    );
    assert_eq!(
        number(pool, "SELECT count(*) FROM drizzle.__drizzle_migrations").await,
        3,
        "drizzle's migrations table should record create, expand and contract"
    );
    assert!(
        holds(
            pool,
            &format!(
                "SELECT status = 'done' AND rows_done BETWEEN 1 AND {ROWS} FROM backfill.jobs WHERE name = 'users_full_name'"
            )
        )
        .await,
        "the backfill job is not done, or changed more rows than were there before the application"
    );
}
