//! Builds of `demo-app` at a git revision, made by the runtime itself.
//!
//! Why here and not in the CLI: the control API must never take a program
//! path from the network (anything that can reach the port could run any
//! program). A deployment names a *revision* instead; the runtime resolves it
//! in its own repository, builds `demo-app` there in a throw-away worktree and
//! runs only what it built. A scenario may also build a revision with a patch
//! applied (a real broken change to deploy); the patched tree is committed in
//! the worktree so the deployment names a real commit the investigator can
//! diff, kept reachable under `refs/devops-agent-demo/builds/`.
//!
//! Layout under `<state>/builds/`: `demo-app-<sha>` (the binaries) and
//! `target/` (one cargo cache shared by every build). Worktrees are removed
//! once their build is done.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where revisions come from and where builds go.
#[derive(Debug, Clone)]
pub struct Builds {
    repo: PathBuf,
    dir: PathBuf,
}

/// A `demo-app` binary built from a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub binary: PathBuf,
    /// The full commit id the binary was built from.
    pub git_sha: String,
}

/// Why a revision could not be built, by whose fault: the control API
/// answers each kind with its own status (see `control::deploy_status`).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The request named something that is not a commit (or a patch that is
    /// not there): the caller's mistake.
    #[error("{0}")]
    BadRevision(String),
    /// The revision is a commit, but it does not build (or the patch does not
    /// apply to it): the revision's fault, not the environment's.
    #[error("{0}")]
    Failed(String),
    /// The environment itself failed: git or cargo missing, the build
    /// directory not writable.
    #[error("{0}")]
    Internal(String),
}

impl Builds {
    /// `repo`: the git repository revisions are resolved in; `dir`: the build directory.
    pub fn new(repo: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Builds {
        Builds {
            repo: repo.into(),
            dir: dir.into(),
        }
    }

    /// Resolves `rev` to a full commit id of the repository.
    pub fn resolve(&self, rev: &str) -> Result<String, BuildError> {
        if rev.is_empty() || rev.starts_with('-') || rev.len() > 200 {
            return Err(BuildError::BadRevision(format!(
                "revision {rev:?} is not a valid git revision"
            )));
        }
        let out = self
            .git()
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{rev}^{{commit}}"))
            .output()
            .map_err(|e| {
                BuildError::Internal(format!("git is required to deploy a revision: {e}"))
            })?;
        if !out.status.success() {
            return Err(BuildError::BadRevision(format!(
                "revision {rev:?} is not a commit of the repository {}",
                self.repo.display()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `demo-app` built at `rev` (reused when that commit was built before).
    pub fn revision(&self, rev: &str) -> Result<Build, BuildError> {
        let sha = self.resolve(rev)?;
        let binary = self.binary_path(&sha)?;
        if binary.is_file() {
            return Ok(Build {
                binary,
                git_sha: sha,
            });
        }
        let tree = self.worktree(&sha)?;
        let built = self.cargo_build(&tree.path, &sha, &binary);
        drop(tree);
        built.map(|()| Build {
            binary,
            git_sha: sha,
        })
    }

    /// `demo-app` built at `rev` with `patch` applied (`git apply`); the result
    /// is committed so that the build names a real commit.
    pub fn patched(&self, rev: &str, patch: &Path, message: &str) -> Result<Build, BuildError> {
        let base = self.resolve(rev)?;
        let patch = std::path::absolute(patch)
            .map_err(|e| BuildError::Internal(format!("patch {}: {e}", patch.display())))?;
        if !patch.is_file() {
            return Err(BuildError::BadRevision(format!(
                "patch {} does not exist",
                patch.display()
            )));
        }
        let tree = self.worktree(&base)?;
        run(
            self.git_in(&tree.path)
                .args(["apply", "--whitespace=nowarn"])
                .arg(&patch),
            &format!("applying {} to {}", patch.display(), short(&base)),
        )?;
        run(
            self.git_in(&tree.path).args(["add", "-A"]),
            "staging the patched tree",
        )?;
        run(
            self.git_in(&tree.path)
                .args([
                    "-c",
                    "user.name=devops-agent-demo",
                    "-c",
                    "user.email=devops-agent-demo@localhost",
                    "-c",
                    "commit.gpgsign=false",
                    "commit",
                    "--no-verify",
                    "--quiet",
                    "-m",
                ])
                .arg(message),
            "committing the patched tree",
        )?;
        let out = self
            .git_in(&tree.path)
            .args(["rev-parse", "HEAD"])
            .output()
            .map_err(|e| BuildError::Internal(format!("git rev-parse: {e}")))?;
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // Keep the commit reachable: the investigator diffs it later.
        run(
            self.git().args([
                "update-ref",
                &format!("refs/devops-agent-demo/builds/{sha}"),
                &sha,
            ]),
            "keeping the patched commit",
        )?;
        let binary = self.binary_path(&sha)?;
        if !binary.is_file() {
            self.cargo_build(&tree.path, &sha, &binary)?;
        }
        Ok(Build {
            binary,
            git_sha: sha,
        })
    }

    fn binary_path(&self, sha: &str) -> Result<PathBuf, BuildError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            BuildError::Internal(format!("cannot create {}: {e}", self.dir.display()))
        })?;
        Ok(self.dir.join(format!("demo-app-{sha}")))
    }

    fn git(&self) -> Command {
        self.git_in(&self.repo)
    }

    fn git_in(&self, dir: &Path) -> Command {
        let mut c = Command::new("git");
        c.arg("-C").arg(dir);
        c
    }

    fn worktree(&self, sha: &str) -> Result<Worktree, BuildError> {
        let path = self.dir.join(format!("src-{sha}"));
        if path.exists() {
            // Left over by an interrupted build.
            let _ = self
                .git()
                .args(["worktree", "remove", "--force"])
                .arg(&path)
                .output();
            let _ = std::fs::remove_dir_all(&path);
            let _ = self.git().args(["worktree", "prune"]).output();
        }
        run(
            self.git()
                .args(["worktree", "add", "--detach", "--quiet"])
                .arg(&path)
                .arg(sha),
            &format!("git worktree add for {}", short(sha)),
        )?;
        Ok(Worktree {
            repo: self.repo.clone(),
            path,
        })
    }

    fn cargo_build(&self, src: &Path, sha: &str, binary: &Path) -> Result<(), BuildError> {
        let target = self.dir.join("target");
        let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--release", "--quiet", "-p", "demo-app"])
            .current_dir(src)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .map_err(|e| {
                BuildError::Internal(format!("cargo is required to build a revision: {e}"))
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(15).collect();
            return Err(BuildError::Failed(format!(
                "building demo-app at {} failed:\n{}",
                short(sha),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        // Copy then rename, so a concurrent reader never sees half a binary.
        let tmp = binary.with_extension("partial");
        std::fs::copy(target.join("release/demo-app"), &tmp)
            .and_then(|_| std::fs::rename(&tmp, binary))
            .map_err(|e| BuildError::Internal(format!("cannot store the build: {e}")))
    }
}

/// A worktree removed when dropped, whatever happened to its build.
struct Worktree {
    repo: PathBuf,
    path: PathBuf,
}

impl Drop for Worktree {
    fn drop(&mut self) {
        let _ = Command::new("git")
            .arg("-C")
            .arg(&self.repo)
            .args(["worktree", "remove", "--force"])
            .arg(&self.path)
            .output();
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), BuildError> {
    let out = cmd
        .output()
        .map_err(|e| BuildError::Internal(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BuildError::Failed(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let s = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    }

    #[test]
    fn revisions_that_are_not_commits_are_refused_by_name() {
        let repo = tempfile::tempdir().unwrap();
        git(repo.path(), &["init", "-q"]);
        std::fs::write(repo.path().join("f"), "x").unwrap();
        git(repo.path(), &["add", "f"]);
        git(repo.path(), &["commit", "-qm", "one"]);
        let b = Builds::new(repo.path(), repo.path().join(".builds"));
        let sha = b.resolve("HEAD").unwrap();
        assert_eq!(sha.len(), 40);
        for bad in ["", "--output=/tmp/x", "no-such-branch", "HEAD~5"] {
            match b.resolve(bad) {
                Err(BuildError::BadRevision(m)) => assert!(m.contains("revision"), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_patched_tree_becomes_a_kept_commit_and_its_worktree_is_removed() {
        let repo = tempfile::tempdir().unwrap();
        git(repo.path(), &["init", "-q"]);
        std::fs::write(repo.path().join("f"), "one\n").unwrap();
        git(repo.path(), &["add", "f"]);
        git(repo.path(), &["commit", "-qm", "one"]);
        let patch = repo.path().join("change.patch");
        std::fs::write(&patch, "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-one\n+two\n").unwrap();
        let b = Builds::new(repo.path(), repo.path().join(".builds"));
        // No Cargo workspace here: the build itself fails, after the commit is made.
        let err = b
            .patched("HEAD", &patch, "scenario: f says two")
            .unwrap_err();
        assert!(
            matches!(err, BuildError::Failed(ref m) if m.contains("building demo-app")),
            "{err}"
        );
        let refs = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args([
                "for-each-ref",
                "--format=%(objectname)",
                "refs/devops-agent-demo/builds/",
            ])
            .output()
            .unwrap();
        let sha = String::from_utf8_lossy(&refs.stdout).trim().to_string();
        assert_eq!(sha.len(), 40, "the patched commit is kept under a ref");
        let show = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["show", &format!("{sha}:f")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&show.stdout), "two\n");
        assert!(
            !repo
                .path()
                .join(".builds")
                .join(format!("src-{}", b.resolve("HEAD~0").unwrap()))
                .exists()
        );
        let list = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["worktree", "list"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&list.stdout).lines().count(),
            1,
            "worktree removed"
        );
    }
}
