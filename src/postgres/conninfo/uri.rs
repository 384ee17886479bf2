//! libpq's connection URIs: `postgresql://[user[:password]@][host][:port][,…][/dbname]
//! [?keyword=value&…]`, read the way libpq's `conninfo_uri_parse_options` reads them. Unlike a
//! web URL, the host may be empty (`postgresql://user@/db`, the default socket), a query
//! parameter may name any connection keyword (`?host=/var/run/postgresql`, `?user=app`) and
//! overrides the part before it, and a `#` or `?` in the password is just a character.

use super::{Conninfo, ConninfoError, Origin, known, redact};

const PREFIXES: [&str; 2] = ["postgresql://", "postgres://"];

/// True when `text` starts with one of libpq's two URI prefixes (in any case: libpq compares
/// them exactly, backfill has always taken `PostgreS://`).
pub fn is_uri(text: &str) -> bool {
    prefix_len(text).is_some()
}

fn prefix_len(text: &str) -> Option<usize> {
    PREFIXES
        .iter()
        .find(|p| {
            text.get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
        })
        .map(|p| p.len())
}

/// Reads a URI into libpq's keywords.
pub fn parse(text: &str) -> Result<Conninfo, ConninfoError> {
    let bad = |reason: String| ConninfoError::BadUrl {
        url: redact(text),
        reason,
    };
    let mut rest = &text[prefix_len(text).expect("parse is called on a URI")..];
    let mut info = Conninfo::default();

    // The credentials end at the first `@` before any `/`, as libpq looks for them: a `?` or
    // `#` in the password is part of it.
    if let Some(at) = rest
        .find(['@', '/'])
        .filter(|&i| rest.as_bytes()[i] == b'@')
    {
        let userinfo = &rest[..at];
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            info.set("user", decode(user).map_err(&bad)?);
        }
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            info.set("password", decode(password).map_err(&bad)?);
        }
        rest = &rest[at + 1..];
    }

    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hosts, ports) = netlocs(&rest[..end]).map_err(bad)?;
    if !hosts.is_empty() {
        info.set("host", decode(&hosts).map_err(&bad)?);
    }
    if !ports.is_empty() {
        info.set("port", decode(&ports).map_err(&bad)?);
    }
    rest = &rest[end..];

    if let Some(path) = rest.strip_prefix('/') {
        let end = path.find('?').unwrap_or(path.len());
        // An empty database name is no name: PGDATABASE still counts, as in libpq.
        if end > 0 {
            info.set("dbname", decode(&path[..end]).map_err(&bad)?);
        }
        rest = &path[end..];
    }
    if let Some(query) = rest.strip_prefix('?') {
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = param.split_once('=').ok_or_else(|| {
                bad(format!(
                    "the query parameter {param:?} has no \"=\" between keyword and value"
                ))
            })?;
            if value.contains('=') {
                return Err(bad(format!(
                    "the query parameter {:?} has a second \"=\"; write it as %3D",
                    redact(param)
                )));
            }
            let key = decode(key).map_err(&bad)?;
            let value = decode(value).map_err(&bad)?;
            // JDBC's `ssl=true`, which libpq takes as `sslmode=require`.
            if key == "ssl" && value == "true" {
                info.set("sslmode", "require".to_owned());
                continue;
            }
            info.set(known(&key, &Origin::Url)?, value);
        }
    }
    Ok(info)
}

/// The comma-separated `host[:port]` list, as the `host` and `port` lists libpq keeps
/// (`[::1]:5432` is an IPv6 address). Still percent-encoded.
fn netlocs(text: &str) -> Result<(String, String), String> {
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for netloc in text.split(',') {
        let (host, port) = match netloc.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| {
                    format!("the IPv6 address in {netloc:?} has no closing \"]\"")
                })?;
                if host.is_empty() {
                    return Err("an IPv6 host address may not be empty".into());
                }
                match after {
                    "" => (host, ""),
                    _ => (
                        host,
                        after.strip_prefix(':').ok_or_else(|| {
                            format!("unexpected {after:?} after the IPv6 address [{host}]")
                        })?,
                    ),
                }
            }
            None => netloc.split_once(':').unwrap_or((netloc, "")),
        };
        hosts.push(host);
        ports.push(port);
    }
    let join = |parts: Vec<&str>| match parts.iter().all(|p| p.is_empty()) {
        true => String::new(),
        false => parts.join(","),
    };
    Ok((join(hosts), join(ports)))
}

/// Decodes `%XX` escapes as libpq does: `+` stays a plus, and a bad or `%00` escape is an
/// error rather than passed through.
fn decode(text: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b != b'%' {
            bytes.push(b);
            rest = tail;
            continue;
        }
        let hex = tail
            .get(..2)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
            .ok_or_else(|| "a % that is not followed by two hex digits".to_owned())?;
        if hex == 0 {
            return Err("a forbidden %00".into());
        }
        bytes.push(hex);
        rest = &tail[2..];
    }
    String::from_utf8(bytes).map_err(|_| "a percent-encoded part that is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str, keyword: &str) -> Option<String> {
        parse(url).unwrap().get(keyword).map(str::to_owned)
    }

    #[test]
    fn query_parameters_name_the_user_and_password() {
        let url = "postgresql://127.0.0.1:5499/shop?user=postgres&password=s%3Fcret";
        assert_eq!(get(url, "user").as_deref(), Some("postgres"));
        assert_eq!(get(url, "password").as_deref(), Some("s?cret"));
        assert_eq!(get(url, "host").as_deref(), Some("127.0.0.1"));
        assert_eq!(get(url, "port").as_deref(), Some("5499"));
        assert_eq!(get(url, "dbname").as_deref(), Some("shop"));
    }

    #[test]
    fn an_empty_host_with_a_socket_in_the_query() {
        let url = "postgresql://postgres@/shop?host=/tmp";
        assert_eq!(get(url, "host").as_deref(), Some("/tmp"));
        assert_eq!(get(url, "user").as_deref(), Some("postgres"));
        assert_eq!(get(url, "dbname").as_deref(), Some("shop"));
    }

    #[test]
    fn a_percent_encoded_socket_directory_as_host() {
        let url = "postgresql://%2Fvar%2Frun%2Fpostgresql/shop";
        assert_eq!(get(url, "host").as_deref(), Some("/var/run/postgresql"));
    }

    #[test]
    fn a_query_parameter_overrides_the_part_before_it() {
        assert_eq!(
            get("postgres://a@h/db?user=b", "user").as_deref(),
            Some("b")
        );
    }

    #[test]
    fn a_hash_and_a_question_mark_are_part_of_the_password() {
        let url = "postgres://app:12#3?4@db.internal/prod";
        assert_eq!(get(url, "password").as_deref(), Some("12#3?4"));
        assert_eq!(get(url, "host").as_deref(), Some("db.internal"));
    }

    #[test]
    fn a_bare_scheme_gives_nothing() {
        assert_eq!(parse("postgresql://").unwrap(), Conninfo::default());
        assert_eq!(parse("postgresql:///").unwrap(), Conninfo::default());
    }

    #[test]
    fn hosts_and_ports_are_kept_as_libpq_lists() {
        let url = "postgresql://h1:5432,[::1]:5433,h3/db";
        assert_eq!(get(url, "host").as_deref(), Some("h1,::1,h3"));
        assert_eq!(get(url, "port").as_deref(), Some("5432,5433,"));
    }

    #[test]
    fn jdbc_ssl_true_is_sslmode_require() {
        assert_eq!(
            get("postgresql://h/db?ssl=true", "sslmode").as_deref(),
            Some("require")
        );
    }

    #[test]
    fn an_unknown_parameter_is_refused() {
        let err = parse("postgresql://h/db?sslmod=require").unwrap_err();
        assert!(err.to_string().contains("\"sslmod\""), "{err}");
    }

    #[test]
    fn a_bad_escape_is_refused_without_the_password() {
        let err = parse("postgresql://u:pw@h/d%zzb").unwrap_err().to_string();
        assert!(err.contains("two hex digits"), "{err}");
        assert!(!err.contains("pw"), "{err}");
    }
}
