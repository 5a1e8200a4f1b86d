//! Starts the real `demo-app` binary on port 0 and collects its stdout log lines.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct App {
    pub child: Child,
    pub port: u16,
    pub base: String,
    lines: Arc<Mutex<Vec<String>>>,
    pub agent: ureq::Agent,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_demo-app"));
    cmd.env_clear()
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("TASK_ID", "test-task")
        .env("APP_VERSION", "9.9.9-test")
        .env("GIT_SHA", "0123abc");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl App {
    pub fn start(env: &[(&str, &str)]) -> App {
        let mut child = command(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start demo-app");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = port_tx.as_ref()
                    && line.contains("\"Server listening\"")
                {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    tx.send(v["port"].as_u64().unwrap() as u16).unwrap();
                    port_tx = None;
                }
                sink.lock().unwrap().push(line);
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("demo-app did not log 'Server listening'");
        App {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            lines,
            agent: agent(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn parse(mut r: ureq::http::Response<ureq::Body>) -> (u16, serde_json::Value) {
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, v)
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        App::parse(self.agent.get(&self.url(path)).call().unwrap())
    }

    pub fn get_with(&self, path: &str, header: (&str, &str)) -> (u16, serde_json::Value) {
        App::parse(
            self.agent
                .get(&self.url(path))
                .header(header.0, header.1)
                .call()
                .unwrap(),
        )
    }

    pub fn post_json(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        App::parse(
            self.agent
                .post(&self.url(path))
                .header("content-type", "application/json")
                .send(body)
                .unwrap(),
        )
    }

    pub fn text(&self, path: &str) -> String {
        self.agent
            .get(&self.url(path))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// All log lines so far, each parsed as JSON (panics on a non-JSON line).
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Waits until a log line satisfies `pred` (the writer flushes every few ms).
    pub fn wait_log(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self.logs().into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "log line never appeared"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until at least `n` log lines satisfy `pred`; returns how many do.
    pub fn wait_count(&self, n: usize, pred: impl Fn(&serde_json::Value) -> bool) -> usize {
        let start = Instant::now();
        loop {
            let count = self.logs().iter().filter(|v| pred(v)).count();
            if count >= n || start.elapsed() > Duration::from_secs(10) {
                return count;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Give the reader thread a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return s;
            }
            assert!(
                start.elapsed() < within,
                "demo-app did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
