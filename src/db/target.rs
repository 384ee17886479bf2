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
    /// `--replica-url` for a job on PostgreSQL.
    #[error(
        "--replica-url is for MySQL and MariaDB: PostgreSQL's replicas are read from \
         pg_stat_replication on the primary; leave --replica-url out"
    )]
    ReplicaOnPostgres,
    /// `--replica-url` with a URL that is not MySQL's (shown with its password hidden).
    #[error(
        "--replica-url {0} is not a MySQL or MariaDB URL; write it as \
         mysql://user:password@replica:3306/"
    )]
    ReplicaNotMysql(String),
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

    /// A replica of this target's server whose lag the monitor reads there (`--replica-url`):
    /// a MySQL or MariaDB URL, for a MySQL or MariaDB target only.
    pub fn replica(&self, url: &str) -> Result<Target, TargetError> {
        match self {
            Target::Postgres(_) => Err(TargetError::ReplicaOnPostgres),
            Target::Mysql(_) if !mysql::target::is_mysql_url(url) => Err(
                TargetError::ReplicaNotMysql(mysql::target::redact(url.trim())),
            ),
            Target::Mysql(_) => Ok(Target::Mysql(mysql::target::Target::new(url)?)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_a_mysql_url_beside_a_mysql_target() {
        let primary = Target::new(Some("mysql://app@db1:3306/shop")).unwrap();
        let replica = primary.replica("mariadb://watcher:pw@db2:3307/").unwrap();
        assert_eq!(replica.describe(), "db2:3307/");
        let error = primary
            .replica("postgres://watcher:s3cret@db2/shop")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--replica-url postgres://watcher:***@db2/shop is not a MySQL"),
            "{error}"
        );
        let postgres = Target::new(Some("postgres://app@db1/shop")).unwrap();
        assert!(matches!(
            postgres.replica("mysql://watcher@db2/"),
            Err(TargetError::ReplicaOnPostgres)
        ));
    }
}
