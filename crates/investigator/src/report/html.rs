//! The report as one self-contained HTML page: inline CSS and inline SVG
//! charts (the alarm's metric with its threshold line, deployment markers and
//! the onset; the top error templates over time). No scripts, no external
//! URLs, so it opens from a file or an email attachment.

use std::collections::HashSet;
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

/// Series colours; legend text is drawn in them, so each has at least 4.5:1
/// contrast on white (WCAG AA).
const COLORS: [&str; 5] = ["#b3001e", "#a34400", "#6a3d9a", "#6b4226", "#a0166b"];
const RED: &str = "#b3001e";
const BLUE: &str = "#1f5fa8";
const ORANGE: &str = "#a34400";
const AXIS: &str = "#595959";

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
        r##"<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="{AXIS}"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="{AXIS}"/><text x="4" y="{t}" font-size="10">{m}</text><text x="4" y="{b}" font-size="10">0</text><text x="{PAD}" y="{l}" font-size="10">{a}</text><text x="{r}" y="{l}" font-size="10" text-anchor="end">{z}</text>"##,
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
        r##"<line x1="{PAD}" y1="{ty:.1}" x2="{}" y2="{ty:.1}" stroke="{RED}" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" font-size="10" fill="{RED}" text-anchor="end">threshold {}</text>"##,
        W - PAD,
        W - PAD,
        ty - 3.0,
        c.threshold
    );
    for d in &c.deployments {
        let x = s.x(d.ts_ms);
        let _ = write!(
            o,
            r##"<line x1="{x:.1}" y1="{PAD}" x2="{x:.1}" y2="{}" stroke="{BLUE}" stroke-dasharray="2 2"/><text x="{:.1}" y="{}" font-size="10" fill="{BLUE}">{}</text>"##,
            H - PAD,
            x + 2.0,
            PAD - 4.0,
            esc(&d.id)
        );
    }
    let ox = s.x(c.onset_ms);
    let _ = write!(
        o,
        r##"<line x1="{ox:.1}" y1="{PAD}" x2="{ox:.1}" y2="{}" stroke="{ORANGE}"/><text x="{:.1}" y="{}" font-size="10" fill="{ORANGE}">onset</text>"##,
        H - PAD,
        ox + 2.0,
        PAD + 10.0
    );
    polyline(&mut o, &s, &c.points, "#1d7a34");
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
        r##"<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="{AXIS}"/><text x="4" y="{t}" font-size="10">{m:.1}%</text>"##,
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
            let color = if row.cohort == "new" { RED } else { BLUE };
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
/// source of truth; tables and headings are converted line by line. A table
/// gets its section's heading as caption and its first row as column headers;
/// rows of the evidence table get their id as anchor, and every evidence id
/// cited elsewhere links to its row.
fn md_to_html(md: &str, ids: &HashSet<&str>) -> String {
    let mut o = String::new();
    let mut in_table = false;
    let mut in_list = false;
    let mut heading = String::new();
    let mut evidence_table = false;
    for line in md.lines() {
        let t = line.trim_end();
        if t.starts_with('|') {
            if t.starts_with("|---") {
                continue;
            }
            let cells: Vec<&str> = t.trim_matches('|').split(" | ").collect();
            if !in_table {
                evidence_table = cells.first().is_some_and(|c| c.trim() == "id");
                let _ = write!(
                    o,
                    r#"<div class="table"><table><caption>{}</caption><thead><tr>"#,
                    inline(&heading, ids)
                );
                for c in cells {
                    let _ = write!(o, r#"<th scope="col">{}</th>"#, inline(c.trim(), ids));
                }
                o.push_str("</tr></thead><tbody>");
                in_table = true;
                continue;
            }
            let first = cells.first().map(|c| c.trim()).unwrap_or("");
            if evidence_table && ids.contains(first) {
                let _ = write!(
                    o,
                    r#"<tr id="{}"><th scope="row">{}</th>"#,
                    esc(first),
                    esc(first)
                );
                for c in &cells[1..] {
                    let _ = write!(o, "<td>{}</td>", inline(c.trim(), ids));
                }
                o.push_str("</tr>");
            } else {
                o.push_str("<tr>");
                for c in cells {
                    let _ = write!(o, "<td>{}</td>", inline(c.trim(), ids));
                }
                o.push_str("</tr>");
            }
            continue;
        } else if in_table {
            o.push_str("</tbody></table></div>");
            in_table = false;
        }
        if let Some(item) = t.strip_prefix("- ") {
            if !in_list {
                o.push_str("<ul>");
                in_list = true;
            }
            let _ = write!(o, "<li>{}</li>", inline(item, ids));
            continue;
        } else if in_list {
            o.push_str("</ul>");
            in_list = false;
        }
        if let Some(h) = t.strip_prefix("### ") {
            heading = h.to_string();
            let _ = write!(o, "<h3>{}</h3>", inline(h, ids));
        } else if let Some(h) = t.strip_prefix("## ") {
            heading = h.to_string();
            let _ = write!(o, "<h2>{}</h2>", inline(h, ids));
        } else if let Some(h) = t.strip_prefix("# ") {
            let _ = write!(o, "<h1>{}</h1>", inline(h, ids));
        } else if t == "---" {
            o.push_str("<hr>");
        } else if !t.is_empty() {
            let _ = write!(o, "<p>{}</p>", inline(t, ids));
        }
    }
    if in_table {
        o.push_str("</tbody></table></div>");
    }
    if in_list {
        o.push_str("</ul>");
    }
    o
}

/// Evidence ids (`E12`) standing alone in escaped text become links to their rows.
fn link_ids(text: &str, ids: &HashSet<&str>) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let starts_word =
            i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'#' || b[i - 1] == b'-');
        if b[i] == b'E' && starts_word {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let ends_word =
                j == b.len() || !(b[j].is_ascii_alphanumeric() || b[j] == b'-' || b[j] == b'_');
            if j > i + 1 && ends_word && ids.contains(&text[i..j]) {
                let _ = write!(out, r##"<a href="#{id}">{id}</a>"##, id = &text[i..j]);
                i = j;
                continue;
            }
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Outside code, a backslash before Markdown punctuation (how the Markdown
/// rendering keeps `<*>` or `_x_` literal) is dropped.
fn unescape_md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match chars.peek() {
            Some(&n) if c == '\\' && markdown::ESCAPED.contains(n) => {
                out.push(n);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Escapes, then turns `code` and **bold** into tags and evidence ids into links.
fn inline(s: &str, ids: &HashSet<&str>) -> String {
    let s = s.replace("\\|", "|");
    let mut out = String::new();
    let mut code = false;
    for (i, part) in s.split('`').enumerate() {
        if i > 0 {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
        }
        if code {
            out.push_str(&esc(part));
        } else {
            out.push_str(&link_ids(&esc(&unescape_md(part)), ids));
        }
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
    let ids: HashSet<&str> = r.evidence.iter().map(|e| e.id.as_str()).collect();
    let body = md_to_html(&markdown::render(r), &ids);
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
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Investigation {id}: {alarm}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
div.table{{overflow-x:auto}}table{{border-collapse:collapse;margin:1em 0;font-size:13px}}
th,td{{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}}thead th{{background:#f4f4f4}}tbody th{{font-weight:normal}}
caption{{text-align:left;font-weight:bold;padding:2px 0}}code{{background:#f4f4f4;padding:0 3px;overflow-wrap:anywhere}}
tr:target{{background:#fff3bf}}a{{color:#0b4f8a}}
figure{{margin:1em 0}}figcaption{{font-size:12px;color:#555}}svg{{max-width:100%;height:auto}}
</style></head><body>
{body}
</body></html>
"#,
        id = esc(&r.id),
        alarm = esc(&r.alarm.name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_get_captions_and_header_cells_and_evidence_ids_link_to_their_rows() {
        let md = "## Evidence\n\n| id | kind | finding |\n|---|---|---|\n| E1 | log | new template `GET <*>` |\n| E2 | metric | x \\<\\*\\> a\\_b\\_c |\n\n## Root cause\n\nA fault [E1, E2, E9] (not E10x).\n";
        let ids: HashSet<&str> = ["E1", "E2"].into_iter().collect();
        let h = md_to_html(md, &ids);
        assert!(h.contains("<caption>Evidence</caption>"), "{h}");
        assert!(
            h.contains(r#"<thead><tr><th scope="col">id</th><th scope="col">kind</th>"#),
            "{h}"
        );
        assert!(h.contains(r#"<tr id="E1"><th scope="row">E1</th>"#), "{h}");
        assert!(
            h.contains(r##"[<a href="#E1">E1</a>, <a href="#E2">E2</a>, E9]"##),
            "{h}"
        );
        assert!(
            !h.contains("E10x</a>") && !h.contains(r##"href="#E9""##),
            "{h}"
        );
        // Templates stay literal: escaped in text, untouched in code.
        assert!(h.contains("<code>GET &lt;*&gt;</code>"), "{h}");
        assert!(h.contains("x &lt;*&gt; a_b_c"), "{h}");
        assert!(!h.contains("<*>"), "{h}");
    }

    #[test]
    fn chart_text_colours_have_enough_contrast_on_white() {
        fn luminance(hex: &str) -> f64 {
            let c = |i: usize| {
                let v = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
                if v <= 0.03928 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * c(1) + 0.7152 * c(3) + 0.0722 * c(5)
        }
        for colour in COLORS.iter().chain(&[RED, BLUE, ORANGE, AXIS]) {
            let ratio = 1.05 / (luminance(colour) + 0.05);
            assert!(ratio >= 4.5, "{colour}: {ratio:.2}:1");
        }
    }
}
