//! The statements of a process's heartbeat and release (see `crate::state::heartbeat`).

use sqlx::PgConnection;

use crate::postgres::{begin_state, statement};
use crate::state::*;

use super::*;

impl StateSql<'_> {
    /// Refreshes the leases of `owner` on the job — every range it holds, and the job's own
    /// lease when `holds_job` — and publishes `live`. Returns the job's row as it now stands
    /// (the operator's control flag; every process's totals, live workers, processes and
    /// hosts). Fails with `LeaseLost` when the job's lease went to another runner, or the job
    /// was reset.
    pub async fn heartbeat(
        &self,
        conn: &mut PgConnection,
        name: &str,
        owner: &Owner,
        holds_job: bool,
        live: &Live,
    ) -> Result<JobRow, StateError> {
        let mut tx = begin_state(conn).await.map_err(self.db("heartbeat"))?;
        let ranges = format!(
            "UPDATE {} r SET heartbeat_at = now(), note = $3,
                    rate = (SELECT x.rate FROM unnest($4::int4[], $5::float8[]) AS x(id, rate)
                             WHERE x.id = r.id)
              WHERE r.job = $1 AND r.owner = $2",
            self.ranges
        );
        statement(&ranges)
            .bind(name)
            .bind(&owner.0)
            .bind(live.note.as_deref())
            .bind(
                live.rates
                    .iter()
                    .map(|(id, _)| i32::try_from(*id).unwrap_or(i32::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(live.rates.iter().map(|(_, r)| *r).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(self.db("heartbeat"))?;
        if holds_job {
            let job = format!(
                "UPDATE {} SET heartbeat_at = now(), note = $3 WHERE name = $1 AND owner = $2",
                self.jobs
            );
            let kept = statement(&job)
                .bind(name)
                .bind(&owner.0)
                .bind(live.note.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(self.db("heartbeat"))?
                .rows_affected();
            if kept == 0 {
                return Err(self.lease_lost(&mut tx, name).await);
            }
        }
        let job = beat_row(name, self.fetch(&mut tx, name, false).await)?;
        tx.commit().await.map_err(self.db("heartbeat"))?;
        Ok(job)
    }

    /// `LeaseLost`, naming who holds the job now.
    pub(super) async fn lease_lost(&self, conn: &mut PgConnection, name: &str) -> StateError {
        lease_lost(name, self.fetch(conn, name, false).await.ok().as_ref())
    }

    /// Gives back every range `owner` holds (a range not walked to its end goes back to
    /// `pending`, cursor kept) and the job's lease if it holds it, then settles the job's
    /// status: `done` when every range is done; still `running` when another process holds a
    /// live lease on it (the control flag stays for that process to see); otherwise as `how`
    /// says. Serialised on the job's row, so that of two processes leaving together the second
    /// sees the first gone. A status settled other than `running` keeps `heap_bytes`, the
    /// table's heap as the run ended, in `heap_bytes_end`; a process that leaves the job to
    /// others leaves it to the last of them.
    pub async fn release(
        &self,
        conn: &mut PgConnection,
        name: &str,
        owner: &Owner,
        how: &Release,
        heap_bytes: Option<u64>,
    ) -> Result<(), StateError> {
        let mut tx = begin_state(conn).await.map_err(self.db("release"))?;
        let ranges = format!(
            "UPDATE {} SET owner = NULL, worker = NULL, heartbeat_at = NULL, rate = NULL, note = NULL, \
             status = CASE WHEN status = 'done' THEN 'done' ELSE 'pending' END, updated_at = now() \
             WHERE job = $1 AND owner = $2",
            self.ranges
        );
        statement(&ranges)
            .bind(name)
            .bind(&owner.0)
            .execute(&mut *tx)
            .await
            .map_err(self.db("release"))?;
        let row = self.fetch(&mut tx, name, true).await?;
        let leases = self.range_leases(&mut tx, name).await?;
        let settled = how.settle(&row, &leases, owner);
        let sql = format!(
            "UPDATE {} SET status = $3, last_error = coalesce($4, CASE WHEN $3 = 'running' THEN last_error END), \
             owner = CASE WHEN owner = $2 THEN NULL ELSE owner END, \
             heartbeat_at = CASE WHEN owner = $2 THEN NULL ELSE heartbeat_at END, \
             rate = NULL, note = CASE WHEN owner = $2 THEN NULL ELSE note END, \
             control = CASE WHEN $5 OR control = 'pause' THEN control END, updated_at = now(), \
             finished_at = CASE WHEN $3 = 'done' THEN now() END, \
             heap_bytes_end = CASE WHEN $3 = 'running' THEN heap_bytes_end ELSE $6 END \
             WHERE name = $1",
            self.jobs
        );
        statement(&sql)
            .bind(name)
            .bind(&owner.0)
            .bind(settled.status)
            .bind(settled.error)
            .bind(settled.keep_control)
            .bind(heap_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)))
            .execute(&mut *tx)
            .await
            .map_err(self.db("release"))?;
        tx.commit().await.map_err(self.db("release"))
    }
}
