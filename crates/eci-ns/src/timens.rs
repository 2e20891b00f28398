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

/// CLOCK_BOOTTIME now, as the calling process sees it: what a container's boot clock is to
/// count from ([`enter_with_boot_clock_from`]). Async-signal-safe.
pub fn boot_clock() -> SysResult<libc::timespec> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a writable timespec.
    check_int(unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) })?;
    Ok(now)
}

/// Moves the calling process into a new time namespace whose CLOCK_BOOTTIME reads zero at
/// `origin`, a reading of [`boot_clock`] taken earlier in the caller's time namespace (before
/// the caller was created, so that its own start time counts from zero too, not from before
/// it). The offsets the caller's namespace already has (eci inside an eci container) are kept
/// under the new one, so the new clock counts from `origin` whatever namespace the caller is
/// in. The caller must be single-threaded and hold CAP_SYS_ADMIN and CAP_SYS_TIME in its user
/// namespace (which then owns the new one). Async-signal-safe: runs between fork and exec.
///
/// ```no_run
/// // In the runtime, before the container's init is cloned:
/// let origin = eci_ns::timens::boot_clock()?;
/// // In the init, root of its new user namespace:
/// eci_ns::timens::enter_with_boot_clock_from(origin)?;
/// let uptime = std::fs::read_to_string("/proc/uptime")?;
/// assert!(uptime.starts_with("0."));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn enter_with_boot_clock_from(origin: libc::timespec) -> SysResult<()> {
    sys::unshare(libc::CLONE_NEWTIME)?;
    // The new namespace starts with its parent's offsets; the file shows them now.
    let mut text = [0u8; 256];
    let read = read_file(c"/proc/self/timens_offsets", &mut text)?;
    let parent = parse_boot_offset(&text[..read]).ok_or(Errno(libc::EINVAL))?;
    let offset = parent - nanos(origin);
    let mut buf = [0u8; OFFSET_LINE_MAX];
    let line = offset_line(offset, &mut buf).ok_or(Errno(libc::ERANGE))?;
    write_file(c"/proc/self/timens_offsets", line)?;
    let ns = open(c"/proc/self/ns/time_for_children", libc::O_RDONLY)?;
    let joined = sys::setns(ns, libc::CLONE_NEWTIME);
    sys::close(ns);
    joined
}

fn nanos(time: libc::timespec) -> i128 {
    i128::from(time.tv_sec) * 1_000_000_000 + i128::from(time.tv_nsec)
}

fn open(path: &std::ffi::CStr, flags: libc::c_int) -> SysResult<RawFd> {
    // SAFETY: a NUL-terminated path.
    check_int(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// Reads up to `buf.len()` bytes of `path` in one read. Async-signal-safe.
fn read_file(path: &std::ffi::CStr, buf: &mut [u8]) -> SysResult<usize> {
    let fd = open(path, libc::O_RDONLY)?;
    // SAFETY: buf is writable for its length.
    let read = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    let errno = Errno::last();
    sys::close(fd);
    if read < 0 {
        return Err(errno);
    }
    Ok(read as usize)
}

/// Writes `bytes` to `path` in one write. Async-signal-safe.
fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> SysResult<()> {
    let fd = open(path, libc::O_WRONLY)?;
    // SAFETY: bytes is a valid buffer of its length.
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    let errno = Errno::last();
    sys::close(fd);
    match written {
        n if n < 0 => Err(errno),
        n if n as usize == bytes.len() => Ok(()),
        _ => Err(Errno(libc::EIO)),
    }
}

/// The boot clock's offset in `timens_offsets` text ("boottime SECS NSECS" among its lines,
/// fields padded with spaces), in nanoseconds. Allocation-free.
fn parse_boot_offset(text: &[u8]) -> Option<i128> {
    for line in text.split(|b| *b == b'\n') {
        let mut fields = line.split(|b| *b == b' ').filter(|field| !field.is_empty());
        if fields.next() != Some(&b"boottime"[..]) {
            continue;
        }
        let secs = parse_decimal(fields.next()?)?;
        let nsecs = parse_decimal(fields.next()?)?;
        if fields.next().is_some() || !(0..1_000_000_000).contains(&nsecs) {
            return None;
        }
        return Some(secs * 1_000_000_000 + nsecs);
    }
    None
}

/// A decimal integer with an optional minus sign, of at most 19 digits. Allocation-free.
fn parse_decimal(field: &[u8]) -> Option<i128> {
    let (negative, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut value: i128 = 0;
    for digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i128::from(digit - b'0');
    }
    Some(if negative { -value } else { value })
}

/// The longest line [`offset_line`] writes.
const OFFSET_LINE_MAX: usize = 64;

/// The `timens_offsets` line that moves CLOCK_BOOTTIME by `offset` nanoseconds: "boottime SECS
/// NSECS\n", the nanoseconds in [0, 1e9) as the kernel parses them; `None` if the seconds do
/// not fit an i64. Allocation-free.
fn offset_line(offset: i128, buf: &mut [u8; OFFSET_LINE_MAX]) -> Option<&[u8]> {
    let secs = i64::try_from(offset.div_euclid(1_000_000_000)).ok()?;
    let nsecs = offset.rem_euclid(1_000_000_000) as i64;
    const CLOCK: &[u8] = b"boottime ";
    buf[..CLOCK.len()].copy_from_slice(CLOCK);
    let mut len = CLOCK.len();
    len += write_decimal(secs, &mut buf[len..]);
    buf[len] = b' ';
    len += 1;
    len += write_decimal(nsecs, &mut buf[len..]);
    buf[len] = b'\n';
    Some(&buf[..len + 1])
}

/// Writes `value` in decimal, signed, at the start of `out` (which has room for 20 bytes);
/// returns how many bytes. Allocation-free.
fn write_decimal(value: i64, out: &mut [u8]) -> usize {
    let sign = usize::from(value < 0);
    if sign == 1 {
        out[0] = b'-';
    }
    sign + crate::sys::write_decimal(&mut out[sign..], value.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(offset: i128) -> String {
        let mut buf = [0u8; OFFSET_LINE_MAX];
        String::from_utf8(offset_line(offset, &mut buf).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn offsets_are_written_with_nanoseconds_in_range() {
        assert_eq!(line(-1_234_000_000_000), "boottime -1234 0\n");
        assert_eq!(line(-1_234_250_000_000), "boottime -1235 750000000\n");
        assert_eq!(line(-1), "boottime -1 999999999\n");
        assert_eq!(line(0), "boottime 0 0\n");
        assert_eq!(line(5_000_000_001), "boottime 5 1\n");
        assert!(offset_line(i128::MAX, &mut [0; OFFSET_LINE_MAX]).is_none());
    }

    #[test]
    fn the_kernels_offsets_text_is_read() {
        let text = b"monotonic          7         0\nboottime        -123       456\n";
        assert_eq!(parse_boot_offset(text), Some(-123_000_000_000 + 456));
        assert_eq!(parse_boot_offset(b"boottime 0 0\n"), Some(0));
        for bad in [
            &b"monotonic 0 0\n"[..],
            b"boottime 1\n",
            b"boottime 1 1000000000\n",
            b"boottime 1 -1\n",
            b"boottime x 0\n",
            b"boottime 1 2 3\n",
            b"",
        ] {
            assert_eq!(
                parse_boot_offset(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Runs `child` in a forked child and returns its exit code. Only async-signal-safe work
    /// may happen in `child`.
    fn in_child(child: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child makes only async-signal-safe calls, then _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: ends the child without running the harness's destructors.
            unsafe { libc::_exit(child()) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        libc::WEXITSTATUS(status)
    }

    /// Enters a namespace from `origin` (100 + errno on failure), then runs `checks`.
    fn entered(origin: libc::timespec, checks: impl FnOnce() -> i32) -> i32 {
        match enter_with_boot_clock_from(origin) {
            Err(Errno(errno)) => 100 + errno,
            Ok(()) => checks(),
        }
    }

    /// In a forked child (single-threaded, as joining a time namespace needs): the boot clock,
    /// sysinfo(2) and /proc/uptime all start near zero there, while the host's run on.
    #[test]
    fn a_process_in_the_namespace_sees_its_boot_clock_from_zero() {
        let host = boot_clock().unwrap();
        assert!(host.tv_sec > 2, "the host booted a while ago");
        let code = in_child(|| entered(boot_clock().unwrap_or(host), child_checks));
        assert_eq!(code, 0, "100+ is the errno of entering");
        assert!(
            boot_clock().unwrap().tv_sec >= host.tv_sec,
            "the host's clock is unmoved"
        );
    }

    /// A namespace made inside one (eci inside an eci container) counts from its own origin,
    /// not from the host's boot: the outer namespace's offset is kept under the new one.
    #[test]
    fn a_nested_namespace_counts_from_its_own_origin() {
        let host = boot_clock().unwrap();
        let code = in_child(|| {
            entered(host, || {
                // SAFETY: a one-second sleep; async-signal-safe.
                unsafe { libc::sleep(1) };
                let Ok(outer_origin) = boot_clock() else {
                    return 90;
                };
                // A child: joining a time namespace needs a single-threaded process, and the
                // outer one is this process's own.
                in_child(|| entered(outer_origin, child_checks))
            })
        });
        assert_eq!(code, 0, "100+ is the errno of entering");
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
        fn written_offsets_read_back(offset in -(1i128 << 90)..(1i128 << 90)) {
            let mut buf = [0u8; OFFSET_LINE_MAX];
            if let Some(text) = offset_line(offset, &mut buf) {
                prop_assert!(text.len() <= OFFSET_LINE_MAX);
                prop_assert_eq!(parse_boot_offset(text), Some(offset));
            } else {
                prop_assert!(offset.div_euclid(1_000_000_000) > i128::from(i64::MAX)
                    || offset.div_euclid(1_000_000_000) < i128::from(i64::MIN));
            }
        }

        #[test]
        fn any_offsets_text_parses_without_panicking(text in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_boot_offset(&text);
        }
    }
}
