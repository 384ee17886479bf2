//! MySQL and MariaDB (issues 18 and 19): one `UPDATE` of the whole table, the migration guides'
//! loop in its MySQL form, and `backfill run` with 1 and with 2 workers, on a throwaway MariaDB
//! and then a throwaway MySQL. Every window gets a fresh, settled copy of the same table; the
//! methods run in rounds, interleaved in the same order every round (single `UPDATE`, 1 worker,
//! 2 workers, the loop), so that a burst of someone else's work on this shared machine hits
//! one window of every method rather than every window of one; the report gives medians, and
//! ratios taken within a round before their median. After the rounds, one profiled run per
//! worker count (`slowlog`). Then the DDL wait (`ddl`, issue 19): yield on and off in turn,
//! for as many rounds. `--mysql-only` runs either part alone.
//!
//! Owns the section's options, its rounds and its figures. The server and the table are
//! `server`'s, the loop `guides`'s, the Markdown `report`'s; the targets are `crate::targets`'s.

mod ddl;
mod guides;
pub mod report;
mod server;
mod slowlog;

use std::time::{Duration, Instant};

use anyhow::Result;
use backfill::mysql::throwaway::Flavor;
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection as _, MySqlConnection};

use crate::fixture::Copy;
use crate::runner::{self, Outcome};
use crate::runqueue::RunQueue;
use crate::stats::median;
use server::{Bench, EXPR, TABLE, TEMPLATE, machine_cpu_s};

pub const SINGLE: &str = "single UPDATE";
pub const LOOP: &str = "guides' loop (ORDER BY id LIMIT 5000)";
pub const ONE_WORKER: &str = "backfill run (1 worker)";
pub const TWO_WORKERS: &str = "backfill run (2 workers)";

/// One part of the section, as `--mysql-only` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The four methods' rounds and the profiled runs (issue 18).
    Throughput,
    /// The `ALTER`'s wait behind slow batches, yield on and off (issue 19).
    Ddl,
}

impl Part {
    /// `"ddl"` → [`Part::Ddl`].
    pub fn parse(text: &str) -> std::result::Result<Part, String> {
        match text {
            "throughput" => Ok(Part::Throughput),
            "ddl" => Ok(Part::Ddl),
            _ => Err(format!("--mysql-only takes throughput,ddl, not {text:?}")),
        }
    }
}

/// The section's own options (`--mysql-…`; the table's size is `--rows`).
#[derive(Debug, Clone)]
pub struct Options {
    /// Rounds of the interleaved windows (of each part).
    pub rounds: u32,
    pub flavors: Vec<Flavor>,
    pub parts: Vec<Part>,
    /// The job text that turns the monitor's yield off (`--yield-off-toml`, as on PostgreSQL).
    pub yield_off_toml: String,
    /// Statements of the guides' loop timed at each depth; 0 runs the whole loop.
    pub loop_batches: u32,
    /// Global variables over the section's own (`innodb_flush_log_at_trx_commit=2`).
    pub settings: Vec<(String, String)>,
    /// Job text appended to the runs' job (`[batch]\nmax = 20000`).
    pub job_extra: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            rounds: 3,
            flavors: vec![Flavor::MariaDb, Flavor::MySql],
            parts: vec![Part::Throughput, Part::Ddl],
            yield_off_toml: crate::args::YIELD_OFF_TOML.to_string(),
            loop_batches: 10,
            settings: Vec::new(),
            job_extra: String::new(),
        }
    }
}

/// What the section found, per flavor.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub rows: u64,
    pub rounds: u32,
    pub flavors: Vec<Flavored>,
}

/// One flavor's windows and their medians.
#[derive(Debug, Default, Serialize)]
pub struct Flavored {
    pub flavor: String,
    pub version: String,
    /// Why the flavor did not run (its programs missing, or a failure), if it did not.
    pub skipped: Option<String>,
    pub settings: Vec<(String, String)>,
    /// The fresh table's size as InnoDB counts it.
    pub table_mb: f64,
    /// Every window, in the order they ran.
    pub windows: Vec<Window>,
    /// Per method, medians over the rounds.
    pub methods: Vec<Method>,
    pub profiles: Vec<slowlog::Profile>,
    /// The DDL wait, when it ran.
    pub ddl: Option<ddl::DdlWait>,
}

/// One method in one round.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub round: u32,
    pub method: String,
    /// Measured, or for a sampled loop estimated.
    pub wall_s: f64,
    pub rows_per_s: f64,
    /// Transactions that changed rows.
    pub transactions: u64,
    pub peak_rss_kb: Option<u64>,
    /// The run's resident memory at its end.
    pub last_rss_kb: Option<u64>,
    /// CPU time over the window (not for a sampled loop, whose window holds untimed work): the
    /// server process's, the `backfill` process's, and everyone else's on the machine (the
    /// machine's busy time less both: other engineers' builds and tests show here).
    pub server_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
    pub others_cpu_s: Option<f64>,
    /// Mean runnable tasks on the machine (see `runqueue`).
    pub run_queue: Option<f64>,
    /// Redo log written, in MB (the log sequence number's advance).
    pub redo_mb: Option<f64>,
    /// The share of a worker's wall time spent in batch transactions.
    pub in_batches: Option<f64>,
    /// The guides' loop: how it was timed.
    pub guides: Option<guides::Timed>,
}

/// One method's medians over the rounds; ratios are taken within each round first.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    pub method: String,
    pub wall_s: f64,
    pub rows_per_s: f64,
    pub rows_per_s_by_round: Vec<f64>,
    pub vs_update: f64,
    pub vs_loop: Option<f64>,
    pub vs_one_worker: Option<f64>,
    pub transactions: f64,
    /// The largest of the rounds'.
    pub peak_rss_kb: Option<u64>,
    pub last_rss_kb: Option<u64>,
    pub server_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
    pub others_cpu_s: Option<f64>,
    pub run_queue: Option<f64>,
    pub redo_mb: Option<f64>,
    pub in_batches: Option<f64>,
    pub estimated: bool,
}

/// Runs the section on every flavor of `options`, `rows` rows each.
pub async fn run(rows: u64, options: &Options, json: &std::path::Path) -> Results {
    let mut results = Results {
        rows,
        rounds: options.rounds,
        flavors: Vec::new(),
    };
    for &flavor in &options.flavors {
        eprintln!("mysql: starting a throwaway {flavor}");
        let mut flavored = Flavored {
            flavor: flavor.to_string(),
            ..Flavored::default()
        };
        if let Err(error) = run_flavor(flavor, rows, options, json, &mut flavored).await {
            eprintln!("  {flavor} failed: {error:#}");
            flavored.skipped = Some(format!("{error:#}"));
        }
        flavored.methods = medians(&flavored.windows);
        results.flavors.push(flavored);
    }
    results
}

async fn run_flavor(
    flavor: Flavor,
    rows: u64,
    options: &Options,
    json: &std::path::Path,
    out: &mut Flavored,
) -> Result<()> {
    let mut bench = match Bench::start(flavor, rows, &options.settings).await? {
        Ok(bench) => bench,
        Err(why) => {
            eprintln!("  skipping {flavor}: {why}");
            out.skipped = Some(why);
            return Ok(());
        }
    };
    out.version = bench.version.clone();
    out.settings = bench.settings.clone();
    eprintln!("  {flavor} {} on port {}", bench.version, bench.port());
    warm_up(&mut bench, options).await?;
    if options.parts.contains(&Part::Throughput) {
        throughput(&mut bench, options, json, out).await?;
    }
    if options.parts.contains(&Part::Ddl) {
        let modes = crate::ddl::modes(&options.yield_off_toml);
        out.ddl = Some(ddl::run(&mut bench, options.rounds, &modes).await?);
    }
    Ok(())
}

/// The methods' interleaved rounds, then one profiled run per worker count.
async fn throughput(
    bench: &mut Bench,
    options: &Options,
    json: &std::path::Path,
    out: &mut Flavored,
) -> Result<()> {
    let flavor = bench.flavor;
    for round in 1..=options.rounds {
        for method in [SINGLE, ONE_WORKER, TWO_WORKERS, LOOP] {
            bench.fresh().await?;
            if out.table_mb == 0.0 {
                out.table_mb = bench.table_mb().await?;
            }
            eprintln!("  {flavor} round {round}: {method}");
            let window = measure(bench, options, round, method).await?;
            eprintln!(
                "    {:.1} s, {:.0} rows/s",
                window.wall_s, window.rows_per_s
            );
            out.windows.push(window);
        }
    }
    let log = server::slow_log_path(json, flavor)?;
    for (method, workers) in [(ONE_WORKER, 1), (TWO_WORKERS, 2)] {
        bench.fresh().await?;
        eprintln!("  {flavor}: profile of {method} (slow query log on)");
        let offset = slowlog::start(bench, &log).await?;
        let outcome = run_job(bench, options, &format!("profile_{workers}"), workers).await;
        let logged = slowlog::finish(bench, &log, offset).await?;
        let outcome = outcome?;
        let costs = slowlog::costs(&logged, outcome.batches.len());
        out.profiles.push(slowlog::profile(method, &outcome, costs));
    }
    Ok(())
}

/// A first run on a small table of its own, untimed: it creates the state tables (DDL that
/// only a server's first run pays) and brings the binary into the page cache.
async fn warm_up(bench: &mut Bench, options: &Options) -> Result<()> {
    bench
        .execute(&format!(
            "CREATE TABLE warm_up LIKE {TEMPLATE}; \
             INSERT INTO warm_up SELECT * FROM {TEMPLATE} WHERE id <= 20000"
        ))
        .await?;
    let job = format!(
        "name = \"warm_up\"\ntable = \"warm_up\"\nwhere = \"total_cents IS NULL\"\n\n\
         [set]\ntotal_cents = \"{EXPR}\"\n{}",
        options.job_extra
    );
    let copy = Copy {
        name: "warm_up".to_string(),
        url: bench.url.clone(),
        rows: 20_000,
    };
    runner::run_to_end(&copy, &job, &[]).await?;
    bench.execute("DROP TABLE warm_up").await
}

/// Fills the column of the fresh table with `method` and times it.
async fn measure(bench: &mut Bench, options: &Options, round: u32, method: &str) -> Result<Window> {
    let (server_cpu, machine_cpu) = (bench.cpu_s(), machine_cpu_s());
    let redo = bench.redo_position().await?;
    let queue = RunQueue::sample();
    let mut window = Window {
        round,
        method: method.to_string(),
        wall_s: 0.0,
        rows_per_s: 0.0,
        transactions: 0,
        peak_rss_kb: None,
        last_rss_kb: None,
        server_cpu_s: None,
        client_cpu_s: None,
        others_cpu_s: None,
        run_queue: None,
        redo_mb: None,
        in_batches: None,
        guides: None,
    };
    let measured = match method {
        SINGLE => single_update(bench).await.map(|took| {
            window.wall_s = took.as_secs_f64();
            window.transactions = 1;
        }),
        LOOP if options.loop_batches > 0 => guides::sampled(bench, options.loop_batches)
            .await
            .map(|timed| window.guides = Some(timed)),
        LOOP => guides::whole(bench)
            .await
            .map(|timed| window.guides = Some(timed)),
        _ => {
            let workers = if method == ONE_WORKER { 1 } else { 2 };
            let name = format!("round_{round}_{workers}");
            run_job(bench, options, &name, workers)
                .await
                .map(|outcome| {
                    window.wall_s = outcome.wall_s;
                    window.transactions = outcome.batches.len() as u64;
                    window.peak_rss_kb = Some(outcome.peak_rss_kb);
                    window.last_rss_kb = Some(outcome.last_rss_kb);
                    window.client_cpu_s = Some(outcome.cpu_s);
                    window.in_batches =
                        Some(outcome.batch_seconds() / (outcome.wall_s * f64::from(workers)));
                })
        }
    };
    let run_queue = queue.mean().await;
    measured?;
    if let Some(timed) = &window.guides {
        window.wall_s = timed.wall_s;
        window.transactions = timed.statements;
    }
    if window.guides.as_ref().is_none_or(|timed| !timed.estimated) {
        let server = bench.cpu_s() - server_cpu;
        let client = window.client_cpu_s.unwrap_or(0.0);
        window.server_cpu_s = Some(server);
        window.others_cpu_s = Some((machine_cpu_s() - machine_cpu - server - client).max(0.0));
        window.run_queue = Some(run_queue);
        let redo_bytes = bench.redo_position().await?.saturating_sub(redo);
        window.redo_mb = Some(redo_bytes as f64 / 1024.0 / 1024.0);
    }
    window.rows_per_s = bench.rows as f64 / window.wall_s;
    Ok(window)
}

/// The single `UPDATE` of the whole table: one autocommit statement at the server's default
/// isolation (`REPEATABLE READ`), as a user would type it.
async fn single_update(bench: &mut Bench) -> Result<Duration> {
    let mut conn = MySqlConnection::connect(&bench.url).await?;
    let sql = format!("UPDATE {TABLE} SET total_cents = {EXPR} WHERE total_cents IS NULL");
    let started = Instant::now();
    let changed = sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await?
        .rows_affected();
    let took = started.elapsed();
    conn.close().await?;
    anyhow::ensure!(
        changed == bench.rows,
        "the single UPDATE changed {changed} rows"
    );
    bench.check_filled(SINGLE).await?;
    Ok(took)
}

/// `backfill --database-url URL run --json [--workers N] JOB` as a user runs it, the job at
/// its defaults (the MySQL demo's `where` and `[set]`; `[throttle]` and `[guard]` at their
/// defaults, as PostgreSQL's throughput scenario runs it) under a name of its own, so that
/// every window is a new job; then the table is checked.
async fn run_job(
    bench: &mut Bench,
    options: &Options,
    name: &str,
    workers: u32,
) -> Result<Outcome> {
    let job = format!(
        "name = \"{name}\"\ntable = \"{TABLE}\"\nwhere = \"total_cents IS NULL\"\n\n\
         [set]\ntotal_cents = \"{EXPR}\"\n{}",
        options.job_extra
    );
    let copy = Copy {
        name: TABLE.to_string(),
        url: bench.url.clone(),
        rows: bench.rows,
    };
    let args = vec!["--workers".to_string(), workers.to_string()];
    let outcome = runner::run_to_end(&copy, &job, &args).await?;
    anyhow::ensure!(
        outcome.rows_done == bench.rows,
        "backfill run ({name}) changed {} of {} rows",
        outcome.rows_done,
        bench.rows
    );
    bench.check_filled(name).await?;
    Ok(outcome)
}

/// Per method, the medians over the rounds; each ratio is taken within its round first.
fn medians(windows: &[Window]) -> Vec<Method> {
    let in_round = |round: u32, method: &str| {
        windows
            .iter()
            .find(|w| w.round == round && w.method == method)
    };
    let ratio =
        |w: &Window, base: &str| in_round(w.round, base).map(|b| w.rows_per_s / b.rows_per_s);
    let mut methods = Vec::new();
    for method in [SINGLE, LOOP, ONE_WORKER, TWO_WORKERS] {
        let mine: Vec<&Window> = windows.iter().filter(|w| w.method == method).collect();
        if mine.is_empty() {
            continue;
        }
        let of = |f: &dyn Fn(&Window) -> Option<f64>| {
            let values: Vec<f64> = mine.iter().filter_map(|w| f(w)).collect();
            (!values.is_empty()).then(|| median(values))
        };
        let is_run = method == ONE_WORKER || method == TWO_WORKERS;
        methods.push(Method {
            method: method.to_string(),
            wall_s: of(&|w| Some(w.wall_s)).unwrap_or(0.0),
            rows_per_s: of(&|w| Some(w.rows_per_s)).unwrap_or(0.0),
            rows_per_s_by_round: mine.iter().map(|w| w.rows_per_s).collect(),
            vs_update: of(&|w| ratio(w, SINGLE)).unwrap_or(0.0),
            vs_loop: of(&|w| ratio(w, LOOP)).filter(|_| is_run),
            vs_one_worker: of(&|w| ratio(w, ONE_WORKER)).filter(|_| method == TWO_WORKERS),
            transactions: of(&|w| Some(w.transactions as f64)).unwrap_or(0.0),
            peak_rss_kb: mine.iter().filter_map(|w| w.peak_rss_kb).max(),
            last_rss_kb: mine.iter().filter_map(|w| w.last_rss_kb).max(),
            server_cpu_s: of(&|w| w.server_cpu_s),
            client_cpu_s: of(&|w| w.client_cpu_s),
            others_cpu_s: of(&|w| w.others_cpu_s),
            run_queue: of(&|w| w.run_queue),
            redo_mb: of(&|w| w.redo_mb),
            in_batches: of(&|w| w.in_batches),
            estimated: mine
                .iter()
                .any(|w| w.guides.as_ref().is_some_and(|g| g.estimated)),
        });
    }
    methods
}
