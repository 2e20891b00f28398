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
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path.
    let fd = check(unsafe { libc::syscall(libc::SYS_openat, dir, path.as_ptr(), flags) })?;
    // SAFETY: openat returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
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
