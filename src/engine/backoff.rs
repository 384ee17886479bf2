//! Jittered exponential backoff for retrying a batch. Pure: the randomness is a parameter, so
//! the schedule is unit-tested; [`crate::jitter`] supplies it at run time.

use std::time::Duration;

/// First retry waits about this long.
const BASE: Duration = Duration::from_millis(200);

/// No single wait is longer than this.
const CAP: Duration = Duration::from_secs(10);

/// The wait before retry number `attempt` (1-based): `BASE·2^(attempt-1)`, capped, then scaled
/// into `[½, 1]` of that by `jitter` (0.0..=1.0) so that runners that failed together do not
/// retry together.
pub fn delay(attempt: u32, jitter: f64) -> Duration {
    let exp = BASE.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let full = exp.min(CAP);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_retry_waits_about_the_base() {
        assert_eq!(delay(1, 1.0), Duration::from_millis(200));
    }

    #[test]
    fn each_retry_doubles() {
        assert_eq!(delay(3, 1.0), Duration::from_millis(800));
    }

    #[test]
    fn waits_are_capped() {
        assert_eq!(delay(30, 1.0), Duration::from_secs(10));
    }

    #[test]
    fn no_jitter_halves_the_wait() {
        assert_eq!(delay(1, 0.0), Duration::from_millis(100));
    }
}
