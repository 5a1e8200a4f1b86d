//! Fault injection: gating, token, every fault's effect and its bounds.

mod util;
use std::time::{Duration, Instant};
use util::App;

const TOKEN: &str = "a-long-enough-fault-token";

#[test]
fn faults_are_refused_when_disabled() {
    let app = App::start(&[]);
    for path in [
        "/error/500",
        "/error/memory-leak?mb=1",
        "/error/crash",
        "/error/reset",
    ] {
        let (s, v) = app.get(path);
        assert_eq!(s, 403, "{path}");
        assert_eq!(v["error"], "faults_disabled");
    }
    // The process is still alive and unharmed.
    assert_eq!(app.get("/health").0, 200);
}

#[test]
fn token_is_required_when_configured() {
    let app = App::start(&[("FAULTS", "enabled"), ("FAULT_TOKEN", TOKEN)]);
    let (s, v) = app.get("/error/500");
    assert_eq!(
        (s, v["error"].as_str().unwrap()),
        (401, "fault_token_required")
    );
    let (s, _) = app.get_with("/error/500", ("x-fault-token", "a-long-enough-fault-tokeX"));
    assert_eq!(s, 401);
    let (s, v) = app.get_with("/error/500", ("x-fault-token", TOKEN));
    assert_eq!((s, v["error"].as_str().unwrap()), (500, "internal_error"));
    assert_eq!(
        app.wait_count(2, |l| l["message"]
            == "Fault request rejected: missing or wrong token"),
        2
    );
    app.wait_log(|l| l["route"] == "/error/500" && l["status"] == 500);
    let logs = app.logs();
    assert!(
        logs.iter().all(|l| !l.to_string().contains(TOKEN)),
        "the token must never be logged"
    );
}

#[test]
fn error_500_and_timeout_log_errors() {
    let app = App::start(&[("FAULTS", "enabled")]);
    let (s, _) = app.get("/error/500");
    assert_eq!(s, 500);
    let mut r = app.agent.post(&app.url("/error/500")).send_empty().unwrap();
    assert_eq!(r.status().as_u16(), 500, "POST works too");
    let _ = r.body_mut().read_to_string();
    let start = Instant::now();
    let (s, v) = app.get("/error/timeout?delay_ms=300");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!((s, v["error"].as_str().unwrap()), (504, "timeout"));
    let (s, v) = app.get("/error/timeout?delay_ms=999999");
    assert_eq!((s, v["field"].as_str().unwrap()), (400, "delay_ms"));
    app.wait_log(|l| l["message"] == "Simulated upstream timeout" && l["level"] == "ERROR");
    let errors = app.wait_count(2, |l| {
        l["message"] == "Intentional 500 error triggered" && l["level"] == "ERROR"
    });
    assert_eq!(errors, 2);
}

fn rss(app: &App) -> u64 {
    app.get("/health").1["memory_rss_bytes"].as_u64().unwrap()
}

#[test]
fn memory_leak_grows_rss_within_bounds_and_clears() {
    let app = App::start(&[
        ("FAULTS", "enabled"),
        ("FAULT_MAX_LEAK_MB_PER_CALL", "32"),
        ("FAULT_MAX_LEAK_MB_TOTAL", "48"),
    ]);
    let before = rss(&app);
    let (s, v) = app.get("/error/memory-leak?mb=32");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total_leaked_bytes"], 32 * 1024 * 1024);
    let after = rss(&app);
    assert!(
        after >= before + 30 * 1024 * 1024,
        "RSS {before} -> {after}"
    );
    let (s, v) = app.get("/error/memory-leak?mb=33");
    assert_eq!((s, v["field"].as_str().unwrap()), (400, "mb"));
    let (s, v) = app.get("/error/memory-leak?mb=32");
    assert_eq!((s, v["error"].as_str().unwrap()), (409, "limit_reached"));
    let metrics = app.text("/metrics");
    assert!(metrics.contains(&format!("app_fault_leaked_bytes {}", 32 * 1024 * 1024)));
    let (s, v) = app.get("/error/clear-memory");
    assert_eq!(
        (s, v["freed_bytes"].as_u64().unwrap()),
        (200, 32 * 1024 * 1024)
    );
    assert!(
        rss(&app) < after - 16 * 1024 * 1024,
        "memory returned to the OS"
    );
    app.wait_log(|l| l["message"] == "Memory leak injected" && l["level"] == "WARN");
}

#[test]
fn cpu_spike_burns_cpu_and_is_capped() {
    let app = App::start(&[("FAULTS", "enabled"), ("FAULT_MAX_CPU_THREADS", "2")]);
    let (s, v) = app.get("/error/cpu-spike?seconds=1&threads=3");
    assert_eq!((s, v["field"].as_str().unwrap()), (400, "threads"));
    let (s, _) = app.get("/error/cpu-spike?seconds=1&threads=1");
    assert_eq!(s, 202);
    assert!(
        app.text("/metrics")
            .contains("app_fault_cpu_spike_threads 1")
    );
    std::thread::sleep(Duration::from_millis(1300));
    let metrics = app.text("/metrics");
    assert!(metrics.contains("app_fault_cpu_spike_threads 0"));
    let cpu: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        cpu >= 0.5,
        "a 1 s spike on one thread burns ~1 s of CPU, saw {cpu}"
    );
}

#[test]
fn health_can_be_disabled_and_reenabled() {
    let app = App::start(&[("FAULTS", "enabled")]);
    assert_eq!(app.get("/error/disable-health").0, 200);
    let (s, v) = app.get("/health");
    assert_eq!((s, v["status"].as_str().unwrap()), (503, "unhealthy"));
    assert!(v["reason"].as_str().unwrap().contains("disable"));
    assert!(app.text("/metrics").contains("app_fault_health_enabled 0"));
    assert_eq!(app.get("/error/enable-health").0, 200);
    assert_eq!(app.get("/health").0, 200);
    // Bounded in time: a 1 s disable expires by itself.
    assert_eq!(app.get("/error/disable-health?duration_s=1").0, 200);
    assert_eq!(app.get("/health").0, 503);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(app.get("/health").0, 200);
}

#[test]
fn error_rate_and_latency_make_the_api_misbehave_until_reset() {
    let app = App::start(&[("FAULTS", "enabled")]);
    assert_eq!(app.get("/error/error-rate?percent=100").0, 200);
    for _ in 0..5 {
        assert_eq!(app.get("/api/products").0, 500);
    }
    assert_eq!(app.get("/health").0, 200, "only /api routes fail");
    assert_eq!(app.get("/error/error-rate?percent=150").0, 400);
    assert_eq!(app.get("/error/error-rate").0, 400, "percent is required");
    assert!(
        app.text("/metrics")
            .contains("app_fault_error_rate_percent 100")
    );
    let injected = app.wait_count(5, |l| {
        l["message"] == "Injected failure on API request" && l["level"] == "ERROR"
    });
    assert_eq!(injected, 5, "each injected failure logs one ERROR line");

    assert_eq!(app.get("/error/latency?ms=200&percent=100").0, 200);
    let (s, v) = app.get("/error/reset");
    assert_eq!((s, v["reset"].as_bool().unwrap()), (200, true));
    let start = Instant::now();
    assert_eq!(app.get("/api/products").0, 200);
    assert!(
        start.elapsed() < Duration::from_millis(150),
        "reset cleared latency"
    );

    assert_eq!(
        app.get("/error/latency?ms=200&percent=100&duration_s=5").0,
        200
    );
    let start = Instant::now();
    assert_eq!(app.get("/api/products/1").0, 200);
    assert!(start.elapsed() >= Duration::from_millis(200));
    let (s, v) = app.get("/error/latency?ms=200&percent=100&duration_s=999999");
    assert_eq!((s, v["field"].as_str().unwrap()), (400, "duration_s"));
}

#[test]
fn crash_exits_non_zero() {
    let mut app = App::start(&[("FAULTS", "enabled")]);
    assert_eq!(app.get("/error/crash?exit_code=0").0, 400);
    let (s, v) = app.get("/error/crash?exit_code=42&delay_ms=50");
    assert_eq!((s, v["exit_code"].as_i64().unwrap()), (202, 42));
    let status = app.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(42));
    assert!(
        app.logs()
            .iter()
            .any(|l| l["message"] == "Crash injected: process exiting" && l["level"] == "ERROR")
    );
}

#[test]
fn slow_requests_are_cut_off_by_the_request_timeout() {
    let app = App::start(&[("FAULTS", "enabled"), ("REQUEST_TIMEOUT_MS", "300")]);
    let start = Instant::now();
    let (s, v) = app.get("/error/timeout?delay_ms=2000");
    assert!(start.elapsed() < Duration::from_millis(1500), "not cut off");
    assert_eq!((s, v["error"].as_str().unwrap()), (504, "timeout"));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("REQUEST_TIMEOUT_MS"),
        "{v}"
    );
    let line = app.wait_log(|l| l["message"] == "Request timed out");
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["route"], "/error/timeout");
    // Fast requests are unaffected.
    assert_eq!(app.get("/api/products/1").0, 200);
}
