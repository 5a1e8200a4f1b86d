//! W3C trace context: a caller's `traceparent` is continued (its trace id on
//! the access line and on every error line the request causes, a new span id),
//! a missing or invalid one starts a trace of its own per request.

mod util;

use util::App;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[test]
fn the_callers_trace_id_is_on_the_access_and_error_lines() {
    let app = App::start(&[("FAULTS", "enabled")]);
    let parent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let (status, _) = app.get_with("/error/500", ("traceparent", &parent));
    assert_eq!(status, 500);
    let error = app.wait_log(|v| v["level"] == "ERROR" && v["trace_id"] == TRACE);
    assert_eq!(
        error["message"], "Intentional 500 error triggered",
        "{error}"
    );
    let access = app.wait_log(|v| v["message"] == "request completed" && v["trace_id"] == TRACE);
    assert_eq!(access["route"], "/error/500", "{access}");
    // This hop is a new span of the caller's trace, the same on both lines.
    let span = access["span_id"].as_str().unwrap();
    assert_eq!(span.len(), 16);
    assert_ne!(span, "00f067aa0ba902b7");
    assert_eq!(error["span_id"], span);
}

#[test]
fn without_a_valid_traceparent_each_request_starts_its_own_trace() {
    let app = App::start(&[]);
    app.get_with(
        "/api/products/1",
        (
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ),
    );
    app.get("/api/products/2");
    let n = app.wait_count(2, |v| {
        v["message"] == "request completed" && v["route"] == "/api/products/{id}"
    });
    assert_eq!(n, 2);
    let ids: Vec<String> = app
        .logs()
        .iter()
        .filter(|v| v["message"] == "request completed" && v["route"] == "/api/products/{id}")
        .map(|v| v["trace_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes().all(|b| b.is_ascii_hexdigit()) && id != &"0".repeat(32),
            "{id}"
        );
    }
    // Lines outside any request (start-up) carry no trace.
    assert!(
        app.logs()
            .iter()
            .any(|v| v["message"] == "Server listening" && v.get("trace_id").is_none())
    );
}
