//! The load balancer on loopback with real HTTP targets, for the `lb_*` tests:
//! targets that record what reaches them, a load balancer serving them once
//! they are healthy, and requests over one client connection.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use demo_runtime::lb::{ConnLimits, Health, HealthCheckConfig, LoadBalancer};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// What reached a target (or several sharing one record), health checks aside.
#[derive(Default)]
pub struct Seen {
    /// Connections that carried a proxied request, ever.
    pub connections: AtomicU64,
    /// Such connections open now.
    pub open: AtomicU64,
    /// The `traceparent` of every proxied request.
    pub traceparents: Mutex<Vec<String>>,
}

/// A target answering 200 "ok" to everything, recording in `seen`.
pub async fn target(seen: Arc<Seen>) -> SocketAddr {
    raw_server(move |stream| {
        let seen = seen.clone();
        async move {
            let proxied = Arc::new(AtomicBool::new(false));
            let (p, s) = (proxied.clone(), seen.clone());
            let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                if req.uri().path() != "/health" {
                    if !p.swap(true, Ordering::AcqRel) {
                        s.connections.fetch_add(1, Ordering::AcqRel);
                        s.open.fetch_add(1, Ordering::AcqRel);
                    }
                    if let Some(v) = req.headers().get("traceparent") {
                        let v = v.to_str().unwrap_or("").to_string();
                        s.traceparents.lock().unwrap().push(v);
                    }
                }
                async { Ok::<_, Infallible>(hyper::Response::new(full("ok"))) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            if proxied.load(Ordering::Acquire) {
                seen.open.fetch_sub(1, Ordering::AcqRel);
            }
        }
    })
    .await
}

/// A response body of any kind.
pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

pub fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).boxed()
}

/// A body whose frames arrive over time through a channel: its length is
/// unknown, so hyper sends it chunked.
struct Streamed(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// `parts` sent one by one, `pause` apart.
pub fn streamed(parts: &'static [&'static str], pause: Duration) -> BoxBody {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for part in parts {
            tokio::time::sleep(pause).await;
            let _ = tx.send(Bytes::from_static(part.as_bytes())).await;
        }
    });
    Streamed(rx).boxed()
}

/// A listener on loopback whose every connection is handed to `serve`, in a task of its own.
pub async fn raw_server<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// An HTTP/1.1 server on loopback (hyper's) answering every request with `handler`.
pub async fn hyper_server<H, Fut>(handler: H) -> SocketAddr
where
    H: Fn(hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<BoxBody>> + Send + 'static,
{
    raw_server(move |stream| {
        let handler = handler.clone();
        async move {
            let svc = hyper::service::service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        }
    })
    .await
}

/// Health changes the load balancer reports (kept open; the tests do not read them).
pub type Changes = tokio::sync::mpsc::UnboundedReceiver<demo_runtime::lb::HealthChange>;

/// A load balancer with fast health checks on the current runtime.
pub fn load_balancer() -> (Arc<LoadBalancer>, Changes) {
    load_balancer_with(ConnLimits::default())
}

/// `load_balancer` with `limits` on client connections.
pub fn load_balancer_with(limits: ConnLimits) -> (Arc<LoadBalancer>, Changes) {
    let (changes, changes_rx) = tokio::sync::mpsc::unbounded_channel();
    let lb = LoadBalancer::with_limits(
        HealthCheckConfig {
            path: "/health".into(),
            interval: Duration::from_millis(50),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        },
        changes,
        limits,
    );
    (lb, changes_rx)
}

/// `lb` serving on loopback with `targets` registered and healthy.
pub struct Serving {
    pub lb: Arc<LoadBalancer>,
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    serving: tokio::task::JoinHandle<()>,
}

impl Serving {
    pub async fn start(lb: Arc<LoadBalancer>, targets: &[SocketAddr]) -> Serving {
        for (i, t) in targets.iter().enumerate() {
            lb.register(&format!("task-{i}"), *t);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let serving = tokio::spawn(lb.clone().serve(listener, stop_rx));
        let start = Instant::now();
        while lb.targets().iter().any(|t| t.state() != Health::Healthy) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "targets never healthy"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Serving {
            lb,
            addr,
            stop,
            serving,
        }
    }

    /// A new client connection to the load balancer.
    pub async fn connect(&self) -> Client {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client {
            sender,
            host: self.addr.to_string(),
        }
    }

    /// Stops serving; open connections get their in-flight requests done.
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(35), self.serving)
            .await
            .unwrap()
            .unwrap();
    }
}

/// One client connection.
pub struct Client {
    sender: SendRequest<Empty<Bytes>>,
    host: String,
}

impl Client {
    /// GET `path` with `headers`; the status once the body is read.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> u16 {
        self.sender.ready().await.unwrap();
        let mut req = hyper::Request::get(path).header("host", &self.host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .sender
            .send_request(req.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        resp.into_body().collect().await.unwrap();
        status
    }
}
