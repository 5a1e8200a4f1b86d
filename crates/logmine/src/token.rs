//! Token classes: what in a log token is variable, and the token's *shape*
//! (its constant skeleton with each variable part as one mark), which the
//! miner compares instead of raw text so that `uid=0` and `uid=1000` are one
//! variable while `uid=0` and `gid=0` are not.
//!
//! Kept apart from the tree and the clustering (`miner.rs`) because this is
//! where the miner's notion of "looks variable" lives, and the one place to
//! extend it.

use crate::mask::WILDCARD;

/// Internal marker for a variable part inside a shape (never in log text in
/// practice; rendered as `<*>`).
pub(crate) const MARK: char = '\u{1}';

/// The token's shape: each run of ASCII letters and digits that is variable
/// ([`run_is_var`]), and each `<*>`, becomes one [`MARK`]; everything else is
/// kept.
/// `None` for tokens with no variable part (plain words).
pub(crate) fn shape(tok: &str, digits: bool) -> Option<String> {
    let has_var = digits && has_var_part(tok);
    if !has_var && !has_wildcard(tok) {
        return None;
    }
    let mut out = String::with_capacity(tok.len());
    let b = tok.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let run = &tok[start..i];
            if has_var && run_is_var(run.as_bytes()) {
                push_mark(&mut out);
            } else {
                out.push_str(run);
            }
        } else if tok[i..].starts_with(WILDCARD) {
            push_mark(&mut out);
            i += WILDCARD.len();
        } else {
            let c = tok[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    Some(out)
}

fn push_mark(out: &mut String) {
    if !out.ends_with(MARK) {
        out.push(MARK);
    }
}

/// Whether a run of ASCII letters and digits is a variable by its class: it
/// holds a digit (numbers, ids, hashes), or it is a calendar word (a weekday
/// or month name, as `ctime` and syslog timestamps write them inside
/// messages: `Sun Jul 24`), which varies with time exactly like the digits
/// beside it.
fn run_is_var(run: &[u8]) -> bool {
    run.iter().any(u8::is_ascii_digit) || is_calendar_word(run)
}

/// `Mon`…`Sun`, `Jan`…`Dec` and their full names, capitalised (any case
/// after the first letter), so the verb `may` or a lowercase `mar` is not one.
fn is_calendar_word(run: &[u8]) -> bool {
    const NAMES: [&str; 19] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    if !(3..=9).contains(&run.len()) || !run[0].is_ascii_uppercase() {
        return false;
    }
    NAMES.iter().any(|name| {
        let name = name.as_bytes();
        (run.len() == 3 || run.len() == name.len())
            && name.len() >= run.len()
            && name[..run.len()].eq_ignore_ascii_case(run)
    })
}

/// Whether `tok` has a variable part by class (a digit or a calendar word;
/// see [`run_is_var`]), masks aside.
pub(crate) fn has_var_part(tok: &str) -> bool {
    // Hot: the common answers (a digit; no capital letter) come from plain
    // byte scans; only capitalised tokens are cut into letter runs.
    let b = tok.as_bytes();
    if b.iter().any(u8::is_ascii_digit) {
        return true;
    }
    if !b.iter().any(u8::is_ascii_uppercase) {
        return false;
    }
    b.split(|c| !c.is_ascii_alphabetic()).any(is_calendar_word)
}

/// Mismatch weight, in halves, of token `tok` against a variable of shape
/// `v`: 0 for the same shape, 1 when `tok` also looks variable, else 2.
pub(crate) fn shape_penalty(v: &str, tok: &str, digits: bool) -> usize {
    match shape_eq(v, tok, digits) {
        Some(true) => 0,
        Some(false) => 1,
        None => 2,
    }
}

/// Brackets and quotes whose content is a value: `()`, `[]`, `{}`, `<>`,
/// `''`, `""`.
const PAIRS: [(u8, u8); 6] = [
    (b'(', b')'),
    (b'[', b']'),
    (b'{', b'}'),
    (b'<', b'>'),
    (b'\'', b'\''),
    (b'"', b'"'),
];

/// Whether one of `a`, `b` is an empty pair (`()`) and the other the same
/// pair with something inside (`(host.example.org)`): an empty value is
/// still a value, so the two are one variable, not two constants.
pub(crate) fn empty_vs_filled(a: &str, b: &str) -> bool {
    let (empty, filled) = if a.len() == 2 { (a, b) } else { (b, a) };
    let e = empty.as_bytes();
    e.len() == 2
        && filled.len() > 2
        && PAIRS.contains(&(e[0], e[1]))
        && same_pair(e[0], e[1], filled)
}

/// Whether `tok` is `open … close` (possibly empty inside).
pub(crate) fn same_pair(open: u8, close: u8, tok: &str) -> bool {
    let b = tok.as_bytes();
    b.len() >= 2 && b[0] == open && b[b.len() - 1] == close
}

/// Whether `tok` holds a mask's `<*>` (a byte scan: cheaper than a substring
/// searcher on tokens this short).
pub(crate) fn has_wildcard(tok: &str) -> bool {
    tok.as_bytes().windows(3).any(|w| w == WILDCARD.as_bytes())
}

/// Whether `tok` looks variable (a digit, a calendar word or a `<*>`).
pub(crate) fn looks_variable(tok: &str, digits: bool) -> bool {
    (digits && has_var_part(tok)) || has_wildcard(tok)
}

/// `Some(shape(tok) == v)`, or `None` when `tok` has no shape; streams the
/// comparison instead of building the shape (this is the inner loop).
pub(crate) fn shape_eq(v: &str, tok: &str, digits: bool) -> Option<bool> {
    let has_d = digits && has_var_part(tok);
    if !has_d && !has_wildcard(tok) {
        return None;
    }
    let (vb, b) = (v.as_bytes(), tok.as_bytes());
    let mark = MARK as u8;
    if vb == [mark] {
        // Fast path for the commonest shape, a bare variable.
        return Some(
            tok == WILDCARD
                || (has_d && b.iter().all(u8::is_ascii_alphanumeric))
                || shape(tok, digits).is_some_and(|s| s == v),
        );
    }
    let (mut i, mut j) = (0, 0);
    let mut last_mark = false;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() {
            let start = i;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let run = &b[start..i];
            if has_d && run_is_var(run) {
                if !last_mark {
                    if vb.get(j) != Some(&mark) {
                        return Some(false);
                    }
                    j += 1;
                    last_mark = true;
                }
            } else {
                if !vb[j..].starts_with(run) {
                    return Some(false);
                }
                j += run.len();
                last_mark = false;
            }
        } else if b[i..].starts_with(WILDCARD.as_bytes()) {
            if !last_mark {
                if vb.get(j) != Some(&mark) {
                    return Some(false);
                }
                j += 1;
                last_mark = true;
            }
            i += WILDCARD.len();
        } else {
            if vb.get(j) != Some(&b[i]) {
                return Some(false);
            }
            i += 1;
            j += 1;
            last_mark = false;
        }
    }
    Some(j == vb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(shape("word", true), None);
        assert_eq!(shape("uid=1000", true).unwrap(), format!("uid={MARK}"));
        assert_eq!(shape("<*>:<*>", true).unwrap(), format!("{MARK}:{MARK}"));
        assert_eq!(shape("ab12cd", true).unwrap(), MARK.to_string());
        assert_eq!(shape("x12", false), None);
        for (v, tok) in [
            ("uid=1000", "uid=7"),
            ("a-1.b", "a-22.b"),
            ("<*>", "42"),
            ("é1", "é2"),
        ] {
            let v = shape(v, true).unwrap();
            assert_eq!(shape_eq(&v, tok, true), Some(true), "{v:?} {tok:?}");
        }
        let v = shape("uid=1", true).unwrap();
        assert_eq!(shape_eq(&v, "gid=1", true), Some(false));
        assert_eq!(shape_eq(&v, "gid", true), None);
    }

    #[test]
    fn calendar_words_are_variables() {
        for w in ["Mon", "Sun", "Jul", "MAY", "Wednesday", "September", "Sep,"] {
            assert!(has_var_part(w), "{w}");
        }
        for w in [
            "may", "Mo", "Monitor", "Julius", "Dece", "Marker", "decoded",
        ] {
            assert!(!has_var_part(w), "{w}");
        }
        assert_eq!(shape("Jul", true).unwrap(), MARK.to_string());
        assert_eq!(shape("(Sun)", true).unwrap(), format!("({MARK})"));
        assert_eq!(shape_eq(&MARK.to_string(), "Tue", true), Some(true));
        assert_eq!(shape("Jul", false), None);
    }

    #[test]
    fn an_empty_pair_is_an_empty_value() {
        assert!(empty_vs_filled("()", "(host.example.org)"));
        assert!(empty_vs_filled("[x]", "[]"));
        assert!(empty_vs_filled("''", "'abc'"));
        assert!(!empty_vs_filled("()", "()"));
        assert!(!empty_vs_filled("()", "[x]"));
        assert!(!empty_vs_filled("ab", "(x)"));
        assert!(!empty_vs_filled("()", "(x"));
    }
}
