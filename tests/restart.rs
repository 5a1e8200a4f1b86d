//! Identity across restarts (issue 13, finding 2): a restart of `up` on the
//! same state directory used to start numbering at d-0001 and task-0001 again
//! and replace the earlier deployment records (`INSERT OR REPLACE`). Now the
//! earlier records stay exactly as written, ids continue, and each start is a
//! runtime event that says whether the run before it stopped cleanly.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use demo_model::events::{Deployment, DeploymentOutcome};

/// A real `up` on `dir`, its stdout lines readable as they come.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Up {
    fn start(dir: &Path) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_devops-agent-demo"))
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
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Up { child, lines }
    }

    /// Waits for a line starting with `prefix`; returns every line read so far.
    fn wait_for(&self, prefix: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let done = l.starts_with(prefix);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line starting with {prefix:?} within {limit:?}; got {seen:#?}");
    }

    /// SIGTERM, as Ctrl-C would: drain, stop the tasks, record the stop.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("up did not stop within 60 s of SIGTERM");
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_devops-agent-demo"))
        .arg("--state-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn deployments(dir: &Path) -> Vec<Deployment> {
    let mut ds = demo_store::Reader::open(dir)
        .unwrap()
        .deployments(100)
        .unwrap();
    ds.reverse();
    ds
}

fn ids(ds: &[Deployment]) -> Vec<&str> {
    ds.iter().map(|d| d.id.as_str()).collect()
}

#[test]
fn a_restart_keeps_earlier_deployments_and_continues_deployment_and_task_ids() {
    let dir = tempfile::tempdir().unwrap();
    let ready = Duration::from_secs(60);

    // Run 1: d-0001 (initial), d-0002 (a configuration deploy), clean stop.
    let up = Up::start(dir.path());
    up.wait_for("ready:", ready);
    let out = cli(dir.path(), &["deploy", "--env", "GREETING=hello", "--wait"]);
    assert!(out.contains("d-0002"), "{out}");
    up.stop();
    let before = deployments(dir.path());
    assert_eq!(ids(&before), ["d-0001", "d-0002"]);
    assert_eq!(before[1].outcome, DeploymentOutcome::Completed);
    let reader = demo_store::Reader::open(dir.path()).unwrap();
    let last_task = reader.last_task_seq().unwrap();
    assert!(
        last_task >= 4,
        "2 initial tasks and 2 of d-0002: task-{last_task:04}"
    );

    // Run 2 on the same directory.
    let up = Up::start(dir.path());
    let lines = up.wait_for("ready:", ready);
    let restart = lines
        .iter()
        .find(|l| l.trim_start().starts_with("restart"))
        .unwrap_or_else(|| panic!("up does not say it restarts: {lines:#?}"));
    assert!(
        restart.contains("after d-0002") && restart.contains("stopped cleanly"),
        "{restart}"
    );
    // The service carries on with what it last ran (d-0002, GREETING=hello),
    // as ECS keeps a service's deployment: no record is added or changed.
    let after = deployments(dir.path());
    assert_eq!(ids(&after), ["d-0001", "d-0002"]);
    assert_eq!(after, before, "earlier records unchanged");
    let status: serde_json::Value =
        serde_json::from_str(&cli(dir.path(), &["status", "--json"])).unwrap();
    assert_eq!(status["current_deployment"], "d-0002", "{status:#}");
    for t in status["tasks"].as_array().unwrap() {
        assert_eq!(t["deployment"], "d-0002", "{t}");
    }

    // The next deploy continues the sequence; tasks too.
    let out = cli(dir.path(), &["deploy", "--env", "GREETING=again", "--wait"]);
    assert!(out.contains("d-0003"), "{out}");
    let status: serde_json::Value =
        serde_json::from_str(&cli(dir.path(), &["status", "--json"])).unwrap();
    for t in status["tasks"].as_array().unwrap() {
        let n: u64 = t["id"].as_str().unwrap()["task-".len()..].parse().unwrap();
        assert!(n > last_task, "task {} reuses an id of run 1", t["id"]);
    }
    let text = cli(dir.path(), &["status"]);
    assert!(
        text.contains("restart after a clean stop"),
        "status shows the restart: {text}"
    );

    // Run 2 dies without stopping, in the middle of d-0004; run 3 says so,
    // records d-0004 as failed (interrupted) and, having no completed
    // deployment to carry on with, records its own start after it.
    let out = cli(dir.path(), &["deploy", "--env", "GREETING=third"]);
    assert!(out.contains("d-0004"), "{out}");
    up.kill();
    let up = Up::start(dir.path());
    let lines = up.wait_for("ready:", ready);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("after d-0004") && l.contains("ended without stopping")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("interrupted") && l.contains("d-0004")),
        "{lines:#?}"
    );
    let all = deployments(dir.path());
    assert_eq!(
        ids(&all),
        ["d-0001", "d-0002", "d-0003", "d-0004", "d-0005"]
    );
    assert_eq!(all[3].outcome, DeploymentOutcome::Failed);
    assert!(
        all[3]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("interrupted"),
        "{:?}",
        all[3]
    );
    assert_eq!(all[2].outcome, DeploymentOutcome::Completed, "untouched");
    let initial = &all[4];
    assert!(initial.description.contains("restart"), "{initial:?}");
    assert_eq!(initial.previous_id.as_deref(), Some("d-0004"));
    // This run was started without GREETING: the restart's own record says so.
    assert!(
        initial
            .changes
            .iter()
            .any(|c| c.key == "GREETING" && c.to.is_none()),
        "{:?}",
        initial.changes
    );
    let events = reader.runtime_events(10).unwrap();
    let kinds: Vec<&str> = events.iter().rev().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["started", "stopped", "started", "started"]);
    up.stop();
}
