//! Alert messages are outside input (Alertmanager webhooks, SNS-wrapped
//! CloudWatch alarms posted to the control API): whatever the body, parsing
//! ends with alerts or one error naming the problem, never a panic.

use demo_runtime::alerts::parse;
use proptest::prelude::*;
use serde_json::{Value, json};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9T:.+-]{0,30}",
        Just("2026-11-26T13:00:00.000+0000".to_string()),
        Just("2026-11-26T13:00:00Z".to_string()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}.[0-9]{3}[+-][0-9é]{4}",
    ]
}

fn alertmanager() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("4".to_string()), any::<String>()],
        prop::collection::vec(
            (
                prop_oneof![
                    Just("firing".to_string()),
                    Just("resolved".to_string()),
                    any::<String>()
                ],
                prop::option::of(text()),
                prop::option::of(text()),
            ),
            0..5,
        ),
    )
        .prop_map(|(version, alerts)| {
            let alerts: Vec<Value> = alerts
                .into_iter()
                .map(|(status, name, starts)| {
                    let mut labels = serde_json::Map::new();
                    if let Some(n) = name {
                        labels.insert("alertname".into(), json!(n));
                    }
                    json!({"status": status, "labels": labels, "startsAt": starts})
                })
                .collect();
            json!({"version": version, "groupKey": "{}:{}", "status": "firing", "alerts": alerts})
        })
}

fn sns() -> impl Strategy<Value = Value> {
    (
        text(),
        text(),
        prop_oneof![
            Just("ALARM".to_string()),
            Just("OK".to_string()),
            any::<String>()
        ],
        any::<bool>(),
    )
        .prop_map(|(name, at, state, wrap)| {
            let message = json!({"AlarmName": name, "NewStateValue": state, "StateChangeTime": at})
                .to_string();
            let message = if wrap { message } else { name.clone() };
            json!({"Type": "Notification", "TopicArn": "arn:aws:sns:x", "Message": message})
        })
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("alerts".to_string()),
                    Just("Type".to_string()),
                    Just("Message".to_string()),
                    any::<String>()
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn alertmanager_payloads_parse_or_name_the_problem(body in alertmanager()) {
        match parse(&body) {
            Ok(alerts) => prop_assert!(alerts.len() <= body["alerts"].as_array().unwrap().len()),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn sns_alarm_messages_parse_or_name_the_problem(body in sns()) {
        match parse(&body) {
            Ok(alerts) => prop_assert!(alerts.len() <= 1),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn any_json_parses_or_names_the_problem(body in arbitrary_json()) {
        if let Err(e) = parse(&body) {
            prop_assert!(!e.is_empty());
        }
    }
}

#[test]
fn a_time_zone_cut_inside_a_character_is_an_error_not_a_panic() {
    // The CloudWatch `+0000` fix-up used to slice bytes inside a character.
    for at in ["2026-11-26T13:00:00.000+1é2", "é1234", "+1é2", "x+é12"] {
        let body = json!({
            "Type": "Notification",
            "Message": json!({"AlarmName": "cpu-high", "NewStateValue": "ALARM", "StateChangeTime": at}).to_string(),
        });
        assert!(parse(&body).is_err(), "{at}");
    }
    let ok = json!({
        "Type": "Notification",
        "Message": json!({"AlarmName": "cpu-high", "NewStateValue": "ALARM",
                          "StateChangeTime": "2026-11-26T13:00:00.000+0000"}).to_string(),
    });
    assert_eq!(parse(&ok).unwrap()[0].at_ms, Some(1_795_698_000_000));
}
