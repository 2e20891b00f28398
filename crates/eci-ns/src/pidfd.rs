//! Process handles that cannot be confused by pid reuse.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::sys::{check_int, pidfd_open, pidfd_send_signal, retry, Errno, SysResult};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called exit with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// The code a shell would report: the exit code, or 128 + the signal number.
    pub fn code(&self) -> i32 {
        match *self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => 128 + signal,
        }
    }

    /// Decodes a waitpid(2) status.
    pub fn from_wait_status(status: i32) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exited with code {code}"),
            ExitStatus::Signaled(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// A pidfd: a handle on one process that stays valid, and never refers to another process,
/// after the pid is reused.
///
/// ```
/// use eci_ns::pidfd::PidFd;
/// let me = PidFd::open(std::process::id() as i32).unwrap();
/// assert!(me.is_alive());
/// ```
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: i32,
}

impl PidFd {
    /// Opens a pidfd for `pid`. Only race-free for one's own children (not yet reaped).
    pub fn open(pid: i32) -> SysResult<PidFd> {
        let fd = pidfd_open(pid)?;
        // SAFETY: pidfd_open returned a new fd that we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PidFd { fd, pid })
    }

    /// Wraps a pidfd returned by clone3(CLONE_PIDFD).
    ///
    /// # Safety
    /// `fd` must be an open pidfd for `pid` that nothing else owns.
    pub unsafe fn from_raw(fd: RawFd, pid: i32) -> PidFd {
        // SAFETY: guaranteed by the caller.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        PidFd { fd, pid }
    }

    /// A second descriptor for the same process.
    pub fn try_clone(&self) -> std::io::Result<PidFd> {
        Ok(PidFd {
            fd: self.fd.try_clone()?,
            pid: self.pid,
        })
    }

    /// The pid in the caller's PID namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: i32) -> SysResult<()> {
        pidfd_send_signal(self.fd.as_raw_fd(), signal)
    }

    /// True until the process has exited (it may still be an unreaped zombie after that).
    pub fn is_alive(&self) -> bool {
        self.poll(libc::POLLIN, 0).is_ok_and(|events| events == 0)
    }

    /// Waits for the process to exit. A child of the caller is reaped; any other process (one
    /// its own parent reaps, such as an init a container manager's shim adopted) is left to
    /// that parent, and how it ended is read instead: from its `/proc` entry while it is a
    /// zombie (which needs the right to trace it, as host root has), from what the kernel keeps
    /// for pidfds once it is reaped ([`exit_status_outlives_reaping`]). ECHILD if neither can
    /// say.
    pub fn wait(&self) -> SysResult<ExitStatus> {
        match self.wait_with(0) {
            Err(Errno(libc::ECHILD)) => self.exit_of_other(true),
            waited => waited,
        }
        .map(|s| s.expect("a blocking wait always returns a status"))
    }

    /// Whether the process exits within `timeout` (at once if it has already).
    pub fn exits_within(&self, timeout: std::time::Duration) -> bool {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        self.poll(libc::POLLIN, ms).is_ok_and(|events| events != 0)
    }

    /// Sends SIGKILL and reaps the process, waiting `patience` at most: a SIGKILL takes effect
    /// only when the process leaves the kernel, and a container can hold one of its processes
    /// there without end (in a FUSE request that a server of the container has read and never
    /// answers). One not gone by then is waited for by a thread of its own, so that whoever
    /// kills (a monitor that serves other requests) goes on.
    ///
    /// ```
    /// let child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
    /// let process = eci_ns::pidfd::PidFd::open(child.id() as i32).unwrap();
    /// process.kill_and_reap(std::time::Duration::from_secs(1));
    /// assert!(!process.is_alive());
    /// ```
    pub fn kill_and_reap(&self, patience: std::time::Duration) {
        let _ = self.signal(libc::SIGKILL);
        if self.exits_within(patience) {
            let _ = self.wait();
            return;
        }
        if let Ok(process) = self.try_clone() {
            // Without a thread to wait in, a child stays a zombie until this process ends.
            let _ = std::thread::Builder::new()
                .name("eci-reap".into())
                .spawn(move || {
                    let _ = process.wait();
                });
        }
    }

    /// [`PidFd::wait`] without blocking: `None` while the process runs (and, for a process
    /// that is not the caller's child, until how it ended can be read).
    pub fn try_wait(&self) -> SysResult<Option<ExitStatus>> {
        match self.wait_with(libc::WNOHANG) {
            Err(Errno(libc::ECHILD)) => self.exit_of_other(false),
            waited => waited,
        }
    }

    /// How a process that is not the caller's child ended, once it has. Without blocking,
    /// `None` also while the status cannot be read yet (an exited process whose `/proc` entry
    /// this process cannot read, not yet reaped).
    fn exit_of_other(&self, block: bool) -> SysResult<Option<ExitStatus>> {
        if self.poll(libc::POLLIN, if block { -1 } else { 0 })? == 0 {
            return Ok(None);
        }
        loop {
            if let Some(status) = self.zombie_exit_status() {
                return Ok(Some(status));
            }
            // Reaped: the kernel stored the status before it let go of the pid.
            if let Some(status) = self.reaped_exit_status() {
                return Ok(Some(status));
            }
            // Reaped by a kernel that keeps no status for pidfds: only the reaper knew it.
            if self.poll(0, 0)? & libc::POLLHUP != 0 {
                return Err(Errno(libc::ECHILD));
            }
            // A zombie whose entry does not read as its own (hidepid, or a /proc of another
            // PID namespace, where its pid names another process or none): its status comes
            // with its reaping, which hangs the pidfd up and wakes its pollers (the bound
            // covers kernels that do not wake them).
            if !block {
                return Ok(None);
            }
            self.poll(0, 1000)?;
        }
    }

    /// poll(2) on the pidfd for `events` (POLLIN: the process exited; a hang-up, reported
    /// whatever is asked: it was reaped): the events seen, 0 if `timeout_ms` passed first.
    fn poll(&self, events: libc::c_short, timeout_ms: libc::c_int) -> SysResult<libc::c_short> {
        let mut fds = [libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events,
            revents: 0,
        }];
        retry(|| crate::sys::poll(&mut fds, timeout_ms))?;
        Ok(fds[0].revents)
    }

    /// The wait status field of an exited, unreaped process's `/proc/PID/stat`; `None` once it
    /// is reaped, or if the entry cannot be read.
    fn zombie_exit_status(&self) -> Option<ExitStatus> {
        let mut stat = std::fs::File::open(format!("/proc/{}/stat", self.pid)).ok()?;
        // A reaped pid may name another process by now: the entry opened is this one only if
        // the process was still unreaped after the open (the kernel hangs up a pidfd once its
        // process is reaped).
        if self.poll(0, 0).ok()? & libc::POLLHUP != 0 {
            return None;
        }
        // An entry whose process is reaped after the open reads ESRCH. Bytes: the process
        // names itself, with any bytes.
        let mut line = Vec::new();
        std::io::Read::read_to_end(&mut stat, &mut line).ok()?;
        exit_code_in_stat(&line).map(ExitStatus::from_wait_status)
    }

    /// The wait status the kernel keeps for a reaped process's pidfds (PIDFD_INFO_EXIT).
    fn reaped_exit_status(&self) -> Option<ExitStatus> {
        let mut info = PidfdInfo {
            mask: PIDFD_INFO_EXIT,
            ..PidfdInfo::default()
        };
        // SAFETY: info is a writable pidfd_info of the size the request encodes.
        let done = unsafe { libc::ioctl(self.fd.as_raw_fd(), PIDFD_GET_INFO as _, &mut info) };
        (done == 0 && info.mask & PIDFD_INFO_EXIT != 0)
            .then(|| ExitStatus::from_wait_status(info.exit_code))
    }

    fn wait_with(&self, extra: libc::c_int) -> SysResult<Option<ExitStatus>> {
        // SAFETY: an all-zero siginfo_t is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // P_PIDFD is 3 (Linux 5.4).
        const P_PIDFD: libc::idtype_t = 3;
        retry(|| {
            // SAFETY: info is a valid out pointer; the fd is a pidfd.
            check_int(unsafe {
                libc::waitid(
                    P_PIDFD,
                    self.fd.as_raw_fd() as libc::id_t,
                    &mut info,
                    libc::WEXITED | extra,
                )
            })
        })?;
        // SAFETY: waitid filled in info; si_pid is 0 when WNOHANG found nothing.
        let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        Ok(Some(match code {
            libc::CLD_EXITED => ExitStatus::Exited(status),
            _ => ExitStatus::Signaled(status),
        }))
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `struct pidfd_info` in its first version (Linux 6.13, 64 bytes); `exit_code` is filled in
/// from Linux 6.15 on.
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    ids: [u32; 11],
    exit_code: i32,
}

/// PIDFD_GET_INFO: `_IOWR(0xFF, 11, struct pidfd_info)`.
const PIDFD_GET_INFO: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<PidfdInfo>() as libc::c_ulong) << 16) | (0xFF << 8) | 11;
/// The request's bit for a reaped process's wait status.
const PIDFD_INFO_EXIT: u64 = 1 << 3;

/// Whether the kernel keeps a process's exit status for its pidfds after its parent reaps it
/// (Linux 6.15 and later): only then can [`PidFd::wait`] always tell how a process that is not
/// the caller's child ended, rather than only while it is a zombie.
pub fn exit_status_outlives_reaping() -> bool {
    // SAFETY: an all-zero utsname is valid; uname fills it in.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: name is a writable utsname.
    if unsafe { libc::uname(&mut name) } != 0 {
        return false;
    }
    // SAFETY: uname NUL-terminates release.
    let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) };
    kernel_at_least(&release.to_string_lossy(), (6, 15))
}

/// Whether a kernel release string ("6.18.44-fc") names `wanted` (major, minor) or later.
fn kernel_at_least(release: &str, wanted: (u32, u32)) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= wanted,
        _ => false,
    }
}

/// Field 52 of a `/proc/PID/stat` line, the wait status of an exited process, if the line is
/// a zombie's (field 3, the state, Z or X): a live process's reads 0, as it does to a reader
/// without the right to trace the process (eci's runtimes are host root). The command name
/// before them is in parentheses and may hold any bytes, parentheses and spaces too, so
/// fields count from the last ')'.
fn exit_code_in_stat(stat: &[u8]) -> Option<i32> {
    let after_name = &stat[stat.iter().rposition(|b| *b == b')')? + 1..];
    let mut fields = std::str::from_utf8(after_name)
        .ok()?
        .split_ascii_whitespace();
    // The fields after the name start at the third.
    if !matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    fields.nth(52 - 4)?.parse().ok()
}

/// True if `errno` means the process is already gone.
pub fn is_gone(errno: Errno) -> bool {
    errno.0 == libc::ESRCH
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A process that is not the test's child: a grandchild whose parent (the test's child)
    /// reaps it only when told. Returns (the parent's pid, a pidfd for the grandchild, the pipe
    /// that tells the grandchild to end, the pipe that tells the parent to reap), told by
    /// writing a byte ([`tell`]): forks of other tests may hold the write ends too.
    fn grandchild(how: i32) -> (i32, PidFd, OwnedFd, OwnedFd) {
        let [go_read, go_write] = pipe();
        let [reap_read, reap_write] = pipe();
        let [pid_read, pid_write] = pipe();
        // SAFETY: the child makes only async-signal-safe calls, then _exit.
        let parent = unsafe { libc::fork() };
        assert!(parent >= 0);
        if parent == 0 {
            // SAFETY: as above.
            unsafe {
                let grandchild = libc::fork();
                if grandchild == 0 {
                    // A name a process inside may choose: not UTF-8, with the stat line's
                    // separators.
                    let name = b") \xff 9 (\n\0";
                    libc::prctl(libc::PR_SET_NAME, name.as_ptr());
                    let mut byte = 0u8;
                    libc::read(go_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                    if how < 0 {
                        libc::kill(libc::getpid(), -how);
                    }
                    libc::_exit(how);
                }
                libc::write(pid_write.as_raw_fd(), (&grandchild as *const i32).cast(), 4);
                let mut byte = 0u8;
                libc::read(reap_read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                libc::waitpid(grandchild, std::ptr::null_mut(), 0);
                libc::_exit(0);
            }
        }
        drop(pid_write);
        let mut pid = 0i32;
        // SAFETY: reading 4 bytes into an i32.
        let read = unsafe { libc::read(pid_read.as_raw_fd(), (&mut pid as *mut i32).cast(), 4) };
        assert_eq!(read, 4);
        // The parent reaps it only when told: the pid cannot be reused before.
        let pidfd = PidFd::open(pid).unwrap();
        (parent, pidfd, go_write, reap_write)
    }

    fn tell(pipe: &OwnedFd) {
        // SAFETY: writes one byte from a valid buffer.
        let written = unsafe { libc::write(pipe.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        assert_eq!(written, 1);
    }

    fn pipe() -> [OwnedFd; 2] {
        let mut fds = [-1; 2];
        // SAFETY: fds is a valid array of two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 returned two new fds that we own.
        fds.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn reap(pid: i32) {
        // SAFETY: waiting for the test's own child.
        assert_eq!(unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) }, pid);
    }

    #[test]
    fn a_zombie_of_another_parent_tells_how_it_ended() {
        let (parent, pidfd, go, reap_now) = grandchild(7);
        assert_eq!(pidfd.try_wait(), Ok(None), "still running");
        tell(&go);
        assert_eq!(pidfd.wait(), Ok(ExitStatus::Exited(7)));
        assert!(
            pidfd.poll(0, 0).unwrap() & libc::POLLHUP == 0,
            "read from the zombie, not after its reaping"
        );
        tell(&reap_now);
        reap(parent);
    }

    #[test]
    fn a_process_its_parent_reaped_still_tells_how_it_ended() {
        if !exit_status_outlives_reaping() {
            eprintln!("skipped: this kernel forgets a reaped process's status");
            return;
        }
        let (parent, pidfd, go, reap_now) = grandchild(-libc::SIGKILL);
        tell(&go);
        tell(&reap_now);
        reap(parent);
        assert!(pidfd.poll(0, -1).unwrap() & libc::POLLHUP != 0, "reaped");
        assert_eq!(
            pidfd.try_wait(),
            Ok(Some(ExitStatus::Signaled(libc::SIGKILL)))
        );
        assert_eq!(pidfd.wait(), Ok(ExitStatus::Signaled(libc::SIGKILL)));
    }

    #[test]
    fn own_children_are_reaped() {
        // SAFETY: the child only exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(3) };
        }
        let pidfd = PidFd::open(pid).unwrap();
        assert_eq!(pidfd.wait(), Ok(ExitStatus::Exited(3)));
        assert!(
            pidfd.poll(0, 0).unwrap() & libc::POLLHUP != 0,
            "reaped by wait"
        );
    }

    #[test]
    fn kernel_releases_compare() {
        assert!(kernel_at_least("6.18.44-fc-v1272", (6, 15)));
        assert!(kernel_at_least("7.0.0", (6, 15)));
        assert!(kernel_at_least("6.15", (6, 15)));
        assert!(!kernel_at_least("6.14.11-300.fc42.x86_64", (6, 15)));
        assert!(!kernel_at_least("5.19.0", (6, 15)));
        assert!(!kernel_at_least("", (6, 15)));
        assert!(!kernel_at_least("six.fifteen", (6, 15)));
    }

    #[test]
    fn the_exit_code_is_found_past_any_command_name() {
        let own = std::fs::read("/proc/self/stat").unwrap();
        assert_eq!(exit_code_in_stat(&own), None, "a running process's");
        let mut zombie = own.clone();
        zombie[own.iter().rposition(|b| *b == b')').unwrap() + 2] = b'Z';
        let zombie = String::from_utf8(zombie).unwrap();
        assert_eq!(exit_code_in_stat(zombie.as_bytes()), Some(0), "{zombie}");
        assert_eq!(exit_code_in_stat(b"1 (init) Z 0"), None, "too few fields");
        assert_eq!(exit_code_in_stat(b"no name"), None);
    }

    proptest! {
        #[test]
        fn field_52_is_read_whatever_the_name(
            name in proptest::collection::vec(any::<u8>(), 0..16),
            state in proptest::sample::select(vec!["R", "S", "D", "T", "t", "Z", "X", "I"]),
            fields in proptest::collection::vec(0i64..1 << 40, 49..60),
        ) {
            let mut line = b"42 (".to_vec();
            line.extend(&name);
            line.extend(format!(") {state} ").bytes());
            let numbers: Vec<String> = fields.iter().map(i64::to_string).collect();
            line.extend(numbers.join(" ").bytes());
            line.push(b'\n');
            // Field 52 comes 48 fields after the state (field 3).
            let expected = i32::try_from(fields[48])
                .ok()
                .filter(|_| matches!(state, "Z" | "X"));
            prop_assert_eq!(exit_code_in_stat(&line), expected);
        }
    }
}
