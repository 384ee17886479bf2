//! Prometheus metrics of a run (`run --metrics-addr`), served as text at
//! `/metrics` while the run lasts.
//!
//! [`Metrics`] is a sink of the engine's [`Event`]s, beside the progress display: it keeps no
//! state of the engine's and hooks nothing inside it, so any number of workers may send their
//! events here. Every metric carries the `job` label. The job's own totals (`rows_done` and
//! `batches_done` of a `batch` event, which count earlier runs too, as the state table does)
//! only ever raise the counters, so events that arrive out of order from several workers
//! never make them go back. Serves them through `crate::http`; knows nothing of terminals or
//! the database. `backfill serve` keeps the same metrics from the state tables instead
//! ([`Metrics::observe`]).

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use thiserror::Error;

use crate::event::{Event, VacuumState};
use crate::http::{self, Serving};
use crate::state::JobRow;

/// Why the metrics could not be served.
#[derive(Debug, Error)]
pub enum MetricsError {
    #[error(
        "cannot serve metrics on {addr}: {reason}; is another process (another backfill run?) \
         listening there? Choose another --metrics-addr"
    )]
    Bind { addr: SocketAddr, reason: String },
}

/// Reads `--metrics-addr`: `HOST:PORT`, the host a name or an address (`127.0.0.1:9187`,
/// `[::1]:9187`, `localhost:9187`, `0.0.0.0:9187` for every interface).
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let wanted =
        "expected HOST:PORT, e.g. 127.0.0.1:9187 (0.0.0.0:9187 listens on every interface)";
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{text:?} names no address; {wanted}")),
        Err(e) => Err(format!("{e}; {wanted}")),
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

/// `backfill_state{job, state, signal}`: 1 for the job's current state, 0 for the ones before.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    job: String,
    /// `running`, `throttled`, `paused` or `guarded`.
    state: String,
    /// What caused it: a monitor signal (`replica_lag`…), `operator` for an operator's pause,
    /// `latency` for the latency guard, empty while running.
    signal: String,
}

type HistogramFamily = Family<JobLabel, Histogram, fn() -> Histogram>;

/// A batch's duration in seconds: 5 ms to about 80 s, doubling.
fn batch_duration() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The metric families, registered once.
#[derive(Clone)]
struct Families {
    rows_done: Family<JobLabel, Counter>,
    rows_estimate: Family<JobLabel, Gauge>,
    batches: Family<JobLabel, Counter>,
    batch_duration: HistogramFamily,
    batch_size: Family<JobLabel, Gauge>,
    retries: Family<JobLabel, Counter>,
    yields: Family<JobLabel, Counter>,
    skipped: Family<JobLabel, Counter>,
    workers: Family<JobLabel, Gauge>,
    state: Family<StateLabels, Gauge>,
    heap_bytes: Family<JobLabel, Gauge>,
    vacuums: Family<JobLabel, Counter>,
}

impl Families {
    fn register(registry: &mut Registry) -> Families {
        let f = Families {
            rows_done: Family::default(),
            rows_estimate: Family::default(),
            batches: Family::default(),
            batch_duration: Family::new_with_constructor(batch_duration),
            batch_size: Family::default(),
            retries: Family::default(),
            yields: Family::default(),
            skipped: Family::default(),
            workers: Family::default(),
            state: Family::default(),
            heap_bytes: Family::default(),
            vacuums: Family::default(),
        };
        // Counters are registered without `_total`; the encoder appends it.
        let r = registry;
        r.register(
            "backfill_rows_done",
            "Rows the job has changed, all runs together (the state table's rows_done)",
            f.rows_done.clone(),
        );
        r.register(
            "backfill_rows_estimate",
            "Rows the job is expected to change in all: the start's estimate, refined by every batch",
            f.rows_estimate.clone(),
        );
        r.register(
            "backfill_batches",
            "Batches the job has committed, all runs together",
            f.batches.clone(),
        );
        r.register(
            "backfill_batch_duration_seconds",
            "Time each committed batch transaction took",
            f.batch_duration.clone(),
        );
        r.register(
            "backfill_batch_size",
            "Keys asked for by the last batch",
            f.batch_size.clone(),
        );
        r.register(
            "backfill_retries",
            "Batches rolled back on a transient error and tried again",
            f.retries.clone(),
        );
        r.register(
            "backfill_workers",
            "Live workers of every process running the job, as the last heartbeat saw them",
            f.workers.clone(),
        );
        r.register(
            "backfill_yields",
            "Batches cancelled to let a session waiting for their locks go ahead",
            f.yields.clone(),
        );
        r.register(
            "backfill_rows_skipped",
            "Rows that cannot be backfilled, set aside in the failures table (on_error = \"skip\", \
             or failing again under --retry-failures)",
            f.skipped.clone(),
        );
        r.register(
            "backfill_state",
            "1 for the job's current state (running, throttled, paused, guarded) and what caused it",
            f.state.clone(),
        );
        r.register(
            "backfill_heap_bytes",
            "The table's heap (main fork, all leaf partitions) in bytes, as last read",
            f.heap_bytes.clone(),
        );
        r.register(
            "backfill_vacuums",
            "Vacuums of the job's relations that ran to their end (pacing and final)",
            f.vacuums.clone(),
        );
        f
    }
}

/// The metrics of this process's jobs, updated from their events.
pub struct Metrics {
    families: Families,
    registry: Arc<Registry>,
    /// Each job's current `backfill_state` labels, set to 0 when the state changes.
    states: HashMap<String, StateLabels>,
    /// The server, stopped on drop; `None` when not serving.
    server: Option<Serving>,
}

impl Metrics {
    /// Metrics that are kept but not served (for tests and for [`Metrics::encode`]).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let families = Families::register(&mut registry);
        Metrics {
            families,
            registry: Arc::new(registry),
            states: HashMap::new(),
            server: None,
        }
    }

    /// Starts serving `/metrics` on `addr`, until dropped. Binds at once, so that an address
    /// in use is reported before anything else happens.
    pub fn serve(addr: SocketAddr) -> Result<Metrics, MetricsError> {
        let mut metrics = Metrics::new();
        let router = routes(Arc::clone(&metrics.registry)).fallback(async || {
            (
                StatusCode::NOT_FOUND,
                "backfill serves its metrics at /metrics\n",
            )
        });
        let server = http::serve(addr, router).map_err(|e| MetricsError::Bind {
            addr,
            reason: e.to_string(),
        })?;
        metrics.server = Some(server);
        Ok(metrics)
    }

    /// `/metrics` for these metrics, to serve beside other routes.
    pub fn router(&self) -> Router {
        routes(Arc::clone(&self.registry))
    }

    /// The metrics in the text exposition format, as `/metrics` serves them.
    pub fn encode(&self) -> String {
        encode_registry(&self.registry)
    }

    /// Takes in one event.
    pub fn record(&mut self, event: &Event) {
        let f = &self.families;
        let job = JobLabel {
            job: event.job().to_owned(),
        };
        match event {
            Event::Started {
                total_estimate,
                rows_done,
                ..
            } => {
                f.rows_estimate
                    .get_or_create(&job)
                    .set(i64::try_from(*total_estimate).unwrap_or(i64::MAX));
                raise(&f.rows_done.get_or_create(&job), *rows_done);
                // Present from the start at 0, so that `rate()` and dashboards see them.
                for counter in [&f.batches, &f.retries, &f.yields, &f.skipped] {
                    let _ = counter.get_or_create(&job);
                }
                self.enter(&job.job, "running", "");
            }
            Event::Batch {
                rows_done,
                batches_done,
                total_estimate,
                batch_size,
                elapsed_ms,
                ..
            } => {
                f.rows_estimate
                    .get_or_create(&job)
                    .set(i64::try_from(*total_estimate).unwrap_or(i64::MAX));
                raise(&f.rows_done.get_or_create(&job), *rows_done);
                raise(&f.batches.get_or_create(&job), *batches_done);
                f.batch_duration
                    .get_or_create(&job)
                    .observe(*elapsed_ms as f64 / 1000.0);
                f.batch_size.get_or_create(&job).set(i64::from(*batch_size));
            }
            Event::Retry { .. } => {
                f.retries.get_or_create(&job).inc();
            }
            Event::Yielded { .. } => {
                f.yields.get_or_create(&job).inc();
            }
            Event::Skipped { .. } => {
                f.skipped.get_or_create(&job).inc();
            }
            Event::Filled { rows_done, .. } => {
                raise(&f.rows_done.get_or_create(&job), *rows_done);
            }
            Event::Paused { signal, .. } => {
                self.enter(&job.job, "paused", signal.as_deref().unwrap_or("operator"));
            }
            Event::Throttled { signal, .. } => {
                self.enter(&job.job, "throttled", signal.as_deref().unwrap_or(""));
            }
            Event::Guarded { .. } => self.enter(&job.job, "guarded", "latency"),
            Event::Running { .. } | Event::Released { .. } => self.enter(&job.job, "running", ""),
            Event::Workers { workers, .. } => {
                f.workers.get_or_create(&job).set(i64::from(*workers));
            }
            Event::Claimed { .. } | Event::Lost { .. } | Event::GuardReady { .. } => {}
            Event::Heap { heap_bytes, .. } => {
                let bytes = i64::try_from(*heap_bytes).unwrap_or(i64::MAX);
                f.heap_bytes.get_or_create(&job).set(bytes);
            }
            Event::Vacuum { state, .. } => {
                if *state == VacuumState::Done {
                    f.vacuums.get_or_create(&job).inc();
                }
            }
            Event::Finished { rows_done, .. } | Event::Interrupted { rows_done, .. } => {
                raise(&f.rows_done.get_or_create(&job), *rows_done);
                self.leave(&job.job);
            }
            Event::Error { .. } => self.leave(&job.job),
        }
    }

    /// Takes in a job as the state tables show it, with its table's heap now (`backfill
    /// serve`, which sees every run's jobs): the same families a run's events set, from the
    /// job's row and the note its runners publish (`paused: …`, `throttled: …`, `guarded: …`).
    pub fn observe(&mut self, row: &JobRow, heap_bytes: Option<u64>) {
        let f = &self.families;
        let job = JobLabel {
            job: row.name.clone(),
        };
        follow(&f.rows_done, &job, row.rows_done);
        follow(&f.batches, &job, row.batches_done);
        follow(&f.skipped, &job, row.failures);
        let total = i64::try_from(row.total_estimate()).unwrap_or(i64::MAX);
        f.rows_estimate.get_or_create(&job).set(total);
        f.workers.get_or_create(&job).set(i64::from(row.workers));
        if let Some(size) = row.batch_size {
            f.batch_size.get_or_create(&job).set(i64::from(size));
        }
        if let Some(bytes) = heap_bytes {
            let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
            f.heap_bytes.get_or_create(&job).set(bytes);
        }
        let note = row.note.as_deref().unwrap_or_default();
        match note.split_once(':').map(|(state, _)| state) {
            _ if !row.is_running() => self.leave(&row.name),
            Some("paused") if note == "paused: by operator" => {
                self.enter(&row.name, "paused", "operator")
            }
            Some(state @ ("paused" | "throttled")) => self.enter(&row.name, state, ""),
            Some("guarded") => self.enter(&row.name, "guarded", "latency"),
            _ => self.enter(&row.name, "running", ""),
        }
    }

    /// The job is now in `state` because of `signal`.
    fn enter(&mut self, job: &str, state: &str, signal: &str) {
        let labels = StateLabels {
            job: job.to_owned(),
            state: state.to_owned(),
            signal: signal.to_owned(),
        };
        self.leave(job);
        self.families.state.get_or_create(&labels).set(1);
        self.states.insert(job.to_owned(), labels);
    }

    /// The job is no longer in the state it was in.
    fn leave(&mut self, job: &str) {
        if let Some(before) = self.states.remove(job) {
            self.families.state.get_or_create(&before).set(0);
        }
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Sets `job`'s counter in `family`, kept from the state tables, to `total`: raised, or, when
/// the job's figure went back (a reset, a restart, rows that left the failures table), started
/// again from it, as a counter reset that `rate()` understands.
fn follow(family: &Family<JobLabel, Counter>, job: &JobLabel, total: u64) {
    if family.get_or_create(job).get() > total {
        family.remove(job);
    }
    raise(&family.get_or_create(job), total);
}

/// Raises `counter` to `total` (never lowers it).
fn raise(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

fn encode_registry(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, registry);
    text
}

/// `GET /metrics`: `registry` in the text exposition format.
fn routes(registry: Arc<Registry>) -> Router {
    Router::new().route(
        "/metrics",
        get(async move || {
            (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                encode_registry(&registry),
            )
        }),
    )
}

#[cfg(test)]
mod tests;
