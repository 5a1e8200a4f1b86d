//! Connection limits against the real binary: slowloris connections (a partial
//! request head, then silence) neither stop normal requests nor outlive the header
//! read timeout; over `MAX_CONNECTIONS`, new connections wait instead of failing.
//! Loopback only; every wait is bounded.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::App;

/// Opens `n` connections that send a partial request head and then nothing.
fn slowloris(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect()
}

/// Whether the server has closed `s` (EOF or reset), waiting at most `limit`.
fn closed_by_server(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // hyper may answer 408 before closing; keep reading to the close.
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn idle_connections_do_not_stop_requests_and_are_closed_after_the_header_timeout() {
    let app = App::start(&[("HEADER_READ_TIMEOUT_MS", "1500")]);
    let opened = Instant::now();
    let mut idle = slowloris(app.port, 300);
    // Normal requests keep being answered while the 300 hang.
    for _ in 0..20 {
        let (status, _) = app.get("/api/products/1");
        assert_eq!(status, 200);
    }
    assert!(
        opened.elapsed() < Duration::from_millis(1500),
        "requests were slow: {:?}",
        opened.elapsed()
    );
    // Every idle connection is closed soon after the timeout (1.5 s, checked at 5 s at most).
    let deadline = opened + Duration::from_secs(5);
    for (i, s) in idle.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            closed_by_server(s, left.max(Duration::from_millis(1))),
            "idle connection {i} still open {:?} after opening",
            opened.elapsed()
        );
    }
    assert_eq!(app.get("/health").0, 200);
    let metrics = app.text("/metrics");
    let value = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from /metrics"));
        line[name.len() + 1..].parse().unwrap()
    };
    assert!(value("http_connections_accepted_total") >= 300);
    // The scrape's own connection (and at most a pooled one) is all that is left.
    assert!(value("http_connections_open") <= 2, "{metrics}");
    assert_eq!(value("http_accept_errors_total"), 0);
}

#[test]
fn over_the_connection_cap_new_connections_wait_for_a_slot() {
    let app = App::start(&[("MAX_CONNECTIONS", "8"), ("HEADER_READ_TIMEOUT_MS", "1000")]);
    let _idle = slowloris(app.port, 8);
    std::thread::sleep(Duration::from_millis(200));
    // All 8 slots are held: this request waits in the listen queue until the header
    // timeout frees slots, then is served (not refused).
    let start = Instant::now();
    let (status, _) = app.get("/health");
    assert_eq!(status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let reached =
        |v: &serde_json::Value| v["message"] == "Connection limit reached, new connections wait";
    let line = app.wait_log(reached);
    std::thread::sleep(Duration::from_millis(300));
    let times = app.logs().iter().filter(|v| reached(v)).count();
    assert_eq!(times, 1, "the condition is logged once per episode");
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["max_connections"], 8);
}
