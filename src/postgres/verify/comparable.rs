//! Which `[set]` expressions `verify --values` can compare: not one whose value depends on
//! when it is evaluated. PostgreSQL exposes no parse tree, so the functions an expression calls
//! are read from its text ([`crate::postgres::sql::words`]) and looked up in `pg_proc` — every overload
//! of the name, since the text does not say which one is called.

use sqlx::{PgConnection, Row as _};

use crate::job::Job;
use crate::postgres::sql::words::words;
use crate::postgres::{begin_read_only, statement};

use crate::verify::VerifyError;

/// Names that read the clock: SQL's `CURRENT_DATE`… keywords and the functions behind them.
/// Stable, not volatile, so `provolatile` alone lets them through; but their value is the time
/// of the transaction, which is not the time the backfill wrote the row.
const CLOCK: [&str; 10] = [
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "clock_timestamp",
    "timeofday",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
];

/// The volatilities (`i`, `s`, `v`) of the functions named `$2` (in schema `$1`, or visible
/// on the search path): the expression's text does not say which overload it calls, so every
/// one is looked at; NULL when no function has the name (`CAST(`, `COALESCE(` are syntax).
const VOLATILITY: &str = "SELECT string_agg(DISTINCT p.provolatile::text, '') FROM pg_proc p \
    WHERE p.proname = $2 AND CASE WHEN $1::text IS NULL THEN pg_function_is_visible(p.oid) \
    ELSE p.pronamespace = to_regnamespace($1)::oid END";

/// Refuses, before anything is read, an expression whose value depends on when it is
/// evaluated: it calls a volatile function (any overload of the name), or reads the clock.
pub async fn check_comparable(conn: &mut PgConnection, job: &Job) -> Result<(), VerifyError> {
    let mut tx = begin_read_only(conn).await.map_err(VerifyError::Lookup)?;
    for a in &job.set {
        for word in words(&a.expr) {
            let refuse = |why| VerifyError::NotComparable {
                column: a.column.clone(),
                expr: a.expr.clone(),
                function: if word.call {
                    format!("{}()", word.name)
                } else {
                    word.name.to_uppercase()
                },
                why,
            };
            if !word.quoted && CLOCK.contains(&word.name.as_str()) {
                return Err(refuse("reads the clock"));
            }
            if !word.call {
                continue;
            }
            let kinds: Option<String> = statement(VOLATILITY)
                .bind(word.qualifier.as_deref())
                .bind(&word.name)
                .fetch_one(&mut *tx)
                .await
                .map_err(VerifyError::Lookup)?
                .get(0);
            if kinds.is_some_and(|k| k.contains('v')) {
                return Err(refuse(
                    "is volatile (it may return something else at every call)",
                ));
            }
        }
    }
    tx.commit().await.map_err(VerifyError::Lookup)?;
    Ok(())
}
