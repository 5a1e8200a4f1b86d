//! Code history from a real git repository through the `git` command line:
//! commits between two deployed revisions, the diff with line numbers, and
//! `git grep` at a revision. The CLI keeps the dependency tree small and its
//! errors (unknown revision, not a repository) are passed on verbatim so the
//! report's gap says exactly what went wrong.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{CodeSource, Commit, Diff, DiffLine, GrepHit, SourceError, SourceResult};

/// A repository on disk.
#[derive(Debug, Clone)]
pub struct Git {
    repo: PathBuf,
}

/// Diffs larger than this many changed lines are truncated (a vendored
/// dependency bump must not make the investigation slow).
const MAX_DIFF_LINES: usize = 20_000;

impl Git {
    pub fn new(repo: &Path) -> Git {
        Git {
            repo: repo.to_path_buf(),
        }
    }

    fn run(&self, args: &[&str]) -> SourceResult<String> {
        let err = |detail: String| SourceError::Git {
            args: args.join(" "),
            detail,
        };
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.repo)
            .args(args)
            .output()
            .map_err(|e| err(format!("cannot run git: {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(err(format!(
                "in {}: {} ({})",
                self.repo.display(),
                stderr.trim(),
                out.status
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn valid_rev(rev: &str) -> SourceResult<&str> {
    // Revisions come from deployment records: refuse anything git could read as an option.
    if rev.is_empty() || rev.starts_with('-') || rev.contains("..") {
        return Err(SourceError::Git {
            args: String::new(),
            detail: format!("invalid revision {rev:?}"),
        });
    }
    Ok(rev)
}

impl CodeSource for Git {
    fn name(&self) -> &str {
        "git"
    }

    fn resolve(&self, rev: &str) -> SourceResult<String> {
        let spec = format!("{}^{{commit}}", valid_rev(rev)?);
        Ok(self
            .run(&["rev-parse", "--verify", "--quiet", &spec])
            .map_err(|_| SourceError::Git {
                args: format!("rev-parse {rev}"),
                detail: format!("revision {rev} is not in {}", self.repo.display()),
            })?
            .trim()
            .to_owned())
    }

    fn commits_between(&self, from: &str, to: &str) -> SourceResult<Vec<Commit>> {
        let range = format!("{}..{}", valid_rev(from)?, valid_rev(to)?);
        let out = self.run(&["log", "--format=%H%x1f%an%x1f%at%x1f%s", &range, "--"])?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let mut p = l.split('\u{1f}');
                Some(Commit {
                    sha: p.next()?.to_owned(),
                    author: p.next()?.to_owned(),
                    time_s: p.next()?.parse().ok()?,
                    summary: p.next().unwrap_or("").to_owned(),
                })
            })
            .collect())
    }

    fn diff(&self, from: &str, to: &str) -> SourceResult<Diff> {
        let out = self.run(&[
            "diff",
            "--unified=0",
            "--no-color",
            "--no-ext-diff",
            valid_rev(from)?,
            valid_rev(to)?,
            "--",
        ])?;
        Ok(parse_unified_diff(&out))
    }

    fn blame_line(&self, rev: &str, file: &str, line_no: u32) -> SourceResult<Option<Commit>> {
        if file.starts_with('-') {
            return Ok(None);
        }
        let range = format!("{line_no},{line_no}");
        let out = self.run(&[
            "blame",
            "--porcelain",
            "-L",
            &range,
            valid_rev(rev)?,
            "--",
            file,
        ])?;
        Ok(parse_blame(&out))
    }

    fn show(&self, rev: &str, file: &str) -> SourceResult<Option<String>> {
        if file.starts_with('-') || file.contains("..") {
            return Ok(None);
        }
        let spec = format!("{}:{file}", valid_rev(rev)?);
        match self.run(&["show", &spec]) {
            Ok(text) => Ok(Some(text)),
            // A file deleted at that revision, or a path git does not know.
            Err(SourceError::Git { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn grep(&self, rev: &str, needles: &[String]) -> SourceResult<Vec<GrepHit>> {
        let needles: Vec<&String> = needles.iter().filter(|n| !n.trim().is_empty()).collect();
        if needles.is_empty() {
            return Ok(Vec::new());
        }
        let mut args: Vec<&str> = vec!["grep", "-n", "-I", "-i", "-F", "--no-color"];
        for n in &needles {
            args.push("-e");
            args.push(n.as_str());
        }
        let rev = valid_rev(rev)?;
        args.push(rev);
        args.push("--");
        let out = match self.run(&args) {
            Ok(o) => o,
            // git grep exits 1 when nothing matched.
            Err(SourceError::Git { detail, .. }) if detail.ends_with("(exit status: 1)") => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let prefix = format!("{rev}:");
        let mut hits = Vec::new();
        for l in out.lines() {
            let rest = l.strip_prefix(&prefix).unwrap_or(l);
            let mut p = rest.splitn(3, ':');
            let (Some(file), Some(no), Some(text)) = (p.next(), p.next(), p.next()) else {
                continue;
            };
            let Ok(line_no) = no.parse() else { continue };
            let lower = text.to_ascii_lowercase();
            for n in &needles {
                if lower.contains(&n.to_ascii_lowercase()) {
                    hits.push(GrepHit {
                        file: file.to_owned(),
                        line_no,
                        text: text.trim().to_owned(),
                        needle: (*n).clone(),
                    });
                }
            }
        }
        Ok(hits)
    }
}

/// Parses `git diff --unified=0` output into files and changed lines.
/// The commit of the first line of `git blame --porcelain` output.
pub fn parse_blame(out: &str) -> Option<Commit> {
    let mut lines = out.lines();
    let sha = lines.next()?.split_whitespace().next()?.to_owned();
    if sha.len() < 7 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (mut author, mut time_s, mut summary) = (String::new(), 0, String::new());
    for l in lines {
        if let Some(a) = l.strip_prefix("author ") {
            author = a.to_owned();
        } else if let Some(t) = l.strip_prefix("author-time ") {
            time_s = t.parse().unwrap_or(0);
        } else if let Some(s) = l.strip_prefix("summary ") {
            summary = s.to_owned();
        } else if l.starts_with('\t') {
            break;
        }
    }
    Some(Commit {
        sha,
        author,
        time_s,
        summary,
    })
}

pub fn parse_unified_diff(out: &str) -> Diff {
    let mut diff = Diff::default();
    let mut file = String::new();
    let (mut old_no, mut new_no) = (0u32, 0u32);
    for l in out.lines() {
        if let Some(rest) = l.strip_prefix("+++ ") {
            file = rest.strip_prefix("b/").unwrap_or(rest).to_owned();
            if file != "/dev/null" && !diff.files.contains(&file) {
                diff.files.push(file.clone());
            }
        } else if let Some(rest) = l.strip_prefix("--- ") {
            // A deleted file keeps its old name.
            let old = rest.strip_prefix("a/").unwrap_or(rest);
            if old != "/dev/null" {
                file = old.to_owned();
            }
        } else if let Some(rest) = l.strip_prefix("@@ ") {
            // @@ -a,b +c,d @@
            let mut parts = rest.split_whitespace();
            let num = |s: Option<&str>| {
                s.and_then(|s| s.get(1..))
                    .and_then(|s| s.split(',').next())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0)
            };
            old_no = num(parts.next());
            new_no = num(parts.next());
        } else if l.starts_with("diff --git") {
            file.clear();
        } else if diff.lines.len() < MAX_DIFF_LINES {
            if let Some(text) = l.strip_prefix('+') {
                diff.lines.push(DiffLine {
                    file: file.clone(),
                    line_no: new_no,
                    added: true,
                    text: text.to_owned(),
                });
                new_no += 1;
            } else if let Some(text) = l.strip_prefix('-') {
                diff.lines.push(DiffLine {
                    file: file.clone(),
                    line_no: old_no,
                    added: false,
                    text: text.to_owned(),
                });
                old_no += 1;
            }
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_diff_lines_get_file_and_line_numbers() {
        let d = parse_unified_diff(
            "diff --git a/src/a.rs b/src/a.rs\nindex 1..2 100644\n--- a/src/a.rs\n+++ b/src/a.rs\n@@ -3,0 +4,2 @@ fn x\n+let a = 1;\n+let b = 2;\n@@ -10 +12 @@\n-old\n+new\n",
        );
        assert_eq!(d.files, vec!["src/a.rs"]);
        let got: Vec<_> = d
            .lines
            .iter()
            .map(|l| (l.line_no, l.added, l.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (4, true, "let a = 1;"),
                (5, true, "let b = 2;"),
                (10, false, "old"),
                (12, true, "new")
            ]
        );
    }

    #[test]
    fn blame_porcelain_gives_the_introducing_commit() {
        let out = "59a1d0a6c1f2e3d4b5a6978877665544332211ff 275 275 1\nauthor Dev\nauthor-mail <d@x>\nauthor-time 1795630000\nauthor-tz +0000\nsummary demo-app: quote engine v2\nfilename crates/demo-app/src/api.rs\n\t.error(\"Quote engine v2 failed\")\n";
        let c = parse_blame(out).unwrap();
        assert_eq!(c.sha, "59a1d0a6c1f2e3d4b5a6978877665544332211ff");
        assert_eq!((c.author.as_str(), c.time_s), ("Dev", 1_795_630_000));
        assert_eq!(c.summary, "demo-app: quote engine v2");
        assert!(parse_blame("fatal: no such path\n").is_none());
    }

    #[test]
    fn revisions_that_look_like_options_are_refused() {
        let g = Git::new(Path::new("."));
        assert!(g.commits_between("--all", "HEAD").is_err());
        assert!(g.resolve("a..b").is_err());
    }
}
