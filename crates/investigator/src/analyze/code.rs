//! Reading code the way a reviewer of a suspicious deployment does: which
//! handler serves the failing route (found in the route table at the
//! deployed revision, not from a list), which function a changed line
//! belongs to, whether a changed line could emit a surged log message
//! (its constant words, not the exact text), and whether it adds a new
//! failure path (`panic!`, `unwrap`, `expect`, an error return).
//!
//! Language-agnostic on purpose and deliberately simple: route literals and
//! `fn`/`def`/`function`/`func` definitions are recognised textually, and a
//! function's extent is found by brace matching. Good enough to point at the
//! lines; the ranking weighs what is found, never requires it.

use std::collections::BTreeSet;

/// Words that name HTTP methods or routing helpers, not handlers.
const ROUTING_WORDS: &[&str] = &[
    "get", "post", "put", "delete", "patch", "head", "options", "any", "route", "routing", "on",
    "handler", "app", "router", "web", "axum", "to", "method", "methods", "with",
];

/// The spellings a route template may have in source: `/api/products/{id}`
/// also as `/api/products/:id`.
pub fn route_spellings(route: &str) -> Vec<String> {
    let mut out = vec![route.to_owned()];
    let colon: String = route
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/");
    if colon != route {
        out.push(colon);
    }
    out
}

/// The handler a route-table line binds `route` to: the last identifier
/// after the quoted route literal that is not a routing word
/// (`.route("/api/quote", post(api::quote))` → `quote`).
pub fn handler_in_line(line: &str, route: &str) -> Option<String> {
    let at = ['"', '\''].iter().find_map(|q| {
        let lit = format!("{q}{route}{q}");
        line.find(&lit).map(|i| i + lit.len())
    })?;
    line[at..]
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty() && !w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .rfind(|w| !ROUTING_WORDS.contains(&w.to_ascii_lowercase().as_str()))
        .map(str::to_owned)
}

/// The name a line defines, if it starts a function.
pub fn defines(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let rest = [
        "pub async fn ",
        "pub fn ",
        "async fn ",
        "fn ",
        "pub(crate) fn ",
        "pub(crate) async fn ",
        "def ",
        "async def ",
        "function ",
        "func ",
    ]
    .iter()
    .find_map(|p| t.strip_prefix(p))?;
    let name: &str = rest
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()?;
    (!name.is_empty()).then_some(name)
}

/// Lines `[start, end]` (1-based) of the function defined at `start`:
/// brace matching from its first `{`.
pub fn function_extent(lines: &[&str], start: usize) -> (usize, usize) {
    let mut depth = 0i32;
    let mut opened = false;
    for (i, l) in lines.iter().enumerate().skip(start - 1).take(2000) {
        for c in l.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if opened && depth <= 0 {
            return (start, i + 1);
        }
    }
    (start, lines.len().min(start + 2000))
}

/// The function enclosing line `line_no` (1-based): the nearest definition
/// above it whose extent covers it.
pub fn enclosing_function<'a>(lines: &[&'a str], line_no: usize) -> Option<&'a str> {
    let upto = line_no.min(lines.len());
    (1..=upto).rev().find_map(|i| {
        let name = defines(lines[i - 1])?;
        let (_, end) = function_extent(lines, i);
        (end >= line_no).then_some(name)
    })
}

/// Whether `line` is a comment line (`//`, `/* … */` and its `*` lines, `#`
/// but not a Rust `#[…]` attribute, `--`): a comment that names a key or
/// says "panic" neither reads the key nor fails.
pub fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("//")
        || t.starts_with("/*")
        || t.starts_with("* ")
        || t.starts_with("*/")
        || t == "*"
        || t.starts_with("--")
        || (t.starts_with('#') && !t.starts_with("#[") && !t.starts_with("#!["))
}

/// Whether line `line_no` (1-based) lies in test-only code: an item marked
/// `#[cfg(test)]` (in Rust, usually the `mod tests { … }` at a file's end).
/// Tests do not run in the deployed service, so a changed key read there or
/// a new `unwrap` there says nothing about what a deployment switched on.
/// Braces are counted as in [`function_extent`] (so an item is followed
/// for at most 2,000 lines); an attribute on an item without a body
/// (`#[cfg(test)] use …;`) covers only that item.
pub fn in_test_code(lines: &[&str], line_no: usize) -> bool {
    let upto = line_no.min(lines.len());
    (1..=upto).any(|i| {
        let Some(rest) = lines[i - 1].trim_start().strip_prefix("#[cfg(test)]") else {
            return false;
        };
        // The item the attribute is on: the rest of its line, or the next.
        let item = if rest.trim().is_empty() { i + 1 } else { i };
        if item > lines.len() {
            return false;
        }
        let head = lines[item - 1].trim_end();
        if !head.contains('{') && head.ends_with(';') {
            return line_no <= item;
        }
        function_extent(lines, item).1 >= line_no
    })
}

/// Identifiers called in `body` (`name(`), for one level of callees.
pub fn calls(body: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            if i < b.len() && b[i] == b'(' {
                out.insert(body[s..i].to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The constant words of a log template (no `<*>` slots, 3+ letters).
pub fn template_words(template: &str) -> Vec<String> {
    let mut out: Vec<String> = template
        .split(|c: char| !c.is_alphanumeric() && c != '*' && c != '<' && c != '>')
        .filter(|w| !w.contains('*') && w.len() >= 3 && w.chars().all(char::is_alphabetic))
        .map(str::to_ascii_lowercase)
        .collect();
    out.dedup();
    out
}

/// Whether a source line could emit `words`' message: it holds a string
/// literal and most of the template's constant words (in any order, any
/// case: `error!("cannot compute the total for cart {}")` for
/// "Cannot compute total for cart <*>").
pub fn could_emit(line: &str, words: &[String]) -> bool {
    if words.len() < 2 || !(line.contains('"') || line.contains('\'')) {
        return false;
    }
    let toks: BTreeSet<String> = line
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_ascii_lowercase)
        .collect();
    let hit = words.iter().filter(|w| toks.contains(*w)).count();
    hit >= 2 && hit * 10 >= words.len() * 7
}

/// A new way to fail: a panic, an unchecked unwrap, an error return.
pub fn is_failure_path(line: &str) -> bool {
    let l = line.trim();
    if l.starts_with("//") || l.starts_with('#') || l.starts_with("/*") || l.starts_with('*') {
        return false;
    }
    [
        "panic!(",
        ".unwrap()",
        ".expect(",
        "unreachable!(",
        "todo!(",
        "unimplemented!(",
        "return Err(",
        "INTERNAL_SERVER_ERROR",
        "throw ",
        "raise ",
    ]
    .iter()
    .any(|p| l.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_lines_are_comments() {
        for l in [
            "//! default chain (environment, profile)",
            "    // QUOTE_ENGINE picks the engine",
            "/* QUOTE_ENGINE */",
            "     * may panic when QUOTE_ENGINE is unset",
            "# QUOTE_ENGINE in a Dockerfile or .tf comment",
            "-- QUOTE_ENGINE in SQL",
        ] {
            assert!(is_comment(l), "{l}");
        }
        for l in [
            "let e = env::var(\"QUOTE_ENGINE\");",
            "#[cfg(feature = \"quote_engine\")]",
            "#![allow(dead_code)]",
            "ENV QUOTE_ENGINE=v1",
            "x = a * b; // QUOTE_ENGINE",
            "*engine = cfg.quote_engine.clone();",
        ] {
            assert!(!is_comment(l), "{l}");
        }
    }

    #[test]
    fn test_modules_and_test_items_are_test_code() {
        let src = "\
use std::env;
#[cfg(test)]
use std::collections::HashMap;

pub fn engine() -> String {
    env::var(\"QUOTE_ENGINE\").unwrap_or_default()
}

#[cfg(test)] fn helper() -> u8 {
    1
}

pub fn after() {}

#[cfg(test)]
mod tests {
    #[test]
    fn reads() {
        std::env::set_var(\"QUOTE_ENGINE\", \"v2\");
        super::engine().parse::<u8>().unwrap();
    }
}
";
        let lines: Vec<&str> = src.lines().collect();
        let at = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap() + 1;
        // The service's own code, including after a test-only `use` and a
        // test-only function, is not test code.
        assert!(!in_test_code(&lines, at("env::var(")));
        assert!(!in_test_code(&lines, at("pub fn after")));
        assert!(!in_test_code(&lines, 1));
        // The test-only items and the test module are.
        assert!(in_test_code(&lines, at("use std::collections")));
        assert!(in_test_code(&lines, at("    1")));
        assert!(in_test_code(&lines, at("set_var")));
        assert!(in_test_code(&lines, at(".unwrap()")));
    }

    #[test]
    fn route_tables_name_their_handlers() {
        assert_eq!(
            handler_in_line(
                r#"        .route("/api/quote", post(api::quote))"#,
                "/api/quote"
            )
            .as_deref(),
            Some("quote")
        );
        assert_eq!(
            handler_in_line(
                r#".route("/api/products/{id}", get(api::get_product))"#,
                "/api/products/{id}"
            )
            .as_deref(),
            Some("get_product")
        );
        assert_eq!(
            handler_in_line("app.get('/api/x/:id', loadThing);", "/api/x/:id").as_deref(),
            Some("loadThing")
        );
        assert_eq!(
            handler_in_line(r#"let s = "/api/quotes";"#, "/api/quote"),
            None
        );
        assert_eq!(route_spellings("/a/{id}"), vec!["/a/{id}", "/a/:id"]);
    }

    #[test]
    fn functions_enclose_their_lines_and_list_their_calls() {
        let src = "use x;\n\npub async fn quote(b: Body) -> R {\n    let t = line_total(&b)?;\n    if t > 0 {\n        ok(t)\n    } else { bad() }\n}\n\nfn line_total(b: &Body) -> R {\n    b.items[0].unwrap()\n}\n";
        let lines: Vec<&str> = src.lines().collect();
        assert_eq!(function_extent(&lines, 3), (3, 8));
        assert_eq!(enclosing_function(&lines, 4), Some("quote"));
        assert_eq!(enclosing_function(&lines, 11), Some("line_total"));
        assert_eq!(enclosing_function(&lines, 1), None);
        let body = lines[2..8].join("\n");
        let c = calls(&body);
        assert!(c.contains("line_total") && c.contains("bad"), "{c:?}");
    }

    #[test]
    fn a_line_could_emit_a_template_by_its_constant_words() {
        let w = template_words("Cannot compute total for cart <*>");
        assert_eq!(w, vec!["cannot", "compute", "total", "for", "cart"]);
        assert!(could_emit(
            r#"tracing::error!("cannot compute the total for cart {}", id);"#,
            &w
        ));
        assert!(
            !could_emit("let total = compute(cart);", &w),
            "no string literal"
        );
        assert!(!could_emit(r#"log("cart is empty")"#, &w), "too few words");
    }

    #[test]
    fn failure_paths_are_recognised() {
        assert!(is_failure_path("    let v = items.first().unwrap();"));
        assert!(is_failure_path(r#"    panic!("boom")"#));
        assert!(!is_failure_path("    // do not unwrap() here"));
        assert!(!is_failure_path("    let v = items.first();"));
    }
}
