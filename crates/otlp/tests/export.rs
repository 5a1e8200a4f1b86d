//! Spans reach a real HTTP receiver as OTLP/JSON with the hop's own ids, and
//! the environment decides whether export is on at all.

use std::net::TcpListener;
use std::time::{Duration, SystemTime};

use demo_otlp::{Error, Exporter, Kind, Span, Value};
use demo_tracecontext::TraceContext;

fn receiver() -> (String, demo_otlp::receiver::Receiver) {
    let r = demo_otlp::receiver::Receiver::start().unwrap();
    (r.url.clone(), r)
}

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

#[test]
fn a_span_arrives_with_the_ids_the_hop_logs() {
    let (url, bodies) = receiver();
    let exporter = Exporter::from_lookup(
        "demo-app",
        vec![("service.instance.id", "task-0007".into())],
        vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ]),
    )
    .unwrap()
    .expect("an endpoint is set: export is on");
    let trace = TraceContext::continue_or_start(Some(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ));
    let start = SystemTime::now();
    exporter.record(Span {
        trace,
        name: "GET /api/products/{id}".into(),
        kind: Kind::Server,
        start,
        end: start + Duration::from_millis(3),
        error: true,
        attributes: vec![
            ("http.request.method", Value::from("GET")),
            ("http.route", Value::from("/api/products/{id}")),
            ("http.response.status_code", Value::I64(500)),
        ],
    });
    let (path, body) = bodies
        .next(Duration::from_secs(15))
        .expect("an export request");
    assert_eq!(path, "/v1/traces");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rs = &json["resourceSpans"][0];
    let resource = rs["resource"]["attributes"].to_string();
    assert!(
        resource.contains("service.name") && resource.contains("demo-app"),
        "{resource}"
    );
    assert!(resource.contains("task-0007"), "{resource}");
    let span = &rs["scopeSpans"][0]["spans"][0];
    assert_eq!(
        span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{span}"
    );
    assert_eq!(span["spanId"], trace.span_id_hex(), "{span}");
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7", "{span}");
    assert_eq!(span["name"], "GET /api/products/{id}");
    assert_eq!(span["kind"], 2, "SPAN_KIND_SERVER: {span}");
    assert_eq!(span["status"]["code"], 2, "STATUS_CODE_ERROR: {span}");
    assert!(
        span["attributes"]
            .to_string()
            .contains("/api/products/{id}")
    );
    exporter.shutdown();
}

#[test]
fn export_is_off_unless_an_endpoint_is_set() {
    assert!(
        Exporter::from_lookup("x", vec![], vars(&[]))
            .unwrap()
            .is_none()
    );
    assert!(
        Exporter::from_lookup(
            "x",
            vec![],
            vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
                ("OTEL_SDK_DISABLED", "true")
            ])
        )
        .unwrap()
        .is_none()
    );
}

#[test]
fn bad_settings_are_named() {
    let e = Exporter::from_lookup(
        "x",
        vec![],
        vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    assert!(e.to_string().contains("http/json"), "{e}");
    let e = Exporter::from_lookup(
        "x",
        vec![],
        vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
        ]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("OTEL_BSP_SCHEDULE_DELAY"), "{e}");
}

#[test]
fn a_collector_that_is_down_costs_counted_failures_not_requests() {
    // A port nothing listens on: export fails, recording still returns at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let exporter = Exporter::from_lookup(
        "x",
        vec![],
        vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
        ]),
    )
    .unwrap()
    .unwrap();
    let trace = TraceContext::continue_or_start(None);
    let now = SystemTime::now();
    for _ in 0..10 {
        exporter.record(Span {
            trace,
            name: "GET /".into(),
            kind: Kind::Server,
            start: now,
            end: now,
            error: false,
            attributes: vec![],
        });
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while exporter.failed() < 10 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(exporter.failed(), 10);
    assert_eq!(exporter.exported(), 0);
    assert_eq!(exporter.dropped(), 0);
}
