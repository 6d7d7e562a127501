//! A real headless Chromium for the console tests, driven over WebDriver (fantoccini)
//! through Debian's chromedriver. Each `Browser` owns its chromedriver process.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

pub struct Browser {
    pub client: Client,
    driver: Child,
}

/// WebDriver's key codes (W3C WebDriver §17.4.2).
pub const ENTER: &str = "\u{E007}";
pub const TAB: &str = "\u{E004}";

impl Browser {
    /// A desktop-sized window (1280 × 900).
    pub async fn start() -> Self {
        Self::start_sized(1280, 900).await
    }

    /// A window of this size in CSS pixels (390 × 844 is a phone).
    pub async fn start_sized(width: u32, height: u32) -> Self {
        let port = crate::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        crate::eventually(Duration::from_secs(20), "chromedriver listens", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        let mut options = serde_json::json!({ "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", format!("--window-size={width},{height}")
        ]});
        // Headless windows have a minimum width; a phone's viewport is emulated instead.
        if width < 600 {
            options["mobileEmulation"] =
                serde_json::json!({ "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2.0 } });
        }
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Self { client, driver }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
    }

    /// A form field's current value (a textarea's text is its initial content only).
    pub async fn value(&self, css: &str) -> String {
        let field = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        field.prop("value").await.unwrap().unwrap_or_default()
    }

    /// Waits until a form field's value contains `expected` (filled by a script).
    pub async fn wait_for_value(&self, css: &str, expected: &str) {
        let what = format!("{css} holds {expected:?}");
        crate::eventually(Duration::from_secs(15), &what, || async { self.value(css).await.contains(expected) }).await;
    }

    /// Types into the focused element (keys such as `TAB` and `ENTER` included).
    pub async fn keys(&self, text: &str) {
        let focused = self.client.active_element().await.unwrap();
        focused.send_keys(text).await.unwrap();
    }

    /// The id of the focused element.
    pub async fn focused_id(&self) -> String {
        self.client.active_element().await.unwrap().attr("id").await.unwrap().unwrap_or_default()
    }

    /// Scrolls an element into view (for a screenshot of it).
    pub async fn scroll_to(&self, css: &str) {
        let script = "document.querySelector(arguments[0]).scrollIntoView();";
        self.client.execute(script, vec![serde_json::json!(css)]).await.unwrap();
    }

    /// The viewport's width in CSS pixels.
    pub async fn viewport_width(&self) -> i64 {
        self.client.execute("return window.innerWidth;", Vec::new()).await.unwrap().as_i64().unwrap()
    }

    /// How far the page is wider than the window (0: no sideways scrolling).
    pub async fn horizontal_overflow(&self) -> i64 {
        let value = self
            .client
            .execute("return document.documentElement.scrollWidth - window.innerWidth;", Vec::new())
            .await
            .unwrap();
        value.as_i64().unwrap()
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    /// Waits until `css` holds `expected` (pages that update themselves).
    pub async fn wait_for_text(&self, css: &str, expected: &str) {
        let start = Instant::now();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && element.text().await.is_ok_and(|t| t.contains(expected))
            {
                return;
            }
            if start.elapsed() > Duration::from_secs(15) {
                let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                let page = self.client.source().await.unwrap_or_default();
                let page: String = page.chars().take(3000).collect();
                panic!("{css} never showed {expected:?} (at {url}):\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot when POSTERN_SCREENSHOTS names a folder (for the README).
    pub async fn screenshot(&self, name: &str) {
        if let Some(dir) = std::env::var_os("POSTERN_SCREENSHOTS") {
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
