//! With span export on, the load balancer exports one span per proxied
//! request: the caller's span as parent, and as its own id exactly the parent
//! the target received in `traceparent`, so the hop and the task's span join
//! into one trace in a tracing backend.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use demo_otlp::Exporter;
use demo_otlp::receiver::Receiver;
use demo_runtime::lb::{ConnLimits, Health, HealthCheckConfig, LoadBalancer};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A target answering 200 that keeps the `traceparent` of every request but health checks.
async fn recording_target() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    if req.uri().path() != "/health"
                        && let Some(v) = req.headers().get("traceparent")
                    {
                        sink.lock().unwrap().push(v.to_str().unwrap().to_string());
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
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hop_is_exported_as_the_parent_of_what_the_target_receives() {
    let collector = Receiver::start().unwrap();
    let url = collector.url.clone();
    let exporter = Exporter::from_lookup("devops-agent-lb", vec![], move |name| match name {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(url.clone()),
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/json".into()),
        "OTEL_BSP_SCHEDULE_DELAY" => Some("50".into()),
        _ => None,
    })
    .unwrap()
    .unwrap();
    let (target, seen) = recording_target().await;
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
    assert!(lb.export_spans(exporter));
    lb.register("task-a", target);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(lb.clone().serve(listener, stop_rx));
    let start = Instant::now();
    while lb.targets().iter().any(|t| t.state() != Health::Healthy) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "target never healthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/api/products/7")
        .header("host", addr.to_string())
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();

    let forwarded = seen.lock().unwrap().clone();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    let hop_span_id = forwarded[0].split('-').nth(2).unwrap().to_string();
    assert!(forwarded[0].contains(TRACE), "{forwarded:?}");

    let span = tokio::task::spawn_blocking(move || {
        let (path, body) = collector
            .next(Duration::from_secs(15))
            .expect("an export request");
        assert_eq!(path, "/v1/traces");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["resourceSpans"][0]["scopeSpans"][0]["spans"][0].clone()
    })
    .await
    .unwrap();
    assert_eq!(span["traceId"], TRACE, "{span}");
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7", "{span}");
    assert_eq!(span["spanId"], hop_span_id.as_str(), "{span}");
    assert_eq!(span["name"], "GET");
    let attrs = span["attributes"].to_string();
    assert!(
        attrs.contains("/api/products/7") && attrs.contains("task-a"),
        "{attrs}"
    );

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(35), serving)
        .await
        .unwrap()
        .unwrap();
}
