//! The container's cgroup, through libcgroups (cgroup v1, v2 and the hybrid layout).

use std::path::{Path, PathBuf};

use libcgroups::common::{
    create_cgroup_manager, AnyCgroupManager, CgroupConfig, CgroupManager, ControllerOpt,
    FreezerState,
};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};

/// True for a cgroup path a container may have: absolute, at least one name below the root,
/// no `.` or `..`. A relative path would mean "below the runtime's own cgroup", which differs
/// between the process that creates a container and one that cleans up after it.
pub(crate) fn valid_path(path: &Path) -> bool {
    use std::path::Component;
    path.is_absolute()
        && path.components().any(|c| matches!(c, Component::Normal(_)))
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// A container's cgroup. Removed (with anything left in it killed) on [`Cgroup::remove`].
pub(crate) struct Cgroup {
    manager: AnyCgroupManager,
    path: PathBuf,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup").field("path", &self.path).finish()
    }
}

impl Cgroup {
    pub(crate) fn new(path: &Path, container: &str) -> Result<Cgroup> {
        let cgroup = Cgroup::open(path, container)?;
        // Processes already there (a container whose runtime died, another container given
        // the same path) would share the new container's limits and freezer, and be signalled
        // and killed with it.
        if let Ok(pids) = cgroup.pids() {
            if !pids.is_empty() {
                return Err(cgroup.error(
                    "creating",
                    &format!("it already holds processes {pids:?}; a container left running?"),
                ));
            }
        }
        Ok(cgroup)
    }

    /// The cgroup of an existing container, whatever it holds (to take down what a dead runtime
    /// left).
    pub(crate) fn open(path: &Path, container: &str) -> Result<Cgroup> {
        let config = CgroupConfig {
            cgroup_path: path.to_path_buf(),
            systemd_cgroup: false,
            container_name: container.to_string(),
        };
        let manager = create_cgroup_manager(config).map_err(|e| Error::Cgroup {
            path: path.into(),
            reason: e.to_string(),
        })?;
        Ok(Cgroup {
            manager,
            path: path.to_path_buf(),
        })
    }

    /// SIGKILLs every process in the cgroup, frozen meanwhile so that none forks past the signal
    /// and no listed pid is reused before it is signalled; the pids signalled. A cgroup that no
    /// longer exists holds nothing.
    pub(crate) fn kill_everything(&self) -> Result<Vec<i32>> {
        let Ok(listed) = self.pids() else {
            return Ok(Vec::new());
        };
        if listed.is_empty() {
            return Ok(Vec::new());
        }
        self.freeze(true)?;
        let pids = self.pids();
        if let Ok(pids) = &pids {
            // 0 stands for a process outside our PID namespace (cgroup v2); kill(0) would be
            // our own process group.
            for pid in pids.iter().filter(|pid| **pid > 0) {
                let _ = nix::sys::signal::kill(Pid::from_raw(*pid), nix::sys::signal::SIGKILL);
            }
        }
        // Frozen processes die only once thawed.
        let thawed = self.freeze(false);
        let pids = pids?;
        thawed.map(|()| pids)
    }

    /// The cgroup's path, as the spec gave it.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// What tells this cgroup from one made later at the same path: the inode of its
    /// directory in the first hierarchy (by mount point) that has it. `None` if none has.
    pub(crate) fn identity(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let relative = self.path.strip_prefix("/").ok()?;
        let mut hierarchies = eci_mount::virt::mounted_hierarchies().ok()?;
        hierarchies.sort_by(|a, b| a.mount.cmp(&b.mount));
        hierarchies
            .iter()
            .find_map(|h| std::fs::metadata(h.mount.join(relative)).ok())
            .map(|meta| meta.ino())
    }

    /// Puts `pid` in the cgroup (a process added to a running container).
    pub(crate) fn add(&self, pid: i32) -> Result<()> {
        self.manager
            .add_task(Pid::from_raw(pid))
            .map_err(|e| self.error(&format!("adding process {pid}"), &e))
    }

    /// Puts `pid` in the cgroup and applies the limits.
    pub(crate) fn join(&self, pid: i32, resources: &LinuxResources) -> Result<()> {
        self.manager
            .add_task(Pid::from_raw(pid))
            .map_err(|e| self.error("adding the init", &e))?;
        self.apply(resources)
    }

    /// Applies `resources` (at creation, and on an update).
    pub(crate) fn apply(&self, resources: &LinuxResources) -> Result<()> {
        // libcgroups leaves `unified` out on v1 without a word: say the limits cannot be had,
        // as runc does, rather than run the container without them.
        let unified = resources.unified().as_ref().is_some_and(|u| !u.is_empty());
        if unified && matches!(self.manager, AnyCgroupManager::V1(_)) {
            return Err(self.error(
                "applying the limits",
                &"linux.resources.unified sets cgroup v2 files, and this host's controllers are \
                  on cgroup v1",
            ));
        }
        let opt = ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        self.manager
            .apply(&opt)
            .map_err(|e| self.error("applying the limits", &e))
    }

    /// Freezes (`true`) or thaws every process in the cgroup.
    pub(crate) fn freeze(&self, frozen: bool) -> Result<()> {
        let state = if frozen {
            FreezerState::Frozen
        } else {
            FreezerState::Thawed
        };
        self.manager
            .freeze(state)
            .map_err(|e| self.error(if frozen { "freezing" } else { "thawing" }, &e))
    }

    /// The processes in the cgroup, as host pids.
    pub(crate) fn pids(&self) -> Result<Vec<i32>> {
        let pids = self
            .manager
            .get_all_pids()
            .map_err(|e| self.error("listing the processes", &e))?;
        Ok(pids.into_iter().map(Pid::as_raw).collect())
    }

    fn error(&self, what: &str, e: &dyn std::fmt::Display) -> Error {
        Error::Cgroup {
            path: self.path.clone(),
            reason: format!("{what}: {e}"),
        }
    }

    pub(crate) fn remove(&self) -> Result<()> {
        self.manager
            .remove()
            .map_err(|e| self.error("removing", &e))
    }
}
