//! SVG time-series charts for console pages, and the downsampling that keeps
//! a page small and fast whatever the time scale: an hour of 3-second alarm
//! periods (time scale 20) is 1,200 values, drawn as at most [`MAX_POINTS`].
//! Downsampling keeps each bucket's maximum, so a short spike over the
//! threshold never disappears from the picture.

use maud::{Markup, PreEscaped, html};

/// Most points one series is drawn with.
pub const MAX_POINTS: usize = 240;

/// Keeps at most `max` points: the window is cut into `max` equal buckets
/// and each non-empty bucket is drawn as its maximum, at its first timestamp.
pub fn downsample(
    points: &[(i64, f64)],
    start_ms: i64,
    end_ms: i64,
    max: usize,
) -> Vec<(i64, f64)> {
    if points.len() <= max || max == 0 || end_ms <= start_ms {
        return points.to_vec();
    }
    let width = ((end_ms - start_ms) as f64 / max as f64).max(1.0);
    let mut out: Vec<(usize, i64, f64)> = Vec::with_capacity(max);
    for &(t, v) in points {
        let b = (((t - start_ms) as f64 / width) as usize).min(max - 1);
        match out.last_mut() {
            Some(last) if last.0 == b => last.2 = last.2.max(v),
            _ => out.push((b, t, v)),
        }
    }
    out.into_iter().map(|(_, t, v)| (t, v)).collect()
}

/// What a chart shows.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Read by screen readers (the SVG's accessible name).
    pub title: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub points: Vec<(i64, f64)>,
    pub threshold: Option<f64>,
    /// Time ranges shaded red (the alarm in ALARM).
    pub shaded: Vec<(i64, i64)>,
    /// Vertical markers with a label (deployments).
    pub markers: Vec<(i64, String)>,
}

const W: f64 = 720.0;
const H: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn clock(ms: i64) -> String {
    let t = super::layout::time(ms);
    // "2026-11-26 13:05:07 UTC" -> "13:05"
    t.get(11..16).map(str::to_string).unwrap_or(t)
}

impl Chart {
    fn x(&self, t: i64) -> f64 {
        let span = (self.end_ms - self.start_ms).max(1) as f64;
        LEFT + (t - self.start_ms) as f64 / span * (W - LEFT - RIGHT)
    }

    /// The chart as an inline, scalable SVG (it fits any width).
    pub fn render(&self) -> Markup {
        let max = self
            .points
            .iter()
            .map(|p| p.1)
            .chain(self.threshold)
            .fold(0.0_f64, f64::max);
        let top = if max <= 0.0 { 1.0 } else { max * 1.1 };
        let y = |v: f64| TOP + (1.0 - v / top) * (H - TOP - BOTTOM);
        let path: String = self
            .points
            .iter()
            .enumerate()
            .map(|(i, &(t, v))| {
                format!(
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { "L" },
                    self.x(t),
                    y(v)
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        let ticks: i32 = 4;
        html! {
            svg class="chart" viewBox={"0 0 " (W) " " (H)} role="img" aria-label=(self.title)
                preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg" {
                title { (self.title) }
                @for &(a, b) in &self.shaded {
                    @let (xa, xb) = (self.x(a.max(self.start_ms)), self.x(b.min(self.end_ms)));
                    rect class="alarm-shade" x=(format!("{xa:.1}")) y=(TOP)
                        width=(format!("{:.1}", (xb - xa).max(1.0))) height=(H - TOP - BOTTOM) {}
                }
                line class="axis" x1=(LEFT) y1=(H - BOTTOM) x2=(W - RIGHT) y2=(H - BOTTOM) {}
                line class="axis" x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(H - BOTTOM) {}
                @for i in 0..=ticks {
                    @let v = top * f64::from(i) / f64::from(ticks);
                    text class="label" x=(LEFT - 6.0) y=(format!("{:.1}", y(v) + 4.0)) text-anchor="end" { (fmt_value(v)) }
                }
                @for i in 0..=ticks {
                    @let t = self.start_ms + (self.end_ms - self.start_ms) * i64::from(i) / i64::from(ticks);
                    text class="label" x=(format!("{:.1}", self.x(t))) y=(H - 8.0)
                        text-anchor=(if i == 0 { "start" } else if i == ticks { "end" } else { "middle" }) { (clock(t)) }
                }
                @if let Some(th) = self.threshold {
                    line class="threshold" x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(th))) y2=(format!("{:.1}", y(th))) {}
                    text class="label" x=(W - RIGHT) y=(format!("{:.1}", y(th) - 4.0)) text-anchor="end" { "threshold " (fmt_value(th)) }
                }
                @for (t, label) in &self.markers {
                    @if *t >= self.start_ms && *t <= self.end_ms {
                        line class="marker" x1=(format!("{:.1}", self.x(*t))) x2=(format!("{:.1}", self.x(*t))) y1=(TOP) y2=(H - BOTTOM) {}
                        text class="label" x=(format!("{:.1}", self.x(*t) + 3.0)) y=(TOP + 10.0) { (label) }
                    }
                }
                @if path.is_empty() {
                    text class="label" x=(W / 2.0) y=(H / 2.0) text-anchor="middle" { "no data in this window" }
                } @else {
                    path class="line" d=(PreEscaped(path)) {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_the_peak_of_each_bucket_and_at_most_max_points() {
        let points: Vec<(i64, f64)> = (0..1200).map(|i| (i * 3000, (i % 7) as f64)).collect();
        let mut spiky = points.clone();
        spiky[601].1 = 99.0;
        let out = downsample(&spiky, 0, 3_600_000, 240);
        assert!(out.len() <= 240, "{} points", out.len());
        assert!(
            out.len() >= 200,
            "buckets with data are all drawn: {}",
            out.len()
        );
        assert!(out.iter().any(|p| p.1 == 99.0), "the spike survives");
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "time order kept");
        // Small series are drawn as they are.
        assert_eq!(
            downsample(&points[..10], 0, 3_600_000, 240),
            points[..10].to_vec()
        );
    }

    #[test]
    fn the_chart_scales_and_shows_threshold_shading_and_markers() {
        let c = Chart {
            title: "ErrorCount Sum".into(),
            start_ms: 0,
            end_ms: 60_000,
            points: vec![(0, 1.0), (30_000, 20.0), (60_000, 2.0)],
            threshold: Some(10.0),
            shaded: vec![(30_000, 45_000)],
            markers: vec![(10_000, "d-0002".into())],
        }
        .render()
        .into_string();
        assert!(c.contains("viewBox=\"0 0 720 240\""), "{c}");
        assert!(c.contains("<title>ErrorCount Sum</title>"));
        assert!(c.contains("threshold 10"));
        assert!(c.contains("class=\"alarm-shade\""));
        assert!(c.contains(">d-0002</text>"));
        assert!(c.contains("class=\"line\" d=\"M56.0,"));
        let empty = Chart {
            title: "x".into(),
            end_ms: 1,
            ..Chart::default()
        }
        .render()
        .into_string();
        assert!(empty.contains("no data in this window"));
    }
}
