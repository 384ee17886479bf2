//! What each subcommand does, wiring the library together: job files are read and validated
//! first (a bad file stops everything before the database is contacted), then the catalog is
//! read and the server checks the job's SQL (`prepare.rs`; after waiting, paused, while a lock
//! on the table is in the way), and only then is the state table touched.
//! Owns the text that commands print on stdout; the progress display belongs to `progress`.
//!
//! Layout: this file runs, plans and verifies jobs from their files; `prepare.rs` checks a job
//! against the database; `row.rs` has the commands that act on a job's rows in the state tables
//! by name; `lookup.rs` finds the job a command names.

mod lookup;
mod prepare;
mod row;
mod serve;

pub use lookup::job_path;
pub use prepare::{Prepared, lock_wait, prepare};
pub use row::{control, failures, reset, status};
pub use serve::serve;

use prepare::{say_waiting, stopped_waiting};

use std::collections::BTreeSet;
use std::process::ExitCode;

use crate::db::Session;
use anyhow::{Context as _, Result};
use tokio::sync::watch;

use crate::cli::{CompletionsArgs, GlobalArgs, MonitorArg, PlanArgs, RunArgs, VerifyArgs};
use crate::db::Privileges;
use crate::db::{Target, TargetError};
use crate::disk;
use crate::engine::{self, Outcome, Run, application_name, monitor_application_name};
use crate::event::Event;
use crate::job::ThrottlePolicy;
use crate::lockwait::Note;
use crate::metrics::Metrics;
use crate::preflight;
use crate::progress::{Mode, Reporter};
use crate::report;
use crate::report::{DiskReport, PlanReport};
use crate::state::{Owner, Store};
use crate::verify;

/// How a command ended without an error; each maps to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0.
    Success,
    /// 1: a job was cancelled by an operator.
    Cancelled,
    /// 3: `verify` found rows still pending, or values that differ.
    Pending,
    /// 130: stopped by Ctrl-C or SIGTERM after checkpointing.
    Interrupted,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(match exit {
            Exit::Success => 0,
            Exit::Cancelled => 1,
            Exit::Pending => 3,
            Exit::Interrupted => 130,
        })
    }
}

async fn connect(global: &GlobalArgs, app: &str) -> Result<(Target, Session)> {
    let target = Target::new(global.database_url.as_deref())?;
    let conn = target
        .connect(app)
        .await
        .with_context(|| format!("cannot connect to {}", target.describe()))?;
    Ok((target, conn))
}

/// The monitor's own target, when `--monitor-url` (or its variable) gives one.
fn monitor_target(arg: &MonitorArg) -> Result<Option<Target>, TargetError> {
    arg.monitor_url
        .as_deref()
        .map(|url| Target::new(Some(url)))
        .transpose()
}

/// The replicas `--replica-url` names: MySQL or MariaDB URLs, for a job on MySQL or MariaDB.
fn replica_targets(global: &GlobalArgs, urls: &[String]) -> Result<Vec<Target>, TargetError> {
    if urls.is_empty() {
        return Ok(Vec::new());
    }
    let primary = Target::new(global.database_url.as_deref())?;
    urls.iter().map(|url| primary.replica(url)).collect()
}

/// What the monitor's role may see and do to the batches of `conn`'s role, read on its own
/// connection when `monitor` is given (which must then be reachable), else on `conn`. `None`
/// when no policy has the monitor on.
async fn monitor_privileges(
    conn: &mut Session,
    monitor: Option<&Target>,
    policies: &[&ThrottlePolicy],
    job: &str,
) -> Result<Option<Privileges>> {
    if !policies.iter().any(|p| p.enabled) {
        return Ok(None);
    }
    let batch_role = conn.role().await?;
    let sight = match monitor {
        None => conn.privileges(&batch_role).await?,
        Some(target) => {
            let mut own = target
                .connect(&monitor_application_name(job))
                .await
                .with_context(|| format!("cannot connect the monitor to {}", target.describe()))?;
            let sight = own.privileges(&batch_role).await;
            own.hang_up().await;
            sight?
        }
    };
    Ok(Some(sight))
}

/// The connections a process of `p`'s job would hold with `workers` (else the job's own
/// count), against the server's room for them now.
async fn budget(
    conn: &mut Session,
    p: &Prepared,
    workers: Option<u32>,
) -> Result<preflight::Budget> {
    let job = &p.job;
    let (in_use, max_connections) = conn
        .conn()
        .connections()
        .await
        .context("cannot read the server's connections")?;
    Ok(preflight::Budget {
        workers: workers.unwrap_or(job.batch.workers),
        monitor: job.throttle.enabled,
        vacuum: p.vacuums().any(),
        guard: job.guard.enabled,
        in_use,
        max_connections,
        share: job.throttle.max_connection_use,
    })
}

/// `backfill run`.
pub async fn run(
    global: &GlobalArgs,
    args: &RunArgs,
    shutdown: watch::Receiver<bool>,
) -> Result<Exit> {
    let jobs = args
        .jobs
        .iter()
        .map(|arg| lookup::load(arg, &global.jobs_dir))
        .collect::<Result<Vec<_>, _>>()?;
    // Every argument is checked before the database is contacted.
    let options = engine::Options {
        restart: args.restart,
        resume_cancelled: args.resume_cancelled,
        exact_count: args.exact_count,
        reconnect_timeout: args.reconnect_timeout,
        monitor: monitor_target(&args.monitor)?,
        replicas: replica_targets(global, &args.replica_urls)?,
        workers: args.workers,
        join: args.join,
        lease_timeout: args.lease_timeout,
        retry_failures: args.retry_failures,
    };
    let metrics = args.metrics_addr.map(Metrics::serve).transpose()?;
    let mut sinks = Sinks {
        reporter: Reporter::new(Mode::detect(args.json)),
        metrics,
    };
    let (target, mut conn) = connect(global, &application_name(&jobs[0].name)).await?;
    let store = target.store(&global.state_schema);
    let mut prepared = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut emit = |event: &Event| sinks.emit(event);
        let note = Note::Row(&store);
        let mut wait = lock_wait(&job, None, note, &mut emit, shutdown.clone());
        let name = job.name.clone();
        let Some((p, _)) = prepare(&mut conn, job, None, &mut wait).await? else {
            conn.hang_up().await;
            sinks.reporter.conclude(&stopped_waiting(&name));
            return Ok(Exit::Interrupted);
        };
        let budget = budget(&mut conn, &p, args.workers).await?;
        if !budget.fits() {
            let source = p.job.source.display().to_string();
            return Err(
                anyhow::Error::new(preflight::PreflightError::TooManyWorkers(budget))
                    .context(source),
            );
        }
        prepared.push(p);
    }
    let policies: Vec<&ThrottlePolicy> = prepared.iter().map(|p| &p.job.throttle).collect();
    let sight = monitor_privileges(
        &mut conn,
        options.monitor.as_ref(),
        &policies,
        &prepared[0].job.name,
    )
    .await?;
    conn.hang_up().await;
    let mut warned = BTreeSet::new();
    for p in &prepared {
        let monitor = sight.iter().flat_map(|s| s.warnings(&p.job.throttle));
        for warning in monitor.chain(disk::warnings(&p.job, &p.upkeep)) {
            if warned.insert(warning.clone()) {
                eprintln!("warning: {warning}");
            }
        }
    }
    run_jobs(&target, &store, &prepared, &options, sinks, shutdown).await
}

/// Where a run's events go: the progress display, and the metrics when they are served.
pub struct Sinks {
    /// The progress bar, lines or NDJSON.
    pub reporter: Reporter,
    /// `--metrics-addr`'s metrics, when asked for.
    pub metrics: Option<Metrics>,
}

impl Sinks {
    fn emit(&mut self, event: &Event) {
        self.reporter.emit(event);
        if let Some(metrics) = &mut self.metrics {
            metrics.record(event);
        }
    }
}

/// Runs prepared jobs in order, showing progress; stops at the first that does not finish.
pub async fn run_jobs(
    target: &Target,
    store: &Store,
    prepared: &[Prepared],
    options: &engine::Options,
    mut sinks: Sinks,
    shutdown: watch::Receiver<bool>,
) -> Result<Exit> {
    let owner = Owner::this_process();
    for p in prepared {
        let r = Run {
            job: &p.job,
            plan: &p.plan,
            store,
            target,
            owner: &owner,
            options,
            vacuums: p.vacuums(),
        };
        let outcome = engine::run(&r, &mut |e| sinks.emit(e), shutdown.clone()).await;
        let reporter = &mut sinks.reporter;
        let name = &p.job.name;
        let (exit, last_word) = match outcome {
            Err(e) => {
                reporter.finish();
                return Err(e.into());
            }
            Ok(Outcome::Finished { failures: 0, .. }) => (None, None),
            Ok(Outcome::Finished { failures, .. }) => (
                None,
                Some(format!(
                    "{name}: {} could not be backfilled and {} set aside: `backfill failures {name}` \
                     lists {}; fix the data, then `backfill run --retry-failures {name}`",
                    report::rows(failures),
                    if failures == 1 { "is" } else { "are" },
                    if failures == 1 { "it" } else { "them" },
                )),
            ),
            Ok(Outcome::NothingToRetry) => (None, Some(format!("{name}: no failed rows to retry"))),
            Ok(Outcome::AlreadyDone { rows_done }) => (
                None,
                Some(format!(
                    "{name}: already done ({rows_done} rows); `backfill run --restart {name}` runs it again"
                )),
            ),
            Ok(Outcome::Interrupted { rows_done }) => (
                Some(Exit::Interrupted),
                Some(format!(
                    "{name}: stopped after {rows_done} rows, checkpoint saved; run it again to resume"
                )),
            ),
            Ok(Outcome::Cancelled { rows_done }) => (
                Some(Exit::Cancelled),
                Some(format!(
                    "{name}: cancelled by an operator after {rows_done} rows; `backfill run --resume-cancelled {name}` continues it"
                )),
            ),
        };
        if let Some(line) = last_word {
            reporter.conclude(&line);
        }
        if let Some(exit) = exit {
            reporter.finish();
            return Ok(exit);
        }
    }
    sinks.reporter.finish();
    Ok(Exit::Success)
}

/// `backfill plan`: everything `run` would check and do, printed; nothing written. Waits at
/// most `--lock-wait` for a lock on the table.
pub async fn plan(
    global: &GlobalArgs,
    args: &PlanArgs,
    shutdown: watch::Receiver<bool>,
) -> Result<Exit> {
    let job = lookup::load(&args.job, &global.jobs_dir)?;
    let monitor = monitor_target(&args.monitor)?;
    let (target, mut conn) = connect(global, &application_name(&job.name)).await?;
    let store = target.store(&global.state_schema);
    let state = store
        .list(conn.conn())
        .await?
        .into_iter()
        .find(|row| row.name == job.name);
    let patience = args.lock_wait.lock_wait;
    let mut emit = say_waiting(patience);
    let mut wait = lock_wait(&job, Some(patience), Note::Nowhere, &mut emit, shutdown);
    let name = job.name.clone();
    let Some((p, checked)) = prepare(&mut conn, job, state.as_ref(), &mut wait).await? else {
        eprintln!("{}", stopped_waiting(&name));
        return Ok(Exit::Interrupted);
    };
    let sight =
        monitor_privileges(&mut conn, monitor.as_ref(), &[&p.job.throttle], &p.job.name).await?;
    let budget = budget(&mut conn, &p, args.workers).await?;
    let estimate = async |conn: &mut Session| {
        conn.conn()
            .pending_rows(&p.plan, args.exact_count)
            .await
            .context("cannot estimate the pending rows")
    };
    let Some(pending) = wait.step(&mut conn, estimate).await? else {
        eprintln!("{}", stopped_waiting(&name));
        return Ok(Exit::Interrupted);
    };
    let columns: Vec<String> = p.job.set.iter().map(|a| a.column.clone()).collect();
    let table_rows = pending.table_rows.unwrap_or(pending.rows);
    let table = conn
        .conn()
        .table_costs(&p.plan, &columns, table_rows)
        .await
        .context("cannot read the table's size")?;
    let wal = crate::monitor::wal_retention(&mut conn, std::slice::from_ref(&p.plan.table))
        .await
        .context("cannot read the replication slots")?;
    let disk = DiskReport {
        table: &table,
        wal: &wal,
        upkeep: &p.upkeep,
        vacuums: p.vacuums(),
    };
    let server = conn.server();
    let report = PlanReport {
        server: &server,
        job: &p.job,
        catalog: &p.catalog,
        plan: &p.plan,
        checked: &checked,
        pending,
        store: &store,
        state: state.as_ref(),
        sight: sight.as_ref(),
        budget: &budget,
        lease_timeout: crate::state::LEASE_TIMEOUT,
        disk: &disk,
    };
    if args.json {
        println!("{}", crate::report::plan_json(&report));
    } else {
        print!("{}", crate::report::plan(&report));
    }
    Ok(Exit::Success)
}

/// `backfill verify`: exit 0 only when no row matches `where` any more (and, with `--values`,
/// every `[set]` column equals its expression); 3 otherwise.
pub async fn verify(
    global: &GlobalArgs,
    args: &VerifyArgs,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Exit> {
    let job = lookup::load(&args.job, &global.jobs_dir)?;
    let (target, mut conn) = connect(global, &application_name(&job.name)).await?;
    let patience = args.lock_wait.lock_wait;
    let mut emit = say_waiting(patience);
    let mut wait = lock_wait(
        &job,
        Some(patience),
        Note::Nowhere,
        &mut emit,
        shutdown.clone(),
    );
    let name = job.name.clone();
    let Some((p, _)) = prepare(&mut conn, job, None, &mut wait).await? else {
        eprintln!("{}", stopped_waiting(&name));
        return Ok(Exit::Interrupted);
    };
    if args.values {
        conn.conn().check_comparable(&p.job).await?;
    }
    let store = target.store(&global.state_schema);
    let state = store
        .list(conn.conn())
        .await?
        .into_iter()
        .find(|row| row.name == p.job.name);
    let failed = verify::Failed {
        count: state.as_ref().map_or(0, |row| row.failures),
        first: store
            .failures(conn.conn(), &p.job.name, verify::SHOWN as u32)
            .await?,
    };
    let subject = verify::Subject {
        job: &p.job,
        catalog: &p.catalog,
        plan: &p.plan,
        state: state.as_ref(),
        failed: &failed,
    };
    let verdict = if args.values {
        match conn.conn().verify_values(&subject, &mut shutdown).await? {
            Some(verdict) => verdict,
            None => {
                eprintln!("{}: verify --values stopped; it wrote nothing", p.job.name);
                return Ok(Exit::Interrupted);
            }
        }
    } else {
        conn.conn().verify_pending(&subject).await?
    };
    conn.hang_up().await;
    if args.json {
        println!("{}", verify::json(&subject, &verdict));
    } else {
        print!("{}", verify::text(&subject, &verdict));
    }
    Ok(if verdict.ok() {
        Exit::Success
    } else {
        Exit::Pending
    })
}

/// `backfill completions SHELL`: the completion script on stdout.
pub fn completions(args: &CompletionsArgs) -> Exit {
    let mut command = crate::cli::command();
    clap_complete::generate(args.shell, &mut command, "backfill", &mut std::io::stdout());
    Exit::Success
}

/// The exit code for an error: 2 when the job file, the arguments or the job's fit to the
/// database are wrong (nothing was touched), 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let invalid = err.chain().any(|cause| {
        cause.is::<crate::job::JobError>()
            || cause.is::<crate::db::TargetError>()
            || cause.is::<crate::metrics::MetricsError>()
            || cause.is::<crate::serve::ServeError>()
            || cause.is::<lookup::LookupError>()
            || cause
                .downcast_ref::<crate::db::CatalogError>()
                .is_some_and(|e| e.is_invalid_job())
            || cause
                .downcast_ref::<preflight::PreflightError>()
                .is_some_and(|e| e.is_invalid_job())
            || cause
                .downcast_ref::<crate::state::StateError>()
                .is_some_and(|e| e.is_invalid_job())
            || cause
                .downcast_ref::<engine::EngineError>()
                .is_some_and(|e| e.is_invalid_job())
            || cause
                .downcast_ref::<verify::VerifyError>()
                .is_some_and(|e| e.is_invalid_job())
    });
    if invalid { 2 } else { 1 }
}
