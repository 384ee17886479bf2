//! `backfill serve`: a long-running web page of every job in one database's state tables, run
//! by any process on any host — progress, rate, workers, why it waits, its heap and the rows
//! set aside — with its JSON API, its Prometheus metrics, and pause, resume and cancel for
//! whoever holds the server's token.
//!
//! It reads through the same seam as every command (`reader.rs`), samples every job every
//! [`SAMPLE_EVERY`] for the rate charts (`history.rs`) and the metrics, renders HTML with
//! compile-time templates (`pages.rs`, `templates/`), and answers JSON and controls in
//! `api.rs`. Safe by default: it binds to loopback unless told otherwise, and refuses any
//! other address without a token; without a token it is read-only.

mod api;
mod guard;
mod history;
mod pages;
mod reader;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use thiserror::Error;
use tokio::sync::watch;

use crate::db::error_chain;
use crate::metrics::Metrics;

use history::History;
use pages::{Card, Index, JobPage};
pub use reader::Reader;

/// How often the server reads every job for its charts and metrics.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// The page's script, served as a file of its own.
const SCRIPT: &str = include_str!("../../static/serve.js");

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error(
        "--addr {addr} is not a loopback address and no token is set: anyone who can reach it \
         could pause or cancel your jobs. Set BACKFILL_SERVE_TOKEN (or --token-file), or bind to \
         127.0.0.1 and put a proxy in front"
    )]
    OpenWithoutToken { addr: SocketAddr },
    #[error("the token file {path} is empty; write the token in it, or leave --token-file out")]
    EmptyToken { path: String },
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What every request shares.
pub struct Shared {
    reader: Reader,
    token: Option<String>,
    history: Mutex<History>,
    metrics: Mutex<Metrics>,
    started: Instant,
}

impl Shared {
    /// `job`'s rates from the server's samples.
    fn rates(&self, job: &str) -> Vec<(f64, f64)> {
        self.history
            .lock()
            .map(|h| h.rates(job))
            .unwrap_or_default()
    }
}

/// Checks that `addr` may be served with `token`: a non-loopback address needs one.
pub fn check_addr(addr: SocketAddr, token: Option<&str>) -> Result<(), ServeError> {
    if addr.ip().is_loopback() || token.is_some() {
        Ok(())
    } else {
        Err(ServeError::OpenWithoutToken { addr })
    }
}

/// Where and how the server listens.
pub struct Listen {
    pub addr: SocketAddr,
    /// The token the controls need; `None`: read-only.
    pub token: Option<String>,
    /// The name a proxy in front of a loopback server sends as `Host`.
    pub public_host: Option<String>,
}

/// Serves the page of `reader`'s jobs until `shutdown`.
pub async fn serve(
    reader: Reader,
    listen: Listen,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let Listen {
        addr,
        token,
        public_host,
    } = listen;
    check_addr(addr, token.as_deref())?;
    let metrics = Metrics::new();
    let metrics_routes = metrics.router();
    let shared = Arc::new(Shared {
        reader,
        token,
        history: Mutex::new(History::default()),
        metrics: Mutex::new(metrics),
        started: Instant::now(),
    });
    let hosts = Arc::new(guard::Hosts::new(addr, public_host.as_deref()));
    let router = Router::new()
        .route("/", get(index))
        .route("/jobs/{name}", get(job_page))
        .route("/serve.js", get(script))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{name}", get(api::job))
        .route("/api/jobs/{name}/{action}", post(api::control))
        .with_state(Arc::clone(&shared))
        .merge(metrics_routes)
        .layer(axum::middleware::from_fn_with_state(hosts, guard::check));
    let _serving =
        crate::http::serve(addr, router).map_err(|source| ServeError::Bind { addr, source })?;
    eprintln!("backfill serve: http://{addr}/ (Ctrl-C to stop)");
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => sample(&shared).await,
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Reads every job once for the charts and the metrics; a failed read is said in the log and
/// tried again next time.
async fn sample(shared: &Shared) {
    let jobs = match shared.reader.jobs().await {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!(
                "backfill serve could not read the jobs: {}",
                error_chain(&e)
            );
            return;
        }
    };
    let at = shared.started.elapsed().as_secs_f64();
    if let (Ok(mut history), Ok(mut metrics)) = (shared.history.lock(), shared.metrics.lock()) {
        for (row, heap) in jobs.iter() {
            history.push(&row.name, at, row.rows_done);
            metrics.observe(row, heap);
        }
    }
}

/// `GET /`.
async fn index(State(shared): State<Arc<Shared>>) -> Response {
    match shared.reader.jobs().await {
        Ok(jobs) => {
            let page = Index {
                cards: jobs.iter().map(|(row, heap)| Card::of(row, heap)).collect(),
                controls: shared.token.is_some(),
                every_ms: SAMPLE_EVERY.as_millis(),
            };
            html(page.render())
        }
        Err(e) => error_page(&e),
    }
}

/// `GET /jobs/{name}`.
async fn job_page(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match shared.reader.job(&name).await {
        Ok(job) => html(JobPage::of(&job, &shared.rates(&name), shared.token.is_some()).render()),
        Err(e) => error_page(&e),
    }
}

/// `GET /serve.js`.
async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// A page that could not be read, as plain text with the API's status code.
fn error_page(e: &reader::ReadError) -> Response {
    let (status, error) = api::told(e);
    (status, format!("{error}\n")).into_response()
}

/// A rendered page, or why it could not be rendered.
fn html(rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(page) => Html(page).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_may_go_without_a_token() {
        let addr = |a: &str| a.parse::<SocketAddr>().unwrap();
        assert!(check_addr(addr("127.0.0.1:8080"), None).is_ok());
        assert!(check_addr(addr("[::1]:8080"), None).is_ok());
        assert!(check_addr(addr("0.0.0.0:8080"), None).is_err());
        assert!(check_addr(addr("0.0.0.0:8080"), Some("t")).is_ok());
    }
}
