//! WAL retention signals: a replication slot that holds WAL back, and an archiver that fails
//! or falls behind. Either keeps every byte the run writes in `pg_wal` until the disk is full,
//! and a full `pg_wal` stops the whole server, so both pause the run. Pure: the full sample's
//! rows in, signals out; the segment arithmetic is here too, so that it is unit-tested.

use std::time::Duration;

use super::{Action, Bytes, Found, Signal, human};
use crate::job::ThrottlePolicy;

/// WAL the server keeps for someone else: its replication slots and its archiver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wal {
    /// Every row of `pg_replication_slots`.
    pub slots: Vec<Slot>,
    /// The archiver, when the server archives (`archive_mode` on, or `always` on a standby).
    pub archiver: Option<Archiver>,
}

/// One row of `pg_replication_slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// `slot_name`, as `ignore_slots` lists it.
    pub name: String,
    /// `slot_type`: `physical` or `logical`.
    pub kind: String,
    /// The output plugin of a logical slot (`pgoutput`, `test_decoding`, …).
    pub plugin: Option<String>,
    /// `active_pid`: the pid of the consumer streaming from it, when one is connected.
    pub consumer: Option<i32>,
    /// WAL kept for it: the current position minus `restart_lsn`; `None` once the slot is
    /// invalidated (its WAL is gone, so it holds nothing back).
    pub retained: Option<u64>,
    /// WAL its logical consumer has not confirmed: the current position minus
    /// `confirmed_flush_lsn`. Less than `retained` when an old transaction holds it back.
    pub unconfirmed: Option<u64>,
    /// `wal_status`: `reserved`, `extended`, `unreserved` (about to lose WAL it needs) or
    /// `lost`.
    pub wal_status: Option<String>,
}

impl Slot {
    /// `cdc (logical test_decoding, no consumer connected)`: its name, kind and consumer.
    pub fn describe(&self) -> String {
        let kind = match &self.plugin {
            Some(plugin) => format!("{} {plugin}", self.kind),
            None => self.kind.clone(),
        };
        let consumer = match self.consumer {
            Some(pid) => format!("consumer pid {pid} connected"),
            None => "no consumer connected".to_owned(),
        };
        format!("{} ({kind}, {consumer})", self.name)
    }
}

/// What `pg_stat_archiver` and the current WAL position say about archiving.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archiver {
    /// `last_archived_wal`, and how long ago (`last_archived_time`).
    pub last_archived: Option<(String, Duration)>,
    /// `last_failed_wal`, and how long ago (`last_failed_time`).
    pub last_failed: Option<(String, Duration)>,
    /// The WAL position being written now, in bytes from the start of WAL.
    pub position: u64,
    /// `wal_segment_size` in bytes.
    pub segment_size: u64,
}

impl Archiver {
    /// The archiver failed more recently than it succeeded: it is stuck retrying the segment
    /// that failed.
    pub fn failing(&self) -> bool {
        match (&self.last_failed, &self.last_archived) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some((_, failed_ago)), Some((_, archived_ago))) => failed_ago < archived_ago,
        }
    }

    /// Completed segments not archived yet: from the one a failing archiver is stuck on (or
    /// the one after the last archived) up to the one being written, which is not complete.
    /// `None` when neither names a segment (nothing archived since the statistics were
    /// reset, or the last file was a `.history` file).
    pub fn backlog(&self) -> Option<u64> {
        let next = if self.failing() {
            segment_number(&self.last_failed.as_ref()?.0, self.segment_size)?
        } else {
            segment_number(&self.last_archived.as_ref()?.0, self.segment_size)? + 1
        };
        let current = self.position.checked_div(self.segment_size)?;
        Some(current.saturating_sub(next))
    }
}

/// The segment number of a WAL file name (`TTTTTTTTXXXXXXXXYYYYYYYY`, also with a `.partial`
/// or `.00000028.backup` suffix), counted across timelines as PostgreSQL does.
fn segment_number(file: &str, segment_size: u64) -> Option<u64> {
    let hex = |range: std::ops::Range<usize>| {
        let part = file.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| u64::from_str_radix(part, 16).ok())
            .flatten()
    };
    let per_log = 0x1_0000_0000_u64.checked_div(segment_size)?;
    Some(hex(8..16)? * per_log + hex(16..24)?)
}

/// The WAL retention signals `wal` shows.
pub(super) fn signals(policy: &ThrottlePolicy, wal: &Wal) -> Vec<Found> {
    let mut out = Vec::new();
    if let Some(reason) = slot_lag(policy, &wal.slots) {
        out.push((Signal::ReplicationSlot, Action::Pause, reason));
    }
    if let Some(archiver) = &wal.archiver
        && let Some(reason) = archive_lag(policy, archiver)
    {
        out.push((Signal::Archiver, Action::Pause, reason));
    }
    out
}

/// Why the slots hold too much WAL, naming the one that holds most, if they do.
fn slot_lag(policy: &ThrottlePolicy, slots: &[Slot]) -> Option<String> {
    let limit = policy.max_slot_lag_bytes;
    if limit == 0 {
        return None;
    }
    let mut over: Vec<(&Slot, u64)> = slots
        .iter()
        .filter(|s| !policy.ignore_slots.contains(&s.name))
        .filter_map(|s| Some((s, s.retained?)))
        .filter(|(_, retained)| *retained > limit)
        .collect();
    over.sort_by_key(|(_, retained)| std::cmp::Reverse(*retained));
    let (slot, retained) = *over.first()?;
    let mut reason = format!(
        "replication slot {} retains {} of WAL (limit {})",
        slot.describe(),
        Bytes(retained),
        Bytes(limit)
    );
    if let Some(unconfirmed) = slot.unconfirmed {
        reason.push_str(&format!(", {} not confirmed", Bytes(unconfirmed)));
    }
    if let Some(status @ ("unreserved" | "lost")) = slot.wal_status.as_deref() {
        reason.push_str(&format!(", wal_status {status}"));
    }
    match over.len() {
        1 => {}
        2 => reason.push_str("; 1 more slot is over the limit"),
        n => reason.push_str(&format!("; {} more slots are over the limit", n - 1)),
    }
    Some(reason)
}

/// Why the archiver holds too much WAL back, if it does: failing, or too far behind.
fn archive_lag(policy: &ThrottlePolicy, archiver: &Archiver) -> Option<String> {
    let limit = policy.max_archive_lag;
    if limit == 0 {
        return None;
    }
    let segments = |n: u64| {
        let bytes = Bytes(n.saturating_mul(archiver.segment_size));
        let plural = if n == 1 { "" } else { "s" };
        format!("{n} segment{plural} ({bytes})")
    };
    if archiver.failing() {
        let (file, ago) = archiver.last_failed.as_ref()?;
        let since = match &archiver.last_archived {
            Some((_, ago)) => format!("nothing archived for {}", human(*ago)),
            None => "nothing archived yet".to_owned(),
        };
        let mut reason = format!(
            "the WAL archiver is failing: {file} failed {} ago, {since}",
            human(*ago)
        );
        if let Some(n) = archiver.backlog() {
            reason.push_str(&format!("; {} not archived", segments(n)));
        }
        return Some(reason);
    }
    let behind = archiver.backlog().filter(|n| *n > limit)?;
    let (file, ago) = archiver.last_archived.as_ref()?;
    Some(format!(
        "the WAL archiver is {} behind (limit {limit}); it archived {file} {} ago",
        segments(behind),
        human(*ago)
    ))
}

#[cfg(test)]
mod tests;
