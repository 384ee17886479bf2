//! The names a job's SQL mentions, read the way MySQL's lexer reads them: `` `quoted` ``
//! names keep their text, unquoted ones are lowered (MySQL's column and function names ignore
//! case), and nothing inside a string (`'…'`, `"…"`, with backslash escapes and doubled quotes)
//! or a comment (`-- `, `#`, `/* */`) counts. Pure.
//!
//! The PostgreSQL reader (`crate::postgres::sql::words`) does not fit: it takes `"…"` for a
//! name, where MySQL has a string, and knows neither backticks nor `#` comments. Like it, this
//! one reads too eagerly rather than too little: keywords and function names are names too.
//! The estimate looks up only the names that are columns ([`words`]); `verify --values` looks
//! at the functions an expression calls ([`tokens`]). What surrounds a name (a qualifier, a
//! call, a variable's `@`) is read as on PostgreSQL, by `crate::words`.

pub use crate::words::Word;
use crate::words::{scan, skip_until};

/// Every name in `expr`, in order.
pub fn words(expr: &str) -> Vec<String> {
    tokens(expr).into_iter().map(|w| w.name).collect()
}

/// Every name in `expr`, in order, with what surrounds it.
pub fn tokens(expr: &str) -> Vec<Word> {
    scan(expr, lex)
}

/// What MySQL's lexer reads from `i` on (see [`crate::words::Lex`]).
fn lex(chars: &[char], i: usize) -> (usize, Option<(String, bool)>) {
    let next = chars.get(i + 1).copied();
    match chars[i] {
        '\'' | '"' => (skip_string(chars, i), None),
        '`' => {
            let (name, end) = backquoted(chars, i);
            (end, Some((name, true)))
        }
        '#' => (skip_until(chars, i, |c| c == '\n'), None),
        '-' if next == Some('-') && chars.get(i + 2).is_none_or(|c| c.is_whitespace()) => {
            (skip_until(chars, i, |c| c == '\n'), None)
        }
        '/' if next == Some('*') => {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .map_or(chars.len(), |j| j + 2);
            (end, None)
        }
        c if c.is_alphabetic() || c == '_' || c == '$' => {
            let end = skip_until(chars, i, |c| !(c.is_alphanumeric() || c == '_' || c == '$'));
            let name = chars[i..end].iter().collect::<String>().to_lowercase();
            // x'…', b'…', n'…': a prefixed string literal, not a name.
            (
                end,
                (chars.get(end) != Some(&'\'')).then_some((name, false)),
            )
        }
        c if c.is_ascii_digit() => {
            let end = skip_until(chars, i, |c| !(c.is_alphanumeric() || c == '.'));
            (end, None)
        }
        _ => (i + 1, None),
    }
}

/// Past the string starting at `start` (its quote), with `\` escapes and doubled quotes.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut j = start + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 2,
            c if c == quote && chars.get(j + 1) == Some(&quote) => j += 2,
            c if c == quote => return j + 1,
            _ => j += 1,
        }
    }
    chars.len()
}

/// The name in backticks starting at `start`, with a doubled backtick for one, and the index
/// past it.
fn backquoted(chars: &[char], start: usize) -> (String, usize) {
    let mut name = String::new();
    let mut j = start + 1;
    while j < chars.len() {
        if chars[j] == '`' {
            if chars.get(j + 1) == Some(&'`') {
                name.push('`');
                j += 2;
                continue;
            }
            return (name, j + 1);
        }
        name.push(chars[j]);
        j += 1;
    }
    (name, chars.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowered_unless_backquoted() {
        assert_eq!(
            words("Status IS NULL AND `Odd``Name` > 3"),
            ["status", "is", "null", "and", "Odd`Name"]
        );
    }

    #[test]
    fn strings_and_comments_hold_no_names() {
        assert_eq!(words(r#"a = 'b''c\'d' OR e = "f" -- g"#), ["a", "or", "e"]);
        assert_eq!(words("a # b\n+ /* c */ d"), ["a", "d"]);
        assert_eq!(words("a = x'ff' AND b = 1.5e3"), ["a", "and", "b"]);
    }

    #[test]
    fn calls_qualifiers_and_variables_are_told() {
        let t = tokens("db.`F`(x) + NOW( ) + rand (1) + @v + @@session.time_zone + CURRENT_DATE");
        let seen: Vec<_> = t
            .iter()
            .map(|w| {
                let q = w.qualifier.as_deref().unwrap_or("-");
                (q, w.name.as_str(), w.call, w.no_arguments, w.variable)
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("-", "db", false, false, false),
                ("db", "F", true, false, false),
                ("-", "x", false, false, false),
                ("-", "now", true, true, false),
                ("-", "rand", true, false, false),
                ("-", "v", false, false, true),
                ("-", "session", false, false, true),
                ("session", "time_zone", false, false, false),
                ("-", "current_date", false, false, false),
            ]
        );
        assert!(t[1].quoted && !t[0].quoted);
    }

    #[test]
    fn a_double_dash_without_space_is_two_minuses() {
        assert_eq!(words("a--b"), ["a", "b"]);
    }
}
