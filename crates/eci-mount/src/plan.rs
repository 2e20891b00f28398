//! The container's mount table as a plan: built from a hardened spec in the runtime, where
//! allocation is fine, and executed by [`crate::exec`] in the mounter, where it is not.

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use eci_policy::harden::is_bind;
use eci_policy::ids::IdBlock;
use eci_policy::volume::DirIdentity;
use oci_spec::runtime::{LinuxDeviceType, Spec};

use crate::options::{self, OptionError};

/// A path inside the rootfs, prepared so that the mounter can resolve or create it without
/// allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPath {
    /// Relative to the rootfs, e.g. `dev/pts`.
    pub(crate) rel: CString,
    /// Each component as (its parent relative to the rootfs, or `.`; its name).
    pub(crate) components: Vec<(CString, CString)>,
    /// As the container sees it, e.g. `/dev/pts`.
    pub(crate) display: PathBuf,
}

impl RootPath {
    /// Prepares an absolute container path. `None` for `/` itself or a path with `..`.
    pub fn new(path: &Path) -> Option<RootPath> {
        let mut parts = Vec::new();
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(part) => parts.push(part.as_bytes().to_vec()),
                Component::ParentDir | Component::Prefix(_) => return None,
            }
        }
        if parts.is_empty() {
            return None;
        }
        let mut components = Vec::with_capacity(parts.len());
        let mut prefix: Vec<u8> = Vec::new();
        for part in &parts {
            let parent = if prefix.is_empty() {
                b".".to_vec()
            } else {
                prefix.clone()
            };
            components.push((CString::new(parent).ok()?, CString::new(part.clone()).ok()?));
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(part);
        }
        Some(RootPath {
            rel: CString::new(prefix).ok()?,
            components,
            display: path.to_path_buf(),
        })
    }

    /// The path as the container sees it.
    pub fn display(&self) -> &Path {
        &self.display
    }
}

/// Whether a mount point is created as a directory or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    /// A directory.
    Dir,
    /// A regular file (for binds of files).
    File,
}

/// Whether a bind shows its files with container-relative owners (an idmapped mount through the
/// container's user namespace: on-disk ID N appears as container ID N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idmap {
    /// A plain bind: host IDs inside the container's block appear as container IDs, others as
    /// nobody; files the container creates belong to its block on the host.
    No,
    /// Idmapped if the filesystem supports it, plain otherwise: read-only host binds, where
    /// nothing can be created (host root's files show as root inside), and binds the spec
    /// marks [`eci_policy::harden::IDMAP_IF_SUPPORTED`] (Docker volumes out of host users'
    /// reach).
    Try,
    /// Idmapped through a user namespace that maps the host's system IDs alone
    /// ([`eci_idmap::idmapped::SYSTEM_IDS`]) if the filesystem supports it, plain otherwise:
    /// paths shared read-only ([`eci_policy::harden::IDMAP_SYSTEM_IF_SUPPORTED`]). Host root's
    /// files show as root inside and system users' and groups' as theirs (setgid programs
    /// keep their group), host users' as nobody, so container root has over those what host
    /// users have (the full block's map would make it their owner, capabilities and all).
    TrySystemIds,
    /// Idmapped or an error (the spec's `idmap` option). Only the bind's own mount: mounts
    /// under it come along as they are.
    Required,
    /// Idmapped with every mount under it, or an error (the spec's `ridmap` option).
    RequiredWithSubmounts,
}

impl Idmap {
    /// Whether a filesystem that cannot be idmapped gets a plain bind instead.
    pub fn may_fall_back(self) -> bool {
        matches!(self, Idmap::Try | Idmap::TrySystemIds)
    }
}

/// Where a mount's source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A host path the policy already vetted.
    Host(CString),
    /// A filesystem source name (`proc`, `tmpfs`, ...).
    Name(CString),
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Mount at `dest`, creating the mount point.
    Mount {
        /// Where.
        dest: RootPath,
        /// Directory or file mount point.
        kind: PointKind,
        /// What.
        source: Source,
        /// Filesystem type; `None` for binds.
        fstype: Option<CString>,
        /// mount(2) flags.
        flags: libc::c_ulong,
        /// Filesystem data.
        data: Option<CString>,
        /// A bind mount; flags are applied by a remount afterwards.
        bind: bool,
        /// A recursive bind.
        recursive: bool,
        /// Whether a bind is idmapped.
        idmap: Idmap,
        /// Propagation change afterwards (0 for none).
        propagation: libc::c_ulong,
        /// Give the new filesystem's root directory to the container's root: mqueue and devpts
        /// roots are made by the kernel with host root's IDs, and have no option to change it.
        chown_root: bool,
        /// For a bind: the directory its source must still be when opened (a Docker volume,
        /// checked when the spec was hardened); the bind fails otherwise.
        expect: Option<DirIdentity>,
    },
    /// A character device node.
    Device {
        /// Where.
        dest: RootPath,
        /// Permission bits.
        mode: u32,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
        /// Host owner.
        uid: u32,
        /// Host group.
        gid: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Where.
        dest: RootPath,
        /// What it points to.
        target: CString,
    },
    /// Hide what is at `dest` (a read-only empty tmpfs over a directory, /dev/null over a file).
    Mask {
        /// Where.
        dest: RootPath,
    },
    /// Make `dest` read-only (a read-only bind of itself).
    ReadOnly {
        /// Where.
        dest: RootPath,
    },
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The rootfs is unusable.
    #[error("rootfs {}: {reason}", path.display())]
    Rootfs {
        /// The rootfs path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A mount destination that cannot be used.
    #[error("mount destination {}: must be absolute, below / and without '..'", .0.display())]
    Destination(PathBuf),
    /// Bad mount options.
    #[error("mount at {}: {source}", dest.display())]
    Options {
        /// The destination.
        dest: PathBuf,
        /// What is wrong.
        source: OptionError,
    },
    /// A filesystem type the runtime does not mount for a container.
    #[error("mount at {}: type '{fstype}' is not one eci mounts for a container (bind, proc, sysfs, tmpfs, devpts, mqueue)", dest.display())]
    Type {
        /// The destination.
        dest: PathBuf,
        /// The type.
        fstype: String,
    },
    /// A bind source that cannot be used.
    #[error("bind mount at {}: source {}: {reason}", dest.display(), host_path.display())]
    BindSource {
        /// The destination.
        dest: PathBuf,
        /// The source.
        host_path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Devices were asked for but /dev is not a tmpfs the runtime mounts.
    #[error("devices need /dev to be a tmpfs mounted by eci")]
    DevicesWithoutDevTmpfs,
    /// A string with a NUL byte.
    #[error("{0} contains a NUL byte")]
    Nul(String),
    /// Something the plan does not do yet.
    #[error("mount at {}: {what} is not supported yet", dest.display())]
    Unsupported {
        /// The destination.
        dest: PathBuf,
        /// What was asked.
        what: &'static str,
    },
    /// An unknown rootfs propagation.
    #[error("linux.rootfsPropagation '{0}' is not a propagation type")]
    Propagation(String),
}

/// Everything the mounter does, in order.
#[derive(Debug, Clone)]
pub struct MountPlan {
    pub(crate) rootfs: CString,
    pub(crate) rootfs_display: PathBuf,
    pub(crate) root_readonly: bool,
    pub(crate) rootfs_propagation: libc::c_ulong,
    pub(crate) owner: (u32, u32),
    /// The container's host IDs: the mounter's capabilities count only over what they own.
    pub(crate) block: IdBlock,
    pub(crate) steps: Vec<Step>,
    /// The rootfs's overlay layers, when it is an overlay that may be rebuilt idmapped.
    pub(crate) layers: Option<Layers>,
    /// Steps (by index) whose read-only flag the init applies in its own mount namespace, so
    /// that the kernel does not lock it ([`MountPlan::with_remountable_read_only`]).
    pub(crate) deferred_read_only: Vec<usize>,
    /// Whether the init makes the rootfs read-only, for the same reason.
    pub(crate) root_read_only_deferred: bool,
    /// Steps (by index) the mounter prepares as detached trees and attaches only once the
    /// init has its own namespace ([`MountPlan::with_unmountable`]).
    pub(crate) detached: Vec<usize>,
}

/// At most this many mounts are made unmountable (the mounter keeps their trees in a fixed
/// array: it cannot allocate).
pub const MOST_DETACHED: usize = 16;

/// Mount flags a detached bind can be given (as mount_setattr attributes; MS_REC, `rro`, on
/// every mount of its tree, which the kernel then locks read-only in each copy it propagates).
const DETACHABLE_FLAGS: libc::c_ulong = libc::MS_REC
    | libc::MS_RDONLY
    | libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_STRICTATIME
    | libc::MS_RELATIME;

/// Where the kernel must keep every mount locked, whatever the settings.
const ALWAYS_LOCKED: [&str; 3] = ["/proc", "/sys", "/dev"];

/// An overlay's layers as the mounter opens them (see [`crate::mountinfo::OverlayRoot`]).
#[derive(Debug, Clone)]
pub(crate) struct Layers {
    pub(crate) lower: Vec<CString>,
    pub(crate) upper: Option<(CString, CString, CString)>,
    pub(crate) options: Vec<(CString, Option<CString>)>,
}

/// Filesystem types the runtime mounts for a container (it mounts them with host credentials,
/// so anything reaching a real device is out).
const INITIAL_TYPES: [&str; 5] = ["proc", "sysfs", "tmpfs", "devpts", "mqueue"];

/// The devices every container gets: (path, major, minor).
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// The links every container's /dev gets: (path, target).
const DEFAULT_LINKS: [(&str, &str); 5] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/ptmx", "pts/ptmx"),
];

fn cstring(value: &[u8], what: &str) -> Result<CString, PlanError> {
    CString::new(value).map_err(|_| PlanError::Nul(what.to_string()))
}

impl MountPlan {
    /// Plans the mounts of a hardened spec over `rootfs` (an absolute host directory) for a
    /// container that owns `block`.
    ///
    /// ```no_run
    /// use eci_mount::plan::MountPlan;
    /// use eci_policy::ids::IdBlock;
    /// let spec = oci_spec::runtime::Spec::load("config.json")?;
    /// let block = IdBlock::new(1 << 28, 65536).unwrap();
    /// let plan = MountPlan::from_spec(&spec, "/run/eci/c1/rootfs".as_ref(), block)?;
    /// for line in plan.describe() { println!("{line}"); }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_spec(spec: &Spec, rootfs: &Path, block: IdBlock) -> Result<MountPlan, PlanError> {
        MountPlan::from_spec_with_files(spec, rootfs, block, &[])
    }

    /// As [`MountPlan::from_spec`], for a runtime that knows some bind sources to be files
    /// (its own virtual files): their type is not asked for. Asking walks each path, and a FUSE
    /// server answers every name of a new directory with a round trip (about 30 µs here, for
    /// each of some twenty files) that the mounter's own walk then repeats. A source named here
    /// that is missing fails the mounter instead of the plan.
    ///
    /// ```no_run
    /// use eci_mount::plan::MountPlan;
    /// use eci_policy::ids::IdBlock;
    /// use std::path::Path;
    /// let spec = oci_spec::runtime::Spec::load("config.json")?;
    /// let block = IdBlock::new(1 << 28, 65536).unwrap();
    /// let files = [Path::new("/run/eci/virtual/files/c1/meminfo")];
    /// let plan = MountPlan::from_spec_with_files(&spec, "/run/eci/c1/rootfs".as_ref(), block, &files)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_spec_with_files(
        spec: &Spec,
        rootfs: &Path,
        block: IdBlock,
        files: &[&Path],
    ) -> Result<MountPlan, PlanError> {
        check_rootfs(rootfs)?;
        let owner = (block.host_start(), block.host_start());
        let linux = spec.linux().clone().unwrap_or_default();
        let mut steps = Vec::new();
        let mut dev_is_tmpfs = false;
        // A joined IPC namespace's mqueue filesystem is its owner's: never the joiner's to
        // chown (the kernel would refuse IDs its owner does not map, and a chown that worked
        // would hand the owner's queue directory to the joiner).
        let ipc_joined = linux.namespaces().iter().flatten().any(|ns| {
            ns.typ() == oci_spec::runtime::LinuxNamespaceType::Ipc && ns.path().is_some()
        });
        for mount in spec.mounts().iter().flatten() {
            let step = plan_mount(mount, block, files, ipc_joined)?;
            let is_dev = mount.destination() == Path::new("/dev");
            steps.push(step);
            if is_dev && mount.typ().as_deref() == Some("tmpfs") && !is_bind(mount) {
                dev_is_tmpfs = true;
                steps.extend(dev_contents(&linux, block)?);
            }
        }
        if !dev_is_tmpfs && linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(PlanError::DevicesWithoutDevTmpfs);
        }
        for path in linux.masked_paths().iter().flatten() {
            steps.push(Step::Mask {
                dest: root_path(Path::new(path))?,
            });
        }
        for path in linux.readonly_paths().iter().flatten() {
            steps.push(Step::ReadOnly {
                dest: root_path(Path::new(path))?,
            });
        }
        let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
            None | Some("") => 0,
            Some(word) => options::rootfs_propagation(word)
                .ok_or_else(|| PlanError::Propagation(word.to_string()))?,
        };
        Ok(MountPlan {
            rootfs: cstring(rootfs.as_os_str().as_bytes(), "rootfs path")?,
            rootfs_display: rootfs.to_path_buf(),
            root_readonly: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            rootfs_propagation,
            owner,
            block,
            steps,
            layers: None,
            deferred_read_only: Vec::new(),
            root_read_only_deferred: false,
            detached: Vec::new(),
        })
    }

    /// For settings that let the container remount its initial read-only mounts read-write
    /// (`allowRemount`): the rootfs and the read-only binds at `eligible` destinations (the
    /// runtime names those whose read-only flag the spec chose, not its policy, nor binds it adds
    /// itself) outside /proc, /sys and /dev are mounted writable by the mounter and made
    /// read-only by the init in its own mount namespace ([`MountPlan::apply_deferred`]). The
    /// kernel locks the read-only flag only of mounts that are read-only when a less privileged
    /// namespace copies them, so these stay remountable, while /proc, /sys, /dev, the masks,
    /// the read-only paths and every other bind stay locked. Such binds are not idmapped
    /// (unless the spec asks, and then they stay locked): a writable idmapped bind would let
    /// the container's root write as the host's.
    ///
    /// ```no_run
    /// # use eci_mount::plan::MountPlan;
    /// # fn demo(plan: MountPlan) {
    /// let plan = plan.with_remountable_read_only(&["/data".into()]);
    /// # }
    /// ```
    pub fn with_remountable_read_only(mut self, eligible: &[PathBuf]) -> MountPlan {
        const LOCKED: [&str; 3] = ALWAYS_LOCKED;
        for (index, step) in self.steps.iter_mut().enumerate() {
            let Step::Mount {
                dest,
                flags,
                bind: true,
                idmap,
                ..
            } = step
            else {
                continue;
            };
            let under_locked = LOCKED.iter().any(|p| dest.display.starts_with(p));
            // A bind read-only all through (`rro`, what the path rules force) stays locked.
            if *flags & libc::MS_RDONLY == 0
                || *flags & libc::MS_REC != 0
                || under_locked
                || matches!(idmap, Idmap::Required | Idmap::RequiredWithSubmounts)
                || !eligible.contains(&dest.display)
            {
                continue;
            }
            *flags &= !libc::MS_RDONLY;
            *idmap = Idmap::No;
            self.deferred_read_only.push(index);
        }
        if self.root_readonly {
            self.root_readonly = false;
            self.root_read_only_deferred = true;
        }
        self
    }

    /// For settings that let the container unmount (or move) its initial mounts
    /// (`allowUnmount`): binds of host paths straight on the rootfs, outside /proc, /sys and
    /// /dev, with no other mount, mask or read-only path above or below them, are prepared by
    /// the mounter as detached trees and attached only once the init has its own mount
    /// namespace ([`crate::exec::ExecContext::late`]). They reach it by propagation rather than
    /// by copy, so the kernel does not lock them against unmounting, while it still locks a
    /// read-only one read-only. Everything else stays locked. The runtime spawns the init with
    /// late mounts when [`MountPlan::has_late_mounts`].
    ///
    /// ```no_run
    /// # use eci_mount::plan::MountPlan;
    /// # fn demo(plan: MountPlan) {
    /// let plan = plan.with_unmountable();
    /// assert_eq!(plan.has_late_mounts(), !plan.late_mount_points().is_empty());
    /// # }
    /// ```
    pub fn with_unmountable(mut self) -> MountPlan {
        let dests: Vec<PathBuf> = self
            .steps
            .iter()
            .map(|s| step_dest(s).to_path_buf())
            .collect();
        for (index, step) in self.steps.iter().enumerate() {
            if self.detached.len() == MOST_DETACHED {
                break;
            }
            let Step::Mount {
                dest,
                bind: true,
                flags,
                idmap,
                propagation,
                ..
            } = step
            else {
                continue;
            };
            let own = &dest.display;
            let shared = libc::MS_SHARED | libc::MS_SLAVE | libc::MS_UNBINDABLE;
            let alone = dests.iter().enumerate().all(|(other, path)| {
                other == index || !(path.starts_with(own) || own.starts_with(path))
            });
            if alone
                && !ALWAYS_LOCKED.iter().any(|p| own.starts_with(p))
                && *flags & !DETACHABLE_FLAGS == 0
                && *propagation & shared == 0
                && !matches!(idmap, Idmap::Required | Idmap::RequiredWithSubmounts)
            {
                self.detached.push(index);
            }
        }
        self
    }

    /// Whether the container may write to its rootfs: it is mounted writable, or read-only in a
    /// way the container may undo ([`MountPlan::with_remountable_read_only`]).
    pub fn root_may_become_writable(&self) -> bool {
        !self.root_readonly || self.root_read_only_deferred
    }

    /// Whether the mounter makes mounts after the init unshared its namespace.
    pub fn has_late_mounts(&self) -> bool {
        !self.detached.is_empty()
    }

    /// Where the late mounts go, as the container sees them.
    pub fn late_mount_points(&self) -> Vec<&Path> {
        self.detached
            .iter()
            .map(|&i| step_dest(&self.steps[i]))
            .collect()
    }

    /// Records that the rootfs is the overlay `root`, so that the mounter can rebuild it from
    /// idmapped layers ([`crate::exec::RootfsMount::IdmappedLayers`]).
    pub fn with_overlay_root(
        mut self,
        root: &crate::mountinfo::OverlayRoot,
    ) -> Result<MountPlan, PlanError> {
        let path = |p: &Path| cstring(p.as_os_str().as_bytes(), "overlay layer");
        let name = |n: &std::ffi::OsStr| cstring(n.as_bytes(), "overlay layer");
        let lower = root
            .lower
            .iter()
            .map(|l| path(l))
            .collect::<Result<_, _>>()?;
        let upper = match &root.upper {
            Some((parent, upper, work)) => Some((path(parent)?, name(upper)?, name(work)?)),
            None => None,
        };
        let options = root
            .options
            .iter()
            .map(|(key, value)| {
                let value = value
                    .as_ref()
                    .map(|v| cstring(v.as_bytes(), "overlay option"));
                Ok((
                    cstring(key.as_bytes(), "overlay option")?,
                    value.transpose()?,
                ))
            })
            .collect::<Result<_, PlanError>>()?;
        self.layers = Some(Layers {
            lower,
            upper,
            options,
        });
        Ok(self)
    }

    /// One line per step, numbered as failures name them.
    pub fn describe(&self) -> Vec<String> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, step)| format!("{i}: {step}"))
            .collect()
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The rootfs on the host.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs_display
    }
}

/// Where a step acts, as the container sees it.
fn step_dest(step: &Step) -> &Path {
    match step {
        Step::Mount { dest, .. }
        | Step::Device { dest, .. }
        | Step::Symlink { dest, .. }
        | Step::Mask { dest }
        | Step::ReadOnly { dest } => &dest.display,
    }
}

fn check_rootfs(rootfs: &Path) -> Result<(), PlanError> {
    let bad = |reason: String| PlanError::Rootfs {
        path: rootfs.to_path_buf(),
        reason,
    };
    if !rootfs.is_absolute() {
        return Err(bad("not an absolute path".into()));
    }
    match std::fs::metadata(rootfs) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(bad("not a directory".into())),
        Err(err) => Err(bad(err.to_string())),
    }
}

fn root_path(path: &Path) -> Result<RootPath, PlanError> {
    RootPath::new(path).ok_or_else(|| PlanError::Destination(path.to_path_buf()))
}

fn plan_mount(
    mount: &oci_spec::runtime::Mount,
    block: IdBlock,
    files: &[&Path],
    ipc_joined: bool,
) -> Result<Step, PlanError> {
    let dest = root_path(mount.destination())?;
    let words = mount.options().clone().unwrap_or_default();
    let opts = options::parse(&words).map_err(|source| PlanError::Options {
        dest: dest.display.clone(),
        source,
    })?;
    let bind = opts.bind || mount.typ().as_deref() == Some("bind");
    if bind {
        return plan_bind(mount, dest, opts, files);
    }
    // The kernel idmaps binds only: a filesystem the mounter makes has the container's owners
    // already (its ownership options are translated below), and an idmap asked of it would be
    // dropped.
    if opts.idmap || mount.uid_mappings().is_some() || mount.gid_mappings().is_some() {
        return Err(PlanError::Unsupported {
            dest: dest.display.clone(),
            what: "an idmapped mount that is no bind (idmap, ridmap, uidMappings, gidMappings)",
        });
    }
    let fstype = mount.typ().clone().unwrap_or_default();
    if !INITIAL_TYPES.contains(&fstype.as_str()) {
        return Err(PlanError::Type {
            dest: dest.display.clone(),
            fstype,
        });
    }
    let data =
        container_ids_to_host(&fstype, &opts.data, block).map_err(|source| PlanError::Options {
            dest: dest.display.clone(),
            source,
        })?;
    let source = mount
        .source()
        .as_ref()
        .map_or_else(|| fstype.clone().into(), |s| s.clone());
    Ok(Step::Mount {
        kind: PointKind::Dir,
        source: Source::Name(cstring(source.as_os_str().as_bytes(), "mount source")?),
        fstype: Some(cstring(fstype.as_bytes(), "mount type")?),
        flags: opts.flags,
        data: (!data.is_empty())
            .then(|| cstring(data.as_bytes(), "mount options"))
            .transpose()?,
        bind: false,
        recursive: false,
        idmap: Idmap::No,
        propagation: opts.propagation,
        chown_root: fstype == "devpts" || (fstype == "mqueue" && !ipc_joined),
        expect: None,
        dest,
    })
}

/// Whether the bind source `path` (symlinks followed) is a directory. Only its type is asked
/// for, from what the kernel has (AT_STATX_DONT_SYNC): a FUSE server is not asked, so the
/// runtime's own virtual files are not computed now, before the container's limits exist.
fn source_is_dir(path: &Path) -> std::io::Result<bool> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: an all-zero statx is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out pointer.
    let done = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_STATX_DONT_SYNC,
            libc::STATX_TYPE,
            &mut stx,
        )
    };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u32::from(stx.stx_mode) & libc::S_IFMT == libc::S_IFDIR)
}

fn plan_bind(
    mount: &oci_spec::runtime::Mount,
    dest: RootPath,
    opts: options::MountOptions,
    files: &[&Path],
) -> Result<Step, PlanError> {
    let source = mount.source().clone().unwrap_or_default();
    let bad = |reason: String| PlanError::BindSource {
        dest: dest.display.clone(),
        host_path: source.clone(),
        reason,
    };
    if !source.is_absolute() {
        return Err(bad("not an absolute host path".into()));
    }
    let served = files.contains(&source.as_path());
    let is_dir = !served && source_is_dir(&source).map_err(|err| bad(err.to_string()))?;
    // A bind takes no filesystem data: a word that is none of the flags it knows (runc's
    // recursive `rnosuid`, `rnodev`, `rnoexec`, say) would be dropped, and the bind made
    // otherwise than asked.
    if !opts.data.is_empty() {
        return Err(PlanError::Options {
            dest: dest.display.clone(),
            source: OptionError::NotForBind(opts.data.clone()),
        });
    }
    if mount.uid_mappings().is_some() || mount.gid_mappings().is_some() {
        let what = "an idmapped bind with mappings of its own (uidMappings/gidMappings)";
        return Err(PlanError::Unsupported {
            dest: dest.display.clone(),
            what,
        });
    }
    // Idmapped, a bind lets container root act as the owner of the files there (host root's
    // among them): create setuid programs a host user could run, or read host users' private
    // files. So a bind is idmapped only as asked: by `idmap` or `ridmap`, or by
    // `x-eci.idmap-if-supported`, which hardening gives paths shared read-only and volumes
    // out of host users' reach (and refuses a spec's `idmap` elsewhere).
    // Never the runtime's own files: their server gives them the container's owners, and FUSE
    // refuses an idmap it was not told to allow; each refused try dissolves a detached copy,
    // which waits for an RCU grace period.
    let idmap = if opts.idmap_submounts {
        Idmap::RequiredWithSubmounts
    } else if opts.idmap {
        Idmap::Required
    } else if opts.idmap_if_supported && !served {
        Idmap::Try
    } else if opts.idmap_system_if_supported && !served {
        Idmap::TrySystemIds
    } else {
        Idmap::No
    };
    Ok(Step::Mount {
        kind: if is_dir {
            PointKind::Dir
        } else {
            PointKind::File
        },
        source: Source::Host(cstring(source.as_os_str().as_bytes(), "bind source")?),
        fstype: None,
        flags: opts.flags,
        data: None,
        bind: true,
        recursive: opts.recursive,
        idmap,
        propagation: opts.propagation,
        chown_root: false,
        expect: opts.identity.clone(),
        dest,
    })
}

/// The mounter has host credentials, so ownership options written as container IDs must become
/// host IDs, and a tmpfs without them would belong to the host's root. Every `uid=` and `gid=`
/// is rewritten (read as the kernel reads a number: `0x` hexadecimal, a leading `0` octal), and
/// one that does not read as a number is refused: passed on as written, the kernel could read
/// it (`uid=0x0` after a `uid=5`, the last one winning) as a host ID.
fn container_ids_to_host(fstype: &str, data: &str, block: IdBlock) -> Result<String, OptionError> {
    if !matches!(fstype, "tmpfs" | "devpts") {
        return Ok(data.to_string());
    }
    let mut words: Vec<String> = Vec::new();
    let (mut has_uid, mut has_gid) = (false, false);
    for word in data.split(',').filter(|w| !w.is_empty()) {
        let Some((key @ ("uid" | "gid"), value)) = word.split_once('=') else {
            words.push(word.to_string());
            continue;
        };
        let id = kernel_number(value).ok_or_else(|| OptionError::Malformed(word.to_string()))?;
        has_uid |= key == "uid";
        has_gid |= key == "gid";
        // An ID outside the block has no host ID; nobody is the kernel's answer too.
        let host = block.to_host(id).unwrap_or(block.host_start() + 65534);
        words.push(format!("{key}={host}"));
    }
    if fstype == "tmpfs" {
        if !has_uid {
            words.push(format!("uid={}", block.host_start()));
        }
        if !has_gid {
            words.push(format!("gid={}", block.host_start()));
        }
    }
    Ok(words.join(","))
}

/// A number as the kernel's `kstrtouint(value, 0)` reads it: an optional `+`, then `0x`
/// hexadecimal, a leading `0` octal, or decimal.
fn kernel_number(value: &str) -> Option<u32> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    let (digits, radix) = match digits.strip_prefix("0x").or(digits.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None if digits.len() > 1 && digits.starts_with('0') => (&digits[1..], 8),
        None => (digits, 10),
    };
    // from_str_radix takes a sign of its own, which the kernel would not after the prefix.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

fn dev_contents(linux: &oci_spec::runtime::Linux, block: IdBlock) -> Result<Vec<Step>, PlanError> {
    let root = block.host_start();
    let mut steps = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for (path, major, minor) in DEFAULT_DEVICES {
        seen.push(PathBuf::from(path));
        steps.push(Step::Device {
            dest: root_path(Path::new(path))?,
            mode: 0o666,
            major,
            minor,
            uid: root,
            gid: root,
        });
    }
    for device in linux.devices().iter().flatten() {
        if seen.iter().any(|p| p == device.path()) {
            continue;
        }
        if !matches!(device.typ(), LinuxDeviceType::C | LinuxDeviceType::U) {
            // Hardening keeps only character devices; anything else is not made.
            continue;
        }
        let to_host = |id: Option<u32>| id.and_then(|id| block.to_host(id)).unwrap_or(root);
        seen.push(device.path().clone());
        steps.push(Step::Device {
            dest: root_path(device.path())?,
            mode: device.file_mode().unwrap_or(0o666) & 0o7777,
            major: u32::try_from(device.major()).unwrap_or(0),
            minor: u32::try_from(device.minor()).unwrap_or(0),
            uid: to_host(device.uid()),
            gid: to_host(device.gid()),
        });
    }
    for (path, target) in DEFAULT_LINKS {
        steps.push(Step::Symlink {
            dest: root_path(Path::new(path))?,
            target: cstring(target.as_bytes(), "link")?,
        });
    }
    Ok(steps)
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Mount {
                dest,
                source,
                fstype,
                bind,
                ..
            } => {
                let what = match (bind, source) {
                    (true, Source::Host(path)) => format!("bind of {}", path.to_string_lossy()),
                    _ => fstype
                        .as_ref()
                        .map_or("".into(), |t| t.to_string_lossy().into_owned()),
                };
                write!(f, "{what} at {}", dest.display.display())
            }
            Step::Device {
                dest, major, minor, ..
            } => {
                write!(f, "device {major}:{minor} at {}", dest.display.display())
            }
            Step::Symlink { dest, target } => {
                write!(
                    f,
                    "link {} -> {}",
                    dest.display.display(),
                    target.to_string_lossy()
                )
            }
            Step::Mask { dest } => write!(f, "mask over {}", dest.display.display()),
            Step::ReadOnly { dest } => write!(f, "read-only {}", dest.display.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn root_paths_list_their_parents() {
        let p = RootPath::new(Path::new("/dev//pts/")).unwrap();
        assert_eq!(p.rel.to_str().unwrap(), "dev/pts");
        let comps: Vec<_> = p
            .components
            .iter()
            .map(|(a, b)| (a.to_str().unwrap(), b.to_str().unwrap()))
            .collect();
        assert_eq!(comps, [(".", "dev"), ("dev", "pts")]);
        assert!(RootPath::new(Path::new("/")).is_none());
        assert!(RootPath::new(Path::new("/a/../b")).is_none());
    }

    #[test]
    fn ownership_options_become_host_ids() {
        let block = IdBlock::new(1 << 28, 65536).unwrap();
        let base = 1u32 << 28;
        let host = |fstype, data| container_ids_to_host(fstype, data, block).unwrap();
        assert_eq!(
            host("devpts", "newinstance,gid=5,mode=0620"),
            format!("newinstance,gid={},mode=0620", base + 5)
        );
        assert_eq!(
            host("tmpfs", "mode=755"),
            format!("mode=755,uid={base},gid={base}")
        );
        assert_eq!(host("proc", "hidepid=2"), "hidepid=2");
        assert_eq!(
            host("tmpfs", "uid=70000"),
            format!("uid={},gid={base}", base + 65534)
        );
        // Read as the kernel reads numbers, and every one rewritten: none reaches the kernel
        // as written, where the last would win.
        assert_eq!(
            host("tmpfs", "uid=5,uid=0x0,gid=010"),
            format!("uid={},uid={base},gid={}", base + 5, base + 8)
        );
        for refused in ["uid=0x", "uid=abc", "gid=-1", "uid=", "gid=+-1", "uid=0x+1"] {
            assert!(
                container_ids_to_host("tmpfs", refused, block).is_err(),
                "{refused}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever a spec writes, every ownership option that reaches a tmpfs or devpts names
        /// a host ID of the block, in decimal: none the kernel could read as another's.
        #[test]
        fn ownership_options_only_ever_name_the_blocks_ids(
            words in proptest::collection::vec("(uid|gid|mode|size)=[+0-9xXa-f-]{0,5}", 0..5),
            fstype in proptest::sample::select(vec!["tmpfs", "devpts"]),
        ) {
            let block = IdBlock::new(1 << 28, 65536).unwrap();
            if let Ok(data) = container_ids_to_host(fstype, &words.join(","), block) {
                for word in data.split(',') {
                    if let Some(("uid" | "gid", value)) = word.split_once('=') {
                        let id: u32 = value.parse().unwrap();
                        proptest::prop_assert!(
                            (block.host_start()..block.host_start() + 65536).contains(&id),
                            "{}", data
                        );
                    }
                }
            }
        }
    }

    /// A bind of /usr at `dest` with the comma-separated `options`, as spec JSON.
    fn bind(dest: &str, options: &str) -> String {
        let options: Vec<String> = options.split(',').map(|o| format!("\"{o}\"")).collect();
        format!(
            r#"{{"destination": "{dest}", "type": "bind", "source": "/usr", "options": [{}]}}"#,
            options.join(", ")
        )
    }

    /// A spec over `root` with `mounts` (JSON) and the `linux` section `linux` (JSON).
    fn spec_with(root: &Path, readonly: bool, mounts: &[String], linux: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion": "1.0.2", "root": {{"path": "{}", "readonly": {readonly}}},
                "mounts": [{}], "linux": {linux}}}"#,
            root.display(),
            mounts.join(", ")
        ))
        .unwrap()
    }

    #[test]
    fn a_bind_option_that_would_be_dropped_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let block = IdBlock::new(1 << 28, 65536).unwrap();
        for options in ["rbind,rnosuid", "bind,ro,size=10m"] {
            let spec = spec_with(root.path(), true, &[bind("/usr", options)], "{}");
            let refused = MountPlan::from_spec(&spec, root.path(), block).unwrap_err();
            assert!(
                matches!(
                    refused,
                    PlanError::Options {
                        source: OptionError::NotForBind(_),
                        ..
                    }
                ),
                "{options}: {refused}"
            );
        }
        let spec = spec_with(
            root.path(),
            true,
            &[bind("/usr", "rbind,ro,nosuid,rprivate")],
            "{}",
        );
        MountPlan::from_spec(&spec, root.path(), block).unwrap();
    }

    #[test]
    fn sources_known_to_be_files_are_not_asked_for() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("served/meminfo");
        let mount = format!(
            r#"{{"destination": "/proc/meminfo", "type": "bind", "source": "{}", "options": ["bind", "ro"]}}"#,
            missing.display()
        );
        let mounts = [mount, bind("/usr", "rbind,ro")];
        let spec = spec_with(root.path(), true, &mounts, "{}");
        let block = IdBlock::new(1 << 28, 65536).unwrap();
        let asked = MountPlan::from_spec(&spec, root.path(), block).unwrap_err();
        assert!(matches!(asked, PlanError::BindSource { .. }), "{asked}");
        let plan = MountPlan::from_spec_with_files(&spec, root.path(), block, &[missing.as_path()])
            .unwrap();
        let kind = |i: usize| match &plan.steps[i] {
            Step::Mount { kind, .. } => *kind,
            _ => unreachable!(),
        };
        assert_eq!(kind(0), PointKind::File, "named: a file, unasked");
        assert_eq!(
            kind(1),
            PointKind::Dir,
            "the rest still asked: /usr is a directory"
        );
    }

    #[test]
    fn remountable_read_only_defers_the_root_and_plain_read_only_binds_only() {
        let root = tempfile::tempdir().unwrap();
        let mounts = [
            bind("/data", "rbind,ro"),
            bind("/rw", "rbind"),
            bind("/policy-ro", "rbind,x-eci.idmap-if-supported,rro"),
            bind("/mapped", "rbind,ro,idmap"),
            bind("/proc/x", "rbind,ro"),
            bind("/dev/x", "rbind,ro"),
        ];
        let spec = spec_with(root.path(), true, &mounts, "{}");
        let block = IdBlock::new(1 << 28, 65536).unwrap();
        let plan = MountPlan::from_spec(&spec, root.path(), block).unwrap();
        assert!(plan.root_readonly && plan.deferred_read_only.is_empty());
        assert!(!plan.root_may_become_writable());
        let eligible: Vec<PathBuf> = ["/data", "/policy-ro", "/mapped", "/proc/x", "/dev/x"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let plan = plan.with_remountable_read_only(&eligible);
        assert!(!plan.root_readonly && plan.root_read_only_deferred);
        assert!(
            plan.root_may_become_writable(),
            "the container may remount it"
        );
        assert_eq!(plan.deferred_read_only, [0], "only /data");
        let read_only = |i: usize| match &plan.steps[i] {
            Step::Mount { flags, idmap, .. } => (flags & libc::MS_RDONLY != 0, *idmap),
            _ => unreachable!(),
        };
        assert_eq!(
            read_only(0),
            (false, Idmap::No),
            "mounted writable, not idmapped"
        );
        assert_eq!(
            read_only(2),
            (true, Idmap::Try),
            "read-only all through (the path rules' doing): stays locked"
        );
        assert_eq!(read_only(3), (true, Idmap::Required));
        assert_eq!(read_only(4), (true, Idmap::No), "idmapped only when asked");
        assert_eq!(read_only(5), (true, Idmap::No));
    }

    #[test]
    fn idmap_covers_the_bind_alone_and_ridmap_the_mounts_under_it() {
        let root = tempfile::tempdir().unwrap();
        let mounts = [
            bind("/top", "rbind,idmap"),
            bind("/all", "rbind,ridmap"),
            bind("/ro", "rbind,ro"),
            bind("/asked", "rbind,ro,x-eci.idmap-if-supported"),
        ];
        let spec = spec_with(root.path(), false, &mounts, "{}");
        let block = IdBlock::new(1 << 28, 65536).unwrap();
        let plan = MountPlan::from_spec(&spec, root.path(), block).unwrap();
        let idmaps: Vec<Idmap> = plan
            .steps
            .iter()
            .filter_map(|step| match step {
                Step::Mount { idmap, .. } => Some(*idmap),
                _ => None,
            })
            .collect();
        assert_eq!(
            idmaps,
            [
                Idmap::Required,
                Idmap::RequiredWithSubmounts,
                Idmap::No,
                Idmap::Try
            ]
        );
    }

    #[test]
    fn only_lone_plain_binds_outside_the_kernel_trees_become_late_mounts() {
        let root = tempfile::tempdir().unwrap();
        let mounts = [
            bind("/data", "rbind,ro,rprivate"),
            bind("/etc/hosts", "bind"),
            bind("/a", "rbind"),
            bind("/a/b", "rbind"),
            bind("/proc/x", "rbind,ro"),
            bind("/shared", "rbind,rshared"),
            bind("/mapped", "rbind,idmap"),
            bind("/sync", "rbind,sync"),
            bind("/plain", "bind,nosuid,nodev,noatime"),
        ];
        let spec = spec_with(
            root.path(),
            false,
            &mounts,
            r#"{"readonlyPaths": ["/etc"]}"#,
        );
        let block = IdBlock::new(1 << 28, 65536).unwrap();
        let plan = MountPlan::from_spec(&spec, root.path(), block).unwrap();
        assert!(!plan.has_late_mounts());
        let plan = plan.with_unmountable();
        assert_eq!(
            plan.late_mount_points(),
            [Path::new("/data"), Path::new("/plain")]
        );
    }

    proptest! {
        #[test]
        fn every_prefix_is_listed_once(parts in proptest::collection::vec("[a-z]{1,5}", 1..6)) {
            let path = PathBuf::from(format!("/{}", parts.join("/")));
            let p = RootPath::new(&path).unwrap();
            prop_assert_eq!(p.components.len(), parts.len());
            for (i, (parent, name)) in p.components.iter().enumerate() {
                prop_assert_eq!(name.to_str().unwrap(), parts[i].as_str());
                let expected = if i == 0 { ".".to_string() } else { parts[..i].join("/") };
                prop_assert_eq!(parent.to_str().unwrap(), expected.as_str());
            }
        }
    }
}
