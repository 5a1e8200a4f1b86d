//! The alarm worker: long-polls the alarm queue (SNS → SQS), investigates
//! each ALARM episode once, writes the report to S3, publishes a one-line
//! summary with the report's location to SNS, and optionally forwards the
//! alarm to the managed agent's webhook.
//!
//! Once per episode across redeliveries, restarts and parallel workers: the
//! S3 marker written with `If-None-Match: *` ([`crate::reports`]); nothing
//! is remembered in memory. A message that fails is left on the queue (with
//! a growing visibility timeout) and moved to the DLQ on its
//! `max_receives`-th receive; every failure is logged with the message id.
//! The queue's redrive policy (Terraform) is the backstop when the worker
//! itself dies mid-message.

use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use demo_model::Catalog;
use demo_model::events::AlarmTransition;
use investigator::Report;

use crate::alarm::{AlarmMessage, parse_body, transition};
use crate::reports::{Claim, ReportBucket, ReportKeys};
use crate::sources::AwsSources;
use crate::webhook::{Incident, Webhook};
use crate::{AwsConfig, AwsError, Clients};

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    Investigated {
        alarm: String,
        keys: ReportKeys,
        root_cause: String,
    },
    /// The episode already has a report (redelivery, or another worker).
    Duplicate { alarm: String, at_ms: i64 },
    /// OK / INSUFFICIENT_DATA transitions are acknowledged, not investigated.
    NotAlarm { alarm: String, state: String },
    /// Left on the queue for another try.
    Retry { error: String, receives: u32 },
    /// Moved to the dead-letter queue.
    DeadLettered { error: String, receives: u32 },
}

pub struct Worker {
    cfg: AwsConfig,
    clients: Clients,
    catalog: Catalog,
    bucket: ReportBucket,
    webhook: Option<Webhook>,
    queue_url: String,
    /// Long-poll wait (SQS allows 0-20 s).
    pub wait_s: i32,
}

fn log(msg: &str) {
    eprintln!(
        "{} aws-worker: {msg}",
        crate::sources::ssm_deployments::fmt_time(crate::now_ms())
    );
}

/// The investigation id of an AWS episode (stable across redeliveries).
pub fn investigation_id(t: &AlarmTransition) -> String {
    format!("inv-{}-{}", t.at_ms, t.alarm)
}

/// Runs one investigation with the AWS sources on a blocking thread; the
/// partial-answer gaps of the sources are added to the report's gaps.
pub async fn investigate(
    cfg: &AwsConfig,
    clients: &Clients,
    catalog: &Catalog,
    t: &AlarmTransition,
) -> Result<Report, AwsError> {
    let (cfg, clients, catalog, t) = (cfg.clone(), clients.clone(), catalog.clone(), t.clone());
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        if let Some(repo) = cfg.repo.as_ref().filter(|_| cfg.fetch_repo) {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["fetch", "--quiet", "--all"])
                .output()
                .map_err(|e| {
                    AwsError::Investigate(format!("git fetch in {}: {e}", repo.display()))
                })?;
            if !out.status.success() {
                log(&format!(
                    "git fetch in {} failed (code correlation uses what is there): {}",
                    repo.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        let sources = AwsSources::new(&cfg, &clients, rt);
        let id = investigation_id(&t);
        let mut report = investigator::investigate::investigate(
            &sources.as_sources(),
            &catalog,
            cfg.time_scale,
            &t,
            &id,
            crate::now_ms(),
        );
        report.gaps.extend(sources.gaps.take());
        Ok(report)
    })
    .await
    .map_err(|e| AwsError::Investigate(format!("investigation thread: {e}")))?
}

/// `category entity` of a report's root cause.
pub fn root_cause(r: &Report) -> String {
    format!(
        "{}{}",
        r.root_cause.category,
        r.root_cause
            .entity
            .as_deref()
            .map(|e| format!(" {e}"))
            .unwrap_or_default()
    )
}

impl Worker {
    /// Validates the configuration and reads the webhook secret.
    pub async fn new(
        cfg: AwsConfig,
        clients: Clients,
        catalog: Catalog,
    ) -> Result<Worker, AwsError> {
        let problems = cfg.validate_worker();
        if !problems.is_empty() {
            return Err(AwsError::Config(problems));
        }
        let webhook = match (&cfg.webhook_url, &cfg.webhook_secret_id) {
            (Some(url), Some(id)) => Some(Webhook::from_secret(url, &clients.secrets, id).await?),
            _ => None,
        };
        let bucket = ReportBucket {
            s3: clients.s3.clone(),
            bucket: cfg.bucket.clone().unwrap_or_default(),
            prefix: cfg.prefix.clone(),
        };
        Ok(Worker {
            queue_url: cfg.queue_url.clone().unwrap_or_default(),
            cfg,
            clients,
            catalog,
            bucket,
            webhook,
            wait_s: 20,
        })
    }

    pub fn bucket(&self) -> &ReportBucket {
        &self.bucket
    }

    /// Receives up to one batch (long poll) and handles each message.
    pub async fn poll_once(&self) -> Result<Vec<(String, Handled)>, AwsError> {
        let r = self
            .clients
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(1)
            .wait_time_seconds(self.wait_s)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| crate::api_error("SQS ReceiveMessage", e))?;
        let mut out = Vec::new();
        for m in r.messages.unwrap_or_default() {
            let id = m.message_id.clone().unwrap_or_default();
            let receipt = m.receipt_handle.clone().unwrap_or_default();
            let receives = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1);
            let body = m.body.clone().unwrap_or_default();
            let h = match self.handle(&body).await {
                Ok(h) => {
                    self.delete(&receipt).await?;
                    h
                }
                Err(e) => self.failed(&id, &receipt, &body, receives, e).await?,
            };
            log(&format!("message {id}: {h:?}"));
            out.push((id, h));
        }
        Ok(out)
    }

    /// Polls until `stop` completes; API errors are logged and retried
    /// after a pause, so a throttled or briefly unreachable queue does not
    /// end the worker.
    pub async fn run(&self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        log(&format!("polling {}", self.queue_url));
        loop {
            tokio::select! {
                () = &mut stop => { log("stopping"); return; }
                r = self.poll_once() => {
                    if let Err(e) = r {
                        log(&format!("poll failed: {e}"));
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), AwsError> {
        self.clients
            .sqs
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| crate::api_error("SQS DeleteMessage", e))?;
        Ok(())
    }

    async fn failed(
        &self,
        id: &str,
        receipt: &str,
        body: &str,
        receives: u32,
        e: AwsError,
    ) -> Result<Handled, AwsError> {
        let error = e.to_string();
        log(&format!(
            "message {id} failed (receive {receives} of {}): {error}",
            self.cfg.max_receives
        ));
        if let Some(dlq) = self
            .cfg
            .dlq_url
            .as_ref()
            .filter(|_| receives >= self.cfg.max_receives)
        {
            self.clients
                .sqs
                .send_message()
                .queue_url(dlq)
                .message_body(body)
                .message_attributes(
                    "error",
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(error.chars().take(1000).collect::<String>())
                        .build()
                        .map_err(|e| crate::api_error("SQS message attribute", e))?,
                )
                .message_attributes(
                    "source_message_id",
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(id)
                        .build()
                        .map_err(|e| crate::api_error("SQS message attribute", e))?,
                )
                .send()
                .await
                .map_err(|e| crate::api_error("SQS SendMessage (DLQ)", e))?;
            self.delete(receipt).await?;
            return Ok(Handled::DeadLettered { error, receives });
        }
        // Back off: base, 2 × base, 4 × base ... (at most 15 min).
        let backoff = (self.cfg.retry_visibility_s << (receives.saturating_sub(1)).min(5)).min(900);
        if let Err(e) = self
            .clients
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(backoff)
            .send()
            .await
        {
            log(&format!(
                "message {id}: cannot set visibility: {}",
                crate::error_chain(&e)
            ));
        }
        Ok(Handled::Retry { error, receives })
    }

    async fn handle(&self, body: &str) -> Result<Handled, AwsError> {
        let m: AlarmMessage = parse_body(body)?;
        if m.new_state_value != "ALARM" {
            return Ok(Handled::NotAlarm {
                alarm: m.alarm_name,
                state: m.new_state_value,
            });
        }
        let t = transition(&m, &self.catalog, self.cfg.time_scale)?;
        if self.bucket.done(&t.alarm, t.at_ms).await? {
            return Ok(Handled::Duplicate {
                alarm: t.alarm,
                at_ms: t.at_ms,
            });
        }
        let report = investigate(&self.cfg, &self.clients, &self.catalog, &t).await?;
        let (keys, claim) = self.bucket.write(&report).await?;
        if claim == Claim::AlreadyDone {
            return Ok(Handled::Duplicate {
                alarm: t.alarm,
                at_ms: t.at_ms,
            });
        }
        let location = format!("s3://{}/{}", self.bucket.bucket, keys.html);
        if let Some(topic) = &self.cfg.summary_topic_arn {
            let subject: String = format!("Investigation: {} — {}", t.alarm, root_cause(&report))
                .chars()
                .take(99)
                .collect();
            let text = format!(
                "{}\nRoot cause: {} (confidence {:.2})\nReport: {location}\nJSON: s3://{}/{}\n",
                report.summary,
                root_cause(&report),
                report.root_cause.confidence,
                self.bucket.bucket,
                keys.json
            );
            // The report is stored and claimed: a failed publish is logged,
            // not retried (a retry would find the marker and publish nothing).
            if let Err(e) = self
                .clients
                .sns
                .publish()
                .topic_arn(topic)
                .subject(subject)
                .message(text)
                .send()
                .await
            {
                log(&format!(
                    "summary for {} not published: {}",
                    report.id,
                    crate::error_chain(&e)
                ));
            }
        }
        if let Some(hook) = &self.webhook {
            let incident =
                Incident::from_alarm(&m, t.at_ms, &self.catalog.service.name, Some(&location));
            let hook = hook.clone();
            let sent = tokio::task::spawn_blocking(move || hook.send(&incident)).await;
            match sent {
                Ok(Ok(status)) => log(&format!("webhook accepted {} (HTTP {status})", report.id)),
                Ok(Err(e)) => log(&format!("webhook for {}: {e}", report.id)),
                Err(e) => log(&format!("webhook thread: {e}")),
            }
        }
        Ok(Handled::Investigated {
            alarm: t.alarm,
            keys,
            root_cause: root_cause(&report),
        })
    }
}
