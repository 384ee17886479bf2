//! The MySQL catalog on real MariaDB and MySQL servers: what it refuses and how it says so (no
//! database, a key type without a text order, another storage engine, a view, a prefix index, a
//! missing table, a generated column); a unique index as the key; that it keeps the case of
//! names; and that it puts the session's lock wait back. The tables it accepts are read in
//! `mysql_table.rs`.
//!
//! A flavor whose programs are missing is skipped, saying why (`bash .ci/mysql-servers`
//! installs both).

use std::io::Write as _;
use std::path::Path;

use backfill::catalog::{Catalog, CatalogError, KeySource};
use backfill::job::Job;
use backfill::mysql::throwaway::{Error, Flavor, Server};
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

/// `@@SESSION.lock_wait_timeout`, not prepared: nothing of a prepared statement is kept.
async fn lock_wait(conn: &mut MySqlConnection) -> i64 {
    let sql = "SELECT CAST(@@SESSION.lock_wait_timeout AS SIGNED)";
    let row = sqlx::raw_sql(AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
        .expect("lock wait");
    row.get(0)
}

/// The catalog of `table` for a job that fills its `done`.
async fn read(conn: &mut MySqlConnection, table: &str) -> Result<Catalog, CatalogError> {
    let text = format!("table = \"{table}\"\nwhere = \"done IS NULL\"\n[set]\ndone = \"1\"\n");
    let job = Job::parse(&text, Path::new("jobs/t.toml")).expect("valid job");
    backfill::mysql::catalog::read(conn, &job).await
}

/// What the catalog refuses, and how it says so.
async fn refusals(flavor: Flavor) {
    let Some(server) = start(flavor) else { return };
    let mut conn = MySqlConnection::connect(&server.url(""))
        .await
        .expect("connect");
    exec(&mut conn, "SET SESSION lock_wait_timeout = 77").await;
    assert!(matches!(
        read(&mut conn, "items").await,
        Err(CatalogError::NoDatabase { .. })
    ));
    exec(&mut conn, "CREATE DATABASE db").await;
    exec(&mut conn, "USE db").await;
    exec(
        &mut conn,
        "CREATE TABLE floats (k DOUBLE NOT NULL PRIMARY KEY, done INT NULL)",
    )
    .await;
    exec(
        &mut conn,
        "CREATE TABLE heap (k INT NOT NULL PRIMARY KEY, done INT) ENGINE=MEMORY",
    )
    .await;
    exec(&mut conn, "CREATE VIEW seen AS SELECT k, done FROM heap").await;
    exec(
        &mut conn,
        "CREATE TABLE prefixed (k VARCHAR(40) NOT NULL, done INT NULL, UNIQUE KEY (k(10)))",
    )
    .await;
    match read(&mut conn, "floats").await {
        Err(CatalogError::UnsupportedKeyType {
            column, type_sql, ..
        }) => {
            assert_eq!((column.as_str(), type_sql.as_str()), ("k", "double"));
        }
        other => panic!("{other:?}"),
    }
    match read(&mut conn, "heap").await {
        Err(CatalogError::UnsupportedEngine { engine, .. }) => assert_eq!(engine, "MEMORY"),
        other => panic!("{other:?}"),
    }
    match read(&mut conn, "seen").await {
        Err(CatalogError::NotATable { kind, .. }) => assert_eq!(kind, "view"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        read(&mut conn, "prefixed").await,
        Err(CatalogError::NoKey { .. })
    ));
    match read(&mut conn, "db.missing").await {
        Err(e @ CatalogError::TableNotFound { .. }) => {
            assert!(e.to_string().contains("`db`.`missing`"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    exec(
        &mut conn,
        "CREATE TABLE computed (k INT NOT NULL PRIMARY KEY, done INT AS (k + 1) VIRTUAL)",
    )
    .await;
    assert!(matches!(
        read(&mut conn, "computed").await,
        Err(CatalogError::GeneratedColumn { .. })
    ));
    // Without a primary key, a unique index on NOT NULL columns is the key.
    exec(
        &mut conn,
        "CREATE TABLE coded (code CHAR(4) NOT NULL, done INT, UNIQUE KEY by_code (code))",
    )
    .await;
    let catalog = read(&mut conn, "coded").await.expect("coded");
    assert_eq!(catalog.key_source, KeySource::UniqueIndex("by_code".into()));
    assert_eq!(catalog.key_index.as_deref(), Some("by_code"));
    // The lookup keeps the case of the name, as the server stores it.
    exec(
        &mut conn,
        "CREATE TABLE Mixed (Id INT NOT NULL PRIMARY KEY, done INT)",
    )
    .await;
    let catalog = read(&mut conn, "Mixed").await.expect("Mixed");
    assert_eq!(
        (catalog.name.as_str(), catalog.key[0].name.as_str()),
        ("Mixed", "Id")
    );
    assert!(read(&mut conn, "mixed").await.is_err());
    // The session's lock wait is put back after the read.
    assert_eq!(lock_wait(&mut conn).await, 77);
}

#[tokio::test]
async fn mariadb_catalog_refuses_what_it_cannot_walk() {
    refusals(Flavor::MariaDb).await;
}

#[tokio::test]
async fn mysql_catalog_refuses_what_it_cannot_walk() {
    refusals(Flavor::MySql).await;
}
