//! Idmapped mounts: a copy of a mount tree whose files appear with owners mapped through a user
//! namespace (on-disk ID N appears as whatever the namespace maps N to), so that a container
//! sees its rootfs and read-only host directories with container-relative ownership without a
//! single chown. Every function is allocation-free: the mounter calls them after fork.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use eci_ns::sys::{self, check, Errno, FsContext, MountAttr, SysResult, MOUNT_ATTR_IDMAP};

/// A detached copy of the mount at `source` (any fd naming it, O_PATH is enough), idmapped
/// through the user namespace `userns`; with `recursive`, the mounts under it come along, as
/// they are. Dropping it unmounts the copy.
///
/// Only the top mount is idmapped, as runc's `idmap` option does. Mounts the host has under a
/// bound directory are the host's: idmapped, a host root's files on them would read as the
/// container root's own, and a writable one (under a read-only bind, whose flag covers only
/// the top) would take writes as host root. Left as they are, their owners stay unmapped.
pub fn idmapped_copy(
    source: BorrowedFd<'_>,
    recursive: bool,
    userns: BorrowedFd<'_>,
) -> SysResult<OwnedFd> {
    copy(source, recursive, false, userns)
}

/// A detached copy of the mount tree at `source` with every mount in it idmapped through
/// `userns`: what the OCI `ridmap` option asks for, explicitly (see [`idmapped_copy`] for why
/// nothing else gets it).
pub fn idmapped_tree(source: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    copy(source, true, true, userns)
}

/// A detached copy, with its submounts if `recursive`, idmapped on top or (`idmap_all`)
/// throughout.
fn copy(
    source: BorrowedFd<'_>,
    recursive: bool,
    idmap_all: bool,
    userns: BorrowedFd<'_>,
) -> SysResult<OwnedFd> {
    let rec = if recursive {
        libc::AT_RECURSIVE as u32
    } else {
        0
    };
    let tree = sys::open_tree(source.as_raw_fd(), c"", sys::OPEN_TREE_CLONE | rec)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        userns_fd: userns.as_raw_fd() as u64,
        ..MountAttr::default()
    };
    sys::mount_setattr(tree.as_raw_fd(), idmap_all, &attr)?;
    Ok(tree)
}

/// Attaches a detached tree on top of `target`: the fd itself when `path` is empty, otherwise
/// `path` relative to it (`AT_FDCWD` for the working directory).
pub fn attach(tree: BorrowedFd<'_>, target: RawFd, path: &CStr) -> SysResult<()> {
    sys::attach_tree(tree.as_raw_fd(), target, path)
}

/// A new overlay, detached, made of the directories `lower` (uppermost first) and, if given,
/// `upper` as (the directory holding them, upper's name, work's name), each idmapped through
/// `userns`, with the mount `options` (key and value, or a flag) of the overlay it replaces.
/// It is how a container sees an overlay root (Docker's) with its own owners when the overlay
/// itself cannot be idmapped: its layers can. No file is chowned and nothing is copied up:
/// what the container writes lands in the upper layer with the owners the image uses.
///
/// The overlay does its own work in the layers (copy-up, whiteouts, the work directory) with
/// the caller's credentials, which must therefore be the container's root for files (fsuid and
/// fsgid) with the capabilities still in effect: host root has no ID on the idmapped layers.
pub fn idmapped_overlay(
    lower: &[CString],
    upper: Option<(&CStr, &CStr, &CStr)>,
    options: &[(CString, Option<CString>)],
    userns: BorrowedFd<'_>,
) -> SysResult<OwnedFd> {
    let fs = FsContext::open(c"overlay")?;
    for (key, value) in options {
        match value {
            Some(value) => fs.set_string(key, value)?,
            None => fs.set_flag(key)?,
        }
    }
    // The idmapped copies are detached trees, taken apart when their last descriptor closes;
    // the overlay clones them only when it is created, so they are held until then.
    if lower.len() + 1 > MOST_LAYERS {
        return Err(Errno(libc::E2BIG));
    }
    let mut held: [Option<OwnedFd>; MOST_LAYERS] = std::array::from_fn(|_| None);
    for (layer, hold) in lower.iter().zip(held.iter_mut()) {
        let copy = idmapped_copy(open_dir(libc::AT_FDCWD, layer)?.as_fd(), false, userns)?;
        fs.set_fd(c"lowerdir+", copy.as_raw_fd())?;
        *hold = Some(copy);
    }
    if let Some((parent, upper, work)) = upper {
        let copy = idmapped_copy(open_dir(libc::AT_FDCWD, parent)?.as_fd(), false, userns)?;
        fs.set_fd(c"upperdir", open_dir(copy.as_raw_fd(), upper)?.as_raw_fd())?;
        fs.set_fd(c"workdir", open_dir(copy.as_raw_fd(), work)?.as_raw_fd())?;
        held[lower.len()] = Some(copy);
    }
    let mount = fs.mount(0);
    drop(held);
    mount
}

/// At most this many layers (lower ones and the upper one): Docker allows 128.
const MOST_LAYERS: usize = 130;

/// An O_PATH descriptor of the directory `path` (relative to `dir`); symlinks are followed, as
/// the overlay's own mount followed them (Docker names its layers through links).
fn open_dir(dir: RawFd, path: &CStr) -> SysResult<OwnedFd> {
    openat(
        dir,
        path,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
    )
}

fn openat(dir: RawFd, path: &CStr, flags: libc::c_int) -> SysResult<OwnedFd> {
    // SAFETY: a NUL-terminated path.
    let fd = check(unsafe { libc::syscall(libc::SYS_openat, dir, path.as_ptr(), flags) })?;
    // SAFETY: openat returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// How many IDs from 0 are the host's system users and groups (root, daemon, bin, sys, ...,
/// messagebus, crontab, shadow, utmp): Debian's, Ubuntu's and Fedora's host users start at
/// 1000 (UID_MIN, GID_MIN).
pub const SYSTEM_IDS: u32 = 1000;

/// A user namespace that maps IDs 0 to [`SYSTEM_IDS`] - 1 (users and groups) to the host IDs
/// from `host_start` (as the container's own namespace maps them), for idmapped mounts of host
/// paths: through it host root's files show as the container root's, system users' and
/// groups' as theirs (a setgid program keeps its group, which the kernel honours only where
/// owner and group are both mapped), and every host user's as nobody, whom container root has
/// no power over (a capability overrides a file's permissions only where its owner and group
/// are mapped). Made by a child that is killed and reaped before this returns; the descriptor
/// keeps the namespace. Allocation-free: the mounter calls it after fork, as host root.
pub fn system_ids_userns(host_start: u32) -> SysResult<OwnedFd> {
    let flags = libc::CLONE_NEWUSER as u64 | libc::CLONE_PIDFD as u64;
    // SAFETY: the child only waits to be killed, which is async-signal-safe.
    let (child, pidfd) = match unsafe { sys::clone_fork(flags) }? {
        sys::Forked::Child => loop {
            // SAFETY: pause takes nothing.
            unsafe { libc::pause() };
        },
        sys::Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    // SAFETY: clone gave us the pidfd; we own it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // The caller's children may live in another PID namespace than its /proc shows (the
    // mounter's are the container's): the pidfd names the child as /proc knows it.
    let made = pid_in_proc(&pidfd).and_then(|pid| map_system_ids_and_open(pid, host_start));
    let _ = sys::kill(child, libc::SIGKILL);
    let _ = sys::waitpid(child);
    made
}

/// The PID `pidfd`'s process has in the PID namespace of /proc (its fdinfo's `Pid:`).
fn pid_in_proc(pidfd: &OwnedFd) -> SysResult<i32> {
    let info = open_proc(&sys::ProcPath::fd_info(pidfd.as_raw_fd()), libc::O_RDONLY)?;
    let mut text = [0u8; 1024];
    // SAFETY: a valid buffer of its length.
    let len = check(unsafe {
        libc::read(info.as_raw_fd(), text.as_mut_ptr().cast(), text.len()) as i64
    })?;
    let text = &text[..len as usize];
    let key = b"Pid:\t";
    let at = text
        .windows(key.len())
        .position(|w| w == key)
        .ok_or(Errno(libc::ESRCH))?;
    let digits = text[at + key.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .take(10);
    let pid = digits.fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    i32::try_from(pid)
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or(Errno(libc::ESRCH))
}

/// Writes `0 host_start SYSTEM_IDS` as `pid`'s uid and gid maps and opens its user namespace.
fn map_system_ids_and_open(pid: i32, host_start: u32) -> SysResult<OwnedFd> {
    let mut line = [0u8; 32];
    line[..2].copy_from_slice(b"0 ");
    let mut len = 2 + sys::write_decimal(&mut line[2..], u64::from(host_start));
    line[len] = b' ';
    len += 1;
    len += sys::write_decimal(&mut line[len..], u64::from(SYSTEM_IDS));
    line[len] = b'\n';
    len += 1;
    for file in [&b"uid_map"[..], b"gid_map"] {
        let fd = open_proc(&sys::ProcPath::of(pid, file), libc::O_WRONLY)?;
        // SAFETY: a valid buffer of `len` bytes.
        let written =
            check(unsafe { libc::write(fd.as_raw_fd(), line.as_ptr().cast(), len) as i64 })?;
        if written as usize != len {
            return Err(Errno(libc::EIO));
        }
    }
    open_proc(&sys::ProcPath::of(pid, b"ns/user"), libc::O_RDONLY)
}

fn open_proc(path: &sys::ProcPath, flags: libc::c_int) -> SysResult<OwnedFd> {
    openat(libc::AT_FDCWD, path.as_cstr(), flags | libc::O_CLOEXEC)
}

/// True for the errors of a filesystem (or kernel) that cannot idmap a mount.
pub fn unsupported(errno: Errno) -> bool {
    matches!(
        errno.0,
        libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS | libc::EPERM
    )
}

/// Finds out by trying whether the tree at `source` can be idmapped through `userns`. Nothing
/// is mounted: the copy is dropped at once.
pub fn supported(
    source: BorrowedFd<'_>,
    recursive: bool,
    userns: BorrowedFd<'_>,
) -> SysResult<bool> {
    match idmapped_copy(source, recursive, userns) {
        Ok(_) => Ok(true),
        Err(errno) if unsupported(errno) => Ok(false),
        Err(errno) => Err(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The owner `name` shows under the detached tree `tree`.
    fn owner_under(tree: &OwnedFd, name: &CStr) -> (u32, u32) {
        // SAFETY: all-zero is a valid stat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid stat buffer and a NUL-terminated name.
        let done = unsafe { libc::fstatat(tree.as_raw_fd(), name.as_ptr(), &mut st, 0) };
        assert_eq!(done, 0, "{}", std::io::Error::last_os_error());
        (st.st_uid, st.st_gid)
    }

    #[test]
    fn through_a_system_ids_namespace_only_system_files_have_an_owner() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        for (name, owner) in [("roots", 0), ("messagebus", 100), ("users", 1000)] {
            let path = dir.path().join(name);
            std::fs::write(&path, b"x").unwrap();
            std::os::unix::fs::chown(&path, Some(owner), Some(owner)).unwrap();
        }
        let host_start = 0x7400_0000;
        let userns = system_ids_userns(host_start).unwrap();
        let meta = std::fs::metadata(format!("/proc/self/fd/{}", userns.as_raw_fd())).unwrap();
        assert_ne!(
            meta.ino(),
            std::fs::metadata("/proc/self/ns/user").unwrap().ino()
        );
        let source = std::fs::File::open(dir.path()).unwrap();
        let tree = idmapped_copy(source.as_fd(), false, userns.as_fd()).unwrap();
        assert_eq!(owner_under(&tree, c"roots"), (host_start, host_start));
        let system = host_start + 100;
        assert_eq!(owner_under(&tree, c"messagebus"), (system, system));
        assert_eq!(owner_under(&tree, c"users"), (65534, 65534), "nobody's");
    }
}
