//! The connection settings as libpq reads them, against a real server: a `keyword=value`
//! string and a URL with `?host=DIR` over the Unix socket, a service file, and a password
//! from a password file with the server asking for one. Each test starts a cluster of its own
//! (its socket directory is private to it) and checks what a user would: a job run through
//! those settings filled the rows of the database named, and its state schema belongs to the
//! user named.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use backfill::postgres::throwaway::Cluster;
use common::{Finished, backfill_command, own_cluster, path_str, write_job};
use sqlx::{Connection as _, PgConnection, PgPool};
use tempfile::TempDir;

/// libpq's variables that would otherwise reach the binary from the test's environment.
const LIBPQ_VARIABLES: [&str; 10] = [
    "DATABASE_URL",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
];

/// The job every test runs: `doubled` of the three rows of `items`.
const JOB: &str = "table = \"items\"\nwhere = \"doubled IS NULL\"\n[set]\ndoubled = \"id * 2\"\n";

/// Runs `backfill --database-url TEXT run JOB` with `env` and none of libpq's other variables.
fn run(text: &str, env: &[(&str, &str)]) -> Finished {
    let dir = TempDir::new().expect("a temporary directory");
    let job = write_job(&dir, "double", JOB);
    let mut command = backfill_command(&["--database-url", text, "run", path_str(&job)]);
    for name in LIBPQ_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    Finished::from_output(command.output().expect("run backfill"))
}

/// A cluster of the test's own with a database `shop` owned by the role `owner`.
async fn cluster_with_shop(owner: &str) -> (Arc<Cluster>, PgPool) {
    let (cluster, pool) = own_cluster().await;
    if owner != "postgres" {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {owner} LOGIN")))
            .execute(&pool)
            .await
            .expect("create the role");
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE shop OWNER {owner}"
    )))
    .execute(&pool)
    .await
    .expect("create the database shop");
    let mut shop = PgConnection::connect(&cluster.url("shop"))
        .await
        .expect("connect to shop");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE items (id int PRIMARY KEY, doubled int); \
         INSERT INTO items (id) VALUES (1), (2), (3); ALTER TABLE items OWNER TO {owner}"
    )))
    .execute(&mut shop)
    .await
    .expect("create items");
    (cluster, pool)
}

/// How many rows of `items` in `shop` the job filled, and who owns the state schema there.
async fn filled_and_owner(cluster: &Cluster) -> (i64, Option<String>) {
    let mut shop = PgConnection::connect(&cluster.url("shop"))
        .await
        .expect("connect to shop");
    let filled = sqlx::query_scalar("SELECT count(*) FROM items WHERE doubled = id * 2")
        .fetch_one(&mut shop)
        .await
        .expect("count the filled rows");
    let owner = sqlx::query_scalar(
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'backfill'",
    )
    .fetch_optional(&mut shop)
    .await
    .expect("read the state schema's owner");
    (filled, owner)
}

fn socket_dir(cluster: &Cluster) -> &str {
    path_str(cluster.socket_dir())
}

#[tokio::test]
async fn a_key_value_string_connects_over_the_unix_socket() {
    let (cluster, _pool) = cluster_with_shop("postgres").await;
    let text = format!(
        "host={} port={} user=postgres dbname=shop",
        socket_dir(&cluster),
        cluster.port()
    );
    run(&text, &[]).expect_code(0, &text);
    assert_eq!(
        filled_and_owner(&cluster).await,
        (3, Some("postgres".into()))
    );
}

#[tokio::test]
async fn a_url_with_the_socket_directory_in_its_query_connects() {
    let (cluster, _pool) = cluster_with_shop("postgres").await;
    let url = format!(
        "postgresql://postgres@/shop?host={}&port={}",
        socket_dir(&cluster),
        cluster.port()
    );
    run(&url, &[]).expect_code(0, &url);
    assert_eq!(
        filled_and_owner(&cluster).await,
        (3, Some("postgres".into()))
    );
}

#[tokio::test]
async fn a_service_file_names_the_socket_and_the_database() {
    let (cluster, _pool) = cluster_with_shop("postgres").await;
    let dir = TempDir::new().expect("a temporary directory");
    let file = dir.path().join("pg_service.conf");
    let section = format!(
        "# the shop's database\n[shop]\nhost={}\nport={}\nuser=postgres\ndbname=shop\n",
        socket_dir(&cluster),
        cluster.port()
    );
    std::fs::write(&file, section).expect("write the service file");
    run("service=shop", &[("PGSERVICEFILE", path_str(&file))]).expect_code(0, "service=shop");
    assert_eq!(
        filled_and_owner(&cluster).await,
        (3, Some("postgres".into()))
    );
}

#[tokio::test]
async fn a_password_comes_from_the_password_file() {
    let (cluster, pool) = cluster_with_shop("app").await;
    // The socket asks `app` for a password; `postgres` and TCP (the harness) stay trusted.
    sqlx::raw_sql(
        "SET password_encryption = 'scram-sha-256'; ALTER ROLE app PASSWORD 'pw:from#file'",
    )
    .execute(&pool)
    .await
    .expect("give app a password");
    let hba = "local all app scram-sha-256\nlocal all all trust\nhost all all 127.0.0.1/32 trust\n";
    std::fs::write(cluster.data_dir().join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&pool)
        .await
        .expect("reload the configuration");

    let text = format!(
        "host={} port={} user=app dbname=shop",
        socket_dir(&cluster),
        cluster.port()
    );
    let dir = TempDir::new().expect("a temporary directory");
    let empty = private_file(&dir, "empty", "");
    let refused = run(&text, &[("PGPASSFILE", path_str(&empty))]);
    assert_ne!(refused.status.code(), Some(0), "no password, yet connected");
    assert!(refused.stderr.contains("password"), "{}", refused.stderr);
    assert_eq!(filled_and_owner(&cluster).await, (0, None));

    // A socket outside the default directory is looked up by its directory, as in libpq.
    let line = format!(
        "{}:{}:shop:app:pw\\:from#file\n",
        socket_dir(&cluster),
        cluster.port()
    );
    let pgpass = private_file(&dir, "pgpass", &line);
    let out = run(&text, &[("PGPASSFILE", path_str(&pgpass))]);
    out.expect_code(0, &text);
    assert_eq!(filled_and_owner(&cluster).await, (3, Some("app".into())));
    assert!(!out.stderr.contains("from#file"), "{}", out.stderr);
}

/// A file readable by its owner only, as libpq wants a password file.
fn private_file(dir: &TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write the file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("make the file private");
    path
}

#[test]
fn an_unsupported_demand_is_refused_before_connecting() {
    let out = run("host=/nonexistent target_session_attrs=read-write", &[]);
    out.expect_code(2, "target_session_attrs=read-write");
    assert!(
        out.stderr
            .contains("target_session_attrs=read-write in the connection string cannot be kept"),
        "{}",
        out.stderr
    );
}
