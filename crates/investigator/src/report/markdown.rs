//! The report as Markdown: every section of the design, evidence ids in
//! brackets so each sentence can be checked against the evidence table.

use std::fmt::Write;

use super::{Report, fmt_duration, fmt_time};

/// Characters the Markdown rendering backslash-escapes in free text.
pub(super) const ESCAPED: &str = "\\*_<>|";

/// Free text for one line or table cell: line breaks become spaces, `|` is
/// escaped everywhere (tables), and outside `code` spans every character of
/// [`ESCAPED`] is backslash-escaped, so log templates such as `<*>` or
/// `GET /a_b_c` render as written instead of as HTML or emphasis. An odd
/// number of backticks opens no code span: they are escaped too.
fn esc(s: &str) -> String {
    let s = s.replace('\n', " ");
    let spans = s.matches('`').count().is_multiple_of(2);
    let mut out = String::with_capacity(s.len() + 8);
    let mut code = false;
    for c in s.chars() {
        match c {
            '`' if spans => {
                code = !code;
                out.push(c);
            }
            '`' => out.push_str("\\`"),
            '|' => out.push_str("\\|"),
            c if !code && ESCAPED.contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Investigation {}: {}\n", r.id, r.alarm.name);
    let _ = writeln!(o, "## Summary\n\n{}\n", esc(&r.summary));
    let _ = writeln!(
        o,
        "Alarm `{}` ({}/{} {} {} {}, period {}, {} evaluation period(s)) went {} → {} at {}. Incident window {} – {}; baseline from {}.\n",
        r.alarm.name,
        r.alarm.namespace,
        r.alarm.metric,
        r.alarm.statistic,
        r.alarm.comparison,
        r.alarm.threshold,
        fmt_duration(r.alarm.period_ms),
        r.alarm.evaluation_periods,
        r.alarm.from,
        r.alarm.to,
        fmt_time(r.alarm.at_ms),
        fmt_time(r.windows.incident.start_ms),
        fmt_time(r.windows.incident.end_ms),
        fmt_time(r.windows.baseline.start_ms),
    );
    let _ = writeln!(o, "## Impact\n\n{}\n", esc(&r.impact.text));
    let _ = writeln!(
        o,
        "## Timeline\n\n| time | kind | event | evidence |\n|---|---|---|---|"
    );
    for t in &r.timeline {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            fmt_time(t.ts_ms),
            t.kind,
            esc(&t.text),
            t.evidence.join(", ")
        );
    }
    let rc = &r.root_cause;
    let _ = writeln!(
        o,
        "\n## Root cause\n\n**{}**{} — confidence {:.2} ({}).\n\n{}\n",
        rc.category,
        rc.entity
            .as_deref()
            .map(|e| format!(" `{e}`"))
            .unwrap_or_default(),
        rc.confidence,
        rc.confidence_label,
        esc(&rc.statement)
    );
    let _ = writeln!(
        o,
        "## Hypotheses\n\n| # | category | entity | score | statement | for | against |\n|---|---|---|---|---|---|---|"
    );
    for h in &r.hypotheses {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.2} ({}) | {} | {} | {} |",
            h.rank,
            h.category,
            esc(h.entity.as_deref().unwrap_or("-")),
            h.score,
            h.confidence_label,
            esc(&h.statement),
            h.evidence_for.join(", "),
            h.evidence_against.join(", ")
        );
    }
    let _ = writeln!(
        o,
        "\n## Evidence\n\n| id | kind | time | finding |\n|---|---|---|---|"
    );
    for e in &r.evidence {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            e.id,
            e.kind,
            e.ts_ms.map(fmt_time).unwrap_or_default(),
            esc(&e.summary)
        );
    }
    let _ = writeln!(o, "\n## Code correlation\n");
    if r.code_correlation.is_empty() {
        let _ = writeln!(
            o,
            "No deployment in the analysis window could be correlated with code."
        );
    }
    for c in &r.code_correlation {
        let _ = writeln!(
            o,
            "### Deployment {} ({} → {})\n",
            c.deployment_id,
            c.from_sha.as_deref().unwrap_or("none"),
            c.to_sha
        );
        if c.commits.is_empty() {
            let _ = writeln!(
                o,
                "No commits between the previous and this revision (a configuration-only deployment).\n"
            );
        } else {
            let _ = writeln!(o, "Commits:\n");
            for cm in &c.commits {
                let _ = writeln!(
                    o,
                    "- `{}` {} ({})",
                    &cm.sha[..cm.sha.len().min(10)],
                    cm.summary,
                    cm.author
                );
            }
            let _ = writeln!(
                o,
                "\nFiles: {}\n",
                c.files
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !c.matches.is_empty() {
            let _ = writeln!(
                o,
                "| where | line | matches | kind | origin | introduced by |\n|---|---|---|---|---|---|"
            );
            for m in &c.matches {
                let _ = writeln!(
                    o,
                    "| {}:{} | `{}` | {} | {} | {} | {} |",
                    m.file,
                    m.line_no,
                    esc(&m.text).replace('`', "'"),
                    esc(&m.needle),
                    m.kind,
                    m.origin,
                    m.commit.as_deref().map(esc).unwrap_or_default()
                );
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(o, "Evidence: {}\n", c.evidence.join(", "));
    }
    cohorts(&mut o, r);
    let _ = writeln!(o, "## Mitigation\n");
    if r.mitigation.is_empty() {
        let _ = writeln!(o, "No action recommended: no cause was established.");
    }
    for m in &r.mitigation {
        let _ = writeln!(
            o,
            "- `{}` — {} (hypothesis {})",
            m.command, m.why, m.hypothesis_rank
        );
    }
    let _ = writeln!(o, "\n## Investigation gaps\n");
    if r.gaps.is_empty() {
        let _ = writeln!(o, "None: every source answered.");
    }
    for g in &r.gaps {
        let _ = writeln!(o, "- **{}**: {}", g.source, g.detail);
    }
    let _ = writeln!(
        o,
        "\n---\n{} log lines, {} metric series, {} task events, {} deployments analysed in {} ms.",
        r.stats.log_lines,
        r.stats.metric_series,
        r.stats.task_events,
        r.stats.deployments,
        r.stats.duration_ms
    );
    o
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.1}{unit}"))
}

/// Old and new tasks of each deployment side by side.
fn cohorts(o: &mut String, r: &Report) {
    let _ = writeln!(o, "## Deployment cohorts\n");
    if r.cohorts.is_empty() {
        let _ = writeln!(
            o,
            "No deployment started tasks in the analysis window: nothing to compare.\n"
        );
        return;
    }
    for c in &r.cohorts {
        let _ = writeln!(
            o,
            "### {}: {}\n\n{} – {}{}; baseline failure rate {:.1}%. Evidence: {}\n",
            c.deployment_id,
            c.verdict_text,
            fmt_time(c.from_ms),
            fmt_time(c.to_ms),
            if c.overlap {
                ", old and new tasks serving side by side"
            } else {
                ", no side-by-side overlap"
            },
            c.baseline_failure_rate * 100.0,
            c.evidence.join(", ")
        );
        let _ = writeln!(
            o,
            "| cohort | tasks | requests | failures | failure rate | CPU | memory slope /period | exits | worst route (requests, failures) |\n|---|---|---|---|---|---|---|---|---|"
        );
        for row in &c.rows {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.1}% | {} | {} | {} | {} |",
                row.cohort,
                esc(&row.tasks.join(", ")),
                row.requests,
                row.failures,
                row.failure_rate * 100.0,
                opt(row.cpu_mean, "%"),
                opt(row.memory_slope_per_period, " pp"),
                row.exits,
                row.routes
                    .first()
                    .map(|(rt, n, f)| format!("{} ({n}, {f})", esc(rt)))
                    .unwrap_or_else(|| "-".into())
            );
        }
        let _ = writeln!(o);
    }
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn free_text_keeps_templates_literal_and_code_spans_as_written() {
        assert_eq!(
            esc("template <*> in `GET /a_<*>` a_b_c *x*\nnext | cell"),
            "template \\<\\*\\> in `GET /a_<*>` a\\_b\\_c \\*x\\* next \\| cell"
        );
        // An odd backtick opens nothing: it is escaped like the rest.
        assert_eq!(esc("it's `odd <x>"), "it's \\`odd \\<x\\>");
        // Pipes are escaped inside code too (GitHub tables split on them).
        assert_eq!(esc("`a|b`"), "`a\\|b`");
    }
}
