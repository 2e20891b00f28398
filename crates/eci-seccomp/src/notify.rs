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

/// How the trapped call returns. There is deliberately no "continue": every call this crate
/// traps is decided on copied arguments and, if allowed, performed by the supervisor.
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
        // SAFETY: raw is a valid seccomp_notif for the kernel to fill.
        match check_int(unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut raw) })
        {
            Ok(_) => Ok(Some(Notification {
                id: raw.id,
                pid: raw.pid,
                nr: raw.data.nr,
                arch: raw.data.arch,
                args: raw.data.args,
            })),
            Err(Errno(libc::ENOENT)) | Err(Errno(libc::EINTR)) => Ok(None),
            Err(errno) => Err(errno),
        }
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
/// kernel offers no way to list received calls. So the helper records each call here (a page
/// mapped shared before the fork, two stores per call, no syscall), and whoever replaces it
/// answers the one it left: with the result it recorded if it had performed the call, else
/// ENOSYS. Two windows of a few instructions remain: a helper killed between receiving a call
/// and recording it leaves that caller waiting until it is killed or the container ends, and
/// one killed between performing a call and recording its result gets it answered ENOSYS
/// although the mount was made.
#[derive(Debug)]
pub struct InFlight {
    slots: std::ptr::NonNull<[std::sync::atomic::AtomicU64; 2]>,
}

// SAFETY: the mapping is only reached through atomics, and it lives until the owner drops it.
unsafe impl Send for InFlight {}
// SAFETY: as above.
unsafe impl Sync for InFlight {}

/// Marks a recorded result (errno in the low half), so that errno 0 differs from "none".
const PERFORMED: u64 = 1 << 32;

impl InFlight {
    /// Maps the shared page. Children forked afterwards share it.
    pub fn new() -> std::io::Result<InFlight> {
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
        // A zeroed page is two zero atomics: nothing in flight.
        let slots = std::ptr::NonNull::new(page.cast()).ok_or(std::io::ErrorKind::Other)?;
        Ok(InFlight { slots })
    }

    fn slots(&self) -> &[std::sync::atomic::AtomicU64; 2] {
        // SAFETY: the mapping is valid, aligned and zero-initialised until drop.
        unsafe { self.slots.as_ref() }
    }

    /// The helper received call `id`. Allocation-free.
    pub fn begin(&self, id: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        self.slots()[1].store(0, SeqCst);
        self.slots()[0].store(id, SeqCst);
    }

    /// The helper performed the call, which returned `errno` (0 for success). Allocation-free.
    pub fn performed(&self, errno: i32) {
        let result = PERFORMED | u64::from(errno as u32);
        self.slots()[1].store(result, std::sync::atomic::Ordering::SeqCst);
    }

    /// The helper answered the call, or handed it on. Allocation-free.
    pub fn end(&self) {
        self.slots()[0].store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// Once the helper is dead: the call it left unanswered, with the answer it would have given
    /// if it had performed the call, else ENOSYS (the answer of a listener nobody serves).
    pub fn take(&self) -> Option<(u64, Reply)> {
        use std::sync::atomic::Ordering::SeqCst;
        let id = self.slots()[0].swap(0, SeqCst);
        let result = self.slots()[1].swap(0, SeqCst);
        if id == 0 {
            return None;
        }
        let reply = match (result & PERFORMED != 0, result as u32 as i32) {
            (true, 0) => Reply::Success(0),
            (true, errno) => Reply::Error(errno),
            (false, _) => Reply::Error(libc::ENOSYS),
        };
        Some((id, reply))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // SAFETY: the page mapped in `new`, unmapped once.
        unsafe { libc::munmap(self.slots.as_ptr().cast(), 4096) };
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

    #[test]
    fn an_unanswered_call_is_answered_as_far_as_it_got() {
        let record = InFlight::new().unwrap();
        assert_eq!(record.take(), None, "nothing yet");
        record.begin(7);
        assert_eq!(record.take(), Some((7, Reply::Error(libc::ENOSYS))));
        assert_eq!(record.take(), None, "taken once");
        record.begin(8);
        record.performed(0);
        assert_eq!(record.take(), Some((8, Reply::Success(0))));
        record.begin(9);
        record.performed(libc::EPERM);
        assert_eq!(record.take(), Some((9, Reply::Error(libc::EPERM))));
        record.begin(10);
        record.performed(libc::EPERM);
        record.end();
        assert_eq!(record.take(), None, "answered by the helper itself");
        record.begin(11);
        assert_eq!(
            record.take(),
            Some((11, Reply::Error(libc::ENOSYS))),
            "no stale result"
        );
    }

    #[test]
    fn a_forked_child_records_where_the_parent_reads() {
        let record = InFlight::new().unwrap();
        // SAFETY: the child only stores to shared atomics and exits.
        match unsafe { libc::fork() } {
            0 => {
                record.begin(42);
                record.performed(libc::EBUSY);
                // SAFETY: ends the child without running the test harness's destructors.
                unsafe { libc::_exit(0) }
            }
            child => {
                assert!(child > 0);
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(child, &mut status, 0) };
            }
        }
        assert_eq!(record.take(), Some((42, Reply::Error(libc::EBUSY))));
    }
}
