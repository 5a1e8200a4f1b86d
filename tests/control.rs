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

/// Each reason a deployment is not started has its own status, from one
/// mapping (`control::deploy_status`): the caller's mistakes 4xx, the
/// environment's own failure 500 — they used to share one.
#[test]
fn a_refused_deployment_answers_the_status_of_its_reason() {
    let up = Up::ready();
    let auth = format!("Bearer {}", up.token());
    let deploy = |body: serde_json::Value| {
        up.call(
            "POST",
            "/deployments",
            &[("authorization", &auth)],
            Some(body),
        )
    };

    let (status, body) = deploy(json!({"rev": "no-such-revision-anywhere"}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = deploy(json!({}));
    assert_eq!(status, 400, "a request that changes nothing: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("nothing to deploy"),
        "{body}"
    );
    let (status, body) = deploy(json!({"rollback_to": "d-0999"}));
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("d-0999"), "{body}");

    // The CLI turns the unknown rollback target into its "unknown id" exit.
    let out = cli(up.dir(), &["deploy", "--rollback-to", "d-0999"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The environment cannot build: its build directory is a file. A real
    // commit (this repository's HEAD, `up --repo` defaults to the current
    // directory) gets past resolution, then the build fails on our side.
    std::fs::write(up.dir().join("builds"), "not a directory").unwrap();
    let (status, body) = deploy(json!({"rev": "HEAD"}));
    assert_eq!(status, 500, "{body}");
    assert!(body["error"].as_str().unwrap().contains("builds"), "{body}");

    // A deployment under way refuses the next one (at time scale 20 a rollout
    // takes seconds: the second request comes well within it).
    let (status, first) = deploy(json!({"env": {"GREETING": "one"}}));
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        first["id"], "d-0002",
        "refused requests take no id: {first}"
    );
    let (status, body) = deploy(json!({"env": {"GREETING": "two"}}));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains(first["id"].as_str().unwrap()),
        "names the deployment in progress: {body}"
    );
}
