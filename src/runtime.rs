//! The runtime: settings, the ID allocator, the seccomp supervisor and the compiled filters,
//! shared by every container it creates.

use std::collections::HashSet;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use eci_idmap::{Allocator, Durability};
use eci_policy::caps::CapSet;
use eci_policy::Policy;
use eci_seccomp::{Filters, Supervisor};

use crate::container::{Container, ContainerConfig};
use crate::error::{Error, Result};
use crate::VirtualFilesServer;

/// How a runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where the runtime's state lives: rootfs mounts, shift records, container records.
    pub state_dir: PathBuf,
    /// Where the ID leases are journaled. Blocks are exclusive only among runtimes that share
    /// this directory, so every runtime on the host that hands out blocks from the same pool
    /// must name the same one, whatever its `state_dir`: the default, [`HOST_LEASES_DIR`],
    /// is host-wide. A runtime whose pool differs from the one recorded there gets
    /// [`eci_idmap::AllocError::PoolChanged`] rather than blocks that may overlap.
    pub leases_dir: PathBuf,
    /// The isolation settings.
    pub policy: Policy,
    /// How hard ID lease changes are pushed to disk (see [`Durability`]).
    pub lease_durability: Durability,
    /// Where the virtual procfs and sysfs files are served from.
    pub virtual_files: crate::virt::VirtualFilesServer,
}

/// The host-wide directory of ID leases that [`RuntimeConfig::leases_dir`] names by default.
pub const HOST_LEASES_DIR: &str = "/run/eci/idmap";

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            state_dir: PathBuf::from("/run/eci"),
            leases_dir: PathBuf::from(HOST_LEASES_DIR),
            policy: Policy::default(),
            lease_durability: Durability::Sync,
            virtual_files: Default::default(),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) policy: Policy,
    pub(crate) state_dir: PathBuf,
    pub(crate) allocator: Allocator,
    pub(crate) supervisor: Supervisor,
    pub(crate) filters: Filters,
    pub(crate) runtime_caps: CapSet,
    pub(crate) last_cap: u8,
    pub(crate) live: Mutex<HashSet<String>>,
    pub(crate) virtual_files: crate::virt::Server,
}

/// A runtime that creates protected containers.
///
/// ```no_run
/// use eci::{ContainerConfig, Runtime, RuntimeConfig};
///
/// let runtime = Runtime::new(RuntimeConfig::default())?;
/// let spec = oci_spec::runtime::Spec::load("bundle/config.json")?;
/// let mut container = runtime.create(ContainerConfig::new("web-1", spec).bundle("bundle"))?;
/// container.start()?;
/// let status = container.wait()?;
/// container.delete()?;
/// println!("{status}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Runtime {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("state_dir", &self.shared.state_dir)
            .finish_non_exhaustive()
    }
}

/// `dir`, made if missing, resolved. Only root may enter a directory made here, as runc's
/// state: rootfs and files made below it are then out of other users' reach. One that exists
/// must be the runtime's own, and is closed to writes by others if it was open to them (made
/// under umask 002, or a tmpfs root); one another user owns is refused. Its parents are made as
/// mkdir -p makes them, and none may let another user rename what leads to it (a user who may
/// could swap in a directory of theirs after these checks).
fn private_dir(dir: &Path, what: &'static str) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    // Parents are made 0755 whatever the umask: one of 002 would leave them writable by the
    // runtime's group, which the check below refuses.
    let made = dir.parent().map_or(Ok(()), |parent| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
    });
    let made = made.and_then(
        |()| match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        },
    );
    made.map_err(Error::io(format!("creating {}", dir.display())))?;
    let dir =
        std::fs::canonicalize(dir).map_err(Error::io(format!("resolving {}", dir.display())))?;
    // One made earlier, or by someone else, is used only if nobody else may write in it.
    // Not followed: a directory swapped for a symlink since it was resolved is no directory.
    let meta =
        std::fs::symlink_metadata(&dir).map_err(Error::io(format!("reading {}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::io(format!("reading {}", dir.display()))(
            std::io::Error::from_raw_os_error(libc::ENOTDIR),
        ));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(Error::SharedDir {
            what,
            path: dir,
            owner: meta.uid(),
            mode: meta.mode() & 0o7777,
            euid,
        });
    }
    let movable = eci_idmap::reach::movable_by_others(&dir, euid).map_err(Error::io(format!(
        "checking the directories above {}",
        dir.display()
    )))?;
    if let Some(movable) = movable {
        return Err(Error::MovableDir {
            what,
            path: dir,
            movable,
            euid,
        });
    }
    if meta.mode() & 0o022 != 0 {
        let closed = std::fs::Permissions::from_mode(meta.mode() & 0o6755);
        std::fs::set_permissions(&dir, closed)
            .map_err(Error::io(format!("closing {} to others", dir.display())))?;
    }
    Ok(dir)
}

/// The settings as the runtime applies them: its state and lease directories restricted, the
/// state directory's `rootfs` (where `HostRootfs` builds roots) engine storage, and every
/// restriction also where it really is.
fn runtime_policy(
    policy: Policy,
    state_dir: &Path,
    leases_dir: &Path,
    server: &VirtualFilesServer,
) -> Result<Policy> {
    let restricting = |what: &str| {
        let what = format!("restricting {what}");
        move |e: eci_policy::paths::PathError| Error::Io {
            what,
            source: std::io::Error::other(e),
        }
    };
    let policy = policy
        .with_state_dir(state_dir)
        .map_err(restricting("the state directory"))?
        .with_state_dir(leases_dir)
        .map_err(restricting("the ID leases directory"))?;
    // Its mount lists every container's directory of files; its socket is host root's alone.
    let policy = match server {
        VirtualFilesServer::Daemon { dir, .. } => policy
            .with_state_dir(dir)
            .map_err(restricting("the virtual files daemon's directory"))?,
        VirtualFilesServer::InProcess => policy,
    };
    policy
        .with_resolved_engine_sockets(resolve_as_root_made)
        .map_err(restricting("where the engine sockets really are"))?
        .with_resolved_engine_data_roots(resolve_as_root_made)
        .map_err(restricting("where the engines' data roots really are"))?
        .with_engine_storage(&state_dir.join("rootfs"))
        .map_err(restricting("the state directory's roots"))?
        .with_resolved_engine_storage(resolve_as_root_made)
        .map_err(restricting("where the engines' storage really is"))?
        // Last: every restriction above is resolved too.
        .with_resolved_restrictions(resolve_as_root_made)
        .map_err(restricting("where the restricted paths really are"))
}

/// Where a path a rule names really is, if only root can have made it lead there
/// ([`eci_idmap::reach::resolve_as_root_made`]); an error otherwise, which leaves the rule as
/// named: a user who could point it elsewhere could move a restriction onto a share (`/home`)
/// or into an engine's tree of roots.
fn resolve_as_root_made(path: &Path) -> std::io::Result<PathBuf> {
    eci_idmap::reach::resolve_as_root_made(path)?.ok_or_else(|| {
        std::io::Error::other(format!(
            "{} leads where other users may change",
            path.display()
        ))
    })
}

/// Earlier versions journaled leases in each state directory (`STATE_DIR/idmap`). Containers
/// they started may still run, after an upgrade or for a runtime that takes them over: their
/// blocks are adopted into the host-wide journal, or they would be handed out again.
fn adopt_older_leases(
    allocator: &Allocator,
    state_dir: &Path,
    leases_dir: &Path,
    policy: &Policy,
    durability: Durability,
) -> Result<()> {
    let older = state_dir.join("idmap");
    if older == leases_dir || !Allocator::has_journal(&older) {
        return Ok(());
    }
    let older = Allocator::open_with(&older, policy.id_pool, durability)?;
    let adopted = allocator.adopt(&older.leases()?)?;
    if adopted > 0 {
        tracing::info!(
            holders = adopted,
            "adopted the live ID leases of this state directory's own journal"
        );
    }
    Ok(())
}

impl Runtime {
    /// Opens the state directory, reclaims ID blocks of containers that no longer exist, compiles
    /// the seccomp filters and starts the supervisor.
    pub fn new(config: RuntimeConfig) -> Result<Runtime> {
        let state_dir = private_dir(&config.state_dir, "state")?;
        let leases_dir = private_dir(&config.leases_dir, "lease journal")?;
        let policy = runtime_policy(
            config.policy,
            &state_dir,
            &leases_dir,
            &config.virtual_files,
        )?;
        if !policy.eci_enabled {
            tracing::warn!("the settings switch Enhanced Container Isolation off; eci cannot run a container without it, so the setting is ignored");
        }
        // A journal begun here first takes in the blocks of running containers (see
        // `eci_idmap::live`): its directory may have been removed under them, or they may
        // have been started by a runtime that journaled elsewhere.
        let allocator =
            Allocator::open_seeded(&leases_dir, policy.id_pool, config.lease_durability)?;
        adopt_older_leases(
            &allocator,
            &state_dir,
            &leases_dir,
            &policy,
            config.lease_durability,
        )?;
        let supervisor =
            Supervisor::start().map_err(Error::io("starting the seccomp supervisor"))?;
        Ok(Runtime {
            shared: Arc::new(Shared {
                filters: Filters::build()?,
                runtime_caps: own_bounding_set()?,
                last_cap: last_cap()?,
                policy,
                state_dir,
                allocator,
                supervisor,
                live: Mutex::new(HashSet::new()),
                virtual_files: crate::virt::Server::new(config.virtual_files),
            }),
        })
    }

    /// Creates a container: everything set up, its process waiting for [`Container::start`].
    pub fn create(&self, config: ContainerConfig) -> Result<Container> {
        Container::create(Arc::clone(&self.shared), config)
    }

    /// The settings in force (with the state directory restricted).
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.shared.state_dir
    }

    /// Where this runtime's virtual procfs files server is mounted, once a container has
    /// needed it.
    pub fn virtual_files_mountpoint(&self) -> Option<PathBuf> {
        self.shared.virtual_files.mountpoint()
    }

    /// The ID allocator, to inspect leases.
    pub fn allocator(&self) -> &Allocator {
        &self.shared.allocator
    }

    /// Number of containers whose mount calls are being vetted.
    pub fn supervised(&self) -> usize {
        self.shared.supervisor.listeners()
    }
}

/// The runtime's own capability bounding set: a container never gets more.
fn own_bounding_set() -> Result<CapSet> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(Error::io("reading /proc/self/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .map(CapSet)
        .ok_or_else(|| Error::Io {
            what: "reading CapBnd".into(),
            source: std::io::ErrorKind::InvalidData.into(),
        })
}

/// The highest capability the kernel knows; every one above the spec's bounding set is dropped.
fn last_cap() -> Result<u8> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .map_err(Error::io("reading /proc/sys/kernel/cap_last_cap"))?;
    text.trim().parse().map_err(|_| Error::Io {
        what: "parsing cap_last_cap".into(),
        source: std::io::ErrorKind::InvalidData.into(),
    })
}
