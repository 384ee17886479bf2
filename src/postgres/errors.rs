//! What an error means: its whole chain as one line, the server's own words
//! ([`ServerError`]), and the classification into "roll back and try again", "reconnect",
//! "a row's data" and "stop".

use sqlx::mysql::MySqlDatabaseError;
use sqlx::postgres::{PgDatabaseError, PgErrorPosition};

use crate::failure::Failure;

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
    /// `detail: …; hint: …`, when the server gave either; MySQL's `error 1264`.
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
        // MySQL's and MariaDB's SQLSTATE is `HY000` for most errors: their operators know an
        // error by its number (`ERROR 1264 (22003)`), so it goes with the message.
        let number = db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(|e| format!("error {}", e.number()));
        let notes: Vec<String> = pg
            .into_iter()
            .flat_map(|pg| {
                let detail = pg.detail().map(|d| format!("detail: {d}"));
                let hint = pg.hint().map(|h| format!("hint: {h}"));
                detail.into_iter().chain(hint)
            })
            .chain(number)
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

/// Whether `err` is PostgreSQL's `lock_not_available` (55P03): a
/// statement gave up waiting for a lock (`lock_timeout`), so trying again later may succeed.
pub fn gave_up_on_lock(err: &sqlx::Error) -> bool {
    err.as_database_error().and_then(|db| db.code()).as_deref() == Some("55P03")
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
}
