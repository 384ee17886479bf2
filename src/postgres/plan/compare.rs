//! The statements of `verify` beyond `where`: rows still pending past a job's range end, and
//! the walk of `verify --values`, which compares every `[set]` column with its expression over
//! the same key ranges as a run (each range's end found by [`Plan::upper_bound`](super::Plan)).
//! Pure, like the rest of `plan`.

use crate::catalog::Catalog;
use crate::job::Job;
use crate::postgres::sql::{Ident, Qualified};

use super::{KeySql, Statements};

/// The statements `verify` runs against the job's table; binds as documented on each field
/// (`n` key columns, all key values as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Over one key range: its rows, those whose `[set]` columns differ from their expressions,
    /// those of them that no longer match `where` (so no run rewrites them), and those still
    /// matching `where`. Binds as [`crate::plan::Walk::update`].
    pub counts: Statements,
    /// The differing rows of one key range in key order, at most `$k` (the bind after the
    /// range's): the key columns, then for each `[set]` column its value and its expression's,
    /// all as text.
    pub differences: Statements,
    /// Rows matching `where` whose key is past `$1..$n` (a job's range end): rows inserted after
    /// the job started, which the application's dual write was to fill.
    pub pending_after: String,
}

impl Comparison {
    /// The statements for `job` on the table described by `catalog`. Each expression is cast to
    /// its column's type, as the batch's assignment casts it, and compared with
    /// `IS DISTINCT FROM`, so that NULL equals NULL.
    pub fn new(job: &Job, catalog: &Catalog) -> Comparison {
        let table = Qualified {
            schema: &catalog.schema,
            name: &catalog.name,
        }
        .to_string();
        let key = KeySql::new(catalog, &table);
        let range = key.range();
        let expected = |column: &str, expr: &str| {
            let type_sql = catalog
                .set
                .iter()
                .find(|c| c.name == column)
                .map_or("", |c| c.type_sql.as_str());
            format!("(({expr})::{type_sql})")
        };
        let per_column = |each: &dyn Fn(Ident, String) -> String, sep: &str| {
            job.set
                .iter()
                .map(|a| each(Ident(&a.column), expected(&a.column, &a.expr)))
                .collect::<Vec<_>>()
                .join(sep)
        };
        let differs = per_column(&|c, e| format!("{c} IS DISTINCT FROM {e}"), " OR ");
        let values = per_column(&|c, e| format!("{c}::text, {e}::text"), ", ");
        let filter = &job.filter;
        let counts = |range: &str| {
            format!(
                "SELECT count(*), count(*) FILTER (WHERE {differs}), \
                 count(*) FILTER (WHERE ({differs}) AND NOT coalesce(({filter}), false)), \
                 count(*) FILTER (WHERE ({filter})) FROM {table} WHERE {range}"
            )
        };
        let differences = |range: &str, limit: usize| {
            format!(
                "SELECT {}, {values} FROM {table} WHERE {range} AND ({differs}) \
                 ORDER BY {} LIMIT ${limit}::bigint",
                key.as_text(),
                key.order_asc(),
            )
        };
        let n = key.len();
        Comparison {
            counts: range.map(counts),
            differences: Statements {
                from_start: differences(&range.from_start, n + 1),
                after_cursor: differences(&range.after_cursor, 2 * n + 1),
            },
            pending_after: format!(
                "SELECT count(*) FROM {table} WHERE ({filter}) AND {} > {}",
                key.row(),
                key.params(1)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Column;

    fn column(name: &str, type_sql: &str) -> Column {
        Column::example(name, type_sql, None)
    }

    fn comparison(key: &[(&str, &str)]) -> Comparison {
        let job = Job::example(
            "table = \"users\"\nwhere = \"flag IS NULL\"\n[set]\nflag = \"legacy\"\n'we\"ird' = \"n * 2\"\n",
        );
        let key = key.iter().map(|(n, t)| column(n, t)).collect();
        let catalog = Catalog {
            set: vec![
                column("flag", "character varying(32)"),
                column("we\"ird", "bigint"),
            ],
            ..Catalog::example(150000, "public", "users", key, "users_pkey")
        };
        Comparison::new(&job, &catalog)
    }

    #[test]
    fn counts_compare_every_set_column_with_its_cast_expression() {
        assert_eq!(
            comparison(&[("id", "bigint")]).counts.after_cursor,
            r#"SELECT count(*), count(*) FILTER (WHERE "flag" IS DISTINCT FROM ((legacy)::character varying(32)) OR "we""ird" IS DISTINCT FROM ((n * 2)::bigint)), count(*) FILTER (WHERE ("flag" IS DISTINCT FROM ((legacy)::character varying(32)) OR "we""ird" IS DISTINCT FROM ((n * 2)::bigint)) AND NOT coalesce((flag IS NULL), false)), count(*) FILTER (WHERE (flag IS NULL)) FROM "public"."users" WHERE ("id") > ($1::bigint) AND ("id") <= ($2::bigint)"#
        );
    }

    #[test]
    fn differences_list_keys_and_both_values_in_key_order() {
        let c = comparison(&[("tenant", "text"), ("id", "integer")]);
        assert_eq!(
            c.differences.from_start,
            r#"SELECT "tenant"::text, "id"::text, "flag"::text, ((legacy)::character varying(32))::text, "we""ird"::text, ((n * 2)::bigint)::text FROM "public"."users" WHERE ("tenant", "id") <= ($1::text, $2::integer) AND ("flag" IS DISTINCT FROM ((legacy)::character varying(32)) OR "we""ird" IS DISTINCT FROM ((n * 2)::bigint)) ORDER BY "public"."users"."tenant", "public"."users"."id" LIMIT $3::bigint"#
        );
        assert!(c.differences.after_cursor.ends_with("LIMIT $5::bigint"));
    }

    #[test]
    fn pending_after_counts_past_the_range_end() {
        assert_eq!(
            comparison(&[("id", "bigint")]).pending_after,
            r#"SELECT count(*) FROM "public"."users" WHERE (flag IS NULL) AND ("id") > ($1::bigint)"#
        );
    }
}
