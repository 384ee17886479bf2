//! How `backfill` talks to PostgreSQL: connection settings and statement execution that work
//! the same directly and behind PgBouncer in transaction mode, and the classification of errors
//! into "roll back and try again" and "stop".
//!
//! PgBouncer (DESIGN §6): named prepared statements break under transaction pooling, so every
//! statement is unnamed (`persistent(false)`) and runs inside an explicit transaction, and the
//! `extra_float_digits` startup parameter (which PgBouncer rejects) is not sent. This module
//! knows nothing about jobs or tables.

use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgDatabaseError, PgErrorPosition};
use sqlx::{
    AssertSqlSafe, ConnectOptions as _, Connection as _, PgConnection, Postgres, Row as _,
    Transaction,
};
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

/// A statement ready for binds: unnamed, so it works behind PgBouncer's transaction pooling.
pub fn statement(sql: &str) -> sqlx::query::Query<'static, Postgres, PgArguments> {
    sqlx::query(AssertSqlSafe(sql.to_owned())).persistent(false)
}

/// The server process a transaction runs on, identified together with the transaction's start:
/// behind PgBouncer the pid alone may belong to another client's transaction a moment later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// `pg_backend_pid()`.
    pub pid: i32,
    /// `now()` (the transaction's start) in microseconds since the epoch, computed the same way
    /// as from `pg_stat_activity.xact_start` in [`OUR_BACKENDS`].
    pub xact_start_us: i64,
}

/// A join that keeps, of `pg_stat_activity` (or the function behind it) aliased `a`, exactly
/// the [`Backend`]s bound as `$1` (pids, `int4[]`) and `$2` (transaction starts, `int8[]`):
/// behind PgBouncer a pid alone may be running another client's transaction by now.
pub const OUR_BACKENDS: &str = "JOIN unnest($1::int4[], $2::int8[]) AS ours(pid, xact_start_us) \
    ON a.pid = ours.pid AND (extract(epoch FROM a.xact_start) * 1000000)::int8 = ours.xact_start_us";

/// Opens a transaction whose statements are bounded by `statement_timeout` and `lock_timeout`
/// (`SET LOCAL`, via `set_config(…, true)`, so nothing outlives the transaction — which matters
/// behind PgBouncer, where the next transaction may run on another client's server session).
/// Its commit does not wait for the WAL flush (`synchronous_commit = off`): a batch and its
/// checkpoint commit together, so a server crash can lose the last few batches only together
/// with their checkpoints, and the next run redoes them; nothing is lost or applied twice, and
/// no batch waits for a disk flush. The same round trip reads which [`Backend`] runs it.
pub async fn begin_bounded<'c>(
    conn: &'c mut PgConnection,
    statement_timeout: Duration,
    lock_timeout: Duration,
    read_only: bool,
) -> Result<(Transaction<'c, Postgres>, Backend), sqlx::Error> {
    let limits = Limits {
        statement_timeout,
        lock_timeout,
        idle_in_transaction: None,
        wal: false,
        flushed_commit: false,
    };
    let (tx, backend, _) = begin_limited(conn, &limits, read_only).await?;
    Ok((tx, backend))
}

/// A read-only transaction for the latency guard's probe: bounded by `timeout` like
/// [`begin_bounded`]'s, but its commit keeps the server's `synchronous_commit`, so that a probe
/// that takes a transaction id waits for the WAL flush as an application's write does.
pub async fn begin_probe(
    conn: &mut PgConnection,
    timeout: Duration,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    let limits = Limits {
        statement_timeout: timeout,
        lock_timeout: timeout,
        idle_in_transaction: None,
        wal: false,
        flushed_commit: true,
    };
    let (tx, _, _) = begin_limited(conn, &limits, true).await?;
    Ok(tx)
}

/// A batch transaction: [`begin_bounded`], and ended by the server if the client leaves it
/// idle for `idle_in_transaction` (`idle_in_transaction_session_timeout`) — a frozen or cut
/// off process must not hold its rows locked until someone notices. With `wal`, the same round
/// trip also reads the server's WAL insert position ([`WAL_POSITION`]), the start of what the
/// batch writes.
pub async fn begin_batch<'c>(
    conn: &'c mut PgConnection,
    statement_timeout: Duration,
    lock_timeout: Duration,
    idle_in_transaction: Duration,
    wal: bool,
) -> Result<(Transaction<'c, Postgres>, Backend, Option<u64>), sqlx::Error> {
    let limits = Limits {
        statement_timeout,
        lock_timeout,
        idle_in_transaction: Some(idle_in_transaction),
        wal,
        flushed_commit: false,
    };
    begin_limited(conn, &limits, false).await
}

/// The server's WAL insert position in bytes, as a number (`pg_current_wal_insert_lsn()`, which
/// every role may call). Not on a standby, where no batch runs.
pub const WAL_POSITION: &str = "pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::int8";

/// The statement that reads [`WAL_POSITION`] before a batch commits.
pub fn wal_position_sql() -> String {
    format!("SELECT {WAL_POSITION} AS wal_lsn")
}

/// Reads the server's WAL insert position inside `tx`: one round trip, as a simple query.
pub async fn wal_position(tx: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let row = sqlx::raw_sql(AssertSqlSafe(wal_position_sql()))
        .fetch_one(tx)
        .await?;
    Ok(u64::try_from(row.try_get::<i64, _>("wal_lsn")?).unwrap_or(0))
}

/// What [`limits_sql`] sets and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    /// `idle_in_transaction_session_timeout`, for batches.
    pub idle_in_transaction: Option<Duration>,
    /// Read the WAL insert position too.
    pub wal: bool,
    /// Keep the server's `synchronous_commit` rather than turning it off.
    pub flushed_commit: bool,
}

/// The statement that opens every bounded transaction: its `SET LOCAL` limits (with
/// `synchronous_commit = off` unless [`Limits::flushed_commit`]), and the [`Backend`] that runs
/// it (`pid`, `xact_start_us`), and with [`Limits::wal`] the WAL insert position (`wal_lsn`). Sent as a simple query — one round trip where a statement with binds
/// takes two — since the values are our own integers, never user text.
pub fn limits_sql(limits: &Limits) -> String {
    let idle = limits.idle_in_transaction.map_or(String::new(), |idle| {
        format!(
            "set_config('idle_in_transaction_session_timeout', '{}ms', true), ",
            idle.as_millis()
        )
    });
    let wal = if limits.wal {
        format!(", {WAL_POSITION} AS wal_lsn")
    } else {
        String::new()
    };
    let commit = if limits.flushed_commit {
        ""
    } else {
        "set_config('synchronous_commit', 'off', true), "
    };
    format!(
        "SELECT set_config('statement_timeout', '{}ms', true), \
         set_config('lock_timeout', '{}ms', true), {commit}\
         {idle}pg_backend_pid() AS pid, (extract(epoch FROM now()) * 1000000)::int8 AS xact_start_us{wal}",
        limits.statement_timeout.as_millis(),
        limits.lock_timeout.as_millis()
    )
}

async fn begin_limited<'c>(
    conn: &'c mut PgConnection,
    limits: &Limits,
    read_only: bool,
) -> Result<(Transaction<'c, Postgres>, Backend, Option<u64>), sqlx::Error> {
    let mut tx = if read_only {
        begin_read_only(conn).await?
    } else {
        conn.begin().await?
    };
    let row = sqlx::raw_sql(AssertSqlSafe(limits_sql(limits)))
        .fetch_one(&mut *tx)
        .await?;
    let backend = Backend {
        pid: row.try_get("pid")?,
        xact_start_us: row.try_get("xact_start_us")?,
    };
    let wal = if limits.wal {
        Some(u64::try_from(row.try_get::<i64, _>("wal_lsn")?).unwrap_or(0))
    } else {
        None
    };
    Ok((tx, backend, wal))
}

/// Opens a read-only transaction: what reads that must write nothing run in (and, behind
/// PgBouncer, every statement runs in an explicit transaction).
pub async fn begin_read_only(
    conn: &mut PgConnection,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    conn.begin_with("BEGIN READ ONLY").await
}

/// The oldest PostgreSQL `backfill` supports (and CI tests), as `server_version_num`.
pub const OLDEST_SERVER: u32 = 130000;
/// The newest PostgreSQL major version CI tests; a newer server works but is not vouched for.
pub const NEWEST_TESTED_MAJOR: u32 = 18;

/// The server's version as `server_version_num` (`160004` for 16.4, `90624` for 9.6.24): what
/// a query that differs between major versions branches on. Read in a read-only transaction,
/// like every statement, so that it works behind PgBouncer.
pub async fn server_version(conn: &mut PgConnection) -> Result<u32, sqlx::Error> {
    let mut tx = begin_read_only(conn).await?;
    let num: i32 = statement("SELECT current_setting('server_version_num')::int4")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    tx.commit().await?;
    u32::try_from(num).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// A `server_version_num` as people write it: `160004` → `16.4`, `90624` → `9.6.24`.
pub fn version_name(num: u32) -> String {
    if num >= 100000 {
        format!("{}.{}", num / 10000, num % 10000)
    } else {
        format!("{}.{}.{}", num / 10000, num / 100 % 100, num % 100)
    }
}

/// Binds key values (text, cast back by the statement) in order; `None` binds NULL.
pub fn bind_keys<'q, I, S>(
    mut query: sqlx::query::Query<'q, Postgres, PgArguments>,
    values: I,
) -> sqlx::query::Query<'q, Postgres, PgArguments>
where
    I: IntoIterator<Item = Option<S>>,
    S: AsRef<str>,
{
    for v in values {
        query = query.bind(v.map(|s| s.as_ref().to_owned()));
    }
    query
}

/// Runs a query that returns at most one key (a row of text columns).
pub async fn fetch_key(
    query: sqlx::query::Query<'_, Postgres, PgArguments>,
    conn: &mut PgConnection,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    query
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(key)
        .transpose()
}

/// Runs a query that returns keys (rows of text columns), in its order.
pub async fn fetch_keys(
    query: sqlx::query::Query<'_, Postgres, PgArguments>,
    conn: &mut PgConnection,
) -> Result<Vec<Vec<String>>, sqlx::Error> {
    query.fetch_all(conn).await?.iter().map(key).collect()
}

/// A row of text columns as a key.
fn key(row: &sqlx::postgres::PgRow) -> Result<Vec<String>, sqlx::Error> {
    (0..row.len()).map(|i| row.try_get(i)).collect()
}

/// An error and its causes on one line, as `{:#}` prints an `anyhow` chain, except that a
/// cause whose text its parent already printed is skipped (sqlx repeats its I/O errors), and a
/// PostgreSQL error is shown as the server reported it: message, SQLSTATE, position, detail
/// and hint — not sqlx's "at line N", which is a line of PostgreSQL's C source.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(err);
    while let Some(cause) = next {
        if let Some(db) = cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
        {
            push_cause(&mut text, &ServerError::from_database(db).to_string());
            break;
        }
        push_cause(&mut text, &cause.to_string());
        next = cause.source();
    }
    text
}

fn push_cause(text: &mut String, cause: &str) {
    if text.contains(cause) {
        return;
    }
    if !text.is_empty() {
        text.push_str(": ");
    }
    text.push_str(cause);
}

/// What the server said when it refused a statement, in its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The SQLSTATE, e.g. `22P02`.
    pub code: Option<String>,
    /// The primary message.
    pub message: String,
    /// Where in the statement text, when the server points at it.
    pub position: Option<usize>,
    /// `detail: …; hint: …`, when the server gave either.
    pub notes: Option<String>,
}

impl ServerError {
    /// The server's side of `err`, when the server answered at all.
    pub fn of(err: &sqlx::Error) -> Option<ServerError> {
        err.as_database_error().map(ServerError::from_database)
    }

    fn from_database(db: &dyn sqlx::error::DatabaseError) -> ServerError {
        let pg = db.try_downcast_ref::<PgDatabaseError>();
        let position = match pg.and_then(PgDatabaseError::position) {
            Some(PgErrorPosition::Original(at)) => Some(at),
            _ => None,
        };
        let notes: Vec<String> = pg
            .into_iter()
            .flat_map(|pg| {
                let detail = pg.detail().map(|d| format!("detail: {d}"));
                let hint = pg.hint().map(|h| format!("hint: {h}"));
                detail.into_iter().chain(hint)
            })
            .collect();
        ServerError {
            code: db.code().map(|c| c.into_owned()),
            message: db.message().to_owned(),
            position,
            notes: (!notes.is_empty()).then(|| notes.join("; ")),
        }
    }
}

/// `message [SQLSTATE 42703] at character 17 of the statement; detail: …; hint: …`
impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(code) = &self.code {
            write!(f, " [SQLSTATE {code}]")?;
        }
        if let Some(at) = self.position {
            write!(f, " at character {at} of the statement")?;
        }
        if let Some(notes) = &self.notes {
            write!(f, "; {notes}")?;
        }
        Ok(())
    }
}

/// Whether `err`, or one of its causes, is PostgreSQL's `lock_not_available` (55P03): a
/// statement gave up waiting for a lock (`lock_timeout`), so trying again later may succeed.
pub fn gave_up_on_lock(err: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(err), |e| e.source()).any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|db| db.code())
            .as_deref()
            == Some("55P03")
    })
}

/// What to do about a failed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Roll back and try the same batch again after a backoff.
    Transient {
        /// The statement ran out of time: try again with a smaller batch.
        halve: bool,
        /// The connection is gone: reconnect before trying again.
        reconnect: bool,
    },
    /// Anything else: stop the job and record the error.
    Fatal,
}

/// Classifies an error by SQLSTATE (or by its kind when the server never answered).
pub fn classify(err: &sqlx::Error) -> Failure {
    let lost = Failure::Transient {
        halve: false,
        reconnect: true,
    };
    match err {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // lock_not_available, deadlock_detected, serialization_failure: nobody's fault.
            Some("55P03" | "40P01" | "40001") => Failure::Transient {
                halve: false,
                reconnect: false,
            },
            // query_canceled: statement_timeout (or a cancel) — the batch was too big.
            Some("57014") => Failure::Transient {
                halve: true,
                reconnect: false,
            },
            // admin/crash shutdown, cannot_connect_now, too_many_connections, connection_*,
            // and the server ending a session idle in (or out of) a transaction for too long —
            // a process that was frozen or cut off comes back to a closed connection.
            Some(code)
                if matches!(
                    code,
                    "57P01" | "57P02" | "57P03" | "53300" | "25P03" | "57P05"
                ) || code.starts_with("08") =>
            {
                lost
            }
            _ => Failure::Fatal,
        },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => lost,
        _ => Failure::Fatal,
    }
}

/// Whether `err` is about the data of one row rather than the statement or the server: a data
/// exception (class 22: a cast of `'n/a'` to bigint, a division by zero, a value out of range),
/// an integrity constraint (class 23: unique, foreign key, check, not null), a view's check
/// option (class 44), a trigger's `RAISE EXCEPTION` (P0001), or a row or index entry too large
/// (54000). Only such an error can be narrowed down to the row that causes it; anything else
/// (a permission, a missing column, a full disk) would fail on every row alike.
pub fn is_row_error(err: &sqlx::Error) -> bool {
    let Some(db) = err.as_database_error() else {
        return false;
    };
    db.code().is_some_and(|code| {
        code.starts_with("22")
            || code.starts_with("23")
            || code.starts_with("44")
            || matches!(code.as_ref(), "P0001" | "54000")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server error with only a SQLSTATE, as the server would send it.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            "the server said no"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[test]
    fn only_errors_about_a_rows_data_can_be_narrowed_to_a_row() {
        let coded = |code| sqlx::Error::Database(Box::new(Coded(code)));
        for row in [
            "22P02", "22003", "22012", "23505", "23514", "23502", "44000", "P0001",
        ] {
            assert!(is_row_error(&coded(row)), "{row}");
        }
        for statement in [
            "42501", "42703", "53100", "57014", "55P03", "40P01", "XX000",
        ] {
            assert!(!is_row_error(&coded(statement)), "{statement}");
        }
        assert!(!is_row_error(&sqlx::Error::ColumnNotFound("x".into())));
        let server = ServerError::of(&coded("22P02")).unwrap();
        assert_eq!(server.to_string(), "the server said no [SQLSTATE 22P02]");
    }

    #[test]
    fn io_errors_mean_reconnect() {
        let err = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(
            classify(&err),
            Failure::Transient {
                halve: false,
                reconnect: true
            }
        );
    }

    #[test]
    fn decode_errors_are_fatal() {
        let err = sqlx::Error::ColumnNotFound("x".into());
        assert_eq!(classify(&err), Failure::Fatal);
    }

    #[test]
    fn error_chain_skips_causes_already_in_the_message() {
        let err = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let text = error_chain(&err);
        assert_eq!(text.matches("refused").count(), 1, "{text}");
    }

    #[test]
    fn versions_are_named_as_people_write_them() {
        assert_eq!(version_name(160004), "16.4");
        assert_eq!(version_name(180000), "18.0");
        assert_eq!(version_name(130023), "13.23");
        assert_eq!(version_name(90624), "9.6.24");
    }

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
