//! Where to connect on MySQL and MariaDB: a `mysql://` (or `mariadb://`) URL read before any
//! connection is tried, the session settings every connection of ours starts with, and the
//! password never shown.

use std::str::FromStr as _;
use std::sync::Arc;

use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions as _, MySqlConnection};
use thiserror::Error;

use super::session::{Server, Session};

/// The SQL modes every session of ours adds to the server's own: a value that does not fit
/// its column fails the statement (and so narrows to its row) instead of being stored cut or
/// rounded with a warning, and a table is never silently created with another engine.
pub const SQL_MODES: &str = "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";

/// A connection target as given on the command line, before it is tried.
#[derive(Debug, Clone)]
pub struct Target {
    options: Arc<MySqlConnectOptions>,
    /// `host:port/database`, for messages.
    place: String,
}

/// A URL that cannot be read (shown with its password hidden).
#[derive(Debug, Error)]
#[error(
    "cannot read the MySQL URL {url}: {reason}; write it as mysql://user:password@host:3306/database"
)]
pub struct TargetError {
    url: String,
    reason: String,
}

/// Whether `url` names a MySQL or MariaDB server.
pub fn is_mysql_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("mysql://") || lower.starts_with("mariadb://")
}

impl Target {
    /// Reads a `mysql://` or `mariadb://` URL (the two are the same protocol).
    pub fn new(url: &str) -> Result<Target, TargetError> {
        let url = url.trim();
        let rest = url.split_once("://").map_or("", |(_, rest)| rest);
        let error = |reason: String| TargetError {
            url: redact(url),
            reason: reason.replace(password(url).unwrap_or("\u{0}"), "***"),
        };
        let options = MySqlConnectOptions::from_str(&format!("mysql://{rest}"))
            .map_err(|e| error(e.to_string()))?
            .charset("utf8mb4")
            .pipes_as_concat(false)
            .no_engine_substitution(true)
            .log_statements(log::LevelFilter::Debug)
            .log_slow_statements(log::LevelFilter::Info, std::time::Duration::from_secs(1));
        let place = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        Ok(Target {
            options: Arc::new(options),
            place,
        })
    }

    /// Connects, in strict mode (see [`SQL_MODES`]), and learns which server it reached.
    pub async fn connect(&self) -> Result<Session, sqlx::Error> {
        let mut conn = self.options.connect().await?;
        let server = Server::learn(&mut conn).await?;
        Ok(Session {
            conn,
            server,
            options: Arc::clone(&self.options),
        })
    }

    /// `host:port/database`, for messages (never the password).
    pub fn describe(&self) -> String {
        self.place.clone()
    }
}

/// A plain connection to `options`' server, for a statement of our own outside any session.
pub async fn connect_plain(options: &MySqlConnectOptions) -> Result<MySqlConnection, sqlx::Error> {
    options.connect().await
}

/// The password in `url`, if it has one.
fn password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then_some(password)
}

/// `url` with its password shown as `***`.
pub fn redact(url: &str) -> String {
    match password(url) {
        Some(password) => url.replacen(&format!(":{password}@"), ":***@", 1),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemes_are_mysql() {
        assert!(is_mysql_url("mysql://u@h/db"));
        assert!(is_mysql_url("MariaDB://u@h/db"));
        assert!(!is_mysql_url("postgres://u@h/db"));
        assert!(!is_mysql_url("host=mysql"));
    }

    #[test]
    fn a_bad_url_hides_its_password() {
        let err = Target::new("mysql://app:s3cret@db:notaport/shop").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("mysql://app:***@db:notaport/shop"), "{text}");
    }

    #[test]
    fn the_place_names_host_port_and_database() {
        let target = Target::new("mariadb://app:pw@db.internal:3307/shop").unwrap();
        assert_eq!(target.describe(), "db.internal:3307/shop");
    }
}
