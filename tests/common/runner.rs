//! `backfill` in the background, as an operator's second terminal runs it: its output in files,
//! its exit awaited with a deadline, signals sent to it, and polls of the database or of its
//! output until something holds.

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;
use tempfile::TempDir;

use super::{Finished, RUN_WAIT, backfill_command, holds};

/// A `backfill --database-url URL ARGS…` process running in the background. Its output goes to
/// files, so that it never blocks on a full pipe while the test is busy elsewhere; it is killed
/// if the test panics.
pub struct Runner {
    /// The process, for tests that poll, kill or reap it themselves.
    pub child: tokio::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
    wait: Duration,
}

impl Runner {
    /// Starts `backfill` with its output in `DIR/LABEL.stdout` and `DIR/LABEL.stderr`.
    pub fn spawn(url: &str, dir: &TempDir, label: &str, args: &[&str]) -> Runner {
        let stdout = dir.path().join(format!("{label}.stdout"));
        let stderr = dir.path().join(format!("{label}.stderr"));
        let mut all = vec!["--database-url", url];
        all.extend_from_slice(args);
        let mut command = backfill_command(&all);
        command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("create the stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("create the stderr file"));
        let child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn backfill");
        Runner {
            child,
            stdout,
            stderr,
            wait: RUN_WAIT,
        }
    }

    /// The runner with `wait` instead of [`RUN_WAIT`] for [`Runner::wait_until`] and
    /// [`Runner::finish`].
    pub fn within(self, wait: Duration) -> Runner {
        Runner { wait, ..self }
    }

    /// The process id, while the runner has not been reaped.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the runner has not been reaped yet")
    }

    /// What the runner printed, once it exited with `status`.
    pub fn output(&self, status: ExitStatus) -> Finished {
        Finished {
            status,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }

    /// Waits for the runner to exit and returns what it printed. Fails, with the end of what
    /// it printed so far, if it does not exit within its wait.
    pub async fn finish(mut self) -> Finished {
        match tokio::time::timeout(self.wait, self.child.wait()).await {
            Ok(status) => self.output(status.expect("wait for backfill")),
            Err(_) => {
                let _ = self.child.kill().await;
                let tail = |path: &PathBuf| {
                    let text = std::fs::read_to_string(path).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    lines[lines.len().saturating_sub(20)..].join("\n")
                };
                panic!(
                    "backfill did not exit within {:?}\nlast stdout:\n{}\nlast stderr:\n{}",
                    self.wait,
                    tail(&self.stdout),
                    tail(&self.stderr)
                );
            }
        }
    }

    /// Sends `signal` (a `kill` name such as "INT") to the runner, as a terminal or an
    /// operator would.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Polls `condition` (a SQL boolean, see [`holds`]) until it holds. Fails at once, with the
    /// runner's output, if the runner exits first.
    pub async fn wait_until(&mut self, pool: &PgPool, condition: &str) {
        let deadline = Instant::now() + self.wait;
        while !holds(pool, condition).await {
            if let Some(status) = self.child.try_wait().expect("poll the runner") {
                let out = self.output(status);
                panic!(
                    "backfill exited ({:?}) before `{condition}` held\nstdout:\n{}\nstderr:\n{}",
                    out.status, out.stdout, out.stderr
                );
            }
            assert!(
                Instant::now() < deadline,
                "`{condition}` did not hold within {:?}",
                self.wait
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The runner's stdout so far (its `--json` events).
    pub fn stdout_so_far(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Polls the runner's stdout until a line contains every one of `parts` (an NDJSON event
    /// of a kind, for a job). Fails at once, with the runner's output, if the runner exits
    /// first.
    pub async fn wait_for_line(&mut self, parts: &[&str]) -> String {
        let deadline = Instant::now() + self.wait;
        loop {
            let out = self.stdout_so_far();
            if let Some(line) = out.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_owned();
            }
            if let Some(status) = self.child.try_wait().expect("poll the runner") {
                let out = self.output(status);
                panic!(
                    "backfill exited ({:?}) before printing {parts:?}\nstdout:\n{}\nstderr:\n{}",
                    out.status, out.stdout, out.stderr
                );
            }
            assert!(
                Instant::now() < deadline,
                "no line with {parts:?} within {:?}",
                self.wait
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
