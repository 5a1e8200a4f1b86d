//! One investigation, from an alarm transition to a [`Report`], over any
//! [`Sources`]: frames the time windows from the alarm's reason data (its
//! period is already time-scaled), runs the analyzers, and hands their
//! findings to the [`crate::hypothesis`] ranking. Source failures become
//! gaps; nothing here panics on missing data.

use cloudwatch::{ReasonData, Sample, period_statistics, scaled_period_ms};
use demo_model::events::{AlarmTransition, SERVICE_DIMENSION, Window, ns};
use demo_model::{Catalog, Comparison, Statistic};

use crate::analyze::cohorts::{self, Cohort, CohortInput};
use crate::analyze::deploys::{self, DeployCorrelation, Implicated};
use crate::analyze::logs::{self, LogAnalysis};
use crate::analyze::metrics::{self, MetricAnalysis};
use crate::analyze::routes::{self, RouteStat};
use crate::analyze::series::Grid;
use crate::analyze::tasks::{self, TaskAnalysis};
use crate::hypothesis;
use crate::report::{
    AlarmChart, AlarmInfo, Charts, Gap, Marker, Point, Report, SCHEMA_VERSION, Span, Stats,
    TemplateChart, TemplateSeries, Windows,
};
use crate::sources::{SeriesKey, Sources};

/// Buckets on the analysis grid; with a bucket of half a period this is 60
/// alarm periods (an hour for the real 60 s periods).
pub const GRID_BUCKETS: usize = 120;

/// Everything the analyzers found, for the ranking and the report.
pub struct Findings {
    pub alarm_name: String,
    pub alarm_key: Option<SeriesKey>,
    pub comparison: Comparison,
    pub threshold: f64,
    pub statistic: Statistic,
    pub period_ms: i64,
    pub evaluation_periods: u32,
    pub alarm_at: i64,
    pub grid: Grid,
    pub base_from: usize,
    pub split: usize,
    pub onset_ms: i64,
    pub baseline: Window,
    pub incident: Window,
    pub metrics: MetricAnalysis,
    pub logs: Option<LogAnalysis>,
    pub tasks: TaskAnalysis,
    pub routes: Vec<RouteStat>,
    pub deploys: Vec<DeployCorrelation>,
    /// Old vs new tasks of each deployment that started tasks.
    pub cohorts: Vec<Cohort>,
    pub desired_count: u32,
    pub health_path: String,
    pub error_namespace: String,
    pub gaps: Vec<Gap>,
}

fn gap(gaps: &mut Vec<Gap>, source: &str, detail: impl Into<String>) {
    gaps.push(Gap {
        source: source.to_owned(),
        detail: detail.into(),
    });
}

/// Runs every analyzer for transition `t` and ranks the hypotheses.
pub fn investigate(
    sources: &Sources<'_>,
    catalog: &Catalog,
    time_scale: f64,
    t: &AlarmTransition,
    id: &str,
    created_ms: i64,
) -> Report {
    let started = std::time::Instant::now();
    let mut gaps = Vec::new();
    let alarm = catalog.alarm(&t.alarm);
    if alarm.is_none() {
        gap(
            &mut gaps,
            "catalogue",
            format!(
                "alarm {} is not in the catalogue: its metric is unknown",
                t.alarm
            ),
        );
    }
    let reason: Option<ReasonData> = match serde_json::from_value(t.reason_data.clone()) {
        Ok(r) => Some(r),
        Err(e) => {
            gap(
                &mut gaps,
                "alarm transition",
                format!(
                    "reason_data is not CloudWatch reason data ({e}); period and threshold taken from the catalogue"
                ),
            );
            None
        }
    };
    let period_ms = reason
        .as_ref()
        .map(|r| r.period_ms)
        .filter(|p| *p > 0)
        .or_else(|| alarm.map(|a| scaled_period_ms(a.period_seconds, time_scale)))
        .unwrap_or_else(|| scaled_period_ms(60, time_scale));
    let evaluation_periods = reason
        .as_ref()
        .map(|r| r.evaluation_periods)
        .or(alarm.map(|a| a.evaluation_periods))
        .unwrap_or(1)
        .max(1);
    let threshold = reason
        .as_ref()
        .map(|r| r.threshold)
        .or(alarm.map(|a| a.threshold))
        .unwrap_or(f64::NAN);
    let comparison = reason
        .as_ref()
        .map(|r| r.comparison)
        .or(alarm.map(|a| a.comparison))
        .unwrap_or(Comparison::GreaterThanThreshold);
    let statistic = reason
        .as_ref()
        .map(|r| r.statistic)
        .or(alarm.map(|a| a.statistic))
        .unwrap_or(Statistic::Average);
    let alarm_key = alarm.map(|a| SeriesKey::new(&a.namespace, &a.metric_name, SERVICE_DIMENSION));
    let error_namespace = catalog
        .metric_filters
        .first()
        .map_or("DevOpsAgentDemo".to_owned(), |f| f.metric_namespace.clone());

    let bucket_ms = (period_ms / 2).max(1);
    let grid = Grid {
        start_ms: t.at_ms - GRID_BUCKETS as i64 * bucket_ms,
        bucket_ms,
        len: GRID_BUCKETS,
    };

    // Metrics first: their change points frame the windows. The grid's log
    // lines are read meanwhile, on other threads; they are tallied once the
    // windows are known (both start on bucket boundaries).
    let no_key = SeriesKey::new("", "", "");
    let (metrics, log_lines) = std::thread::scope(|scope| {
        let reading = logs::Reading::start(scope, sources.logs, grid);
        let metrics = metrics::analyze(
            sources.metrics,
            grid,
            period_ms,
            &error_namespace,
            alarm_key.as_ref().unwrap_or(&no_key),
        );
        (metrics, reading.finish(sources.logs))
    });
    let metrics = match metrics {
        Ok(m) => m,
        Err(e) => {
            gap(&mut gaps, sources.metrics.name(), e.to_string());
            MetricAnalysis {
                grid,
                data_start: None,
                series: Default::default(),
                alarm_samples: Vec::new(),
            }
        }
    };
    if metrics.series.is_empty() {
        gap(
            &mut gaps,
            sources.metrics.name(),
            "no metric samples in the analysis window",
        );
    }
    let base_from = metrics.data_start.unwrap_or(0);
    let onset_idx = onset(&metrics, alarm_key.as_ref(), comparison, &error_namespace)
        .unwrap_or_else(|| {
            let back = ((evaluation_periods as i64 + 1) * period_ms / bucket_ms) as usize;
            GRID_BUCKETS.saturating_sub(back)
        });
    let min_incident = ((period_ms / bucket_ms) as usize).max(2);
    let split = onset_idx
        .max(base_from + 3)
        .min(GRID_BUCKETS - min_incident);
    let onset_ms = grid.time(onset_idx.min(GRID_BUCKETS - 1));
    let baseline = Window::new(grid.time(base_from.min(split)), grid.time(split));
    let incident = Window::new(grid.time(split), t.at_ms);
    if split < base_from + 3 || baseline.duration_ms() < 3 * bucket_ms {
        gap(
            &mut gaps,
            "baseline",
            format!(
                "only {} of data before the incident: new/surged comparisons are weak",
                crate::report::fmt_duration(baseline.duration_ms())
            ),
        );
    }

    let logs = match log_lines {
        Ok(read) => {
            let mut l = read.analyze(base_from, split, &catalog.health_check.path);
            // Example traces for the error templates the report cites (the same
            // top 8 as the evidence), so a reader can follow one request end to end.
            for t in l
                .templates
                .iter_mut()
                .filter(|t| t.surged && t.error_like)
                .take(8)
            {
                match sources.logs.trace_ids(incident, &t.example, 3) {
                    Ok(ids) => t.trace_ids = ids,
                    Err(e) => gap(&mut gaps, sources.logs.name(), e.to_string()),
                }
            }
            if l.lines == 0 {
                gap(
                    &mut gaps,
                    sources.logs.name(),
                    "no log lines in the analysis window",
                );
            }
            Some(l)
        }
        Err(e) => {
            gap(&mut gaps, sources.logs.name(), e.to_string());
            None
        }
    };
    let range = Window::new(grid.start_ms, t.at_ms);
    let task_events = match sources.tasks.task_events(range) {
        Ok(ev) => ev,
        Err(e) => {
            gap(&mut gaps, sources.tasks.name(), e.to_string());
            Vec::new()
        }
    };
    let tasks = tasks::analyze(&task_events);
    let routes = routes::analyze(
        &metrics,
        logs.as_ref(),
        base_from,
        split,
        baseline.duration_ms() as f64 / 1000.0,
        incident.duration_ms() as f64 / 1000.0,
    );

    // What the incident implicates, to look for in deployments.
    let mut implicated = Implicated::default();
    if let Some(l) = &logs {
        for tpl in l.surged().filter(|t| t.error_like).take(8) {
            implicated.templates.push(tpl.template.clone());
            for p in &tpl.phrases {
                implicated.phrases.push((p.clone(), tpl.template.clone()));
            }
        }
    }
    for r in routes
        .iter()
        .filter(|r| r.error_share >= 0.2 || crate::rules::slow_dependency::slowed(r))
        .take(3)
    {
        implicated.routes.push(r.route.clone());
    }
    let candidates = match sources.deployments.deployments(range) {
        Ok(d) => d,
        Err(e) => {
            gap(&mut gaps, sources.deployments.name(), e.to_string());
            Vec::new()
        }
    };
    if sources.code.is_none() && !candidates.is_empty() {
        gap(
            &mut gaps,
            "code",
            "no repository configured: deployments could not be correlated with commits and diffs",
        );
    }
    let n_deploys = candidates.len();
    let deploys = deploys::analyze(
        sources.deployments,
        sources.code,
        candidates,
        onset_ms,
        t.at_ms,
        period_ms,
        &implicated,
        &tasks,
        incident.start_ms,
    );
    for d in &deploys {
        for g in &d.gaps {
            gap(&mut gaps, "code", g.clone());
        }
    }

    let deployed: Vec<_> = deploys.iter().map(|d| d.deployment.clone()).collect();
    let cohorts = cohorts::analyze(&CohortInput {
        grid,
        base_from,
        split,
        onset: onset_idx.min(GRID_BUCKETS - 1),
        per_period: ((period_ms / bucket_ms) as usize).max(1),
        logs: logs.as_ref(),
        tasks: &tasks,
        metrics: &metrics,
        deployments: &deployed,
    });

    let findings = Findings {
        alarm_name: t.alarm.clone(),
        alarm_key: alarm_key.clone(),
        comparison,
        threshold,
        statistic,
        period_ms,
        evaluation_periods,
        alarm_at: t.at_ms,
        grid,
        base_from,
        split,
        onset_ms,
        baseline,
        incident,
        metrics,
        logs,
        tasks,
        routes,
        deploys,
        cohorts,
        desired_count: catalog.service.desired_count,
        health_path: catalog.health_check.path.clone(),
        error_namespace,
        gaps,
    };
    let ranked = hypothesis::rank(&findings);

    let evaluated = reason
        .as_ref()
        .map(|r| {
            r.evaluated_datapoints
                .iter()
                .filter_map(|d| {
                    d.value.map(|v| Point {
                        ts_ms: d.timestamp_ms,
                        value: v,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let key = alarm_key.unwrap_or(no_key);
    let samples: Vec<Sample> = findings
        .metrics
        .alarm_samples
        .iter()
        .map(|s| Sample::with_count(s.ts_ms, s.value, s.count))
        .collect();
    let points = period_statistics(&samples, statistic, period_ms, grid.start_ms, t.at_ms + 1)
        .into_iter()
        .map(|d| Point {
            ts_ms: d.timestamp_ms,
            value: d.value,
        })
        .collect();
    let templates = findings
        .logs
        .as_ref()
        .map(|l| {
            let mut top: Vec<_> = l.templates.iter().filter(|t| t.error_like).collect();
            top.sort_by(|a, b| {
                b.surged
                    .cmp(&a.surged)
                    .then(b.incident_count.cmp(&a.incident_count))
            });
            top.into_iter()
                .take(5)
                .map(|t| TemplateSeries {
                    template: t.template.clone(),
                    counts: t.buckets.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let markers: Vec<Marker> = findings
        .deploys
        .iter()
        .map(|d| Marker {
            id: d.deployment.id.clone(),
            ts_ms: d.deployment.started_ms,
        })
        .collect();
    let stats = Stats {
        log_lines: findings.logs.as_ref().map_or(0, |l| l.lines),
        metric_series: findings.metrics.series.len(),
        task_events: findings.tasks.events,
        deployments: n_deploys,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    let mut gaps = findings.gaps.clone();
    gaps.extend(ranked.extra_gaps);
    Report {
        schema_version: SCHEMA_VERSION,
        id: id.to_owned(),
        created_ms,
        alarm: AlarmInfo {
            name: t.alarm.clone(),
            transition_id: t.id,
            from: t.from.clone(),
            to: t.to.clone(),
            at_ms: t.at_ms,
            reason: t.reason.clone(),
            namespace: key.namespace.clone(),
            metric: key.name.clone(),
            dimension: key.dimension.clone(),
            statistic: statistic.to_string(),
            comparison: comparison.symbol().to_owned(),
            threshold: if threshold.is_finite() {
                threshold
            } else {
                0.0
            },
            period_ms,
            evaluation_periods,
            evaluated,
        },
        windows: Windows {
            analysis: Span {
                start_ms: grid.start_ms,
                end_ms: t.at_ms,
            },
            baseline: Span {
                start_ms: findings.baseline.start_ms,
                end_ms: findings.baseline.end_ms,
            },
            incident: Span {
                start_ms: findings.incident.start_ms,
                end_ms: findings.incident.end_ms,
            },
            onset_ms,
        },
        summary: ranked.summary,
        impact: ranked.impact,
        timeline: ranked.timeline,
        root_cause: ranked.root_cause,
        hypotheses: ranked.hypotheses,
        evidence: ranked.evidence,
        code_correlation: ranked.code_correlation,
        cohorts: ranked.cohorts,
        mitigation: ranked.mitigation,
        gaps,
        charts: Charts {
            alarm_metric: AlarmChart {
                title: format!(
                    "{} {} ({}) with threshold {}",
                    key.namespace, key.name, statistic, threshold
                ),
                points,
                threshold: if threshold.is_finite() {
                    threshold
                } else {
                    0.0
                },
                deployments: markers,
                onset_ms,
            },
            templates: TemplateChart {
                start_ms: grid.start_ms,
                bucket_ms: grid.bucket_ms,
                series: templates,
            },
        },
        stats,
    }
}

/// The incident onset bucket: the alarm metric's own change point when it
/// moved in the breaching direction, else the earliest significant adverse
/// change among the service's key series in the last third of the range.
fn onset(
    m: &MetricAnalysis,
    alarm_key: Option<&SeriesKey>,
    comparison: Comparison,
    error_namespace: &str,
) -> Option<usize> {
    let up = matches!(
        comparison,
        Comparison::GreaterThanThreshold | Comparison::GreaterThanOrEqualToThreshold
    );
    if let Some(c) = alarm_key
        .and_then(|k| m.series.get(k))
        .and_then(|s| s.changed(up))
    {
        return Some(c.onset);
    }
    let adverse: [(&str, &str, bool); 8] = [
        (ns::ALB, "HTTPCode_Target_5XX_Count", true),
        (ns::ALB, "HTTPCode_ELB_5XX_Count", true),
        (error_namespace, "ErrorCount", true),
        (ns::ALB, "TargetResponseTime", true),
        (ns::ECS, "CPUUtilization", true),
        (ns::ECS, "MemoryUtilization", true),
        (ns::ALB, "UnHealthyHostCount", true),
        (ns::ECS, "RunningTaskCount", false),
    ];
    adverse
        .iter()
        .filter_map(|(n, name, up)| m.get(n, name, SERVICE_DIMENSION)?.changed(*up))
        .map(|c| c.onset)
        .filter(|&o| o >= GRID_BUCKETS * 2 / 3)
        .min()
}
