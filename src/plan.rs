//! A job's statements about its table, as the database's own planner wrote them
//! (`crate::postgres::plan` for PostgreSQL): plain text that the engine hands back to the
//! database with its binds, never reads. What the engine asks of a plan — its walks, which
//! relation a range walks, which relations to watch — is here; how each statement is written
//! is the planner's.

use std::time::Duration;

/// The `lock_timeout` of every statement of a start that touches the table (and of the
/// `status` note it writes): the longest one waits behind a lock that arrived after the sample
/// found the way clear. Our reads conflict only with `ACCESS EXCLUSIVE`, and the application's
/// own traffic takes nothing stronger than `ROW EXCLUSIVE`, so in practice only DDL makes a
/// step run out of it.
pub const START_LOCK_TIMEOUT: Duration = Duration::from_millis(200);

/// A key as the engine carries it: the key columns' values as text, in key order.
pub type Key = Vec<String>;

/// A statement in two forms: for the first batch (no cursor yet) and for every later batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statements {
    /// Used while there is no checkpointed cursor: the walk starts at the lowest key.
    pub from_start: String,
    /// Used after a cursor: keys strictly greater than it.
    pub after_cursor: String,
}

impl Statements {
    /// The form to use given whether a cursor exists.
    pub fn pick(&self, has_cursor: bool) -> &str {
        if has_cursor {
            &self.after_cursor
        } else {
            &self.from_start
        }
    }

    /// A statement in both forms written around these (a key range's condition in both forms,
    /// say), by one `write` for both: the forms cannot drift apart.
    pub fn map(&self, write: impl Fn(&str) -> String) -> Statements {
        Statements {
            from_start: write(&self.from_start),
            after_cursor: write(&self.after_cursor),
        }
    }
}

/// Which database's SQL a plan is written in: how messages about it quote a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `"name"`.
    Postgres,
    /// MySQL and MariaDB: `` `name` ``.
    Mysql,
}

impl Dialect {
    /// `name` quoted as this database quotes an identifier.
    pub fn ident(self, name: &str) -> String {
        match self {
            Dialect::Postgres => crate::postgres::sql::Ident(name).to_string(),
            Dialect::Mysql => crate::mysql::sql::Ident(name).to_string(),
        }
    }
}

/// Every statement a job runs against its table, with the bind-parameter layout documented on
/// each field (`n` is the number of key columns; all key values are text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Which database's SQL the statements are written in.
    pub dialect: Dialect,
    /// The table as written in the statements, e.g. `"public"."users"`.
    pub table: String,
    /// Number of key columns.
    pub key_len: usize,
    /// The key columns' exact names, in key order, for messages that name a row.
    pub key_columns: Vec<String>,
    /// The key columns' types as SQL, with the column's collation where it has its own, to
    /// read keys stored as jsonb back in the key's order (see [`crate::postgres::sql::JsonbKey`]).
    pub key_types: Vec<String>,
    /// The walk over the table itself: what `plan` and `verify` read (for a partitioned table,
    /// through the parent).
    pub walk: Walk,
    /// The walks over the leaf partitions of a partitioned table, which its batches update
    /// directly, so that a batch never goes through the parent's Append; empty for a plain
    /// table.
    pub leaves: Vec<Walk>,
    /// Whether the table is partitioned.
    pub partitioned: bool,
    /// Rows that still match `where`, counted exactly. No parameters.
    pub pending_count: String,
    /// The planner's estimate of the same, as `EXPLAIN (FORMAT JSON)`. No parameters.
    pub pending_estimate: String,
    /// Rows matching `where` and all rows, in a block sample: `$1` the percentage of blocks
    /// (`float4`). The same blocks every time (`REPEATABLE`), so `plan` and `run` agree.
    pub pending_sample: String,
    /// The names `where` mentions (see [`crate::postgres::sql::words`]); the estimate trusts the planner
    /// only when each of them that is a column has statistics.
    pub filter_columns: Vec<String>,
    /// One row of the table by its key, read whole as an application reads it (every column,
    /// as text), returning only its length — a number, so that no column type of the table
    /// needs decoding: the latency guard's default probe. `$1..$n` the key.
    pub probe: String,
}

/// The statements that walk one relation (the table, or one leaf partition) in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    /// The relation as written in the statements.
    pub relation: String,
    /// The greatest key now, as text columns. No parameters. Captured once, when a job starts,
    /// so that the walk ends even while the application keeps inserting.
    pub range_end: String,
    /// The inclusive upper key of the next batch: the `size`-th key after the cursor, but not
    /// past the range end. `after_cursor`: `$1..$n` cursor, `$n+1..$2n` range end, `$2n+1`
    /// offset (size - 1). `from_start`: `$1..$n` range end, `$n+1` offset.
    pub upper_bound: Statements,
    /// The batch itself: rows in `(cursor, upper]` that still match `where`. `after_cursor`:
    /// `$1..$n` cursor, `$n+1..$2n` upper bound. `from_start`: `$1..$n` upper bound.
    pub update: Statements,
    /// A block sample (`TABLESAMPLE SYSTEM`) of the keys in `(cursor, upper]` in key order,
    /// each with whether its row still matches `where`: where to split a range, never an
    /// `OFFSET` walk of a large one. Binds as `update`, then the percentage of blocks.
    pub sample: Statements,
    /// Every key in `(cursor, upper]`, in key order: what a failed batch is narrowed down
    /// over. Binds as `update`.
    pub keys: Statements,
    /// The batch of one row, for retrying a row that failed: `$1..$n` its key.
    pub update_key: String,
}

impl Plan {
    /// The walks over the relations that batches update: the table itself, or its leaves.
    pub fn walks(&self) -> &[Walk] {
        if self.partitioned {
            &self.leaves
        } else {
            std::slice::from_ref(&self.walk)
        }
    }

    /// The walk over `relation`, as a range row names it.
    pub fn walk_of(&self, relation: &str) -> Option<&Walk> {
        self.walks().iter().find(|w| w.relation == relation)
    }

    /// The relations whose locks matter to the job, as SQL: the table, and the leaf
    /// partitions its batches update. What the monitor watches, and a start waits for.
    pub fn relations(&self) -> Vec<String> {
        let mut all = vec![self.table.clone()];
        all.extend(
            self.walks()
                .iter()
                .map(|w| w.relation.clone())
                .filter(|r| *r != self.table),
        );
        all
    }
}

/// A relation's size: its blocks now, and its rows as its last count says (`VACUUM` or
/// `ANALYZE`: rows per block, times the blocks it has now, as the planner reckons), when it
/// was ever counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelationSize {
    pub blocks: u64,
    pub rows: Option<u64>,
}

/// One key of a block sample, in key order, with whether its row still matches `where`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sampled {
    pub key: Key,
    pub pending: bool,
}
