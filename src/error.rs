//! The facade's error type: every way creating or running a container can fail, each naming
//! what was wrong.

use std::path::PathBuf;

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A container ID that cannot be used in paths and records.
    #[error("container id '{0}' is invalid: use 1-128 letters, digits, '.', '_' or '-', not starting with '.'")]
    InvalidId(String),
    /// The runtime already has a container with this ID.
    #[error("container '{0}' already exists")]
    Exists(String),
    /// The rootfs or bundle cannot be used.
    #[error("{what} {}: {source}", path.display())]
    Path {
        /// "rootfs" or "bundle".
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What is wrong.
        source: std::io::Error,
    },
    /// The spec file cannot be parsed.
    #[error("{}: {reason}", path.display())]
    SpecFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        reason: String,
    },
    /// The settings document cannot be used.
    #[error("settings {}: {source}", path.display())]
    Settings {
        /// The settings file.
        path: PathBuf,
        /// Where and what is wrong.
        source: eci_policy::document::SettingsError,
    },
    /// The spec asks to override a setting it may not.
    #[error("spec refused: {0}")]
    Override(#[from] eci_policy::overrides::OverrideError),
    /// The spec cannot be made safe.
    #[error("spec refused: {0}")]
    Spec(#[from] eci_policy::harden::HardenError),
    /// A namespace the spec joins is not another container's.
    #[error("spec refused: {0}")]
    Join(#[from] eci_ns::join::JoinError),
    /// A namespace the spec joins belongs to no container of this host's eci runtimes.
    #[error("spec refused: joining the namespace {}: its user namespace is no container's of the runtimes sharing this ID journal (no process of it holds an ID block); only their containers' namespaces may be shared", .0.display())]
    JoinForeign(PathBuf),
    /// A resource update does not make a valid set of limits.
    #[error("update refused: {0}")]
    Update(#[from] eci_policy::harden::ResourceUpdateError),
    /// The spec asks for something this runtime does not do yet; running without it would be
    /// less isolated or different from what was asked.
    #[error("spec refused: {0} is not supported yet")]
    Unsupported(&'static str),
    /// The spec's cgroup path would leave the cgroup hierarchies, or is not absolute.
    #[error("spec refused: linux.cgroupsPath '{}' must be an absolute plain path, without '.' or '..', below the hierarchies' root", .0.display())]
    CgroupPath(PathBuf),
    /// The mount table cannot be planned.
    #[error("spec refused: {0}")]
    Mounts(#[from] eci_mount::PlanError),
    /// The process cannot be prepared.
    #[error("spec refused: {0}")]
    Process(#[from] crate::init::ProcessError),
    /// No ID block could be leased.
    #[error(transparent)]
    Ids(#[from] eci_idmap::AllocError),
    /// The seccomp filters could not be built.
    #[error(transparent)]
    Filters(#[from] eci_seccomp::filters::FilterError),
    /// The spec's seccomp profile cannot be applied.
    #[error("spec refused: {0}")]
    Profile(#[from] eci_seccomp::profile::ProfileError),
    /// The rootfs is a host directory the path rules keep from containers.
    #[error("spec refused: {0}")]
    Root(#[from] eci_policy::root::RootRefusal),
    /// A writable rootfs that host users other than root can reach would be idmapped: what the
    /// container's root creates there belongs to host root on disk, so a setuid binary made there
    /// would make them root.
    #[error("{}: refused as a writable container root: host users other than root can reach it (every directory above it lets them through, or one they may move is on its path), and files the container's root creates there would belong to host root (a setuid binary would make them root). Keep the bundle in a directory only root can enter or move (mode 0700, or 0710 with root's group, in root's directories), or make the root read-only and not remountable", path.display())]
    ReachableRootfs {
        /// The directory the container's writes would land in (the rootfs, or its overlay's
        /// upper layer).
        path: PathBuf,
    },
    /// A directory the runtime keeps its state or the host's ID leases in belongs to another
    /// user: whoever may write it could forge leases (two containers on one ID block) or state.
    #[error("{}: refused as the runtime's {what} directory: it is owned by uid {owner} (mode {mode:o}), not by the runtime (uid {euid})", path.display())]
    SharedDir {
        /// What the directory holds ("state", "lease journal").
        what: &'static str,
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
        /// The runtime's effective uid.
        euid: u32,
    },
    /// A directory above the runtime's state or lease directory lets another user rename or
    /// replace what leads there: they could swap in a directory of theirs after the check.
    #[error("{}: refused as the runtime's {what} directory: {} lets users other than root and uid {euid} rename what is on its path (it is theirs, or writable by them without the sticky bit's protection); keep it under directories only root or the runtime may change", path.display(), movable.display())]
    MovableDir {
        /// What the directory holds ("state", "lease journal").
        what: &'static str,
        /// The directory.
        path: PathBuf,
        /// The directory above it that lets them.
        movable: PathBuf,
        /// The runtime's effective uid.
        euid: u32,
    },
    /// A cgroup operation failed.
    #[error("cgroup {}: {reason}", path.display())]
    Cgroup {
        /// The cgroup path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Starting the container failed in one of its processes.
    #[error("{what}: {}", kernel_words(source))]
    Setup {
        /// What was being done, in words.
        what: String,
        /// The kernel's error.
        source: std::io::Error,
    },
    /// Starting the container's processes failed.
    #[error(transparent)]
    Spawn(#[from] eci_ns::SpawnError),
    /// The mount helper could not start.
    #[error(transparent)]
    Helper(#[from] eci_ns::helper::HelperError),
    /// The operation does not fit the container's state.
    #[error("container '{id}' is {state}; cannot {action}")]
    State {
        /// The container.
        id: String,
        /// Its state.
        state: crate::State,
        /// What was asked.
        action: &'static str,
    },
    /// Any other failed system call in the runtime.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// Results of the facade.
pub type Result<T> = std::result::Result<T, Error>;

/// Reads `config.json` of a bundle. Errors name the file, line and column.
///
/// ```no_run
/// let spec = eci::load_spec("bundle".as_ref())?;
/// # Ok::<(), eci::Error>(())
/// ```
pub fn load_spec(bundle: &std::path::Path) -> Result<oci_spec::runtime::Spec> {
    let path = bundle.join("config.json");
    let file = std::fs::File::open(&path).map_err(|source| Error::Path {
        what: "spec",
        path: path.clone(),
        source,
    })?;
    serde_json::from_reader(std::io::BufReader::new(file)).map_err(|err| Error::SpecFile {
        path,
        reason: err.to_string(),
    })
}

/// Reads the settings document at `path` into a policy. Errors name the JSON path, line and
/// column of what is wrong.
///
/// ```no_run
/// let policy = eci::load_settings("/etc/eci/settings.json".as_ref())?;
/// let runtime = eci::Runtime::new(eci::RuntimeConfig { policy, ..Default::default() })?;
/// # Ok::<(), eci::Error>(())
/// ```
pub fn load_settings(path: &std::path::Path) -> Result<eci_policy::Policy> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Path {
        what: "settings",
        path: path.to_path_buf(),
        source,
    })?;
    eci_policy::document::parse(&text).map_err(|source| Error::Settings {
        path: path.to_path_buf(),
        source,
    })
}

/// The kernel's error as Go programs word it ("no such file or directory"): Docker's client
/// reads a failed start's message for these words to exit 127 (no such program) or 126 (one
/// that cannot be run) rather than 125, as it does with runc.
fn kernel_words(err: &std::io::Error) -> String {
    let text = err.to_string();
    let Some(code) = err.raw_os_error() else {
        return text;
    };
    let text = text
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&text);
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_words_the_kernels_error_as_docker_reads_it() {
        let failed = |errno| Error::Setup {
            what: "executing 'app' in the container".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        assert_eq!(
            failed(libc::ENOENT).to_string(),
            "executing 'app' in the container: no such file or directory"
        );
        assert!(failed(libc::EACCES)
            .to_string()
            .ends_with(": permission denied"));
        let other = Error::Setup {
            what: "step".into(),
            source: std::io::ErrorKind::InvalidData.into(),
        };
        assert_eq!(other.to_string(), "step: invalid data");
    }
}
