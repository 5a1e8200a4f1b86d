//! The report as one self-contained HTML page: inline CSS and inline SVG
//! charts (the alarm's metric with its threshold line, deployment markers and
//! the onset; the top error templates over time). No scripts, no external
//! URLs, so it opens from a file or an email attachment.

use std::fmt::Write;

use super::{Point, Report, fmt_time, markdown};

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 760.0;
const H: f64 = 220.0;
const PAD: f64 = 40.0;

const COLORS: [&str; 5] = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"];

struct Scale {
    t0: f64,
    t1: f64,
    v1: f64,
}

impl Scale {
    fn x(&self, t: i64) -> f64 {
        PAD + (t as f64 - self.t0) / (self.t1 - self.t0).max(1.0) * (W - 2.0 * PAD)
    }
    fn y(&self, v: f64) -> f64 {
        H - PAD + -(v / self.v1.max(1e-9)) * (H - 2.0 * PAD)
    }
}

fn polyline(o: &mut String, s: &Scale, pts: &[Point], color: &str) {
    let d: Vec<String> = pts
        .iter()
        .map(|p| format!("{:.1},{:.1}", s.x(p.ts_ms), s.y(p.value)))
        .collect();
    let _ = write!(
        o,
        r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
        d.join(" ")
    );
}

fn axes(o: &mut String, s: &Scale, unit_max: f64) {
    let _ = write!(
        o,
        r##"<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#888"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="#888"/><text x="4" y="{t}" font-size="10">{m}</text><text x="4" y="{b}" font-size="10">0</text><text x="{PAD}" y="{l}" font-size="10">{a}</text><text x="{r}" y="{l}" font-size="10" text-anchor="end">{z}</text>"##,
        b = H - PAD,
        r = W - PAD,
        t = PAD + 4.0,
        l = H - PAD + 14.0,
        m = format_args!("{unit_max:.3}"),
        a = fmt_time(s.t0 as i64),
        z = fmt_time(s.t1 as i64),
    );
}

fn alarm_chart(r: &Report) -> String {
    let c = &r.charts.alarm_metric;
    let t0 = r.windows.analysis.start_ms as f64;
    let t1 = r.windows.analysis.end_ms as f64;
    let vmax = c
        .points
        .iter()
        .map(|p| p.value)
        .fold(c.threshold, f64::max)
        .max(1e-9)
        * 1.1;
    let s = Scale { t0, t1, v1: vmax };
    let mut o = format!(
        r#"<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img"><title>{}</title>"#,
        esc(&c.title)
    );
    axes(&mut o, &s, vmax);
    let ty = s.y(c.threshold);
    let _ = write!(
        o,
        r##"<line x1="{PAD}" y1="{ty:.1}" x2="{}" y2="{ty:.1}" stroke="#d62728" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" font-size="10" fill="#d62728" text-anchor="end">threshold {}</text>"##,
        W - PAD,
        W - PAD,
        ty - 3.0,
        c.threshold
    );
    for d in &c.deployments {
        let x = s.x(d.ts_ms);
        let _ = write!(
            o,
            r##"<line x1="{x:.1}" y1="{PAD}" x2="{x:.1}" y2="{}" stroke="#1f77b4" stroke-dasharray="2 2"/><text x="{:.1}" y="{}" font-size="10" fill="#1f77b4">{}</text>"##,
            H - PAD,
            x + 2.0,
            PAD - 4.0,
            esc(&d.id)
        );
    }
    let ox = s.x(c.onset_ms);
    let _ = write!(
        o,
        r##"<line x1="{ox:.1}" y1="{PAD}" x2="{ox:.1}" y2="{}" stroke="#ff7f0e"/><text x="{:.1}" y="{}" font-size="10" fill="#ff7f0e">onset</text>"##,
        H - PAD,
        ox + 2.0,
        PAD + 10.0
    );
    polyline(&mut o, &s, &c.points, "#2ca02c");
    o.push_str("</svg>");
    o
}

fn template_chart(r: &Report) -> String {
    let c = &r.charts.templates;
    let n = c.series.first().map_or(0, |s| s.counts.len());
    let t0 = c.start_ms as f64;
    let t1 = (c.start_ms + n as i64 * c.bucket_ms) as f64;
    let vmax = c
        .series
        .iter()
        .flat_map(|s| s.counts.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let s = Scale { t0, t1, v1: vmax };
    let mut o = format!(
        r#"<svg width="{W}" height="{}" viewBox="0 0 {W} {}" role="img"><title>Top error/warning log templates per bucket</title>"#,
        H + 16.0 * c.series.len() as f64,
        H + 16.0 * c.series.len() as f64
    );
    axes(&mut o, &s, vmax);
    for (i, ser) in c.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<Point> = ser
            .counts
            .iter()
            .enumerate()
            .map(|(k, v)| Point {
                ts_ms: c.start_ms + k as i64 * c.bucket_ms,
                value: *v as f64,
            })
            .collect();
        polyline(&mut o, &s, &pts, color);
        let _ = write!(
            o,
            r#"<text x="{PAD}" y="{:.1}" font-size="11" fill="{color}">■ {}</text>"#,
            H + 4.0 + 16.0 * i as f64,
            esc(&ser.template)
        );
    }
    o.push_str("</svg>");
    o
}

/// Failure rate of old vs new tasks, one pair of bars per deployment.
fn cohort_chart(r: &Report) -> String {
    let n = r.cohorts.len().max(1) as f64;
    let vmax = r
        .cohorts
        .iter()
        .flat_map(|c| c.rows.iter().map(|x| x.failure_rate))
        .fold(0.01, f64::max)
        * 1.1;
    let mut o = format!(
        r#"<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img"><title>Failure rate of old vs new tasks per deployment</title>"#
    );
    let _ = write!(
        o,
        r##"<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#888"/><text x="4" y="{t}" font-size="10">{m:.1}%</text>"##,
        b = H - PAD,
        r = W - PAD,
        t = PAD + 4.0,
        m = vmax * 100.0
    );
    let slot = (W - 2.0 * PAD) / n;
    for (i, c) in r.cohorts.iter().enumerate() {
        let x0 = PAD + i as f64 * slot;
        for (j, row) in c.rows.iter().enumerate() {
            let h = row.failure_rate / vmax * (H - 2.0 * PAD);
            let color = if row.cohort == "new" {
                "#d62728"
            } else {
                "#1f77b4"
            };
            let x = x0 + slot * (0.15 + 0.35 * j as f64);
            let _ = write!(
                o,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{color}"><title>{d} {k}: {p:.1}%</title></rect><text x="{tx:.1}" y="{ly}" font-size="10" text-anchor="middle">{k} {p:.1}%</text>"#,
                y = H - PAD - h,
                w = slot * 0.3,
                d = esc(&c.deployment_id),
                k = esc(&row.cohort),
                p = row.failure_rate * 100.0,
                tx = x + slot * 0.15,
                ly = H - PAD + 12.0,
            );
        }
        let _ = write!(
            o,
            r#"<text x="{cx:.1}" y="{ly}" font-size="11" text-anchor="middle">{d}: {v}</text>"#,
            cx = x0 + slot / 2.0,
            ly = H - PAD + 26.0,
            d = esc(&c.deployment_id),
            v = esc(&c.verdict_text)
        );
    }
    o.push_str("</svg>");
    o
}

/// Markdown-ish text to HTML: the Markdown rendering is kept as the body's
/// source of truth; tables and headings are converted line by line.
fn md_to_html(md: &str) -> String {
    let mut o = String::new();
    let mut in_table = false;
    let mut in_list = false;
    for line in md.lines() {
        let t = line.trim_end();
        if t.starts_with('|') {
            if t.starts_with("|---") {
                continue;
            }
            if !in_table {
                o.push_str("<table>");
                in_table = true;
            }
            let cells: Vec<&str> = t.trim_matches('|').split(" | ").collect();
            o.push_str("<tr>");
            for c in cells {
                let _ = write!(o, "<td>{}</td>", inline(c.trim()));
            }
            o.push_str("</tr>");
            continue;
        } else if in_table {
            o.push_str("</table>");
            in_table = false;
        }
        if let Some(item) = t.strip_prefix("- ") {
            if !in_list {
                o.push_str("<ul>");
                in_list = true;
            }
            let _ = write!(o, "<li>{}</li>", inline(item));
            continue;
        } else if in_list {
            o.push_str("</ul>");
            in_list = false;
        }
        if let Some(h) = t.strip_prefix("### ") {
            let _ = write!(o, "<h3>{}</h3>", inline(h));
        } else if let Some(h) = t.strip_prefix("## ") {
            let _ = write!(o, "<h2>{}</h2>", inline(h));
        } else if let Some(h) = t.strip_prefix("# ") {
            let _ = write!(o, "<h1>{}</h1>", inline(h));
        } else if t == "---" {
            o.push_str("<hr>");
        } else if !t.is_empty() {
            let _ = write!(o, "<p>{}</p>", inline(t));
        }
    }
    if in_table {
        o.push_str("</table>");
    }
    if in_list {
        o.push_str("</ul>");
    }
    o
}

/// Escapes, then turns `code` and **bold** into tags.
fn inline(s: &str) -> String {
    let e = esc(&s.replace("\\|", "|"));
    let mut out = String::new();
    let mut code = false;
    for (i, part) in e.split('`').enumerate() {
        if i > 0 {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
        }
        out.push_str(part);
    }
    if code {
        out.push_str("</code>");
    }
    let mut res = String::new();
    let mut bold = false;
    for (i, part) in out.split("**").enumerate() {
        if i > 0 {
            res.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
        }
        res.push_str(part);
    }
    if bold {
        res.push_str("</strong>");
    }
    res
}

pub fn render(r: &Report) -> String {
    let body = md_to_html(&markdown::render(r));
    // Charts go right after the summary section.
    let charts = format!(
        "<h2>Charts</h2><figure>{}<figcaption>{}</figcaption></figure><figure>{}<figcaption>Top error/warning log templates per {} ms bucket</figcaption></figure>",
        alarm_chart(r),
        esc(&r.charts.alarm_metric.title),
        template_chart(r),
        r.charts.templates.bucket_ms
    );
    let body = match body.find("<h2>Impact</h2>") {
        Some(i) => format!("{}{}{}", &body[..i], charts, &body[i..]),
        None => format!("{body}{charts}"),
    };
    // The cohort chart heads its section.
    let body = match (
        r.cohorts.is_empty(),
        body.find("<h2>Deployment cohorts</h2>"),
    ) {
        (false, Some(i)) => {
            let at = i + "<h2>Deployment cohorts</h2>".len();
            format!(
                "{}<figure>{}<figcaption>Failure rate of the old (blue) and new (red) tasks of each deployment</figcaption></figure>{}",
                &body[..at],
                cohort_chart(r),
                &body[at..]
            )
        }
        _ => body,
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Investigation {id}: {alarm}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:1em 0;font-size:13px}}td{{border:1px solid #ccc;padding:3px 6px;vertical-align:top}}
tr:first-child td{{font-weight:bold;background:#f4f4f4}}code{{background:#f4f4f4;padding:0 3px}}
figure{{margin:1em 0}}figcaption{{font-size:12px;color:#555}}
</style></head><body>
{body}
</body></html>
"#,
        id = esc(&r.id),
        alarm = esc(&r.alarm.name),
    )
}
