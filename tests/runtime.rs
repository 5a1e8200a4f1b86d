//! The local runtime against real tasks (this crate's binary running `app`):
//! load balancer rotation and replacement, rolling deploys under traffic,
//! the circuit breaker, OOM emulation, and no log line lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use demo_model::Catalog;
use demo_model::events::{DeploymentOutcome, TaskEventKind, Window};
use demo_runtime::control::{FaultRequest, send_fault};
use demo_runtime::lb::Health;
use demo_runtime::service::DeployRequest;
use demo_runtime::{Runtime, RuntimeConfig};

const SCALE: f64 = 20.0;

async fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Runtime {
    let config = RuntimeConfig {
        state_dir: dir.to_path_buf(),
        app_binary: env!("CARGO_BIN_EXE_devops-agent-demo").into(),
        lb_port: 0,
        control_port: 0,
        control_host: std::net::IpAddr::from([127, 0, 0, 1]),
        repo: std::env::current_dir().unwrap(),
        time_scale: SCALE,
        catalog: Catalog::embedded(),
        version: "1.0.0".into(),
        git_sha: "test".into(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        provisioning: Duration::from_secs(30),
        desired_count: None,
    };
    let rt = Runtime::start(config, vec!["app".into()]).await.unwrap();
    assert!(
        rt.wait_healthy(Duration::from_secs(30)).await,
        "targets never became healthy"
    );
    rt
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn health_of(rt: &Runtime, task: &str) -> Option<Health> {
    rt.service
        .lb
        .targets()
        .iter()
        .find(|t| t.task_id == task)
        .map(|t| t.state())
}

/// GET / through the load balancer; returns the answering task id.
fn who_answers(lb: std::net::SocketAddr) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(&format!("http://{lb}/")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.body_mut().read_json().unwrap();
    v["task_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_target_leaves_rotation_and_its_task_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start(dir.path(), &[]).await;
    let lb = rt.lb_addr;
    let seen: std::collections::BTreeSet<String> =
        tokio::task::spawn_blocking(move || (0..20).map(|_| who_answers(lb)).collect())
            .await
            .unwrap();
    assert_eq!(seen.len(), 2, "round robin reaches both tasks: {seen:?}");

    let req = FaultRequest {
        path: "/error/disable-health?duration_s=600".into(),
        target: Some("task-0001".into()),
    };
    send_fault(&rt.service, &req).await.unwrap();
    // 3 failed checks, 30 s apart (1.5 s at this scale).
    wait_for("task-0001 unhealthy", Duration::from_secs(15), || {
        health_of(&rt, "task-0001") == Some(Health::Unhealthy)
    })
    .await;
    let answers: Vec<String> =
        tokio::task::spawn_blocking(move || (0..30).map(|_| who_answers(lb)).collect())
            .await
            .unwrap();
    assert!(
        answers.iter().all(|t| t != "task-0001"),
        "an unhealthy target must get no traffic: {answers:?}"
    );
    // Replacement first, then the unhealthy task goes.
    wait_for(
        "replacement healthy and task-0001 gone",
        Duration::from_secs(30),
        || {
            health_of(&rt, "task-0003") == Some(Health::Healthy)
                && rt.service.task("task-0001").is_none()
        },
    )
    .await;
    rt.store.writer().flush();
    let events = rt
        .store
        .reader()
        .unwrap()
        .task_events(Window::new(0, i64::MAX))
        .unwrap();
    let kinds: Vec<TaskEventKind> = events
        .iter()
        .filter(|e| e.task_id == "task-0001")
        .map(|e| e.kind)
        .collect();
    for k in [
        TaskEventKind::Started,
        TaskEventKind::Healthy,
        TaskEventKind::Unhealthy,
        TaskEventKind::Draining,
        TaskEventKind::Stopped,
    ] {
        assert!(
            kinds.contains(&k),
            "task-0001 has no {k:?} event: {kinds:?}"
        );
    }
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_under_traffic_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start(dir.path(), &[]).await;
    let lb = rt.lb_addr;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad, conn) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, bad, conn) = (stop.clone(), ok.clone(), bad.clone(), conn.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                while !stop.load(Ordering::Relaxed) {
                    match agent.get(&format!("http://{lb}/api/products/3")).call() {
                        Ok(mut r) => {
                            let _ = r.body_mut().read_to_string();
                            if r.status().as_u16() == 200 {
                                ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                bad.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            conn.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reader = rt.store.reader().unwrap();
    let d = rt
        .service
        .deploy(
            DeployRequest {
                env: BTreeMap::from([("LOG_LEVEL".to_string(), "warn".to_string())]),
                version: Some("1.0.1".into()),
                description: "quieter logs".into(),
                ..DeployRequest::default()
            },
            &reader,
        )
        .unwrap();
    assert_eq!(d.id, "d-0002");
    assert!(
        d.changes.iter().any(|c| c.key == "LOG_LEVEL"),
        "{:?}",
        d.changes
    );
    wait_for("deployment complete", Duration::from_secs(40), || {
        rt.service.deploying().is_none()
    })
    .await;
    // Every old task is gone and every running one is new.
    wait_for("old tasks stopped", Duration::from_secs(10), || {
        rt.service
            .tasks()
            .iter()
            .all(|t| t.spec.deployment_id == "d-0002")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let record = reader.deployment("d-0002").unwrap().unwrap();
    assert_eq!(record.outcome, DeploymentOutcome::Completed);
    assert!(record.finished_ms.is_some());
    let (ok, bad, conn) = (
        ok.load(Ordering::Relaxed),
        bad.load(Ordering::Relaxed),
        conn.load(Ordering::Relaxed),
    );
    assert!(ok > 500, "too little traffic to mean anything: {ok}");
    assert_eq!(
        (bad, conn),
        (0, 0),
        "{ok} ok, {bad} non-200, {conn} connection errors"
    );

    // Rolling back restores exactly what d-0001 ran.
    let back = rt
        .service
        .deploy(
            DeployRequest {
                rollback_to: Some("d-0001".into()),
                ..DeployRequest::default()
            },
            &reader,
        )
        .unwrap();
    assert_eq!(back.description, "rollback to d-0001");
    assert!(
        back.changes
            .iter()
            .any(|c| c.key == "LOG_LEVEL" && c.to.is_none()),
        "{:?}",
        back.changes
    );
    wait_for("rollback complete", Duration::from_secs(40), || {
        rt.service.deploying().is_none()
    })
    .await;
    let spec = rt.service.current();
    assert_eq!(
        (spec.version.as_str(), spec.env.get("LOG_LEVEL")),
        ("1.0.0", None)
    );
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_rolls_back_a_deployment_whose_tasks_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start(dir.path(), &[]).await;
    let reader = rt.store.reader().unwrap();
    // An invalid value: the new tasks exit with code 2 before listening.
    rt.service
        .deploy(
            DeployRequest {
                env: BTreeMap::from([("QUOTE_ENGINE".to_string(), "v9".to_string())]),
                ..DeployRequest::default()
            },
            &reader,
        )
        .unwrap();
    wait_for("rollback", Duration::from_secs(60), || {
        reader
            .deployment("d-0002")
            .unwrap()
            .is_some_and(|d| d.outcome == DeploymentOutcome::RolledBack)
    })
    .await;
    let failed = reader.deployment("d-0002").unwrap().unwrap();
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("circuit breaker"),
        "{failed:?}"
    );
    wait_for(
        "rollback deployment complete",
        Duration::from_secs(60),
        || {
            reader
                .deployment("d-0003")
                .unwrap()
                .is_some_and(|d| d.outcome == DeploymentOutcome::Completed)
        },
    )
    .await;
    let rollback = reader.deployment("d-0003").unwrap().unwrap();
    assert!(rollback.description.contains("rollback of d-0002"));
    assert!(!rollback.env.contains_key("QUOTE_ENGINE"));
    // The service kept serving from the old tasks the whole time.
    let lb = rt.lb_addr;
    tokio::task::spawn_blocking(move || who_answers(lb))
        .await
        .unwrap();
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_over_its_memory_limit_is_oom_killed_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start(dir.path(), &[("FAULT_MAX_LEAK_MB_PER_CALL", "64")]).await;
    for _ in 0..9 {
        let req = FaultRequest {
            path: "/error/memory-leak?mb=64".into(),
            target: Some("task-0002".into()),
        };
        // The last calls may race the kill; the kill is what matters.
        if send_fault(&rt.service, &req).await.is_err() {
            break;
        }
    }
    let reader = rt.store.reader().unwrap();
    wait_for("OOM kill recorded", Duration::from_secs(20), || {
        rt.store.writer().flush();
        reader
            .task_events(Window::new(0, i64::MAX))
            .unwrap()
            .iter()
            .any(|e| e.task_id == "task-0002" && e.kind == TaskEventKind::OomKilled)
    })
    .await;
    let events = reader.task_events(Window::new(0, i64::MAX)).unwrap();
    let oom = events
        .iter()
        .find(|e| e.kind == TaskEventKind::OomKilled)
        .unwrap();
    assert_eq!(oom.exit_code, Some(137));
    assert!(oom.reason.as_deref().unwrap().contains("OutOfMemoryError"));
    wait_for("replacement healthy", Duration::from_secs(30), || {
        health_of(&rt, "task-0003") == Some(Health::Healthy)
    })
    .await;
    rt.shutdown().await;
}

/// Every line a task wrote is in the store: each task logs how many lines it
/// wrote as its very last line; after shutdown the store holds exactly that many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_a_task_writes_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start(dir.path(), &[]).await;
    let lb = rt.lb_addr;
    let sent: u64 = tokio::task::spawn_blocking(move || {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .into();
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_secs(3) {
                        let mut r = agent
                            .get(&format!("http://{lb}/api/products"))
                            .call()
                            .unwrap();
                        let _ = r.body_mut().read_to_string();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
    .await
    .unwrap();
    assert!(sent > 1000, "only {sent} requests");
    rt.shutdown().await;

    let reader = demo_store::Reader::open(dir.path()).unwrap();
    let stored: BTreeMap<String, u64> = reader.log_counts().unwrap().into_iter().collect();
    let last_lines = reader
        .logs(
            Window::new(0, i64::MAX),
            &demo_store::LogQuery {
                contains: Some("Drain complete, exiting".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(last_lines.len(), 2, "both tasks drained and said so");
    let mut total = 0;
    for l in last_lines {
        let v: serde_json::Value = serde_json::from_str(&l.line).unwrap();
        let written = v["log_lines_written"].as_u64().unwrap();
        assert_eq!(
            stored[&l.task_id], written,
            "{}: the task wrote {written} lines, the store holds {}",
            l.task_id, stored[&l.task_id]
        );
        total += written;
    }
    assert!(total >= sent, "{total} lines for {sent} requests");
}

/// Alarm state outlives the process: after a restart an alarm carries on in the
/// state it had, instead of starting over from INSUFFICIENT_DATA (which would
/// open a new episode and a duplicate investigation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start(dir.path(), &[]).await;
    wait_for(
        "cpu-high to leave INSUFFICIENT_DATA",
        Duration::from_secs(30),
        || {
            rt.alarm_states()
                .iter()
                .any(|(n, s)| n == "cpu-high" && s == "OK")
        },
    )
    .await;
    rt.shutdown().await;
    let reader = demo_store::Reader::open(dir.path()).unwrap();
    let before = reader.transitions(Some("cpu-high"), 100).unwrap();

    let config = RuntimeConfig {
        state_dir: dir.path().to_path_buf(),
        app_binary: env!("CARGO_BIN_EXE_devops-agent-demo").into(),
        lb_port: 0,
        control_port: 0,
        control_host: std::net::IpAddr::from([127, 0, 0, 1]),
        repo: std::env::current_dir().unwrap(),
        time_scale: SCALE,
        catalog: Catalog::embedded(),
        version: "1.0.0".into(),
        git_sha: "test".into(),
        env: BTreeMap::new(),
        provisioning: Duration::from_secs(30),
        desired_count: None,
    };
    let rt = Runtime::start(config.clone(), vec!["app".into()])
        .await
        .unwrap();
    tokio::time::sleep(config.tick() * 3).await;
    let state = rt
        .alarm_states()
        .into_iter()
        .find(|(n, _)| n == "cpu-high")
        .map(|(_, s)| s);
    assert_eq!(
        state.as_deref(),
        Some("OK"),
        "state restored from the store"
    );
    let after = reader.transitions(Some("cpu-high"), 100).unwrap();
    assert_eq!(
        after.len(),
        before.len(),
        "no new transition right after the restart: {:?}",
        &after[..after.len() - before.len()]
    );
    rt.shutdown().await;
}
