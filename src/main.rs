//! The `backfill` binary: parses arguments, runs the command, prints `{:#}` errors to stderr
//! and maps the outcome to the documented exit codes (docs/commands.md). The only place that listens for Ctrl-C.

use std::process::ExitCode;

use backfill::cli::{Cli, Command};
use backfill::commands::{self, Exit};
use backfill::state::Control;
use clap::FromArgMatches as _;
use tokio::sync::watch;

/// The environment variables backfill reads (itself, through clap, or through sqlx as libpq's;
/// `postgres::conninfo` skips libpq's other empty ones itself).
const ENVIRONMENT: [&str; 18] = [
    "DATABASE_URL",
    "BACKFILL_MONITOR_URL",
    "BACKFILL_METRICS_ADDR",
    "BACKFILL_LOG",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGSSLMODE",
    "PGAPPNAME",
    "PGOPTIONS",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PG_BIN",
    "NO_COLOR",
];

fn main() -> ExitCode {
    // libpq reads a variable set to the empty string as unset (`DATABASE_URL= backfill …`,
    // a CI template that leaves one blank); so does backfill, for every variable it reads,
    // rather than refusing "" as a URL or an address.
    for name in ENVIRONMENT {
        if std::env::var_os(name).is_some_and(|value| value.is_empty()) {
            // SAFETY: the process has one thread here: the runtime starts below, and nothing
            // before this line spawns one; no other code reads the environment concurrently.
            unsafe { std::env::remove_var(name) };
        }
    }
    let cli =
        Cli::from_arg_matches(&backfill::cli::command().get_matches()).unwrap_or_else(|e| e.exit());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BACKFILL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(backfill::progress::ansi_on_stderr())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {}", backfill::postgres::error_chain(e.as_ref()));
            ExitCode::from(backfill::commands::exit_code(&e))
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop.send(true);
    });
    let g = &cli.global;
    match &cli.command {
        Command::Run(args) => commands::run(g, args, shutdown).await,
        Command::Plan(args) => commands::plan(g, args, shutdown).await,
        Command::Status(args) => commands::status(g, args).await,
        Command::Verify(args) => commands::verify(g, args, shutdown).await,
        Command::Failures(args) => commands::failures(g, args).await,
        Command::Reset(args) => commands::reset(g, args).await,
        Command::Pause(args) => commands::control(g, args, Control::Pause).await,
        Command::Resume(args) => commands::control(g, args, Control::Resume).await,
        Command::Cancel(args) => commands::control(g, args, Control::Cancel).await,
        Command::Serve(args) => commands::serve(g, args, shutdown).await,
        Command::Demo(args) => backfill::demo::demo(args, shutdown).await,
        Command::Completions(args) => Ok(commands::completions(args)),
    }
}

/// Ctrl-C (SIGINT) or SIGTERM (what `kill` and Kubernetes send).
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
