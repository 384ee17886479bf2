//! What `plan` expects a run to cost in disk, before anything is written: the new row versions'
//! heap, the heap after the run with and without vacuum pacing, and the WAL it writes. The
//! facts are read in one read-only transaction ([`Conn::table_costs`](crate::db::Conn::table_costs)); the arithmetic is pure
//! ([`Cost::of`]) and unit-tested.
//!
//! A backfill writes a new version of every row it changes. In a table packed full (fillfactor
//! 100, the default) none fits on its old page, so each goes where the free space map points —
//! nowhere, until a vacuum has recorded the old versions' space there — and the heap grows by
//! a whole new copy of the rows changed. With vacuum pacing, the space freed by each vacuum
//! takes the next batches' versions, so the heap grows by about the rows changed between two
//! vacuums and during one ([`PACED_SPANS`] of `every`, measured), plus what a new version
//! needs beyond the old one's space: the `[set]` values, and a line pointer (the old one stays,
//! dead, until the final vacuum cleans the indexes) — and for narrow rows the versions that a
//! freed page has no line pointers left for ([`PAGE_LINE_POINTERS`]), unless the pacing
//! vacuums clean the indexes too.
//!
//! WAL, roughly: each new version whole plus its record's header, an entry per index (the
//! updates are not HOT: no room on the page), and — with `full_page_writes` on — a full image
//! of every heap and index page the run touches, once per checkpoint (counted once). Measured
//! within −15 % to +7 % on a table of 500,000 rows with a secondary index; compression, other
//! traffic and the number of checkpoints during the run move it further.

/// How many `every` spans of rows the heap grows by with vacuum pacing: the rows changed
/// before the first vacuum has freed anything, and those changed while a vacuum runs or
/// before the space it frees is searched (measured on 500,000 rows: 1.5 to 3.5 spans from
/// `every` = 20 % down to 2 %; see docs/disk.md).
pub const PACED_SPANS: f64 = 2.0;

/// A line pointer: each new version takes one, and the old version's stays behind (dead)
/// until the indexes are vacuumed, which pacing leaves to the final vacuum.
pub const LINE_POINTER: u64 = 4;

/// The most line pointers a heap page holds (`MaxHeapTuplesPerPage` of an 8 kB page).
pub const PAGE_LINE_POINTERS: u64 = 291;

/// A heap page.
pub const PAGE: u64 = 8192;

/// WAL per changed row besides its new version: the heap update record's header and the
/// old version's dead mark (measured).
pub const ROW_RECORD: u64 = 60;

/// WAL per index entry a changed row adds: its record's header and the entry (measured).
pub const INDEX_RECORD: u64 = 70;

/// What the estimate needs to know of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The heap now, in bytes.
    pub heap_bytes: u64,
    /// Rows in the table now.
    pub rows: u64,
    /// Bytes the `[set]` values add to a row: their width where they are NULL now.
    pub set_width: u64,
    /// Indexes on the table, each of which gets an entry per changed row.
    pub indexes: u32,
    /// The indexes' size in bytes.
    pub index_bytes: u64,
    /// `full_page_writes` is on: the first change of a page after a checkpoint writes it whole.
    pub full_page_writes: bool,
}

#[cfg(test)]
impl Table {
    /// For the unit tests: 1,000,000 rows of 100 bytes a row in the heap, one index of 20 MiB.
    pub(crate) fn example() -> Table {
        Table {
            heap_bytes: 100 * 1_000_000,
            rows: 1_000_000,
            set_width: 4,
            indexes: 1,
            index_bytes: 20 * 1024 * 1024,
            full_page_writes: true,
        }
    }
}

/// What a run is expected to cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    /// Bytes one new row version takes in the heap: the heap per row now, plus the `[set]`
    /// values.
    pub row_bytes: u64,
    /// The new row versions' heap in bytes: rows pending × `row_bytes`.
    pub new_heap: u64,
    /// The heap after the run without vacuum pacing.
    pub heap_without_pacing: u64,
    /// The heap after the run with vacuum pacing every `every` rows, when it is on.
    pub heap_with_pacing: Option<u64>,
    /// WAL the run writes, roughly.
    pub wal: u64,
}

impl Cost {
    /// The cost of changing `pending` rows of `table`, pacing vacuums every `every` rows when
    /// `Some`, which clean the indexes too when `index_cleanup`.
    pub fn of(table: &Table, pending: u64, every: Option<u64>, index_cleanup: bool) -> Cost {
        let per_row = table.heap_bytes.checked_div(table.rows).unwrap_or(0);
        let row_bytes = per_row + table.set_width;
        let new_heap = pending.saturating_mul(row_bytes);
        let stranded = if index_cleanup {
            0
        } else {
            stranded(per_row, pending)
        };
        let paced = |every: u64| {
            let spans = (every as f64 * PACED_SPANS).round() as u64;
            let wider = pending.saturating_mul(table.set_width + LINE_POINTER);
            // Stranded versions go to new pages whole; the others fit where the old ones were,
            // which leaves the pages no room to spare for the wider versions either.
            let away = stranded.saturating_mul(row_bytes);
            table.heap_bytes + new_heap.min(wider.max(away) + spans.saturating_mul(row_bytes))
        };
        let share = |bytes: u64| match table.rows {
            0 => bytes,
            rows => (bytes as f64 * (pending.min(rows) as f64 / rows as f64)) as u64,
        };
        let images = if table.full_page_writes {
            share(table.heap_bytes) + share(table.index_bytes)
        } else {
            0
        };
        let per_change = row_bytes + ROW_RECORD + u64::from(table.indexes) * INDEX_RECORD;
        Cost {
            row_bytes,
            new_heap,
            heap_without_pacing: table.heap_bytes + new_heap,
            heap_with_pacing: every.map(paced),
            wal: pending.saturating_mul(per_change) + images,
        }
    }
}

/// Of `pending` rows of `per_row` heap bytes each (line pointer included), how many find no
/// room on pages a heap-only vacuum freed: such a page keeps its old rows' line pointers, dead,
/// and takes new versions only up to [`PAGE_LINE_POINTERS`] — fewer than it held when the rows
/// are narrow (under ~56 bytes: more than 145 to a page).
fn stranded(per_row: u64, pending: u64) -> u64 {
    let Some(held) = PAGE.checked_div(per_row) else {
        return 0;
    };
    let takes = PAGE_LINE_POINTERS.saturating_sub(held);
    if held == 0 || takes >= held {
        return 0;
    }
    (pending as f64 * (held - takes) as f64 / held as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_backfill_copies_the_heap_without_pacing() {
        let cost = Cost::of(&Table::example(), 1_000_000, None, false);
        assert_eq!(cost.row_bytes, 104);
        assert_eq!(cost.new_heap, 104_000_000);
        assert_eq!(cost.heap_without_pacing, 204_000_000);
        assert_eq!(cost.heap_with_pacing, None);
    }

    #[test]
    fn pacing_bounds_the_growth_by_spans_of_every() {
        let cost = Cost::of(&Table::example(), 1_000_000, Some(50_000), false);
        let spans = (50_000.0 * PACED_SPANS) as u64;
        let wider = 1_000_000 * (4 + LINE_POINTER);
        assert_eq!(
            cost.heap_with_pacing,
            Some(100_000_000 + wider + spans * 104)
        );
        // A job smaller than the spans grows the heap by its rows at most.
        let small = Cost::of(&Table::example(), 10_000, Some(50_000), false);
        assert_eq!(small.heap_with_pacing, Some(100_000_000 + 10_000 * 104));
    }

    #[test]
    fn narrow_rows_are_held_back_by_the_line_pointers_unless_the_indexes_are_cleaned() {
        // The benchmark's `orders`: 44 heap bytes a row, 186 to a page, which then takes 105.
        let orders = Table {
            heap_bytes: 44 * 2_000_000,
            rows: 2_000_000,
            set_width: 8,
            ..Table::example()
        };
        let ratio = |cost: Cost| cost.heap_with_pacing.unwrap() as f64 / orders.heap_bytes as f64;
        let heap_only = ratio(Cost::of(&orders, 2_000_000, Some(100_000), false));
        let cleaned = ratio(Cost::of(&orders, 2_000_000, Some(100_000), true));
        assert!((1.5..1.7).contains(&heap_only), "{heap_only}");
        assert!((1.2..1.4).contains(&cleaned), "{cleaned}");
        // Wide rows never reach the limit.
        assert_eq!(stranded(100, 1_000_000), 0);
        assert_eq!(stranded(0, 1_000_000), 0);
    }

    #[test]
    fn wal_counts_rows_index_entries_and_page_images() {
        let t = Table::example();
        let per_change = 104 + ROW_RECORD + INDEX_RECORD;
        let all = Cost::of(&t, 1_000_000, None, false);
        assert_eq!(
            all.wal,
            1_000_000 * per_change + t.heap_bytes + t.index_bytes
        );
        let half = Cost::of(&t, 500_000, None, false);
        assert_eq!(
            half.wal,
            500_000 * per_change + t.heap_bytes / 2 + t.index_bytes / 2
        );
        let no_images = Table {
            full_page_writes: false,
            ..t
        };
        assert_eq!(
            Cost::of(&no_images, 1_000_000, None, false).wal,
            1_000_000 * per_change
        );
    }

    #[test]
    fn an_empty_table_costs_nothing() {
        let empty = Table {
            heap_bytes: 0,
            rows: 0,
            index_bytes: 0,
            ..Table::example()
        };
        let cost = Cost::of(&empty, 0, Some(10_000), false);
        assert_eq!(cost.new_heap, 0);
        assert_eq!(cost.heap_with_pacing, Some(0));
        assert_eq!(cost.wal, 0);
    }
}
