//! The process's one source of randomness: enough to spread retries and probes, no crate.

use std::hash::{BuildHasher as _, RandomState};

/// A number in `0.0..=1.0` from the standard library's randomly keyed hasher.
pub fn jitter() -> f64 {
    let bits = RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_in_range() {
        let j = jitter();
        assert!((0.0..=1.0).contains(&j), "{j}");
    }
}
