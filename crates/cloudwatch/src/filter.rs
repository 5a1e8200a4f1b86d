//! CloudWatch Logs filter patterns: the language a metric filter uses to decide
//! which log events count (the catalogue's `{ $.level = "ERROR" }` turns ERROR
//! lines into the `ErrorCount` metric).
//!
//! A pattern is parsed once into an AST ([`FilterPattern::parse`]) and then
//! matched against every line. Supported, following the CloudWatch Logs
//! "Filter and pattern syntax" documentation:
//!
//! * **Empty pattern** — matches every event.
//! * **Terms** (unstructured text) — `ERROR` (substring, case-sensitive, so it
//!   also matches `ERRORCODE`), `"exact phrase"`, several terms = all must
//!   appear, `?ERROR ?WARN` = at least one must appear, `-term` / `- "term"` =
//!   must not appear. Unquoted terms may contain only letters, digits and `_`;
//!   anything else must be quoted, as CloudWatch requires.
//! * **JSON** — `{ SELECTOR OP VALUE }` where SELECTOR is `$.a.b`, `$.a[0]`,
//!   `$.a[0][1].b` (names of letters, digits, `-`, `_`); OP is `=` / `!=` with
//!   a string (quoted, or unquoted like `bar` or `123.123.*`) whose leading
//!   and/or trailing `*` is a wildcard (a `*` in the middle is literal), or
//!   `= != < <= > >=` with a number (`400`, `-1.5`, `+1000`, `10e-3`);
//!   `IS NULL`, `NOT EXISTS`, `IS TRUE`, `IS FALSE`; conditions combined with
//!   `&&` and `||` (`&&` binds tighter) and parentheses.
//!
//! JSON semantics: a JSON pattern only matches events whose whole message is
//! a JSON object. A comparison on a field that is missing, null, an object or
//! an array never matches — neither `=` nor `!=` (CloudWatch: "the selector
//! must point to a value node"). Numeric comparisons only match JSON numbers.
//! String comparisons match strings, and numbers/booleans by their JSON text
//! (so `{ $.latency = * }` matches any latency, as in AWS's own example).
//!
//! Not supported, rejected with an error naming the construct and its column
//! (never silently matching nothing): space-delimited patterns `[ip, user,
//! ...]`, regular expressions `%...%`, selector wildcards `$.a[*]` / `$.*`.

use std::fmt;

use serde_json::Value;

/// Why a filter pattern could not be parsed. `column` is 1-based, counted in
/// characters of the pattern as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter pattern at column {column}: {message}")]
pub struct FilterPatternError {
    pub column: usize,
    pub message: String,
}

/// A parsed CloudWatch Logs filter pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPattern {
    source: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    All,
    Terms(Terms),
    Json(Expr),
}

/// Plain-text terms: every `required` term, at least one `optional` term (if
/// there are any), and none of the `excluded` terms must appear.
#[derive(Debug, Clone, PartialEq, Default)]
struct Terms {
    required: Vec<String>,
    optional: Vec<String>,
    excluded: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Cond(Selector, Test),
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    Str { negated: bool, glob: Glob },
    Num { op: NumOp, value: f64 },
    IsNull,
    NotExists,
    IsBool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A string value with CloudWatch's wildcard rule: `*` only at the start
/// and/or end is a wildcard.
#[derive(Debug, Clone, PartialEq)]
enum Glob {
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
}

impl Glob {
    fn new(s: &str) -> Glob {
        if s == "*" || s == "**" {
            return Glob::Any;
        }
        let lead = s.starts_with('*');
        let trail = s.ends_with('*');
        let core = &s[usize::from(lead)..s.len() - usize::from(trail)];
        match (lead, trail) {
            (true, true) => Glob::Contains(core.to_string()),
            (true, false) => Glob::Suffix(core.to_string()),
            (false, true) => Glob::Prefix(core.to_string()),
            (false, false) => Glob::Exact(core.to_string()),
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Glob::Any => true,
            Glob::Exact(s) => text == s,
            Glob::Prefix(s) => text.starts_with(s.as_str()),
            Glob::Suffix(s) => text.ends_with(s.as_str()),
            Glob::Contains(s) => text.contains(s.as_str()),
        }
    }
}

/// A JSON property selector such as `$.users[0].id`. Public so callers can
/// resolve a metric filter's `metric_value` (`$.latency`) with the same rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

impl Selector {
    /// Parse a selector on its own (for example a metric filter's `$.latency`).
    pub fn parse(text: &str) -> Result<Selector, FilterPatternError> {
        let mut p = Parser::new(text.trim());
        let sel = p.selector()?;
        p.skip_ws();
        if !p.at_end() {
            return Err(p.error(format!(
                "unexpected {} after the selector",
                p.describe_here()
            )));
        }
        Ok(sel)
    }

    /// The value the selector points to, or `None` when any step is missing.
    pub fn resolve<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut at = root;
        for step in &self.steps {
            at = match (step, at) {
                (Step::Key(k), Value::Object(map)) => map.get(k)?,
                (Step::Index(i), Value::Array(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(at)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for s in &self.steps {
            match s {
                Step::Key(k) => write!(f, ".{k}")?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

impl FilterPattern {
    /// Parse a pattern. The empty (or all-blank) pattern matches everything.
    pub fn parse(pattern: &str) -> Result<FilterPattern, FilterPatternError> {
        let len = pattern.chars().count();
        if len > MAX_PATTERN_CHARS {
            return Err(FilterPatternError {
                column: MAX_PATTERN_CHARS + 1,
                message: format!(
                    "the pattern is {len} characters long; CloudWatch accepts at most {MAX_PATTERN_CHARS}"
                ),
            });
        }
        let mut p = Parser::new(pattern);
        p.skip_ws();
        let kind = match p.peek() {
            None => Kind::All,
            Some('{') => Kind::Json(p.json_pattern()?),
            Some('[') => {
                return Err(p.error(
                    "space-delimited patterns (`[field, field, ...]`) are not supported; \
                     use a JSON pattern `{ $.field = ... }` or plain terms"
                        .into(),
                ));
            }
            Some('%') => return Err(p.error(REGEX_UNSUPPORTED.into())),
            Some(_) => Kind::Terms(p.terms()?),
        };
        Ok(FilterPattern {
            source: pattern.to_string(),
            kind,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True for `{ ... }` patterns, which only match JSON-object events.
    pub fn is_json(&self) -> bool {
        matches!(self.kind, Kind::Json(_))
    }

    /// Does this log line match? Parses the line as JSON when the pattern is a
    /// JSON pattern; use [`FilterPattern::matches_parsed`] to parse only once.
    pub fn matches(&self, line: &str) -> bool {
        match &self.kind {
            Kind::Json(_) => {
                let parsed = serde_json::from_str::<Value>(line).ok();
                self.matches_parsed(line, parsed.as_ref())
            }
            _ => self.matches_parsed(line, None),
        }
    }

    /// Like [`FilterPattern::matches`], with the line's JSON already parsed by
    /// the caller: `json` must be the parse of `line`, or `None` when the line
    /// is not JSON. Term patterns look only at `line`; JSON patterns only at
    /// `json` (and only match when it is an object).
    pub fn matches_parsed(&self, line: &str, json: Option<&Value>) -> bool {
        match &self.kind {
            Kind::All => true,
            Kind::Terms(t) => t.matches(line),
            Kind::Json(e) => match json {
                Some(v @ Value::Object(_)) => e.eval(v),
                _ => false,
            },
        }
    }
}

impl fmt::Display for FilterPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for FilterPattern {
    type Err = FilterPatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FilterPattern::parse(s)
    }
}

impl Terms {
    fn matches(&self, line: &str) -> bool {
        self.required.iter().all(|t| line.contains(t.as_str()))
            && (self.optional.is_empty() || self.optional.iter().any(|t| line.contains(t.as_str())))
            && !self.excluded.iter().any(|t| line.contains(t.as_str()))
    }
}

impl Expr {
    fn eval(&self, root: &Value) -> bool {
        match self {
            Expr::Or(xs) => xs.iter().any(|x| x.eval(root)),
            Expr::And(xs) => xs.iter().all(|x| x.eval(root)),
            Expr::Cond(sel, test) => {
                let v = sel.resolve(root);
                match test {
                    Test::NotExists => v.is_none(),
                    Test::IsNull => matches!(v, Some(Value::Null)),
                    Test::IsBool(b) => v == Some(&Value::Bool(*b)),
                    Test::Num { op, value } => match v.and_then(Value::as_f64) {
                        Some(x) => op.apply(x, *value),
                        None => false,
                    },
                    Test::Str { negated, glob } => {
                        let text = match v {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Number(n)) => n.to_string(),
                            Some(Value::Bool(b)) => b.to_string(),
                            // Missing, null, arrays and objects match neither `=` nor `!=`.
                            _ => return false,
                        };
                        glob.matches(&text) != *negated
                    }
                }
            }
        }
    }
}

impl NumOp {
    fn apply(self, x: f64, y: f64) -> bool {
        match self {
            NumOp::Eq => x == y,
            NumOp::Ne => x != y,
            NumOp::Lt => x < y,
            NumOp::Le => x <= y,
            NumOp::Gt => x > y,
            NumOp::Ge => x >= y,
        }
    }
}

const REGEX_UNSUPPORTED: &str =
    "regular expressions (`%...%`) are not supported; use wildcards such as \"ERR*\" instead";

/// Recursive-descent parser over the pattern's characters; positions are
/// character indexes so errors can name a column.
struct Parser {
    chars: Vec<char>,
    i: usize,
    /// Open parentheses around the current position (bounded by [`MAX_NESTING`]).
    depth: usize,
}

/// CloudWatch's own limit on a filter pattern's length (PutMetricFilter).
pub const MAX_PATTERN_CHARS: usize = 1024;
/// Parenthesised groups may nest this deep: far beyond any real pattern, and
/// low enough that the recursive parser cannot exhaust a thread's stack.
pub const MAX_NESTING: usize = 32;

impl Parser {
    fn new(text: &str) -> Parser {
        Parser {
            depth: 0,
            chars: text.chars().collect(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, off: usize) -> Option<char> {
        self.chars.get(self.i + off).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.chars.len()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, c)| self.peek_at(k) == Some(c))
    }

    fn error(&self, message: String) -> FilterPatternError {
        self.error_at(self.i, message)
    }

    fn error_at(&self, index: usize, message: String) -> FilterPatternError {
        FilterPatternError {
            column: index + 1,
            message,
        }
    }

    /// A short description of what is at the cursor, for error messages.
    fn describe_here(&self) -> String {
        if self.at_end() {
            return "end of pattern".into();
        }
        let rest: String = self.chars[self.i..].iter().take(12).collect();
        let word: String = rest.split_whitespace().next().unwrap_or("").to_string();
        format!("`{word}`")
    }

    // ---- plain-text terms -------------------------------------------------

    fn terms(&mut self) -> Result<Terms, FilterPatternError> {
        let mut t = Terms::default();
        loop {
            self.skip_ws();
            let Some(c) = self.peek() else { break };
            let (bucket, prefix_at) = match c {
                '?' => {
                    self.i += 1;
                    (&mut t.optional, Some(self.i - 1))
                }
                '-' => {
                    self.i += 1;
                    // The AWS guide writes `"ERROR" - "Exiting"`: allow a space after `-`.
                    self.skip_ws();
                    (&mut t.excluded, Some(self.i - 1))
                }
                _ => (&mut t.required, None),
            };
            match self.peek() {
                None => {
                    let at = prefix_at.unwrap_or(self.i);
                    return Err(self.error_at(at, "a term must follow `?` or `-`".into()));
                }
                Some('"') => bucket.push(self.quoted()?),
                Some('%') => return Err(self.error(REGEX_UNSUPPORTED.into())),
                Some('{') | Some('[') => {
                    return Err(self.error(format!(
                        "`{}` can only start a pattern (JSON or space-delimited); \
                         it cannot be combined with plain terms",
                        self.peek().unwrap_or(' ')
                    )));
                }
                Some(_) => {
                    let start = self.i;
                    while self.peek().is_some_and(|c| !c.is_whitespace()) {
                        self.i += 1;
                    }
                    let word: String = self.chars[start..self.i].iter().collect();
                    if let Some((k, bad)) = word
                        .char_indices()
                        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
                    {
                        let col = start + word[..k].chars().count();
                        return Err(self.error_at(
                            col,
                            format!(
                                "term `{word}` contains `{bad}`; terms with characters other than \
                                 letters, digits and `_` must be in double quotes (\"{word}\")"
                            ),
                        ));
                    }
                    bucket.push(word);
                }
            }
        }
        Ok(t)
    }

    /// A double-quoted string; `\"` and `\\` are escapes. Cursor is on the `"`.
    fn quoted(&mut self) -> Result<String, FilterPatternError> {
        let open = self.i;
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(
                        self.error_at(open, "unterminated string: missing closing `\"`".into())
                    );
                }
                Some('"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some('\\') if matches!(self.peek_at(1), Some('"') | Some('\\')) => {
                    out.push(self.peek_at(1).unwrap_or('\\'));
                    self.i += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    // ---- JSON patterns ----------------------------------------------------

    fn json_pattern(&mut self) -> Result<Expr, FilterPatternError> {
        let open = self.i;
        self.i += 1; // '{'
        let expr = self.or_expr()?;
        self.skip_ws();
        match self.peek() {
            Some('}') => self.i += 1,
            None => {
                return Err(self.error_at(
                    open,
                    "unclosed `{`: the JSON pattern must end with `}`".into(),
                ));
            }
            Some(_) => {
                return Err(self.error(format!(
                    "expected `&&`, `||` or `}}`, found {}",
                    self.describe_here()
                )));
            }
        }
        self.skip_ws();
        if !self.at_end() {
            return Err(self.error(format!(
                "unexpected {} after the closing `}}` of the JSON pattern",
                self.describe_here()
            )));
        }
        Ok(expr)
    }

    fn or_expr(&mut self) -> Result<Expr, FilterPatternError> {
        let mut xs = vec![self.and_expr()?];
        loop {
            self.skip_ws();
            if self.starts_with("||") {
                self.i += 2;
                xs.push(self.and_expr()?);
            } else {
                break;
            }
        }
        Ok(if xs.len() == 1 {
            xs.remove(0)
        } else {
            Expr::Or(xs)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, FilterPatternError> {
        let mut xs = vec![self.primary()?];
        loop {
            self.skip_ws();
            if self.starts_with("&&") {
                self.i += 2;
                xs.push(self.primary()?);
            } else {
                break;
            }
        }
        Ok(if xs.len() == 1 {
            xs.remove(0)
        } else {
            Expr::And(xs)
        })
    }

    fn primary(&mut self) -> Result<Expr, FilterPatternError> {
        self.skip_ws();
        match self.peek() {
            Some('(') => {
                let open = self.i;
                if self.depth == MAX_NESTING {
                    return Err(
                        self.error(format!("parentheses nest deeper than {MAX_NESTING} levels"))
                    );
                }
                self.i += 1;
                self.depth += 1;
                let e = self.or_expr();
                self.depth -= 1;
                let e = e?;
                self.skip_ws();
                if self.peek() == Some(')') {
                    self.i += 1;
                    Ok(e)
                } else {
                    Err(self.error_at(
                        open,
                        format!("unclosed `(`: expected `)`, found {}", self.describe_here()),
                    ))
                }
            }
            Some('$') => self.condition(),
            Some('}') | None => Err(self
                .error("expected a condition such as `$.field = \"value\"`, found nothing".into())),
            Some(_) => Err(self.error(format!(
                "expected a selector starting with `$` (for example `$.level`), found {}",
                self.describe_here()
            ))),
        }
    }

    fn selector(&mut self) -> Result<Selector, FilterPatternError> {
        if self.peek() != Some('$') {
            return Err(self.error(format!(
                "expected a selector starting with `$`, found {}",
                self.describe_here()
            )));
        }
        let start = self.i;
        self.i += 1;
        let mut steps = Vec::new();
        loop {
            match self.peek() {
                Some('.') => {
                    self.i += 1;
                    if self.peek() == Some('*') {
                        return Err(
                            self.error("selector wildcards (`$.*`) are not supported".into())
                        );
                    }
                    let name_start = self.i;
                    while self
                        .peek()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
                    {
                        self.i += 1;
                    }
                    if self.i == name_start {
                        return Err(self.error(format!(
                            "expected a property name after `.` in the selector, found {}",
                            self.describe_here()
                        )));
                    }
                    steps.push(Step::Key(self.chars[name_start..self.i].iter().collect()));
                }
                Some('[') => {
                    if steps.is_empty() {
                        return Err(self.error(
                            "an array index must follow a property, as in `$.items[0]`".into(),
                        ));
                    }
                    self.i += 1;
                    if self.peek() == Some('*') {
                        return Err(self.error(
                            "array wildcards (`[*]`) in selectors are not supported".into(),
                        ));
                    }
                    let num_start = self.i;
                    while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        self.i += 1;
                    }
                    let digits: String = self.chars[num_start..self.i].iter().collect();
                    let Ok(index) = digits.parse::<usize>() else {
                        return Err(self.error_at(
                            num_start,
                            format!(
                                "expected an array index (a number) inside `[...]`, found {}",
                                self.describe_here()
                            ),
                        ));
                    };
                    if self.peek() != Some(']') {
                        return Err(self.error(format!(
                            "expected `]` after the array index, found {}",
                            self.describe_here()
                        )));
                    }
                    self.i += 1;
                    steps.push(Step::Index(index));
                }
                _ => break,
            }
        }
        if steps.is_empty() {
            return Err(self.error_at(
                start,
                "a selector must name a property, as in `$.level`; `$` alone selects nothing"
                    .into(),
            ));
        }
        Ok(Selector { steps })
    }

    fn keyword(&mut self, word: &str) -> bool {
        if self.starts_with(word)
            && !self
                .peek_at(word.chars().count())
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            self.i += word.chars().count();
            true
        } else {
            false
        }
    }

    fn condition(&mut self) -> Result<Expr, FilterPatternError> {
        let sel = self.selector()?;
        self.skip_ws();
        let op_at = self.i;
        if self.keyword("IS") {
            self.skip_ws();
            let test = if self.keyword("NULL") {
                Test::IsNull
            } else if self.keyword("TRUE") {
                Test::IsBool(true)
            } else if self.keyword("FALSE") {
                Test::IsBool(false)
            } else {
                return Err(self.error(format!(
                    "expected NULL, TRUE or FALSE after IS, found {}",
                    self.describe_here()
                )));
            };
            return Ok(Expr::Cond(sel, test));
        }
        if self.keyword("NOT") {
            self.skip_ws();
            if self.keyword("EXISTS") {
                return Ok(Expr::Cond(sel, Test::NotExists));
            }
            return Err(self.error(format!(
                "expected EXISTS after NOT, found {}",
                self.describe_here()
            )));
        }
        let op = if self.starts_with("!=") {
            self.i += 2;
            NumOp::Ne
        } else if self.starts_with("<=") {
            self.i += 2;
            NumOp::Le
        } else if self.starts_with(">=") {
            self.i += 2;
            NumOp::Ge
        } else if self.starts_with("=") {
            self.i += 1;
            NumOp::Eq
        } else if self.starts_with("<") {
            self.i += 1;
            NumOp::Lt
        } else if self.starts_with(">") {
            self.i += 1;
            NumOp::Gt
        } else {
            return Err(self.error_at(
                op_at,
                format!(
                    "expected an operator (=, !=, <, <=, >, >=, IS NULL, IS TRUE, IS FALSE, NOT EXISTS) \
                     after `{sel}`, found {}",
                    self.describe_here()
                ),
            ));
        };
        let op_text = match op {
            NumOp::Eq => "=",
            NumOp::Ne => "!=",
            NumOp::Lt => "<",
            NumOp::Le => "<=",
            NumOp::Gt => ">",
            NumOp::Ge => ">=",
        };
        self.skip_ws();
        let value_at = self.i;
        let value = match self.peek() {
            Some('"') => Value_::Str(self.quoted()?),
            Some('%') => return Err(self.error(REGEX_UNSUPPORTED.into())),
            Some(c @ ('=' | '<' | '>' | '!')) => {
                return Err(self.error(format!(
                    "unexpected `{c}` after `{op_text}`: the operators are =, !=, <, <=, >, >="
                )));
            }
            None | Some('}') | Some(')') | Some('&') | Some('|') => {
                return Err(self.error(format!(
                    "expected a value after `{op_text}`, found {}",
                    self.describe_here()
                )));
            }
            Some(_) => {
                while self.peek().is_some_and(|c| {
                    !c.is_whitespace() && !matches!(c, '(' | ')' | '{' | '}' | '&' | '|')
                }) {
                    self.i += 1;
                }
                let word: String = self.chars[value_at..self.i].iter().collect();
                match parse_number(&word) {
                    Some(n) => Value_::Num(n),
                    None => {
                        if let Some((k, bad)) = word.char_indices().find(|(_, c)| {
                            !(c.is_ascii_alphanumeric()
                                || matches!(c, '_' | '-' | '.' | '*' | ':' | '/' | '+'))
                        }) {
                            let col = value_at + word[..k].chars().count();
                            return Err(self.error_at(
                                col,
                                format!(
                                    "value `{word}` contains `{bad}`; such values must be in double quotes (\"{word}\")"
                                ),
                            ));
                        }
                        Value_::Str(word)
                    }
                }
            }
        };
        let test = match (op, value) {
            (_, Value_::Num(value)) => Test::Num { op, value },
            (NumOp::Eq, Value_::Str(s)) => Test::Str {
                negated: false,
                glob: Glob::new(&s),
            },
            (NumOp::Ne, Value_::Str(s)) => Test::Str {
                negated: true,
                glob: Glob::new(&s),
            },
            (_, Value_::Str(s)) => {
                return Err(self.error_at(
                    value_at,
                    format!("`{op_text}` compares numbers, but `{s}` is not a number"),
                ));
            }
        };
        Ok(Expr::Cond(sel, test))
    }
}

enum Value_ {
    Str(String),
    Num(f64),
}

/// CloudWatch's NUMBER: optional sign, integer or decimal, optional exponent.
fn parse_number(word: &str) -> Option<f64> {
    let b = word.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+') | Some(b'-')) {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e') | Some(b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+') | Some(b'-')) {
            i += 1;
        }
        let exp_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    word.trim_start_matches('+').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOGUE: &str = r#"{ $.level = "ERROR" }"#;

    /// The JSON example from the AWS guide, used by several rows below.
    const AWS_EXAMPLE: &str = r#"{"eventType":"UpdateTrail","sourceIPAddress":"111.111.111.111","arrayKey":["value","another value"],"objectList":[{"name":"a","id":1},{"name":"b","id":2}],"SomeObject":null,"ThisFlag":true}"#;
    const AWS_COMPOUND: &str = r#"{"user":{"id":1,"email":"John.Stiles@example.com"},"users":[{"id":2,"email":"John.Doe@example.com"},{"id":3,"email":"Jane.Doe@example.com"}],"actions":["GET","PUT","DELETE"],"coordinates":[[0,1,2],[4,5,6],[7,8,9]]}"#;
    const APP_LINE: &str = r#"{"ts":"2024-05-12T10:01:00Z","level":"ERROR","msg":"db timeout","route":"/api/orders","status":500,"latency_ms":1234.5,"retry":false,"user":null,"tags":["a","b"]}"#;

    #[test]
    fn table_of_patterns_against_lines() {
        // (pattern, line, expected)
        let rows: &[(&str, &str, bool)] = &[
            // The catalogue's pattern.
            (CATALOGUE, r#"{"level":"ERROR","msg":"boom"}"#, true),
            (CATALOGUE, APP_LINE, true),
            (CATALOGUE, r#"{"level":"INFO"}"#, false),
            (CATALOGUE, r#"{"level":"error"}"#, false), // case-sensitive
            (CATALOGUE, r#"{"msg":"no level"}"#, false),
            (CATALOGUE, "ERROR something broke", false), // not JSON
            (CATALOGUE, r#"level=ERROR {"level":"ERROR"}"#, false),
            (CATALOGUE, r#"["level","ERROR"]"#, false),
            (CATALOGUE, r#"{"level":["ERROR"]}"#, false),
            // Unquoted string values.
            (r#"{ $.level = ERROR }"#, r#"{"level":"ERROR"}"#, true),
            (r#"{$.level=ERROR}"#, r#"{"level":"ERROR"}"#, true),
            // != needs the field to exist.
            (r#"{ $.level != "INFO" }"#, r#"{"level":"ERROR"}"#, true),
            (r#"{ $.level != "INFO" }"#, r#"{"level":"INFO"}"#, false),
            (r#"{ $.level != "INFO" }"#, r#"{"msg":"x"}"#, false),
            (r#"{ $.level != "INFO" }"#, r#"{"level":null}"#, false),
            // Wildcards: leading / trailing only.
            (r#"{ $.level = "ERR*" }"#, r#"{"level":"ERROR"}"#, true),
            (r#"{ $.level = "ERR*" }"#, r#"{"level":"WARN"}"#, false),
            (r#"{ $.eventType = *Trail }"#, AWS_EXAMPLE, true),
            (r#"{ $.eventType = *date* }"#, AWS_EXAMPLE, true),
            (r#"{ $.eventType = Up*ail }"#, AWS_EXAMPLE, false), // inner * is literal
            (
                r#"{ $.eventType = "Up*ail" }"#,
                r#"{"eventType":"Up*ail"}"#,
                true,
            ),
            (r#"{ $.sourceIPAddress != 123.123.* }"#, AWS_EXAMPLE, true),
            (r#"{ $.sourceIPAddress != 111.111.* }"#, AWS_EXAMPLE, false),
            (r#"{ $.latency_ms = * }"#, APP_LINE, true),
            (r#"{ $.latency_ms = "*" }"#, r#"{"other":1}"#, false),
            // AWS guide examples.
            (r#"{ $.eventType = "UpdateTrail" }"#, AWS_EXAMPLE, true),
            (r#"{ $.arrayKey[0] = "value" }"#, AWS_EXAMPLE, true),
            (r#"{ $.arrayKey[1] = "value" }"#, AWS_EXAMPLE, false),
            (r#"{ $.eventType[0] = "UpdateTrail" }"#, AWS_EXAMPLE, false),
            (r#"{ $.objectList[1].id = 2 }"#, AWS_EXAMPLE, true),
            (r#"{ $.objectList[1].id = 1 }"#, AWS_EXAMPLE, false),
            (r#"{ $.objectList[5].id = 2 }"#, AWS_EXAMPLE, false),
            (r#"{ $.SomeObject IS NULL }"#, AWS_EXAMPLE, true),
            (r#"{ $.eventType IS NULL }"#, AWS_EXAMPLE, false),
            (r#"{ $.Nowhere IS NULL }"#, AWS_EXAMPLE, false),
            (r#"{ $.SomeOtherObject NOT EXISTS }"#, AWS_EXAMPLE, true),
            (r#"{ $.SomeObject NOT EXISTS }"#, AWS_EXAMPLE, false),
            (r#"{ $.ThisFlag IS TRUE }"#, AWS_EXAMPLE, true),
            (r#"{ $.ThisFlag IS FALSE }"#, AWS_EXAMPLE, false),
            (r#"{ $.retry IS FALSE }"#, APP_LINE, true),
            (r#"{ $.level IS TRUE }"#, APP_LINE, false),
            (r#"{ $.objectList = 1 }"#, AWS_EXAMPLE, false), // arrays are not value nodes
            (r#"{ $.objectList != 1 }"#, AWS_EXAMPLE, false),
            (r#"{ $.user = "*" }"#, APP_LINE, false), // null is not a value node
            // Compound conditions from the AWS guide.
            (
                r#"{ ($.user.id = 1) && ($.users[0].email = "John.Doe@example.com") }"#,
                AWS_COMPOUND,
                true,
            ),
            (
                r#"{ ($.user.id = 2 && $.users[0].email = "nonmatch") || $.actions[2] = "GET" }"#,
                AWS_COMPOUND,
                false,
            ),
            (
                r#"{ $.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = nonmatch && $.actions[2] = nomatch }"#,
                AWS_COMPOUND,
                true,
            ),
            (
                r#"{ ($.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = nonmatch) && $.actions[2] = nomatch }"#,
                AWS_COMPOUND,
                false,
            ),
            (r#"{ $.coordinates[2][0] = 7 }"#, AWS_COMPOUND, true),
            (r#"{$.foo = bar || $.foo = baz}"#, r#"{"foo":"baz"}"#, true),
            (r#"{$.foo = bar || $.foo = baz}"#, r#"{"foo":"qux"}"#, false),
            // Numeric comparisons.
            (r#"{ $.status = 500 }"#, APP_LINE, true),
            (r#"{ $.status != 500 }"#, APP_LINE, false),
            (r#"{ $.status >= 500 && $.status < 600 }"#, APP_LINE, true),
            (r#"{ $.status > 500 }"#, APP_LINE, false),
            (r#"{ $.latency_ms > 1000 }"#, APP_LINE, true),
            (r#"{ $.latency_ms <= 1234.5 }"#, APP_LINE, true),
            (r#"{ $.latency_ms < 1.2345e3 }"#, APP_LINE, false),
            (r#"{ $.latency_ms > +1000 }"#, APP_LINE, true),
            (r#"{ $.n > -1 }"#, r#"{"n":-0.5}"#, true),
            (r#"{ $.n < 10e-3 }"#, r#"{"n":0.001}"#, true),
            (r#"{ $.n = 1 }"#, r#"{"n":1.0}"#, true),
            (r#"{ $.status > 100 }"#, r#"{"status":"500"}"#, false), // numeric ops need numbers
            (r#"{ $.status != 404 }"#, r#"{"status":"500"}"#, false),
            (r#"{ $.status > 100 }"#, r#"{"other":1}"#, false), // missing field
            (r#"{ $.status = "500" }"#, APP_LINE, true),        // string compare on a number's text
            // Precedence: && binds tighter than ||.
            (
                r#"{ $.a = 1 || $.b = 1 && $.c = 1 }"#,
                r#"{"a":1,"b":0,"c":0}"#,
                true,
            ),
            (
                r#"{ ($.a = 1 || $.b = 1) && $.c = 1 }"#,
                r#"{"a":1,"b":0,"c":0}"#,
                false,
            ),
            // Selector names with - and _.
            (
                r#"{ $.x-request_id = "abc" }"#,
                r#"{"x-request_id":"abc"}"#,
                true,
            ),
            // Quoted values with escapes.
            (
                r#"{ $.msg = "say \"hi\"" }"#,
                r#"{"msg":"say \"hi\""}"#,
                true,
            ),
            // Empty pattern.
            ("", "anything at all", true),
            ("   ", r#"{"level":"INFO"}"#, true),
            // Plain-text terms (AWS guide examples).
            ("ERROR", "[ERROR] A fatal exception has occurred", true),
            ("ERROR", "Exiting with ERRORCODE: -1", true),
            ("ERROR", "error in lower case", false),
            (
                r#""ERROR" - "Exiting""#,
                "Exiting with ERRORCODE: -1",
                false,
            ),
            (
                r#""ERROR" - "Exiting""#,
                "[ERROR] A fatal exception has occurred",
                true,
            ),
            (
                "ERROR Exception",
                "[ERROR] Caught IllegalArgumentException",
                true,
            ),
            ("ERROR Exception", "[ERROR] all fine", false),
            (
                "Failed to process the request",
                "[WARN] Failed to process the request",
                true,
            ),
            ("?ERROR ?WARN", "ERROR WARN message", true),
            ("?ERROR ?WARN", "WARN message", true),
            ("?ERROR ?WARN", "INFO message", false),
            ("ERROR WARN", "ERROR message", false),
            ("ERROR -WARN", "ERROR message", true),
            ("ERROR -WARN", "ERROR WARN message", false),
            (r#""exact phrase""#, "an exact phrase here", true),
            (r#""exact phrase""#, "exact other phrase", false),
            (r#""user-id=42""#, "login user-id=42 ok", true),
            ("-DEBUG", "INFO hello", true),
            ("-DEBUG", "DEBUG hello", false),
            // Term patterns look at the raw text, JSON or not.
            ("ERROR", r#"{"level":"ERROR"}"#, true),
        ];
        let mut failures = Vec::new();
        for (pattern, line, want) in rows {
            let p = FilterPattern::parse(pattern)
                .unwrap_or_else(|e| panic!("pattern {pattern:?} should parse: {e}"));
            if p.matches(line) != *want {
                failures.push(format!("{pattern}  vs  {line}: expected {want}"));
            }
        }
        assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
    }

    #[test]
    fn matches_parsed_uses_the_callers_json() {
        let p = FilterPattern::parse(CATALOGUE).unwrap();
        let v: Value = serde_json::from_str(r#"{"level":"ERROR"}"#).unwrap();
        assert!(p.matches_parsed("ignored for JSON patterns", Some(&v)));
        assert!(!p.matches_parsed(r#"{"level":"ERROR"}"#, None));
        let t = FilterPattern::parse("ERROR").unwrap();
        assert!(t.matches_parsed("ERROR x", Some(&v)));
        assert!(p.is_json() && !t.is_json());
        assert_eq!(p.to_string(), CATALOGUE);
    }

    #[test]
    fn parse_errors_name_the_problem_and_column() {
        // (pattern, column, text the message must contain)
        let rows: &[(&str, usize, &str)] = &[
            (
                "[ip, user, status_code = 500]",
                1,
                "space-delimited patterns",
            ),
            ("%ERR[0-9]+%", 1, "regular expressions"),
            (r#"{ $.msg = %time.*out% }"#, 11, "regular expressions"),
            (r#"{ $.level = "ERROR" "#, 1, "unclosed `{`"),
            (r#"{ $.level = "ERROR }"#, 13, "unterminated string"),
            (r#"{ level = "ERROR" }"#, 3, "selector starting with `$`"),
            (r#"{ $ = 1 }"#, 3, "must name a property"),
            (r#"{ $.a. = 1 }"#, 7, "property name after `.`"),
            (r#"{ $[0] = 1 }"#, 4, "must follow a property"),
            (r#"{ $.a[*] = 1 }"#, 7, "array wildcards"),
            (r#"{ $.* = 1 }"#, 5, "selector wildcards"),
            (r#"{ $.a[x] = 1 }"#, 7, "array index"),
            (r#"{ $.level == "ERROR" }"#, 12, "the operators are"),
            (r#"{ $.level ~ "ERROR" }"#, 11, "expected an operator"),
            (r#"{ $.level = }"#, 13, "expected a value after `=`"),
            (r#"{ $.latency > fast }"#, 15, "`>` compares numbers"),
            (r#"{ $.a IS MAYBE }"#, 10, "NULL, TRUE or FALSE"),
            (r#"{ $.a NOT THERE }"#, 11, "EXISTS after NOT"),
            (r#"{ $.a = 1 && }"#, 14, "found nothing"),
            (r#"{ ($.a = 1 }"#, 3, "unclosed `(`"),
            (r#"{ $.a = 1 } ERROR"#, 13, "after the closing `}`"),
            (r#"{ $.a = 1 $.b = 2 }"#, 11, "expected `&&`, `||` or `}`"),
            (r#"{ $.email = john@example.com }"#, 17, "double quotes"),
            (r#"{ }"#, 3, "found nothing"),
            ("ERROR: timeout", 6, "must be in double quotes"),
            ("ERROR ?", 7, "a term must follow"),
            (r#"ERROR "unterminated"#, 7, "unterminated string"),
            ("ERROR { $.a = 1 }", 7, "cannot be combined"),
        ];
        let mut failures = Vec::new();
        for (pattern, column, needle) in rows {
            match FilterPattern::parse(pattern) {
                Ok(p) => failures.push(format!("{pattern}: parsed as {p:?}")),
                Err(e) => {
                    let text = e.to_string();
                    if e.column != *column || !text.contains(needle) {
                        failures.push(format!("{pattern}: got column {} `{text}`, want column {column} containing `{needle}`", e.column));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn selector_resolves_for_metric_values() {
        let v: Value = serde_json::from_str(APP_LINE).unwrap();
        let s = Selector::parse("$.latency_ms").unwrap();
        assert_eq!(s.resolve(&v).and_then(Value::as_f64), Some(1234.5));
        assert_eq!(
            Selector::parse("$.tags[1]").unwrap().resolve(&v),
            Some(&Value::from("b"))
        );
        assert_eq!(
            Selector::parse("$.tags[1]").unwrap().to_string(),
            "$.tags[1]"
        );
        assert!(Selector::parse("$.a b").is_err());
        assert!(Selector::parse("latency").is_err());
    }

    #[test]
    fn numbers_follow_cloudwatch_grammar() {
        for (w, want) in [
            ("400", Some(400.0)),
            ("+1000", Some(1000.0)),
            ("-1.5", Some(-1.5)),
            ("10e3", Some(10e3)),
            ("10e-3", Some(10e-3)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("123.123.1", None),
            ("1e", None),
            ("-", None),
            ("abc", None),
            ("0x10", None),
        ] {
            assert_eq!(parse_number(w), want, "{w}");
        }
    }
}
