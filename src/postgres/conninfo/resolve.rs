//! From what the connection string gives to the settings a connection uses, in libpq's order
//! (`conninfo_add_defaults`, `connectOptions2`): the string's values, then the service file's,
//! then each keyword's `PG…` variable, then the defaults (the default socket directory, port
//! 5432, the operating-system user, a database named as the user), then the password file.

use std::path::{Path, PathBuf};

use super::{Conninfo, ConninfoError, Environment, KEYWORDS, Origin, Use, pgpass, service};

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// The directory of its Unix socket (`host=/var/run/postgresql`).
    Socket(PathBuf),
    /// A host name or address, over TCP.
    Tcp(String),
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The settings of one connection, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub host: Host,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub ssl_mode: SslMode,
    pub ssl_root_cert: Option<String>,
    pub ssl_cert: Option<String>,
    pub ssl_key: Option<String>,
    /// `-c name=value` settings from `options`, in order.
    pub options: Vec<(String, String)>,
}

/// libpq's compiled-in socket directory, `DEFAULT_PGSOCKET_DIR`: `/var/run/postgresql` on
/// Debian, Ubuntu, Fedora and their kin, whose packages create it; `/tmp` in PostgreSQL's
/// own builds (macOS, BSDs, source installs), where `/var/run/postgresql` does not exist.
pub fn default_socket_dir() -> &'static Path {
    let debian = Path::new("/var/run/postgresql");
    match debian.is_dir() {
        true => debian,
        false => Path::new("/tmp"),
    }
}

/// Resolves `given` (read from `origin`) with `env`; `os_user` is asked for only when no
/// user is named anywhere.
pub fn resolve(
    given: Conninfo,
    origin: &Origin,
    env: &Environment,
    os_user: impl FnOnce() -> Option<String>,
) -> Result<Settings, ConninfoError> {
    let (info, origins) = gather(given, origin, env)?;
    let from = |keyword: &str| {
        origins
            .iter()
            .find(|(k, _)| *k == keyword)
            .map_or(origin.clone(), |(_, o)| o.clone())
    };
    for keyword in KEYWORDS {
        let value = info.get(keyword.name);
        if let (Use::Only(allowed, why), Some(value)) = (keyword.is, value)
            && !allowed.contains(&value)
        {
            return Err(ConninfoError::Unsupported {
                keyword: keyword.name,
                value: value.to_owned(),
                origin: from(keyword.name),
                why,
            });
        }
    }
    let one = |keyword: &'static str| -> Result<Option<&str>, ConninfoError> {
        match info.get(keyword).filter(|v| !v.is_empty()) {
            Some(value) if value.contains(',') => Err(ConninfoError::Unsupported {
                keyword,
                value: value.to_owned(),
                origin: from(keyword),
                why: "backfill connects to one server, not the first of a list that answers",
            }),
            value => Ok(value),
        }
    };

    let host_name = one("host")?;
    // With `hostaddr`, libpq connects to that address and still checks the certificate and
    // looks the password up by `host`; sqlx has one host for both, so the certificate is
    // checked against the address (the password file still goes by `host`).
    let host = match one("hostaddr")?.or(host_name) {
        None => Host::Socket(default_socket_dir().to_owned()),
        Some(dir) if dir.starts_with('/') => Host::Socket(PathBuf::from(dir)),
        Some(name) => Host::Tcp(name.to_owned()),
    };
    let port_text = one("port")?.unwrap_or("5432");
    let port = port_text
        .parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| ConninfoError::BadValue {
            keyword: "port",
            value: port_text.to_owned(),
            origin: from("port"),
            expected: "a port number from 1 to 65535",
        })?;
    let user = match info.get("user").filter(|u| !u.is_empty()) {
        Some(user) => user.to_owned(),
        None => os_user().ok_or(ConninfoError::NoUser)?,
    };
    let database = info
        .get("dbname")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();
    let ssl_mode = match info.get("sslmode").unwrap_or("prefer") {
        "disable" => SslMode::Disable,
        "allow" => SslMode::Allow,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        other => {
            return Err(ConninfoError::BadValue {
                keyword: "sslmode",
                value: other.to_owned(),
                origin: from("sslmode"),
                expected: "disable, allow, prefer, require, verify-ca or verify-full",
            });
        }
    };
    let options = match info.get("options") {
        Some(text) => settings(text).ok_or_else(|| ConninfoError::Unsupported {
            keyword: "options",
            value: text.to_owned(),
            origin: from("options"),
            why: "backfill passes on only -c name=value and --name=value settings",
        })?,
        None => Vec::new(),
    };
    let password = match info.get("password") {
        Some(password) => Some(password.to_owned()),
        None => {
            let file = info
                .get("passfile")
                .map(PathBuf::from)
                .or_else(|| env.home().map(|home| home.join(".pgpass")));
            // libpq looks a socket in its default directory up as `localhost`.
            let pw_host = match (&host, host_name) {
                (Host::Socket(dir), _) if dir == default_socket_dir() => "localhost".to_owned(),
                (Host::Socket(dir), None) => dir.display().to_string(),
                (_, Some(name)) => name.to_owned(),
                (Host::Tcp(addr), None) => addr.clone(),
            };
            file.and_then(|file| {
                pgpass::find(
                    &file,
                    pgpass::Lookup {
                        host: &pw_host,
                        port: port_text,
                        database: &database,
                        user: &user,
                    },
                )
            })
        }
    };
    let text = |keyword| {
        info.get(keyword)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Ok(Settings {
        host,
        port,
        password,
        database,
        ssl_mode,
        ssl_root_cert: text("sslrootcert"),
        ssl_cert: text("sslcert"),
        ssl_key: text("sslkey"),
        options,
        user,
    })
}

/// Where each keyword's value came from.
type Origins = Vec<(&'static str, Origin)>;

/// The connection string's values, then the service file's, then the variables', each
/// only where nothing before set the keyword; with where each value came from.
fn gather(
    given: Conninfo,
    origin: &Origin,
    env: &Environment,
) -> Result<(Conninfo, Origins), ConninfoError> {
    let mut info = given;
    let mut origins: Vec<_> = info
        .values
        .iter()
        .map(|(k, _)| (*k, origin.clone()))
        .collect();
    let service = info.get("service").or_else(|| env.var("PGSERVICE"));
    if let Some(name) = service.map(str::to_owned) {
        let before = info.values.len();
        let file = service::apply(&mut info, &name, env)?;
        let file = Origin::ServiceFile(format!("{} [{name}]", file.display()));
        origins.extend(
            info.values[before..]
                .iter()
                .map(|(k, _)| (*k, file.clone())),
        );
    }
    for keyword in KEYWORDS {
        if let Some(variable) = keyword.variable
            && let Some(value) = env.var(variable)
            && info.get(keyword.name).is_none()
        {
            origins.push((keyword.name, Origin::Variable(variable)));
            info.fill(keyword.name, value.to_owned());
        }
    }
    Ok((info, origins))
}

/// The `name=value` settings of a libpq `options` string (`-c a=1 -cb=2 --c-d=3`, a backslash
/// escaping a space), or `None` when it has a switch other than `-c` and `--`.
fn settings(text: &str) -> Option<Vec<(String, String)>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.push(chars.next().unwrap_or('\\')),
            c if c.is_whitespace() => {
                words.extend((!word.is_empty()).then(|| std::mem::take(&mut word)))
            }
            c => word.push(c),
        }
    }
    words.extend((!word.is_empty()).then_some(word));
    let mut pairs = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let (name, value) = if word == "-c" {
            let setting = words.next()?;
            let (name, value) = setting.split_once('=')?;
            (name.to_owned(), value.to_owned())
        } else if let Some(long) = word.strip_prefix("--") {
            // The server reads `--a-b=1` as `a_b`.
            let (name, value) = long.split_once('=')?;
            (name.replace('-', "_"), value.to_owned())
        } else {
            let (name, value) = word.strip_prefix("-c")?.split_once('=')?;
            (name.to_owned(), value.to_owned())
        };
        pairs.push((name, value));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests;
