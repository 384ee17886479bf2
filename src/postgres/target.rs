//! Where to connect: the connection string (or libpq's environment) read as libpq reads it
//! (`conninfo`) before any connection is tried, turned into sqlx's options with the settings
//! that work directly and behind PgBouncer, the password never shown, and a polite hang-up.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};
use thiserror::Error;

use super::conninfo::{self, ConninfoError, Environment, Host, Origin, Settings, SslMode};

/// How long a statement runs before sqlx logs it as slow (at `info`, see [`Target::new`]).
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

/// A connection target as given on the command line, before it is tried.
#[derive(Debug, Clone)]
pub struct Target {
    options: PgConnectOptions,
    /// Where the server is, for messages.
    place: String,
}

/// Errors in the connection settings themselves (not from the server).
#[derive(Debug, Error)]
pub enum TargetError {
    #[error(transparent)]
    Settings(#[from] ConninfoError),
}

impl Target {
    /// Reads `url` (a `postgresql://` URL or libpq's `keyword=value` pairs), the service file
    /// it or `PGSERVICE` names, libpq's `PG…` variables, the defaults and the password file,
    /// as libpq would: see `conninfo`. Without a user anywhere, the user is the operating
    /// system's (as libpq does), never a made-up one.
    pub fn new(url: Option<&str>) -> Result<Target, TargetError> {
        let (given, origin) = match url {
            Some(url) => conninfo::parse(url)?,
            None => (conninfo::Conninfo::default(), conninfo::Origin::Pairs),
        };
        let os_user = || whoami::username().ok();
        let settings = conninfo::resolve(given, &origin, &Environment::process(), os_user)
            .map_err(|e| match (e, url) {
                // A bad value in the URL is a bad URL, shown (redacted) with its expected shape.
                (
                    ConninfoError::BadValue {
                        keyword,
                        value,
                        origin: Origin::Url,
                        expected,
                    },
                    Some(url),
                ) => ConninfoError::BadUrl {
                    url: conninfo::redact(url),
                    reason: format!("invalid {keyword} {value:?} (want {expected})"),
                },
                (e, _) => e,
            })?;
        Ok(Target::from_settings(&settings))
    }

    /// sqlx's options for `settings`. sqlx's own constructor also reads some `PG…` variables;
    /// each field it reads is set again here from `settings`, which has the variables' values
    /// where libpq would use them. One it cannot be told to forget: `PGOPTIONS` stays in
    /// front of the `options` resolved here (a setting given in both takes the latter's value,
    /// as the server reads them in order; with `PGOPTIONS` alone it is simply sent twice).
    fn from_settings(settings: &Settings) -> Target {
        let mut options = PgConnectOptions::new_without_pgpass()
            .port(settings.port)
            .username(&settings.user)
            .database(&settings.database)
            .ssl_mode(match settings.ssl_mode {
                SslMode::Disable => PgSslMode::Disable,
                SslMode::Allow => PgSslMode::Allow,
                SslMode::Prefer => PgSslMode::Prefer,
                SslMode::Require => PgSslMode::Require,
                SslMode::VerifyCa => PgSslMode::VerifyCa,
                SslMode::VerifyFull => PgSslMode::VerifyFull,
            })
            .statement_cache_capacity(0)
            .extra_float_digits(None)
            // sqlx warns of every statement slower than a second, on stderr, at the default
            // log level. A batch aims at `[batch] target` and may take longer by design, and a
            // start behind a lock waits on purpose: neither is news for the user, whom the
            // progress display tells what the run does. `BACKFILL_LOG=info` still shows them.
            .log_slow_statements(log::LevelFilter::Info, SLOW_STATEMENT);
        let place = match &settings.host {
            Host::Socket(dir) => {
                options = options.socket(dir).host("localhost");
                dir.display().to_string()
            }
            Host::Tcp(name) => {
                options = options.host(name);
                name.clone()
            }
        };
        if let Some(password) = &settings.password {
            options = options.password(password);
        }
        if let Some(path) = &settings.ssl_root_cert {
            options = options.ssl_root_cert(path);
        }
        if let Some(path) = &settings.ssl_cert {
            options = options.ssl_client_cert(path);
        }
        if let Some(path) = &settings.ssl_key {
            options = options.ssl_client_key(path);
        }
        if !settings.options.is_empty() {
            options = options.options(settings.options.iter().map(|(k, v)| (k, v)));
        }
        Target {
            place: format!("{place}:{}/{}", settings.port, settings.database),
            options,
        }
    }

    /// Connects with `application_name` set so that operators can find the session in
    /// `pg_stat_activity`.
    pub async fn connect(&self, application_name: &str) -> Result<PgConnection, sqlx::Error> {
        self.options
            .clone()
            .application_name(application_name)
            .connect()
            .await
    }

    /// Like [`Target::connect`], without sqlx's statement log: for a session whose statements
    /// run long by design (a vacuum), where its "slow statement" warnings would only be noise
    /// on the progress display.
    pub async fn connect_unlogged(
        &self,
        application_name: &str,
    ) -> Result<PgConnection, sqlx::Error> {
        self.options
            .clone()
            .application_name(application_name)
            .disable_statement_logging()
            .connect()
            .await
    }

    /// `host:port/database` (the socket's directory as the host), for messages; never the
    /// password.
    pub fn describe(&self) -> String {
        self.place.clone()
    }
}

/// How long a goodbye to the server may take before the socket is simply dropped.
const HANG_UP_WITHIN: Duration = Duration::from_secs(1);

/// Ends a session with a `Terminate` message rather than a bare socket close. Behind PgBouncer
/// an idle client that just vanishes is logged as "client unexpected eof" on every run; one
/// that vanishes inside a transaction costs the pool a server connection.
pub async fn hang_up(conn: PgConnection) {
    let _ = tokio::time::timeout(HANG_UP_WITHIN, conn.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_reported_without_the_password() {
        let err = Target::new(Some("postgres://u:pw@host:notaport/db")).unwrap_err();
        let text = err.to_string();
        assert_eq!(
            text,
            "invalid database URL \"postgres://u:***@host:notaport/db\": invalid port \
             \"notaport\" (want a port number from 1 to 65535); expected \
             postgresql://user:password@host:port/database?keyword=value, with any @ : / or % \
             in the user name or password percent-encoded (@ is %40, : is %3A, / is %2F, % is %25)"
        );
        assert!(!text.contains("pw"), "{text}");
    }

    #[test]
    fn a_socket_is_described_by_its_directory() {
        let target = Target::new(Some("host=/run/pg port=5499 dbname=shop user=u")).unwrap();
        assert_eq!(target.describe(), "/run/pg:5499/shop");
    }

    #[test]
    fn a_hash_in_a_password_is_part_of_it_as_in_libpq() {
        let target = Target::new(Some("postgres://app:12#34@db.internal/prod")).unwrap();
        assert_eq!(target.describe(), "db.internal:5432/prod");
    }
}
