//! libpq's `keyword=value` connection strings (`host=/var/run/postgresql dbname=shop`), read
//! the way libpq's `conninfo_parse` reads them: spaces around `=` are allowed, a value is
//! either bare (up to the next space) or in single quotes, and a backslash takes the next
//! character as it is in both.

use super::{Conninfo, ConninfoError, Origin, known, redact};

/// Reads `keyword=value` pairs into libpq's keywords.
pub fn parse(text: &str) -> Result<Conninfo, ConninfoError> {
    let bad = |reason: String| ConninfoError::BadPairs {
        text: redact(text),
        reason,
    };
    let mut info = Conninfo::default();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after_key = rest[key_end..].trim_start();
        let Some(value) = after_key.strip_prefix('=') else {
            return Err(bad(format!("missing \"=\" after {key:?}")));
        };
        let value = value.trim_start();
        let (len, closed) = scan(value);
        if !closed {
            return Err(bad(format!(
                "the value of {key:?} has a quote that is never closed"
            )));
        }
        let decoded = unescape(
            value[..len]
                .strip_prefix('\'')
                .map_or(&value[..len], |body| &body[..body.len() - 1]),
        );
        info.set(known(key, &Origin::Pairs)?, decoded);
        rest = value[len..].trim_start();
    }
    Ok(info)
}

/// The length of the value that starts `text`: up to the next unescaped space, or to the
/// closing quote of a quoted value.
pub fn value_len(text: &str) -> usize {
    scan(text).0
}

/// The length of the value that starts `text`, and false for a quote never closed.
fn scan(text: &str) -> (usize, bool) {
    let quoted = text.starts_with('\'');
    let mut chars = text.char_indices().skip(usize::from(quoted));
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '\'' if quoted => return (i + 1, true),
            c if c.is_whitespace() && !quoted => return (i, true),
            _ => {}
        }
    }
    (text.len(), !quoted)
}

/// A value's text, quotes removed, to the value meant: a backslash takes the next character.
fn unescape(body: &str) -> String {
    let mut value = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        value.push(match c {
            '\\' => chars.next().unwrap_or('\\'),
            c => c,
        });
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(text: &str, keyword: &str) -> Option<String> {
        parse(text).unwrap().get(keyword).map(str::to_owned)
    }

    #[test]
    fn a_socket_directory_and_a_database() {
        let text = "host=/var/run/postgresql dbname=shop";
        assert_eq!(get(text, "host").as_deref(), Some("/var/run/postgresql"));
        assert_eq!(get(text, "dbname").as_deref(), Some("shop"));
    }

    #[test]
    fn spaces_around_the_equals_sign() {
        assert_eq!(get("  port = 5499  ", "port").as_deref(), Some("5499"));
    }

    #[test]
    fn a_quoted_value_keeps_its_spaces_and_escapes() {
        let text = r"options='-c search_path=a\ b' password='it\'s \\ here'";
        assert_eq!(get(text, "options").as_deref(), Some(r"-c search_path=a b"));
        assert_eq!(get(text, "password").as_deref(), Some(r"it's \ here"));
    }

    #[test]
    fn an_empty_quoted_value() {
        assert_eq!(get("password='' user=u", "password").as_deref(), Some(""));
    }

    #[test]
    fn the_last_of_a_repeated_keyword_wins() {
        assert_eq!(get("user=a user=b", "user").as_deref(), Some("b"));
    }

    #[test]
    fn a_word_without_equals_is_refused() {
        let err = parse("host=db localhost").unwrap_err().to_string();
        assert!(err.contains("missing \"=\" after \"localhost\""), "{err}");
    }

    #[test]
    fn an_unclosed_quote_is_refused_without_the_password() {
        let err = parse("user=u password='s3cret").unwrap_err().to_string();
        assert!(err.contains("never closed"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn an_unknown_keyword_is_refused() {
        let err = parse("hostname=db").unwrap_err().to_string();
        assert!(
            err.contains("unknown connection option \"hostname\""),
            "{err}"
        );
    }
}
