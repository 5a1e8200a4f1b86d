//! The whole CloudWatch path the local runtime reproduces, through the public
//! API only: JSON log lines → the catalogue's metric filter → ErrorCount
//! samples (metric value 1 per match, the filter's default value otherwise)
//! → the catalogue's error-count-high alarm.

use cloudwatch::{AlarmEvaluator, AlarmState, FilterPattern, Sample};
use demo_model::Catalog;

const T0: i64 = 1_715_508_000_000; // 2024-05-12T10:00:00Z

fn line(level: &str, i: i64) -> String {
    format!(r#"{{"ts":{i},"level":"{level}","msg":"request {i}","status":500}}"#)
}

#[test]
fn error_lines_trip_error_count_high_and_recovery_clears_it() {
    let cat = Catalog::embedded();
    let mf = &cat.metric_filters[0];
    let filter = FilterPattern::parse(&mf.pattern).expect("catalogue pattern parses");
    let value: f64 = mf.metric_value.parse().unwrap();

    // Minute 0: 40 lines, 12 of them ERROR. Minute 1: 40 INFO lines.
    let mut events: Vec<(i64, String)> = Vec::new();
    for i in 0..40 {
        let level = if i % 3 == 0 && i < 36 {
            "ERROR"
        } else {
            "INFO"
        };
        events.push((T0 + i * 1000, line(level, i)));
    }
    for i in 0..40 {
        events.push((T0 + 60_000 + i * 1000, line("INFO", i)));
    }
    events.push((T0 + 61_000, "plain text ERROR line, not JSON".to_string()));

    let samples: Vec<Sample> = events
        .iter()
        .map(|(ts, l)| {
            let json = serde_json::from_str(l).ok();
            let v = if filter.matches_parsed(l, json.as_ref()) {
                value
            } else {
                mf.default_value
            };
            Sample::new(*ts, v)
        })
        .collect();
    assert_eq!(samples.iter().filter(|s| s.value == 1.0).count(), 12);

    let mut alarm = AlarmEvaluator::new(cat.alarm("error-count-high").unwrap().clone()).unwrap();
    let window = alarm.query_window(T0 + 60_000);
    let in_window: Vec<Sample> = samples
        .iter()
        .filter(|s| s.timestamp_ms >= window.start_ms && s.timestamp_ms < window.end_ms)
        .copied()
        .collect();
    let t = alarm
        .evaluate(T0 + 60_000, &in_window)
        .expect("12 errors > 10");
    assert_eq!(t.to, AlarmState::Alarm);
    assert_eq!(t.alarm, "error-count-high");
    assert_eq!(t.reason_data.recent_datapoints, vec![12.0]);

    let t = alarm
        .evaluate(T0 + 120_000, &samples)
        .expect("0 errors -> OK");
    assert_eq!((t.from, t.to), (AlarmState::Alarm, AlarmState::Ok));
}
