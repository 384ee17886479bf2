//! The names a job's SQL expression mentions, with what surrounds each, whichever the
//! database. Each database's lexer (`crate::postgres::sql::words`, `crate::mysql::plan::words`)
//! says where a name, a string, a comment or a number starts and ends in its own SQL, and how
//! it folds a name's case; [`scan`] walks the expression with it and reads, once for both,
//! what surrounds each name: the qualifier before a `.`, a call's parentheses, a variable's
//! `@`. Pure.

/// One name in an expression, with what surrounds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The name as the database resolves it: folded to lower case unless quoted.
    pub name: String,
    /// Written quoted (`"…"` on PostgreSQL, `` `…` `` on MySQL), so it is not a keyword.
    pub quoted: bool,
    /// The name before a `.`, as in `schema.function(…)` or `table.column`.
    pub qualifier: Option<String>,
    /// An opening parenthesis follows: a function call (or a keyword construct such as
    /// `CAST(`, which no function is named after).
    pub call: bool,
    /// The call has no arguments: `()`.
    pub no_arguments: bool,
    /// Written right after `@` (or `@@`): on MySQL, a user or system variable.
    pub variable: bool,
}

/// What a database's lexer read from the character at `i` on: the index past it, and the name
/// it is (folded, and whether it was quoted) when it is one. It always moves on.
pub type Lex = fn(chars: &[char], i: usize) -> (usize, Option<(String, bool)>);

/// Every name in `expr`, in order, as `lex` reads the database's SQL.
pub fn scan(expr: &str, lex: Lex) -> Vec<Word> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut qualifier: Option<String> = None;
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let (end, word) = lex(&chars, i);
        i = end.max(i + 1);
        let Some((name, quoted)) = word else {
            if !chars[start].is_whitespace() {
                qualifier = None;
            }
            continue;
        };
        let after = skip_until(&chars, i, |c| !c.is_whitespace());
        let call = chars.get(after) == Some(&'(');
        let closes = skip_until(&chars, after + 1, |c| !c.is_whitespace());
        out.push(Word {
            name: name.clone(),
            quoted,
            qualifier: qualifier.take(),
            call,
            no_arguments: call && chars.get(closes) == Some(&')'),
            variable: start > 0 && chars[start - 1] == '@',
        });
        if chars.get(after) == Some(&'.') {
            qualifier = Some(name);
            i = after + 1;
        }
    }
    out
}

/// The index of the first character at or after `from` that satisfies `stop`, or the end.
pub fn skip_until(chars: &[char], from: usize, stop: impl Fn(char) -> bool) -> usize {
    (from..chars.len())
        .find(|&i| stop(chars[i]))
        .unwrap_or(chars.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lexer of single letters, each a name; anything else is not.
    fn letters(chars: &[char], i: usize) -> (usize, Option<(String, bool)>) {
        let c = chars[i];
        (i + 1, c.is_alphabetic().then(|| (c.to_string(), false)))
    }

    #[test]
    fn a_qualified_call_without_arguments_is_read_whole() {
        let w = scan("a.b ( )", letters);
        let b = Word {
            name: "b".into(),
            quoted: false,
            qualifier: Some("a".into()),
            call: true,
            no_arguments: true,
            variable: false,
        };
        assert_eq!(
            w,
            [
                Word {
                    call: false,
                    qualifier: None,
                    no_arguments: false,
                    name: "a".into(),
                    ..b.clone()
                },
                b
            ]
        );
    }

    #[test]
    fn arguments_and_variables_are_told() {
        let w = scan("c(d) + @e", letters);
        assert!(w[0].call && !w[0].no_arguments);
        assert!(!w[1].call && !w[1].variable);
        assert!(w[2].variable && !w[2].call);
    }

    #[test]
    fn anything_but_white_space_between_ends_a_qualifier() {
        let w = scan("a. + b", letters);
        assert_eq!(w[1].qualifier, None);
    }
}
