//! Per-process CPU and memory figures of the tasks, the local stand-in for the
//! cgroup statistics ECS reports for a Fargate task (read with `demo_procfs`,
//! the one `/proc` reader of the workspace).

use demo_procfs::{Proc, Stat, Statm};

/// CPU time used so far (seconds) and resident memory (bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// `None` once the process is gone.
pub fn usage(pid: u32) -> Option<Usage> {
    Some(Usage {
        cpu_seconds: Stat::read(Proc::Pid(pid))?.cpu_seconds(),
        rss_bytes: Statm::read(Proc::Pid(pid))?.resident_bytes,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_usage() {
        let u = super::usage(std::process::id()).unwrap();
        assert!(u.rss_bytes > 1_000_000);
        assert!(super::usage(u32::MAX).is_none());
    }
}
