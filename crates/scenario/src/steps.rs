//! Carrying out a scenario's steps on a running environment: the timeline
//! (repeated steps expanded), builds of the revisions it deploys (made before
//! the environment starts, in a build directory shared by every run, because
//! building `demo-app` takes minutes), and each action. A fault whose target
//! has no running task (all crashed, replacements provisioning) waits for one,
//! bounded, and is then recorded as skipped: it never aborts the run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use demo_runtime::builds::{Build, Builds};
use demo_runtime::control::{FaultRequest, send_fault};
use demo_runtime::service::DeployRequest;
use demo_runtime::{Runtime, now_ms};

use crate::parse::{patch_path, scale_path};
use crate::spec::{Action, Scenario, Step};
use crate::traffic::Traffic;

/// How long a fault waits for a running task to target, in catalogue seconds
/// (and at least `MIN_TARGET_WAIT` of real time).
const TARGET_WAIT_SECS: f64 = 60.0;
const MIN_TARGET_WAIT: Duration = Duration::from_secs(5);

/// One execution of a step: catalogue second, step, its index in its list.
pub type Planned<'a> = (u32, &'a Step, usize);

/// Every execution of `steps` in time order (repeats expanded).
pub fn timeline(steps: &[Step]) -> Vec<Planned<'_>> {
    let mut out: Vec<Planned<'_>> = steps
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.times().map(move |t| (t, s, i)))
        .collect();
    out.sort_by_key(|(t, _, i)| (*t, *i));
    out
}

/// The builds a scenario deploys, keyed by `(list, index)` of their step.
pub type Prebuilt = BTreeMap<(&'static str, usize), Build>;

/// Builds every revision the scenario deploys (reused when built before).
pub fn prebuild(
    scenario: &Scenario,
    builds: &Builds,
    repo: &Path,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<Prebuilt, String> {
    let mut out = Prebuilt::new();
    for (list, steps) in [
        ("steps", &scenario.steps),
        ("recover", &scenario.recover.steps),
    ] {
        for (i, st) in steps.iter().enumerate() {
            let Action::Deploy(d) = &st.action else {
                continue;
            };
            if d.rev.is_none() && d.patch.is_none() {
                continue;
            }
            let rev = d.rev.as_deref().unwrap_or("HEAD");
            let started = Instant::now();
            let build = match &d.patch {
                Some(p) => {
                    let file = patch_path(scenario.source.as_deref(), Some(repo), p);
                    say(&format!(
                        "{}: building demo-app at {rev} + {} (shared build cache)",
                        scenario.name,
                        file.display()
                    ));
                    let message = if d.description.is_empty() {
                        format!("scenario {}: {p}", scenario.name)
                    } else {
                        d.description.clone()
                    };
                    builds.patched(rev, &file, &message)
                }
                None => {
                    say(&format!("{}: building demo-app at {rev}", scenario.name));
                    builds.revision(rev)
                }
            }
            .map_err(|e| format!("{list}[{i}].deploy: {e}"))?;
            say(&format!(
                "{}: built {} in {:.0} s",
                scenario.name,
                &build.git_sha[..12.min(build.git_sha.len())],
                started.elapsed().as_secs_f64()
            ));
            out.insert((list, i), build);
        }
    }
    Ok(out)
}

/// What the runner keeps between steps.
pub struct Context<'a> {
    pub runtime: &'a Runtime,
    pub traffic: &'a Traffic,
    pub scale: f64,
    pub name: &'a str,
    pub say: Arc<dyn Fn(&str) + Send + Sync>,
    pub prebuilt: &'a Prebuilt,
    pub ramp: Option<tokio::task::JoinHandle<()>>,
    /// The ramp of the extra requests on one route, if one is moving.
    pub route_ramp: Option<tokio::task::JoinHandle<()>>,
    /// Steps that could not be carried out, with why.
    pub skipped: Vec<String>,
}

impl Context<'_> {
    fn secs(&self, catalogue_secs: f64) -> Duration {
        Duration::from_secs_f64(catalogue_secs / self.scale)
    }

    fn stop_ramp(&mut self) {
        if let Some(r) = self.ramp.take() {
            r.abort();
        }
    }

    /// Carries out one execution of a step. `Err` only for what makes the run
    /// meaningless (a deployment refused); a step with nothing to act on is skipped.
    pub async fn apply(
        &mut self,
        list: &'static str,
        index: usize,
        step: &Step,
    ) -> Result<(), String> {
        let name = self.name;
        let at = format!("{list}[{index}]");
        match &step.action {
            Action::Fault { path, target } => {
                let path = scale_path(path, self.scale);
                let wait = self.secs(TARGET_WAIT_SECS).max(MIN_TARGET_WAIT);
                let start = Instant::now();
                loop {
                    // `newest`: the most recently started running task (a replacement).
                    let resolved = match target.as_str() {
                        "newest" => self
                            .runtime
                            .service
                            .tasks()
                            .into_iter()
                            .filter(|t| !t.is_stopping())
                            .map(|t| t.id.clone())
                            .max()
                            .unwrap_or_else(|| "newest".into()),
                        other => other.to_string(),
                    };
                    let req = FaultRequest {
                        path: path.clone(),
                        target: Some(resolved),
                    };
                    match send_fault(&self.runtime.service, &req).await {
                        Ok(results) => {
                            (self.say)(&format!(
                                "{name}: fault {path} on {target}: {}",
                                serde_json::Value::from(results)
                            ));
                            break;
                        }
                        Err(e) if start.elapsed() < wait => {
                            // No running task yet (crashed, replacement provisioning),
                            // or it went away mid-request: try again shortly.
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            let msg = format!(
                                "{at}: fault {path} on {target} skipped after {:.1} s: {e}",
                                wait.as_secs_f64()
                            );
                            (self.say)(&format!("{name}: {msg}"));
                            self.skipped.push(msg);
                            break;
                        }
                    }
                }
            }
            Action::Deploy(d) => {
                self.wait_deployment(Duration::from_secs(120)).await?;
                let reader = demo_store::Reader::open(&self.runtime.service.config.state_dir)
                    .map_err(|e| e.to_string())?;
                let build = self.prebuilt.get(&(list, index)).cloned();
                let deployment = self.runtime.service.deploy_build(
                    DeployRequest {
                        env: d.env.clone(),
                        version: d.version.clone(),
                        description: d.description.clone(),
                        ..DeployRequest::default()
                    },
                    build,
                    &reader,
                )?;
                (self.say)(&format!(
                    "{name}: deployment {} started ({} change(s))",
                    deployment.id,
                    deployment.changes.len()
                ));
            }
            Action::Rollback => {
                self.wait_deployment(Duration::from_secs(120)).await?;
                let reader = demo_store::Reader::open(&self.runtime.service.config.state_dir)
                    .map_err(|e| e.to_string())?;
                let current = self.runtime.service.current().deployment_id.clone();
                let previous = reader
                    .deployment(&current)
                    .map_err(|e| e.to_string())?
                    .and_then(|d| d.previous_id);
                let Some(previous) = previous else {
                    let msg = format!("{at}: rollback skipped: nothing before {current}");
                    (self.say)(&format!("{name}: {msg}"));
                    self.skipped.push(msg);
                    return Ok(());
                };
                let d = self.runtime.service.deploy(
                    DeployRequest {
                        rollback_to: Some(previous.clone()),
                        ..DeployRequest::default()
                    },
                    &reader,
                )?;
                (self.say)(&format!(
                    "{name}: deployment {} rolls back to {previous}",
                    d.id
                ));
            }
            Action::Rate(r) => {
                self.stop_ramp();
                self.traffic.set_rate(r * self.scale);
                (self.say)(&format!(
                    "{name}: traffic now {r} requests per catalogue second"
                ));
            }
            Action::Ramp(r) => {
                self.stop_ramp();
                self.ramp = Some(
                    self.traffic
                        .ramp(r.to * self.scale, self.secs(f64::from(r.over))),
                );
                (self.say)(&format!(
                    "{name}: traffic ramps to {} requests per catalogue second over {} s",
                    r.to, r.over
                ));
            }
            Action::RouteRamp(r) => {
                if let Some(h) = self.route_ramp.take() {
                    h.abort();
                }
                let handle = self
                    .traffic
                    .route_ramp(&r.route, r.to * self.scale, self.secs(f64::from(r.over)))
                    .map_err(|e| format!("{name}: route_ramp: {e}"))?;
                self.route_ramp = Some(handle);
                (self.say)(&format!(
                    "{name}: extra requests on {} ramp to {} per catalogue second over {} s",
                    r.route, r.to, r.over
                ));
            }
            Action::Mix(m) => {
                self.traffic.set_mix(m);
                (self.say)(&format!("{name}: traffic mix now {m}"));
            }
            Action::WaitDeployment => {
                self.wait_deployment(Duration::from_secs(120)).await?;
                (self.say)(&format!(
                    "{name}: no deployment in progress at {}",
                    now_ms()
                ));
            }
        }
        Ok(())
    }

    async fn wait_deployment(&self, bound: Duration) -> Result<(), String> {
        let start = Instant::now();
        while let Some(id) = self.runtime.service.deploying() {
            if start.elapsed() > bound {
                return Err(format!(
                    "deployment {id} did not finish within {} s",
                    bound.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_interleave_with_other_steps_in_time_order() {
        let steps: Vec<Step> = serde_yaml_ng::from_str(
            r#"
- { at: 0, repeat: { every: 40, times: 3 }, fault: { path: /error/crash, target: newest } }
- { at: 50, rate: 5 }
- { at: 80, mix: default }
"#,
        )
        .unwrap();
        let plan: Vec<(u32, usize)> = timeline(&steps).iter().map(|(t, _, i)| (*t, *i)).collect();
        assert_eq!(plan, vec![(0, 0), (40, 0), (50, 1), (80, 0), (80, 2)]);
    }
}
