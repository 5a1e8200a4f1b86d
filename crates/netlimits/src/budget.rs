//! The descriptor budget: a server that may hold `max_connections` sockets needs that
//! many descriptors (more for a proxy: the caller says how many one connection may
//! hold, e.g. its socket plus its upstream connections) plus some for itself. Checked once at
//! start-up so the shortfall is a clear message, not EMFILE under load.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept free for everything that is not a connection: the listener, log
/// and database files, pipes to child processes, health-check probes.
pub const RESERVED_FDS: u64 = 64;

/// What the process may open, after raising the soft limit as far as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The soft `RLIMIT_NOFILE` now in force (`None`: unlimited).
    pub soft: Option<u64>,
    /// The hard limit (`None`: unlimited).
    pub hard: Option<u64>,
    /// The soft limit before this process raised it, if it did.
    pub raised_from: Option<u64>,
}

impl Budget {
    /// Raises the soft `RLIMIT_NOFILE` to the hard limit (always allowed without
    /// privileges) and reports the result. A failure to raise leaves the limit as is.
    pub fn raise() -> Budget {
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        let mut budget = Budget {
            soft: current,
            hard: maximum,
            raised_from: None,
        };
        if current.is_some() && current != maximum {
            let wanted = Rlimit {
                current: maximum,
                maximum,
            };
            if setrlimit(Resource::Nofile, wanted).is_ok() {
                budget.raised_from = current;
                budget.soft = maximum;
            }
        }
        budget
    }

    /// How many connections fit when each needs `fds_per_connection` descriptors.
    pub fn connections(&self, fds_per_connection: u64) -> u64 {
        match self.soft {
            None => u64::MAX,
            Some(soft) => soft.saturating_sub(RESERVED_FDS) / fds_per_connection.max(1),
        }
    }

    /// `Ok(max_connections)` when the budget covers them, else an error that names the
    /// limit, the need and the fix, and says how many connections do fit.
    pub fn check(&self, max_connections: u64, fds_per_connection: u64) -> Result<u64, Shortfall> {
        let fits = self.connections(fds_per_connection);
        if max_connections <= fits {
            return Ok(max_connections);
        }
        Err(Shortfall {
            soft: self.soft.unwrap_or(u64::MAX),
            hard: self.hard,
            wanted: max_connections,
            fds_per_connection,
            fits,
        })
    }
}

/// The budget is below what the configured maximum of connections needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub soft: u64,
    pub hard: Option<u64>,
    pub wanted: u64,
    pub fds_per_connection: u64,
    /// Connections that do fit.
    pub fits: u64,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hard = self.hard.map_or("unlimited".into(), |h| h.to_string());
        write!(
            f,
            "the open-file limit is {} (hard limit {hard}) but {} connections need {} \
             descriptors ({} each + {RESERVED_FDS} reserved); serving at most {} connections. \
             Raise the limit (ulimit -n, or nofile in the container/unit settings) or lower \
             the maximum of connections",
            self.soft,
            self.wanted,
            self.wanted * self.fds_per_connection + RESERVED_FDS,
            self.fds_per_connection,
            self.fits
        )
    }
}

impl std::error::Error for Shortfall {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit() {
        let b = Budget::raise();
        assert_eq!(b.soft, b.hard, "{b:?}");
        assert_eq!(getrlimit(Resource::Nofile).current, b.soft);
    }

    #[test]
    fn a_short_budget_names_the_limit_and_what_fits() {
        let b = Budget {
            soft: Some(1024),
            hard: Some(1024),
            raised_from: None,
        };
        assert_eq!(b.check(400, 2), Ok(400));
        let err = b.check(1000, 2).unwrap_err();
        assert_eq!(err.fits, 480);
        let msg = err.to_string();
        assert!(msg.contains("open-file limit is 1024"), "{msg}");
        assert!(msg.contains("1000 connections need 2064"), "{msg}");
        assert!(msg.contains("serving at most 480"), "{msg}");
        let unlimited = Budget {
            soft: None,
            hard: None,
            raised_from: None,
        };
        assert_eq!(unlimited.check(1_000_000, 2), Ok(1_000_000));
    }
}
