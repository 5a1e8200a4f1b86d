//! Per-process CPU and memory figures from `/proc/<pid>`, the local stand-in
//! for the cgroup statistics ECS reports for a Fargate task.

/// CPU time used so far (seconds) and resident memory (bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/statm`; None once the process is gone.
pub fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // USER_HZ is 100 on the Linux ABIs this runs on (x86_64, aarch64).
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(Usage {
        cpu_seconds: (utime + stime) / 100.0,
        rss_bytes: resident * rustix::param::page_size() as u64,
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
