//! The cgroup filesystem a spec asks for (`type: cgroup` at /sys/fs/cgroup, as Docker and `runc
//! spec` write it), given the only way eci can give it safely: the container's own cgroup
//! directories, bound in. Mounting cgroupfs itself would show the host's whole tree.
//!
//! On cgroup v1 (and the hybrid layout) that is a tmpfs with one bind per controller hierarchy
//! eci manages, named like the host's mount (`cpu`, `memory`, ...); named hierarchies
//! (`name=systemd`) and a cgroup2 mount beside v1 controllers are not shown. On a pure cgroup2
//! host it is the container's directory, bound at the target.
//!
//! A mount the spec asks for read-only (Docker's for a container without `--privileged`) is
//! bound read-only, and so is every mount unless the settings say `eci.delegateCgroups`.
//! Otherwise one asked for read-write is **delegated**, as systemd delegates a cgroup:
//! the directory and the files that move processes (`cgroup.procs`, `tasks`; on cgroup2 also
//! `cgroup.threads` and `cgroup.subtree_control`) are given to the container's root, so that an
//! inner runtime (Docker in the container) can make child cgroups and move its processes into
//! them. The container's own limits stay root's on the host, which its root is not: it cannot
//! raise them, and the kernel holds every child within them. The v1 freezer is left out: a
//! child cgroup the container froze would keep its processes from dying (`docker pause`
//! inside does not work).

use std::path::{Path, PathBuf};

use eci_mount::virt::{mounted_hierarchies, Hierarchy};
use eci_policy::harden::{DELEGATED_DEPTH, DELEGATED_DESCENDANTS};
use oci_spec::runtime::{Mount, Spec};

use crate::error::{Error, Result};

/// v1 controllers libcgroups creates (and removes) a directory for.
pub(crate) const MANAGED: [&str; 12] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "hugetlb",
    "memory",
    "pids",
    "perf_event",
    "blkio",
    "net_prio",
    "net_cls",
    "freezer",
];

/// A v1 hierarchy with a controller libcgroups manages.
pub(crate) fn managed(h: &Hierarchy) -> bool {
    !h.unified
        && h.controllers.iter().any(|c| MANAGED.contains(&c.as_str()))
        && !h.controllers.iter().any(|c| c.starts_with("name="))
}

/// Directories created for the binds; removed when dropped unless [`CreatedDirs::keep`] says
/// the cgroup manager has taken them over.
#[derive(Debug, Default)]
pub(crate) struct CreatedDirs(Vec<PathBuf>);

impl CreatedDirs {
    /// The cgroup manager owns them from now on (and removes them with the cgroup).
    pub(crate) fn keep(&mut self) {
        self.0.clear();
    }

    /// Creates `dir` and whatever of its parents is missing, remembering what it created;
    /// whether `dir` itself is new.
    pub(crate) fn create(&mut self, dir: &Path) -> std::io::Result<bool> {
        crate::cgroup::create_dirs(dir, &mut self.0)
    }

    /// What it created, parents first.
    pub(crate) fn paths(&self) -> &[PathBuf] {
        &self.0
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The container's root on the host, to whom a read-write cgroup mount is delegated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Replaces every cgroup or cgroup2 mount of `spec` by binds of the container's cgroup at
/// `cgroup_path`, creating its directories; true if one was delegated to `owner` (only where
/// `delegate`, the setting, allows). First fails if `cgroup_path` lies in a cgroup delegated
/// to another, or below one holding processes of its own
/// ([`crate::cgroup::check_cgroup_parents`]), from the one reading of the mount table both
/// need.
pub(crate) fn expand(
    spec: &mut Spec,
    cgroup_path: &Path,
    owner: Owner,
    delegate: bool,
) -> Result<(CreatedDirs, bool)> {
    let hierarchies = mounted_hierarchies().map_err(Error::io("reading the cgroup mounts"))?;
    crate::cgroup::check_cgroup_parents(cgroup_path, &hierarchies)?;
    let mut created = CreatedDirs::default();
    let mut delegated = false;
    let Some(mounts) = spec.mounts().clone() else {
        return Ok((created, delegated));
    };
    let is_cgroup = |m: &Mount| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2"));
    if !mounts.iter().any(is_cgroup) {
        return Ok((created, delegated));
    }
    let relative = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    let v1: Vec<&Hierarchy> = hierarchies.iter().filter(|h| managed(h)).collect();
    let v2 = hierarchies.iter().find(|h| h.unified);
    let mut expanded = Vec::with_capacity(mounts.len() + v1.len());
    for mount in mounts {
        if !is_cgroup(&mount) {
            expanded.push(mount);
            continue;
        }
        let target = mount.destination().clone();
        let read_only = mount.options().iter().flatten().any(|o| o == "ro");
        let delegate = (delegate && !read_only).then_some(owner);
        delegated |= delegate.is_some();
        if v1.is_empty() {
            let Some(v2) = v2 else {
                return Err(Error::Unsupported(
                    "a cgroup mount on a host without cgroups",
                ));
            };
            let dir = v2.mount.join(relative);
            expanded.push(own_dir(&dir, &target, &mut created, delegate, true)?);
            continue;
        }
        expanded.push(tmpfs(&target));
        // A hierarchy mounted twice is one cgroup, given away once.
        let mut seen: Vec<&[String]> = Vec::new();
        for h in &v1 {
            if seen.contains(&h.controllers.as_slice()) {
                continue;
            }
            seen.push(&h.controllers);
            // A v1 freezer cgroup of the container's own, frozen, would keep its processes
            // from dying of SIGKILL, and its PID namespace's init from ever being reaped: a
            // delegated container gets no freezer hierarchy (runc and Docker go on without).
            if delegate.is_some() && h.controllers.iter().any(|c| c == "freezer") {
                continue;
            }
            let name = h.mount.file_name().map(PathBuf::from).unwrap_or_default();
            let dir = h.mount.join(relative);
            expanded.push(own_dir(
                &dir,
                &target.join(name),
                &mut created,
                delegate,
                false,
            )?);
        }
    }
    spec.set_mounts(Some(expanded));
    Ok((created, delegated))
}

/// A bind of the container's directory in one hierarchy, created if missing: read-only, or
/// read-write and delegated to `delegate`.
fn own_dir(
    dir: &Path,
    target: &Path,
    created: &mut CreatedDirs,
    delegate: Option<Owner>,
    unified: bool,
) -> Result<Mount> {
    let new = created
        .create(dir)
        .map_err(Error::io(format!("creating {}", dir.display())))?;
    if let Some(owner) = delegate {
        // Only a cgroup made for this container is given away: a path the spec names may be
        // a host service's cgroup.
        if !new {
            return Err(Error::Cgroup {
                path: dir.to_path_buf(),
                reason: "exists already; a cgroup is delegated only if made for the container"
                    .into(),
            });
        }
        give(dir, owner, unified).map_err(Error::io(format!("delegating {}", dir.display())))?;
    }
    let mut mount = Mount::default();
    mount.set_destination(target.to_path_buf());
    mount.set_typ(Some("bind".into()));
    mount.set_source(Some(dir.to_path_buf()));
    let access = if delegate.is_some() { "rw" } else { "ro" };
    let options = ["bind", access, "nosuid", "nodev", "noexec"];
    mount.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    Ok(mount)
}

/// Gives `dir` and the files that make child cgroups' processes move to `owner` (the files
/// cgroupfs has: a v1 hierarchy has `tasks`, cgroup2 `cgroup.threads` and
/// `cgroup.subtree_control`). Never follows a link: these are cgroupfs's own entries.
fn give(dir: &Path, owner: Owner, unified: bool) -> std::io::Result<()> {
    if unified {
        cap_descendants(dir)?;
    }
    let files: &[&str] = if unified {
        &["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"]
    } else {
        &["cgroup.procs", "tasks"]
    };
    let chown = |path: &Path| std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid));
    chown(dir)?;
    for file in files {
        chown(&dir.join(file))?;
    }
    Ok(())
}

/// Caps the cgroups that can be made below `dir` (cgroup v2) at [`DELEGATED_DESCENDANTS`] and
/// [`DELEGATED_DEPTH`]. The files stay host root's, so
/// the container cannot raise the caps; a child's own caps can only narrow them. cgroup v1 has
/// no such limit.
fn cap_descendants(dir: &Path) -> std::io::Result<()> {
    std::fs::write(
        dir.join("cgroup.max.descendants"),
        DELEGATED_DESCENDANTS.to_string(),
    )?;
    std::fs::write(dir.join("cgroup.max.depth"), DELEGATED_DEPTH.to_string())
}

/// Removes the cgroups a delegated container made below its own (`cgroup_path`), deepest
/// first, in every hierarchy: the container's own directory can go only once they have.
/// What is gone already is no error; a cgroup whose last process is still exiting is tried
/// again for a while.
pub(crate) fn remove_descendants(cgroup_path: &Path) -> std::io::Result<()> {
    let hierarchies = mounted_hierarchies()?;
    let relative = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    let managed_or_unified = hierarchies.iter().filter(|h| managed(h) || h.unified);
    for h in managed_or_unified {
        eci_mount::virt::cgroup_tree::remove_below(&h.mount.join(relative))?;
    }
    Ok(())
}

fn tmpfs(target: &Path) -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(target.to_path_buf());
    mount.set_typ(Some("tmpfs".into()));
    mount.set_source(Some("cgroup".into()));
    let options = ["nosuid", "nodev", "noexec", "mode=755"];
    mount.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    mount
}
