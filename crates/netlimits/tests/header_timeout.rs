//! The header read timeout through `serve` and a real hyper connection on loopback:
//! a head that never completes is closed at the timeout, a keep-alive connection whose
//! requests keep coming is not (each request's deadline is disarmed when its head
//! arrives), and a request served for longer than the timeout is answered. Every
//! wait is bounded.

use std::convert::Infallible;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use demo_netlimits::{ConnLimits, ConnStats};

const HEADER: Duration = Duration::from_millis(400);

/// A server whose `/slow` answers after 1 s, everything else at once; stops when dropped.
struct Server {
    addr: SocketAddr,
    stats: Arc<ConnStats>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _runtime: tokio::runtime::Runtime,
}

fn server() -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ConnStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = |_| {
        hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
            if req.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok::<_, Infallible>(hyper::Response::new(String::from("ok")))
        })
    };
    let limits = ConnLimits {
        header_read_timeout: HEADER,
        idle_timeout: Duration::from_secs(30),
        max_connections: 16,
    };
    runtime.spawn(demo_netlimits::serve(
        listener,
        limits,
        stats.clone(),
        demo_netlimits::ignore_events(),
        service,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    Server {
        addr,
        stats,
        _stop: stop,
        _runtime: runtime,
    }
}

/// Sends one keep-alive request and reads its whole response (`ok` body).
fn request(s: &mut TcpStream, path: &str) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = s.read(&mut buf).expect("response");
        assert!(n > 0, "closed before the response to {path}");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
}

/// How long after `since` the server closed `s` (EOF or reset); `None` if still open at `limit`.
fn closed_after(s: &mut TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => Some(since.elapsed()),
        Ok(n) => panic!("unexpected {n} bytes"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(_) => Some(since.elapsed()),
    }
}

#[test]
fn an_incomplete_head_is_closed_at_the_header_timeout() {
    let server = server();
    let mut s = TcpStream::connect(server.addr).unwrap();
    let sent = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .unwrap();
    let closed = closed_after(&mut s, sent, Duration::from_secs(3)).expect("closed");
    assert!(
        closed >= HEADER - Duration::from_millis(20) && closed < HEADER * 3,
        "closed after {closed:?}"
    );
    assert_eq!(
        server
            .stats
            .idle_closed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn a_keep_alive_connection_with_requests_coming_stays_open_then_closes_when_they_stop() {
    let server = server();
    let mut s = TcpStream::connect(server.addr).unwrap();
    let start = Instant::now();
    // Requests every 150 ms for 1.5 s: far past the 400 ms timeout in total.
    for _ in 0..10 {
        request(&mut s, "/");
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(start.elapsed() > HEADER * 3);
    // A request served for 1 s (over the timeout) is answered on the same connection.
    request(&mut s, "/slow");
    let last = Instant::now();
    let closed = closed_after(&mut s, last, Duration::from_secs(3)).expect("closed when idle");
    assert!(
        closed >= HEADER - Duration::from_millis(20) && closed < HEADER * 3,
        "closed {closed:?} after the last response"
    );
}
