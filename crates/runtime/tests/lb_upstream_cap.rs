//! The descriptor bound behind the load balancer's budget: a client connection routed
//! over more targets than `upstream::MAX_PER_CLIENT` never holds more upstream
//! connections than that (the least recently used is closed before another opens).
//! Targets are real HTTP servers on loopback that count their open proxied connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use demo_runtime::lb::{ConnLimits, FDS_PER_CONNECTION, Health, HealthCheckConfig, LoadBalancer};
use demo_runtime::upstream::MAX_PER_CLIENT;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;

/// Open connections that carried a request other than /health, across all targets.
#[derive(Default)]
struct Open {
    now: AtomicU64,
}

/// A target answering 200 to everything, counting its proxied connections in `open`.
async fn target(open: Arc<Open>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let open = open.clone();
            tokio::spawn(async move {
                let counted = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let c = counted.clone();
                let o = open.clone();
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    if req.uri().path() != "/health" && !c.swap(true, Ordering::AcqRel) {
                        o.now.fetch_add(1, Ordering::AcqRel);
                    }
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                if counted.load(Ordering::Acquire) {
                    open.now.fetch_sub(1, Ordering::AcqRel);
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_holds_at_most_max_per_client_upstream_connections() {
    assert_eq!(FDS_PER_CONNECTION, 1 + MAX_PER_CLIENT as u64);
    let targets = MAX_PER_CLIENT + 3;
    let open = Arc::new(Open::default());
    let (changes, _changes_rx) = tokio::sync::mpsc::unbounded_channel();
    let lb = LoadBalancer::with_limits(
        HealthCheckConfig {
            path: "/health".into(),
            interval: Duration::from_millis(50),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        },
        changes,
        ConnLimits::default(),
    );
    for i in 0..targets {
        lb.register(&format!("task-{i}"), target(open.clone()).await);
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

    // Three rounds over every target on one client connection: round robin routes
    // each request to the next target, so every request past the eighth needs a
    // connection this client connection does not hold.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut most = 0;
    for i in 0..3 * targets {
        sender.ready().await.unwrap();
        let req = hyper::Request::get(format!("/work/{i}"))
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        resp.into_body().collect().await.unwrap();
        // The load balancer closes the evicted connection before opening the new one,
        // but its target sees the close a moment later: give it that moment (bounded;
        // without the cap the count would stay above it and the assertion below fails).
        let settle = Instant::now();
        while open.now.load(Ordering::Acquire) > MAX_PER_CLIENT as u64
            && settle.elapsed() < Duration::from_millis(500)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        most = most.max(open.now.load(Ordering::Acquire));
    }
    assert!(
        most <= MAX_PER_CLIENT as u64,
        "{most} upstream connections open at once for one client connection"
    );
    // All the cap allows was used: eight connections were open together.
    assert_eq!(most, MAX_PER_CLIENT as u64);
    let snapshot = lb.counters.take();
    assert_eq!(snapshot.target_2xx, 3 * targets as u64);

    drop(sender);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(35), serving)
        .await
        .unwrap()
        .unwrap();
}
