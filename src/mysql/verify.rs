//! `verify` on MySQL and MariaDB: the count of rows that still match `where`, and of those past
//! the range a run walked; the value comparison of `verify --values` (`walk.rs`) and the check
//! that the `[set]` expressions give the same value twice (`comparable.rs`).

mod comparable;
mod walk;

pub use comparable::check_comparable;
pub use walk::values;

use sqlx::{Connection as _, MySqlConnection, Row as _};

use crate::mysql::plan::pending_after;
use crate::mysql::session::statement;
use crate::mysql::table::bind_compared;
use crate::verify::{Subject, Verdict, VerifyError};

/// Counts the rows still matching `where` and, for a job with a range end, those past it: one
/// read-only transaction, so that both counts see the same rows.
pub async fn pending(conn: &mut MySqlConnection, s: &Subject<'_>) -> Result<Verdict, VerifyError> {
    let counted = async {
        let mut tx = conn
            .begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await?;
        let pending: i64 = statement(&s.plan.pending_count)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let pending = u64::try_from(pending).unwrap_or_default();
        let past_end = past_end(&mut tx, s, pending).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>((pending, past_end))
    };
    let (pending, past_end) = counted
        .await
        .map_err(|source| VerifyError::count(s, source))?;
    Ok(Verdict {
        pending,
        past_end,
        values: None,
        failed: s.failed.clone(),
    })
}

/// Of `pending` rows matching `where`, those whose key is past the job's range end, when it
/// has one and some are pending.
async fn past_end(
    conn: &mut MySqlConnection,
    s: &Subject<'_>,
    pending: u64,
) -> Result<Option<u64>, sqlx::Error> {
    let Some(end) = s.state.and_then(|row| row.range_end.as_deref()) else {
        return Ok(None);
    };
    if pending == 0 {
        return Ok(None);
    }
    let sql = pending_after(s.job, s.catalog);
    let n: i64 = bind_compared(statement(&sql), end)
        .fetch_one(conn)
        .await?
        .try_get(0)?;
    Ok(Some(u64::try_from(n).unwrap_or_default()))
}
