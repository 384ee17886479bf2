//! One job as the reporter knows it from its events — rows, estimate, rate, condition, retries,
//! crew, heap, vacuums — and the words for each event and for the progress line.

use std::time::{Duration, Instant};

use crate::event::{Event, VacuumState};
use crate::guard::probe_text;
use crate::rate::RateWindow;

use super::fit::{Field, fit};
use super::vacuum::vacuum_text;
use super::{duration_text, eta_text, rate_text, si};

/// What the reporter knows about one job, gathered from its events.
#[derive(Debug, Default)]
pub(super) struct Track {
    /// Rows the job is expected to change in all (`rows_done` may pass it: it is an estimate).
    estimate: u64,
    pub(super) rows_done: u64,
    /// The key range is walked to its end: `rows_done` is the total.
    finished: bool,
    /// `rows_done` when this run started; a resumed run's speed counts only its own rows.
    run_start: u64,
    /// Rows asked for by the last batch; unknown before the first one.
    batch_size: Option<u32>,
    window: RateWindow,
    condition: Condition,
    /// The last batch rolled back and is being retried; cleared by the next batch.
    retry: Option<Retrying>,
    /// Who runs the job, across processes, as the last heartbeat saw it.
    crew: Crew,
    /// The job has started: before, it may only have waited for a lock on its table (and
    /// `run a b c` checks every job before the first starts).
    started: bool,
    /// Rows this run set aside in the failures table.
    skipped: u64,
    /// The table's heap when the job started and as last read.
    heap: Option<(u64, u64)>,
    /// The final vacuum runs.
    vacuuming: bool,
    /// The latency guard's baseline, once it has one.
    guard_baseline: Option<Duration>,
}

/// Live workers of every process running the job, the processes, and their hosts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Crew {
    workers: u32,
    processes: u32,
    hosts: u32,
}

impl Crew {
    /// `4 workers on 2 hosts`, `3 workers in 2 processes`, `2 workers`; nothing for one.
    pub(super) fn text(&self) -> Option<String> {
        let Crew {
            workers,
            processes,
            hosts,
        } = *self;
        match (workers, processes, hosts) {
            (0 | 1, 0 | 1, _) => None,
            (w, _, h) if h > 1 => Some(format!("{w} workers on {h} hosts")),
            (w, p, _) if p > 1 => Some(format!("{w} workers in {p} processes")),
            (w, _, _) => Some(format!("{w} workers")),
        }
    }
}

/// What the database monitor last said about the job.
#[derive(Debug, Default, PartialEq)]
pub(super) enum Condition {
    #[default]
    Running,
    Paused(String),
    Throttled(String),
    Guarded(String),
}

#[derive(Debug)]
pub(super) struct Retrying {
    attempt: u32,
    error: String,
    reconnecting: bool,
}

/// What a retry does, for the progress line: a lost connection reads "reconnecting".
fn retry_verb(reconnecting: bool) -> &'static str {
    if reconnecting {
        "reconnecting"
    } else {
        "retrying"
    }
}

impl Track {
    /// Takes in one event. Returns false when it only repeats the job's current condition (a
    /// second `Paused` with the same reason), which is not worth another line.
    pub(super) fn apply(&mut self, event: &Event, now: Instant) -> bool {
        match event {
            Event::Started {
                total_estimate,
                rows_done,
                workers,
                ..
            } => {
                self.crew.workers = *workers;
                self.started = true;
                self.estimate = *total_estimate;
                self.run_start = *rows_done;
                self.set_rows(*rows_done);
                self.window.push(now, *rows_done);
            }
            Event::Batch {
                rows_done,
                total_estimate,
                batch_size,
                probe_ms,
                ..
            } => {
                self.estimate = *total_estimate;
                self.set_rows(*rows_done);
                self.batch_size = Some(*batch_size);
                self.retry = None;
                // The guard's hold reads its probe as it is now, not as when it began.
                if let (Condition::Guarded(reason), Some(probe), Some(baseline)) =
                    (&mut self.condition, probe_ms, self.guard_baseline)
                {
                    *reason = probe_text(Duration::from_secs_f64(probe / 1000.0), baseline);
                }
                self.window.push(now, *rows_done);
            }
            Event::Retry {
                attempt,
                error,
                reconnecting,
                ..
            } => {
                self.retry = Some(Retrying {
                    attempt: *attempt,
                    error: error.clone(),
                    reconnecting: *reconnecting,
                });
            }
            Event::Paused { reason, .. } => return self.enter(Condition::Paused(reason.clone())),
            Event::Throttled { reason, .. } => {
                return self.enter(Condition::Throttled(reason.clone()));
            }
            Event::Guarded {
                reason,
                baseline_ms,
                ..
            } => {
                self.guard_baseline = Some(Duration::from_secs_f64(baseline_ms / 1000.0));
                return self.enter(Condition::Guarded(reason.clone()));
            }
            Event::GuardReady { baseline_ms, .. } => {
                self.guard_baseline = Some(Duration::from_secs_f64(baseline_ms / 1000.0));
            }
            Event::Released { .. } => return self.enter(Condition::Running),
            Event::Running { .. } => return self.enter(Condition::Running),
            Event::Workers {
                workers,
                processes,
                hosts,
                ..
            } => {
                let crew = Crew {
                    workers: *workers,
                    processes: *processes,
                    hosts: *hosts,
                };
                let news = self.crew.text() != crew.text();
                self.crew = crew;
                return news;
            }
            Event::Skipped { .. } => self.skipped += 1,
            Event::Filled { rows_done, .. } => {
                self.set_rows(*rows_done);
                self.retry = None;
                self.window.push(now, *rows_done);
            }
            Event::Claimed { .. } => return false,
            Event::Lost { .. } => {}
            Event::Yielded { .. } => {}
            Event::Heap {
                heap_bytes_before,
                heap_bytes,
                ..
            } => {
                self.heap = Some((*heap_bytes_before, *heap_bytes));
                return false;
            }
            Event::Vacuum {
                final_vacuum,
                state,
                ..
            } => {
                if *final_vacuum {
                    self.vacuuming = *state == VacuumState::Started;
                    return true;
                }
                return matches!(state, VacuumState::Yielded | VacuumState::Failed);
            }
            Event::Finished {
                rows_done,
                heap_bytes_before,
                heap_bytes_after,
                ..
            } => {
                self.finished = true;
                self.vacuuming = false;
                self.set_rows(*rows_done);
                if let (Some(before), Some(after)) = (heap_bytes_before, heap_bytes_after) {
                    self.heap = Some((*before, *after));
                }
            }
            Event::Interrupted { rows_done, .. } => self.set_rows(*rows_done),
            Event::Error { .. } => {}
        }
        true
    }

    pub(super) fn enter(&mut self, condition: Condition) -> bool {
        let news = self.condition != condition;
        self.condition = condition;
        news
    }

    pub(super) fn set_rows(&mut self, rows_done: u64) {
        self.rows_done = rows_done;
    }

    /// The total to show: the estimate while it is ahead of the rows done, the rows done once
    /// the job finished, and unknown while a running job is past its estimate — the estimate
    /// was short, and `done/done` would say the job is over when it is not.
    pub(super) fn total(&self) -> Option<u64> {
        if self.finished {
            Some(self.rows_done)
        } else {
            Some(self.estimate).filter(|&estimate| estimate > self.rows_done)
        }
    }

    /// `1.21M/2.00M rows`, or `504.5k/? rows` past the estimate.
    pub(super) fn counts_text(&self) -> String {
        let total = self.total().map_or("?".to_owned(), |t| si(t as f64));
        format!("{}/{total} rows", si(self.rows_done as f64))
    }

    pub(super) fn eta_text(&self) -> String {
        let remaining = self.total().unwrap_or(self.rows_done) - self.rows_done;
        eta_text(remaining, self.window.per_sec())
    }

    /// `batch 5000`, or nothing before the first batch.
    pub(super) fn batch_text(&self) -> Option<String> {
        self.batch_size.map(|size| format!("batch {size}"))
    }

    /// `2 rows skipped`, or nothing while none was.
    pub(super) fn skipped_text(&self) -> Option<String> {
        match self.skipped {
            0 => None,
            1 => Some("1 row skipped".to_owned()),
            n => Some(format!("{n} rows skipped")),
        }
    }

    /// `heap 149.0 MiB → 171.0 MiB (+15 %)`, once it has been read.
    pub(super) fn heap_text(&self) -> Option<String> {
        self.heap
            .map(|(before, now)| crate::disk::growth_text(before, now))
    }

    pub(super) fn status_text(&self) -> String {
        match (&self.condition, &self.retry) {
            (Condition::Paused(reason), _) => format!("paused: {reason}"),
            (_, Some(retry)) => format!(
                "{} (attempt {}): {}",
                retry_verb(retry.reconnecting),
                retry.attempt,
                retry.error
            ),
            (Condition::Throttled(reason), None) => format!("throttled: {reason}"),
            (Condition::Guarded(reason), None) => format!("guarded: {reason}"),
            (Condition::Running, None) if self.vacuuming => "final VACUUM (ANALYZE)".to_owned(),
            (Condition::Running, None) => self.running_text().to_owned(),
        }
    }

    /// `running`, or `ready to start` for a job that waited for a lock before it started.
    pub(super) fn running_text(&self) -> &'static str {
        if self.started {
            "running"
        } else {
            "ready to start"
        }
    }

    /// The text after the bar, within `room` columns when the terminal's width is known (see
    /// `fit`: the least important fields go first, none is cut). While paused the rate, the
    /// batch size and the ETA mean nothing (no rows move), so the reason takes their place.
    pub(super) fn bar_message(&self, room: Option<usize>) -> String {
        let mut fields = vec![Field::figures(self.counts_text(), 9)];
        if let Condition::Paused(_) = self.condition {
            fields.push(Field::words(self.status_text(), 8));
        } else {
            fields.push(Field::figures(rate_text(self.window.per_sec()), 6));
            fields.push(Field::figures(self.eta_text(), 7));
            fields.extend(self.batch_text().map(|t| Field::figures(t, 2)));
            fields.extend(self.crew.text().map(|t| Field::figures(t, 3)));
            fields.extend(self.skipped_text().map(|t| Field::figures(t, 5)));
            fields.extend(self.heap_text().map(|t| Field::figures(t, 1)));
            fields.push(Field::words(self.status_text(), 8));
        }
        fit(fields, room)
    }

    /// The periodic line of lines mode: `1.21M/2.00M rows (60%)  48.2k rows/s  ETA 16s  batch
    /// 5000`; past the estimate, `504.5k/? rows (past the 5.0k estimate)  …`.
    pub(super) fn progress_text(&self) -> String {
        let share = match self.total() {
            Some(0) => "100%".to_owned(),
            Some(total) => format!("{}%", self.rows_done.saturating_mul(100) / total),
            None => format!("past the {} estimate", si(self.estimate as f64)),
        };
        let mut parts = vec![
            format!("{} ({share})", self.counts_text()),
            rate_text(self.window.per_sec()),
            self.eta_text(),
        ];
        parts.extend(self.batch_text());
        parts.extend(self.crew.text());
        parts.extend(self.skipped_text());
        parts.extend(self.heap_text());
        parts.join("  ")
    }

    /// What one event says, once the track has taken it in (no job name).
    pub(super) fn event_text(&self, event: &Event) -> String {
        match event {
            Event::Started {
                resumed, joined, ..
            } => {
                let start = match (joined, resumed) {
                    (true, _) => format!("joined at {}", self.counts_text()),
                    (false, true) => format!("resuming at {}", self.counts_text()),
                    (false, false) => format!(
                        "started: {} {} to change (estimate)",
                        si(self.estimate as f64),
                        if self.estimate == 1 { "row" } else { "rows" }
                    ),
                };
                match self.crew.workers {
                    0 | 1 => start,
                    n => format!("{start}, {n} workers"),
                }
            }
            Event::Claimed {
                worker,
                range,
                split_from,
                ..
            } => match split_from {
                Some(from) => format!("worker {worker} took range {range}, split off range {from}"),
                None => format!("worker {worker} took range {range}"),
            },
            Event::Lost {
                worker,
                range,
                owner,
                ..
            } => format!("worker {worker} lost range {range} to {owner}; it writes nothing there"),
            Event::Workers { .. } => self
                .crew
                .text()
                .unwrap_or_else(|| "one worker left".to_owned()),
            Event::Batch { .. } => self.progress_text(),
            Event::Skipped { row, message, .. } => {
                format!("row {row} skipped, set aside in the failures table: {message}")
            }
            Event::Filled { row, .. } => format!("row {row} filled; it left the failures table"),
            Event::Retry {
                attempt,
                delay_ms,
                error,
                reconnecting,
                ..
            } => format!(
                "{} (attempt {attempt}) in {}: {error}",
                retry_verb(*reconnecting),
                duration_text(Duration::from_millis(*delay_ms))
            ),
            Event::Paused { reason, .. } => format!("paused: {reason}"),
            Event::Throttled { reason, .. } => format!("throttled: {reason}"),
            Event::Guarded { reason, .. } => format!("guarded: {reason}"),
            Event::Released { reason, .. } => {
                format!("released: {reason}; the latency guard lets the run go at full speed")
            }
            Event::GuardReady { baseline_ms, .. } => format!(
                "latency guard on: its probe's baseline is {}",
                crate::guard::ms_text(Duration::from_secs_f64(baseline_ms / 1000.0))
            ),
            Event::Yielded { reason, .. } => {
                format!("yielded: {reason}; the batch rolled back and runs again when clear")
            }
            Event::Running { .. } => self.running_text().to_owned(),
            Event::Heap { .. } => self.heap_text().unwrap_or_default(),
            Event::Vacuum {
                relation,
                final_vacuum,
                state,
                elapsed_ms,
                reason,
                ..
            } => vacuum_text(
                relation,
                *final_vacuum,
                *state,
                *elapsed_ms,
                reason.as_deref(),
            ),
            Event::Finished {
                rows_done,
                elapsed_ms,
                ..
            } => self.done_text(*rows_done, Duration::from_millis(*elapsed_ms)),
            Event::Interrupted { rows_done, .. } => {
                format!(
                    "stopped at {} rows; run again to resume",
                    si(*rows_done as f64)
                )
            }
            Event::Error { message, .. } => format!("error: {message}"),
        }
    }

    /// `done: 2.00M rows in 41s (48.7k rows/s)`; for a resumed job, whose total includes
    /// earlier runs, `done: 1.00M rows (355.5k in this run, 1.4s, 245.0k rows/s)`. The time
    /// and speed are this run's own.
    pub(super) fn done_text(&self, rows_done: u64, elapsed: Duration) -> String {
        let this_run = rows_done.saturating_sub(self.run_start);
        let rate = (!elapsed.is_zero()).then(|| this_run as f64 / elapsed.as_secs_f64());
        let (total, time, rate) = (
            si(rows_done as f64),
            duration_text(elapsed),
            rate_text(rate),
        );
        let done = if self.run_start == 0 {
            format!("done: {total} rows in {time} ({rate})")
        } else {
            let this_run = si(this_run as f64);
            format!("done: {total} rows ({this_run} in this run, {time}, {rate})")
        };
        match self.heap_text() {
            Some(heap) => format!("{done}; {heap}"),
            None => done,
        }
    }
}
