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

use crate::catalog::Catalog;

use crate::postgres::sql::words::words;

use crate::postgres::sql::{Ident, Qualified};

use crate::plan::{Dialect, Plan, Statements, Walk};

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
            dialect: Dialect::Postgres,
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
        let update =
            range.map(|range| format!("UPDATE {table} SET {set} WHERE {range} AND ({filter})"));
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
            keys: range.map(keys),
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
