//! The leader of this process's workers: lays the job's ranges out, starts the monitor and
//! the guard once the start is through, runs the workers on their connections, shows their
//! events, and settles how the run ended.

use std::time::Instant;

use crate::db::Session;
use futures_util::future::join_all;
use tokio::sync::{mpsc, watch};

use crate::event::Event;
use crate::guard::Guard;
use crate::monitor::Monitor;
use crate::ranges::Share;
use crate::state::{JobRow, Pending, total};

use super::crew::{Crew, Start, Watchers};
use super::end::Ending;
use super::heartbeat::Heartbeat;
use super::vacuum::{Feed, Vacuum};
use super::worker::Worker;
use super::{EngineError, Outcome, Run, application_name, connect};

/// How the run began: the job's row when claimed, the workers this process runs, the job's
/// estimate, and when the run's clock started.
#[derive(Clone, Copy)]
struct Begun<'a> {
    row: &'a JobRow,
    workers: u32,
    /// The job's estimate of its pending rows.
    pending: Pending,
    started: Instant,
    /// The process's monitor, unless `[throttle]` turns it off.
    monitor: Option<&'a Monitor>,
    /// The process's latency guard, when `[guard]` turns it on.
    guard: Option<&'a Guard>,
}

/// What leads the workers of this process.
pub(super) struct Lead<'r, 'a> {
    pub(super) r: &'r Run<'a>,
    pub(super) share: Share<'r>,
    pub(super) heartbeat: &'r Heartbeat,
    /// This process joined a job another process runs.
    pub(super) joined: bool,
}

impl Lead<'_, '_> {
    /// Lays the ranges out, starts the monitor (unless `[throttle]` turns it off) and the
    /// workers, and shows their events until they have all ended; gives back a connection to
    /// release the leases on, if one is still good. The monitor starts only once the start
    /// is through: a lock that held the start back has been waited for, and its cooldown
    /// must not pause the first batches again.
    pub(super) async fn run(
        &self,
        mut conn: Session,
        row: &JobRow,
        emit: &mut dyn FnMut(&Event),
        shutdown: watch::Receiver<bool>,
    ) -> (Result<Outcome, EngineError>, Option<Session>) {
        let workers = match self.r.options {
            o if o.retry_failures => 1,
            o => o.workers.unwrap_or(self.r.job.batch.workers),
        };
        let (pending, laid_out) = match self
            .prepare(&mut conn, workers, row, emit, shutdown.clone())
            .await
        {
            Ok(Some(prepared)) => prepared,
            Ok(None) => {
                let (job, rows_done) = (self.r.job.name.clone(), row.rows_done);
                emit(&Event::Interrupted { job, rows_done });
                return (Ok(Outcome::Interrupted { rows_done }), Some(conn));
            }
            Err(e) => return (Err(e), Some(conn)),
        };
        // The run's time, for its speed, starts once it is through the start's wait.
        let started = Instant::now();
        // The total as every batch refines it, from the same figures: `resuming at …/TOTAL`
        // and the first progress line agree.
        let batch = laid_out.batch_size.unwrap_or(self.r.job.batch.size);
        let total_estimate = total(Some(&pending), &laid_out.progress(), batch);
        emit(&Event::Started {
            job: self.r.job.name.clone(),
            total_estimate,
            rows_done: row.rows_done,
            resumed: row.batches_done > 0,
            workers,
            joined: self.joined,
        });
        let monitor = self.r.job.throttle.enabled.then(|| self.monitor());
        let guard = self.r.job.guard.enabled.then(|| self.guard());
        if let Some(guard) = &guard {
            self.baseline(guard, emit, shutdown.clone()).await;
        }
        let begun = Begun {
            row,
            workers,
            pending,
            started,
            monitor: monitor.as_ref(),
            guard: guard.as_ref(),
        };
        let ended = self.work(conn, &begun, emit, shutdown).await;
        if let Some(monitor) = monitor {
            monitor.stop().await;
        }
        if let Some(guard) = guard {
            guard.stop().await;
        }
        ended
    }

    /// Runs the workers on `conn` and new connections, and shows their events until they
    /// have all ended.
    async fn work(
        &self,
        conn: Session,
        begun: &Begun<'_>,
        emit: &mut dyn FnMut(&Event),
        shutdown: watch::Receiver<bool>,
    ) -> (Result<Outcome, EngineError>, Option<Session>) {
        let Begun {
            row,
            workers,
            pending,
            started,
            monitor,
            guard,
        } = *begun;
        let mut conns = vec![conn];
        for _ in 1..workers {
            match connect(self.r.target, &application_name(&self.r.job.name)).await {
                Ok(c) => conns.push(c),
                Err(e) => {
                    let first = conns.into_iter().next();
                    return (Err(e), first);
                }
            }
        }
        let (events, mut received) = mpsc::unbounded_channel();
        let vacuum = Vacuum::of(self.r, monitor, self.heartbeat);
        let (feed, (stop_pacing, pacing_stopped)) = (Feed::default(), watch::channel(false));
        let every = self
            .r
            .job
            .vacuum
            .every
            .rows(pending.table_rows.unwrap_or(pending.rows));
        let pace_events = events.clone();
        let mut pacing = std::pin::pin!(async {
            if let Some(v) = &vacuum {
                v.pace(&feed, every, pacing_stopped, &pace_events).await;
            }
        });
        let final_stop = shutdown.clone();
        let crew = Crew::new(Start {
            r: self.r,
            share: self.share,
            heartbeat: self.heartbeat,
            watchers: Watchers { monitor, guard },
            feed: vacuum.as_ref().filter(|v| v.paces()).map(|_| &feed),
            totals: (row.rows_done, row.batches_done),
            pending,
            events,
            shutdown,
        });
        let app = application_name(&self.r.job.name);
        let mut ends = std::pin::pin!(join_all(
            conns.into_iter().enumerate().map(|(i, c)| Worker::new(
                &crew,
                i as u32,
                c,
                app.clone()
            )
            .run())
        ));
        let mut beats = self.heartbeat.watch();
        let (mut shown, mut heap_shown, mut paced) = ((0, 0, 0), None, false);
        let ends = loop {
            tokio::select! {
                biased;
                Some(event) = received.recv() => emit(&event),
                _ = beats.changed() => {
                    let beat = beats.borrow_and_update().clone();
                    if let Some(heap_bytes) = beat.heap_bytes.filter(|b| heap_shown != Some(*b)) {
                        heap_shown = Some(heap_bytes);
                        emit(&Event::Heap {
                            job: self.r.job.name.clone(),
                            heap_bytes_before: row.heap_bytes_start.unwrap_or(heap_bytes),
                            heap_bytes,
                        });
                    }
                    if let Some(job) = beat.job
                        && (job.workers, job.processes, job.hosts) != shown
                    {
                        shown = (job.workers, job.processes, job.hosts);
                        emit(&Event::Workers {
                            job: job.name,
                            workers: job.workers,
                            processes: job.processes,
                            hosts: job.hosts,
                        });
                    }
                }
                _ = &mut pacing, if !paced => paced = true,
                ends = &mut ends => break ends,
            }
        };
        stop_pacing.send_replace(true);
        if !paced {
            pacing.await;
        }
        while let Ok(event) = received.try_recv() {
            emit(&event);
        }
        let (results, mut conns): (Vec<_>, Vec<_>) = ends.into_iter().unzip();
        let mut conn = conns.swap_remove(0);
        for c in conns {
            c.hang_up().await;
        }
        let end = Ending {
            started,
            vacuum: vacuum.as_ref(),
            shutdown: final_stop,
            heap_bytes_start: row.heap_bytes_start,
            counted: crew.ledger.totals(),
            rows_at_start: row.rows_done,
        };
        let outcome = self
            .r
            .outcome(self.joined, results, &mut conn, end, emit)
            .await;
        (outcome, Some(conn))
    }
}
