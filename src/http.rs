//! One HTTP stack (axum on the process's tokio runtime) for what `backfill` serves: the
//! metrics of a run (`run --metrics-addr`) and the page of every job (`backfill serve`).
//! Binds at once, so that an address in use is reported before anything else happens, and
//! serves on a task of its own until the owner stops it.

use std::io;
use std::net::SocketAddr;

use axum::Router;
use tokio::task::JoinHandle;

/// A router being served; dropped, it stops.
pub struct Serving {
    task: JoinHandle<()>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` now and serves `router` on it from a task of its own. A client that hangs up
/// or stalls costs only its own connection.
pub fn serve(addr: SocketAddr, router: Router) -> io::Result<Serving> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!("the HTTP server on {addr} stopped: {e}");
        }
    });
    Ok(Serving { task })
}
