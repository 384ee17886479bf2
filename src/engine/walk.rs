//! The walk over one range: the batch loop a worker runs on a range it took, until the
//! range's cursor reaches its upper end, the range is taken over by another process, or the
//! worker must stop.
//!
//! After a batch it feeds the worker's sizer, paces the next one (`pace`) and reports it; on a
//! failure it tells a yield (not an error) and a split of the range under it (the batch runs
//! again inside the smaller range) from an error, and narrows a batch that failed on a row's
//! data down to that row (`narrow.rs`); after anything but a commit it re-reads the range,
//! whose stored row — not the worker's copy — says where the walk stands and whose it is.

use std::time::{Duration, Instant};

use crate::event::{Event, millis};
use crate::monitor::Monitor;
use crate::rate::RateWindow;
use crate::state::{RangeRow, StateError};

use super::EngineError;
use super::batch::{self, BatchError, Committed};
use super::narrow;
use super::pace::{After, Pace, Pacing};
use super::worker::{Failures, Step, Stop, Worker};

/// What re-reading a range found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reread {
    /// Still ours; the copy is up to date.
    Mine,
    /// The row could not be read; the copy stays (the next attempt will tell).
    Unread,
    /// Another process holds it now (named), or it is done.
    Lost(String),
}

/// How a walk over one range ended.
pub(super) enum Walked {
    /// The range is walked to its end and marked done.
    Done,
    /// Another process took the range over (this one was frozen or cut off for too long).
    Lost(String),
}

impl Worker<'_, '_, '_> {
    /// Walks `range` (split off `from`, when stolen). `Some` when the worker must stop.
    pub(super) async fn walk(
        &mut self,
        mut range: RangeRow,
        from: Option<u32>,
    ) -> Result<Option<Stop>, EngineError> {
        let (worker, id, relation) = (self.id, range.id, range.relation.clone());
        self.send(|job| Event::Claimed {
            job,
            worker,
            range: id,
            relation,
            split_from: from,
        });
        self.range = Some(range.id);
        let result = self.walk_range(&mut range).await;
        self.range = None;
        self.crew.rate(range.id, None);
        match result {
            Ok(Ok(Walked::Done)) => Ok(None),
            Ok(Ok(Walked::Lost(owner))) => {
                let (worker, range) = (self.id, range.id);
                self.send(|job| Event::Lost {
                    job,
                    worker,
                    range,
                    owner,
                });
                Ok(None)
            }
            Ok(Err(stop)) => Ok(Some(stop)),
            Err(e) => Err(e),
        }
    }

    async fn walk_range(
        &mut self,
        range: &mut RangeRow,
    ) -> Result<Result<Walked, Stop>, EngineError> {
        let walk = self
            .crew
            .share
            .walk(range)
            .map_err(|e| EngineError::Batch {
                at: format!("range {}", range.id),
                source: e.into(),
            })?;
        let batch = &self.crew.r.job.batch;
        let pacing = Pacing::of(self.crew.r.job);
        let mut failures = Failures::default();
        let mut pace = Pace::default();
        let mut rate = RateWindow::default();
        loop {
            let throttled = match self.obey().await? {
                Step::Stop(stop) => return Ok(Err(stop)),
                Step::Batch { throttled } => throttled,
            };
            if std::mem::take(&mut self.doubted)
                && let Reread::Lost(owner) = self.reload(range).await?
            {
                return Ok(Ok(Walked::Lost(owner)));
            }
            if range.is_walked() {
                match self.finish(range).await {
                    Ok(walked) => return Ok(Ok(walked)),
                    Err(e) => {
                        let at = describe(range);
                        if let Some(stop) = self.recover(e, Some(at), &mut failures).await? {
                            return Ok(Err(stop));
                        }
                        continue;
                    }
                }
            }
            let size = if throttled {
                self.sizer.size().min(batch.min)
            } else {
                self.sizer.size()
            };
            let turn = if throttled {
                Some(self.crew.turn().await)
            } else {
                None
            };
            let result =
                match batch::run(&mut self.conn, self.crew, self.id, walk, range, size).await {
                    Err(e) if narrow::applies(&e) => {
                        narrow::run(&mut self.conn, self.crew, self.id, walk, range, size).await
                    }
                    result => result,
                };
            if result.is_err() {
                // Nothing of a rolled-back batch is charged to the WAL budget.
                self.crew.wal_abandoned(self.id);
            }
            let seen = self
                .crew
                .monitor
                .map(|m: &Monitor| m.batch_ended(self.id))
                .unwrap_or_default();
            match result {
                Ok(mut done) => {
                    failures = Failures::default();
                    self.sizer
                        .record(size, done.elapsed.saturating_sub(seen.lock_wait));
                    let pause = pace.next(
                        &pacing,
                        &After {
                            elapsed: done.elapsed,
                            throttled,
                            guard_ratio: self.crew.guard_ratio(),
                            wal_wait: done.wal.map_or(Duration::ZERO, |(_, wait)| wait),
                        },
                    );
                    self.committed(range, &done, size, pause, &mut rate);
                    if let Some(row) = done.failed.take()
                        && let Some(stop) = self.stopped_at(range.id, row)
                    {
                        return Err(stop);
                    }
                    if let Some(stop) = self.sleep(pause).await {
                        return Ok(Err(stop));
                    }
                }
                Err(_) if seen.yielded => {
                    self.sizer.yielded();
                    let reason = self.crew.decision().map(|d| d.reason).unwrap_or_default();
                    let (worker, id) = (self.id, range.id);
                    self.send(|job| Event::Yielded {
                        job,
                        worker,
                        range: id,
                        reason,
                    });
                    if let Reread::Lost(owner) = self.reload(range).await? {
                        return Ok(Ok(Walked::Lost(owner)));
                    }
                }
                Err(BatchError::State(StateError::RangeTaken { owner, .. })) => {
                    return Ok(Ok(Walked::Lost(owner)));
                }
                Err(BatchError::State(e @ StateError::RangeShrunk { .. })) => {
                    let upper = range.upper.clone();
                    match self.reload(range).await? {
                        Reread::Lost(owner) => return Ok(Ok(Walked::Lost(owner))),
                        // The checkpoint put the batch outside a range that did not move: the
                        // key's order in SQL disagrees with the walk's. Stop, never loop.
                        Reread::Mine if range.upper == upper => {
                            return Err(EngineError::Batch {
                                at: describe(range),
                                source: e.into(),
                            });
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    let at = describe(range);
                    if let Some(stop) = self.recover(e, Some(at), &mut failures).await? {
                        return Ok(Err(stop));
                    }
                    if let Reread::Lost(owner) = self.reload(range).await? {
                        return Ok(Ok(Walked::Lost(owner)));
                    }
                }
            }
            drop(turn);
        }
    }

    /// Takes in a committed batch: the range's copy, the rate, the event (with the `pause`
    /// that follows it).
    fn committed(
        &mut self,
        range: &mut RangeRow,
        done: &Committed,
        size: u32,
        pause: Duration,
        rate: &mut RateWindow,
    ) {
        range.cursor = Some(done.upper.clone());
        range.rows_done += done.rows;
        range.batches_done += 1;
        range.keys_walked += u64::from(done.keys);
        rate.push(Instant::now(), range.rows_done);
        self.crew.rate(range.id, rate.per_sec());
        let totals = self.crew.committed(&range.relation, done.rows, done.keys);
        let (worker, id, rows) = (self.id, range.id, done.rows);
        let (elapsed_ms, pause_ms) = (millis(done.elapsed), millis(pause));
        let wal_bytes = done.wal.map(|(bytes, _)| bytes);
        self.send(|job| Event::Batch {
            job,
            worker,
            range: id,
            rows,
            rows_done: totals.rows_done,
            batches_done: totals.batches_done,
            total_estimate: totals.total_estimate,
            batch_size: size,
            elapsed_ms,
            pause_ms,
            wal_bytes,
        });
    }

    /// Marks the walked range done; `Lost` if it is no longer ours.
    async fn finish(&mut self, range: &RangeRow) -> Result<Walked, BatchError> {
        let holder = self.crew.holder(self.id);
        let store = self.crew.r.store;
        let mut tx = self.conn.begin_state().await?;
        match store.finish_range(tx.conn(), &holder, range.id).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(Walked::Done)
            }
            Err(StateError::RangeTaken { owner, .. }) => Ok(Walked::Lost(owner)),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-reads the range after anything but a commit: a commit may have landed before a
    /// connection broke, and a split may have moved its upper end.
    async fn reload(&mut self, range: &mut RangeRow) -> Result<Reread, EngineError> {
        let store = self.crew.r.store;
        let job = self.crew.job();
        let read = async {
            let mut tx = self.conn.begin_read_only().await?;
            let row = store.range(tx.conn(), job, range.id).await;
            tx.commit().await?;
            Ok::<_, BatchError>(row?)
        };
        match read.await {
            Ok(Some(row)) => {
                let holder = row.lease.as_ref().map(|l| l.owner.0.clone());
                let mine = holder.as_deref() == Some(self.crew.r.owner.0.as_str())
                    && row.worker == Some(self.id)
                    && row.status == "running";
                if !mine {
                    return Ok(Reread::Lost(holder.unwrap_or_else(|| "nobody".into())));
                }
                *range = row;
                Ok(Reread::Mine)
            }
            Ok(None) => Err(EngineError::LeaseLost(format!(
                "job {:?} was reset while this run was walking it",
                job
            ))),
            Err(e) => {
                tracing::debug!("cannot re-read range {}: {e}", range.id);
                Ok(Reread::Unread)
            }
        }
    }
}

/// Where a failure happened, for messages: `batch after cursor (5000) of range 3`.
fn describe(range: &RangeRow) -> String {
    let cursor = match &range.cursor {
        Some(values) => format!("({})", values.join(", ")),
        None => "(start)".into(),
    };
    format!("batch after cursor {cursor} of range {}", range.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_says_where_in_which_range() {
        let range = RangeRow {
            id: 3,
            relation: "\"public\".\"t\"".into(),
            lower: None,
            upper: vec!["acme".into(), "99".into()],
            cursor: Some(vec!["acme".into(), "42".into()]),
            status: "running".into(),
            lease: None,
            worker: None,
            rows_done: 0,
            batches_done: 0,
            keys_estimate: None,
            keys_walked: 0,
            batch_size: None,
            rate: None,
            note: None,
        };
        assert_eq!(describe(&range), "batch after cursor (acme, 42) of range 3");
        let start = RangeRow {
            cursor: None,
            ..range
        };
        assert_eq!(describe(&start), "batch after cursor (start) of range 3");
    }
}
