//! How a job's key range is shared among workers — in one process, or in several on several
//! hosts — with the database as the only coordinator (ARCHITECTURE.md).
//!
//! When a job first runs, its range is laid out: each relation's range end is captured, and a
//! plain table is cut into one range per worker at keys drawn from a block sample
//! (`TABLESAMPLE SYSTEM`, weighted by the rows that still match `where`), never from an
//! `OFFSET` walk of the whole index; a partitioned table gets one range per leaf. A worker then
//! takes a range: a free one, or one whose holder is gone (stale lease, or a dead process of
//! this host); when none is left it splits the running range with the most keys left at its
//! middle (a sample, or a bounded walk of a small range) and takes the upper part — work
//! stealing, so that skew does not leave one worker alone at the end. The decisions are pure,
//! in `decide`; this module runs them against the database.

pub mod decide;

use thiserror::Error;

use crate::db::RangeSql;
use crate::db::{Conn, Failure, Session, classify};
use crate::job::Timeouts;
use crate::plan::{Plan, Walk};
use crate::state::{Holder, JobRow, Key, NewRange, RangeRow, Split, StateError, Store};

use decide::{Cut, Sampled};

/// How long the layout's transaction may sit idle between its statements before the server ends
/// it: long enough for a loaded client to cut a large sample, short enough that a process frozen
/// in it does not hold the layout lock for long.
const LAYOUT_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// What a worker shares its job's range through.
#[derive(Debug, Clone, Copy)]
pub struct Share<'a> {
    pub store: &'a Store,
    pub plan: &'a Plan,
    pub sql: &'a RangeSql,
    /// The job's timeouts, which also bound reading the target table here.
    pub timeouts: &'a Timeouts,
    /// The fewest keys a range must have left to be split.
    pub min_keys: u64,
}

/// What a worker got when it asked for work.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// A range to walk, claimed whole or split off another (`from`).
    Range {
        range: Box<RangeRow>,
        from: Option<u32>,
    },
    /// Nothing to take now: every range left is held and too small to split. Ask again later;
    /// a holder may finish, leave or die.
    Wait,
    /// Every range is done.
    AllDone,
}

/// Why sharing failed.
#[derive(Debug, Error)]
pub enum ShareError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot read the key range of {relation}")]
    Read {
        relation: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "range {range} walks {relation}, which is no longer a partition of {table}; run `backfill run --restart` to lay the job out again"
    )]
    UnknownRelation {
        range: u32,
        relation: String,
        table: String,
    },
}

impl ShareError {
    /// Whether to retry (after reconnecting) or stop.
    pub fn failure(&self) -> Failure {
        match self {
            ShareError::Read { source, .. }
            | ShareError::State(StateError::Database { source, .. }) => classify(source),
            _ => Failure::Fatal,
        }
    }
}

impl Share<'_> {
    /// The walk of the relation a range names.
    pub fn walk(&self, range: &RangeRow) -> Result<&Walk, ShareError> {
        self.plan
            .walk_of(&range.relation)
            .ok_or_else(|| ShareError::UnknownRelation {
                range: range.id,
                relation: range.relation.clone(),
                table: self.plan.table.clone(),
            })
    }

    fn read(&self, relation: &str) -> impl FnOnce(sqlx::Error) -> ShareError {
        let relation = relation.to_owned();
        move |source| ShareError::Read { relation, source }
    }

    /// Lays out the job's ranges unless it has some: cut into `pieces` (one per leaf for a
    /// partitioned table), or — for a job started by a version without ranges — one range
    /// that resumes from its stored cursor. Any process of the job may call it; the first one
    /// lays out, the others find the ranges there.
    pub async fn lay_out(
        &self,
        session: &mut Session,
        job: &str,
        pieces: usize,
    ) -> Result<(), ShareError> {
        let t = self.timeouts;
        // The cut decodes and sorts a sample of up to a few thousand blocks' keys between two
        // statements: on a starved client that can outlast the idle limit of an ordinary
        // transaction, so this one gets [`LAYOUT_IDLE`]. It runs once per job.
        let (mut tx, _, _) = session
            .begin_batch(t.statement, t.lock, LAYOUT_IDLE, false)
            .await
            .map_err(self.read(&self.plan.table))?;
        self.store.lock_layout(tx.conn(), job).await?;
        let row = self.store.fetch(tx.conn(), job, false).await?;
        if row.ranges > 0 {
            tx.commit().await.map_err(self.read(&self.plan.table))?;
            return Ok(());
        }
        let (ranges, end) = match legacy(&row, self.plan) {
            Some(range) => {
                let end = Some(range.upper.clone());
                (vec![range], end)
            }
            None => self.cut_relations(tx.conn(), pieces).await?,
        };
        self.store
            .lay_out(tx.conn(), job, &ranges, end.as_ref())
            .await?;
        tx.commit().await.map_err(self.read(&self.plan.table))
    }

    /// Every relation's range, cut into pieces; and the table's range end (a plain table
    /// only).
    async fn cut_relations(
        &self,
        mut conn: Conn<'_>,
        pieces: usize,
    ) -> Result<(Vec<NewRange>, Option<Key>), ShareError> {
        let pieces = if self.plan.partitioned { 1 } else { pieces };
        let mut ranges = Vec::new();
        let mut table_end = None;
        for walk in self.plan.walks() {
            let read = || self.read(&walk.relation);
            let Some(end) = conn.reborrow().range_end(walk).await.map_err(read())? else {
                continue;
            };
            let size = conn
                .reborrow()
                .relation_size(&walk.relation)
                .await
                .map_err(read())?;
            let percent = decide::layout_percent(size.blocks, pieces);
            let sample = conn
                .reborrow()
                .sample(walk, None, &end, percent)
                .await
                .map_err(read())?;
            let keys = decide::Keys {
                sampled: sample.len(),
                percent,
                counted: size.rows,
            };
            ranges.extend(pieces_of(walk, &sample, pieces, keys, &end));
            if !self.plan.partitioned {
                table_end = Some(end);
            }
        }
        Ok((ranges, table_end))
    }

    /// Takes work for worker `w`: a free or abandoned range, else the upper part of the
    /// running range with the most keys left.
    pub async fn take(&self, session: &mut Session, w: &Holder<'_>) -> Result<Taken, ShareError> {
        let store = self.store;
        let mut tx = session
            .begin_state()
            .await
            .map_err(self.read(&self.plan.table))?;
        let gone = decide::gone(&store.range_leases(tx.conn(), w.job).await?);
        let claimed = store.claim_range(tx.conn(), w, &gone).await?;
        tx.commit().await.map_err(self.read(&self.plan.table))?;
        if let Some(range) = claimed {
            return Ok(Taken::Range {
                range: Box::new(range),
                from: None,
            });
        }
        let mut tx = session
            .begin_read_only()
            .await
            .map_err(self.read(&self.plan.table))?;
        let ranges = store.ranges(tx.conn(), w.job).await?;
        tx.commit().await.map_err(self.read(&self.plan.table))?;
        if ranges.iter().all(|r| r.status == "done") {
            return Ok(Taken::AllDone);
        }
        let Some(victim) = decide::victim(&ranges, self.min_keys) else {
            return Ok(Taken::Wait);
        };
        let Some(at) = self.middle(session, victim).await? else {
            return Ok(Taken::Wait);
        };
        let split = Split {
            victim: victim.id,
            upper: victim.upper.clone(),
            at,
            relation: victim.relation.clone(),
            keys_kept: victim.remaining_keys().map(|k| k / 2),
            keys_taken: victim.remaining_keys().map(|k| k - k / 2),
        };
        let t = self.timeouts;
        let (mut tx, _) = session
            .begin_bounded(t.statement, t.lock, false)
            .await
            .map_err(self.read(&victim.relation))?;
        store.lock_layout(tx.conn(), w.job).await?;
        let taken = store.split(tx.conn(), self.sql, w, &split).await?;
        tx.commit().await.map_err(self.read(&victim.relation))?;
        Ok(match taken {
            Some(range) => Taken::Range {
                range: Box::new(range),
                from: Some(victim.id),
            },
            None => Taken::Wait,
        })
    }

    /// Where to split `victim`: `None` when fewer keys than [`Share::min_keys`] are left after
    /// its cursor.
    async fn middle(
        &self,
        session: &mut Session,
        victim: &RangeRow,
    ) -> Result<Option<Key>, ShareError> {
        let walk = self.walk(victim)?;
        let t = self.timeouts;
        let (mut tx, _) = session
            .begin_bounded(t.statement, t.lock, true)
            .await
            .map_err(self.read(&walk.relation))?;
        let at = self
            .find_middle(tx.conn(), walk, victim)
            .await
            .map_err(self.read(&walk.relation))?;
        tx.commit().await.map_err(self.read(&walk.relation))?;
        Ok(at)
    }

    async fn find_middle(
        &self,
        mut conn: Conn<'_>,
        walk: &Walk,
        victim: &RangeRow,
    ) -> Result<Option<Key>, sqlx::Error> {
        let (cursor, upper) = (victim.cursor.as_deref(), &victim.upper);
        let enough = conn
            .reborrow()
            .upper_bound(walk, cursor, upper, self.min_keys)
            .await?;
        if enough.is_none() {
            return Ok(None);
        }
        let blocks = conn.reborrow().relation_size(&walk.relation).await?.blocks;
        let n = match decide::cut(victim.remaining_keys(), blocks) {
            Cut::Offset(n) => n,
            Cut::Sample(percent) => {
                let sample = conn.reborrow().sample(walk, cursor, upper, percent).await?;
                if let Some(key) = decide::median(&sample) {
                    return Ok(Some(key));
                }
                self.min_keys / 2
            }
        };
        conn.upper_bound(walk, cursor, upper, n.max(1)).await
    }
}

/// The one range of a job started by a version without ranges: its stored cursor, range end
/// and counters, on the table itself.
fn legacy(row: &JobRow, plan: &Plan) -> Option<NewRange> {
    let upper = row.range_end.clone()?;
    Some(NewRange {
        relation: plan.table.clone(),
        lower: None,
        upper,
        keys_estimate: None,
        cursor: row.cursor.clone(),
        rows_done: row.rows_done,
        batches_done: row.batches_done,
    })
}

/// `walk`'s relation, ending at `end`, cut into `pieces` at the sample's split points; each
/// piece's keys estimated from its share of the sample (see [`decide::Keys`]).
fn pieces_of(
    walk: &Walk,
    sample: &[Sampled],
    pieces: usize,
    keys: decide::Keys,
    end: &Key,
) -> Vec<NewRange> {
    let points = decide::split_points(sample, pieces);
    let mut counts = vec![0usize; points.len() + 1];
    let mut piece = 0;
    for s in sample {
        counts[piece] += 1;
        if points.get(piece) == Some(&s.key) {
            piece += 1;
        }
    }
    let lowers = std::iter::once(None).chain(points.iter().cloned().map(Some));
    let uppers = points.iter().cloned().chain(std::iter::once(end.clone()));
    lowers
        .zip(uppers)
        .zip(counts)
        .map(|((lower, upper), count)| NewRange {
            relation: walk.relation.clone(),
            cursor: lower.clone(),
            lower,
            upper,
            keys_estimate: Some(keys.of(count)),
            rows_done: 0,
            batches_done: 0,
        })
        .collect()
}
