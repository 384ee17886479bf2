//! The command line: clap types only. Field doc comments are the `--help` text. No behaviour
//! lives here (see `commands`), except [`command`], which takes out of a subcommand's help the
//! global options it does not use.

use std::path::PathBuf;

use clap::{Args, CommandFactory as _, Parser, Subcommand};

/// Fill new PostgreSQL columns in small keyset batches, without blocking the application.
///
/// The "backfill" step of an expand → backfill → contract schema change: after the expand
/// migration adds a column, `backfill run` fills it in short, checkpointed transactions, and
/// `backfill verify` tells CI whether the contract migration may go ahead.
///
/// Exit codes: 0 done; 1 runtime failure, or a run cancelled by an operator (`backfill
/// cancel`); 2 invalid job file or arguments (nothing touched); 3 `verify` found rows still
/// pending or values that differ; 130 stopped by Ctrl-C or SIGTERM after checkpointing.
///
/// Environment: DATABASE_URL, or libpq's PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
/// PGSERVICE, PGPASSFILE, PGSSLMODE and the others (docs/commands.md); BACKFILL_MONITOR_URL and BACKFILL_METRICS_ADDR as their options;
/// BACKFILL_LOG=debug turns on diagnostic logging on stderr (any tracing filter, e.g.
/// `backfill=debug,sqlx=warn`); NO_COLOR=1 turns colours off; PG_BIN=/path/to/bin picks the
/// PostgreSQL server binaries (initdb, pg_ctl) that `demo` and the test suite start.
#[derive(Debug, Parser)]
#[command(name = "backfill", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes: shown under their own heading, after the command's own, in
/// this order, in every command's help.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// PostgreSQL connection string as libpq reads it: postgres://user:password@host:5432/db,
    /// or "host=/var/run/postgresql dbname=db", or "service=NAME". What it leaves unset comes
    /// from libpq's PG… variables, ~/.pgpass and the defaults (the local Unix socket).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Schema that holds the state table `jobs` (created on the first run).
    #[arg(long, default_value = "backfill", global = true)]
    pub state_schema: String,
    /// Directory where a bare job name NAME is read from as NAME.toml.
    #[arg(long, default_value = "jobs", global = true)]
    pub jobs_dir: PathBuf,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run jobs (in order) from their checkpoints to the end; resumes where a run stopped.
    Run(RunArgs),
    /// Dry run: check the job against the database, print the SQL of a batch, EXPLAIN of the
    /// first batch and the estimate. Writes nothing.
    Plan(PlanArgs),
    /// Show the jobs in the state table (every job, or those named): status, rows done, rate,
    /// last update.
    Status(StatusArgs),
    /// Count rows that still match the job's `where` (and with --values compare every row's
    /// [set] columns with their expressions); exit 0 when all is well, 3 otherwise.
    Verify(VerifyArgs),
    /// List the rows a job could not backfill and set aside (`[batch] on_error = "skip"`),
    /// with the server's SQLSTATE and message; `run --retry-failures` tries them again.
    Failures(FailuresArgs),
    /// Forget a job's checkpoint, counters and failed rows so that the next run starts over.
    Reset(JobArg),
    /// Ask a running job to pause before its next batch (it keeps its lease).
    Pause(JobArg),
    /// Let a paused job go on.
    Resume(JobArg),
    /// Ask a running job to stop after its current batch and mark it cancelled.
    Cancel(JobArg),
    /// Serve a live web page of every job in the state tables (any process, any host), with
    /// its JSON API, Prometheus metrics, and pause, resume and cancel for holders of the token.
    Serve(ServeArgs),
    /// Start a throwaway PostgreSQL, fill a sample table with a real run, verify, clean up.
    Demo(DemoArgs),
    /// Print a shell completion script, e.g. `backfill completions bash >
    /// /etc/bash_completion.d/backfill`.
    Completions(CompletionsArgs),
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen. Loopback unless told otherwise; any other address needs a token.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub addr: std::net::SocketAddr,
    /// A file holding the token that pause, resume and cancel need (sent by the page as
    /// `Authorization: Bearer …`). Without a token the page is read-only.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The name a proxy in front of a loopback server is reached by (its `Host`, e.g.
    /// backfill.example.com). A loopback server answers only loopback names otherwise, so that
    /// no other site can read it through a name that points at 127.0.0.1.
    #[arg(long, value_name = "NAME")]
    pub public_host: Option<String>,
}

/// `completions` options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The global options each subcommand ignores, by the ids clap gives them.
const IGNORED: [(&str, &[&str]); 9] = [
    ("demo", &["database_url", "state_schema", "jobs_dir"]),
    ("completions", &["database_url", "state_schema", "jobs_dir"]),
    ("status", &["jobs_dir"]),
    ("serve", &["jobs_dir"]),
    ("failures", &["jobs_dir"]),
    ("reset", &["jobs_dir"]),
    ("pause", &["jobs_dir"]),
    ("resume", &["jobs_dir"]),
    ("cancel", &["jobs_dir"]),
];

/// The command line as clap parses it, with each subcommand's help listing only the global
/// options it uses. A global option is copied into every subcommand when clap builds the
/// command, unless the subcommand has one of the same id: a hidden copy keeps it accepted
/// (in scripts that pass it everywhere) but out of that subcommand's help.
pub fn command() -> clap::Command {
    let cli = Cli::command();
    let globals: Vec<clap::Arg> = cli.get_arguments().cloned().collect();
    IGNORED.iter().fold(cli, |cli, (name, ids)| {
        cli.mut_subcommand(*name, |mut sub| {
            for arg in globals
                .iter()
                .filter(|a| ids.contains(&a.get_id().as_str()))
            {
                sub = sub.arg(arg.clone().global(false).hide(true));
            }
            sub
        })
    })
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Job files, or names looked up in --jobs-dir.
    #[arg(required = true, value_name = "JOB")]
    pub jobs: Vec<String>,
    /// Start over from the first key, forgetting any checkpoint and the rows set aside (also
    /// after a job file change).
    #[arg(long)]
    pub restart: bool,
    /// Continue a cancelled job from its checkpoint.
    #[arg(long)]
    pub resume_cancelled: bool,
    /// Count pending rows exactly with count(*) instead of estimating them from a block sample.
    #[arg(long)]
    pub exact_count: bool,
    /// Only retry the rows the job set aside in its failures table (`[batch] on_error =
    /// "skip"`), each in its own short transaction on one connection, under the job's timeouts
    /// and monitor: rows that now succeed leave the table, rows that fail again stay with the
    /// new message. Works on a job that is done; does not walk the rest of a job that is not.
    #[arg(long, conflicts_with_all = ["restart", "join"])]
    pub retry_failures: bool,
    /// Batch loops to run in this process, each on its own connection, sharing the job's key
    /// range (1 to 64; default: `[batch] workers`, else 1). A process uses N + 3 connections:
    /// the N batch connections, the heartbeat's, the monitor's and the vacuum's (N + 1 with
    /// `[throttle] enabled = false`), and one more for the guard with `[guard]` on.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: Option<u32>,
    /// Add workers to a job that another process or host is running (or run it if nobody
    /// does), instead of refusing: every process takes free ranges or splits running ones.
    #[arg(long)]
    pub join: bool,
    /// How long other processes wait after this one's last heartbeat before they take its
    /// ranges over (it beats every second; at least 3s). A process on the same host that
    /// is gone is taken over at once.
    #[arg(long, default_value = "15s", value_parser = lease_timeout)]
    pub lease_timeout: std::time::Duration,
    #[command(flatten)]
    pub monitor: MonitorArg,
    /// A MySQL or MariaDB replica to watch, e.g. mysql://watcher:secret@replica1:3306/
    /// (repeat for each): the monitor reads its SHOW REPLICA STATUS and pauses the run while
    /// it lags more than [throttle] max_replica_lag, while its replication is stopped, and while
    /// it cannot be read. PostgreSQL's replicas are read on the primary, without it.
    #[arg(long = "replica-url", value_name = "URL")]
    pub replica_urls: Vec<String>,
    /// How long to keep reconnecting when the database goes away (a restart, a failover)
    /// before giving up with exit code 1; the checkpoint stays intact either way.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub reconnect_timeout: std::time::Duration,
    /// Print NDJSON events on stdout instead of a progress bar.
    #[arg(long)]
    pub json: bool,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics while the run lasts
    /// (backfill_rows_done_total, backfill_state, …), e.g. 127.0.0.1:9187.
    #[arg(
        long,
        env = "BACKFILL_METRICS_ADDR",
        hide_env_values = true,
        value_name = "HOST:PORT",
        value_parser = crate::metrics::parse_addr
    )]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Where the monitor connects, for `run` and for `plan` (which checks its privileges).
#[derive(Debug, Args)]
pub struct MonitorArg {
    /// Database URL for the monitor that watches locks, load and replicas (default: the
    /// database URL). Point it straight at the primary when the job goes through PgBouncer.
    #[arg(long, env = "BACKFILL_MONITOR_URL", hide_env_values = true)]
    pub monitor_url: Option<String>,
}

/// `plan` options.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Job file, or a name looked up in --jobs-dir.
    #[arg(value_name = "JOB")]
    pub job: String,
    /// Count pending rows exactly with count(*) instead of estimating them from a block sample.
    #[arg(long)]
    pub exact_count: bool,
    /// Show the connections `run --workers N` would hold, and whether the server has room.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: Option<u32>,
    #[command(flatten)]
    pub monitor: MonitorArg,
    #[command(flatten)]
    pub lock_wait: LockWaitArg,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How long `plan` and `verify` wait for a lock on the table (`run` waits for as long as it
/// takes).
#[derive(Debug, Args)]
pub struct LockWaitArg {
    /// How long to wait, when another session holds or waits for a lock on the table that
    /// conflicts with reading it (a migration's ALTER TABLE, a LOCK TABLE), before giving up
    /// with exit code 1 and naming that session.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lock_wait: std::time::Duration,
}

/// `status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Jobs to show, by name or job file path (default: every job in the state table).
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also list every range of each job: who walks it, where its cursor is, its rows and
    /// rate.
    #[arg(long)]
    pub ranges: bool,
}

/// A lease timeout of at least [`crate::state::MIN_LEASE_TIMEOUT`].
fn lease_timeout(text: &str) -> Result<std::time::Duration, String> {
    let timeout = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    let least = crate::state::MIN_LEASE_TIMEOUT;
    if timeout < least {
        return Err(format!(
            "{} is shorter than {}: other processes would take over a live one",
            humantime::format_duration(timeout),
            humantime::format_duration(least)
        ));
    }
    Ok(timeout)
}

/// `verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Job file, or a name looked up in --jobs-dir.
    #[arg(value_name = "JOB")]
    pub job: String,
    /// Also walk the whole table in read-only batches (the job's batch.max keys, its timeouts
    /// and pause) and count the rows whose [set] columns differ from their expressions,
    /// showing the first ones. Refuses expressions that call volatile functions or read the
    /// clock (now(), random()…).
    #[arg(long)]
    pub values: bool,
    #[command(flatten)]
    pub lock_wait: LockWaitArg,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `failures` options.
#[derive(Debug, Args)]
pub struct FailuresArgs {
    /// Job name, or a path to its job file.
    #[arg(value_name = "JOB")]
    pub job: String,
    /// List at most this many rows, in the order they first failed.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: u32,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A job by name (as in the state table) or by job file path.
#[derive(Debug, Args)]
pub struct JobArg {
    /// Job name, or a path to its job file.
    #[arg(value_name = "JOB")]
    pub job: String,
}

/// `demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows in the sample table.
    #[arg(long, default_value_t = 300_000)]
    pub rows: u32,
    /// The throwaway server to run the story on: `mysql` takes MySQL, or MariaDB when only
    /// MariaDB is installed.
    #[arg(long, value_enum, default_value_t = DemoDatabase::Postgres)]
    pub database: DemoDatabase,
}

/// The servers `demo` can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoDatabase {
    Postgres,
    Mysql,
    Mariadb,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    fn help(args: &[&str]) -> String {
        command()
            .try_get_matches_from(args)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn demo_and_status_do_not_offer_options_they_ignore() {
        let demo = help(&["backfill", "demo", "--help"]);
        assert!(!demo.contains("--database-url"), "{demo}");
        assert!(!demo.contains("--jobs-dir"), "{demo}");
        assert!(!demo.contains("--state-schema"), "{demo}");
        let status = help(&["backfill", "status", "--help"]);
        assert!(!status.contains("--jobs-dir"), "{status}");
        assert!(status.contains("--database-url"), "{status}");
        assert!(help(&["backfill", "run", "--help"]).contains("--jobs-dir"));
    }

    #[test]
    fn ignored_options_are_still_accepted() {
        let matches = command()
            .try_get_matches_from(["backfill", "--jobs-dir", "x", "status"])
            .unwrap();
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap();
        assert_eq!(cli.global.jobs_dir, PathBuf::from("x"));
    }

    #[test]
    fn run_takes_several_jobs() {
        let cli = Cli::try_parse_from(["backfill", "run", "a", "b", "--restart"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(args.jobs, ["a", "b"]);
        assert!(args.restart);
    }

    #[test]
    fn workers_join_and_lease_timeout_are_read() {
        let cli = Cli::try_parse_from([
            "backfill",
            "run",
            "a",
            "--workers",
            "4",
            "--join",
            "--lease-timeout",
            "5s",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(args.workers, Some(4));
        assert!(args.join);
        assert_eq!(args.lease_timeout, std::time::Duration::from_secs(5));
    }

    #[test]
    fn workers_and_lease_timeout_out_of_bounds_are_refused() {
        for args in [
            ["backfill", "run", "a", "--workers", "0"],
            ["backfill", "run", "a", "--workers", "65"],
            ["backfill", "run", "a", "--lease-timeout", "1s"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn lock_wait_defaults_to_ten_seconds() {
        let cli = Cli::try_parse_from(["backfill", "plan", "a"]).unwrap();
        let Command::Plan(args) = cli.command else {
            panic!("expected plan")
        };
        assert_eq!(args.lock_wait.lock_wait, std::time::Duration::from_secs(10));
        let cli = Cli::try_parse_from(["backfill", "verify", "a", "--lock-wait", "1s"]).unwrap();
        let Command::Verify(args) = cli.command else {
            panic!("expected verify")
        };
        assert_eq!(args.lock_wait.lock_wait, std::time::Duration::from_secs(1));
    }

    #[test]
    fn retry_failures_goes_with_neither_restart_nor_join() {
        let cli = Cli::try_parse_from(["backfill", "run", "a", "--retry-failures"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert!(args.retry_failures);
        for other in ["--restart", "--join"] {
            let args = ["backfill", "run", "a", "--retry-failures", other];
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        let failures = Cli::try_parse_from(["backfill", "failures", "a", "--json"]).unwrap();
        assert!(matches!(
            failures.command,
            Command::Failures(FailuresArgs {
                json: true,
                limit: 100,
                ..
            })
        ));
    }

    #[test]
    fn status_takes_any_number_of_jobs() {
        for (args, jobs) in [
            (&["backfill", "status"][..], &[][..]),
            (&["backfill", "status", "a"], &["a"]),
            (
                &["backfill", "status", "a", "jobs/b.toml", "--json"],
                &["a", "jobs/b.toml"],
            ),
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Status(status) = cli.command else {
                panic!("expected status")
            };
            assert_eq!(status.jobs, jobs, "{args:?}");
        }
    }

    #[test]
    fn help_shows_no_empty_environment_values() {
        // An unset variable read as `[env: NAME=]` looks like one set to nothing.
        let run = help(&["backfill", "run", "--help"]);
        assert!(run.contains("[env: BACKFILL_METRICS_ADDR]"), "{run}");
        assert!(run.contains("[env: BACKFILL_MONITOR_URL]"), "{run}");
        assert!(!run.contains("=]"), "{run}");
    }

    #[test]
    fn run_needs_a_job() {
        assert!(Cli::try_parse_from(["backfill", "run"]).is_err());
    }
}
