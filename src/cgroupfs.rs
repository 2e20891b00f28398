//! The cgroup filesystem a spec asks for (`type: cgroup` at /sys/fs/cgroup, as Docker and `runc
//! spec` write it), given the only way eci can give it safely: the container's own cgroup
//! directories, bound read-only. Mounting cgroupfs itself would show the host's whole tree.
//!
//! On cgroup v1 (and the hybrid layout) that is a tmpfs with one read-only bind per controller
//! hierarchy eci manages, named like the host's mount (`cpu`, `memory`, ...); named hierarchies
//! (`name=systemd`) and a cgroup2 mount beside v1 controllers are not shown. On a pure cgroup2
//! host it is the container's directory, bound read-only at the target.

use std::path::{Path, PathBuf};

use eci_mount::virt::{mounted_hierarchies, Hierarchy};
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

    /// Creates `dir` and whatever of its parents is missing, remembering what it created.
    pub(crate) fn create(&mut self, dir: &Path) -> std::io::Result<()> {
        crate::cgroup::create_dirs(dir, &mut self.0).map(drop)
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

/// Replaces every cgroup or cgroup2 mount of `spec` by binds of the container's cgroup at
/// `cgroup_path`, creating its directories.
pub(crate) fn expand(spec: &mut Spec, cgroup_path: &Path) -> Result<CreatedDirs> {
    let mut created = CreatedDirs::default();
    let Some(mounts) = spec.mounts().clone() else {
        return Ok(created);
    };
    let is_cgroup = |m: &Mount| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2"));
    if !mounts.iter().any(is_cgroup) {
        return Ok(created);
    }
    let hierarchies = mounted_hierarchies().map_err(Error::io("reading the cgroup mounts"))?;
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
        if v1.is_empty() {
            let Some(v2) = v2 else {
                return Err(Error::Unsupported(
                    "a cgroup mount on a host without cgroups",
                ));
            };
            expanded.push(own_dir(&v2.mount.join(relative), &target, &mut created)?);
            continue;
        }
        expanded.push(tmpfs(&target));
        for h in &v1 {
            let name = h.mount.file_name().map(PathBuf::from).unwrap_or_default();
            let dir = h.mount.join(relative);
            expanded.push(own_dir(&dir, &target.join(name), &mut created)?);
        }
    }
    spec.set_mounts(Some(expanded));
    Ok(created)
}

/// A read-only bind of the container's directory in one hierarchy, created if missing.
fn own_dir(dir: &Path, target: &Path, created: &mut CreatedDirs) -> Result<Mount> {
    created
        .create(dir)
        .map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut mount = Mount::default();
    mount.set_destination(target.to_path_buf());
    mount.set_typ(Some("bind".into()));
    mount.set_source(Some(dir.to_path_buf()));
    let options = ["bind", "ro", "nosuid", "nodev", "noexec"];
    mount.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    Ok(mount)
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
