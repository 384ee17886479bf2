//! What each subcommand does, wiring the library together: job files are read and validated
//! first (a bad file stops everything before the database is contacted), then the catalog is
//! read and the server checks the job's SQL, and only then is the state table touched.
//! Owns the text that commands print on stdout; the progress display belongs to `progress`.

mod lookup;

pub use lookup::job_path;

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use sqlx::PgConnection;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::cli::{
    CompletionsArgs, GlobalArgs, JobArg, MonitorArg, PlanArgs, RunArgs, StatusArgs, VerifyArgs,
};
use crate::db::{Target, TargetError, hang_up};
use crate::engine::{self, Outcome, Run, application_name, monitor_application_name};
use crate::job::{Job, ThrottlePolicy};
use crate::metrics::Metrics;
use crate::monitor::sight::{self, Sight};
use crate::plan::Plan;
use crate::preflight;
use crate::progress::{Mode, Reporter};
use crate::report;
use crate::report::PlanReport;
use crate::state::{Control, JobRow, Owner, RangeRow, Store};
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

async fn connect(global: &GlobalArgs, app: &str) -> Result<(Target, PgConnection)> {
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

/// What the monitor's role may see and do to the batches of `conn`'s role, read on its own
/// connection when `monitor` is given (which must then be reachable), else on `conn`. `None`
/// when no policy has the monitor on.
async fn monitor_sight(
    conn: &mut PgConnection,
    monitor: Option<&Target>,
    policies: &[&ThrottlePolicy],
    job: &str,
) -> Result<Option<Sight>> {
    if !policies.iter().any(|p| p.enabled) {
        return Ok(None);
    }
    let batch_role = sight::role(conn).await?;
    let sight = match monitor {
        None => sight::read(conn, &batch_role).await?,
        Some(target) => {
            let mut own = target
                .connect(&monitor_application_name(job))
                .await
                .with_context(|| format!("cannot connect the monitor to {}", target.describe()))?;
            let sight = sight::read(&mut own, &batch_role).await;
            hang_up(own).await;
            sight?
        }
    };
    Ok(Some(sight))
}

/// The connections a process of `job` would hold with `workers` (else the job's own count),
/// against the server's room for them now.
async fn budget(
    conn: &mut PgConnection,
    job: &Job,
    workers: Option<u32>,
) -> Result<preflight::Budget> {
    let (in_use, max_connections) = preflight::connections(conn)
        .await
        .context("cannot read the server's connections")?;
    Ok(preflight::Budget {
        workers: workers.unwrap_or(job.batch.workers),
        monitor: job.throttle.enabled,
        guard: job.guard.enabled,
        in_use,
        max_connections,
        share: job.throttle.max_connection_use,
    })
}

/// A job made ready to run: validated file, catalog facts, statements.
pub struct Prepared {
    pub job: Job,
    pub catalog: Catalog,
    pub plan: Plan,
}

/// Reads the catalog, builds the plan and has the server check the batch that would run next
/// (the first, unless `state` holds a checkpoint to resume from). Writes nothing. Errors name
/// the job file, so that the log of `run a b c` says which job failed.
pub async fn prepare(
    conn: &mut PgConnection,
    job: Job,
    state: Option<&JobRow>,
) -> Result<(Prepared, preflight::Preflight)> {
    let source = job.source.display().to_string();
    let (catalog, plan, checked) = async {
        let catalog = Catalog::read(conn, &job).await?;
        let plan = Plan::new(&job, &catalog);
        let start = preflight::Start::next(&job, state);
        let checked = preflight::check(conn, &job, &plan, &start).await?;
        anyhow::Ok((catalog, plan, checked))
    }
    .await
    .context(source)?;
    Ok((Prepared { job, catalog, plan }, checked))
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
        workers: args.workers,
        join: args.join,
        lease_timeout: args.lease_timeout,
    };
    let metrics = args.metrics_addr.map(Metrics::serve).transpose()?;
    let (target, mut conn) = connect(global, &application_name(&jobs[0].name)).await?;
    let mut prepared = Vec::with_capacity(jobs.len());
    for job in jobs {
        let p = prepare(&mut conn, job, None).await?.0;
        let budget = budget(&mut conn, &p.job, args.workers).await?;
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
    let sight = monitor_sight(
        &mut conn,
        options.monitor.as_ref(),
        &policies,
        &prepared[0].job.name,
    )
    .await?;
    hang_up(conn).await;
    let mut warned = BTreeSet::new();
    for policy in policies {
        for warning in sight.iter().flat_map(|s| s.warnings(policy)) {
            if warned.insert(warning.clone()) {
                eprintln!("warning: {warning}");
            }
        }
    }
    let store = Store::new(&global.state_schema);
    let mode = Mode::detect(args.json);
    let sinks = Sinks {
        reporter: Reporter::new(mode),
        metrics,
    };
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
    fn emit(&mut self, event: &crate::event::Event) {
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
        };
        let outcome = engine::run(&r, &mut |e| sinks.emit(e), shutdown.clone()).await;
        let reporter = &mut sinks.reporter;
        let name = &p.job.name;
        let (exit, last_word) = match outcome {
            Err(e) => {
                reporter.finish();
                return Err(e.into());
            }
            Ok(Outcome::Finished { .. }) => (None, None),
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

/// `backfill plan`: everything `run` would check and do, printed; nothing written.
pub async fn plan(global: &GlobalArgs, args: &PlanArgs) -> Result<Exit> {
    let job = lookup::load(&args.job, &global.jobs_dir)?;
    let monitor = monitor_target(&args.monitor)?;
    let (_, mut conn) = connect(global, &application_name(&job.name)).await?;
    let store = Store::new(&global.state_schema);
    let state = store
        .list(&mut conn)
        .await?
        .into_iter()
        .find(|row| row.name == job.name);
    let (p, checked) = prepare(&mut conn, job, state.as_ref()).await?;
    let sight = monitor_sight(&mut conn, monitor.as_ref(), &[&p.job.throttle], &p.job.name).await?;
    let budget = budget(&mut conn, &p.job, args.workers).await?;
    let pending = preflight::pending_rows(&mut conn, &p.plan, args.exact_count)
        .await
        .context("cannot estimate the pending rows")?;
    let report = PlanReport {
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
    let (_, mut conn) = connect(global, &application_name(&job.name)).await?;
    let (p, _) = prepare(&mut conn, job, None).await?;
    if args.values {
        verify::check_comparable(&mut conn, &p.job).await?;
    }
    let state = Store::new(&global.state_schema)
        .list(&mut conn)
        .await?
        .into_iter()
        .find(|row| row.name == p.job.name);
    let subject = verify::Subject {
        job: &p.job,
        catalog: &p.catalog,
        plan: &p.plan,
        state: state.as_ref(),
    };
    let verdict = if args.values {
        match verify::values(&mut conn, &subject, &mut shutdown).await? {
            Some(verdict) => verdict,
            None => {
                eprintln!("{}: verify --values stopped; it wrote nothing", p.job.name);
                return Ok(Exit::Interrupted);
            }
        }
    } else {
        verify::pending(&mut conn, &subject).await?
    };
    hang_up(conn).await;
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

/// `backfill status`.
pub async fn status(global: &GlobalArgs, args: &StatusArgs) -> Result<Exit> {
    let (_, mut conn) = connect(global, "backfill:status").await?;
    let store = Store::new(&global.state_schema);
    let rows = store.list(&mut conn).await?;
    let ranges = if args.ranges {
        store.all_ranges(&mut conn).await?
    } else {
        vec![]
    };
    hang_up(conn).await;
    let of = |job: &str| -> Vec<RangeRow> {
        ranges
            .iter()
            .filter(|(j, _)| j == job)
            .map(|(_, r)| r.clone())
            .collect()
    };
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|row| {
                let mut v = report::status_json(row);
                if args.ranges {
                    v["ranges"] = of(&row.name).iter().map(report::range_json).collect();
                }
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else if args.ranges && !rows.is_empty() {
        for row in &rows {
            print!("{}", report::status_table(std::slice::from_ref(row)));
            print!("{}", report::ranges_table(&of(&row.name), &row.table_name));
        }
    } else {
        print!("{}", report::status_table(&rows));
    }
    Ok(Exit::Success)
}

/// `backfill reset`.
pub async fn reset(global: &GlobalArgs, args: &JobArg) -> Result<Exit> {
    let name = lookup::job_name(&args.job)?;
    let (_, mut conn) = connect(global, &application_name(&name)).await?;
    let store = Store::new(&global.state_schema);
    let was = store.reset(&mut conn, &name).await;
    let was = lookup::or_known_jobs(was, &mut conn, &store).await?;
    println!(
        "{name}: reset (was {}, {} rows done); the next run starts from the first key",
        was.status, was.rows_done
    );
    Ok(Exit::Success)
}

/// `backfill pause`, `resume` and `cancel`.
pub async fn control(global: &GlobalArgs, args: &JobArg, control: Control) -> Result<Exit> {
    let name = lookup::job_name(&args.job)?;
    let (_, mut conn) = connect(global, &application_name(&name)).await?;
    let store = Store::new(&global.state_schema);
    let row = store.control(&mut conn, &name, control).await;
    let row = lookup::or_known_jobs(row, &mut conn, &store).await?;
    let running = row.lease_is_live();
    let text = match (control, running) {
        (Control::Pause, true) => "pause requested; the runner pauses before its next batch",
        (Control::Pause, false) => "not running; it will start paused until `backfill resume`",
        (Control::Resume, _) => "resumed",
        (Control::Cancel, true) => "cancel requested; the runner stops after its current batch",
        (Control::Cancel, false) => "cancelled",
    };
    println!("{name}: {text}");
    Ok(Exit::Success)
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
            || cause.is::<lookup::LookupError>()
            || cause
                .downcast_ref::<crate::catalog::CatalogError>()
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
