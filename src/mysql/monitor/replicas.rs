//! A MySQL or MariaDB replica's lag, read on the replica itself (`--replica-url`): a primary
//! does not know its replicas' lag. `SHOW REPLICA STATUS` (MySQL 8.0.22 and MariaDB 10.5.1 on)
//! gives `Seconds_Behind_Source` (MariaDB: `Seconds_Behind_Master`) per replication channel.
//!
//! It is NULL while the replica's SQL or IO thread is stopped: the lag is then not known, and
//! the replica is reported with why, which holds the run back (fail closed) rather than reading
//! as no lag. The lag is not computed from `replication_applier_status_by_worker`: with no
//! transaction being applied, that formula falls back to 0 whatever the replica has yet to
//! apply.

use std::time::Duration;

use sqlx::Row as _;
use sqlx::mysql::MySqlRow;

use super::super::session::Session;
use crate::monitor::policy::Replica;

/// One replication channel of `SHOW REPLICA STATUS`, as far as its lag goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Channel {
    /// The lag column's name as the server spells it, for the reason.
    column: &'static str,
    /// `Seconds_Behind_Source`: NULL while either thread is stopped.
    seconds_behind: Option<u64>,
    /// `Replica_SQL_Running` (`Slave_SQL_Running`): `Yes` or `No`.
    sql_running: String,
    /// `Replica_IO_Running` (`Slave_IO_Running`): `Yes`, `No` or `Connecting`.
    io_running: String,
    /// `Last_SQL_Error`, empty when none.
    sql_error: String,
    /// `Last_IO_Error`, empty when none.
    io_error: String,
}

/// Reads `SHOW REPLICA STATUS` on the replica `session` reached, which the reasons call
/// `name`.
pub async fn read(session: &mut Session, name: &str) -> Result<Replica, sqlx::Error> {
    let rows = sqlx::raw_sql("SHOW REPLICA STATUS")
        .fetch_all(&mut session.conn)
        .await?;
    let channels = rows.iter().map(channel).collect::<Result<Vec<_>, _>>()?;
    let (lag, unknown) = match lag(&channels) {
        Ok(lag) => (Some(lag), None),
        Err(why) => (None, Some(why)),
    };
    Ok(Replica {
        name: name.to_owned(),
        lag,
        lag_bytes: None,
        unknown,
    })
}

/// The replica's lag: its most lagging channel's; or why it is not known.
fn lag(channels: &[Channel]) -> Result<Duration, String> {
    if channels.is_empty() {
        return Err("it does not replicate (SHOW REPLICA STATUS shows no source)".to_owned());
    }
    let mut most = 0;
    for channel in channels {
        match channel.seconds_behind {
            Some(seconds) => most = most.max(seconds),
            None => return Err(channel.why_unknown()),
        }
    }
    Ok(Duration::from_secs(most))
}

impl Channel {
    /// Why `Seconds_Behind_Source` is NULL, with the thread's last error.
    fn why_unknown(&self) -> String {
        let (what, error) = if self.sql_running != "Yes" {
            ("its SQL thread is stopped", &self.sql_error)
        } else if self.io_running == "Connecting" {
            ("its IO thread cannot connect to the source", &self.io_error)
        } else if self.io_running != "Yes" {
            ("its IO thread is stopped", &self.io_error)
        } else {
            ("its lag is not known", &self.sql_error)
        };
        let error = if error.is_empty() {
            String::new()
        } else {
            format!(": {error}")
        };
        format!("{what} ({} is NULL){error}", self.column)
    }
}

/// One row of `SHOW REPLICA STATUS`, whichever server's names its columns have.
fn channel(row: &MySqlRow) -> Result<Channel, sqlx::Error> {
    let column = ["Seconds_Behind_Source", "Seconds_Behind_Master"]
        .into_iter()
        .find(|name| named(row, name).is_some())
        .ok_or_else(|| sqlx::Error::ColumnNotFound("Seconds_Behind_Source".to_owned()))?;
    // MariaDB sends it unsigned; a signed one is read too.
    let seconds_behind = match row.try_get::<Option<u64>, _>(column) {
        Ok(seconds) => seconds,
        Err(_) => row
            .try_get::<Option<i64>, _>(column)?
            .map(|s| u64::try_from(s).unwrap_or(0)),
    };
    Ok(Channel {
        column,
        seconds_behind,
        sql_running: text(row, &["Replica_SQL_Running", "Slave_SQL_Running"])?,
        io_running: text(row, &["Replica_IO_Running", "Slave_IO_Running"])?,
        sql_error: text(row, &["Last_SQL_Error"])?,
        io_error: text(row, &["Last_IO_Error"])?,
    })
}

/// The index of the column called `name`, if the row has one.
fn named(row: &MySqlRow, name: &str) -> Option<usize> {
    use sqlx::Column as _;
    row.columns().iter().position(|c| c.name() == name)
}

/// The text in the first of `names` the row has (MySQL's name, then MariaDB's).
fn text(row: &MySqlRow, names: &[&str]) -> Result<String, sqlx::Error> {
    let i = names
        .iter()
        .find_map(|name| named(row, name))
        .ok_or_else(|| sqlx::Error::ColumnNotFound(names.join(" or ")))?;
    Ok(row.try_get::<Option<String>, _>(i)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(seconds_behind: Option<u64>, sql: &str, io: &str) -> Channel {
        Channel {
            column: "Seconds_Behind_Source",
            seconds_behind,
            sql_running: sql.into(),
            io_running: io.into(),
            sql_error: String::new(),
            io_error: String::new(),
        }
    }

    #[test]
    fn the_most_lagging_channel_is_the_replica_s_lag() {
        let channels = [
            channel(Some(3), "Yes", "Yes"),
            channel(Some(9), "Yes", "Yes"),
        ];
        assert_eq!(lag(&channels), Ok(Duration::from_secs(9)));
    }

    #[test]
    fn a_null_lag_says_which_thread_is_stopped() {
        assert_eq!(
            lag(&[channel(None, "No", "Yes")]),
            Err("its SQL thread is stopped (Seconds_Behind_Source is NULL)".into())
        );
        let failed = Channel {
            column: "Seconds_Behind_Master",
            io_error: "error connecting to master 'repl@db1:3306'".into(),
            ..channel(None, "Yes", "Connecting")
        };
        assert_eq!(
            lag(&[channel(Some(1), "Yes", "Yes"), failed]),
            Err(
                "its IO thread cannot connect to the source (Seconds_Behind_Master is NULL): \
                 error connecting to master 'repl@db1:3306'"
                    .into()
            )
        );
        assert_eq!(
            lag(&[channel(None, "Yes", "No")]),
            Err("its IO thread is stopped (Seconds_Behind_Source is NULL)".into())
        );
    }

    #[test]
    fn a_server_that_does_not_replicate_is_not_a_replica_without_lag() {
        assert_eq!(
            lag(&[]),
            Err("it does not replicate (SHOW REPLICA STATUS shows no source)".into())
        );
    }
}
