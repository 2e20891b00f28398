//! Whether host users other than root can reach a directory on this host: the syscall half of
//! [`eci_policy::reach`], which says why it matters for a writable idmapped rootfs.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use eci_policy::reach::Ancestor;

/// Whether some host user other than root may reach `dir` by its canonical path, now or by
/// moving a directory on it ([`eci_policy::reach::reachable_by_others`]). Another path to the
/// same files (a bind mount of them elsewhere) is not looked for.
///
/// ```no_run
/// let exposed = eci_idmap::reach::reachable_by_others("/srv/bundles/web/rootfs".as_ref())?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn reachable_by_others(dir: &Path) -> std::io::Result<bool> {
    resolved_reachable_by_others(&std::fs::canonicalize(dir)?)
}

/// [`reachable_by_others`] for a path resolved earlier (absolute, without symlinks, `.` or
/// `..`: a container's rootfs as its create resolved it), read as it is now and never
/// followed. A component that is a symlink now was swapped in since, by whoever could: the
/// path counts as reachable. (Resolving it again, as [`reachable_by_others`] does, would judge
/// where the symlink points, while whoever opens the path later may find the old directory
/// back: checked closed, mounted open.)
///
/// ```no_run
/// let exposed = eci_idmap::reach::resolved_reachable_by_others("/srv/bundles/web/rootfs".as_ref())?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn resolved_reachable_by_others(dir: &Path) -> std::io::Result<bool> {
    for path in dir.ancestors() {
        if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
            return Ok(true);
        }
    }
    let ancestors = dir.ancestors().skip(1).map(ancestor);
    Ok(eci_policy::reach::reachable_by_others(
        ancestors.collect::<std::io::Result<Vec<_>>>()?,
    ))
}

/// The first directory above `dir` in which a user other than root and `trusted` may rename or
/// replace what leads to `dir` ([`eci_policy::reach::first_movable`]): whoever may do that can
/// swap `dir` for a directory of their own after it was checked. `dir` must be a resolved path
/// (no symlink, `.` or `..`): each directory on it is read as it is now, never followed, so a
/// component swapped for a symlink shows as one, in a directory that let someone swap it.
///
/// ```no_run
/// if let Some(open) = eci_idmap::reach::movable_by_others("/run/eci".as_ref(), 0)? {
///     eprintln!("{} lets other users move /run/eci", open.display());
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn movable_by_others(dir: &Path, trusted: u32) -> std::io::Result<Option<PathBuf>> {
    let chain = dir
        .ancestors()
        .map(ancestor)
        .collect::<std::io::Result<Vec<_>>>()?;
    let found = eci_policy::reach::first_movable(&chain, trusted);
    Ok(found.and_then(|i| dir.ancestors().nth(i).map(Path::to_path_buf)))
}

/// Where `path` (absolute) really is, if only root can have made it lead there: each symlink
/// on the way (in it, and in the links' targets) is root's, in a directory where no other user
/// may rename or replace it, and no user other than root may move a directory of where it
/// leads ([`movable_by_others`]). `None` otherwise: a path a user can point elsewhere names
/// nothing an administrator's rule should follow (a restriction moved by its owner onto
/// `/home` would take a share's place).
///
/// ```no_run
/// let real = eci_idmap::reach::resolve_as_root_made("/var/run/docker.sock".as_ref())?;
/// assert_eq!(real.as_deref(), Some(std::path::Path::new("/run/docker.sock")));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn resolve_as_root_made(path: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut real = PathBuf::from("/");
    let mut links_left = 40;
    if !follow_root_made(&mut real, path, &mut links_left)? {
        return Ok(None);
    }
    Ok(movable_by_others(&real, 0)?.is_none().then_some(real))
}

/// Walks `path` from `real`, following only symlinks root made where only root may change them;
/// false at the first other one.
fn follow_root_made(
    real: &mut PathBuf,
    path: &Path,
    links_left: &mut u32,
) -> std::io::Result<bool> {
    use std::path::Component;
    for component in path.components() {
        match component {
            Component::RootDir => *real = PathBuf::from("/"),
            Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                real.pop();
            }
            Component::Normal(name) => {
                let next = real.join(name);
                if !std::fs::symlink_metadata(&next)?.file_type().is_symlink() {
                    *real = next;
                    continue;
                }
                if *links_left == 0 {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                }
                *links_left -= 1;
                let (dir, link) = (ancestor(real)?, ancestor(&next)?);
                if link.uid != 0 || dir.lets_others_move(&link) {
                    return Ok(false);
                }
                // A relative target goes on from the link's directory, where `real` stands.
                if !follow_root_made(real, &std::fs::read_link(&next)?, links_left)? {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

fn ancestor(path: &Path) -> std::io::Result<Ancestor> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok(Ancestor {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode(),
        has_acl: has_access_acl(path)?,
    })
}

/// A POSIX access ACL, or an NFSv4 one (which NFS shows for every file; its entries are not
/// read, so such a directory counts as open).
fn has_access_acl(path: &Path) -> std::io::Result<bool> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    for name in [c"system.posix_acl_access", c"system.nfs4_acl"] {
        // SAFETY: both names are NUL-terminated; a NULL buffer of size 0 only asks for the size.
        let size =
            unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        if size > 0 {
            return Ok(true);
        }
        if size < 0 {
            let err = std::io::Error::last_os_error();
            if !matches!(err.raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP)) {
                return Err(err);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn only_links_root_made_where_only_root_may_change_them_are_followed() {
        let top = tempfile::tempdir_in("/tmp").unwrap();
        chmod(top.path(), 0o755);
        let real = top.path().join("disk/containerd");
        std::fs::create_dir_all(&real).unwrap();
        let named = top.path().join("containerd");
        std::os::unix::fs::symlink("disk/../disk/containerd", &named).unwrap();
        assert_eq!(resolve_as_root_made(&named).unwrap(), Some(real.clone()));
        // A link of a user's, or one in a directory they may write: not followed.
        let lchown = |path: &Path, uid: u32| {
            let path = CString::new(path.as_os_str().as_bytes()).unwrap();
            // SAFETY: a NUL-terminated path.
            assert_eq!(unsafe { libc::lchown(path.as_ptr(), uid, uid) }, 0);
        };
        lchown(&named, 1000);
        assert_eq!(resolve_as_root_made(&named).unwrap(), None);
        lchown(&named, 0);
        chmod(top.path(), 0o777);
        assert_eq!(resolve_as_root_made(&named).unwrap(), None);
        // Where it leads, a directory a user may move: not followed either.
        chmod(top.path(), 0o755);
        std::os::unix::fs::chown(top.path().join("disk"), Some(1000), None).unwrap();
        assert_eq!(resolve_as_root_made(&named).unwrap(), None);
    }

    #[test]
    fn a_private_directory_above_closes_everything_below() {
        let top = tempfile::tempdir_in("/tmp").unwrap();
        let rootfs = top.path().join("bundle/rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        chmod(&top.path().join("bundle"), 0o755);
        chmod(top.path(), 0o700);
        assert!(!reachable_by_others(&rootfs).unwrap());
        // The rootfs's own mode does not count: the container may change it.
        chmod(&rootfs, 0o700);
        chmod(top.path(), 0o755);
        assert!(reachable_by_others(&rootfs).unwrap());
        // Root's group only: still closed; another group: open.
        chmod(top.path(), 0o710);
        assert!(!reachable_by_others(&rootfs).unwrap());
        std::os::unix::fs::chown(top.path(), None, Some(100)).unwrap();
        assert!(reachable_by_others(&rootfs).unwrap());
        // A user's own directory, however closed.
        std::os::unix::fs::chown(top.path(), Some(1000), Some(0)).unwrap();
        chmod(top.path(), 0o700);
        assert!(reachable_by_others(&rootfs).unwrap());
        // A private directory inside it: its owner could swap it for one of their own.
        let bundle = top.path().join("bundle");
        chmod(&bundle, 0o700);
        assert!(reachable_by_others(&rootfs).unwrap());
        // Root's again: only root may move what is in it.
        std::os::unix::fs::chown(top.path(), Some(0), Some(0)).unwrap();
        assert!(!reachable_by_others(&rootfs).unwrap());
    }

    #[test]
    fn a_component_swapped_for_a_symlink_since_it_was_resolved_counts_as_reachable() {
        let top = tempfile::tempdir_in("/tmp").unwrap();
        chmod(top.path(), 0o700);
        for dir in ["a/rootfs", "b/rootfs"] {
            std::fs::create_dir_all(top.path().join(dir)).unwrap();
        }
        let resolved = top.path().join("a/rootfs");
        assert!(!resolved_reachable_by_others(&resolved).unwrap());
        // `a` swapped for a symlink to a closed directory: resolved again, the path would be
        // judged where it points; read as it was resolved, it counts as reachable.
        std::fs::rename(top.path().join("a"), top.path().join("was-a")).unwrap();
        std::os::unix::fs::symlink(top.path().join("b"), top.path().join("a")).unwrap();
        assert!(!reachable_by_others(&resolved).unwrap());
        assert!(resolved_reachable_by_others(&resolved).unwrap());
        // The rootfs itself a symlink: the same.
        std::fs::remove_file(top.path().join("a")).unwrap();
        std::fs::rename(top.path().join("was-a"), top.path().join("a")).unwrap();
        std::fs::rename(&resolved, top.path().join("a/was-rootfs")).unwrap();
        std::os::unix::fs::symlink(top.path().join("b/rootfs"), &resolved).unwrap();
        assert!(resolved_reachable_by_others(&resolved).unwrap());
    }

    #[test]
    fn an_acl_counts_as_open() {
        let top = tempfile::tempdir_in("/tmp").unwrap();
        let rootfs = top.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        chmod(top.path(), 0o700);
        assert!(!reachable_by_others(&rootfs).unwrap());
        // An access ACL naming uid 1000 with r-x (the POSIX ACL xattr format, version 2).
        let entry = |tag: u16, perm: u16, id: u32| {
            let mut e = tag.to_le_bytes().to_vec();
            e.extend(perm.to_le_bytes());
            e.extend(id.to_le_bytes());
            e
        };
        let mut acl = 2u32.to_le_bytes().to_vec();
        acl.extend(entry(0x01, 7, u32::MAX)); // owner rwx
        acl.extend(entry(0x02, 5, 1000)); // user 1000 r-x
        acl.extend(entry(0x04, 0, u32::MAX)); // group ---
        acl.extend(entry(0x10, 5, u32::MAX)); // mask r-x
        acl.extend(entry(0x20, 0, u32::MAX)); // other ---
        let path = CString::new(top.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated names and a buffer of the given length.
        let set = unsafe {
            libc::setxattr(
                path.as_ptr(),
                c"system.posix_acl_access".as_ptr(),
                acl.as_ptr().cast(),
                acl.len(),
                0,
            )
        };
        assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
        assert!(reachable_by_others(&rootfs).unwrap());
    }
}
