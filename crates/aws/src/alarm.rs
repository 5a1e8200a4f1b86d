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
