//! `backfill serve`: the token, the address check and the first connection — each before
//! anything listens — then the server (`crate::serve`) until Ctrl-C or SIGTERM.

use std::path::Path;

use anyhow::{Context as _, Result};
use tokio::sync::watch;

use crate::cli::{GlobalArgs, ServeArgs};
use crate::db::Target;
use crate::serve::{self, Listen, Reader, ServeError};

use super::Exit;

/// The variable that holds the token, when `--token-file` does not name a file.
const TOKEN_VARIABLE: &str = "BACKFILL_SERVE_TOKEN";

/// `backfill serve`: see the module header.
pub async fn serve(
    global: &GlobalArgs,
    args: &ServeArgs,
    shutdown: watch::Receiver<bool>,
) -> Result<Exit> {
    let token = token(args.token_file.as_deref())?;
    serve::check_addr(args.addr, token.as_deref())?;
    let target = Target::new(global.database_url.as_deref())?;
    let store = target.store(&global.state_schema);
    let reader = Reader::connect(target.clone(), store)
        .await
        .with_context(|| format!("cannot connect to {}", target.describe()))?;
    let listen = Listen {
        addr: args.addr,
        token,
        public_host: args.public_host.clone(),
    };
    serve::serve(reader, listen, shutdown).await?;
    Ok(Exit::Success)
}

/// The token from `--token-file` (trimmed), else from the variable (empty is unset, as for
/// every variable); `None` makes the server read-only.
fn token(file: Option<&Path>) -> Result<Option<String>, ServeError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::TokenFile {
            path: path.display().to_string(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ServeError::EmptyToken {
                path: path.display().to_string(),
            });
        }
        return Ok(Some(token.to_owned()));
    }
    Ok(std::env::var(TOKEN_VARIABLE)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}
