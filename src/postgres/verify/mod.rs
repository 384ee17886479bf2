//! `verify` on PostgreSQL: the count of rows that still match `where` (and past the range a run
//! walked), the value comparison of `verify --values` (`walk.rs`), and the check that the
//! `[set]` expressions give the same value twice (`comparable.rs`).

mod comparable;
mod walk;

pub use comparable::check_comparable;
pub use walk::values;

use sqlx::{PgConnection, Row as _};

use crate::postgres::plan::compare::Comparison;
use crate::postgres::{begin_read_only, statement};
use crate::rows::bind_keys;
use crate::verify::{Subject, Verdict, VerifyError};

/// Counts the rows still matching `where` (and, for a job with a range end, those past it).
pub async fn pending(conn: &mut PgConnection, s: &Subject<'_>) -> Result<Verdict, VerifyError> {
    let pending = crate::postgres::preflight::estimate::pending_rows(conn, s.plan, true)
        .await
        .map_err(|source| VerifyError::count(s, source))?
        .rows;
    let verdict = Verdict {
        pending,
        past_end: None,
        values: None,
        failed: s.failed.clone(),
    };
    with_past_end(conn, s, verdict).await
}

/// Adds how many of the pending rows are past the job's range end, when it has one.
pub(super) async fn with_past_end(
    conn: &mut PgConnection,
    s: &Subject<'_>,
    verdict: Verdict,
) -> Result<Verdict, VerifyError> {
    let Some(end) = s.state.and_then(|row| row.range_end.as_ref()) else {
        return Ok(verdict);
    };
    if verdict.pending == 0 {
        return Ok(verdict);
    }
    let comparison = Comparison::new(s.job, s.catalog);
    let count = async {
        let mut tx = begin_read_only(conn).await?;
        let n: i64 = bind_keys(statement(&comparison.pending_after), end.iter().map(Some))
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        tx.commit().await?;
        Ok(u64::try_from(n).unwrap_or_default())
    };
    let past_end = count
        .await
        .map_err(|source| VerifyError::count(s, source))?;
    Ok(Verdict {
        past_end: Some(past_end),
        ..verdict
    })
}
