//! Where to connect, for any database: read from the URL (or the environment) before anything
//! is tried, and connected to as a [`Session`]. A `mysql://` or `mariadb://` URL names MySQL or
//! MariaDB; anything else is PostgreSQL's, read as libpq reads it.

use thiserror::Error;

use crate::state::Store;
use crate::{mysql, postgres};

use super::{RangeSql, Session};

/// A connection target as given on the command line, before it is tried.
#[derive(Debug, Clone)]
pub enum Target {
    Postgres(Box<postgres::Target>),
    Mysql(mysql::target::Target),
}

/// Errors in the connection settings themselves (not from the server).
#[derive(Debug, Error)]
pub enum TargetError {
    #[error(transparent)]
    Postgres(#[from] postgres::TargetError),
    #[error(transparent)]
    Mysql(#[from] mysql::target::TargetError),
}

impl Target {
    /// Reads `url`, or, when there is none, the database's usual environment (PostgreSQL's).
    pub fn new(url: Option<&str>) -> Result<Target, TargetError> {
        match url {
            Some(url) if mysql::target::is_mysql_url(url) => {
                Ok(Target::Mysql(mysql::target::Target::new(url)?))
            }
            _ => Ok(Target::Postgres(Box::new(postgres::Target::new(url)?))),
        }
    }

    /// Connects, naming the session `application_name` so that operators can find it.
    pub async fn connect(&self, application_name: &str) -> Result<Session, sqlx::Error> {
        match self {
            Target::Postgres(t) => Ok(Session::Postgres(t.connect(application_name).await?)),
            Target::Mysql(t) => Ok(Session::Mysql(t.connect().await?)),
        }
    }

    /// Like [`Target::connect`], without the driver's slow-statement log: for a session whose
    /// statements run long by design (a vacuum).
    pub async fn connect_unlogged(&self, application_name: &str) -> Result<Session, sqlx::Error> {
        match self {
            Target::Postgres(t) => Ok(Session::Postgres(
                t.connect_unlogged(application_name).await?,
            )),
            Target::Mysql(t) => Ok(Session::Mysql(t.connect().await?)),
        }
    }

    /// The state tables in `schema` on this database, named as it quotes them.
    pub fn store(&self, schema: &str) -> Store {
        match self {
            Target::Postgres(_) => Store::new(schema, postgres::state::quoted),
            Target::Mysql(_) => Store::new(schema, mysql::sql::quoted),
        }
    }

    /// The statements of a job's ranges that compare keys, for a key whose columns have the
    /// SQL types (on MySQL, the casts) `key_types`.
    pub fn range_sql(&self, store: &Store, key_types: &[String]) -> RangeSql {
        match self {
            Target::Postgres(_) => {
                RangeSql::Postgres(postgres::state::RangeSql::new(store, key_types))
            }
            Target::Mysql(_) => RangeSql::Mysql(mysql::state::RangeSql::new(store, key_types)),
        }
    }

    /// `host:port/database`, for messages (never the password).
    pub fn describe(&self) -> String {
        match self {
            Target::Postgres(t) => t.describe(),
            Target::Mysql(t) => t.describe(),
        }
    }
}
