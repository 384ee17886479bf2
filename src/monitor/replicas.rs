//! The replicas the monitor reads on connections of their own (`--replica-url`, MySQL and
//! MariaDB, whose primary does not know its replicas' lag; PostgreSQL's are read on the
//! primary). Every full sample reads them all at once, each within the sample's timeout. A
//! replica that cannot be reached or read is reported with why — its lag is not known, which
//! holds the run back as a stopped replica does — and is connected to again at the next full
//! sample, as the monitor's own connection is.

use std::time::Duration;

use futures_util::future::join_all;

use super::policy::Replica;
use crate::db::{Session, Target, error_chain};

/// Every replica the monitor watches, each with its connection while it has one.
pub(super) struct Replicas(Vec<Watched>);

struct Watched {
    target: Target,
    /// `host:port` (and the database, when the URL names one), for reasons.
    name: String,
    conn: Option<Session>,
}

impl Replicas {
    pub(super) fn new(targets: &[Target]) -> Replicas {
        Replicas(
            targets
                .iter()
                .map(|target| Watched {
                    name: target.describe().trim_end_matches('/').to_owned(),
                    target: target.clone(),
                    conn: None,
                })
                .collect(),
        )
    }

    /// Each replica as it is now, its connection named `application_name`.
    pub(super) async fn read(&mut self, application_name: &str, timeout: Duration) -> Vec<Replica> {
        join_all(
            self.0
                .iter_mut()
                .map(|watched| watched.read(application_name, timeout)),
        )
        .await
    }

    /// Ends every replica's session politely.
    pub(super) async fn hang_up(self) {
        join_all(
            self.0
                .into_iter()
                .filter_map(|watched| watched.conn)
                .map(Session::hang_up),
        )
        .await;
    }
}

impl Watched {
    async fn read(&mut self, application_name: &str, timeout: Duration) -> Replica {
        let read = tokio::time::timeout(timeout, async {
            if self.conn.is_none() {
                self.conn = Some(self.target.connect(application_name).await?);
            }
            let conn = self.conn.as_mut().expect("connected just above");
            conn.replica_lag(&self.name).await
        })
        .await;
        let why = match read {
            Ok(Ok(replica)) => return replica,
            Ok(Err(e)) => format!("cannot be read: {}", error_chain(&e)),
            Err(_) => format!(
                "did not answer within {}",
                humantime::format_duration(timeout)
            ),
        };
        self.conn = None;
        Replica {
            name: self.name.clone(),
            lag: None,
            lag_bytes: None,
            unknown: Some(why),
        }
    }
}
