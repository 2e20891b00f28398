//! Performing a call with the caller's credentials.
//!
//! The mount helper acts as the container's root with every capability there. A caller with
//! fewer (a process of uid 1000 given CAP_SYS_ADMIN alone) may mount, but the kernel would
//! look up its paths as uid 1000: it may not search a directory closed to that uid, nor follow
//! /proc/1/root of another uid's process. So for such a caller the helper takes the caller's
//! filesystem IDs, supplementary groups and effective capabilities for the one system call,
//! and the kernel makes every check it would have made for the caller. A caller whose
//! effective capabilities hold all of the helper's passes every such check anyway, and costs
//! nothing more. Allocation-free: the helper is a process forked from a threaded runtime.

use std::os::fd::RawFd;

use eci_ns::sys::{self, check, check_int, Errno, SysResult};

/// Supplementary groups taken from a caller, at most. A caller with more is refused (EPERM):
/// given only its first ones, it could pass a check that one of the others fails (a mode
/// that denies a group what it gives everyone else), where the kernel would refuse it.
const MOST_GROUPS: usize = 64;

/// The capabilities the kernel may ask of a mount(2) or umount2(2) and its path lookups:
/// CAP_DAC_OVERRIDE (1), CAP_DAC_READ_SEARCH (2), CAP_FOWNER (3), CAP_SYS_PTRACE (19, for
/// /proc/PID/root and /proc/PID/fd) and CAP_SYS_ADMIN (21).
const LOOKUP_AND_MOUNT_CAPS: u64 = 1 << 1 | 1 << 2 | 1 << 3 | 1 << 19 | 1 << 21;

/// What the kernel checks a thread's path lookups and mounts against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Creds {
    fsuid: u32,
    fsgid: u32,
    groups: [u32; MOST_GROUPS],
    group_count: usize,
    effective: u64,
}

/// The raw system calls act on this thread alone (glibc's wrappers would signal every
/// thread, which a forked helper has no need of).
fn set_fs_ids(fsuid: u32, fsgid: u32) {
    // SAFETY: setfsgid and setfsuid take plain integers and cannot fail in a way that
    // matters here: the result is checked by reading it back below.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, fsgid);
        libc::syscall(libc::SYS_setfsuid, fsuid);
    }
}

/// The calling thread's filesystem IDs, read back: setfsuid(-1) changes nothing and returns
/// the current one.
fn fs_ids() -> (u32, u32) {
    // SAFETY: an invalid ID changes nothing; the call returns the current one.
    unsafe {
        (
            libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32,
            libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32,
        )
    }
}

fn set_groups(groups: &[u32]) -> SysResult<()> {
    // SAFETY: a valid array of `groups.len()` gids.
    check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) }).map(drop)
}

fn get_groups(out: &mut [u32; MOST_GROUPS]) -> SysResult<usize> {
    // SAFETY: room for MOST_GROUPS gids.
    let n = check_int(unsafe { libc::getgroups(MOST_GROUPS as libc::c_int, out.as_mut_ptr()) })?;
    Ok(n as usize)
}

impl Creds {
    /// The credentials of the thread whose /proc directory is `piddir` (its status file, in
    /// this process's numbering), with `effective` as its effective capabilities.
    pub(crate) fn of_caller(piddir: RawFd, effective: u64) -> SysResult<Creds> {
        let mut text = [0u8; 4096];
        let len = read_status(piddir, &mut text)?;
        parse_status(&text[..len], effective)
    }

    /// Whether acting with a caller's credentials could differ from acting as the helper
    /// (the container's root, with every capability there), for a caller with `effective`
    /// capabilities: only if it lacks one that a mount or a path lookup asks for. With all of
    /// them, neither its IDs nor its groups change what the kernel allows.
    pub(crate) fn needed(effective: u64) -> bool {
        LOOKUP_AND_MOUNT_CAPS & !effective != 0
    }

    /// Runs `call` as these credentials, then takes the helper's back. A helper that cannot
    /// take them back ends (it would act with too little, or a caller's, from then on); its
    /// runtime starts another.
    pub(crate) fn acting<T>(&self, call: impl FnOnce() -> SysResult<T>) -> SysResult<T> {
        let (effective, permitted) = sys::own_caps()?;
        let (fsuid, fsgid) = fs_ids();
        let mut own_groups = [0u32; MOST_GROUPS];
        let own_count = get_groups(&mut own_groups)?;
        let switched = set_groups(&self.groups[..self.group_count]).and_then(|()| {
            set_fs_ids(self.fsuid, self.fsgid);
            if fs_ids() != (self.fsuid, self.fsgid) {
                return Err(Errno(libc::EPERM));
            }
            sys::set_effective_caps(self.effective & permitted)?;
            // Each change of IDs or capabilities leaves the helper as dumpable as the host's
            // `fs.suid_dumpable` says; a FUSE mount's child, forked in the call, enters the
            // caller's PID namespace.
            sys::set_undumpable()
        });
        let result = switched.and_then(|()| call());
        let restored = sys::set_effective_caps(permitted).and_then(|()| {
            set_fs_ids(fsuid, fsgid);
            set_groups(&own_groups[..own_count])?;
            sys::set_effective_caps(effective)?;
            sys::set_undumpable()
        });
        if restored.is_err() || fs_ids() != (fsuid, fsgid) {
            sys::exit(125);
        }
        result
    }
}

/// Reads as much of `piddir`'s status file as fits in `out`.
fn read_status(piddir: RawFd, out: &mut [u8]) -> SysResult<usize> {
    // SAFETY: a NUL-terminated relative path under a directory descriptor.
    let fd = check_int(unsafe {
        libc::openat(piddir, c"status".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC)
    })?;
    let mut len = 0;
    let read = loop {
        if len == out.len() {
            break Ok(len);
        }
        // SAFETY: writes at most the rest of `out`.
        let n = unsafe { libc::read(fd, out[len..].as_mut_ptr().cast(), out.len() - len) };
        match n {
            0 => break Ok(len),
            n if n > 0 => len += n as usize,
            _ => break Err(Errno::last()),
        }
    };
    sys::close(fd);
    read
}

/// The filesystem IDs (fourth of the Uid and Gid lines) and the groups of a status text.
/// EIO for a text without them; EPERM for more than [`MOST_GROUPS`] groups, or a Groups line
/// the text cuts short (its last number could be the start of another group's).
fn parse_status(text: &[u8], effective: u64) -> SysResult<Creds> {
    let unreadable = Errno(libc::EIO);
    let mut creds = Creds {
        fsuid: u32::MAX,
        fsgid: u32::MAX,
        groups: [0; MOST_GROUPS],
        group_count: 0,
        effective,
    };
    let mut seen = 0;
    let mut lines = text.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix(b"Uid:") {
            creds.fsuid = numbers(rest).nth(3).flatten().ok_or(unreadable)?;
            seen |= 1;
        } else if let Some(rest) = line.strip_prefix(b"Gid:") {
            creds.fsgid = numbers(rest).nth(3).flatten().ok_or(unreadable)?;
            seen |= 2;
        } else if let Some(rest) = line.strip_prefix(b"Groups:") {
            // The last piece of the split has no newline after it: cut short.
            if lines.peek().is_none() {
                return Err(Errno(libc::EPERM));
            }
            for group in numbers(rest) {
                if creds.group_count == MOST_GROUPS {
                    return Err(Errno(libc::EPERM));
                }
                creds.groups[creds.group_count] = group.ok_or(unreadable)?;
                creds.group_count += 1;
            }
            seen |= 4;
        }
    }
    if seen == 7 {
        Ok(creds)
    } else {
        Err(unreadable)
    }
}

/// The whitespace-separated decimal numbers of `text` (None for a word that is not one).
fn numbers(text: &[u8]) -> impl Iterator<Item = Option<u32>> + '_ {
    text.split(|b| b.is_ascii_whitespace())
        .filter(|word| !word.is_empty())
        .map(|word| {
            word.iter().try_fold(0u32, |n, digit| {
                let digit = digit.checked_sub(b'0').filter(|d| *d < 10)?;
                n.checked_mul(10)?.checked_add(u32::from(digit))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STATUS: &[u8] = b"Name:\tsh\nUmask:\t0022\nUid:\t1000\t1000\t1000\t1001\nGid:\t50\t50\t50\t51\nFDSize:\t64\nGroups:\t4 24 27 \nNStgid:\t9\n";

    #[test]
    fn the_filesystem_ids_and_groups_are_read() {
        let creds = parse_status(STATUS, 1 << 21).unwrap();
        assert_eq!((creds.fsuid, creds.fsgid), (1001, 51));
        assert_eq!(&creds.groups[..creds.group_count], [4, 24, 27]);
        let errno = |text: &[u8]| parse_status(text, 0).err();
        let eio = Some(Errno(libc::EIO));
        assert_eq!(errno(b"Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"), eio);
        assert_eq!(errno(b"Uid:\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\n"), eio);
        // A Groups line the read cut short.
        let cut = b"Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t4 24 12";
        assert_eq!(errno(cut), Some(Errno(libc::EPERM)));
        let none = parse_status(b"Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n", 0).unwrap();
        assert_eq!(none.group_count, 0);
    }

    #[test]
    fn only_a_caller_lacking_a_lookup_or_mount_capability_needs_its_own() {
        assert!(!Creds::needed(u64::MAX));
        assert!(!Creds::needed(LOOKUP_AND_MOUNT_CAPS));
        // Container root here may lack CAP_SYS_RESOURCE, which no mount asks for.
        assert!(!Creds::needed(!(1 << 24)));
        assert!(Creds::needed(1 << 21));
        assert!(Creds::needed(LOOKUP_AND_MOUNT_CAPS & !(1 << 19)));
    }

    proptest! {
        #[test]
        fn any_status_text_parses_without_panicking(text in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_status(&text, 0);
        }

        #[test]
        fn groups_are_taken_whole_or_the_caller_is_refused(groups in proptest::collection::vec(0u32..100_000, 0..200)) {
            let list: Vec<String> = groups.iter().map(u32::to_string).collect();
            let text = format!("Uid:\t1\t1\t1\t1\nGid:\t2\t2\t2\t2\nGroups:\t{}\n", list.join(" "));
            match parse_status(text.as_bytes(), 0) {
                Ok(creds) => prop_assert_eq!(&creds.groups[..creds.group_count], &groups[..]),
                Err(errno) => {
                    prop_assert!(groups.len() > MOST_GROUPS);
                    prop_assert_eq!(errno, Errno(libc::EPERM));
                }
            }
        }
    }
}
