//! The browser harness itself (`common::browser`), on a page of its own: Chromium types, clicks,
//! runs the page's JavaScript, reads the page back and takes a screenshot; markup put on the
//! page as text stays text. The tests of `backfill serve`'s page stand on this.
//!
//! Skipped, saying why, where Chromium or chromedriver is not installed (`.ci/run` installs
//! both); any other failure fails it.

mod common;

use std::path::Path;

use common::browser::Browser;
use serde_json::json;
use tempfile::TempDir;

/// A form whose button shows what was typed, as text (`textContent`) or, for the control, as
/// markup (`innerHTML`).
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>browser smoke</title>
<label>Name <input id="name"></label>
<button id="show">Show</button>
<button id="render">Render as HTML</button>
<p id="shown"></p>
<p id="rendered"></p>
<p id="ran"></p>
<script>
  const name = document.getElementById("name");
  document.getElementById("show").addEventListener("click", () => {
    document.getElementById("shown").textContent = name.value;
  });
  document.getElementById("render").addEventListener("click", () => {
    document.getElementById("rendered").innerHTML = name.value;
  });
</script>
"#;

/// Markup whose image fails to load at once, and whose handler then writes into `#ran`.
const MARKUP: &str = r#"<img src=x onerror="document.getElementById('ran').textContent = 'ran'">"#;

#[tokio::test]
async fn types_clicks_and_keeps_markup_as_text() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = TempDir::new().expect("create the page's directory");
    let page = dir.path().join("page.html");
    std::fs::write(&page, PAGE).expect("write the page");
    browser.goto(&format!("file://{}", page.display())).await;

    browser.type_into("#name", "crab 🦀").await;
    browser.click("#show").await;
    browser
        .wait_for_text("#shown", |text| text == "crab 🦀")
        .await;

    browser.type_into("#name", MARKUP).await;
    browser.click("#show").await;
    browser.wait_for_text("#shown", |text| text == MARKUP).await;
    assert_eq!(
        browser
            .eval("return document.getElementById('shown').innerHTML")
            .await,
        json!(MARKUP.replace('<', "&lt;").replace('>', "&gt;")),
        "the markup is escaped text"
    );
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('img').length")
            .await,
        json!(0),
        "no image was made of it"
    );
    assert_eq!(browser.text("#ran").await, "", "its handler did not run");

    // The control: the same markup given to the page as HTML does run, so the checks above
    // would have seen it.
    browser.click("#render").await;
    browser.wait_for_text("#ran", |text| text == "ran").await;

    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-smoke.png");
    browser.screenshot(&screenshot).await;
    let png = std::fs::read(&screenshot).expect("read the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    browser.close().await;
}
