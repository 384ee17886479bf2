//! How a key column's value travels as text on MySQL and MariaDB, both ways: read out as text
//! ([`as_text`]), and turned back into the column's own type and collation by a cast template
//! with one `{}` ([`cast`]), so that a bound key compares in the index's order and the range
//! optimizer can use the index (a string compared with an integer column is compared as a
//! double, which is neither exact nor an index range).
//!
//! | column type (`COLUMN_TYPE`)                   | cast                                 |
//! |-----------------------------------------------|--------------------------------------|
//! | `tinyint` … `bigint`, `year`                  | `CAST({} AS SIGNED)`                 |
//! | the same, `unsigned`                          | `CAST(CAST({} AS CHAR) AS UNSIGNED)` |
//! | `decimal(p,s)`                                | `CAST({} AS DECIMAL(p,s))`           |
//! | `char`, `varchar`, `…text`, collation `cs_…`  | `CONVERT({} USING cs) COLLATE cs_…`  |
//! | `binary`, `varbinary`, `…blob`                | `UNHEX({})`                          |
//! | `datetime(n)`, `timestamp(n)`                 | `CAST({} AS DATETIME(n))`            |
//! | `date`                                        | `CAST({} AS DATE)`                   |
//! | `time(n)`                                     | `CAST({} AS TIME(n))`                |
//! | MariaDB's `uuid`, `inet4`, `inet6`            | `CAST({} AS UUID)` …                 |
//!
//! Every key is read out as `CAST(c AS CHAR)`, bytes as `HEX(c)`.
//!
//! Every other type is refused as a key ([`cast`] gives `None`, and the catalog says so):
//! `float` and `double` do not survive a trip through text exactly, `enum` and `set` sort by
//! their members' positions rather than their text, and `bit`, `json` and the spatial types
//! have no order a text key could reproduce.
//!
//! A `timestamp` key is read out and cast back in the session's `time_zone`: exact in a zone
//! without daylight saving time (`+00:00`), but in one with it, the hour that repeats when the
//! clocks go back reads as one hour for two different instants.

use crate::catalog::Column;

/// The column's type, taken apart: its name, what its parentheses hold, whether unsigned.
pub(super) struct Type<'a> {
    pub(super) name: String,
    args: Option<&'a str>,
    pub(super) unsigned: bool,
}

impl<'a> Type<'a> {
    pub(super) fn parse(type_sql: &'a str) -> Type<'a> {
        let end = type_sql
            .find(|c: char| c == '(' || c.is_whitespace())
            .unwrap_or(type_sql.len());
        let args = type_sql[end..]
            .strip_prefix('(')
            .and_then(|rest| rest.split_once(')'))
            .map(|(inside, _)| inside.trim());
        Type {
            name: type_sql[..end].to_ascii_lowercase(),
            args,
            unsigned: type_sql.to_ascii_lowercase().contains(" unsigned"),
        }
    }

    /// What the parentheses hold, when it is digits and commas only: it is written into SQL.
    pub(super) fn numeric_args(&self) -> Option<&'a str> {
        self.args
            .filter(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_digit() || c == ','))
    }

    /// `NAME` or `NAME(args)`, for a temporal type's fractional seconds.
    pub(super) fn with_precision(&self, name: &str) -> String {
        match self.numeric_args() {
            Some(n) => format!("{name}({n})"),
            None => name.to_owned(),
        }
    }

    pub(super) fn is_binary(&self) -> bool {
        matches!(
            self.name.as_str(),
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
        )
    }
}

/// The column's cast template, with one `{}` for the text of a key: see the module's table.
/// `None` when backfill cannot reproduce the column's order from text.
pub fn cast(column: &Column) -> Option<String> {
    let t = Type::parse(&column.type_sql);
    let template = match t.name.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            // MySQL (8.0.22+, 9.7 too) types a `?` inside `CAST(? AS UNSIGNED)` as a signed
            // BIGINT and clamps a text value above 2^63 - 1 on the way in; cast to text first,
            // it stays text. The range optimizer folds both casts into one constant.
            if t.unsigned {
                "CAST(CAST({} AS CHAR) AS UNSIGNED)".to_owned()
            } else {
                "CAST({} AS SIGNED)".to_owned()
            }
        }
        "decimal" | "numeric" => format!("CAST({{}} AS {})", t.with_precision("DECIMAL")),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
            let collation = column.collation.as_deref().filter(|c| is_name(c))?;
            let (charset, _) = collation.split_once('_')?;
            format!("CONVERT({{}} USING {charset}) COLLATE {collation}")
        }
        _ if t.is_binary() => "UNHEX({})".to_owned(),
        "datetime" | "timestamp" => format!("CAST({{}} AS {})", t.with_precision("DATETIME")),
        "date" => "CAST({} AS DATE)".to_owned(),
        "time" => format!("CAST({{}} AS {})", t.with_precision("TIME")),
        "uuid" | "inet4" | "inet6" => format!("CAST({{}} AS {})", t.name.to_ascii_uppercase()),
        _ => return None,
    };
    Some(template)
}

/// The column `expr` (already quoted) read out as text: hexadecimal for bytes, which need not
/// be valid text, and `CAST(… AS CHAR)` for everything else.
pub fn as_text(column: &Column, expr: &str) -> String {
    if Type::parse(&column.type_sql).is_binary() {
        format!("HEX({expr})")
    } else {
        format!("CAST({expr} AS CHAR)")
    }
}

/// A collation's name as the catalog gives it (`utf8mb4_0900_ai_ci`): letters, digits and
/// underscores only, since it is written into SQL unquoted.
pub(super) fn is_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(type_sql: &str, collation: Option<&str>) -> Column {
        Column {
            name: "k".into(),
            type_sql: type_sql.into(),
            collation: collation.map(Into::into),
        }
    }

    fn cast_of(type_sql: &str) -> Option<String> {
        cast(&column(type_sql, None))
    }

    #[test]
    fn integers_cast_by_their_sign() {
        assert_eq!(cast_of("bigint").as_deref(), Some("CAST({} AS SIGNED)"));
        assert_eq!(cast_of("int(11)").as_deref(), Some("CAST({} AS SIGNED)"));
        assert_eq!(
            cast_of("bigint unsigned").as_deref(),
            Some("CAST(CAST({} AS CHAR) AS UNSIGNED)")
        );
        assert_eq!(
            cast_of("bigint(20) unsigned zerofill").as_deref(),
            Some("CAST(CAST({} AS CHAR) AS UNSIGNED)")
        );
        assert_eq!(cast_of("year").as_deref(), Some("CAST({} AS SIGNED)"));
    }

    #[test]
    fn decimals_keep_precision_and_scale() {
        assert_eq!(
            cast_of("decimal(10,2)").as_deref(),
            Some("CAST({} AS DECIMAL(10,2))")
        );
        assert_eq!(
            cast_of("decimal(10,2) unsigned").as_deref(),
            Some("CAST({} AS DECIMAL(10,2))")
        );
    }

    #[test]
    fn text_converts_to_the_columns_charset_and_collation() {
        let c = column("varchar(64)", Some("utf8mb4_0900_ai_ci"));
        assert_eq!(
            cast(&c).as_deref(),
            Some("CONVERT({} USING utf8mb4) COLLATE utf8mb4_0900_ai_ci")
        );
        let c = column("char(36)", Some("latin1_swedish_ci"));
        assert_eq!(
            cast(&c).as_deref(),
            Some("CONVERT({} USING latin1) COLLATE latin1_swedish_ci")
        );
        assert_eq!(as_text(&c, "`k`"), "CAST(`k` AS CHAR)");
    }

    #[test]
    fn text_without_a_plain_collation_is_refused() {
        assert_eq!(cast(&column("varchar(64)", None)), None);
        assert_eq!(cast(&column("varchar(64)", Some("x) OR (1"))), None);
    }

    #[test]
    fn bytes_travel_as_hexadecimal() {
        let c = column("binary(16)", None);
        assert_eq!(cast(&c).as_deref(), Some("UNHEX({})"));
        assert_eq!(as_text(&c, "`k`"), "HEX(`k`)");
        assert_eq!(cast_of("varbinary(255)").as_deref(), Some("UNHEX({})"));
    }

    #[test]
    fn temporal_types_keep_their_fractional_seconds() {
        assert_eq!(
            cast_of("datetime(6)").as_deref(),
            Some("CAST({} AS DATETIME(6))")
        );
        assert_eq!(cast_of("datetime").as_deref(), Some("CAST({} AS DATETIME)"));
        assert_eq!(
            cast_of("timestamp(3)").as_deref(),
            Some("CAST({} AS DATETIME(3))")
        );
        assert_eq!(cast_of("date").as_deref(), Some("CAST({} AS DATE)"));
        assert_eq!(cast_of("time(2)").as_deref(), Some("CAST({} AS TIME(2))"));
    }

    #[test]
    fn mariadb_types_cast_to_themselves() {
        assert_eq!(cast_of("uuid").as_deref(), Some("CAST({} AS UUID)"));
        assert_eq!(cast_of("inet6").as_deref(), Some("CAST({} AS INET6)"));
    }

    #[test]
    fn types_without_a_text_order_are_refused() {
        for t in [
            "float",
            "double",
            "enum('a','b')",
            "set('a')",
            "bit(8)",
            "json",
            "point",
        ] {
            assert_eq!(cast_of(t), None, "{t}");
        }
    }
}
