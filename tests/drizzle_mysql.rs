//! The Drizzle example for MySQL (`examples/drizzle-mysql`) run for real, as its README tells a
//! user to: its `run.sh` against a throwaway MariaDB, then a throwaway MySQL, with drizzle-kit,
//! drizzle-orm and mysql2 from the npm registry and this build's `backfill`. The script
//! generates and applies the expand migration (twice: the second time applies nothing), keeps
//! an application dual-writing, runs `backfill plan`, `verify` (exit 3), `run` (stopped by
//! SIGTERM, then resumed) and `verify` (exit 0), applies the contract migration (first timed out
//! behind a long transaction, then applied) and checks every row; this test checks its exit
//! code and what it printed, then the table itself in SQL.
//!
//! The npm install and the run are [`common::node`]'s. The test skips, saying why, when `node`
//! or `npm` is missing; a flavor whose server programs are missing is skipped the same way.

mod common;

use common::mysql::{FLAVORS, number, start};
use common::node;

/// Users in the table before the change.
const ROWS: i64 = 100_000;

#[tokio::test(flavor = "multi_thread")]
async fn drizzle_example_expands_backfills_verifies_and_contracts_on_mariadb_and_mysql() {
    if !node::installed("the Drizzle example for MySQL") {
        return;
    }
    let node_modules = node::dependencies("drizzle-mysql").await;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        let story = node::run_story("drizzle-mysql", &db.url, &node_modules, ROWS).await;
        story.expect_code(0, &format!("{flavor}: examples/drizzle-mysql/run.sh"));
        let log = &story.stdout;
        for line in [
            // The expand, applied twice: the journal makes the second time a no-op.
            "ALTER TABLE `users` ADD `full_name` varchar(201);",
            "migrate: applied 1, 2 recorded in __drizzle_migrations",
            "migrate: applied 0, 2 recorded in __drizzle_migrations",
            "verify before the run: exit 3",
            // The run, stopped and resumed from its checkpoint.
            "checkpoint saved; run it again to resume",
            "backfill run stopped by SIGTERM: exit 130",
            "users_full_name: resuming at ",
            "users_full_name: no row of `db`.`users` matches `full_name IS NULL`",
            "users_full_name: verified — the contract migration may go ahead",
            // The contract, timed out behind a long transaction, then applied.
            "ALTER TABLE `users` MODIFY COLUMN `full_name` varchar(201) NOT NULL;",
            "(error 1205, ER_LOCK_WAIT_TIMEOUT)",
            "the failed migration applied nothing; run it again when the table is less busy",
            "migrate: applied 1, 3 recorded in __drizzle_migrations",
            "check: all ",
            "run.sh: the whole story passed",
        ] {
            assert!(
                log.contains(line),
                "{flavor}: run.sh did not print {line:?}:\n{log}"
            );
        }

        let pool = &db.pool;
        assert_eq!(
            number(
                pool,
                "SELECT COUNT(*) FROM users \
                 WHERE NOT full_name <=> CONCAT(first_name, ' ', last_name)"
            )
            .await,
            0,
            "{flavor}: users whose full_name is not their first and last name"
        );
        assert!(
            number(pool, "SELECT COUNT(*) FROM users").await > ROWS,
            "{flavor}: the application inserted no user during the story"
        );
        assert_eq!(
            number(
                pool,
                "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = 'db' \
                 AND table_name = 'users' AND column_name = 'full_name' AND is_nullable = 'NO'"
            )
            .await,
            1,
            "{flavor}: the contract migration did not make users.full_name NOT NULL"
        );
        assert_eq!(
            number(pool, "SELECT COUNT(*) FROM __drizzle_migrations").await,
            3,
            "{flavor}: drizzle's migrations table should record create, expand and contract"
        );
        assert_eq!(
            number(
                pool,
                &format!(
                    "SELECT status = 'done' AND rows_done BETWEEN 1 AND {ROWS} \
                     FROM backfill.jobs WHERE name = 'users_full_name'"
                )
            )
            .await,
            1,
            "{flavor}: the backfill job is not done, or changed more rows than were there \
             before the application"
        );
    }
}
