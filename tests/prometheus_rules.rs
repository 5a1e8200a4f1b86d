//! The generated alerting rules against the real promtool (Debian's
//! `prometheus` package; scripts/test.sh installs it): `promtool check rules`
//! at several time scales, and `promtool test rules` with the hand-written
//! unit tests of tests/assets/prometheus/rules_test.yml at time scale 1.

use std::process::Command;

fn rules(time_scale: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_devops-agent-demo"))
        .args(["prometheus", "rules", "--time-scale", time_scale])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool not found: install Debian's prometheus package (scripts/test.sh does)")
}

#[test]
fn promtool_checks_the_rules_at_every_time_scale() {
    let dir = tempfile::tempdir().unwrap();
    for scale in ["1", "10", "20", "0.5"] {
        let path = dir.path().join(format!("rules-{scale}.yml"));
        let text = rules(scale);
        assert_eq!(text.matches("- alert: ").count(), 8, "{text}");
        std::fs::write(&path, text).unwrap();
        let out = promtool(&["check", "rules", path.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("SUCCESS: 8 rules found"),
            "scale {scale}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn promtool_unit_tests_pass_on_the_rules_at_real_timings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), rules("1")).unwrap();
    let test = dir.path().join("rules_test.yml");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/assets/prometheus/rules_test.yml"
        ),
        &test,
    )
    .unwrap();
    let out = promtool(&["test", "rules", test.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The same tests fail on rules at another time scale (`for:` halves): they can fail.
    std::fs::write(dir.path().join("rules.yml"), rules("2")).unwrap();
    let out = promtool(&["test", "rules", test.to_str().unwrap()]);
    assert!(!out.status.success());
}

#[test]
fn a_bad_time_scale_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_devops-agent-demo"))
        .args(["prometheus", "rules", "--time-scale", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("time scale"));
}
