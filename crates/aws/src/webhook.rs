//! Optional bridge to AWS DevOps Agent: each alarm episode is forwarded to
//! an Agent Space's generic webhook, authenticated as AWS documents for
//! generic (HMAC) webhooks: header `x-amzn-event-timestamp` (ISO 8601, UTC,
//! milliseconds) and header `x-amzn-event-signature` = base64 of
//! HMAC-SHA256(secret, `<timestamp>:<body>`). The secret is read from
//! Secrets Manager. Retries with exponential backoff on transport errors,
//! 429 and 5xx; any other answer is final.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::AwsError;
use crate::alarm::AlarmMessage;

pub const TIMESTAMP_HEADER: &str = "x-amzn-event-timestamp";
pub const SIGNATURE_HEADER: &str = "x-amzn-event-signature";

/// The generic webhook's incident payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    pub event_type: String,
    pub action: String,
    pub priority: String,
    /// Alarm + state-change time: the agent sees a redelivery as the same incident.
    pub incident_id: String,
    pub title: String,
    pub description: String,
    pub service: String,
    pub timestamp: String,
    pub data: serde_json::Value,
}

impl Incident {
    pub fn from_alarm(
        m: &AlarmMessage,
        at_ms: i64,
        service: &str,
        report: Option<&str>,
    ) -> Incident {
        Incident {
            event_type: "incident".into(),
            action: "created".into(),
            priority: "HIGH".into(),
            incident_id: format!("{}-{at_ms}", m.alarm_name),
            title: format!("CloudWatch alarm {} is {}", m.alarm_name, m.new_state_value),
            description: m.new_state_reason.clone(),
            service: service.to_owned(),
            timestamp: crate::sources::ssm_deployments::fmt_time(at_ms),
            data: serde_json::json!({
                "alarm": m.alarm_name,
                "state_change_time": m.state_change_time,
                "trigger": m.trigger,
                "investigator_report": report,
            }),
        }
    }
}

/// base64(HMAC-SHA256(secret, `timestamp:body`)).
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Where and how to post.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Vec<u8>,
    pub attempts: u32,
    pub first_backoff: Duration,
    pub timeout: Duration,
}

impl Webhook {
    pub fn new(url: &str, secret: Vec<u8>) -> Webhook {
        Webhook {
            url: url.to_owned(),
            secret,
            attempts: 4,
            first_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }

    /// Reads the HMAC secret (`SecretString`) from Secrets Manager.
    pub async fn from_secret(
        url: &str,
        secrets: &aws_sdk_secretsmanager::Client,
        secret_id: &str,
    ) -> Result<Webhook, AwsError> {
        let r = secrets
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                crate::api_error(&format!("Secrets Manager GetSecretValue {secret_id}"), e)
            })?;
        let s = r
            .secret_string
            .ok_or_else(|| AwsError::Webhook(format!("secret {secret_id} has no SecretString")))?;
        if s.is_empty() {
            return Err(AwsError::Webhook(format!("secret {secret_id} is empty")));
        }
        Ok(Webhook::new(url, s.into_bytes()))
    }

    /// Posts one incident (blocking; call from a blocking thread). Returns
    /// the HTTP status of the accepted attempt.
    pub fn send(&self, incident: &Incident) -> Result<u16, AwsError> {
        let body = serde_json::to_vec(incident).map_err(|e| AwsError::Webhook(e.to_string()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let mut backoff = self.first_backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts.max(1) {
            // A fresh timestamp per attempt: the receiver may reject old ones.
            let ts = crate::sources::ssm_deployments::fmt_time(crate::now_ms());
            let sig = signature(&self.secret, &ts, &body);
            let r = agent
                .post(&self.url)
                .header("content-type", "application/json")
                .header(TIMESTAMP_HEADER, &ts)
                .header(SIGNATURE_HEADER, &sig)
                .send(&body[..]);
            match r {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if (200..300).contains(&status) {
                        return Ok(status);
                    }
                    last = format!("HTTP {status}");
                    if status != 429 && status < 500 {
                        return Err(AwsError::Webhook(format!(
                            "{} answered {last}: not retried",
                            self.url
                        )));
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if attempt < self.attempts {
                std::thread::sleep(backoff);
                backoff *= 2;
            }
        }
        Err(AwsError::Webhook(format!(
            "{}: {} attempts failed, last: {last}",
            self.url, self.attempts
        )))
    }
}
