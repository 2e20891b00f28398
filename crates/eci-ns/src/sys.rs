//! Thin, allocation-free wrappers over the raw syscalls this crate needs. Every function here is
//! async-signal-safe, so it may run between fork and exec.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An errno value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's errno.
    pub fn last() -> Errno {
        // SAFETY: __errno_location returns a valid pointer to this thread's errno.
        Errno(unsafe { *libc::__errno_location() })
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for Errno {}

impl From<Errno> for std::io::Error {
    fn from(errno: Errno) -> Self {
        std::io::Error::from_raw_os_error(errno.0)
    }
}

/// Result of a raw syscall.
pub type SysResult<T> = Result<T, Errno>;

/// Turns a -1 return into the thread's errno.
pub fn check(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// poll(2) once: how many of `fds` have something (0 when `timeout_ms` passed first; -1
/// waits without a limit). A signal ends it with EINTR.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> SysResult<usize> {
    // SAFETY: `fds` is a valid, writable array of its length.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    check_int(ready).map(|n| n as usize)
}

/// Turns a -1 `c_int` return into the thread's errno.
pub fn check_int(ret: libc::c_int) -> SysResult<libc::c_int> {
    check(ret as libc::c_long).map(|r| r as libc::c_int)
}

/// Retries a call interrupted by a signal.
pub fn retry<T>(mut call: impl FnMut() -> SysResult<T>) -> SysResult<T> {
    loop {
        match call() {
            Err(Errno(libc::EINTR)) => continue,
            other => return other,
        }
    }
}

/// `struct clone_args` of clone3(2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What a fork-like clone returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the parent: the child's pid and, if asked for, its pidfd.
    Parent {
        /// The child's pid.
        pid: i32,
        /// The child's pidfd (`-1` unless requested).
        pidfd: RawFd,
    },
    /// In the child.
    Child,
}

/// clone3's flag that starts the child with every signal handler at its default (Linux 5.5).
pub const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

/// Forks with `flags` (CLONE_NEW*, CLONE_PARENT, CLONE_PIDFD, [`CLONE_CLEAR_SIGHAND`]) using
/// clone3, falling back to clone on kernels without clone3. The child continues on a copy of the caller's stack, like fork.
///
/// # Safety
/// The caller must treat the child like a child of fork in a multi-threaded program: only
/// async-signal-safe work until exec or `_exit`.
pub unsafe fn clone_fork(flags: u64) -> SysResult<Forked> {
    let mut pidfd: RawFd = -1;
    // clone3 refuses an exit signal with CLONE_PARENT: the child then signals the caller's
    // parent with the caller's own exit signal.
    let exit_signal = if flags & libc::CLONE_PARENT as u64 != 0 {
        0
    } else {
        libc::SIGCHLD as u64
    };
    let args = CloneArgs {
        flags,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal,
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; with no stack, clone3 behaves like
    // fork, and the caller upholds the post-fork contract.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let ret = match check(ret) {
        // clone(2) cannot express CLONE_NEWTIME: its bit is part of the exit signal there.
        Err(Errno(libc::ENOSYS)) if flags & libc::CLONE_NEWTIME as u64 != 0 => {
            return Err(Errno(libc::ENOSYS))
        }
        Err(Errno(libc::ENOSYS)) => {
            // clone(2): flags and exit signal share one word; CLONE_PIDFD returns the fd
            // through the parent_tid argument. It has no CLONE_CLEAR_SIGHAND (nor has a kernel
            // without clone3, or a seccomp profile answering clone3 ENOSYS so that the C
            // library falls back): the child resets the handlers itself, with every signal
            // blocked until then, so that none of the caller's runs in it meanwhile.
            let clear = flags & CLONE_CLEAR_SIGHAND != 0;
            let flags = flags & !CLONE_CLEAR_SIGHAND;
            let unblock = clear.then(block_all_signals);
            // SAFETY: a NULL stack makes clone behave like fork; the pointers are valid.
            let ret = check(unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    flags | exit_signal,
                    std::ptr::null_mut::<libc::c_void>(),
                    &mut pidfd as *mut RawFd,
                    std::ptr::null_mut::<libc::c_void>(),
                    0usize,
                )
            });
            if ret == Ok(0) {
                reset_signal_actions(Keep::Ignored);
            }
            if let Some(mask) = unblock {
                restore_signal_mask(&mask);
            }
            ret?
        }
        other => other?,
    };
    Ok(if ret == 0 {
        Forked::Child
    } else {
        Forked::Parent {
            pid: ret as i32,
            pidfd,
        }
    })
}

/// Blocks every signal the C library lets a program block (it keeps two of its own, which
/// only it sends, to its own threads); the mask before, for [`restore_signal_mask`].
/// Async-signal-safe.
fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigfillset and sigprocmask fill and read valid sets.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut before);
        before
    }
}

/// Sets the signal mask back to `mask`. Async-signal-safe.
fn restore_signal_mask(mask: &libc::sigset_t) {
    // SAFETY: a valid signal set; no old one is asked for.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
}

/// Plain fork through the C library, which keeps its own state (and its allocator's locks)
/// consistent in the child.
///
/// # Safety
/// As for [`clone_fork`].
pub unsafe fn fork() -> SysResult<Forked> {
    // SAFETY: the caller upholds the post-fork contract.
    let pid = check_int(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent { pid, pidfd: -1 }
    })
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capget(2) version 3 of `pid` (0: the calling thread), with the header that names it.
fn capget(pid: i32) -> SysResult<(CapHeader, [CapData; 2])> {
    let mut header = CapHeader {
        version: 0x2008_0522,
        pid,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are valid version-3 capget arguments.
    check(unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    })?;
    Ok((header, data))
}

fn joined(low: u32, high: u32) -> u64 {
    u64::from(low) | u64::from(high) << 32
}

/// The effective capabilities of process or thread `pid` (0: the calling thread), from
/// capget(2) version 3. Allocation-free, so usable after fork.
///
/// ```
/// const CAP_SYS_ADMIN: u32 = 21;
/// let mine = eci_ns::sys::effective_caps(0).unwrap();
/// let _has_sys_admin = mine & (1 << CAP_SYS_ADMIN) != 0;
/// ```
pub fn effective_caps(pid: i32) -> SysResult<u64> {
    let (_, data) = capget(pid)?;
    Ok(joined(data[0].effective, data[1].effective))
}

/// The calling thread's (effective, permitted) capabilities. Allocation-free.
///
/// ```
/// let (effective, permitted) = eci_ns::sys::own_caps().unwrap();
/// assert_eq!(effective & !permitted, 0);
/// ```
pub fn own_caps() -> SysResult<(u64, u64)> {
    let (_, data) = capget(0)?;
    Ok((
        joined(data[0].effective, data[1].effective),
        joined(data[0].permitted, data[1].permitted),
    ))
}

/// Sets the calling thread's effective capabilities to `effective` (within its permitted
/// set), keeping its permitted and inheritable sets. Allocation-free.
///
/// ```
/// let (effective, _) = eci_ns::sys::own_caps().unwrap();
/// eci_ns::sys::set_effective_caps(effective).unwrap();
/// ```
pub fn set_effective_caps(effective: u64) -> SysResult<()> {
    let (mut header, mut data) = capget(0)?;
    data[0].effective = effective as u32;
    data[1].effective = (effective >> 32) as u32;
    // SAFETY: header and data are valid version-3 capset arguments for this thread.
    check(unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    })
    .map(drop)
}

/// Leaves every priority above an ordinary process's that the caller inherited from a runtime an
/// administrator runs raised, none of which a container's process may keep (each would let it,
/// or a helper working at its request, take the host's CPUs or disks ahead of ordinary
/// processes): a real-time scheduling policy (SCHED_FIFO, SCHED_RR, under `chrt`) for
/// SCHED_OTHER (an RLIMIT_RTPRIO of 0 does not undo a policy already held, and cgroup v1's cpu
/// controller refuses to move a real-time task into a cgroup without a real-time budget); a
/// negative nice value for 0 (an RLIMIT_NICE of 20 or less does not undo it either); and the
/// real-time I/O class (`ionice -c1`) for best-effort. Lowering one's own priority takes no
/// privilege. Async-signal-safe.
pub fn leave_raised_priority() -> SysResult<()> {
    // SAFETY: plain system calls on the calling thread; `param` is a valid sched_param.
    unsafe {
        let policy = check_int(libc::sched_getscheduler(0))?;
        if matches!(
            policy & !libc::SCHED_RESET_ON_FORK,
            libc::SCHED_FIFO | libc::SCHED_RR
        ) {
            let param = libc::sched_param { sched_priority: 0 };
            check_int(libc::sched_setscheduler(0, libc::SCHED_OTHER, &param))?;
        }
    }
    // getpriority answers -1 for a nice value of -1 too: errno tells them apart.
    // SAFETY: errno is the calling thread's; getpriority and setpriority take integers.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        if nice == -1 && *libc::__errno_location() != 0 {
            return Err(Errno::last());
        }
        if nice < 0 {
            check_int(libc::setpriority(libc::PRIO_PROCESS, 0, 0))?;
        }
    }
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    const IOPRIO_CLASS_RT: libc::c_long = 1;
    const IOPRIO_CLASS_BE: libc::c_long = 2;
    // SAFETY: ioprio_get and ioprio_set take integers.
    unsafe {
        let ioprio = check(libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0))?;
        if ioprio >> IOPRIO_CLASS_SHIFT == IOPRIO_CLASS_RT {
            // Best-effort at the level that follows from the nice value, as unset means.
            let best_effort = IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT | 4;
            check(libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                0,
                best_effort,
            ))?;
        }
    }
    Ok(())
}

/// Makes the calling process undumpable, before it joins a container's user namespace with the
/// host's root IDs: a dumpable one could then be ptraced (or its descriptors taken with
/// pidfd_getfd) by the container's root, which has CAP_SYS_PTRACE there (CVE-2016-9962 in
/// runc). The flag lives in the memory map, so a child forked afterwards is undumpable too;
/// execve of the container's program sets it again. Every change of the process's IDs or
/// capabilities sets it to the host's `fs.suid_dumpable`, which a host may set to 1
/// (dumpable): call this again after each one. Async-signal-safe.
pub fn set_undumpable() -> SysResult<()> {
    // SAFETY: prctl with integer arguments only.
    check_int(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(drop)
}

/// setns(2) with a namespace fd or a pidfd.
pub fn setns(fd: RawFd, nstype: libc::c_int) -> SysResult<()> {
    // SAFETY: setns takes plain integers.
    check_int(unsafe { libc::setns(fd, nstype) }).map(drop)
}

/// unshare(2).
pub fn unshare(flags: libc::c_int) -> SysResult<()> {
    // SAFETY: unshare takes plain integers.
    check_int(unsafe { libc::unshare(flags) }).map(drop)
}

/// mount(2) with optional arguments.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> SysResult<()> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is NULL or a valid NUL-terminated string.
    check_int(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    })
    .map(drop)
}

/// close(2), ignoring errors (the fd is gone either way).
pub fn close(fd: RawFd) {
    // SAFETY: closing an fd the caller owns.
    unsafe { libc::close(fd) };
}

/// close_range(2): closes (or, with CLOSE_RANGE_CLOEXEC, marks close-on-exec) every fd in
/// `first..=last`.
pub fn close_range(first: u32, last: u32, flags: u32) -> SysResult<()> {
    // SAFETY: close_range takes plain integers.
    check(unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) }).map(drop)
}

/// Which signal actions [`reset_signal_actions`] leaves alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// None: every signal to its default (a program about to be executed, which must not
    /// inherit an ignored signal).
    Nothing,
    /// Ignored signals stay ignored; caught ones go back to their default (a forked helper,
    /// whose writes rely on SIGPIPE being ignored).
    Ignored,
}

/// Gives signals their default action back, through the system call itself: the C library's
/// sigaction refuses the real-time signals it keeps for itself (32 and 33). With
/// [`Keep::Ignored`] it does for a child made with fork what CLONE_CLEAR_SIGHAND does (a raw
/// clone would leave the C library's locks as another thread held them, and a later fork by
/// the child could wait on them for good). SIGKILL and SIGSTOP fail harmlessly.
/// Async-signal-safe.
pub fn reset_signal_actions(keep: Keep) {
    // The kernel's struct sigaction: the handler comes first on every architecture eci builds
    // for (x86-64, arm64, riscv64); 32 bytes cover the whole of it on each, and all zeros is
    // SIG_DFL with no flags and an empty mask.
    const SIG_IGN: u64 = 1;
    let default = [0u64; 4];
    for signal in 1..=64 {
        let mut old = [0u64; 4];
        // SAFETY: no new action and a 32-byte buffer for the old one, with the kernel's
        // 8-byte signal set size.
        let read = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                std::ptr::null::<u64>(),
                old.as_mut_ptr(),
                8usize,
            )
        };
        let kept = keep == Keep::Ignored && old[0] == SIG_IGN;
        if read == 0 && old != default && !kept {
            // SAFETY: an all-zero sigaction and the kernel's signal set size.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                )
            };
        }
    }
}

/// Points each of `fds` at /dev/null (read and write); negative ones are skipped.
/// Async-signal-safe.
pub fn to_dev_null(fds: &[RawFd]) -> SysResult<()> {
    // SAFETY: a NUL-terminated path.
    let null =
        check_int(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    let result = fds.iter().filter(|&&fd| fd >= 0).try_for_each(|&fd| {
        // SAFETY: dup2 takes plain integers; the copy at `fd` is not close-on-exec.
        check_int(unsafe { libc::dup2(null, fd) }).map(drop)
    });
    if !fds.contains(&null) {
        close(null);
    }
    result
}

/// Closes every fd from 3 up except those in `keep` (in any order, any number of them).
pub fn close_fds_except(keep: &[RawFd]) -> SysResult<()> {
    let mut next: u32 = 3;
    loop {
        // The smallest kept fd from `next` up: no sorting, since nothing may allocate here.
        let kept = keep
            .iter()
            .filter_map(|&fd| u32::try_from(fd).ok())
            .filter(|&fd| fd >= next)
            .min();
        let Some(fd) = kept else {
            return close_range(next, u32::MAX, 0);
        };
        if fd > next {
            close_range(next, fd - 1, 0)?;
        }
        next = fd + 1;
    }
}

/// Writes `n` in decimal at the start of `out` and returns how many digits that took; for
/// building paths such as /proc/self/fd/N after fork, where nothing may allocate. `out` must
/// hold the digits (20 at most).
///
/// ```
/// let mut buf = [0u8; 8];
/// let len = eci_ns::sys::write_decimal(&mut buf, 4096);
/// assert_eq!(&buf[..len], b"4096");
/// ```
pub fn write_decimal(out: &mut [u8], mut n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (slot, digit) in out.iter_mut().zip(digits[..len].iter().rev()) {
        *slot = *digit;
    }
    len
}

/// _exit(2): leaves without running destructors or atexit handlers.
pub fn exit(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> SysResult<RawFd> {
    // SAFETY: pidfd_open takes plain integers.
    check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }).map(|fd| fd as RawFd)
}

/// pidfd_getfd(2): a copy (close-on-exec) of descriptor `fd` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: RawFd, fd: RawFd) -> SysResult<OwnedFd> {
    // SAFETY: pidfd_getfd takes plain integers.
    let copy = check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) })?;
    // SAFETY: pidfd_getfd returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(copy as RawFd) })
}

/// kcmp(2) with KCMP_FILE: whether descriptor `fd1` of process `pid1` and `fd2` of `pid2` are
/// the same open file. False when that cannot be told (a process gone, no such descriptor).
pub fn same_file(pid1: i32, fd1: RawFd, pid2: i32, fd2: RawFd) -> bool {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: kcmp takes plain integers.
    let order = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2) };
    order == 0
}

/// pidfd_send_signal(2).
pub fn pidfd_send_signal(pidfd: RawFd, signal: i32) -> SysResult<()> {
    // SAFETY: a NULL siginfo is allowed; the rest are integers.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            signal,
            std::ptr::null::<u8>(),
            0,
        )
    })
    .map(drop)
}

/// kill(2) with any signal number, real-time ones included (nix's `Signal` knows only 1-31).
pub fn kill(pid: i32, signal: i32) -> SysResult<()> {
    // SAFETY: kill takes plain integers.
    check_int(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// waitpid(2) for one child, retried on EINTR. Returns the raw wait status.
pub fn waitpid(pid: i32) -> SysResult<i32> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    retry(|| check_int(unsafe { libc::waitpid(pid, &mut status, libc::__WALL) }))?;
    Ok(status)
}

/// "/proc/self/fd/N" in a stack buffer: the path that names what descriptor N is open on, for
/// calls that take a path (mount's source, say) after fork, where nothing may allocate.
///
/// ```
/// assert_eq!(eci_ns::sys::FdPath::new(7).as_cstr(), c"/proc/self/fd/7");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    /// The path of descriptor `fd`.
    pub fn new(fd: RawFd) -> FdPath {
        let mut buf = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        buf[..prefix.len()].copy_from_slice(prefix);
        write_decimal(&mut buf[prefix.len()..], u64::from(fd.unsigned_abs()));
        FdPath { buf }
    }

    /// The path, NUL-terminated.
    pub fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"")
    }
}

/// A file of a process's /proc directory ("/proc/PID/NAME") or of a descriptor's
/// ("/proc/self/fdinfo/N") in a stack buffer, for use after fork, where nothing may allocate.
///
/// ```
/// use eci_ns::sys::ProcPath;
/// assert_eq!(ProcPath::of(42, b"ns/user").as_cstr(), c"/proc/42/ns/user");
/// assert_eq!(ProcPath::fd_info(7).as_cstr(), c"/proc/self/fdinfo/7");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ProcPath {
    buf: [u8; 64],
}

impl ProcPath {
    /// "/proc/PID/NAME"; a `name` longer than the buffer holds is cut.
    pub fn of(pid: i32, name: &[u8]) -> ProcPath {
        let mut buf = [0u8; 64];
        let mut at = 6;
        buf[..at].copy_from_slice(b"/proc/");
        at += write_decimal(&mut buf[at..], u64::from(pid.unsigned_abs()));
        buf[at] = b'/';
        at += 1;
        // The last byte stays NUL.
        let room = buf.len() - 1 - at;
        let name = &name[..name.len().min(room)];
        buf[at..at + name.len()].copy_from_slice(name);
        ProcPath { buf }
    }

    /// "/proc/self/fdinfo/N": what the kernel tells of descriptor `fd`.
    pub fn fd_info(fd: RawFd) -> ProcPath {
        let mut buf = [0u8; 64];
        let prefix = b"/proc/self/fdinfo/";
        buf[..prefix.len()].copy_from_slice(prefix);
        write_decimal(&mut buf[prefix.len()..], u64::from(fd.unsigned_abs()));
        ProcPath { buf }
    }

    /// The path, NUL-terminated.
    pub fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"")
    }
}

/// A filesystem context of the new mount API: created with [`FsContext::open`], configured,
/// then made into a detached mount with [`FsContext::mount`]. Allocation-free, for use after
/// fork.
#[derive(Debug)]
pub struct FsContext(OwnedFd);

impl FsContext {
    /// fsopen(2) for `fstype`.
    pub fn open(fstype: &CStr) -> SysResult<FsContext> {
        const FSOPEN_CLOEXEC: u32 = 1;
        // SAFETY: a NUL-terminated name.
        let fd =
            check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })?;
        // SAFETY: fsopen returned a new fd that we own.
        Ok(FsContext(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    /// Sets the flag option `key`.
    pub fn set_flag(&self, key: &CStr) -> SysResult<()> {
        self.config(0, key.as_ptr(), std::ptr::null(), 0)
    }

    /// Sets the option `key` to `value`.
    pub fn set_string(&self, key: &CStr, value: &CStr) -> SysResult<()> {
        self.config(1, key.as_ptr(), value.as_ptr().cast(), 0)
    }

    /// Sets the option `key` to the object `fd` names (a PID namespace, an overlay layer).
    pub fn set_fd(&self, key: &CStr, fd: RawFd) -> SysResult<()> {
        self.config(5, key.as_ptr(), std::ptr::null(), fd)
    }

    /// Creates the filesystem, then a detached mount of it with the mount attributes `attrs`
    /// (MOUNT_ATTR_*).
    pub fn mount(self, attrs: u64) -> SysResult<OwnedFd> {
        const FSCONFIG_CMD_CREATE: u32 = 6;
        const FSMOUNT_CLOEXEC: u32 = 1;
        self.config(FSCONFIG_CMD_CREATE, std::ptr::null(), std::ptr::null(), 0)?;
        // SAFETY: fsmount takes integers.
        let fd = check(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.0.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs,
            )
        })?;
        // SAFETY: fsmount returned a new fd that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    fn config(
        &self,
        cmd: u32,
        key: *const libc::c_char,
        value: *const libc::c_void,
        aux: RawFd,
    ) -> SysResult<()> {
        // SAFETY: the callers pass a NUL-terminated key or NULL, and the value (NULL or a
        // NUL-terminated string) that `cmd` expects.
        check(unsafe {
            libc::syscall(libc::SYS_fsconfig, self.0.as_raw_fd(), cmd, key, value, aux)
        })
        .map(drop)
    }
}

/// open_tree(2) flag: a detached copy instead of the mount itself.
pub const OPEN_TREE_CLONE: u32 = 1;
/// mount_setattr(2) attribute: idmap the mount through a user namespace.
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// The ID of the mount `path` (relative to `dir`; with `AT_EMPTY_PATH` in `flags` and an empty
/// path, `dir` itself) is on, as statx reports it. Async-signal-safe.
///
/// ```
/// let root = eci_ns::sys::mount_id_at(libc::AT_FDCWD, c"/", 0).unwrap();
/// assert!(root > 0);
/// ```
pub fn mount_id_at(dir: RawFd, path: &CStr, flags: libc::c_int) -> SysResult<u64> {
    // SAFETY: an all-zero statx is a valid value for the kernel to fill in.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated and stx a valid out pointer.
    check_int(unsafe {
        libc::statx(
            dir,
            path.as_ptr(),
            flags | libc::AT_STATX_DONT_SYNC,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    })?;
    match stx.stx_mask & libc::STATX_MNT_ID {
        0 => Err(Errno(libc::EOPNOTSUPP)),
        _ => Ok(stx.stx_mnt_id),
    }
}

/// open_tree(2): `path` relative to `dir` (an empty path names `dir` itself) with
/// [`OPEN_TREE_CLONE`] and/or `AT_RECURSIVE` in `flags`; close-on-exec. Allocation-free.
pub fn open_tree(dir: RawFd, path: &CStr, flags: u32) -> SysResult<OwnedFd> {
    let empty = if path.is_empty() {
        libc::AT_EMPTY_PATH as u32
    } else {
        0
    };
    let flags = flags | empty | libc::O_CLOEXEC as u32;
    // SAFETY: a NUL-terminated path; AT_EMPTY_PATH when it is empty.
    let fd = check(unsafe { libc::syscall(libc::SYS_open_tree, dir, path.as_ptr(), flags) })?;
    // SAFETY: open_tree returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// What mount_setattr(2) changes: attributes set and cleared, propagation (MS_PRIVATE, ...,
/// or 0) and the user namespace of an idmapping.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttr {
    /// MOUNT_ATTR_* to set.
    pub attr_set: u64,
    /// MOUNT_ATTR_* to clear.
    pub attr_clr: u64,
    /// New propagation type, or 0 to keep it.
    pub propagation: u64,
    /// The user namespace for [`MOUNT_ATTR_IDMAP`].
    pub userns_fd: u64,
}

/// mount_setattr(2) on the mount `tree` names (a detached tree from [`open_tree`] or
/// [`FsContext::mount`]), and on every mount below it when `recursive`. Allocation-free.
pub fn mount_setattr(tree: RawFd, recursive: bool, attr: &MountAttr) -> SysResult<()> {
    let rec = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names the fd; attr is a valid
    // mount_attr of the size passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | rec,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// move_mount(2): attaches the detached `tree` on top of `path` relative to `dir`
/// (`AT_FDCWD` for the working directory), or on `dir` itself when `path` is empty. A symlink
/// at the end of `path` is not followed (see [`attach_tree_following`]). Allocation-free.
pub fn attach_tree(tree: RawFd, dir: RawFd, path: &CStr) -> SysResult<()> {
    move_tree(tree, dir, path, 0)
}

/// [`attach_tree`] that follows a symlink (or automount point) at the end of `path`, as
/// mount(2) does with its target: for placing a mount where a caller's mount(2) would have
/// put it. Allocation-free.
pub fn attach_tree_following(tree: RawFd, dir: RawFd, path: &CStr) -> SysResult<()> {
    const MOVE_MOUNT_T_SYMLINKS: u32 = 0x10;
    const MOVE_MOUNT_T_AUTOMOUNTS: u32 = 0x20;
    move_tree(
        tree,
        dir,
        path,
        MOVE_MOUNT_T_SYMLINKS | MOVE_MOUNT_T_AUTOMOUNTS,
    )
}

fn move_tree(tree: RawFd, dir: RawFd, path: &CStr, follow: u32) -> SysResult<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
    let flags = follow
        | MOVE_MOUNT_F_EMPTY_PATH
        | if path.is_empty() {
            MOVE_MOUNT_T_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: both paths are NUL-terminated; the fds are the caller's.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            dir,
            path.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_tells_a_copied_descriptor_from_another_open_file() {
        let me = std::process::id() as i32;
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let copy = file.try_clone().unwrap();
        let other = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(same_file(me, file.as_raw_fd(), me, copy.as_raw_fd()));
        assert!(!same_file(me, file.as_raw_fd(), me, other.as_raw_fd()));
        assert!(
            !same_file(me, file.as_raw_fd(), me, 9999),
            "no such descriptor"
        );
    }
}
