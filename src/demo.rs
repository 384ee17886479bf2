//! `backfill demo`: the whole expand → backfill → verify → contract story on a throwaway
//! server — PostgreSQL (`scratch`), or MySQL or MariaDB (`--database`) — with a sample table
//! and the real `jobs/demo_orders.toml` (`jobs/demo_orders_mysql.toml`). Everything it creates
//! is removed when it returns, on success, error or Ctrl-C.

use std::path::Path;

use anyhow::{Context as _, Result};
use tokio::sync::watch;

use crate::cli::{DemoArgs, DemoDatabase};
use crate::commands::{Exit, Sinks, lock_wait, prepare, run_jobs};
use crate::db::Target;
use crate::engine;
use crate::job::Job;
use crate::lockwait::Note;
use crate::mysql::throwaway::{Error as ServerError, Flavor, Server};
use crate::postgres::throwaway::Cluster;
use crate::progress::{Mode, Reporter};
use crate::state::LEASE_TIMEOUT;
use crate::verify;

/// The story's statements and job on one database.
struct Story {
    /// The job file, as the demo names it.
    path: &'static str,
    /// Its text, compiled in so that the demo runs from any directory.
    job: &'static str,
    /// The sample table before the expand migration: orders with quantities and prices.
    create: &'static str,
    /// Fills it with so many rows.
    fill: fn(u32) -> String,
    expand: &'static str,
    /// Counts the table's rows for the planner after the fill.
    analyze: &'static str,
    contract: &'static str,
}

const POSTGRES: Story = Story {
    path: "jobs/demo_orders.toml",
    job: include_str!("../jobs/demo_orders.toml"),
    create: "CREATE TABLE public.orders (id bigint PRIMARY KEY, qty int NOT NULL, price_cents int NOT NULL)",
    fill: |rows| {
        format!(
            "INSERT INTO public.orders SELECT g, 1 + g % 7, 100 + (g * 37) % 9900 \
             FROM generate_series(1, {rows}) g"
        )
    },
    expand: "ALTER TABLE public.orders ADD COLUMN total_cents bigint",
    analyze: "ANALYZE public.orders",
    contract: "ALTER TABLE public.orders ALTER COLUMN total_cents SET NOT NULL",
};

const MYSQL: Story = Story {
    path: "jobs/demo_orders_mysql.toml",
    job: include_str!("../jobs/demo_orders_mysql.toml"),
    create: "CREATE TABLE orders (id BIGINT NOT NULL PRIMARY KEY, qty INT NOT NULL, price_cents INT NOT NULL) ENGINE=InnoDB",
    fill: mysql_fill,
    expand: "ALTER TABLE orders ADD COLUMN total_cents BIGINT NULL",
    analyze: "ANALYZE TABLE orders",
    contract: "ALTER TABLE orders MODIFY COLUMN total_cents BIGINT NOT NULL",
};

/// Fills MySQL's `orders` with `rows` rows, numbered from a cross join of as many sets of the
/// ten digits as `rows` has digits: MySQL has no `generate_series`, and caps a recursive CTE
/// at 1000 rows by default.
fn mysql_fill(rows: u32) -> String {
    const DIGITS: &str = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL \
        SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
        UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let places = rows.max(1).to_string().len();
    let number: Vec<String> = (0..places)
        .map(|p| format!("d{p}.d * 1{}", "0".repeat(p)))
        .collect();
    let from: Vec<String> = (0..places).map(|p| format!("{DIGITS} d{p}")).collect();
    format!(
        "INSERT INTO orders SELECT g, 1 + g % 7, 100 + (g * 37) % 9900 \
         FROM (SELECT {} + 1 AS g FROM {}) n WHERE g <= {rows}",
        number.join(" + "),
        from.join(", ")
    )
}

/// Runs the demo.
pub async fn demo(args: &DemoArgs, shutdown: watch::Receiver<bool>) -> Result<Exit> {
    match args.database {
        DemoDatabase::Postgres => {
            eprintln!("starting a throwaway PostgreSQL cluster…");
            let cluster = tokio::task::spawn_blocking(Cluster::start)
                .await
                .context("the cluster start-up task failed")??;
            eprintln!(
                "PostgreSQL is up on port {} in {}",
                cluster.port(),
                cluster.data_dir().display()
            );
            let result = story(&POSTGRES, &cluster.url("postgres"), args, shutdown).await;
            eprintln!("removing the throwaway cluster");
            drop(cluster);
            result
        }
        DemoDatabase::Mysql | DemoDatabase::Mariadb => {
            let server = start_server(args.database).await?;
            eprintln!(
                "{} {} is up on port {}",
                server.flavor(),
                server.version(),
                server.port()
            );
            let mut admin = Target::new(Some(&server.url("")))?
                .connect("backfill:demo")
                .await?;
            admin.execute("CREATE DATABASE demo").await?;
            admin.hang_up().await;
            let result = story(&MYSQL, &server.url("demo"), args, shutdown).await;
            eprintln!("removing the throwaway server");
            drop(server);
            result
        }
    }
}

/// Starts the throwaway server `database` asks for: `mysql` is MySQL, or MariaDB when only
/// MariaDB is installed; when neither is, the error says how to install one.
async fn start_server(database: DemoDatabase) -> Result<Server> {
    let start = async |flavor: Flavor| {
        eprintln!("starting a throwaway {flavor} server…");
        tokio::task::spawn_blocking(move || Server::start(flavor))
            .await
            .context("the server start-up task failed")
    };
    if database == DemoDatabase::Mariadb {
        return Ok(start(Flavor::MariaDb).await??);
    }
    match start(Flavor::MySql).await? {
        Err(mysql @ ServerError::NotFound { .. }) => match start(Flavor::MariaDb).await? {
            Err(ServerError::NotFound { .. }) => Err(anyhow::anyhow!(
                "{mysql}; or install MariaDB (`sudo apt-get install mariadb-server`) and run \
                 `backfill demo --database mariadb`"
            )),
            other => Ok(other?),
        },
        other => Ok(other?),
    }
}

/// The story on the server at `url`: the table, expand, backfill, verify and contract.
async fn story(
    story: &Story,
    url: &str,
    args: &DemoArgs,
    shutdown: watch::Receiver<bool>,
) -> Result<Exit> {
    let target = Target::new(Some(url))?;
    let mut conn = target.connect("backfill:demo").await?;
    eprintln!("creating orders with {} rows…", args.rows);
    conn.execute(story.create)
        .await
        .context("demo setup: create the table")?;
    let rows = args.rows.min(i32::MAX as u32);
    conn.execute(&(story.fill)(rows))
        .await
        .context("demo setup: fill the table")?;
    eprintln!("1. expand:   {};", story.expand);
    conn.execute(story.expand).await?;
    conn.execute(story.analyze).await?;

    eprintln!("2. backfill: backfill run {}", story.path);
    let job = Job::parse(story.job, Path::new(story.path))?;
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
        replicas: Vec::new(),
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

    eprintln!("3. verify:   backfill verify {}", story.path);
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
    eprintln!("4. contract: {};", story.contract);
    conn.execute(story.contract).await?;
    eprintln!("done: every order has its total, and the column is NOT NULL.");
    Ok(Exit::Success)
}
