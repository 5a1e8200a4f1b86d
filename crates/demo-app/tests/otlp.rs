//! With OTEL_EXPORTER_OTLP_ENDPOINT set, every request becomes an OTLP span
//! whose ids are the ones on its access line; a wrong OTLP setting stops the
//! start with its name.

mod util;

use std::time::Duration;

use demo_otlp::receiver::Receiver;
use util::App;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[test]
fn a_request_is_exported_as_the_span_its_log_line_names() {
    let collector = Receiver::start().unwrap();
    let app = App::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ]);
    let parent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let (status, _) = app.get_with("/api/products/2", ("traceparent", &parent));
    assert_eq!(status, 200);
    let access = app.wait_log(|v| v["message"] == "request completed" && v["trace_id"] == TRACE);
    // Health checks and other requests may come first: find this trace's span.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let span = loop {
        let (path, body) = collector
            .next(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("the span within 20 s");
        assert_eq!(path, "/v1/traces");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let resource = json["resourceSpans"][0]["resource"]["attributes"].to_string();
        assert!(
            resource.contains("test-task"),
            "service.instance.id: {resource}"
        );
        assert!(
            resource.contains("9.9.9-test"),
            "service.version: {resource}"
        );
        let spans = json["resourceSpans"][0]["scopeSpans"][0]["spans"].clone();
        if let Some(s) = spans
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["traceId"] == TRACE)
        {
            break s.clone();
        }
    };
    assert_eq!(span["spanId"], access["span_id"], "{span}");
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(span["name"], "GET /api/products/{id}");
    let attrs = span["attributes"].to_string();
    assert!(
        attrs.contains("http.route") && attrs.contains("/api/products/{id}"),
        "{attrs}"
    );
    assert!(attrs.contains("http.response.status_code"), "{attrs}");
}

#[test]
fn a_wrong_otlp_setting_is_named_at_start() {
    let out = util::command(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
}
