//! The names a job's `where` mentions, read the way MySQL's lexer reads them: `` `quoted` ``
//! names keep their text, unquoted ones are lowered (MySQL's column names ignore case), and
//! nothing inside a string (`'…'`, `"…"`, with backslash escapes and doubled quotes) or a
//! comment (`-- `, `#`, `/* */`) counts. Pure.
//!
//! The PostgreSQL reader (`crate::postgres::sql::words`) does not fit: it takes `"…"` for a
//! name, where MySQL has a string, and knows neither backticks nor `#` comments. Like it, this
//! one reads too eagerly rather than too little: keywords and function names are names too, and
//! the estimate that uses them only looks up the ones that are columns.

/// Every name in `expr`, in order.
pub fn words(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' | '"' => i = skip_string(&chars, i),
            '`' => {
                let (name, end) = backquoted(&chars, i);
                out.push(name);
                i = end;
            }
            '#' => i = skip_until(&chars, i, |c| c == '\n'),
            '-' if next == Some('-') && chars.get(i + 2).is_none_or(|c| c.is_whitespace()) => {
                i = skip_until(&chars, i, |c| c == '\n');
            }
            '/' if next == Some('*') => {
                i = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                    .map_or(chars.len(), |j| j + 2);
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let end = skip_until(&chars, i, |c| {
                    !(c.is_alphanumeric() || c == '_' || c == '$')
                });
                // x'…', b'…', n'…': a prefixed string literal, not a name.
                if chars.get(end) != Some(&'\'') {
                    out.push(chars[i..end].iter().collect::<String>().to_lowercase());
                }
                i = end;
            }
            c if c.is_ascii_digit() => {
                i = skip_until(&chars, i, |c| !(c.is_alphanumeric() || c == '.'));
            }
            _ => i += 1,
        }
    }
    out
}

/// The index of the first character from `start` that satisfies `stop`, or the end.
fn skip_until(chars: &[char], start: usize, stop: impl Fn(char) -> bool) -> usize {
    (start..chars.len())
        .find(|&j| stop(chars[j]))
        .unwrap_or(chars.len())
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
    fn a_double_dash_without_space_is_two_minuses() {
        assert_eq!(words("a--b"), ["a", "b"]);
    }
}
