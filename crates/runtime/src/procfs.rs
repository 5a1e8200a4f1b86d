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
    // utime and stime count clock ticks: the kernel's USER_HZ, asked for, not assumed.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(Usage {
        cpu_seconds: (utime + stime) / rustix::param::clock_ticks_per_second() as f64,
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

    /// This thread's CPU time in nanoseconds, from the scheduler's own
    /// accounting (no clock ticks involved).
    fn thread_cpu_ns() -> u64 {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        s.split_whitespace().next().unwrap().parse().unwrap()
    }

    #[test]
    fn cpu_seconds_follow_the_real_clock_tick() {
        let before = super::usage(std::process::id()).unwrap().cpu_seconds;
        // Busy until this thread has had 0.4 s of CPU by the scheduler's count, however
        // long that takes on a loaded machine.
        let start = thread_cpu_ns();
        let mut x = 0u64;
        while thread_cpu_ns() - start < 400_000_000 {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        let used = super::usage(std::process::id()).unwrap().cpu_seconds - before;
        // At least the 0.4 s (less one tick of rounding at each end), never 10x off as a
        // wrong ticks-per-second would make it (other test threads may add some).
        assert!(
            (0.35..4.0).contains(&used),
            "{used} CPU seconds for 0.4 s of this thread's CPU"
        );
    }
}
