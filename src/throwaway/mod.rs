//! What every throwaway server of `backfill demo` and the tests needs, whichever the database:
//! a private directory that is removed however its owner ends (`Scratch`, with the watchdog
//! of `watchdog`), a free port and another one when a process takes it first
//! (`on_free_port`), the server's programs run to completion with the end of their output or
//! log quoted in errors (`process`), and a tokio runtime of its own for the few async steps of a
//! blocking start (`on_own_runtime`).
//!
//! Owns no server: `postgres::throwaway` (the `Cluster`) and `mysql::throwaway` (the `Server`)
//! create, start, stop and restart their own from these parts.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::runtime::Runtime;

mod process;
mod watchdog;

pub(crate) use process::{end_of_file, quiet_command, run, tail_of_file};
use watchdog::Watchdog;

/// How often a start is tried on a new port when another process took the chosen one.
const PORT_ATTEMPTS: u32 = 5;

/// Why a step that every throwaway server takes failed: the file system, a program of the
/// server's, or the server's start. Each database's own error wraps it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system or process operation failed.
    #[error("could not {action}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    /// One of the server's programs ran and reported failure.
    #[error("`{command}` failed ({status}); its output ends with:\n{output}")]
    Command {
        command: String,
        status: ExitStatus,
        output: String,
    },
    /// The server did not come up; its log usually says why.
    #[error("{server} did not start on port {port}; its log ends with:\n{tail}")]
    Start {
        /// The server, as its log names it: `postgresql`, `mariadbd`, `mysqld`.
        server: &'static str,
        port: u16,
        tail: String,
    },
}

impl Error {
    /// The error of a failed `action` ("create /tmp/x"), for `map_err`.
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let action = action.into();
        move |source| Error::Io { action, source }
    }

    /// True when the server failed only because another process took its port first.
    /// PostgreSQL says `could not bind IPv4 address "127.0.0.1": Address already in use`,
    /// MariaDB and MySQL `Can't start server: Bind on TCP/IP port…: Address already in use`.
    pub(crate) fn is_port_taken(&self) -> bool {
        matches!(self, Error::Start { tail, .. }
            if tail.contains("could not bind") || tail.contains("Address already in use"))
    }
}

/// The private directory of one throwaway server, removed on drop and, should its owner die
/// without dropping it (SIGKILL, Ctrl-C, a `static` never dropped), by a watchdog that first
/// stops the server in it.
///
/// The watchdog runs from the directory's first moment, so that every later failure of a start
/// only has to return. A server's own `Drop` stops it gracefully or at once; the `Scratch`,
/// dropped after it as a field, then removes what is left and dismisses the watchdog.
#[derive(Debug)]
pub(crate) struct Scratch {
    dir: PathBuf,
    watchdog: Watchdog,
}

impl Scratch {
    /// Creates the directory and its watchdog. `stop` builds, from the directory's path, the
    /// argv that stops the server that will live in it (run by the watchdog, whose failure is
    /// ignored: there may be no server yet).
    pub(crate) fn create(stop: impl FnOnce(&Path) -> Vec<OsString>) -> Result<Scratch, Error> {
        let dir = create_private_dir()?;
        match Watchdog::spawn(&dir, &stop(&dir)) {
            Ok(watchdog) => Ok(Scratch { dir, watchdog }),
            Err(error) => {
                let _ = fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }

    /// The directory, for the server's data, log, socket and whatever else it writes.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    /// Removes the directory, then dismisses the watchdog. A failure is logged.
    fn drop(&mut self) {
        match fs::remove_dir_all(&self.dir) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(dir = %self.dir.display(), %error, "could not remove the throwaway server's directory");
            }
            _ => {}
        }
        self.watchdog.dismiss();
        tracing::debug!(dir = %self.dir.display(), "throwaway server removed");
    }
}

/// A new directory of our own under the system's temporary directory, unique across threads
/// (counter), processes (pid) and time (nanoseconds, against a reused pid's leftovers).
pub(crate) fn create_private_dir() -> Result<PathBuf, Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let name = format!(
        "backfill-scratch-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(name);
    fs::create_dir(&dir)
        .and_then(|()| fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)))
        .map_err(Error::io(format!("create {}", dir.display())))?;
    Ok(dir)
}

/// Starts a server with `start`, given a port that was free a moment ago. Another process (a
/// test, another server) may bind it before the server does: when `port_taken` says that is
/// why `start` failed, it tries again on another port, a few times.
pub(crate) fn on_free_port<T, E: From<Error>>(
    mut start: impl FnMut(u16) -> Result<T, E>,
    port_taken: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut attempt = 1;
    loop {
        let port = free_port()?;
        match start(port) {
            Err(error) if attempt < PORT_ATTEMPTS && port_taken(&error) => {
                tracing::debug!(port, "port taken, trying another");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Writes `contents` to the file at `path`, for a server's configuration, init file or pid.
pub(crate) fn write(path: &Path, contents: &str) -> Result<(), Error> {
    fs::write(path, contents).map_err(Error::io(format!("write {}", path.display())))
}

/// Creates the directory at `path`, for a server's own files.
pub(crate) fn create_dir(path: &Path) -> Result<(), Error> {
    fs::create_dir(path).map_err(Error::io(format!("create {}", path.display())))
}

/// A port that was free a moment ago: the kernel picks it for a listener we close at once.
fn free_port() -> Result<u16, Error> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(Error::io("find a free TCP port on 127.0.0.1"))
}

/// Whether this process runs as root, for the servers that refuse to run as root unless told
/// (or told whom to run as).
pub(crate) fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Runs `work` with a current-thread tokio runtime of its own, on a thread of its own: the
/// blocking callers of a start may sit inside a runtime (a test calling it from an async fn),
/// where another runtime can be neither started nor blocked on.
pub(crate) fn on_own_runtime<T: Send, E: From<Error> + Send>(
    work: impl FnOnce(&Runtime) -> Result<T, E> + Send,
) -> Result<T, E> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(Error::io("start a tokio runtime for a throwaway server"))?;
                work(&runtime)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_taken_is_recognised_from_each_server_s_log() {
        let error = |tail: &str| Error::Start {
            server: "server",
            port: 1,
            tail: tail.into(),
        };
        for taken in [
            "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use",
            "[ERROR] Can't start server: Bind on TCP/IP port. Got error: 98: Address already in use",
            "[ERROR] [MY-010262] [Server] Can't start server: Bind on TCP/IP port: Address already in use",
        ] {
            assert!(error(taken).is_port_taken(), "{taken}");
        }
        assert!(!error("FATAL:  invalid value for parameter").is_port_taken());
    }
}
