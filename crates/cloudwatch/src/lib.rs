//! What CloudWatch does, reimplemented as pure, deterministic logic so the
//! local runtime behaves like the real service and the behaviour can be
//! unit-tested against AWS's documented semantics.
//!
//! * [`filter`]: CloudWatch Logs filter patterns (JSON `{ $.level = "ERROR" }`
//!   and plain-text terms), parsed once and matched against every log line.
//! * [`stats`]: metric statistics per period (Average, Sum, Minimum, Maximum,
//!   SampleCount, pNN), with periods aligned to the epoch as CloudWatch does.
//! * [`alarm`]: metric alarm evaluation (M out of N, every `TreatMissingData`
//!   mode, the look-back "evaluation range") producing state transitions with
//!   CloudWatch-style reasons.
//!
//! Nothing here does I/O or reads a clock: time is always passed in as epoch
//! milliseconds, so the caller decides what "now" is (and may shrink periods
//! with a time-scale factor).

#![forbid(unsafe_code)]

pub mod alarm;
pub mod filter;
pub mod stats;
mod timefmt;

pub use alarm::{
    AlarmEvaluator, AlarmState, EvaluatedDatapoint, EvaluatorError, ReasonData, TimeWindow,
    Transition, scaled_period_ms,
};
pub use filter::{FilterPattern, FilterPatternError, Selector};
pub use stats::{Datapoint, Sample, period_start, period_statistics, statistic};
