//! The statements of a worker's hold on a range: claim, split, checkpoint, finish (see
//! `crate::state::checkpoint`).

use sqlx::mysql::MySqlArguments;
use sqlx::query::Query;
use sqlx::{MySql, MySqlConnection, Row as _};

use crate::mysql::session::statement;
use crate::mysql::sql::{Compare, json_part, typed};
use crate::state::decode::progress;
use crate::state::stored::{int4, int8, to_json};
use crate::state::*;

use super::jobs::KEYS_LEFT;
use super::*;

/// Binds who holds a range — owner, worker number, lease timeout in seconds — as the next
/// three parameters of `query`.
fn bind_holder<'q>(
    query: Query<'q, MySql, MySqlArguments>,
    w: &Holder<'_>,
) -> Query<'q, MySql, MySqlArguments> {
    query
        .bind(w.owner.0.clone())
        .bind(int4(w.worker))
        .bind(timeout_secs(w.lease_timeout))
}

/// The statements of a job's ranges that compare keys, built once with the key's casts.
///
/// Keys are stored as JSON arrays of text; two keys compare in the key's own order, never as
/// JSON or text: each part goes through its column's cast (`CAST({} AS SIGNED)`, a `CONVERT`
/// to the column's collation, …), and the parts compare lexicographically ([`Compare`]). A key
/// bound as a parameter is bound part by part, in [`Compare::order`]'s order.
#[derive(Debug, Clone)]
pub struct RangeSql {
    /// The guarded `UPDATE` of the job's row and the range's row together.
    checkpoint: String,
    /// Where the job stands after it.
    progress: String,
    /// Both, as `plan` shows them.
    shown: String,
    split: String,
    /// Which key part each of a comparison's parameters takes.
    order: Vec<usize>,
}

/// `left` and `right`, two keys given part by part, compared as `compare` says in the order of
/// a key whose columns have the casts `casts`.
fn in_key_order(
    compare: Compare,
    casts: &[String],
    left: impl Fn(usize) -> String,
    right: impl Fn(usize) -> String,
) -> String {
    if casts.is_empty() {
        return "TRUE".into();
    }
    compare.over(casts.len()).sql(
        |i| typed(&casts[i], &left(i)),
        |i| typed(&casts[i], &right(i)),
    )
}

/// A parameter, for one key part.
fn param(_: usize) -> String {
    "?".into()
}

impl RangeSql {
    /// The statements for a key whose column `i` reads back from text through the SQL
    /// template `key_casts[i]` (one `{}`).
    pub fn new(store: &Store, key_casts: &[String]) -> RangeSql {
        let (ranges, jobs) = (&store.ranges, &store.jobs);
        let stored = |column: &'static str| move |i| json_part(column, i);
        // The job's row first (`STRAIGHT_JOIN` reads, and so locks, `jobs` first), as every
        // transaction here that locks both takes them; then the range's, guarded: still this
        // worker's, still running, and not ending before the new cursor (a split moved it).
        // Nothing matches otherwise, and the batch rolls back.
        let checkpoint = format!(
            "UPDATE {jobs} j STRAIGHT_JOIN {ranges} r ON r.job = j.name AND r.id = ?
                SET j.rows_done = j.rows_done + ?, j.batches_done = j.batches_done + 1,
                    j.batch_size = ?, j.updated_at = {NOW},
                    r.`cursor` = ?, r.rows_done = r.rows_done + ?,
                    r.batches_done = r.batches_done + 1, r.keys_walked = r.keys_walked + ?,
                    r.batch_size = ?, r.updated_at = {NOW}
              WHERE j.name = ? AND r.owner = ? AND r.status = 'running' AND {}",
            in_key_order(Compare::UP_TO, key_casts, param, stored("r.`upper`")),
        );
        // The same transaction sees its own checkpoint, and what other workers committed.
        let progress = format!(
            "SELECT j.rows_done, j.batches_done, k.keys_walked, k.rows_walked, k.keys_left
               FROM {jobs} j,
                    (SELECT CAST(COALESCE(SUM(keys_walked), 0) AS SIGNED) AS keys_walked,
                            CAST(COALESCE(SUM(rows_done), 0) AS SIGNED) AS rows_walked,
                            {KEYS_LEFT} AS keys_left
                       FROM {ranges} WHERE job = ?) AS k
              WHERE j.name = ?"
        );
        let split = format!(
            "UPDATE {ranges} SET `upper` = ?, keys_estimate = keys_walked + ?, updated_at = {NOW}
              WHERE job = ? AND id = ? AND status = 'running' AND `upper` = ?
                AND (`cursor` IS NULL OR {}) AND {}",
            in_key_order(Compare::BEFORE, key_casts, stored("`cursor`"), param),
            in_key_order(Compare::BEFORE, key_casts, param, stored("`upper`")),
        );
        let order = if key_casts.is_empty() {
            vec![]
        } else {
            Compare::UP_TO.over(key_casts.len()).order()
        };
        RangeSql {
            shown: format!("{checkpoint};\n{progress}"),
            checkpoint,
            progress,
            split,
            order,
        }
    }

    /// The checkpoint's statements, for `plan` to show.
    pub fn checkpoint_sql(&self) -> &str {
        &self.shown
    }

    /// Binds `key` part by part for one comparison of the statement; a missing part binds
    /// NULL, which no comparison passes.
    fn bind_key<'q>(
        &self,
        mut query: Query<'q, MySql, MySqlArguments>,
        key: &[String],
    ) -> Query<'q, MySql, MySqlArguments> {
        for &i in &self.order {
            query = query.bind(key.get(i).cloned());
        }
        query
    }
}

impl StateSql<'_> {
    /// Takes the first range that is free, or whose holder is gone: its lease went stale, or
    /// its owner is among `gone` (processes of this host that no longer exist). Ranges locked
    /// by another claimer are skipped, never waited for (`SKIP LOCKED`). In the caller's
    /// transaction, which keeps the picked row locked until it commits.
    pub async fn claim_range(
        &self,
        conn: &mut MySqlConnection,
        w: &Holder<'_>,
        gone: &[Owner],
    ) -> Result<Option<RangeRow>, StateError> {
        let gone_sql = if gone.is_empty() {
            String::new()
        } else {
            format!(" OR owner IN ({})", vec!["?"; gone.len()].join(", "))
        };
        let free = format!(
            "status <> 'done' AND (owner IS NULL{gone_sql} \
             OR heartbeat_at < {NOW} - INTERVAL COALESCE(lease_s, {}) SECOND)",
            LEASE_TIMEOUT.as_secs()
        );
        let bind_gone = |mut q: Query<'static, MySql, MySqlArguments>| {
            for o in gone {
                q = q.bind(o.0.clone());
            }
            q
        };
        let pick = format!(
            "SELECT id FROM {} WHERE job = ? AND {free} ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            self.ranges
        );
        let picked = bind_gone(statement(&pick).bind(w.job.to_owned()))
            .fetch_optional(&mut *conn)
            .await
            .map_err(self.db("claim a range"))?;
        let Some(picked) = picked else {
            return Ok(None);
        };
        let id: i32 = picked.try_get(0).map_err(self.db("claim a range"))?;
        // Guarded again, so that a caller outside a transaction cannot take a range that
        // another claimed between the two statements.
        let take = format!(
            "UPDATE {} SET owner = ?, worker = ?, lease_s = ?, heartbeat_at = {NOW}, \
             status = 'running', rate = NULL, note = NULL, updated_at = {NOW} \
             WHERE job = ? AND id = ? AND {free}",
            self.ranges
        );
        let taken = bind_gone(
            bind_holder(statement(&take), w)
                .bind(w.job.to_owned())
                .bind(id),
        )
        .execute(&mut *conn)
        .await
        .map_err(self.db("claim a range"))?
        .rows_affected();
        if taken == 0 {
            return Ok(None);
        }
        self.range(conn, w.job, u32::try_from(id).unwrap_or_default())
            .await
    }

    /// Splits a running range as `split` says and takes the upper part, in the caller's
    /// transaction (which holds [`Store::lock_layout`]). `None` when the victim moved on in
    /// the meantime: its upper end changed, or its cursor passed the split point.
    pub async fn split(
        &self,
        tx: &mut MySqlConnection,
        sql: &RangeSql,
        w: &Holder<'_>,
        split: &Split,
    ) -> Result<Option<RangeRow>, StateError> {
        let shrink = statement(&sql.split)
            .bind(to_json(&split.at))
            .bind(split.keys_kept.map(int8))
            .bind(w.job.to_owned())
            .bind(int4(split.victim))
            .bind(to_json(&split.upper));
        let shrink = sql.bind_key(sql.bind_key(shrink, &split.at), &split.at);
        let shrunk = shrink
            .execute(&mut *tx)
            .await
            .map_err(self.db("split a range"))?
            .rows_affected();
        if shrunk == 0 {
            return Ok(None);
        }
        let next = format!(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM {} WHERE job = ?",
            self.ranges
        );
        let id: i64 = statement(&next)
            .bind(w.job)
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(self.db("split a range"))?;
        let id = i32::try_from(id).unwrap_or(i32::MAX);
        let insert = format!(
            "INSERT INTO {} (job, id, relation, `lower`, `upper`, `cursor`, status, owner,
                             worker, lease_s, heartbeat_at, keys_estimate, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, {NOW}, ?, {NOW})",
            self.ranges
        );
        let at = to_json(&split.at);
        let insert = statement(&insert)
            .bind(w.job.to_owned())
            .bind(id)
            .bind(split.relation.clone())
            .bind(at.clone())
            .bind(to_json(&split.upper))
            .bind(at);
        bind_holder(insert, w)
            .bind(split.keys_taken.map(int8))
            .execute(&mut *tx)
            .await
            .map_err(self.db("split a range"))?;
        self.range(tx, w.job, u32::try_from(id).unwrap_or_default())
            .await
    }

    /// The checkpoint, run inside the batch's own transaction: the range's cursor and
    /// counters and the job's counters move with the batch, or not at all. Two round trips:
    /// the guarded `UPDATE` of both rows, and the job's progress. Fails with `RangeTaken` if
    /// another process took the range over, `RangeShrunk` if a split moved its upper end below
    /// `cursor` (the batch must then roll back and run again), and `UnknownJob` after a reset.
    #[allow(clippy::too_many_arguments)]
    pub async fn checkpoint(
        &self,
        tx: &mut MySqlConnection,
        sql: &RangeSql,
        w: &Holder<'_>,
        range: u32,
        cursor: &[String],
        rows: u64,
        batch_size: u32,
    ) -> Result<Progress, StateError> {
        let update = statement(&sql.checkpoint)
            .bind(int4(range))
            .bind(int8(rows))
            .bind(int4(batch_size))
            .bind(to_json(cursor))
            .bind(int8(rows))
            .bind(int4(batch_size))
            .bind(int4(batch_size))
            .bind(w.job.to_owned())
            .bind(w.owner.0.clone());
        let moved = sql
            .bind_key(update, cursor)
            .execute(&mut *tx)
            .await
            .map_err(self.db("checkpoint"))?
            .rows_affected();
        if moved == 0 {
            return Err(self.why_not_mine(tx, w, range).await);
        }
        let row = statement(&sql.progress)
            .bind(w.job)
            .bind(w.job)
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.db("checkpoint"))?;
        match row {
            Some(row) => progress(&row).map_err(self.db("checkpoint")),
            None => Err(StateError::UnknownJob {
                name: w.job.into(),
                table: self.jobs.clone(),
            }),
        }
    }

    /// Marks a walked range done and gives up its lease.
    pub async fn finish_range(
        &self,
        conn: &mut MySqlConnection,
        w: &Holder<'_>,
        range: u32,
    ) -> Result<(), StateError> {
        let sql = format!(
            "UPDATE {} SET status = 'done', owner = NULL, worker = NULL, heartbeat_at = NULL, \
             rate = NULL, note = NULL, updated_at = {NOW} \
             WHERE job = ? AND id = ? AND owner = ?",
            self.ranges
        );
        let done = statement(&sql)
            .bind(w.job)
            .bind(int4(range))
            .bind(&w.owner.0)
            .execute(&mut *conn)
            .await
            .map_err(self.db("finish a range"))?
            .rows_affected();
        if done > 0 {
            return Ok(());
        }
        Err(self.why_not_mine(conn, w, range).await)
    }

    /// Why a statement that required our lease on `range` changed nothing.
    async fn why_not_mine(
        &self,
        conn: &mut MySqlConnection,
        w: &Holder<'_>,
        range: u32,
    ) -> StateError {
        match self.range(conn, w.job, range).await {
            Ok(now) => w.why_not_mine(range, now, &self.jobs),
            Err(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(casts: &[&str]) -> RangeSql {
        let casts: Vec<String> = casts.iter().map(|c| c.to_string()).collect();
        RangeSql::new(&Store::new("backfill", quoted), &casts)
    }

    #[test]
    fn the_checkpoint_guard_compares_in_the_keys_order() {
        let one = sql(&["CAST({} AS SIGNED)"]);
        assert!(
            one.checkpoint.ends_with(
                "AND (CAST(? AS SIGNED) <= \
                 CAST(JSON_UNQUOTE(JSON_EXTRACT(r.`upper`, '$[0]')) AS SIGNED))"
            ),
            "{}",
            one.checkpoint
        );
        assert_eq!(one.order, [0]);
    }

    #[test]
    fn composite_keys_bind_each_part_where_it_compares() {
        let two = sql(&["{} COLLATE utf8mb4_0900_ai_ci", "CAST({} AS SIGNED)"]);
        let guard = two.checkpoint.rsplit_once("'running' AND ").unwrap().1;
        assert_eq!(
            guard,
            "(? COLLATE utf8mb4_0900_ai_ci < \
             JSON_UNQUOTE(JSON_EXTRACT(r.`upper`, '$[0]')) COLLATE utf8mb4_0900_ai_ci \
             OR (? COLLATE utf8mb4_0900_ai_ci = \
             JSON_UNQUOTE(JSON_EXTRACT(r.`upper`, '$[0]')) COLLATE utf8mb4_0900_ai_ci \
             AND (CAST(? AS SIGNED) <= \
             CAST(JSON_UNQUOTE(JSON_EXTRACT(r.`upper`, '$[1]')) AS SIGNED))))"
        );
        assert_eq!(two.order, [0, 0, 1]);
        // The split binds the new upper end's parts twice: after the cursor, before the end.
        let params = two.split.matches('?').count();
        assert_eq!(params, 5 + 2 * two.order.len(), "{}", two.split);
    }

    #[test]
    fn plan_shows_both_statements_of_the_checkpoint() {
        let one = sql(&["CAST({} AS SIGNED)"]);
        let shown = one.checkpoint_sql();
        assert!(
            shown.starts_with("UPDATE `backfill`.`jobs` j STRAIGHT_JOIN"),
            "{shown}"
        );
        assert!(shown.contains(";\nSELECT j.rows_done"), "{shown}");
    }
}
