//! Alerts from outside `up`: `POST /alerts` on the control API accepts an
//! Alertmanager webhook (payload version 4) or an SNS notification carrying a
//! CloudWatch alarm message, and turns each firing alert into an ALARM
//! transition of the catalogue alarm it names, so it takes the same path as
//! the local evaluator's transitions: stored, broadcast, and investigated by
//! `up` once per episode. An alarm already in ALARM (fired locally, or by an
//! earlier notification of the same group) continues its episode: nothing is
//! stored and no second investigation starts; the same holds the other way
//! round, when the local evaluator fires an alarm an alert already opened
//! (`store_unless_alerted`). An alert still firing that began before the
//! episode it overlapped ended (Alertmanager repeats it after the local
//! evaluator saw the metric recover) opens nothing either: that episode was
//! investigated. A resolved alert ends the episode (an OK transition). An alert naming no catalogue alarm is refused
//! by name (422): the investigator could not know its metric.
//!
//! Alertmanager sends the control token with
//! `http_config: { authorization: { credentials_file: <state>/control.token } }`;
//! the SNS format is for relays that forward CloudWatch's messages (an SNS
//! subscription confirmation is refused: this endpoint fetches no URL).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cloudwatch::{EvaluatedDatapoint, ReasonData, Sample, period_statistics, scaled_period_ms};
use demo_model::Catalog;
use demo_model::events::{AlarmTransition, SERVICE_DIMENSION, Window};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::control::ControlState;

/// Where accepted alerts go: the store and `up`'s transition subscribers.
#[derive(Clone)]
pub struct AlertSink {
    pub writer: demo_store::Writer,
    pub transitions: broadcast::Sender<AlarmTransition>,
}

/// The routes this module adds to the control API.
pub fn routes() -> Router<ControlState> {
    Router::new().route("/alerts", post(receive))
}

/// Alertmanager's webhook payload, version 4 (fields we use; others ignored
/// because Alertmanager may add some).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerPayload {
    pub version: String,
    pub group_key: String,
    pub status: String,
    pub alerts: Vec<AlertmanagerAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlert {
    pub status: String,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    /// For a resolved alert, when it resolved (a firing one carries a
    /// placeholder or a time in the future: not read).
    #[serde(default)]
    pub ends_at: Option<String>,
}

/// One alert, whatever format it came in.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub source: &'static str,
    pub alarm: String,
    pub firing: bool,
    /// When it started firing, or for a resolved alert when it resolved
    /// (epoch ms), if the payload says.
    pub at_ms: Option<i64>,
    /// Alertmanager's group key, or the SNS topic.
    pub group: String,
}

fn parse_time(field: &str, s: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    // CloudWatch writes `2026-11-26T13:00:00.000+0000`, which RFC 3339 spells `+00:00`.
    // Byte offsets only where they are character boundaries: the text is outside input.
    let split = s.len().checked_sub(5).and_then(|i| s.split_at_checked(i));
    let fixed = match split {
        Some((head, tz))
            if (tz.starts_with('+') || tz.starts_with('-'))
                && tz.bytes().skip(1).all(|b| b.is_ascii_digit()) =>
        {
            format!("{head}{}:{}", &tz[..3], &tz[3..])
        }
        _ => s.to_string(),
    };
    time::OffsetDateTime::parse(&fixed, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| format!("{field}: {s:?} is not an RFC 3339 time ({e})"))
}

/// Parses either format; every problem is named.
pub fn parse(body: &Value) -> Result<Vec<Incoming>, String> {
    if body.get("alerts").is_some() || body.get("groupKey").is_some() {
        let p: AlertmanagerPayload = serde_json::from_value(body.clone())
            .map_err(|e| format!("not an Alertmanager webhook payload: {e}"))?;
        if p.version != "4" {
            return Err(format!(
                "Alertmanager payload version {:?}: only version \"4\" is understood",
                p.version
            ));
        }
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for (i, a) in p.alerts.iter().enumerate() {
            let Some(name) = a.labels.get("alertname") else {
                problems.push(format!("alerts[{i}]: no alertname label"));
                continue;
            };
            let firing = match a.status.as_str() {
                "firing" => true,
                "resolved" => false,
                other => {
                    problems.push(format!(
                        "alerts[{i}].status {other:?}: expected firing or resolved"
                    ));
                    continue;
                }
            };
            // A resolved alert's time is when it resolved: its OK ends the
            // episode there, not where the alert began.
            let (field, time) = if firing {
                ("startsAt", a.starts_at.as_deref())
            } else {
                ("endsAt", a.ends_at.as_deref())
            };
            let at_ms = match time {
                None => None,
                Some(s) => match parse_time(&format!("alerts[{i}].{field}"), s) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        problems.push(e);
                        continue;
                    }
                },
            };
            out.push(Incoming {
                source: "alertmanager",
                alarm: name.clone(),
                firing,
                at_ms,
                group: p.group_key.clone(),
            });
        }
        return if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems.join("; "))
        };
    }
    match body.get("Type").and_then(Value::as_str) {
        Some("Notification") => {
            let message = body
                .get("Message")
                .and_then(Value::as_str)
                .ok_or("SNS notification without a Message string")?;
            let m: Value = serde_json::from_str(message)
                .map_err(|e| format!("SNS Message is not a CloudWatch alarm (JSON): {e}"))?;
            let name = m
                .get("AlarmName")
                .and_then(Value::as_str)
                .ok_or("CloudWatch alarm message without AlarmName")?;
            let state = m
                .get("NewStateValue")
                .and_then(Value::as_str)
                .ok_or("CloudWatch alarm message without NewStateValue")?;
            let firing = match state {
                "ALARM" => true,
                "OK" | "INSUFFICIENT_DATA" => false,
                other => {
                    return Err(format!(
                        "NewStateValue {other:?}: expected ALARM, OK or INSUFFICIENT_DATA"
                    ));
                }
            };
            let at_ms = m
                .get("StateChangeTime")
                .and_then(Value::as_str)
                .map(|s| parse_time("StateChangeTime", s))
                .transpose()?;
            Ok(vec![Incoming {
                source: "sns",
                alarm: name.to_string(),
                firing,
                at_ms,
                group: body
                    .get("TopicArn")
                    .and_then(Value::as_str)
                    .unwrap_or("sns")
                    .to_string(),
            }])
        }
        Some(kind @ ("SubscriptionConfirmation" | "UnsubscribeConfirmation")) => Err(format!(
            "SNS {kind}: not confirmed here (this endpoint fetches no URL); confirm the subscription from the AWS console or CLI"
        )),
        Some(other) => Err(format!("SNS message Type {other:?} is not Notification")),
        None => Err(
            "neither an Alertmanager webhook payload (version 4) nor an SNS notification".into(),
        ),
    }
}

/// CloudWatch-style reason data for an alert's transition: the catalogue's
/// parameters and the datapoints of the evaluation range, read from the store.
fn reason_data(
    catalog: &Catalog,
    reader: Option<&demo_store::Reader>,
    alarm: &str,
    time_scale: f64,
    at_ms: i64,
    incoming: &Incoming,
) -> Value {
    let Some(a) = catalog.alarm(alarm) else {
        return json!({});
    };
    let period_ms = scaled_period_ms(a.period_seconds, time_scale);
    let end = cloudwatch::period_start(at_ms, period_ms);
    let start = end - period_ms * i64::from(a.evaluation_periods);
    let samples: Vec<Sample> = reader
        .and_then(|r| {
            r.samples(
                &a.namespace,
                &a.metric_name,
                SERVICE_DIMENSION,
                Window::new(start, end),
            )
            .ok()
        })
        .unwrap_or_default()
        .into_iter()
        .map(|m| Sample::with_count(m.ts_ms, m.value, m.count))
        .collect();
    let points = period_statistics(&samples, a.statistic, period_ms, start, end);
    let data = ReasonData {
        version: "1.0".into(),
        query_date_ms: at_ms,
        start_date_ms: start,
        statistic: a.statistic,
        comparison: a.comparison,
        threshold: a.threshold,
        period_ms,
        evaluation_periods: a.evaluation_periods,
        datapoints_to_alarm: a.datapoints_to_alarm,
        treat_missing_data: a.treat_missing_data,
        recent_datapoints: points.iter().map(|p| p.value).collect(),
        evaluated_datapoints: points
            .iter()
            .rev()
            .map(|p| EvaluatedDatapoint {
                timestamp_ms: p.timestamp_ms,
                value: Some(p.value),
                sample_count: Some(p.sample_count),
                breaching: a.comparison.breaches(p.value, a.threshold),
            })
            .collect(),
    };
    let mut v = serde_json::to_value(data).unwrap_or_else(|_| json!({}));
    v["source"] = json!(incoming.source);
    v["group"] = json!(incoming.group);
    v
}

/// Held while an alarm's latest stored transition is read and the next one
/// stored. Two sources move alarms: the local evaluator (`Collector`) and
/// `POST /alerts`. Each must see the other's last transition before storing
/// its own, or one episode gets two ALARM transitions and two
/// investigations (seen when Alertmanager's notification and the local
/// evaluation of the same alarm landed within a second).
pub(crate) static TRANSITIONS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Stores a transition of the local evaluator unless an alert from outside
/// (`POST /alerts`, whose transitions carry a `source` in their reason data)
/// already moved its alarm to the same state: that episode is the one going
/// on (or already over), so nothing is stored. A stored state left by an
/// earlier run of the evaluator itself does not count: after a restart the
/// evaluator's own ALARM opens a new episode, as before. Returns the stored
/// transition's id, `None` when nothing was stored. The caller holds
/// [`TRANSITIONS`].
pub(crate) fn store_unless_alerted(
    writer: &demo_store::Writer,
    reader: &demo_store::Reader,
    t: &AlarmTransition,
) -> Result<Option<i64>, String> {
    let latest = reader
        .transitions(Some(&t.alarm), 1)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next();
    if latest.is_some_and(|l| l.to == t.to && l.reason_data.get("source").is_some()) {
        return Ok(None);
    }
    writer
        .transition(t.clone())
        .map(Some)
        .map_err(|e| e.to_string())
}

/// What became of one alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A new episode: this ALARM transition was stored and broadcast.
    Opened(AlarmTransition),
    /// The alarm was already in ALARM: the episode of this transition continues.
    Continues(i64),
    /// Resolved: the OK transition stored, or `None` if the alarm was not in ALARM.
    Resolved(Option<i64>),
    /// Still firing, but it started before the alarm's latest transition,
    /// which ended an episode (this transition): that episode covered the
    /// alert and was investigated; a repeat of it is not a new one.
    Over(i64),
}

/// Applies one alert to the store and the subscribers.
pub fn apply(
    sink: &AlertSink,
    reader: &demo_store::Reader,
    catalog: &Catalog,
    time_scale: f64,
    now_ms: i64,
    a: &Incoming,
) -> Result<Outcome, String> {
    let _one_at_a_time = TRANSITIONS.lock().unwrap_or_else(|e| e.into_inner());
    let latest = reader
        .transitions(Some(&a.alarm), 1)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next();
    let in_alarm = latest.as_ref().is_some_and(|t| t.to == "ALARM");
    let from = latest
        .as_ref()
        .map(|t| t.to.clone())
        .unwrap_or_else(|| "INSUFFICIENT_DATA".into());
    // Never before the alarm's latest transition (history stays ordered), never in the future.
    let at_ms = a
        .at_ms
        .unwrap_or(now_ms)
        .max(latest.as_ref().map_or(i64::MIN, |t| t.at_ms))
        .min(now_ms);
    // The alarm's latest transition ended an episode after this alert began:
    // the alert was firing during that episode (Alertmanager repeats a firing
    // alert until it resolves, after the local evaluator may have seen the
    // metric recover).
    let ended_since_it_began = latest
        .as_ref()
        .filter(|l| l.from == "ALARM" && a.at_ms.is_some_and(|s| s < l.at_ms))
        .map(|l| l.id);
    if let (true, false, Some(id)) = (a.firing, in_alarm, ended_since_it_began) {
        return Ok(Outcome::Over(id));
    }
    let to = match (a.firing, in_alarm) {
        (true, true) => return Ok(Outcome::Continues(latest.map_or(0, |t| t.id))),
        (false, false) => return Ok(Outcome::Resolved(None)),
        (true, false) => "ALARM",
        (false, true) => "OK",
    };
    let mut t = AlarmTransition {
        id: 0,
        alarm: a.alarm.clone(),
        from,
        to: to.into(),
        at_ms,
        reason: format!(
            "{} {} ({})",
            a.source,
            if a.firing {
                "alert firing"
            } else {
                "alert resolved"
            },
            a.group
        ),
        reason_data: reason_data(catalog, Some(reader), &a.alarm, time_scale, at_ms, a),
    };
    t.id = sink
        .writer
        .transition(t.clone())
        .map_err(|e| e.to_string())?;
    let _ = sink.transitions.send(t.clone());
    Ok(if a.firing {
        Outcome::Opened(t)
    } else {
        Outcome::Resolved(Some(t.id))
    })
}

async fn receive(
    State(st): State<ControlState>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let bad = |status: StatusCode, m: String| (status, Json(json!({"error": m}))).into_response();
    let body = match body {
        Ok(Json(v)) => v,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let incoming = match parse(&body) {
        Ok(i) => i,
        Err(e) => return bad(StatusCode::BAD_REQUEST, e),
    };
    let catalog = &st.service.config.catalog;
    let unknown: Vec<&str> = incoming
        .iter()
        .filter(|a| catalog.alarm(&a.alarm).is_none())
        .map(|a| a.alarm.as_str())
        .collect();
    if !unknown.is_empty() {
        for a in &incoming {
            st.metrics.alert(a.source, "unknown_alarm");
        }
        let names: Vec<&str> = catalog.alarms.iter().map(|a| a.name.as_str()).collect();
        return bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "alert(s) {} name no catalogue alarm ({})",
                unknown.join(", "),
                names.join(", ")
            ),
        );
    }
    let st2 = st.clone();
    let result = tokio::task::spawn_blocking(move || {
        let svc = &st2.service;
        let reader = demo_store::Reader::open(&svc.config.state_dir).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        // One transition per alarm and payload: a group of several alerts of one alarm is one episode.
        let mut seen = std::collections::BTreeSet::new();
        for a in &incoming {
            if !seen.insert((a.alarm.clone(), a.firing)) {
                continue;
            }
            let o = apply(
                &st2.alerts,
                &reader,
                &svc.config.catalog,
                svc.config.time_scale,
                crate::now_ms(),
                a,
            )?;
            let (result, detail) = match &o {
                Outcome::Opened(t) => (
                    "investigating",
                    json!({"transition_id": t.id, "episode": "new"}),
                ),
                Outcome::Continues(id) => (
                    "continues",
                    json!({"transition_id": id, "episode": "continues"}),
                ),
                Outcome::Resolved(id) => (
                    "resolved",
                    json!({"transition_id": id, "episode": "resolved"}),
                ),
                Outcome::Over(id) => ("over", json!({"transition_id": id, "episode": "over"})),
            };
            st2.metrics.alert(a.source, result);
            let mut d = detail;
            d["alarm"] = json!(a.alarm);
            d["source"] = json!(a.source);
            out.push(d);
        }
        Ok::<_, String>(out)
    })
    .await;
    match result {
        Ok(Ok(v)) => (StatusCode::ACCEPTED, Json(json!({"alerts": v}))).into_response(),
        Ok(Err(e)) => bad(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => bad(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanager_v4_and_sns_parse_and_bad_input_is_named() {
        let am = json!({
            "version": "4", "groupKey": "{}:{alertname=\"cpu-high\"}", "status": "firing",
            "receiver": "up", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://x", "truncatedAlerts": 0,
            "alerts": [{"status": "firing", "labels": {"alertname": "cpu-high"},
                        "annotations": {}, "startsAt": "2026-11-26T13:00:00.5Z",
                        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "f"}]
        });
        let got = parse(&am).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].alarm, "cpu-high");
        assert!(got[0].firing);
        assert_eq!(got[0].at_ms, Some(1_795_698_000_500));

        // Resolved: when it resolved, from endsAt.
        let mut resolved = am.clone();
        resolved["alerts"][0]["status"] = json!("resolved");
        resolved["alerts"][0]["endsAt"] = json!("2026-11-26T13:05:00Z");
        let got = parse(&resolved).unwrap();
        assert!(!got[0].firing);
        assert_eq!(got[0].at_ms, Some(1_795_698_300_000));
        resolved["alerts"][0]["endsAt"] = json!("later");
        assert!(parse(&resolved).unwrap_err().contains("alerts[0].endsAt"));

        let mut v3 = am.clone();
        v3["version"] = json!("3");
        assert!(parse(&v3).unwrap_err().contains("version \"3\""));
        let mut bad = am.clone();
        bad["alerts"][0]["labels"] = json!({});
        bad["alerts"][0]["status"] = json!("weird");
        assert!(parse(&bad).unwrap_err().contains("alerts[0]"));

        let msg = json!({"AlarmName": "high-5xx-errors", "NewStateValue": "ALARM",
                         "StateChangeTime": "2026-11-26T13:00:00.000+0000"})
        .to_string();
        let sns = json!({"Type": "Notification", "TopicArn": "arn:aws:sns:eu-west-1:1:alarms", "Message": msg});
        let got = parse(&sns).unwrap();
        assert_eq!(got[0].source, "sns");
        assert_eq!(got[0].at_ms, Some(1_795_698_000_000));
        assert!(
            parse(&json!({"Type": "SubscriptionConfirmation", "SubscribeURL": "http://x"}))
                .unwrap_err()
                .contains("fetches no URL")
        );
        assert!(parse(&json!({"hello": 1})).unwrap_err().contains("neither"));
    }

    /// A fresh store, an alert sink writing to it, a reader of it and a
    /// subscriber to the sink's transitions (bind them all: the directory
    /// goes when its guard does).
    fn store_and_sink() -> (
        tempfile::TempDir,
        demo_store::Store,
        AlertSink,
        demo_store::Reader,
        broadcast::Receiver<AlarmTransition>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = demo_store::Store::open(dir.path()).unwrap();
        let (tx, rx) = broadcast::channel(8);
        let sink = AlertSink {
            writer: store.writer(),
            transitions: tx,
        };
        let reader = demo_store::Reader::open(dir.path()).unwrap();
        (dir, store, sink, reader, rx)
    }

    /// An Alertmanager alert of `alarm`, firing since `at_ms`.
    fn firing(alarm: &str, at_ms: i64) -> Incoming {
        Incoming {
            source: "alertmanager",
            alarm: alarm.into(),
            firing: true,
            at_ms: Some(at_ms),
            group: "g".into(),
        }
    }

    #[test]
    fn a_firing_alert_opens_one_episode_and_repeats_continue_it() {
        let (_dir, _store, sink, reader, mut rx) = store_and_sink();
        let catalog = Catalog::embedded();
        let a = firing("cpu-high", 1_000);
        let Outcome::Opened(t) = apply(&sink, &reader, &catalog, 10.0, 5_000, &a).unwrap() else {
            panic!("expected a new episode");
        };
        assert_eq!((t.to.as_str(), t.at_ms), ("ALARM", 1_000));
        assert_eq!(t.reason_data["period_ms"], 6_000);
        assert_eq!(rx.try_recv().unwrap().id, t.id);
        // The same group again (Alertmanager repeats): the episode continues, nothing new.
        assert_eq!(
            apply(&sink, &reader, &catalog, 10.0, 6_000, &a).unwrap(),
            Outcome::Continues(t.id)
        );
        assert!(rx.try_recv().is_err());
        // Resolved at 6,500 (its endsAt), heard at 7,000: the episode ends at 6,500.
        let resolved = Incoming {
            firing: false,
            at_ms: Some(6_500),
            ..a.clone()
        };
        let Outcome::Resolved(Some(_)) =
            apply(&sink, &reader, &catalog, 10.0, 7_000, &resolved).unwrap()
        else {
            panic!("expected OK");
        };
        let ok = &reader.transitions(Some("cpu-high"), 1).unwrap()[0];
        assert_eq!((ok.to.as_str(), ok.at_ms), ("OK", 6_500));
        assert_eq!(
            apply(&sink, &reader, &catalog, 10.0, 8_000, &resolved).unwrap(),
            Outcome::Resolved(None)
        );
        assert_eq!(reader.transitions(Some("cpu-high"), 10).unwrap().len(), 2);
    }

    #[test]
    fn the_local_evaluator_joins_an_episode_an_alert_opened() {
        let (_dir, _store, sink, reader, _rx) = store_and_sink();
        let catalog = Catalog::embedded();
        let local = |from: &str, to: &str, at_ms: i64| AlarmTransition {
            id: 0,
            alarm: "error-count-high".into(),
            from: from.into(),
            to: to.into(),
            at_ms,
            reason: "threshold crossed".into(),
            reason_data: json!({"period_ms": 6_000}),
        };
        let count = || {
            reader
                .transitions(Some("error-count-high"), 10)
                .unwrap()
                .len()
        };
        // Its own stored state (a run before a restart) does not hold it back.
        let first = store_unless_alerted(&sink.writer, &reader, &local("OK", "ALARM", 1_000));
        assert!(matches!(first, Ok(Some(_))), "{first:?}");
        store_unless_alerted(&sink.writer, &reader, &local("ALARM", "OK", 2_000)).unwrap();
        assert_eq!(count(), 2);
        // Alertmanager opens the next episode first; the local ALARM that
        // follows is that episode: nothing stored, nothing broadcast.
        let a = firing("error-count-high", 4_000);
        let Outcome::Opened(_) = apply(&sink, &reader, &catalog, 10.0, 5_000, &a).unwrap() else {
            panic!("expected a new episode");
        };
        assert_eq!(
            store_unless_alerted(&sink.writer, &reader, &local("OK", "ALARM", 3_900)),
            Ok(None)
        );
        assert_eq!(count(), 3);
        // Its OK still ends the episode.
        let ok = store_unless_alerted(&sink.writer, &reader, &local("ALARM", "OK", 9_000));
        let Ok(Some(ok_id)) = ok else {
            panic!("expected the OK stored: {ok:?}");
        };
        assert_eq!(count(), 4);
        // Alertmanager repeats the alert, still firing since 4_000: the
        // episode it overlapped is over and was investigated.
        assert_eq!(
            apply(&sink, &reader, &catalog, 10.0, 10_000, &a).unwrap(),
            Outcome::Over(ok_id)
        );
        assert_eq!(count(), 4);
        // An alert that began after that episode ended is a new one.
        let again = Incoming {
            at_ms: Some(9_500),
            ..a.clone()
        };
        let Outcome::Opened(t) = apply(&sink, &reader, &catalog, 10.0, 11_000, &again).unwrap()
        else {
            panic!("expected a new episode");
        };
        assert_eq!(t.at_ms, 9_500);
        assert_eq!(count(), 5);
    }

    #[test]
    fn an_alert_older_than_up_opens_an_episode() {
        // The evaluator's first state (INSUFFICIENT_DATA -> OK at start-up)
        // ended no episode, so an alert firing since before it is new.
        let (_dir, _store, sink, reader, _rx) = store_and_sink();
        let start = AlarmTransition {
            id: 0,
            alarm: "cpu-high".into(),
            from: "INSUFFICIENT_DATA".into(),
            to: "OK".into(),
            at_ms: 5_000,
            reason: "enough data".into(),
            reason_data: json!({}),
        };
        store_unless_alerted(&sink.writer, &reader, &start).unwrap();
        let a = firing("cpu-high", 1_000);
        let o = apply(&sink, &reader, &Catalog::embedded(), 10.0, 6_000, &a).unwrap();
        assert!(matches!(o, Outcome::Opened(_)), "{o:?}");
    }
}
