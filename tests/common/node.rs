//! The Drizzle examples (`examples/drizzle` on PostgreSQL, `examples/drizzle-mysql` on MySQL
//! and MariaDB) run as their READMEs tell a user to: `run.sh` with the example's locked npm
//! dependencies and this build's `backfill`. What the story must print and leave in the
//! database is each test's own.
//!
//! An example's dependencies are installed with `npm ci` outside the repository, once per
//! lockfile: under `$BACKFILL_NODE_DEPS` (CI points it at a cache directory) or the system's
//! temporary directory. A test skips, saying why, only when `node` or `npm` is missing.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Finished;

/// How long a whole story may take before the test gives up (one takes 30–70 s here).
const STORY_TIMEOUT: Duration = Duration::from_secs(600);

/// Whether `node` and `npm` run here. When one does not, says so past the harness's capture, so
/// that CI's log shows why `what` did not run.
pub fn installed(what: &str) -> bool {
    let Some(missing) = ["node", "npm"].into_iter().find(|tool| !runs(tool)) else {
        return true;
    };
    let _ = writeln!(
        std::io::stderr(),
        "skipping {what}: `{missing}` is not installed (bash .ci/run installs Node.js and npm)"
    );
    false
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

/// `examples/NAME` in this checkout; the tests only read it.
fn example_dir(example: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(example)
}

/// Installs `examples/EXAMPLE`'s locked dependencies (`npm ci`) into a directory named after the
/// example and its lockfile's contents, outside the repository, unless an earlier run did;
/// returns its `node_modules`. Concurrent runs each install into a directory of their own and
/// rename it into place: the first one wins, the others use its copy.
pub async fn dependencies(example: &'static str) -> PathBuf {
    tokio::task::spawn_blocking(move || install(example))
        .await
        .expect("join the npm install")
}

fn install(example: &str) -> PathBuf {
    let dir = example_dir(example);
    let manifests = ["package.json", "package-lock.json"].map(|name| {
        let path = dir.join(name);
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
    let installed = root.join(format!("{example}-{:016x}", hasher.finish()));
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
    Finished::from_output(npm).expect_code(0, &format!("npm ci for examples/{example}"));
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

/// Runs `examples/EXAMPLE/run.sh` against `url` with `rows` users, both streams in one log (as
/// a terminal shows them), returned as `stdout`; then writes the lines that tell its outcome
/// past the harness's capture, so that CI's log shows what the example did. It runs in a
/// process group of its own, which is killed whole (the application, `backfill`) if it outlives
/// [`STORY_TIMEOUT`].
pub async fn run_story(example: &str, url: &str, node_modules: &Path, rows: i64) -> Finished {
    let log = tempfile::NamedTempFile::new().expect("create the story's log");
    let out = log.reopen().expect("open the story's log");
    let err = out.try_clone().expect("share the story's log");
    let mut script = tokio::process::Command::new("bash");
    script
        .arg(example_dir(example).join("run.sh"))
        .env("DATABASE_URL", url)
        .env("BACKFILL", env!("CARGO_BIN_EXE_backfill"))
        .env("NODE_MODULES", node_modules)
        .env("ROWS", rows.to_string())
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
                "examples/{example}/run.sh did not finish within {STORY_TIMEOUT:?}; it printed:\n{}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
    };
    let stdout = std::fs::read_to_string(log.path()).expect("read the story's log");
    let _ = writeln!(
        std::io::stderr(),
        "examples/{example}/run.sh:\n{}",
        outcome(&stdout)
    );
    Finished {
        status,
        stdout,
        stderr: String::new(),
    }
}

/// The lines of a story's log that tell its outcome: the server, the backfill, the gate, the
/// application's load, the final check and the time.
fn outcome(log: &str) -> String {
    const STARTS: [&str; 6] = [
        "server ",
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
