//! Which `[set]` expressions `verify --values` can compare on MySQL and MariaDB: not one whose
//! value depends on when, or in which session, it is evaluated. Neither server exposes a parse
//! tree, so the functions an expression calls are read from its text
//! ([`crate::mysql::plan::words`]): the built-in ones by name, a stored function by its
//! `DETERMINISTIC` characteristic in `information_schema.ROUTINES`. As on PostgreSQL, a name
//! read too eagerly only makes the check more careful.

use sqlx::{MySqlConnection, Row as _};

use crate::job::Job;
use crate::mysql::plan::words::{Word, tokens};
use crate::mysql::session::{begin_reading, statement};
use crate::verify::VerifyError;

/// Keywords that read the clock, with or without parentheses.
const CLOCK_KEYWORDS: [&str; 8] = [
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "utc_timestamp",
    "utc_date",
    "utc_time",
];

/// Functions that read the clock when called.
const CLOCK_FUNCTIONS: [&str; 4] = ["now", "sysdate", "curdate", "curtime"];

/// Functions that return something else at every call.
const RANDOM: [&str; 10] = [
    "rand",
    "uuid",
    "uuid_short",
    "uuid_v4",
    "uuid_v7",
    "sys_guid",
    "random_bytes",
    "nextval",
    "lastval",
    "setval",
];

/// Functions whose value is the session's: who it is, what it last did, the locks it holds.
const SESSION: [&str; 13] = [
    "connection_id",
    "last_insert_id",
    "row_count",
    "found_rows",
    "user",
    "current_user",
    "session_user",
    "system_user",
    "current_role",
    "get_lock",
    "release_lock",
    "is_free_lock",
    "is_used_lock",
];

/// `IS_DETERMINISTIC` of the stored function named `?2` in database `?1` (the session's when
/// NULL); no row when there is none (a built-in function, or `CAST(`, which is syntax).
/// Routine names ignore case.
const DETERMINISTIC: &str = "SELECT CAST(IS_DETERMINISTIC AS CHAR) FROM information_schema.ROUTINES \
    WHERE ROUTINE_TYPE = 'FUNCTION' AND ROUTINE_SCHEMA = COALESCE(?, DATABASE()) \
    AND LOWER(ROUTINE_NAME) = LOWER(?)";

/// Why `word` (the `i`-th of `words`) makes its expression incomparable, by its name alone;
/// `None` when its name says nothing.
fn refused_by_name(words: &[Word], i: usize) -> Option<&'static str> {
    let w = &words[i];
    if w.variable {
        return Some("is a variable, whose value is the session's");
    }
    if w.quoted || w.qualifier.is_some() {
        return None;
    }
    let name = w.name.as_str();
    if CLOCK_KEYWORDS.contains(&name)
        || (w.call && CLOCK_FUNCTIONS.contains(&name))
        || (w.no_arguments && name == "unix_timestamp")
    {
        return Some("reads the clock");
    }
    if w.call && RANDOM.contains(&name) {
        return Some("is random or advances a sequence (it returns something else at every call)");
    }
    if (w.call && SESSION.contains(&name)) || name == "current_user" {
        return Some("depends on the session that evaluates it");
    }
    let next = |k: usize| words.get(i + k).map(|w| (w.name.as_str(), w.quoted));
    if matches!(name, "next" | "previous")
        && next(1) == Some(("value", false))
        && next(2) == Some(("for", false))
    {
        return Some("advances a sequence (it returns something else at every call)");
    }
    None
}

/// How `verify --values`'s message names `word`: `rand()`, `CURRENT_DATE`, `@v`, `db.f()`.
fn shown(words: &[Word], i: usize) -> String {
    let w = &words[i];
    let name = match &w.qualifier {
        Some(q) => format!("{q}.{}", w.name),
        None => w.name.clone(),
    };
    if w.variable {
        format!("@{name}")
    } else if matches!(w.name.as_str(), "next" | "previous") && !w.call {
        format!("{} VALUE FOR", w.name.to_uppercase())
    } else if w.call {
        format!("{name}()")
    } else {
        name.to_uppercase()
    }
}

/// Refuses, before anything is read, an expression whose value depends on when or where it is
/// evaluated: it reads the clock, is random, depends on the session, or calls a stored
/// function not declared `DETERMINISTIC`.
pub async fn check_comparable(conn: &mut MySqlConnection, job: &Job) -> Result<(), VerifyError> {
    let mut tx = begin_reading(conn, crate::plan::START_LOCK_TIMEOUT, true)
        .await
        .map_err(VerifyError::Lookup)?;
    for a in &job.set {
        let words = tokens(&a.expr);
        for i in 0..words.len() {
            let refuse = |why| VerifyError::NotComparable {
                column: a.column.clone(),
                expr: a.expr.clone(),
                function: shown(&words, i),
                why,
            };
            if let Some(why) = refused_by_name(&words, i) {
                return Err(refuse(why));
            }
            let w = &words[i];
            if !w.call {
                continue;
            }
            let declared: Option<String> = statement(DETERMINISTIC)
                .bind(w.qualifier.as_deref())
                .bind(&w.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(VerifyError::Lookup)?
                .map(|row| row.try_get(0))
                .transpose()
                .map_err(VerifyError::Lookup)?;
            if declared.is_some_and(|d| d.eq_ignore_ascii_case("NO")) {
                return Err(refuse(
                    "is a stored function not declared DETERMINISTIC (it may return something \
                     else at every call)",
                ));
            }
        }
    }
    tx.commit().await.map_err(VerifyError::Lookup)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first refused name of `expr` and why, as the message shows them.
    fn refused(expr: &str) -> Option<(String, &'static str)> {
        let words = tokens(expr);
        (0..words.len()).find_map(|i| refused_by_name(&words, i).map(|why| (shown(&words, i), why)))
    }

    #[test]
    fn the_clock_is_refused_called_or_not() {
        assert_eq!(refused("NOW()").unwrap().0, "now()");
        assert_eq!(refused("DATE(sysdate())").unwrap().0, "sysdate()");
        assert_eq!(
            refused("CURRENT_TIMESTAMP").unwrap(),
            ("CURRENT_TIMESTAMP".into(), "reads the clock")
        );
        assert_eq!(
            refused("current_timestamp(6)").unwrap().0,
            "current_timestamp()"
        );
        assert_eq!(refused("UNIX_TIMESTAMP()").unwrap().0, "unix_timestamp()");
        assert_eq!(refused("UNIX_TIMESTAMP(created_at)"), None);
    }

    #[test]
    fn randomness_and_the_session_are_refused() {
        assert_eq!(refused("FLOOR(RAND() * 10)").unwrap().0, "rand()");
        assert_eq!(refused("UUID()").unwrap().0, "uuid()");
        assert_eq!(
            refused("CONNECTION_ID()").unwrap().1,
            "depends on the session that evaluates it"
        );
        assert_eq!(refused("CURRENT_USER").unwrap().0, "CURRENT_USER");
        assert_eq!(refused("v + @step").unwrap().0, "@step");
        assert_eq!(refused("NEXT VALUE FOR s").unwrap().0, "NEXT VALUE FOR");
    }

    #[test]
    fn columns_strings_and_quoted_names_pass() {
        assert_eq!(refused("v * 2 + SLEEP(0)"), None);
        assert_eq!(refused("CONCAT(now, '-', `rand`)"), None);
        assert_eq!(refused("'NOW()' # RAND()"), None);
        assert_eq!(refused("COALESCE(`uuid`(), 1)"), None);
        assert_eq!(refused("t.now + 1"), None);
    }
}
