//! The supervisor's side of a seccomp listener.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use eci_ns::sys::{check_int, Errno, SysResult};

/// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6): wake the supervisor on the caller's CPU.
const SYNC_WAKE_UP: u64 = 1;

/// One trapped syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// The kernel's cookie for this call.
    pub id: u64,
    /// The calling thread, in the supervisor's PID namespace.
    pub pid: u32,
    /// Syscall number.
    pub nr: i32,
    /// AUDIT_ARCH_* of the call.
    pub arch: u32,
    /// Raw arguments.
    pub args: [u64; 6],
}

/// How the trapped call returns. Every call this crate vets is decided on copied arguments and,
/// if allowed, performed by the supervisor, never let run with [`Reply::Continue`]; that is for
/// calls nothing is decided on (observed ones, and sysinfo when its emulation is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Fail with this errno.
    Error(i32),
    /// Succeed, returning this value.
    Success(i64),
    /// Let the kernel run the call as the caller made it. Only for decisions that read nothing
    /// of the caller's memory (else what the kernel reads may differ from what was checked).
    Continue,
}

/// Answers notification `id` on `listener`. A caller that is already gone is not an error.
/// Allocation-free.
pub fn respond(listener: RawFd, id: u64, reply: Reply) -> SysResult<()> {
    let (val, error, flags) = match reply {
        Reply::Error(errno) => (0, -errno, 0),
        Reply::Success(val) => (val, 0, 0),
        Reply::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
    };
    let mut resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // SAFETY: resp is a valid seccomp_notif_resp.
    match check_int(unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) }) {
        Ok(_) | Err(Errno(libc::ENOENT)) => Ok(()),
        Err(errno) => Err(errno),
    }
}

/// True while notification `id` is still pending on `listener`: the caller has not died or been
/// interrupted, so its pid still names it. Allocation-free.
pub fn id_valid(listener: RawFd, id: u64) -> bool {
    let mut id = id;
    // SAFETY: a valid listener fd and a pointer to a u64.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) == 0 }
}

/// Reads a NUL-terminated string from `pid`'s memory into `buf`, page by page (so a string that
/// ends just before an unmapped page is still read), and returns it without the NUL.
/// ENAMETOOLONG if no NUL fits in `buf`; EFAULT for a bad address. Allocation-free.
pub fn read_cstr(pid: u32, addr: u64, buf: &mut [u8]) -> SysResult<&CStr> {
    const PAGE: u64 = 4096;
    let mut len = 0;
    let mut at = addr;
    while len < buf.len() {
        let chunk = ((PAGE - at % PAGE) as usize).min(buf.len() - len);
        let local = libc::iovec {
            iov_base: buf[len..].as_mut_ptr().cast(),
            iov_len: chunk,
        };
        let remote = libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: chunk,
        };
        // SAFETY: local points at `chunk` writable bytes of buf; remote is only read by the
        // kernel from the other process.
        let read = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if read <= 0 {
            return Err(if read == 0 {
                Errno(libc::EFAULT)
            } else {
                Errno::last()
            });
        }
        if let Some(nul) = buf[len..len + read as usize].iter().position(|b| *b == 0) {
            return CStr::from_bytes_with_nul(&buf[..len + nul + 1])
                .map_err(|_| Errno(libc::EINVAL));
        }
        len += read as usize;
        at += read as u64;
    }
    Err(Errno(libc::ENAMETOOLONG))
}

/// Receives one notification into `raw`, which must be zeroed (the kernel refuses otherwise).
/// `None` if the call was withdrawn (its caller died or was interrupted) before it was received,
/// or if the wait was interrupted. Allocation-free.
///
/// # Safety
/// `raw` must be valid for writes of a `seccomp_notif`, and nothing else may write it meanwhile.
unsafe fn receive_into(
    listener: RawFd,
    raw: *mut libc::seccomp_notif,
) -> SysResult<Option<Notification>> {
    // SAFETY: by the caller's contract, raw is writable by the kernel.
    match check_int(unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_RECV, raw) }) {
        Ok(_) => {
            // SAFETY: the kernel filled raw; volatile, as it may be a page shared with others.
            let raw = unsafe { std::ptr::read_volatile(raw) };
            Ok(Some(Notification {
                id: raw.id,
                pid: raw.pid,
                nr: raw.data.nr,
                arch: raw.data.arch,
                args: raw.data.args,
            }))
        }
        Err(Errno(libc::ENOENT)) | Err(Errno(libc::EINTR)) => Ok(None),
        Err(errno) => Err(errno),
    }
}

/// A seccomp notify listener.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    /// Takes a listener fd, asking for synchronous wake-ups where the kernel has them.
    pub fn new(fd: OwnedFd) -> Listener {
        // SAFETY: a valid listener fd and a u64 flag word.
        let _ = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                SYNC_WAKE_UP,
            )
        };
        Listener { fd }
    }

    /// Receives the next notification; `None` if it was withdrawn (the caller died or was
    /// interrupted) before we got it.
    pub fn receive(&self) -> SysResult<Option<Notification>> {
        Listener::receive_raw(self.fd.as_raw_fd())
    }

    /// [`Listener::receive`] on a raw descriptor. Allocation-free.
    pub fn receive_raw(listener: RawFd) -> SysResult<Option<Notification>> {
        // SAFETY: an all-zero seccomp_notif is valid and the kernel requires it zeroed.
        let mut raw: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: raw is a valid, zeroed seccomp_notif for the kernel to fill.
        unsafe { receive_into(listener, &mut raw) }
    }
    /// Answers a notification. A caller that is already gone is not an error.
    pub fn respond(&self, id: u64, reply: Reply) -> SysResult<()> {
        respond(self.fd.as_raw_fd(), id, reply)
    }

    /// True while the notification `id` is still pending: the caller has not died or been
    /// interrupted, so its pid still names it. Checked after every read of its memory.
    pub fn is_valid(&self, id: u64) -> bool {
        id_valid(self.fd.as_raw_fd(), id)
    }

    /// A second descriptor for the same listener (for a helper that answers itself).
    pub fn try_clone(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The call a helper is handling, kept where the runtime can read it after the helper died.
///
/// A notification the helper received but never answered would keep its caller waiting as
/// long as any descriptor of the listener is open, and a replacement helper holds one; the
/// kernel offers no way to list received calls. So the helper receives each call straight into
/// this page (mapped shared before the fork): the kernel writes the call's id here before the
/// receiving ioctl returns, so even a helper killed while the ioctl hands it a call (a SIGKILL
/// is acted on only on the way back to user space, after the call was taken off the queue)
/// leaves its id behind. Whoever replaces the helper answers that call: with the result the
/// helper recorded if it had performed it, else ENOSYS (an observed call, see
/// [`crate::filters::observed_syscalls`], is let run). One window of a few instructions
/// remains: a helper killed between performing a call and recording its result gets it
/// answered ENOSYS although the mount was made.
#[derive(Debug)]
pub struct InFlight {
    page: std::ptr::NonNull<Page>,
}

/// The shared page's layout.
#[repr(C)]
struct Page {
    /// [`PERFORMED`] and the errno of the call's result, or 0.
    result: std::sync::atomic::AtomicU64,
    /// Written by the kernel on receipt; zeroed before each receipt and once answered.
    call: libc::seccomp_notif,
}

// SAFETY: the mapping is only reached through atomics and volatile accesses, and it lives until
// the owner drops it.
unsafe impl Send for InFlight {}
// SAFETY: as above.
unsafe impl Sync for InFlight {}

/// Marks a recorded result (errno in the low half), so that errno 0 differs from "none".
const PERFORMED: u64 = 1 << 32;

impl InFlight {
    /// Maps the shared page. Children forked afterwards share it.
    pub fn new() -> std::io::Result<InFlight> {
        const _: () = assert!(std::mem::size_of::<Page>() <= 4096);
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // A zeroed page: no call, no result.
        let page = std::ptr::NonNull::new(page.cast()).ok_or(std::io::ErrorKind::Other)?;
        Ok(InFlight { page })
    }

    fn result(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the mapping is valid, aligned and initialised until drop.
        unsafe { &(*self.page.as_ptr()).result }
    }

    /// The call's id, which the kernel writes in place.
    fn call_id(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the id is the aligned first u64 of the call, valid until drop; the kernel
        // writes it only during the receiving ioctl, which is a barrier for this process.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(&raw mut (*self.page.as_ptr()).call.id) }
    }

    /// Receives the next call on `listener` into the page ([`Listener::receive_raw`] otherwise).
    /// Allocation-free.
    pub fn receive(&self, listener: RawFd) -> SysResult<Option<Notification>> {
        let call = self.call_ptr();
        self.result().store(0, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: the call's place in the page is valid for writes; all-zero is a valid value
        // and what the kernel requires.
        unsafe { std::ptr::write_volatile(call, std::mem::zeroed()) };
        // SAFETY: as above; only this helper receives into this page.
        unsafe { receive_into(listener, call) }
    }

    fn call_ptr(&self) -> *mut libc::seccomp_notif {
        // SAFETY: a place within the valid mapping; nothing is read or written here.
        unsafe { &raw mut (*self.page.as_ptr()).call }
    }

    /// The helper performed the call, which returned `errno` (0 for success). Allocation-free.
    pub fn performed(&self, errno: i32) {
        let result = PERFORMED | u64::from(errno as u32);
        self.result()
            .store(result, std::sync::atomic::Ordering::SeqCst);
    }

    /// The call the helper is on: its id and its caller's pid; `None` between calls.
    pub fn pending(&self) -> Option<(u64, u32)> {
        let id = self.call_id().load(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: a place within the valid mapping; the kernel wrote it with the id.
        let pid = unsafe { std::ptr::read_volatile(&raw const (*self.call_ptr()).pid) };
        (id != 0).then_some((id, pid))
    }

    /// The helper answered the call, or handed it on. Allocation-free.
    pub fn end(&self) {
        self.call_id().store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// Once the helper is dead: the call it left unanswered, with the answer it would have given
    /// if it had performed the call, else ENOSYS (the answer of a listener nobody serves).
    pub fn take(&self) -> Option<(u64, Reply)> {
        use std::sync::atomic::Ordering::SeqCst;
        let id = self.call_id().swap(0, SeqCst);
        let result = self.result().swap(0, SeqCst);
        if id == 0 {
            return None;
        }
        // SAFETY: a place within the valid mapping; the helper that wrote it is dead.
        let nr = unsafe { std::ptr::read_volatile(&raw const (*self.call_ptr()).data.nr) };
        let reply = match (result & PERFORMED != 0, result as u32 as i32) {
            (true, 0) => Reply::Success(0),
            (true, errno) => Reply::Error(errno),
            // An observed call decides nothing; the next helper remembers nothing of it.
            (false, _) if crate::filters::is_observed(nr) => Reply::Continue,
            (false, _) => Reply::Error(libc::ENOSYS),
        };
        Some((id, reply))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // SAFETY: the page mapped in `new`, unmapped once.
        unsafe { libc::munmap(self.page.as_ptr().cast(), 4096) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strings_across_page_boundaries() {
        // A string that starts 3 bytes before a page boundary.
        let mut buf = vec![0u8; 3 * 4096];
        let base = buf.as_ptr() as usize;
        let start = (base / 4096 + 1) * 4096 - 3 - base;
        buf[start..start + 6].copy_from_slice(b"hello\0");
        let me = std::process::id();
        let addr = (base + start) as u64;
        let mut out = [0u8; 100];
        assert_eq!(read_cstr(me, addr, &mut out).unwrap().to_bytes(), b"hello");
        let mut short = [0u8; 5];
        assert_eq!(
            read_cstr(me, addr, &mut short).unwrap_err(),
            Errno(libc::ENAMETOOLONG)
        );
        assert_eq!(read_cstr(me, 8, &mut out).unwrap_err(), Errno(libc::EFAULT));
    }

    impl InFlight {
        /// What the kernel writes on receipt of call `id`.
        fn received(&self, id: u64) {
            self.result().store(0, std::sync::atomic::Ordering::SeqCst);
            self.call_id()
                .store(id, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn an_unanswered_call_is_answered_as_far_as_it_got() {
        let record = InFlight::new().unwrap();
        assert_eq!(record.take(), None, "nothing yet");
        record.received(7);
        assert_eq!(record.take(), Some((7, Reply::Error(libc::ENOSYS))));
        assert_eq!(record.take(), None, "taken once");
        record.received(8);
        record.performed(0);
        assert_eq!(record.take(), Some((8, Reply::Success(0))));
        record.received(9);
        record.performed(libc::EPERM);
        assert_eq!(record.take(), Some((9, Reply::Error(libc::EPERM))));
        record.received(10);
        record.performed(libc::EPERM);
        record.end();
        assert_eq!(record.take(), None, "answered by the helper itself");
        record.received(11);
        assert_eq!(
            record.take(),
            Some((11, Reply::Error(libc::ENOSYS))),
            "no stale result"
        );
    }

    /// Runs `child` in a forked child that exits with what it returns. Only async-signal-safe
    /// work may happen in `child`.
    fn fork_child(child: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child runs only `child`, then _exit, without the harness's destructors.
        match unsafe { libc::fork() } {
            // SAFETY: ends the child without unwinding into the harness.
            0 => unsafe { libc::_exit(child()) },
            pid => {
                assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
                pid
            }
        }
    }

    /// Pins the calling thread to `cpu`, or back to every CPU (`None`).
    fn pin(cpu: Option<usize>) {
        // SAFETY: cpu_set_t is plain data; sched_setaffinity on the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for c in 0..libc::CPU_SETSIZE as usize {
                if cpu.is_none_or(|cpu| cpu == c) {
                    libc::CPU_SET(c, &mut set);
                }
            }
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
        }
    }

    /// Whether `pid` sleeps in syscall `nr` (per /proc/PID/syscall and stat).
    fn sleeps_in(pid: i32, nr: i64) -> bool {
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        syscall.split(' ').next() == Some(&nr.to_string()) && matches!(state, Some('S' | 'D'))
    }

    /// The exit code of child `pid`, once it has exited.
    fn exit_code(pid: i32) -> i32 {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        libc::WEXITSTATUS(status)
    }

    /// A helper killed while the kernel hands it a call (it never runs another instruction of
    /// its own) still leaves the call's id where the runtime reads it, so the call is answered
    /// rather than left waiting. The helper is kept off the CPU from the moment the call wakes
    /// it until it is killed by a real-time thread spinning on the CPU it is pinned to.
    #[test]
    fn a_helper_killed_during_the_receipt_leaves_the_call_behind() {
        use std::io::{Read, Write};
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert!(
            cpus >= 2,
            "needs two CPUs, one to hold the helper off, one for the caller"
        );
        let record = InFlight::new().unwrap();
        let filter = crate::filters::notify_filter().unwrap();
        let (go_read, mut go_write) = std::io::pipe().unwrap();
        let (mut fd_read, fd_write) = std::io::pipe().unwrap();
        let trapped = fork_child(|| {
            pin(Some(1));
            // SAFETY: prctl and write with valid arguments; read into a local byte; mount
            // with NUL-terminated strings. All async-signal-safe.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                let Ok(listener) = crate::install::install_notify(&filter) else {
                    return 1;
                };
                libc::write(fd_write.as_raw_fd(), (&raw const listener).cast(), 4);
                let mut byte = 0u8;
                libc::read(go_read.as_raw_fd(), (&raw mut byte).cast(), 1);
                // Only the test's copy is left: if the test fails, the call does not wait.
                libc::close(listener);
                if libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                ) == 0
                {
                    return 0;
                }
                *libc::__errno_location()
            }
        });
        let mut number = [0u8; 4];
        fd_read.read_exact(&mut number).unwrap();
        let pidfd = eci_ns::PidFd::open(trapped).unwrap();
        let listener =
            eci_ns::sys::pidfd_getfd(pidfd.as_raw_fd(), i32::from_ne_bytes(number)).unwrap();
        let helper = fork_child(|| {
            pin(Some(0));
            match record.receive(listener.as_raw_fd()) {
                Ok(Some(_)) => 0,
                _ => 1,
            }
        });
        while !sleeps_in(helper, libc::SYS_ioctl) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // From here until the helper is killed, this thread holds CPU 0: the helper, woken by
        // the call, cannot run a user instruction.
        pin(Some(0));
        let fifo = libc::sched_param { sched_priority: 1 };
        // SAFETY: the calling thread, a valid parameter.
        let made_real_time = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) };
        assert_eq!(made_real_time, 0, "{}", std::io::Error::last_os_error());
        go_write.write_all(b"g").unwrap();
        let waited = std::time::Instant::now();
        while !sleeps_in(trapped, libc::SYS_mount) && waited.elapsed().as_secs() < 1 {}
        // SAFETY: our own child.
        unsafe { libc::kill(helper, libc::SIGKILL) };
        let other = libc::sched_param { sched_priority: 0 };
        // SAFETY: as above.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &other) };
        pin(None);
        let helper_code = exit_code(helper);
        assert!(sleeps_in(trapped, libc::SYS_mount), "the call waits");
        let (id, reply) = record.take().expect("the call is on record");
        assert_eq!(reply, Reply::Error(libc::ENOSYS));
        respond(listener.as_raw_fd(), id, reply).unwrap();
        assert_eq!(exit_code(trapped), libc::ENOSYS, "answered");
        // The helper was killed (WEXITSTATUS of a signal death is 0), never returned on its own.
        assert_eq!(helper_code, 0);
    }
}
