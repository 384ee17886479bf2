//! The throwaway MariaDB and MySQL servers (`backfill::mysql::throwaway`) that the MySQL tests
//! and `backfill demo` stand on: each flavor starts, serves a database and a table over sqlx in
//! utf8mb4, keeps its rows across a restart and a stop, and leaves nothing behind on drop. (The
//! watchdog that cleans up after an owner killed with SIGKILL is shared with the PostgreSQL
//! cluster, and `tests/scratch.rs` kills one.)
//!
//! A flavor whose programs are missing is skipped, saying why (`bash .ci/mysql-servers`
//! installs both); any other failure to start fails the test.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::Path;
use std::time::Instant;

use backfill::mysql::throwaway::{Error, Flavor, Server};
use sqlx::{Connection as _, MySqlConnection};

/// A name outside the Basic Multilingual Plane: stored only by a utf8mb4 table.
const NAME: &str = "crab 🦀";

/// Starts a `flavor` server and says, past the test harness's capture (so that CI's log shows
/// it), which version started and how long it took; `None`, saying why, when the flavor's
/// programs are missing.
fn start(flavor: Flavor) -> Option<Server> {
    let started = Instant::now();
    match Server::start(flavor) {
        Ok(server) => {
            let _ = writeln!(
                std::io::stderr(),
                "{flavor} {} started in {} ms on port {}",
                server.version(),
                started.elapsed().as_millis(),
                server.port()
            );
            Some(server)
        }
        Err(error @ Error::NotFound { .. }) => {
            let _ = writeln!(std::io::stderr(), "skipping the {flavor} server: {error}");
            None
        }
        Err(error) => {
            let cause = std::error::Error::source(&error).map(ToString::to_string);
            panic!("start a {flavor} server: {error} ({cause:?})")
        }
    }
}

async fn connect(url: &str) -> MySqlConnection {
    MySqlConnection::connect(url)
        .await
        .unwrap_or_else(|error| panic!("connect to {url}: {error}"))
}

/// The name of item 1, read on a new connection.
async fn name(url: &str) -> String {
    let mut connection = connect(url).await;
    sqlx::query_scalar("SELECT name FROM items WHERE id = 1")
        .fetch_one(&mut connection)
        .await
        .unwrap()
}

fn is_gone(dir: &Path, port: u16) -> bool {
    !dir.exists() && TcpStream::connect(("127.0.0.1", port)).is_err()
}

async fn serves_keeps_its_rows_and_vanishes(flavor: Flavor) {
    let Some(server) = start(flavor) else { return };
    assert_eq!(server.flavor(), flavor);
    let version = server.version();
    assert_eq!(
        version.contains("MariaDB"),
        flavor == Flavor::MariaDb,
        "{version}"
    );

    let mut admin = connect(&server.url("")).await;
    let schema: i64 = sqlx::query_scalar("SELECT @@performance_schema")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(schema, 1, "performance_schema is off");
    sqlx::raw_sql("CREATE DATABASE shop")
        .execute(&mut admin)
        .await
        .unwrap();
    let url = server.url("shop");
    let mut shop = connect(&url).await;
    sqlx::raw_sql("CREATE TABLE items (id bigint PRIMARY KEY, name varchar(50) NOT NULL)")
        .execute(&mut shop)
        .await
        .unwrap();
    sqlx::query("INSERT INTO items VALUES (?, ?)")
        .bind(1_i64)
        .bind(NAME)
        .execute(&mut shop)
        .await
        .unwrap();
    assert_eq!(name(&url).await, NAME);

    let restarted = Instant::now();
    server.restart().unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "{flavor} restarted in {} ms",
        restarted.elapsed().as_millis()
    );
    assert!(
        sqlx::raw_sql("SELECT 1").execute(&mut shop).await.is_err(),
        "a connection survived the restart"
    );
    assert_eq!(name(&url).await, NAME);

    server.stop().unwrap();
    assert!(MySqlConnection::connect(&url).await.is_err());
    server.start_again().unwrap();
    assert_eq!(name(&url).await, NAME);

    let (dir, port) = (server.socket().parent().unwrap().to_owned(), server.port());
    drop(server);
    assert!(is_gone(&dir, port), "{} is still there", dir.display());
}

#[tokio::test]
async fn mariadb_serves_keeps_its_rows_and_vanishes_on_drop() {
    serves_keeps_its_rows_and_vanishes(Flavor::MariaDb).await;
}

#[tokio::test]
async fn mysql_serves_keeps_its_rows_and_vanishes_on_drop() {
    serves_keeps_its_rows_and_vanishes(Flavor::MySql).await;
}
