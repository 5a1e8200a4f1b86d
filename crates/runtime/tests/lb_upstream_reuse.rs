//! Connection reuse to targets: requests a client connection sends through the
//! load balancer reuse one upstream connection per target instead of opening
//! one per request. Targets are real HTTP servers on loopback that count the
//! connections that carried proxied traffic (health checks open their own).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use demo_runtime::lb::{ConnLimits, Health, HealthCheckConfig, LoadBalancer};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;

/// A target answering 200 to everything; counts connections that served a path other than /health.
async fn counting_target() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let traffic_conns = Arc::new(AtomicU64::new(0));
    let counter = traffic_conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            let counted = Arc::new(std::sync::atomic::AtomicBool::new(false));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    if req.uri().path() != "/health" && !counted.swap(true, Ordering::AcqRel) {
                        counter.fetch_add(1, Ordering::AcqRel);
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
            });
        }
    });
    (addr, traffic_conns)
}

/// `n` GET requests over one client connection to `lb`; every answer must be 200.
async fn requests_on_one_connection(lb: SocketAddr, n: usize) {
    let stream = tokio::net::TcpStream::connect(lb).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for i in 0..n {
        sender.ready().await.unwrap();
        let req = hyper::Request::get(format!("/work/{i}"))
            .header("host", lb.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_reuses_one_upstream_connection_per_target() {
    let (a, a_conns) = counting_target().await;
    let (b, b_conns) = counting_target().await;
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
    lb.register("task-a", a);
    lb.register("task-b", b);
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

    requests_on_one_connection(addr, 20).await;
    assert_eq!(
        a_conns.load(Ordering::Acquire),
        1,
        "one connection to target a"
    );
    assert_eq!(
        b_conns.load(Ordering::Acquire),
        1,
        "one connection to target b"
    );
    // A second client connection has upstream connections of its own.
    requests_on_one_connection(addr, 20).await;
    assert_eq!(a_conns.load(Ordering::Acquire), 2);
    assert_eq!(b_conns.load(Ordering::Acquire), 2);
    let snapshot = lb.counters.take();
    assert_eq!(snapshot.requests, 40);
    assert_eq!(snapshot.target_2xx, 40);

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(35), serving)
        .await
        .unwrap()
        .unwrap();
}
