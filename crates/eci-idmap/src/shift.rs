//! The fallback for a rootfs on a filesystem that cannot be idmapped: shift its owners into the
//! container's block on disk, once per (rootfs, block).
//!
//! A marker in the runtime's state directory records which bases the tree's owners may be in.
//! Before walking, the marker lists the old bases and the new one; after, only the new one. Any
//! owner in an old base's range moves to the new base, anything else (already moved, or a foreign
//! ID) stays, so a walk cut short by a crash is simply redone. Hard links are moved once, and
//! setuid/setgid bits, which chown clears, are put back. Host bind-mount sources are never
//! shifted: only a container's own rootfs.
//!
//! The walk runs as host root over a tree that a container may write to, so it never resolves a
//! path twice: each entry is opened (O_PATH, never following a symlink) through its directory's
//! descriptor, and its owner and mode are changed through that descriptor, so a name swapped for
//! a symlink meanwhile reaches nothing outside. Only the rootfs's own mount is walked (compared
//! by mount ID, so a bind mount of the same filesystem is not), and a rootfs that a live
//! container was given (the marker names the lease it was shifted or kept for) is refused: the
//! shift would take its files from it, and it could race the walk.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use eci_policy::ids::IdBlock;

/// What a shift did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shifted {
    /// The rootfs was already owned by this block.
    Already,
    /// This many entries changed owner.
    Moved(usize),
}

/// Why a rootfs could not be shifted.
#[derive(Debug, thiserror::Error)]
#[error("shifting the owners of {} into the container's IDs: {what}: {source}", path.display())]
pub struct ShiftError {
    /// The file involved.
    pub path: PathBuf,
    /// What was being done.
    pub what: &'static str,
    /// The error.
    pub source: std::io::Error,
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ShiftError + 'a {
    move |source| ShiftError {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// The marker for `rootfs` in `marker_dir`: the path in hex, or, for a path too long for one
/// file name, a hash of it.
fn marker_path(marker_dir: &Path, rootfs: &Path) -> PathBuf {
    let bytes = rootfs.as_os_str().as_bytes();
    let name: String = if bytes.len() * 2 <= 254 {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    } else {
        // FNV-1a: fixed, unlike the standard library's hasher, so a marker is found again by
        // a runtime built with another toolchain.
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("long-{hash:016x}-{}", bytes.len())
    };
    marker_dir.join(name)
}

/// What a marker records: the bases the tree's owners may be in, and the lease the rootfs was
/// last shifted or kept for (markers written before there was one name none).
struct Marker {
    bases: Vec<u32>,
    lease: Option<u64>,
}

fn read_marker(marker: &Path) -> Result<Marker, ShiftError> {
    let invalid = || err("reading the marker", marker)(std::io::ErrorKind::InvalidData.into());
    let text = match std::fs::read_to_string(marker) {
        Ok(text) => text,
        // Never shifted: the image's own IDs, 0 upwards.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Marker {
                bases: vec![0],
                lease: None,
            })
        }
        Err(e) => return Err(err("reading the marker", marker)(e)),
    };
    let mut lines = text.lines();
    let bases = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(|b| b.parse().map_err(|_| invalid()))
        .collect::<Result<Vec<u32>, _>>()?;
    let lease = match lines.next().map(|l| l.strip_prefix("lease ")) {
        None => None,
        Some(Some(token)) => Some(token.trim().parse().map_err(|_| invalid())?),
        Some(None) => return Err(invalid()),
    };
    Ok(Marker { bases, lease })
}

fn write_marker(marker: &Path, bases: &[u32], lease: Option<u64>) -> Result<(), ShiftError> {
    let mut text = bases
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(lease) = lease {
        text.push_str(&format!("\nlease {lease}"));
    }
    let tmp = marker.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(err("writing the marker", &tmp))?;
    std::fs::rename(&tmp, marker).map_err(err("writing the marker", marker))
}

/// Makes `rootfs` owned by `block` on disk (see the module documentation), for the lease
/// `lease` (its token). `in_use` says whether the lease with a given token has a live holder:
/// a rootfs shifted or kept for a live one is refused.
///
/// ```no_run
/// use eci_idmap::shift::shift_rootfs;
/// use eci_policy::ids::IdBlock;
/// let block = IdBlock::new(1 << 28, 65536).unwrap();
/// let markers = "/run/eci/idmap/shifted".as_ref();
/// shift_rootfs(markers, "/srv/images/alpine".as_ref(), block, 7, |_token| false)?;
/// # Ok::<(), eci_idmap::shift::ShiftError>(())
/// ```
pub fn shift_rootfs(
    marker_dir: &Path,
    rootfs: &Path,
    block: IdBlock,
    lease: u64,
    in_use: impl Fn(u64) -> bool,
) -> Result<Shifted, ShiftError> {
    std::fs::create_dir_all(marker_dir).map_err(err("creating", marker_dir))?;
    // One shift at a time, from reading the marker to writing the last one: two creates on one
    // rootfs would otherwise both read it free, and each walk move only the owners it read,
    // leaving the tree split between two running containers. (Held by the descriptor: let go
    // when it closes, also if this process dies.)
    let lock_path = marker_dir.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(err("opening", &lock_path))?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| err("locking", &lock_path)(errno.into()))?;
    let marker = marker_path(marker_dir, rootfs);
    let target = block.host_start();
    let Marker { bases, lease: last } = read_marker(&marker)?;
    if bases == [target] {
        // The same block again (the lowest free one, after the last container ended): kept,
        // and now this lease's.
        if last != Some(lease) {
            write_marker(&marker, &bases, Some(lease))?;
        }
        return Ok(Shifted::Already);
    }
    if last.is_some_and(|token| token != lease && in_use(token)) {
        let busy = std::io::Error::new(
            std::io::ErrorKind::ResourceBusy,
            "a running container owns it (two containers cannot share a rootfs that has to be \
             shifted: give each its own copy)",
        );
        return Err(err("checking who owns it", rootfs)(busy));
    }
    let old: Vec<u32> = bases.iter().copied().filter(|b| *b != target).collect();
    let root = open_path(libc::AT_FDCWD, &cstring(rootfs)?, libc::O_DIRECTORY)
        .map_err(err("opening", rootfs))?;
    let mount = stat(&root).map_err(err("reading", rootfs))?.stx_mnt_id;
    let mut walk = Walk {
        old,
        block,
        mount,
        seen: HashSet::new(),
        moved: 0,
        counting: true,
        links: HashMap::new(),
    };
    // First every name of each file with more than one: a file linked from outside the tree
    // (a rootfs made with `cp -al` from the host's) is the host's too, and would become the
    // container's. Nothing is changed until none is found.
    let again = open_path(libc::AT_FDCWD, &cstring(rootfs)?, libc::O_DIRECTORY)
        .map_err(err("opening", rootfs))?;
    walk.visit(again, rootfs, 0)?;
    if let Some(outside) = walk.links.values().find(|l| l.named < l.nlink) {
        let linked = std::io::Error::other(format!(
            "it has {} links, {} of them in the rootfs: a file linked from outside it would \
             become the container's (copy the rootfs rather than link it)",
            outside.nlink, outside.named
        ));
        return Err(err("shifting", &outside.path)(linked));
    }
    walk.counting = false;
    let mut walking = walk.old.clone();
    walking.push(target);
    write_marker(&marker, &walking, Some(lease))?;
    walk.visit(root, rootfs, 0)?;
    write_marker(&marker, &[target], Some(lease))?;
    Ok(Shifted::Moved(walk.moved))
}

fn cstring(path: &Path) -> Result<std::ffi::CString, ShiftError> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| err("naming", path)(std::io::ErrorKind::InvalidInput.into()))
}

/// Deepest directory the walk goes into: it holds a descriptor for each level, and deeper
/// trees are refused rather than left to run the runtime out of descriptors.
const MAX_DEPTH: usize = 256;

struct Walk {
    old: Vec<u32>,
    block: IdBlock,
    mount: u64,
    seen: HashSet<(u64, u64)>,
    moved: usize,
    /// The first pass: count the names of files with several, change nothing.
    counting: bool,
    links: HashMap<(u64, u64), Linked>,
}

/// A file with more than one name, as the first pass found it.
struct Linked {
    /// Its link count.
    nlink: u32,
    /// How many of its names are in the tree.
    named: u32,
    /// The first of them, for messages.
    path: PathBuf,
}

impl Walk {
    /// The new owner for `id`, if it lies in one of the old bases' ranges.
    fn shifted(&self, id: u32) -> Option<u32> {
        let size = self.block.size();
        self.old
            .iter()
            .find_map(|base| id.checked_sub(*base).filter(|o| *o < size))
            .map(|offset| self.block.host_start() + offset)
    }

    /// Shifts what `fd` (an O_PATH descriptor, `path` for messages) names, and below it.
    fn visit(&mut self, fd: OwnedFd, path: &Path, depth: usize) -> Result<(), ShiftError> {
        let stx = stat(&fd).map_err(err("reading", path))?;
        let dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
        let kind = u32::from(stx.stx_mode) & libc::S_IFMT;
        if stx.stx_mnt_id != self.mount {
            return Ok(());
        }
        if self.counting {
            if kind != libc::S_IFDIR && stx.stx_nlink > 1 {
                let linked = self.links.entry((dev, stx.stx_ino)).or_insert(Linked {
                    nlink: stx.stx_nlink,
                    named: 0,
                    path: path.to_path_buf(),
                });
                linked.named += 1;
            }
        } else if !self.seen.insert((dev, stx.stx_ino)) {
            return Ok(());
        }
        let (uid, gid) = (self.shifted(stx.stx_uid), self.shifted(stx.stx_gid));
        if !self.counting && (uid.is_some() || gid.is_some()) {
            chown_fd(&fd, uid, gid).map_err(err("changing the owner of", path))?;
            self.moved += 1;
            let mode = u32::from(stx.stx_mode) & 0o7777;
            if kind != libc::S_IFLNK && mode & 0o6000 != 0 {
                // chown cleared setuid/setgid; the image had them.
                chmod_fd(&fd, mode).map_err(err("restoring the mode of", path))?;
            }
        }
        if kind != libc::S_IFDIR {
            return Ok(());
        }
        if depth >= MAX_DEPTH {
            let deep = std::io::Error::other(format!("deeper than {MAX_DEPTH} directories"));
            return Err(err("walking", path)(deep));
        }
        let dir = open_for_listing(&fd).map_err(err("listing", path))?;
        for name in list(dir).map_err(err("listing", path))? {
            let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            match open_path(fd.as_raw_fd(), &name, 0) {
                Ok(entry) => self.visit(entry, &child, depth + 1)?,
                // Removed meanwhile (the tree may be in use): nothing left to shift.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(err("opening", &child)(e)),
            }
        }
        Ok(())
    }
}

/// Opens `name` under `dir` as an O_PATH descriptor that follows no symlink: a symlink is
/// opened itself. `flags` may add O_DIRECTORY.
fn open_path(dir: RawFd, name: &CStr, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC | flags;
    openat(dir, name, flags)
}

/// The directory `fd` names, opened again for reading (no path is walked: "." of it).
fn open_for_listing(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    openat(
        fd.as_raw_fd(),
        c".",
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
    )
}

fn openat(dir: RawFd, name: &CStr, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name and plain flags.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn stat(fd: &OwnedFd) -> std::io::Result<libc::statx> {
    // SAFETY: an all-zero statx is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let mask = libc::STATX_TYPE
        | libc::STATX_MODE
        | libc::STATX_UID
        | libc::STATX_GID
        | libc::STATX_INO
        | libc::STATX_NLINK
        | libc::STATX_MNT_ID;
    let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH and a valid out pointer.
    if unsafe { libc::statx(fd.as_raw_fd(), c"".as_ptr(), flags, mask, &mut stx) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Before Linux 5.8 no mount ID comes back, and every file would read as on the rootfs's
    // mount: the walk would go down into mounts beneath it (host ones among them) and chown
    // what is there.
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this kernel gives no mount IDs (Linux 5.8), which the shift needs to stay on the rootfs's own mount",
        ));
    }
    Ok(stx)
}

/// Changes the owner of exactly what `fd` names (a symlink itself, if it is one).
fn chown_fd(fd: &OwnedFd, uid: Option<u32>, gid: Option<u32>) -> std::io::Result<()> {
    let keep = u32::MAX;
    let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH; -1 (u32::MAX) keeps an ID.
    let done = unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid.unwrap_or(keep),
            gid.unwrap_or(keep),
            flags,
        )
    };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the mode of exactly what `fd` names (never a symlink): through its /proc/self/fd link,
/// which leads to that file and no other, as an O_PATH descriptor cannot be fchmod-ed.
fn chmod_fd(fd: &OwnedFd, mode: u32) -> std::io::Result<()> {
    let link = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .expect("no NUL in a number");
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::chmod(link.as_ptr(), mode) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The names in a directory opened for reading, but "." and "..".
fn list(dir: OwnedFd) -> std::io::Result<Vec<std::ffi::CString>> {
    use std::os::fd::IntoRawFd;
    // The Dir owns the descriptor from here on and closes it.
    let dir = nix::dir::Dir::from_fd(dir.into_raw_fd()).map_err(std::io::Error::from)?;
    let mut names = Vec::new();
    for entry in dir {
        let entry = entry.map_err(std::io::Error::from)?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn a_file_linked_from_outside_the_rootfs_stops_the_shift_before_it_changes_anything() {
        // A rootfs made with `cp -al` shares its files with the host: chowned, the host's
        // copy would become the container's.
        let dir = tempfile::tempdir().unwrap();
        let (root, markers) = (dir.path().join("rootfs"), dir.path().join("markers"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/own"), b"x").unwrap();
        let hosts = dir.path().join("hosts-file");
        std::fs::write(&hosts, b"host").unwrap();
        std::fs::hard_link(&hosts, root.join("etc/linked")).unwrap();
        let block = IdBlock::new(1 << 28, 65536).unwrap();
        let err = shift_rootfs(&markers, &root, block, 1, |_| false).unwrap_err();
        assert!(err.to_string().contains("linked from outside"), "{err}");
        assert!(err.to_string().contains("etc/linked"), "{err}");
        for path in [hosts.as_path(), &root.join("etc/own")] {
            assert_eq!(
                std::fs::metadata(path).unwrap().uid(),
                0,
                "{}",
                path.display()
            );
        }
        // Both names in the tree: shifted.
        std::fs::remove_file(&hosts).unwrap();
        std::fs::hard_link(root.join("etc/linked"), root.join("etc/again")).unwrap();
        shift_rootfs(&markers, &root, block, 1, |_| false).unwrap();
        assert_eq!(
            std::fs::metadata(root.join("etc/again")).unwrap().uid(),
            1 << 28
        );
    }

    #[test]
    fn shifts_once_keeps_setuid_and_moves_between_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (root, markers) = (dir.path().join("rootfs"), dir.path().join("markers"));
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/tool"), b"x").unwrap();
        std::os::unix::fs::lchown(root.join("bin/tool"), Some(0), Some(5)).unwrap();
        std::fs::set_permissions(root.join("bin/tool"), PermissionsExt::from_mode(0o4755)).unwrap();
        std::fs::hard_link(root.join("bin/tool"), root.join("bin/link")).unwrap();
        std::os::unix::fs::symlink("tool", root.join("bin/sym")).unwrap();
        std::fs::write(root.join("foreign"), b"").unwrap();
        std::os::unix::fs::lchown(root.join("foreign"), Some(70000), None).unwrap();

        let first = IdBlock::new(1 << 28, 65536).unwrap();
        assert!(
            matches!(shift_rootfs(&markers, &root, first, 1, |_| false).unwrap(), Shifted::Moved(n) if n >= 4)
        );
        let tool = std::fs::metadata(root.join("bin/tool")).unwrap();
        assert_eq!((tool.uid(), tool.gid()), (1 << 28, (1 << 28) + 5));
        assert_eq!(
            tool.permissions().mode() & 0o7777,
            0o4755,
            "setuid survives"
        );
        assert_eq!(
            std::fs::symlink_metadata(root.join("bin/sym"))
                .unwrap()
                .uid(),
            1 << 28
        );
        assert_eq!(
            std::fs::metadata(root.join("foreign")).unwrap().uid(),
            70000,
            "foreign IDs stay"
        );
        let ctime = std::fs::metadata(root.join("bin/tool"))
            .unwrap()
            .ctime_nsec();
        assert_eq!(
            shift_rootfs(&markers, &root, first, 1, |_| false).unwrap(),
            Shifted::Already
        );
        assert_eq!(
            std::fs::metadata(root.join("bin/tool"))
                .unwrap()
                .ctime_nsec(),
            ctime,
            "no second chown"
        );

        let second = IdBlock::new(1 << 29, 65536).unwrap();
        shift_rootfs(&markers, &root, second, 2, |_| false).unwrap();
        assert_eq!(
            std::fs::metadata(root.join("bin/tool")).unwrap().uid(),
            1 << 29
        );
    }

    #[test]
    fn never_leaves_the_rootfs_mount_nor_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let (root, markers) = (dir.path().join("rootfs"), dir.path().join("markers"));
        let outside = dir.path().join("host");
        std::fs::create_dir_all(root.join("mnt")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"").unwrap();
        std::os::unix::fs::lchown(outside.join("secret"), Some(7), Some(7)).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("escape")).unwrap();
        // A bind mount of the same filesystem: the same device, another mount.
        let bound = Bind::mount(&outside, &root.join("mnt"));
        let block = IdBlock::new(1 << 28, 65536).unwrap();
        shift_rootfs(&markers, &root, block, 1, |_| false).unwrap();
        drop(bound);
        let secret = std::fs::metadata(outside.join("secret")).unwrap();
        assert_eq!(
            (secret.uid(), secret.gid()),
            (7, 7),
            "the host's file kept its owner"
        );
        let link = std::fs::symlink_metadata(root.join("escape")).unwrap();
        assert_eq!(link.uid(), 1 << 28, "the symlink itself moved");
    }

    #[test]
    fn a_rootfs_a_live_container_owns_is_not_shifted_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let (root, markers) = (dir.path().join("rootfs"), dir.path().join("markers"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("file"), b"").unwrap();
        let first = IdBlock::new(1 << 28, 65536).unwrap();
        shift_rootfs(&markers, &root, first, 1, |_| false).unwrap();
        let second = IdBlock::new(1 << 29, 65536).unwrap();
        let busy = shift_rootfs(&markers, &root, second, 2, |token| token == 1).unwrap_err();
        assert_eq!(
            busy.source.kind(),
            std::io::ErrorKind::ResourceBusy,
            "{busy}"
        );
        assert_eq!(std::fs::metadata(root.join("file")).unwrap().uid(), 1 << 28);
        // Once that container is gone, the next one gets it.
        shift_rootfs(&markers, &root, second, 2, |_| false).unwrap();
        assert_eq!(std::fs::metadata(root.join("file")).unwrap().uid(), 1 << 29);
    }

    #[test]
    fn only_the_lease_a_rootfs_was_shifted_for_holds_it() {
        // Blocks are reused: the block a rootfs was shifted into may belong to another
        // container on another rootfs by now, and that one does not hold this rootfs.
        let dir = tempfile::tempdir().unwrap();
        let (root, markers) = (dir.path().join("rootfs"), dir.path().join("markers"));
        std::fs::create_dir_all(&root).unwrap();
        let first = IdBlock::new(1 << 28, 65536).unwrap();
        shift_rootfs(&markers, &root, first, 1, |_| false).unwrap();
        // Lease 1 ended; lease 3 holds the same block for another rootfs.
        let second = IdBlock::new(1 << 29, 65536).unwrap();
        shift_rootfs(&markers, &root, second, 2, |token| token == 3).unwrap();
        assert_eq!(std::fs::metadata(&root).unwrap().uid(), 1 << 29);
        // Kept for the next lease of the same block: that lease holds it from then on.
        assert_eq!(
            shift_rootfs(&markers, &root, second, 4, |_| false).unwrap(),
            Shifted::Already
        );
        let busy = shift_rootfs(&markers, &root, first, 5, |token| token == 4).unwrap_err();
        assert_eq!(busy.source.kind(), std::io::ErrorKind::ResourceBusy);
    }

    #[test]
    fn a_rootfs_path_too_long_for_a_file_name_gets_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut root = dir.path().to_path_buf();
        for _ in 0..8 {
            root.push("a-rather-long-directory-name-for-a-rootfs");
        }
        std::fs::create_dir_all(&root).unwrap();
        let markers = dir.path().join("markers");
        let block = IdBlock::new(1 << 28, 65536).unwrap();
        shift_rootfs(&markers, &root, block, 1, |_| false).unwrap();
        assert_eq!(
            shift_rootfs(&markers, &root, block, 1, |_| false).unwrap(),
            Shifted::Already
        );
    }

    /// A bind mount, detached when dropped.
    struct Bind(std::ffi::CString);

    impl Bind {
        fn mount(source: &Path, target: &Path) -> Bind {
            let (source, target) = (cstring(source).unwrap(), cstring(target).unwrap());
            // SAFETY: NUL-terminated paths.
            let done = unsafe {
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            assert_eq!(done, 0, "{}", std::io::Error::last_os_error());
            Bind(target)
        }
    }

    impl Drop for Bind {
        fn drop(&mut self) {
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
