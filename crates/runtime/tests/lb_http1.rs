//! HTTP/1.1 through the load balancer: request bodies
//! (sized and chunked), response bodies of every framing (sized, large,
//! chunked and streamed over time, none for HEAD and 204, until close), the
//! forwarding headers, a target that closes after its answer, and a reused
//! connection the target closed while it was idle. Targets are real servers on
//! loopback: hyper for the well-behaved ones, raw sockets where the test needs
//! bytes no library would send.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{BoxBody, Serving, full, hyper_server, load_balancer, raw_server, streamed};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A hyper target whose routes exercise each framing.
async fn hyper_target() -> std::net::SocketAddr {
    hyper_server(route).await
}

async fn route(req: Request<Incoming>) -> Response<BoxBody> {
    let seen = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (xff, proto, te, hop) = (
        seen("x-forwarded-for"),
        seen("x-forwarded-proto"),
        seen("transfer-encoding"),
        seen("x-hop"),
    );
    let uri = req.uri().to_string();
    let path = req.uri().path().to_string();
    let mut resp = match path.as_str() {
        "/echo" => {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            Response::new(full(body))
        }
        "/big" => Response::new(full(vec![b'x'; 1 << 20])),
        "/stream" => {
            // Three chunks with pauses: no length known, so hyper sends it chunked.
            Response::new(streamed(
                &["one,", "two,", "three"],
                Duration::from_millis(20),
            ))
        }
        "/empty" => {
            let mut r = Response::new(full(""));
            *r.status_mut() = hyper::StatusCode::NO_CONTENT;
            r
        }
        _ => Response::new(full("ok")),
    };
    let h = resp.headers_mut();
    h.insert("x-seen-xff", xff.parse().unwrap());
    h.insert("x-seen-proto", proto.parse().unwrap());
    h.insert("x-seen-te", te.parse().unwrap());
    h.insert("x-seen-hop", hop.parse().unwrap());
    h.insert("x-seen-uri", uri.parse().unwrap());
    resp
}

/// A client connection that sends any body.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<BoxBody>,
    /// The load balancer's address, for the `host` header.
    host: String,
}

impl Client {
    async fn connect(s: &Serving) -> Client {
        let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client {
            sender,
            host: s.addr.to_string(),
        }
    }

    /// Sends a bodiless `method` request for `path`.
    async fn bodiless(&mut self, method: Method, path: &str) -> (Response<()>, Bytes) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .body(full(""))
            .unwrap();
        self.send(req).await
    }

    async fn send(&mut self, req: Request<BoxBody>) -> (Response<()>, Bytes) {
        self.sender.ready().await.unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), self.sender.send_request(req))
            .await
            .expect("an answer in time")
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (Response::from_parts(parts, ()), body)
    }
}

fn header(r: &Response<()>, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_framing_crosses_the_load_balancer_intact() {
    let targets = [hyper_target().await];
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &targets).await;
    let mut c = Client::connect(&s).await;

    // A sized request body, and the forwarding headers the target sees.
    let req = Request::post("/echo")
        .header("host", &c.host)
        .header("x-forwarded-for", "203.0.113.7")
        .header("connection", "x-hop")
        .header("x-hop", "secret")
        .body(full("hello target"))
        .unwrap();
    let (r, body) = c.send(req).await;
    assert_eq!(r.status(), 200);
    assert_eq!(body, "hello target");
    assert_eq!(header(&r, "x-seen-xff"), "203.0.113.7, 127.0.0.1");
    assert_eq!(header(&r, "x-seen-proto"), "http");
    assert_eq!(
        header(&r, "x-seen-hop"),
        "",
        "a header Connection names is not forwarded"
    );

    // A chunked request body (no length known to the client) arrives whole, chunked.
    let req = Request::post("/echo")
        .header("host", &c.host)
        .body(streamed(&["a", "bb", "ccc"], Duration::from_millis(10)))
        .unwrap();
    let (r, body) = c.send(req).await;
    assert_eq!((r.status().as_u16(), &body[..]), (200, &b"abbccc"[..]));
    assert_eq!(header(&r, "x-seen-te"), "chunked");

    // A 1 MiB sized response, read over many socket reads.
    let (r, body) = c.bodiless(Method::GET, "/big").await;
    assert_eq!(r.status(), 200);
    assert_eq!(body.len(), 1 << 20);
    assert!(body.iter().all(|b| *b == b'x'));

    // A chunked response streamed over time.
    let (r, body) = c.bodiless(Method::GET, "/stream").await;
    assert_eq!(
        (r.status().as_u16(), &body[..]),
        (200, &b"one,two,three"[..])
    );

    // No body: HEAD (whatever its Content-Length says) and 204.
    let (r, body) = c.bodiless(Method::HEAD, "/big").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), (1 << 20).to_string());
    assert!(body.is_empty());
    let (r, body) = c.bodiless(Method::GET, "/empty").await;
    assert_eq!((r.status().as_u16(), body.len()), (204, 0));

    // And the same client connection still works after all of them.
    let (r, body) = c.bodiless(Method::GET, "/").await;
    assert_eq!((r.status().as_u16(), &body[..]), (200, &b"ok"[..]));
    let snap = s.lb.counters.take();
    assert_eq!((snap.requests, snap.target_2xx, snap.elb_5xx), (7, 7, 0));
    drop(c);
    s.stop().await;
}

/// A raw target: answers each request on a connection with `answer` and then,
/// if `close_after` is set, closes that connection after that long without
/// having said so. Counts connections that carried a request other than /health.
async fn raw_target(
    answer: &'static [u8],
    close_after: Option<Duration>,
    proxied: Arc<AtomicU64>,
) -> std::net::SocketAddr {
    raw_server(move |mut stream| {
        let proxied = proxied.clone();
        async move {
            let mut buf = Vec::new();
            let mut counted = false;
            loop {
                let mut chunk = [0u8; 4096];
                let Ok(n) = stream.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let health = buf.starts_with(b"GET /health ");
                buf.drain(..end + 4);
                if health {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    continue;
                }
                if !counted {
                    counted = true;
                    proxied.fetch_add(1, Ordering::AcqRel);
                }
                if stream.write_all(answer).await.is_err() {
                    return;
                }
                if let Some(after) = close_after {
                    tokio::time::sleep(after).await;
                    return;
                }
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_connection_the_target_closed_while_idle_is_replaced_not_failed() {
    let proxied = Arc::new(AtomicU64::new(0));
    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    // Closes each connection 30 ms after answering, without `Connection: close`.
    let t = raw_target(answer, Some(Duration::from_millis(30)), proxied.clone()).await;
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[t]).await;
    let mut c = s.connect().await;
    assert_eq!(c.get("/a", &[]).await, 200);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // The connection the load balancer kept for this client connection was closed by
    // the target while idle: the GET goes out on a new one instead of answering 502.
    assert_eq!(c.get("/b", &[]).await, 200);
    assert_eq!(proxied.load(Ordering::Acquire), 2, "a second connection");
    let snap = s.lb.counters.take();
    assert_eq!((snap.target_2xx, snap.elb_5xx), (2, 0));
    drop(c);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_delimited_by_close_and_a_target_that_closes_are_followed() {
    let proxied = Arc::new(AtomicU64::new(0));
    // HTTP/1.0 style: no length, the body ends when the target closes.
    let answer = b"HTTP/1.1 200 OK\r\nx-kind: until-close\r\n\r\nall of it";
    let t = raw_target(answer, Some(Duration::ZERO), proxied.clone()).await;
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[t]).await;
    let mut c = Client::connect(&s).await;
    for _ in 0..3 {
        let (r, body) = c.bodiless(Method::GET, "/").await;
        assert_eq!((r.status().as_u16(), &body[..]), (200, &b"all of it"[..]));
    }
    // Such a connection can carry nothing more: one per request.
    assert_eq!(proxied.load(Ordering::Acquire), 3);
    drop(c);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_response_is_a_502_from_the_load_balancer() {
    let proxied = Arc::new(AtomicU64::new(0));
    let t = raw_target(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        None,
        proxied,
    )
    .await;
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[t]).await;
    let mut c = s.connect().await;
    assert_eq!(c.get("/", &[]).await, 502);
    assert_eq!(s.lb.counters.take().elb_5xx, 1);
    drop(c);
    s.stop().await;
}

/// A client that goes away while its request waits on the target: the request
/// no longer counts as in flight, so deregistering the target does not wait
/// for it.
#[tokio::test]
async fn a_request_whose_client_left_is_no_longer_in_flight() {
    let target = hyper_server(|req| async move {
        if req.uri().path() != "/health" {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Response::new(full("ok"))
    })
    .await;
    let (lb, _changes) = load_balancer();
    let s = Serving::start(lb, &[target]).await;
    let t = s.lb.targets()[0].clone();
    let mut client = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let wait = |want: u64| {
        let t = t.clone();
        async move {
            let start = std::time::Instant::now();
            while t.in_flight() != want {
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "in flight {} (want {want})",
                    t.in_flight()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait(1).await;
    drop(client);
    wait(0).await;
    let start = std::time::Instant::now();
    s.lb.deregister("task-0", Duration::from_secs(10)).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    s.stop().await;
}
