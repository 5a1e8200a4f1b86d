//! Synthetic incidents for the investigator's tests and benchmark: a YAML
//! scenario (traffic, faults, deployments, expected answer) is expanded tick
//! by tick into the same rows the local runtime writes — access and fault
//! log lines, ALB/ECS/App/ErrorCount samples, task events, deployment
//! records — through `Store::open` + `Writer`. The alarm transition comes
//! from the real CloudWatch evaluator over the generated metric, so an alarm
//! fires only if the data really crosses its threshold.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use cloudwatch::{AlarmEvaluator, AlarmState, Sample, scaled_period_ms};
use demo_model::Catalog;
use demo_model::events::{
    AlarmTransition, ConfigChange, Deployment, DeploymentOutcome, LogRecord, MetricSample,
    SERVICE_DIMENSION, Stream, TaskEvent, TaskEventKind, ns,
};
use demo_store::{Store, Writer};
use serde::Deserialize;

pub const T0: i64 = 1_715_508_000_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub alarm: String,
    #[serde(default = "ten")]
    pub time_scale: f64,
    /// The time scale the fixture was written for, when [`at_scale`] moved
    /// it to another one (ticks are stretched by their ratio).
    #[serde(skip)]
    pub written_at_scale: Option<f64>,
    /// Seconds of data generated.
    pub duration_s: i64,
    /// The first ALARM transition at or after this second is investigated.
    #[serde(default)]
    pub alarm_after_s: i64,
    #[serde(default = "rps")]
    pub rps: f64,
    #[serde(default = "routes")]
    pub routes: BTreeMap<String, f64>,
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub deployments: Vec<Dep>,
    #[serde(default)]
    pub use_repo: bool,
    /// Memory utilisation (%) every task starts at.
    #[serde(default = "thirty")]
    pub memory_pct: f64,
    pub expect: Expect,
}

fn thirty() -> f64 {
    30.0
}

fn ten() -> f64 {
    10.0
}
fn rps() -> f64 {
    20.0
}
fn routes() -> BTreeMap<String, f64> {
    [
        ("/api/products".to_string(), 0.5),
        ("/api/products/{id}".to_string(), 0.3),
        ("/api/quote".to_string(), 0.2),
    ]
    .into_iter()
    .collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// A share of a route's requests fail with 500 and log `message` at ERROR.
    ErrorRate {
        route: String,
        rate: f64,
        message: String,
        from_s: i64,
        /// Only requests served by this deployment's tasks fail.
        #[serde(default)]
        deployment: Option<String>,
    },
    /// Extra latency on a route; requests beyond `timeout_s` end in 504 with
    /// an ERROR "Request timed out".
    Latency {
        route: String,
        add_s: f64,
        timeout_s: Option<f64>,
        from_s: i64,
        #[serde(default)]
        deployment: Option<String>,
    },
    /// Memory of the given tasks grows by `pct_per_s` (tasks `*` = every task).
    MemoryLeak {
        tasks: Vec<String>,
        pct_per_s: f64,
        from_s: i64,
    },
    /// Service CPU at `to_pct` from `from_s` (until `until_s`, if given); with
    /// `task`, that task's CPU only (say a per-task cost, or a task that left
    /// rotation and cooled down), whatever the traffic.
    Cpu {
        to_pct: f64,
        from_s: i64,
        #[serde(default)]
        until_s: Option<i64>,
        #[serde(default)]
        task: Option<String>,
    },
    /// The task's health check fails (the process keeps serving).
    Unhealthy { task: String, from_s: i64 },
    /// A task starts at `from_s` (say a replacement for one failing its
    /// health checks) and reports its usage, idle: it takes no traffic yet.
    Provisioning { task: String, from_s: i64 },
    /// The scheduler replaced `task` (failing its health checks) with `by`, a
    /// `provisioning` task healthy by `at_s`: `task` drains and stops at
    /// `at_s`, as `up` stops it (exit 0 on SIGTERM), and `by` serves from then on.
    Replaced { task: String, by: String, at_s: i64 },
    /// The task exits with code 1 every `every_s` (a replacement starts).
    Crash {
        task: String,
        every_s: i64,
        from_s: i64,
    },
    /// Request rate multiplied; CPU follows the traffic.
    Traffic { multiplier: f64, from_s: i64 },
    /// Steady ERROR lines at `per_s` on average, from the start (normal noise).
    NoiseErrors { message: String, per_s: f64 },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dep {
    pub id: String,
    pub at_s: i64,
    pub finish_s: i64,
    /// `BASE` or `BAD` (commits of the test repository) or a literal sha.
    pub sha: String,
    #[serde(default)]
    pub changes: Vec<ConfigChange>,
    pub previous: Option<String>,
    #[serde(default = "completed")]
    pub outcome: String,
}

fn completed() -> String {
    "completed".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub top1: String,
    /// Substring the top-1 entity must contain.
    pub entity: Option<String>,
    #[serde(default)]
    pub top3: Vec<(String, String)>,
    /// (category, entity) that must not be the top-1.
    #[serde(default)]
    pub not_top1: Vec<(String, String)>,
}

pub fn load(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Deterministic pseudo-random numbers in [0, 1).
pub struct Lcg(u64);
impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Builds a repository with BASE (a route table, handlers, quote engine
/// v1), BAD on top of it (a v2 path behind QUOTE_ENGINE that logs its own
/// error) and CODE on a branch from BASE (a change to a function the quote
/// handler calls, which now fails carts with several items and logs that
/// it cannot compute the total). Returns their shas by name.
pub fn make_repo(dir: &Path) -> BTreeMap<String, String> {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["config", "user.email", "dev@example.invalid"]);
    git(&["config", "user.name", "Dev"]);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("src/quote.rs"),
        "pub fn quote(items: &[Item]) -> Result<Quote, Error> {\n    engine_v1(items)\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/app.rs"),
        "pub fn app() -> Router {\n    Router::new()\n        .route(\"/api/products\", get(api::list_products))\n        .route(\"/api/products/{id}\", get(api::get_product))\n        .route(\"/api/quote\", post(api::quote_handler))\n}\n",
    )
    .unwrap();
    let api = |total: &str| {
        format!(
            "pub async fn quote_handler(body: Json<QuoteRequest>) -> Result<Json<Quote>, ApiError> {{\n    let total = cart_total(&body.items)?;\n    Ok(Json(Quote {{ total }}))\n}}\n\nfn cart_total(items: &[Item]) -> Result<u64, ApiError> {{\n{total}    Ok(items.iter().map(|i| i.price * i.qty).sum())\n}}\n\npub async fn list_products() -> Json<Vec<Product>> {{\n    Json(catalog())\n}}\n"
        )
    };
    std::fs::write(dir.join("src/api.rs"), api("")).unwrap();
    std::fs::write(dir.join("README.md"), "demo\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "quote engine v1"]);
    let base = git(&["rev-parse", "HEAD"]);
    std::fs::write(
        dir.join("src/quote.rs"),
        "pub fn quote(items: &[Item]) -> Result<Quote, Error> {\n    if std::env::var(\"QUOTE_ENGINE\").as_deref() == Ok(\"v2\") {\n        return engine_v2(items);\n    }\n    engine_v1(items)\n}\n\nfn engine_v2(items: &[Item]) -> Result<Quote, Error> {\n    for item in items {\n        if item.qty > 1 {\n            log.error(\"Quote engine v2 rejected item\").str(\"sku\", &item.sku).emit();\n            return Err(Error::Rejected);\n        }\n    }\n    Ok(price(items))\n}\n",
    )
    .unwrap();
    git(&[
        "commit",
        "-q",
        "-am",
        "quote: engine v2 behind QUOTE_ENGINE",
    ]);
    let bad = git(&["rev-parse", "HEAD"]);
    git(&["checkout", "-q", "-b", "totals", &base]);
    std::fs::write(
        dir.join("src/api.rs"),
        api("    let first = items.first().expect(\"cart has items\");\n    if items.len() > 1 && first.qty > 1 {\n        tracing::error!(\"cannot compute the total for cart {}\", first.sku);\n        return Err(ApiError::Internal);\n    }\n"),
    )
    .unwrap();
    git(&[
        "commit",
        "-q",
        "-am",
        "api: validate carts before totalling",
    ]);
    let code = git(&["rev-parse", "HEAD"]);
    git(&["checkout", "-q", "main"]);
    [("BASE", base), ("BAD", bad), ("CODE", code)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// One JSON log line as demo-app writes it, each with a trace id of its own.
fn line(level: &str, msg: &str, route: &str, status: Option<u16>, extra: &str) -> String {
    static TRACES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let trace = TRACES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match status {
        Some(s) => format!(
            r#"{{"timestamp":"t","level":"{level}","message":"{msg}","route":"{route}","status":{s},"latency_ms":3.1,"trace_id":"{trace:032x}"{extra}}}"#
        ),
        None => format!(
            r#"{{"timestamp":"t","level":"{level}","message":"{msg}","route":"{route}","trace_id":"{trace:032x}"{extra}}}"#
        ),
    }
}

pub struct Generated {
    pub transition: AlarmTransition,
    pub lines: u64,
}

/// Milliseconds of store time per generated tick ("second" of the
/// fixture): 1000 at the scale it was written for, stretched or squeezed at other scales so
/// that every alarm period holds the same ticks, the same requests and the
/// same failures — the same incident, seen at another time scale.
pub fn tick_ms(s: &Scenario) -> i64 {
    (1000.0 * s.written_at_scale.unwrap_or(s.time_scale) / s.time_scale).round() as i64
}

/// The same scenario at another time scale.
pub fn at_scale(s: &Scenario, time_scale: f64) -> Scenario {
    Scenario {
        time_scale,
        written_at_scale: Some(s.written_at_scale.unwrap_or(s.time_scale)),
        ..s.clone()
    }
}

/// A deployment after the first (`at_s` > 0) rolls: it starts as many new
/// tasks (`<id>-t0`, `<id>-t1`, ...) as are running at `at_s`; they take
/// traffic halfway through the rollout, beside the old ones, and the old
/// tasks stop (SIGTERM) at `finish_s` — or the new ones do, when the outcome
/// is `rolled_back`.
fn roll(
    s: &Scenario,
    sec: i64,
    w: &Writer,
    tasks: &mut Vec<String>,
    dep_of: &mut BTreeMap<String, String>,
    mem: &mut BTreeMap<String, f64>,
    pending: &mut Vec<(String, i64)>,
) {
    let ts0 = T0 + sec * tick_ms(s);
    for d in s.deployments.iter().filter(|d| d.at_s > 0) {
        if sec == d.at_s {
            for i in 0..tasks.len() {
                let id = format!("{}-t{i}", d.id);
                w.task_event(TaskEvent {
                    ts_ms: ts0,
                    task_id: id.clone(),
                    kind: TaskEventKind::Started,
                    exit_code: None,
                    reason: None,
                    deployment_id: Some(d.id.clone()),
                });
                dep_of.insert(id.clone(), d.id.clone());
                mem.insert(id.clone(), s.memory_pct);
                pending.push((id, d.at_s + ((d.finish_s - d.at_s) / 2).max(1)));
            }
        }
        if sec == d.finish_s {
            let rolled_back = d.outcome == "rolled_back";
            let stop: Vec<String> = tasks
                .iter()
                .filter(|t| (dep_of[*t] == d.id) == rolled_back)
                .cloned()
                .collect();
            for t in &stop {
                w.task_event(TaskEvent {
                    ts_ms: ts0,
                    task_id: t.clone(),
                    kind: TaskEventKind::Stopped,
                    exit_code: Some(143),
                    reason: Some("Scaling activity initiated by deployment".into()),
                    deployment_id: Some(dep_of[t].clone()),
                });
            }
            tasks.retain(|t| !stop.contains(t));
        }
    }
    let ready: Vec<String> = pending
        .iter()
        .filter(|p| p.1 == sec)
        .map(|p| p.0.clone())
        .collect();
    for t in ready {
        w.task_event(TaskEvent {
            ts_ms: ts0,
            task_id: t.clone(),
            kind: TaskEventKind::Healthy,
            exit_code: None,
            reason: None,
            deployment_id: Some(dep_of[&t].clone()),
        });
        tasks.push(t);
    }
    pending.retain(|p| p.1 > sec);
}

/// Writes the scenario into the store; returns the stored ALARM transition.
/// `shas` maps BASE/BAD to commits. `log_every` > 1 thins access lines (the
/// benchmark writes every line).
pub fn generate(
    s: &Scenario,
    w: &Writer,
    shas: &BTreeMap<String, String>,
    cat: &Catalog,
) -> Generated {
    let mut rng = Lcg(42);
    let mut tasks: Vec<String> = vec!["t-a".into(), "t-b".into()];
    let mut mem: BTreeMap<String, f64> = tasks.iter().map(|t| (t.clone(), s.memory_pct)).collect();
    let mut dep_of: BTreeMap<String, String> = tasks
        .iter()
        .map(|t| (t.clone(), "d-0001".to_string()))
        .collect();
    let mut pending: Vec<(String, i64)> = Vec::new();
    let mut next_task = 0;
    let mut samples: Vec<MetricSample> = Vec::new();
    let mut lines = 0u64;
    let tick_ms = tick_ms(s);
    let alarm = cat
        .alarm(&s.alarm)
        .unwrap_or_else(|| panic!("alarm {} in catalogue", s.alarm))
        .clone();
    let mut route_acc: BTreeMap<String, f64> = BTreeMap::new();
    let mut err_acc: BTreeMap<String, f64> = BTreeMap::new();
    let mut noise_acc = 0.0;
    for t in &tasks {
        w.task_event(TaskEvent {
            ts_ms: T0,
            task_id: t.clone(),
            kind: TaskEventKind::Started,
            exit_code: None,
            reason: None,
            deployment_id: Some("d-0001".into()),
        });
    }
    for d in &s.deployments {
        let sha = shas.get(&d.sha).cloned().unwrap_or_else(|| d.sha.clone());
        w.deployment(&Deployment {
            id: d.id.clone(),
            started_ms: T0 + d.at_s * tick_ms,
            finished_ms: Some(T0 + d.finish_s * tick_ms),
            version: format!("1.0.{}", d.at_s),
            git_sha: sha,
            env: BTreeMap::new(),
            changes: d.changes.clone(),
            outcome: DeploymentOutcome::parse(&d.outcome).expect("outcome"),
            previous_id: d.previous.clone(),
            description: format!("deploy {}", d.id),
            reason: None,
        })
        .unwrap();
    }
    for sec in 0..s.duration_s {
        let ts0 = T0 + sec * tick_ms;
        roll(s, sec, w, &mut tasks, &mut dep_of, &mut mem, &mut pending);
        let mut mult = 1.0;
        let mut cpu_base = 20.0;
        let mut cpu_of: BTreeMap<String, f64> = BTreeMap::new();
        let mut unhealthy: Vec<String> = Vec::new();
        let mut provisioning: Vec<String> = Vec::new();
        for f in &s.faults {
            match f {
                Fault::Traffic { multiplier, from_s } if sec >= *from_s => mult = *multiplier,
                Fault::Cpu {
                    to_pct,
                    from_s,
                    until_s,
                    task,
                } if sec >= *from_s && until_s.is_none_or(|u| sec < u) => match task {
                    Some(t) => {
                        cpu_of.insert(t.clone(), *to_pct);
                    }
                    None => cpu_base = *to_pct,
                },
                Fault::Unhealthy { task, from_s } if sec >= *from_s => {
                    if sec == *from_s {
                        w.task_event(TaskEvent {
                            ts_ms: ts0,
                            task_id: task.clone(),
                            kind: TaskEventKind::Unhealthy,
                            exit_code: None,
                            reason: Some("health checks failed".into()),
                            deployment_id: Some("d-0001".into()),
                        });
                    }
                    unhealthy.push(task.clone());
                }
                Fault::Provisioning { task, from_s } if sec >= *from_s => {
                    if sec == *from_s {
                        w.task_event(TaskEvent {
                            ts_ms: ts0,
                            task_id: task.clone(),
                            kind: TaskEventKind::Started,
                            exit_code: None,
                            reason: None,
                            deployment_id: Some("d-0001".into()),
                        });
                    }
                    provisioning.push(task.clone());
                }
                Fault::Replaced { task, by, at_s } if sec == *at_s => {
                    let idx = tasks
                        .iter()
                        .position(|t| t == task)
                        .unwrap_or_else(|| panic!("replaced: {task} is not serving at {at_s} s"));
                    let dep = dep_of.get(task).cloned().unwrap_or_else(|| "d-0001".into());
                    let event = |ts_ms, kind, exit_code, reason: &str| TaskEvent {
                        ts_ms,
                        task_id: task.clone(),
                        kind,
                        exit_code,
                        reason: Some(reason.into()),
                        deployment_id: Some(dep.clone()),
                    };
                    w.task_event(event(
                        ts0,
                        TaskEventKind::Draining,
                        None,
                        "task failed its load balancer health checks and was replaced",
                    ));
                    w.task_event(event(
                        ts0 + tick_ms / 2,
                        TaskEventKind::Stopped,
                        Some(0),
                        "Task stopped by the service (SIGTERM)",
                    ));
                    mem.remove(task);
                    mem.insert(by.clone(), s.memory_pct);
                    dep_of.insert(by.clone(), dep);
                    tasks[idx] = by.clone();
                }
                Fault::MemoryLeak {
                    tasks: lt,
                    pct_per_s,
                    from_s,
                } if sec >= *from_s => {
                    for (t, m) in mem.iter_mut() {
                        if lt.iter().any(|x| x == "*" || x == t) {
                            *m += pct_per_s;
                        }
                    }
                }
                Fault::Crash {
                    task,
                    every_s,
                    from_s,
                } if sec >= *from_s && (sec - from_s) % every_s == 0 => {
                    // The slot's current task exits; a replacement starts.
                    let idx = tasks
                        .iter()
                        .position(|t| t == task || t.starts_with(&format!("{task}-r")))
                        .unwrap_or(1);
                    let old = tasks[idx].clone();
                    let dep = dep_of.get(&old).cloned().unwrap_or_else(|| "d-0001".into());
                    w.task_event(TaskEvent {
                        ts_ms: ts0,
                        task_id: old.clone(),
                        kind: TaskEventKind::Stopped,
                        exit_code: Some(1),
                        reason: Some("Essential container in task exited".into()),
                        deployment_id: Some(dep.clone()),
                    });
                    w.log(LogRecord::from_line(
                        ts0,
                        &old,
                        Stream::Stdout,
                        line("ERROR", "Crash injected: process exiting", "", None, ""),
                    ));
                    next_task += 1;
                    let new = format!("{task}-r{next_task}");
                    w.task_event(TaskEvent {
                        ts_ms: ts0 + tick_ms / 2,
                        task_id: new.clone(),
                        kind: TaskEventKind::Started,
                        exit_code: None,
                        reason: None,
                        deployment_id: Some(dep.clone()),
                    });
                    dep_of.insert(new.clone(), dep);
                    mem.insert(new.clone(), s.memory_pct);
                    mem.remove(&old);
                    tasks[idx] = new;
                }
                _ => {}
            }
        }
        // A replaced task is neither unhealthy nor there; its replacement serves.
        unhealthy.retain(|t| tasks.contains(t));
        provisioning.retain(|t| !tasks.contains(t));
        // OOM kills at 100 %.
        for t in tasks.clone() {
            if mem[&t] >= 100.0 {
                w.task_event(TaskEvent {
                    ts_ms: ts0,
                    task_id: t.clone(),
                    kind: TaskEventKind::OomKilled,
                    exit_code: Some(137),
                    reason: Some("OutOfMemoryError: Container killed due to memory usage".into()),
                    deployment_id: dep_of.get(&t).cloned(),
                });
                mem.insert(t, s.memory_pct);
            }
        }
        let mut total = 0.0;
        let mut errors_5xx = 0.0;
        let mut error_lines = 0.0;
        let mut lat_samples: Vec<(f64, f64)> = Vec::new();
        for (route, share) in &s.routes {
            let acc = route_acc.entry(route.clone()).or_default();
            *acc += s.rps * mult * share;
            let n = acc.floor();
            *acc -= n;
            let mut any_fault = false;
            let mut any_timeout = false;
            let ea = err_acc.entry(route.clone()).or_default();
            let mut ok = 0.0;
            let mut bad = 0.0;
            for i in 0..n as usize {
                let task = &tasks[(i + sec as usize) % tasks.len()];
                let mut fail_rate = 0.0;
                let mut fail_msg = None;
                let mut add_lat = 0.0;
                let mut timeout = None;
                for f in &s.faults {
                    match f {
                        Fault::ErrorRate {
                            route: r,
                            rate,
                            message,
                            from_s,
                            deployment,
                        } if r == route
                            && sec >= *from_s
                            && deployment
                                .as_ref()
                                .is_none_or(|d| dep_of.get(task) == Some(d)) =>
                        {
                            fail_rate = *rate;
                            fail_msg = Some(message.clone());
                        }
                        Fault::Latency {
                            route: r,
                            add_s,
                            timeout_s,
                            from_s,
                            deployment,
                        } if r == route
                            && sec >= *from_s
                            && deployment
                                .as_ref()
                                .is_none_or(|d| dep_of.get(task) == Some(d)) =>
                        {
                            add_lat = *add_s;
                            timeout = *timeout_s;
                        }
                        _ => {}
                    }
                }
                any_fault |= fail_rate > 0.0;
                any_timeout |= timeout.is_some();
                let ts = ts0 + (i as i64 * tick_ms) / (n as i64).max(1);
                *ea += fail_rate;
                let lat = 0.02 + rng.next() * 0.03 + add_lat * (0.8 + 0.4 * rng.next());
                let (status, lat) = if *ea >= 1.0 {
                    *ea -= 1.0;
                    w.log(LogRecord::from_line(
                        ts,
                        task,
                        Stream::Stdout,
                        line(
                            "ERROR",
                            fail_msg.as_deref().unwrap_or("boom"),
                            route,
                            None,
                            r#","fault":"x""#,
                        ),
                    ));
                    error_lines += 1.0;
                    lines += 1;
                    (500u16, lat)
                } else if timeout.is_some_and(|t| lat > t) {
                    w.log(LogRecord::from_line(
                        ts,
                        task,
                        Stream::Stdout,
                        line(
                            "ERROR",
                            "Request timed out",
                            route,
                            None,
                            r#","timeout_ms":2000"#,
                        ),
                    ));
                    error_lines += 1.0;
                    lines += 1;
                    (504u16, timeout.unwrap())
                } else {
                    (200u16, lat)
                };
                w.log(LogRecord::from_line(
                    ts,
                    task,
                    Stream::Stdout,
                    line(
                        if status >= 500 { "WARN" } else { "INFO" },
                        "request completed",
                        route,
                        Some(status),
                        "",
                    ),
                ));
                lines += 1;
                if status >= 500 {
                    bad += 1.0;
                } else {
                    ok += 1.0;
                }
                lat_samples.push((lat, 1.0));
            }
            total += n;
            errors_5xx += bad;
            let dim_ok = format!("route={route},status=200");
            samples.push(MetricSample::new(ts0, ns::APP, "RequestCount", &dim_ok, ok));
            if bad > 0.0 || any_fault || any_timeout {
                let code = if any_timeout && !any_fault { 504 } else { 500 };
                samples.push(MetricSample::new(
                    ts0,
                    ns::APP,
                    "RequestCount",
                    &format!("route={route},status={code}"),
                    bad,
                ));
            }
            if n > 0.0 {
                let mean = lat_samples
                    .iter()
                    .rev()
                    .take(n as usize)
                    .map(|x| x.0)
                    .sum::<f64>()
                    / n;
                samples.push(MetricSample {
                    count: n,
                    ..MetricSample::new(
                        ts0,
                        ns::APP,
                        "LatencyMean",
                        &format!("route={route}"),
                        mean,
                    )
                });
            }
        }
        // Health checks: /health on every task every 5 s.
        if sec % 5 == 0 {
            for t in &tasks {
                let st = if unhealthy.contains(t) { 503 } else { 200 };
                w.log(LogRecord::from_line(
                    ts0,
                    t,
                    Stream::Stdout,
                    line("INFO", "request completed", "/health", Some(st), ""),
                ));
                lines += 1;
            }
        }
        for f in &s.faults {
            if let Fault::NoiseErrors { message, per_s } = f {
                noise_acc += per_s * 2.0 * rng.next();
                while noise_acc >= 1.0 {
                    noise_acc -= 1.0;
                    w.log(LogRecord::from_line(
                        ts0 + tick_ms * 3 / 10,
                        &tasks[0],
                        Stream::Stdout,
                        line("ERROR", message, "/api/products", None, ""),
                    ));
                    error_lines += 1.0;
                    lines += 1;
                }
            }
        }
        let m = |name: &str, dim: &str, v: f64| MetricSample::new(ts0, ns::ALB, name, dim, v);
        samples.push(m("RequestCount", SERVICE_DIMENSION, total));
        samples.push(m(
            "HTTPCode_Target_2XX_Count",
            SERVICE_DIMENSION,
            total - errors_5xx,
        ));
        samples.push(m(
            "HTTPCode_Target_5XX_Count",
            SERVICE_DIMENSION,
            errors_5xx,
        ));
        samples.push(m("HTTPCode_ELB_5XX_Count", SERVICE_DIMENSION, 0.0));
        samples.push(m(
            "HealthyHostCount",
            SERVICE_DIMENSION,
            (tasks.len() - unhealthy.len()) as f64,
        ));
        let crashed_recently = s.faults.iter().any(|f| matches!(f, Fault::Crash { every_s, from_s, .. } if sec >= *from_s && (sec - from_s) % every_s < 5));
        samples.push(m(
            "UnHealthyHostCount",
            SERVICE_DIMENSION,
            unhealthy.len() as f64 + f64::from(u8::from(crashed_recently)),
        ));
        // Latency histogram: one sample per distinct rounded value.
        let mut hist: BTreeMap<i64, f64> = BTreeMap::new();
        for (l, c) in &lat_samples {
            *hist.entry((l * 1000.0).round() as i64).or_default() += c;
        }
        for (l, c) in hist {
            samples.push(MetricSample {
                count: c,
                ..m("TargetResponseTime", SERVICE_DIMENSION, l as f64 / 1000.0)
            });
        }
        samples.push(MetricSample::new(
            ts0,
            "DevOpsAgentDemo",
            "ErrorCount",
            SERVICE_DIMENSION,
            error_lines,
        ));
        let cpu_traffic = cpu_base * if mult > 1.0 { mult } else { 1.0 };
        let mut cpu_sum = 0.0;
        let mut mem_sum = 0.0;
        for t in &tasks {
            let base = cpu_of.get(t).copied().unwrap_or(cpu_traffic);
            let c = (base + rng.next() * 4.0 - 2.0).clamp(0.0, 100.0);
            let mm = mem[t] + rng.next() * 1.0 - 0.5;
            cpu_sum += c;
            mem_sum += mm;
            samples.push(MetricSample::new(ts0, ns::ECS, "CPUUtilization", t, c));
            samples.push(MetricSample::new(ts0, ns::ECS, "MemoryUtilization", t, mm));
        }
        for t in &provisioning {
            let c = 1.0 + rng.next() * 2.0;
            cpu_sum += c;
            mem_sum += s.memory_pct;
            samples.push(MetricSample::new(ts0, ns::ECS, "CPUUtilization", t, c));
            samples.push(MetricSample::new(
                ts0,
                ns::ECS,
                "MemoryUtilization",
                t,
                s.memory_pct,
            ));
        }
        let n = (tasks.len() + provisioning.len()) as f64;
        samples.push(MetricSample::new(
            ts0,
            ns::ECS,
            "CPUUtilization",
            SERVICE_DIMENSION,
            cpu_sum / n,
        ));
        samples.push(MetricSample::new(
            ts0,
            ns::ECS,
            "MemoryUtilization",
            SERVICE_DIMENSION,
            mem_sum / n,
        ));
        for namespace in [ns::ECS, ns::CONTAINER_INSIGHTS] {
            samples.push(MetricSample::new(
                ts0,
                namespace,
                "RunningTaskCount",
                SERVICE_DIMENSION,
                n - f64::from(u8::from(crashed_recently)),
            ));
        }
    }
    for smp in &samples {
        w.metric(smp.clone());
    }
    w.flush();
    // The real alarm evaluator over the generated metric, once per tick.
    let period = scaled_period_ms(alarm.period_seconds, s.time_scale);
    let mut ev = AlarmEvaluator::with_period_ms(alarm.clone(), period).unwrap();
    ev.restore_state(AlarmState::Ok);
    let alarm_samples: Vec<Sample> = samples
        .iter()
        .filter(|m| {
            m.namespace == alarm.namespace
                && m.name == alarm.metric_name
                && m.dimension == SERVICE_DIMENSION
        })
        .map(|m| Sample::with_count(m.ts_ms, m.value, m.count))
        .collect();
    for sec in 1..=s.duration_s {
        let now = T0 + sec * tick_ms;
        if let Some(tr) = ev.evaluate(now, &alarm_samples)
            && tr.to == AlarmState::Alarm
            && sec >= s.alarm_after_s
        {
            let mut t = AlarmTransition {
                id: 0,
                alarm: tr.alarm.clone(),
                from: tr.from.as_str().into(),
                to: tr.to.as_str().into(),
                at_ms: tr.at,
                reason: tr.reason.clone(),
                reason_data: serde_json::to_value(&tr.reason_data).unwrap(),
            };
            t.id = w.transition(t.clone()).unwrap();
            return Generated {
                transition: t,
                lines,
            };
        }
    }
    panic!(
        "scenario {}: alarm {} never fired after {} s",
        s.name, s.alarm, s.alarm_after_s
    );
}

/// Opens a store in `dir` and writes the scenario.
pub fn build(s: &Scenario, dir: &Path, repo: Option<&Path>) -> (Store, Generated) {
    let cat = Catalog::embedded();
    let store = Store::open(dir).unwrap();
    let mut shas = BTreeMap::new();
    if let Some(r) = repo {
        shas = make_repo(r);
    } else {
        shas.insert(
            "BASE".to_string(),
            "1111111111111111111111111111111111111111".into(),
        );
        shas.insert(
            "BAD".to_string(),
            "2222222222222222222222222222222222222222".into(),
        );
    }
    let g = generate(s, &store.writer(), &shas, &cat);
    (store, g)
}
