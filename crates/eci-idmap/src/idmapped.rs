//! Idmapped mounts: a copy of a mount tree whose files appear with owners mapped through a user
//! namespace (on-disk ID N appears as whatever the namespace maps N to), so that a container
//! sees its rootfs and read-only host directories with container-relative ownership without a
//! single chown. Every function is allocation-free: the mounter calls them after fork.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use eci_ns::sys::{check, Errno, SysResult};

const OPEN_TREE_CLONE: u32 = 1;
const AT_RECURSIVE: u32 = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount tree at `source` (any fd naming it, O_PATH is enough),
/// idmapped through the user namespace `userns`. Dropping it unmounts the copy.
pub fn idmapped_copy(
    source: BorrowedFd<'_>,
    recursive: bool,
    userns: BorrowedFd<'_>,
) -> SysResult<OwnedFd> {
    let rec = if recursive { AT_RECURSIVE } else { 0 };
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_EMPTY_PATH as u32 | rec;
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names `source` itself.
    let tree = check(unsafe {
        libc::syscall(libc::SYS_open_tree, source.as_raw_fd(), c"".as_ptr(), flags)
    })?;
    // SAFETY: open_tree returned a new fd that we own.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: attr is a valid mount_attr of the size passed; the path is empty with AT_EMPTY_PATH.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as u32 | rec,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(tree)
}

/// Attaches a detached tree on top of `target`: the fd itself when `path` is empty, otherwise
/// `path` relative to it (`AT_FDCWD` for the working directory).
pub fn attach(tree: BorrowedFd<'_>, target: RawFd, path: &CStr) -> SysResult<()> {
    let flags = MOVE_MOUNT_F_EMPTY_PATH
        | if path.is_empty() {
            MOVE_MOUNT_T_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: both paths are NUL-terminated; the fds are open.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target,
            path.as_ptr(),
            flags,
        )
    })
    .map(drop)
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
