//! Property tests for the parts of the miner that take outside input: the
//! line-format parser (`--format`), the split of a line by a format, the
//! miner on arbitrary messages and the whole `logs mine` pipeline on
//! arbitrary bytes. Properties: no panic, and output bounded by the input
//! (templates never longer than what the caps allow, never more clusters
//! than messages).

use logmine::{
    LogFormat, MAX_LINE_BYTES, MAX_TOKENS, Masker, Miner, MinerConfig, Unmatched, mine_to_csv,
};
use proptest::prelude::*;
use std::sync::LazyLock;

/// Compiled once: regex compilation would dominate the run otherwise.
static MASKER: LazyLock<Masker> = LazyLock::new(Masker::with_defaults);

/// Tokens that exercise every class: words (some repeated so clusters form),
/// numbers, masks, calendar words, empty and filled pairs, punctuation,
/// non-ASCII and arbitrary text.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "connection", "from", "user", "at", "stored", "as", "bytes", "values", "open",
            "failed", "Sun", "Jul", "May", "()", "(host.example.org)", "[]", "[x]", "<*>",
            "uid=", "uid=0", "-", ":", "é", "日本",
        ])
        .prop_map(str::to_owned),
        2 => (0u64..100_000).prop_map(|n| n.to_string()),
        1 => "\\PC{0,12}",
        1 => "[a-z]{1,6}[0-9]{0,3}[=:/.]?",
    ]
}

fn message() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(token(), 0..24),
        prop::sample::select(vec![" ", "  ", "\t", " \u{2003}"]),
    )
        .prop_map(|(t, sep)| t.join(sep))
}

fn config() -> impl Strategy<Value = MinerConfig> {
    (
        0.0f64..=1.0,
        3usize..6,
        2usize..8,
        prop::bool::ANY,
        0usize..6,
        0usize..5,
        1u64..3,
    )
        .prop_map(
            |(st, depth, max_children, merge, min_values, split_max, split_min)| MinerConfig {
                similarity_threshold: st,
                depth,
                max_children,
                merge_pass: merge,
                min_variable_values: if min_values == 1 { 0 } else { min_values },
                split_max_values: split_max,
                split_min_count: split_min,
                ..MinerConfig::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_format_string_parses_or_is_rejected(format in "(\\PC|<|>|\\\\|\\[|\\]| ){0,40}") {
        if let Ok(f) = LogFormat::parse(&format) {
            // A format that parses has a <Content> field and splits any line
            // without panicking.
            prop_assert!(f.fields().iter().any(|x| x == "Content"));
            let _ = f.content("2024-01-01 10:00:00 INFO: hello world");
        }
    }

    #[test]
    fn the_date_time_level_format_splits_any_line(
        date in "\\PC{0,12}", time in "\\PC{0,12}", level in "[A-Z]{0,6}", content in "\\PC{0,80}",
        junk in "\\PC{0,80}",
    ) {
        let f = LogFormat::parse("<Date> <Time> <Level>: <Content>").unwrap();
        let line = format!("{date} {time} {level}: {content}");
        if let Some(c) = f.content(line.trim()) {
            prop_assert!(line.contains(c), "{c:?} not in {line:?}");
        }
        if let Some(c) = f.content(&junk) {
            prop_assert!(junk.contains(c));
        }
    }

    #[test]
    fn the_miner_takes_any_messages(msgs in prop::collection::vec(message(), 1..60), cfg in config()) {
        let masker = &*MASKER;
        let mut m = Miner::new(cfg).unwrap();
        let mut lines = Vec::new();
        for msg in &msgs {
            let masked = masker.mask(msg);
            lines.push(m.add_line(&masked));
            let id = m.add(&masked);
            prop_assert!(m.cluster(id).len() <= MAX_TOKENS);
        }
        m.finish();
        prop_assert!(m.len() <= 2 * msgs.len());
        for (l, msg) in lines.iter().zip(&msgs) {
            let c = m.cluster(m.resolve_line(*l));
            prop_assert!(c.len() <= MAX_TOKENS);
            prop_assert!(c.size() >= 1);
            let t = c.template();
            prop_assert!(t.len() <= 4 * msg.len() + 3 * MAX_TOKENS, "{t:?} from {msg:?}");
        }
        // Usable after finish.
        m.add("after finish");
    }

    #[test]
    fn logs_mine_takes_any_bytes(input in prop::collection::vec(any::<u8>(), 0..2000), cfg in config()) {
        let f = LogFormat::parse("<Level> <Content>").unwrap();
        let mut out = Vec::new();
        let s = mine_to_csv(&f, &MASKER, &input[..], &mut out, &cfg, Unmatched::Skip)
            .unwrap();
        prop_assert_eq!(s.rows + s.blank + s.unmatched, s.lines);
        let csv = String::from_utf8(out).unwrap();
        let rows = csv.lines().count() as u64;
        // Header + one row per mined line (a template may hold a quoted newline).
        prop_assert!(rows > s.rows || s.rows == 0);
        prop_assert!(csv.len() <= 64 + (4 * input.len() + 64) * (s.rows as usize + 1));
    }
}

#[test]
fn one_huge_line_is_cut_not_buffered() {
    // 8 MiB in one line: the template stays within the per-line caps.
    let line = "x ".repeat(4 << 20);
    let f = LogFormat::parse("<Content>").unwrap();
    let mut out = Vec::new();
    let s = mine_to_csv(
        &f,
        &Masker::new(),
        line.as_bytes(),
        &mut out,
        &MinerConfig::default(),
        Unmatched::Fail,
    )
    .unwrap();
    assert_eq!((s.lines, s.rows, s.truncated), (1, 1, 1));
    assert!(out.len() < MAX_LINE_BYTES, "{}", out.len());
}
