//! The precedence of the connection string, the service file, the variables, the defaults and
//! the password file, each with an environment and files of the test's own.

use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::postgres::conninfo::parse;

/// Resolves `text` (or nothing) with `vars`, no home directory, and `osuser` as the
/// operating system's user.
fn settings(text: Option<&str>, vars: &[(&str, &str)]) -> Result<Settings, ConninfoError> {
    let (given, origin) = match text {
        Some(text) => parse(text)?,
        None => (Conninfo::default(), Origin::Pairs),
    };
    let env = Environment::of(vars.iter().copied(), None);
    resolve(given, &origin, &env, || Some("osuser".to_owned()))
}

/// A file in a fresh directory, readable by its owner only (as libpq wants a password file).
fn private_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

#[test]
fn nothing_given_is_the_default_socket_as_the_os_user() {
    let s = settings(None, &[]).unwrap();
    assert_eq!(s.host, Host::Socket(default_socket_dir().to_owned()));
    assert_eq!(s.port, 5432);
    assert_eq!(s.user, "osuser");
    assert_eq!(s.database, "osuser");
    assert_eq!(s.ssl_mode, SslMode::Prefer);
    assert_eq!(s.password, None);
}

#[test]
fn the_variables_fill_what_the_string_leaves() {
    let vars = [
        ("PGHOST", "db"),
        ("PGPORT", "6000"),
        ("PGUSER", "u"),
        ("PGDATABASE", "d"),
    ];
    let s = settings(Some("dbname=shop"), &vars).unwrap();
    assert_eq!(s.host, Host::Tcp("db".into()));
    assert_eq!(s.port, 6000);
    assert_eq!(s.user, "u");
    assert_eq!(s.database, "shop");
}

#[test]
fn the_users_url_with_query_parameters() {
    let url = "postgresql://127.0.0.1:5499/shop?user=postgres&password=pw";
    let s = settings(Some(url), &[("PGUSER", "other")]).unwrap();
    assert_eq!(s.host, Host::Tcp("127.0.0.1".into()));
    assert_eq!(s.port, 5499);
    assert_eq!(s.user, "postgres");
    assert_eq!(s.password.as_deref(), Some("pw"));
}

#[test]
fn a_socket_directory_in_the_query_or_in_pairs() {
    let s = settings(Some("postgresql://postgres@/shop?host=/tmp"), &[]).unwrap();
    assert_eq!(s.host, Host::Socket("/tmp".into()));
    assert_eq!(s.database, "shop");
    let s = settings(Some("host=/var/run/postgresql dbname=shop"), &[]).unwrap();
    assert_eq!(s.host, Host::Socket("/var/run/postgresql".into()));
}

#[test]
fn the_password_file_named_by_pgpassfile() {
    let (_dir, file) = private_file("localhost:5432:shop:app:from-file\n/sock:*:*:*:sock\n");
    let vars = [("PGPASSFILE", file.as_str())];
    let default = format!(
        "host={} user=app dbname=shop",
        default_socket_dir().display()
    );
    let s = settings(Some(&default), &vars).unwrap();
    assert_eq!(s.password.as_deref(), Some("from-file"));
    let s = settings(Some("host=/sock user=app"), &vars).unwrap();
    assert_eq!(s.password.as_deref(), Some("sock"));
    let s = settings(Some("host=localhost user=app dbname=other"), &vars).unwrap();
    assert_eq!(s.password, None);
}

#[test]
fn a_given_password_beats_the_password_file() {
    let (_dir, file) = private_file("*:*:*:*:from-file\n");
    let vars = [("PGPASSFILE", file.as_str()), ("PGPASSWORD", "from-env")];
    let s = settings(Some("user=app"), &vars).unwrap();
    assert_eq!(s.password.as_deref(), Some("from-env"));
}

#[test]
fn the_service_file_named_by_pgservicefile() {
    let (_dir, file) = private_file("[shop]\nhost=/run/pg\nport=5499\ndbname=shop\nuser=svc\n");
    let vars = [
        ("PGSERVICEFILE", file.as_str()),
        ("PGPORT", "6000"),
        ("PGUSER", "env"),
    ];
    let s = settings(Some("service=shop user=app"), &vars).unwrap();
    assert_eq!(s.host, Host::Socket("/run/pg".into()));
    assert_eq!(s.port, 5499, "the service file beats PGPORT");
    assert_eq!(s.user, "app", "the string beats the service file");
    assert_eq!(s.database, "shop");
}

#[test]
fn pgservice_names_the_service() {
    let (_dir, file) = private_file("[shop]\ndbname=shop\n");
    let vars = [("PGSERVICEFILE", file.as_str()), ("PGSERVICE", "shop")];
    assert_eq!(settings(None, &vars).unwrap().database, "shop");
}

#[test]
fn an_unknown_service_says_where_it_looked() {
    let (_dir, file) = private_file("[shop]\ndbname=shop\n");
    let vars = [
        ("PGSERVICEFILE", file.as_str()),
        ("PGSYSCONFDIR", "/nonexistent"),
    ];
    let err = settings(Some("service=shops"), &vars)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("definition of service \"shops\" not found"),
        "{err}"
    );
    assert!(err.contains(&file), "{err}");
    assert!(err.contains("/nonexistent/pg_service.conf"), "{err}");
}

#[test]
fn verify_full_is_taken() {
    let s = settings(
        Some("postgresql://db/shop?sslmode=verify-full&sslrootcert=/ca.pem"),
        &[],
    );
    let s = s.unwrap();
    assert_eq!(s.ssl_mode, SslMode::VerifyFull);
    assert_eq!(s.ssl_root_cert.as_deref(), Some("/ca.pem"));
}

#[test]
fn a_bad_sslmode_names_its_variable() {
    let err = settings(None, &[("PGSSLMODE", "verify")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid sslmode \"verify\" in PGSSLMODE: expected disable, allow, prefer, require, \
         verify-ca or verify-full"
    );
}

#[test]
fn a_bad_port_is_refused() {
    let err = settings(Some("port=notaport"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid port \"notaport\" in the connection string"),
        "{err}"
    );
}

#[test]
fn a_list_of_hosts_is_refused() {
    let err = settings(Some("postgresql://h1,h2/db"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("host=h1,h2 in the database URL cannot be kept"),
        "{err}"
    );
}

#[test]
fn a_demand_sqlx_cannot_keep_is_refused() {
    let err = settings(Some("host=h target_session_attrs=read-write"), &[]);
    assert!(
        matches!(err, Err(ConninfoError::Unsupported { .. })),
        "{err:?}"
    );
    assert!(settings(Some("host=h target_session_attrs=any"), &[]).is_ok());
    assert!(settings(Some("host=h connect_timeout=10 application_name=x"), &[]).is_ok());
}

#[test]
fn options_become_settings() {
    let s = settings(
        Some(r"options='-c search_path=a\\ b -cwork_mem=64MB --lock-timeout=1s'"),
        &[],
    );
    assert_eq!(
        s.unwrap().options,
        vec![
            ("search_path".to_owned(), "a b".to_owned()),
            ("work_mem".to_owned(), "64MB".to_owned()),
            ("lock_timeout".to_owned(), "1s".to_owned()),
        ]
    );
    let err = settings(Some("options=-B8"), &[]).unwrap_err().to_string();
    assert!(err.contains("only -c name=value"), "{err}");
}
