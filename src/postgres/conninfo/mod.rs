//! libpq's connection settings, read as libpq reads them: a connection string (a
//! `postgresql://` URI or `keyword=value` pairs), then the service file's section, then the
//! `PG…` environment variables, then the defaults, and the password from the password file
//! last. It owns the reading and the precedence; it does not connect (`target` turns the
//! result into sqlx's options).
//!
//! PostgreSQL's documentation: "Connection Strings" (libpq-connect.html#LIBPQ-CONNSTRING),
//! "Environment Variables" (libpq-envars.html), "The Connection Service File"
//! (libpq-pgservice.html) and "The Password File" (libpq-pgpass.html).
//!
//! Why not a crate: `tokio-postgres`'s `Config` parses both forms, but refuses what libpq
//! takes (`sslmode=verify-full`, `verify-ca` and `allow`, and every keyword it does not use:
//! `service`, `passfile`, `sslrootcert` …), reads no environment, service file or password
//! file, and would add ten crates (a second PostgreSQL protocol among them) for a parser of a
//! few dozen lines. sqlx's own URL parser is the `url` crate's, which refuses
//! `postgresql://user@/db` and knows no `keyword=value` strings.

mod environment;
mod keywords;
mod pairs;
mod pgpass;
mod resolve;
mod service;
mod uri;

use thiserror::Error;

pub use environment::Environment;
use keywords::{KEYWORDS, Use, keyword};
pub use resolve::{Host, Settings, SslMode, resolve};

/// The settings a connection string gives, keyword by keyword, in libpq's words (`host`,
/// `dbname`, …); values are decoded. A keyword given twice keeps its last value, as in libpq.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conninfo {
    values: Vec<(&'static str, String)>,
}

impl Conninfo {
    /// The value given for `keyword`, if any.
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == keyword)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `keyword`, replacing an earlier value.
    fn set(&mut self, keyword: &'static str, value: String) {
        match self.values.iter_mut().find(|(k, _)| *k == keyword) {
            Some(slot) => slot.1 = value,
            None => self.values.push((keyword, value)),
        }
    }

    /// Sets `keyword` only when nothing set it yet (a service file's or a variable's value
    /// never beats the connection string's).
    fn fill(&mut self, keyword: &'static str, value: String) {
        if self.get(keyword).is_none() {
            self.values.push((keyword, value));
        }
    }
}

/// Where a setting came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The `postgresql://` URI.
    Url,
    /// The `keyword=value` string.
    Pairs,
    /// A section of a service file.
    ServiceFile(String),
    /// An environment variable.
    Variable(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Url => f.write_str("the database URL"),
            Origin::Pairs => f.write_str("the connection string"),
            Origin::ServiceFile(path) => write!(f, "the service file {path}"),
            Origin::Variable(name) => f.write_str(name),
        }
    }
}

/// Settings that cannot be read or cannot be kept. The password never appears in one.
#[derive(Debug, Error)]
pub enum ConninfoError {
    #[error(
        "invalid database URL {url:?}: {reason}; expected \
         postgresql://user:password@host:port/database?keyword=value, with any @ : / or % in \
         the user name or password percent-encoded (@ is %40, : is %3A, / is %2F, % is %25)"
    )]
    BadUrl { url: String, reason: String },
    #[error(
        "invalid database URL {url:?}: a PostgreSQL URL starts with postgres:// or \
         postgresql://, a MySQL or MariaDB one with mysql:// or mariadb://"
    )]
    Scheme { url: String },
    #[error(
        "invalid connection string {text:?}: {reason}; expected keyword=value pairs separated \
         by spaces (host=/var/run/postgresql dbname=shop), a value with spaces in single quotes \
         (options='-c a=1 -c b=2'), or a postgresql:// URL"
    )]
    BadPairs { text: String, reason: String },
    #[error(
        "unknown connection option {keyword:?} in {origin}; libpq's options are host, hostaddr, \
         port, dbname, user, password, passfile, service, options, sslmode, sslrootcert, sslcert, \
         sslkey and the others of PostgreSQL's \"Parameter Key Words\""
    )]
    Unknown { keyword: String, origin: Origin },
    #[error("invalid {keyword} {value:?} in {origin}: expected {expected}")]
    BadValue {
        keyword: &'static str,
        value: String,
        origin: Origin,
        expected: &'static str,
    },
    #[error("{keyword}={value} in {origin} cannot be kept: {why}; remove it")]
    Unsupported {
        keyword: &'static str,
        value: String,
        origin: Origin,
        why: &'static str,
    },
    #[error(
        "cannot tell which user to connect as: the operating system has no name for this \
         user; set PGUSER, or name the user in the URL (postgres://USER@host/database)"
    )]
    NoUser,
    #[error(
        "definition of service {name:?} not found (looked in {searched}); add a [{name}] section \
         to ~/.pg_service.conf, or set PGSERVICEFILE to the file that has it"
    )]
    NoService { name: String, searched: String },
    #[error("syntax error in service file {path}, line {line}: {reason}")]
    ServiceFile {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("cannot read the service file {path}")]
    ReadServiceFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Reads a connection string: a `postgres://` or `postgresql://` URI, or `keyword=value`
/// pairs. Syntax only: nothing outside the string is read.
pub fn parse(text: &str) -> Result<(Conninfo, Origin), ConninfoError> {
    if uri::is_uri(text) {
        return Ok((uri::parse(text)?, Origin::Url));
    }
    if text.contains("://") {
        return Err(ConninfoError::Scheme { url: redact(text) });
    }
    if !text.contains('=') {
        return Err(ConninfoError::BadUrl {
            url: redact(text),
            reason: "it is neither a postgresql:// URL nor keyword=value pairs \
                     (host=/var/run/postgresql dbname=shop)"
                .into(),
        });
    }
    Ok((pairs::parse(text)?, Origin::Pairs))
}

/// Checks a keyword read from `origin` against libpq's list, returning its name as a
/// `'static` for [`Conninfo`].
fn known(name: &str, origin: &Origin) -> Result<&'static str, ConninfoError> {
    keyword(name)
        .map(|k| k.name)
        .ok_or_else(|| ConninfoError::Unknown {
            keyword: name.to_owned(),
            origin: origin.clone(),
        })
}

/// A connection string with every password in it replaced by `***`, safe to print: the URI's
/// `user:password@` and any `password=` value, quoted or not.
pub fn redact(text: &str) -> String {
    let text = match (text.find("://"), text.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &text[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &text[..scheme + 3 + colon], &text[at..]),
                None => text.to_owned(),
            }
        }
        _ => text.to_owned(),
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("password") {
        let (before, from) = rest.split_at(at + "password".len());
        out.push_str(before);
        let after_key = from.trim_start();
        let Some(value) = after_key.strip_prefix('=') else {
            rest = from;
            continue;
        };
        out.push_str(&from[..from.len() - after_key.len()]);
        out.push('=');
        let value_start = value.len() - value.trim_start().len();
        out.push_str(&value[..value_start]);
        let value = &value[value_start..];
        out.push_str("***");
        let len = match uri::is_uri(&text) {
            true => value.find('&').unwrap_or(value.len()),
            false => pairs::value_len(value),
        };
        rest = &value[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
