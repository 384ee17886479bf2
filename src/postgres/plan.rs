//! The planner: a validated [`Job`] plus the table's [`Catalog`] facts become every SQL text a run
//! needs. Pure: no I/O, no database; the only module that writes statements about the target
//! table. Identifiers go through [`Ident`]; values (cursor, bounds, batch size) are always bind
//! parameters, never text.
//!
//! Key values travel as text (`"k"::text` out, `$1::<column type>` in) so that any key type with
//! a btree order works without the tool knowing it. Composite keys are compared as rows,
//! `("a", "b") > ($1::text, $2::integer)`, which PostgreSQL turns into one index range scan.

pub mod compare;
#[cfg(test)]
mod tests;
pub mod vacuum;

use std::fmt::Write as _;

use crate::job::Job;
use crate::postgres::catalog::Catalog;
use crate::postgres::sql::words::words;
use crate::postgres::sql::{Ident, Qualified};

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
}

/// Every statement a job runs against its table, with the bind-parameter layout documented on
/// each field (`n` is the number of key columns; all key values are text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
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
    /// Builds every statement for `job` on the table described by `catalog`.
    pub fn new(job: &Job, catalog: &Catalog) -> Plan {
        let table = Qualified {
            schema: &catalog.schema,
            name: &catalog.name,
        }
        .to_string();
        let filter = &job.filter;
        let leaves = catalog
            .leaves
            .iter()
            .map(|leaf| {
                let relation = Qualified {
                    schema: &leaf.schema,
                    name: &leaf.name,
                };
                Walk::new(job, catalog, relation.to_string())
            })
            .collect();
        let key = KeySql::new(catalog, &table);
        let probe = format!(
            "SELECT length(r::text) FROM {table} AS r WHERE {} = {}",
            key.row(),
            key.params(1)
        );
        Plan {
            probe,
            pending_count: format!("SELECT count(*) FROM {table} WHERE ({filter})"),
            pending_estimate: format!(
                "EXPLAIN (FORMAT JSON) SELECT 1 FROM {table} WHERE ({filter})"
            ),
            pending_sample: format!(
                "SELECT count(*) FILTER (WHERE ({filter})), count(*) FROM {table} \
                 TABLESAMPLE SYSTEM ($1::float4) REPEATABLE (0)"
            ),
            filter_columns: words(filter).into_iter().map(|w| w.name).collect(),
            key_len: catalog.key.len(),
            key_columns: catalog.key.iter().map(|c| c.name.clone()).collect(),
            key_types: catalog
                .key
                .iter()
                .map(|c| match &c.collation {
                    Some(collation) => format!("{} COLLATE {collation}", c.type_sql),
                    None => c.type_sql.clone(),
                })
                .collect(),
            walk: Walk::new(job, catalog, table.clone()),
            leaves,
            partitioned: catalog.partitioned,
            table,
        }
    }

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

impl Walk {
    fn new(job: &Job, catalog: &Catalog, relation: String) -> Walk {
        let key = KeySql::new(catalog, &relation);
        let filter = &job.filter;
        let n = key.len();
        let table = &relation;
        let range_end = format!(
            "SELECT {} FROM {table} ORDER BY {} LIMIT 1",
            key.as_text(),
            key.order_desc()
        );
        let upper_bound = Statements {
            from_start: format!(
                "SELECT {} FROM {table} WHERE {} <= {} ORDER BY {} OFFSET ${}::bigint LIMIT 1",
                key.as_text(),
                key.row(),
                key.params(1),
                key.order_asc(),
                n + 1
            ),
            after_cursor: format!(
                "SELECT {} FROM {table} WHERE {} > {} AND {} <= {} ORDER BY {} OFFSET ${}::bigint LIMIT 1",
                key.as_text(),
                key.row(),
                key.params(1),
                key.row(),
                key.params(n + 1),
                key.order_asc(),
                2 * n + 1
            ),
        };
        let set = assignments(job);
        let range = key.range();
        let update = Statements {
            from_start: format!(
                "UPDATE {table} SET {set} WHERE {} AND ({filter})",
                range.from_start
            ),
            after_cursor: format!(
                "UPDATE {table} SET {set} WHERE {} AND ({filter})",
                range.after_cursor
            ),
        };
        let sample = |range: &str, percent: usize| {
            format!(
                "SELECT {}, ({filter}) IS TRUE FROM {table} TABLESAMPLE SYSTEM (${percent}::float8) \
                 WHERE {range} ORDER BY {}",
                key.as_text(),
                key.order_asc()
            )
        };
        let keys = |range: &str| {
            format!(
                "SELECT {} FROM {table} WHERE {range} ORDER BY {}",
                key.as_text(),
                key.order_asc()
            )
        };
        Walk {
            sample: Statements {
                from_start: sample(&range.from_start, n + 1),
                after_cursor: sample(&range.after_cursor, 2 * n + 1),
            },
            keys: Statements {
                from_start: keys(&range.from_start),
                after_cursor: keys(&range.after_cursor),
            },
            update_key: format!(
                "UPDATE {table} SET {set} WHERE {} = {} AND ({filter})",
                key.row(),
                key.params(1)
            ),
            relation,
            range_end,
            upper_bound,
            update,
        }
    }
}

/// `"a" = (expr), "b" = (expr)`: each expression parenthesised so that it stays one value.
fn assignments(job: &Job) -> String {
    let mut out = String::new();
    for (i, a) in job.set.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{} = ({})", Ident(&a.column), a.expr);
    }
    out
}

/// Renders the key columns in the shapes the statements need.
struct KeySql<'a> {
    names: Vec<Ident<'a>>,
    types: Vec<&'a str>,
    /// The table as written, to qualify `ORDER BY` columns (see `order_asc`).
    table: &'a str,
}

impl<'a> KeySql<'a> {
    fn new(catalog: &'a Catalog, table: &'a str) -> Self {
        KeySql {
            names: catalog.key.iter().map(|c| Ident(&c.name)).collect(),
            types: catalog.key.iter().map(|c| c.type_sql.as_str()).collect(),
            table,
        }
    }

    fn len(&self) -> usize {
        self.names.len()
    }

    fn join(&self, each: impl Fn(usize, &Ident) -> String) -> String {
        let parts: Vec<String> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, k)| each(i, k))
            .collect();
        parts.join(", ")
    }

    /// `"a"::text, "b"::text`
    fn as_text(&self) -> String {
        self.join(|_, k| format!("{k}::text"))
    }

    /// `("a", "b")`
    fn row(&self) -> String {
        format!("({})", self.join(|_, k| k.to_string()))
    }

    /// `($first::type_a, $first+1::type_b)`
    fn params(&self, first: usize) -> String {
        format!(
            "({})",
            self.join(|i, _| format!("${}::{}", first + i, self.types[i]))
        )
    }

    /// `"s"."t"."a", "s"."t"."b"`. Qualified because an unqualified `ORDER BY "a"` would
    /// mean the output column `"a"::text` (output names win in `ORDER BY`) and sort as text.
    fn order_asc(&self) -> String {
        self.join(|_, k| format!("{}.{k}", self.table))
    }

    /// A batch's key range `(cursor, upper]` as a condition. `after_cursor`: `$1..$n` cursor,
    /// `$n+1..$2n` upper bound; `from_start`: `$1..$n` upper bound.
    fn range(&self) -> Statements {
        Statements {
            from_start: format!("{} <= {}", self.row(), self.params(1)),
            after_cursor: format!(
                "{} > {} AND {} <= {}",
                self.row(),
                self.params(1),
                self.row(),
                self.params(self.len() + 1)
            ),
        }
    }

    /// `"s"."t"."a" DESC, "s"."t"."b" DESC`
    fn order_desc(&self) -> String {
        self.join(|_, k| format!("{}.{k} DESC", self.table))
    }
}
