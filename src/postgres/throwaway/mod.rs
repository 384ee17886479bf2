//! A throwaway PostgreSQL cluster (`initdb` + `pg_ctl`) for `backfill demo` and the tests.
//!
//! Owns: creating, configuring, starting, stopping and restarting the cluster, and streaming
//! replicas of it. Finding the server binaries (`PG_BIN` chooses the server version) is
//! `bindir`'s, running them as `postgres` when we are root `runner`'s, the replicas' base
//! backup `backup`'s. What every throwaway server shares is [`crate::throwaway`]'s: the private
//! directory and the watchdog that removes it when the owner dies without dropping (SIGKILL,
//! Ctrl-C, a `static` that is never dropped), the free port, the programs' output in errors.
//! Does not own anything inside the server: callers connect to [`Cluster::url`] and create
//! their own databases and tables.
//!
//! Everything here is blocking code (the base backup keeps its session on a thread and runtime
//! of its own); async callers wrap it in `tokio::task::spawn_blocking`. Clusters are
//! independent, so many threads and processes may start them at once.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::throwaway::{self, Scratch, end_of_file, on_free_port, run, tail_of_file};

mod backup;
mod bindir;
mod runner;

pub use bindir::find_bindir;
use runner::Runner;

/// Seconds `pg_ctl` waits for a start or a stop before giving up.
const PG_CTL_TIMEOUT: &str = "60";

/// Why a scratch cluster could not be created, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// No directory with `initdb` was found.
    #[error(
        "no PostgreSQL server binaries found (searched {searched}); install them with \
         `sudo apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql` (macOS), \
         or set PG_BIN to the directory that contains initdb"
    )]
    NotFound { searched: String },
    /// `PG_BIN` is set but does not point at the server binaries.
    #[error(
        "the PG_BIN directory {0} has no initdb; point PG_BIN at the directory that holds \
         initdb and pg_ctl (see `pg_config --bindir`), or unset it"
    )]
    PgBinWithoutInitdb(PathBuf),
    /// We are root, so the server must run as `postgres`, and that user does not exist.
    #[error(
        "running as root, but /etc/passwd has no `postgres` user to run the server as; \
         create it (`sudo useradd --system postgres`) or run as a normal user"
    )]
    NoPostgresUser,
    /// The primary refused or broke off the base backup of a new replica.
    #[error("could not take a base backup of the server on port {port}")]
    Backup {
        port: u16,
        #[source]
        source: sqlx::Error,
    },
    /// A file, a PostgreSQL program or the server's start failed: what every throwaway
    /// server shares, from the file system to the log's last lines.
    #[error(transparent)]
    Server(#[from] throwaway::Error),
}

/// What to add to a new cluster's `postgresql.conf`.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Extra `name = 'value'` lines, after the fast-and-unsafe defaults (`fsync = off`, …) so
    /// that they win. Values are quoted for you. `port` is always the cluster's own.
    pub settings: Vec<(String, String)>,
}

/// A running PostgreSQL server in a private temporary directory, removed on drop.
///
/// Connect as `postgres` without a password over TCP ([`Cluster::url`]) or over the Unix
/// socket in [`Cluster::socket_dir`] (`psql -h DIR -p PORT -U postgres`).
#[derive(Debug)]
pub struct Cluster {
    bindir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    runner: Runner,
    /// The private directory: data directory, log and socket. Last, so that it is removed
    /// after `drop` has stopped the server.
    scratch: Scratch,
}

impl Cluster {
    /// Creates and starts a cluster with the default settings.
    pub fn start() -> Result<Cluster, ScratchError> {
        Cluster::start_with(&ClusterOptions::default())
    }

    /// Creates a cluster with `initdb`, adds `options` to its configuration and starts it.
    pub fn start_with(options: &ClusterOptions) -> Result<Cluster, ScratchError> {
        let started = Instant::now();
        let mut cluster = Cluster::prepare(find_bindir()?)?;
        let mut initdb = cluster.runner.command(&cluster.bindir.join("initdb"));
        initdb
            .args("--no-sync -U postgres -A trust -E UTF8 --locale=C -D".split(' '))
            .arg(&cluster.data_dir);
        run(initdb)?;
        cluster.launch(options)?;
        tracing::debug!(port = cluster.port, dir = %cluster.scratch.path().display(),
            elapsed_ms = started.elapsed().as_millis(), "scratch cluster started");
        Ok(cluster)
    }

    /// Starts a streaming replica of this cluster in a directory and on a port of its own, with
    /// `options` added to its configuration (for example `recovery_min_apply_delay` for
    /// deterministic lag). It is removed on drop.
    ///
    /// Works on every server version with nothing but the server binaries: a base backup taken
    /// over SQL (see `scratch/backup.rs`), then `standby.signal` and `primary_conninfo`, as
    /// `pg_basebackup -R` would write them.
    pub fn replica(&self, options: &ClusterOptions) -> Result<Cluster, ScratchError> {
        let mut replica = Cluster::prepare(self.bindir.clone())?;
        backup::take(
            self.port,
            &self.url("postgres"),
            &self.data_dir,
            &replica.data_dir,
            replica.runner,
        )?;
        backup::write_owned(&replica.data_dir.join("standby.signal"), "", replica.runner)?;
        let primary = format!("host=127.0.0.1 port={} user=postgres", self.port);
        let mut settings = vec![("primary_conninfo".to_owned(), primary)];
        settings.extend(options.settings.iter().cloned());
        replica.launch(&ClusterOptions { settings })?;
        Ok(replica)
    }

    /// The TCP port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`; `database` is put in as is.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The directory of the `initdb`, `pg_ctl`, `postgres` … binaries in use.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The server's data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of the server's Unix socket, for `psql -h`.
    pub fn socket_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// Stops the server (`pg_ctl stop -m fast`), keeping its data, so that a test can see
    /// what a lost server does; [`Cluster::start_again`] brings it back.
    pub fn stop(&self) -> Result<(), ScratchError> {
        let mut stop = self.pg_ctl();
        stop.args(["stop", "-m", "fast", "-w", "-t", PG_CTL_TIMEOUT, "-D"])
            .arg(&self.data_dir);
        Ok(run(stop)?)
    }

    /// Starts a stopped server again, on the same port and data directory.
    pub fn start_again(&self) -> Result<(), ScratchError> {
        Ok(self.pg_ctl_start("start")?)
    }

    /// Restarts the server (`pg_ctl restart -m fast`): every connection is dropped.
    pub fn restart(&self) -> Result<(), ScratchError> {
        Ok(self.pg_ctl_start("restart")?)
    }

    /// Creates the private directory, guarded by its watchdog from the first moment, so that
    /// every later failure only has to return: dropping the half-built cluster cleans up.
    fn prepare(bindir: PathBuf) -> Result<Cluster, ScratchError> {
        let runner = Runner::detect()?;
        let scratch = Scratch::create(|dir| {
            let mut stop = runner.argv(&bindir.join("pg_ctl"));
            stop.extend(["stop", "-m", "immediate", "-D"].map(OsString::from));
            stop.push(dir.join("data").into());
            stop
        })?;
        let cluster = Cluster {
            bindir,
            data_dir: scratch.path().join("data"),
            port: 0,
            runner,
            scratch,
        };
        fs::create_dir(&cluster.data_dir)
            .and_then(|()| {
                fs::set_permissions(&cluster.data_dir, fs::Permissions::from_mode(0o700))
            })
            .map_err(throwaway::Error::io(format!(
                "create {}",
                cluster.data_dir.display()
            )))?;
        cluster.runner.give_to_server(cluster.scratch.path())?;
        cluster.runner.give_to_server(&cluster.data_dir)?;
        Ok(cluster)
    }

    /// Adds our settings to `postgresql.conf` and starts the server, on another free port
    /// when the chosen one was taken in the meantime (another test, another process).
    fn launch(&mut self, options: &ClusterOptions) -> Result<(), ScratchError> {
        let conf_path = self.data_dir.join("postgresql.conf");
        let base = fs::read_to_string(&conf_path).map_err(throwaway::Error::io(format!(
            "read {}",
            conf_path.display()
        )))?;
        let started = on_free_port(
            |port| {
                self.port = port;
                let conf = configuration(&base, self.scratch.path(), port, &options.settings);
                throwaway::write(&conf_path, &conf)?;
                self.pg_ctl_start("start")
            },
            throwaway::Error::is_port_taken,
        );
        Ok(started?)
    }

    /// Runs `pg_ctl start` or `pg_ctl restart` and waits until the server accepts connections.
    ///
    /// `pg_ctl` runs in a process group of its own (and puts the server in a session of its
    /// own), so a Ctrl-C at the terminal reaches neither: our code, or the watchdog, stops it.
    fn pg_ctl_start(&self, action: &str) -> Result<(), throwaway::Error> {
        let log = self.scratch.path().join("postgres.log");
        let log_start = end_of_file(&log);
        let mut start = self.pg_ctl();
        start
            .args([action, "-w", "-t", PG_CTL_TIMEOUT, "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .process_group(0);
        match run(start) {
            Err(throwaway::Error::Command { output, .. }) => {
                let log_tail = tail_of_file(&log, log_start);
                let tail = if log_tail.trim().is_empty() {
                    output
                } else {
                    log_tail
                };
                Err(throwaway::Error::Start {
                    server: "postgresql",
                    port: self.port,
                    tail,
                })
            }
            result => result,
        }
    }

    fn pg_ctl(&self) -> Command {
        self.runner.command(&self.bindir.join("pg_ctl"))
    }
}

impl Drop for Cluster {
    /// Stops the server at once (`-m immediate`: nothing is kept, so nothing needs a clean
    /// shutdown); the `scratch` field, dropped next, removes the directory and stops the
    /// watchdog. A failure is logged.
    fn drop(&mut self) {
        if self.data_dir.join("postmaster.pid").exists() {
            let mut stop = self.pg_ctl();
            stop.args(["stop", "-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT, "-D"])
                .arg(&self.data_dir);
            if let Err(error) = run(stop) {
                tracing::warn!(error = %error, "could not stop the scratch cluster");
            }
        }
    }
}

/// `initdb`'s `postgresql.conf` with our settings appended (for a parameter set twice, the
/// last line wins): local only, durability off for speed, the caller's settings, our port.
fn configuration(
    base: &str,
    socket_dir: &Path,
    port: u16,
    settings: &[(String, String)],
) -> String {
    let mut conf = format!(
        "{base}\n# added for a throwaway cluster by backfill\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n",
        quote_setting(&socket_dir.to_string_lossy())
    );
    for (name, value) in settings {
        conf.push_str(&format!("{name} = '{}'\n", quote_setting(value)));
    }
    conf.push_str(&format!("port = {port}\n"));
    conf
}

/// Doubles single quotes, as `postgresql.conf` string values need.
fn quote_setting(value: &str) -> String {
    value.replace('\'', "''")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_quotes_values_and_ends_with_the_port() {
        let settings = [("application_name".to_string(), "it's".to_string())];
        let conf = configuration("# initdb\n", Path::new("/tmp/x"), 5433, &settings);
        assert!(conf.contains("unix_socket_directories = '/tmp/x'\n"));
        assert!(conf.contains("application_name = 'it''s'\n"));
        assert!(conf.ends_with("\nport = 5433\n"));
    }
}
