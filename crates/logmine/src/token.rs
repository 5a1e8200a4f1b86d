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

/// The token's shape: each run of ASCII letters and digits that contains a
/// digit, and each `<*>`, becomes one [`MARK`]; everything else is kept.
/// `None` for tokens with no variable part (plain words).
pub(crate) fn shape(tok: &str, digits: bool) -> Option<String> {
    let has_digit = digits && has_digit(tok);
    if !has_digit && !tok.contains(WILDCARD) {
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
            if has_digit && has_digit_str(run) {
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

fn has_digit_str(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
}

pub(crate) fn has_digit(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
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

/// Whether `tok` looks variable (has a digit or a `<*>`).
pub(crate) fn looks_variable(tok: &str, digits: bool) -> bool {
    (digits && has_digit(tok)) || tok.contains(WILDCARD)
}

/// `Some(shape(tok) == v)`, or `None` when `tok` has no shape; streams the
/// comparison instead of building the shape (this is the inner loop).
pub(crate) fn shape_eq(v: &str, tok: &str, digits: bool) -> Option<bool> {
    let has_d = digits && has_digit(tok);
    if !has_d && !tok.contains(WILDCARD) {
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
            if has_d && run.iter().any(u8::is_ascii_digit) {
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
}
