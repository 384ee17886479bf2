//! `cargo bench --bench backfill [-- options]`: how `backfill run` compares with one `UPDATE`
//! and with the migration guides' loop, how it scales (also with several workers), how long
//! DDL waits behind it, what it does to the table's disk, and what it does to the
//! application's latency (issues 5, 10, 11 and 12); and on MySQL and MariaDB (issues 18 and 19,
//! `-- mysql`). See BENCHMARKS.md for what each scenario does and for the latest results.
//!
//! The PostgreSQL scenarios run on one throwaway cluster started here, the MySQL section on
//! throwaway servers of its own; every scenario gets a fresh copy of the same table, so that
//! ratios within one run are comparable. No timing is asserted: the report states which
//! targets were met.

mod args;
mod bloat;
mod ddl;
mod fixture;
mod latency;
mod mysql;
mod pgbench;
mod profile;
mod report;
mod runner;
mod runqueue;
mod scaling;
mod stats;
mod targets;
mod throughput;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};

use args::{Options, Section};
use fixture::Server;
use report::{Machine, Report};

fn main() -> ExitCode {
    if std::env::args().any(|arg| arg == "--help" || arg == "-h") {
        println!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("benchmark failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: &Options) -> Result<()> {
    let started = Instant::now();
    let mut report = Report {
        machine: Machine::local(),
        command: command_line(),
        rows: options.rows,
        ..Report::default()
    };
    let on_postgres: Vec<Section> = [
        Section::Throughput,
        Section::Profile,
        Section::Ddl,
        Section::Bloat,
        Section::Latency,
        Section::Scaling,
    ]
    .into_iter()
    .filter(|section| options.runs(*section))
    .collect();
    if !on_postgres.is_empty() {
        eprintln!("starting a throwaway PostgreSQL cluster");
        let mut server = Server::start(&options.settings).await?;
        report.machine = Machine::describe(&mut server, &options.settings).await?;
        for section in on_postgres {
            if let Err(error) = run_section(section, &mut server, options, &mut report).await {
                eprintln!("  {section:?} failed: {error:#}");
                report.errors.push(format!("{section:?}: {error:#}"));
            }
            report.duration_s = started.elapsed().as_secs_f64();
            report.targets = targets::check(&report);
            // After each scenario, so that a late failure keeps the rest.
            write(&report, &options.json, Some(&server.log_path()))?;
        }
    }
    if options.runs(Section::Mysql) {
        report.mysql = Some(mysql::run(options.rows, &options.mysql, &options.json).await);
        report.duration_s = started.elapsed().as_secs_f64();
        report.targets = targets::check(&report);
        write(&report, &options.json, None)?;
    }
    print!("{}", report::markdown(&report));
    eprintln!("report written to {}", options.json.display());
    Ok(())
}

async fn run_section(
    section: Section,
    server: &mut Server,
    options: &Options,
    report: &mut Report,
) -> Result<()> {
    let rows = options.rows;
    match section {
        Section::Throughput => report.throughput = Some(throughput::run(server, options).await?),
        Section::Profile => {
            report.profile = Some(profile::run(server, &options.job(), rows).await?)
        }
        Section::Ddl => {
            let modes = ddl::modes(&options.yield_off_toml);
            report.ddl = Some(ddl::run(server, rows, &modes).await?);
        }
        Section::Bloat => {
            let with_loop = rows <= options.skip_loop_above;
            report.bloat = Some(bloat::run(server, rows, &options.job(), with_loop).await?)
        }
        Section::Latency => {
            let workload = latency::Workload {
                foreground: pgbench::Foreground {
                    bindir: server.bindir(),
                    port: server.port(),
                    rate: options.latency_rate,
                },
                idle_seconds: options.latency_seconds,
                rounds: options.latency_rounds,
                job: options.job(),
                guard_toml: options.guard_toml.clone(),
            };
            report.latency = Some(latency::run(server, rows, &workload).await?);
        }
        Section::Scaling => {
            let (job, sizes) = (options.job(), &options.scaling);
            let points = scaling::run(server, &job, sizes, &options.scaling_workers, rows).await?;
            report.growth = scaling::growth(&points, rows);
            report.scaling = Some(points);
        }
        Section::Mysql => unreachable!("the MySQL section runs on servers of its own"),
    }
    Ok(())
}

/// How this run was started, for the report's "reproduce with".
fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| arg != "--bench")
        .collect();
    if args.is_empty() {
        "cargo bench --bench backfill".into()
    } else {
        format!("cargo bench --bench backfill -- {}", args.join(" "))
    }
}

/// Writes the JSON report, its Markdown beside it, and a copy of the PostgreSQL server's log
/// while it runs (checkpoints and autovacuum runs are logged: they explain outliers).
fn write(report: &Report, json: &Path, server_log: Option<&Path>) -> Result<()> {
    if let Some(dir) = json.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("write {}", json.display()))?;
    std::fs::write(json.with_extension("md"), report::markdown(report))?;
    if let Some(log) = server_log {
        std::fs::copy(log, json.with_extension("postgres.log"))?;
    }
    Ok(())
}
