//! The container's cgroup, through libcgroups (cgroup v1, v2 and the hybrid layout).

use std::path::{Path, PathBuf};

use libcgroups::common::{
    create_cgroup_manager, AnyCgroupManager, CgroupConfig, CgroupManager, ControllerOpt,
};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};

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

    /// Puts `pid` in the cgroup (a process added to a running container).
    pub(crate) fn add(&self, pid: i32) -> Result<()> {
        self.manager
            .add_task(Pid::from_raw(pid))
            .map_err(|e| Error::Cgroup {
                path: self.path.clone(),
                reason: format!("adding process {pid}: {e}"),
            })
    }

    /// Puts `pid` in the cgroup and applies the limits.
    pub(crate) fn join(&self, pid: i32, resources: &LinuxResources) -> Result<()> {
        let err = |what: &str, e: &dyn std::fmt::Display| Error::Cgroup {
            path: self.path.clone(),
            reason: format!("{what}: {e}"),
        };
        self.manager
            .add_task(Pid::from_raw(pid))
            .map_err(|e| err("adding the init", &e))?;
        let opt = ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        self.manager
            .apply(&opt)
            .map_err(|e| err("applying the limits", &e))
    }

    pub(crate) fn remove(&self) -> Result<()> {
        self.manager.remove().map_err(|e| Error::Cgroup {
            path: self.path.clone(),
            reason: format!("removing: {e}"),
        })
    }
}
