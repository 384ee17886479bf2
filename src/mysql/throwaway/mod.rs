//! A throwaway MariaDB or MySQL server for the tests and `backfill demo`: the counterpart of
//! `postgres::throwaway`'s `Cluster`.
//!
//! Owns: initializing a data directory, starting the server and waiting until it lets
//! `root@127.0.0.1` log in, stopping, restarting, and killing it on drop. Finding the programs
//! and their command lines is `programs`'s. What every throwaway server shares is
//! [`crate::throwaway`]'s: the private directory and the watchdog that kills the server and
//! removes the directory when the owner dies without dropping, the free port, the log's last
//! lines in errors. Does not own anything inside the server: callers connect to
//! [`Server::url`] and create their own databases and tables.
//!
//! Blocking code, like `Cluster`'s; the login it waits for runs on a thread and tokio runtime
//! of its own, so that async callers may call it too (or wrap it in `spawn_blocking`). The
//! server is a child of this process, in a process group of its own, so that a Ctrl-C at the
//! terminal does not reach it: `Drop`, or the watchdog, stops it.

use std::ffi::OsString;
use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::{Connection as _, MySqlConnection};

pub use super::Flavor;

use crate::throwaway::{
    self, Scratch, end_of_file, on_free_port, on_own_runtime, quiet_command, run,
};

mod programs;

use programs::{INIT_FILE, LOG, OWNER_PID, Programs, SOCKET, TMP_DIR};

/// The TCP login's password. The server listens on 127.0.0.1 only, and lives for one test run.
const PASSWORD: &str = "throwaway";
/// How long a start may take before it is given up: MySQL takes 1-2 s, MariaDB well under a
/// second, and many times that beside a busy machine's other tests.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a starting server is asked for the login.
const LOGIN_POLL: Duration = Duration::from_millis(50);
/// How long a stopping server has for a clean shutdown (it takes 0.2-3 s) before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a stopping server is looked at.
const STOP_POLL: Duration = Duration::from_millis(20);

/// The programs of each flavor.
impl Flavor {
    /// The server program's name, as its log and `ps` show it.
    fn program(self) -> &'static str {
        match self {
            Flavor::MariaDb => "mariadbd",
            Flavor::MySql => "mysqld",
        }
    }

    /// How to get the programs when they are missing.
    fn install_hint(self) -> &'static str {
        match self {
            Flavor::MariaDb => {
                "install it with `sudo apt-get install mariadb-server` (Debian/Ubuntu), or set \
                 MARIADBD and MARIADB_INSTALL_DB to its mariadbd and mariadb-install-db"
            }
            Flavor::MySql => {
                "build that Debian sid tree with `sudo bash .ci/mysql-servers` (Debian 12), or \
                 set MYSQL_ROOT to a tree with usr/sbin/mysqld and its loader and libraries"
            }
        }
    }
}

/// Why a throwaway MariaDB or MySQL server could not be created, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The flavor's programs are not on this machine: the tests skip that flavor.
    #[error(
        "no {flavor} server: {} does not exist (${variable}); {}",
        .program.display(), .flavor.install_hint()
    )]
    NotFound {
        flavor: Flavor,
        program: PathBuf,
        /// The environment variable that points at it.
        variable: &'static str,
    },
    /// The server runs but did not let `root@127.0.0.1` log in in time.
    #[error(
        "{} on port {port} did not let root@127.0.0.1 log in within {}s; its log ends with:\n{tail}",
        .flavor.program(), START_TIMEOUT.as_secs()
    )]
    Login {
        flavor: Flavor,
        port: u16,
        tail: String,
        /// The last attempt's refusal, if one came back in time.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// A file, a program of the server's or the server's start failed: what every throwaway
    /// server shares, from the file system to the log's last lines.
    #[error(transparent)]
    Server(#[from] throwaway::Error),
}

impl Error {
    fn is_port_taken(&self) -> bool {
        matches!(self, Error::Server(error) if error.is_port_taken())
    }
}

/// A running MariaDB or MySQL server in a private temporary directory, killed and removed on
/// drop.
///
/// Log in as `root` with a password over TCP ([`Server::url`]), or as `root` without one over
/// the Unix socket ([`Server::socket`]: `mariadb -S SOCKET -u root`).
#[derive(Debug)]
pub struct Server {
    flavor: Flavor,
    programs: Programs,
    /// Server options added to every start, after ours ([`Server::start_with`]).
    options: Vec<OsString>,
    port: u16,
    version: String,
    /// The server process while it runs, `None` while stopped. Behind a lock so that `stop`
    /// and `restart` take `&self`, as `Cluster`'s do: a test's server is shared.
    process: Mutex<Option<Child>>,
    /// The private directory. Last, so that it is removed after `drop` has killed the server.
    scratch: Scratch,
}

impl Server {
    /// Creates a data directory, starts the server on a free port and waits until the TCP
    /// login works. On two busy cores MariaDB takes 2.5-6 s and MySQL 6-10 s, most of it
    /// creating the data directory (`mariadb-install-db`'s fsyncs, `mysqld --initialize`).
    pub fn start(flavor: Flavor) -> Result<Server, Error> {
        Server::start_with(flavor, &[])
    }

    /// Like [`Server::start`], with server `options` added to ours on every start (a later
    /// option wins): `--log-bin --server-id=2` for a primary or a replica, say.
    pub fn start_with(flavor: Flavor, options: &[&str]) -> Result<Server, Error> {
        let started = Instant::now();
        let programs = Programs::find(flavor)?;
        let scratch = Scratch::create(|dir| {
            // The watchdog's stop: kill the server process started last.
            let kill: [OsString; 4] =
                ["sh", "-c", r#"kill -KILL "$(cat "$1")""#, "sh"].map(Into::into);
            [&kill[..], &[dir.join(OWNER_PID).into()]].concat()
        })?;
        throwaway::write(&scratch.path().join(INIT_FILE), &init_sql())?;
        throwaway::create_dir(&scratch.path().join(TMP_DIR))?;
        run(quiet_command(&programs.initialize(scratch.path())))?;
        let mut server = Server {
            flavor,
            programs,
            options: options.iter().map(OsString::from).collect(),
            port: 0,
            version: String::new(),
            process: Mutex::new(None),
            scratch,
        };
        let version = on_free_port(
            |port| {
                server.port = port;
                server.launch(&mut server.process())
            },
            Error::is_port_taken,
        )?;
        server.version = version;
        tracing::debug!(%flavor, version = %server.version, port = server.port,
            dir = %server.scratch.path().display(),
            elapsed_ms = started.elapsed().as_millis(), "throwaway server started");
        Ok(server)
    }

    /// Which server this is.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// What `SELECT VERSION()` answered at the start: `10.11.19-MariaDB-0+deb12u1`, `9.7.4-2`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The TCP port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://root:PASSWORD@127.0.0.1:PORT/DATABASE`, `mariadb://…` for MariaDB (sqlx's
    /// MySQL driver takes both schemes); `database` is put in as is, and may be empty.
    pub fn url(&self, database: &str) -> String {
        let scheme = match self.flavor {
            Flavor::MariaDb => "mariadb",
            Flavor::MySql => "mysql",
        };
        format!(
            "{scheme}://root:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The server's Unix socket, where `root` logs in without a password.
    pub fn socket(&self) -> PathBuf {
        self.scratch.path().join(SOCKET)
    }

    /// Stops the server with a clean shutdown (SIGTERM), keeping its data, so that a test can
    /// see what a lost server does; [`Server::start_again`] brings it back.
    pub fn stop(&self) -> Result<(), Error> {
        self.shut_down(&mut self.process())
    }

    /// Starts a stopped server again, on the same port and data directory; a running one is
    /// left as it is.
    pub fn start_again(&self) -> Result<(), Error> {
        let mut process = self.process();
        if process.is_none() {
            self.launch(&mut process)?;
        }
        Ok(())
    }

    /// Stops the server cleanly and starts it again: every connection is dropped.
    pub fn restart(&self) -> Result<(), Error> {
        let mut process = self.process();
        self.shut_down(&mut process)?;
        self.launch(&mut process)?;
        Ok(())
    }

    fn process(&self) -> MutexGuard<'_, Option<Child>> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the server into `process`, records its pid for the watchdog, and waits until the
    /// TCP login works; returns the server's version.
    fn launch(&self, process: &mut Option<Child>) -> Result<String, Error> {
        let dir = self.scratch.path();
        let log = dir.join(LOG);
        let from = end_of_file(&log);
        let argv = [self.programs.start(dir, self.port), self.options.clone()].concat();
        let mut start = quiet_command(&argv);
        // What the server prints before it opens its log goes to the log too.
        let console = fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|file| Ok((file.try_clone()?, file)))
            .map_err(throwaway::Error::io(format!("open {}", log.display())))?;
        start.stdout(console.0).stderr(console.1).process_group(0);
        let child = start.spawn().map_err(throwaway::Error::io(format!(
            "start {}",
            self.flavor.program()
        )))?;
        let pid = child.id();
        *process = Some(child);
        throwaway::write(&dir.join(OWNER_PID), &pid.to_string())?;
        self.wait_for_login(process, from)
    }

    /// Logs in over TCP until it works, and reads the version. Gives up when the server exits
    /// (with its log's last lines, which say why: a port taken, a bad option) or after
    /// [`START_TIMEOUT`], killing it then.
    fn wait_for_login(&self, process: &mut Option<Child>, from: u64) -> Result<String, Error> {
        let url = self.url("");
        let mut refused = None;
        let waited = on_own_runtime(|runtime| {
            let until_up = async {
                loop {
                    match login(&url).await {
                        Ok(version) => return Ok(version),
                        Err(error) => refused = Some(error),
                    }
                    let exited = process.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    if let Some(exited) = exited {
                        tracing::debug!(%exited, port = self.port, "the server exited at its start");
                        *process = None;
                        return Err(throwaway::Error::Start {
                            server: self.flavor.program(),
                            port: self.port,
                            tail: self.log_tail(from),
                        });
                    }
                    tokio::time::sleep(LOGIN_POLL).await;
                }
            };
            // The timer is made inside the runtime, which it needs.
            Ok::<_, Error>(
                runtime.block_on(async { tokio::time::timeout(START_TIMEOUT, until_up).await }),
            )
        })?;
        match waited {
            Ok(started) => Ok(started?),
            Err(_elapsed) => {
                kill(process);
                Err(Error::Login {
                    flavor: self.flavor,
                    port: self.port,
                    tail: self.log_tail(from),
                    source: refused,
                })
            }
        }
    }

    /// Sends the server in `process` SIGTERM and waits for its clean shutdown; kills it when
    /// it takes longer than [`STOP_TIMEOUT`] (its data survives that too).
    fn shut_down(&self, process: &mut Option<Child>) -> Result<(), Error> {
        let Some(child) = process.as_mut() else {
            return Ok(());
        };
        // An exited server that we have not reaped yet keeps its pid: the signal reaches no
        // other process.
        let mut term = Command::new("sh");
        term.args(["-c", r#"kill -TERM "$1""#, "sh", &child.id().to_string()]);
        run(term)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                tracing::warn!(
                    port = self.port,
                    "the throwaway server did not shut down in time; killed"
                );
                break;
            }
            std::thread::sleep(STOP_POLL);
        }
        kill(process);
        // No pid of ours for the watchdog to kill once another process may have it.
        let _ = fs::remove_file(self.scratch.path().join(OWNER_PID));
        Ok(())
    }

    fn log_tail(&self, from: u64) -> String {
        throwaway::tail_of_file(&self.scratch.path().join(LOG), from)
    }
}

impl Drop for Server {
    /// Kills the server at once (nothing is kept, so nothing needs a clean shutdown); the
    /// `scratch` field, dropped next, removes the directory and stops the watchdog.
    fn drop(&mut self) {
        kill(&mut self.process());
    }
}

/// The init file: the TCP login, set up on every start. `mariadb-install-db` and `mysqld
/// --initialize-insecure` create only `root@localhost`, which matches the socket alone.
fn init_sql() -> String {
    format!(
        "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n\
         ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';\n\
         GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n"
    )
}

/// Logs in over TCP and reads the server's version.
async fn login(url: &str) -> Result<String, sqlx::Error> {
    let mut connection = MySqlConnection::connect(url).await?;
    let version = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut connection)
        .await;
    let _ = connection.close().await;
    version
}

/// Kills the server process, if any, and reaps it (a no-op for one that has exited).
fn kill(process: &mut Option<Child>) {
    if let Some(mut child) = process.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
