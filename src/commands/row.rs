//! The commands that act on a job's rows in the state tables and need no job file (an
//! operator on another host may not have it): `status`, `failures`, `reset`, `pause`, `resume`
//! and `cancel`. A job file given instead of a name is read for its name only.

use anyhow::Result;

use crate::cli::{FailuresArgs, GlobalArgs, JobArg, StatusArgs};
use crate::engine::application_name;
use crate::report;
use crate::state::{Control, RangeRow};

use super::{Exit, connect, lookup};

/// `backfill status [JOB…]`: every job, or the jobs named; a name without a job is an error
/// listing the jobs there are, as for the other commands that take a name.
pub async fn status(global: &GlobalArgs, args: &StatusArgs) -> Result<Exit> {
    let names = args
        .jobs
        .iter()
        .map(|arg| lookup::job_name(arg))
        .collect::<Result<Vec<_>, _>>()?;
    let (target, mut conn) = connect(global, "backfill:status").await?;
    let store = target.store(&global.state_schema);
    let rows = lookup::named(store.list(conn.conn()).await?, &names, &store)?;
    let ranges = if args.ranges {
        store.all_ranges(conn.conn()).await?
    } else {
        vec![]
    };
    let tables: Vec<String> = rows.iter().map(|r| r.table_name.clone()).collect();
    // The heaps are a courtesy: a server that cannot tell them still lists the jobs.
    let heaps = conn.conn().heaps(&tables).await.unwrap_or_default();
    let heap = |i: usize| heaps.get(i).copied().flatten();
    conn.hang_up().await;
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
            .enumerate()
            .map(|(i, row)| {
                let mut v = report::status_json(row, heap(i));
                if args.ranges {
                    v["ranges"] = of(&row.name).iter().map(report::range_json).collect();
                }
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else if args.ranges && !rows.is_empty() {
        for (i, row) in rows.iter().enumerate() {
            print!(
                "{}",
                report::status_table(std::slice::from_ref(row), &[heap(i)])
            );
            print!("{}", report::ranges_table(&of(&row.name), &row.table_name));
        }
    } else {
        print!("{}", report::status_table(&rows, &heaps));
    }
    Ok(Exit::Success)
}

/// `backfill failures`: the rows the job set aside, as a table or JSON.
pub async fn failures(global: &GlobalArgs, args: &FailuresArgs) -> Result<Exit> {
    let name = lookup::job_name(&args.job)?;
    let (target, mut conn) = connect(global, &application_name(&name)).await?;
    let store = target.store(&global.state_schema);
    let row = store.load(conn.conn(), &name).await;
    let row = lookup::or_known_jobs(row, &mut conn, &store).await?;
    let failed = store.failures(conn.conn(), &name, args.limit).await?;
    conn.hang_up().await;
    if args.json {
        println!("{}", report::failures_json(&row, &failed));
    } else {
        print!("{}", report::failures_text(&row, &failed));
    }
    Ok(Exit::Success)
}

/// `backfill reset`.
pub async fn reset(global: &GlobalArgs, args: &JobArg) -> Result<Exit> {
    let name = lookup::job_name(&args.job)?;
    let (target, mut conn) = connect(global, &application_name(&name)).await?;
    let store = target.store(&global.state_schema);
    let was = store.reset(conn.conn(), &name).await;
    let was = lookup::or_known_jobs(was, &mut conn, &store).await?;
    let forgotten = match was.failures {
        0 => String::new(),
        n => format!(", and its {} set aside", report::rows(n)),
    };
    println!(
        "{name}: reset (was {}, {} rows done{forgotten}); the next run starts from the first key",
        was.status, was.rows_done
    );
    Ok(Exit::Success)
}

/// `backfill pause`, `resume` and `cancel`.
pub async fn control(global: &GlobalArgs, args: &JobArg, control: Control) -> Result<Exit> {
    let name = lookup::job_name(&args.job)?;
    let (target, mut conn) = connect(global, &application_name(&name)).await?;
    let store = target.store(&global.state_schema);
    let row = store.control(conn.conn(), &name, control).await;
    let row = lookup::or_known_jobs(row, &mut conn, &store).await?;
    println!(
        "{name}: {}",
        report::control_text(control, row.lease_is_live())
    );
    Ok(Exit::Success)
}
