//! Limits that keep the runtime safe: the load balancer under connection abuse
//! (1,000 slowloris connections — a partial request head, then silence — neither stop
//! normal requests nor outlive the header read timeout), and the circuit breaker, which
//! stops launching a failing deployment's tasks once its threshold is reached.
//! Loopback only; every wait is bounded.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use demo_model::Catalog;
use demo_model::events::{DeploymentOutcome, Window};
use demo_runtime::lb::{ConnLimits, Health, HealthCheckConfig, LoadBalancer};
use demo_runtime::service::{DeployRequest, circuit_breaker_threshold};
use demo_runtime::{Runtime, RuntimeConfig};

/// A real demo-app, in this process, as the load balancer's target.
async fn target() -> SocketAddr {
    let env: HashMap<String, String> =
        [("HOST", "127.0.0.1"), ("PORT", "0"), ("LOG_LEVEL", "error")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let config = demo_app::config::Config::from_env(&env).unwrap();
    let log = demo_app::log::Logger::new(config.log_level, "t", "target", std::io::sink());
    let state = demo_app::app::AppState::new(config, log);
    let listener = demo_app::server::bind(&state).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(demo_app::server::serve(listener, state));
    addr
}

/// Whether the server closed `s` (EOF or reset) within `limit`.
fn closed_by_server(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_stop_requests_and_are_closed_after_the_header_timeout()
{
    let target = target().await;
    let (changes, _changes_rx) = tokio::sync::mpsc::unbounded_channel();
    // Long enough for the 1,000 connects to finish first: a burst of connects
    // can overflow the listen queue, and a dropped SYN is retried after 1, 3,
    // 7 s (a loaded CI run took 6.2 s to open them, and the first ones timed
    // out before they could be counted).
    let header_timeout = Duration::from_secs(20);
    let lb = LoadBalancer::with_limits(
        HealthCheckConfig {
            path: "/health".into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        },
        changes,
        ConnLimits {
            header_read_timeout: header_timeout,
            ..ConnLimits::default()
        },
    );
    lb.register("task-0001", target);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(lb.clone().serve(listener, stop_rx));
    let start = Instant::now();
    while lb.targets()[0].state() != Health::Healthy {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "target never healthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stats = lb.conn_stats.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let opened = Instant::now();
        let mut idle: Vec<TcpStream> = (0..1000)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
                    .unwrap();
                s
            })
            .collect();
        let opening = opened.elapsed();
        // Normal requests keep being answered while the 1,000 hang.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        for _ in 0..20 {
            let r = agent
                .get(&format!("http://{addr}/api/products/1"))
                .call()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
        let held = stats.open.load(Ordering::Relaxed);
        let answered_within = opened.elapsed();
        // Every idle connection is closed soon after the header timeout.
        let deadline = Instant::now() + header_timeout + Duration::from_secs(3);
        for (i, s) in idle.iter_mut().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                closed_by_server(s, left.max(Duration::from_millis(1))),
                "idle connection {i} still open {:?} after opening",
                opened.elapsed()
            );
        }
        (opening, held, answered_within, opened.elapsed())
    })
    .await
    .unwrap();
    let (opening, held, answered_within, all_closed) = outcome;
    eprintln!(
        "1000 idle connections opened in {opening:?}; {held} open while 20 requests were answered \
         (done {answered_within:?} after opening); all closed {all_closed:?} after opening"
    );
    assert!(
        opening < header_timeout,
        "opening the idle connections took longer than the header timeout: {opening:?}"
    );
    assert!(held >= 1000, "the idle connections were not held: {held}");
    assert!(
        answered_within < header_timeout,
        "normal requests waited for the idle connections to go: {answered_within:?}"
    );
    // The server side lets go of them too.
    let start = Instant::now();
    while lb.conn_stats.open.load(Ordering::Relaxed) > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "connections still counted open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("the load balancer did not stop")
        .unwrap();
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_launches_no_more_failing_tasks_than_its_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        state_dir: dir.path().to_path_buf(),
        app_binary: env!("CARGO_BIN_EXE_devops-agent-demo").into(),
        lb_port: 0,
        control_port: 0,
        control_host: std::net::IpAddr::from([127, 0, 0, 1]),
        repo: std::env::current_dir().unwrap(),
        time_scale: 20.0,
        catalog: Catalog::embedded(),
        version: "1.0.0".into(),
        git_sha: "test".into(),
        env: Default::default(),
        provisioning: Duration::from_secs(30),
        desired_count: None,
    };
    let provisioning = config.scaled(config.provisioning);
    let rt = Runtime::start(config, vec!["app".into()]).await.unwrap();
    assert!(rt.wait_healthy(Duration::from_secs(30)).await);
    let reader = rt.store.reader().unwrap();
    // An invalid value: every new task exits with code 2 before listening.
    let d = rt
        .service
        .deploy(
            DeployRequest {
                env: [("QUOTE_ENGINE".to_string(), "v9".to_string())].into(),
                ..DeployRequest::default()
            },
            &reader,
        )
        .unwrap();
    wait_for("rollback", Duration::from_secs(60), || {
        reader
            .deployment(&d.id)
            .unwrap()
            .is_some_and(|d| d.outcome == DeploymentOutcome::RolledBack)
    })
    .await;
    // Anything still provisioning for the broken deployment would launch within this.
    tokio::time::sleep(provisioning * 2 + Duration::from_secs(1)).await;
    let launched: std::collections::BTreeSet<String> = reader
        .task_events(Window::new(0, i64::MAX))
        .unwrap()
        .into_iter()
        .filter(|e| e.deployment_id.as_deref() == Some(d.id.as_str()))
        .map(|e| e.task_id)
        .collect();
    let threshold = circuit_breaker_threshold(rt.service.desired()) as usize;
    assert_eq!(
        launched.len(),
        threshold,
        "tasks launched for the broken deployment: {launched:?}"
    );
    rt.shutdown().await;
}
