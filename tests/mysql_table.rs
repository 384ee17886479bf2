//! The MySQL planner's statements on real MariaDB and MySQL servers, through the seam
//! (`db::Conn::Mysql`): the catalog of tables keyed by each supported key type, a walk of each
//! whole table in batches of two that updates every row exactly once (a `BEFORE UPDATE`
//! trigger counts the updates of each row), the keys, a row's update, the samples, the count of
//! `verify`, the probe, the relation's size and the connections; and that a batch's upper bound
//! is a range scan of the key's index. What the catalog refuses is `mysql_catalog.rs`'s.
//!
//! A flavor whose programs are missing is skipped, saying why (`bash .ci/mysql-servers`
//! installs both).

use std::io::Write as _;
use std::path::Path;

use backfill::catalog::KeySource;
use backfill::db::Conn;
use backfill::job::Job;
use backfill::mysql::throwaway::{Error, Flavor, Server};
use backfill::plan::{Key, Plan, Walk};
use backfill::verify::{Failed, Subject};
use sqlx::{AssertSqlSafe, Connection as _, MySqlConnection, Row as _};

fn start(flavor: Flavor) -> Option<Server> {
    match Server::start(flavor) {
        Ok(server) => Some(server),
        Err(error @ Error::NotFound { .. }) => {
            let _ = writeln!(std::io::stderr(), "skipping the {flavor} server: {error}");
            None
        }
        Err(error) => panic!("start a {flavor} server: {error}"),
    }
}

async fn exec(conn: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn number(conn: &mut MySqlConnection, sql: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT CAST(({sql}) AS SIGNED)")))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn job(table: &str) -> Job {
    let text = format!("table = \"{table}\"\nwhere = \"done IS NULL\"\n[set]\ndone = \"1\"\n");
    Job::parse(&text, Path::new("jobs/t.toml")).expect("valid job")
}

/// One table of the test: its key columns (as SQL) and the key values of its rows (as SQL).
struct Case {
    name: &'static str,
    key: String,
    values: Vec<String>,
}

fn cases(flavor: Flavor) -> Vec<Case> {
    let collation = match flavor {
        Flavor::MySql => "utf8mb4_0900_ai_ci",
        Flavor::MariaDb => "utf8mb4_uca1400_ai_ci",
    };
    let quoted = |v: &[&str]| v.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>();
    vec![
        Case {
            name: "big",
            key: "k BIGINT NOT NULL".into(),
            values: [
                "-9223372036854775808",
                "-5",
                "0",
                "7",
                "12",
                "4611686018427387904",
            ]
            .map(String::from)
            .into(),
        },
        Case {
            name: "Pairs",
            key: "tenant INT NOT NULL, code VARCHAR(8) NOT NULL".into(),
            values: ["1, 'b'", "1, 'a'", "1, 'c'", "2, 'a'", "3, 'z'", "3, 'y'"]
                .map(String::from)
                .into(),
        },
        Case {
            name: "bytes",
            key: "k BINARY(16) NOT NULL".into(),
            values: [
                "00",
                "0000ff",
                "7f",
                "80",
                "ff00",
                "ffffffffffffffffffffffffffffffff",
            ]
            .map(|h| format!("UNHEX('{h}')"))
            .into(),
        },
        Case {
            name: "uuids",
            key: "k CHAR(36) NOT NULL".into(),
            values: quoted(&[
                "0a8f6c5e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                "0A8F6C5E-1C2D-4E5F-8A9B-0C1D2E3F4A5C",
                "7c9e6679-7425-40de-944b-e07fc1f90ae7",
                "f47ac10b-58cc-4372-a567-0e02b2c3d479",
                "ffffffff-ffff-ffff-ffff-ffffffffffff",
            ]),
        },
        Case {
            name: "words",
            key: format!("k VARCHAR(8) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL"),
            values: quoted(&["a", "B", "áb", "c", "Ñ", "o", "Ö2", "z", "Z1", "_"]),
        },
        Case {
            name: "stamps",
            key: "k DATETIME(6) NOT NULL".into(),
            values: quoted(&[
                "2024-01-01 00:00:00",
                "2024-01-01 00:00:00.000001",
                "2024-01-01 00:00:00.5",
                "1999-12-31 23:59:59.999999",
                "2038-01-19 03:14:08",
            ]),
        },
        Case {
            name: "mixed",
            key: "a BIGINT UNSIGNED NOT NULL, b DECIMAL(10,2) NOT NULL, c DATE NOT NULL, \
                  t TIMESTAMP(3) NOT NULL"
                .into(),
            values: [
                "18446744073709551615, -1.50, '2024-02-29', '2024-01-01 00:00:00.001'",
                "18446744073709551615, -1.50, '2024-02-29', '2024-01-01 00:00:00'",
                "18446744073709551615, -1.5, '2024-03-01', '2001-01-01 00:00:00'",
                "9223372036854775808, 10.00, '1970-01-01', '2001-01-01 00:00:00'",
                "0, 9.99, '9999-12-31', '2001-01-01 00:00:00'",
                "0, 10, '0001-01-01', '2001-01-01 00:00:00'",
            ]
            .map(String::from)
            .into(),
        },
    ]
}

/// Creates the case's table: its key, `done` to fill and `updates`, counted by a trigger.
async fn create(conn: &mut MySqlConnection, case: &Case) {
    let columns: Vec<&str> = case
        .key
        .split(", ")
        .map(|c| c.split(' ').next().unwrap())
        .collect();
    exec(
        conn,
        &format!(
            "CREATE TABLE `{}` ({}, done INT NULL, updates INT NOT NULL DEFAULT 0, \
             PRIMARY KEY ({})) ENGINE=InnoDB",
            case.name,
            case.key,
            columns.join(", ")
        ),
    )
    .await;
    exec(
        conn,
        &format!(
            "CREATE TRIGGER `{0}_counts` BEFORE UPDATE ON `{0}` FOR EACH ROW \
             SET NEW.updates = OLD.updates + 1",
            case.name
        ),
    )
    .await;
    let rows: Vec<String> = case.values.iter().map(|v| format!("({v})")).collect();
    exec(
        conn,
        &format!(
            "INSERT INTO `{}` ({}) VALUES {}",
            case.name,
            columns.join(", "),
            rows.join(", ")
        ),
    )
    .await;
}

/// Walks the whole table in batches of `size` as the engine does, from the first key to the
/// range end; the batches' sizes.
async fn walk_all(conn: &mut MySqlConnection, walk: &Walk, size: u64) -> Vec<u64> {
    let end = Conn::Mysql(conn).range_end(walk).await.expect("range end");
    let end = end.expect("a table with rows");
    let mut cursor: Option<Key> = None;
    let mut batches = Vec::new();
    while cursor.as_ref() != Some(&end) {
        let upper = Conn::Mysql(conn)
            .upper_bound(walk, cursor.as_deref(), &end, size)
            .await
            .expect("upper bound")
            .unwrap_or_else(|| end.clone());
        let updated = Conn::Mysql(conn)
            .update(walk, cursor.as_deref(), &upper)
            .await
            .expect("update");
        batches.push(updated);
        cursor = Some(upper);
    }
    batches
}

/// The keys of the table as the key's order has them, read as the plan reads them.
async fn keys_in_order(conn: &mut MySqlConnection, plan: &Plan, case: &Case) -> Vec<Key> {
    let sql = plan
        .walk
        .range_end
        .replace(" DESC", "")
        .replace(" LIMIT 1", "");
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    rows.iter()
        .map(|r| (0..r.len()).map(|i| r.get::<String, _>(i)).collect())
        .collect()
}

/// `EXPLAIN FORMAT=JSON` of the batch's upper bound in `(cursor, end]`, `offset` keys on, as
/// one string.
async fn explain_upper_bound(
    conn: &mut MySqlConnection,
    plan: &Plan,
    cursor: &Key,
    end: &Key,
    offset: u64,
) -> String {
    let sql = format!("EXPLAIN FORMAT=JSON {}", plan.walk.upper_bound.after_cursor);
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for key in [cursor, end] {
        let order = backfill::mysql::sql::Compare::AFTER.over(key.len()).order();
        for i in order {
            query = query.bind(key[i].clone());
        }
    }
    let row = query.bind(offset).fetch_one(conn).await.expect("explain");
    row.try_get::<String, _>(0)
        .or_else(|_| {
            row.try_get::<Vec<u8>, _>(0)
                .map(|b| String::from_utf8_lossy(&b).into())
        })
        .expect("explain text")
}

async fn one_case(conn: &mut MySqlConnection, flavor: Flavor, case: &Case) {
    create(conn, case).await;
    let job = job(case.name);
    let catalog = backfill::mysql::catalog::read(conn, &job)
        .await
        .unwrap_or_else(|e| panic!("{flavor} {}: {e}", case.name));
    assert_eq!(catalog.name, case.name);
    assert_eq!(catalog.schema, "db");
    assert_eq!(catalog.key_source, KeySource::PrimaryKey("PRIMARY".into()));
    assert_eq!(catalog.key_index.as_deref(), Some("PRIMARY"));
    assert_eq!(catalog.triggers, [format!("{}_counts", case.name)]);
    let plan = backfill::mysql::plan::plan(&job, &catalog);
    let rows = case.values.len() as i64;

    // Before the walk: every row is pending, in the sample and the count.
    let keys = keys_in_order(conn, &plan, case).await;
    assert_eq!(keys.len() as i64, rows);
    let end = keys.last().unwrap();
    let sampled = Conn::Mysql(conn)
        .sample(&plan.walk, None, end, 100.0)
        .await
        .expect("sample");
    assert_eq!(
        sampled.iter().map(|s| &s.key).collect::<Vec<_>>(),
        keys.iter().collect::<Vec<_>>()
    );
    assert!(sampled.iter().all(|s| s.pending), "{}", case.name);
    let listed = Conn::Mysql(conn)
        .keys(&plan.walk, Some(&keys[0]), end)
        .await
        .expect("keys");
    assert_eq!(listed, keys[1..], "{flavor} {}", case.name);
    let subject = Subject {
        job: &job,
        catalog: &catalog,
        plan: &plan,
        state: None,
        failed: &Failed::default(),
    };
    let verdict = Conn::Mysql(conn)
        .verify_pending(&subject)
        .await
        .expect("verify");
    assert_eq!(verdict.pending as i64, rows);

    let batches = walk_all(conn, &plan.walk, 2).await;
    assert_eq!(
        batches.iter().sum::<u64>() as i64,
        rows,
        "{flavor} {}",
        case.name
    );
    assert!(
        batches.iter().all(|&b| b <= 2),
        "{} batches {batches:?}",
        case.name
    );
    let table = format!("`{}`", case.name);
    assert_eq!(
        number(
            conn,
            &format!("SELECT COUNT(*) FROM {table} WHERE updates = 1 AND done = 1")
        )
        .await,
        rows,
        "{flavor} {}: every row updated exactly once",
        case.name
    );

    // After it: a row's own update finds it done, and nothing is pending.
    let again = Conn::Mysql(conn)
        .update_key(&plan.walk, &keys[0])
        .await
        .expect("update key");
    assert_eq!(again, 0);
    let verdict = Conn::Mysql(conn)
        .verify_pending(&subject)
        .await
        .expect("verify");
    assert_eq!(verdict.pending, 0);
    exec(
        conn,
        &format!("UPDATE {table} SET done = NULL WHERE updates = 1 LIMIT 1"),
    )
    .await;
    let one = Conn::Mysql(conn)
        .sample(&plan.walk, None, end, 100.0)
        .await
        .expect("sample");
    assert_eq!(one.iter().filter(|s| s.pending).count(), 1, "{}", case.name);
    other_statements_run(conn, &plan, &keys[0], rows).await;
}

/// The plan's statements that the seam does not run yet: the pending rows' count, sample and
/// estimate, and the guard's probe (its key bound once per column, in key order).
async fn other_statements_run(conn: &mut MySqlConnection, plan: &Plan, key: &Key, rows: i64) {
    let counted: i64 = sqlx::query_scalar(AssertSqlSafe(plan.pending_count.clone()))
        .fetch_one(&mut *conn)
        .await
        .expect("pending count");
    assert_eq!(counted, 1);
    let sampled: (i64, i64) = sqlx::query_as(AssertSqlSafe(plan.pending_sample.clone()))
        .bind(100.0_f64)
        .fetch_one(&mut *conn)
        .await
        .expect("pending sample");
    assert_eq!(sampled, (1, rows));
    let estimate = sqlx::query(AssertSqlSafe(plan.pending_estimate.clone()))
        .fetch_one(&mut *conn)
        .await
        .expect("pending estimate");
    assert_eq!(estimate.len(), 1);
    let mut probe = sqlx::query_scalar::<_, i64>(AssertSqlSafe(plan.probe.clone()));
    for part in key {
        probe = probe.bind(part.clone());
    }
    assert_eq!(probe.fetch_one(&mut *conn).await.expect("probe"), 1);
}

/// A composite key over 5,000 rows: the batch's upper bound is a range scan of the key's index
/// (`"key"` and `"range"` in MariaDB's and MySQL 8's JSON, `"index_name"` and
/// `"index_range_scan"` in MySQL 9's format 2), and a walk in batches of 500 updates every row
/// once.
async fn wide_key_walks_its_index(conn: &mut MySqlConnection, flavor: Flavor) {
    let collation = match flavor {
        Flavor::MySql => "utf8mb4_0900_ai_ci",
        Flavor::MariaDb => "utf8mb4_uca1400_ai_ci",
    };
    exec(
        conn,
        &format!(
            "CREATE TABLE wide (tenant INT NOT NULL, code VARCHAR(8) COLLATE {collation} NOT NULL, \
             done INT NULL, updates INT NOT NULL DEFAULT 0, PRIMARY KEY (tenant, code))"
        ),
    )
    .await;
    exec(
        conn,
        "CREATE TRIGGER wide_counts BEFORE UPDATE ON wide FOR EACH ROW \
         SET NEW.updates = OLD.updates + 1",
    )
    .await;
    let rows: Vec<String> = (0..5000)
        .map(|n| format!("({}, 'c{}')", n / 10, n % 10))
        .collect();
    let insert = format!("INSERT INTO wide (tenant, code) VALUES {}", rows.join(", "));
    exec(conn, &insert).await;
    exec(conn, "ANALYZE TABLE wide").await;
    let job = job("wide");
    let catalog = backfill::mysql::catalog::read(conn, &job)
        .await
        .expect("catalog");
    let plan = backfill::mysql::plan::plan(&job, &catalog);
    let key = |t: &str, c: &str| vec![t.to_owned(), c.to_owned()];
    let explained =
        explain_upper_bound(conn, &plan, &key("100", "c3"), &key("300", "c3"), 499).await;
    let v1 = explained.contains(r#""key": "PRIMARY""#) && explained.contains(r#""range""#);
    let v2 = explained.contains(r#""index_name": "PRIMARY""#)
        && explained.contains(r#""index_range_scan""#);
    assert!(v1 || v2, "{flavor} walks the key's index: {explained}");

    let batches = walk_all(conn, &plan.walk, 500).await;
    assert_eq!(batches, [500; 10]);
    assert_eq!(
        number(
            conn,
            "SELECT COUNT(*) FROM wide WHERE updates = 1 AND done = 1"
        )
        .await,
        5000
    );
}

async fn tables_walk_once_per_row(flavor: Flavor) {
    let Some(server) = start(flavor) else { return };
    let mut admin = MySqlConnection::connect(&server.url(""))
        .await
        .expect("connect");
    exec(&mut admin, "CREATE DATABASE db").await;
    let mut conn = MySqlConnection::connect(&server.url("db"))
        .await
        .expect("connect");
    for case in cases(flavor) {
        one_case(&mut conn, flavor, &case).await;
    }
    wide_key_walks_its_index(&mut conn, flavor).await;
    let size = Conn::Mysql(&mut conn)
        .relation_size("`db`.`big`")
        .await
        .expect("relation size");
    assert!(size.blocks >= 1, "{size:?}");
    let (in_use, max) = Conn::Mysql(&mut conn)
        .connections()
        .await
        .expect("connections");
    assert!(in_use >= 1 && max > in_use, "{in_use} of {max}");
}

#[tokio::test]
async fn mariadb_tables_walk_once_per_row() {
    tables_walk_once_per_row(Flavor::MariaDb).await;
}

#[tokio::test]
async fn mysql_tables_walk_once_per_row() {
    tables_walk_once_per_row(Flavor::MySql).await;
}
