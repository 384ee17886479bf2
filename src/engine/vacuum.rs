//! The process's vacuums (ARCHITECTURE.md): vacuum pacing while the job runs, and the final
//! `VACUUM (ANALYZE)` when it is done.
//!
//! Pacing: the crew feeds a [`Feed`] with the rows each committed batch changed, by relation;
//! one task per process ([`Vacuum::pace`]) vacuums the relations that changed
//! (`VACUUM (INDEX_CLEANUP OFF, TRUNCATE OFF, SKIP_LOCKED)`, heap only) once together they
//! changed `every` rows, one at a time, on a connection of its own, while the batches go on:
//! the space of the row versions they replaced goes into the free space map, where the next
//! batches' new versions find it. A partitioned table's leaves are vacuumed one by one, only
//! those that changed: a vacuum of the parent would walk every leaf. It never starts while
//! the run is paused (monitor or operator).
//!
//! Several processes of a job each pace their own batches. Two of their vacuums of one
//! relation never run together, and neither waits for the other: a vacuum's
//! `SHARE UPDATE EXCLUSIVE` conflicts with itself, and `SKIP_LOCKED` skips a relation whose
//! lock is taken — the skipping process's rows are covered by the vacuum that runs (it
//! removes every version dead when it started). Before each pacing vacuum the relation's locks
//! are read, so that a skip (for an autovacuum, another process, DDL) is a line in the debug
//! log rather than the server's `WARNING`; a skip still decided by the server in the instant
//! between shows as that warning.
//!
//! Every vacuum is watched by the monitor as a batch is ([`Monitor::statement_started`]): a
//! session that waits for its lock (an `ALTER TABLE` queued behind it) makes the monitor
//! cancel it at its next `batch_poll`, and the run pauses as for a batch; the relation's rows
//! stay due, so it runs again once the way is clear. When the run stops, the vacuum running
//! is cancelled the same way ([`Monitor::withdraw`]).
//!
//! The final vacuum ([`Vacuum::finish`]) runs once every range is done, by the process that
//! finishes the job, on the run's own connection (pacing's is closed by then), so that a run
//! never holds more than one connection for its vacuums.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};

use crate::db::{Failure, Session, Target, classify, error_chain};
use crate::disk::Vacuums;
use crate::event::{Event, VacuumState, millis};
use crate::monitor::sample::vacuum_marker;
use crate::monitor::{Action, Decision, Monitor};
use crate::state::{JobRow, Live};

use super::heartbeat::Heartbeat;
use super::{Run, application_name};

/// The share of the table's rows a `--retry-failures` run must change for its final vacuum
/// to run. A retry changes the few rows set aside, each leaving one dead version: a full
/// `VACUUM (ANALYZE)` of a large table for them would read every page to clean a handful, and
/// autovacuum cleans them anyway once the application's own changes add up (it waits for 20 %
/// of the table by default).
const RETRY_VACUUM_SHARE: f64 = 0.01;

/// Whether a `--retry-failures` run that changed `changed` rows vacuums the table of
/// `table_rows` rows (`None`: not counted yet) at its end: only when it changed at least
/// [`RETRY_VACUUM_SHARE`] of them, or when the table's size is unknown.
pub(super) fn retry_vacuums(changed: u64, table_rows: Option<u64>) -> bool {
    table_rows.is_none_or(|rows| changed as f64 >= rows as f64 * RETRY_VACUUM_SHARE)
}

/// The id the vacuum's statements are watched under by the monitor: no worker has it.
const VACUUM_ID: u32 = u32::MAX;

/// How often pacing looks whether a vacuum is due and may start, besides when a batch
/// commits: a vacuum that fell due during a pause starts soon after it.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// How long a vacuum may take to end once the monitor was asked to cancel it, before its
/// connection is dropped.
const WITHDRAW_WITHIN: Duration = Duration::from_secs(5);

/// How many times the final vacuum gives way to DDL before it is left to the operator.
const FINAL_YIELDS: u32 = 10;

/// How long the final vacuum waits for the monitor (or an operator) to stop holding the run
/// back before it is left to the operator: the job is done, and a process that waits on an
/// abandoned replication slot or a lagging replica would never end.
const FINAL_PATIENCE: Duration = Duration::from_secs(60);

/// Rows committed since each relation's last vacuum.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tally(BTreeMap<String, u64>);

impl Tally {
    fn add(&mut self, relation: &str, rows: u64) {
        if rows > 0 {
            *self.0.entry(relation.to_owned()).or_default() += rows;
        }
    }

    /// The relations to vacuum now: every one changed since its last vacuum, once together
    /// they changed `every` rows or more.
    fn due(&self, every: u64) -> Vec<String> {
        if self.0.values().sum::<u64>() < every {
            return Vec::new();
        }
        self.0.keys().cloned().collect()
    }

    /// Forgets `relation`'s rows, which a vacuum starts on; how many there were.
    fn take(&mut self, relation: &str) -> u64 {
        self.0.remove(relation).unwrap_or(0)
    }
}

/// What the crew feeds pacing with: the rows each committed batch changed, by relation.
#[derive(Debug, Default)]
pub(super) struct Feed {
    tally: Mutex<Tally>,
    fed: Notify,
}

impl Feed {
    /// A batch of `relation` committed `rows` changed rows.
    pub(super) fn add(&self, relation: &str, rows: u64) {
        if let Ok(mut tally) = self.tally.lock() {
            tally.add(relation, rows);
        }
        self.fed.notify_one();
    }

    fn due(&self, every: u64) -> Vec<String> {
        self.tally.lock().map(|t| t.due(every)).unwrap_or_default()
    }

    fn take(&self, relation: &str) -> u64 {
        self.tally.lock().map(|mut t| t.take(relation)).unwrap_or(0)
    }
}

/// Whether a vacuum may start: the monitor says go or throttle (not while it pauses or
/// yields, nor before its first decision), and no operator holds the job paused.
fn may_start(decision: Option<&Decision>, control: Option<&str>) -> bool {
    control != Some("pause")
        && decision.is_some_and(|d| matches!(d.action, Action::Go | Action::Throttle))
}

/// How one vacuum ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Vacuumed {
    state: VacuumState,
    elapsed: Duration,
    reason: Option<String>,
    /// Its connection is lost, or was given up on with the vacuum still running.
    broken: bool,
}

impl Vacuumed {
    fn new(state: VacuumState, since: Instant, reason: Option<String>) -> Vacuumed {
        Vacuumed {
            state,
            elapsed: since.elapsed(),
            reason,
            broken: false,
        }
    }
}

/// What a process vacuums with: pacing on a connection of its own (made on first use), the
/// final vacuum on the run's, one vacuum at a time, each watched by the monitor.
pub(super) struct Vacuum<'r> {
    job: &'r str,
    target: &'r Target,
    monitor: &'r Monitor,
    heartbeat: &'r Heartbeat,
    vacuums: Vacuums,
    /// The `application_name` of the job's sessions: the monitor counts the vacuum as ours.
    app: String,
    /// Tells this process's vacuums from other processes' in their markers: the owner's pid
    /// and nonce (digits and hex).
    token: String,
    rounds: AtomicU64,
}

impl<'r> Vacuum<'r> {
    /// The vacuums of `r`'s run, if it vacuums at all; only with the monitor, which cancels a
    /// vacuum that DDL waits for.
    pub fn of(
        r: &'r Run<'_>,
        monitor: Option<&'r Monitor>,
        heartbeat: &'r Heartbeat,
    ) -> Option<Vacuum<'r>> {
        let monitor = monitor.filter(|_| r.vacuums.any())?;
        let mut id = r.owner.0.rsplit(':');
        let (nonce, pid) = (id.next().unwrap_or_default(), id.next().unwrap_or_default());
        Some(Vacuum {
            job: &r.job.name,
            target: r.target,
            monitor,
            heartbeat,
            vacuums: r.vacuums,
            app: application_name(&r.job.name),
            token: format!("{pid}.{nonce}"),
            rounds: AtomicU64::new(0),
        })
    }

    /// Whether the run paces itself with vacuums.
    pub fn paces(&self) -> bool {
        self.vacuums.pacing
    }

    /// Paces the run until `stop` turns true: vacuums the relations `feed` says changed, once
    /// they changed `every` rows together, on a connection of its own, sending an event for
    /// each vacuum.
    pub async fn pace(
        &self,
        feed: &Feed,
        every: u64,
        mut stop: watch::Receiver<bool>,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        if !self.paces() {
            return;
        }
        let mut conn: Option<Session> = None;
        while !stopped(&stop) {
            tokio::select! {
                _ = stop.changed() => {}
                _ = feed.fed.notified() => {}
                _ = tokio::time::sleep(LOOK_EVERY) => {}
            }
            let due = feed.due(every);
            if stopped(&stop) || due.is_empty() || !self.may_start() {
                continue;
            }
            for relation in due {
                let rows = feed.take(&relation);
                let done = match &mut conn {
                    Some(c) => self.vacuum(c, &relation, false, &mut stop).await,
                    None => match self.target.connect_unlogged(&self.app).await {
                        Ok(c) => {
                            let c = conn.insert(c);
                            self.vacuum(c, &relation, false, &mut stop).await
                        }
                        Err(e) => {
                            let reason = Some(error_chain(&e));
                            Vacuumed::new(VacuumState::Failed, Instant::now(), reason)
                        }
                    },
                };
                if done.broken {
                    conn = None;
                }
                let again = matches!(done.state, VacuumState::Yielded | VacuumState::Cancelled);
                if again {
                    feed.add(&relation, rows);
                }
                let _ = events.send(self.event(&relation, false, done));
                if again || stopped(&stop) {
                    break;
                }
            }
        }
        if let Some(conn) = conn {
            conn.hang_up().await;
        }
    }

    /// The final `VACUUM (ANALYZE)` of `table`, on `conn` (the run's), once the job (as `row`
    /// has it) is done, when the job asks for it and this process finishes the job: the one
    /// that started the run, or — when that one is gone — one that joined it. Started once the
    /// monitor lets it (left out when that takes over [`FINAL_PATIENCE`]), again after each
    /// time it gave way to DDL (a few times at most), cancelled on `shutdown`. The `status`
    /// note says it runs. True when `conn` is no longer usable.
    pub async fn finish(
        &self,
        conn: &mut Session,
        table: &str,
        (row, joined): (&JobRow, bool),
        mut shutdown: watch::Receiver<bool>,
        emit: &mut dyn FnMut(&Event),
    ) -> bool {
        if !self.vacuums.final_vacuum || (joined && row.lease_is_live()) {
            return false;
        }
        let started = Vacuumed::new(VacuumState::Started, Instant::now(), None);
        emit(&self.event(table, true, started));
        self.heartbeat.publish(Live {
            rates: vec![],
            note: Some(format!("final VACUUM (ANALYZE) of {table}")),
        });
        let mut yields = 0;
        let done = loop {
            let held = Instant::now();
            while !self.may_start() && !stopped(&shutdown) && held.elapsed() < FINAL_PATIENCE {
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(LOOK_EVERY) => {}
                }
            }
            if stopped(&shutdown) {
                break Vacuumed::new(VacuumState::Cancelled, Instant::now(), None);
            }
            if !self.may_start() {
                break Vacuumed::new(VacuumState::Skipped, held, Some(self.held_back()));
            }
            let done = self.vacuum(conn, table, true, &mut shutdown).await;
            if done.state != VacuumState::Yielded || yields >= FINAL_YIELDS {
                break done;
            }
            yields += 1;
            emit(&self.event(table, true, done));
        };
        let broken = done.broken;
        emit(&self.event(table, true, done));
        broken
    }

    /// Why a vacuum may not start: the monitor's reason, or the operator's pause.
    fn held_back(&self) -> String {
        let reason = match self.monitor.decisions().borrow().as_ref() {
            Some(d) if !d.reason.is_empty() => d.reason.clone(),
            Some(_) => "paused by operator".to_owned(),
            None => "the monitor has had no reading".to_owned(),
        };
        format!(
            "held back for {}: {reason}; run it yourself once clear",
            humantime::format_duration(FINAL_PATIENCE)
        )
    }

    fn may_start(&self) -> bool {
        let control = self.heartbeat.beat().control;
        may_start(
            self.monitor.decisions().borrow().as_ref(),
            control.as_deref(),
        )
    }

    fn event(&self, relation: &str, final_vacuum: bool, done: Vacuumed) -> Event {
        Event::Vacuum {
            job: self.job.to_owned(),
            relation: relation.to_owned(),
            final_vacuum,
            state: done.state,
            elapsed_ms: millis(done.elapsed),
            reason: done.reason,
        }
    }

    /// One vacuum of `relation` on `conn`: the final one when `last`, else a pacing one
    /// (skipped when another session holds or waits for a conflicting lock on it). Cancelled
    /// through the monitor when `stop` turns true.
    async fn vacuum(
        &self,
        conn: &mut Session,
        relation: &str,
        last: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> Vacuumed {
        let started = Instant::now();
        let ended = |state, reason| Vacuumed::new(state, started, reason);
        let lost = |reason| Vacuumed {
            broken: true,
            ..Vacuumed::new(VacuumState::Failed, started, Some(reason))
        };
        if !last {
            match conn.vacuum_holder(relation).await {
                Ok(None) => {}
                Ok(Some(holder)) => {
                    tracing::debug!("vacuum of {relation} skipped this round: {holder}");
                    return ended(VacuumState::Skipped, Some(holder));
                }
                Err(e) => return lost(error_chain(&e)),
            }
        }
        let round = self.rounds.fetch_add(1, Ordering::Relaxed) + 1;
        let marker = vacuum_marker(self.job, &self.token, round);
        let monitor = self.monitor;
        monitor.statement_started(VACUUM_ID, marker.clone());
        let result = {
            let run = conn.vacuum(relation, last, self.vacuums.index_cleanup, &marker);
            let mut run = std::pin::pin!(run);
            let mut withdrawn: Option<Instant> = None;
            loop {
                let give_up = withdrawn.map(|at| at + WITHDRAW_WITHIN);
                tokio::select! {
                    result = &mut run => break Some(result),
                    changed = stop.changed(), if withdrawn.is_none() => {
                        if changed.is_err() || *stop.borrow() {
                            monitor.withdraw(VACUUM_ID);
                            withdrawn = Some(Instant::now());
                        }
                    }
                    _ = sleep_until(give_up), if give_up.is_some() => break None,
                }
            }
        };
        let seen = monitor.batch_ended(VACUUM_ID);
        match result {
            Some(Ok(_)) => ended(VacuumState::Done, None),
            None => Vacuumed {
                broken: true,
                ..ended(VacuumState::Cancelled, None)
            },
            Some(Err(_)) if stopped(stop) => ended(VacuumState::Cancelled, None),
            Some(Err(_)) if seen.yielded => {
                let reason = monitor
                    .decisions()
                    .borrow()
                    .as_ref()
                    .map(|d| d.reason.clone());
                tracing::debug!("vacuum of {relation} gave way: {reason:?}");
                ended(VacuumState::Yielded, reason)
            }
            Some(Err(e)) if lost_connection(&e) => lost(error_chain(&e)),
            Some(Err(e)) => ended(VacuumState::Failed, Some(error_chain(&e))),
        }
    }
}

/// The error says the connection is gone.
fn lost_connection(e: &sqlx::Error) -> bool {
    matches!(
        classify(e),
        Failure::Transient {
            reconnect: true,
            ..
        }
    )
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The stop signal is set, or its sender is gone.
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

#[cfg(test)]
mod tests;
