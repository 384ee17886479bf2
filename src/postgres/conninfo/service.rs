//! libpq's connection service file (`PGSERVICE=shop`, `service=shop`): a `[shop]` section of
//! `keyword=value` lines in `PGSERVICEFILE` or `~/.pg_service.conf`, else in
//! `PGSYSCONFDIR/pg_service.conf`. Its values fill only what the connection string left unset,
//! and go before the environment variables, as in libpq's `parseServiceInfo`.

use std::path::{Path, PathBuf};

use super::{Conninfo, ConninfoError, Environment, Origin, known};

/// libpq's `SYSCONFDIR` when `PGSYSCONFDIR` is unset: Debian's and Ubuntu's libpq (the one
/// beside the PostgreSQL packages this project is tested with) have `/etc/postgresql-common`.
const SYSCONFDIR: &str = "/etc/postgresql-common";

/// Fills `info` from the section `name` of the first service file that has one, and returns
/// that file's path.
pub fn apply(info: &mut Conninfo, name: &str, env: &Environment) -> Result<PathBuf, ConninfoError> {
    let files = files(info, env);
    for path in &files {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ConninfoError::ReadServiceFile {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        if let Some(section) = section(&text, name, path)? {
            for (keyword, value) in section {
                info.fill(keyword, value);
            }
            return Ok(path.clone());
        }
    }
    Err(ConninfoError::NoService {
        name: name.to_owned(),
        searched: files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and "),
    })
}

/// The files looked in, in order: the user's, then the system's.
fn files(info: &Conninfo, env: &Environment) -> Vec<PathBuf> {
    let user = info
        .get("servicefile")
        .or_else(|| env.var("PGSERVICEFILE"))
        .map(PathBuf::from)
        .or_else(|| env.home().map(|home| home.join(".pg_service.conf")));
    let system = Path::new(env.var("PGSYSCONFDIR").unwrap_or(SYSCONFDIR)).join("pg_service.conf");
    user.into_iter().chain([system]).collect()
}

/// The settings of the section `[name]` of a service file's `text`, or `None` when it has
/// none. Lines are `keyword=value` (no quotes; spaces at either end dropped), `#` comments
/// and blank lines.
fn section(
    text: &str,
    name: &str,
    path: &Path,
) -> Result<Option<Vec<(&'static str, String)>>, ConninfoError> {
    let origin = Origin::ServiceFile(path.display().to_string());
    let mut found: Option<Vec<(&'static str, String)>> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[') {
            if found.is_some() {
                break;
            }
            if group.strip_suffix(']') == Some(name) {
                found = Some(Vec::new());
            }
            continue;
        }
        let Some(settings) = found.as_mut() else {
            continue;
        };
        let error = |reason: String| ConninfoError::ServiceFile {
            path: path.display().to_string(),
            line: number + 1,
            reason,
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| error("expected keyword=value".into()))?;
        if key == "service" {
            return Err(error("a service cannot name another service".into()));
        }
        settings.push((known(key, &origin)?, value.to_owned()));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# shared settings
[other]
dbname=other

[shop]
host=/var/run/postgresql
  dbname=shop  
options=-c search_path=shop
[after]
dbname=after
";

    fn shop() -> Vec<(&'static str, String)> {
        section(FILE, "shop", Path::new("f")).unwrap().unwrap()
    }

    #[test]
    fn the_named_section_only() {
        assert_eq!(
            shop(),
            vec![
                ("host", "/var/run/postgresql".to_owned()),
                ("dbname", "shop".to_owned()),
                ("options", "-c search_path=shop".to_owned()),
            ]
        );
    }

    #[test]
    fn a_missing_section_is_none() {
        assert_eq!(section(FILE, "sho", Path::new("f")).unwrap(), None);
    }

    #[test]
    fn a_line_without_equals_names_its_line() {
        let err = section("[s]\nhost\n", "s", Path::new("f")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "syntax error in service file f, line 2: expected keyword=value"
        );
    }
}
