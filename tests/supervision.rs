//! Supervision across the runtime's own death (issue 13, finding 6): after a
//! SIGKILL of `up` its tasks used to keep running, reparented, for minutes; a
//! new `up` ignored them; two `up` on one state directory both reported
//! ready. And the store (finding 5): a store that cannot write used to fail
//! on stderr only while `up` said "ready".

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use demo_model::Catalog;
use demo_runtime::supervision::{exe, start_ticks};
use demo_runtime::{Runtime, RuntimeConfig};
use demo_store::{InvestigationRow, Store, TaskProcess};

mod util;
use util::{BIN, Up};

/// Running, and not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    demo_procfs::Stat::read(demo_procfs::Proc::Pid(pid)).is_some_and(|s| !s.is_zombie())
}

fn status_json(dir: &Path) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(dir)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn task_pids(dir: &Path) -> Vec<u32> {
    status_json(dir)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pid"].as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn sigkill_of_up_leaves_no_task_running_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start_in(dir.path());
    up.wait_ready();
    let pids = task_pids(dir.path());
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.iter().all(|p| alive(*p)));

    up.kill(); // SIGKILL: no drain, no clean-up code runs
    let killed = Instant::now();
    while pids.iter().any(|p| alive(*p)) && killed.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        left.is_empty(),
        "tasks {left:?} still running 1 s after up was killed"
    );
}

#[test]
fn a_second_up_on_one_state_dir_fails_naming_the_lock_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = Up::start_in(dir.path());
    first.wait_ready();
    let before = task_pids(dir.path());
    let started = Instant::now();
    let second = Command::new(BIN)
        .arg("--state-dir")
        .arg(dir.path())
        .args(["up", "--port", "0", "--control-port", "0"])
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the second up should fail at once"
    );
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("pid {}", first.pid())) && err.contains("up.lock"),
        "{err}"
    );
    // The first is untouched: the second stopped none of its tasks, and it still serves.
    // (Its own scheduler may add a replacement meanwhile; that is not the second's doing.)
    assert!(
        before.iter().all(|p| alive(*p)),
        "a task of the first up stopped: {before:?}, now {:#}",
        status_json(dir.path())
    );
    let lb = first.lb();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let answer = agent.get(format!("{lb}/api/products")).call().unwrap();
    assert_eq!(answer.status(), 200);
}

#[test]
fn a_task_left_running_by_a_killed_run_is_stopped_by_the_next_up_and_a_reused_pid_is_not() {
    let dir = tempfile::tempdir().unwrap();
    // A task that does not die with its runtime (as a demo-app built before the
    // parent-death signal, deployed with --rev, would not), in its own process
    // group like every task, recorded in the store as the runtime records it;
    // the run that started it was killed and never recorded its end.
    let mut orphan = Command::new(BIN)
        .arg("app")
        .env_clear()
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("TASK_ID", "task-0007")
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A process whose pid the store names but which is not the one recorded
    // (the pid was reused): it must be left alone.
    let mut bystander = Command::new("sleep").arg("120").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    {
        let store = Store::open(dir.path()).unwrap();
        let w = store.writer();
        let o = orphan.id();
        w.task_process(TaskProcess {
            task_id: "task-0007".into(),
            pid: o,
            start_ticks: start_ticks(o).unwrap(),
            exe: exe(o).unwrap(),
            started_ms: 1,
        })
        .unwrap();
        let b = bystander.id();
        w.task_process(TaskProcess {
            task_id: "task-0006".into(),
            pid: b,
            start_ticks: start_ticks(b).unwrap() + 1,
            exe: exe(b).unwrap(),
            started_ms: 1,
        })
        .unwrap();
    }
    assert!(alive(orphan.id()));

    let up = Up::start_in(dir.path());
    let lines = up.wait_ready();
    // Exited (and reaped here, its parent) before up said ready.
    orphan
        .try_wait()
        .unwrap()
        .expect("the orphan was stopped before up was ready");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("task-0007 (pid {})", orphan.id()))),
        "up names the orphan it stopped: {lines:#?}"
    );
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "a reused pid is not killed"
    );
    let reader = demo_store::Reader::open(dir.path()).unwrap();
    let events = reader.runtime_events(10).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "orphan_stopped" && e.detail.contains("task-0007")),
        "{events:?}"
    );
    assert!(
        reader
            .unended_task_processes()
            .unwrap()
            .iter()
            .all(|p| p.task_id != "task-0007" && p.task_id != "task-0006"),
        "both marked ended"
    );
    // New tasks continue after the recorded ones.
    for pid_task in status_json(dir.path())["tasks"].as_array().unwrap() {
        let n: u64 = pid_task["id"].as_str().unwrap()[5..].parse().unwrap();
        assert!(n > 7, "{pid_task}");
    }
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_write_is_counted_and_reported_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        state_dir: dir.path().to_path_buf(),
        app_binary: BIN.into(),
        lb_port: 0,
        control_port: 0,
        control_host: std::net::IpAddr::from([127, 0, 0, 1]),
        repo: std::env::current_dir().unwrap(),
        time_scale: 20.0,
        catalog: Catalog::embedded(),
        version: "1.0.0".into(),
        git_sha: "test".into(),
        env: BTreeMap::new(),
        provisioning: Duration::from_secs(30),
        desired_count: None,
    };
    let rt = Runtime::start(config, vec!["app".into()]).await.unwrap();
    let dir_path = dir.path().to_path_buf();
    let before = tokio::task::spawn_blocking(move || status_json(&dir_path))
        .await
        .unwrap();
    assert_eq!(before["store"]["ok"], true, "{}", before["store"]);

    // A real failing write that fails for root too: the database may not grow
    // past twice a 64 KiB cap (SQLite max_page_count), and investigations are
    // never pruned to make room.
    let w = rt.store.writer();
    let failed = tokio::task::spawn_blocking(move || {
        w.set_size_cap(Some(64 * 1024)).unwrap();
        (0..64).find_map(|n| {
            w.investigation(InvestigationRow {
                id: format!("inv-{n}"),
                alarm: "cpu-high".into(),
                transition_id: 1_000_000 + n,
                created_ms: n,
                root_cause: "cpu_saturation".into(),
                summary: "s".into(),
                report_json: "r".repeat(16 * 1024),
            })
            .err()
        })
    })
    .await
    .unwrap();
    let err = failed.expect("the database never filled up");
    assert!(err.to_string().contains("full"), "{err}");
    assert!(!rt.service.store_health().is_ok());

    let dir_path = dir.path().to_path_buf();
    let (json, text) = tokio::task::spawn_blocking(move || {
        let text = Command::new(BIN)
            .arg("--state-dir")
            .arg(&dir_path)
            .arg("status")
            .output()
            .unwrap();
        (status_json(&dir_path), text)
    })
    .await
    .unwrap();
    let store = &json["store"];
    assert_eq!(store["ok"], false, "{store}");
    assert!(store["failing_since_ms"].as_i64().is_some(), "{store}");
    assert!(store["failed_batches"].as_u64().unwrap() >= 1, "{store}");
    assert!(
        store["last_error"].as_str().unwrap().contains("full"),
        "{store}"
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("store FAILING since"), "{text}");
    rt.store.writer().set_size_cap(None).unwrap();
    rt.shutdown().await;
}
