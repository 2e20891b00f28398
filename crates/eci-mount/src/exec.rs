//! Executing a [`MountPlan`] in the mounter: host credentials, the setup mount namespace, the
//! container's PID, network and IPC namespaces. Runs after fork, so it is allocation-free.
//!
//! Every path inside the rootfs is resolved with `openat2(RESOLVE_IN_ROOT)` against the rootfs,
//! so a symlink in an image cannot send a mount (or a device node) outside it; the mount then
//! goes through `/proc/self/fd/N`, onto exactly the object that was resolved.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use eci_idmap::idmapped;

use eci_ns::failure::{Failure, Stage};
use eci_ns::sys::{self, check, check_int, Errno, FdPath, SysResult};

use crate::plan::{Idmap, MountPlan, PointKind, RootPath, Source, Step, MOST_DETACHED};
use eci_ns::LatePhase;
use eci_policy::ids::IdBlock;
use eci_policy::volume::DirIdentity;

/// What a failing step was doing: the low 4 bits of a failure's step code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Action {
    /// Resolving or creating the destination.
    Resolve = 0,
    /// Mounting.
    Mount = 1,
    /// Remounting with the requested flags.
    Remount = 2,
    /// Changing propagation.
    Propagation = 3,
    /// Creating a device node or link.
    Create = 4,
    /// Changing ownership of something the runtime created.
    Chown = 5,
    /// Opening a bind source on the host.
    Source = 6,
    /// Mounting, when the kernel found the mount point's entry removed meanwhile.
    MountOnRemoved = 7,
    /// Mounting, when the mount point's mount was no longer in the tree.
    MountOnDetached = 8,
    /// Mounting, when the bind's source could not be copied (open_tree).
    MountSourceUncopied = 9,
    /// Mounting, when the kernel found the mount point gone though neither its entry nor its
    /// mount reads gone.
    MountOnUnexplained = 10,
    /// Opening a bind source that is no longer the directory that was checked.
    SourceChanged = 11,
    /// Mounting, when the bind's source entry, or a directory above it, had been dropped from
    /// the kernel's cache since it was opened (a FUSE server's entry invalidated, say).
    MountSourceDropped = 12,
    /// Mounting, when a directory above the mount point had been dropped from the kernel's
    /// cache since it was looked up.
    MountOnDropped = 13,
}

/// Step codes for the work around the steps.
pub mod global {
    /// Binding the rootfs onto itself.
    pub const BIND_ROOTFS: u32 = u32::MAX - 1;
    /// Opening the rootfs.
    pub const OPEN_ROOTFS: u32 = u32::MAX - 2;
    /// Setting the rootfs propagation.
    pub const ROOTFS_PROPAGATION: u32 = u32::MAX - 3;
    /// Making the rootfs read-only.
    pub const ROOT_READONLY: u32 = u32::MAX - 4;
    /// pivot_root.
    pub const PIVOT: u32 = u32::MAX - 5;
    /// Detaching the old root.
    pub const DETACH_OLD_ROOT: u32 = u32::MAX - 6;
    /// Opening the container's user namespace for idmapped mounts.
    pub const USERNS: u32 = u32::MAX - 7;
    /// Taking the container's root as the filesystem IDs.
    pub const FSIDS: u32 = u32::MAX - 8;
    /// Opening the init's root to apply the deferred read-only flags.
    pub const OPEN_ROOT: u32 = u32::MAX - 9;
    /// Making the container's root a shared mount, so late mounts propagate into its namespace.
    pub const SHARE_ROOT: u32 = u32::MAX - 10;
    /// Making the user namespace that maps the host's system IDs alone, for read-only shares.
    pub const SYSTEM_IDS_USERNS: u32 = u32::MAX - 11;
}

/// A mount failure at step code `step`, for `map_err`.
fn mount_failure(step: u32) -> impl Fn(Errno) -> Failure {
    move |errno| Failure {
        stage: Stage::Mounts,
        step,
        errno,
    }
}

fn code(step: usize, action: Action) -> u32 {
    (step as u32) << 4 | action as u32
}

/// Splits a step code into the step index and action.
pub fn decode(step: u32) -> Option<(usize, Action)> {
    if step >= global::SYSTEM_IDS_USERNS {
        return None;
    }
    let action = match step & 0xF {
        0 => Action::Resolve,
        1 => Action::Mount,
        2 => Action::Remount,
        3 => Action::Propagation,
        4 => Action::Create,
        5 => Action::Chown,
        7 => Action::MountOnRemoved,
        8 => Action::MountOnDetached,
        9 => Action::MountSourceUncopied,
        10 => Action::MountOnUnexplained,
        11 => Action::SourceChanged,
        12 => Action::MountSourceDropped,
        13 => Action::MountOnDropped,
        _ => Action::Source,
    };
    Some(((step >> 4) as usize, action))
}

/// An owned raw fd that closes on drop (allocation-free, unlike nothing else here).
struct Fd(RawFd);

impl Drop for Fd {
    fn drop(&mut self) {
        sys::close(self.0);
    }
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_IN_ROOT: u64 = 0x10;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;

/// Opens `rel` inside the tree rooted at `root`, never leaving it.
fn open_in_root(root: RawFd, rel: &CStr, flags: i32) -> SysResult<Fd> {
    openat2(root, rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
}

/// Opens `rel` inside the tree rooted at `root` only if no component of it is a symlink.
fn open_literally(root: RawFd, rel: &CStr) -> SysResult<Fd> {
    openat2(
        root,
        rel,
        libc::O_PATH,
        RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    )
}

/// procfs and sysfs: the masks, the read-only paths and the virtual files go on them later by
/// their paths, so each must be mounted where its path says, through no symlink. A symlink an
/// image planted there (`/proc -> /dev/shm`, `/dev/shm -> /x`) would put it elsewhere, and a
/// mount made later over the link's own directory (the /dev tmpfs) would turn `/proc` into
/// an empty directory the masks then miss, leaving the real procfs unmasked at `/x` (runc
/// refuses such a procfs too: CVE-2019-16884, CVE-2019-19921).
fn is_kernel_fs(fstype: &CStr) -> bool {
    matches!(fstype.to_bytes(), b"proc" | b"sysfs")
}

/// Opens a host path the policy vetted after resolving it, refusing any symlink on the way: if a
/// component was swapped for a symlink since (by a container that shares that directory), this
/// fails with ELOOP instead of binding wherever the link points.
fn open_vetted_host_path(path: &CStr) -> SysResult<Fd> {
    openat2(libc::AT_FDCWD, path, libc::O_PATH, RESOLVE_NO_SYMLINKS)
}

fn openat2(dir: RawFd, path: &CStr, flags: i32, resolve: u64) -> SysResult<Fd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: path is NUL-terminated and how is a valid open_how of the size passed.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    Ok(Fd(fd as RawFd))
}

/// Adds `flags` to the mount at `fd` (a mount root), changing nothing else: binds never lose
/// a flag of what they copy. mount_setattr(2) only sets what it is given, so the mount's
/// current flags need not be read first; reading them (statfs) would ask a FUSE source's
/// server, a round trip per virtual file. Before Linux 5.12 a remount with the flags read.
fn remount_with(fd: RawFd, flags: libc::c_ulong) -> SysResult<()> {
    match sys::mount_setattr(fd, all_through(flags), &attributes_of(flags)) {
        // A remount reaches the top mount alone: the mounts under it would stay writable.
        Err(Errno(libc::ENOSYS)) if all_through(flags) => Err(Errno(libc::ENOSYS)),
        Err(Errno(libc::ENOSYS)) => {
            let path = FdPath::new(fd);
            let current = mount_flags_of(fd)?;
            let remount = libc::MS_BIND | libc::MS_REMOUNT | current | flags;
            sys::mount(None, path.as_cstr(), None, remount, None)
        }
        done => done,
    }
}

/// The per-mount flags of the mount at `fd`, as mount(2) flags.
fn mount_flags_of(fd: RawFd) -> SysResult<libc::c_ulong> {
    // SAFETY: an all-zero statvfs is valid; fstatvfs fills it in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out pointer.
    check_int(unsafe { libc::fstatvfs(fd, &mut st) })?;
    const KEPT: [(libc::c_ulong, libc::c_ulong); 9] = [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_SYNCHRONOUS, libc::MS_SYNCHRONOUS),
        (libc::ST_MANDLOCK, libc::MS_MANDLOCK),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(KEPT
        .iter()
        .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
        .fold(0, |acc, (_, ms)| acc | ms))
}

/// A detached copy of a bind step's host source, with the step's flags, made while the host is
/// in view; its mount point is created too.
fn detached_tree(
    root: RawFd,
    userns: RawFd,
    block: IdBlock,
    index: usize,
    step: &Step,
) -> Result<Fd, Failure> {
    let fail = |action| mount_failure(code(index, action));
    let Step::Mount {
        dest,
        kind,
        source: Source::Host(path),
        flags,
        recursive,
        idmap,
        expect,
        ..
    } = step
    else {
        return Err(fail(Action::Source)(Errno(libc::EINVAL)));
    };
    // The source first: a missing one leaves no mount point behind in the rootfs.
    let source = open_vetted_host_path(path).map_err(fail(Action::Source))?;
    check_source(&source, expect.as_ref()).map_err(fail(Action::SourceChanged))?;
    ensure(root, block, dest, *kind).map_err(fail(Action::Resolve))?;
    let copy = |with_idmap: bool| -> SysResult<Fd> {
        if with_idmap {
            // SAFETY: both fds stay open for the duration of the call.
            let (source, userns) = unsafe {
                (
                    BorrowedFd::borrow_raw(source.0),
                    BorrowedFd::borrow_raw(userns),
                )
            };
            let tree = idmapped_copy_as(*idmap, source, *recursive, userns)?;
            return Ok(Fd(std::os::fd::IntoRawFd::into_raw_fd(tree)));
        }
        let rec = if *recursive {
            libc::AT_RECURSIVE as u32
        } else {
            0
        };
        let tree = sys::open_tree(source.0, c"", sys::OPEN_TREE_CLONE | rec)?;
        Ok(Fd(std::os::fd::IntoRawFd::into_raw_fd(tree)))
    };
    let tree = match copy(*idmap != Idmap::No) {
        Err(errno) if idmap.may_fall_back() && idmapped::unsupported(errno) => copy(false),
        other => other,
    }
    .map_err(fail(Action::Mount))?;
    // A copy keeps its source's peer group or master: made private, the host's later mounts
    // under the source never reach the container (the eligible steps ask for nothing else).
    // Private first: a mount propagated in before the flags are set would escape them.
    let private = sys::MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    sys::mount_setattr(tree.0, *recursive, &private).map_err(fail(Action::Propagation))?;
    sys::mount_setattr(tree.0, all_through(*flags), &attributes_of(*flags))
        .map_err(fail(Action::Remount))?;
    Ok(tree)
}

/// Whether a bind's `flags` go on every mount of its tree (`rro`, see
/// [`crate::options::MountOptions::flags`]), not only on its top mount.
fn all_through(flags: libc::c_ulong) -> bool {
    flags & libc::MS_REC != 0
}

/// mount(2) flags as mount_setattr(2) attributes: set, never cleared (a bind never loses a flag
/// of what it copies), but for the access-time mode, which is one choice.
fn attributes_of(flags: libc::c_ulong) -> sys::MountAttr {
    const PAIRS: [(libc::c_ulong, u64); 6] = [
        (libc::MS_RDONLY, libc::MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, libc::MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, libc::MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, libc::MOUNT_ATTR_NOEXEC),
        (libc::MS_NODIRATIME, libc::MOUNT_ATTR_NODIRATIME),
        (crate::options::MS_NOSYMFOLLOW, libc::MOUNT_ATTR_NOSYMFOLLOW),
    ];
    let mut attr = sys::MountAttr {
        attr_set: PAIRS
            .iter()
            .filter(|(ms, _)| flags & ms != 0)
            .fold(0, |acc, (_, attr)| acc | attr),
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let atime = if flags & libc::MS_NOATIME != 0 {
        Some(libc::MOUNT_ATTR_NOATIME)
    } else if flags & libc::MS_STRICTATIME != 0 {
        Some(libc::MOUNT_ATTR_STRICTATIME)
    } else if flags & libc::MS_RELATIME != 0 {
        Some(libc::MOUNT_ATTR_RELATIME)
    } else {
        None
    };
    if let Some(mode) = atime {
        attr.attr_set |= mode;
        attr.attr_clr |= libc::MOUNT_ATTR__ATIME;
    }
    attr
}

/// Where mount step `index` goes; a failure if it is no mount step (the plan never names one).
fn mount_dest(steps: &[Step], index: usize) -> Result<&RootPath, Failure> {
    match steps.get(index) {
        Some(Step::Mount { dest, .. }) => Ok(dest),
        _ => Err(mount_failure(code(index, Action::Resolve))(Errno(
            libc::EINVAL,
        ))),
    }
}

/// This process's root directory (the rootfs, after the pivot or in the init).
fn open_own_root() -> SysResult<Fd> {
    // SAFETY: a NUL-terminated path.
    check_int(unsafe {
        libc::open(
            c"/".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
    .map(Fd)
}

/// The mount ID of what `fd` names, or `None`.
fn mount_id(fd: RawFd) -> Option<u64> {
    eci_ns::sys::mount_id_at(fd, c"", libc::AT_EMPTY_PATH).ok()
}

/// Whether what `fd` names is on a filesystem of type `fstype`, one of those whose root a plan
/// gives the container (devpts, mqueue); false for any other type.
fn is_filesystem(fd: RawFd, fstype: &CStr) -> bool {
    const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
    const MQUEUE_MAGIC: i64 = 0x1980_0202;
    let magic = match fstype.to_bytes() {
        b"devpts" => DEVPTS_SUPER_MAGIC,
        b"mqueue" => MQUEUE_MAGIC,
        _ => return false,
    };
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes into the zeroed buffer, read only if it succeeded.
    let stated = unsafe { libc::fstatfs(fd, fs.as_mut_ptr()) } == 0;
    // SAFETY: initialised (zeroed, then written by fstatfs).
    let fs = unsafe { fs.assume_init() };
    // f_type's type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let found = fs.f_type as i64;
    stated && found == magic
}

/// Whether `fd` names the root of a mount.
fn is_mount_root(fd: RawFd) -> bool {
    statx_fd(fd, libc::STATX_MNT_ID)
        .is_ok_and(|stx| stx.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0)
}

/// Which directory `fd` is: its device, inode and file handle. The runtime records it when it
/// checks a Docker volume, and the mounter compares what it opens with the same. A
/// filesystem that gives no file handle (EOPNOTSUPP) cannot say.
///
/// ```
/// use std::os::fd::AsFd;
/// let dir = std::fs::File::open("/tmp")?;
/// let identity = eci_mount::exec::dir_identity(dir.as_fd())?;
/// assert_eq!(identity, eci_mount::exec::dir_identity(dir.as_fd())?);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn dir_identity(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<DirIdentity> {
    let raw = fd.as_raw_fd();
    let to_io = |Errno(errno)| std::io::Error::from_raw_os_error(errno);
    let (dev_major, dev_minor, ino) = device_and_inode(raw).map_err(to_io)?;
    let handle = handle_of(raw).map_err(to_io)?;
    Ok(DirIdentity {
        dev_major,
        dev_minor,
        ino,
        handle_type: handle.kind,
        handle: handle.bytes().to_vec(),
    })
}

/// Whether `fd` is the directory `expect` names. Allocates nothing (it runs after fork).
fn same_directory(fd: RawFd, expect: &DirIdentity) -> SysResult<bool> {
    let (dev_major, dev_minor, ino) = device_and_inode(fd)?;
    let handle = handle_of(fd)?;
    Ok(
        (dev_major, dev_minor, ino) == (expect.dev_major, expect.dev_minor, expect.ino)
            && handle.kind == expect.handle_type
            && handle.bytes() == expect.handle.as_slice(),
    )
}

fn device_and_inode(fd: RawFd) -> SysResult<(u32, u32, u64)> {
    let stx = statx_fd(fd, libc::STATX_INO)?;
    Ok((stx.stx_dev_major, stx.stx_dev_minor, stx.stx_ino))
}

/// struct file_handle with room for the largest handle (MAX_HANDLE_SZ).
#[repr(C)]
struct FileHandle {
    size: u32,
    kind: i32,
    data: [u8; eci_policy::volume::MOST_HANDLE_BYTES],
}

impl FileHandle {
    fn bytes(&self) -> &[u8] {
        &self.data[..(self.size as usize).min(self.data.len())]
    }
}

/// The file handle of what `fd` is (name_to_handle_at(2)).
fn handle_of(fd: RawFd) -> SysResult<FileHandle> {
    let mut handle = FileHandle {
        size: eci_policy::volume::MOST_HANDLE_BYTES as u32,
        kind: 0,
        data: [0; eci_policy::volume::MOST_HANDLE_BYTES],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names the fd; `handle` is a
    // file_handle whose size field says how much room follows; mount_id is a valid out pointer.
    check(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd,
            c"".as_ptr(),
            &mut handle as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH,
        )
    })?;
    Ok(handle)
}

/// Fails with ESTALE unless the bind source `source` opened is the directory `expect` names.
fn check_source(source: &Fd, expect: Option<&DirIdentity>) -> SysResult<()> {
    match expect {
        Some(expect) if !same_directory(source.0, expect)? => Err(Errno(libc::ESTALE)),
        _ => Ok(()),
    }
}

/// statx of what `fd` names, failing with EOPNOTSUPP unless the kernel filled in `wanted`.
fn statx_fd(fd: RawFd, wanted: u32) -> SysResult<libc::statx> {
    // SAFETY: an all-zero statx is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // Mount IDs, attributes and inode numbers are the VFS's: DONT_SYNC keeps a FUSE server
    // from being asked (and a virtual file from being computed before the container's limits
    // exist).
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names the fd; stx is a valid out
    // pointer.
    check_int(unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            wanted,
            &mut stx,
        )
    })?;
    if stx.stx_mask & wanted != wanted {
        return Err(Errno(libc::EOPNOTSUPP));
    }
    Ok(stx)
}

/// Makes the mount `fd` names read-only, changing no other flag.
fn set_read_only(fd: RawFd) -> SysResult<()> {
    let attr = sys::MountAttr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    sys::mount_setattr(fd, false, &attr)
}

/// Resolves `dest` in the root, creating missing directories (and a file for `PointKind::File`).
/// The mounter runs with the container's root as its filesystem IDs, so what it creates belongs
/// to the container's root, and with its rights ([`create_as_container_root`]).
fn ensure(root: RawFd, block: IdBlock, dest: &RootPath, kind: PointKind) -> SysResult<Fd> {
    match open_in_root(root, &dest.rel, libc::O_PATH) {
        Err(Errno(libc::ENOENT)) => {}
        other => return other,
    }
    let (parent, name) = parent_of(root, block, dest)?;
    let created = create_as_container_root(&parent, block, || match kind {
        PointKind::File => {
            let flags =
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
            // SAFETY: name is NUL-terminated; parent is a directory fd.
            check_int(unsafe { libc::openat(parent.0, name.as_ptr(), flags, 0o644) })
                .map(sys::close)
        }
        PointKind::Dir => {
            // SAFETY: name is NUL-terminated; parent is a directory fd.
            check_int(unsafe { libc::mkdirat(parent.0, name.as_ptr(), 0o755) }).map(drop)
        }
    });
    match created {
        Ok(()) | Err(Errno(libc::EEXIST)) => {}
        Err(errno) => return Err(errno),
    }
    open_in_root(root, &dest.rel, libc::O_PATH)
}

fn chown_at(dir: RawFd, name: &CStr, (uid, gid): (u32, u32)) -> SysResult<()> {
    // SAFETY: name is NUL-terminated; AT_SYMLINK_NOFOLLOW keeps the change on the entry itself.
    check_int(unsafe { libc::fchownat(dir, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
        .map(drop)
}

/// The capabilities by which the mounter could create where the container's root may not.
/// (CAP_DAC_OVERRIDE 1, CAP_DAC_READ_SEARCH 2, CAP_FOWNER 3, CAP_MKNOD 27.)
const OVERRIDING_CAPS: u64 = 1 << 1 | 1 << 2 | 1 << 3 | 1 << 27;

/// Runs `create`, which makes an entry in directory `parent`, with the rights the container's
/// root has there. Its capabilities count only over a directory whose owner and group its
/// user namespace maps (the kernel's rule for capabilities in a user namespace). A host
/// directory shown through a plain bind keeps its host owners: there the mounter creates only
/// what the directory's permission bits give the container's root, as a runtime working in
/// the container's user namespace would. With the host's capabilities it made mount points,
/// device nodes and links in host directories no container may write (a second mount under a
/// bind of /opt, say), and the container then owned them. Allocation-free.
fn create_as_container_root<T>(
    parent: &Fd,
    block: IdBlock,
    create: impl FnOnce() -> SysResult<T>,
) -> SysResult<T> {
    // SAFETY: an all-zero stat is valid; fstat fills it in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out pointer; parent is an open descriptor.
    check_int(unsafe { libc::fstat(parent.0, &mut st) })?;
    if block.to_container(st.st_uid).is_some() && block.to_container(st.st_gid).is_some() {
        return create();
    }
    let (effective, _) = sys::own_caps()?;
    sys::set_effective_caps(effective & !OVERRIDING_CAPS)?;
    let created = create();
    // Failing to take them back would fail every later step, so it fails this one.
    sys::set_effective_caps(effective)?;
    created
}

/// The parent directory of `dest` (created, with its own parents, if missing) and its last name.
fn parent_of(root: RawFd, block: IdBlock, dest: &RootPath) -> SysResult<(Fd, &CStr)> {
    let (last, parents) = dest.components.split_last().ok_or(Errno(libc::EINVAL))?;
    let (parent, name) = last;
    // Mostly the parent exists (every node in /dev shares one): one lookup instead of a walk.
    match open_in_root(root, parent, libc::O_PATH | libc::O_DIRECTORY) {
        Err(Errno(libc::ENOENT)) => {}
        other => return other.map(|fd| (fd, name.as_c_str())),
    }
    for (parent, name) in parents {
        let parent = open_in_root(root, parent, libc::O_PATH | libc::O_DIRECTORY)?;
        let made = create_as_container_root(&parent, block, || {
            // SAFETY: name is NUL-terminated; parent is a directory fd.
            check_int(unsafe { libc::mkdirat(parent.0, name.as_ptr(), 0o755) })
        });
        match made {
            Ok(_) | Err(Errno(libc::EEXIST)) => {}
            Err(errno) => return Err(errno),
        }
    }
    let (parent, name) = last;
    Ok((
        open_in_root(root, parent, libc::O_PATH | libc::O_DIRECTORY)?,
        name.as_c_str(),
    ))
}

/// What the mounter knows at run time that the plan could not.
#[derive(Debug, Clone, Copy)]
pub struct ExecContext<'a> {
    /// The container's init, in the PID namespace of the mounter's /proc (the host's).
    pub init_pid: i32,
    /// How the rootfs appears with the container's owners.
    pub rootfs: RootfsMount,
    /// For a plan with late mounts ([`MountPlan::with_unmountable`]): the moment the init
    /// unshares its mount namespace, after which they are attached.
    pub late: Option<LatePhase<'a>>,
}

/// How the mounter puts the rootfs in place. The runtime decides, having tried what works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsMount {
    /// A plain bind: its owners are the container's already (shifted on disk, or no user
    /// namespace to map through).
    Bind,
    /// Idmapped through the init's user namespace.
    Idmapped,
    /// An overlay that cannot be idmapped itself, rebuilt from its layers idmapped (see
    /// [`MountPlan::with_overlay_root`]).
    IdmappedLayers,
}

/// Makes everything the mounter creates belong to the container's root: directories and files
/// for mount points, links, device nodes, the roots of new tmpfs and mqueue instances. Host root
/// has no on-disk ID through the idmapped rootfs, so creating there as host root would fail
/// (EOVERFLOW). SECBIT_NO_SETUID_FIXUP keeps the capabilities the mounter still needs (CAP_MKNOD,
/// CAP_DAC_OVERRIDE for an image's own directories, CAP_CHOWN) when the IDs change.
fn act_as_container_root((uid, gid): (u32, u32)) -> SysResult<()> {
    const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
    // SAFETY: prctl, umask, setfsgid and setfsuid take plain integers.
    unsafe {
        check_int(libc::prctl(
            libc::PR_SET_SECUREBITS,
            SECBIT_NO_SETUID_FIXUP,
            0,
            0,
            0,
        ))?;
        // Every mode the plan creates is spelled out (device nodes 0666, mount points 0755).
        libc::umask(0);
        libc::setfsgid(gid);
        libc::setfsuid(uid);
        // Both return the previous ID; asking again returns the current one.
        if libc::setfsuid(uid) as u32 != uid || libc::setfsgid(gid) as u32 != gid {
            return Err(Errno(libc::EPERM));
        }
    }
    Ok(())
}

/// Binds `source` (an O_PATH fd of a vetted host path) onto `target`, idmapped as asked; a
/// private `propagation` is set before the bind is attached.
fn bind_host_path(
    source: &Fd,
    target: &Fd,
    recursive: bool,
    idmap: Idmap,
    userns: RawFd,
    flags: libc::c_ulong,
    propagation: libc::c_ulong,
) -> SysResult<FlagsOn> {
    if idmap != Idmap::No {
        // SAFETY: both fds stay open for the duration of the call.
        let (source_fd, userns) = unsafe {
            (
                BorrowedFd::borrow_raw(source.0),
                BorrowedFd::borrow_raw(userns),
            )
        };
        match idmapped_copy_as(idmap, source_fd, recursive, userns) {
            Ok(tree) => return attach_with_flags(tree.as_raw_fd(), target.0, flags, propagation),
            Err(errno) if idmap.may_fall_back() && idmapped::unsupported(errno) => {}
            Err(errno) => return Err(errno),
        }
    }
    bind(source.0, target.0, recursive, flags, propagation)
}

/// The idmapped copy `idmap` asks for: every mount of the tree for `ridmap`, else the top one.
fn idmapped_copy_as(
    idmap: Idmap,
    source: BorrowedFd<'_>,
    recursive: bool,
    userns: BorrowedFd<'_>,
) -> SysResult<std::os::fd::OwnedFd> {
    match idmap {
        Idmap::RequiredWithSubmounts => idmapped::idmapped_tree(source, userns),
        _ => idmapped::idmapped_copy(source, recursive, userns),
    }
}

/// Why attaching a tree on `target` failed with ENOENT, as the descriptor tells: since Linux
/// 6.16 the kernel answers so when the mount point's entry (or one above it) was removed, or its
/// mount left the tree, between the lookup and the attach. A removed entry's path reads
/// " (deleted)"; a mount out of the tree is no longer under `root`. Allocation-free.
fn why_gone(root: RawFd, target: &Fd) -> Action {
    let mut target_path = [0u8; 4096];
    let mut root_path = [0u8; 4096];
    let target_path = fd_path(target.0, &mut target_path);
    let root_path = fd_path(root, &mut root_path);
    let under_root = target_path
        .strip_prefix(root_path)
        .is_some_and(|rest| rest.first() == Some(&b'/'));
    if target_path.ends_with(b" (deleted)") {
        Action::MountOnRemoved
    } else if !target_path.is_empty() && !root_path.is_empty() && !under_root {
        Action::MountOnDetached
    } else {
        Action::Mount
    }
}

/// Why binding `source` onto `target` failed with ENOENT: the source's copy, if copying it
/// again fails so; the source's entry or one above it dropped from the kernel's cache (the
/// kernel refuses to attach such a tree, though it copies it); the mount point
/// ([`why_gone`]); a directory above the mount point dropped. Only for the failure's report:
/// a copy made here is dissolved at once. Allocation-free.
fn why_bind_failed(root: RawFd, source: &Fd, target: &Fd) -> Action {
    if let Err(Errno(libc::ENOENT)) = sys::open_tree(source.0, c"", sys::OPEN_TREE_CLONE) {
        return Action::MountSourceUncopied;
    }
    if dropped_here_or_above(source.0) {
        return Action::MountSourceDropped;
    }
    match why_gone(root, target) {
        Action::Mount if dropped_here_or_above(target.0) => Action::MountOnDropped,
        Action::Mount => Action::MountOnUnexplained,
        known => known,
    }
}

/// Whether the entry `fd` names, or a directory above it, has been dropped from the kernel's
/// dentry cache (removed, or invalidated: a FUSE server's notification, a /proc/PID directory
/// of a process that exited): its path then reads " (deleted)". Walks up through "..", which
/// follows the entries' own parents, to the root. Allocation-free.
fn dropped_here_or_above(fd: RawFd) -> bool {
    let mut buf = [0u8; 4096];
    let mut current: Option<Fd> = None;
    // Deeper than any path the mounter binds from or onto.
    for _ in 0..64 {
        let at = current.as_ref().map_or(fd, |dir| dir.0);
        let path = fd_path(at, &mut buf);
        if path.ends_with(b" (deleted)") {
            return true;
        }
        if path.is_empty() || path == b"/" {
            return false;
        }
        match openat2(at, c"..", libc::O_PATH, 0) {
            Ok(parent) => current = Some(parent),
            Err(_) => return false,
        }
    }
    false
}

/// How many times a bind is tried while its ENOENT is unexplained or a dropped entry's.
const UNEXPLAINED_BIND_ATTEMPTS: u32 = 3;

/// Opens the source with `open_source`, resolves `dest` (creating it as `kind`) and binds
/// the one onto the other with `bind_once`. An ENOENT that [`why_bind_failed`] puts down to
/// an entry dropped from the kernel's cache, or cannot explain, is met by opening both anew
/// and binding again, a few times: a fresh lookup gives hashed entries, and a failed attempt
/// attaches nothing. CI met four unexplained ENOENTs, all on a tunable's bind (a FUSE file
/// of the files daemon) over a /proc/sys file, each on every try while the retry reused the
/// source it had opened first; the kernel refuses to attach a copy of a source whose entry,
/// or a directory above it, was dropped after it was opened, which the report did not look
/// for then. Any other failure, and the last retried one, is the step's.
fn bind_resolving_again(
    root: RawFd,
    block: IdBlock,
    dest: &RootPath,
    kind: PointKind,
    open_source: impl Fn() -> Result<Fd, (Action, Errno)>,
    bind_once: impl Fn(&Fd, &Fd) -> SysResult<FlagsOn>,
) -> Result<FlagsOn, (Action, Errno)> {
    let mut attempt = 1;
    loop {
        let source = open_source()?;
        let target = ensure(root, block, dest, kind).map_err(|errno| (Action::Resolve, errno))?;
        match bind_once(&source, &target) {
            Ok(flags_on) => return Ok(flags_on),
            Err(Errno(libc::ENOENT)) => match why_bind_failed(root, &source, &target) {
                Action::MountOnUnexplained
                | Action::MountSourceDropped
                | Action::MountOnDropped
                    if attempt < UNEXPLAINED_BIND_ATTEMPTS =>
                {
                    attempt += 1
                }
                action => return Err((action, Errno(libc::ENOENT))),
            },
            Err(errno) => return Err((Action::Mount, errno)),
        }
    }
}

/// What /proc/self/fd/`fd` reads, in `buf` (empty if unreadable).
fn fd_path(fd: RawFd, buf: &mut [u8; 4096]) -> &[u8] {
    let link = FdPath::new(fd);
    // SAFETY: a NUL-terminated path and a buffer of the given length.
    let len =
        unsafe { libc::readlink(link.as_cstr().as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(len).map_or(&buf[..0], |len| &buf[..len])
}

/// Whether a bind came with its flags ([`bind`]), or the caller must still remount it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagsOn {
    Yes,
    No,
}

/// Binds what `source` names onto `target` (both descriptors) with `flags` added. Through a
/// detached copy (open_tree, mount_setattr, move_mount), the flags go on before the copy is
/// attached and no path is walked: 10 us a bind against 16 through mount(2) with
/// /proc/self/fd paths and a remount of the path opened again (40 binds of a file here); a
/// plan has 30-40 binds, most of them the virtual files. Without open_tree (before Linux 5.2),
/// mount(2), and the flags are the caller's to add.
fn bind(
    source: RawFd,
    target: RawFd,
    recursive: bool,
    flags: libc::c_ulong,
    propagation: libc::c_ulong,
) -> SysResult<FlagsOn> {
    let rec = if recursive {
        libc::AT_RECURSIVE as u32
    } else {
        0
    };
    match sys::open_tree(source, c"", sys::OPEN_TREE_CLONE | rec) {
        Ok(tree) => attach_with_flags(tree.as_raw_fd(), target, flags, propagation),
        Err(Errno(libc::ENOSYS)) => {
            let (source, target) = (FdPath::new(source), FdPath::new(target));
            let rec = if recursive { libc::MS_REC } else { 0 };
            sys::mount(
                Some(source.as_cstr()),
                target.as_cstr(),
                None,
                libc::MS_BIND | rec,
                None,
            )?;
            Ok(FlagsOn::No)
        }
        Err(errno) => Err(errno),
    }
}

/// Adds `flags` to the detached `tree` (its top mount, as a remount of a bind would) and
/// attaches it on `target`. Without mount_setattr (before Linux 5.12) the tree is attached
/// as it is and the flags are the caller's to add. A private `propagation` (MS_PRIVATE, with
/// MS_REC for the whole tree) is set first: a copy keeps its source's peer group or master,
/// and would take the host's mounts there until changed once attached.
fn attach_with_flags(
    tree: RawFd,
    target: RawFd,
    flags: libc::c_ulong,
    propagation: libc::c_ulong,
) -> SysResult<FlagsOn> {
    if propagation & libc::MS_PRIVATE != 0 {
        let private = sys::MountAttr {
            attr_set: 0,
            attr_clr: 0,
            propagation: libc::MS_PRIVATE,
            userns_fd: 0,
        };
        match sys::mount_setattr(tree, propagation & libc::MS_REC != 0, &private) {
            // Before Linux 5.12 the caller changes it once attached, as it does anyway.
            Ok(()) | Err(Errno(libc::ENOSYS)) => {}
            Err(errno) => return Err(errno),
        }
    }
    let on = match flags {
        0 => FlagsOn::Yes,
        _ => match sys::mount_setattr(tree, all_through(flags), &attributes_of(flags)) {
            Ok(()) => FlagsOn::Yes,
            // The caller's remount fails the same way for flags that go all through.
            Err(Errno(libc::ENOSYS)) => FlagsOn::No,
            Err(errno) => return Err(errno),
        },
    };
    sys::attach_tree(tree, target, c"")?;
    Ok(on)
}

impl MountPlan {
    /// Builds the mount table and pivots into the rootfs. Returns a failure whose step code
    /// [`MountPlan::explain`] turns into words.
    pub fn execute(&self, ctx: &ExecContext<'_>) -> Result<(), Failure> {
        act_as_container_root(self.owner).map_err(mount_failure(global::FSIDS))?;
        let userns = if ctx.rootfs != RootfsMount::Bind || self.needs_userns() {
            let path = sys::ProcPath::of(ctx.init_pid, b"ns/user");
            let path = path.as_cstr();
            // SAFETY: the path is NUL-terminated.
            Some(
                check_int(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })
                    .map(Fd)
                    .map_err(mount_failure(global::USERNS))?,
            )
        } else {
            None
        };
        match (&userns, ctx.rootfs, &self.layers) {
            (Some(userns), RootfsMount::IdmappedLayers, Some(layers)) => {
                // SAFETY: the fd stays open for the duration of the call.
                let userns = unsafe { BorrowedFd::borrow_raw(userns.0) };
                let upper = layers.upper.as_ref().map(|(parent, upper, work)| {
                    (parent.as_c_str(), upper.as_c_str(), work.as_c_str())
                });
                let tree =
                    idmapped::idmapped_overlay(&layers.lower, upper, &layers.options, userns)
                        .map_err(mount_failure(global::BIND_ROOTFS))?;
                idmapped::attach(tree.as_fd(), libc::AT_FDCWD, &self.rootfs)
                    .map_err(mount_failure(global::BIND_ROOTFS))?;
            }
            (_, RootfsMount::IdmappedLayers, _) => {
                // Asked for layers the plan does not have: never fall back to a plain bind.
                return Err(mount_failure(global::BIND_ROOTFS)(Errno(libc::EINVAL)));
            }
            (Some(userns), RootfsMount::Idmapped, _) => {
                // SAFETY: the path is NUL-terminated.
                let source = check_int(unsafe {
                    libc::open(self.rootfs.as_ptr(), libc::O_PATH | libc::O_CLOEXEC)
                })
                .map(Fd)
                .map_err(mount_failure(global::BIND_ROOTFS))?;
                // SAFETY: both fds stay open for the duration of the calls.
                let (source, userns) = unsafe {
                    (
                        BorrowedFd::borrow_raw(source.0),
                        BorrowedFd::borrow_raw(userns.0),
                    )
                };
                let tree = idmapped::idmapped_copy(source, true, userns)
                    .map_err(mount_failure(global::BIND_ROOTFS))?;
                idmapped::attach(tree.as_fd(), libc::AT_FDCWD, &self.rootfs)
                    .map_err(mount_failure(global::BIND_ROOTFS))?;
            }
            _ => sys::mount(
                Some(&self.rootfs),
                &self.rootfs,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .map_err(mount_failure(global::BIND_ROOTFS))?,
        }
        if self.rootfs_propagation != 0 {
            sys::mount(None, &self.rootfs, None, self.rootfs_propagation, None)
                .map_err(mount_failure(global::ROOTFS_PROPAGATION))?;
        }
        // SAFETY: the path is NUL-terminated.
        let root = check_int(unsafe {
            libc::open(
                self.rootfs.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })
        .map(Fd)
        .map_err(mount_failure(global::OPEN_ROOTFS))?;
        let userns = userns.as_ref().map_or(-1, |fd| fd.0);
        // Read-only shares are idmapped through a namespace that maps the system IDs alone.
        let system_ids = if self.needs_system_ids_userns() {
            let made = idmapped::system_ids_userns(self.block.host_start());
            Some(made.map_err(mount_failure(global::SYSTEM_IDS_USERNS))?)
        } else {
            None
        };
        let system_ids = system_ids.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        let userns_for = |step: &Step| match step {
            Step::Mount {
                idmap: Idmap::TrySystemIds,
                ..
            } => system_ids,
            _ => userns,
        };
        let mut late: [Option<(usize, Fd)>; MOST_DETACHED] = [const { None }; MOST_DETACHED];
        let mut count = 0;
        for (index, step) in self.steps.iter().enumerate() {
            if self.detached.contains(&index) {
                // The mount point now, while the host's paths are in view, and the tree too;
                // the tree is attached once the init has its own namespace.
                let tree = detached_tree(root.0, userns_for(step), self.block, index, step)?;
                // The plan holds at most MOST_DETACHED: never drop one silently.
                let slot = late
                    .get_mut(count)
                    .ok_or(mount_failure(code(index, Action::Mount))(Errno(
                        libc::E2BIG,
                    )))?;
                *slot = Some((index, tree));
                count += 1;
                continue;
            }
            self.run_step(root.0, userns_for(step), index, step)?;
        }
        if self.root_readonly {
            remount_with(root.0, libc::MS_RDONLY).map_err(mount_failure(global::ROOT_READONLY))?;
        }
        pivot(root.0)?;
        match ctx.late {
            Some(phase) if count > 0 => self.attach_late(phase, &late[..count]),
            // Late mounts planned but no way to wait for the init: never mount them locked.
            None if count > 0 => Err(mount_failure(global::SHARE_ROOT)(Errno(libc::EINVAL))),
            _ => Ok(()),
        }
    }

    /// After the pivot: shares the container's root (pivot_root refuses a shared parent, so not
    /// before), lets the init unshare (its root becomes a slave of ours), then attaches each
    /// tree, which propagates into the init's namespace.
    fn attach_late(
        &self,
        phase: LatePhase<'_>,
        trees: &[Option<(usize, Fd)>],
    ) -> Result<(), Failure> {
        sys::mount(None, c"/", None, libc::MS_SHARED, None)
            .map_err(mount_failure(global::SHARE_ROOT))?;
        phase.wait_for_unshare()?;
        let root = open_own_root().map_err(mount_failure(global::OPEN_ROOT))?;
        for (index, tree) in trees.iter().flatten() {
            let dest = mount_dest(&self.steps, *index)?;
            let target = open_in_root(root.0, &dest.rel, libc::O_PATH)
                .map_err(mount_failure(code(*index, Action::Resolve)))?;
            // Only what is attached on the shared root reaches the init's namespace: a mount
            // point that an image's symlink led onto another mount would leave the container
            // without the bind, silently.
            let on_root = mount_id(target.0).is_some_and(|id| Some(id) == mount_id(root.0));
            if !on_root {
                return Err(mount_failure(code(*index, Action::Resolve))(Errno(
                    libc::EXDEV,
                )));
            }
            sys::attach_tree(tree.0, target.0, c"")
                .map_err(mount_failure(code(*index, Action::Mount)))?;
        }
        Ok(())
    }

    /// Runs in the init, in its own mount namespace (root: the rootfs): applies the read-only
    /// flags that [`MountPlan::with_remountable_read_only`] deferred. A flag that cannot be
    /// applied fails the container rather than leave the mount writable. Allocation-free.
    pub fn apply_deferred(&self) -> Result<(), Failure> {
        if self.deferred_read_only.is_empty() && !self.root_read_only_deferred {
            return Ok(());
        }
        let root = open_own_root().map_err(mount_failure(global::OPEN_ROOT))?;
        for &index in &self.deferred_read_only {
            let dest = mount_dest(&self.steps, index)?;
            let mounted = open_in_root(root.0, &dest.rel, libc::O_PATH)
                .map_err(mount_failure(code(index, Action::Resolve)))?;
            // The bind, not a directory of the mount beneath (renamed meanwhile): never leave
            // it writable by making something else read-only.
            if !is_mount_root(mounted.0) {
                return Err(mount_failure(code(index, Action::Resolve))(Errno(
                    libc::EXDEV,
                )));
            }
            set_read_only(mounted.0).map_err(mount_failure(code(index, Action::Remount)))?;
        }
        if self.root_read_only_deferred {
            set_read_only(root.0).map_err(mount_failure(global::ROOT_READONLY))?;
        }
        Ok(())
    }

    /// True if any bind may be idmapped.
    fn needs_system_ids_userns(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s,
                Step::Mount {
                    idmap: Idmap::TrySystemIds,
                    ..
                }
            )
        })
    }

    fn needs_userns(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s,
                Step::Mount {
                    idmap: Idmap::Try | Idmap::Required | Idmap::RequiredWithSubmounts,
                    ..
                }
            )
        })
    }

    fn run_step(
        &self,
        root: RawFd,
        userns: RawFd,
        index: usize,
        step: &Step,
    ) -> Result<(), Failure> {
        let fail = |action| mount_failure(code(index, action));
        match step {
            Step::Mount {
                dest,
                kind,
                source,
                fstype,
                flags,
                data,
                bind,
                recursive,
                idmap,
                propagation,
                chown_root,
                expect,
            } => {
                // A bind's source first: a missing one leaves no mount point behind in the
                // rootfs.
                let host_source = match (*bind, source) {
                    (true, Source::Host(path)) => Some(path),
                    (true, Source::Name(_)) => {
                        return Err(fail(Action::Source)(Errno(libc::EINVAL)))
                    }
                    (false, _) => None,
                };
                let flags_on = if let Some(path) = host_source {
                    let open_source = || {
                        let opened =
                            open_vetted_host_path(path).map_err(|errno| (Action::Source, errno))?;
                        check_source(&opened, expect.as_ref())
                            .map_err(|errno| (Action::SourceChanged, errno))?;
                        Ok(opened)
                    };
                    let bind_once = |host_source: &Fd, target: &Fd| {
                        bind_host_path(
                            host_source,
                            target,
                            *recursive,
                            *idmap,
                            userns,
                            *flags,
                            *propagation,
                        )
                    };
                    bind_resolving_again(root, self.block, dest, *kind, open_source, bind_once)
                        .map_err(|(action, errno)| fail(action)(errno))?
                } else {
                    let target =
                        ensure(root, self.block, dest, *kind).map_err(fail(Action::Resolve))?;
                    let target = match fstype.as_deref().is_some_and(is_kernel_fs) {
                        true => open_literally(root, &dest.rel).map_err(fail(Action::Resolve))?,
                        false => target,
                    };
                    let target_path = FdPath::new(target.0);
                    let (Source::Host(name) | Source::Name(name)) = source;
                    // MS_REC (`rro`) means something for binds alone.
                    sys::mount(
                        Some(name),
                        target_path.as_cstr(),
                        fstype.as_deref(),
                        *flags & !libc::MS_REC,
                        data.as_deref(),
                    )
                    .map_err(fail(Action::Mount))?;
                    FlagsOn::Yes
                };
                let remount = *bind && *flags != 0 && flags_on == FlagsOn::No;
                if !remount && *propagation == 0 && !*chown_root {
                    return Ok(());
                }
                // From here on the destination names the new mount: looked up again, so checked
                // to be a mount's root and not the rootfs's (a destination leading to / finds
                // the root, not what was mounted on it), before anything is changed through it.
                let mounted =
                    open_in_root(root, &dest.rel, libc::O_PATH).map_err(fail(Action::Resolve))?;
                if !is_mount_root(mounted.0) || mount_id(mounted.0) == mount_id(root) {
                    return Err(fail(Action::Resolve)(Errno(libc::EXDEV)));
                }
                if remount {
                    remount_with(mounted.0, *flags).map_err(fail(Action::Remount))?;
                }
                if *propagation != 0 {
                    let path = FdPath::new(mounted.0);
                    sys::mount(None, path.as_cstr(), None, *propagation, None)
                        .map_err(fail(Action::Propagation))?;
                }
                if *chown_root {
                    // Found by a second lookup, which a container sharing a volume the
                    // destination is in could have led to another of this container's mounts
                    // (a host bind, whose root would be the host's to lose): only a root of the
                    // type just mounted is given to the container.
                    if !fstype
                        .as_deref()
                        .is_some_and(|t| is_filesystem(mounted.0, t))
                    {
                        return Err(fail(Action::Resolve)(Errno(libc::EXDEV)));
                    }
                    let (uid, gid) = self.owner;
                    // SAFETY: an empty path with AT_EMPTY_PATH names the fd itself: the root of
                    // the filesystem just mounted, never a bind of anything else.
                    check_int(unsafe {
                        libc::fchownat(mounted.0, c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH)
                    })
                    .map_err(fail(Action::Chown))?;
                }
                Ok(())
            }
            Step::Device {
                dest,
                mode,
                major,
                minor,
                uid,
                gid,
            } => {
                let (parent, name) =
                    parent_of(root, self.block, dest).map_err(fail(Action::Resolve))?;
                let dev = libc::makedev(*major, *minor);
                let made = create_as_container_root(&parent, self.block, || {
                    // SAFETY: name is NUL-terminated; parent is a directory fd (mostly of the
                    // /dev tmpfs the plan mounted just before).
                    check_int(unsafe {
                        libc::mknodat(parent.0, name.as_ptr(), libc::S_IFCHR | mode, dev)
                    })
                });
                match made {
                    Ok(_) => chown_at(parent.0, name, (*uid, *gid)).map_err(fail(Action::Chown)),
                    Err(Errno(libc::EEXIST)) => Ok(()),
                    Err(errno) => Err(fail(Action::Create)(errno)),
                }
            }
            Step::Symlink { dest, target } => {
                let (parent, name) =
                    parent_of(root, self.block, dest).map_err(fail(Action::Resolve))?;
                let made = create_as_container_root(&parent, self.block, || {
                    // SAFETY: both strings are NUL-terminated; parent is a directory fd.
                    check_int(unsafe { libc::symlinkat(target.as_ptr(), parent.0, name.as_ptr()) })
                });
                match made {
                    Ok(_) | Err(Errno(libc::EEXIST)) => Ok(()),
                    Err(errno) => Err(fail(Action::Create)(errno)),
                }
            }
            Step::Mask { dest } => mask(root, dest).map_err(fail(Action::Mount)),
            Step::ReadOnly { dest } => read_only(root, dest).map_err(fail(Action::Mount)),
        }
    }
}

/// Hides a path: an empty read-only tmpfs over a directory, the container's /dev/null (or the
/// host's, if the container has no /dev of ours) over anything else. Missing paths are skipped.
fn mask(root: RawFd, dest: &RootPath) -> SysResult<()> {
    let target = match open_in_root(root, &dest.rel, libc::O_PATH) {
        Err(Errno(libc::ENOENT)) => return Ok(()),
        other => other?,
    };
    // SAFETY: an all-zero stat is valid; fstat fills it in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out pointer.
    check_int(unsafe { libc::fstat(target.0, &mut st) })?;
    let path = FdPath::new(target.0);
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        return sys::mount(
            Some(c"tmpfs"),
            path.as_cstr(),
            Some(c"tmpfs"),
            flags,
            Some(c"size=0,mode=0555"),
        );
    }
    // The container's /dev/null only if it is one: a /dev bound from a host directory may hold
    // a `null` leading anywhere in the container's tree (to the very file to hide).
    let ours = open_in_root(root, c"dev/null", libc::O_PATH).ok();
    let null = match ours.filter(|null| is_null_device(null.0)) {
        Some(null) => null,
        None => {
            let host = openat2(
                libc::AT_FDCWD,
                c"/dev/null",
                libc::O_PATH,
                RESOLVE_NO_SYMLINKS,
            )?;
            if !is_null_device(host.0) {
                return Err(Errno(libc::ENODEV));
            }
            host
        }
    };
    bind(null.0, target.0, false, 0, 0).map(drop)
}

/// Whether `fd` is the null device (character device 1:3).
fn is_null_device(fd: RawFd) -> bool {
    // SAFETY: an all-zero stat is valid; fstat fills it in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a valid out pointer.
    let stated = unsafe { libc::fstat(fd, &mut st) } == 0;
    stated
        && st.st_mode & libc::S_IFMT == libc::S_IFCHR
        && (libc::major(st.st_rdev), libc::minor(st.st_rdev)) == (1, 3)
}

/// Makes a path read-only with a bind of itself. Missing paths are skipped.
fn read_only(root: RawFd, dest: &RootPath) -> SysResult<()> {
    let target = match open_in_root(root, &dest.rel, libc::O_PATH) {
        Err(Errno(libc::ENOENT)) => return Ok(()),
        other => other?,
    };
    if bind(target.0, target.0, true, libc::MS_RDONLY, 0)? == FlagsOn::Yes {
        return Ok(());
    }
    let bound = open_in_root(root, &dest.rel, libc::O_PATH)?;
    remount_with(bound.0, libc::MS_RDONLY)
}

/// Makes the rootfs the root, moving every process whose root was the old one along with it,
/// and detaches the old root.
fn pivot(root: RawFd) -> Result<(), Failure> {
    // SAFETY: root is an open directory fd.
    check_int(unsafe { libc::fchdir(root) }).map_err(mount_failure(global::PIVOT))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then
    // removes it. No directory for the old root is needed.
    // SAFETY: both paths are NUL-terminated.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) })
        .map_err(mount_failure(global::PIVOT))?;
    // SAFETY: the path is NUL-terminated.
    check_int(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })
        .map_err(mount_failure(global::DETACH_OLD_ROOT))?;
    // SAFETY: the path is NUL-terminated.
    check_int(unsafe { libc::chdir(c"/".as_ptr()) })
        .map_err(mount_failure(global::DETACH_OLD_ROOT))?;
    Ok(())
}

impl MountPlan {
    /// Turns the step code of a mount failure into words.
    pub fn explain(&self, step: u32) -> String {
        let rootfs = self.rootfs_display.display();
        match step {
            global::BIND_ROOTFS => format!("binding the rootfs {rootfs} onto itself"),
            global::OPEN_ROOTFS => format!("opening the rootfs {rootfs}"),
            global::ROOTFS_PROPAGATION => "setting the rootfs propagation".to_string(),
            global::ROOT_READONLY => "making the rootfs read-only".to_string(),
            global::PIVOT => format!("pivoting into the rootfs {rootfs}"),
            global::DETACH_OLD_ROOT => "detaching the host's root".to_string(),
            global::USERNS => {
                "opening the container's user namespace for idmapped mounts".to_string()
            }
            global::FSIDS => "taking the container's root as the filesystem IDs".to_string(),
            global::OPEN_ROOT => "opening the container's root".to_string(),
            global::SHARE_ROOT => "making the container's root a shared mount".to_string(),
            global::SYSTEM_IDS_USERNS => {
                "making the user namespace that maps the host's system IDs alone, for read-only shares"
                    .to_string()
            }
            code => match decode(code).and_then(|(i, action)| Some((self.steps.get(i)?, action))) {
                Some((step, action)) => match cause_words(action) {
                    Some(cause) => format!("{} {step} ({cause})", action_words(action)),
                    None => format!("{} {step}", action_words(action)),
                },
                None => format!("mount step {code}"),
            },
        }
    }
}

fn action_words(action: Action) -> &'static str {
    match action {
        Action::Resolve => "resolving the mount point of",
        Action::Mount => "mounting",
        Action::Remount => "applying the options of",
        Action::Propagation => "changing the propagation of",
        Action::Create => "creating",
        Action::Chown => "giving the container's root ownership of",
        Action::Source | Action::SourceChanged => {
            "opening (without following symlinks) the source of"
        }
        Action::MountOnRemoved
        | Action::MountOnDetached
        | Action::MountSourceUncopied
        | Action::MountOnUnexplained
        | Action::MountSourceDropped
        | Action::MountOnDropped => "mounting",
    }
}

/// What went wrong beside the errno, where the mounter could tell ([`why_gone`]).
fn cause_words(action: Action) -> Option<&'static str> {
    match action {
        Action::MountOnRemoved => Some("the mount point's entry went after it was looked up"),
        Action::MountOnDetached => Some("the mount point's mount left the tree after the lookup"),
        Action::MountSourceUncopied => Some("the source could not be copied"),
        Action::SourceChanged => Some(
            "it is no longer the directory that was checked: the engine replaced or remounted \
             the volume meanwhile",
        ),
        Action::MountOnUnexplained => Some(
            "the kernel found the mount point gone on each of 3 tries, though its entry and \
             mount, the source and the directories above both read in place",
        ),
        Action::MountSourceDropped => Some(
            "after 3 tries, the last found the source's entry or a directory above it dropped \
             from the kernel's cache between its opening and the bind",
        ),
        Action::MountOnDropped => Some(
            "after 3 tries, the last found a directory above the mount point dropped from the \
             kernel's cache between its lookup and the bind",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_root_of_the_type_just_mounted_is_given_to_the_container() {
        let open = |path: &CStr| {
            // SAFETY: a NUL-terminated path.
            Fd(unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) })
        };
        let pts = open(c"/dev/pts");
        let tmp = open(c"/tmp");
        assert!(pts.0 >= 0 && tmp.0 >= 0);
        assert!(is_filesystem(pts.0, c"devpts"));
        assert!(!is_filesystem(pts.0, c"mqueue"));
        assert!(!is_filesystem(tmp.0, c"devpts"), "a host directory");
        assert!(
            !is_filesystem(pts.0, c"tmpfs"),
            "not a type whose root is given away"
        );
    }

    #[test]
    fn fd_paths_are_spelled_out() {
        assert_eq!(FdPath::new(0).as_cstr(), c"/proc/self/fd/0");
        assert_eq!(FdPath::new(1234567).as_cstr(), c"/proc/self/fd/1234567");
    }

    #[test]
    fn every_action_survives_its_step_code() {
        use Action::*;
        for action in [
            Resolve,
            Mount,
            Remount,
            Propagation,
            Create,
            Chown,
            Source,
            MountOnRemoved,
            MountOnDetached,
            MountSourceUncopied,
            MountOnUnexplained,
            SourceChanged,
            MountSourceDropped,
            MountOnDropped,
        ] {
            assert_eq!(decode(code(7, action)), Some((7, action)));
        }
    }

    /// Moves the test's thread into a mount namespace of its own (the thread ends with it).
    fn in_private_mount_namespace() {
        sys::unshare(libc::CLONE_NEWNS).expect("needs root");
        sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).unwrap();
    }

    /// Opens `path` (read-only) as an [`Fd`].
    fn open_fd(path: &std::path::Path) -> Fd {
        Fd(std::os::fd::IntoRawFd::into_raw_fd(
            std::fs::File::open(path).unwrap(),
        ))
    }

    #[test]
    fn a_bind_that_finds_its_mount_point_gone_says_which_way() {
        in_private_mount_namespace();
        let dir = tempfile::tempdir().unwrap();
        let (source_path, target_path) = (dir.path().join("source"), dir.path().join("target"));
        std::fs::write(&source_path, "s").unwrap();
        std::fs::write(&target_path, "t").unwrap();
        let (root, source, target) = (
            open_fd(dir.path()),
            open_fd(&source_path),
            open_fd(&target_path),
        );
        assert_eq!(why_gone(root.0, &target), Action::Mount);
        // Nothing to tell on a mount point in place, whose source copies.
        assert_eq!(
            why_bind_failed(root.0, &source, &target),
            Action::MountOnUnexplained
        );
        // The mount point's entry removed: the kernel refuses the bind with ENOENT.
        std::fs::remove_file(&target_path).unwrap();
        let bound = bind_host_path(&source, &target, false, Idmap::No, -1, 0, 0);
        assert_eq!(bound.err(), Some(Errno(libc::ENOENT)));
        assert_eq!(why_gone(root.0, &target), Action::MountOnRemoved);
        assert_eq!(
            why_bind_failed(root.0, &source, &target),
            Action::MountOnRemoved
        );
        // The mount point's mount detached.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let sub_c = std::ffi::CString::new(sub.as_os_str().as_encoded_bytes()).unwrap();
        sys::mount(Some(c"none"), &sub_c, Some(c"tmpfs"), 0, None).unwrap();
        std::fs::write(sub.join("target"), "t").unwrap();
        let target = open_fd(&sub.join("target"));
        nix::mount::umount2(&sub, nix::mount::MntFlags::MNT_DETACH).unwrap();
        // Before Linux 6.16 the kernel answered EINVAL here (a mount point outside the caller's
        // namespace), which the mounter reports as it is.
        match bind_host_path(&source, &target, false, Idmap::No, -1, 0, 0) {
            Err(Errno(libc::EINVAL)) => {}
            other => assert_eq!(other.err(), Some(Errno(libc::ENOENT))),
        }
        assert_eq!(why_gone(root.0, &target), Action::MountOnDetached);
        // A sibling whose name begins like the root's is not under it.
        let (near, near_target) = (dir.path().join("r"), dir.path().join("rr"));
        std::fs::create_dir(&near).unwrap();
        std::fs::write(&near_target, "t").unwrap();
        let near_target = open_fd(&near_target);
        assert_eq!(
            why_gone(open_fd(&near).0, &near_target),
            Action::MountOnDetached
        );
    }

    #[test]
    fn only_an_unexplained_enoent_is_met_by_binding_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("source"), "s").unwrap();
        let root = open_fd(dir.path());
        let open_source = || Ok(open_fd(&dir.path().join("source")));
        let dest = RootPath::new(std::path::Path::new("/target")).unwrap();
        let calls = std::cell::Cell::new(0);
        let attempt = |errno: Option<i32>| {
            calls.set(calls.get() + 1);
            errno.map_or(Ok(FlagsOn::Yes), |errno| Err(Errno(errno)))
        };
        let bind_with = |bind_once: &dyn Fn(&Fd) -> SysResult<FlagsOn>| {
            calls.set(0);
            let block = IdBlock::new(0, 65536).unwrap();
            let bind_once = |_: &Fd, target: &Fd| bind_once(target);
            let result = bind_resolving_again(
                root.0,
                block,
                &dest,
                PointKind::File,
                open_source,
                bind_once,
            );
            (result, calls.get())
        };
        // Two unexplained failures, as CI saw one, then the bind: the mount point (created
        // on the first attempt) resolved anew each time. The first is moved aside (still under
        // the root, so its failure stays unexplained); the later ones must be /target again.
        let flaky = |target: &Fd| {
            let mut path = [0u8; 4096];
            let path = fd_path(target.0, &mut path);
            if calls.get() == 0 {
                std::fs::rename(dir.path().join("target"), dir.path().join("moved")).unwrap();
            } else {
                assert!(
                    path.ends_with(b"/target"),
                    "{}",
                    String::from_utf8_lossy(path)
                );
            }
            attempt((calls.get() < 2).then_some(libc::ENOENT))
        };
        assert_eq!(bind_with(&flaky), (Ok(FlagsOn::Yes), 3));
        std::fs::remove_file(dir.path().join("moved")).unwrap();
        // One that never binds fails the step once the attempts are spent, named so.
        let never = |_: &Fd| attempt(Some(libc::ENOENT));
        let unexplained = Err((Action::MountOnUnexplained, Errno(libc::ENOENT)));
        assert_eq!(bind_with(&never), (unexplained, UNEXPLAINED_BIND_ATTEMPTS));
        // Any other errno fails the step at once.
        let busy = |_: &Fd| attempt(Some(libc::EBUSY));
        assert_eq!(
            bind_with(&busy),
            (Err((Action::Mount, Errno(libc::EBUSY))), 1)
        );
        // So does an ENOENT the mounter can explain: here the mount point's entry removed.
        let removing = |_: &Fd| {
            std::fs::remove_file(dir.path().join("target")).unwrap();
            attempt(Some(libc::ENOENT))
        };
        let removed = Err((Action::MountOnRemoved, Errno(libc::ENOENT)));
        assert_eq!(bind_with(&removing), (removed, 1));
        // The report says how often it was tried.
        let words = cause_words(Action::MountOnUnexplained).unwrap();
        assert!(words.contains(&format!("each of {UNEXPLAINED_BIND_ATTEMPTS} tries")));
    }

    #[test]
    fn entries_dropped_from_the_cache_are_named_and_a_dropped_source_is_opened_again() {
        in_private_mount_namespace();
        let dir = tempfile::tempdir().unwrap();
        for name in ["target", "fresh/inside"] {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
        }
        let (root, target) = (open_fd(dir.path()), open_fd(&dir.path().join("target")));
        // The kernel drops a /proc/PID directory from its cache once the process is reaped.
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let pid_dir = std::path::PathBuf::from(format!("/proc/{}", child.id()));
        // (Its `ns` directory, unlike `task`, may still be walked up from then.)
        let (dropped, below_dropped) = (open_fd(&pid_dir), open_fd(&pid_dir.join("ns")));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(dropped_here_or_above(dropped.0));
        assert!(dropped_here_or_above(below_dropped.0));
        assert!(!dropped_here_or_above(target.0));
        // Such a source is copied, but its copy is not attached.
        let bound = bind_host_path(&dropped, &target, false, Idmap::No, -1, 0, 0);
        assert_eq!(bound.err(), Some(Errno(libc::ENOENT)));
        assert_eq!(
            why_bind_failed(root.0, &dropped, &target),
            Action::MountSourceDropped
        );
        // Bound again from a fresh opening, the bind is made.
        let opens = std::cell::Cell::new(0);
        let open_source = || {
            opens.set(opens.get() + 1);
            match opens.get() {
                1 => Ok(Fd(nix::unistd::dup(dropped.0).unwrap())),
                _ => Ok(open_fd(&dir.path().join("fresh"))),
            }
        };
        let bind_once =
            |source: &Fd, target: &Fd| bind_host_path(source, target, false, Idmap::No, -1, 0, 0);
        let dest = RootPath::new(std::path::Path::new("/target")).unwrap();
        let block = IdBlock::new(0, 65536).unwrap();
        let bound =
            bind_resolving_again(root.0, block, &dest, PointKind::Dir, open_source, bind_once);
        assert_eq!(bound, Ok(FlagsOn::Yes));
        assert_eq!(opens.get(), 2);
        assert!(dir.path().join("target/inside").is_dir());
        // A mount point below a dropped directory is named as such.
        let proc_root = open_fd(std::path::Path::new("/proc"));
        let live = open_fd(&dir.path().join("fresh"));
        assert_eq!(
            why_bind_failed(proc_root.0, &live, &below_dropped),
            Action::MountOnDropped
        );
    }

    #[test]
    fn a_vetted_host_path_turned_into_a_symlink_is_not_followed() {
        let dir = std::env::temp_dir().join(format!("eci-mount-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("real")).unwrap();
        let vetted = std::ffi::CString::new(dir.join("shared").to_str().unwrap()).unwrap();
        std::fs::create_dir(dir.join("shared")).unwrap();
        assert!(open_vetted_host_path(&vetted).is_ok());
        // After vetting, a container that shares the directory swaps it for a symlink.
        std::fs::remove_dir(dir.join("shared")).unwrap();
        std::os::unix::fs::symlink(dir.join("real"), dir.join("shared")).unwrap();
        assert_eq!(
            open_vetted_host_path(&vetted).err(),
            Some(Errno(libc::ELOOP))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn remount_attributes_only_add_flags_but_the_access_time_mode() {
        let attr = attributes_of(libc::MS_RDONLY | crate::options::MS_NOSYMFOLLOW);
        assert_eq!(
            attr.attr_set,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSYMFOLLOW
        );
        assert_eq!(attr.attr_clr, 0);
        let attr = attributes_of(libc::MS_NOSUID | libc::MS_NOATIME);
        assert_eq!(
            attr.attr_set,
            libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOATIME
        );
        assert_eq!(attr.attr_clr, libc::MOUNT_ATTR__ATIME);
    }

    #[test]
    fn a_bind_source_must_be_the_directory_that_was_checked() {
        in_private_mount_namespace();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("_data");
        std::fs::create_dir(&data).unwrap();
        let open = || {
            let path = std::ffi::CString::new(data.as_os_str().as_encoded_bytes()).unwrap();
            open_vetted_host_path(&path).unwrap()
        };
        let identity_now = || dir_identity(std::fs::File::open(&data).unwrap().as_fd()).unwrap();
        let checked = identity_now();
        assert_eq!(check_source(&open(), Some(&checked)), Ok(()));
        assert_eq!(check_source(&open(), None), Ok(()));
        // The engine mounted something there since (a host path, say): not what was checked.
        let path = std::ffi::CString::new(data.as_os_str().as_encoded_bytes()).unwrap();
        sys::mount(Some(c"tmpfs"), &path, Some(c"tmpfs"), 0, None).unwrap();
        assert_eq!(
            check_source(&open(), Some(&checked)),
            Err(Errno(libc::ESTALE))
        );
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }, 0);
        // Removed and made again, as `docker volume rm` and `create` do: a new directory even
        // where the inode number comes back, for its generation is new.
        std::fs::remove_dir(&data).unwrap();
        std::fs::create_dir(&data).unwrap();
        let again = identity_now();
        assert_ne!(again.handle, checked.handle);
        assert_eq!(
            check_source(&open(), Some(&checked)),
            Err(Errno(libc::ESTALE))
        );
    }

    #[test]
    fn a_private_bind_takes_no_mount_from_its_source_once_attached() {
        sys::unshare(libc::CLONE_NEWNS).expect("needs root");
        sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cpath =
            |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let (source, target) = (dir.path().join("source"), dir.path().join("target"));
        std::fs::create_dir_all(source.join("sub")).unwrap();
        std::fs::create_dir(&target).unwrap();
        // The source a shared mount, as a host's directory under a shared root is.
        sys::mount(Some(c"tmpfs"), &cpath(&source), Some(c"tmpfs"), 0, None).unwrap();
        std::fs::create_dir(source.join("sub")).unwrap();
        sys::mount(None, &cpath(&source), None, libc::MS_SHARED, None).unwrap();
        let opened = open_vetted_host_path(&cpath(&source)).unwrap();
        let target_fd = open_vetted_host_path(&cpath(&target)).unwrap();
        let private = libc::MS_PRIVATE | libc::MS_REC;
        bind_host_path(&opened, &target_fd, true, Idmap::No, -1, 0, private).unwrap();
        sys::mount(
            Some(c"tmpfs"),
            &cpath(&source.join("sub")),
            Some(c"tmpfs"),
            0,
            None,
        )
        .unwrap();
        std::fs::write(source.join("sub/later"), "").unwrap();
        assert!(
            !target.join("sub/later").exists(),
            "the later mount stayed on the host"
        );
    }

    #[test]
    fn step_codes_round_trip() {
        assert_eq!(
            decode(code(17, Action::Remount)),
            Some((17, Action::Remount))
        );
        assert_eq!(decode(global::PIVOT), None);
    }
}
