//! libpq's password file (`~/.pgpass`, `PGPASSFILE` or `passfile`): lines of
//! `host:port:database:user:password`, `*` matching anything in the first four fields, `\`
//! escaping `:` and `\`; the first matching line wins. As libpq's `passwordFromFile`: a file
//! that others may read is ignored with a warning, and a connection over the default socket
//! directory matches the host `localhost`.
//!
//! sqlx reads `.pgpass` too, but only when it parses a URL itself, with its own guess of the
//! host for sockets, and falls back to `~/.pgpass` when `PGPASSFILE` names another file.

use std::path::Path;

/// What a line must match: the connection as libpq names it.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    pub host: &'a str,
    pub port: &'a str,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password of the first line of the file at `path` that matches, if the file is there,
/// is a plain file and only its owner may read it.
pub fn find(path: &Path, lookup: Lookup<'_>) -> Option<String> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_file() {
        tracing::warn!(path = %path.display(), "the password file is not a plain file; ignored");
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the password file has group or world access; permissions should be u=rw (0600) \
                 or less; ignored"
            );
            return None;
        }
    }
    let text = std::fs::read_to_string(path).ok()?;
    password(&text, lookup)
}

/// The password of the first line of `text` that matches `lookup`.
fn password(text: &str, lookup: Lookup<'_>) -> Option<String> {
    let wanted = [lookup.host, lookup.port, lookup.database, lookup.user];
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let fields = split(line);
            let [host, port, database, user, password] = fields.as_slice() else {
                return None;
            };
            let matches = [host, port, database, user]
                .iter()
                .zip(wanted)
                .all(|(field, value)| *field == "*" || *field == value);
            matches.then(|| password.clone())
        })
}

/// A line's fields, split at unescaped colons and unescaped; the last field keeps any further
/// colons. A line of fewer than five fields has fewer than five.
fn split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                let c = match c {
                    '\\' => chars.next().unwrap_or('\\'),
                    c => c,
                };
                fields.last_mut().expect("never empty").push(c);
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOKUP: Lookup = Lookup {
        host: "localhost",
        port: "5432",
        database: "shop",
        user: "app",
    };

    #[test]
    fn the_first_matching_line_wins() {
        let file = "db:5432:shop:app:no\n#localhost:5432:shop:app:comment\n\
                    localhost:*:shop:app:yes\n*:*:*:*:later\n";
        assert_eq!(password(file, LOOKUP).as_deref(), Some("yes"));
    }

    #[test]
    fn escaped_colons_and_backslashes() {
        let file = r"localhost:5432:shop:app:a\:b\\c:d";
        assert_eq!(password(file, LOOKUP).as_deref(), Some(r"a:b\c:d"));
    }

    #[test]
    fn a_socket_directory_is_matched_as_written() {
        let file = "/tmp/sock:5432:*:*:pw";
        let lookup = Lookup {
            host: "/tmp/sock",
            ..LOOKUP
        };
        assert_eq!(password(file, lookup).as_deref(), Some("pw"));
        assert_eq!(password(file, LOOKUP), None);
    }

    #[test]
    fn a_short_line_matches_nothing() {
        assert_eq!(password("localhost:5432:shop:app", LOOKUP), None);
    }

    #[test]
    fn a_file_others_may_read_is_ignored() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find(&path, LOOKUP), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(find(&path, LOOKUP).as_deref(), Some("pw"));
    }
}
