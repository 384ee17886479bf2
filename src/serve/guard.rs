//! What every request to `backfill serve` passes through: a check of its `Host` (a page on a
//! loopback address answers only to the names of loopback, so that another site cannot reach
//! it through a DNS name it points at 127.0.0.1), and the headers that keep the page out of
//! frames and its files from being read as another type.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The page's policy: its own script and fetches only, its inline style, no frames around it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Which `Host` a request may name.
#[derive(Debug, Clone)]
pub struct Hosts {
    /// The server listens on a loopback address: only loopback names (and `public`) pass.
    loopback: bool,
    /// Names a proxy in front of the server sends (`--public-host`).
    public: Vec<String>,
}

impl Hosts {
    pub fn new(addr: SocketAddr, public: Option<&str>) -> Hosts {
        Hosts {
            loopback: addr.ip().is_loopback(),
            public: public.map(|h| h.to_ascii_lowercase()).into_iter().collect(),
        }
    }

    /// True when a request that names `host` (`name` or `name:port`) may be answered. A server
    /// on another address already needs a token for its controls, and answers any name.
    pub fn allow(&self, host: &str) -> bool {
        if !self.loopback {
            return true;
        }
        let host = host.to_ascii_lowercase();
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => &host[..],
        };
        let ip = name.trim_start_matches('[').trim_end_matches(']');
        name == "localhost"
            || ip
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || self.public.iter().any(|p| p == name)
    }
}

/// Refuses a request whose `Host` is not allowed (421, saying what to do), and adds the
/// security headers to every answer.
pub async fn check(State(hosts): State<Arc<Hosts>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let mut response = if hosts.allow(host) {
        next.run(request).await
    } else {
        (
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "backfill serve answers on loopback names only, not {host:?}; \
                 a proxy in front of it names itself with --public-host\n"
            ),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(addr: &str, public: Option<&str>) -> Hosts {
        Hosts::new(addr.parse().unwrap(), public)
    }

    #[test]
    fn a_loopback_server_answers_loopback_names_only() {
        let h = hosts("127.0.0.1:8080", None);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "127.0.0.1",
        ] {
            assert!(h.allow(ok), "{ok}");
        }
        for refused in [
            "evil.example:8080",
            "evil.example",
            "127.0.0.1.evil.example:8080",
            "",
        ] {
            assert!(!h.allow(refused), "{refused}");
        }
    }

    #[test]
    fn a_proxys_name_is_allowed_when_given() {
        let h = hosts("127.0.0.1:8080", Some("backfill.example.com"));
        assert!(h.allow("backfill.example.com"));
        assert!(h.allow("Backfill.Example.com:443"));
        assert!(!h.allow("other.example.com"));
    }

    #[test]
    fn a_server_on_another_address_answers_any_name() {
        assert!(hosts("0.0.0.0:8080", None).allow("backfill.internal:8080"));
    }
}
