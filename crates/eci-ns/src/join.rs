//! Opening an existing namespace for a new container to join, and only another container's.
//!
//! A spec may name an existing namespace by path, as Docker does for `--network
//! container:NAME` (`/proc/PID/ns/net`). [`JoinableNamespace::open`] accepts it only when the
//! path leads to a namespace of the expected type whose owning user namespace lies strictly
//! below the caller's own. The host's namespaces, and those of containers run without a user
//! namespace of their own, are owned by the caller's user namespace or one above it, so they
//! are refused whatever path names them. Everything is read from the one open file, and that
//! same file is what the container joins ([`crate::spawn::SpawnRequest::joined`]): a path
//! changed after the check changes nothing.
//!
//! ```no_run
//! use eci_ns::join::JoinableNamespace;
//! use eci_ns::namespaces::Namespaces;
//!
//! // The network namespace of another container's init.
//! let net = JoinableNamespace::open("/proc/4242/ns/net".as_ref(), Namespaces::NET)?;
//! assert_eq!(net.kind(), Namespaces::NET);
//! # Ok::<(), eci_ns::join::JoinError>(())
//! ```

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::namespaces::Namespaces;

/// `NS_GET_USERNS`: `_IO(0xb7, 0x1)`, the user namespace that owns a namespace.
const NS_GET_USERNS: libc::c_ulong = 0xb701;
/// `NS_GET_PARENT`: `_IO(0xb7, 0x2)`, the parent of a user (or PID) namespace.
const NS_GET_PARENT: libc::c_ulong = 0xb702;
/// `NS_GET_NSTYPE`: `_IO(0xb7, 0x3)`, the CLONE_NEW* type of a namespace.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
/// The magic number of nsfs, where every namespace file lives.
const NSFS_MAGIC: libc::c_long = 0x6e73_6673;

/// The namespace types a container may join: the ones whose sharing gives the joiner no
/// privilege over the namespace (it holds its capabilities in its own user namespace, not in
/// the owner's). A shared PID namespace would need a shared user namespace to mount its /proc,
/// and user, mount, cgroup and time namespaces are always the container's own.
pub const JOINABLE: Namespaces = Namespaces::NET
    .union(Namespaces::IPC)
    .union(Namespaces::UTS);

/// Why a namespace cannot be joined.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Only network, IPC and UTS namespaces may be joined.
    #[error("joining an existing {} namespace ({}) is refused: only network, IPC and UTS namespaces may be shared with another container", name(*.kind), .path.display())]
    NotJoinable {
        /// The type asked for.
        kind: Namespaces,
        /// The path the spec names.
        path: PathBuf,
    },
    /// The path is relative: it would be looked up from wherever the runtime runs.
    #[error("the {} namespace's path '{}' is not absolute", name(*.kind), .path.display())]
    Relative {
        /// The type asked for.
        kind: Namespaces,
        /// The path the spec names.
        path: PathBuf,
    },
    /// The path cannot be opened.
    #[error("opening the {} namespace {}: {source}", name(*.kind), .path.display())]
    Open {
        /// The type asked for.
        kind: Namespaces,
        /// The path the spec names.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The path leads to something other than a namespace.
    #[error("{} is not a namespace file (the {} namespace should be named as /proc/PID/ns/...)", .path.display(), name(*.kind))]
    NotANamespace {
        /// The type asked for.
        kind: Namespaces,
        /// The path the spec names.
        path: PathBuf,
    },
    /// The path leads to a namespace of another type.
    #[error("{} is not a {} namespace", .path.display(), name(*.kind))]
    WrongType {
        /// The type asked for.
        kind: Namespaces,
        /// The path the spec names.
        path: PathBuf,
    },
    /// The namespace belongs to the host, or to a container without a user namespace.
    #[error("joining the {} namespace {} is refused: it is owned by the runtime's user namespace or one above it (it is the host's, or a container's that has no user namespace of its own); only namespaces of containers with their own user namespace may be shared", name(*.kind), .path.display())]
    NotAContainers {
        /// The type asked for.
        kind: Namespaces,
        /// The path the spec names.
        path: PathBuf,
    },
    /// Asking the kernel about the namespace failed.
    #[error("reading {what} of the {} namespace {}: {source}", name(*.kind), .path.display())]
    Query {
        /// What was asked.
        what: &'static str,
        /// The type asked for.
        kind: Namespaces,
        /// The path the spec names.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The OCI name of a single namespace type.
fn name(kind: Namespaces) -> &'static str {
    [
        (Namespaces::NET, "network"),
        (Namespaces::IPC, "ipc"),
        (Namespaces::UTS, "uts"),
        (Namespaces::PID, "pid"),
        (Namespaces::USER, "user"),
        (Namespaces::MOUNT, "mount"),
        (Namespaces::CGROUP, "cgroup"),
        (Namespaces::TIME, "time"),
    ]
    .into_iter()
    .find(|(flag, _)| *flag == kind)
    .map_or("unknown", |(_, name)| name)
}

/// An open namespace of another container, checked and ready to be joined.
#[derive(Debug)]
pub struct JoinableNamespace {
    kind: Namespaces,
    file: OwnedFd,
    owner: (u64, u64),
}

impl JoinableNamespace {
    /// Opens the `kind` namespace at `path` (one type of [`JOINABLE`]) and checks that it is
    /// one, and that its owner lies strictly below the caller's user namespace.
    pub fn open(path: &Path, kind: Namespaces) -> Result<JoinableNamespace, JoinError> {
        let err = |make: fn(Namespaces, PathBuf) -> JoinError| make(kind, path.to_path_buf());
        if kind.bits().count_ones() != 1 || !JOINABLE.contains(kind) {
            return Err(err(|kind, path| JoinError::NotJoinable { kind, path }));
        }
        if !path.is_absolute() {
            return Err(err(|kind, path| JoinError::Relative { kind, path }));
        }
        let open_err = |source| JoinError::Open {
            kind,
            path: path.to_path_buf(),
            source,
        };
        // O_PATH opens nothing: a device or FIFO the path might name is never opened for real.
        let located = open(path, libc::O_PATH).map_err(open_err)?;
        if fs_magic(located.as_fd()).map_err(open_err)? != NSFS_MAGIC {
            return Err(err(|kind, path| JoinError::NotANamespace { kind, path }));
        }
        // setns takes only a file opened for real; this reopens the same namespace.
        let file = open(
            Path::new(&format!("/proc/self/fd/{}", located.as_raw_fd())),
            libc::O_RDONLY,
        )
        .map_err(open_err)?;
        let query = |what| {
            move |source| JoinError::Query {
                what,
                kind,
                path: path.to_path_buf(),
                source,
            }
        };
        let found = ns_ioctl_value(file.as_fd(), NS_GET_NSTYPE).map_err(query("the type"))?;
        if found != kind.bits() as libc::c_int {
            return Err(err(|kind, path| JoinError::WrongType { kind, path }));
        }
        let own = identity_of_path(Path::new("/proc/self/ns/user"))
            .map_err(query("the runtime's user namespace for comparison"))?;
        let Some(owner) = owner_below(file.as_fd(), own).map_err(query("the owner"))? else {
            return Err(err(|kind, path| JoinError::NotAContainers { kind, path }));
        };
        Ok(JoinableNamespace { kind, file, owner })
    }

    /// The namespace's type.
    pub fn kind(&self) -> Namespaces {
        self.kind
    }

    /// The open namespace file, as setns takes it.
    pub fn file(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Device and inode of the user namespace that owns it, as `stat` of a process's
    /// `/proc/PID/ns/user` gives them: which container's it is.
    pub fn owner(&self) -> (u64, u64) {
        self.owner
    }
}

/// The identity of the user namespace owning `ns` if it lies strictly below the one
/// identified by `own`.
fn owner_below(ns: BorrowedFd<'_>, own: (u64, u64)) -> io::Result<Option<(u64, u64)>> {
    // EPERM: the owner is outside the caller's user namespace, so above it.
    let user = match ns_ioctl_fd(ns, NS_GET_USERNS) {
        Ok(user) => user,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Ok(None),
        Err(e) => return Err(e),
    };
    let owner = identity(user.as_fd())?;
    if owner == own {
        return Ok(None);
    }
    Ok(above_is(user, own)?.then_some(owner))
}

/// Whether the user namespace owning namespace `ns` is the one identified by `user` (device
/// and inode, [`namespace_identity`]) or lies below it: whether a process of `user` holding a
/// capability holds it over `ns`, as the kernel's `ns_capable` decides. The caller must be in
/// `user` or above it. Allocation-free, so a forked helper may ask.
pub fn owned_at_or_below(ns: BorrowedFd<'_>, user: (u64, u64)) -> io::Result<bool> {
    let owner = match ns_ioctl_fd(ns, NS_GET_USERNS) {
        Ok(owner) => owner,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(identity(owner.as_fd())? == user || above_is(owner, user)?)
}

/// Whether a user namespace strictly above `user_ns` is the one identified by `target`. User
/// namespaces nest at most 32 deep; the walk ends at `target` or where the caller's reach
/// ends (EPERM).
fn above_is(mut user_ns: OwnedFd, target: (u64, u64)) -> io::Result<bool> {
    loop {
        user_ns = match ns_ioctl_fd(user_ns.as_fd(), NS_GET_PARENT) {
            Ok(parent) => parent,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Ok(false),
            Err(e) => return Err(e),
        };
        if identity(user_ns.as_fd())? == target {
            return Ok(true);
        }
    }
}

/// Device and inode of an open namespace file: what tells two namespaces apart.
pub fn namespace_identity(ns: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    identity(ns)
}

fn open(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: path is a NUL-terminated string that outlives the call.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fs_magic(fd: BorrowedFd<'_>) -> io::Result<libc::c_long> {
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fd is open and stat is a writable statfs buffer.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatfs succeeded and filled it in.
    Ok(unsafe { stat.assume_init() }.f_type as libc::c_long)
}

/// Device and inode: what tells two namespaces apart.
fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fd is open and stat is a writable stat buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded and filled it in.
    let stat = unsafe { stat.assume_init() };
    Ok((stat.st_dev, stat.st_ino))
}

fn identity_of_path(path: &Path) -> io::Result<(u64, u64)> {
    identity(open(path, libc::O_RDONLY)?.as_fd())
}

fn ns_ioctl_value(fd: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the nsfs ioctls asked here take no argument.
    let value = unsafe { libc::ioctl(fd.as_raw_fd(), request) };
    if value < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

fn ns_ioctl_fd(fd: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<OwnedFd> {
    let new = ns_ioctl_value(fd, request)?;
    // SAFETY: NS_GET_USERNS and NS_GET_PARENT return a new descriptor, with O_CLOEXEC.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

#[cfg(test)]
mod tests;
