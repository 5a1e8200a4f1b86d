//! The control API of a running `up`, tried as a hostile neighbour would:
//! without the token, from a browser page, through a rebound host name, and
//! with a program path to run. Regression tests for issue 13, finding 1
//! (`POST /deployments {"binary": ...}` used to start that program).

use std::process::Command;
use std::time::Duration;

use serde_json::json;

mod util;
use util::{Up, cli};

#[test]
fn the_control_api_never_runs_a_program_it_is_sent() {
    let up = Up::start();
    let auth = format!("Bearer {}", up.token());
    let marker = up.dir().join("pwned");
    let script = up.dir().join("evil.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();

    // Even with the token, a program path is not a field the API knows.
    let (status, body) = up.call(
        "POST",
        "/deployments",
        &[("authorization", &auth)],
        Some(json!({"binary": script.display().to_string(), "version": "x"})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("binary"), "{body}");

    // A revision that is an option, a path or unknown is refused by name, before any build.
    for rev in [
        "--upload-pack=/bin/sh",
        "/bin/sh",
        "no-such-revision-anywhere",
    ] {
        let (status, body) = up.call(
            "POST",
            "/deployments",
            &[("authorization", &auth)],
            Some(json!({"rev": rev})),
        );
        assert_eq!(status, 400, "{rev}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("revision"),
            "{body}"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(!marker.exists(), "the script ran");
    let (_, status) = up.call("GET", "/status", &[("authorization", &auth)], None);
    assert_eq!(
        status["current_deployment"], "d-0001",
        "no deployment was started: {status}"
    );
}

#[test]
fn the_control_api_wants_its_token_and_refuses_browsers() {
    let up = Up::start();
    let token_file = up.dir().join("control.token");
    let mode = std::fs::metadata(&token_file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let auth = format!("Bearer {}", up.token());

    for (method, path) in [
        ("GET", "/status"),
        ("POST", "/scale"),
        ("POST", "/faults/reset"),
    ] {
        let (status, body) = up.call(method, path, &[], Some(json!({"count": 3})));
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        let (status, _) = up.call(
            method,
            path,
            &[("authorization", "Bearer guess")],
            Some(json!({"count": 3})),
        );
        assert_eq!(status, 401, "{method} {path} with a wrong token");
    }
    // A page on another site that somehow has the token still cannot act.
    let (status, _) = up.call(
        "POST",
        "/scale",
        &[("authorization", &auth), ("origin", "http://evil.example")],
        Some(json!({"count": 3})),
    );
    assert_eq!(status, 403);
    // DNS rebinding: the right address under another name.
    let (status, _) = up.call(
        "GET",
        "/status",
        &[("authorization", &auth), ("host", "evil.example")],
        None,
    );
    assert_eq!(status, 403);
    let (status, body) = up.call("GET", "/status", &[("authorization", &auth)], None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["desired_count"], 2,
        "nothing above changed the service"
    );

    // The CLI reads the token itself.
    let out = cli(up.dir(), &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(up.dir(), &["scale", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, body) = up.call("GET", "/status", &[("authorization", &auth)], None);
    assert_eq!(body["desired_count"], 3);
    // Without read access to the token the CLI says why.
    std::fs::remove_file(&token_file).unwrap();
    let out = cli(up.dir(), &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("control.token"));
}
