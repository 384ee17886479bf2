//! The names a job's SQL expression mentions, read the way PostgreSQL's lexer reads them:
//! unquoted names fold to lower case, `"quoted"` names keep their case, and nothing inside a
//! string literal (`'…'`, `E'…'`, `$tag$…$tag$`) or a comment counts. Pure.
//!
//! Used where `backfill` must know what an expression refers to without a parse tree, which
//! PostgreSQL does not expose: the estimate asks whether a column the filter mentions has
//! statistics, and `verify --values` looks up the functions an expression calls. A name that
//! is read too eagerly (a function that shares a column's name) only makes those checks more
//! careful, never less. What surrounds a name (a qualifier, a call) is read as on MySQL, by
//! `crate::words`.

pub use crate::words::Word;
use crate::words::{scan, skip_until};

/// Every name in `expr`, in order.
pub fn words(expr: &str) -> Vec<Word> {
    scan(expr, lex)
}

/// What PostgreSQL's lexer reads from `i` on (see [`crate::words::Lex`]).
fn lex(chars: &[char], i: usize) -> (usize, Option<(String, bool)>) {
    let next = chars.get(i + 1).copied();
    match chars[i] {
        '-' if next == Some('-') => (skip_until(chars, i, |c| c == '\n'), None),
        '/' if next == Some('*') => (skip_block_comment(chars, i), None),
        '\'' => (skip_string(chars, i, false), None),
        '$' if next.is_some_and(|n| n == '$' || n.is_alphabetic() || n == '_') => {
            (skip_dollar_quote(chars, i), None)
        }
        '"' => {
            let (name, end) = quoted(chars, i);
            (end, Some((name, true)))
        }
        c if c.is_alphabetic() || c == '_' => {
            let end = skip_until(chars, i, |c| !(c.is_alphanumeric() || c == '_' || c == '$'));
            let name: String = chars[i..end].iter().collect::<String>().to_lowercase();
            // E'…', B'…', X'…', N'…': a prefixed string literal, not a name.
            if chars.get(end) == Some(&'\'') && matches!(name.as_str(), "e" | "b" | "x" | "n") {
                (skip_string(chars, end, name == "e"), None)
            } else {
                (end, Some((name, false)))
            }
        }
        c if c.is_ascii_digit() => {
            let end = skip_until(chars, i, |c| !(c.is_alphanumeric() || c == '.' || c == '_'));
            (end, None)
        }
        _ => (i + 1, None),
    }
}

/// Past a `/* … */` comment, which nests in PostgreSQL.
fn skip_block_comment(chars: &[char], from: usize) -> usize {
    let mut depth = 0;
    let mut i = from;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    chars.len()
}

/// Past a `'…'` literal starting at `from` (`''` is a quote inside; with `escapes`, as in
/// `E'…'`, so is `\'`).
fn skip_string(chars: &[char], from: usize, escapes: bool) -> usize {
    let mut i = from + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if escapes => i += 2,
            '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
            '\'' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// Past a `$tag$ … $tag$` literal starting at `from`.
fn skip_dollar_quote(chars: &[char], from: usize) -> usize {
    let close = skip_until(chars, from + 1, |c| c == '$');
    if close >= chars.len() {
        return chars.len();
    }
    let tag = &chars[from..=close];
    (close + 1..chars.len())
        .find(|&i| chars[i..].starts_with(tag))
        .map_or(chars.len(), |i| i + tag.len())
}

/// A `"quoted"` name starting at `from` (`""` is a quote inside), and where it ends.
fn quoted(chars: &[char], from: usize) -> (String, usize) {
    let mut name = String::new();
    let mut i = from + 1;
    while i < chars.len() {
        match chars[i] {
            '"' if chars.get(i + 1) == Some(&'"') => {
                name.push('"');
                i += 2;
            }
            '"' => return (name, i + 1),
            c => {
                name.push(c);
                i += 1;
            }
        }
    }
    (name, chars.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        words(expr).into_iter().map(|w| w.name).collect()
    }

    fn calls(expr: &str) -> Vec<(Option<String>, String)> {
        words(expr)
            .into_iter()
            .filter(|w| w.call)
            .map(|w| (w.qualifier, w.name))
            .collect()
    }

    #[test]
    fn unquoted_names_fold_to_lower_case() {
        assert_eq!(names("Status_Flag IS NULL"), ["status_flag", "is", "null"]);
    }

    #[test]
    fn quoted_names_keep_their_case_and_inner_quotes() {
        let w = words(r#""Total ""Cents""" > 0"#);
        assert_eq!(w[0].name, r#"Total "Cents""#);
        assert!(w[0].quoted);
    }

    #[test]
    fn strings_and_comments_hold_no_names() {
        assert_eq!(
            names("a = 'now()' -- b\n AND /* c /* d */ e */ f = E'it\\'s g' AND $x$ h $x$ = i"),
            ["a", "and", "f", "and", "i"]
        );
    }

    #[test]
    fn numbers_are_not_names() {
        assert_eq!(names("x > 1e5 AND y = 0.5"), ["x", "and", "y"]);
    }

    #[test]
    fn calls_are_names_before_a_parenthesis_with_their_schema() {
        assert_eq!(
            calls("lower(a) || pg_catalog.now () || \"My Fn\"(b) || x.y"),
            [
                (None, "lower".to_owned()),
                (Some("pg_catalog".to_owned()), "now".to_owned()),
                (None, "My Fn".to_owned()),
            ]
        );
    }

    #[test]
    fn a_qualified_column_keeps_its_table() {
        let w = words("users.status_flag IS NULL");
        assert_eq!(w[1].name, "status_flag");
        assert_eq!(w[1].qualifier.as_deref(), Some("users"));
        assert!(!w[1].call);
    }

    #[test]
    fn unterminated_literals_end_the_text_without_panicking() {
        assert_eq!(names("a = 'open"), ["a"]);
        assert_eq!(names("a = $q$ open"), ["a"]);
        assert_eq!(names("\"open"), ["open"]);
        assert_eq!(names("a /* open"), ["a"]);
        assert_eq!(names("$"), Vec::<String>::new());
    }
}
