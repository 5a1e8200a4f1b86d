//! `serve_connections`, for a server that reads HTTP itself: the header read deadline it
//! arms closes a connection whose head never completes and spares one whose answer
//! takes longer than the timeout; on shutdown an idle connection closes at once, a busy
//! one finishes its answer, and serving returns once both are gone. Every wait is
//! bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use demo_netlimits::{Conn, ConnLimits, ConnStats, Drained};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HEADER: Duration = Duration::from_millis(400);

/// Reads heads ending in an empty line and answers each with "ok\n" (after 1 s for a
/// head starting `slow`), with the deadline armed while a head is incomplete; stops
/// taking heads once the server is closing.
async fn handle(mut conn: Conn) {
    let mut buf = Vec::new();
    loop {
        conn.head.arm();
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buf.is_empty() && *conn.closing.borrow() {
                return;
            }
            let mut chunk = [0u8; 512];
            tokio::select! {
                read = conn.stream.read(&mut chunk) => match read {
                    Ok(n @ 1..) => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                },
                _ = conn.closing.changed(), if buf.is_empty() => return,
            }
        };
        conn.head.disarm();
        if buf.starts_with(b"slow") {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        buf.drain(..end);
        if conn.stream.write_all(b"ok\n").await.is_err() {
            return;
        }
    }
}

struct Server {
    addr: SocketAddr,
    stats: Arc<ConnStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: std::sync::mpsc::Receiver<(Drained, Duration)>,
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
    let (done, served) = std::sync::mpsc::channel();
    let limits = ConnLimits {
        header_read_timeout: HEADER,
        idle_timeout: Duration::from_secs(30),
        max_connections: 16,
    };
    let s = stats.clone();
    runtime.spawn(async move {
        let mut stopping = None;
        let drained = demo_netlimits::serve_connections(
            listener,
            limits,
            s,
            demo_netlimits::ignore_events(),
            handle,
            async {
                let _ = stopped.await;
                stopping = Some(Instant::now());
            },
            Duration::from_secs(5),
        )
        .await;
        let took = stopping.map_or(Duration::ZERO, |at| at.elapsed());
        let _ = done.send((drained, took));
    });
    Server {
        addr,
        stats,
        stop: Some(stop),
        served,
        _runtime: runtime,
    }
}

/// How long after `since` the server closed `s`; `None` if still open at `limit`.
fn closed_after(s: &mut TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => Some(since.elapsed()),
        Ok(n) => panic!("unexpected {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(_) => Some(since.elapsed()),
    }
}

fn answer(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 3];
    s.read_exact(&mut got).expect("an answer");
    got.to_vec()
}

#[test]
fn the_armed_deadline_closes_an_incomplete_head_and_spares_a_slow_answer() {
    let server = server();
    let mut s = TcpStream::connect(server.addr).unwrap();
    let sent = Instant::now();
    s.write_all(b"never ends").unwrap();
    let closed = closed_after(&mut s, sent, Duration::from_secs(3)).expect("closed");
    assert!(
        closed >= HEADER - Duration::from_millis(20) && closed < HEADER * 3,
        "closed after {closed:?}"
    );
    // An answer that takes 1 s (over the timeout) is not cut: its head was complete.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"slow\r\n\r\n").unwrap();
    assert_eq!(answer(&mut s), b"ok\n");
    assert_eq!(
        server
            .stats
            .idle_closed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn on_shutdown_idle_connections_close_and_busy_ones_finish() {
    let mut server = server();
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.write_all(b"a\r\n\r\n").unwrap();
    assert_eq!(answer(&mut idle), b"ok\n");
    let mut busy = TcpStream::connect(server.addr).unwrap();
    busy.write_all(b"slow\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let stopped = Instant::now();
    drop(server.stop.take());
    let closed = closed_after(&mut idle, stopped, Duration::from_secs(3)).expect("idle closed");
    assert!(
        closed < Duration::from_millis(500),
        "idle closed after {closed:?}"
    );
    assert_eq!(answer(&mut busy), b"ok\n", "the busy one is answered");
    closed_after(&mut busy, stopped, Duration::from_secs(3)).expect("then closed");
    let (drained, took) = server
        .served
        .recv_timeout(Duration::from_secs(5))
        .expect("serving returns");
    assert_eq!(drained, Drained::Complete);
    assert!(took < Duration::from_secs(2), "{took:?}");
}
