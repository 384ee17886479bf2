//! The statements of `verify --values` on MySQL and MariaDB: each `[set]` column compared with
//! what its expression would store in it, over the same key ranges as a run (each range's end
//! found by the plan's `upper_bound` walk). Pure, like the rest of `plan`.
//!
//! An `UPDATE` converts the expression's value to the column's type, so the comparison does
//! the same ([`sides`]): integers, decimals, floats and temporal types through `CAST` (which
//! rounds as the assignment does), `binary(n)` padded, JSON parsed. Strings are compared as
//! their bytes in the column's character set, not under its collation: the default
//! collations ignore case and accents (`utf8mb4_0900_ai_ci`), and a dual write that stored
//! `Zoë` where the backfill computes `zoe` has written something else. `CHAR` drops trailing
//! spaces, as the column gives its values back. Both sides compare with `<=>`, so that NULL
//! equals NULL.

use crate::catalog::{Catalog, Column};
use crate::job::Job;
use crate::mysql::sql::{Ident, Qualified};
use crate::plan::Statements;

use super::KeySql;
use super::cast::{Type, is_name};

/// The statements `verify --values` runs against the job's table; each binds the range as a
/// batch's `UPDATE` does (`crate::mysql::table::bind_compared`, the lower key then the upper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Over one key range: its rows, those whose `[set]` columns differ from their
    /// expressions, those of them that no longer match `where` (so no run rewrites them), and
    /// those still matching `where`.
    pub counts: Statements,
    /// The differing rows of one key range in key order, at most `?` (bound after the range):
    /// the key columns, then for each `[set]` column its value and its expression's, as text.
    pub differences: Statements,
}

/// One `[set]` column's comparison: the two sides of `<=>`, and each as text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sides {
    column: String,
    expected: String,
    column_text: String,
    expected_text: String,
}

/// How `column` (quoted as `quoted`) is compared with what `expr` would store in it.
fn sides(column: &Column, quoted: &str, expr: &str) -> Sides {
    let t = Type::parse(&column.type_sql);
    let value = format!("({expr})");
    let cast = |to: &str| format!("CAST({value} AS {to})");
    let plain = |expected: String| {
        let text = |v: &str| {
            if t.is_binary() {
                format!("HEX({v})")
            } else {
                format!("CAST({v} AS CHAR)")
            }
        };
        Sides {
            column: quoted.to_owned(),
            column_text: text(quoted),
            expected_text: text(&expected),
            expected,
        }
    };
    let charset = column
        .collation
        .as_deref()
        .filter(|c| is_name(c))
        .and_then(|c| c.split_once('_'))
        .map(|(charset, _)| charset);
    match (t.name.as_str(), charset) {
        ("tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint", _) => {
            plain(cast(if t.unsigned { "UNSIGNED" } else { "SIGNED" }))
        }
        ("decimal" | "numeric", _) => plain(cast(&t.with_precision("DECIMAL"))),
        ("float", _) => plain(cast("FLOAT")),
        ("double" | "real", _) => plain(cast("DOUBLE")),
        ("datetime" | "timestamp", _) => plain(cast(&t.with_precision("DATETIME"))),
        ("date", _) => plain(cast("DATE")),
        ("time", _) => plain(cast(&t.with_precision("TIME"))),
        ("binary", _) => plain(cast(&t.with_precision("BINARY"))),
        ("json", _) => plain(cast("JSON")),
        ("uuid" | "inet4" | "inet6", _) => plain(cast(&t.name.to_ascii_uppercase())),
        (
            name @ ("char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext"),
            Some(charset),
        ) => {
            let converted = format!("CONVERT({value} USING {charset})");
            let stored = if name == "char" {
                format!("TRIM(TRAILING ' ' FROM {converted})")
            } else {
                converted
            };
            Sides {
                column: format!("CAST({quoted} AS BINARY)"),
                expected: format!("CAST({stored} AS BINARY)"),
                column_text: format!("CAST({quoted} AS CHAR)"),
                expected_text: format!("CAST({stored} AS CHAR)"),
            }
        }
        _ => plain(value),
    }
}

/// The statements for `job` on the table described by `catalog`.
pub fn comparison(job: &Job, catalog: &Catalog) -> Comparison {
    let table = Qualified {
        schema: &catalog.schema,
        name: &catalog.name,
    }
    .to_string();
    let key = KeySql::new(catalog, &table);
    let range = key.range();
    let each: Vec<Sides> = job
        .set
        .iter()
        .map(|a| {
            let quoted = Ident(&a.column).to_string();
            match catalog.set.iter().find(|c| c.name == a.column) {
                Some(column) => sides(column, &quoted, &a.expr),
                None => sides(&untyped(&a.column), &quoted, &a.expr),
            }
        })
        .collect();
    let differs = each
        .iter()
        .map(|s| format!("NOT ({} <=> {})", s.column, s.expected))
        .collect::<Vec<_>>()
        .join(" OR ");
    let values = each
        .iter()
        .map(|s| format!("{}, {}", s.column_text, s.expected_text))
        .collect::<Vec<_>>()
        .join(", ");
    let filter = &job.filter;
    let counts = |range: &str| {
        format!(
            "SELECT COUNT(*), COUNT(CASE WHEN {differs} THEN 1 END), \
             COUNT(CASE WHEN ({differs}) AND NOT (({filter}) IS TRUE) THEN 1 END), \
             COUNT(CASE WHEN ({filter}) IS TRUE THEN 1 END) FROM {table} WHERE {range}"
        )
    };
    let differences = |range: &str| {
        format!(
            "SELECT {}, {values} FROM {table} WHERE {range} AND ({differs}) ORDER BY {} LIMIT ?",
            key.as_text(),
            key.order(""),
        )
    };
    Comparison {
        counts: range.map(counts),
        differences: range.map(differences),
    }
}

/// A column whose type is not known (the catalog lists every `[set]` column, so none): compared
/// as it is.
fn untyped(name: &str) -> Column {
    Column {
        name: name.to_owned(),
        type_sql: String::new(),
        collation: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, type_sql: &str, collation: Option<&str>) -> Column {
        Column::example(name, type_sql, collation)
    }

    fn expected(type_sql: &str, collation: Option<&str>) -> (String, String) {
        let s = sides(&column("c", type_sql, collation), "`c`", "e");
        (s.column, s.expected)
    }

    #[test]
    fn numbers_and_times_are_cast_as_the_assignment_converts_them() {
        assert_eq!(expected("int", None).1, "CAST((e) AS SIGNED)");
        assert_eq!(expected("bigint unsigned", None).1, "CAST((e) AS UNSIGNED)");
        assert_eq!(
            expected("decimal(10,2)", None).1,
            "CAST((e) AS DECIMAL(10,2))"
        );
        assert_eq!(expected("double", None).1, "CAST((e) AS DOUBLE)");
        assert_eq!(expected("datetime(3)", None).1, "CAST((e) AS DATETIME(3))");
        assert_eq!(expected("binary(16)", None).1, "CAST((e) AS BINARY(16))");
        assert_eq!(
            expected("enum('a','b')", None),
            ("`c`".into(), "(e)".into())
        );
    }

    #[test]
    fn strings_compare_as_bytes_in_the_columns_charset() {
        assert_eq!(
            expected("varchar(32)", Some("utf8mb4_0900_ai_ci")),
            (
                "CAST(`c` AS BINARY)".into(),
                "CAST(CONVERT((e) USING utf8mb4) AS BINARY)".into()
            )
        );
        assert_eq!(
            expected("char(4)", Some("latin1_swedish_ci")).1,
            "CAST(TRIM(TRAILING ' ' FROM CONVERT((e) USING latin1)) AS BINARY)"
        );
    }

    fn comparison_of(key: &[(&str, &str)]) -> Comparison {
        let job = Job::example(
            "table = \"users\"\nwhere = \"flag IS NULL\"\n[set]\nflag = \"legacy\"\n'we`ird' = \"n * 2\"\n",
        );
        let key = key.iter().map(|(n, t)| column(n, t, None)).collect();
        let catalog = Catalog {
            set: vec![
                column("flag", "varchar(32)", Some("utf8mb4_bin")),
                column("we`ird", "bigint", None),
            ],
            ..Catalog::example(90704, "shop", "users", key, "PRIMARY")
        };
        comparison(&job, &catalog)
    }

    #[test]
    fn counts_compare_every_set_column_null_safely() {
        assert_eq!(
            comparison_of(&[("id", "bigint")]).counts.after_cursor,
            "SELECT COUNT(*), COUNT(CASE WHEN NOT (CAST(`flag` AS BINARY) <=> CAST(CONVERT((legacy) USING utf8mb4) AS BINARY)) OR NOT (`we``ird` <=> CAST((n * 2) AS SIGNED)) THEN 1 END), \
             COUNT(CASE WHEN (NOT (CAST(`flag` AS BINARY) <=> CAST(CONVERT((legacy) USING utf8mb4) AS BINARY)) OR NOT (`we``ird` <=> CAST((n * 2) AS SIGNED))) AND NOT ((flag IS NULL) IS TRUE) THEN 1 END), \
             COUNT(CASE WHEN (flag IS NULL) IS TRUE THEN 1 END) FROM `shop`.`users` WHERE (`id` > CAST(? AS SIGNED)) AND (`id` <= CAST(? AS SIGNED))"
        );
    }

    #[test]
    fn differences_list_keys_and_both_values_in_key_order() {
        let c = comparison_of(&[("id", "bigint")]);
        assert_eq!(
            c.differences.from_start,
            "SELECT CAST(`id` AS CHAR), CAST(`flag` AS CHAR), CAST(CONVERT((legacy) USING utf8mb4) AS CHAR), CAST(`we``ird` AS CHAR), CAST(CAST((n * 2) AS SIGNED) AS CHAR) \
             FROM `shop`.`users` WHERE (`id` <= CAST(? AS SIGNED)) AND (NOT (CAST(`flag` AS BINARY) <=> CAST(CONVERT((legacy) USING utf8mb4) AS BINARY)) OR NOT (`we``ird` <=> CAST((n * 2) AS SIGNED))) \
             ORDER BY `shop`.`users`.`id` LIMIT ?"
        );
    }
}
