//! `verify` on MySQL and MariaDB: the count of rows that still match `where`, and of those past
//! the range a run walked. (The value comparison of `verify --values` and its check that the
//! `[set]` expressions give the same value twice are not written for MySQL yet.)

use sqlx::{Connection as _, MySqlConnection, Row as _};

use crate::mysql::plan::pending_after;
use crate::mysql::session::statement;
use crate::mysql::table::bind_compared;
use crate::verify::{Subject, Verdict, VerifyError};

/// Counts the rows still matching `where` and, for a job with a range end, those past it: one
/// read-only transaction, so that both counts see the same rows.
pub async fn pending(conn: &mut MySqlConnection, s: &Subject<'_>) -> Result<Verdict, VerifyError> {
    let end = s.state.and_then(|row| row.range_end.as_deref());
    let counted = async {
        let mut tx = conn
            .begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await?;
        let pending: i64 = statement(&s.plan.pending_count)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let past_end = match end {
            Some(end) if pending > 0 => {
                let sql = pending_after(s.job, s.catalog);
                let n: i64 = bind_compared(statement(&sql), end)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                Some(u64::try_from(n).unwrap_or_default())
            }
            _ => None,
        };
        tx.commit().await?;
        Ok::<_, sqlx::Error>((u64::try_from(pending).unwrap_or_default(), past_end))
    };
    let (pending, past_end) = counted.await.map_err(|source| VerifyError::Count {
        table: s.plan.table.clone(),
        source,
    })?;
    Ok(Verdict {
        pending,
        past_end,
        values: None,
        failed: s.failed.clone(),
    })
}
