//! What libpq reads from outside the connection string: its `PG…` variables and the home
//! directory that holds `~/.pgpass` and `~/.pg_service.conf`. Passed in, so that the tests
//! give their own without touching the process's environment.

use std::collections::HashMap;
use std::path::PathBuf;

/// The variables and home directory a connection's settings are read with.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    variables: HashMap<String, String>,
    home: Option<PathBuf>,
}

impl Environment {
    /// This process's variables (a variable set to the empty string counts as unset, as in
    /// libpq) and its user's home directory.
    pub fn process() -> Environment {
        Environment {
            variables: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .filter(|(k, v)| k.starts_with("PG") && !v.is_empty())
                .collect(),
            home: std::env::home_dir(),
        }
    }

    /// The given variables and home directory, nothing else.
    #[cfg(test)]
    pub fn of<'a>(
        variables: impl IntoIterator<Item = (&'a str, &'a str)>,
        home: Option<PathBuf>,
    ) -> Environment {
        Environment {
            variables: variables
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            home,
        }
    }

    /// The value of the variable `name`, unless it is unset or empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.variables
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The user's home directory, for `~/.pgpass` and `~/.pg_service.conf`.
    pub fn home(&self) -> Option<&PathBuf> {
        self.home.as_ref()
    }
}
