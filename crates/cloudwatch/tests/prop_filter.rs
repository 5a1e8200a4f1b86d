//! Filter patterns are outside input (the catalogue, a user's `--catalog`):
//! whatever the text, parsing and matching end with a value or a clear error,
//! never a panic, and never a stack overflow (issue 13: ~2,000 nested
//! parentheses used to overflow the recursive parser).

use cloudwatch::FilterPattern;
use cloudwatch::filter::{MAX_NESTING, MAX_PATTERN_CHARS};
use proptest::prelude::*;

/// Pieces of real patterns, so generated text gets deep into the grammar.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "{",
        "}",
        "(",
        ")",
        "$",
        ".",
        "$.level",
        "$.a[0]",
        "$.b.c",
        "=",
        "!=",
        ">",
        "<=",
        "\"ERROR\"",
        "ERROR",
        "\"",
        "*",
        "&&",
        "||",
        " ",
        "12",
        "-3.5e2",
        "IS",
        "TRUE",
        "NULL",
        "EXISTS",
        "NOT",
        "?",
        "-",
        "[",
        "]",
        ",",
        "%",
        "\\",
        "é",
    ])
}

fn lines() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just(r#"{"level":"ERROR","a":[1,2],"b":{"c":true}}"#.to_string()),
        Just(r#"{"level":"INFO","msg":"ok"}"#.to_string()),
        "[ -~]{0,80}",
    ]
}

/// Runs `f` on a thread with a small stack: a parser that recursed without
/// bound would overflow it (and abort the test binary).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_parses_or_fails_cleanly(text in any::<String>(), line in lines()) {
        if let Ok(p) = FilterPattern::parse(&text) {
            let _ = p.matches(&line);
        }
    }

    #[test]
    fn pattern_like_text_parses_or_fails_cleanly(parts in prop::collection::vec(piece(), 0..60), line in lines()) {
        let text: String = parts.concat();
        match FilterPattern::parse(&text) {
            Ok(p) => { let _ = p.matches(&line); }
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{e:?} for {text:?}");
            }
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for depth in [MAX_NESTING + 1, 500, 2_000, 100_000] {
        let text = format!(
            "{{ {}$.level = \"ERROR\"{} }}",
            "(".repeat(depth),
            ")".repeat(depth)
        );
        let err = on_small_stack(move || FilterPattern::parse(&text).unwrap_err());
        assert!(
            err.message.contains("nest") || err.message.contains(&MAX_PATTERN_CHARS.to_string()),
            "{depth}: {err:?}"
        );
    }
    // Within the limit, nesting still works and means what it says.
    let text = format!(
        "{{ {}$.level = \"ERROR\"{} }}",
        "(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    let p = on_small_stack(move || FilterPattern::parse(&text).unwrap());
    assert!(p.matches(r#"{"level":"ERROR"}"#));
    assert!(!p.matches(r#"{"level":"INFO"}"#));
}

#[test]
fn overlong_patterns_are_refused_with_cloudwatch_s_limit() {
    let text = format!("{{ $.msg = \"{}\" }}", "x".repeat(MAX_PATTERN_CHARS));
    let err = FilterPattern::parse(&text).unwrap_err();
    assert!(err.message.contains("1024"), "{err:?}");
    let ok = format!("{{ $.msg = \"{}\" }}", "x".repeat(MAX_PATTERN_CHARS - 20));
    assert!(FilterPattern::parse(&ok).is_ok());
}
