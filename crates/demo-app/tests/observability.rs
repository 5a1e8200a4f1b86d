//! `/metrics` checked by real Prometheus tooling, and the JSON log contract.

mod util;
use std::io::Write;
use std::process::{Command, Stdio};
use util::App;

/// Runs `program args` with `input` on stdin; `needs` says how to install it.
fn pipe(program: &str, args: &[&str], input: &str, needs: &str) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is required ({needs}): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn promtool_check(text: &str) {
    let out = pipe(
        "promtool",
        &["check", "metrics"],
        text,
        "apt-get install prometheus; scripts/test.sh installs it",
    );
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_are_valid_exposition_with_route_templates() {
    let app = App::start(&[("FAULTS", "enabled")]);
    for p in [
        "/",
        "/api/products/1",
        "/api/products/2",
        "/api/products/999",
    ] {
        app.get(p);
    }
    for i in 0..50 {
        app.get(&format!("/random/path/{i}"));
    }
    app.get("/error/500");
    let mut r = app.agent.get(&app.url("/metrics")).call().unwrap();
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = r.body_mut().read_to_string().unwrap();
    promtool_check(&text);

    let samples = official_parse(&text);
    let find = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        samples.iter().find_map(|s| {
            let all = labels.iter().all(|(k, v)| s["labels"][*k] == *v);
            (s["name"] == name && all).then(|| s["value"].as_f64().unwrap())
        })
    };
    let by_id = [("route", "/api/products/{id}"), ("method", "GET")];
    assert_eq!(
        find(
            "http_requests_total",
            &[by_id[0], by_id[1], ("status_code", "200")]
        ),
        Some(2.0)
    );
    assert_eq!(
        find(
            "http_requests_total",
            &[by_id[0], by_id[1], ("status_code", "404")]
        ),
        Some(1.0)
    );
    assert_eq!(
        find(
            "http_requests_total",
            &[("route", "unmatched"), ("status_code", "404")]
        ),
        Some(50.0),
        "all unmatched paths share one series"
    );
    assert!(
        !text.contains("/random/path"),
        "raw paths must never become labels"
    );
    assert_eq!(
        find(
            "http_requests_total",
            &[("route", "/error/500"), ("status_code", "500")]
        ),
        Some(1.0)
    );
    let info = samples
        .iter()
        .find(|s| s["name"] == "app_info")
        .expect("app_info");
    assert_eq!(info["labels"]["version"], "9.9.9-test");
    assert_eq!(info["labels"]["git_sha"], "0123abc");
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "app_fault_health_enabled",
        "app_fault_leaked_bytes",
        "app_fault_error_rate_percent",
        "app_fault_latency_seconds",
    ] {
        assert!(find(name, &[]).is_some(), "{name} missing");
    }
    let hist = [by_id[0], ("status_code", "200")];
    let inf = find(
        "http_request_duration_seconds_bucket",
        &[hist[0], hist[1], ("le", "+Inf")],
    );
    assert_eq!(inf, Some(2.0));
    assert_eq!(
        find("http_request_duration_seconds_count", &hist),
        Some(2.0)
    );
    let fam = samples
        .iter()
        .find(|s| s["name"] == "http_request_duration_seconds_bucket")
        .unwrap();
    assert_eq!(fam["type"], "histogram");
}

/// Parses with the official Prometheus Python client (an independent, real parser).
fn official_parse(text: &str) -> Vec<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/parse_metrics.py");
    let out = pipe("python3", &[script], text, "Python 3");
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics (pip install prometheus-client):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_log_line_is_json_with_the_access_fields() {
    let app = App::start(&[("FAULTS", "enabled")]);
    let mut r = app
        .agent
        .get(&app.url("/api/products/4"))
        .header("x-request-id", "req-abc.123")
        .header("x-forwarded-for", "203.0.113.7, 10.0.0.2")
        .header("user-agent", "tester/1.0")
        .call()
        .unwrap();
    assert_eq!(
        r.headers()["x-request-id"],
        "req-abc.123",
        "incoming id is echoed"
    );
    let _ = r.body_mut().read_to_string();
    let r = app
        .agent
        .get(&app.url("/"))
        .header("x-request-id", "bad id with spaces")
        .call()
        .unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        generated.len(),
        32,
        "an invalid id is replaced by a generated one"
    );
    app.get("/error/500");

    let access = app.wait_log(|l| l["request_id"] == "req-abc.123");
    assert_eq!(access["message"], "request completed");
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["route"], "/api/products/{id}");
    assert_eq!(access["path"], "/api/products/4");
    assert_eq!(access["status"], 200);
    // The rightmost hop (appended by our load balancer), never the client-supplied first one.
    assert_eq!(access["client_ip"], "10.0.0.2");
    assert_eq!(access["user_agent"], "tester/1.0");
    assert_eq!(access["version"], "9.9.9-test");
    assert!(access["latency_ms"].as_f64().unwrap() >= 0.0);
    let direct = app.wait_log(|l| l["request_id"] == generated.as_str());
    assert_eq!(direct["client_ip"], "127.0.0.1");
    app.wait_log(|l| l["route"] == "/error/500" && l["status"] == 500);

    let logs = app.logs();
    assert!(logs.len() >= 4);
    for l in &logs {
        let ts = l["timestamp"].as_str().expect("timestamp");
        assert!(
            ts.len() == 24 && ts.ends_with('Z'),
            "RFC 3339 with ms: {ts}"
        );
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG"].contains(&l["level"].as_str().unwrap()),
            "{l}"
        );
        assert!(l["message"].is_string());
    }
    // `{ $.level = "ERROR" }` counts the failure once: its cause, not its access line.
    let errors: Vec<_> = logs.iter().filter(|l| l["level"] == "ERROR").collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["message"], "Intentional 500 error triggered");
}

#[test]
fn log_level_filters_lines() {
    let app = App::start(&[("LOG_LEVEL", "warn"), ("FAULTS", "enabled")]);
    app.get("/");
    app.get("/error/500");
    app.wait_log(|l| l["level"] == "ERROR");
    // Only lifecycle lines (always written: supervisors rely on them) are INFO.
    let info: Vec<_> = app
        .logs()
        .into_iter()
        .filter(|l| l["level"] == "INFO")
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        info,
        vec!["Server listening".to_string()],
        "INFO lines at LOG_LEVEL=warn"
    );
}
