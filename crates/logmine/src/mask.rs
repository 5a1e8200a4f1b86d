//! Masking: regex rules applied to the message before it is tokenised, so that
//! obvious variables (numbers, addresses, ids…) never reach the miner as
//! constants.
//!
//! A [`Masker`] is an ordered list of [`MaskRule`]s. Each rule replaces every
//! match of its pattern with its replacement (`<*>` by default); later rules
//! see the output of earlier ones, which is exactly how the loghub benchmark
//! applies its per-dataset regexes (`re.sub(rx, '<*>', content)` in order).
//! The built-in defaults ([`Masker::default_rules`]) are ordinary rules too, so
//! defaults, user `--mask` arguments and the benchmark's masks all go through
//! one mechanism.

use std::borrow::Cow;
use std::fmt;

use regex::Regex;

/// The wildcard the miner uses for a variable position.
pub const WILDCARD: &str = "<*>";

/// One masking rule: every match of `pattern` becomes `replacement`.
#[derive(Debug, Clone)]
pub struct MaskRule {
    name: String,
    regex: Regex,
    replacement: String,
}

/// A pattern that does not compile.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("mask #{index} ({pattern:?}) is not a valid regex: {message}")]
pub struct MaskError {
    /// Position of the rule in the list given (1-based, as a user counts `--mask` flags).
    pub index: usize,
    /// The pattern as given.
    pub pattern: String,
    /// The regex engine's explanation.
    pub message: String,
}

/// Every invalid pattern of a list, reported together.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub struct MaskErrors(pub Vec<MaskError>);

impl fmt::Display for MaskErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl MaskRule {
    /// A rule named `name` replacing matches of `pattern` (regex crate syntax,
    /// Unicode-aware like Python's `re`) with `replacement`, taken literally.
    ///
    /// # Errors
    /// [`MaskError`] (with index 1) if the pattern does not compile.
    pub fn new(name: &str, pattern: &str, replacement: &str) -> Result<Self, MaskError> {
        let regex = Regex::new(pattern).map_err(|e| MaskError {
            index: 1,
            pattern: pattern.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            name: name.to_owned(),
            regex,
            replacement: replacement.to_owned(),
        })
    }

    /// A rule replacing matches of `pattern` with `<*>`, named after the pattern.
    ///
    /// # Errors
    /// [`MaskError`] if the pattern does not compile.
    pub fn wildcard(pattern: &str) -> Result<Self, MaskError> {
        Self::new(pattern, pattern, WILDCARD)
    }

    /// The rule's name (the pattern itself for user rules).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pattern.
    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }

    /// The replacement text.
    pub fn replacement(&self) -> &str {
        &self.replacement
    }
}

/// The built-in rules as `(name, pattern)`; all replace with `<*>`. Order
/// matters: the more specific shapes go first so that, for example, an IP
/// address is one `<*>` rather than four. ASCII classes are used on purpose:
/// they are what these shapes are made of, and they keep the scan fast.
pub const DEFAULT_RULES: &[(&str, &str)] = &[
    (
        "uuid",
        r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
    ),
    ("ipv4", r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?::[0-9]{1,5})?\b"),
    ("path", r"(?:\B|\b[A-Za-z]:)(?:/[\w.\-@~%+]+){2,}/?"),
    ("id", r"\b[A-Za-z]+[_\-]-?[0-9][\w\-]*"),
    (
        "hex",
        r"\b0[xX][0-9a-fA-F]+\b|\b[0-9a-f]{8,}\b|\b[0-9A-F]{8,}\b",
    ),
    (
        "number",
        r"\b[0-9]+(?:\.[0-9]+)?(?:ms|us|ns|s|m|h|d|[KMGT]i?B|B)?\b",
    ),
];

/// Reusable scratch space for [`Masker::mask_buf`].
#[derive(Debug, Default)]
pub struct MaskBuf {
    cur: String,
    next: String,
}

/// An ordered list of [`MaskRule`]s.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    rules: Vec<MaskRule>,
}

impl Masker {
    /// A masker with no rules: messages pass through unchanged.
    pub fn new() -> Self {
        Self::default()
    }

    /// A masker with the built-in rules ([`DEFAULT_RULES`]).
    pub fn with_defaults() -> Self {
        Self {
            rules: Self::default_rules(),
        }
    }

    /// The built-in rules: UUIDs, IPv4 addresses (with port), hex numbers and
    /// long hex ids, file paths, `word_123`-style ids, and numbers.
    pub fn default_rules() -> Vec<MaskRule> {
        DEFAULT_RULES
            .iter()
            .map(|(name, pattern)| {
                MaskRule::new(name, pattern, WILDCARD).expect("built-in mask patterns compile")
            })
            .collect()
    }

    /// A masker replacing matches of each pattern, in order, with `<*>`
    /// (the loghub benchmark's `regex` lists, or repeated `--mask` flags).
    ///
    /// # Errors
    /// Every pattern that does not compile, with its 1-based position.
    pub fn from_patterns<I, S>(patterns: I) -> Result<Self, MaskErrors>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (i, p) in patterns.into_iter().enumerate() {
            match MaskRule::wildcard(p.as_ref()) {
                Ok(rule) => rules.push(rule),
                Err(e) => errors.push(MaskError { index: i + 1, ..e }),
            }
        }
        if errors.is_empty() {
            Ok(Self { rules })
        } else {
            Err(MaskErrors(errors))
        }
    }

    /// Appends a rule (applied after the existing ones).
    pub fn push(&mut self, rule: MaskRule) {
        self.rules.push(rule);
    }

    /// Appends the built-in rules.
    pub fn extend_with_defaults(&mut self) {
        self.rules.extend(Self::default_rules());
    }

    /// The rules, in application order.
    pub fn rules(&self) -> &[MaskRule] {
        &self.rules
    }

    /// Applies every rule in order. Borrows when nothing matched.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut buf = MaskBuf::default();
        let out = self.mask_buf(text, &mut buf);
        if std::ptr::eq(out, text) {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(out.to_owned())
        }
    }

    /// [`Masker::mask`] without allocating once `buf` has grown: the result is
    /// `text` itself when nothing matched, else a slice of `buf`. For loops
    /// over many lines.
    pub fn mask_buf<'a>(&self, text: &'a str, buf: &'a mut MaskBuf) -> &'a str {
        let mut cur = std::mem::take(&mut buf.cur);
        let mut next = std::mem::take(&mut buf.next);
        let mut owned = false;
        for rule in &self.rules {
            let src: &str = if owned { &cur } else { text };
            let mut matches = rule.regex.find_iter(src).peekable();
            if matches.peek().is_none() {
                continue;
            }
            next.clear();
            let mut last = 0;
            for m in matches {
                next.push_str(&src[last..m.start()]);
                next.push_str(&rule.replacement);
                last = m.end();
            }
            next.push_str(&src[last..]);
            std::mem::swap(&mut cur, &mut next);
            owned = true;
        }
        buf.cur = cur;
        buf.next = next;
        if owned { &buf.cur } else { text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_mask_common_variables() {
        let m = Masker::with_defaults();
        let cases = [
            ("took 42 ms", "took <*> ms"),
            ("took 3.25s", "took <*>"),
            ("from 10.0.0.1:8080 ok", "from <*> ok"),
            (
                "id 123e4567-e89b-12d3-a456-426614174000 done",
                "id <*> done",
            ),
            ("ptr 0x7ffdeadbeef and deadbeef01", "ptr <*> and <*>"),
            ("open /var/log/app.log failed", "open <*> failed"),
            ("block blk_-1608999687919862906 served", "block <*> served"),
            ("task-42 started", "<*> started"),
            ("worker_12 ready", "<*> ready"),
            ("ssh2 and SOCKS5 stay", "ssh2 and SOCKS5 stay"),
            ("a/b is not a path", "a/b is not a path"),
        ];
        for (input, want) in cases {
            assert_eq!(m.mask(input), want, "input {input:?}");
        }
    }

    #[test]
    fn rules_apply_in_order_and_see_earlier_output() {
        let m = Masker::from_patterns([r"user=\w+", r"<\*>"]).unwrap();
        assert_eq!(m.mask("login user=bob ok"), "login <*> ok");
        let mut m = Masker::from_patterns([r"\d+"]).unwrap();
        m.push(MaskRule::new("num", r"<\*>", "NUM").unwrap());
        assert_eq!(m.mask("a 1 b 22"), "a NUM b NUM");
    }

    #[test]
    fn replacement_is_literal() {
        let m = Masker {
            rules: vec![MaskRule::new("x", r"(\d+)", "$1-lit").unwrap()],
        };
        assert_eq!(m.mask("n 7"), "n $1-lit");
    }

    #[test]
    fn loghub_masks_behave_like_python_re_sub() {
        // Proxifier's list from datasets.json.
        let m = Masker::from_patterns([
            r"<\d+\ssec",
            r"([\w-]+\.)+[\w-]+(:\d+)?",
            r"\d{2}:\d{2}(:\d{2})*",
            r"[KGTM]B",
        ])
        .unwrap();
        assert_eq!(
            m.mask("proxy.cse.cuhk.edu.hk:5070 close, 1190 bytes (1.16 KB) sent, lifetime <1 sec"),
            "<*> close, 1190 bytes (<*> <*>) sent, lifetime <*>"
        );
    }

    #[test]
    fn no_match_borrows() {
        let m = Masker::with_defaults();
        assert!(matches!(m.mask("nothing to see"), Cow::Borrowed(_)));
        assert!(matches!(Masker::new().mask("1 2 3"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_bad_pattern_is_reported() {
        let e = Masker::from_patterns(["ok", "(unclosed", r"\d+", "[z-a]"]).unwrap_err();
        let idx: Vec<_> = e.0.iter().map(|e| e.index).collect();
        assert_eq!(idx, [2, 4]);
        let msg = e.to_string();
        assert!(msg.contains("mask #2 (\"(unclosed\")"), "{msg}");
        assert!(msg.contains("mask #4"), "{msg}");
    }
}
