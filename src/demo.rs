//! `backfill demo`: the whole expand → backfill → verify → contract story on a throwaway
//! PostgreSQL (`scratch`), with a sample table and the real `jobs/demo_orders.toml`. Everything
//! it creates is removed when it returns, on success, error or Ctrl-C.

use std::path::Path;

use anyhow::{Context as _, Result};
use tokio::sync::watch;

use crate::cli::DemoArgs;
use crate::commands::{Exit, Sinks, lock_wait, prepare, run_jobs};
use crate::db::Target;
use crate::engine;
use crate::job::Job;
use crate::lockwait::Note;
use crate::postgres::throwaway::Cluster;
use crate::progress::{Mode, Reporter};
use crate::state::LEASE_TIMEOUT;
use crate::verify;

/// The demo's job file, compiled in so that the demo runs from any directory.
const JOB: &str = include_str!("../jobs/demo_orders.toml");

/// The sample table before the expand migration: orders with quantities and prices.
const CREATE: &str = "CREATE TABLE public.orders (id bigint PRIMARY KEY, qty int NOT NULL, price_cents int NOT NULL)";
const FILL: &str = "INSERT INTO public.orders SELECT g, 1 + g % 7, 100 + (g * 37) % 9900 FROM generate_series(1, {rows}) g";
const EXPAND: &str = "ALTER TABLE public.orders ADD COLUMN total_cents bigint";
const CONTRACT: &str = "ALTER TABLE public.orders ALTER COLUMN total_cents SET NOT NULL";

/// Runs the demo.
pub async fn demo(args: &DemoArgs, shutdown: watch::Receiver<bool>) -> Result<Exit> {
    eprintln!("starting a throwaway PostgreSQL cluster…");
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .context("the cluster start-up task failed")??;
    eprintln!(
        "PostgreSQL is up on port {} in {}",
        cluster.port(),
        cluster.data_dir().display()
    );
    let result = story(&cluster, args, shutdown).await;
    eprintln!("removing the throwaway cluster");
    drop(cluster);
    result
}

async fn story(
    cluster: &Cluster,
    args: &DemoArgs,
    shutdown: watch::Receiver<bool>,
) -> Result<Exit> {
    let target = Target::new(Some(&cluster.url("postgres")))?;
    let mut conn = target.connect("backfill:demo").await?;
    eprintln!("creating public.orders with {} rows…", args.rows);
    conn.execute(CREATE)
        .await
        .context("demo setup: create the table")?;
    let rows = i32::try_from(args.rows).unwrap_or(i32::MAX);
    conn.execute(&FILL.replace("{rows}", &rows.to_string()))
        .await
        .context("demo setup: fill the table")?;
    eprintln!("1. expand:   {EXPAND};");
    conn.execute(EXPAND).await?;
    conn.execute("ANALYZE public.orders").await?;

    eprintln!("2. backfill: backfill run jobs/demo_orders.toml");
    let job = Job::parse(JOB, Path::new("jobs/demo_orders.toml"))?;
    let mut quiet = |_: &crate::event::Event| {};
    let mut wait = lock_wait(&job, None, Note::Nowhere, &mut quiet, shutdown.clone());
    let Some((prepared, _)) = prepare(&mut conn, job, None, &mut wait).await? else {
        return Ok(Exit::Interrupted);
    };
    let options = engine::Options {
        restart: false,
        resume_cancelled: false,
        exact_count: false,
        reconnect_timeout: std::time::Duration::from_secs(60),
        monitor: None,
        workers: None,
        join: false,
        lease_timeout: LEASE_TIMEOUT,
        retry_failures: false,
    };
    let store = target.store("backfill");
    let sinks = Sinks {
        reporter: Reporter::new(Mode::detect(false)),
        metrics: None,
    };
    let exit = run_jobs(
        &target,
        &store,
        std::slice::from_ref(&prepared),
        &options,
        sinks,
        shutdown,
    )
    .await?;
    if exit != Exit::Success {
        return Ok(exit);
    }

    eprintln!("3. verify:   backfill verify jobs/demo_orders.toml");
    let subject = verify::Subject {
        job: &prepared.job,
        catalog: &prepared.catalog,
        plan: &prepared.plan,
        state: None,
        failed: &verify::Failed::default(),
    };
    let verdict = conn.conn().verify_pending(&subject).await?;
    print!("{}", verify::text(&subject, &verdict));
    if !verdict.ok() {
        return Ok(Exit::Pending);
    }
    eprintln!("4. contract: {CONTRACT};");
    conn.execute(CONTRACT).await?;
    eprintln!("done: every order has its total, and the column is NOT NULL.");
    Ok(Exit::Success)
}
