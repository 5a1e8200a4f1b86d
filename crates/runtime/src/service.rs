//! The ECS service scheduler, locally: keeps the desired number of healthy
//! tasks of the current deployment running, replaces tasks that exit or fail
//! their health checks (starting the replacement first, as ECS does), and
//! performs rolling deployments within maximum 200 % / minimum healthy 100 %,
//! with the deployment circuit breaker rolling back when new tasks keep
//! failing.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use demo_model::events::{
    ConfigChange, Deployment, DeploymentOutcome, TaskEvent, TaskEventKind, redact_env,
};
use tokio::sync::{Notify, mpsc};

use crate::builds::BuildError;
use crate::config::RuntimeConfig;
use crate::lb::{Health, HealthChange, LoadBalancer};
use crate::now_ms;
use crate::task::{self, Pipeline, Task, TaskExit, TaskSpec};

/// Why a deployment was not started, by kind: the control API maps each kind
/// to its HTTP status in one place (`control::deploy_status`).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The request cannot be carried out as written (it changes nothing, or
    /// rolls back to a build this environment does not have).
    #[error("{0}")]
    BadRequest(String),
    /// A rollback to a deployment id that was never recorded.
    #[error("no deployment {0}")]
    UnknownDeployment(String),
    /// Another deployment (this id) has not finished.
    #[error("deployment {0} is still in progress")]
    InProgress(String),
    /// The revision could not be built; its kind says whose fault that is.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The store could not read or record the deployment.
    #[error("store: {0}")]
    Store(#[from] demo_store::StoreError),
}

/// For callers whose errors are messages (scenario steps).
impl From<DeployError> for String {
    fn from(e: DeployError) -> String {
        e.to_string()
    }
}

/// What a new deployment changes. This is what the control API accepts from
/// the network, so it names configuration and revisions, never a program: a
/// revision is built by the runtime itself ([`crate::builds`]).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Variables to set or change.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables to remove.
    #[serde(default)]
    pub unset: Vec<String>,
    pub version: Option<String>,
    /// A git revision of the runtime's repository to build and roll out.
    #[serde(default)]
    pub rev: Option<String>,
    #[serde(default)]
    pub description: String,
    /// Redeploy exactly what this earlier deployment ran.
    pub rollback_to: Option<String>,
}

struct Deploying {
    id: String,
    /// What the circuit breaker restores; `None` for the initial deployment.
    previous: Option<Arc<TaskSpec>>,
    failures: u32,
}

/// Task bookkeeping shared with the collector and the control API.
pub struct Service {
    pub config: RuntimeConfig,
    pub lb: Arc<LoadBalancer>,
    /// Revisions this environment builds itself (`deploy --rev`).
    pub builds: crate::builds::Builds,
    pipeline: Pipeline,
    tasks: Mutex<BTreeMap<String, Arc<Task>>>,
    /// Tasks being started (provisioning or not yet listening), by deployment.
    starting: Mutex<HashMap<String, Arc<TaskSpec>>>,
    current: Mutex<Arc<TaskSpec>>,
    /// Every spec deployed by this environment, by deployment id: what a rollback restores
    /// exactly (the record alone lacks the binary and redacted values).
    history: Mutex<HashMap<String, Arc<TaskSpec>>>,
    deploying: Mutex<Option<Deploying>>,
    /// A deployment whose circuit breaker tripped with nothing to roll back to: like ECS,
    /// the service stops launching its tasks (until another deployment).
    halted: Mutex<Option<String>>,
    desired: AtomicU32,
    seq: AtomicU64,
    deploy_seq: AtomicU64,
    exits_tx: mpsc::UnboundedSender<TaskExit>,
    wake: Notify,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

/// ECS's circuit-breaker failure threshold: half the desired count, between 3 and 200.
pub fn circuit_breaker_threshold(desired: u32) -> u32 {
    desired.div_ceil(2).clamp(3, 200)
}

impl Service {
    pub fn new(
        config: RuntimeConfig,
        lb: Arc<LoadBalancer>,
        pipeline: Pipeline,
        initial: TaskSpec,
        exits_tx: mpsc::UnboundedSender<TaskExit>,
    ) -> Arc<Service> {
        let desired = config.desired();
        Arc::new(Service {
            builds: crate::builds::Builds::new(
                config.repo.clone(),
                config.state_dir.join("builds"),
            ),
            config,
            lb,
            pipeline,
            tasks: Mutex::new(BTreeMap::new()),
            starting: Mutex::new(HashMap::new()),
            history: Mutex::new(HashMap::from([(
                initial.deployment_id.clone(),
                Arc::new(initial.clone()),
            )])),
            current: Mutex::new(Arc::new(initial)),
            deploying: Mutex::new(None),
            halted: Mutex::new(None),
            desired: AtomicU32::new(desired),
            seq: AtomicU64::new(0),
            deploy_seq: AtomicU64::new(0),
            exits_tx,
            wake: Notify::new(),
        })
    }

    pub fn tasks(&self) -> Vec<Arc<Task>> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn task(&self, id: &str) -> Option<Arc<Task>> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub fn current(&self) -> Arc<TaskSpec> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn desired(&self) -> u32 {
        self.desired.load(Ordering::Acquire)
    }

    pub fn set_desired(&self, n: u32) {
        self.desired.store(n, Ordering::Release);
        self.wake.notify_one();
    }

    /// Id of the deployment in progress, if any.
    pub fn deploying(&self) -> Option<String> {
        self.deploying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|d| d.id.clone())
    }

    pub fn next_deployment_id(&self) -> String {
        format!(
            "d-{:04}",
            self.deploy_seq.fetch_add(1, Ordering::AcqRel) + 1
        )
    }

    /// Continues numbering after what an earlier run recorded in the same
    /// store (`d-<last_deployment>`, `task-<last_task>`), so a restart never
    /// reuses an id and two runs' records never merge.
    pub fn resume_ids(&self, last_deployment: u64, last_task: u64) {
        self.deploy_seq.fetch_max(last_deployment, Ordering::AcqRel);
        self.seq.fetch_max(last_task, Ordering::AcqRel);
    }

    /// What the writer of the store has been through (ok, or failing since when and why).
    pub fn store_health(&self) -> demo_store::WriterHealth {
        self.pipeline.writer.health()
    }

    fn health_of(&self, id: &str) -> Option<Health> {
        self.lb
            .targets()
            .iter()
            .find(|t| t.task_id == id)
            .map(|t| t.state())
    }

    /// Records the initial deployment (what `up` starts with). After a
    /// restart on the same state directory, `previous` is the last deployment
    /// the earlier run recorded: the new run's start is a deployment of its
    /// own, after it, with what differs from it, never a rewrite of it.
    pub fn record_initial(
        &self,
        previous: Option<&Deployment>,
    ) -> Result<Deployment, demo_store::StoreError> {
        let spec = self.current();
        let (changes, description) = match previous {
            None => (Vec::new(), "initial deployment".to_string()),
            Some(p) => {
                let mut before = (*spec).clone();
                before.env = p.env.clone();
                before.version.clone_from(&p.version);
                before.git_sha.clone_from(&p.git_sha);
                let mut now = (*spec).clone();
                now.env = redact_env(&spec.env);
                (
                    diff(&before, &now),
                    format!(
                        "initial deployment (restart; the previous run's last deployment was {})",
                        p.id
                    ),
                )
            }
        };
        let d = Deployment {
            id: spec.deployment_id.clone(),
            started_ms: now_ms(),
            finished_ms: None,
            version: spec.version.clone(),
            git_sha: spec.git_sha.clone(),
            env: redact_env(&spec.env),
            changes,
            outcome: DeploymentOutcome::InProgress,
            previous_id: previous.map(|p| p.id.clone()),
            description,
            reason: None,
        };
        self.pipeline.writer.deployment(&d)?;
        *self.deploying.lock().unwrap_or_else(|e| e.into_inner()) = Some(Deploying {
            id: d.id.clone(),
            previous: None,
            failures: 0,
        });
        if let Some(n) = d.id.strip_prefix("d-").and_then(|n| n.parse().ok()) {
            self.deploy_seq.fetch_max(n, Ordering::AcqRel);
        }
        Ok(d)
    }

    /// Starts a rolling deployment; returns its record. Refused while another
    /// runs. When the request names a revision, builds it first: that takes
    /// minutes, so call this from a blocking context. A revision that is not
    /// a commit is refused first, whatever state the service is in.
    pub fn deploy(
        &self,
        req: DeployRequest,
        reader: &demo_store::Reader,
    ) -> Result<Deployment, DeployError> {
        if let Some(rev) = &req.rev {
            self.builds.resolve(rev)?;
        }
        if let Some(id) = self.deploying() {
            return Err(DeployError::InProgress(id));
        }
        let build = match &req.rev {
            Some(rev) => Some(self.builds.revision(rev)?),
            None => None,
        };
        self.deploy_build(req, build, reader)
    }

    /// Starts a rolling deployment of what `build` holds (built by
    /// [`crate::builds::Builds`], e.g. a patched revision a scenario ships).
    /// In-process only: the control API goes through [`Service::deploy`].
    pub fn deploy_build(
        &self,
        req: DeployRequest,
        build: Option<crate::builds::Build>,
        reader: &demo_store::Reader,
    ) -> Result<Deployment, DeployError> {
        if let Some(id) = self.deploying() {
            return Err(DeployError::InProgress(id));
        }
        let prev = self.current();
        let mut next = (*prev).clone();
        let mut description = req.description.clone();
        if let Some(target) = &req.rollback_to {
            let d = reader
                .deployment(target)?
                .ok_or_else(|| DeployError::UnknownDeployment(target.clone()))?;
            let known = self
                .history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(target)
                .cloned();
            match known {
                // Deployed by this environment: restore exactly what ran.
                Some(spec) => {
                    next.env = spec.env.clone();
                    next.version = spec.version.clone();
                    next.git_sha = spec.git_sha.clone();
                    next.binary = spec.binary.clone();
                    next.args = spec.args.clone();
                }
                // Recorded before this environment started: the record has no binary.
                None if d.git_sha != prev.git_sha => {
                    return Err(DeployError::BadRequest(format!(
                        "deployment {target} ran commit {} from a build this environment does not have; deploy it with --rev {}",
                        d.git_sha, d.git_sha
                    )));
                }
                None => {
                    // Redacted values cannot be restored from the record: keep the current ones.
                    let mut env = d.env.clone();
                    for (k, v) in env.iter_mut() {
                        if v == "<redacted>"
                            && let Some(cur) = prev.env.get(k)
                        {
                            v.clone_from(cur);
                        }
                    }
                    next.env = env;
                    next.version = d.version.clone();
                }
            }
            if description.is_empty() {
                description = format!("rollback to {target}");
            }
        }
        for k in &req.unset {
            next.env.remove(k);
        }
        for (k, v) in &req.env {
            next.env.insert(k.clone(), v.clone());
        }
        if let Some(v) = &req.version {
            next.version.clone_from(v);
        }
        if let Some(b) = build {
            next.git_sha = b.git_sha;
            next.binary = b.binary;
            next.args.clear();
        }
        // Changes first: a refused request takes no deployment id.
        let changes = diff(&prev, &next);
        if changes.is_empty() {
            return Err(DeployError::BadRequest("nothing to deploy: the request changes neither configuration, version, commit nor binary".into()));
        }
        let id = self.next_deployment_id();
        next.deployment_id = id.clone();
        let d = Deployment {
            id: id.clone(),
            started_ms: now_ms(),
            finished_ms: None,
            version: next.version.clone(),
            git_sha: next.git_sha.clone(),
            env: redact_env(&next.env),
            changes,
            outcome: DeploymentOutcome::InProgress,
            previous_id: Some(prev.deployment_id.clone()),
            description,
            reason: None,
        };
        self.pipeline.writer.deployment(&d)?;
        *self.deploying.lock().unwrap_or_else(|e| e.into_inner()) = Some(Deploying {
            id: id.clone(),
            previous: Some(prev),
            failures: 0,
        });
        let next = Arc::new(next);
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), next.clone());
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = next;
        self.wake.notify_one();
        Ok(d)
    }

    fn finish_deployment(&self, outcome: DeploymentOutcome, reason: Option<String>) {
        let taken = self
            .deploying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(dep) = taken else { return };
        // An update of that one record's outcome; the record itself stays as written.
        if let Err(e) =
            self.pipeline
                .writer
                .deployment_finished(&dep.id, now_ms(), outcome, reason.clone())
        {
            eprintln!("scheduler: cannot record the outcome of {}: {e}", dep.id);
        }
        if let (DeploymentOutcome::RolledBack, Some(previous)) = (outcome, &dep.previous) {
            // The circuit breaker restores the last deployment that worked.
            let mut restored = (**previous).clone();
            let id = self.next_deployment_id();
            restored.deployment_id = id.clone();
            let current = self.current();
            let d = Deployment {
                id: id.clone(),
                started_ms: now_ms(),
                finished_ms: None,
                version: restored.version.clone(),
                git_sha: restored.git_sha.clone(),
                env: redact_env(&restored.env),
                changes: diff(&current, &restored),
                outcome: DeploymentOutcome::InProgress,
                previous_id: Some(dep.id.clone()),
                description: format!("automatic rollback of {} (circuit breaker)", dep.id),
                reason,
            };
            let _ = self.pipeline.writer.deployment(&d);
            // If the restored deployment fails too, there is nothing further back to try.
            *self.deploying.lock().unwrap_or_else(|e| e.into_inner()) = Some(Deploying {
                id,
                previous: None,
                failures: 0,
            });
            let restored = Arc::new(restored);
            self.history
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(restored.deployment_id.clone(), restored.clone());
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = restored;
        }
    }

    fn note_failure(&self, deployment_id: &str, why: &str) {
        let tripped = {
            let mut guard = self.deploying.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_mut() {
                Some(d) if d.id == deployment_id => {
                    d.failures += 1;
                    d.failures >= circuit_breaker_threshold(self.desired())
                }
                _ => false,
            }
        };
        if tripped {
            let can_roll_back = self
                .deploying
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(|d| d.previous.is_some());
            if !can_roll_back {
                *self.halted.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(deployment_id.to_string());
                self.finish_deployment(
                    DeploymentOutcome::Failed,
                    Some(format!(
                        "circuit breaker: tasks keep failing ({why}); nothing to roll back to"
                    )),
                );
            } else {
                self.finish_deployment(
                    DeploymentOutcome::RolledBack,
                    Some(format!(
                        "circuit breaker: {} task failures ({why})",
                        circuit_breaker_threshold(self.desired())
                    )),
                );
            }
        }
    }

    /// How many more tasks of `deployment_id` may be launched before the circuit breaker
    /// could trip: the threshold minus the failures so far and the tasks still unresolved
    /// (provisioning, or started but not yet healthy), which may all fail too. `Some(0)`
    /// once it tripped with nothing to roll back to; `None` when no breaker watches the
    /// deployment (it completed: replacements are unlimited).
    fn launch_budget(&self, deployment_id: &str, unresolved: usize) -> Option<usize> {
        let halted = self.halted.lock().unwrap_or_else(|e| e.into_inner());
        if halted.as_deref() == Some(deployment_id) {
            return Some(0);
        }
        drop(halted);
        let guard = self.deploying.lock().unwrap_or_else(|e| e.into_inner());
        let d = guard.as_ref().filter(|d| d.id == deployment_id)?;
        let threshold = circuit_breaker_threshold(self.desired()) as usize;
        Some(threshold.saturating_sub(d.failures as usize + unresolved))
    }

    /// Whether a provisioned task of `spec` should still run: not when a newer deployment
    /// replaced its own (a rollback), nor when its deployment's breaker has tripped.
    fn may_launch(&self, spec: &TaskSpec) -> bool {
        spec.deployment_id == self.current().deployment_id
            && self.launch_budget(&spec.deployment_id, 0) != Some(0)
    }

    fn start_task(self: &Arc<Self>, spec: Arc<TaskSpec>) {
        let n = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        let id = format!("task-{n:04}");
        self.starting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), spec.clone());
        let svc = self.clone();
        tokio::spawn(async move {
            // Fargate takes a while to provision a task before its container runs.
            tokio::time::sleep(svc.config.scaled(svc.config.provisioning)).await;
            // The deployment may have been rolled back while this task was provisioned.
            if !svc.may_launch(&spec) {
                svc.starting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                svc.wake.notify_one();
                return;
            }
            let stop_timeout = svc
                .config
                .scaled_secs(svc.config.catalog.task.stop_timeout_seconds);
            let started = task::start(
                id.clone(),
                spec.clone(),
                svc.pipeline.clone(),
                stop_timeout,
                svc.exits_tx.clone(),
            )
            .await;
            svc.starting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            match started {
                Ok(t) => {
                    svc.tasks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id.clone(), t.clone());
                    svc.lb
                        .register(&id, SocketAddr::from(([127, 0, 0, 1], t.port)));
                }
                Err(e) => {
                    svc.note_failure(&spec.deployment_id, &e.to_string());
                }
            }
            svc.wake.notify_one();
        });
    }

    /// Deregisters (draining in-flight requests), then stops the task.
    pub fn stop_task(self: &Arc<Self>, id: &str, why: &str) -> bool {
        let Some(task) = self.task(id) else {
            return false;
        };
        if task.stopping.swap(true, Ordering::AcqRel) {
            return true;
        }
        self.pipeline.writer.task_event(TaskEvent {
            ts_ms: now_ms(),
            task_id: id.to_string(),
            kind: TaskEventKind::Draining,
            exit_code: None,
            reason: Some(why.to_string()),
            deployment_id: Some(task.spec.deployment_id.clone()),
        });
        let svc = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            svc.lb.deregister(&id, Duration::from_secs(30)).await;
            task.stop();
        });
        true
    }

    /// One pass of the scheduler: start what is missing, stop what is surplus,
    /// finish or break deployments.
    fn reconcile(self: &Arc<Self>) {
        let cur = self.current();
        let desired = self.desired() as usize;
        let max_total =
            desired * self.config.catalog.service.deployment.maximum_percent as usize / 100;
        let min_healthy = (desired
            * self
                .config
                .catalog
                .service
                .deployment
                .minimum_healthy_percent as usize)
            .div_ceil(100);
        let tasks: Vec<Arc<Task>> = self
            .tasks()
            .into_iter()
            .filter(|t| !t.is_stopping())
            .collect();
        let starting: Vec<Arc<TaskSpec>> = self
            .starting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let health = |t: &Task| self.health_of(&t.id).unwrap_or(Health::Initial);
        let is_cur = |t: &Task| t.spec.deployment_id == cur.deployment_id;

        let healthy_cur: Vec<&Arc<Task>> = tasks
            .iter()
            .filter(|t| is_cur(t) && health(t) == Health::Healthy)
            .collect();
        let pending_cur = tasks
            .iter()
            .filter(|t| is_cur(t) && health(t) == Health::Initial)
            .count()
            + starting
                .iter()
                .filter(|s| s.deployment_id == cur.deployment_id)
                .count();
        let healthy_total = tasks
            .iter()
            .filter(|t| health(t) == Health::Healthy)
            .count();
        let running_total = tasks.len() + starting.len();

        // 1. Start tasks of the current deployment until enough are healthy or on their way,
        // never more than could fail before the circuit breaker trips: at the threshold it
        // stops launching (it used to keep replacing failed tasks while earlier ones ran).
        let missing = desired.saturating_sub(healthy_cur.len() + pending_cur);
        let room = max_total.saturating_sub(running_total);
        let budget = self
            .launch_budget(&cur.deployment_id, pending_cur)
            .unwrap_or(usize::MAX);
        for _ in 0..missing.min(room).min(budget) {
            self.start_task(cur.clone());
        }

        // 2. Stop what is surplus, never dropping below the minimum healthy count.
        let mut healthy_left = healthy_total;
        let surplus: Vec<&Arc<Task>> = tasks
            .iter()
            .filter(|t| !is_cur(t) || health(t) == Health::Unhealthy)
            .collect();
        for t in surplus {
            match health(t) {
                // Replaced first, stopped once the replacement is healthy (ECS behaviour).
                Health::Unhealthy => {
                    if healthy_cur.len() >= desired {
                        self.stop_task(
                            &t.id,
                            "task failed its load balancer health checks and was replaced",
                        );
                    }
                }
                // An old task serving traffic goes only while the healthy count stays at the minimum.
                Health::Healthy => {
                    if healthy_left > min_healthy {
                        self.stop_task(&t.id, "replaced by a newer deployment");
                        healthy_left -= 1;
                    }
                }
                // Old tasks not serving traffic cost nothing to stop.
                Health::Initial | Health::Draining => {
                    self.stop_task(&t.id, "replaced by a newer deployment");
                }
            }
        }
        // Scale in: surplus healthy tasks of the current deployment.
        if healthy_cur.len() > desired && tasks.iter().all(is_cur_ref(&cur)) {
            for t in healthy_cur.iter().skip(desired) {
                self.stop_task(&t.id, "service scaled in");
            }
        }

        // 3. A deployment completes when only its tasks remain and enough are healthy.
        if let Some(id) = self.deploying()
            && id == cur.deployment_id
            && healthy_cur.len() >= desired
            && tasks.iter().all(|t| is_cur(t) || t.is_stopping())
        {
            self.finish_deployment(DeploymentOutcome::Completed, None);
        }
    }

    /// The scheduler loop: reacts to exits and health changes, and re-checks every tick.
    pub async fn run(
        self: Arc<Self>,
        mut exits: mpsc::UnboundedReceiver<TaskExit>,
        mut health: mpsc::UnboundedReceiver<HealthChange>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let tick = self.config.tick();
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.reconcile();
            tokio::select! {
                Some(exit) = exits.recv() => {
                    let task = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).remove(&exit.task_id);
                    self.lb.deregister(&exit.task_id, Duration::ZERO).await;
                    if let Some(t) = task && !t.is_stopping() {
                        self.note_failure(&t.spec.deployment_id, &exit.reason);
                    }
                }
                Some(change) = health.recv() => {
                    let task = self.task(&change.task_id);
                    let kind = match change.health {
                        Health::Healthy => TaskEventKind::Healthy,
                        _ => TaskEventKind::Unhealthy,
                    };
                    self.pipeline.writer.task_event(TaskEvent {
                        ts_ms: now_ms(),
                        task_id: change.task_id.clone(),
                        kind,
                        exit_code: None,
                        reason: Some(change.reason.clone()),
                        deployment_id: task.as_ref().map(|t| t.spec.deployment_id.clone()),
                    });
                    if change.health == Health::Unhealthy && let Some(t) = task {
                        self.note_failure(&t.spec.deployment_id, &change.reason);
                    }
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Stops every task: deregister (draining), SIGTERM, wait for exit.
    pub async fn stop_all(self: &Arc<Self>) {
        for t in self.tasks() {
            self.stop_task(&t.id, "environment shutting down");
        }
        let limit = self
            .config
            .scaled_secs(self.config.catalog.task.stop_timeout_seconds)
            + Duration::from_secs(35);
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            let alive = self
                .tasks()
                .iter()
                .any(|t| crate::procfs::usage(t.pid).is_some_and(|_| !zombie(t.pid)));
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn is_cur_ref(cur: &TaskSpec) -> impl Fn(&Arc<Task>) -> bool + '_ {
    move |t| t.spec.deployment_id == cur.deployment_id
}

fn zombie(pid: u32) -> bool {
    // Gone counts as reaped, like a zombie.
    demo_procfs::Stat::read(demo_procfs::Proc::Pid(pid)).is_none_or(|s| s.is_zombie())
}

/// Configuration keys (and version/commit/binary) that differ between two specs.
pub fn diff(a: &TaskSpec, b: &TaskSpec) -> Vec<ConfigChange> {
    let mut out = Vec::new();
    let mut push = |key: &str, from: Option<&String>, to: Option<&String>| {
        if from != to {
            out.push(ConfigChange {
                key: key.to_string(),
                from: from.cloned(),
                to: to.cloned(),
            });
        }
    };
    push("APP_VERSION", Some(&a.version), Some(&b.version));
    push("GIT_SHA", Some(&a.git_sha), Some(&b.git_sha));
    let (ab, bb) = (
        a.binary.display().to_string(),
        b.binary.display().to_string(),
    );
    push("binary", Some(&ab), Some(&bb));
    let redacted_a = redact_env(&a.env);
    let redacted_b = redact_env(&b.env);
    let keys: std::collections::BTreeSet<&String> = a.env.keys().chain(b.env.keys()).collect();
    for k in keys {
        if a.env.get(k) != b.env.get(k) {
            out.push(ConfigChange {
                key: k.clone(),
                from: redacted_a.get(k).cloned(),
                to: redacted_b.get(k).cloned(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_breaker_threshold_matches_ecs() {
        assert_eq!(circuit_breaker_threshold(1), 3);
        assert_eq!(circuit_breaker_threshold(2), 3);
        assert_eq!(circuit_breaker_threshold(10), 5);
        assert_eq!(circuit_breaker_threshold(1000), 200);
    }

    #[test]
    fn diff_names_changed_keys_and_redacts_secrets() {
        let a = TaskSpec {
            deployment_id: "d-1".into(),
            binary: "/bin/app".into(),
            args: vec![],
            version: "1".into(),
            git_sha: "a".into(),
            env: [
                ("X".to_string(), "1".to_string()),
                ("FAULT_TOKEN".into(), "secret-1234567890".into()),
            ]
            .into(),
        };
        let mut b = a.clone();
        b.env.insert("X".into(), "2".into());
        b.env
            .insert("FAULT_TOKEN".into(), "secret-0987654321".into());
        b.version = "2".into();
        let d = diff(&a, &b);
        let keys: Vec<_> = d.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, vec!["APP_VERSION", "FAULT_TOKEN", "X"]);
        assert!(
            d.iter()
                .all(|c| !c.to.as_deref().unwrap_or("").contains("secret"))
        );
    }
}
