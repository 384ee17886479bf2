//! Everything that speaks PostgreSQL: connections and the bounded transactions every session
//! opens (`session`), where to connect (`target`, from libpq's connection settings read
//! by `conninfo`), what an error means (`errors`), identifier
//! quoting (`sql`), the table's catalog facts (`catalog`), every statement about the target
//! table (`plan`), the monitor's sampling of the server (`sample`) and what the monitor may see
//! (`privileges`), and the throwaway cluster of `demo` and the tests (`throwaway`).
//!
//! See ARCHITECTURE.md for the seam this folder sits behind and what is still to move here.

pub mod catalog;
mod conninfo;
pub mod disk;
mod errors;
pub mod plan;
pub mod preflight;
pub mod privileges;
pub mod probe;
pub mod sample;
mod session;
pub mod sql;
pub mod state;
pub mod table;
mod target;
pub mod throwaway;
pub mod vacuum;
pub mod verify;

pub use crate::failure::Failure;
pub use errors::{ServerError, classify, error_chain, gave_up_on_lock, is_row_error};
pub use session::*;
pub use target::{Target, TargetError, hang_up};
