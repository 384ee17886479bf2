//! What a newcomer meets first: the connection settings (which user, which URLs), the answer
//! to a job name that does not exist, `--help`, and shell completions.

mod common;

use std::process::Command;

use common::{
    Finished, backfill, backfill_command, fresh_database, path_str, run_backfill, write_job,
};
use tempfile::TempDir;

const JOB: &str = "table = \"orders\"
where = \"total IS NULL\"

[set]
total = \"qty * 2\"
";

fn output(args: &[&str]) -> Finished {
    Finished::from_output(backfill(args))
}

/// As libpq does, a variable set to the empty string is unset: `DATABASE_URL=` falls back to
/// `PGHOST` and the rest instead of being refused as a URL, and an empty
/// `BACKFILL_METRICS_ADDR` or `BACKFILL_MONITOR_URL` is no address.
#[test]
fn empty_environment_variables_are_unset() {
    let dir = TempDir::new().unwrap();
    let path = write_job(&dir, "fill", JOB);
    let socket = dir.path().join("no-server");
    let out = Finished::from_output(
        backfill_command(&["run", path_str(&path)])
            .env("DATABASE_URL", "")
            .env("BACKFILL_MONITOR_URL", "")
            .env("BACKFILL_METRICS_ADDR", "")
            .env("PGHOST", path_str(&socket))
            .env("PGUSER", "")
            .output()
            .expect("run backfill"),
    );
    out.expect_code(1, "a run with empty variables and no server at PGHOST");
    assert!(
        out.stderr.contains("cannot connect to") && out.stderr.contains("no-server"),
        "the connection must come from PGHOST:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("invalid"), "{}", out.stderr);
}

#[test]
fn urls_that_are_not_postgres_or_do_not_parse_say_what_to_do() {
    let out = output(&["--database-url", "sqlserver://app:secret@db/prod", "status"]);
    out.expect_code(2, "a sqlserver:// URL");
    assert!(
        out.stderr.contains(
            "a PostgreSQL URL starts with postgres:// or postgresql://, a MySQL or MariaDB one \
             with mysql:// or mariadb://"
        ),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("secret"), "{}", out.stderr);

    let out = output(&[
        "--database-url",
        "mysql://app:secret@db:notaport/prod",
        "status",
    ]);
    out.expect_code(2, "a mysql:// URL that does not parse");
    assert!(
        out.stderr
            .contains("cannot read the MySQL URL mysql://app:***@db:notaport/prod"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("secret"), "{}", out.stderr);

    let out = output(&[
        "--database-url",
        "postgres://app@db:notaport/prod",
        "status",
    ]);
    out.expect_code(2, "a URL that does not parse");
    assert!(
        out.stderr.contains("invalid database URL"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("percent-encoded"), "{}", out.stderr);
}

#[tokio::test]
async fn without_a_user_the_operating_system_user_connects_as_with_libpq() {
    let db = fresh_database().await;
    let who = Command::new("id").arg("-un").output().expect("run id -un");
    let who = String::from_utf8_lossy(&who.stdout).trim().to_owned();
    let port = db
        .url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("the test URL has a port")
        .to_owned();
    let output = backfill_command(&["status"])
        .env_remove("DATABASE_URL")
        .env_remove("PGUSER")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &port)
        .env("PGDATABASE", "postgres")
        .output()
        .expect("run backfill");
    let out = Finished::from_output(output);
    // The test server knows only `postgres`: connecting as anyone else fails, naming them.
    if who == "postgres" {
        out.expect_code(0, "status as postgres");
    } else {
        out.expect_code(1, "status as an unknown role");
        assert!(out.stderr.contains(&format!("\"{who}\"")), "{}", out.stderr);
    }
    assert!(!out.stderr.contains("anonymous"), "{}", out.stderr);
}

#[tokio::test]
async fn an_unknown_job_name_lists_the_jobs_that_exist() {
    let db = fresh_database().await;
    sqlx::raw_sql(
        "CREATE TABLE orders (id bigint PRIMARY KEY, qty int NOT NULL, total int);
         INSERT INTO orders (id, qty) SELECT g, g FROM generate_series(1, 10) g;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let dir = TempDir::new().unwrap();
    write_job(&dir, "fill", JOB);
    write_job(&dir, "double", JOB);
    let jobs_dir = path_str(dir.path());

    let out = run_backfill(&db.url, &["--jobs-dir", jobs_dir, "plan", "fil"]);
    out.expect_code(2, "plan of a misspelt job");
    assert!(
        out.stderr.contains(&format!(
            "the jobs with a file in {jobs_dir}/ are double, fill"
        )),
        "{}",
        out.stderr
    );

    let out = run_backfill(&db.url, &["pause", "fill"]);
    out.expect_code(2, "pause before any run");
    assert!(
        out.stderr
            .contains("no job has run against this database yet"),
        "{}",
        out.stderr
    );

    run_backfill(&db.url, &["--jobs-dir", jobs_dir, "run", "fill"]).expect_code(0, "run");
    let out = run_backfill(&db.url, &["pause", "fil"]);
    out.expect_code(2, "pause of a misspelt job");
    assert!(
        out.stderr.contains("no job named \"fil\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("jobs there: fill"), "{}", out.stderr);
}

#[test]
fn help_names_the_environment_and_what_a_cancel_exits_with() {
    let out = output(&["--help"]);
    out.expect_code(0, "--help");
    for needle in [
        "BACKFILL_LOG",
        "PG_BIN",
        "NO_COLOR",
        "1 runtime failure, or a run cancelled by an operator",
    ] {
        assert!(
            out.stdout.contains(needle),
            "--help lacks {needle}:\n{}",
            out.stdout
        );
    }
    let demo = output(&["demo", "--help"]).stdout;
    assert!(
        !demo.contains("--database-url") && !demo.contains("--jobs-dir"),
        "{demo}"
    );
    let status = output(&["status", "--help"]).stdout;
    assert!(!status.contains("--jobs-dir"), "{status}");
}

#[test]
fn completions_are_generated_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_backfill()"),
        ("zsh", "#compdef backfill"),
        ("fish", "complete -c backfill"),
    ] {
        let out = output(&["completions", shell]);
        out.expect_code(0, shell);
        assert!(out.stdout.contains(marker), "{shell}: {}", out.stdout);
        assert!(
            out.stdout.contains("metrics-addr"),
            "{shell} completes run's options"
        );
    }
    output(&["completions", "tcsh"]).expect_code(2, "an unknown shell");
}

/// `docs/commands.md` quotes the `--help` of the tool and of every command as the binary prints
/// it, between `<!-- backfill … --help -->` and `<!-- end of help -->`: the reference page and
/// `--help` are one text, written once in the clap doc comments. After a change to the help,
/// `BACKFILL_BLESS=1 cargo test --test cli` rewrites the quotes.
#[test]
fn the_reference_page_quotes_the_help_of_every_command() {
    const END: &str = "<!-- end of help -->";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/commands.md");
    let page = std::fs::read_to_string(&path).expect("read docs/commands.md");
    let commands = [
        "",
        "run",
        "plan",
        "verify",
        "status",
        "failures",
        "reset",
        "pause",
        "resume",
        "cancel",
        "serve",
        "demo",
        "completions",
    ];
    let mut fresh = String::new();
    let mut rest = page.as_str();
    let mut quoted = Vec::new();
    while let Some(start) = rest.find("<!-- backfill ") {
        let (before, from) = rest.split_at(start);
        let marker_end = from.find("-->").expect("an unclosed marker") + 3;
        let marker = &from[..marker_end];
        let command = marker
            .trim_start_matches("<!-- backfill ")
            .trim_end_matches("--help -->")
            .trim();
        let args: Vec<&str> = command.split_whitespace().chain(["--help"]).collect();
        let help = backfill_command(&args)
            .env_remove("DATABASE_URL")
            .env_remove("BACKFILL_MONITOR_URL")
            .env_remove("BACKFILL_METRICS_ADDR")
            .output()
            .expect("run backfill --help");
        assert!(help.status.success(), "backfill {command} --help failed");
        let help = String::from_utf8(help.stdout).unwrap();
        let after = &from[marker_end..];
        let end = after
            .find(END)
            .unwrap_or_else(|| panic!("{marker} has no {END}"));
        let block = format!("\n\n```text\n{}\n```\n\n", help.trim_end());
        if std::env::var_os("BACKFILL_BLESS").is_none() {
            assert_eq!(
                &after[..end],
                block,
                "docs/commands.md quotes an old `backfill {command} --help`; run \
                 BACKFILL_BLESS=1 cargo test --test cli to quote the new one"
            );
        }
        fresh.push_str(before);
        fresh.push_str(marker);
        fresh.push_str(&block);
        fresh.push_str(END);
        rest = &after[end + END.len()..];
        quoted.push(command.to_owned());
    }
    fresh.push_str(rest);
    if std::env::var_os("BACKFILL_BLESS").is_some() {
        std::fs::write(&path, fresh).expect("rewrite docs/commands.md");
    }
    for command in commands {
        assert!(
            quoted.iter().any(|q| q == command),
            "docs/commands.md does not quote `backfill {command} --help`"
        );
    }
}
