//! Fills a state directory with an hour of what `up` records for 2 tasks at
//! 100 requests a second (time scale 20: a sample tick every 0.5 s), ending
//! now, so `scripts/bench-console.sh` can time the console's pages over it.
//!
//! `cargo run --release -p demo-runtime --example console_fill -- DIR [SECONDS] [REQ_PER_S]`

use demo_model::events::{AlarmTransition, LogRecord, MetricSample, SERVICE_DIMENSION, Stream, ns};
use demo_store::Store;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: console_fill DIR [SECONDS=3600] [REQ_PER_S=100]");
        std::process::exit(2);
    };
    let parse = |i: usize, default: i64, what: &str| -> i64 {
        args.get(i).map_or(default, |s| {
            s.parse().unwrap_or_else(|_| {
                eprintln!("{what} {s:?}: expected a whole number");
                std::process::exit(2)
            })
        })
    };
    let seconds = parse(1, 3600, "SECONDS");
    let rate = parse(2, 100, "REQ_PER_S");
    let store = Store::open(std::path::Path::new(dir)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let w = store.writer();
    let now = demo_runtime::now_ms();
    let start = now - seconds * 1000;
    let tasks = ["task-0001", "task-0002"];
    let routes = [
        "/api/products",
        "/api/products/{id}",
        "/api/quote",
        "/health",
    ];
    // Errors for two minutes in the middle of the hour: one ALARM episode.
    let (bad_from, bad_to) = (start + seconds * 500, start + seconds * 500 + 120_000);
    let mut logs = 0u64;
    let mut samples = 0u64;
    for s in 0..seconds {
        let sec = start + s * 1000;
        for i in 0..rate {
            let ts = sec + i * 1000 / rate;
            let task = tasks[(i % 2) as usize];
            let route = routes[(i % 4) as usize];
            let failing =
                ts >= bad_from && ts < bad_to && route == "/api/products/{id}" && i % 8 == 1;
            let (level, status, message) = if failing {
                ("ERROR", 500, "injected failure on API request")
            } else {
                ("INFO", 200, "request completed")
            };
            let line = format!(
                r#"{{"timestamp":"{ts}","level":"{level}","message":"{message}","method":"GET","route":"{route}","path":"{route}","status":{status},"duration_ms":{},"task_id":"{task}","request_id":"r-{s}-{i}"}}"#,
                3 + i % 17
            );
            w.log(LogRecord::from_line(ts, task, Stream::Stdout, line));
            logs += 1;
        }
        // Two ticks a second (time scale 20).
        for half in 0..2 {
            let ts = sec + half * 500;
            let errors = if ts >= bad_from && ts < bad_to {
                6.0
            } else {
                0.0
            };
            let mut put = |namespace: &str, name: &str, dim: &str, value: f64, count: f64| {
                w.metric(MetricSample {
                    count,
                    ..MetricSample::new(ts, namespace, name, dim, value)
                });
                samples += 1;
            };
            for t in tasks {
                put(ns::ECS, "CPUUtilization", t, 12.0 + (s % 7) as f64, 1.0);
                put(
                    ns::ECS,
                    "MemoryUtilization",
                    t,
                    8.0 + (s % 5) as f64 * 0.1,
                    1.0,
                );
            }
            put(ns::ECS, "CPUUtilization", SERVICE_DIMENSION, 13.0, 1.0);
            put(ns::ECS, "MemoryUtilization", SERVICE_DIMENSION, 8.2, 1.0);
            put(ns::ECS, "RunningTaskCount", SERVICE_DIMENSION, 2.0, 1.0);
            put(
                ns::CONTAINER_INSIGHTS,
                "RunningTaskCount",
                SERVICE_DIMENSION,
                2.0,
                1.0,
            );
            let requests = (rate / 2) as f64;
            put(ns::ALB, "RequestCount", SERVICE_DIMENSION, requests, 1.0);
            put(
                ns::ALB,
                "HTTPCode_Target_2XX_Count",
                SERVICE_DIMENSION,
                requests - errors,
                1.0,
            );
            if errors > 0.0 {
                put(
                    ns::ALB,
                    "HTTPCode_Target_5XX_Count",
                    SERVICE_DIMENSION,
                    errors,
                    1.0,
                );
                put(
                    "DevOpsAgentDemo",
                    "ErrorCount",
                    SERVICE_DIMENSION,
                    errors,
                    1.0,
                );
            }
            for (secs, n) in [
                (0.002, 20.0),
                (0.004, 15.0),
                (0.008, 10.0),
                (0.016, 4.0),
                (0.05, 1.0),
            ] {
                put(ns::ALB, "TargetResponseTime", SERVICE_DIMENSION, secs, n);
            }
            put(ns::ALB, "HealthyHostCount", SERVICE_DIMENSION, 2.0, 1.0);
            put(ns::ALB, "UnHealthyHostCount", SERVICE_DIMENSION, 0.0, 1.0);
            for r in routes {
                put(
                    ns::APP,
                    "RequestCount",
                    &format!("route={r},status=200"),
                    requests / 4.0,
                    1.0,
                );
            }
        }
    }
    for (at, from, to) in [
        (bad_from + 3_000, "OK", "ALARM"),
        (bad_to + 3_000, "ALARM", "OK"),
    ] {
        w.transition(AlarmTransition {
            id: 0,
            alarm: "error-count-high".into(),
            from: from.into(),
            to: to.into(),
            at_ms: at,
            reason: format!("console_fill: {from} -> {to}"),
            reason_data: serde_json::Value::Null,
        })
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        });
    }
    w.flush();
    drop(store);
    println!("{dir}: {logs} log lines, {samples} metric samples over {seconds} s ending now");
}
