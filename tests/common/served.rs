//! `backfill serve` as an operator starts it, for the page's tests: a real process on a free
//! loopback port, with or without a token, and plain HTTP calls to it as a browser's fetch or
//! Prometheus make them.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{Runner, TestDb, WAIT, run_backfill};

/// The token the tests' servers take.
pub const TOKEN: &str = "test-token-7f3a";

/// A running `backfill serve`.
pub struct Served {
    pub runner: Runner,
    pub port: u16,
}

/// Waits until `run`'s job `items_total` is paused by the operator, and checks that
/// `backfill status` says so.
pub async fn operator_paused(run: &mut Runner, db: &TestDb) {
    run.wait_until(
        &db.pool,
        "(SELECT note = 'paused: by operator' FROM backfill.jobs)",
    )
    .await;
    let status = run_backfill(&db.url, &["status", "items_total"]);
    assert!(status.stdout.contains("paused"), "{}", status.stdout);
}

/// A free port on 127.0.0.1 (free when asked; the server binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// What an HTTP call answered: the status and the body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Served {
    /// Starts `backfill serve` on the database at `url` (with [`TOKEN`] when `token`), and
    /// waits until it answers.
    pub async fn start(url: &str, dir: &TempDir, token: bool) -> Served {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--addr", addr.as_str()];
        let token_file = dir.path().join("token");
        let token_path = token_file.display().to_string();
        if token {
            std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write the token file");
            args.extend(["--token-file", token_path.as_str()]);
        }
        let mut runner = Runner::spawn(url, dir, "serve", &args);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = runner.child.try_wait().expect("poll the server") {
                let out = runner.output(status);
                panic!("backfill serve exited: {}\n{}", out.stdout, out.stderr);
            }
            if ureq::get(&format!("http://{addr}/api/jobs")).call().is_ok() {
                return Served { runner, port };
            }
            assert!(Instant::now() < deadline, "backfill serve did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Answer {
        self.call(
            ureq::get(&self.url(path))
                .config()
                .http_status_as_error(false)
                .build()
                .call(),
        )
    }

    /// `POST path`, with `Authorization: Bearer <bearer>` when given.
    pub fn post(&self, path: &str, bearer: Option<&str>) -> Answer {
        let mut request = ureq::post(&self.url(path))
            .config()
            .http_status_as_error(false)
            .build();
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.call(request.send_empty())
    }

    /// The status line and headers of `GET /` sent with `Host: host`, as a browser sends a
    /// request to a name that points at 127.0.0.1.
    pub fn head_as(&self, host: &str) -> String {
        use std::io::{Read as _, Write as _};
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the server");
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .expect("send a request");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// `http://127.0.0.1:PORT` and `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn call(&self, answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut answer = answer.unwrap_or_else(|e| panic!("call backfill serve: {e}"));
        Answer {
            status: answer.status().as_u16(),
            body: answer.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    /// `GET /api/jobs/NAME` as JSON.
    pub fn job(&self, name: &str) -> serde_json::Value {
        let answer = self.get(&format!("/api/jobs/{name}"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        serde_json::from_str(&answer.body).expect("the API's JSON")
    }
}
