//! The fallback for a rootfs on a filesystem that cannot be idmapped: shift its owners into the
//! container's block on disk, once per (rootfs, block).
//!
//! A marker in the runtime's state directory records which bases the tree's owners may be in.
//! Before walking, the marker lists the old bases and the new one; after, only the new one. Any
//! owner in an old base's range moves to the new base, anything else (already moved, or a foreign
//! ID) stays, so a walk cut short by a crash is simply redone. Only the rootfs's own filesystem
//! is walked, hard links are moved once, and setuid/setgid bits, which chown clears, are put back.
//! Host bind-mount sources are never shifted: only a container's own rootfs.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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

/// The marker for `rootfs` in `marker_dir`.
fn marker_path(marker_dir: &Path, rootfs: &Path) -> PathBuf {
    let name: String = rootfs
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    marker_dir.join(name)
}

fn read_bases(marker: &Path) -> Result<Vec<u32>, ShiftError> {
    match std::fs::read_to_string(marker) {
        Ok(text) => text
            .split_whitespace()
            .map(|b| {
                b.parse().map_err(|_| {
                    err("reading the marker", marker)(std::io::ErrorKind::InvalidData.into())
                })
            })
            .collect(),
        // Never shifted: the image's own IDs, 0 upwards.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![0]),
        Err(e) => Err(err("reading the marker", marker)(e)),
    }
}

fn write_bases(marker: &Path, bases: &[u32]) -> Result<(), ShiftError> {
    let text: Vec<String> = bases.iter().map(u32::to_string).collect();
    let tmp = marker.with_extension("tmp");
    std::fs::write(&tmp, text.join(" ")).map_err(err("writing the marker", &tmp))?;
    std::fs::rename(&tmp, marker).map_err(err("writing the marker", marker))
}

/// Makes `rootfs` owned by `block` on disk (see the module documentation).
///
/// ```no_run
/// use eci_idmap::shift::shift_rootfs;
/// use eci_policy::ids::IdBlock;
/// let block = IdBlock::new(1 << 28, 65536).unwrap();
/// shift_rootfs("/run/eci/idmap/shifted".as_ref(), "/srv/images/alpine".as_ref(), block)?;
/// # Ok::<(), eci_idmap::shift::ShiftError>(())
/// ```
pub fn shift_rootfs(
    marker_dir: &Path,
    rootfs: &Path,
    block: IdBlock,
) -> Result<Shifted, ShiftError> {
    std::fs::create_dir_all(marker_dir).map_err(err("creating", marker_dir))?;
    let marker = marker_path(marker_dir, rootfs);
    let target = block.host_start();
    let mut bases = read_bases(&marker)?;
    if bases == [target] {
        return Ok(Shifted::Already);
    }
    let old: Vec<u32> = bases.iter().copied().filter(|b| *b != target).collect();
    bases = old.clone();
    bases.push(target);
    write_bases(&marker, &bases)?;
    let device = std::fs::symlink_metadata(rootfs)
        .map_err(err("reading", rootfs))?
        .dev();
    let mut walk = Walk {
        old,
        block,
        device,
        seen: HashSet::new(),
        moved: 0,
    };
    walk.visit(rootfs)?;
    write_bases(&marker, &[target])?;
    Ok(Shifted::Moved(walk.moved))
}

struct Walk {
    old: Vec<u32>,
    block: IdBlock,
    device: u64,
    seen: HashSet<(u64, u64)>,
    moved: usize,
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

    fn visit(&mut self, path: &Path) -> Result<(), ShiftError> {
        let meta = std::fs::symlink_metadata(path).map_err(err("reading", path))?;
        if meta.dev() != self.device || !self.seen.insert((meta.dev(), meta.ino())) {
            return Ok(());
        }
        let (uid, gid) = (self.shifted(meta.uid()), self.shifted(meta.gid()));
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::lchown(path, uid, gid)
                .map_err(err("changing the owner of", path))?;
            self.moved += 1;
            let mode = meta.permissions().mode();
            if !meta.file_type().is_symlink() && mode & 0o6000 != 0 {
                // chown cleared setuid/setgid; the image had them.
                std::fs::set_permissions(path, PermissionsExt::from_mode(mode))
                    .map_err(err("restoring the mode of", path))?;
            }
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).map_err(err("listing", path))? {
                self.visit(&entry.map_err(err("listing", path))?.path())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
            matches!(shift_rootfs(&markers, &root, first).unwrap(), Shifted::Moved(n) if n >= 4)
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
            shift_rootfs(&markers, &root, first).unwrap(),
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
        shift_rootfs(&markers, &root, second).unwrap();
        assert_eq!(
            std::fs::metadata(root.join("bin/tool")).unwrap().uid(),
            1 << 29
        );
    }
}
