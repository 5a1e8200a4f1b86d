//! The load balancer's HTTP/1.1 byte by byte, with a client that writes raw bytes:
//! pipelined requests, HTTP/1.0 clients, `Expect: 100-continue`, request heads and
//! bodies it refuses, an answer that comes before the request body is done, and a
//! bodiless request sent again when a reused upstream connection closed under it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{
    Serving, full, hyper_server, load_balancer, load_balancer_with, raw_server, streamed,
};
use demo_runtime::lb::ConnLimits;
use http_body_util::BodyExt;
use hyper::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A hyper target: `/echo` answers the request body, `/stream` a body of three parts
/// sent 20 ms apart (chunked, its length unknown), anything else "ok"; every answer
/// says whether the target saw an `Expect` field.
async fn target() -> std::net::SocketAddr {
    hyper_server(|req: hyper::Request<hyper::body::Incoming>| async move {
        let expect = req.headers().contains_key("expect");
        let mut resp = match req.uri().path() {
            "/echo" => Response::new(full(req.into_body().collect().await.unwrap().to_bytes())),
            "/stream" => Response::new(streamed(
                &["one,", "two,", "three"],
                Duration::from_millis(20),
            )),
            _ => Response::new(full("ok")),
        };
        resp.headers_mut().insert(
            "x-seen-expect",
            if expect { "yes" } else { "no" }.parse().unwrap(),
        );
        resp
    })
    .await
}

/// A raw target that answers every head with `answer` (health checks with a 200) the
/// moment the head is complete, and never reads a body.
async fn answering(answer: &'static [u8]) -> std::net::SocketAddr {
    raw_server(move |mut stream| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let reply: &[u8] = if buf.starts_with(b"GET /health ") {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
                } else {
                    answer
                };
                let _ = stream.write_all(reply).await;
                buf.clear();
            }
        }
    })
    .await
}

/// Writes `bytes` on a new connection and reads until the load balancer closes it.
async fn send_raw(s: &Serving, bytes: &[u8]) -> String {
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(bytes).await.unwrap();
    read_to_close(&mut c).await
}

/// `send_raw`, the client saying it has nothing more to send (its write side closed).
async fn send_closing(s: &Serving, bytes: &[u8]) -> String {
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(bytes).await.unwrap();
    c.shutdown().await.unwrap();
    read_to_close(&mut c).await
}

async fn read_to_close(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .expect("the load balancer closes the connection")
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// The answers in `text`, split at each status line.
fn answers(text: &str) -> Vec<&str> {
    let starts: Vec<usize> = text.match_indices("HTTP/1.1 ").map(|(i, _)| i).collect();
    let mut ends = starts[1..].to_vec();
    ends.push(text.len());
    starts.iter().zip(ends).map(|(a, b)| &text[*a..b]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[target().await]).await;
    let text = send_raw(
        &s,
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc\
          GET /stream HTTP/1.1\r\nhost: x\r\n\r\n\
          GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let a = answers(&text);
    assert_eq!(a.len(), 3, "{text}");
    assert!(
        a[0].starts_with("HTTP/1.1 200 OK\r\n") && a[0].ends_with("\r\n\r\nabc"),
        "{}",
        a[0]
    );
    assert!(
        a[1].contains("\r\ntransfer-encoding: chunked\r\n"),
        "{}",
        a[1]
    );
    assert!(a[1].ends_with("\r\n5\r\nthree\r\n0\r\n\r\n"), "{}", a[1]);
    assert!(
        a[2].contains("\r\nconnection: close\r\n") && a[2].ends_with("\r\n\r\nok"),
        "{}",
        a[2]
    );
    assert_eq!(s.lb.counters.take().target_2xx, 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interim_answer_and_the_final_one_in_one_read_are_both_passed_on() {
    let t = answering(
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[t]).await;
    let started = std::time::Instant::now();
    let text = send_raw(
        &s,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        text,
        "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
         HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_field_cannot_take_away_a_requests_framing() {
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[target().await]).await;
    // Were Content-Length dropped because Connection names it, the target would read
    // "hello" as the start of a second request on a connection shared by all clients.
    let text = send_raw(
        &s,
        b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: content-length, close\r\n\
          content-length: 5\r\n\r\nhello",
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\nhello"),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_client_keeps_alive_only_when_asked_and_gets_plain_data() {
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[target().await]).await;
    let text = send_raw(
        &s,
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /stream HTTP/1.0\r\n\r\n",
    )
    .await;
    let a = answers(&text);
    assert_eq!(a.len(), 2, "{text}");
    assert!(
        a[0].contains("\r\nconnection: keep-alive\r\n") && a[0].ends_with("\r\n\r\nok"),
        "{}",
        a[0]
    );
    // A chunked answer cannot go to an HTTP/1.0 client: its data, then the close.
    let (head, body) = a[1].split_once("\r\n\r\n").unwrap();
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert_eq!(body, "one,two,three");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_by_the_load_balancer() {
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[target().await]).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"POST /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\
          connection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut interim))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"hello").await.unwrap();
    let text = read_to_close(&mut c).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("\r\nx-seen-expect: no\r\n"),
        "the target is not asked again"
    );
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_and_bodies_it_cannot_read_safely_are_refused_and_the_connection_closed() {
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[target().await]).await;
    let refused = [
        (&b"POST /echo HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"[..], "400", "both Content-Length and Transfer-Encoding"),
        (b"POST /echo HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab", "400", "conflicting Content-Length"),
        (b"GET nowhere HTTP/1.1\r\n\r\n", "400", "invalid request target"),
        (b"POST /echo HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "400", "invalid request body"),
    ];
    for (bytes, status, why) in refused {
        let text = send_closing(&s, bytes).await;
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        assert!(
            text.contains("\r\nconnection: close\r\n") && text.contains(why),
            "{text}"
        );
    }
    // A head over 64 KiB: 431, and the bytes still coming are read, not reset.
    let mut big = b"GET / HTTP/1.1\r\nx-big: ".to_vec();
    big.resize(200_000, b'a');
    let text = send_closing(&s, &big).await;
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    // Only the chunked body reached a target, and was not counted as answered by it.
    let snap = s.lb.counters.take();
    assert_eq!((snap.requests, snap.target_2xx), (1, 0));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_is_done_ends_the_body_and_the_connection() {
    // Answers 413 as soon as it has a head, and never reads a body.
    let t = answering(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!").await;
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[t]).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n0123456789")
        .await
        .unwrap();
    // The rest of the body never comes: the answer and the close must not wait for it.
    let text = read_to_close(&mut c).await;
    assert!(
        text.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nconnection: close\r\n") && text.ends_with("big!"),
        "{text}"
    );
    assert_eq!(s.lb.counters.take().target_4xx, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bodiless_request_is_sent_again_when_its_reused_connection_closes_under_it() {
    // Answers the first request on each connection and closes on the second unanswered,
    // as a target does when its keep-alive timeout and a request cross.
    let opened = Arc::new(AtomicU64::new(0));
    let count = opened.clone();
    let t = raw_server(move |mut stream| {
        let count = count.clone();
        async move {
            let (mut buf, mut chunk, mut heads) = (Vec::new(), [0u8; 4096], 0);
            while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                if !buf.starts_with(b"GET /health ") && heads == 0 {
                    count.fetch_add(1, Ordering::AcqRel);
                }
                heads += 1;
                if heads == 2 {
                    return;
                }
                buf.drain(..end + 4);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        }
    })
    .await;
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[t]).await;
    let mut c = s.connect().await;
    assert_eq!(c.get("/a", &[]).await, 200);
    assert_eq!(
        c.get("/b", &[]).await,
        200,
        "sent again on a new connection"
    );
    assert_eq!(opened.load(Ordering::Acquire), 2);
    // Nor is a bodiless request whose method is not idempotent (/b's connection is now
    // the one idle, and the target closes it on its second request).
    let text = send_raw(
        &s,
        b"POST /deploy HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
    // A request with a body is not sent twice either: the target may have acted on it.
    // (The failed connection is gone: one more GET leaves a once-used one idle.)
    assert_eq!(c.get("/warm", &[]).await, 200);
    let text = send_raw(
        &s,
        b"POST /c HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
    assert!(
        text.contains("connection closed before the response was complete"),
        "{text}"
    );
    let snap = s.lb.counters.take();
    assert_eq!((snap.target_2xx, snap.elb_5xx), (3, 2));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_slower_than_the_idle_timeout_gets_the_client_a_504() {
    let t = hyper_server(|req| async move {
        if req.uri().path() != "/health" {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Response::new(full("ok"))
    })
    .await;
    let idle = Duration::from_millis(400);
    let (lb, _changes) = load_balancer_with(ConnLimits {
        idle_timeout: idle,
        ..ConnLimits::default()
    });
    let s = Serving::start(lb, &[t]).await;
    let started = std::time::Instant::now();
    // Nothing moves on the client connection while the target thinks: the idle timeout
    // must not close it silently before the load balancer's own answer.
    let text = send_raw(&s, b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let took = started.elapsed();
    assert!(
        text.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
        "{text:?}"
    );
    assert!(text.contains("target did not answer in time"), "{text}");
    assert!(took >= idle && took < Duration::from_secs(5), "{took:?}");
    assert_eq!(s.lb.counters.take().elb_5xx, 1);
    s.stop().await;
}
