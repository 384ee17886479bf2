//! The state tables on real MariaDB and MySQL servers, through the seam (`Store` over
//! `db::Conn::Mysql`), as the engine uses them: creating them (twice, and from several
//! processes at once), a job's lease and heartbeat, laying out ranges and claiming them past
//! each other's locks, the checkpoint and its guards, splits, the operator's control, reset, and
//! failed rows. Keys compare in their own order — numbers as numbers, text in its collation —
//! never as the JSON text they are stored as.
//!
//! One server per flavor serves every test here (`fixture`), each test in a state schema of its
//! own. A flavor whose programs are missing is skipped, saying why (`bash .ci/mysql-servers`
//! installs both).

mod fixture;

/// Runs each of the named `async fn(Flavor)` tests on MariaDB and on MySQL, as tests named
/// `TEST::mariadb` and `TEST::mysql`.
macro_rules! on_both {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use super::*;

            #[tokio::test]
            async fn mariadb() {
                super::$test(Flavor::MariaDb).await;
            }

            #[tokio::test]
            async fn mysql() {
                super::$test(Flavor::MySql).await;
            }
        }
    )*};
}

mod jobs;
mod ranges;
