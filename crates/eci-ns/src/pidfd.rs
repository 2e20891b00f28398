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
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd; a zero timeout never blocks.
        let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
        ready == 0
    }

    /// Waits for a child process to exit and reaps it.
    pub fn wait(&self) -> SysResult<ExitStatus> {
        self.wait_with(0)
            .map(|s| s.expect("a blocking wait always returns a status"))
    }

    /// Reaps the child if it has exited, without blocking.
    pub fn try_wait(&self) -> SysResult<Option<ExitStatus>> {
        self.wait_with(libc::WNOHANG)
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

/// True if `errno` means the process is already gone.
pub fn is_gone(errno: Errno) -> bool {
    errno.0 == libc::ESRCH
}
