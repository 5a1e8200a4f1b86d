//! Runtime configuration: where state lives, which binary runs as a task,
//! the load balancer port and the time scale. Validated before anything starts.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use demo_model::Catalog;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// SQLite database, reports and `runtime.json` live here.
    pub state_dir: PathBuf,
    /// The `demo-app` binary tasks run.
    pub app_binary: PathBuf,
    /// Load balancer listen port on 127.0.0.1 (0 = any free port).
    pub lb_port: u16,
    /// Control API port (0 = any free port).
    pub control_port: u16,
    /// Address the control API binds to: loopback unless configured. Every
    /// request needs the token the runtime writes to the state directory.
    pub control_host: IpAddr,
    /// The git repository `deploy --rev` builds revisions from.
    pub repo: PathBuf,
    /// Divides every period and interval (10: a 60 s period lasts 6 s).
    pub time_scale: f64,
    pub catalog: Catalog,
    /// Version and commit of the initial deployment.
    pub version: String,
    pub git_sha: String,
    /// Extra task environment of the initial deployment.
    pub env: BTreeMap<String, String>,
    /// Emulated Fargate provisioning time before a task's process starts (catalogue seconds).
    pub provisioning: Duration,
    /// Desired task count; defaults to the catalogue's.
    pub desired_count: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid runtime configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl RuntimeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        if !(self.time_scale.is_finite() && (1.0..=120.0).contains(&self.time_scale)) {
            p.push(format!(
                "time_scale: {} must be between 1 and 120",
                self.time_scale
            ));
        }
        if !self.app_binary.is_file() {
            p.push(format!(
                "app_binary: {} does not exist (build it with `cargo build --release -p demo-app`)",
                self.app_binary.display()
            ));
        }
        if let Some(n) = self.desired_count
            && !(1..=10).contains(&n)
        {
            p.push(format!("desired_count: {n} must be 1..=10"));
        }
        if self.lb_port != 0 && self.lb_port == self.control_port {
            p.push("control_port: must differ from lb_port".into());
        }
        p.extend(self.catalog.validate());
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(p))
        }
    }

    /// A catalogue duration shortened by the time scale.
    pub fn scaled(&self, d: Duration) -> Duration {
        d.div_f64(self.time_scale)
    }

    pub fn scaled_secs(&self, secs: u32) -> Duration {
        self.scaled(Duration::from_secs(u64::from(secs)))
    }

    /// How often metrics are sampled and alarms evaluated: six samples per
    /// (scaled) alarm period, between 100 ms and 1 s.
    pub fn tick(&self) -> Duration {
        let min_period = self
            .catalog
            .alarms
            .iter()
            .map(|a| a.period_seconds)
            .min()
            .unwrap_or(60);
        (self.scaled_secs(min_period) / 6).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    pub fn desired(&self) -> u32 {
        self.desired_count
            .unwrap_or(self.catalog.service.desired_count)
    }
}
