//! What the monitor's role may see and do. PostgreSQL hides other roles' session state (their
//! `backend_type`, `state` and query, and which table a vacuum works on) and the replicas'
//! progress from a role outside `pg_read_all_stats`, and refuses to cancel another role's
//! query without membership or `pg_signal_backend`. The monitor then reads NULLs, which look
//! exactly like "nothing to report": its signals would stay silent instead of firing. So
//! `plan` and `run` read the role's privileges once, before anything is written, and say which
//! signals they blind and which `GRANT` fixes it. Replication slots and the archiver need no
//! privilege: `pg_replication_slots` and `pg_stat_archiver` are readable by every role.

use sqlx::{PgConnection, Row as _};

use crate::job::ThrottlePolicy;
use crate::postgres::{begin_read_only, statement};

/// The monitor's role and what it may see and do to the batch's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileges {
    /// The role the monitor connects as.
    pub role: String,
    /// The role the batches run as.
    pub batch_role: String,
    /// Sees every session's state and the replicas' lag (superuser or `pg_read_all_stats`,
    /// which `pg_monitor` includes).
    pub sees_all: bool,
    /// The monitor's role is a superuser.
    pub superuser: bool,
    /// The batches' role is a superuser.
    pub batch_superuser: bool,
    /// The monitor's role has the privileges of the batches' role or of `pg_signal_backend`.
    pub may_signal: bool,
    /// The server is MySQL or MariaDB, where `sees_all` is the `PROCESS` privilege and
    /// `may_signal` is `KILL QUERY` on the batches' account: what else the monitor sees there.
    pub mysql: Option<MysqlSight>,
}

/// What the monitor sees of metadata locks on MySQL or MariaDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MysqlSight {
    /// The server is MariaDB: waiters and DDL come from the processlist, and a holder of `LOCK
    /// TABLES` is found by a probe that does not wait.
    pub mariadb: bool,
    /// MySQL: `performance_schema` is on and the account may read `metadata_locks`, which shows
    /// holders and waiters alike.
    pub metadata_locks: bool,
}

/// The role a connection runs as. One simple-protocol message, so that behind PgBouncer it
/// needs no transaction of its own.
pub async fn role(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    sqlx::raw_sql("SELECT current_user::text")
        .fetch_one(conn)
        .await?
        .try_get(0)
}

/// Reads what the role of `monitor` may see and do to `batch_role`'s sessions.
pub async fn read(monitor: &mut PgConnection, batch_role: &str) -> Result<Privileges, sqlx::Error> {
    let mut tx = begin_read_only(monitor).await?;
    let row = statement(
        "SELECT me.rolname::text, pg_has_role('pg_read_all_stats', 'USAGE'), me.rolsuper,
                batch.rolsuper,
                pg_has_role($1, 'USAGE') OR pg_has_role('pg_signal_backend', 'USAGE')
           FROM pg_roles me, pg_roles batch
          WHERE me.rolname = current_user AND batch.rolname = $1",
    )
    .bind(batch_role)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Privileges {
        role: row.try_get(0)?,
        batch_role: batch_role.to_owned(),
        sees_all: row.try_get(1)?,
        superuser: row.try_get(2)?,
        batch_superuser: row.try_get(3)?,
        may_signal: row.try_get(4)?,
        mysql: None,
    })
}

impl Privileges {
    /// Whether `pg_cancel_backend` lets the monitor cancel a batch: a superuser may cancel
    /// anyone; only a superuser may cancel a superuser; otherwise the privileges of the batches'
    /// role or `pg_signal_backend` are needed.
    pub fn can_cancel(&self) -> bool {
        self.superuser || (!self.batch_superuser && self.may_signal)
    }

    /// One line for `plan`: what the monitor works with.
    pub fn describe(&self) -> String {
        if let Some(mysql) = self.mysql {
            let sessions = if self.sees_all {
                "sees every session (PROCESS)"
            } else {
                "sees only its own account's sessions (no PROCESS privilege)"
            };
            let locks = if mysql.mariadb {
                "metadata locks from the processlist"
            } else if mysql.metadata_locks {
                "metadata locks from performance_schema.metadata_locks"
            } else {
                "metadata-lock waiters from the processlist, not their holders (performance_schema unreadable)"
            };
            let sees = format!("{sessions}, {locks}");
            let kills = if self.may_signal {
                "may KILL QUERY the batches (the same account)"
            } else {
                "may not KILL QUERY the batches of another account without CONNECTION_ADMIN"
            };
            return format!("monitor as account {}: {sees}, {kills}", self.role);
        }
        let sees = if self.sees_all {
            "sees every session and replica"
        } else {
            "sees only its own role's sessions"
        };
        let cancels = if self.can_cancel() {
            "may cancel the batches"
        } else {
            "may not cancel the batches"
        };
        format!("monitor as role {}: {sees}, {cancels}", self.role)
    }

    /// What the role cannot do that `policy` relies on, each with the `GRANT` that fixes it.
    pub fn warnings(&self, policy: &ThrottlePolicy) -> Vec<String> {
        if !policy.enabled {
            return Vec::new();
        }
        if let Some(mysql) = self.mysql {
            return self.mysql_warnings(mysql, policy);
        }
        let role = crate::postgres::sql::Ident(&self.role);
        let mut warnings = Vec::new();
        if !self.sees_all {
            warnings.push(format!(
                "the monitor's role {} is not a member of pg_read_all_stats, so it cannot see {} \
                 and those signals never fire; run `GRANT pg_monitor TO {role};`",
                self.role,
                either(&blind(policy))
            ));
        }
        if policy.yield_to_waiters && !self.can_cancel() {
            let fix = if self.batch_superuser {
                "only a superuser may cancel a superuser's query: connect the monitor as a \
                 superuser, or run the job as a role that is not one"
                    .to_owned()
            } else {
                format!(
                    "run `GRANT pg_signal_backend TO {role};` (or `GRANT {} TO {role};`)",
                    crate::postgres::sql::Ident(&self.batch_role)
                )
            };
            warnings.push(format!(
                "the monitor's role {} may not cancel the queries of {}, so it cannot yield: a \
                 session waiting on a batch waits until the batch commits or reaches its lock \
                 timeout; {fix}",
                self.role, self.batch_role
            ));
        }
        warnings
    }
}

impl Privileges {
    /// What the account cannot do on MySQL or MariaDB that `policy` relies on, each with the
    /// `GRANT` that fixes it.
    fn mysql_warnings(&self, mysql: MysqlSight, policy: &ThrottlePolicy) -> Vec<String> {
        let account = &self.role;
        let grantee = grantee(account);
        let mut warnings = Vec::new();
        if !self.sees_all {
            let purge = if mysql.mariadb {
                "as does which of them holds InnoDB's purge back"
            } else {
                "as does InnoDB's history list itself (INNODB_METRICS)"
            };
            warnings.push(format!(
                "the monitor's account {account} lacks PROCESS, so it sees only its own \
                 account's sessions: another account's DDL waiting behind a batch, its active \
                 sessions and its open transactions go unseen, {purge}, \
                 and those signals never fire; run `GRANT PROCESS ON *.* TO {grantee};`"
            ));
        }
        if !mysql.mariadb && !mysql.metadata_locks {
            warnings.push(format!(
                "performance_schema is off or {account} may not read it, so the monitor sees \
                 sessions waiting for the table's metadata lock in the processlist but not who \
                 holds one (LOCK TABLES, an ALTER in progress): the run starts behind such a \
                 lock and its batches time out there; turn performance_schema on, and run \
                 `GRANT SELECT ON performance_schema.* TO {grantee};`"
            ));
        }
        if policy.yield_to_waiters && !self.may_signal {
            warnings.push(format!(
                "the monitor's account {account} may not KILL QUERY the batches of {}, so it \
                 cannot yield: DDL waiting on a batch waits until the batch commits or reaches \
                 its lock timeout; connect the monitor as {}, or run `GRANT CONNECTION_ADMIN ON \
                 *.* TO {grantee};` (SUPER on MariaDB)",
                self.batch_role, self.batch_role
            ));
        }
        warnings
    }
}

/// `CURRENT_USER()`'s `user@host` as a `GRANT` names it: `'user'@'host'`.
fn grantee(account: &str) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    match account.rsplit_once('@') {
        Some((user, host)) => format!("{}@{}", quote(user), quote(host)),
        None => quote(account),
    }
}

/// What a role outside `pg_read_all_stats` cannot see of what `policy` watches. Other roles'
/// connections always: `max_connection_use` cannot be turned off.
fn blind(policy: &ThrottlePolicy) -> Vec<&'static str> {
    let mut blind = vec!["other roles' connections"];
    if !policy.max_idle_in_transaction.is_zero() {
        blind.push("sessions idle in transaction");
    }
    if policy.max_active_sessions > 0 {
        blind.push("active sessions");
    }
    if !policy.max_replica_lag.is_zero() || policy.max_replica_lag_bytes > 0 {
        blind.push("the replicas' lag");
    }
    if policy.watch_autovacuum {
        blind.push("autovacuum on the table");
    }
    blind
}

/// `a`, `a or b`, `a, b or c`.
fn either(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The monitor as `role` watching batches of the non-superuser `app`.
    fn sight(sees_all: bool, may_signal: bool, role: &str) -> Privileges {
        Privileges {
            role: role.to_owned(),
            batch_role: "app".to_owned(),
            sees_all,
            superuser: false,
            batch_superuser: false,
            may_signal,
            mysql: None,
        }
    }

    #[test]
    fn cancelling_follows_pg_cancel_backend() {
        let app = sight(true, true, "watcher");
        assert!(app.can_cancel());
        assert!(!sight(true, false, "watcher").can_cancel());
        let of_superuser = Privileges {
            batch_superuser: true,
            ..app.clone()
        };
        assert!(!of_superuser.can_cancel());
        let by_superuser = Privileges {
            superuser: true,
            may_signal: false,
            ..of_superuser.clone()
        };
        assert!(by_superuser.can_cancel());
    }

    #[test]
    fn a_role_that_sees_and_cancels_gets_no_warning() {
        let s = sight(true, true, "app");
        assert!(s.warnings(&ThrottlePolicy::default()).is_empty());
        assert_eq!(
            s.describe(),
            "monitor as role app: sees every session and replica, may cancel the batches"
        );
    }

    #[test]
    fn a_role_outside_pg_read_all_stats_is_told_which_signals_are_blind() {
        let warnings = sight(false, true, "watcher").warnings(&ThrottlePolicy::default());
        assert_eq!(
            warnings,
            [
                "the monitor's role watcher is not a member of pg_read_all_stats, so it cannot see \
              other roles' connections, sessions idle in transaction, the replicas' lag or \
              autovacuum on the table and those signals never fire; run `GRANT pg_monitor TO \
              \"watcher\";`"
            ]
        );
    }

    #[test]
    fn blindness_matters_only_for_the_signals_that_are_on() {
        let all = ThrottlePolicy {
            max_active_sessions: 16,
            ..ThrottlePolicy::default()
        };
        let few = ThrottlePolicy {
            max_idle_in_transaction: Duration::ZERO,
            max_replica_lag: Duration::ZERO,
            max_replica_lag_bytes: 0,
            watch_autovacuum: false,
            ..ThrottlePolicy::default()
        };
        let cases = [
            (
                all,
                "other roles' connections, sessions idle in transaction, active sessions, the \
                 replicas' lag or autovacuum on the table",
            ),
            (few.clone(), "other roles' connections"),
            (
                ThrottlePolicy {
                    watch_autovacuum: true,
                    ..few
                },
                "other roles' connections or autovacuum on the table",
            ),
        ];
        for (policy, blind) in cases {
            let warnings = sight(false, true, "watcher").warnings(&policy);
            assert_eq!(warnings.len(), 1);
            assert!(
                warnings[0].contains(&format!("cannot see {blind} and those")),
                "{warnings:?}"
            );
        }
    }

    #[test]
    fn a_role_that_may_not_cancel_is_told_how_to_yield() {
        let other = sight(true, false, "watcher").warnings(&ThrottlePolicy::default());
        assert_eq!(
            other,
            [
                "the monitor's role watcher may not cancel the queries of app, so it cannot yield: a \
              session waiting on a batch waits until the batch commits or reaches its lock \
              timeout; run `GRANT pg_signal_backend TO \"watcher\";` (or `GRANT \"app\" TO \
              \"watcher\";`)"
            ]
        );
        let of_superuser = Privileges {
            batch_superuser: true,
            ..sight(true, true, "watcher")
        };
        let warnings = of_superuser.warnings(&ThrottlePolicy::default());
        assert!(
            warnings[0].ends_with(
                "only a superuser may cancel a superuser's query: connect the monitor as a \
                 superuser, or run the job as a role that is not one"
            ),
            "{warnings:?}"
        );
        let no_yield = ThrottlePolicy {
            yield_to_waiters: false,
            ..ThrottlePolicy::default()
        };
        assert!(sight(true, false, "watcher").warnings(&no_yield).is_empty());
    }

    #[test]
    fn a_monitor_that_is_off_needs_nothing() {
        let off = ThrottlePolicy {
            enabled: false,
            ..ThrottlePolicy::default()
        };
        assert!(sight(false, false, "watcher").warnings(&off).is_empty());
    }

    #[test]
    fn a_mysql_account_is_told_what_it_cannot_see_in_mysql_terms() {
        let blind = Privileges {
            mysql: Some(MysqlSight {
                mariadb: false,
                metadata_locks: false,
            }),
            ..sight(false, false, "watcher@%")
        };
        let warnings = blind.warnings(&ThrottlePolicy::default()).join("\n");
        for said in [
            "watcher@% lacks PROCESS",
            "GRANT PROCESS ON *.* TO 'watcher'@'%';",
            "GRANT SELECT ON performance_schema.* TO 'watcher'@'%';",
            "may not KILL QUERY the batches of app",
            "CONNECTION_ADMIN",
        ] {
            assert!(warnings.contains(said), "{said:?} not in {warnings}");
        }
        let mariadb = Privileges {
            mysql: Some(MysqlSight {
                mariadb: true,
                metadata_locks: false,
            }),
            ..sight(true, true, "app@%")
        };
        assert!(mariadb.warnings(&ThrottlePolicy::default()).is_empty());
        assert_eq!(
            mariadb.describe(),
            "monitor as account app@%: sees every session (PROCESS), metadata locks from the \
             processlist, may KILL QUERY the batches (the same account)"
        );
    }
}
