//! The job file's keys that are ratios: their defaults, bounds and meanings, shared by the
//! checks (`validate.rs`) and the messages (`error.rs`).

use super::defaults;

/// The keys that are ratios, each with its default, bounds and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ratio {
    /// `[batch] pause_ratio`.
    Pause,
    /// `[guard] max_latency_ratio`.
    Latency,
    /// `[guard] max_pause_ratio`.
    GuardPause,
}

/// The largest ratio of a batch's time to sleep: past it, a run would barely move.
const MOST_PAUSE_RATIO: f64 = 1000.0;

impl Ratio {
    /// The key as the file spells it, with its table.
    pub fn key(self) -> &'static str {
        match self {
            Ratio::Pause => "batch.pause_ratio",
            Ratio::Latency => "guard.max_latency_ratio",
            Ratio::GuardPause => "guard.max_pause_ratio",
        }
    }

    pub(super) fn default(self) -> f64 {
        match self {
            Ratio::Pause => defaults::PAUSE_RATIO,
            Ratio::Latency => defaults::guard::MAX_LATENCY_RATIO,
            Ratio::GuardPause => defaults::guard::MAX_PAUSE_RATIO,
        }
    }

    /// The least value, and whether it is itself allowed.
    fn least(self) -> (f64, bool) {
        match self {
            Ratio::Pause => (0.0, true),
            Ratio::Latency => (1.0, false),
            Ratio::GuardPause => (1.0, true),
        }
    }

    pub(super) fn fits(self, n: f64) -> bool {
        let (least, allowed) = self.least();
        n.is_finite() && n <= MOST_PAUSE_RATIO && (n > least || (allowed && n == least))
    }

    /// `at least 0 and at most 1000`, `above 1 and at most 1000`.
    pub fn bounds(self) -> String {
        let (least, allowed) = self.least();
        let word = if allowed { "at least" } else { "above" };
        format!("{word} {least} and at most {MOST_PAUSE_RATIO}")
    }

    /// What the key does, with an example.
    pub fn meaning(self) -> &'static str {
        match self {
            Ratio::Pause => {
                "it is the sleep after each batch in multiples of the batch's time, e.g. \
                 pause_ratio = 1 leaves the application half of the time"
            }
            Ratio::Latency => {
                "the run backs off while the probe's recent p90 is more than this many times \
                 its baseline, e.g. max_latency_ratio = 3"
            }
            Ratio::GuardPause => {
                "it is the most the guard sleeps after a batch, in multiples of the batch's \
                 time, e.g. max_pause_ratio = 16"
            }
        }
    }
}
