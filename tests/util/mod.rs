//! The one harness for tests that run a real `up` (the project binary) on
//! loopback: start it on a state directory (a fresh temporary one, or the
//! caller's for restart tests), read what it prints, find its control API and
//! token, call that API, run the CLI against the same state directory, and
//! stop it — by SIGTERM when the test ends however it ends, so no environment
//! outlives its test. Each test binary includes it with `mod util;`.
//!
//! Every line `up` prints on stdout is kept, so a test can ask for a line
//! printed before it started looking. If the test fails, the last lines `up`
//! wrote on stdout and stderr are printed with the failure.

// Each test binary uses a different part of this harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_devops-agent-demo");

/// How long `up` may take to say `ready:` (two tasks provisioned and healthy at time scale 20).
pub const READY: Duration = Duration::from_secs(60);

/// How long `up` may take to stop after SIGTERM (drain, stop the tasks).
const STOP: Duration = Duration::from_secs(60);

/// A running `up` (time scale 20, ports chosen by the system).
pub struct Up {
    child: Child,
    dir: PathBuf,
    /// Set when `up` runs in a temporary directory of its own: removed after it stops.
    _temp: Option<tempfile::TempDir>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// Keeps every line of `from` in `into`, on a thread of its own.
fn keep_lines(from: impl Read + Send + 'static, into: &Arc<Mutex<Vec<String>>>) {
    let into = into.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
}

impl Up {
    /// Starts `up` in a fresh temporary state directory; returns once its
    /// control API serves (tasks may still be starting).
    pub fn start() -> Up {
        let temp = tempfile::tempdir().unwrap();
        let mut up = Up::start_in(temp.path());
        up._temp = Some(temp);
        up
    }

    /// Starts `up` in a fresh temporary state directory and waits for `ready:`.
    pub fn ready() -> Up {
        let up = Up::start();
        up.wait_ready();
        up
    }

    /// Starts `up` on `dir` (kept after it stops); returns once its control
    /// API serves and its token is written (`up` prints the console's login
    /// line then); tasks may still be starting.
    pub fn start_in(dir: &Path) -> Up {
        let mut child = Command::new(BIN)
            .arg("--state-dir")
            .arg(dir)
            .args([
                "up",
                "--port",
                "0",
                "--control-port",
                "0",
                "--time-scale",
                "20",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::default();
        let stderr = Arc::default();
        keep_lines(child.stdout.take().unwrap(), &stdout);
        keep_lines(child.stderr.take().unwrap(), &stderr);
        let up = Up {
            child,
            dir: dir.to_path_buf(),
            _temp: None,
            stdout,
            stderr,
        };
        up.wait_for("console ", READY);
        up
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line up to and including the first that starts with
    /// `prefix` (leading spaces ignored); fails the test after `limit`.
    pub fn wait_for(&self, prefix: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let lines = self.stdout.lock().unwrap();
                if let Some(i) = lines
                    .iter()
                    .position(|l| l.trim_start().starts_with(prefix))
                {
                    return lines[..=i].to_vec();
                }
                assert!(
                    Instant::now() < deadline,
                    "up printed no line starting with {prefix:?} within {limit:?}; got {lines:#?}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first stdout line that starts with `prefix`.
    pub fn wait_line(&self, prefix: &str, limit: Duration) -> String {
        self.wait_for(prefix, limit).pop().unwrap()
    }

    /// Waits for `ready:` (two healthy targets, a store that writes); returns every line so far.
    pub fn wait_ready(&self) -> Vec<String> {
        self.wait_for("ready:", READY)
    }

    /// The first `http://` address on the line starting with `prefix`, without a trailing `/`.
    fn url_on(&self, prefix: &str) -> String {
        let line = self.wait_line(prefix, READY);
        line.split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_end_matches('/')
            .to_string()
    }

    /// The console's login URL `up` printed: `http://127.0.0.1:PORT/?token=...`.
    pub fn console_url(&self) -> String {
        self.url_on("console ")
    }

    /// The control API's (and console's) base URL: `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        let url = self.url_on("control API");
        url.strip_suffix("/status")
            .unwrap_or_else(|| panic!("control API line ends in /status: {url}"))
            .to_string()
    }

    /// The load balancer's base URL: `http://127.0.0.1:PORT`.
    pub fn lb(&self) -> String {
        self.url_on("load balancer")
    }

    /// The control token `up` wrote to `<state>/control.token`.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("control.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A raw request to the control API: (status, JSON body or `null`).
    /// GET sends no body; any other method is a POST of `body` (default `{}`).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let url = format!("{}{path}", self.base());
        let mut r = if method == "GET" {
            let mut b = agent.get(&url);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.call().unwrap()
        } else {
            let mut b = agent.post(&url);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.send_json(body.unwrap_or(json!({}))).unwrap()
        };
        let status = r.status().as_u16();
        let v = r.body_mut().read_json().unwrap_or(Value::Null);
        (status, v)
    }

    /// SIGTERM, as Ctrl-C would: drain, stop the tasks, record the stop.
    /// Fails the test if `up` has not exited within 60 s.
    pub fn stop(mut self) {
        assert!(
            self.terminate(),
            "up did not stop within {STOP:?} of SIGTERM"
        );
    }

    /// SIGKILL: no drain, no clean-up code runs in `up`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM unless `up` has exited; true once it has exited (within `STOP`).
    fn terminate(&mut self) -> bool {
        if let Ok(Some(_)) = self.child.try_wait() {
            return true;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, lines) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
                let lines = lines.lock().unwrap();
                eprintln!("--- up's {name} (last lines)");
                for l in lines.iter().skip(lines.len().saturating_sub(20)) {
                    eprintln!("{l}");
                }
            }
        }
        if !self.terminate() {
            self.kill();
        }
    }
}

/// Runs the CLI on `state`.
pub fn cli(state: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

/// Runs the CLI on `state`; fails the test unless it succeeds; returns its stdout.
pub fn cli_ok(state: &Path, args: &[&str]) -> String {
    let out = cli(state, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
