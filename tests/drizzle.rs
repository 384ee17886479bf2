//! The Drizzle example (`examples/drizzle`) run for real, as its README tells a user to: its
//! `run.sh` against a database of the shared scratch cluster, with drizzle-kit, drizzle-orm and
//! node-postgres from the npm registry and this build's `backfill`. The script generates and
//! applies the expand migration, keeps an application dual-writing, runs `backfill plan`, `run`
//! and `verify`, applies the contract migration and checks every row; this test checks its exit
//! code and what it printed, then the table itself in SQL.
//!
//! The example's dependencies are installed with `npm ci` outside the repository, once per
//! lockfile: under `$BACKFILL_NODE_DEPS` (CI points it at a cache directory) or the system's
//! temporary directory. The test skips, saying why, only when `node` or `npm` is missing.

mod common;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Finished, holds, number};

/// Users in the table before the change.
const ROWS: i64 = 100_000;
/// How long the whole story may take before the test gives up (it takes 30–60 s here).
const STORY_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread")]
async fn drizzle_example_expands_backfills_verifies_and_contracts() {
    if let Some(missing) = ["node", "npm"].into_iter().find(|tool| !runs(tool)) {
        // Written past the test harness's capture, so that CI's log shows why it did not run.
        let _ = writeln!(
            std::io::stderr(),
            "skipping the Drizzle example: `{missing}` is not installed (bash .ci/run installs Node.js and npm)"
        );
        return;
    }
    let node_modules = tokio::task::spawn_blocking(install_dependencies)
        .await
        .expect("join the npm install");
    let db = common::fresh_database().await;

    let story = run_story(&db.url, &node_modules).await;
    story.expect_code(0, "examples/drizzle/run.sh");
    let log = &story.stdout;
    // Past the harness's capture, so that CI's log shows what the example did.
    let _ = writeln!(
        std::io::stderr(),
        "examples/drizzle/run.sh:\n{}",
        outcome(log)
    );
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

/// The lines of the story's log that tell its outcome: the backfill, the gate, the
/// application's load, the final check and the time.
fn outcome(log: &str) -> String {
    const STARTS: [&str; 5] = [
        "users_full_name: done",
        "verify: exit",
        "application:",
        "check:",
        "run.sh:",
    ];
    log.lines()
        .filter(|line| STARTS.iter().any(|start| line.starts_with(start)))
        .map(|line| format!("  {line}\n"))
        .collect()
}

/// True when `tool --version` runs and succeeds.
fn runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The example's directory in this checkout; the test only reads it.
fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/drizzle")
}

/// Installs the example's locked dependencies (`npm ci`) into a directory named after the
/// lockfile's contents, outside the repository, unless an earlier run did; returns its
/// `node_modules`. Concurrent runs each install into a directory of their own and rename it
/// into place: the first one wins, the others use its copy.
fn install_dependencies() -> PathBuf {
    let example = example_dir();
    let manifests = ["package.json", "package-lock.json"].map(|name| {
        let path = example.join(name);
        let text =
            std::fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
        (name, text)
    });
    let mut hasher = DefaultHasher::new();
    manifests.hash(&mut hasher);
    let root = std::env::var_os("BACKFILL_NODE_DEPS")
        .filter(|dir| !dir.is_empty())
        .map_or_else(
            || std::env::temp_dir().join("backfill-node-deps"),
            PathBuf::from,
        );
    let installed = root.join(format!("drizzle-{:016x}", hasher.finish()));
    if installed.join("node_modules/.package-lock.json").is_file() {
        return installed.join("node_modules");
    }
    std::fs::create_dir_all(&root)
        .unwrap_or_else(|error| panic!("create {}: {error}", root.display()));
    let staging = tempfile::tempdir_in(&root).expect("create a staging directory for npm ci");
    for (name, text) in &manifests {
        std::fs::write(staging.path().join(name), text).expect("copy the example's manifests");
    }
    let npm = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(staging.path())
        .output()
        .expect("run npm ci");
    Finished::from_output(npm).expect_code(0, "npm ci for examples/drizzle");
    // Losing the race to another run leaves its complete copy in place: use that one.
    if std::fs::rename(staging.path(), &installed).is_err() {
        assert!(
            installed.join("node_modules/.package-lock.json").is_file(),
            "could not move the dependencies into {}",
            installed.display()
        );
    }
    installed.join("node_modules")
}

/// Runs `examples/drizzle/run.sh` against `url`, both streams in one log (as a terminal shows
/// them), returned as `stdout`. It runs in a process group of its own, which is killed whole
/// (the application, `backfill`) if it outlives [`STORY_TIMEOUT`].
async fn run_story(url: &str, node_modules: &Path) -> Finished {
    let log = tempfile::NamedTempFile::new().expect("create the story's log");
    let out = log.reopen().expect("open the story's log");
    let err = out.try_clone().expect("share the story's log");
    let mut script = tokio::process::Command::new("bash");
    script
        .arg(example_dir().join("run.sh"))
        .env("DATABASE_URL", url)
        .env("BACKFILL", env!("CARGO_BIN_EXE_backfill"))
        .env("NODE_MODULES", node_modules)
        .env("ROWS", ROWS.to_string())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true);
    let mut child = script.spawn().expect("start run.sh");
    let pid = child.id().expect("run.sh has a pid");
    let status = match tokio::time::timeout(STORY_TIMEOUT, child.wait()).await {
        Ok(status) => status.expect("wait for run.sh"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{pid}")])
                .status();
            panic!(
                "run.sh did not finish within {STORY_TIMEOUT:?}; it printed:\n{}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
    };
    Finished {
        status,
        stdout: std::fs::read_to_string(log.path()).expect("read the story's log"),
        stderr: String::new(),
    }
}
