//! Who is running a run: the lease a process holds on a run while it works on it, so that a
//! second process (`--resume` typed while the first still runs) is refused instead of training
//! the same trials. (Trials have leases of their own, held by worker processes: see
//! `claims.rs` and `store/SCHEMA.md`; a worker's writes are fenced on the trial and its attempt.)
//!
//! A process takes a run with [`crate::Store::acquire_run`] and renews the lease while it works
//! ([`crate::BlockingStore::hold_run`] renews it in the background). Another process may take
//! the run over when the lease has lapsed, or at once when the holder is known to be gone: on the
//! same machine (and process namespace) a holder whose process id no longer names the same
//! process is gone. Across machines only the lease's end tells.

use std::sync::OnceLock;
use std::time::Duration;

/// How long a run lease lasts without renewal. Long enough that a busy machine renews in time
/// (renewals come every [`RUN_LEASE_RENEW`]), short enough that a run whose machine died can be
/// resumed elsewhere soon.
pub const RUN_LEASE: Duration = Duration::from_secs(60);

/// How often a holder renews its run lease.
pub const RUN_LEASE_RENEW: Duration = Duration::from_secs(10);

/// A process as the holder of a lease: host, process namespace, process id and the process's
/// start time, so that a recycled process id is not mistaken for the holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOwner {
    host: String,
    /// `/proc/self/ns/pid` (e.g. `4026531836`); two containers on one host have the same host
    /// name but see each other's process ids differently, so liveness is only judged within
    /// the same namespace. `-` when unknown.
    namespace: String,
    pid: u32,
    /// The process's start time: clock ticks since boot from `/proc/PID/stat` where there is a
    /// `/proc`, else milliseconds since the epoch when it first asked (then never checkable).
    start: String,
}

impl RunOwner {
    /// This process.
    pub fn this_process() -> RunOwner {
        static THIS: OnceLock<RunOwner> = OnceLock::new();
        THIS.get_or_init(|| {
            let pid = std::process::id();
            RunOwner {
                host: host_name(),
                namespace: pid_namespace().unwrap_or_else(|| "-".to_owned()),
                pid,
                start: process_start(pid).unwrap_or_else(|| format!("m{}", crate::time::now_millis())),
            }
        })
        .clone()
    }

    /// The stored form, `host:namespace:pid:start`.
    pub fn as_text(&self) -> String {
        format!("{}:{}:{}:{}", self.host, self.namespace, self.pid, self.start)
    }

    /// Parses the stored form; `None` for anything else (a hand-edited row), which then counts
    /// as a holder whose liveness is unknown.
    pub fn parse(text: &str) -> Option<RunOwner> {
        let mut parts = text.rsplitn(4, ':');
        let start = parts.next()?.to_owned();
        let pid = parts.next()?.parse().ok()?;
        let namespace = parts.next()?.to_owned();
        let host = parts.next()?.to_owned();
        Some(RunOwner { host, namespace, pid, start })
    }

    /// For messages: `process 1234 on node7`.
    pub fn describe(text: &str) -> String {
        match RunOwner::parse(text) {
            Some(owner) => format!("process {} on {}", owner.pid, crate::escape_control(&owner.host)),
            None => format!("{:?}", text),
        }
    }

    /// Whether the process this names has certainly ended (seen from this process). `false`
    /// when that cannot be known here: another machine or namespace, or no `/proc`.
    pub fn is_gone(&self) -> bool {
        let here = RunOwner::this_process();
        if self.host != here.host || self.namespace != here.namespace || self.namespace == "-" {
            return false;
        }
        if self.start.starts_with('m') || !std::path::Path::new("/proc/self/stat").exists() {
            return false;
        }
        match process_start(self.pid) {
            None => true,
            Some(start) => start != self.start,
        }
    }
}

/// The machine's name (`/proc/sys/kernel/hostname`, `$HOSTNAME`), without `:` so the stored
/// form splits. Also names worker processes.
pub fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    name.replace(':', "_")
}

/// The process-id namespace this process lives in (Linux).
fn pid_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_string_lossy();
    let inode = text.strip_prefix("pid:[")?.strip_suffix(']')?;
    Some(inode.to_owned())
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`), or `None`
/// when there is no such process (or no `/proc`).
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 on; the start time is field 22.
    after_name.split_whitespace().nth(19).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_its_text_round_trips() {
        let me = RunOwner::this_process();
        assert_eq!(RunOwner::parse(&me.as_text()), Some(me.clone()));
        assert!(!me.is_gone());
        assert!(RunOwner::describe(&me.as_text()).contains(&std::process::id().to_string()));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_that_ended_or_a_recycled_pid_is_gone() {
        let me = RunOwner::this_process();
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        let ended = RunOwner { pid, ..me.clone() };
        assert!(ended.is_gone());
        let recycled = RunOwner { start: "1".to_owned(), ..me.clone() };
        assert!(recycled.is_gone());
        let elsewhere = RunOwner { host: "another-host".to_owned(), pid, ..me };
        assert!(!elsewhere.is_gone(), "another machine's process cannot be judged from here");
    }
}
