//! CloudWatch metric alarm evaluation, reproducing the documented behaviour
//! ("Evaluating an alarm" and "How alarm state is evaluated when data is
//! missing" in the CloudWatch user guide) so local alarms fire exactly when
//! the same catalogue entry would fire in AWS.
//!
//! An [`AlarmEvaluator`] is created per alarm and fed "now" plus the metric's
//! samples (or already-computed per-period [`Datapoint`]s) at every tick. It
//! returns a [`Transition`] only when the state changes. It never reads a
//! clock, and its period is given in milliseconds so the caller can apply a
//! time-scale factor ([`scaled_period_ms`]).
//!
//! ## Semantics
//!
//! Only complete periods are evaluated: at `now`, the newest evaluated period
//! is the epoch-aligned one that ended at or before `now`. Like CloudWatch,
//! the evaluator looks back further than N (`evaluation_periods`) periods:
//! the *evaluation range* is `R = N + max(2, ⌊N/3⌋)` periods (5 for N = 3,
//! as in AWS's worked examples). With M = `datapoints_to_alarm`:
//!
//! 1. No datapoint in the range: `missing` → INSUFFICIENT_DATA, `ignore` →
//!    keep the current state, `breaching` → ALARM, `notBreaching` → OK.
//! 2. At least N real datapoints in the range: the N most recent real ones
//!    are evaluated and the missing-data setting is not used; ALARM when at
//!    least M breach, otherwise OK.
//! 3. Fewer than N real datapoints:
//!    * `breaching` / `notBreaching`: every real datapoint in the range plus
//!      `N − real` filled ones; ALARM when at least M breach, else OK.
//!    * `missing` / `ignore`: only real datapoints count. ALARM when at least
//!      M breach. Otherwise, if every real datapoint breaches and the oldest
//!      is at least M periods old, the alarm goes to ALARM (`missing`) or
//!      keeps its state (`ignore`) — AWS's rule for avoiding a premature
//!      transition when data stops. Otherwise OK if any real datapoint does
//!      not breach; else (all breaching but too few, too recent)
//!      INSUFFICIENT_DATA (`missing`) or keep the state (`ignore`).
//!
//! These rules reproduce every row of both tables in the AWS guide; the rows
//! are in `tests/fixtures/missing_data_tables.yaml` and checked below.

use std::fmt;

use demo_model::{Alarm, Comparison, Statistic, TreatMissingData};
use serde::{Deserialize, Serialize};

use crate::stats::{Datapoint, Sample, period_start, period_statistics};
use crate::timefmt::reason_time;

/// The three CloudWatch alarm states, serialised as AWS spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlarmState {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "ALARM")]
    Alarm,
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

impl AlarmState {
    /// The AWS spelling: `OK`, `ALARM`, `INSUFFICIENT_DATA`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AlarmState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "OK" => Ok(AlarmState::Ok),
            "ALARM" => Ok(AlarmState::Alarm),
            "INSUFFICIENT_DATA" => Ok(AlarmState::InsufficientData),
            other => Err(format!(
                "unknown alarm state {other:?}: expected OK, ALARM or INSUFFICIENT_DATA"
            )),
        }
    }
}

/// A state change, as persisted and published to the investigator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The alarm's name.
    pub alarm: String,
    pub from: AlarmState,
    pub to: AlarmState,
    /// When the evaluation that changed the state ran (epoch milliseconds).
    pub at: i64,
    /// Human-readable reason in CloudWatch's style.
    pub reason: String,
    /// The same reason as structured data (CloudWatch's `StateReasonData`).
    pub reason_data: ReasonData,
}

/// Structured reason for a transition, modelled on CloudWatch's
/// `StateReasonData` JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasonData {
    pub version: String,
    /// The evaluation time (`now`), epoch milliseconds.
    pub query_date_ms: i64,
    /// Start of the evaluation range, epoch milliseconds.
    pub start_date_ms: i64,
    pub statistic: Statistic,
    pub comparison: Comparison,
    pub threshold: f64,
    /// The effective (possibly time-scaled) period in milliseconds.
    pub period_ms: i64,
    pub evaluation_periods: u32,
    pub datapoints_to_alarm: u32,
    pub treat_missing_data: TreatMissingData,
    /// Every real datapoint value in the evaluation range, oldest first.
    pub recent_datapoints: Vec<f64>,
    /// The datapoints the decision used, newest first; filled (missing)
    /// periods have no value.
    pub evaluated_datapoints: Vec<EvaluatedDatapoint>,
}

/// One datapoint as used by an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvaluatedDatapoint {
    /// Period start, epoch milliseconds.
    pub timestamp_ms: i64,
    /// The period's statistic; `None` for a missing period filled in
    /// according to `treat_missing_data`.
    pub value: Option<f64>,
    pub sample_count: Option<f64>,
    pub breaching: bool,
}

/// A half-open time window `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Why an alarm cannot be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvaluatorError {
    #[error("alarm {alarm}: period must be at least 1 ms, got {period_ms} ms")]
    Period { alarm: String, period_ms: i64 },
    #[error(
        "alarm {alarm}: datapoints_to_alarm ({m}) must be between 1 and evaluation_periods ({n})"
    )]
    MOfN { alarm: String, m: u32, n: u32 },
    #[error("alarm {alarm}: threshold must be a finite number")]
    Threshold { alarm: String },
}

/// The alarm's period shortened by a time-scale factor (factor 10: 60 s →
/// 6 000 ms), never below 1 ms. A factor ≤ 0 or non-finite is treated as 1.
pub fn scaled_period_ms(period_seconds: u32, time_scale: f64) -> i64 {
    let factor = if time_scale.is_finite() && time_scale > 0.0 {
        time_scale
    } else {
        1.0
    };
    ((f64::from(period_seconds) * 1000.0 / factor).round() as i64).max(1)
}

/// Evaluates one alarm over time. Initial state: INSUFFICIENT_DATA.
#[derive(Debug, Clone)]
pub struct AlarmEvaluator {
    alarm: Alarm,
    period_ms: i64,
    range_periods: u32,
    state: AlarmState,
}

/// What one evaluation concluded.
enum Outcome {
    Keep,
    To(AlarmState, String, Vec<EvaluatedDatapoint>),
}

impl AlarmEvaluator {
    /// An evaluator using the alarm's real period (`period_seconds`).
    pub fn new(alarm: Alarm) -> Result<AlarmEvaluator, EvaluatorError> {
        let period_ms = i64::from(alarm.period_seconds) * 1000;
        AlarmEvaluator::with_period_ms(alarm, period_ms)
    }

    /// An evaluator with an effective period in milliseconds (for a time
    /// scale, pass [`scaled_period_ms`]). The alarm's own `period_seconds` is
    /// then only reported, never used.
    pub fn with_period_ms(alarm: Alarm, period_ms: i64) -> Result<AlarmEvaluator, EvaluatorError> {
        if period_ms < 1 {
            return Err(EvaluatorError::Period {
                alarm: alarm.name.clone(),
                period_ms,
            });
        }
        let (n, m) = (alarm.evaluation_periods, alarm.datapoints_to_alarm);
        if n == 0 || m == 0 || m > n {
            return Err(EvaluatorError::MOfN {
                alarm: alarm.name.clone(),
                m,
                n,
            });
        }
        if !alarm.threshold.is_finite() {
            return Err(EvaluatorError::Threshold {
                alarm: alarm.name.clone(),
            });
        }
        Ok(AlarmEvaluator {
            range_periods: n + (n / 3).max(2),
            alarm,
            period_ms,
            state: AlarmState::InsufficientData,
        })
    }

    /// The alarm definition being evaluated.
    pub fn alarm(&self) -> &Alarm {
        &self.alarm
    }

    /// The current state.
    pub fn state(&self) -> AlarmState {
        self.state
    }

    /// Set the state without a transition, e.g. restoring a persisted state
    /// after a restart.
    pub fn restore_state(&mut self, state: AlarmState) {
        self.state = state;
    }

    /// The effective period in milliseconds.
    pub fn period_ms(&self) -> i64 {
        self.period_ms
    }

    /// How many periods the evaluation range spans (R ≥ N).
    pub fn range_periods(&self) -> u32 {
        self.range_periods
    }

    /// The window of samples an evaluation at `now_ms` looks at: the last R
    /// complete periods. Query the metric store for exactly this.
    pub fn query_window(&self, now_ms: i64) -> TimeWindow {
        let end_ms = period_start(now_ms, self.period_ms);
        TimeWindow {
            start_ms: end_ms - i64::from(self.range_periods) * self.period_ms,
            end_ms,
        }
    }

    /// Evaluate at `now_ms` from raw samples of the alarm's metric (samples
    /// outside [`AlarmEvaluator::query_window`] are ignored). Returns the
    /// transition if the state changed.
    pub fn evaluate(&mut self, now_ms: i64, samples: &[Sample]) -> Option<Transition> {
        let w = self.query_window(now_ms);
        let dps = period_statistics(
            samples,
            self.alarm.statistic,
            self.period_ms,
            w.start_ms,
            w.end_ms,
        );
        self.evaluate_datapoints(now_ms, &dps)
    }

    /// Evaluate at `now_ms` from per-period datapoints already reduced with
    /// the alarm's statistic (each `timestamp_ms` inside its period; one per
    /// period, the last one wins). Returns the transition if the state changed.
    pub fn evaluate_datapoints(
        &mut self,
        now_ms: i64,
        datapoints: &[Datapoint],
    ) -> Option<Transition> {
        let w = self.query_window(now_ms);
        let r = self.range_periods as usize;
        let mut slots: Vec<Option<Datapoint>> = vec![None; r];
        for dp in datapoints {
            let ps = period_start(dp.timestamp_ms, self.period_ms);
            if ps >= w.start_ms && ps < w.end_ms && dp.value.is_finite() {
                let k = ((ps - w.start_ms) / self.period_ms) as usize;
                slots[k] = Some(Datapoint {
                    timestamp_ms: ps,
                    ..*dp
                });
            }
        }
        let Outcome::To(to, reason, evaluated) = self.decide(&slots, w.start_ms) else {
            return None;
        };
        if to == self.state {
            return None;
        }
        let from = self.state;
        self.state = to;
        let a = &self.alarm;
        let reason = reason.replace("{FROM}", from.as_str());
        Some(Transition {
            alarm: a.name.clone(),
            from,
            to,
            at: now_ms,
            reason,
            reason_data: ReasonData {
                version: "1.0".into(),
                query_date_ms: now_ms,
                start_date_ms: w.start_ms,
                statistic: a.statistic,
                comparison: a.comparison,
                threshold: a.threshold,
                period_ms: self.period_ms,
                evaluation_periods: a.evaluation_periods,
                datapoints_to_alarm: a.datapoints_to_alarm,
                treat_missing_data: a.treat_missing_data,
                recent_datapoints: slots.iter().flatten().map(|d| d.value).collect(),
                evaluated_datapoints: evaluated,
            },
        })
    }

    fn breaches(&self, value: f64) -> bool {
        self.alarm.comparison.breaches(value, self.alarm.threshold)
    }

    /// Apply the rules in the module docs to the R slots (oldest first).
    fn decide(&self, slots: &[Option<Datapoint>], start_ms: i64) -> Outcome {
        let a = &self.alarm;
        let n = a.evaluation_periods as usize;
        let m = a.datapoints_to_alarm as usize;
        let r = slots.len();
        let p = self.period_ms;
        let slot_ts = |k: usize| start_ms + k as i64 * p;
        // Real datapoints, newest first, with their age in periods (newest complete period = 1).
        let real: Vec<(usize, EvaluatedDatapoint)> = slots
            .iter()
            .enumerate()
            .rev()
            .filter_map(|(k, s)| {
                s.map(|d| {
                    (
                        r - k,
                        EvaluatedDatapoint {
                            timestamp_ms: d.timestamp_ms,
                            value: Some(d.value),
                            sample_count: Some(d.sample_count),
                            breaching: self.breaches(d.value),
                        },
                    )
                })
            })
            .collect();
        let treat = a.treat_missing_data;
        let filled = |count: usize, breaching: bool| -> Vec<EvaluatedDatapoint> {
            // Fill the most recent missing periods first: those are the ones
            // an N-period window would have contained.
            (0..r)
                .rev()
                .filter(|k| slots[*k].is_none())
                .take(count)
                .map(|k| EvaluatedDatapoint {
                    timestamp_ms: slot_ts(k),
                    value: None,
                    sample_count: None,
                    breaching,
                })
                .collect()
        };

        if real.is_empty() {
            let (to, label) = match treat {
                TreatMissingData::Ignore => return Outcome::Keep,
                TreatMissingData::Missing => {
                    return Outcome::To(
                        AlarmState::InsufficientData,
                        format!(
                            "Insufficient Data: no datapoints were received for the last {r} periods, \
                             so all {n} datapoint{} to evaluate {} unknown [missing data treated as Missing].",
                            plural(n),
                            were(n)
                        ),
                        Vec::new(),
                    );
                }
                TreatMissingData::Breaching => (AlarmState::Alarm, "Breaching"),
                TreatMissingData::NotBreaching => (AlarmState::Ok, "NonBreaching"),
            };
            return Outcome::To(
                to,
                format!(
                    "Threshold Crossed: no datapoints were received for the last {r} periods and {n} missing \
                     datapoint{} {} treated as [{label}].",
                    plural(n),
                    were(n)
                ),
                filled(n, to == AlarmState::Alarm),
            );
        }

        if real.len() >= n {
            let evaluated: Vec<EvaluatedDatapoint> = real.iter().take(n).map(|(_, d)| *d).collect();
            return self.threshold_outcome(evaluated, None);
        }

        match treat {
            TreatMissingData::Breaching | TreatMissingData::NotBreaching => {
                let as_breaching = treat == TreatMissingData::Breaching;
                let mut evaluated: Vec<EvaluatedDatapoint> = real.iter().map(|(_, d)| *d).collect();
                evaluated.extend(filled(n - real.len(), as_breaching));
                evaluated.sort_by_key(|d| std::cmp::Reverse(d.timestamp_ms));
                self.threshold_outcome(evaluated, Some(treat))
            }
            TreatMissingData::Missing | TreatMissingData::Ignore => {
                let evaluated: Vec<EvaluatedDatapoint> = real.iter().map(|(_, d)| *d).collect();
                let breaching = evaluated.iter().filter(|d| d.breaching).count();
                if breaching >= m {
                    return self.threshold_outcome(evaluated, Some(treat));
                }
                let all_breaching = breaching == evaluated.len();
                let oldest_age = real.last().map_or(0, |(age, _)| *age);
                if all_breaching && oldest_age >= m {
                    if treat == TreatMissingData::Ignore {
                        return Outcome::Keep;
                    }
                    let k = evaluated.len();
                    return Outcome::To(
                        AlarmState::Alarm,
                        format!(
                            "Threshold Crossed: {k} datapoint{} [{}] {} {} the threshold ({}) and no datapoints \
                             were received for the {} most recent period{}; the oldest breaching datapoint is at \
                             least {m} periods old (minimum {m} datapoint{} for {{FROM}} -> ALARM transition) \
                             [missing data treated as Missing].",
                            plural(k),
                            list(&evaluated),
                            were(k),
                            self.phrase(true),
                            num(a.threshold),
                            real[0].0 - 1,
                            plural(real[0].0 - 1),
                            plural(m)
                        ),
                        evaluated,
                    );
                }
                if !all_breaching {
                    return self.threshold_outcome(evaluated, Some(treat));
                }
                if treat == TreatMissingData::Ignore {
                    return Outcome::Keep;
                }
                let k = evaluated.len();
                Outcome::To(
                    AlarmState::InsufficientData,
                    format!(
                        "Insufficient Data: only {k} of the {n} datapoints needed {} received in the last {r} \
                         periods and {} [{}] {} the threshold ({}); {m} breaching datapoint{} {} needed for ALARM \
                         [missing data treated as Missing].",
                        were(k),
                        if k == 1 { "it" } else { "all" },
                        list(&evaluated),
                        self.phrase(true),
                        num(a.threshold),
                        plural(m),
                        if m == 1 { "is" } else { "are" }
                    ),
                    evaluated,
                )
            }
        }
    }

    /// ALARM if at least M of `evaluated` breach, else OK, with CloudWatch's
    /// "Threshold Crossed" reason. `filled_with` is set when missing data
    /// shaped the evaluated set.
    fn threshold_outcome(
        &self,
        evaluated: Vec<EvaluatedDatapoint>,
        filled_with: Option<TreatMissingData>,
    ) -> Outcome {
        let a = &self.alarm;
        let n = a.evaluation_periods as usize;
        let m = a.datapoints_to_alarm as usize;
        let breaching = evaluated.iter().filter(|d| d.breaching).count();
        let alarm = breaching >= m;
        let (to, k, minimum) = if alarm {
            (AlarmState::Alarm, breaching, m)
        } else {
            (AlarmState::Ok, evaluated.len() - breaching, n - m + 1)
        };
        let shown: Vec<EvaluatedDatapoint> = evaluated
            .iter()
            .filter(|d| d.breaching == alarm && d.value.is_some())
            .copied()
            .collect();
        let filled = evaluated.iter().filter(|d| d.value.is_none()).count();
        let total = evaluated.len();
        let mut reason = format!(
            "Threshold Crossed: {k} out of the last {total} datapoint{} [{}] {} {} the threshold ({})",
            plural(total),
            list(&shown),
            were(k),
            self.phrase(alarm),
            num(a.threshold),
        );
        match filled_with {
            Some(t @ (TreatMissingData::Breaching | TreatMissingData::NotBreaching))
                if filled > 0 =>
            {
                let label = if t == TreatMissingData::Breaching {
                    "Breaching"
                } else {
                    "NonBreaching"
                };
                reason.push_str(&format!(
                    ", including {filled} missing datapoint{} treated as [{label}]",
                    plural(filled)
                ));
            }
            Some(TreatMissingData::Missing | TreatMissingData::Ignore) if total < n => {
                reason.push_str(&format!(
                    "; {} of the last {n} periods had no data [missing data treated as {}]",
                    n - total.min(n),
                    if filled_with == Some(TreatMissingData::Ignore) {
                        "Ignore"
                    } else {
                        "Missing"
                    }
                ));
            }
            _ => {}
        }
        if total == n {
            reason.push_str(&format!(
                " (minimum {minimum} datapoint{} for {{FROM}} -> {to} transition).",
                plural(minimum)
            ));
        } else {
            reason.push('.');
        }
        Outcome::To(to, reason, evaluated)
    }

    /// "greater than" / "not greater than" etc., as CloudWatch words it.
    fn phrase(&self, breaching: bool) -> String {
        let op = match self.alarm.comparison {
            Comparison::GreaterThanThreshold => "greater than",
            Comparison::GreaterThanOrEqualToThreshold => "greater than or equal to",
            Comparison::LessThanThreshold => "less than",
            Comparison::LessThanOrEqualToThreshold => "less than or equal to",
        };
        if breaching {
            op.to_string()
        } else {
            format!("not {op}")
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn were(n: usize) -> &'static str {
    if n == 1 { "was" } else { "were" }
}

/// A threshold or value as CloudWatch prints it: at least one decimal.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// `85.1 (12/05/24 10:01:00), 83.0 (12/05/24 10:00:00)`
fn list(dps: &[EvaluatedDatapoint]) -> String {
    dps.iter()
        .filter_map(|d| {
            d.value
                .map(|v| format!("{} ({})", num(v), reason_time(d.timestamp_ms)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use demo_model::{Catalog, catalog::Dimensions};

    const MIN: i64 = 60_000;
    /// 2024-05-12T10:00:00Z, a whole minute.
    const T0: i64 = 1_715_508_000_000;

    fn alarm(n: u32, m: u32, treat: TreatMissingData) -> Alarm {
        Alarm {
            name: "test".into(),
            description: String::new(),
            namespace: "Test".into(),
            metric_name: "M".into(),
            dimensions: Dimensions::None,
            statistic: Statistic::Maximum,
            comparison: Comparison::GreaterThanThreshold,
            threshold: 50.0,
            unit: "Count".into(),
            period_seconds: 60,
            evaluation_periods: n,
            datapoints_to_alarm: m,
            treat_missing_data: treat,
        }
    }

    /// Evaluate the AWS notation ("0 - X - X", oldest first, one symbol per
    /// period of the evaluation range) from a given state.
    fn eval_pattern(
        n: u32,
        m: u32,
        treat: TreatMissingData,
        points: &str,
        from: AlarmState,
    ) -> AlarmState {
        let mut e = AlarmEvaluator::new(alarm(n, m, treat)).unwrap();
        e.restore_state(from);
        let symbols: Vec<&str> = points.split_whitespace().collect();
        assert_eq!(
            symbols.len() as u32,
            e.range_periods(),
            "pattern {points:?} must cover the evaluation range"
        );
        let now = T0 + 100 * MIN;
        let start = e.query_window(now).start_ms;
        let dps: Vec<Datapoint> = symbols
            .iter()
            .enumerate()
            .filter_map(|(k, s)| {
                let value = match *s {
                    "X" => 100.0,
                    "0" => 0.0,
                    "-" => return None,
                    other => panic!("bad symbol {other}"),
                };
                Some(Datapoint {
                    timestamp_ms: start + k as i64 * MIN,
                    value,
                    sample_count: 1.0,
                })
            })
            .collect();
        e.evaluate_datapoints(now, &dps);
        e.state()
    }

    #[derive(Deserialize)]
    struct Tables {
        tables: Vec<Table>,
    }
    #[derive(Deserialize)]
    struct Table {
        name: String,
        evaluation_periods: u32,
        datapoints_to_alarm: u32,
        rows: Vec<Row>,
    }
    #[derive(Deserialize)]
    struct Row {
        points: String,
        missing: String,
        ignore: String,
        breaching: String,
        not_breaching: String,
    }

    /// Every row of the AWS guide's missing-data tables, under all four
    /// treatments, from every starting state ("keep" = retain current state).
    #[test]
    fn aws_missing_data_tables() {
        let t: Tables =
            serde_yaml_ng::from_str(include_str!("../tests/fixtures/missing_data_tables.yaml"))
                .unwrap();
        let mut checked = 0;
        let mut failures = Vec::new();
        for table in &t.tables {
            for row in &table.rows {
                for (treat, want) in [
                    (TreatMissingData::Missing, &row.missing),
                    (TreatMissingData::Ignore, &row.ignore),
                    (TreatMissingData::Breaching, &row.breaching),
                    (TreatMissingData::NotBreaching, &row.not_breaching),
                ] {
                    for from in [
                        AlarmState::Ok,
                        AlarmState::Alarm,
                        AlarmState::InsufficientData,
                    ] {
                        let expected = if want == "keep" {
                            from
                        } else {
                            want.parse().unwrap()
                        };
                        let got = eval_pattern(
                            table.evaluation_periods,
                            table.datapoints_to_alarm,
                            treat,
                            &row.points,
                            from,
                        );
                        checked += 1;
                        if got != expected {
                            failures.push(format!(
                                "{} | {} | {treat:?} from {from}: got {got}, want {expected}",
                                table.name, row.points
                            ));
                        }
                    }
                }
            }
        }
        assert!(checked >= 120, "only {checked} cases");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn evaluation_range_is_longer_than_n() {
        let r = |n| {
            AlarmEvaluator::new(alarm(n, 1, TreatMissingData::Missing))
                .unwrap()
                .range_periods()
        };
        assert_eq!((r(1), r(2), r(3), r(5), r(9)), (3, 4, 5, 7, 12));
        let e = AlarmEvaluator::new(alarm(2, 2, TreatMissingData::Missing)).unwrap();
        // Mid-period: only complete periods count.
        assert_eq!(
            e.query_window(T0 + 10 * MIN + 30_000),
            TimeWindow {
                start_ms: T0 + 6 * MIN,
                end_ms: T0 + 10 * MIN
            }
        );
    }

    /// The catalogue's cpu-high (Average > 80, 2 of 2, missing) minute by
    /// minute, including the metric stopping: CloudWatch keeps re-evaluating
    /// the last datapoints until they leave the evaluation range.
    #[test]
    fn cpu_high_over_time_with_the_metric_stopping() {
        let cat = Catalog::embedded();
        let mut e = AlarmEvaluator::new(cat.alarm("cpu-high").unwrap().clone()).unwrap();
        assert_eq!(e.state(), AlarmState::InsufficientData);
        assert_eq!(e.range_periods(), 4);
        let mut samples = Vec::new();
        // minute 0: 40, 60 (avg 50); minute 1: 85.1; minute 2: 80.0, 86.0 (avg 83.0)
        for (ts, v) in [
            (T0 + 5_000, 40.0),
            (T0 + 50_000, 60.0),
            (T0 + MIN + 1, 85.1),
            (T0 + 2 * MIN, 80.0),
            (T0 + 2 * MIN + 59_999, 86.0),
        ] {
            samples.push(Sample::new(ts, v));
        }
        // Before any complete period: nothing to say, no transition.
        assert_eq!(e.evaluate(T0 + 30_000, &samples), None);

        let t = e
            .evaluate(T0 + MIN, &samples)
            .expect("first datapoint -> OK");
        assert_eq!(
            (t.from, t.to),
            (AlarmState::InsufficientData, AlarmState::Ok)
        );
        assert_eq!(
            t.reason,
            "Threshold Crossed: 1 out of the last 1 datapoint [50.0 (12/05/24 10:00:00)] was not greater than \
             the threshold (80.0); 1 of the last 2 periods had no data [missing data treated as Missing]."
        );

        // Minute 2 is still running: 50, 85.1 -> 1 breaching of 2 -> OK, no transition.
        assert_eq!(e.evaluate(T0 + 2 * MIN + 59_000, &samples), None);

        let t = e
            .evaluate(T0 + 3 * MIN, &samples)
            .expect("85.1, 83.0 -> ALARM");
        assert_eq!(
            (t.from, t.to, t.at),
            (AlarmState::Ok, AlarmState::Alarm, T0 + 3 * MIN)
        );
        assert_eq!(
            t.reason,
            "Threshold Crossed: 2 out of the last 2 datapoints [83.0 (12/05/24 10:02:00), 85.1 (12/05/24 10:01:00)] \
             were greater than the threshold (80.0) (minimum 2 datapoints for OK -> ALARM transition)."
        );
        let rd = &t.reason_data;
        assert_eq!(rd.recent_datapoints, vec![50.0, 85.1, 83.0]);
        assert_eq!(rd.start_date_ms, T0 - MIN);
        assert_eq!(rd.evaluated_datapoints.len(), 2);
        assert_eq!(rd.evaluated_datapoints[0].timestamp_ms, T0 + 2 * MIN);
        assert_eq!(rd.evaluated_datapoints[0].sample_count, Some(2.0));
        assert!(rd.evaluated_datapoints.iter().all(|d| d.breaching));

        // The task dies: no more samples. The last two real datapoints are
        // still in the 4-period range at minutes 4 and 5 (>= N real points).
        assert_eq!(e.evaluate(T0 + 4 * MIN, &samples), None);
        assert_eq!(e.evaluate(T0 + 5 * MIN, &samples), None);
        // Minute 6: only 83.0 (4 periods old) left, breaching, older than M -> stays ALARM.
        assert_eq!(e.evaluate(T0 + 6 * MIN, &samples), None);
        assert_eq!(e.state(), AlarmState::Alarm);
        // Minute 7: the whole range is empty -> INSUFFICIENT_DATA.
        let t = e.evaluate(T0 + 7 * MIN, &samples).expect("all missing");
        assert_eq!(
            (t.from, t.to),
            (AlarmState::Alarm, AlarmState::InsufficientData)
        );
        assert!(
            t.reason.starts_with(
                "Insufficient Data: no datapoints were received for the last 4 periods"
            ),
            "{}",
            t.reason
        );
    }

    /// error-count-high (Sum > 10, 1 of 1, notBreaching) with the metric
    /// filter's default value of 0 once errors stop.
    #[test]
    fn error_count_high_fires_and_recovers() {
        let cat = Catalog::embedded();
        let mut e = AlarmEvaluator::new(cat.alarm("error-count-high").unwrap().clone()).unwrap();
        let mut samples: Vec<Sample> = (0..12).map(|i| Sample::new(T0 + i * 1000, 1.0)).collect();
        // Errors in the current, incomplete minute do not count yet; with
        // notBreaching, an empty range is OK.
        let t = e
            .evaluate(T0 + 59_000, &samples)
            .expect("no data, notBreaching -> OK");
        assert_eq!(
            (t.from, t.to),
            (AlarmState::InsufficientData, AlarmState::Ok)
        );
        let t = e.evaluate(T0 + MIN, &samples).expect("12 > 10");
        assert_eq!((t.from, t.to), (AlarmState::Ok, AlarmState::Alarm));
        assert!(t.reason.contains("1 out of the last 1 datapoint [12.0 (12/05/24 10:00:00)] was greater than the threshold (10.0)"), "{}", t.reason);
        // Exactly 10 is not > 10.
        samples.extend((0..10).map(|i| Sample::new(T0 + MIN + i, 1.0)));
        let t = e.evaluate(T0 + 2 * MIN, &samples).expect("10 is not > 10");
        assert_eq!(t.to, AlarmState::Ok);
        assert!(
            t.reason
                .contains("[10.0 (12/05/24 10:01:00)] was not greater than"),
            "{}",
            t.reason
        );
        assert!(
            t.reason
                .ends_with("(minimum 1 datapoint for ALARM -> OK transition)."),
            "{}",
            t.reason
        );
    }

    #[test]
    fn m_out_of_n_needs_m_breaches_anywhere_in_the_last_n() {
        // 3 out of 5, all data present.
        let a = alarm(5, 3, TreatMissingData::Missing);
        let run = |values: &[f64]| {
            let mut e = AlarmEvaluator::new(a.clone()).unwrap();
            let dps: Vec<Datapoint> = values
                .iter()
                .enumerate()
                .map(|(i, v)| Datapoint {
                    timestamp_ms: T0 + i as i64 * MIN,
                    value: *v,
                    sample_count: 1.0,
                })
                .collect();
            e.evaluate_datapoints(T0 + values.len() as i64 * MIN, &dps);
            e.state()
        };
        // Only the last 5 of these count: [90, 10, 90, 10, 90] -> 3 breaches.
        assert_eq!(
            run(&[10.0, 10.0, 90.0, 10.0, 90.0, 10.0, 90.0]),
            AlarmState::Alarm
        );
        // [10, 90, 10, 10, 90]: 2 breaches -> OK (the older 90s are outside N).
        assert_eq!(
            run(&[90.0, 90.0, 10.0, 90.0, 10.0, 10.0, 90.0]),
            AlarmState::Ok
        );
        // Threshold equality does not breach with GreaterThanThreshold.
        assert_eq!(run(&[50.0, 50.0, 50.0, 51.0, 51.0]), AlarmState::Ok);
        assert_eq!(run(&[50.0, 50.0, 51.0, 51.0, 51.0]), AlarmState::Alarm);
    }

    #[test]
    fn missing_treatments_when_everything_is_missing() {
        let all_missing = |treat, from| {
            let mut e = AlarmEvaluator::new(alarm(2, 2, treat)).unwrap();
            e.restore_state(from);
            let t = e.evaluate(T0 + 10 * MIN, &[]);
            (e.state(), t)
        };
        let (s, t) = all_missing(TreatMissingData::Breaching, AlarmState::Ok);
        assert_eq!(s, AlarmState::Alarm);
        let t = t.unwrap();
        assert_eq!(
            t.reason,
            "Threshold Crossed: no datapoints were received for the last 4 periods and 2 missing datapoints were treated as [Breaching]."
        );
        assert_eq!(t.reason_data.evaluated_datapoints.len(), 2);
        assert!(
            t.reason_data
                .evaluated_datapoints
                .iter()
                .all(|d| d.value.is_none() && d.breaching)
        );
        assert_eq!(
            all_missing(TreatMissingData::NotBreaching, AlarmState::Alarm).0,
            AlarmState::Ok
        );
        assert_eq!(
            all_missing(TreatMissingData::Missing, AlarmState::Alarm).0,
            AlarmState::InsufficientData
        );
        assert_eq!(
            all_missing(TreatMissingData::Missing, AlarmState::InsufficientData).1,
            None
        );
        for from in [
            AlarmState::Ok,
            AlarmState::Alarm,
            AlarmState::InsufficientData,
        ] {
            assert_eq!(all_missing(TreatMissingData::Ignore, from), (from, None));
        }
    }

    #[test]
    fn breaching_fill_is_reported_in_the_reason() {
        let mut e = AlarmEvaluator::new(alarm(3, 3, TreatMissingData::Breaching)).unwrap();
        // Range of 5: "- - - - X" -> X + 2 filled breaching = 3 of 3.
        let t = e
            .evaluate_datapoints(
                T0 + 5 * MIN,
                &[Datapoint {
                    timestamp_ms: T0 + 4 * MIN,
                    value: 70.0,
                    sample_count: 3.0,
                }],
            )
            .unwrap();
        assert_eq!(t.to, AlarmState::Alarm);
        assert_eq!(
            t.reason,
            "Threshold Crossed: 3 out of the last 3 datapoints [70.0 (12/05/24 10:04:00)] were greater than the threshold (50.0), \
             including 2 missing datapoints treated as [Breaching] (minimum 3 datapoints for INSUFFICIENT_DATA -> ALARM transition)."
        );
        let ts: Vec<i64> = t
            .reason_data
            .evaluated_datapoints
            .iter()
            .map(|d| d.timestamp_ms)
            .collect();
        assert_eq!(ts, vec![T0 + 4 * MIN, T0 + 3 * MIN, T0 + 2 * MIN]);
    }

    #[test]
    fn premature_and_insufficient_reasons() {
        // 2 of 3, missing: "- - X - -" -> ALARM (oldest breaching is 3 periods old).
        let mut e = AlarmEvaluator::new(alarm(3, 2, TreatMissingData::Missing)).unwrap();
        let t = e
            .evaluate_datapoints(
                T0 + 5 * MIN,
                &[Datapoint {
                    timestamp_ms: T0 + 2 * MIN,
                    value: 99.0,
                    sample_count: 1.0,
                }],
            )
            .unwrap();
        assert_eq!(t.to, AlarmState::Alarm);
        assert!(
            t.reason
                .contains("no datapoints were received for the 2 most recent periods"),
            "{}",
            t.reason
        );
        // "- - - - X" -> too recent to decide: INSUFFICIENT_DATA.
        let mut e = AlarmEvaluator::new(alarm(3, 2, TreatMissingData::Missing)).unwrap();
        e.restore_state(AlarmState::Ok);
        let t = e
            .evaluate_datapoints(
                T0 + 5 * MIN,
                &[Datapoint {
                    timestamp_ms: T0 + 4 * MIN,
                    value: 99.0,
                    sample_count: 1.0,
                }],
            )
            .unwrap();
        assert_eq!(t.to, AlarmState::InsufficientData);
        assert!(
            t.reason
                .starts_with("Insufficient Data: only 1 of the 3 datapoints needed was received"),
            "{}",
            t.reason
        );
    }

    #[test]
    fn less_than_alarms_and_percentiles() {
        // HealthyHostCount < 1 style alarm.
        let mut a = alarm(1, 1, TreatMissingData::Breaching);
        a.comparison = Comparison::LessThanThreshold;
        a.threshold = 1.0;
        a.statistic = Statistic::Minimum;
        let mut e = AlarmEvaluator::new(a).unwrap();
        let t = e
            .evaluate(T0 + MIN, &[Sample::new(T0, 2.0), Sample::new(T0 + 1, 0.0)])
            .unwrap();
        assert_eq!(t.to, AlarmState::Alarm);
        assert!(
            t.reason
                .contains("[0.0 (12/05/24 10:00:00)] was less than the threshold (1.0)"),
            "{}",
            t.reason
        );

        // latency-p99-high: p99 > 1 s over 100 requests per minute, 2 of 2.
        let cat = Catalog::embedded();
        let mut e = AlarmEvaluator::new(cat.alarm("latency-p99-high").unwrap().clone()).unwrap();
        let minute = |start: i64, slow: f64| {
            vec![
                Sample::with_count(start, 0.05, 98.0),
                Sample::with_count(start + 1, slow, 2.0),
            ]
        };
        let mut s = minute(T0, 1.5); // p99 = 1.5 (rank 99 falls in the slow pair)
        s.extend(minute(T0 + MIN, 3.0));
        let t = e.evaluate(T0 + 2 * MIN, &s).unwrap();
        assert_eq!(t.to, AlarmState::Alarm);
        assert_eq!(t.reason_data.recent_datapoints, vec![1.5, 3.0]);
        assert_eq!(t.reason_data.statistic, Statistic::Percentile(99.0));
    }

    #[test]
    fn time_scale_shrinks_periods() {
        assert_eq!(scaled_period_ms(60, 10.0), 6_000);
        assert_eq!(scaled_period_ms(60, 1.0), 60_000);
        assert_eq!(scaled_period_ms(60, 0.0), 60_000);
        assert_eq!(scaled_period_ms(10, 1e9), 1);
        // cpu-high at factor 10: 2 x 6 s periods of 90 % -> ALARM at 12 s.
        let cat = Catalog::embedded();
        let a = cat.alarm("cpu-high").unwrap().clone();
        let mut e =
            AlarmEvaluator::with_period_ms(a.clone(), scaled_period_ms(a.period_seconds, 10.0))
                .unwrap();
        let samples: Vec<Sample> = (0..24).map(|i| Sample::new(T0 + i * 500, 90.0)).collect();
        assert_eq!(e.evaluate(T0 + 6_000, &samples).map(|t| t.to), None); // 1 breaching of 2, too recent
        assert_eq!(e.state(), AlarmState::InsufficientData);
        let t = e.evaluate(T0 + 12_000, &samples).unwrap();
        assert_eq!((t.to, t.reason_data.period_ms), (AlarmState::Alarm, 6_000));
    }

    #[test]
    fn invalid_alarms_are_rejected() {
        let err =
            AlarmEvaluator::with_period_ms(alarm(2, 2, TreatMissingData::Missing), 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "alarm test: period must be at least 1 ms, got 0 ms"
        );
        let err = AlarmEvaluator::new(alarm(2, 3, TreatMissingData::Missing)).unwrap_err();
        assert!(
            err.to_string()
                .contains("datapoints_to_alarm (3) must be between 1 and evaluation_periods (2)")
        );
        let mut a = alarm(1, 1, TreatMissingData::Missing);
        a.threshold = f64::NAN;
        assert!(matches!(
            AlarmEvaluator::new(a),
            Err(EvaluatorError::Threshold { .. })
        ));
    }

    #[test]
    fn every_catalogue_alarm_builds_an_evaluator() {
        for a in Catalog::embedded().alarms {
            let e = AlarmEvaluator::new(a.clone()).unwrap();
            assert_eq!(e.period_ms(), i64::from(a.period_seconds) * 1000);
        }
    }

    #[test]
    fn transitions_round_trip_as_json() {
        let mut e = AlarmEvaluator::new(alarm(1, 1, TreatMissingData::NotBreaching)).unwrap();
        let t = e.evaluate(T0 + MIN, &[Sample::new(T0, 60.0)]).unwrap();
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["from"], "INSUFFICIENT_DATA");
        assert_eq!(json["to"], "ALARM");
        assert_eq!(json["reason_data"]["statistic"], "Maximum");
        assert_eq!(json["reason_data"]["treat_missing_data"], "notBreaching");
        assert_eq!(json["reason_data"]["comparison"], "GreaterThanThreshold");
        let back: Transition = serde_json::from_value(json).unwrap();
        assert_eq!(back, t);
        assert_eq!("ALARM".parse::<AlarmState>(), Ok(AlarmState::Alarm));
        assert!("alarm".parse::<AlarmState>().is_err());
    }
}
