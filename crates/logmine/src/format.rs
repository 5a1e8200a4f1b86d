//! Loghub-style line formats: `'<Date> <Time> <Level> <Component>: <Content>'`.
//!
//! A format is a sequence of `<Field>` placeholders and literal text. The
//! semantics are those of the loghub/logparser benchmark (see
//! `datasets.json` in the bench data), so the published format strings work
//! unchanged:
//!
//! * every `<Field>` matches lazily (`(?P<Field>.*?)`);
//! * literal text is a regular-expression fragment (the published formats
//!   escape `[`, `]` and `|` as `\[`, `\]`, `\|`), and each run of spaces in
//!   it matches any run of whitespace (`\s+`);
//! * the whole pattern is anchored at both ends and applied to the line with
//!   leading and trailing whitespace removed.
//!
//! `<Content>` is mandatory: it is the part the miner sees.
//!
//! Matching is on the hot path of `logs mine`, so formats whose literal text
//! is plain (the common case) are matched by a small hand-written scanner that
//! gives the same split as the regex; the regex is kept as the reference and
//! as the fallback for anything the scanner does not handle.

use regex::Regex;

/// The placeholder that holds the text to mine.
pub const CONTENT_FIELD: &str = "Content";

/// A problem with a format string. Each variant names what is wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FormatError {
    /// The format string is empty or only whitespace.
    #[error("the log format is empty")]
    Empty,
    /// There is no `<Content>` placeholder.
    #[error("the log format {format:?} has no <Content> placeholder (it marks the text to mine)")]
    NoContent {
        /// The format string.
        format: String,
    },
    /// The same placeholder appears twice.
    #[error("the log format {format:?} uses the placeholder <{name}> more than once")]
    DuplicateField {
        /// The format string.
        format: String,
        /// The repeated field name.
        name: String,
    },
    /// A placeholder name is not an identifier.
    #[error(
        "the log format {format:?} has an invalid placeholder <{name}>: names must start with a letter or '_' and contain only letters, digits and '_'"
    )]
    InvalidFieldName {
        /// The format string.
        format: String,
        /// The offending name.
        name: String,
    },
    /// A `<` or `>` that does not form a placeholder.
    #[error(
        "the log format {format:?} has an unmatched '{ch}' at byte {offset} (write \\{ch} for a literal '{ch}')"
    )]
    Unbalanced {
        /// The format string.
        format: String,
        /// The character, `<` or `>`.
        ch: char,
        /// Byte offset in the format string.
        offset: usize,
    },
    /// The literal text is not a valid regular-expression fragment.
    #[error("the log format {format:?} is not a valid pattern: {message}")]
    Regex {
        /// The format string.
        format: String,
        /// The regex engine's explanation.
        message: String,
    },
}

/// A parsed line format. Cheap to share by reference; matching needs no
/// mutable state.
#[derive(Debug, Clone)]
pub struct LogFormat {
    source: String,
    fields: Vec<String>,
    content: usize,
    regex: Regex,
    /// The scanner program, when every literal is plain text and whitespace.
    fast: Option<Vec<Segment>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    /// One or more whitespace characters (greedy).
    Ws,
    /// Exact text, never starting with whitespace.
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Field,
    Literal(Vec<Piece>),
}

enum Part<'a> {
    Field(&'a str),
    Literal(&'a str),
}

impl LogFormat {
    /// Parses a loghub-style format string such as
    /// `<Date> <Time> <Level> \[<Component>\]: <Content>`.
    ///
    /// # Errors
    /// A [`FormatError`] naming the problem: empty format, no `<Content>`,
    /// repeated or malformed placeholder, unmatched `<`/`>`, or literal text
    /// that is not a valid regex fragment.
    pub fn parse(format: &str) -> Result<Self, FormatError> {
        if format.trim().is_empty() {
            return Err(FormatError::Empty);
        }
        let parts = split_parts(format)?;
        let mut fields: Vec<String> = Vec::new();
        let mut pattern = String::from("^");
        for part in &parts {
            match part {
                Part::Field(name) => {
                    if !is_identifier(name) {
                        return Err(FormatError::InvalidFieldName {
                            format: format.to_owned(),
                            name: (*name).to_owned(),
                        });
                    }
                    if fields.iter().any(|f| f == name) {
                        return Err(FormatError::DuplicateField {
                            format: format.to_owned(),
                            name: (*name).to_owned(),
                        });
                    }
                    fields.push((*name).to_owned());
                    pattern.push_str("(?P<");
                    pattern.push_str(name);
                    pattern.push_str(">.*?)");
                }
                Part::Literal(text) => pattern.push_str(&spaces_to_ws(text)),
            }
        }
        pattern.push('$');
        let Some(content) = fields.iter().position(|f| f == CONTENT_FIELD) else {
            return Err(FormatError::NoContent {
                format: format.to_owned(),
            });
        };
        // `(?s)`: `.` must also cross any stray control characters, as in the
        // reference (it only ever sees single lines).
        let regex = Regex::new(&format!("(?s){pattern}")).map_err(|e| FormatError::Regex {
            format: format.to_owned(),
            message: e.to_string(),
        })?;
        let fast = parts
            .iter()
            .map(|p| match p {
                Part::Field(_) => Some(Segment::Field),
                Part::Literal(text) => plain_pieces(text).map(Segment::Literal),
            })
            .collect::<Option<Vec<_>>>();
        Ok(Self {
            source: format.to_owned(),
            fields,
            content,
            regex,
            fast,
        })
    }

    /// The format string as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The placeholder names, in order.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The `<Content>` part of `line`, or `None` when the line does not match
    /// the format.
    pub fn content<'a>(&self, line: &'a str) -> Option<&'a str> {
        let line = line.trim();
        if let Some(fast) = &self.fast {
            let mut spans = [(0, 0); 16];
            if self.fields.len() <= spans.len() {
                if scan(fast, line, &mut spans) {
                    let (start, end) = spans[self.content];
                    return Some(&line[start..end]);
                }
            } else {
                let mut spans = vec![(0, 0); self.fields.len()];
                if scan(fast, line, &mut spans) {
                    let (start, end) = spans[self.content];
                    return Some(&line[start..end]);
                }
            }
        }
        self.regex
            .captures(line)
            .and_then(|c| c.name(CONTENT_FIELD))
            .map(|m| m.as_str())
    }

    /// All fields of `line`, in the order of [`LogFormat::fields`], or `None`
    /// when the line does not match.
    pub fn split<'a>(&self, line: &'a str) -> Option<Vec<&'a str>> {
        let line = line.trim();
        let caps = self.regex.captures(line)?;
        Some(
            self.fields
                .iter()
                .map(|f| caps.name(f).map_or("", |m| m.as_str()))
                .collect(),
        )
    }

    /// The scanner's split, for tests that check it against the regex.
    #[cfg(test)]
    fn fast_split<'a>(&self, line: &'a str) -> Option<Vec<&'a str>> {
        let line = line.trim();
        let fast = self.fast.as_ref()?;
        let mut spans = vec![(0, 0); self.fields.len()];
        scan(fast, line, &mut spans).then(|| spans.iter().map(|&(s, e)| &line[s..e]).collect())
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits into placeholders and literal text. A `<` opens a placeholder unless
/// escaped; a placeholder ends at the next `>`.
fn split_parts(format: &str) -> Result<Vec<Part<'_>>, FormatError> {
    let bytes = format.as_bytes();
    let mut parts = Vec::new();
    let mut lit_start = 0;
    let mut i = 0;
    let unbalanced = |ch, offset| FormatError::Unbalanced {
        format: format.to_owned(),
        ch,
        offset,
    };
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'>' => return Err(unbalanced('>', i)),
            b'<' => {
                let Some(len) = format[i + 1..].find(['<', '>']) else {
                    return Err(unbalanced('<', i));
                };
                if bytes[i + 1 + len] == b'<' {
                    return Err(unbalanced('<', i));
                }
                if lit_start < i {
                    parts.push(Part::Literal(&format[lit_start..i]));
                }
                parts.push(Part::Field(&format[i + 1..i + 1 + len]));
                i += len + 2;
                lit_start = i;
            }
            _ => i += 1,
        }
    }
    if lit_start < format.len() {
        parts.push(Part::Literal(&format[lit_start.min(format.len())..]));
    }
    Ok(parts)
}

/// Replaces each run of spaces with `\s+`, as the reference does.
fn spaces_to_ws(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    let mut in_space = false;
    for c in text.chars() {
        if c == ' ' {
            if !in_space {
                out.push_str(r"\s+");
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

/// The literal as plain pieces, or `None` if it uses regex syntax beyond
/// escaped punctuation.
fn plain_pieces(text: &str) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let lit = match c {
            ' ' => {
                if !cur.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut cur)));
                }
                if pieces.last() != Some(&Piece::Ws) {
                    pieces.push(Piece::Ws);
                }
                continue;
            }
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => e,
                _ => return None,
            },
            '.' | '^' | '$' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' => {
                return None;
            }
            c if c.is_whitespace() => return None,
            c => c,
        };
        cur.push(lit);
    }
    if !cur.is_empty() {
        pieces.push(Piece::Text(cur));
    }
    Some(pieces)
}

fn is_ascii_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Length of the whitespace run (Unicode `\s`) at the start of `s`.
fn ws_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] < 0x80 {
            if !is_ascii_ws(b[i]) {
                return i;
            }
            i += 1;
        } else {
            let c = s[i..].chars().next().expect("char boundary");
            if !c.is_whitespace() {
                return i;
            }
            i += c.len_utf8();
        }
    }
    i
}

/// Offset of the first whitespace character in `s`.
fn find_ws(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] < 0x80 {
            if is_ascii_ws(b[i]) {
                return Some(i);
            }
            i += 1;
        } else {
            let c = s[i..].chars().next().expect("char boundary");
            if c.is_whitespace() {
                return Some(i);
            }
            i += c.len_utf8();
        }
    }
    None
}

/// Matches `pieces` at `at`; returns the end offset.
fn match_literal(pieces: &[Piece], line: &str, at: usize) -> Option<usize> {
    let mut pos = at;
    for piece in pieces {
        match piece {
            Piece::Ws => {
                let taken = ws_len(&line[pos..]);
                if taken == 0 {
                    return None;
                }
                pos += taken;
            }
            Piece::Text(t) => {
                if !line[pos..].starts_with(t.as_str()) {
                    return None;
                }
                pos += t.len();
            }
        }
    }
    Some(pos)
}

/// Earliest `p >= from` where the literal matches (and, when `to_end`, ends at
/// the end of the line). Returns `(p, end)`.
fn find_literal(pieces: &[Piece], line: &str, from: usize, to_end: bool) -> Option<(usize, usize)> {
    let mut p = from;
    loop {
        // Jump to the next plausible start.
        let next = match pieces.first() {
            Some(Piece::Text(t)) => line[p..].find(t.as_str()).map(|i| p + i)?,
            Some(Piece::Ws) => find_ws(&line[p..]).map(|i| p + i)?,
            None => p,
        };
        if let Some(end) = match_literal(pieces, line, next)
            && (!to_end || end == line.len())
        {
            return Some((next, end));
        }
        // Advance one character.
        let step = line[next..].chars().next()?.len_utf8();
        p = next + step;
    }
}

/// Lazy left-to-right split; the same result as the anchored regex whenever it
/// succeeds (checked against the regex in tests). Writes one span per field.
fn scan(segments: &[Segment], line: &str, spans: &mut [(usize, usize)]) -> bool {
    let mut pos = 0;
    let mut field = 0;
    let mut i = 0;
    while i < segments.len() {
        match &segments[i] {
            Segment::Literal(pieces) => match match_literal(pieces, line, pos) {
                Some(end) => pos = end,
                None => return false,
            },
            Segment::Field => {
                match segments.get(i + 1) {
                    None => {
                        spans[field] = (pos, line.len());
                        pos = line.len();
                    }
                    Some(Segment::Field) => spans[field] = (pos, pos),
                    Some(Segment::Literal(pieces)) => {
                        let last = i + 2 == segments.len();
                        let Some((start, end)) = find_literal(pieces, line, pos, last) else {
                            return false;
                        };
                        spans[field] = (pos, start);
                        pos = end;
                        i += 1;
                    }
                }
                field += 1;
            }
        }
        i += 1;
    }
    pos == line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_simple_format() {
        let f = LogFormat::parse("<Date> <Time> <Level> <Component>: <Content>").unwrap();
        assert_eq!(
            f.fields(),
            ["Date", "Time", "Level", "Component", "Content"]
        );
        let line = "17/06/09 20:10:40 INFO spark.SecurityManager: Changing view acls to: yarn";
        assert_eq!(f.content(line), Some("Changing view acls to: yarn"));
        assert_eq!(
            f.split(line).unwrap(),
            [
                "17/06/09",
                "20:10:40",
                "INFO",
                "spark.SecurityManager",
                "Changing view acls to: yarn"
            ]
        );
    }

    #[test]
    fn escaped_brackets_and_pipes_are_literals() {
        let f = LogFormat::parse(r"<Time>\|<Component>\|<Pid>\|<Content>").unwrap();
        assert_eq!(
            f.content("20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579"),
            Some("onStandStepChanged 3579")
        );
        let f = LogFormat::parse(r"\[<Time>\] <Program> - <Content>").unwrap();
        assert_eq!(
            f.content("[10.30 16:49:06] chrome.exe - proxy.cse.cuhk.edu.hk:5070 open"),
            Some("proxy.cse.cuhk.edu.hk:5070 open")
        );
    }

    #[test]
    fn spaces_match_whitespace_runs_and_lines_are_trimmed() {
        let f = LogFormat::parse("<Level> <Content>").unwrap();
        assert_eq!(f.content("  INFO \t  hello  world  "), Some("hello  world"));
    }

    #[test]
    fn a_line_that_does_not_fit_is_none() {
        let f = LogFormat::parse(r"<Date> <Time> \[<Level>\] <Content>").unwrap();
        assert_eq!(f.content("no brackets here at all"), None);
        assert_eq!(f.content(""), None);
    }

    #[test]
    fn regex_literals_fall_back_to_the_regex_engine() {
        let f = LogFormat::parse(r"<Level>\s*:\s*<Content>").unwrap();
        assert!(f.fast.is_none());
        assert_eq!(f.content("WARN:  disk full"), Some("disk full"));
    }

    #[test]
    fn content_need_not_be_last() {
        let f = LogFormat::parse("<Content> (<Code>").unwrap_err();
        // `(` is regex syntax in loghub formats; an unbalanced one is an error.
        assert!(matches!(f, FormatError::Regex { .. }), "{f}");
        let f = LogFormat::parse(r"<Content> \(<Code>\)").unwrap();
        assert_eq!(f.content("it broke (42)"), Some("it broke"));
        assert_eq!(f.fast_split("it broke (42)").unwrap(), ["it broke", "42"]);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(LogFormat::parse("  ").unwrap_err(), FormatError::Empty);
        let e = LogFormat::parse("<Date> <Time>").unwrap_err();
        assert!(matches!(e, FormatError::NoContent { .. }));
        assert!(e.to_string().contains("no <Content>"), "{e}");
        let e = LogFormat::parse("<Date> <Date> <Content>").unwrap_err();
        assert!(e.to_string().contains("<Date> more than once"), "{e}");
        let e = LogFormat::parse("<Da te> <Content>").unwrap_err();
        assert!(e.to_string().contains("invalid placeholder <Da te>"), "{e}");
        let e = LogFormat::parse("<Date <Content>").unwrap_err();
        assert!(
            matches!(
                e,
                FormatError::Unbalanced {
                    ch: '<',
                    offset: 0,
                    ..
                }
            ),
            "{e}"
        );
        let e = LogFormat::parse("<Date> > <Content>").unwrap_err();
        assert!(
            matches!(
                e,
                FormatError::Unbalanced {
                    ch: '>',
                    offset: 7,
                    ..
                }
            ),
            "{e}"
        );
        let e = LogFormat::parse("<Date> [ <Content>").unwrap_err();
        assert!(matches!(e, FormatError::Regex { .. }), "{e}");
    }

    #[test]
    fn escaped_angle_brackets_are_literal() {
        let f = LogFormat::parse(r"\<<Level>\> <Content>").unwrap();
        assert_eq!(f.content("<INFO> started"), Some("started"));
    }

    /// The scanner must agree with the regex on everything it accepts, and
    /// must not reject what the regex accepts (the fallback would hide that,
    /// so check it directly).
    #[test]
    fn scanner_agrees_with_regex() {
        let formats = [
            "<Date> <Time> <Pid> <Level> <Component>: <Content>",
            r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>",
            r"<Date> <Day> <Time> <Component> sshd\[<Pid>\]: <Content>",
            r"<Time>\|<Component>\|<Pid>\|<Content>",
            "<Content> <B>",
            "<A>:<Content>:<C>",
            "<A><B> <Content>",
        ];
        let lines = [
            "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
            "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200",
            "Dec 10 06:55:46 LabSZ sshd[24200]: reverse mapping checking getaddrinfo for ns.example [1.2.3.4] failed",
            "20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579|x",
            "a   b c",
            "a:b",
            "a:b:c:d",
            ":::",
            "x y",
            "",
            "é ü:ö",
        ];
        for fmt in formats {
            let f = LogFormat::parse(fmt).unwrap();
            assert!(f.fast.is_some(), "{fmt} should use the scanner");
            for line in lines {
                assert_eq!(
                    f.fast_split(line),
                    f.split(line),
                    "format {fmt:?} line {line:?}"
                );
            }
        }
    }
}
