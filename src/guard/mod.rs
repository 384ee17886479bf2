//! The latency guard (`[guard]`): a task of its own, one per process, that times a probe query
//! every `poll` on a connection of its own — never a batch's — and publishes how far the run
//! should back off, for every worker's pacing to read.
//!
//! Before the first batch it measures the probe's baseline (the p90 of [`BASELINE_PROBES`]
//! probes taken four times as often as `poll`, or of one `window` of a probe too slow for that,
//! with no batch of this process running: the first batch waits for it, so it takes about half
//! a second); then it keeps probing every `poll`, and [`aimd`] turns the recent p90 against its
//! threshold (`max_latency_ratio × baseline`, at least `min_latency`, at most `max_latency`)
//! into a back-off: a sleep after each batch in multiples of the batch's time. The default probe is what an application's
//! small transaction costs: one row of the table read by its key, at a key drawn from a block
//! sample of the job's range (`TABLESAMPLE SYSTEM`, read once), then a transaction id taken and
//! committed with the server's `synchronous_commit`, so that the commit waits for the WAL flush
//! as an application's write does. That flush is where a run hurts a writing application most:
//! its batches commit without waiting and leave WAL that the next synchronous commit must flush
//! first, which a read alone never sees (measured: a PK read's p50 did not move under a run that
//! doubled the application's, while read-and-commit doubled too). A probe is timed from its
//! first statement to the end of its `COMMIT`; one that runs into its statement or lock timeout
//! counts as that slow; any other failure is no sample, and the connection is made again on
//! the next tick.

pub mod aimd;

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::{Session, Target, error_chain};
use crate::job::{GuardPolicy, Job, Timeouts};
use crate::plan::{Plan, Walk};
use crate::ranges::decide::layout_percent;

use aimd::{Backoff, Probes, threshold};

/// How long the first batch waits for the guard's baseline: a probe that cannot run must not
/// hold the run forever (the guard joins in once it has its baseline).
pub const BASELINE_PATIENCE: Duration = Duration::from_secs(30);

/// The most keys the default probe keeps to draw from.
const MAX_KEYS: usize = 1024;

/// The job's own probe as the guard and `preflight` run it: counted, so that it runs to its end
/// and returns a number whatever its columns (a column of a type the driver must look up in
/// the catalog would need a query of its own between the probe's parse and its execution,
/// which an unnamed statement does not survive).
pub fn custom_probe_sql(probe: &str) -> String {
    format!("SELECT count(*) FROM ({probe}) AS probe")
}

/// The probes whose p90 is the baseline: enough that one slow probe does not make it.
pub const BASELINE_PROBES: usize = 20;

/// How often the probe runs while the baseline is measured.
fn baseline_poll(policy: &GuardPolicy) -> Duration {
    (policy.poll / 4).max(Duration::from_millis(10))
}

/// The shortest statement timeout of a probe: slower than this, it counts as this slow.
const MIN_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The query the guard times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The job's own `probe`, as [`custom_probe_sql`] wraps it.
    Custom(String),
    /// One row of the table by its key.
    Keyed(Box<Keyed>),
}

/// The statements of the default probe (see [`Plan::probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    /// One row by its key: `$1..$n`.
    read: String,
    /// The table's walk: its greatest key now, and a block sample of its keys.
    walk: Walk,
    /// The relations whose blocks the sample reads (the table, or its leaves).
    relations: Vec<String>,
}

impl Probe {
    /// The probe `job` asks for: its own, or one row of its table by key.
    pub fn of(job: &Job, plan: &Plan) -> Probe {
        match &job.guard.probe {
            Some(sql) => Probe::Custom(custom_probe_sql(sql)),
            None => Probe::Keyed(Box::new(Keyed {
                read: plan.probe.clone(),
                walk: plan.walk.clone(),
                relations: plan.walks().iter().map(|w| w.relation.clone()).collect(),
            })),
        }
    }
}

/// What the guard needs to watch one job.
pub struct Setup {
    pub policy: GuardPolicy,
    /// Where to connect: the batches' own database, so that the probe goes the application's
    /// way (through PgBouncer, when the job does).
    pub target: Target,
    pub application_name: String,
    pub probe: Probe,
    /// The job's timeouts, which bound the one-time key sample.
    pub timeouts: Timeouts,
}

/// What the guard publishes once its baseline is measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guarding {
    /// The sleep after each batch, in multiples of the batch's time (0: full speed).
    pub ratio: f64,
    /// The probe's p90 before the first batch.
    pub baseline: Duration,
    /// The p90 of the recent probes.
    pub recent: Duration,
}

impl Guarding {
    /// True while the guard holds the run back.
    pub fn holds(&self) -> bool {
        self.ratio > 0.0
    }

    /// `probe 4.1 ms (baseline 1.2 ms)`.
    pub fn reason(&self) -> String {
        probe_text(self.recent, self.baseline)
    }
}

/// `probe 4.1 ms (baseline 1.2 ms)`: what the guard says of its probe.
pub fn probe_text(recent: Duration, baseline: Duration) -> String {
    format!("probe {} (baseline {})", ms_text(recent), ms_text(baseline))
}

/// A latency in milliseconds: `4.1 ms`, `0.42 ms` below one.
pub fn ms_text(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// The running guard task.
pub struct Guard {
    task: JoinHandle<()>,
    state: watch::Receiver<Option<Guarding>>,
    stop: watch::Sender<bool>,
    stop_within: Duration,
}

impl Guard {
    /// Starts probing; the baseline comes after one `window` of probes.
    pub fn start(setup: Setup) -> Guard {
        let (state_tx, state) = watch::channel(None);
        let (stop, stopped) = watch::channel(false);
        // A probe in flight ends within its timeout; then the task hangs up.
        let stop_within = probe_timeout(&setup.policy) * 2;
        let task = tokio::spawn(
            Task {
                setup,
                state: state_tx,
                stopped,
                conn: None,
                keys: None,
            }
            .run(),
        );
        Guard {
            task,
            state,
            stop,
            stop_within,
        }
    }

    /// Waits until the baseline is measured (or the task is gone).
    pub async fn measured(&self) {
        let mut state = self.state.clone();
        let _ = state.wait_for(Option::is_some).await;
    }

    /// The guard's latest word; `None` before its baseline.
    pub fn now(&self) -> Option<Guarding> {
        *self.state.borrow()
    }

    /// Stops the task between two probes and waits for it to hang up; aborts it if it does
    /// not end within twice a probe's timeout (it is stuck connecting to a server that does
    /// not answer).
    pub async fn stop(self) {
        let Guard {
            mut task,
            stop,
            stop_within,
            ..
        } = self;
        stop.send_replace(true);
        if tokio::time::timeout(stop_within, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// The statement (and lock) timeout of a probe.
fn probe_timeout(policy: &GuardPolicy) -> Duration {
    policy.window.max(MIN_PROBE_TIMEOUT)
}

/// The guard task's state.
struct Task {
    setup: Setup,
    state: watch::Sender<Option<Guarding>>,
    stopped: watch::Receiver<bool>,
    conn: Option<Session>,
    /// The default probe's keys, once sampled.
    keys: Option<Vec<Vec<String>>>,
}

impl Task {
    async fn run(mut self) {
        let policy = self.setup.policy.clone();
        let mut probes = Probes::new(policy.window);
        let mut baseline: Option<Duration> = None;
        let mut first: Option<Instant> = None;
        let mut backoff = Backoff::default();
        let every = |period| {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        };
        let mut tick = every(baseline_poll(&policy));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.stopped.changed() => break,
            }
            let Some(latency) = self.probe().await else {
                continue;
            };
            let now = Instant::now();
            probes.push(now, latency);
            let base = match baseline {
                Some(base) => base,
                None => {
                    // A slow probe may not fit [`BASELINE_PROBES`] in a window: then a window's.
                    let since = *first.get_or_insert(now);
                    let enough = probes.count() >= BASELINE_PROBES
                        || now.saturating_duration_since(since) >= policy.window;
                    match probes.p90() {
                        Some(p90) if enough => {
                            baseline = Some(p90);
                            tick = every(policy.poll);
                            p90
                        }
                        _ => continue,
                    }
                }
            };
            let recent = probes.p90();
            tracing::trace!(
                "guard: probe {}, p90 {}",
                ms_text(latency),
                recent.map_or("?".into(), ms_text)
            );
            let next = backoff.next(&policy, recent, threshold(&policy, base), now);
            if next != backoff {
                tracing::debug!(
                    "guard: probe p90 {} against baseline {}: back-off {}× the batch's time",
                    recent.map_or("?".into(), ms_text),
                    ms_text(base),
                    next.ratio()
                );
            }
            backoff = next;
            self.state.send_replace(Some(Guarding {
                ratio: backoff.ratio(),
                baseline: base,
                recent: recent.unwrap_or(base),
            }));
        }
        if let Some(conn) = self.conn.take() {
            conn.hang_up().await;
        }
    }

    /// Times one probe; `None` when it could not run (the connection is made again next time).
    async fn probe(&mut self) -> Option<Duration> {
        match self.try_probe().await {
            Ok(latency) => Some(latency),
            Err(e) => {
                tracing::debug!("the guard's probe failed: {}", error_chain(&e));
                self.conn = None;
                None
            }
        }
    }

    async fn try_probe(&mut self) -> Result<Duration, sqlx::Error> {
        if self.conn.is_none() {
            let s = &self.setup;
            self.conn = Some(s.target.connect(&s.application_name).await?);
        }
        let conn = self.conn.as_mut().expect("connected just above");
        let keyed = match &self.setup.probe {
            Probe::Keyed(keyed) => Some(keyed),
            Probe::Custom(_) => None,
        };
        if let (Some(keyed), None) = (keyed, &self.keys) {
            self.keys = Some(sample_keys(conn, keyed, &self.setup.timeouts).await?);
        }
        let timeout = probe_timeout(&self.setup.policy);
        let (sql, key) = match (&self.setup.probe, self.keys.as_deref()) {
            (Probe::Custom(sql), _) => (sql.as_str(), None),
            (Probe::Keyed(keyed), Some(keys)) if !keys.is_empty() => {
                (keyed.read.as_str(), Some(keys[pick(keys.len())].as_slice()))
            }
            // An empty table: the index read of its greatest key stands in.
            (Probe::Keyed(keyed), _) => (keyed.walk.range_end.as_str(), Some(&[][..])),
        };
        conn.time_probe(sql, key, timeout).await
    }
}

/// An index in `0..n`.
fn pick(n: usize) -> usize {
    ((crate::jitter::jitter() * n as f64) as usize).min(n.saturating_sub(1))
}

/// Keys of the table to probe: a block sample of the job's range up to its greatest key now,
/// spread evenly down to [`MAX_KEYS`]; the greatest key alone when the sample found none.
async fn sample_keys(
    session: &mut Session,
    keyed: &Keyed,
    t: &Timeouts,
) -> Result<Vec<Vec<String>>, sqlx::Error> {
    let (mut tx, _) = session.begin_bounded(t.statement, t.lock, true).await?;
    let Some(end) = tx.conn().range_end(&keyed.walk).await? else {
        tx.commit().await?;
        return Ok(Vec::new());
    };
    let mut blocks = 0;
    for relation in &keyed.relations {
        blocks += tx.conn().relation_size(relation).await?.blocks;
    }
    let percent = layout_percent(blocks, 1);
    let sample = tx.conn().sample(&keyed.walk, None, &end, percent).await?;
    tx.commit().await?;
    let mut keys: Vec<Vec<String>> = sample.into_iter().map(|s| s.key).collect();
    if keys.is_empty() {
        keys.push(end);
    }
    Ok(spread(keys, MAX_KEYS))
}

/// At most `most` of `keys`, taken at even steps so that they still cover the range.
fn spread<T>(keys: Vec<T>, most: usize) -> Vec<T> {
    if keys.len() <= most {
        return keys;
    }
    let step = keys.len().div_ceil(most);
    keys.into_iter().step_by(step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_shows_both_latencies() {
        let g = Guarding {
            ratio: 2.0,
            baseline: Duration::from_micros(1200),
            recent: Duration::from_micros(4140),
        };
        assert_eq!(g.reason(), "probe 4.1 ms (baseline 1.2 ms)");
        let fast = Guarding {
            recent: Duration::from_micros(420),
            ..g
        };
        assert_eq!(fast.reason(), "probe 0.42 ms (baseline 1.2 ms)");
    }

    #[test]
    fn a_custom_probe_is_counted_to_its_end() {
        assert_eq!(
            custom_probe_sql("SELECT * FROM orders WHERE id = 42"),
            "SELECT count(*) FROM (SELECT * FROM orders WHERE id = 42) AS probe"
        );
    }

    #[test]
    fn keys_are_thinned_evenly() {
        let keys: Vec<u32> = (0..10).collect();
        assert_eq!(spread(keys.clone(), 20), keys);
        assert_eq!(spread(keys.clone(), 5), [0, 2, 4, 6, 8]);
        assert_eq!(spread(keys, 4), [0, 3, 6, 9]);
    }

    #[test]
    fn picks_stay_in_range() {
        for _ in 0..100 {
            assert!(pick(3) < 3);
        }
        assert_eq!(pick(1), 0);
    }
}
