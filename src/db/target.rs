//! Where to connect, for any database: read from the URL (or the environment) before anything
//! is tried, and connected to as a [`Session`].

use crate::postgres;
use crate::state::Store;

use super::{Session, TargetError};

/// A connection target as given on the command line, before it is tried.
#[derive(Debug, Clone)]
pub enum Target {
    Postgres(postgres::Target),
}

impl Target {
    /// Reads `url`, or, when there is none, the database's usual environment.
    pub fn new(url: Option<&str>) -> Result<Target, TargetError> {
        Ok(Target::Postgres(postgres::Target::new(url)?))
    }

    /// Connects, naming the session `application_name` so that operators can find it.
    pub async fn connect(&self, application_name: &str) -> Result<Session, sqlx::Error> {
        match self {
            Target::Postgres(t) => Ok(Session::Postgres(t.connect(application_name).await?)),
        }
    }

    /// Like [`Target::connect`], without the driver's slow-statement log: for a session whose
    /// statements run long by design (a vacuum).
    pub async fn connect_unlogged(&self, application_name: &str) -> Result<Session, sqlx::Error> {
        match self {
            Target::Postgres(t) => Ok(Session::Postgres(
                t.connect_unlogged(application_name).await?,
            )),
        }
    }

    /// The state tables in `schema` on this database, named as it quotes them.
    pub fn store(&self, schema: &str) -> Store {
        match self {
            Target::Postgres(_) => Store::new(schema, postgres::state::quoted),
        }
    }

    /// `host:port/database`, for messages (never the password).
    pub fn describe(&self) -> String {
        match self {
            Target::Postgres(t) => t.describe(),
        }
    }
}
