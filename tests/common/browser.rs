//! A real browser for the tests of web pages: Debian's headless Chromium, driven through its
//! chromedriver over WebDriver (fantoccini), so that a test clicks, types and reads a page as a
//! person would, with the page's own JavaScript running.
//!
//! [`Browser::start`] starts a chromedriver of the test's own and opens one session of
//! Chromium in it, with a throwaway profile. Both programs are Debian's (`apt-get install
//! chromium chromium-driver`, which `.ci/run` does); `CHROMIUM` and `CHROMEDRIVER` name others.
//! A machine without them skips the test, saying so; any other failure fails it.
//!
//! Every helper waits for what it needs (an element to appear, a text to come true) up to
//! [`WAIT`], and panics with what it last saw. Nothing is left running: [`Browser::close`]
//! quits the session, and dropping the browser (a test that panicked) kills chromedriver with
//! everything it started. What this module does not do: serve the page under test.

use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::WAIT;

/// How often [`Browser::wait_for_text`] looks again, and chromedriver's log for its port.
const POLL: Duration = Duration::from_millis(100);

/// What to do when the programs are missing.
const INSTALL: &str = "apt-get install chromium chromium-driver";

/// chromedriver's output and Chromium's, in the browser's directory.
const LOG: &str = "chromedriver.log";

/// Chromium's flags, each needed here:
const CHROMIUM_FLAGS: &[&str] = &[
    // No display: CI and the developers' machines have none.
    "--headless=new",
    // We are root, and Chromium refuses to start its sandbox as root.
    "--no-sandbox",
    // No GPU either: software rendering, without the GPU process's probing and warnings.
    "--disable-gpu",
    // Shared memory in /tmp: a container's /dev/shm can be too small, and Chromium then crashes.
    "--disable-dev-shm-usage",
    // The window's size. A screenshot is of the page inside it, a little shorter (1280x757 in
    // Chromium 156, which draws no window frame but keeps room for one).
    "--window-size=1280,900",
];

/// One Chromium session, driven by a chromedriver of its own.
pub struct Browser {
    // Dropped in this order: the session's handle, the processes, then their directory.
    client: Client,
    driver: Driver,
    /// Chromium's profile, its configuration and cache, and the [`LOG`].
    dir: TempDir,
}

impl Browser {
    /// Starts chromedriver and opens a Chromium session in it; `None`, after saying why on
    /// stderr, when Chromium or chromedriver is not installed.
    ///
    /// # Panics
    ///
    /// When `CHROMIUM` or `CHROMEDRIVER` names a file that does not exist, or when the programs
    /// are there but do not start: with chromedriver's log, which has Chromium's output too.
    pub async fn start() -> Option<Browser> {
        let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver", "chromium-driver")?;
        let chromium = program("CHROMIUM", "/usr/bin/chromium", "chromium")?;
        let dir = TempDir::new().expect("create the browser's directory");
        let (driver, port) = {
            let dir = dir.path().to_owned();
            tokio::task::spawn_blocking(move || Driver::start(&chromedriver, &dir))
                .await
                .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
        };
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|&flag| flag.to_owned()).collect();
        args.push(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ));
        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        // A page that never loads fails the test after WAIT, not after WebDriver's 300 s.
        capabilities.insert(
            "timeouts".into(),
            json!({ "pageLoad": WAIT.as_millis() as u64 }),
        );
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "open a session of {} in chromedriver: {error}\n{}",
                    chromium.display(),
                    read_log(dir.path())
                )
            });
        Some(Browser {
            client,
            driver,
            dir,
        })
    }

    /// Opens `url`, and returns once the page has loaded (its `load` event).
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("open {url}: {error}"));
    }

    /// Clicks the element `selector` matches, once there is one.
    pub async fn click(&self, selector: &str) {
        self.find(selector)
            .await
            .click()
            .await
            .unwrap_or_else(|error| panic!("click {selector}: {error}"));
    }

    /// Types `text` into the input `selector` matches, once there is one, replacing what it
    /// held: the test says what the field holds, whatever the page filled in.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let input = self.find(selector).await;
        input
            .clear()
            .await
            .unwrap_or_else(|error| panic!("clear {selector}: {error}"));
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|error| panic!("type {text:?} into {selector}: {error}"));
    }

    /// The text the element `selector` matches shows, once there is one.
    pub async fn text(&self, selector: &str) -> String {
        self.find(selector)
            .await
            .text()
            .await
            .unwrap_or_else(|error| panic!("read the text of {selector}: {error}"))
    }

    /// Waits until an element matches `selector` and its text satisfies `accept`, and returns
    /// that text. The page changes on its own time (a fetch, a timer), so it looks again and
    /// again, up to [`WAIT`].
    ///
    /// # Panics
    ///
    /// After [`WAIT`], with the text it last saw, or why it saw none.
    pub async fn wait_for_text(&self, selector: &str, accept: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let seen = match self.client.find(Locator::Css(selector)).await {
                // The element can be replaced between the two calls: then look again.
                Ok(element) => element
                    .text()
                    .await
                    .map_err(|error| format!("its text could not be read: {error}")),
                Err(error) => Err(format!("no element matched: {error}")),
            };
            match seen {
                Ok(text) if accept(&text) => return text,
                _ if started.elapsed() < WAIT => tokio::time::sleep(POLL).await,
                Ok(text) => panic!("waited {WAIT:?} for the text of {selector}; it was {text:?}"),
                Err(why) => panic!("waited {WAIT:?} for the text of {selector}; {why}"),
            }
        }
    }

    /// Runs `script` in the page, as the body of a function (`return …` gives its value), and
    /// returns what it returned, as JSON.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|error| panic!("run {script:?} in the page: {error}"))
    }

    /// Saves what the window shows as a PNG at `path`, creating its directory, so that a person
    /// can look at what the test saw.
    pub async fn screenshot(&self, path: &Path) {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|error| panic!("take a screenshot: {error}"));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|error| panic!("create {}: {error}", parent.display()));
        }
        fs::write(path, png).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    }

    /// Quits the session, which ends Chromium, then ends chromedriver and removes the profile.
    pub async fn close(self) {
        let Browser {
            client,
            driver,
            dir,
        } = self;
        client
            .close()
            .await
            .unwrap_or_else(|error| panic!("quit the browser: {error}\n{}", read_log(dir.path())));
        // chromedriver before the directory it writes in.
        drop(driver);
        drop(dir);
    }

    /// The element `selector` matches, waiting up to [`WAIT`] for one to appear.
    async fn find(&self, selector: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|error| panic!("find {selector} within {WAIT:?}: {error}"))
    }
}

/// A running chromedriver, in a process group of its own that holds Chromium's processes too
/// (but for its crash handlers, which leave it and exit when Chromium does). Dropping it kills
/// the whole group: killing chromedriver alone leaves Chromium running.
struct Driver {
    child: Child,
}

impl Driver {
    /// Starts `program` on a port it picks itself (`--port=0`), so that no other test can take
    /// the port between our choosing it and chromedriver binding it, and returns the port from
    /// the line chromedriver prints once it listens. Everything goes in `dir`.
    fn start(program: &Path, dir: &Path) -> (Driver, u16) {
        let log = dir.join(LOG);
        let out =
            File::create(&log).unwrap_or_else(|error| panic!("create {}: {error}", log.display()));
        let err = out.try_clone().expect("share chromedriver's log");
        let child = Command::new(program)
            .arg("--port=0")
            // Chromium keeps its crash reports and settings there, not in our home directory.
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", program.display()));
        let mut driver = Driver { child };
        let started = Instant::now();
        loop {
            let printed = fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = listening_port(&printed) {
                return (driver, port);
            }
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("{} exited with {status}:\n{printed}", program.display());
            }
            if started.elapsed() > WAIT {
                panic!(
                    "{} did not listen within {WAIT:?}:\n{printed}",
                    program.display()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A negative pid is the process group: chromedriver and every process of Chromium.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// The program `variable` names, or else `default`; `None`, saying on stderr which package to
/// install, when the default is missing.
fn program(variable: &str, default: &str, package: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable).filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{variable}={}: no such file",
            path.display()
        );
        return Some(path);
    }
    let path = PathBuf::from(default);
    if path.is_file() {
        return Some(path);
    }
    // Past the test harness's capture, so that the skip shows in CI's log.
    let _ = writeln!(
        std::io::stderr(),
        "skipping: {package} is not installed ({INSTALL})"
    );
    None
}

/// The port in chromedriver's "ChromeDriver was started successfully on port 40145."
fn listening_port(log: &str) -> Option<u16> {
    let (_, after) = log.split_once("started successfully on port ")?;
    let digits = after.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// The [`LOG`] in `dir`, for a failure's message.
fn read_log(dir: &Path) -> String {
    let path = dir.join(LOG);
    match fs::read_to_string(&path) {
        Ok(log) => format!("chromedriver's log:\n{log}"),
        Err(error) => format!("(no log at {}: {error})", path.display()),
    }
}
