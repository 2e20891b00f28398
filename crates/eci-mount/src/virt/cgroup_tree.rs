//! Walks of a cgroup tree (a container's, with what a delegated container made below it),
//! one directory descriptor at a time: listing its processes or threads, and removing it.
//! Nothing joins paths, so a tree deeper than PATH_MAX is walked all the same.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;

/// Removes every cgroup below `dir`, deepest first. It walks down and back up through `..`
/// holding one descriptor at a time, by names relative to it: a chain the container made
/// deeper than PATH_MAX, or than the descriptors a process may hold, is removed all the same.
/// A `dir` that does not exist has nothing below it; a cgroup whose last process is still
/// exiting is tried again for a while.
///
/// ```no_run
/// // The container is gone; what it made below its cgroup goes before the cgroup itself.
/// let dir = std::path::Path::new("/sys/fs/cgroup/pids/eci/web");
/// eci_mount::virt::cgroup_tree::remove_below(dir)?;
/// std::fs::remove_dir(dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn remove_below(dir: &Path) -> std::io::Result<()> {
    let mut here = match open_dir(None, dir) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // The names walked down through, to remove each from its parent on the way back up.
    let mut names: Vec<CString> = Vec::new();
    loop {
        if let Some(child) = first_child(&here)? {
            match open_dir(Some(&here), child.as_c_str()) {
                Ok(fd) => {
                    here = fd;
                    names.push(child);
                }
                // Gone meanwhile: look again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        let Some(name) = names.pop() else {
            return Ok(());
        };
        let parent = open_dir(Some(&here), c"..")?;
        drop(std::mem::replace(&mut here, parent));
        remove_cgroup_at(&here, &name)?;
    }
}

/// Opens the directory `name` (in `dir`, or from the working directory), never through a
/// symlink.
fn open_dir<P: nix::NixPath + ?Sized>(dir: Option<&OwnedFd>, name: &P) -> std::io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(
        dir.map(AsRawFd::as_raw_fd),
        name,
        flags,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: openat returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The name of a directory (a child cgroup) in `dir`, if it has one.
fn first_child(dir: &OwnedFd) -> std::io::Result<Option<CString>> {
    Ok(children(dir, 1)?.pop())
}

/// The names of the directories (child cgroups) in `dir`, the first `most` of them.
fn children(dir: &OwnedFd, most: usize) -> std::io::Result<Vec<CString>> {
    if most == 0 {
        return Ok(Vec::new());
    }
    // Read through a descriptor of its own: the directory stream consumes it.
    let listing = open_dir(Some(dir), c".")?;
    let mut entries = nix::dir::Dir::from_fd(listing.into_raw_fd())?;
    let mut names = Vec::new();
    for entry in entries.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        if entry.file_type() == Some(nix::dir::Type::Directory) {
            names.push(name.to_owned());
            if names.len() == most {
                break;
            }
        }
    }
    Ok(names)
}

/// The IDs in `list` (`cgroup.procs`, or the thread lists `tasks` and `cgroup.threads`) of
/// the cgroup at `dir` and of every cgroup below it, as the host's PID namespace numbers them.
/// It walks as [`remove_below`] does, one descriptor at a time through `..`: a tree a
/// delegated container made deeper than PATH_MAX is listed all the same, where a listing
/// that joins paths fails (ENAMETOOLONG), and `kill --all` would miss what runs there.
/// (cgroupfs renames a directory only within its parent, so `..` leads back the way the walk
/// came.) A cgroup removed meanwhile lists nothing, and so does a threaded cgroup2 child's
/// `cgroup.procs`, which the kernel will not read: its threaded domain, above, lists those.
/// On cgroup v1 a process whose threads are in several cgroups is listed by each.
///
/// ```no_run
/// use eci_mount::virt::cgroup_tree::ids_in_tree;
/// let pids = ids_in_tree(std::path::Path::new("/sys/fs/cgroup/pids/eci/web"), c"cgroup.procs")?;
/// println!("{} processes", pids.len());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn ids_in_tree(dir: &Path, list: &CStr) -> std::io::Result<Vec<i32>> {
    ids_in_first_cgroups(dir, list, usize::MAX)
}

/// [`ids_in_tree`] from `dir` and the first cgroups found below it, `most` cgroups in all at
/// most: for figures that may fall short, where a tree a delegated container made without end
/// (cgroup v1 caps none) must not cost a walk without end. Never for signalling a container's
/// processes.
///
/// ```no_run
/// use eci_mount::virt::cgroup_tree::ids_in_first_cgroups;
/// let dir = std::path::Path::new("/sys/fs/cgroup/cpuacct/eci/web");
/// let some = ids_in_first_cgroups(dir, c"tasks", 1025)?;
/// println!("at least {} threads", some.len());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn ids_in_first_cgroups(dir: &Path, list: &CStr, most: usize) -> std::io::Result<Vec<i32>> {
    if most == 0 {
        return Ok(Vec::new());
    }
    let mut here = open_dir(None, dir)?;
    let mut ids = ids_at(&here, list)?;
    let mut walked = 1;
    // Per level walked down: the child cgroups of that level not listed yet (no more than
    // may still be walked: a directory of a million is not read whole).
    let mut unvisited = vec![children(&here, most - walked)?];
    while let Some(level) = unvisited.last_mut() {
        let Some(child) = level.pop() else {
            unvisited.pop();
            if !unvisited.is_empty() {
                here = open_dir(Some(&here), c"..")?;
            }
            continue;
        };
        if walked == most {
            break;
        }
        match open_dir(Some(&here), child.as_c_str()) {
            Ok(fd) => here = fd,
            // Removed meanwhile, with nothing in it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        walked += 1;
        ids.extend(ids_at(&here, list)?);
        unvisited.push(children(&here, most - walked)?);
    }
    Ok(ids)
}

/// The IDs in `list` of the cgroup `dir` itself; none if it was removed since it was opened,
/// or if the kernel will not read the list there (EOPNOTSUPP: see [`ids_in_tree`]).
fn ids_at(dir: &OwnedFd, list: &CStr) -> std::io::Result<Vec<i32>> {
    use nix::errno::Errno;
    let gone = |e: &std::io::Error| {
        let errno = e.raw_os_error().map(Errno::from_raw);
        matches!(
            errno,
            Some(Errno::ENOENT | Errno::ENODEV | Errno::EOPNOTSUPP)
        )
    };
    match read_ids_at(dir, list) {
        Err(e) if gone(&e) => Ok(Vec::new()),
        listed => listed,
    }
}

fn read_ids_at(dir: &OwnedFd, list: &CStr) -> std::io::Result<Vec<i32>> {
    use nix::fcntl::OFlag;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let opened = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        list,
        flags,
        nix::sys::stat::Mode::empty(),
    );
    let fd = opened?;
    // SAFETY: openat returned a new descriptor that we now own.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let text = std::io::read_to_string(file)?;
    text.lines()
        .map(|line| {
            line.parse().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} lists {line:?}, not an ID", list.to_string_lossy()),
                )
            })
        })
        .collect()
}

/// Removes the cgroup `name` in `dir`, waiting a while for a last process still exiting.
fn remove_cgroup_at(dir: &OwnedFd, name: &CStr) -> std::io::Result<()> {
    use nix::errno::Errno;
    let mut tries = 0;
    loop {
        let removed = nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::RemoveDir,
        );
        match removed {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) if tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree shaped like a cgroup hierarchy: a directory per cgroup, each listing one ID.
    fn tree(cgroups: &[&str]) -> tempfile::TempDir {
        let top = tempfile::tempdir().unwrap();
        for (id, cgroup) in cgroups.iter().enumerate() {
            let dir = top.path().join(cgroup);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cgroup.procs"), format!("{}\n", id + 1)).unwrap();
        }
        top
    }

    #[test]
    fn a_capped_listing_walks_no_more_cgroups_than_it_may() {
        let top = tree(&["", "a", "b", "a/c", "a/c/d"]);
        let listed = |most| {
            let mut ids = ids_in_first_cgroups(top.path(), c"cgroup.procs", most).unwrap();
            ids.sort_unstable();
            ids
        };
        assert_eq!(listed(usize::MAX), [1, 2, 3, 4, 5]);
        assert_eq!(ids_in_tree(top.path(), c"cgroup.procs").unwrap().len(), 5);
        assert_eq!(listed(5), [1, 2, 3, 4, 5]);
        for most in 0..5 {
            let ids = listed(most);
            assert_eq!(ids.len(), most, "{ids:?}");
            // The container's own cgroup always first.
            assert!(most == 0 || ids[0] == 1, "{ids:?}");
        }
    }
}
