//! One reader of Linux `/proc/<pid>/stat` and `/proc/<pid>/statm`, shared by
//! `demo-app` (its own process figures for `/metrics` and `/health`) and the
//! local runtime (its tasks' CPU and memory, orphan detection, zombies).
//!
//! CPU times come in clock ticks of the kernel's `USER_HZ` and memory in
//! pages: both are converted with the values the system reports
//! (`sysconf(_SC_CLK_TCK)`, the page size), never assumed. The command name
//! (field 2) may hold spaces and parentheses, so fields are counted from the
//! last `)`.

#![forbid(unsafe_code)]

/// Which process (or thread) to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    /// The calling process (`/proc/self`).
    Current,
    /// The calling thread (`/proc/thread-self`).
    CurrentThread,
    /// Another process by pid.
    Pid(u32),
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Proc::Current => format!("/proc/self/{file}"),
            Proc::CurrentThread => format!("/proc/thread-self/{file}"),
            Proc::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }
}

/// The fields of `/proc/<pid>/stat` this project reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `T`, ...
    pub state: char,
    /// Fields 14 and 15: user and system CPU time, in clock ticks.
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    /// Field 20.
    pub threads: u64,
    /// Field 22: when the process started, in clock ticks since boot (with the
    /// pid, it names one process: a reused pid has another start).
    pub start_ticks: u64,
}

impl Stat {
    /// Reads and parses; `None` once the process is gone (or off Linux).
    pub fn read(p: Proc) -> Option<Stat> {
        Stat::parse(&std::fs::read_to_string(p.path("stat")).ok()?)
    }

    /// Parses the text of a `stat` file.
    pub fn parse(text: &str) -> Option<Stat> {
        let rest = text.get(text.rfind(')')? + 2..)?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3, so field n is f[n - 3].
        let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            state: f.first()?.chars().next()?,
            utime_ticks: num(14)?,
            stime_ticks: num(15)?,
            threads: num(20)?,
            start_ticks: num(22)?,
        })
    }

    /// User plus system CPU time in seconds, at the system's real tick rate.
    pub fn cpu_seconds(&self) -> f64 {
        (self.utime_ticks + self.stime_ticks) as f64 / clock_ticks_per_second()
    }

    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// `/proc/<pid>/statm`: memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statm {
    pub virtual_bytes: u64,
    pub resident_bytes: u64,
}

impl Statm {
    pub fn read(p: Proc) -> Option<Statm> {
        Statm::parse(&std::fs::read_to_string(p.path("statm")).ok()?)
    }

    /// Parses the text of a `statm` file (sizes in pages).
    pub fn parse(text: &str) -> Option<Statm> {
        let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        let page = rustix::param::page_size() as u64;
        let virt = f.next()??;
        let resident = f.next()??;
        Some(Statm {
            virtual_bytes: virt * page,
            resident_bytes: resident * page,
        })
    }
}

/// The kernel's `USER_HZ`, as the system reports it.
pub fn clock_ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and a ')' of its own.
        let text = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 40 0 0 20 0 7 0 123456 1000000 300 18446744073709551615";
        let s = Stat::parse(text).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!((s.utime_ticks, s.stime_ticks), (250, 40));
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_ticks, 123456);
        assert!(!s.is_zombie());
        assert!(Stat::parse("1 (x) Z 0").is_none(), "truncated");
        assert!(Stat::parse("no parenthesis").is_none());
    }

    #[test]
    fn statm_is_in_bytes() {
        let page = rustix::param::page_size() as u64;
        let m = Statm::parse("100 25 3 1 0 20 0").unwrap();
        assert_eq!(m.virtual_bytes, 100 * page);
        assert_eq!(m.resident_bytes, 25 * page);
        assert!(Statm::parse("").is_none());
    }

    #[test]
    fn reads_this_process_and_thread() {
        let me = Stat::read(Proc::Current).unwrap();
        assert!(me.threads >= 1);
        assert_eq!(
            me.start_ticks,
            Stat::read(Proc::Pid(std::process::id()))
                .unwrap()
                .start_ticks
        );
        assert!(Stat::read(Proc::CurrentThread).is_some());
        assert!(Statm::read(Proc::Current).unwrap().resident_bytes > 0);
        assert!(Stat::read(Proc::Pid(u32::MAX)).is_none());
    }

    /// This thread's CPU time in nanoseconds from the scheduler's own accounting
    /// (no clock ticks involved), to check the tick conversion against.
    fn thread_cpu_ns() -> u64 {
        let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        s.split_whitespace().next().unwrap().parse().unwrap()
    }

    #[test]
    fn cpu_seconds_follow_the_real_clock_tick() {
        let before = Stat::read(Proc::CurrentThread).unwrap().cpu_seconds();
        // Busy until this thread has had 0.4 s of CPU by the scheduler's count, however
        // long that takes on a loaded machine.
        let start = thread_cpu_ns();
        let mut x = 0u64;
        while thread_cpu_ns() - start < 400_000_000 {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        let used = Stat::read(Proc::CurrentThread).unwrap().cpu_seconds() - before;
        // 0.4 s, less a tick of rounding at each end; a wrong tick rate is 10x off.
        assert!((0.35..0.5).contains(&used), "{used} s for 0.4 s of CPU");
    }
}
