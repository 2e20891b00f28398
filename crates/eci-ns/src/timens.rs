//! A time namespace whose boot clock starts at zero, so that `/proc/uptime`, `sysinfo(2)`,
//! `/proc/stat`'s `btime` and the start times in `/proc/PID/stat` count from the container's
//! start, computed by the kernel itself for every reader in the namespace.
//!
//! The offsets of a time namespace can be written only before any process has entered it, so
//! one cannot be created by clone3 with its offsets: the process unshares one for its children,
//! writes the offsets, then joins it. Only CLOCK_BOOTTIME is moved. CLOCK_MONOTONIC stays the
//! host's, so monotonic timestamps exchanged with processes outside (logs, shared memory)
//! still compare.

use std::os::fd::RawFd;

use crate::sys::{self, check_int, Errno, SysResult};

/// Moves the calling process into a new time namespace whose CLOCK_BOOTTIME reads zero now.
/// The caller must be single-threaded and hold CAP_SYS_ADMIN and CAP_SYS_TIME in its user
/// namespace (which then owns the new one). Async-signal-safe: runs between fork and exec.
///
/// ```no_run
/// // In a freshly cloned container init, root of its user namespace:
/// eci_ns::timens::enter_with_boot_clock_at_zero()?;
/// let uptime = std::fs::read_to_string("/proc/uptime")?;
/// assert!(uptime.starts_with("0."));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn enter_with_boot_clock_at_zero() -> SysResult<()> {
    sys::unshare(libc::CLONE_NEWTIME)?;
    let mut buf = [0u8; OFFSET_LINE_MAX];
    let line = boot_offset_line(boot_clock()?, &mut buf);
    let offsets = open(c"/proc/self/timens_offsets", libc::O_WRONLY)?;
    // SAFETY: line is a valid buffer of its length.
    let written = unsafe { libc::write(offsets, line.as_ptr().cast(), line.len()) };
    let written_all = written == line.len() as isize;
    let write_errno = Errno::last();
    sys::close(offsets);
    if !written_all {
        return Err(if written < 0 {
            write_errno
        } else {
            Errno(libc::EIO)
        });
    }
    let ns = open(c"/proc/self/ns/time_for_children", libc::O_RDONLY)?;
    let joined = sys::setns(ns, libc::CLONE_NEWTIME);
    sys::close(ns);
    joined
}

/// CLOCK_BOOTTIME now. Async-signal-safe.
fn boot_clock() -> SysResult<libc::timespec> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a writable timespec.
    check_int(unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) })?;
    Ok(now)
}

fn open(path: &std::ffi::CStr, flags: libc::c_int) -> SysResult<RawFd> {
    // SAFETY: a NUL-terminated path.
    check_int(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// The longest line [`boot_offset_line`] writes.
const OFFSET_LINE_MAX: usize = 64;

/// The `timens_offsets` line that moves CLOCK_BOOTTIME back by `now`: "boottime SECS NSECS\n",
/// with the seconds negative and the nanoseconds in [0, 1e9), as the kernel parses it.
/// Allocation-free.
fn boot_offset_line(now: libc::timespec, buf: &mut [u8; OFFSET_LINE_MAX]) -> &[u8] {
    let (secs, nsecs) = if now.tv_nsec == 0 {
        (-now.tv_sec, 0)
    } else {
        (-now.tv_sec - 1, 1_000_000_000 - now.tv_nsec)
    };
    const CLOCK: &[u8] = b"boottime ";
    buf[..CLOCK.len()].copy_from_slice(CLOCK);
    let mut len = CLOCK.len();
    len += write_decimal(secs, &mut buf[len..]);
    buf[len] = b' ';
    len += 1;
    len += write_decimal(nsecs, &mut buf[len..]);
    buf[len] = b'\n';
    &buf[..len + 1]
}

/// Writes `value` in decimal at the start of `out` (which has room for 20 bytes); returns how
/// many bytes. Allocation-free.
fn write_decimal(value: i64, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 20];
    let mut n = value.unsigned_abs();
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut len = 0;
    if value < 0 {
        out[0] = b'-';
        len = 1;
    }
    for digit in digits[..count].iter().rev() {
        out[len] = *digit;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(sec: i64, nsec: i64) -> String {
        let mut buf = [0u8; OFFSET_LINE_MAX];
        let now = libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        };
        String::from_utf8(boot_offset_line(now, &mut buf).to_vec()).unwrap()
    }

    #[test]
    fn offsets_take_the_clock_back_to_zero() {
        assert_eq!(line(1234, 0), "boottime -1234 0\n");
        assert_eq!(line(1234, 250_000_000), "boottime -1235 750000000\n");
        assert_eq!(line(0, 1), "boottime -1 999999999\n");
        assert_eq!(line(0, 0), "boottime 0 0\n");
    }

    /// In a forked child (single-threaded, as joining a time namespace needs): the boot clock,
    /// sysinfo(2) and /proc/uptime all start near zero there, while the host's run on.
    #[test]
    fn a_process_in_the_namespace_sees_its_boot_clock_from_zero() {
        let host = boot_clock().unwrap();
        assert!(host.tv_sec > 2, "the host booted a while ago");
        // SAFETY: the child makes only async-signal-safe calls, then _exit.
        let child = unsafe { libc::fork() };
        if child == 0 {
            let code = match enter_with_boot_clock_at_zero() {
                Err(Errno(errno)) => 100 + errno,
                Ok(()) => child_checks(),
            };
            // SAFETY: ends the child without running the harness's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "100+ is the errno of entering"
        );
        assert!(
            boot_clock().unwrap().tv_sec >= host.tv_sec,
            "the host's clock is unmoved"
        );
    }

    /// 0 if the boot clock, sysinfo(2) and /proc/uptime all read under a second; else which
    /// failed. Async-signal-safe.
    fn child_checks() -> i32 {
        if boot_clock().map_or(true, |now| now.tv_sec != 0) {
            return 1;
        }
        // SAFETY: sysinfo is plain data; all-zero is valid.
        let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
        // sysinfo rounds a started second up.
        // SAFETY: a writable sysinfo.
        if unsafe { libc::sysinfo(&mut info) } != 0 || info.uptime > 1 {
            return 2;
        }
        let mut text = [0u8; 64];
        let Ok(fd) = open(c"/proc/uptime", libc::O_RDONLY) else {
            return 3;
        };
        // SAFETY: a writable buffer of its length.
        let read = unsafe { libc::read(fd, text.as_mut_ptr().cast(), text.len()) };
        sys::close(fd);
        if read < 2 || &text[..2] != b"0." {
            return 4;
        }
        0
    }

    proptest! {
        #[test]
        fn the_offset_is_exactly_minus_now(sec in 0..i64::MAX / 2, nsec in 0..1_000_000_000i64) {
            let text = line(sec, nsec);
            let mut parts = text.trim_end().split(' ');
            prop_assert_eq!(parts.next(), Some("boottime"));
            let off_sec: i64 = parts.next().unwrap().parse().unwrap();
            let off_nsec: i64 = parts.next().unwrap().parse().unwrap();
            prop_assert!((0..1_000_000_000).contains(&off_nsec));
            prop_assert_eq!(
                i128::from(off_sec) * 1_000_000_000 + i128::from(off_nsec),
                -(i128::from(sec) * 1_000_000_000 + i128::from(nsec))
            );
            prop_assert!(text.len() <= OFFSET_LINE_MAX);
        }
    }
}
