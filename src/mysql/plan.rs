//! The planner for MySQL and MariaDB: a validated [`Job`] plus the table's [`Catalog`] become
//! every statement a run sends about the table ([`plan`]), as `crate::postgres::plan` does for
//! PostgreSQL. Pure: no I/O. Identifiers go through [`Ident`]; values (keys, offsets, the
//! sample's share) are always `?` parameters.
//!
//! Keys travel as text, read out by [`cast::as_text`] and cast back by the key column's
//! template ([`cast::cast`], kept in [`Plan::key_types`]). A key compared with the key columns
//! is written out as [`Compare`] writes it, so its `?`s take the key's values in
//! [`Compare::order`]'s order — a value appears twice for every column but the last:
//!
//! - a range `(cursor, upper]` binds the cursor, then the upper key, each in that order;
//! - an equality (`update_key`, `probe`) binds each key column once, in key order;
//! - a statement with more parameters (`upper_bound`'s offset, `sample`'s share) takes them
//!   after its keys.
//!
//! Differences from PostgreSQL, each for a reason:
//!
//! - There is no `TABLESAMPLE`: `sample` and `pending_sample` keep each row with probability
//!   `? / 100` (`RAND(0)`, the same rows every time the same rows are read), which reads every
//!   row of the range — bounded only by the statement timeout of the transaction it runs in.
//! - InnoDB's partitions are transparent, so the walk is always over the table itself.
//! - `UPDATE … SET a = x, b = y` evaluates left to right, and `y` sees the new `a` where
//!   PostgreSQL's sees the old one: a job whose `[set]` expressions read each other's columns
//!   means something else here.

pub mod cast;
pub mod compare;
pub mod words;

#[cfg(test)]
mod tests;

use crate::catalog::Catalog;
use crate::job::Job;
use crate::mysql::sql::{Compare, Ident, Qualified, typed};
use crate::plan::{Dialect, Plan, Statements, Walk};

/// Every statement for `job` on the table described by `catalog`: MySQL's counterpart of
/// `Plan::new`. A key column whose type has no cast was refused when the catalog was read;
/// should one get here anyway, its key is bound uncast (`{}`).
pub fn plan(job: &Job, catalog: &Catalog) -> Plan {
    let table = Qualified {
        schema: &catalog.schema,
        name: &catalog.name,
    }
    .to_string();
    let key = KeySql::new(catalog, &table);
    let filter = &job.filter;
    Plan {
        dialect: Dialect::Mysql,
        key_len: key.len(),
        key_columns: catalog.key.iter().map(|c| c.name.clone()).collect(),
        key_types: key.casts.clone(),
        walk: walk(job, &key),
        leaves: vec![],
        partitioned: false,
        pending_count: format!("SELECT COUNT(*) FROM {table} WHERE ({filter})"),
        pending_estimate: format!("EXPLAIN FORMAT=JSON SELECT 1 FROM {table} WHERE ({filter})"),
        pending_sample: format!(
            "SELECT COUNT(CASE WHEN ({filter}) THEN 1 END), COUNT(*) FROM {table} \
             WHERE RAND(0) < ? / 100"
        ),
        filter_columns: words::words(filter),
        // A number, as on PostgreSQL, so that nothing of the row needs decoding; the lookup by
        // the clustered index reads the whole row (all but its off-page columns) all the same.
        probe: format!("SELECT COUNT(*) FROM {table} WHERE {}", key.equal()),
        table,
    }
}

/// Rows matching `where` whose key is past a job's range end (bound as [`Compare::AFTER`]
/// orders it): what `verify` counts as inserted after the job started.
pub fn pending_after(job: &Job, catalog: &Catalog) -> String {
    let table = Qualified {
        schema: &catalog.schema,
        name: &catalog.name,
    }
    .to_string();
    let key = KeySql::new(catalog, &table);
    format!(
        "SELECT COUNT(*) FROM {table} WHERE ({}) AND {}",
        job.filter,
        key.compare(Compare::AFTER)
    )
}

/// The walk over the table: every statement of a batch.
fn walk(job: &Job, key: &KeySql) -> Walk {
    let table = key.table;
    let filter = &job.filter;
    let (text, asc) = (key.as_text(), key.order(""));
    let range = key.range();
    let set = assignments(job);
    let upper_bound = |range: &str| {
        format!("SELECT {text} FROM {table} WHERE {range} ORDER BY {asc} LIMIT 1 OFFSET ?")
    };
    let update = |range: &str| format!("UPDATE {table} SET {set} WHERE {range} AND ({filter})");
    let sample = |range: &str| {
        format!(
            "SELECT {text}, ({filter}) IS TRUE FROM {table} WHERE {range} AND RAND(0) < ? / 100 \
             ORDER BY {asc}"
        )
    };
    let keys = |range: &str| format!("SELECT {text} FROM {table} WHERE {range} ORDER BY {asc}");
    Walk {
        relation: table.to_owned(),
        range_end: format!(
            "SELECT {text} FROM {table} ORDER BY {} LIMIT 1",
            key.order(" DESC")
        ),
        upper_bound: range.map(upper_bound),
        update: range.map(update),
        sample: range.map(sample),
        keys: range.map(keys),
        update_key: update(&key.equal()),
    }
}

/// `` `a` = (expr), `b` = (expr) ``: each expression parenthesised so that it stays one value.
fn assignments(job: &Job) -> String {
    job.set
        .iter()
        .map(|a| format!("{} = ({})", Ident(&a.column), a.expr))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key columns in the shapes the statements need.
struct KeySql<'a> {
    /// The table as written, to qualify `ORDER BY` columns.
    table: &'a str,
    catalog: &'a Catalog,
    /// Each key column's cast template.
    casts: Vec<String>,
}

impl<'a> KeySql<'a> {
    fn new(catalog: &'a Catalog, table: &'a str) -> Self {
        KeySql {
            table,
            catalog,
            casts: catalog
                .key
                .iter()
                .map(|c| cast::cast(c).unwrap_or_else(|| "{}".to_owned()))
                .collect(),
        }
    }

    fn len(&self) -> usize {
        self.catalog.key.len()
    }

    fn column(&self, i: usize) -> String {
        Ident(&self.catalog.key[i].name).to_string()
    }

    /// The `i`-th key value as a `?`, cast back to its column's type.
    fn param(&self, i: usize) -> String {
        typed(&self.casts[i], "?")
    }

    fn join(&self, each: impl Fn(usize) -> String, sep: &str) -> String {
        (0..self.len()).map(each).collect::<Vec<_>>().join(sep)
    }

    /// `` CAST(`a` AS CHAR), HEX(`b`) ``
    fn as_text(&self) -> String {
        self.join(
            |i| cast::as_text(&self.catalog.key[i], &self.column(i)),
            ", ",
        )
    }

    /// The key columns compared with one key of `?`s, as [`Compare`] writes it.
    fn compare(&self, c: Compare) -> String {
        c.over(self.len())
            .sql(|i| self.column(i), |i| self.param(i))
    }

    /// `` (`a` = CAST(? AS SIGNED) AND `b` = …) ``
    fn equal(&self) -> String {
        let each = self.join(
            |i| format!("{} = {}", self.column(i), self.param(i)),
            " AND ",
        );
        format!("({each})")
    }

    /// A batch's key range `(cursor, upper]` as a condition.
    fn range(&self) -> Statements {
        let up_to = self.compare(Compare::UP_TO);
        Statements {
            after_cursor: format!("{} AND {up_to}", self.compare(Compare::AFTER)),
            from_start: up_to,
        }
    }

    /// `` `s`.`t`.`a`{dir}, `s`.`t`.`b`{dir} ``, qualified so that no output column's name can
    /// stand in for a key column.
    fn order(&self, dir: &str) -> String {
        self.join(|i| format!("{}.{}{dir}", self.table, self.column(i)), ", ")
    }
}
