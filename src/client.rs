//! Talks to a running `up` through its control API (address in `<state>/runtime.json`).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use demo_runtime::control_auth::{ControlToken, TOKEN_FILE};
use demo_runtime::runtime::{RUNTIME_FILE, RuntimeInfo};
use serde_json::Value;

pub struct Client {
    pub info: RuntimeInfo,
    agent: ureq::Agent,
    /// `Bearer <token>`, from `<state>/control.token`.
    auth: String,
}

impl Client {
    /// Finds the running environment, or explains how to start one.
    pub fn connect(state_dir: &Path) -> Result<Client> {
        let file = state_dir.join(RUNTIME_FILE);
        let text = std::fs::read_to_string(&file).map_err(|_| {
            anyhow!(
                "no running environment in {} (start one with `{} up`)",
                state_dir.display(),
                crate::commands::bin()
            )
        })?;
        let info: RuntimeInfo = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid", file.display()))?;
        if !Path::new(&format!("/proc/{}", info.pid)).exists() {
            bail!(
                "the environment recorded in {} (pid {}) is not running; start one with `{} up`",
                file.display(),
                info.pid,
                crate::commands::bin()
            );
        }
        let token = ControlToken::read(state_dir).with_context(|| {
            format!(
                "cannot read the control token {} (it is readable only by the user who started the environment)",
                state_dir.join(TOKEN_FILE).display()
            )
        })?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Client {
            info,
            agent,
            auth: format!("Bearer {token}"),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.info.control)
    }

    fn handle(mut r: ureq::http::Response<ureq::Body>) -> Result<Value> {
        let status = r.status().as_u16();
        let body: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        let message = body["error"].as_str().unwrap_or("request failed");
        if status == 404 {
            return Err(crate::commands::Exit::not_found(message));
        }
        if status >= 400 {
            bail!("{message}");
        }
        Ok(body)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let r = self
            .agent
            .get(&self.url(path))
            .header("authorization", &self.auth)
            .call()
            .context("control API unreachable")?;
        Client::handle(r)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.post_with_timeout(path, body, Duration::from_secs(30))
    }

    /// A POST that may take long (a deployment that builds a revision first).
    pub fn post_with_timeout(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value> {
        let r = self
            .agent
            .post(&self.url(path))
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("authorization", &self.auth)
            .send_json(body)
            .context("control API unreachable")?;
        Client::handle(r)
    }
}
