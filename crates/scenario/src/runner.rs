//! Runs one scenario end to end on a fresh local environment: warm-up
//! traffic, the steps, waiting for the expected alarms (investigating each as
//! it fires), recovery, and waiting for the alarms to clear.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use demo_model::Catalog;
use demo_model::events::AlarmTransition;
use demo_runtime::control::{FaultRequest, send_fault};
use demo_runtime::service::DeployRequest;
use demo_runtime::{Runtime, RuntimeConfig, now_ms};
use serde::Serialize;

use crate::spec::{Action, RootCause, Scenario, Step, scale_path};
use crate::traffic::Traffic;

/// What an investigator concluded about one alarm.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub alarm: String,
    pub investigation_id: String,
    /// Ranked hypotheses: (category, entity, confidence).
    pub hypotheses: Vec<(String, Option<String>, f64)>,
    /// Evidence kinds the report cites.
    pub evidence_kinds: Vec<String>,
    /// Milliseconds from the alarm transition to the report being written.
    pub latency_ms: i64,
    pub report_paths: Vec<PathBuf>,
}

/// The investigator, as the runner sees it (the CLI plugs the real one in).
pub trait Investigate: Send + Sync {
    fn investigate(
        &self,
        state_dir: &std::path::Path,
        transition: &AlarmTransition,
    ) -> Result<Finding, String>;
}

pub struct RunOptions {
    pub state_dir: PathBuf,
    pub app_binary: PathBuf,
    pub binary_args: Vec<String>,
    pub time_scale: Option<f64>,
    pub git_sha: String,
    pub investigator: Option<Arc<dyn Investigate>>,
    /// Progress lines (the CLI prints them; tests collect them).
    pub progress: Arc<dyn Fn(&str) + Send + Sync>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(cat: &str, entity: Option<&str>) -> (String, Option<String>, f64) {
        (cat.into(), entity.map(str::to_string), 0.5)
    }

    #[test]
    fn scoring_matches_category_and_entity() {
        let want = RootCause {
            category: "health_check_failure".into(),
            entity: Some("task-0001".into()),
        };
        assert!(matches(
            &h("health_check_failure", Some("task-0001")),
            &want
        ));
        assert!(matches(
            &h("health_check_failure", Some("task-0002,task-0001")),
            &want
        ));
        assert!(!matches(
            &h("health_check_failure", Some("task-00011")),
            &want
        ));
        assert!(!matches(&h("memory_leak", Some("task-0001")), &want));
        let any = RootCause {
            category: "memory_leak".into(),
            entity: None,
        };
        assert!(matches(&h("memory_leak", Some("service")), &any));
        let f = Finding {
            alarm: "a".into(),
            investigation_id: "i".into(),
            hypotheses: vec![h("traffic_surge", None), h("memory_leak", None)],
            evidence_kinds: vec![],
            latency_ms: 1,
            report_paths: vec![],
        };
        assert_eq!(score(&f, &any), (false, true));
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub scenario: String,
    pub time_scale: f64,
    pub fired: BTreeMap<String, i64>,
    pub missing: Vec<String>,
    pub other_alarms: Vec<String>,
    pub recovered: Vec<String>,
    pub not_recovered: Vec<String>,
    pub findings: Vec<Finding>,
    pub expected: RootCause,
    pub traffic: serde_json::Value,
    pub passed_alarms: bool,
    pub duration_s: f64,
}

impl RunResult {
    /// The first investigation of an expected alarm (the one the benchmark scores).
    pub fn primary(&self) -> Option<&Finding> {
        self.findings.first()
    }
}

/// Category equal, and the expected entity (if any) among the found ones (the
/// investigator names several tasks as a comma-separated list).
fn matches(h: &(String, Option<String>, f64), rc: &RootCause) -> bool {
    h.0 == rc.category
        && rc.entity.as_deref().is_none_or(|want| {
            h.1.as_deref()
                .is_some_and(|found| found.split(',').any(|e| e.trim() == want))
        })
}

/// Top-1 and top-3 hits of a finding against the expectation.
pub fn score(f: &Finding, expected: &RootCause) -> (bool, bool) {
    let top1 = f.hypotheses.first().is_some_and(|h| matches(h, expected));
    let top3 = f.hypotheses.iter().take(3).any(|h| matches(h, expected));
    (top1, top3)
}

pub async fn run(scenario: &Scenario, opts: RunOptions) -> Result<RunResult, String> {
    let started = Instant::now();
    let scale = opts.time_scale.unwrap_or(scenario.time_scale);
    let say = opts.progress.clone();
    let secs = |catalogue_secs: u32| Duration::from_secs_f64(f64::from(catalogue_secs) / scale);
    let config = RuntimeConfig {
        state_dir: opts.state_dir.clone(),
        app_binary: opts.app_binary.clone(),
        lb_port: 0,
        control_port: 0,
        control_host: std::net::IpAddr::from([127, 0, 0, 1]),
        repo: std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
        time_scale: scale,
        catalog: Catalog::embedded(),
        version: "1.0.0".into(),
        git_sha: opts.git_sha.clone(),
        env: BTreeMap::new(),
        provisioning: Duration::from_secs(30),
        desired_count: None,
    };
    config.validate().map_err(|e| e.to_string())?;
    let runtime = Runtime::start(config, opts.binary_args.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut transitions = runtime.subscribe();
    say(&format!(
        "{}: environment up at {} (time scale {scale}x)",
        scenario.name, runtime.lb_addr
    ));
    if !runtime.wait_healthy(Duration::from_secs(60)).await {
        runtime.shutdown().await;
        return Err("targets did not become healthy within 60 s".into());
    }
    let traffic = Traffic::start(
        runtime.lb_addr,
        scenario.traffic.rate * scale,
        &scenario.traffic.mix,
    );
    say(&format!(
        "{}: warm-up, {} catalogue seconds of normal traffic",
        scenario.name, scenario.warmup
    ));

    let expected: Vec<String> = scenario.expect.alarms.clone();
    let mut fired: BTreeMap<String, i64> = BTreeMap::new();
    let mut other: Vec<String> = Vec::new();
    let mut pending_investigations = Vec::new();
    // Alarms are watched from the first request on, so one that fires during the warm-up
    // (a false alarm) is investigated when it fires.
    let steps_start = Instant::now() + secs(scenario.warmup);
    let mut steps = scenario.steps.iter().peekable();
    let deadline = steps_start
        + secs(scenario.steps.last().map_or(0, |s| s.at))
        + secs(scenario.expect.within);
    let handle_transition =
        |t: AlarmTransition,
         fired: &mut BTreeMap<String, i64>,
         other: &mut Vec<String>,
         pending: &mut Vec<tokio::task::JoinHandle<Result<Finding, String>>>| {
            if t.to != "ALARM" {
                return;
            }
            say(&format!(
                "{}: alarm {} -> ALARM ({})",
                scenario.name, t.alarm, t.reason
            ));
            if expected.contains(&t.alarm) {
                if fired.contains_key(&t.alarm) {
                    return;
                }
                fired.insert(t.alarm.clone(), t.at_ms);
                if let Some(inv) = opts.investigator.clone() {
                    let dir = opts.state_dir.clone();
                    pending.push(tokio::task::spawn_blocking(move || {
                        inv.investigate(&dir, &t)
                    }));
                }
            } else if !other.contains(&t.alarm) {
                other.push(t.alarm.clone());
            }
        };
    // Steps and alarms, interleaved, until every expected alarm fired or the deadline passed.
    loop {
        if let Some(step) = steps.peek() {
            let due = steps_start + secs(step.at);
            if Instant::now() >= due {
                let step = steps.next().expect("peeked");
                apply(&runtime, &traffic, step, scale, &say, &scenario.name).await?;
                continue;
            }
        }
        if steps.peek().is_none() && expected.iter().all(|a| fired.contains_key(a)) {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        let wait = steps
            .peek()
            .map(|s| (steps_start + secs(s.at)).saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(200))
            .min(Duration::from_millis(200));
        if let Ok(Ok(t)) = tokio::time::timeout(wait, transitions.recv()).await {
            handle_transition(t, &mut fired, &mut other, &mut pending_investigations);
        }
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|a| !fired.contains_key(*a))
        .cloned()
        .collect();
    for m in &missing {
        say(&format!(
            "{}: alarm {m} did NOT fire within {} catalogue seconds",
            scenario.name, scenario.expect.within
        ));
    }

    // Recovery: undo the fault, then every alarm that fired must return to OK.
    let recover_start = Instant::now();
    for step in &scenario.recover.steps {
        let due = recover_start + secs(step.at);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(d).await;
        }
        apply(&runtime, &traffic, step, scale, &say, &scenario.name).await?;
    }
    let mut ok: Vec<String> = Vec::new();
    let states = |rt: &Runtime| rt.alarm_states().into_iter().collect::<BTreeMap<_, _>>();
    let recover_deadline = Instant::now() + secs(scenario.recover.within);
    while Instant::now() < recover_deadline {
        let s = states(&runtime);
        ok = fired
            .keys()
            .filter(|a| s.get(*a).is_some_and(|st| st == "OK"))
            .cloned()
            .collect();
        if ok.len() == fired.len() {
            break;
        }
        if let Ok(Ok(t)) =
            tokio::time::timeout(Duration::from_millis(200), transitions.recv()).await
        {
            if t.to == "OK" && fired.contains_key(&t.alarm) {
                say(&format!("{}: alarm {} -> OK", scenario.name, t.alarm));
            }
        }
    }
    let not_recovered: Vec<String> = fired.keys().filter(|a| !ok.contains(a)).cloned().collect();

    let mut findings = Vec::new();
    for p in pending_investigations {
        match p.await {
            Ok(Ok(f)) => findings.push(f),
            Ok(Err(e)) => say(&format!("{}: investigation failed: {e}", scenario.name)),
            Err(e) => say(&format!("{}: investigation panicked: {e}", scenario.name)),
        }
    }
    findings.sort_by_key(|f| fired.get(&f.alarm).copied().unwrap_or(i64::MAX));
    let stats = traffic.stats.clone();
    traffic.stop().await;
    runtime.shutdown().await;
    Ok(RunResult {
        scenario: scenario.name.clone(),
        time_scale: scale,
        passed_alarms: missing.is_empty() && not_recovered.is_empty(),
        fired,
        missing,
        other_alarms: other,
        recovered: ok,
        not_recovered,
        findings,
        expected: scenario.expect.root_cause.clone(),
        traffic: stats.snapshot(),
        duration_s: started.elapsed().as_secs_f64(),
    })
}

async fn apply(
    runtime: &Runtime,
    traffic: &Traffic,
    step: &Step,
    scale: f64,
    say: &Arc<dyn Fn(&str) + Send + Sync>,
    name: &str,
) -> Result<(), String> {
    match &step.action {
        Action::Fault { path, target } => {
            let path = scale_path(path, scale);
            let req = FaultRequest {
                path: path.clone(),
                target: Some(target.clone()),
            };
            let results = send_fault(&runtime.service, &req).await?;
            say(&format!(
                "{name}: fault {path} on {target}: {}",
                serde_json::Value::from(results)
            ));
        }
        Action::Deploy {
            env,
            version,
            description,
        } => {
            let reader = demo_store::Reader::open(&runtime.service.config.state_dir)
                .map_err(|e| e.to_string())?;
            let d = runtime.service.deploy(
                DeployRequest {
                    env: env.clone(),
                    version: version.clone(),
                    description: description.clone(),
                    ..DeployRequest::default()
                },
                &reader,
            )?;
            say(&format!(
                "{name}: deployment {} started ({} change(s))",
                d.id,
                d.changes.len()
            ));
        }
        Action::Rollback => {
            let reader = demo_store::Reader::open(&runtime.service.config.state_dir)
                .map_err(|e| e.to_string())?;
            let current = runtime.service.current().deployment_id.clone();
            let previous = reader
                .deployment(&current)
                .map_err(|e| e.to_string())?
                .and_then(|d| d.previous_id)
                .ok_or("nothing to roll back to")?;
            let d = runtime.service.deploy(
                DeployRequest {
                    rollback_to: Some(previous.clone()),
                    ..DeployRequest::default()
                },
                &reader,
            )?;
            say(&format!(
                "{name}: deployment {} rolls back to {previous}",
                d.id
            ));
        }
        Action::Rate(r) => {
            traffic.set_rate(r * scale);
            say(&format!(
                "{name}: traffic now {r} requests per catalogue second"
            ));
        }
        Action::Mix(m) => {
            traffic.set_mix(m);
            say(&format!("{name}: traffic mix now {m}"));
        }
        Action::WaitDeployment => {
            let start = Instant::now();
            while runtime.service.deploying().is_some() {
                if start.elapsed() > Duration::from_secs(120) {
                    return Err("deployment did not finish within 120 s".into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            say(&format!("{name}: deployment finished at {}", now_ms()));
        }
    }
    Ok(())
}
