//! The practical ceiling for benchmarks: a bare hyper HTTP/1 server answering
//! every request with a fixed body on one tokio runtime, no routing, no
//! logging, no metrics. `scripts/bench-service.sh` runs it beside demo-app.
//!
//! With `--like-demo` it is the second reference: hyper alone doing the work a
//! `GET /` of demo-app must do whatever framework serves it — the same response
//! (`content-type`, a generated `x-request-id`, a body of the same fields and size
//! with a fresh timestamp and count), one access line with the same fields through
//! demo-app's own logger to stdout, and the same counter and histogram update. What
//! demo-app spends beyond this is routing, middleware and the limits (header and
//! idle timeouts, connection cap), not the work itself.
//!
//! Usage: `bare_hyper PORT [--like-demo]`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use demo_app::log::{Level, Logger, Timestamp};
use demo_app::metrics::HttpMetrics;
use demo_tracecontext::TraceContext;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What `--like-demo` shares between requests.
struct Demo {
    log: Logger,
    http: HttpMetrics,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .and_then(|p| p.parse().ok())
        .expect("usage: bare_hyper PORT [--like-demo]");
    let demo = match args.next().as_deref() {
        None => None,
        Some("--like-demo") => Some(Arc::new(Demo {
            log: Logger::new(Level::Info, "0.1.0", "bare", std::io::stdout()),
            http: HttpMetrics::default(),
        })),
        Some(other) => panic!("unknown argument {other:?}; usage: bare_hyper PORT [--like-demo]"),
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, peer) = listener.accept().await?;
        let demo = demo.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = match &demo {
                    None => {
                        Response::new(Full::new(Bytes::from_static(b"{\"service\":\"hello\"}")))
                    }
                    Some(demo) => like_demo(demo, &req, peer),
                };
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// demo-app's `GET /`, written out by hand.
fn like_demo(
    demo: &Demo,
    req: &Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let start = Instant::now();
    let count = demo.http.request_started();
    let trace = TraceContext::continue_or_start(None);
    let request_id = format!("{:032x}", fastrand::u128(..));
    let body = format!(
        "{{\"service\":\"demo-app\",\"version\":\"0.1.0\",\"git_sha\":\"unknown\",\
         \"environment\":\"local\",\"task_id\":\"local-00000\",\"timestamp\":\"{}\",\
         \"request_count\":{count}}}",
        Timestamp::now().as_str()
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        "x-request-id",
        HeaderValue::from_str(&request_id).expect("hex is a valid header value"),
    );
    let latency = start.elapsed();
    demo.http.observe(req.method().as_str(), "/", 200, latency);
    demo.http.request_finished();
    demo.log
        .info("request completed")
        .str("request_id", &request_id)
        .trace(&trace)
        .str("method", req.method().as_str())
        .str("route", "/")
        .str("path", req.uri().path())
        .u64("status", 200)
        .millis("latency_ms", latency)
        .ip("client_ip", peer.ip())
        .str(
            "user_agent",
            req.headers()
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        )
        .emit();
    response
}
