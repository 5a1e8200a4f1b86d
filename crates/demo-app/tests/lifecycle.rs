//! Start-up validation, graceful shutdown and the healthcheck subcommand.

mod util;
use std::net::TcpListener;
use std::time::Duration;
use util::{App, command};

#[test]
fn bad_config_names_every_variable_and_binds_nothing() {
    // Hold a port, then point PORT at it: a bind would fail with "address in use",
    // so an exit code of 2 with our message proves validation ran first.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let out = command(&[
        ("PORT", &port),
        ("LOG_LEVEL", "verbose"),
        ("FAULTS", "on"),
        ("FAULT_MAX_DELAY_MS", "-5"),
        ("SHUTDOWN_GRACE_MS", "soon"),
        ("FAULT_TOKEN", "tiny"),
        ("QUOTE_ENGINE", "v3"),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for var in [
        "LOG_LEVEL",
        "FAULTS",
        "FAULT_MAX_DELAY_MS",
        "SHUTDOWN_GRACE_MS",
        "FAULT_TOKEN",
    ] {
        assert!(
            err.contains(&format!("{var}:")),
            "{var} not named in: {err}"
        );
    }
    assert!(err.contains("6 problem"), "{err}");
    assert!(!err.contains("tiny"), "secret values are not echoed");
    assert!(
        out.stdout.is_empty(),
        "nothing started: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = command(&[("PORT", "nope")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORT:"));
}

#[test]
fn port_in_use_is_a_clear_error() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let out = command(&[("PORT", &port)]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot bind"));
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut app = App::start(&[("FAULTS", "enabled")]);
    assert_eq!(app.get("/error/latency?ms=800&percent=100").0, 200);
    let url = app.url("/api/products?per_page=1");
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut r = util::agent().get(&url).call().map_err(|e| e.to_string())?;
                let status = r.status().as_u16();
                let body = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
                Ok::<_, String>((status, body))
            })
        })
        .collect();
    app.wait_log(|l| l["message"] == "Latency fault set");
    std::thread::sleep(Duration::from_millis(200));
    app.signal("TERM");
    // New connections are refused once the drain starts.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", app.port)).is_err(),
        "listener still accepting after SIGTERM"
    );
    for h in handles {
        let (status, body) = h.join().unwrap().expect("in-flight request dropped");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"items\""));
    }
    let status = app.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let logs = app.logs();
    let drain = logs
        .iter()
        .find(|l| l["message"] == "Shutdown signal received, draining")
        .expect("drain start logged");
    assert_eq!(drain["signal"], "SIGTERM");
    assert_eq!(drain["in_flight"], 8);
    assert!(
        logs.iter()
            .any(|l| l["message"] == "Drain complete, exiting")
    );
    let completed = logs
        .iter()
        .filter(|l| l["route"] == "/api/products" && l["status"] == 200)
        .count();
    assert_eq!(completed, 8, "every drained request has its access line");
}

#[test]
fn grace_period_bounds_the_drain() {
    let mut app = App::start(&[("FAULTS", "enabled"), ("SHUTDOWN_GRACE_MS", "300")]);
    let url = app.url("/error/timeout?delay_ms=5000");
    let h = std::thread::spawn(move || util::agent().get(&url).call().map(|_| ()));
    app.wait_log(|l| l["route"] == "/error/timeout" || l["message"] == "Server listening");
    std::thread::sleep(Duration::from_millis(200));
    app.signal("INT");
    let status = app.wait_exit(Duration::from_secs(3));
    assert_eq!(
        status.code(),
        Some(1),
        "a cut-short drain is not a clean exit"
    );
    let cut =
        app.wait_log(|l| l["message"] == "Grace period expired, exiting with requests in flight");
    assert_eq!(cut["in_flight"], 1);
    assert!(
        h.join().unwrap().is_err(),
        "the cut request saw its connection close"
    );
}

#[test]
fn healthcheck_subcommand_reflects_health() {
    let app = App::start(&[("FAULTS", "enabled")]);
    let port = app.port.to_string();
    let run = || {
        command(&[("PORT", &port)])
            .arg("healthcheck")
            .output()
            .unwrap()
    };
    assert_eq!(run().status.code(), Some(0));
    app.get("/error/disable-health");
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("503"));
    drop(app);
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}
