//! The message CloudWatch sends to SNS when an alarm changes state, as SQS
//! delivers it: an SNS envelope (`Type: Notification`, the alarm JSON in
//! `Message`), or the alarm JSON itself under raw message delivery. Turned
//! into the investigator's [`AlarmTransition`], with reason data built from
//! the message's `Trigger` (period, evaluation periods, threshold) and the
//! catalogue (statistic, missing-data treatment).

use cloudwatch::ReasonData;
use demo_model::Catalog;
use demo_model::catalog::{Comparison, Statistic, TreatMissingData};
use demo_model::events::AlarmTransition;
use serde::{Deserialize, Serialize};

use crate::AwsError;

/// The fields of CloudWatch's alarm notification this reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AlarmMessage {
    pub alarm_name: String,
    pub new_state_value: String,
    #[serde(default)]
    pub old_state_value: String,
    #[serde(default)]
    pub new_state_reason: String,
    /// `2026-01-02T03:04:05.678+0000`.
    pub state_change_time: String,
    #[serde(default)]
    pub trigger: Option<Trigger>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Trigger {
    #[serde(default)]
    pub metric_name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub statistic: Option<String>,
    #[serde(default)]
    pub extended_statistic: Option<String>,
    pub period: i64,
    pub evaluation_periods: u32,
    #[serde(default)]
    pub datapoints_to_alarm: Option<u32>,
    pub comparison_operator: String,
    pub threshold: f64,
}

/// CloudWatch writes `+0000`, not `+00:00`; accept both and `Z`.
pub fn parse_change_time(s: &str) -> Result<i64, AwsError> {
    let fixed = match s.len() {
        n if n > 5 && (s.ends_with("+0000") || s.ends_with("-0000")) => {
            format!("{}Z", &s[..n - 5])
        }
        _ => s.to_owned(),
    };
    time::OffsetDateTime::parse(&fixed, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| AwsError::Message(format!("StateChangeTime {s:?} is not a timestamp: {e}")))
}

/// The alarm JSON inside an SQS body (SNS envelope or raw).
pub fn parse_body(body: &str) -> Result<AlarmMessage, AwsError> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| AwsError::Message(format!("body is not JSON: {e}")))?;
    let inner = if v.get("Type").and_then(|t| t.as_str()) == Some("Notification") {
        let m = v
            .get("Message")
            .and_then(|m| m.as_str())
            .ok_or_else(|| AwsError::Message("SNS notification without a Message string".into()))?;
        serde_json::from_str(m)
            .map_err(|e| AwsError::Message(format!("SNS Message is not alarm JSON: {e}")))?
    } else {
        v
    };
    serde_json::from_value(inner)
        .map_err(|e| AwsError::Message(format!("not a CloudWatch alarm notification: {e}")))
}

/// CloudWatch's notifications spell statistics in capitals (`AVERAGE`,
/// `SAMPLE_COUNT`); the catalogue as the API does (`Average`, `p99`).
fn statistic_name(s: &str) -> String {
    match s.to_ascii_uppercase().replace('_', "").as_str() {
        "AVERAGE" => "Average".into(),
        "SUM" => "Sum".into(),
        "MAXIMUM" => "Maximum".into(),
        "MINIMUM" => "Minimum".into(),
        "SAMPLECOUNT" => "SampleCount".into(),
        _ => s.to_owned(),
    }
}

/// A numeric transition id from the change time (seconds): stable across
/// redeliveries, so the report of a redelivered message is the same report.
pub fn transition_id(at_ms: i64) -> i64 {
    at_ms / 1000
}

/// The transition the investigator takes. `time_scale` divides the period
/// (only when replaying a time-scaled local run; 1 in AWS).
pub fn transition(
    m: &AlarmMessage,
    catalog: &Catalog,
    time_scale: f64,
) -> Result<AlarmTransition, AwsError> {
    let at_ms = parse_change_time(&m.state_change_time)?;
    let alarm = catalog.alarm(&m.alarm_name);
    let reason_data = match (&m.trigger, alarm) {
        (Some(t), a) => {
            let statistic = match (&t.extended_statistic, &t.statistic) {
                (Some(s), _) | (None, Some(s)) => Statistic::try_from(statistic_name(s))
                    .map_err(|e| AwsError::Message(format!("Trigger statistic: {e}")))?,
                (None, None) => a
                    .map(|a| a.statistic)
                    .ok_or_else(|| AwsError::Message("Trigger has no statistic".into()))?,
            };
            let comparison: Comparison =
                serde_json::from_value(serde_json::Value::String(t.comparison_operator.clone()))
                    .map_err(|_| {
                        AwsError::Message(format!(
                            "Trigger ComparisonOperator {:?} is not a threshold comparison",
                            t.comparison_operator
                        ))
                    })?;
            if t.period <= 0 {
                return Err(AwsError::Message(format!(
                    "Trigger Period {} must be positive",
                    t.period
                )));
            }
            let period_ms = ((t.period as f64 * 1000.0) / time_scale).round() as i64;
            let rd = ReasonData {
                version: "1.0".into(),
                query_date_ms: at_ms,
                start_date_ms: at_ms - period_ms * i64::from(t.evaluation_periods),
                statistic,
                comparison,
                threshold: t.threshold,
                period_ms,
                evaluation_periods: t.evaluation_periods,
                datapoints_to_alarm: t.datapoints_to_alarm.unwrap_or(t.evaluation_periods),
                treat_missing_data: a.map_or(TreatMissingData::Missing, |a| a.treat_missing_data),
                recent_datapoints: Vec::new(),
                evaluated_datapoints: Vec::new(),
            };
            serde_json::to_value(rd).map_err(|e| AwsError::Message(e.to_string()))?
        }
        // No trigger (a composite alarm): the investigator falls back to the
        // catalogue and records that as a gap.
        (None, _) => serde_json::Value::Null,
    };
    Ok(AlarmTransition {
        id: transition_id(at_ms),
        alarm: m.alarm_name.clone(),
        from: m.old_state_value.clone(),
        to: m.new_state_value.clone(),
        at_ms,
        reason: m.new_state_reason.clone(),
        reason_data,
    })
}

/// The notification CloudWatch would send for `t` (the exporter and tests
/// put this on the queue), wrapped in an SNS envelope. The trigger carries
/// the catalogue's real period, as CloudWatch's would.
pub fn sns_notification(t: &AlarmTransition, catalog: &Catalog) -> String {
    let a = catalog.alarm(&t.alarm);
    let trigger = a.map(|a| {
        serde_json::json!({
            "MetricName": a.metric_name,
            "Namespace": a.namespace,
            "StatisticType": if a.statistic.is_extended() { "ExtendedStatistic" } else { "Statistic" },
            "Statistic": if a.statistic.is_extended() { serde_json::Value::Null } else { a.statistic.to_string().to_uppercase().into() },
            "ExtendedStatistic": if a.statistic.is_extended() { a.statistic.to_string().into() } else { serde_json::Value::Null },
            "Period": a.period_seconds,
            "EvaluationPeriods": a.evaluation_periods,
            "DatapointsToAlarm": a.datapoints_to_alarm,
            "ComparisonOperator": a.comparison,
            "Threshold": a.threshold,
            "TreatMissingData": "missing",
        })
    });
    let at = crate::sources::ssm_deployments::fmt_time(t.at_ms);
    let message = serde_json::json!({
        "AlarmName": t.alarm,
        "AlarmDescription": a.map(|a| a.description.clone()),
        "AWSAccountId": "123456789012",
        "NewStateValue": t.to,
        "OldStateValue": t.from,
        "NewStateReason": t.reason,
        "StateChangeTime": format!("{}+0000", at.trim_end_matches('Z')),
        "Region": "US East (N. Virginia)",
        "Trigger": trigger,
    });
    serde_json::json!({
        "Type": "Notification",
        "MessageId": format!("msg-{}-{}", t.alarm, t.at_ms),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:devops-agent-demo-dev-alarms",
        "Subject": format!("ALARM: \"{}\" in US East (N. Virginia)", t.alarm),
        "Message": message.to_string(),
        "Timestamp": at,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification as CloudWatch sends it (shape from AWS's documentation
    /// of alarm notifications), as SQS delivers it from SNS.
    const RECORDED: &str = r#"{"Type":"Notification","MessageId":"5f2c","TopicArn":"arn:aws:sns:us-east-1:123456789012:alarms","Subject":"ALARM","Message":"{\"AlarmName\":\"memory-high\",\"NewStateValue\":\"ALARM\",\"OldStateValue\":\"OK\",\"NewStateReason\":\"Threshold Crossed\",\"StateChangeTime\":\"2026-01-02T03:04:05.678+0000\",\"Trigger\":{\"MetricName\":\"MemoryUtilization\",\"Namespace\":\"AWS/ECS\",\"StatisticType\":\"Statistic\",\"Statistic\":\"AVERAGE\",\"Period\":60,\"EvaluationPeriods\":2,\"ComparisonOperator\":\"GreaterThanThreshold\",\"Threshold\":80.0,\"TreatMissingData\":\"missing\"}}","Timestamp":"2026-01-02T03:04:05.700Z"}"#;

    #[test]
    fn a_recorded_sns_notification_becomes_a_transition() {
        let m = parse_body(RECORDED).unwrap();
        let t = transition(&m, &Catalog::embedded(), 1.0).unwrap();
        assert_eq!(t.alarm, "memory-high");
        assert_eq!(t.to, "ALARM");
        assert_eq!(t.at_ms, 1_767_323_045_678);
        let rd: ReasonData = serde_json::from_value(t.reason_data).unwrap();
        assert_eq!(rd.period_ms, 60_000);
        assert_eq!(rd.statistic, Statistic::Average);
        assert_eq!(rd.threshold, 80.0);
    }

    #[test]
    fn the_time_scale_divides_the_period() {
        let m = parse_body(RECORDED).unwrap();
        let t = transition(&m, &Catalog::embedded(), 20.0).unwrap();
        let rd: ReasonData = serde_json::from_value(t.reason_data).unwrap();
        assert_eq!(rd.period_ms, 3_000);
    }

    #[test]
    fn our_notification_parses_back_to_the_same_transition() {
        let cat = Catalog::embedded();
        let t = AlarmTransition {
            id: 0,
            alarm: "error-count-high".into(),
            from: "OK".into(),
            to: "ALARM".into(),
            at_ms: 1_715_508_212_000,
            reason: "Threshold Crossed".into(),
            reason_data: serde_json::Value::Null,
        };
        let back =
            transition(&parse_body(&sns_notification(&t, &cat)).unwrap(), &cat, 1.0).unwrap();
        assert_eq!(
            (back.alarm.as_str(), back.at_ms, back.to.as_str()),
            ("error-count-high", t.at_ms, "ALARM")
        );
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        for (body, want) in [
            ("not json", "body is not JSON"),
            (r#"{"Type":"Notification"}"#, "without a Message"),
            (
                r#"{"Type":"Notification","Message":"x"}"#,
                "SNS Message is not alarm JSON",
            ),
            (
                r#"{"AlarmName":"a"}"#,
                "not a CloudWatch alarm notification",
            ),
        ] {
            let e = parse_body(body).unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e}");
        }
        let m = AlarmMessage {
            alarm_name: "a".into(),
            new_state_value: "ALARM".into(),
            old_state_value: "OK".into(),
            new_state_reason: String::new(),
            state_change_time: "yesterday".into(),
            trigger: None,
        };
        assert!(
            transition(&m, &Catalog::embedded(), 1.0)
                .unwrap_err()
                .to_string()
                .contains("\"yesterday\"")
        );
    }
}

/// One `DescribeAlarmHistory` state update's `HistoryData` (the parts read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryData {
    old_state: HistoryState,
    new_state: HistoryState,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryState {
    state_value: String,
    #[serde(default)]
    state_reason: String,
}

/// The alarm message of one state-update history item, with the trigger
/// from `DescribeAlarms` (what `aws investigate` builds when no SQS
/// message is at hand).
pub fn message_from_history(
    alarm: &str,
    timestamp_ms: i64,
    history_data: &str,
    trigger: Option<Trigger>,
) -> Result<AlarmMessage, AwsError> {
    let h: HistoryData = serde_json::from_str(history_data).map_err(|e| {
        AwsError::Message(format!(
            "alarm history data of {alarm} is not a state update: {e}"
        ))
    })?;
    Ok(AlarmMessage {
        alarm_name: alarm.to_owned(),
        new_state_value: h.new_state.state_value,
        old_state_value: h.old_state.state_value,
        new_state_reason: h.new_state.state_reason,
        state_change_time: crate::sources::ssm_deployments::fmt_time(timestamp_ms),
        trigger,
    })
}

/// The latest transition of `alarm` to ALARM at or before `at_ms`, from
/// CloudWatch's alarm history (14 days), with the alarm's current trigger.
pub async fn find_transition(
    cw: &aws_sdk_cloudwatch::Client,
    catalog: &Catalog,
    alarm: &str,
    at_ms: Option<i64>,
    time_scale: f64,
) -> Result<AlarmTransition, AwsError> {
    use aws_sdk_cloudwatch::types::{HistoryItemType, ScanBy};
    let described = cw
        .describe_alarms()
        .alarm_names(alarm)
        .send()
        .await
        .map_err(|e| crate::api_error(&format!("CloudWatch DescribeAlarms {alarm}"), e))?;
    let a = described
        .metric_alarms()
        .first()
        .ok_or_else(|| AwsError::Message(format!("no metric alarm named {alarm}")))?;
    let trigger = Trigger {
        metric_name: a.metric_name.clone(),
        namespace: a.namespace.clone(),
        statistic: a.statistic.as_ref().map(|s| s.as_str().to_owned()),
        extended_statistic: a.extended_statistic.clone(),
        period: i64::from(a.period.unwrap_or(60)),
        evaluation_periods: a.evaluation_periods.unwrap_or(1).max(1) as u32,
        datapoints_to_alarm: a.datapoints_to_alarm.map(|d| d.max(1) as u32),
        comparison_operator: a
            .comparison_operator
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        threshold: a.threshold.unwrap_or(f64::NAN),
    };
    let mut token: Option<String> = None;
    loop {
        let mut req = cw
            .describe_alarm_history()
            .alarm_name(alarm)
            .history_item_type(HistoryItemType::StateUpdate)
            .scan_by(ScanBy::TimestampDescending)
            .set_next_token(token.take());
        if let Some(at) = at_ms {
            req = req.end_date(crate::sources::dt(at + 1));
        }
        let page = req.send().await.map_err(|e| {
            crate::api_error(&format!("CloudWatch DescribeAlarmHistory {alarm}"), e)
        })?;
        for item in page.alarm_history_items() {
            let ts = item.timestamp().map(crate::sources::ms).unwrap_or(0);
            let Some(data) = item.history_data() else {
                continue;
            };
            let m = message_from_history(alarm, ts, data, Some(trigger.clone()))?;
            if m.new_state_value == "ALARM" {
                return transition(&m, catalog, time_scale);
            }
        }
        match page.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => {
                return Err(AwsError::Message(format!(
                    "alarm {alarm} has no transition to ALARM in CloudWatch's history{}",
                    at_ms
                        .map(|t| format!(
                            " at or before {}",
                            crate::sources::ssm_deployments::fmt_time(t)
                        ))
                        .unwrap_or_default()
                )));
            }
        }
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;

    /// `HistoryData` of a state update as DescribeAlarmHistory returns it
    /// (recorded shape; moto does not implement DescribeAlarmHistory).
    const RECORDED_HISTORY_DATA: &str = r#"{"version":"1.0","oldState":{"stateValue":"OK","stateReason":"Threshold Crossed: 1 datapoint [0.0 (02/01/26 03:02:00)] was not greater than the threshold (10.0)."},"newState":{"stateValue":"ALARM","stateReason":"Threshold Crossed: 1 datapoint [42.0 (02/01/26 03:03:00)] was greater than the threshold (10.0).","stateReasonData":{"version":"1.0","queryDate":"2026-01-02T03:04:05.678+0000","startDate":"2026-01-02T03:03:00.000+0000","statistic":"Sum","period":60,"recentDatapoints":[42.0],"threshold":10.0,"evaluatedDatapoints":[{"timestamp":"2026-01-02T03:03:00.000+0000","sampleCount":60.0,"value":42.0}]}}}"#;

    #[test]
    fn a_recorded_history_item_becomes_the_transition() {
        let trigger = Trigger {
            metric_name: Some("ErrorCount".into()),
            namespace: Some("DevopsAgentDemo".into()),
            statistic: Some("Sum".into()),
            extended_statistic: None,
            period: 60,
            evaluation_periods: 1,
            datapoints_to_alarm: Some(1),
            comparison_operator: "GreaterThanThreshold".into(),
            threshold: 10.0,
        };
        let m = message_from_history(
            "error-count-high",
            1_767_323_045_678,
            RECORDED_HISTORY_DATA,
            Some(trigger),
        )
        .unwrap();
        assert_eq!(
            (m.old_state_value.as_str(), m.new_state_value.as_str()),
            ("OK", "ALARM")
        );
        let t = transition(&m, &Catalog::embedded(), 1.0).unwrap();
        assert_eq!(t.at_ms, 1_767_323_045_678);
        assert!(t.reason.starts_with("Threshold Crossed: 1 datapoint [42.0"));
        let rd: ReasonData = serde_json::from_value(t.reason_data).unwrap();
        assert_eq!((rd.period_ms, rd.threshold), (60_000, 10.0));
    }

    #[test]
    fn history_data_that_is_not_a_state_update_is_an_error() {
        let e = message_from_history("a", 0, r#"{"version":"1.0"}"#, None).unwrap_err();
        assert!(e.to_string().contains("not a state update"), "{e}");
    }
}
