//! The JSON API of `backfill serve` and its controls. A job reads as `status --json` shows it,
//! with what the page displays (`display`); a control needs the server's token in
//! `Authorization: Bearer …` — never a cookie, which a browser would send for another site's
//! form, nor the URL, which logs keep.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::report;
use crate::state::{Control, JobRow, StateError};

use super::Shared;
use super::pages::{Card, Chart, RangeLine};
use super::reader::{OneJob, ReadError};

/// A job as the API shows it: `status --json`'s fields, and the page's words for them.
pub fn job_json(row: &JobRow, heap: Option<u64>) -> Value {
    let card = Card::of(row, heap);
    let mut v = report::status_json(row, heap);
    v["display"] = json!({
        "bar": card.bar,
        "rate": card.rate,
        "eta": card.eta,
        "crew": card.crew,
        "reason": card.reason,
        "heap": card.heap,
    });
    v
}

/// One job with its ranges (and the page's words for each, `display_ranges`), its first failed
/// rows and its job file's settings.
pub fn one_job_json(job: &OneJob) -> Value {
    let mut v = job_json(&job.row, job.heap);
    v["ranges"] = job.ranges.iter().map(report::range_json).collect();
    v["display_ranges"] = job
        .ranges
        .iter()
        .map(|r| json!(RangeLine::of(r).cells()))
        .collect();
    v["failures_first"] = job.failed.iter().map(report::failure_json).collect();
    v["settings"] = job
        .row
        .settings
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    v
}

/// `GET /api/jobs`.
pub async fn jobs(State(shared): State<Arc<Shared>>) -> Response {
    match shared.reader.jobs().await {
        Ok(jobs) => {
            let list: Vec<Value> = jobs.iter().map(|(row, heap)| job_json(row, heap)).collect();
            Json(Value::Array(list)).into_response()
        }
        Err(e) => failed(&e),
    }
}

/// `GET /api/jobs/{name}`, with its rate chart (`chart`: the polyline's points and its top).
pub async fn job(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match shared.reader.job(&name).await {
        Ok(job) => {
            let chart = Chart::of(&shared.rates(&name));
            let mut v = one_job_json(&job);
            v["chart"] = json!({ "points": chart.points, "top": chart.top });
            Json(v).into_response()
        }
        Err(e) => failed(&e),
    }
}

/// `POST /api/jobs/{name}/{pause|resume|cancel}`: 401 without the right token, and always on a
/// server that has none (it is read-only).
pub async fn control(
    State(shared): State<Arc<Shared>>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(shared.token.as_deref(), &headers) {
        let why = if shared.token.is_some() {
            "a control needs the server's token in `Authorization: Bearer …`"
        } else {
            "this server has no token (BACKFILL_SERVE_TOKEN or --token-file), so it is read-only"
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": why })),
        )
            .into_response();
    }
    let control = match action.as_str() {
        "pause" => Control::Pause,
        "resume" => Control::Resume,
        "cancel" => Control::Cancel,
        _ => {
            let error = format!("no control {action:?}: pause, resume or cancel");
            return (StatusCode::NOT_FOUND, Json(json!({ "error": error }))).into_response();
        }
    };
    match shared.reader.control(&name, control).await {
        Ok(row) => {
            let message = report::control_text(control, row.lease_is_live());
            Json(json!({ "name": name, "message": format!("{name}: {message}") })).into_response()
        }
        Err(e) => failed(&e),
    }
}

/// True when `headers` carry `Authorization: Bearer <token>` with the server's token.
fn authorized(token: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(token) = token else { return false };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    given.is_some_and(|given| same(given.as_bytes(), token.as_bytes()))
}

/// Compares in time that depends only on the lengths, so that the answer's timing does not
/// tell how much of a guessed token was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A failed read or control as JSON (see [`told`]).
pub fn failed(e: &ReadError) -> Response {
    let (status, error) = told(e);
    (status, Json(json!({ "error": error }))).into_response()
}

/// What a client is told of a failure: 404 for a job that does not exist, 503 while the
/// database cannot be reached, else 500, with the error's first line only (anyone who reaches
/// the page reads it); the whole chain goes to the server's log.
pub fn told(e: &ReadError) -> (StatusCode, String) {
    tracing::warn!("backfill serve: {}", crate::db::error_chain(e));
    let status = match e {
        ReadError::State(StateError::UnknownJob { .. }) => StatusCode::NOT_FOUND,
        ReadError::Connect { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ReadError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn only_the_right_bearer_token_authorizes() {
        assert!(authorized(Some("s3cret"), &bearer("Bearer s3cret")));
        assert!(!authorized(Some("s3cret"), &bearer("Bearer s3cre")));
        assert!(!authorized(Some("s3cret"), &bearer("Basic s3cret")));
        assert!(!authorized(Some("s3cret"), &HeaderMap::new()));
        assert!(!authorized(None, &bearer("Bearer anything")));
    }
}
