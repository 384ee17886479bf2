//! The clean-up of last resort: a watchdog process that stops a throwaway server and removes its
//! directory once the process that started it is gone, however it ended.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::Error;

/// A `sh` process that stops the server and removes its directory once this process is gone.
///
/// It blocks reading a pipe whose only writer is this process (Rust opens every descriptor
/// close-on-exec, so no child inherits it). The kernel closes the pipe however the process
/// ends — return, panic, SIGKILL, a `static` never dropped — and the shell then cleans up. This
/// is more robust than polling `kill -0 PID`, which sees an unreaped zombie or a reused pid
/// as alive, and it reacts at once. The cleanup is idempotent, so a race with `Drop` is harmless.
#[derive(Debug)]
pub(super) struct Watchdog {
    /// Its stdin is the pipe; the shell ignores HUP, INT and TERM and has its own process
    /// group, so nothing but the pipe closing or `dismiss` ends it.
    shell: Child,
}

const WATCHDOG_SCRIPT: &str = r#"trap '' HUP INT TERM
dir=$1; shift
while read -r _; do :; done
"$@" >/dev/null 2>&1
rm -rf "$dir""#;

impl Watchdog {
    /// Starts the watchdog for `dir`; `stop` is the argv that stops the server.
    pub(super) fn spawn(dir: &Path, stop: &[OsString]) -> Result<Watchdog, Error> {
        let shell = Command::new("sh")
            .args(["-c", WATCHDOG_SCRIPT, "backfill-scratch-watchdog"])
            .arg(dir)
            .args(stop)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(Error::io("start the clean-up watchdog (sh)"))?;
        Ok(Watchdog { shell })
    }

    /// Ends the watchdog without letting it clean up: kill first, so that the pipe closing
    /// (which `wait` does) finds nobody listening.
    pub(super) fn dismiss(&mut self) {
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}
