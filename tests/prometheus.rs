//! The ecosystem for real: a running `up` (time scale 20), a real Prometheus
//! (Debian's `prometheus`) configured by `prometheus config` that finds the
//! tasks through the HTTP service-discovery endpoint and evaluates the rules of
//! `prometheus rules`, and a real Alertmanager (`prometheus-alertmanager`)
//! configured by `prometheus alertmanager-config` that routes alerts to the
//! control API's `/alerts`. Ends in stored investigations: one for the episode
//! the generated rules fire on (deduplicated with the local evaluator's), one
//! opened by an alert that only Alertmanager knows of. Also `status --json`
//! and `deploy --wait --timeout --json` against the live environment.
//! Everything listens on loopback; every wait is bounded.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod util;
use util::{Up, cli, cli_ok};

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prints the tail of Prometheus's and Alertmanager's logs in `dir` if the test fails (the
/// tempdir goes with it; `Up` prints its own).
struct Logs<'a>(&'a Path);

impl Drop for Logs<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for name in ["alertmanager.log", "prometheus.log"] {
            let text = std::fs::read_to_string(self.0.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            eprintln!("--- {name} (last lines)");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn get_json(url: &str) -> Option<Value> {
    agent().get(url).call().ok()?.body_mut().read_json().ok()
}

/// Polls `f` every 250 ms until it returns `Some`, or fails naming `what`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Proc {
    let f = std::fs::File::create(log).unwrap();
    Proc(
        cmd.stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e} (scripts/test.sh installs prometheus and prometheus-alertmanager)")),
    )
}

fn investigations(state: &Path, alarm: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&cli_ok(state, &["reports", "list", "--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["alarm"] == alarm)
        .cloned()
        .collect()
}

#[test]
fn prometheus_scrapes_the_tasks_through_discovery_and_alertmanager_alerts_end_in_investigations() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _logs = Logs(dir.path());
    let _up = Up::start_in(&state);
    // Two healthy tasks, seen through `status --json`.
    let status = wait_for("two healthy targets", Duration::from_secs(60), || {
        let out = cli(&state, &["status", "--json"]);
        let s: Value = serde_json::from_slice(&out.stdout).ok()?;
        let healthy = s["tasks"]
            .as_array()?
            .iter()
            .filter(|t| t["health"] == "healthy")
            .count();
        (healthy == 2).then_some(s)
    });
    let lb = status["load_balancer"].as_str().unwrap().to_string();
    let mut task_ids: Vec<String> = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    task_ids.sort();

    // deploy --wait --timeout --json: a configuration change rolls out and completes.
    let d: Value = serde_json::from_str(&cli_ok(
        &state,
        &[
            "deploy",
            "--env",
            "BANNER_MESSAGE=hello",
            "--wait",
            "--timeout",
            "90s",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(d["outcome"], "completed", "{d}");
    assert_eq!(d["changes"][0]["key"], "BANNER_MESSAGE");
    let status: Value = wait_for(
        "two healthy targets after the deployment",
        Duration::from_secs(60),
        || {
            let s: Value =
                serde_json::from_slice(&cli(&state, &["status", "--json"]).stdout).ok()?;
            let healthy: Vec<String> = s["tasks"]
                .as_array()?
                .iter()
                .filter(|t| t["health"] == "healthy" && t["stopping"] == false)
                .map(|t| t["id"].as_str().unwrap().to_string())
                .collect();
            (healthy.len() == 2
                && s["deployment_in_progress"].is_null()
                && s["tasks"].as_array()?.len() == 2)
                .then_some(s)
        },
    );
    task_ids = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    task_ids.sort();

    // A traceparent sent through the load balancer reaches the task's access line:
    // same trace id, a span of the task's own (the load balancer's hop in between).
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let r = agent()
        .get(&format!("http://{lb}/api/products/1"))
        .header("traceparent", &format!("00-{trace}-b7ad6b7169203331-01"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let line = wait_for(
        "the traced request's access line",
        Duration::from_secs(30),
        || {
            let out = cli(
                &state,
                &["logs", "--json", "--since", "10m", "--grep", trace],
            );
            String::from_utf8(out.stdout)
                .ok()?
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|l| serde_json::from_str::<Value>(l["line"].as_str()?).ok())
                .find(|l| l["message"] == "request completed")
        },
    );
    assert_eq!(line["trace_id"], trace, "{line}");
    assert_eq!(line["route"], "/api/products/{id}");
    assert_ne!(line["span_id"], "b7ad6b7169203331");

    // The real peers, configured by the CLI.
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        cli_ok(&state, &["prometheus", "rules", "--time-scale", "20"]),
    )
    .unwrap();
    let am_port = free_port();
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        cli_ok(&state, &["prometheus", "alertmanager-config"]),
    )
    .unwrap();
    let _am = spawn(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address="),
        &dir.path().join("alertmanager.log"),
    );
    let prom_port = free_port();
    let prom_config = dir.path().join("prometheus.yml");
    let am_addr = format!("127.0.0.1:{am_port}");
    std::fs::write(
        &prom_config,
        cli_ok(
            &state,
            &[
                "prometheus",
                "config",
                "--rules",
                rules.to_str().unwrap(),
                "--alertmanager",
                &am_addr,
            ],
        ),
    )
    .unwrap();
    let _prom = spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        &dir.path().join("prometheus.log"),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");

    // Discovery: Prometheus scrapes both tasks (labelled by task id) and up itself.
    wait_for(
        "Prometheus scraping the tasks and up",
        Duration::from_secs(60),
        || {
            let t = get_json(&format!("{prom}/api/v1/targets"))?;
            let active = t["data"]["activeTargets"].as_array()?;
            let mut tasks: Vec<String> = active
                .iter()
                .filter(|a| a["labels"]["job"] == "demo-app" && a["health"] == "up")
                .map(|a| a["labels"]["task_id"].as_str().unwrap_or("").to_string())
                .collect();
            tasks.sort();
            let up_ok = active
                .iter()
                .any(|a| a["labels"]["job"] == "devops-agent-demo-up" && a["health"] == "up");
            (tasks == task_ids && up_ok).then_some(())
        },
    );
    let series = wait_for(
        "app_info of both tasks in Prometheus",
        Duration::from_secs(30),
        || {
            let r = get_json(&format!("{prom}/api/v1/query?query=app_info"))?;
            let n = r["data"]["result"].as_array()?.len();
            (n == 2).then_some(r)
        },
    );
    assert_eq!(
        series["data"]["result"][0]["metric"]["version"],
        series["data"]["result"][1]["metric"]["version"]
    );

    // The investigator's Prometheus source reads the catalogue's metrics back (range queries).
    {
        use investigator::sources::MetricSource;
        use investigator::sources::prometheus::PrometheusMetrics;
        let source = PrometheusMetrics::new(&prom, Duration::from_secs(1));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let w = demo_model::events::Window::new(now - 300_000, now + 1);
        let key = investigator::sources::SeriesKey::new("AWS/ECS", "MemoryUtilization", "service");
        let samples = wait_for(
            "MemoryUtilization through the Prometheus source",
            Duration::from_secs(30),
            || {
                let keys = source.series(w).ok()?;
                if !keys.contains(&key) {
                    return None;
                }
                let s = source.samples(&key, w).ok()?;
                (!s.is_empty()).then_some(s)
            },
        );
        assert!(
            samples.iter().all(|s| s.value > 0.0 && s.value < 100.0),
            "{samples:?}"
        );
    }

    // An alert only Alertmanager knows of (cpu-high is not firing locally) opens an episode
    // through the webhook and ends in a stored investigation.
    let r = agent()
        .post(&format!("http://{am_addr}/api/v2/alerts"))
        .send_json(json!([{ "labels": { "alertname": "cpu-high", "source": "test" } }]))
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cpu = wait_for(
        "an investigation of the Alertmanager-only alert",
        Duration::from_secs(60),
        || investigations(&state, "cpu-high").into_iter().next(),
    );
    let alarms: Value =
        serde_json::from_str(&cli_ok(&state, &["alarms", "--json", "--history", "50"])).unwrap();
    let opened = alarms["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["alarm"] == "cpu-high" && t["to"] == "ALARM")
        .unwrap();
    assert!(
        opened["reason"]
            .as_str()
            .unwrap()
            .starts_with("alertmanager alert firing"),
        "{opened}"
    );
    assert_eq!(cpu["transition_id"], opened["id"]);

    // The generated rules fire on real errors: every API request fails, traffic flows.
    cli_ok(
        &state,
        &[
            "faults",
            "inject",
            "/error/error-rate?percent=100&duration_s=120",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let url = format!("http://{lb}/api/products");
        std::thread::spawn(move || {
            let a = agent();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let _ = a.get(&url).call();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    wait_for(
        "the generated error-count-high rule firing in Prometheus",
        Duration::from_secs(60),
        || {
            let r = get_json(&format!(
                "{prom}/api/v1/query?query=ALERTS%7Balertname%3D%22error-count-high%22%2Calertstate%3D%22firing%22%7D"
            ))?;
            (!r["data"]["result"].as_array()?.is_empty()).then_some(())
        },
    );
    // Alertmanager delivers it to up, which counts it and keeps one episode with the local alarm.
    let token = std::fs::read_to_string(state.join("control.token")).unwrap();
    let runtime: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("runtime.json")).unwrap())
            .unwrap();
    let metrics_url = format!("http://{}/metrics", runtime["control"].as_str().unwrap());
    wait_for(
        "up receiving the alert from Alertmanager",
        Duration::from_secs(60),
        || {
            let text = agent()
                .get(&metrics_url)
                .header("authorization", &format!("Bearer {}", token.trim()))
                .call()
                .ok()?
                .body_mut()
                .read_to_string()
                .ok()?;
            text.lines()
                .any(|l| {
                    l.starts_with("devops_agent_alerts_received_total{source=\"alertmanager\"")
                        && !l.contains("unknown_alarm")
                })
                .then_some(())
        },
    );
    let errors = wait_for(
        "the error-count-high investigation",
        Duration::from_secs(60),
        || {
            let v = investigations(&state, "error-count-high");
            (!v.is_empty()).then_some(v)
        },
    );
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert_eq!(
        errors.len(),
        1,
        "one episode, one investigation: {errors:?}"
    );
    // Without the token, discovery and metrics are refused.
    let r = agent().get(&metrics_url).call().unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
