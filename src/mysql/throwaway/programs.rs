//! Where a flavor's programs are on this machine, and the command lines that initialize a data
//! directory and start a server in a throwaway server's directory. `.ci/mysql-servers` installs
//! both flavors and says, in its comments, how each command line was tested.
//!
//! MariaDB is Debian's package: `mariadbd` and `mariadb-install-db` (`$MARIADBD`,
//! `$MARIADB_INSTALL_DB`). MySQL has no Debian 12 package, and Debian sid's needs a newer libc
//! than Debian 12's, so it is a Debian sid tree (`$MYSQL_ROOT`) whose `mysqld` runs from outside
//! the tree through the tree's own loader and libraries, told where the tree keeps its messages,
//! character sets and plugins. Owns no process: `Server` runs these command lines.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Error, Flavor};
use crate::throwaway::is_root;

/// Where `.ci/mysql-servers` builds the MySQL tree, when `$MYSQL_ROOT` does not say.
const MYSQL_ROOT: &str = "/var/cache/backfill-ci/mysql-sid";
/// The tree's libraries and its loader, as Debian lays them out on x86-64.
const MYSQL_LIBS: &str = "usr/lib/x86_64-linux-gnu";
const MYSQL_LOADER: &str = "ld-linux-x86-64.so.2";

// The files of one server, all in its private directory: the data directory, the Unix socket,
// the log, the statements run on every start, and two pid files. The server writes its own
// (`PID_FILE`) only once its storage is up; `Server` writes `OWNER_PID` the moment it has
// started the process, for the watchdog to kill.
pub(super) const DATA_DIR: &str = "data";
/// The server's own temporary directory: in a shared one (`/tmp`), a bootstrap removes the
/// temporary tables of another one starting at the same moment, which then fails
/// ("Unknown table 'mysql.tmp_user_sys'").
pub(super) const TMP_DIR: &str = "tmp";
pub(super) const SOCKET: &str = "sock";
pub(super) const LOG: &str = "err.log";
pub(super) const INIT_FILE: &str = "init.sql";
const PID_FILE: &str = "mysqld.pid";
pub(super) const OWNER_PID: &str = "server.pid";

/// A flavor's programs on this machine, and how to run them.
#[derive(Debug, Clone)]
pub(super) struct Programs {
    kind: Kind,
    /// As root the server refuses to start unless told to run as root (`--user=root`); as
    /// anyone else it cannot switch users, and `mariadb-install-db` would try to.
    as_root: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    MariaDb {
        server: PathBuf,
        install_db: PathBuf,
    },
    /// The root of the Debian sid tree that holds `usr/sbin/mysqld`.
    MySql { root: PathBuf },
}

impl Programs {
    /// Finds `flavor`'s programs where the environment says, else where `.ci/mysql-servers`
    /// puts them; an error names the first one missing and how to install it.
    pub(super) fn find(flavor: Flavor) -> Result<Programs, Error> {
        let kind = match flavor {
            Flavor::MariaDb => {
                let server = from_env("MARIADBD", "/usr/sbin/mariadbd");
                let install_db = from_env("MARIADB_INSTALL_DB", "/usr/bin/mariadb-install-db");
                present(flavor, &server, "MARIADBD")?;
                present(flavor, &install_db, "MARIADB_INSTALL_DB")?;
                Kind::MariaDb { server, install_db }
            }
            Flavor::MySql => {
                let root = from_env("MYSQL_ROOT", MYSQL_ROOT);
                present(flavor, &root.join("usr/sbin/mysqld"), "MYSQL_ROOT")?;
                present(
                    flavor,
                    &root.join(MYSQL_LIBS).join(MYSQL_LOADER),
                    "MYSQL_ROOT",
                )?;
                Kind::MySql { root }
            }
        };
        Ok(Programs {
            kind,
            as_root: is_root(),
        })
    }

    /// The command line that creates the system tables in `dir`'s data directory, with a
    /// password-less `root@localhost` (reached only over the socket) and no `test` database.
    pub(super) fn initialize(&self, dir: &Path) -> Vec<OsString> {
        let mut argv = match &self.kind {
            Kind::MariaDb { install_db, .. } => vec![install_db.into(), "--no-defaults".into()],
            Kind::MySql { .. } => self.server(),
        };
        argv.push(option("datadir", &dir.join(DATA_DIR)));
        argv.push(option("tmpdir", &dir.join(TMP_DIR)));
        argv.extend(self.user());
        argv.extend(
            match self.kind {
                Kind::MariaDb { .. } => {
                    &["--auth-root-authentication-method=normal", "--skip-test-db"][..]
                }
                Kind::MySql { .. } => &["--initialize-insecure"],
            }
            .iter()
            .map(OsString::from),
        );
        argv
    }

    /// The command line that runs the server on `dir`'s data directory, listening on
    /// 127.0.0.1:`port` and the socket in `dir`, its log and pid file in `dir`, running the
    /// init file (which sets up the TCP login) on every start.
    ///
    /// `--skip-name-resolve`: a login from 127.0.0.1 is matched as `'root'@'127.0.0.1'`, with
    /// no reverse lookup to wait for. MariaDB's server character set is latin1 unless told, and
    /// its `performance_schema` (where the metadata locks are read) is off unless told. MySQL
    /// gets neither its X protocol port (33060 for every server, so two would collide), nor a
    /// binary log, the event scheduler or a directory that `LOAD DATA` is confined to.
    pub(super) fn start(&self, dir: &Path, port: u16) -> Vec<OsString> {
        let mut argv = self.server();
        argv.push(option("datadir", &dir.join(DATA_DIR)));
        argv.push(option("tmpdir", &dir.join(TMP_DIR)));
        argv.extend(self.user());
        argv.extend([
            format!("--port={port}").into(),
            "--bind-address=127.0.0.1".into(),
            option("socket", &dir.join(SOCKET)),
            option("pid-file", &dir.join(PID_FILE)),
            option("log-error", &dir.join(LOG)),
            "--skip-name-resolve".into(),
            option("init-file", &dir.join(INIT_FILE)),
        ]);
        let flavored: &[&str] = match self.kind {
            Kind::MariaDb { .. } => &[
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                "--performance-schema=ON",
            ],
            Kind::MySql { .. } => &[
                "--mysqlx=OFF",
                "--skip-log-bin",
                "--event-scheduler=OFF",
                "--secure-file-priv=",
            ],
        };
        argv.extend(flavored.iter().map(OsString::from));
        argv
    }

    /// The server program with the options that must come first: `--no-defaults`, so that no
    /// `my.cnf` of the machine's or the user's applies; for the MySQL tree, its loader and
    /// libraries before it, and where it keeps what the server reads at start.
    fn server(&self) -> Vec<OsString> {
        match &self.kind {
            Kind::MariaDb { server, .. } => vec![server.into(), "--no-defaults".into()],
            Kind::MySql { root } => {
                let usr = root.join("usr");
                let libs = root.join(MYSQL_LIBS);
                let share = usr.join("share/mysql");
                vec![
                    libs.join(MYSQL_LOADER).into(),
                    "--library-path".into(),
                    libs.into(),
                    usr.join("sbin/mysqld").into(),
                    "--no-defaults".into(),
                    option("basedir", &usr),
                    option("lc-messages-dir", &share),
                    option("character-sets-dir", &share.join("charsets")),
                    option("plugin-dir", &usr.join("lib/mysql/plugin")),
                ]
            }
        }
    }

    fn user(&self) -> Option<OsString> {
        self.as_root.then(|| "--user=root".into())
    }
}

/// `--name=path`, with the path as the operating system spells it.
fn option(name: &str, path: &Path) -> OsString {
    let mut option = OsString::from(format!("--{name}="));
    option.push(path);
    option
}

/// `$variable` when it is set and not empty, else `default`.
fn from_env(variable: &str, default: &str) -> PathBuf {
    std::env::var_os(variable)
        .filter(|value| !value.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from)
}

fn present(flavor: Flavor, program: &Path, variable: &'static str) -> Result<(), Error> {
    if program.is_file() {
        return Ok(());
    }
    Err(Error::NotFound {
        flavor,
        program: program.to_owned(),
        variable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mariadb(as_root: bool) -> Programs {
        Programs {
            kind: Kind::MariaDb {
                server: "/usr/sbin/mariadbd".into(),
                install_db: "/usr/bin/mariadb-install-db".into(),
            },
            as_root,
        }
    }

    fn mysql() -> Programs {
        Programs {
            kind: Kind::MySql {
                root: "/opt/sid".into(),
            },
            as_root: true,
        }
    }

    fn line(argv: Vec<OsString>) -> String {
        argv.iter()
            .map(|arg| arg.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn mariadb_initializes_with_its_install_script_and_a_normal_root_login() {
        assert_eq!(
            line(mariadb(true).initialize(Path::new("/tmp/s"))),
            "/usr/bin/mariadb-install-db --no-defaults --datadir=/tmp/s/data --tmpdir=/tmp/s/tmp --user=root \
             --auth-root-authentication-method=normal --skip-test-db"
        );
    }

    #[test]
    fn only_root_tells_the_server_whom_to_run_as() {
        let dir = Path::new("/tmp/s");
        assert!(!line(mariadb(false).initialize(dir)).contains("--user"));
        assert!(!line(mariadb(false).start(dir, 3307)).contains("--user"));
        assert!(line(mariadb(true).start(dir, 3307)).contains(" --user=root "));
    }

    #[test]
    fn mariadb_starts_in_utf8mb4_with_the_performance_schema() {
        assert_eq!(
            line(mariadb(true).start(Path::new("/tmp/s"), 3307)),
            "/usr/sbin/mariadbd --no-defaults --datadir=/tmp/s/data --tmpdir=/tmp/s/tmp --user=root --port=3307 \
             --bind-address=127.0.0.1 --socket=/tmp/s/sock --pid-file=/tmp/s/mysqld.pid \
             --log-error=/tmp/s/err.log --skip-name-resolve --init-file=/tmp/s/init.sql \
             --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
             --performance-schema=ON"
        );
    }

    #[test]
    fn mysql_runs_through_the_tree_s_loader_with_the_tree_s_files() {
        let tree = "/opt/sid/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 \
                    --library-path /opt/sid/usr/lib/x86_64-linux-gnu /opt/sid/usr/sbin/mysqld \
                    --no-defaults --basedir=/opt/sid/usr --lc-messages-dir=/opt/sid/usr/share/mysql \
                    --character-sets-dir=/opt/sid/usr/share/mysql/charsets \
                    --plugin-dir=/opt/sid/usr/lib/mysql/plugin";
        assert_eq!(
            line(mysql().initialize(Path::new("/tmp/s"))),
            format!(
                "{tree} --datadir=/tmp/s/data --tmpdir=/tmp/s/tmp --user=root --initialize-insecure"
            )
        );
        assert_eq!(
            line(mysql().start(Path::new("/tmp/s"), 3307)),
            format!(
                "{tree} --datadir=/tmp/s/data --tmpdir=/tmp/s/tmp --user=root --port=3307 --bind-address=127.0.0.1 \
                 --socket=/tmp/s/sock --pid-file=/tmp/s/mysqld.pid --log-error=/tmp/s/err.log \
                 --skip-name-resolve --init-file=/tmp/s/init.sql --mysqlx=OFF --skip-log-bin \
                 --event-scheduler=OFF --secure-file-priv="
            )
        );
    }
}
