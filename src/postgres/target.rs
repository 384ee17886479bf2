//! Where to connect: the database URL (or libpq's environment) read and checked before any
//! connection is tried, with the settings that work directly and behind PgBouncer, the
//! password never shown, and a polite hang-up.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, PgConnection};
use thiserror::Error;

/// How long a statement runs before sqlx logs it as slow (at `info`, see [`Target::new`]).
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

/// A connection target as given on the command line, before it is tried.
#[derive(Debug, Clone)]
pub struct Target {
    options: PgConnectOptions,
}

/// Errors in the connection settings themselves (not from the server).
#[derive(Debug, Error)]
pub enum TargetError {
    #[error(
        "invalid database URL {url:?}: {reason}; expected postgres://user:password@host:port/database, \
         with any @ : / ? # [ ] or % in the user name or password percent-encoded (@ is %40, # is %23, / is %2F)"
    )]
    BadUrl { url: String, reason: String },
    #[error(
        "invalid database URL {url:?}: a PostgreSQL URL starts with postgres:// or postgresql://"
    )]
    Scheme { url: String },
    #[error(
        "cannot tell which user to connect as ({reason}); set PGUSER, or name the user in the \
         URL (postgres://USER@host/database)"
    )]
    NoUser { reason: String },
}

impl Target {
    /// Reads `url`, or, when there is none, libpq's `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
    /// `PGDATABASE` and `PGSSLMODE` as libpq would. Without a user in the URL or in `PGUSER`,
    /// the user is the operating system's (as libpq does), never a made-up one.
    pub fn new(url: Option<&str>) -> Result<Target, TargetError> {
        let options = match url {
            Some(url) => parse_url(url)?,
            None => PgConnectOptions::new(),
        };
        let options = match (url.and_then(url_user), std::env::var_os("PGUSER")) {
            (None, None) => {
                let user = whoami::username().map_err(|e| TargetError::NoUser {
                    reason: format!("the operating system has no name for this user: {e}"),
                })?;
                options.username(&user)
            }
            _ => options,
        };
        let options = options
            .statement_cache_capacity(0)
            .extra_float_digits(None)
            // sqlx warns of every statement slower than a second, on stderr, at the default
            // log level. A batch aims at `[batch] target` and may take longer by design, and a
            // start behind a lock waits on purpose: neither is news for the user, whom the
            // progress display tells what the run does. `BACKFILL_LOG=info` still shows them.
            .log_slow_statements(log::LevelFilter::Info, SLOW_STATEMENT);
        Ok(Target { options })
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

    /// `host:port/database`, for messages (never the password).
    pub fn describe(&self) -> String {
        format!(
            "{}:{}/{}",
            self.options.get_host(),
            self.options.get_port(),
            self.options
                .get_database()
                .unwrap_or(self.options.get_username())
        )
    }
}

/// Reads a `postgres://` URL. sqlx reads any scheme as PostgreSQL's, and a `#` in a password
/// starts a URL fragment, which leaves the rest of the URL (host included) to chance: both are
/// refused here with what to do.
fn parse_url(url: &str) -> Result<PgConnectOptions, TargetError> {
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
        return Err(TargetError::Scheme { url: redact(url) });
    }
    let bad = |reason: String| TargetError::BadUrl {
        url: redact(url),
        reason,
    };
    if url.contains('#') {
        return Err(bad(
            "it has a `#`, which starts a URL fragment, so everything after it is cut off".into(),
        ));
    }
    url.parse::<PgConnectOptions>()
        .map_err(|e| bad(e.to_string()))
}

/// The user name a URL gives, if any (`postgres://USER:password@host/db`).
fn url_user(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let user = userinfo.split(':').next()?;
    (!user.is_empty()).then_some(user)
}

/// How long a goodbye to the server may take before the socket is simply dropped.
const HANG_UP_WITHIN: Duration = Duration::from_secs(1);

/// Ends a session with a `Terminate` message rather than a bare socket close. Behind PgBouncer
/// an idle client that just vanishes is logged as "client unexpected eof" on every run; one
/// that vanishes inside a transaction costs the pool a server connection.
pub async fn hang_up(conn: PgConnection) {
    let _ = tokio::time::timeout(HANG_UP_WITHIN, conn.close()).await;
}

/// A URL with its password replaced, safe to print.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &url[..scheme + 3 + colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn password_is_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/prod"),
            "postgres://app:***@db:5432/prod"
        );
    }

    #[test]
    fn url_without_password_is_unchanged() {
        assert_eq!(redact("postgres://app@db/prod"), "postgres://app@db/prod");
    }

    #[test]
    fn other_schemes_are_refused() {
        let err = Target::new(Some("mysql://u:pw@host/db")).unwrap_err();
        assert!(matches!(err, TargetError::Scheme { .. }), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
        assert!(Target::new(Some("postgresql://u@host/db")).is_ok());
        assert!(Target::new(Some("PostgreS://u@host/db")).is_ok());
    }

    #[test]
    fn a_hash_in_a_password_is_refused_with_its_encoding() {
        let err = Target::new(Some("postgres://app:12#34@db.internal/prod"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("# is %23"), "{err}");
        assert!(err.contains("fragment"), "{err}");
        let ok = Target::new(Some("postgres://app:12%2334@db.internal/prod")).unwrap();
        assert_eq!(ok.describe(), "db.internal:5432/prod");
    }

    #[test]
    fn the_user_comes_from_the_url_when_it_names_one() {
        assert_eq!(url_user("postgres://app:pw@db/prod"), Some("app"));
        assert_eq!(url_user("postgres://app@db"), Some("app"));
        assert_eq!(url_user("postgres://db/prod"), None);
        assert_eq!(url_user("postgres://:pw@db/prod"), None);
        assert_eq!(url_user("postgres://db/prod?options=a@b"), None);
    }

    #[test]
    fn bad_url_is_reported_without_the_password() {
        let err = Target::new(Some("postgres://u:pw@host:notaport/db")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("u:***@host:notaport/db"), "{text}");
        assert!(!text.contains("pw"), "{text}");
    }
}
