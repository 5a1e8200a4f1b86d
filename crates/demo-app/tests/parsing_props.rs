//! Property tests for the parsers that take outside input: query strings (typed
//! parameters, unknown names, bad encodings), path parameters and the fault
//! parameters. Whatever arrives: no panic, a JSON answer with a fitting status, and
//! an answer whose size is bounded by a constant plus the input's length.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use demo_app::app::{AppState, app};
use demo_app::config::Config;
use demo_app::faults::{ErrorRate, Faults, Latency};
use demo_app::log::Logger;
use http_body_util::BodyExt;
use proptest::prelude::*;
use tower_service::Service;

fn state() -> Arc<AppState> {
    let env: HashMap<String, String> = [
        ("FAULTS", "enabled"),
        // Injected delays of at most 1 ms keep every case fast.
        ("FAULT_MAX_DELAY_MS", "1"),
        ("FAULT_MAX_DURATION_S", "60"),
        ("LOG_LEVEL", "error"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_env(&env).unwrap();
    let log = Logger::new(config.log_level, "t", "t", std::io::sink());
    AppState::new(config, log)
}

/// Routes whose query strings are parsed into typed parameters. Leak, CPU-spike and
/// crash are left out: a valid query would really allocate, burn or exit.
const ROUTES: &[&str] = &[
    "/api/products",
    "/api/reports/sales",
    "/error/500",
    "/error/timeout",
    "/error/error-rate",
    "/error/latency",
    "/error/disable-health",
    "/error/enable-health",
    "/error/reset",
];

const NAMES: &[&str] = &[
    "page",
    "per_page",
    "category",
    "min_price_cents",
    "max_price_cents",
    "in_stock",
    "q",
    "days",
    "delay_ms",
    "percent",
    "route",
    "duration_s",
    "ms",
    "x",
];

/// Characters that may appear in a request target's query unescaped, plus `%` for
/// (possibly broken) escapes.
const VALUE: &str = "[A-Za-z0-9_.~+%/=-]{0,40}";

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        // Free-form: broken escapes, stray `&` and `=`.
        "[A-Za-z0-9_.~+%&=/-]{0,300}",
        // Known names with arbitrary values: reaches the typed parsing and validation.
        prop::collection::vec((prop::sample::select(NAMES), VALUE), 0..6).prop_map(|kv| {
            kv.into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        }),
    ]
}

/// One request to a fresh service (faults set by one case must not leak into the next).
fn call(uri: &str) -> (StatusCode, Vec<u8>) {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    });
    let st = state();
    let router = app(st.clone());
    let out = rt.block_on(async move {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        let mut router = router;
        // A Router is always ready: `call` directly (no `tower::ServiceExt::oneshot`).
        let resp = router.call(req).await.unwrap();
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, body)
    });
    st.log.shutdown();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_query_string_gets_a_bounded_json_answer(
        route in prop::sample::select(ROUTES),
        q in query(),
    ) {
        let uri = format!("{route}?{q}");
        let (status, body) = call(&uri);
        prop_assert!(
            status != StatusCode::INTERNAL_SERVER_ERROR || route == "/error/500",
            "{uri} -> {status}"
        );
        prop_assert!(body.len() <= 2048 + uri.len(), "{uri}: {} bytes", body.len());
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| TestCaseError::fail(format!("{uri}: not JSON ({e})")))?;
        if status.is_client_error() {
            prop_assert!(v["error"].is_string(), "{uri}: {v}");
            prop_assert!(v["message"].is_string(), "{uri}: {v}");
        }
    }

    #[test]
    fn any_product_id_segment_gets_a_json_answer(seg in "[A-Za-z0-9%._~-]{1,60}") {
        let uri = format!("/api/products/{seg}");
        let (status, body) = call(&uri);
        prop_assert!(
            [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND].contains(&status),
            "{uri} -> {status}"
        );
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok(), "{uri}");
    }

    #[test]
    fn fault_parameters_are_accepted_only_within_their_limits(
        percent in prop_oneof![any::<f64>(), -10.0..110.0f64],
        route in prop::option::of("[ -~]{0,120}"),
        ms in any::<u64>(),
        secs in prop::option::of(any::<u64>()),
    ) {
        let s = state();
        let limits = s.faults.limits().clone();
        s.log.shutdown();
        let f = Faults::new(limits.clone());
        match f.duration(secs) {
            Ok(d) => prop_assert!(d <= limits.max_duration && !d.is_zero()),
            Err(e) => prop_assert!(e.to_string().len() < 200),
        }
        match f.delay(ms, "ms") {
            Ok(d) => prop_assert!(d <= limits.max_delay),
            Err(e) => prop_assert!(e.to_string().len() < 200),
        }
        let rate = f.set_error_rate(
            ErrorRate { percent, route: route.clone() },
            Duration::from_secs(1),
        );
        prop_assert_eq!(rate.is_ok(), (0.0..=100.0).contains(&percent)
            && route.as_deref().is_none_or(|r| r.starts_with("/api/") && r.len() <= 100));
        if let Err(e) = rate {
            prop_assert!(e.to_string().len() < 200 + route.map_or(0, |r| r.len()));
        }
        let latency = f.set_latency(
            Latency { delay: Duration::from_millis(1), percent, route: None },
            Duration::from_secs(1),
        );
        prop_assert_eq!(latency.is_ok(), (0.0..=100.0).contains(&percent));
        let g = f.gauges();
        prop_assert!((0.0..=100.0).contains(&g.error_rate_percent));
        prop_assert!((0.0..=100.0).contains(&g.latency_percent));
    }
}
