//! The investigator's whole-window reads (`Reader::scan_logs_unordered`,
//! `Reader::window_samples`) return exactly what the ordered per-row and
//! per-series reads return, when rows were stored out of time order and at
//! the window's edges.

use demo_model::events::{LogRecord, MetricSample, Stream, Window};
use demo_store::Store;

/// Times stored in an order that is not time order: a late batch of old
/// lines, lines on both edges of the window and just outside it.
const TIMES: [i64; 12] = [5, 10, 11, 59, 60, 30, 9, 10, 61, 20, 59, 10];

fn line(i: usize) -> String {
    match i % 3 {
        0 => format!(
            r#"{{"level":"INFO","message":"m{}","route":"/r","status":200}}"#,
            i % 2
        ),
        1 => format!(r#"{{"level":"ERROR","message":"boom","task":"{i}"}}"#),
        _ => format!("plain text {i}"),
    }
}

#[test]
fn unordered_scan_visits_the_same_rows_as_the_ordered_scan_with_their_order_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    for (i, ts) in TIMES.iter().enumerate() {
        let task = if i % 2 == 0 { "a" } else { "b" };
        w.log(LogRecord::from_line(*ts, task, Stream::Stdout, line(i)));
    }
    w.flush();
    let r = store.reader().unwrap();
    let window = Window::new(10, 60);
    type Row = (
        i64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<u16>,
        Option<String>,
    );
    let own = |row: demo_store::LogRow<'_>| -> Row {
        (
            row.ts_ms,
            row.task_id.to_owned(),
            row.level.map(str::to_owned),
            row.message.map(str::to_owned),
            row.route.map(str::to_owned),
            row.status,
            row.line.map(str::to_owned),
        )
    };
    let mut ordered = Vec::new();
    let n = r.scan_logs(window, |row| ordered.push(own(row))).unwrap();
    let mut unordered = Vec::new();
    let m = r
        .scan_logs_unordered(window, |id, row| unordered.push((row.ts_ms, id, own(row))))
        .unwrap();
    assert_eq!(n, 8, "10, 11, 59, 30, 10, 20, 59, 10 are in [10, 60)");
    assert_eq!(m, n);
    // Visited in stored order, which here is not time order.
    assert!(unordered.windows(2).any(|p| p[0].0 > p[1].0));
    // Sorted by (ts, id), the rows are the ordered scan's, one for one.
    unordered.sort_by_key(|(ts, id, _)| (*ts, *id));
    let sorted: Vec<Row> = unordered.into_iter().map(|(_, _, row)| row).collect();
    assert_eq!(sorted, ordered);
    // Split in two id ranges read by two readers, the same rows again.
    let (lo, hi) = r.log_id_range(window).unwrap().unwrap();
    let mid = (lo + hi) / 2;
    let other = demo_store::Reader::open(r.path()).unwrap();
    let mut halves = Vec::new();
    r.scan_logs_ids(window, (lo, mid), |id, row| {
        halves.push((row.ts_ms, id, own(row)))
    })
    .unwrap();
    other
        .scan_logs_ids(window, (mid + 1, hi), |id, row| {
            halves.push((row.ts_ms, id, own(row)))
        })
        .unwrap();
    halves.sort_by_key(|(ts, id, _)| (*ts, *id));
    let halves: Vec<Row> = halves.into_iter().map(|(_, _, row)| row).collect();
    assert_eq!(halves, ordered);
    assert_eq!(r.log_id_range(Window::new(100, 200)).unwrap(), None);
    // An empty window visits nothing.
    assert_eq!(
        r.scan_logs_unordered(Window::new(100, 200), |_, _| panic!("no row"))
            .unwrap(),
        0
    );
}

#[test]
fn window_samples_are_the_series_and_their_samples() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    for (i, ts) in TIMES.iter().enumerate() {
        for (ns, name, dim) in [
            ("AWS/ECS", "CPUUtilization", "svc"),
            ("AWS/ECS", "CPUUtilization", "task-1"),
            ("App", "RequestCount", "route=/r,status=200"),
        ] {
            // Two samples with the same time in one series keep their stored order.
            for k in 0..(1 + i % 2) {
                w.metric(MetricSample {
                    count: 1.0 + k as f64,
                    ..MetricSample::new(*ts, ns, name, dim, i as f64)
                });
            }
        }
        if i == 3 {
            w.metric(MetricSample::new(
                *ts,
                "AWS/ApplicationELB",
                "RequestCount",
                "svc",
                1.0,
            ));
        }
    }
    w.flush();
    let r = store.reader().unwrap();
    let window = Window::new(10, 60);
    let mut expected = Vec::new();
    for (ns, name, dim) in r.series(window).unwrap() {
        expected.push(r.samples(&ns, &name, &dim, window).unwrap());
    }
    assert_eq!(expected.len(), 4);
    assert_eq!(r.window_samples(window).unwrap(), expected);
    assert!(r.window_samples(Window::new(100, 200)).unwrap().is_empty());
}

/// The walk that predicts each series from the one before it gives the
/// per-series reads' samples when the order of series changes from tick to
/// tick, and a filter leaves out whole series and nothing else.
#[test]
fn window_samples_where_keeps_the_wanted_series_whatever_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let w = store.writer();
    let series: Vec<(String, String, String)> = (0..7)
        .map(|i| {
            (
                if i % 3 == 0 { "App" } else { "AWS/ECS" }.to_string(),
                format!("m{}", i % 2),
                format!("d{i}"),
            )
        })
        .collect();
    for tick in 0..60i64 {
        // Mostly the same order, sometimes rotated, sometimes one missing.
        let rot = if tick % 7 == 3 { tick as usize } else { 0 };
        for k in 0..series.len() {
            let (ns, name, dim) = &series[(k + rot) % series.len()];
            if tick % 5 == 1 && k == 2 {
                continue;
            }
            w.metric(MetricSample::new(
                tick,
                ns,
                name,
                dim,
                (tick * 10 + k as i64) as f64,
            ));
        }
    }
    w.flush();
    let r = store.reader().unwrap();
    let window = Window::new(5, 50);
    let all = r.window_samples(window).unwrap();
    let mut expected = Vec::new();
    for (ns, name, dim) in r.series(window).unwrap() {
        expected.push(r.samples(&ns, &name, &dim, window).unwrap());
    }
    assert_eq!(all.len(), 7);
    assert_eq!(all, expected);
    let keep = |ns: &str, name: &str, dim: &str| ns == "AWS/ECS" && (name == "m1" || dim == "d2");
    let kept = r.window_samples_where(window, &keep).unwrap();
    let want: Vec<_> = all
        .into_iter()
        .filter(|s| keep(&s[0].namespace, &s[0].name, &s[0].dimension))
        .collect();
    assert_eq!(want.len(), 3, "d1, d2 and d5");
    assert_eq!(kept, want);
}
