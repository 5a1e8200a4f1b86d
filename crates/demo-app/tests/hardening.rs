//! Bad input that used to cost the service: made-up methods growing `/metrics`,
//! huge paths in log lines, a spoofed `X-Forwarded-For`, a non-UTF-8 path segment,
//! a declared body of 10 GB that never comes, a chunked one over the limit, and a
//! handler panic recorded as 499.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::App;

/// Sends `raw` on a fresh connection and returns what the server answered (status line
/// and headers at least); gives up after `limit`.
fn raw(app: &App, raw: &str, limit: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.windows(4).any(|w| w == b"\r\n\r\n") && !raw.contains("Connection: close") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_flood_of_made_up_methods_leaves_metrics_bounded() {
    let app = App::start(&[]);
    app.get("/");
    let baseline = app.text("/metrics").len();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..4 {
            let app = &app;
            s.spawn(move || {
                for i in 0..250 {
                    let r = raw(
                        app,
                        &format!("M{t}X{i} / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
                        Duration::from_secs(5),
                    );
                    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
                }
            });
        }
    });
    let after = app.text("/metrics");
    // One new series (method="other", route="/", 405): its histogram is ~1.5 KB.
    assert!(
        after.len() < baseline + 4096,
        "/metrics grew from {baseline} to {} bytes after 1000 made-up methods",
        after.len()
    );
    assert!(
        after.contains(r#"http_requests_total{method="other",route="/",status_code="405"} 1000"#),
        "{after}"
    );
    eprintln!(
        "/metrics: {baseline} bytes before, {} after 1000 made-up methods ({:?})",
        after.len(),
        started.elapsed()
    );
    let line = app.wait_log(|v| v["status"] == 405);
    assert_eq!(line["method"], "other", "{line}");
}

#[test]
fn long_paths_are_cut_in_log_lines_with_a_marker() {
    let app = App::start(&[]);
    let path = format!("/nowhere/{}", "a".repeat(60_000));
    let (status, body) = app.get(&path);
    assert_eq!(status, 404);
    assert!(
        body["message"].as_str().unwrap().len() < 700,
        "the 404 body echoes the whole path"
    );
    let line = app.wait_log(|v| v["message"] == "request completed" && v["status"] == 404);
    let logged = line["path"].as_str().unwrap();
    assert!(logged.len() < 600, "{} bytes logged", logged.len());
    assert!(logged.ends_with("…[cut 59497 bytes]"), "{logged}");
}

#[test]
fn the_client_ip_is_the_hop_our_proxy_appended_never_the_first() {
    let app = App::start(&[]);
    let r = raw(
        &app,
        "GET /?who=spoofed HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6, 10.1.2.3\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = raw(
        &app,
        "GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let spoofed = app.wait_log(|v| v["route"] == "/" && v["message"] == "request completed");
    assert_eq!(spoofed["client_ip"], "10.1.2.3", "{spoofed}");
    let direct = app.wait_log(|v| v["route"] == "/health");
    assert_eq!(direct["client_ip"], "127.0.0.1", "{direct}");
}

#[test]
fn a_path_segment_that_is_not_utf8_is_a_json_400() {
    let app = App::start(&[]);
    let (status, body) = app.get("/api/products/%FF");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad_request", "{body}");
    assert_eq!(body["field"], "id", "{body}");
}

#[test]
fn a_declared_body_over_the_limit_is_refused_before_reading() {
    let app = App::start(&[]);
    let start = Instant::now();
    let r = raw(
        &app,
        "POST /api/quote HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n",
        Duration::from_secs(10),
    );
    let took = start.elapsed();
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("payload_too_large"), "{r}");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    // A declared length within the limit still reaches the handler.
    let (status, _) = app.post_json("/api/quote", r#"{"items":[{"product_id":1,"quantity":1}]}"#);
    assert_eq!(status, 200);
}

/// `body` as one chunk of a chunked request to `/api/quote`, on a closing connection.
fn chunked_quote(app: &App, body: &str) -> String {
    raw(
        app,
        &format!(
            "POST /api/quote HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        ),
        Duration::from_secs(10),
    )
}

#[test]
fn a_chunked_body_over_the_limit_is_a_json_413_and_one_within_it_is_served() {
    let app = App::start(&[("MAX_BODY_BYTES", "1024")]);
    let big = format!(r#"{{"items":[],"pad":"{}"}}"#, "x".repeat(2000));
    let r = chunked_quote(&app, &big);
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains(r#""error":"payload_too_large""#), "{r}");
    let r = chunked_quote(&app, r#"{"items":[{"product_id":1,"quantity":2}]}"#);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains(r#""subtotal_cents":17998"#), "{r}");
}

#[test]
fn a_handler_panic_is_a_500_logged_once_and_counted_on_its_route() {
    let mut app = App::start(&[("FAULTS", "enabled")]);
    let (status, body) = app.get("/error/panic");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "internal_error");
    let access = app.wait_log(|v| v["route"] == "/error/panic");
    assert_eq!(access["status"], 500, "{access}");
    let metrics = app.text("/metrics");
    assert!(
        metrics.contains(
            r#"http_requests_total{method="GET",route="/error/panic",status_code="500"} 1"#
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("status_code=\"499\""), "{metrics}");
    // The service keeps serving after the panic.
    assert_eq!(app.get("/").0, 200);
    app.signal("TERM");
    app.wait_exit(Duration::from_secs(30));
    let errors: Vec<_> = app
        .logs()
        .into_iter()
        .filter(|v| v["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]["panic"]
            .as_str()
            .unwrap()
            .contains("panic injected"),
        "{errors:?}"
    );
}
