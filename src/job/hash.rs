//! The job's definition hash: which rows change and how, as 16 hex characters.
//!
//! Owns the canonical encoding of a [`Job`]'s table, key, filter and `[set]`, and the FNV-1a
//! 64 hash over it. It does not compare hashes or decide what a mismatch means; `state` and
//! `engine` do (a changed definition must not resume an old cursor).
//!
//! The encoding is part of the state table's contract: changing it makes every stored
//! checkpoint look stale. `tests::hash_of_a_fixed_job_is_stable` pins it.

use super::Job;

/// FNV-1a 64 offset basis.
const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const PRIME: u64 = 0x0000_0100_0000_01b3;
/// First field of the encoding; bump the version if the encoding ever changes.
const DOMAIN: &str = "backfill job definition v1";

/// Hashes the parts of `job` that decide which rows change and how. Batch sizing and timeouts
/// are left out on purpose: retuning them must not invalidate a checkpoint.
pub fn definition_hash(job: &Job) -> String {
    let mut hash = Fnv1a::new();
    hash.text(DOMAIN);
    hash.optional_text(job.table.schema.as_deref());
    hash.text(&job.table.name);
    match &job.key {
        None => hash.tag(0),
        Some(columns) => {
            hash.tag(1);
            hash.count(columns.len());
            columns.iter().for_each(|column| hash.text(column));
        }
    }
    hash.text(&job.filter);
    hash.count(job.set.len());
    for assignment in &job.set {
        hash.text(&assignment.column);
        hash.text(&assignment.expr);
    }
    format!("{:016x}", hash.0)
}

/// FNV-1a 64 with length-prefixed fields, so that no two jobs encode to the same bytes.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Fnv1a {
        Fnv1a(OFFSET_BASIS)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }

    /// One byte telling which variant follows (absent/present).
    fn tag(&mut self, tag: u8) {
        self.bytes(&[tag]);
    }

    /// A length or element count as 8 little-endian bytes, the same on every platform.
    fn count(&mut self, count: usize) {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        self.bytes(&count.to_le_bytes());
    }

    fn text(&mut self, text: &str) {
        self.count(text.len());
        self.bytes(text.as_bytes());
    }

    fn optional_text(&mut self, text: Option<&str>) {
        match text {
            None => self.tag(0),
            Some(text) => {
                self.tag(1);
                self.text(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::tests::{FULL, MINIMAL, ok, with};

    fn fnv1a(bytes: &[u8]) -> u64 {
        let mut hash = Fnv1a::new();
        hash.bytes(bytes);
        hash.0
    }

    #[test]
    fn fnv1a_of_nothing_is_the_offset_basis() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn fnv1a_matches_the_reference_vector() {
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn length_prefixes_keep_field_boundaries_apart() {
        let mut ab_c = Fnv1a::new();
        ab_c.text("ab");
        ab_c.text("c");
        let mut a_bc = Fnv1a::new();
        a_bc.text("a");
        a_bc.text("bc");
        assert_ne!(ab_c.0, a_bc.0);
    }

    #[test]
    fn hash_of_a_fixed_job_is_stable() {
        assert_eq!(ok(FULL).definition_hash(), "e72eb8d3b2ad7066");
    }

    #[test]
    fn hash_ignores_batch_and_timeouts() {
        let retuned = with("[batch]\nsize = 1000\ntarget = \"1s\"\n[timeouts]\nlock = \"1s\"\n");
        assert_eq!(
            ok(&retuned).definition_hash(),
            ok(MINIMAL).definition_hash()
        );
    }

    #[test]
    fn hash_ignores_where_whitespace_and_set_order() {
        let a = "table = 't'\nwhere = ' true '\n[set]\na = '1'\nb = '2'\n";
        let b = "table = 't'\nwhere = 'true'\n[set]\nb = '2'\na = '1'\n";
        assert_eq!(ok(a).definition_hash(), ok(b).definition_hash());
    }

    #[test]
    fn hash_changes_with_the_filter() {
        let other = MINIMAL.replace("flag IS NULL", "flag IS DISTINCT FROM legacy");
        assert_ne!(ok(&other).definition_hash(), ok(MINIMAL).definition_hash());
    }

    #[test]
    fn hash_tells_primary_key_from_explicit_key() {
        let explicit = format!("key = [\"id\"]\n{MINIMAL}");
        assert_ne!(
            ok(&explicit).definition_hash(),
            ok(MINIMAL).definition_hash()
        );
    }
}
