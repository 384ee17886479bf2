//! SIGKILL at random moments: runs of a job started and killed again and again, each kill
//! followed by the check that the job's `rows_done` equals the rows really changed (a trigger's
//! counter), so that a batch applied without its checkpoint, or counted without being applied,
//! shows at once. The moments come from a seed printed first, so a failure can be replayed
//! (`BACKFILL_STRESS_SEED`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::PgPool;
use tempfile::TempDir;

use super::{Runner, XorShift};

/// Starts `backfill run ARGS` against `url` `rounds` times and kills each with SIGKILL after a
/// random 0–400 ms; after each kill, `rows_done` of job `items_total` must equal the rows of
/// `items` with `updates > 0`. Returns the seed, and each round's delay and `rows_done` (none
/// while the runs die before the state table exists).
pub async fn kill_9_at_random_moments(
    url: &str,
    pool: &PgPool,
    dir: &TempDir,
    args: &[&str],
    rounds: u32,
) -> (u64, Vec<(u128, Option<i64>)>) {
    let done = async || {
        sqlx::query_as(
            "SELECT (SELECT rows_done FROM backfill.jobs WHERE name = 'items_total'), \
                    (SELECT count(*) FROM items WHERE updates > 0)",
        )
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
    };
    kill_9_checking(url, dir, args, rounds, done).await
}

/// [`kill_9_at_random_moments`] on any database: `done` reads the job's `rows_done` and the
/// rows changed in one snapshot (`None` while there is no state table yet).
pub async fn kill_9_checking(
    url: &str,
    dir: &TempDir,
    args: &[&str],
    rounds: u32,
    done: impl AsyncFn() -> Option<(i64, i64)>,
) -> (u64, Vec<(u128, Option<i64>)>) {
    let seed = std::env::var("BACKFILL_STRESS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |since| since.as_nanos() as u64)
                | 1
        });
    println!("kill -9 stress: BACKFILL_STRESS_SEED={seed}");
    let mut rng = XorShift(seed);
    let mut kills = Vec::new();
    for round in 0..rounds {
        let delay = Duration::from_millis(rng.next() % 401);
        let mut runner = Runner::spawn(url, dir, &format!("kill{round}"), args);
        tokio::time::sleep(delay).await;
        if let Some(status) = runner.child.try_wait().expect("poll the runner") {
            let out = runner.output(status);
            panic!(
                "round {round}: backfill exited before the kill\nstdout:\n{}\nstderr:\n{}",
                out.stdout, out.stderr
            );
        }
        runner.child.start_kill().expect("SIGKILL backfill");
        let status = runner.child.wait().await.expect("reap backfill");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "round {round}: {status:?}"
        );
        // One snapshot: the checkpoints count exactly the rows changed so far.
        let done = done().await;
        if let Some((stored, changed)) = done {
            assert_eq!(
                stored, changed,
                "round {round} (delay {delay:?}, seed {seed}): rows_done against rows changed"
            );
        }
        kills.push((delay.as_millis(), done.map(|(stored, _)| stored)));
    }
    println!("kill delays (ms) and rows_done after each kill: {kills:?}");
    (seed, kills)
}
