//! The `table = "…"` value: a table name written as in SQL, read with PostgreSQL's rules, and
//! as written for MySQL and MariaDB, which keep the case of names.
//!
//! Owns [`TableName`]: parsing (unquoted names fold to lower case, quoted names — in double
//! quotes, or MySQL's backticks — keep case and unescape a doubled quote) and the quoted SQL
//! form for display. It does not look the table up; whether
//! it exists, and which schema an unqualified name resolves to, is the catalog's business.

use std::fmt;

use super::error::show;
use crate::postgres::sql::Ident;

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`); longer ones are truncated.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The forms an error message offers when a table name cannot be read.
const VALID_FORMS: &str =
    r#"write it as in SQL: public.users, users, or "Sales Data"."Order""Lines""#;

/// A table, as PostgreSQL stores its name: after case folding and unquoting.
///
/// `schema` is `None` when the job file names the table alone and leaves it to `search_path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    /// The schema, if the name was qualified.
    pub schema: Option<String>,
    /// The table's own name.
    pub name: String,
    /// The parts as written, unquoted but not folded, when folding changed one of them: what
    /// MySQL and MariaDB, which keep the case of names, look up ([`TableName::exact`]).
    pub case_kept: Option<(Option<String>, String)>,
}

impl TableName {
    /// Reads `text` the way `'…'::regclass` does: one or two dot-separated parts, each either
    /// unquoted (ASCII letters folded to lower case) or double-quoted (case kept, `""` is a
    /// quote). Whitespace around the name and around the dot is ignored.
    ///
    /// The error quotes `text`, says what is wrong and shows valid forms.
    pub fn parse(text: &str) -> Result<TableName, String> {
        let why_not =
            |why: String| format!("{} is not a table name: {why}; {VALID_FORMS}", show(text));
        let mut parts = parts(text).map_err(why_not)?;
        let count = parts.len();
        let name = parts.pop();
        match (parts.pop(), name, parts.is_empty()) {
            (schema, Some(name), true) => {
                let folded = schema.as_ref().is_some_and(|s| s.0 != s.1) || name.0 != name.1;
                Ok(TableName {
                    case_kept: folded
                        .then(|| (schema.as_ref().map(|s| s.1.clone()), name.1.clone())),
                    schema: schema.map(|s| s.0),
                    name: name.0,
                })
            }
            _ => Err(why_not(format!(
                "it has {count} dot-separated parts, and at most two (schema.table) are allowed"
            ))),
        }
    }

    /// The schema (or MySQL database) and the name as written, without folding: what a
    /// database that keeps the case of names looks up.
    pub fn exact(&self) -> (Option<&str>, &str) {
        match &self.case_kept {
            Some((schema, name)) => (schema.as_deref(), name),
            None => (self.schema.as_deref(), &self.name),
        }
    }
}

impl fmt::Display for TableName {
    /// The SQL form with every part quoted: `"public"."users"`, or `"users"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{}.", Ident(schema))?;
        }
        write!(f, "{}", Ident(&self.name))
    }
}

/// Splits `text` into its unquoted parts, each folded and as written.
fn parts(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut parts = Vec::new();
    let mut rest = skip_space(text);
    if rest.is_empty() {
        return Err("it is empty".to_owned());
    }
    loop {
        let (part, after) = identifier(rest)?;
        parts.push(part);
        rest = skip_space(after);
        match rest.chars().next() {
            None => return Ok(parts),
            Some('.') => rest = skip_space(&rest[1..]),
            Some(c) => {
                let at = text[..text.len() - rest.len()].chars().count() + 1;
                return Err(format!(
                    "unexpected {} at character {at}",
                    show(&c.to_string())
                ));
            }
        }
    }
}

/// Reads one identifier from the start of `text`; returns it and the text after it.
fn identifier(text: &str) -> Result<((String, String), &str), String> {
    let (part, rest) = match text.chars().next() {
        Some(q @ ('"' | '`')) => {
            let (part, rest) = quoted(&text[1..], q)?;
            ((part.clone(), part), rest)
        }
        Some(c) if is_start(c) => unquoted(text),
        Some(c) => return Err(format!("a name cannot start with {}", show(&c.to_string()))),
        None => return Err("a name is missing after the dot".to_owned()),
    };
    if part.1.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "{} is {} bytes long and PostgreSQL would silently truncate it to {MAX_IDENTIFIER_BYTES}",
            show(&part.1),
            part.1.len()
        ));
    }
    Ok((part, rest))
}

/// An unquoted identifier, folded (ASCII letters to lower case, other characters kept) and as
/// written.
fn unquoted(text: &str) -> ((String, String), &str) {
    let end = text
        .char_indices()
        .find(|&(_, c)| !is_continue(c))
        .map_or(text.len(), |(at, _)| at);
    let written = &text[..end];
    (
        (written.to_ascii_lowercase(), written.to_owned()),
        &text[end..],
    )
}

/// The inside of an identifier quoted with `quote` (`"` or MySQL's `` ` ``), starting after
/// the opening quote; a doubled quote stands for one.
fn quoted(text: &str, quote: char) -> Result<(String, &str), String> {
    let mut name = String::new();
    let mut rest = text;
    let which = if quote == '"' {
        "double quote"
    } else {
        "backtick"
    };
    loop {
        let Some(close) = rest.find(quote) else {
            return Err(format!(
                "a quoted name is not closed; end it with a {which}"
            ));
        };
        name.push_str(&rest[..close]);
        rest = &rest[close + 1..];
        match rest.strip_prefix(quote) {
            Some(after) => {
                name.push(quote);
                rest = after;
            }
            None => break,
        }
    }
    if name.is_empty() {
        return Err(format!("a quoted name is empty ({quote}{quote})"));
    }
    if name.contains('\0') {
        return Err("a quoted name contains a NUL byte".to_owned());
    }
    Ok((name, rest))
}

/// Characters PostgreSQL's scanner accepts as the first of an unquoted identifier.
fn is_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

/// Characters PostgreSQL's scanner accepts after the first of an unquoted identifier.
fn is_continue(c: char) -> bool {
    is_start(c) || c.is_ascii_digit() || c == '$'
}

/// Skips the whitespace PostgreSQL allows around names and dots.
fn skip_space(text: &str) -> &str {
    text.trim_start_matches(|c: char| c.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: Option<&str>, name: &str) -> TableName {
        TableName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
            case_kept: None,
        }
    }

    #[test]
    fn qualified_name() {
        assert_eq!(
            TableName::parse("public.users"),
            Ok(table(Some("public"), "users"))
        );
    }

    #[test]
    fn unquoted_names_fold_to_lower_case_and_keep_their_case_for_mysql() {
        let parsed = TableName::parse("Shop.Users").unwrap();
        assert_eq!(
            (parsed.schema.as_deref(), &*parsed.name),
            (Some("shop"), "users")
        );
        assert_eq!(parsed.exact(), (Some("Shop"), "Users"));
    }

    #[test]
    fn backticks_quote_as_mysql_writes_names() {
        let parsed = TableName::parse("shop.`Order Items`");
        assert_eq!(parsed, Ok(table(Some("shop"), "Order Items")));
        let parsed = TableName::parse("`we``ird`").unwrap();
        assert_eq!(parsed.exact(), (None, "we`ird"));
        let err = TableName::parse("`open").unwrap_err();
        assert!(err.contains("end it with a backtick"), "{err}");
    }

    #[test]
    fn quoted_names_keep_case_and_unescape_quotes() {
        let parsed = TableName::parse(r#""Sales Data"."Order""Lines""#);
        assert_eq!(parsed, Ok(table(Some("Sales Data"), "Order\"Lines")));
    }

    #[test]
    fn quoted_name_may_start_and_end_with_an_escaped_quote() {
        assert_eq!(
            TableName::parse(r#""Odd ""Name""""#),
            Ok(table(None, "Odd \"Name\""))
        );
    }

    #[test]
    fn unquoted_unicode_is_kept_and_only_ascii_folds() {
        let parsed = TableName::parse("Ünïcode_Tâble$2").unwrap();
        assert_eq!(parsed.name, "Ünïcode_tâble$2");
        assert_eq!(parsed.exact(), (None, "Ünïcode_Tâble$2"));
    }

    #[test]
    fn whitespace_around_name_and_dot_is_ignored() {
        assert_eq!(
            TableName::parse("  public . users \n"),
            Ok(table(Some("public"), "users"))
        );
    }

    #[test]
    fn sql_after_the_name_is_refused_with_valid_forms() {
        let err = TableName::parse("users; DROP TABLE users").unwrap_err();
        assert_eq!(
            err,
            "`users; DROP TABLE users` is not a table name: unexpected `;` at character 6; write it \
             as in SQL: public.users, users, or \"Sales Data\".\"Order\"\"Lines\""
        );
    }

    #[test]
    fn three_parts_are_refused() {
        let err = TableName::parse("db.public.users").unwrap_err();
        assert!(err.contains("it has 3 dot-separated parts"), "{err}");
    }

    #[test]
    fn empty_part_between_dots_is_refused() {
        let err = TableName::parse("a..b").unwrap_err();
        assert!(err.contains("a name cannot start with `.`"), "{err}");
    }

    #[test]
    fn trailing_dot_is_refused() {
        let err = TableName::parse("public.").unwrap_err();
        assert!(err.contains("a name is missing after the dot"), "{err}");
    }

    #[test]
    fn unterminated_quote_is_refused() {
        let err = TableName::parse(r#""Sales Data.orders"#).unwrap_err();
        assert!(err.contains("quoted name is not closed"), "{err}");
    }

    #[test]
    fn empty_quoted_name_is_refused() {
        let err = TableName::parse(r#""".users"#).unwrap_err();
        assert!(err.contains("quoted name is empty"), "{err}");
    }

    #[test]
    fn nul_in_quoted_name_is_refused() {
        let err = TableName::parse("\"a\0b\"").unwrap_err();
        assert!(err.contains("NUL byte"), "{err}");
    }

    #[test]
    fn blank_name_is_refused() {
        let err = TableName::parse("   ").unwrap_err();
        assert!(err.contains("it is empty"), "{err}");
    }

    #[test]
    fn leading_digit_is_refused() {
        let err = TableName::parse("1users").unwrap_err();
        assert!(err.contains("cannot start with `1`"), "{err}");
    }

    #[test]
    fn names_longer_than_63_bytes_are_refused() {
        let err = TableName::parse(&"é".repeat(32)).unwrap_err();
        assert!(
            err.contains("64 bytes long") && err.contains("truncate"),
            "{err}"
        );
    }

    #[test]
    fn a_63_byte_name_is_accepted() {
        assert!(TableName::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn display_quotes_each_part() {
        assert_eq!(
            table(Some("public"), "users").to_string(),
            r#""public"."users""#
        );
    }

    #[test]
    fn display_doubles_quotes_inside_names() {
        assert_eq!(table(None, "Order\"Lines").to_string(), r#""Order""Lines""#);
    }

    #[test]
    fn display_parses_back_to_the_same_name() {
        let name = table(Some("Sales Data"), "Order\"Lines");
        assert_eq!(TableName::parse(&name.to_string()), Ok(name));
    }
}
