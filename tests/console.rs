//! The console in a real browser: a real `up` (time scale 20), headless
//! Chromium driven through WebDriver (chromedriver, plain HTTP), axe-core
//! (vendored in `tests/assets/axe-core`) for accessibility. Debian's
//! `chromium` and `chromium-driver` must be installed (`scripts/test.sh`
//! installs them). Screenshots of every step go to
//! `target/tmp/console-screenshots/<test name>/`.
//!
//! `the_console_watches_an_incident_from_fault_to_report` is the one flow
//! test; `console_pages_refuse_what_they_must` checks the HTTP side of the
//! console (login, cookie, CSRF, bad input) on the same real `up`, no browser.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod util;
use util::Up;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .max_redirects(0)
        .build()
        .into()
}

/// Background traffic to the load balancer, bounded in time, stopped on drop.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    /// About `per_second` requests a second to product pages, for at most `limit`.
    fn start(lb: String, per_second: u32, limit: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let handle = std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let start = Instant::now();
            let gap = Duration::from_secs(1) / per_second;
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) && start.elapsed() < limit {
                let _ = agent
                    .get(format!("{lb}/api/products/{}", 1 + i % 20))
                    .call();
                i += 1;
                n.store(i, Ordering::Relaxed);
                std::thread::sleep(gap);
            }
        });
        Traffic {
            stop,
            sent,
            handle: Some(handle),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A WebDriver session on a chromedriver this test started.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    step: u32,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    fn start(test: &str) -> Browser {
        for bin in ["chromium", "chromedriver"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "{bin} is not installed: the browser tests need Debian's chromium and chromium-driver (scripts/test.sh installs them)"
            );
        }
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent()
            .get(format!("{base}/status"))
            .call()
            .map_or(true, |r| r.status() != 200)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut r = agent()
            .post(format!("{base}/session"))
            .send_json(&caps)
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("console-screenshots")
            .join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap();
        eprintln!("screenshots: {}", shots.display());
        Browser {
            driver,
            base,
            session,
            _profile: profile,
            shots,
            step: 0,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut r = match method {
            "GET" => agent().get(&url).call().unwrap(),
            _ => agent().post(&url).send_json(&body).unwrap(),
        };
        let status = r.status().as_u16();
        let v: Value = r.body_mut().read_json().unwrap();
        assert_eq!(status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn open(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    fn text(&self, css: &str) -> String {
        let v = self.js(&format!(
            "const e = document.querySelector({}); return e ? e.textContent : null;",
            json!(css)
        ));
        v.as_str().unwrap_or("").to_string()
    }

    fn count(&self, css: &str) -> u64 {
        self.js(&format!(
            "return document.querySelectorAll({}).length;",
            json!(css)
        ))
        .as_u64()
        .unwrap()
    }

    fn click(&self, css: &str) {
        let el = self.cmd(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        let id = el
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string();
        self.cmd("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// Polls `cond` every 250 ms until it holds or `limit` passes.
    fn wait(&self, what: &str, limit: Duration, mut cond: impl FnMut(&Browser) -> bool) {
        let deadline = Instant::now() + limit;
        while !cond(self) {
            if Instant::now() > deadline {
                self.screenshot("timeout");
                panic!(
                    "timed out after {limit:?} waiting for {what}; page: {}",
                    self.text("main")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.cmd("GET", "/screenshot", Value::Null);
        let png = base64_decode(v.as_str().unwrap());
        let path = self.shots.join(format!("{:02}-{name}.png", self.step));
        std::fs::write(&path, png).unwrap();
        path
    }

    fn shot(&mut self, name: &str) {
        self.step += 1;
        self.screenshot(name);
    }

    /// Browser console messages at SEVERE level since the last call
    /// (JavaScript errors, failed loads, CSP refusals).
    fn console_errors(&self) -> Vec<String> {
        let v = self.cmd("POST", "/se/log", json!({"type": "browser"}));
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn assert_no_console_errors(&self, page: &str) {
        let errors = self.console_errors();
        assert!(
            errors.is_empty(),
            "JavaScript console errors on {page}: {errors:#?}"
        );
    }

    /// axe-core's WCAG 2 A/AA violations on the current page.
    fn axe(&self) -> Vec<String> {
        let axe = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/assets/axe-core/axe.min.js"),
        )
        .unwrap();
        // Injected as a function body (not a <script> tag): the console's CSP allows no inline script.
        self.js(&format!("{axe}\n;window.__axe = axe; return true;"));
        let v = self.cmd(
            "POST",
            "/execute/async",
            json!({"script": "const done = arguments[arguments.length - 1]; window.__axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}).then(r => done(r.violations.map(v => v.id + ': ' + v.help + ' — ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')))).catch(e => done(['axe failed: ' + e]));", "args": []}),
        );
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = agent()
            .delete(format!("{}/session/{}", self.base, self.session))
            .call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        let take = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..=take]);
    }
    out
}

#[test]
fn the_console_watches_an_incident_from_fault_to_report() {
    let up = Up::ready();
    let base = up.base();
    let mut b = Browser::start("the_console_watches_an_incident_from_fault_to_report");

    // 1. The URL `up` printed logs in and lands on the overview: two healthy tasks.
    b.open(&up.console_url());
    b.wait("two healthy tasks", Duration::from_secs(30), |b| {
        b.count("#tasks [data-health=healthy]") == 2
    });
    let address = b.js("return location.href;");
    assert_eq!(
        address,
        json!(format!("{base}/")),
        "the token is dropped from the address"
    );
    assert!(b.text("#healthy-count").contains("2 of 2 tasks healthy"));
    b.shot("overview");
    b.assert_no_console_errors("the overview");
    let violations = b.axe();
    assert!(
        violations.is_empty(),
        "axe on the overview: {violations:#?}"
    );

    // 2. Traffic, then the error fault injected from the page's menu.
    let traffic = Traffic::start(up.lb(), 40, Duration::from_secs(120));
    b.js("document.getElementById('fault-preset').value = 'errors'; document.getElementById('fault-target').value = 'all'; return true;");
    b.click("#inject");
    b.wait("the fault to be injected", Duration::from_secs(15), |b| {
        b.text("#action-result").starts_with("Injected")
    });
    b.shot("fault-injected");

    // 3. The alarm turns red on the page, without a reload.
    let marker = b.js("window.__no_reload = 1; return 1;");
    assert_eq!(marker, json!(1));
    b.wait("error-count-high in ALARM", Duration::from_secs(60), |b| {
        b.text("tr[data-alarm='error-count-high'] [data-state]") == "ALARM"
    });
    assert_eq!(
        b.js("return window.__no_reload || 0;"),
        json!(1),
        "the page updated itself"
    );
    let colour = b.js("return getComputedStyle(document.querySelector(\"tr[data-alarm='error-count-high'] [data-state]\")).backgroundColor;");
    assert_eq!(colour, json!("rgb(179, 0, 30)"), "ALARM is shown red");
    b.shot("alarm-red");

    // 4. The investigation that follows: root cause and charts.
    b.wait("an investigation", Duration::from_secs(90), |b| {
        b.count("#latest-investigations a") > 0
    });
    b.shot("investigation-listed");
    b.click("#latest-investigations a");
    b.wait("the report", Duration::from_secs(10), |b| {
        b.text("h1").starts_with("Investigation")
    });
    let headings = b.js("return [...document.querySelectorAll('h2')].map(h => h.textContent);");
    assert!(
        headings
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "Root cause"),
        "{headings}"
    );
    let root = b.js("const h = [...document.querySelectorAll('h2')].find(h => h.textContent == 'Root cause'); return h.nextElementSibling.textContent;");
    assert!(
        root.as_str().unwrap().contains("application fault")
            || root.as_str().unwrap().contains("application_fault"),
        "root cause: {root}"
    );
    assert!(b.count("figure svg") >= 2, "the report's charts");
    // Every in-page link (evidence ids) leads somewhere on the page.
    let dangling = b.js("return [...document.querySelectorAll('a[href^=\"#\"]')].map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(decodeURIComponent(id)));");
    assert_eq!(dangling, json!([]), "in-page links without a target");
    b.shot("report");
    b.assert_no_console_errors("the report");
    let violations = b.axe();
    assert!(violations.is_empty(), "axe on the report: {violations:#?}");

    // 5. The alarm's page: its metric with the ALARM period shaded.
    b.open(&format!("{base}/console/alarms/error-count-high"));
    b.wait("the alarm chart", Duration::from_secs(10), |b| {
        b.count("svg.chart path.line") == 1
    });
    assert!(
        b.count("svg.chart .alarm-shade") >= 1,
        "ALARM periods shaded"
    );
    assert!(b.count("#transitions tbody tr") >= 2);
    b.shot("alarm-page");
    b.assert_no_console_errors("the alarm page");

    // 6. The errors in the logs, with their JSON fields.
    b.open(&format!("{base}/console/logs?level=ERROR&since=10m"));
    b.wait("error lines", Duration::from_secs(10), |b| {
        b.count("#log-lines tbody tr") > 0
    });
    assert!(b.count("#log-lines tbody tr details dl.fields dt") > 0);
    b.shot("logs");
    b.assert_no_console_errors("the logs page");

    // 7. Reset from the page; the alarm clears once the errors stop.
    b.open(&format!("{base}/"));
    b.click("#reset");
    b.wait("the reset", Duration::from_secs(15), |b| {
        b.text("#action-result").starts_with("Faults reset")
    });
    b.wait(
        "error-count-high back to OK",
        Duration::from_secs(60),
        |b| b.text("tr[data-alarm='error-count-high'] [data-state]") == "OK",
    );
    b.shot("reset");
    b.assert_no_console_errors("the overview after the reset");
    assert!(traffic.sent.load(Ordering::Relaxed) > 100);
    drop(traffic);
}

#[test]
fn console_pages_refuse_what_they_must() {
    let up = Up::ready();
    let base = up.base();
    let login = up.console_url();
    let get = |path: &str, cookie: Option<&str>| {
        let mut b = agent().get(format!("{base}{path}"));
        if let Some(c) = cookie {
            b = b.header("cookie", c);
        }
        let mut r = b.call().unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (
            status,
            r.body_mut().read_to_string().unwrap_or_default(),
            headers,
        )
    };
    // Without a session: a login page, not the console.
    let (status, body, _) = get("/", None);
    assert_eq!(status, 401);
    assert!(body.contains("name=\"token\"") && !body.contains("Tasks and targets"));
    // The printed URL logs in.
    let r = agent().get(&login).call().unwrap();
    assert_eq!(r.status(), 303);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let (status, body, headers) = get("/", Some(&cookie));
    assert_eq!(status, 200);
    assert!(body.contains("Tasks and targets"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let csrf = body
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    assert_eq!(csrf.len(), 64);
    // The cookie is not the control API's key.
    assert_eq!(get("/status", Some(&cookie)).0, 401);

    // Actions: CSRF token and our origin, both needed.
    let post = |path: &str, headers: &[(&str, &str)], body: Value| {
        let mut b = agent()
            .post(format!("{base}{path}"))
            .header("cookie", &cookie);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut r = b.send_json(&body).unwrap();
        let status = r.status().as_u16();
        (
            status,
            r.body_mut().read_json::<Value>().unwrap_or(Value::Null),
        )
    };
    let scale = json!({"count": "2"});
    assert_eq!(post("/console/actions/scale", &[], scale.clone()).0, 403);
    assert_eq!(
        post(
            "/console/actions/scale",
            &[("x-csrf-token", &"0".repeat(64))],
            scale.clone()
        )
        .0,
        403
    );
    let origin = [
        ("x-csrf-token", csrf.as_str()),
        ("origin", "http://evil.example"),
    ];
    assert_eq!(
        post("/console/actions/scale", &origin, scale.clone()).0,
        403
    );
    let ok = [("x-csrf-token", csrf.as_str())];
    let (status, v) = post("/console/actions/scale", &ok, scale);
    assert_eq!(status, 200, "{v}");
    // Bad input is named.
    let (status, v) = post("/console/actions/scale", &ok, json!({"count": "99"}));
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("\"99\""), "{v}");
    let (status, v) = post("/console/actions/fault", &ok, json!({"preset": "meteor"}));
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("meteor"), "{v}");
    let (status, v) = post("/console/actions/deploy", &ok, json!({"env": "not a pair"}));
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("\"not\""), "{v}");
    let (status, v) = post("/console/actions/stop", &ok, json!({"task": "task-9999"}));
    assert_eq!(status, 404, "{v}");
    // Pages: unknown things are 404s, bad filters 400s naming the value.
    assert_eq!(get("/console/alarms/no-such-alarm", Some(&cookie)).0, 404);
    assert_eq!(
        get("/console/investigations/inv-nope", Some(&cookie)).0,
        404
    );
    assert_eq!(
        get(
            "/console/scenarios/..%2F..%2Fetc/investigations/x",
            Some(&cookie)
        )
        .0,
        404
    );
    let (status, body, _) = get("/console/logs?level=LOUD", Some(&cookie));
    assert_eq!(status, 400);
    assert!(body.contains("LOUD"));
    assert_eq!(get("/console/logs?since=5y", Some(&cookie)).0, 400);
    for page in [
        "/console/alarms/error-count-high",
        "/console/logs",
        "/console/investigations",
    ] {
        assert_eq!(get(page, Some(&cookie)).0, 200, "{page}");
    }
}
