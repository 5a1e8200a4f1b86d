//! Supervision across the runtime's own death. Three parts, because each
//! covers a hole the others leave:
//!
//! * [`StateLock`]: one `up` per state directory. An exclusive `flock` on
//!   `<state>/up.lock`, held for the runtime's life and released by the kernel
//!   however the process ends, so a second `up` fails at once naming the
//!   holder's pid instead of both reporting ready.
//! * Tasks die with the runtime: each task runs in its own process group and is
//!   told the runtime's pid (`DEMO_APP_PARENT_PID`); `demo-app` asks the kernel
//!   for SIGKILL when its parent dies (see `demo_app::supervised`).
//! * [`stop_orphans`]: a task that outlived a killed runtime anyway (a build of
//!   `demo-app` from before the parent-death signal, deployed with `--rev`) is
//!   found at the next start from the processes recorded in the store, checked
//!   against `/proc` (same start time, same binary) so that a reused pid is
//!   never killed, and stopped with its process group.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use demo_model::events::{TaskEvent, TaskEventKind};
use demo_store::{Reader, RuntimeEvent, TaskProcess, Writer};
use rustix::process::{Pid, Signal};

use crate::now_ms;

pub const LOCK_FILE: &str = "up.lock";
/// The variable that tells a task which pid its parent (the runtime) has.
pub const PARENT_PID_VAR: &str = "DEMO_APP_PARENT_PID";

/// Why the state directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another `up` (pid {}) is running from {dir}: it holds {lock}; stop it first or use another --state-dir",
        holder.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    )]
    Held {
        dir: String,
        lock: String,
        holder: Option<u32>,
    },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The exclusive lock on a state directory; released when dropped or when the process dies.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock without waiting, and records this process's pid in it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    dir: state_dir.display().to_string(),
                    lock: path.display().to_string(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(StateLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `/proc/<pid>/stat` field 22: when the process started, in clock ticks
/// since boot. With the pid, it names one process: a reused pid has another.
pub fn start_ticks(pid: u32) -> Option<u64> {
    Some(demo_procfs::Stat::read(demo_procfs::Proc::Pid(pid))?.start_ticks)
}

/// The binary a process runs (without the " (deleted)" a rebuilt file gets).
pub fn exe(pid: u32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let s = link.display().to_string();
    Some(s.strip_suffix(" (deleted)").unwrap_or(&s).to_string())
}

/// Whether `pid` still runs the process recorded in `p` (same start, same binary).
pub fn is_same_process(p: &TaskProcess) -> bool {
    start_ticks(p.pid) == Some(p.start_ticks) && exe(p.pid).as_deref() == Some(p.exe.as_str())
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; it only waits for its (dead) parent's replacement to reap it.
    demo_procfs::Stat::read(demo_procfs::Proc::Pid(pid)).is_some_and(|s| !s.is_zombie())
}

/// Signals a task's process group (each task leads its own), or the process
/// alone if the group is gone.
pub fn signal_group(pid: u32, sig: Signal) {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    if rustix::process::kill_process_group(pid, sig).is_err() {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// A task process of an earlier run found still running and stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub task_id: String,
    pub pid: u32,
}

/// Stops the tasks an earlier run of this state directory left running, and
/// marks every process of an earlier run as ended. Each orphan is recorded as
/// a runtime event and as the task's `stopped` event.
pub fn stop_orphans(
    reader: &Reader,
    writer: &Writer,
) -> Result<Vec<Orphan>, demo_store::StoreError> {
    let mut stopped = Vec::new();
    for p in reader.unended_task_processes()? {
        if is_same_process(&p) {
            signal_group(p.pid, Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(2);
            while alive(p.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(p.pid) {
                signal_group(p.pid, Signal::KILL);
            }
            let detail = format!(
                "{} (pid {}, {}) outlived the previous run of this state directory; stopped at start-up",
                p.task_id, p.pid, p.exe
            );
            writer.runtime_event(RuntimeEvent {
                ts_ms: now_ms(),
                kind: "orphan_stopped".into(),
                detail: detail.clone(),
            })?;
            writer.task_event(TaskEvent {
                ts_ms: now_ms(),
                task_id: p.task_id.clone(),
                kind: TaskEventKind::Stopped,
                exit_code: None,
                reason: Some(detail),
                deployment_id: None,
            });
            stopped.push(Orphan {
                task_id: p.task_id.clone(),
                pid: p.pid,
            });
        }
        writer.task_process_ended(&p.task_id, now_ms());
    }
    writer.flush();
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_fails_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())) && msg.contains(LOCK_FILE),
            "{msg}"
        );
        drop(first);
        StateLock::acquire(dir.path()).expect("released when dropped");
    }

    #[test]
    fn this_process_is_recognised_and_a_different_start_time_is_not() {
        let me = std::process::id();
        let p = TaskProcess {
            task_id: "task-0001".into(),
            pid: me,
            start_ticks: start_ticks(me).unwrap(),
            exe: exe(me).unwrap(),
            started_ms: 0,
        };
        assert!(is_same_process(&p));
        assert!(!is_same_process(&TaskProcess {
            start_ticks: p.start_ticks + 1,
            ..p.clone()
        }));
        assert!(!is_same_process(&TaskProcess {
            exe: "/bin/true".into(),
            ..p
        }));
    }
}
