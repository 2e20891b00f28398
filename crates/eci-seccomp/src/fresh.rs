//! Fresh procfs and sysfs for mounts the container makes itself (an inner container runtime
//! mounting /proc for its own PID namespace).
//!
//! The kernel refuses a new procfs or sysfs in the container's mount namespace while locked
//! masks hide parts of the existing one (`mount_too_revealing`), and a mount the container made
//! itself would not have locked masks anyway. So the filesystem is built elsewhere:
//!
//! 1. The runtime starts the **host half**, a thread of its own process with host credentials,
//!    which unshares a mount namespace owned by the host user namespace (and with it the
//!    thread's root and working directory, so the runtime's other threads see none of this),
//!    with a minimal root, a private workshop tmpfs and, inside it, a *shared* slots tmpfs. It
//!    hands the helper that namespace and a socket ([`spawn_host_half`], [`take_host_half`]);
//!    the helper joins the namespace before it joins the container's user namespace.
//! 2. The helper then joins the container's user namespace and unshares again: its own mount
//!    namespace, owned by the container's user namespace, a copy in which the slots tmpfs is a
//!    slave of the host half's.
//! 3. For a `mount -t proc`, the host half creates a procfs for the caller's PID namespace
//!    (fsopen with the `pidns` option; no `mount_too_revealing` check applies in a namespace
//!    owned by the host user namespace) in the workshop, puts the masks and read-only binds on
//!    it, and binds the finished tree into a slot. Propagation copies it into the helper's
//!    namespace, and because that namespace is less privileged, the kernel locks every mount of
//!    the copy (masks cannot be unmounted, read-only cannot be undone).
//! 4. The helper clones the locked tree from its namespace, makes the clone private (else
//!    releasing the slot would propagate into it), enters the caller's view and attaches the
//!    clone at the caller's target. The clone's top is not locked (the caller may unmount its
//!    own mount, with `umount -l` since it has submounts); the masks inside it are.
//!
//! sysfs works the same way, with the host half briefly joining the caller's network namespace.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use eci_ns::channel::{Channel, Message};
use eci_ns::failure::{Failure, Stage};
use eci_ns::sys::{self, check, check_int, Errno, FdPath, FsContext, SysResult};
use eci_ns::yielding::Yielding;

/// The host half's private workshop, in the helper's private namespaces only: filesystems are
/// built and masked here, where nothing propagates. Mode 0711: the helper, once container root,
/// must pass through it to reach the slots.
const WORKSHOP: &CStr = c"/tmp";
const NULL: &CStr = c"/tmp/null";
const BUILD_PREFIX: &[u8] = b"/tmp/build-";
/// The shared staging tmpfs: a finished filesystem is bound into a slot here, whole (with its
/// read-only flags), and so propagates into the helper's namespace.
const SLOTS: &CStr = c"/tmp/slots";
const SLOT_PREFIX: &[u8] = b"/tmp/slots/";

const OP_PROC: u32 = 1;
const OP_SYSFS: u32 = 2;
const OP_RELEASE: u32 = 3;

/// Which filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// procfs.
    Proc,
    /// sysfs.
    Sysfs,
}

impl Fresh {
    /// The filesystem type a mount(2) call names, if it is one of these.
    pub fn of(fstype: &[u8]) -> Option<Fresh> {
        match fstype {
            b"proc" => Some(Fresh::Proc),
            b"sysfs" => Some(Fresh::Sysfs),
            _ => None,
        }
    }
}

/// sysfs's permanently empty directories, made for other filesystems' mounts.
const SYSFS_MOUNT_POINTS: [&str; 8] = [
    "/sys/fs/cgroup",
    "/sys/fs/bpf",
    "/sys/fs/fuse/connections",
    "/sys/fs/pstore",
    "/sys/kernel/config",
    "/sys/kernel/debug",
    "/sys/kernel/security",
    "/sys/kernel/tracing",
];

/// What a fresh procfs and sysfs get: paths relative to their root, masked (an empty read-only
/// tmpfs over a directory, a null device over anything else), made read-only, or covered by a
/// read-only bind of a host file (the container's virtual files).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Masks {
    /// Masked in a fresh procfs.
    pub proc_masked: Vec<CString>,
    /// Read-only in a fresh procfs.
    pub proc_readonly: Vec<CString>,
    /// Masked in a fresh sysfs.
    pub sys_masked: Vec<CString>,
    /// Read-only in a fresh sysfs. A record written before this was known lists none.
    #[serde(default)]
    pub sys_readonly: Vec<CString>,
    /// (host file, path in a fresh procfs) to bind read-only.
    pub proc_binds: Vec<(CString, CString)>,
    /// (host file, path in a fresh sysfs) to bind read-only.
    pub sys_binds: Vec<(CString, CString)>,
    /// Paths in a fresh procfs bound back writable over the read-only /proc/sys: tunables the
    /// kernel keeps per namespace, which the opener's own namespaces answer for.
    pub proc_writable: Vec<CString>,
    /// (host file, path in a fresh procfs) to bind writable: the emulated global tunables.
    pub proc_rw_binds: Vec<(CString, CString)>,
    /// The container's gids in the host's numbering: (host gid of gid 0, count). The kernel
    /// reads a procfs `gid=` in the user namespace of whoever configures it, the host half, so
    /// the container's number is translated first; without this, `gid=` is refused.
    pub gids: Option<(u32, u32)>,
    /// The container's own /proc is read-only: a fresh procfs must be too (EPERM otherwise).
    /// A record written before this was known says not: Docker and Kubernetes never make /proc
    /// read-only, and runc inside has no fallback for a procfs it may not mount.
    #[serde(default)]
    pub proc_read_only: bool,
    /// The container's own /sys is read-only: a fresh sysfs must be too (EPERM otherwise).
    /// A record written before this was known says read-only, the default /sys (runc inside
    /// falls back to binding /sys when it may not mount one).
    #[serde(default = "read_only_unless_known")]
    pub sys_read_only: bool,
    /// The container's own /proc hides what a fresh procfs would show and the host half
    /// cannot hide again: /proc masked whole, or a mount of the spec's under it (a bind over
    /// a file, a tmpfs over a directory). A fresh procfs is refused (EPERM), as the kernel
    /// refuses a mount in a user namespace more revealing than the one visible. A record
    /// written before this was known says refused: what the spec mounted under /proc is not in
    /// it, and a fresh procfs could show what one of those mounts hid.
    #[serde(default = "refused_unless_known")]
    pub proc_refused: bool,
    /// The same for /sys. Mounts at and below the kernel's permanently empty directories,
    /// made for other filesystems (`/sys/fs/cgroup`, `/sys/fs/bpf`, `/sys/kernel/debug`...;
    /// `/proc/sys/fs/binfmt_misc`), hide nothing and count for neither.
    #[serde(default = "refused_unless_known")]
    pub sys_refused: bool,
}

fn read_only_unless_known() -> bool {
    true
}

fn refused_unless_known() -> bool {
    true
}

impl Masks {
    /// The masks of the container's own /proc and /sys, from absolute paths such as
    /// `/proc/kcore`, read as the kernel reads them (`//` and `.` skipped, `..` going up: a
    /// spec's `/proc/../slots` is `/slots`, under neither, never a path beside the fresh
    /// filesystem in the host half's workshop).
    pub fn from_paths(masked: &[String], readonly: &[String]) -> Masks {
        let under = |paths: &[String], root: &str| -> Vec<CString> {
            paths
                .iter()
                .filter_map(|p| eci_policy::paths::normalize(Path::new(p)).ok())
                .filter_map(|p| {
                    let rest = p.strip_prefix(root).ok()?;
                    let rest = rest.as_os_str().as_bytes();
                    (!rest.is_empty()).then(|| CString::new(rest).ok())?
                })
                .collect()
        };
        let names = |paths: &[String], root: &str| {
            paths.iter().any(|p| {
                eci_policy::paths::normalize(Path::new(p)).is_ok_and(|p| p == Path::new(root))
            })
        };
        Masks {
            proc_masked: under(masked, "/proc"),
            proc_readonly: under(readonly, "/proc"),
            sys_masked: under(masked, "/sys"),
            sys_readonly: under(readonly, "/sys"),
            proc_refused: names(masked, "/proc"),
            sys_refused: names(masked, "/sys"),
            proc_read_only: names(readonly, "/proc"),
            sys_read_only: names(readonly, "/sys"),
            ..Masks::default()
        }
    }

    /// Takes account of the spec's mounts (their destinations): one under /proc or /sys,
    /// elsewhere than at or below the kernel's empty mount points ([`Masks::sys_refused`]),
    /// refuses fresh mounts of that filesystem ([`Masks::proc_refused`]).
    pub fn with_spec_mounts<'a>(
        mut self,
        destinations: impl IntoIterator<Item = &'a Path>,
    ) -> Masks {
        for destination in destinations {
            let Ok(path) = eci_policy::paths::normalize(destination) else {
                continue;
            };
            let strictly_under = |root: &str| path != Path::new(root) && path.starts_with(root);
            // The kernel's permanently empty directories, where filesystems are mounted (a
            // mount there hides nothing a fresh one would show).
            let empty = |dirs: &[&str]| dirs.iter().any(|dir| path.starts_with(dir));
            if strictly_under("/proc") && !empty(&["/proc/sys/fs/binfmt_misc"]) {
                self.proc_refused = true;
            }
            if strictly_under("/sys") && !empty(&SYSFS_MOUNT_POINTS) {
                self.sys_refused = true;
            }
        }
        self
    }

    /// Adds binds of host files over absolute paths such as `/proc/meminfo` (those under
    /// neither /proc nor /sys are ignored).
    pub fn with_binds<'a>(mut self, binds: impl IntoIterator<Item = (&'a Path, &'a str)>) -> Masks {
        for (source, target) in binds {
            let Ok(source) = CString::new(source.as_os_str().as_bytes()) else {
                continue;
            };
            let (list, rest) = if let Some(rest) = target.strip_prefix("/proc/") {
                (&mut self.proc_binds, rest)
            } else if let Some(rest) = target.strip_prefix("/sys/") {
                (&mut self.sys_binds, rest)
            } else {
                continue;
            };
            if let Ok(rest) = CString::new(rest) {
                list.push((source, rest));
            }
        }
        self
    }

    /// Adds paths such as `/proc/sys/net` to bind back writable in a fresh procfs (those not
    /// under /proc are ignored).
    pub fn with_writable<'a>(mut self, paths: impl IntoIterator<Item = &'a str>) -> Masks {
        self.proc_writable.extend(
            paths
                .into_iter()
                .filter_map(|p| p.strip_prefix("/proc/"))
                .filter_map(|rest| CString::new(rest).ok()),
        );
        self
    }

    /// Adds writable binds of host files over absolute paths under /proc (the emulated
    /// tunables; others are ignored).
    pub fn with_writable_binds<'a>(
        mut self,
        binds: impl IntoIterator<Item = (&'a Path, &'a str)>,
    ) -> Masks {
        for (source, target) in binds {
            let (Ok(source), Some(rest)) = (
                CString::new(source.as_os_str().as_bytes()),
                target.strip_prefix("/proc/"),
            ) else {
                continue;
            };
            if let Ok(rest) = CString::new(rest) {
                self.proc_rw_binds.push((source, rest));
            }
        }
        self
    }

    /// Requires a fresh procfs or sysfs to be read-only where the container's own is, as the
    /// kernel requires of a mount in a user namespace (it may not be more permissive than the
    /// one already visible, whose read-only flag is locked). The host half builds them with
    /// the host's privileges, so the kernel's own check does not apply.
    /// (A root listed among the spec's read-only paths is read-only already.)
    pub fn with_read_only_roots(mut self, proc: bool, sys: bool) -> Masks {
        self.proc_read_only |= proc;
        self.sys_read_only |= sys;
        self
    }

    /// Sets the container's gids (see [`Masks::gids`]).
    pub fn with_gids(mut self, host_start: u32, count: u32) -> Masks {
        self.gids = Some((host_start, count));
        self
    }
}

/// At most this many bind sources (E2BIG beyond): fixed, since the host half keeps them in
/// stack arrays.
const MOST_SOURCES: usize = 40;

/// The bind sources of [`Masks`] (proc binds, sys binds, then writable proc binds), opened
/// before the workshop tmpfs covers /tmp: a source under /tmp stays reachable, and one that is
/// missing fails the start instead of leaving a fresh filesystem with the host's files.
#[derive(Debug, Clone, Copy)]
struct Sources {
    fds: [RawFd; MOST_SOURCES],
    proc: usize,
    sys: usize,
    count: usize,
}

impl Sources {
    fn open(masks: &Masks) -> SysResult<Sources> {
        let mut sources = Sources {
            fds: [-1; MOST_SOURCES],
            proc: masks.proc_binds.len(),
            sys: masks.proc_binds.len() + masks.sys_binds.len(),
            count: 0,
        };
        let all = masks
            .proc_binds
            .iter()
            .chain(&masks.sys_binds)
            .chain(&masks.proc_rw_binds);
        for (source, _) in all {
            if sources.count == sources.fds.len() {
                sources.close();
                return Err(Errno(libc::E2BIG));
            }
            let flags = libc::O_PATH | libc::O_CLOEXEC;
            // SAFETY: a NUL-terminated path.
            match check_int(unsafe { libc::open(source.as_ptr(), flags) }) {
                Ok(fd) => sources.fds[sources.count] = fd,
                Err(errno) => {
                    sources.close();
                    return Err(errno);
                }
            }
            sources.count += 1;
        }
        Ok(sources)
    }

    fn proc(&self) -> &[RawFd] {
        &self.fds[..self.proc]
    }

    fn sys(&self) -> &[RawFd] {
        &self.fds[self.proc..self.sys]
    }

    fn proc_writable(&self) -> &[RawFd] {
        &self.fds[self.sys..self.count]
    }

    fn close(&self) {
        self.fds[..self.count].iter().for_each(|fd| sys::close(*fd));
    }
}

/// The helper's handles on its host half: the socket to it and the helper's own mount namespace.
#[derive(Debug, Default)]
pub struct HostHalf {
    socket: OnceLock<Channel>,
    own_mntns: OnceLock<OwnedFd>,
    next_slot: AtomicU32,
}

/// A failure of step `step` of starting the host half.
fn starting_failure(step: u32) -> impl Fn(Errno) -> Failure {
    move |errno| Failure {
        stage: Stage::Helper,
        step: 20 + step,
        errno,
    }
}

/// Replaces this namespace's copy of the host's whole mount table (which would keep every host
/// filesystem alive as long as the container, and every FUSE connection open) with a tmpfs
/// root holding only what the halves use: a procfs of the host's PID namespace (callers'
/// roots, /proc/self/fd), the workshop at /tmp, and the bind sources, bound in and opened again
/// there (a bind from a mount left behind is refused).
fn enter_minimal_root(sources: &mut Sources) -> SysResult<()> {
    let hidden = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys::mount(
        Some(c"tmpfs"),
        c"/tmp",
        Some(c"tmpfs"),
        hidden,
        Some(c"mode=0711"),
    )?;
    for dir in [c"/tmp/tmp", c"/tmp/proc", c"/tmp/src", c"/tmp/old"] {
        // SAFETY: a NUL-terminated path.
        check_int(unsafe { libc::mkdir(dir.as_ptr(), 0o711) })?;
    }
    sys::mount(Some(c"proc"), c"/tmp/proc", Some(c"proc"), hidden, None)?;
    for (index, fd) in sources.fds[..sources.count].iter().enumerate() {
        let target = numbered(b"/tmp/src/", index as u32);
        let target = CStr::from_bytes_until_nul(&target).map_err(|_| Errno(libc::EINVAL))?;
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC;
        // SAFETY: a NUL-terminated path.
        sys::close(check_int(unsafe {
            libc::open(target.as_ptr(), flags, 0o600)
        })?);
        let source = FdPath::new(*fd);
        sys::mount(Some(source.as_cstr()), target, None, libc::MS_BIND, None)?;
    }
    // SAFETY: NUL-terminated paths; pivot_root takes two paths.
    unsafe {
        check_int(libc::chdir(c"/tmp".as_ptr()))?;
        check(libc::syscall(
            libc::SYS_pivot_root,
            c".".as_ptr(),
            c"old".as_ptr(),
        ))?;
        check_int(libc::umount2(c"/old".as_ptr(), libc::MNT_DETACH))?;
        check_int(libc::rmdir(c"/old".as_ptr()))?;
        check_int(libc::chdir(c"/".as_ptr()))?;
    }
    for (index, fd) in sources.fds[..sources.count].iter_mut().enumerate() {
        let path = numbered(b"/src/", index as u32);
        let path = CStr::from_bytes_until_nul(&path).map_err(|_| Errno(libc::EINVAL))?;
        // SAFETY: a NUL-terminated path.
        let reopened =
            check_int(unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) })?;
        sys::close(*fd);
        *fd = reopened;
    }
    Ok(())
}

/// Step 1, in the runtime: starts the host half, a thread of the runtime's process with a
/// host-owned mount namespace of its own, a minimal root and a shared staging tmpfs. Returns
/// at once; the helper that will use it takes the hand-over end ([`take_host_half`]), where
/// the thread sends its namespace and its socket once they are ready, or why it could not
/// start. A thread rather than a process: it costs the runtime a stack, where a process of its
/// own held about 900 KiB once idle (its copy of the runtime's relocated data, heap and stack).
/// The thread ends when the helper's end of its socket closes. With `priority`, it sets up on
/// idle CPU time ([`Yielding`]) until it is hurried: for a helper forked while the container
/// is still being mounted, whose host half was 0.5-0.7 ms of CPU beside the mounter
/// (`eci-runc run` 0.3 ms faster by the median, two alternating runs of 60).
pub fn spawn_host_half(masks: &Masks, priority: Option<Arc<Yielding>>) -> std::io::Result<Channel> {
    let (ours, theirs) = Channel::pair()?;
    let masks = masks.clone();
    std::thread::Builder::new()
        .name("eci-host-half".into())
        .stack_size(HOST_HALF_STACK)
        .spawn(move || run_host_half(ours, &masks, priority.as_ref()))?;
    Ok(theirs)
}

/// The host half's stack: its requests (a page of mount options) and paths live there.
const HOST_HALF_STACK: usize = 256 * 1024;

/// What the host half thread sends on its hand-over channel.
const HANDED_OVER: u32 = 1;
const NOT_STARTED: u32 = 2;

fn run_host_half(handover: Channel, masks: &Masks, priority: Option<&Arc<Yielding>>) {
    let set_up = {
        let _done = priority.map(Yielding::begin);
        let set_up = set_up_workshop(masks);
        // What it serves from here on is waited for.
        if let Some(priority) = priority {
            priority.hurry();
        }
        set_up
    };
    let (sources, workshop) = match set_up {
        Ok(ready) => ready,
        Err(failure) => {
            let _ = handover.send(Message {
                kind: NOT_STARTED,
                a: failure.errno.0,
                b: failure.step as i32,
                c: 0,
            });
            return;
        }
    };
    // If this fails, the helper sees the hand-over channel close and fails its start.
    let handed = Channel::pair().ok().and_then(|(ours, theirs)| {
        let fds = [workshop.as_raw_fd(), theirs.raw_fd()];
        handover
            .send_with_fds(Message::of(HANDED_OVER), &fds)
            .ok()?;
        Some(ours)
    });
    // The helper holds its own copies now; none stays open here.
    drop((workshop, handover));
    if let Some(socket) = handed {
        serve_host_half(&socket, masks, &sources);
    }
    sources.close();
}

/// In the host half thread: its own mount namespace, a minimal root and the workshop; the
/// bind sources and the namespace, which the helper joins before the container's.
fn set_up_workshop(masks: &Masks) -> Result<(Sources, OwnedFd), Failure> {
    let fail = starting_failure;
    // A new mount namespace unshares this thread's root and working directory from the
    // process's: nothing below changes what the runtime's other threads see.
    sys::unshare(libc::CLONE_NEWNS).map_err(fail(0))?;
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).map_err(fail(1))?;
    // Opened in this namespace (a bind from another namespace's mount is refused) and before the
    // workshop covers /tmp.
    let mut sources = Sources::open(masks).map_err(fail(8))?;
    let workshop = enter_minimal_root(&mut sources)
        .map_err(fail(9))
        .and_then(|()| start_workshop())
        .inspect_err(|_| sources.close())?;
    Ok((sources, workshop))
}

fn start_workshop() -> Result<OwnedFd, Failure> {
    let fail = starting_failure;
    let tmpfs = |path| {
        sys::mount(
            Some(c"tmpfs"),
            path,
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(c"mode=0711"),
        )
    };
    tmpfs(WORKSHOP).map_err(fail(2))?;
    // SAFETY: NUL-terminated paths; makedev is pure.
    unsafe {
        check_int(libc::mknod(
            NULL.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(1, 3),
        ))
        .map_err(fail(3))?;
        check_int(libc::mkdir(SLOTS.as_ptr(), 0o711)).map_err(fail(4))?;
    }
    tmpfs(SLOTS).map_err(fail(5))?;
    sys::mount(None, SLOTS, None, libc::MS_SHARED, None).map_err(fail(6))?;
    own_namespace().map_err(fail(7))
}

/// This thread's mount namespace, through the host's procfs the minimal root holds.
fn own_namespace() -> SysResult<OwnedFd> {
    // SAFETY: a NUL-terminated path.
    let fd = check_int(unsafe {
        libc::open(
            c"/proc/thread-self/ns/mnt".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: open returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Step 1, in the helper before it joins the container's user namespace: waits for its host
/// half's hand-over on `handover` ([`spawn_host_half`]), joins the host half's mount namespace
/// (its minimal root) and keeps the socket to it. Async-signal-safe.
pub fn take_host_half(half: &HostHalf, handover: &Channel) -> Result<(), Failure> {
    let fail = |step: u32| {
        move |errno| Failure {
            stage: Stage::Helper,
            step: 40 + step,
            errno,
        }
    };
    let received = handover.recv().map_err(fail(0));
    sys::close(handover.raw_fd());
    // The thread ended without a word: the runtime is going away.
    let (message, mut fds) = received?.ok_or(fail(1)(Errno(libc::ECONNRESET)))?;
    if message.kind != HANDED_OVER {
        return Err(Failure {
            stage: Stage::Helper,
            step: message.b as u32,
            errno: Errno(message.a),
        });
    }
    let (Some(workshop), Some(socket)) = (fds.take(), fds.take()) else {
        return Err(fail(2)(Errno(libc::EBADMSG)));
    };
    sys::setns(workshop.as_raw_fd(), libc::CLONE_NEWNS).map_err(fail(3))?;
    half.socket
        .set(Channel::from(socket))
        .map_err(|_| fail(4)(Errno(libc::EBUSY)))
}

/// Step 2, in the helper once it is root of the container's user namespace: a mount namespace of
/// its own, a copy (with the staging tmpfs a slave) owned by the container's user namespace.
pub fn enter_own_namespace(half: &HostHalf) -> Result<(), Failure> {
    let fail = |step: u32| {
        move |errno| Failure {
            stage: Stage::Helper,
            step: 30 + step,
            errno,
        }
    };
    sys::unshare(libc::CLONE_NEWNS).map_err(fail(0))?;
    // /proc here is the host's (the helper is in the host's PID namespace), so it finds itself.
    // SAFETY: a NUL-terminated path.
    let fd = check_int(unsafe {
        libc::open(
            c"/proc/thread-self/ns/mnt".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    })
    .map_err(fail(1))?;
    // SAFETY: open returned a new fd that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    half.own_mntns.set(fd).map_err(|_| Failure {
        stage: Stage::Helper,
        step: 32,
        errno: Errno(libc::EBUSY),
    })
}

impl HostHalf {
    /// Lets the host half go: it exits when its socket closes. For a helper whose runtime is
    /// gone, which builds nothing any more; it never returns to use the socket. Async-signal-safe.
    pub fn let_go(&self) {
        if let Some(socket) = self.socket.get() {
            sys::close(socket.raw_fd());
        }
    }

    /// Whether both halves are set up.
    pub fn is_ready(&self) -> bool {
        self.socket.get().is_some() && self.own_mntns.get().is_some()
    }

    /// Steps 3 and 4 for one call: has the host half build the filesystem for the caller's
    /// namespaces `ns` (proc: its PID, network and IPC namespaces; sysfs: its network
    /// namespace), and returns a detached, locked clone of it taken from the helper's own
    /// namespace, into which the helper has moved (its view is forgotten).
    pub fn build(
        &self,
        fresh: Fresh,
        ns: &[RawFd],
        flags: u64,
        data: Option<&CStr>,
    ) -> SysResult<OwnedFd> {
        let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let (op, count) = match fresh {
            Fresh::Proc => (OP_PROC, 3),
            Fresh::Sysfs => (OP_SYSFS, 1),
        };
        if ns.len() != count {
            return Err(Errno(libc::EINVAL));
        }
        self.ask(op, slot, flags, data, ns)?;
        let taken = self.take(slot);
        let released = self.ask(OP_RELEASE, slot, 0, None, &[]);
        let tree = taken?;
        released?;
        Ok(tree)
    }

    fn take(&self, slot: u32) -> SysResult<OwnedFd> {
        let own = self.own_mntns.get().ok_or(Errno(libc::ENOSYS))?;
        sys::setns(own.as_raw_fd(), libc::CLONE_NEWNS)?;
        let path = numbered(SLOT_PREFIX, slot);
        let path = CStr::from_bytes_until_nul(&path).map_err(|_| Errno(libc::EINVAL))?;
        let flags = sys::OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32;
        let tree = sys::open_tree(libc::AT_FDCWD, path, flags)?;
        // The clone would stay a slave of the host half's slot, whose release would then unmount
        // the masks inside it: cut it loose first.
        make_private(&tree)?;
        Ok(tree)
    }

    /// One request to the host half and its answer.
    fn ask(
        &self,
        op: u32,
        slot: u32,
        flags: u64,
        data: Option<&CStr>,
        fds: &[RawFd],
    ) -> SysResult<()> {
        let mut request = [0u8; 4096 + 20];
        request[..4].copy_from_slice(&op.to_ne_bytes());
        request[4..8].copy_from_slice(&slot.to_ne_bytes());
        request[8..16].copy_from_slice(&flags.to_ne_bytes());
        let data = data.map_or(&b""[..], CStr::to_bytes);
        // A page, as the kernel copies mount data: never send a cut version of the options.
        let len = data.len();
        if len > 4095 {
            return Err(Errno(libc::EINVAL));
        }
        request[16..16 + len].copy_from_slice(&data[..len]);
        let socket = self.socket.get().ok_or(Errno(libc::ENOSYS))?;
        socket.send_bytes(&request[..17 + len], fds)?;
        match socket.recv()? {
            Some((msg, _)) if msg.a == 0 => Ok(()),
            Some((msg, _)) => Err(Errno(msg.a)),
            None => Err(Errno(libc::ENOSYS)),
        }
    }
}

/// Makes every mount of a detached tree private (mount_setattr with AT_RECURSIVE).
fn make_private(tree: &OwnedFd) -> SysResult<()> {
    let attr = sys::MountAttr {
        propagation: libc::MS_PRIVATE,
        ..sys::MountAttr::default()
    };
    sys::mount_setattr(tree.as_raw_fd(), true, &attr)
}

/// `prefix` followed by `n` in a stack buffer (NUL-terminated).
fn numbered(prefix: &[u8], n: u32) -> [u8; 32] {
    let mut buf = [0u8; 32];
    buf[..prefix.len()].copy_from_slice(prefix);
    sys::write_decimal(&mut buf[prefix.len()..], u64::from(n));
    buf
}

/// "{base}/{rel}" in a stack buffer (NUL-terminated), or None if it does not fit.
fn join(base: &[u8], rel: &[u8]) -> Option<[u8; 512]> {
    let mut buf = [0u8; 512];
    let end = base.len() + 1 + rel.len();
    if end >= buf.len() {
        return None;
    }
    buf[..base.len()].copy_from_slice(base);
    buf[base.len()] = b'/';
    buf[base.len() + 1..end].copy_from_slice(rel);
    Some(buf)
}

/// The host half: builds fresh filesystems in staging slots until the helper goes away.
fn serve_host_half(socket: &Channel, masks: &Masks, sources: &Sources) {
    let own_ns = |path: &CStr| {
        // SAFETY: a NUL-terminated path.
        unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }
    };
    let own = OwnNamespaces {
        net: own_ns(c"/proc/thread-self/ns/net"),
        ipc: own_ns(c"/proc/thread-self/ns/ipc"),
    };
    let mut request = [0u8; 4096 + 20];
    loop {
        let (len, mut fds) = match socket.recv_bytes(&mut request) {
            Ok(Some(got)) => got,
            _ => break,
        };
        let word = |i: usize| {
            u32::from_ne_bytes([request[i], request[i + 1], request[i + 2], request[i + 3]])
        };
        let mut flags = [0u8; 8];
        flags.copy_from_slice(&request[8..16]);
        let flags = u64::from_ne_bytes(flags);
        let data = CStr::from_bytes_until_nul(&request[16..len.max(17)])
            .ok()
            .filter(|d| !d.is_empty());
        let ns = [fds.take(), fds.take(), fds.take()];
        let slot = word(4);
        let build = numbered(BUILD_PREFIX, slot);
        let built = match (word(0), ns) {
            (OP_PROC, [Some(pid), Some(net), Some(ipc)]) => {
                let callers = CallersNamespaces {
                    pid: pid.as_raw_fd(),
                    net: net.as_raw_fd(),
                    ipc: ipc.as_raw_fd(),
                };
                build_proc(&build, &callers, &own, flags, data, masks, sources)
            }
            (OP_SYSFS, [Some(net), None, None]) => build_sysfs(
                &build,
                net.as_raw_fd(),
                own.net,
                flags,
                masks,
                sources.sys(),
            ),
            (OP_RELEASE, _) => Ok(()),
            _ => Err(Errno(libc::EINVAL)),
        };
        if built == Err(STRANDED) {
            // Left in a container's namespace: nothing more is built here, and every later
            // fresh mount of the container fails.
            let _ = release(slot);
            break;
        }
        let answer = match (word(0), built) {
            (OP_RELEASE, _) => release(slot),
            (_, Ok(())) => publish(&build, &numbered(SLOT_PREFIX, slot)),
            (_, Err(errno)) => Err(errno),
        };
        if answer.is_err() {
            // Nothing half-built stays behind.
            let _ = release(slot);
        }
        let errno = answer.err().map_or(0, |Errno(e)| e);
        if socket
            .send(Message {
                kind: 0,
                a: errno,
                b: 0,
                c: 0,
            })
            .is_err()
        {
            break;
        }
    }
    for fd in [own.net, own.ipc] {
        if fd >= 0 {
            sys::close(fd);
        }
    }
}

/// The host half's own network and IPC namespaces, to go back to (-1 if they could not be
/// opened).
struct OwnNamespaces {
    net: RawFd,
    ipc: RawFd,
}

/// The namespaces of the caller a procfs is built for.
struct CallersNamespaces {
    pid: RawFd,
    net: RawFd,
    ipc: RawFd,
}

/// What a build answers when the host half could not return to its own namespaces.
const STRANDED: Errno = Errno(libc::ENOTRECOVERABLE);

/// Runs `work` in the caller's network and IPC namespaces, and returns to the host half's own:
/// the kernel gives the /proc/sys entries of those namespaces a dentry per namespace, so a
/// bind placed from the host's namespaces would hang on the host's entries, unseen by the
/// container.
fn in_callers_namespaces(
    callers: &CallersNamespaces,
    own: &OwnNamespaces,
    work: impl FnOnce() -> SysResult<()>,
) -> SysResult<()> {
    let enter = [
        (callers.net, libc::CLONE_NEWNET),
        (callers.ipc, libc::CLONE_NEWIPC),
    ];
    let back = [(own.net, libc::CLONE_NEWNET), (own.ipc, libc::CLONE_NEWIPC)];
    in_namespaces(&enter, &back, work)
}

/// Runs `work` with the host half's thread in the namespaces `enter` (each a descriptor and
/// its type), and returns it to those of `back`. EIO, entering nothing, without a way back
/// (a descriptor of its own that could not be opened); [`STRANDED`] if going back failed.
fn in_namespaces<T>(
    enter: &[(RawFd, libc::c_int)],
    back: &[(RawFd, libc::c_int)],
    work: impl FnOnce() -> SysResult<T>,
) -> SysResult<T> {
    if back.iter().any(|(fd, _)| *fd < 0) {
        return Err(Errno(libc::EIO));
    }
    let entered = enter
        .iter()
        .try_for_each(|(fd, nstype)| sys::setns(*fd, *nstype));
    let done = entered.and_then(|()| work());
    let returned = back
        .iter()
        .try_for_each(|(fd, nstype)| sys::setns(*fd, *nstype));
    if returned.is_err() {
        return Err(STRANDED);
    }
    done
}

/// mount(2) flags as mount attributes for fsmount.
fn mount_attributes(flags: u64) -> u64 {
    /// MS_NOSYMFOLLOW (Linux 5.10), not in every libc yet.
    const MS_NOSYMFOLLOW: u64 = 256;
    const ATTRS: [(u64, u64); 7] = [
        (libc::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
        (libc::MS_NOATIME, libc::MOUNT_ATTR_NOATIME),
        (libc::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
        (MS_NOSYMFOLLOW, libc::MOUNT_ATTR_NOSYMFOLLOW),
    ];
    ATTRS
        .iter()
        .filter(|(ms, _)| flags & ms != 0)
        .fold(0, |acc, (_, attr)| acc | attr)
}

/// Binds a finished filesystem, whole, into its slot, from where it propagates.
fn publish(build: &[u8; 32], slot: &[u8; 32]) -> SysResult<()> {
    let build = CStr::from_bytes_until_nul(build).map_err(|_| Errno(libc::EINVAL))?;
    let slot = CStr::from_bytes_until_nul(slot).map_err(|_| Errno(libc::EINVAL))?;
    make_dir(slot)?;
    sys::mount(Some(build), slot, None, libc::MS_BIND | libc::MS_REC, None)
}

fn make_dir(path: &CStr) -> SysResult<()> {
    // SAFETY: a NUL-terminated path.
    match check_int(unsafe { libc::mkdir(path.as_ptr(), 0o700) }) {
        Ok(_) | Err(Errno(libc::EEXIST)) => Ok(()),
        Err(errno) => Err(errno),
    }
}

/// Creates the filesystem from an fs context and mounts it at `path` (in the workshop).
fn mount_context(fs: FsContext, path: &[u8; 32], flags: u64) -> SysResult<()> {
    let mnt = fs.mount(mount_attributes(flags))?;
    let target = CStr::from_bytes_until_nul(path).map_err(|_| Errno(libc::EINVAL))?;
    make_dir(target)?;
    sys::attach_tree(mnt.as_raw_fd(), libc::AT_FDCWD, target)
}

fn build_proc(
    path: &[u8; 32],
    callers: &CallersNamespaces,
    own: &OwnNamespaces,
    flags: u64,
    data: Option<&CStr>,
    masks: &Masks,
    sources: &Sources,
) -> SysResult<()> {
    if masks.proc_refused || masks.proc_read_only && flags & libc::MS_RDONLY == 0 {
        return Err(Errno(libc::EPERM));
    }
    let fs = FsContext::open(c"proc")?;
    fs.set_fd(c"pidns", callers.pid)?;
    if let Some(data) = data {
        for option in data
            .to_bytes()
            .split(|b| *b == b',')
            .filter(|o| !o.is_empty())
        {
            set_option(&fs, option, masks.gids)?;
        }
    }
    mount_context(fs, path, flags)?;
    let base = &path[..path.iter().position(|b| *b == 0).unwrap_or(path.len())];
    // Where the caller looks: its network and IPC namespaces' entries of /proc/sys.
    in_callers_namespaces(callers, own, || {
        apply_masks(base, &masks.proc_masked, &masks.proc_readonly)?;
        apply_binds(base, &masks.proc_binds, sources.proc(), false)?;
        // Over the read-only /proc/sys: the namespaced tables first, then the emulated
        // tunables (some of which, such as nf_conntrack_max, are under net/).
        for rel in &masks.proc_writable {
            let buf = join(base, rel.to_bytes()).ok_or(Errno(libc::ENAMETOOLONG))?;
            let path = CStr::from_bytes_until_nul(&buf).map_err(|_| Errno(libc::EINVAL))?;
            bind(path, path, libc::MS_REC, true)?;
        }
        apply_binds(base, &masks.proc_rw_binds, sources.proc_writable(), true)
    })
}

/// The procfs options a container may pass. Anything else is refused: above all `pidns`, which
/// would make the host half (host root, in the host's PID namespace) open any path it names and
/// build a procfs for the host's PID namespace or another container's.
const PROC_OPTIONS: [&[u8]; 3] = [b"hidepid", b"gid", b"subset"];

/// One `key=value` or `key` of mount data, as fsconfig takes it; `gid=` is translated to the
/// host's numbering with `gids`.
fn set_option(fs: &FsContext, option: &[u8], gids: Option<(u32, u32)>) -> SysResult<()> {
    let key = option.split(|b| *b == b'=').next().unwrap_or_default();
    if !PROC_OPTIONS.contains(&key) {
        return Err(Errno(libc::EINVAL));
    }
    let mut buf = [0u8; 256];
    if option.len() >= buf.len() {
        return Err(Errno(libc::EINVAL));
    }
    if key == b"gid" {
        let value = option.get(4..).unwrap_or_default();
        let host = host_gid(value, gids)?;
        buf[..4].copy_from_slice(b"gid=");
        let len = sys::write_decimal(&mut buf[4..24], u64::from(host));
        buf[4 + len] = 0;
    } else {
        buf[..option.len()].copy_from_slice(option);
    }
    match option.iter().position(|b| *b == b'=') {
        Some(eq) => {
            buf[eq] = 0;
            let key = CStr::from_bytes_until_nul(&buf).map_err(|_| Errno(libc::EINVAL))?;
            let value =
                CStr::from_bytes_until_nul(&buf[eq + 1..]).map_err(|_| Errno(libc::EINVAL))?;
            fs.set_string(key, value)
        }
        None => {
            let key = CStr::from_bytes_until_nul(&buf).map_err(|_| Errno(libc::EINVAL))?;
            fs.set_flag(key)
        }
    }
}

/// A container gid (decimal digits) as the host numbers it, or EINVAL if it is not one of the
/// container's (what the kernel answers for an unmapped gid).
fn host_gid(value: &[u8], gids: Option<(u32, u32)>) -> SysResult<u32> {
    let (start, count) = gids.ok_or(Errno(libc::EINVAL))?;
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return Err(Errno(libc::EINVAL));
    }
    let gid = value
        .iter()
        .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    if gid >= u64::from(count) {
        return Err(Errno(libc::EINVAL));
    }
    u32::try_from(u64::from(start) + gid).map_err(|_| Errno(libc::EINVAL))
}

fn build_sysfs(
    path: &[u8; 32],
    netns: RawFd,
    own_net: RawFd,
    flags: u64,
    masks: &Masks,
    sources: &[RawFd],
) -> SysResult<()> {
    if masks.sys_refused || masks.sys_read_only && flags & libc::MS_RDONLY == 0 {
        return Err(Errno(libc::EPERM));
    }
    // sysfs shows the network namespace of whoever creates it.
    let enter = [(netns, libc::CLONE_NEWNET)];
    let back = [(own_net, libc::CLONE_NEWNET)];
    let fs = in_namespaces(&enter, &back, || FsContext::open(c"sysfs"))?;
    mount_context(fs, path, flags)?;
    let base = &path[..path.iter().position(|b| *b == 0).unwrap_or(path.len())];
    apply_masks(base, &masks.sys_masked, &masks.sys_readonly)?;
    apply_binds(base, &masks.sys_binds, sources, false)
}

/// Binds each host file (opened in `sources`) over its path under `base`, read-only unless
/// `writable`, skipping paths this filesystem does not have.
fn apply_binds(
    base: &[u8],
    binds: &[(CString, CString)],
    sources: &[RawFd],
    writable: bool,
) -> SysResult<()> {
    for ((_, rel), fd) in binds.iter().zip(sources) {
        let buf = join(base, rel.to_bytes()).ok_or(Errno(libc::ENAMETOOLONG))?;
        let path = CStr::from_bytes_until_nul(&buf).map_err(|_| Errno(libc::EINVAL))?;
        bind(FdPath::new(*fd).as_cstr(), path, 0, writable)?;
    }
    Ok(())
}

/// Binds `source` over `path` (with `extra` flags such as MS_REC) and makes the bind nosuid,
/// nodev, noexec and, unless `writable`, read-only (a bind starts with the flags of the mount it
/// copies, so a writable one is made so explicitly); a `path` this filesystem does not have is
/// skipped.
fn bind(source: &CStr, path: &CStr, extra: libc::c_ulong, writable: bool) -> SysResult<()> {
    match sys::mount(Some(source), path, None, libc::MS_BIND | extra, None) {
        Err(Errno(libc::ENOENT)) => return Ok(()),
        other => other?,
    }
    let access = if writable { 0 } else { libc::MS_RDONLY };
    let flags = libc::MS_BIND | libc::MS_REMOUNT | access | libc::MS_NOSUID | libc::MS_NODEV;
    sys::mount(None, path, None, flags | libc::MS_NOEXEC, None)
}

fn apply_masks(base: &[u8], masked: &[CString], readonly: &[CString]) -> SysResult<()> {
    for rel in masked {
        // A mask that cannot be placed is an error, never a silent gap.
        let buf = join(base, rel.to_bytes()).ok_or(Errno(libc::ENAMETOOLONG))?;
        let path = CStr::from_bytes_until_nul(&buf).map_err(|_| Errno(libc::EINVAL))?;
        // SAFETY: an all-zero stat is valid; path is NUL-terminated.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: st is a valid out pointer.
        if unsafe { libc::lstat(path.as_ptr(), &mut st) } != 0 {
            // Only a path this filesystem lacks goes unmasked.
            match Errno::last() {
                Errno(libc::ENOENT | libc::ENOTDIR) => continue,
                errno => return Err(errno),
            }
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            sys::mount(
                Some(c"tmpfs"),
                path,
                Some(c"tmpfs"),
                flags,
                Some(c"size=0,mode=0555"),
            )?;
        } else {
            sys::mount(Some(NULL), path, None, libc::MS_BIND, None)?;
        }
    }
    for rel in readonly {
        let buf = join(base, rel.to_bytes()).ok_or(Errno(libc::ENAMETOOLONG))?;
        let path = CStr::from_bytes_until_nul(&buf).map_err(|_| Errno(libc::EINVAL))?;
        bind(path, path, libc::MS_REC, false)?;
    }
    Ok(())
}

/// Takes down a slot and its build; the first error (other than "not mounted") is reported.
fn release(slot: u32) -> SysResult<()> {
    let mut result = Ok(());
    for path in [numbered(SLOT_PREFIX, slot), numbered(BUILD_PREFIX, slot)] {
        let target = CStr::from_bytes_until_nul(&path).map_err(|_| Errno(libc::EINVAL))?;
        // SAFETY: a NUL-terminated path.
        match check_int(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }) {
            Ok(_) | Err(Errno(libc::EINVAL | libc::ENOENT)) => {}
            Err(errno) => result = result.and(Err(errno)),
        }
        // SAFETY: a NUL-terminated path.
        unsafe { libc::rmdir(target.as_ptr()) };
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_taken_relative_to_their_filesystem() {
        let masked = [
            "/proc/kcore".to_string(),
            "/sys/firmware".into(),
            "/proc".into(),
            "/etc/x".into(),
            "/proc/../slots".into(),
            "/proc//./timer_list/".into(),
            "/procfs/x".into(),
        ];
        let readonly = ["/proc/sys".to_string(), "/sys/fs/bpf".into()];
        let masks = Masks::from_paths(&masked, &readonly);
        assert_eq!(
            masks.proc_masked,
            [c"kcore".to_owned(), c"timer_list".to_owned()]
        );
        assert_eq!(masks.sys_masked, [c"firmware".to_owned()]);
        assert_eq!(masks.proc_readonly, [c"sys".to_owned()]);
        assert_eq!(masks.sys_readonly, [c"fs/bpf".to_owned()]);
        // /proc masked whole: no fresh procfs at all; /sys untouched.
        assert!(masks.proc_refused && !masks.sys_refused);
        assert!(!masks.proc_read_only && !masks.sys_read_only);
    }

    #[test]
    fn what_a_fresh_filesystem_cannot_hide_again_refuses_it() {
        let masks = Masks::from_paths(&["/sys/.".to_string()], &["//proc".to_string()]);
        assert!(masks.sys_refused && !masks.proc_refused);
        assert!(masks.proc_read_only && !masks.sys_read_only);
        let masks = masks.with_read_only_roots(false, false);
        assert!(masks.proc_read_only, "a read-only path stays so");
        let mounts = |paths: &[&str]| {
            let masks = Masks::default().with_spec_mounts(paths.iter().map(Path::new));
            (masks.proc_refused, masks.sys_refused)
        };
        assert_eq!(
            mounts(&["/proc", "/sys", "/sys/fs/cgroup", "/sys/fs/cgroup/memory"]),
            (false, false)
        );
        assert_eq!(mounts(&["/proc/meminfo"]), (true, false));
        assert_eq!(mounts(&["/sys/kernel", "/dev/shm"]), (false, true));
        assert_eq!(mounts(&["/sys/fs/cgroup/../../kernel"]), (false, true));
        assert_eq!(mounts(&["/sys/fs/cgroupx"]), (false, true));
        let empty = [
            "/sys/fs/bpf",
            "/sys/kernel/debug/tracing",
            "/proc/sys/fs/binfmt_misc",
        ];
        assert_eq!(mounts(&empty), (false, false));
    }

    #[test]
    fn paths_are_spelled_out() {
        assert_eq!(
            CStr::from_bytes_until_nul(&numbered(SLOT_PREFIX, 42)).unwrap(),
            c"/tmp/slots/42"
        );
        let joined = join(b"/tmp/slot-1", b"kernel/security").unwrap();
        assert_eq!(
            CStr::from_bytes_until_nul(&joined).unwrap(),
            c"/tmp/slot-1/kernel/security"
        );
        assert_eq!(mount_attributes(libc::MS_RDONLY | libc::MS_NOEXEC), 0x09);
    }

    #[test]
    fn a_procfs_gid_is_translated_to_the_hosts_numbering() {
        let gids = Some((200_000, 65536));
        assert_eq!(host_gid(b"5", gids), Ok(200_005));
        assert_eq!(host_gid(b"65535", gids), Ok(265_535));
        for outside in [&b"65536"[..], b"", b"-1", b"5x", b"99999999999"] {
            assert_eq!(host_gid(outside, gids), Err(Errno(libc::EINVAL)));
        }
        assert_eq!(
            host_gid(b"5", None),
            Err(Errno(libc::EINVAL)),
            "fail closed"
        );
    }

    proptest::proptest! {
        #[test]
        fn only_the_containers_gids_translate(
            gid in proptest::prelude::any::<u32>(),
            start in 65_536u32..1 << 31,
            count in 1u32..1 << 20,
        ) {
            let got = host_gid(gid.to_string().as_bytes(), Some((start, count)));
            let expected = if gid < count { Ok(start + gid) } else { Err(Errno(libc::EINVAL)) };
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
