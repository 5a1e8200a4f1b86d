//! Dying with the local runtime. When `up` is killed (SIGKILL, a crash), its
//! tasks must not keep serving, reparented, for minutes: the runtime names its
//! pid in [`PARENT_PID_VAR`] and the task asks the kernel for SIGKILL when its
//! parent goes (Linux `PR_SET_PDEATHSIG`, through rustix's safe wrapper: the
//! workspace forbids the `unsafe` a `pre_exec` hook in the runtime would need).
//!
//! The request only covers deaths after it is made, so the parent is checked
//! right after: if it is already gone, the task exits at once. Without the
//! variable (in a container, run by hand) nothing changes.

/// Set by the local runtime to its own pid.
pub const PARENT_PID_VAR: &str = "DEMO_APP_PARENT_PID";

/// What to do after [`die_with_parent`].
#[derive(Debug, PartialEq, Eq)]
pub enum Supervision {
    /// No supervising parent named.
    Unsupervised,
    /// The kernel kills this process when the parent dies.
    Armed { parent: u32 },
}

/// Arms the parent-death signal if the runtime asked for it. An error means
/// the process must exit now: the value is bad, or the parent is already gone.
pub fn die_with_parent() -> Result<Supervision, String> {
    arm(std::env::var(PARENT_PID_VAR).ok().as_deref())
}

fn arm(value: Option<&str>) -> Result<Supervision, String> {
    let Some(raw) = value else {
        return Ok(Supervision::Unsupervised);
    };
    let parent: u32 = raw
        .parse()
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| format!("{PARENT_PID_VAR}={raw:?} is not a process id"))?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| format!("cannot ask for a parent-death signal: {e}"))?;
    // Had the parent died before the request, the signal will never come: look.
    let now = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    if now != parent {
        return Err(format!(
            "the runtime that started this task (pid {parent}) is gone (parent is now {now}); exiting"
        ));
    }
    Ok(Supervision::Armed { parent })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> u32 {
        rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32)
    }

    #[test]
    fn without_the_variable_nothing_changes() {
        assert_eq!(arm(None), Ok(Supervision::Unsupervised));
    }

    #[test]
    fn a_value_that_is_not_a_process_id_is_refused_naming_the_variable() {
        for bad in ["", "abc", "-5", "1", "0", "99999999999"] {
            let err = arm(Some(bad)).unwrap_err();
            assert!(err.contains(PARENT_PID_VAR), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_parent_that_is_not_the_one_named_means_exit() {
        // As if the runtime had died before the request: the parent is someone else now.
        let err = arm(Some(&(parent() + 1).to_string())).unwrap_err();
        assert!(err.contains("is gone"), "{err}");
    }

    #[test]
    fn the_real_parent_arms_the_signal() {
        let p = parent();
        assert_eq!(
            arm(Some(&p.to_string())),
            Ok(Supervision::Armed { parent: p })
        );
    }
}
