//! The one way an identifier or a key enters MySQL's SQL text.
//!
//! Every table, schema and column name goes through [`Ident`], which writes it in backticks
//! with inner backticks doubled, as `SHOW CREATE TABLE` does (always quoting, so case and odd
//! characters survive). Values never enter SQL text: they travel as `?` parameters.
//!
//! Keys travel as text, as on PostgreSQL. A key column's *cast* is an SQL template with one
//! `{}` that turns text back into the column's own type and collation —
//! `CAST({} AS SIGNED)`, `CONVERT({} USING utf8mb4) COLLATE utf8mb4_0900_ai_ci`, `UNHEX({})` —
//! so that a bound key compares in the index's order ([`typed`]). MySQL's optimizer does not
//! turn a row comparison `(a, b) > (?, ?)` into an index range on every version, so composite
//! keys are compared in the expanded form [`Compare`] writes; its `?`s are bound in the order
//! [`Compare::order`] gives.

use std::fmt;

/// An identifier written into SQL, always quoted: ``we`ird`` → ``` `we``ird` ```.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident<'a>(pub &'a str);

impl fmt::Display for Ident<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.0.replace('`', "``"))
    }
}

/// A database-qualified name: `` `shop`.`orders` ``.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qualified<'a> {
    pub schema: &'a str,
    pub name: &'a str,
}

impl fmt::Display for Qualified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", Ident(self.schema), Ident(self.name))
    }
}

/// `schema.name` as MySQL reads it back: `` `backfill`.`jobs` ``.
pub fn quoted(schema: &str, name: &str) -> String {
    Qualified { schema, name }.to_string()
}

/// `` `db`.`t` `` → `("db", "t")`: the inverse of `crate::mysql::sql::Qualified`.
pub fn unquoted(relation: &str) -> Option<(String, String)> {
    let mut parts = Vec::new();
    let mut rest = relation;
    loop {
        rest = rest.strip_prefix('`')?;
        let mut part = String::new();
        loop {
            let at = rest.find('`')?;
            part.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            match rest.strip_prefix('`') {
                Some(after) => {
                    part.push('`');
                    rest = after;
                }
                None => break,
            }
        }
        parts.push(part);
        match rest.strip_prefix('.') {
            Some(after) => rest = after,
            None if rest.is_empty() => break,
            None => return None,
        }
    }
    let [schema, name] = <[String; 2]>::try_from(parts).ok()?;
    Some((schema, name))
}

/// `expr` (text) as a key column's value, through the column's cast template.
pub fn typed(cast: &str, expr: &str) -> String {
    cast.replacen("{}", expr, 1)
}

/// The `i`-th element of a key stored as a JSON array of text, as text: what the state tables
/// keep a key as (`cursor`, `upper`), read back for [`typed`].
pub fn json_part(expr: &str, i: usize) -> String {
    format!("JSON_UNQUOTE(JSON_EXTRACT({expr}, '$[{i}]'))")
}

/// A lexicographic comparison of the key columns with one key's values, written out so that
/// both servers' range optimizers use the key's index: `a > x OR (a = x AND b > y)` for
/// `>` over `(a, b)`. The last column takes `last`, every earlier one the strict form of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compare {
    /// The operator of the last column: `>`, `>=`, `<` or `<=`.
    pub last: &'static str,
    /// How many key columns.
    pub len: usize,
}

impl Compare {
    pub const AFTER: Compare = Compare { last: ">", len: 0 };
    pub const UP_TO: Compare = Compare { last: "<=", len: 0 };
    pub const BEFORE: Compare = Compare { last: "<", len: 0 };

    /// The same comparison over `len` key columns.
    pub fn over(self, len: usize) -> Compare {
        Compare { len, ..self }
    }

    /// The SQL, with `column(i)` the left side's `i`-th column and `value(i)` the right
    /// side's; each `value` appears once per use, in [`Compare::order`]'s order.
    pub fn sql(&self, column: impl Fn(usize) -> String, value: impl Fn(usize) -> String) -> String {
        let strict = &self.last[..1];
        let mut sql = format!(
            "{} {} {}",
            column(self.len - 1),
            self.last,
            value(self.len - 1)
        );
        for i in (0..self.len - 1).rev() {
            let (c, v) = (column(i), value(i));
            sql = format!("{c} {strict} {v} OR ({c} = {v} AND ({sql}))");
        }
        format!("({sql})")
    }

    /// Which key column's value each `?` of [`Compare::sql`] takes, in order, when `value`
    /// writes a `?`: `[0, 0, 1]` for two columns.
    pub fn order(&self) -> Vec<usize> {
        let mut order = vec![self.len - 1];
        for i in (0..self.len - 1).rev() {
            order.splice(0..0, [i, i]);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_unquote_as_they_were_quoted() {
        let written = Qualified {
            schema: "sh.op",
            name: "we`ird",
        }
        .to_string();
        assert_eq!(unquoted(&written), Some(("sh.op".into(), "we`ird".into())));
        assert_eq!(
            unquoted("`shop`.`Order``Items`"),
            Some(("shop".into(), "Order`Items".into()))
        );
        assert_eq!(unquoted("`users`"), None);
        assert_eq!(unquoted("shop.users"), None);
        assert_eq!(unquoted("`a`.`b`.`c`"), None);
    }

    #[test]
    fn idents_are_backquoted_with_backquotes_doubled() {
        assert_eq!(Ident("Order Items").to_string(), "`Order Items`");
        assert_eq!(Ident("we`ird").to_string(), "`we``ird`");
        let q = Qualified {
            schema: "shop",
            name: "a;b",
        };
        assert_eq!(q.to_string(), "`shop`.`a;b`");
    }

    #[test]
    fn one_column_compares_plainly() {
        let c = Compare::AFTER.over(1);
        assert_eq!(c.sql(|_| "`id`".into(), |_| "?".into()), "(`id` > ?)");
        assert_eq!(c.order(), [0]);
    }

    #[test]
    fn composite_keys_expand_and_bind_in_order() {
        let cols = ["a", "b", "c"];
        let c = Compare::UP_TO.over(3);
        assert_eq!(
            c.sql(|i| cols[i].into(), |i| format!("v{i}")),
            "(a < v0 OR (a = v0 AND (b < v1 OR (b = v1 AND (c <= v2)))))"
        );
        assert_eq!(c.order(), [0, 0, 1, 1, 2]);
        let sql = c.sql(|i| cols[i].into(), |_| "?".into());
        assert_eq!(sql.matches('?').count(), c.order().len());
    }

    #[test]
    fn casts_wrap_the_text() {
        assert_eq!(typed("CAST({} AS SIGNED)", "?"), "CAST(? AS SIGNED)");
        assert_eq!(
            typed("UNHEX({})", &json_part("`upper`", 1)),
            "UNHEX(JSON_UNQUOTE(JSON_EXTRACT(`upper`, '$[1]')))"
        );
    }
}
