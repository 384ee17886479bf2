//! Everything that speaks MySQL and MariaDB, beside `postgres/` (ARCHITECTURE.md, "The seam"):
//! where to connect (`target`), sessions and their bounded transactions (`session`), what an
//! error means (`errors`), identifier and key quoting (`sql`), and the throwaway servers of the
//! tests and of `backfill demo` (`throwaway`).

pub mod catalog;
pub mod disk;
mod errors;
pub mod explain;
pub mod monitor;
pub mod plan;
pub mod preflight;
pub mod session;
pub mod sql;
pub mod state;
pub mod table;
pub mod target;
pub mod throwaway;
pub mod verify;

pub use errors::{classify, gave_up_on_lock, is_row_error};

/// Which server: the two share the protocol and most of the SQL, but not their programs, their
/// defaults or everything in their catalogs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MariaDB (`mariadbd`), Debian's 10.11 on CI.
    MariaDb,
    /// Oracle's MySQL (`mysqld`), Debian sid's 9.x on CI.
    MySql,
}

impl Flavor {
    /// The flavor a `VERSION()` string names: MariaDB says so in it.
    pub fn of_version(version: &str) -> Flavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        }
    }
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavor::MariaDb => "MariaDB",
            Flavor::MySql => "MySQL",
        })
    }
}

/// What an operation not yet written for MySQL and MariaDB fails with.
pub fn not_yet(what: &str) -> sqlx::Error {
    sqlx::Error::Configuration(format!("{what} is not yet supported on MySQL and MariaDB").into())
}
