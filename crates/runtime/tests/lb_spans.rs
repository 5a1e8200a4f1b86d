//! With span export on, the load balancer exports one span per proxied
//! request: the caller's span as parent, and as its own id exactly the parent
//! the target received in `traceparent`, so the hop and the task's span join
//! into one trace in a tracing backend.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Seen, Serving, load_balancer, target};
use demo_otlp::Exporter;
use demo_otlp::receiver::Receiver;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

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
    let seen = Arc::new(Seen::default());
    let (lb, _changes) = load_balancer();
    assert!(lb.export_spans(exporter));
    let s = Serving::start(lb, &[target(seen.clone()).await]).await;

    let parent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let mut client = s.connect().await;
    assert_eq!(
        client
            .get("/api/products/7", &[("traceparent", parent.as_str())])
            .await,
        200
    );

    let forwarded = seen.traceparents.lock().unwrap().clone();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert!(forwarded[0].contains(TRACE), "{forwarded:?}");
    let hop_span_id = forwarded[0].split('-').nth(2).unwrap().to_string();

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
        attrs.contains("/api/products/7") && attrs.contains("task-0"),
        "{attrs}"
    );
    drop(client);
    s.stop().await;
}
