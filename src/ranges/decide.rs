//! The pure decisions of sharing a job's key range among workers: where to cut a sample of
//! keys into pieces of equal work, how much of a relation to sample, which running range a
//! worker with nothing to claim should split, and whose leases are gone. No SQL, no clock.

use std::cmp::Reverse;

pub use crate::plan::Sampled;
use crate::state::{Key, Lease, Owner, RangeRow};

/// Blocks a layout sample reads per piece it cuts, and its bounds.
const LAYOUT_BLOCKS_PER_PIECE: u64 = 64;
const LAYOUT_BLOCKS_MIN: u64 = 256;
const LAYOUT_BLOCKS_MAX: u64 = 4096;

/// Rows a steal's sample aims to find inside the victim's remaining range.
const STEAL_SAMPLE_ROWS: u64 = 400;

/// The most blocks a steal's sample may read: a steal must stay cheap on a huge table.
const STEAL_BLOCKS_MAX: u64 = 2048;

/// A remaining range this small (in keys) is cut at its middle with a bounded index walk
/// (`OFFSET n` inside the range) rather than a sample of the whole relation.
pub const OFFSET_SPLIT_MAX: u64 = 200_000;

/// The fewest keys a sample must place inside a range for its median to be trusted.
pub const MIN_SAMPLE: usize = 16;

/// The keys that cut `sample` (in key order) into `pieces` pieces of about equal work: equal
/// numbers of rows that still match `where` when the sample holds at least one such row per
/// piece, else equal numbers of keys. Each point ends a piece (inclusive); the last piece ends
/// at the range's own end, so the sample's last key is never a point, and no point repeats.
pub fn split_points(sample: &[Sampled], pieces: usize) -> Vec<Key> {
    if pieces < 2 || sample.len() < 2 {
        return vec![];
    }
    let pending = sample.iter().filter(|s| s.pending).count();
    let by_pending = pending >= pieces;
    let weight = |s: &Sampled| usize::from(!by_pending || s.pending);
    let total: usize = sample.iter().map(weight).sum();
    let mut points: Vec<Key> = Vec::with_capacity(pieces - 1);
    let mut seen = 0;
    let mut next = 1;
    for s in &sample[..sample.len() - 1] {
        seen += weight(s);
        if next < pieces && seen * pieces >= next * total {
            if points.last() != Some(&s.key) {
                points.push(s.key.clone());
            }
            next += 1;
        }
    }
    points
}

/// The percentage of a relation of `blocks` blocks that a layout into `pieces` pieces samples
/// (`TABLESAMPLE SYSTEM`): enough blocks to place the cuts and estimate each piece's keys,
/// never the whole of a large table.
pub fn layout_percent(blocks: u64, pieces: usize) -> f64 {
    let want =
        (LAYOUT_BLOCKS_PER_PIECE * pieces as u64).clamp(LAYOUT_BLOCKS_MIN, LAYOUT_BLOCKS_MAX);
    percent(want, blocks)
}

/// `want` blocks of `blocks` as a percentage, at most 100.
fn percent(want: u64, blocks: u64) -> f64 {
    if blocks == 0 || want >= blocks {
        return 100.0;
    }
    100.0 * want as f64 / blocks as f64
}

/// What a layout's sample says of the keys of the pieces it cuts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keys {
    /// Keys the sample found, and the percentage of blocks it read.
    pub sampled: usize,
    pub percent: f64,
    /// The relation's rows as last counted, when it was.
    pub counted: Option<u64>,
}

impl Keys {
    /// Keys a piece that holds `count` of the sampled keys stands for: its share of the
    /// counted rows, or without a count its keys scaled by the share of blocks read. A block
    /// sample reads a varying number of blocks (a few hundred at a layout, so ±5 % and more),
    /// and the share of the keys does not vary with it.
    pub fn of(&self, count: usize) -> u64 {
        match self.counted {
            Some(rows) if self.sampled > 0 => {
                (count as f64 / self.sampled as f64 * rows as f64).round() as u64
            }
            _ if self.percent <= 0.0 => 0,
            _ => (count as f64 * 100.0 / self.percent).round() as u64,
        }
    }
}

/// How to find the middle of a victim's remaining range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cut {
    /// The key `n` places after the cursor: a bounded walk of the index inside the range.
    Offset(u64),
    /// A block sample of the relation at this percentage; its median inside the range.
    Sample(f64),
}

/// How to cut a range with about `remaining` keys left (unknown when its estimate ran out) in
/// a relation of `blocks` blocks: a bounded walk when the range is small, else a sample sized
/// to find about [`STEAL_SAMPLE_ROWS`] of its rows, never more than [`STEAL_BLOCKS_MAX`] blocks.
pub fn cut(remaining: Option<u64>, blocks: u64) -> Cut {
    let most = percent(STEAL_BLOCKS_MAX, blocks);
    match remaining {
        Some(r) if r <= OFFSET_SPLIT_MAX => Cut::Offset(r / 2),
        Some(r) => Cut::Sample((100.0 * STEAL_SAMPLE_ROWS as f64 / r as f64).min(most)),
        None => Cut::Sample(most),
    }
}

/// The key half-way through a sample of a range (by pending rows when it has some), when the
/// sample is big enough to be trusted.
pub fn median(sample: &[Sampled]) -> Option<Key> {
    if sample.len() < MIN_SAMPLE {
        return None;
    }
    split_points(sample, 2).into_iter().next()
}

/// The running range a worker with nothing to claim should split: the one with the most
/// keys left (a range whose estimate ran out counts as unknown, tried after every known
/// one), if it has at least `min_keys` left — a smaller one ends before a split pays off.
/// Only ranges held under a live lease are candidates: an abandoned one is claimed whole.
pub fn victim(ranges: &[RangeRow], min_keys: u64) -> Option<&RangeRow> {
    ranges
        .iter()
        .filter(|r| r.status == "running" && r.lease.as_ref().is_some_and(Lease::is_live))
        .filter(|r| r.remaining_keys().is_none_or(|k| k >= min_keys))
        .max_by_key(|r| {
            (
                r.remaining_keys().is_some(),
                r.remaining_keys(),
                Reverse(r.id),
            )
        })
}

/// The owners among `leases` that may be taken over at once: processes of this host that no
/// longer exist. (Stale leases elsewhere are found by the claim itself, by heartbeat age.)
pub fn gone(leases: &[Lease]) -> Vec<Owner> {
    leases
        .iter()
        .filter(|l| l.owner.is_dead_here())
        .map(|l| l.owner.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::hostname;

    fn keys(range: std::ops::Range<u32>, pending: impl Fn(u32) -> bool) -> Vec<Sampled> {
        range
            .map(|i| Sampled {
                key: vec![i.to_string()],
                pending: pending(i),
            })
            .collect()
    }

    fn firsts(points: &[Key]) -> Vec<&str> {
        points.iter().map(|k| k[0].as_str()).collect()
    }

    #[test]
    fn keys_are_cut_into_equal_pieces() {
        let sample = keys(0..100, |_| false);
        assert_eq!(firsts(&split_points(&sample, 4)), ["24", "49", "74"]);
    }

    #[test]
    fn pending_rows_decide_the_cuts_when_the_sample_has_enough() {
        // Only the last tenth still matches `where`: every piece gets a share of it.
        let sample = keys(0..100, |i| i >= 90);
        assert_eq!(firsts(&split_points(&sample, 2)), ["94"]);
        assert_eq!(firsts(&split_points(&sample, 5)), ["91", "93", "95", "97"]);
    }

    #[test]
    fn too_few_pending_rows_fall_back_to_keys() {
        let sample = keys(0..10, |i| i == 9);
        assert_eq!(firsts(&split_points(&sample, 2)), ["4"]);
    }

    #[test]
    fn the_last_key_is_never_a_cut_and_cuts_do_not_repeat() {
        let sample = keys(0..3, |_| false);
        assert_eq!(firsts(&split_points(&sample, 8)), ["0", "1"]);
        assert!(split_points(&keys(0..1, |_| false), 4).is_empty());
        assert!(split_points(&keys(0..50, |_| false), 1).is_empty());
    }

    #[test]
    fn a_layout_samples_a_few_thousand_blocks_at_most() {
        assert_eq!(layout_percent(100, 4), 100.0);
        assert_eq!(layout_percent(25_600, 1), 1.0);
        assert_eq!(layout_percent(409_600, 64), 1.0);
        assert_eq!(layout_percent(0, 4), 100.0);
    }

    #[test]
    fn a_sample_stands_for_its_share() {
        let scaled = |percent| Keys {
            sampled: 100,
            percent,
            counted: None,
        };
        assert_eq!(scaled(1.0).of(25), 2500);
        assert_eq!(scaled(100.0).of(25), 25);
        assert_eq!(scaled(0.0).of(3), 0);
        // A quarter of the sample, of a table counted at 120,000 rows: whatever share of the
        // blocks the sample happened to read.
        let counted = Keys {
            counted: Some(120_000),
            ..scaled(2.0)
        };
        assert_eq!(counted.of(25), 30_000);
    }

    #[test]
    fn small_ranges_are_cut_by_a_walk_large_ones_by_a_bounded_sample() {
        assert_eq!(cut(Some(30_000), 1_000_000), Cut::Offset(15_000));
        // 400 rows of 4M: 0.01 % of the relation.
        assert_eq!(cut(Some(4_000_000), 1_000_000), Cut::Sample(0.01));
        // 400 rows of 250k would need 0.16 %, but 2048 blocks of 1M is 0.2048 %: fine.
        assert_eq!(cut(Some(250_000), 1_000_000), Cut::Sample(0.16));
        // Never more than 2048 blocks.
        assert_eq!(cut(Some(250_000), 100_000_000), Cut::Sample(0.002048));
        assert_eq!(cut(None, 1_000_000), Cut::Sample(0.2048));
        assert_eq!(cut(None, 1000), Cut::Sample(100.0));
    }

    #[test]
    fn a_median_needs_a_trustworthy_sample() {
        assert_eq!(median(&keys(0..10, |_| false)), None);
        assert_eq!(median(&keys(0..20, |_| false)), Some(vec!["9".into()]));
    }

    fn running(id: u32, estimate: Option<u64>, walked: u64, age: f64) -> RangeRow {
        RangeRow {
            id,
            relation: "\"public\".\"t\"".into(),
            lower: None,
            upper: vec!["1000000".into()],
            cursor: None,
            status: "running".into(),
            lease: Some(Lease {
                owner: Owner("elsewhere.example:1:0".into()),
                heartbeat_age: Some(age),
                timeout_s: Some(15.0),
            }),
            worker: Some(0),
            rows_done: 0,
            batches_done: 0,
            keys_estimate: estimate,
            keys_walked: walked,
            batch_size: None,
            rate: None,
            note: None,
        }
    }

    #[test]
    fn the_range_with_most_keys_left_is_split() {
        let ranges = [
            running(1, Some(100_000), 90_000, 1.0),
            running(2, Some(100_000), 10_000, 1.0),
            running(3, Some(200_000), 150_000, 1.0),
        ];
        assert_eq!(victim(&ranges, 20_000).map(|r| r.id), Some(2));
    }

    #[test]
    fn small_stale_and_finished_ranges_are_not_split() {
        let mut done = running(4, Some(900_000), 0, 1.0);
        done.status = "done".into();
        let ranges = [
            running(1, Some(100_000), 90_000, 1.0),
            running(2, Some(900_000), 0, 30.0),
            done,
        ];
        assert_eq!(victim(&ranges, 20_000), None);
    }

    #[test]
    fn a_range_past_its_estimate_is_tried_after_every_known_one() {
        let ranges = [
            running(1, Some(100_000), 150_000, 1.0),
            running(2, Some(50_000), 10_000, 1.0),
        ];
        assert_eq!(victim(&ranges, 20_000).map(|r| r.id), Some(2));
        assert_eq!(victim(&ranges[..1], 20_000).map(|r| r.id), Some(1));
    }

    #[test]
    fn only_dead_processes_of_this_host_are_gone_at_once() {
        let dead = Owner(format!("{}:{}:00000001", hostname(), u32::MAX - 1));
        let leases = [
            Lease {
                owner: dead.clone(),
                heartbeat_age: Some(0.5),
                timeout_s: None,
            },
            Lease {
                owner: Owner("elsewhere.example:1:0".into()),
                heartbeat_age: Some(100.0),
                timeout_s: None,
            },
        ];
        assert_eq!(gone(&leases), [dead]);
    }
}
