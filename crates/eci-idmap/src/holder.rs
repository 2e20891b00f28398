//! Proof that the process holding a lease is still alive: its pid plus its start time (so that a
//! recycled pid does not keep a dead lease alive), within the current boot.

use serde::{Deserialize, Serialize};
use std::io;

/// A process that keeps a lease alive while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Holder {
    /// Process ID in the runtime's PID namespace.
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of /proc/PID/stat).
    pub start_time: u64,
}

impl Holder {
    /// The calling process.
    pub fn current() -> io::Result<Holder> {
        Holder::of(std::process::id() as i32)
    }

    /// Process `pid`, as it is now.
    pub fn of(pid: i32) -> io::Result<Holder> {
        Ok(Holder {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// True while the same process (same pid and start time) exists, and whenever that cannot
    /// be told: only a process that is gone (no /proc entry) or a pid that another process has
    /// taken since counts as dead. A failed read (out of descriptors or memory, no permission)
    /// must never release a live container's IDs to another. (A /proc that hides processes
    /// from the runtime, hidepid=2 for a runtime that is not root, answers ENOENT: that reads
    /// as gone, and such a setup cannot share leases.)
    pub fn is_alive(&self) -> bool {
        alive_by(start_time(self.pid), self.start_time)
    }

    /// True once the process has ended: gone, its pid taken by another process since, or a
    /// zombie (ended and not yet reaped, which [`Holder::is_alive`] still counts as alive) with
    /// no other thread left (a main thread that ended alone reads as a zombie while the
    /// process's other threads run on). A read that fails otherwise counts as not ended.
    ///
    /// ```
    /// let me = eci_idmap::Holder::current()?;
    /// assert!(!me.has_exited());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn has_exited(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) if parse_start_time(&stat) != Some(self.start_time) => true,
            Ok(stat) => parse_state(&stat) == Some('Z') && !has_other_threads(self.pid),
            Err(err) => !alive_by(Err(err), self.start_time),
        }
    }
}

/// Whether a holder that started at `expected` lives, given what reading its start time gave.
fn alive_by(read: io::Result<u64>, expected: u64) -> bool {
    match read {
        Ok(started) => started == expected,
        Err(err) => {
            err.kind() != io::ErrorKind::NotFound && err.raw_os_error() != Some(libc::ESRCH)
        }
    }
}

/// Field 22 of /proc/PID/stat. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last ')'.
pub fn start_time(pid: i32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed /proc/{pid}/stat"),
        )
    })
}

/// Whether process `pid` has threads besides its leader (true when that cannot be read).
fn has_other_threads(pid: i32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(true, |tasks| tasks.count() > 1)
}

/// Field 3 of /proc/PID/stat: the process's state (`Z` for a zombie).
fn parse_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

fn parse_start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields after the command start at field 3 (state); start time is field 22.
    after_comm.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// This boot's identity, so that leases from before a reboot are recognised as dead.
pub fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_time_past_awkward_command_names() {
        let stat = "42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_state(stat), Some('S'));
        assert_eq!(parse_start_time("garbage"), None);
        assert_eq!(parse_state("garbage"), None);
    }

    #[test]
    fn a_zombie_has_exited_though_it_counts_as_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let holder = Holder::of(child.id() as i32).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !holder.has_exited() {
            assert!(std::time::Instant::now() < deadline, "true never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(holder.is_alive(), "a zombie keeps its lease");
        child.wait().unwrap();
        assert!(holder.has_exited() && !holder.is_alive());
        assert!(!Holder::current().unwrap().has_exited());
    }

    #[test]
    fn only_a_process_that_is_gone_or_replaced_counts_as_dead() {
        let gone = io::Error::from_raw_os_error(libc::ENOENT);
        assert!(!alive_by(Err(gone), 7));
        assert!(!alive_by(Err(io::Error::from_raw_os_error(libc::ESRCH)), 7));
        assert!(!alive_by(Ok(8), 7), "its pid taken by another process");
        assert!(alive_by(Ok(7), 7));
        for errno in [libc::EMFILE, libc::ENOMEM, libc::EACCES, libc::EIO] {
            let unknown = io::Error::from_raw_os_error(errno);
            assert!(alive_by(Err(unknown), 7), "errno {errno} tells nothing");
        }
        let malformed = io::Error::new(io::ErrorKind::InvalidData, "malformed");
        assert!(alive_by(Err(malformed), 7));
    }

    #[test]
    fn the_current_process_is_alive_and_a_changed_start_time_is_not() {
        let me = Holder::current().unwrap();
        assert!(me.is_alive());
        assert!(!Holder {
            start_time: me.start_time + 1,
            ..me
        }
        .is_alive());
    }
}
