//! A real headless Chromium driven over WebDriver (chromedriver), for the
//! console's browser tests. Without chromium or chromedriver the tests are
//! skipped with a note, except under CI=true, where they fail.
#![allow(dead_code, clippy::unwrap_used)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// A fresh browser of `width` × `height`, or None (skipped) when the
    /// machine has no chromium.
    pub async fn start(width: u32, height: u32) -> Option<Browser> {
        let chromium = find(&["chromium", "chromium-browser", "google-chrome"]);
        let driver = find(&["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but chromium or chromedriver is missing: apt-get install chromium chromium-driver"
                );
            }
            eprintln!(
                "skipped: chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
            );
            return None;
        };
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // its own process group: dropping the browser kills chromedriver and
        // every chromium process it started, even when a test panics
        let child = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", "--force-device-scale-factor=1",
                         format!("--window-size={width},{height}")],
            }),
        );
        // chromedriver may accept its port before it can open a session (a
        // reset connection on a loaded host): a few tries
        let mut tries = 0;
        let client = loop {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(caps.clone());
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(client) => break client,
                Err(e) if tries < 5 => {
                    tries += 1;
                    eprintln!("chromedriver session refused ({e}), retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("chromedriver: {e}"),
            }
        };
        Some(Browser {
            client,
            driver: child,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub async fn path(&self) -> String {
        let u = self.client.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    /// The element `css` selects, waited for up to 15 s.
    pub async fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    pub async fn text(&self, css: &str) -> String {
        let el = self.element(css).await;
        el.text().await.unwrap()
    }

    pub async fn click(&self, css: &str) {
        let el = self.element(css).await;
        el.click().await.unwrap();
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.element(css).await;
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    /// Marks the current document, for [`Browser::wait_reload`].
    pub async fn mark(&self) {
        self.js("window.__fetchq_mark = 1; return null;").await;
    }

    /// Waits until the marked document was replaced (a reload or a navigation).
    pub async fn wait_reload(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let gone = self
                .client
                .execute("return window.__fetchq_mark === undefined && document.readyState === 'complete';", vec![])
                .await
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if gone {
                return;
            }
            assert!(Instant::now() < deadline, "the page never reloaded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits until the text of `css` satisfies `ok` (up to 20 s).
    pub async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.client.find(Locator::Css(css)).await;
            if let Ok(el) = found
                && let Ok(t) = el.text().await
                && ok(&t)
            {
                return t;
            }
            if Instant::now() > deadline {
                let now = match self.client.find(Locator::Css(css)).await {
                    Ok(el) => el.text().await.unwrap_or_default(),
                    Err(_) => "<missing>".into(),
                };
                panic!(
                    "{css} never matched; it shows {now:?} on {}",
                    self.path().await
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Whether the element is disabled (itself or by its fieldset).
    pub async fn disabled(&self, css: &str) -> bool {
        let script = format!(
            "return document.querySelector({}).matches(':disabled');",
            json!(css)
        );
        self.js(&script).await.as_bool().unwrap()
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.unwrap()
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
