//! The REST API and error bodies, through the real binary over real HTTP.

mod util;
use util::App;

#[test]
fn root_and_health_describe_the_replica() {
    let app = App::start(&[]);
    let (s, v) = app.get("/");
    assert_eq!(s, 200);
    assert_eq!(v["service"], "demo-app");
    assert_eq!(v["version"], "9.9.9-test");
    assert_eq!(v["git_sha"], "0123abc");
    assert_eq!(v["task_id"], "test-task");
    assert_eq!(v["environment"], "local");
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    let first = v["request_count"].as_u64().unwrap();
    let (_, v) = app.get("/");
    assert_eq!(v["request_count"].as_u64().unwrap(), first + 1);

    let (s, h) = app.get("/health");
    assert_eq!(s, 200);
    assert_eq!(h["status"], "healthy");
    assert!(h["uptime_s"].as_f64().unwrap() >= 0.0);
    assert!(h["memory_rss_bytes"].as_u64().unwrap() > 1_000_000);
}

#[test]
fn product_listing_filters_and_paginates() {
    let app = App::start(&[]);
    let (s, v) = app.get("/api/products?per_page=5&page=2");
    assert_eq!(s, 200);
    assert_eq!(v["items"].as_array().unwrap().len(), 5);
    assert_eq!(v["items"][0]["id"], 6);
    assert_eq!(v["total"], 24);
    assert_eq!(v["total_pages"], 5);

    let (_, v) = app.get("/api/products?category=storage&in_stock=true&max_price_cents=20000");
    let ids: Vec<u64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![9, 10]);

    let (_, v) = app.get("/api/products?q=MONITOR");
    assert_eq!(v["total"], 4, "{v}");

    let (s, v) = app.get("/api/products?page=99");
    assert_eq!(s, 200);
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
}

#[test]
fn bad_query_values_name_the_parameter() {
    let app = App::start(&[]);
    for (q, field) in [
        ("per_page=abc", "per_page"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("in_stock=maybe", "in_stock"),
        ("category=toys", "category"),
        ("min_price_cents=500&max_price_cents=100", "min_price_cents"),
    ] {
        let (s, v) = app.get(&format!("/api/products?{q}"));
        assert_eq!(s, 400, "{q}: {v}");
        assert_eq!(v["error"], "bad_request");
        assert_eq!(v["field"], field, "{q}: {v}");
        assert!(v["message"].as_str().unwrap().contains(field), "{v}");
    }
    let (s, v) = app.get("/api/products?colour=red");
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().contains("colour"), "{v}");
}

#[test]
fn product_lookup() {
    let app = App::start(&[]);
    let (s, v) = app.get("/api/products/3");
    assert_eq!((s, v["name"].as_str().unwrap()), (200, "27-inch monitor"));
    let (s, v) = app.get("/api/products/999");
    assert_eq!(s, 404);
    assert_eq!(v["error"], "not_found");
    assert!(v["message"].as_str().unwrap().contains("999"));
    let (s, v) = app.get("/api/products/abc");
    assert_eq!((s, v["field"].as_str().unwrap()), (400, "id"));
}

#[test]
fn quotes_validate_their_body() {
    let app = App::start(&[("MAX_BODY_BYTES", "1024")]);
    let (s, v) = app.post_json(
        "/api/quote",
        r#"{"items":[{"product_id":1,"quantity":2},{"product_id":16,"quantity":1}],"coupon":"save10"}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["subtotal_cents"], 8999 * 2 + 1299);
    assert_eq!(v["discount_cents"], (8999 * 2 + 1299) / 10);
    assert_eq!(v["total_cents"], 8999 * 2 + 1299 - (8999 * 2 + 1299) / 10);

    let cases: &[(&str, u16, &str)] = &[
        (r#"{"items":[{"product_id":1,"quantity":2}"#, 400, "body"),
        ("not json", 400, "body"),
        (
            r#"{"items":[{"product_id":1,"quantity":"two"}]}"#,
            422,
            "items[0].quantity",
        ),
        (
            r#"{"items":[{"product_id":-1,"quantity":1}]}"#,
            422,
            "items[0].product_id",
        ),
        (r#"{"items":"all"}"#, 422, "items"),
        (r#"{"items":[]}"#, 422, "items"),
        (
            r#"{"items":[{"product_id":999,"quantity":1}]}"#,
            422,
            "items[0].product_id",
        ),
        (
            r#"{"items":[{"product_id":5,"quantity":1}]}"#,
            422,
            "items[0].product_id",
        ),
        (
            r#"{"items":[{"product_id":1,"quantity":0}]}"#,
            422,
            "items[0].quantity",
        ),
        (
            r#"{"items":[{"product_id":1,"quantity":1},{"product_id":1,"quantity":1}]}"#,
            422,
            "items[1].product_id",
        ),
        (
            r#"{"items":[{"product_id":1,"quantity":1}],"coupon":"FREE"}"#,
            422,
            "coupon",
        ),
        (
            r#"{"items":[{"product_id":1,"quantity":1}],"extra":1}"#,
            422,
            "extra",
        ),
        (r#"{"items":[{"product_id":1}]}"#, 422, "items[0]"),
    ];
    for (body, status, field) in cases {
        let (s, v) = app.post_json("/api/quote", body);
        assert_eq!(s, *status, "{body}: {v}");
        assert_eq!(v["field"], *field, "{body}: {v}");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }

    let big = format!(r#"{{"items":[],"pad":"{}"}}"#, "x".repeat(2000));
    let (s, v) = app.post_json("/api/quote", &big);
    assert_eq!(s, 413);
    assert_eq!(v["error"], "payload_too_large");

    let mut r = app
        .agent
        .post(&app.url("/api/quote"))
        .header("content-type", "text/plain")
        .send(r#"{"items":[{"product_id":1,"quantity":1}]}"#)
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let v: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["error"], "unsupported_media_type");
}

#[test]
fn unknown_routes_and_methods_answer_json() {
    let app = App::start(&[]);
    let (s, v) = app.get("/no/such/path");
    assert_eq!((s, v["error"].as_str().unwrap()), (404, "not_found"));
    let mut r = app.agent.delete(&app.url("/health")).call().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.headers()["allow"],
        "GET,HEAD",
        "the methods the path answers"
    );
    let v: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["error"], "method_not_allowed");
    let mut r = app.agent.get(&app.url("/api/quote")).call().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let v: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["error"], "method_not_allowed");
    // A GET route answers HEAD: the same status and headers, no body.
    let mut r = app.agent.head(&app.url("/health")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.body_mut().read_to_string().unwrap(), "");
}

#[test]
fn quote_engine_v2_prices_volume_tiers_and_fails_past_the_table() {
    let three = r#"{"items":[{"product_id":1,"quantity":1},{"product_id":2,"quantity":1},{"product_id":3,"quantity":1}]}"#;
    let v1 = App::start(&[]);
    assert_eq!(
        v1.post_json("/api/quote", three).0,
        200,
        "v1 has no volume tiers"
    );

    let v2 = App::start(&[("QUOTE_ENGINE", "v2")]);
    let (s, v) = v2.post_json("/api/quote", r#"{"items":[{"product_id":1,"quantity":1}]}"#);
    assert_eq!(s, 200, "{v}");
    let (s, v) = v2.post_json(
        "/api/quote",
        r#"{"items":[{"product_id":1,"quantity":1},{"product_id":2,"quantity":1}]}"#,
    );
    // v2 is the bad-deploy scenario's faulty release: it indexes the tier table by the
    // number of products instead of searching it, so it misprices and then fails.
    assert_eq!((s, v["discount_percent"].as_u64()), (200, Some(8)));
    let (s, v) = v2.post_json("/api/quote", three);
    assert_eq!((s, v["error"].as_str().unwrap()), (500, "internal_error"));
    let line = v2.wait_log(|l| l["message"] == "Quote engine v2 failed");
    assert_eq!(line["level"], "ERROR");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("discount tier lookup out of range")
    );
}

#[test]
fn sales_report_is_slow_by_nature_and_validated() {
    let app = App::start(&[]);
    let start = std::time::Instant::now();
    let (s, v) = app.get("/api/reports/sales?days=3");
    assert_eq!(s, 200);
    assert_eq!(v["daily"].as_array().unwrap().len(), 3);
    assert!(start.elapsed() >= std::time::Duration::from_millis(120));
    let (s, v) = app.get("/api/reports/sales?days=91");
    assert_eq!((s, v["field"].as_str().unwrap()), (400, "days"));
}
