//! The load balancer's data path and local scale-out, against real tasks (this
//! crate's binary running `app`): proxying goes on while every worker of `up`'s
//! shared async runtime is stuck (as when log ingestion or the collector hog it),
//! and `up --count 8` / a scale to 8 give eight healthy targets that all serve.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use demo_model::Catalog;
use demo_runtime::lb::Health;
use demo_runtime::{Runtime, RuntimeConfig};

const SCALE: f64 = 20.0;

async fn start(dir: &std::path::Path, count: u32) -> Runtime {
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
        env: Default::default(),
        provisioning: Duration::from_secs(30),
        desired_count: Some(count),
    };
    let rt = Runtime::start(config, vec!["app".into()]).await.unwrap();
    assert!(
        rt.wait_healthy(Duration::from_secs(60)).await,
        "targets never became healthy"
    );
    rt
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// GET / through the load balancer; the answering task id.
fn who_answers(agent: &ureq::Agent, lb: std::net::SocketAddr) -> String {
    let mut r = agent.get(&format!("http://{lb}/")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.body_mut().read_json().unwrap();
    v["task_id"].as_str().unwrap().to_string()
}

fn healthy(rt: &Runtime) -> usize {
    rt.service
        .lb
        .targets()
        .iter()
        .filter(|t| t.state() == Health::Healthy)
        .count()
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Before the data path had its own thread, the load balancer ran on these
/// workers: with both busy, no request was answered until they were free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_proxied_while_every_shared_worker_is_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let rt = start(dir.path(), 2).await;
    let lb = rt.lb_addr;
    let agent = agent();
    // Connections to the tasks exist before the workers are blocked (as under traffic).
    for _ in 0..4 {
        who_answers(&agent, lb);
    }
    // Both workers of the shared runtime sleep (blocking) for 3 s; the barrier makes
    // sure each of them holds one of the sleeping tasks before requests start.
    let barrier = Arc::new(Barrier::new(3));
    let released = Arc::new(AtomicBool::new(false));
    let mut blockers = Vec::new();
    for _ in 0..2 {
        let (barrier, released) = (barrier.clone(), released.clone());
        blockers.push(tokio::spawn(async move {
            barrier.wait();
            std::thread::sleep(Duration::from_secs(3));
            released.store(true, Ordering::Release);
        }));
    }
    // This thread is the runtime's `block_on` thread, not a worker.
    barrier.wait();
    // Few enough requests that the tasks' log lines fit their stdout pipes (the
    // pipeline that drains them runs on the blocked workers).
    let mut answered = BTreeSet::new();
    for _ in 0..20 {
        answered.insert(who_answers(&agent, lb));
    }
    assert!(
        !released.load(Ordering::Acquire),
        "the requests were only answered after the shared workers were free again"
    );
    assert_eq!(answered.len(), 2, "both targets answer: {answered:?}");
    for b in blockers {
        b.await.unwrap();
    }
    rt.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks_from_the_start_and_from_a_scale_up_all_serve() {
    let dir = tempfile::tempdir().unwrap();
    // `up --count 8`.
    let rt = start(dir.path(), 8).await;
    let agent = agent();
    let lb = rt.lb_addr;
    let distinct =
        |n: usize| -> BTreeSet<String> { (0..n).map(|_| who_answers(&agent, lb)).collect() };
    let first = distinct(16);
    assert_eq!(first.len(), 8, "round robin over 8 targets: {first:?}");

    // `scale 2`, then `scale 8`: the new tasks join the rotation.
    rt.service.set_desired(2);
    wait_for("2 tasks", Duration::from_secs(60), || {
        rt.service
            .tasks()
            .iter()
            .filter(|t| !t.is_stopping())
            .count()
            == 2
            && healthy(&rt) == 2
    })
    .await;
    assert_eq!(distinct(8).len(), 2);
    rt.service.set_desired(8);
    wait_for("8 healthy targets", Duration::from_secs(60), || {
        healthy(&rt) == 8
    })
    .await;
    let after = distinct(16);
    assert_eq!(after.len(), 8, "round robin over 8 targets: {after:?}");
    assert!(
        after.difference(&first).count() >= 6,
        "six of them are new tasks: {first:?} then {after:?}"
    );
    rt.shutdown().await;
}
