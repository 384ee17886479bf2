//! The statements of a process's heartbeat and release (see `crate::state::heartbeat`).

use sqlx::MySqlConnection;

use crate::mysql::session::statement;
use crate::state::stored::int8;
use crate::state::*;

use super::*;

impl StateSql<'_> {
    /// Refreshes the leases of `owner` on the job — the job's own lease when `holds_job`
    /// (first, as every transaction here takes the job's row before range rows), and every
    /// range it holds — and publishes `live`. Returns the job's row as it now stands (the
    /// operator's control flag; every process's totals, live workers, processes and hosts).
    /// Fails with `LeaseLost` when the job's lease went to another runner, or the job was
    /// reset.
    pub async fn heartbeat(
        &self,
        conn: &mut MySqlConnection,
        name: &str,
        owner: &Owner,
        holds_job: bool,
        live: &Live,
    ) -> Result<JobRow, StateError> {
        let mut tx = begin(conn, Mode::Write)
            .await
            .map_err(self.db("heartbeat"))?;
        if holds_job {
            let job = format!(
                "UPDATE {} SET heartbeat_at = {NOW}, note = ? WHERE name = ? AND owner = ?",
                self.jobs
            );
            let kept = statement(&job)
                .bind(live.note.as_deref())
                .bind(name)
                .bind(&owner.0)
                .execute(&mut *tx)
                .await
                .map_err(self.db("heartbeat"))?
                .rows_affected();
            if kept == 0 {
                return Err(self.lease_lost(&mut tx, name).await);
            }
        }
        // Each range's rate by its id; a range without one has none.
        let rates = if live.rates.is_empty() {
            "NULL".to_owned()
        } else {
            format!(
                "CASE id {} END",
                " WHEN ? THEN ?".repeat(live.rates.len()).trim_start()
            )
        };
        let ranges = format!(
            "UPDATE {} SET heartbeat_at = {NOW}, note = ?, rate = {rates} \
             WHERE job = ? AND owner = ?",
            self.ranges
        );
        let mut refresh = statement(&ranges).bind(live.note.clone());
        for (id, rate) in &live.rates {
            refresh = refresh
                .bind(i32::try_from(*id).unwrap_or(i32::MAX))
                .bind(*rate);
        }
        refresh
            .bind(name.to_owned())
            .bind(owner.0.clone())
            .execute(&mut *tx)
            .await
            .map_err(self.db("heartbeat"))?;
        let job = beat_row(name, self.fetch(&mut tx, name, false).await)?;
        tx.commit().await.map_err(self.db("heartbeat"))?;
        Ok(job)
    }

    /// `LeaseLost`, naming who holds the job now.
    pub(super) async fn lease_lost(&self, conn: &mut MySqlConnection, name: &str) -> StateError {
        lease_lost(name, self.fetch(conn, name, false).await.ok().as_ref())
    }

    /// Gives back every range `owner` holds (a range not walked to its end goes back to
    /// `pending`, cursor kept) and the job's lease if it holds it, then settles the job's
    /// status as [`Release::settle`] says. Serialised on the job's row, locked first, so that
    /// of two processes leaving together the second sees the first gone. A status settled
    /// other than `running` keeps `heap_bytes`, the table's heap as the run ended, in
    /// `heap_bytes_end`; a process that leaves the job to others leaves it to the last of them.
    pub async fn release(
        &self,
        conn: &mut MySqlConnection,
        name: &str,
        owner: &Owner,
        how: &Release,
        heap_bytes: Option<u64>,
    ) -> Result<(), StateError> {
        let mut tx = begin(conn, Mode::Write).await.map_err(self.db("release"))?;
        self.lock_job(&mut tx, name).await?;
        let ranges = format!(
            "UPDATE {} SET owner = NULL, worker = NULL, heartbeat_at = NULL, rate = NULL, \
             note = NULL, status = CASE WHEN status = 'done' THEN 'done' ELSE 'pending' END, \
             updated_at = {NOW} WHERE job = ? AND owner = ?",
            self.ranges
        );
        statement(&ranges)
            .bind(name)
            .bind(&owner.0)
            .execute(&mut *tx)
            .await
            .map_err(self.db("release"))?;
        let row = self.fetch(&mut tx, name, false).await?;
        let leases = self.range_leases(&mut tx, name).await?;
        let settled = how.settle(&row, &leases, owner);
        // MySQL assigns left to right, each assignment seeing the ones before it: `owner`
        // goes last, after the columns that ask whether it was ours.
        let sql = format!(
            "UPDATE {} SET status = ?, \
             last_error = COALESCE(?, CASE WHEN ? = 'running' THEN last_error END), \
             heartbeat_at = CASE WHEN owner = ? THEN NULL ELSE heartbeat_at END, \
             note = CASE WHEN owner = ? THEN NULL ELSE note END, \
             rate = NULL, control = CASE WHEN ? OR control = 'pause' THEN control END, \
             updated_at = {NOW}, finished_at = CASE WHEN ? = 'done' THEN {NOW} END, \
             heap_bytes_end = CASE WHEN ? = 'running' THEN heap_bytes_end ELSE ? END, \
             owner = CASE WHEN owner = ? THEN NULL ELSE owner END \
             WHERE name = ?",
            self.jobs
        );
        statement(&sql)
            .bind(settled.status)
            .bind(settled.error)
            .bind(settled.status)
            .bind(&owner.0)
            .bind(&owner.0)
            .bind(settled.keep_control)
            .bind(settled.status)
            .bind(settled.status)
            .bind(heap_bytes.map(int8))
            .bind(&owner.0)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(self.db("release"))?;
        tx.commit().await.map_err(self.db("release"))
    }
}
