//! The machine's CPU run queue during a window: how many tasks were runnable (running or
//! waiting for a core), read from `procs_running` in `/proc/stat` every [`EVERY`].
//!
//! On a 2-core machine a mean above 2 means work waited for a core: the server's backends,
//! pgbench and the `backfill` client compete for the same two, and so does anything else on
//! the machine (another developer's build shows here too, which is why it is reported beside
//! every latency window). Owns only the sampling; what the figure means is the report's.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often the run queue is read.
const EVERY: Duration = Duration::from_millis(100);

/// Samples taken until [`RunQueue::mean`] stops them.
pub struct RunQueue {
    stop: oneshot::Sender<()>,
    samples: JoinHandle<Vec<u32>>,
}

impl RunQueue {
    /// Starts sampling now.
    pub fn sample() -> RunQueue {
        let (stop, mut stopped) = oneshot::channel();
        let samples = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => return samples,
                    _ = tick.tick() => samples.extend(runnable()),
                }
            }
        });
        RunQueue { stop, samples }
    }

    /// Stops sampling; the mean number of runnable tasks besides the reader (0 when
    /// `/proc/stat` could not be read).
    pub async fn mean(self) -> f64 {
        let _ = self.stop.send(());
        let samples = self.samples.await.unwrap_or_default();
        samples.iter().map(|&n| f64::from(n)).sum::<f64>() / samples.len().max(1) as f64
    }
}

/// `procs_running` less one: the thread reading `/proc/stat` is running as it reads.
fn runnable() -> Option<u32> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find_map(|l| l.strip_prefix("procs_running"))?;
    let running: u32 = line.trim().parse().ok()?;
    Some(running.saturating_sub(1))
}
