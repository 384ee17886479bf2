//! Everything that speaks MySQL and MariaDB lives here, beside `postgres/`, as ARCHITECTURE.md's
//! "Where to add … a database" lays out. Today that is the throwaway server of the tests and of
//! `backfill demo` (`throwaway`); the sessions, the planner, the state tables' statements, the
//! monitor's sample and the error classes come as the seam gains its `Mysql` variants.

pub mod throwaway;
