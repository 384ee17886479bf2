//! `backfill demo --database mysql` and `--database mariadb`: the whole story on a throwaway
//! server — the table, the expand, the run, verify and the contract — exits 0 and says each
//! step, and the server is gone afterwards. Skipped, saying why, when the server's programs
//! are missing (the demo then says how to install them, which the last test checks).

mod common;

use backfill::mysql::throwaway::{Error, Flavor, Server};
use common::backfill;

/// Whether `flavor`'s programs are here; says why not.
fn installed(flavor: Flavor) -> bool {
    match Server::start(flavor) {
        Ok(_) => true,
        Err(error @ Error::NotFound { .. }) => {
            eprintln!("skipping the {flavor} demo: {error}");
            false
        }
        Err(error) => panic!("start a {flavor} server: {error}"),
    }
}

#[test]
fn the_demo_tells_the_whole_story_on_mysql_and_on_mariadb() {
    for (database, flavor) in [("mysql", Flavor::MySql), ("mariadb", Flavor::MariaDb)] {
        if !installed(flavor) {
            continue;
        }
        let out = backfill(&["demo", "--database", database, "--rows", "20000"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{database}:\n{stdout}\n{stderr}"
        );
        for step in [
            &format!("{flavor} "),
            "1. expand:   ALTER TABLE orders ADD COLUMN total_cents BIGINT NULL;",
            "2. backfill: backfill run jobs/demo_orders_mysql.toml",
            "3. verify:   backfill verify jobs/demo_orders_mysql.toml",
            "4. contract: ALTER TABLE orders MODIFY COLUMN total_cents BIGINT NOT NULL;",
            "removing the throwaway server",
        ] {
            assert!(
                stderr.contains(step),
                "{database}: no {step:?} in\n{stderr}"
            );
        }
        assert!(
            stdout.contains("verified — the contract migration may go ahead"),
            "{database}: {stdout}"
        );
    }
}
