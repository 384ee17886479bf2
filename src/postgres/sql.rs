//! The one way an identifier enters SQL text.
//!
//! Every table, schema and column name that `backfill` puts into a statement goes through
//! [`Ident`], which writes it double-quoted with inner quotes doubled, exactly as PostgreSQL's
//! `quote_ident` would (but always quoting, so case and odd characters survive). Values never
//! enter SQL text at all: they travel as bind parameters. [`JsonbKey`] reads a key stored as
//! jsonb back with its columns' types. This module builds no statements. [`words`] reads the
//! names out of a job's expressions.

pub mod words;

use std::fmt;

/// An identifier to be written into SQL, always quoted: `we"ird` → `"we""ird"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident<'a>(pub &'a str);

impl fmt::Display for Ident<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for (i, part) in self.0.split('"').enumerate() {
            if i > 0 {
                f.write_str("\"\"")?;
            }
            f.write_str(part)?;
        }
        f.write_str("\"")
    }
}

/// A schema-qualified name written as `"schema"."name"`.
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

/// A key stored as a jsonb array of text, read back as a row of the key's own types:
/// `(("upper"->>0)::bigint, ("upper"->>1)::text)`, so that two stored keys compare in the
/// key's order (not as JSON). `expr` is SQL that yields the jsonb array (a column, or a
/// parameter such as `$4::jsonb`); `types` are the key columns' types as `format_type` writes
/// them, which is valid SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonbKey<'a> {
    pub expr: &'a str,
    pub types: &'a [String],
}

impl fmt::Display for JsonbKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, t) in self.types.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "(({})->>{i})::{t}", self.expr)?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_name_is_quoted() {
        assert_eq!(Ident("users").to_string(), r#""users""#);
    }

    #[test]
    fn inner_quotes_are_doubled() {
        assert_eq!(Ident(r#"Odd "Name""#).to_string(), r#""Odd ""Name""""#);
    }

    #[test]
    fn sql_metacharacters_stay_inside_the_quotes() {
        assert_eq!(
            Ident("users; DROP TABLE users --").to_string(),
            r#""users; DROP TABLE users --""#
        );
    }

    #[test]
    fn jsonb_key_casts_each_column_with_its_type() {
        let types = ["text".to_owned(), "integer".to_owned()];
        let key = JsonbKey {
            expr: "$4::jsonb",
            types: &types,
        };
        assert_eq!(
            key.to_string(),
            "((($4::jsonb)->>0)::text, (($4::jsonb)->>1)::integer)"
        );
    }

    #[test]
    fn qualified_quotes_both_parts() {
        let q = Qualified {
            schema: "Sales Data",
            name: r#"Order"Lines"#,
        };
        assert_eq!(q.to_string(), r#""Sales Data"."Order""Lines""#);
    }
}
