//! OCI spec hardening: a spec in, a spec that eci will run and a report of what changed out.
//!
//! Isolation is not optional: a user namespace with the container's own ID block is always used,
//! sharing the host's namespaces is refused, and only another container's network, IPC and UTS
//! namespaces may be joined (which ones are the runtime's to check: [`joined_namespaces`]),
//! bind sources are checked against the path policy, devices are cut to a safe set and the default masks always apply. Anything that cannot
//! be made safe is an error that names what was wrong.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Linux, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, LinuxResources,
    Mount, Spec,
};

use crate::caps::{number, CapSet};
use crate::ids::{validate_mappings, IdBlock, IdMapping, MappingError};
use crate::image::{ImageGrant, ImageIdentity, KnownDigests};
use crate::paths::{PathDecision, ResolvedPath, RuleOrigin};
use crate::settings::{Policy, ProcFile, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
use crate::volume::{volume_data, DirIdentity, EngineVolume, VolumeData, VolumeSource};

/// What hardening needs besides the spec.
#[derive(Debug, Clone, Copy)]
pub struct HardenContext<'a> {
    /// The settings.
    pub policy: &'a Policy,
    /// The host IDs allocated to this container.
    pub block: IdBlock,
    /// The runtime's own capability bounding set; the container never gets more.
    pub runtime_caps: CapSet,
}

/// The image a container runs, for deciding whether it may bind-mount the Docker socket.
#[derive(Debug, Clone, Copy)]
pub struct ImageContext<'a> {
    /// The image: the reference the container was created with and its repository digest.
    pub image: &'a ImageIdentity,
    /// The allowed image this one was built from, if the caller found one (it counts only with
    /// `allowDerivedImages`).
    pub base: Option<&'a ImageIdentity>,
    /// Digests the registry gives for the tags of allowed images.
    pub known: &'a KnownDigests,
}

/// The host paths of the Docker Engine socket. Binding one is refused unless the container's
/// image is in `dockerSocketMount.imageList`, whatever the path rules say.
pub const DOCKER_SOCKETS: &[&str] = &["/run/docker.sock", "/var/run/docker.sock"];

/// A spec that is safe to run, and what was changed to make it so.
#[derive(Debug, Clone)]
pub struct Hardened {
    /// The spec to run.
    pub spec: Spec,
    /// Every change made, in order.
    pub report: Vec<Change>,
}

/// One change hardening made to the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A namespace the spec left out was added.
    AddedNamespace(&'static str),
    /// The spec's uid or gid mappings were replaced by the container's block.
    MappedToBlock {
        /// "uid" or "gid".
        kind: &'static str,
        /// The mapping used.
        mapping: IdMapping,
    },
    /// A default mount the container needs was added.
    AddedMount(PathBuf),
    /// A bind mount of a read-only shared path was made read-only (all through, and private
    /// where the spec asked for a slave or shared one).
    ForcedReadOnly(PathBuf),
    /// Default masked paths the spec left out were added.
    AddedMaskedPaths(Vec<String>),
    /// Default read-only paths the spec left out were added.
    AddedReadonlyPaths(Vec<String>),
    /// A device outside the safe set was dropped.
    DroppedDevice(PathBuf),
    /// The device cgroup rules were replaced by the safe set.
    RestrictedDeviceCgroup,
    /// Capabilities beyond the runtime's own were dropped.
    DroppedCapabilities(Vec<String>),
    /// A limit that would reach beyond the container was lowered: RLIMIT_RTPRIO, which lets a
    /// process without CAP_SYS_NICE in the host's user namespace take a real-time policy and
    /// starve the host's CPUs.
    ClampedRlimit(&'static str),
    /// A negative `process.oomScoreAdj` (the value asked for) was raised to 0: the host's
    /// out-of-memory killer would take host processes before the container's.
    RaisedOomScoreAdj(i32),
    /// A bind of the Docker socket was allowed for the container's image.
    DockerSocketAllowed {
        /// The mount's destination.
        destination: PathBuf,
        /// The image, as the container was created with it.
        image: String,
        /// The `imageList` entry that allowed it.
        entry: String,
        /// The image was allowed because it was built from an allowed image.
        derived: bool,
    },
    /// A bind of a Docker volume's data directory, beneath the engine's data root, was allowed
    /// for what the engine has there.
    EngineVolume {
        /// The mount's destination.
        destination: PathBuf,
        /// The volume's name.
        name: String,
        /// What the engine has at its data directory.
        source: VolumeSource,
        /// Whether the bind was idmapped (its files show their owners on disk).
        idmapped: bool,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddedNamespace(ns) => write!(f, "added a new {ns} namespace"),
            Change::MappedToBlock { kind, mapping } => {
                write!(f, "{kind} mapping set to the container's block: {mapping}")
            }
            Change::AddedMount(dest) => write!(f, "added the default mount at {}", dest.display()),
            Change::ForcedReadOnly(dest) => {
                write!(
                    f,
                    "bind mount at {} made read-only (shared read-only)",
                    dest.display()
                )
            }
            Change::AddedMaskedPaths(paths) => write!(f, "masked {}", paths.join(", ")),
            Change::AddedReadonlyPaths(paths) => write!(f, "made read-only {}", paths.join(", ")),
            Change::DroppedDevice(path) => {
                write!(f, "dropped device {} (not in the safe set)", path.display())
            }
            Change::RestrictedDeviceCgroup => write!(f, "device cgroup limited to the safe set"),
            Change::ClampedRlimit(name) => {
                write!(f, "{name} set to 0 (real-time scheduling reaches the host)")
            }
            Change::RaisedOomScoreAdj(asked) => {
                write!(
                    f,
                    "oomScoreAdj {asked} raised to 0 (the host's processes come first)"
                )
            }
            Change::DockerSocketAllowed {
                destination,
                image,
                entry,
                derived,
            } => {
                let how = if *derived {
                    "built from an image matching"
                } else {
                    "matching"
                };
                write!(
                    f,
                    "Docker socket bound at {} for image {image}, {how} imageList entry {entry}",
                    destination.display()
                )
            }
            Change::EngineVolume {
                destination,
                name,
                source,
                idmapped,
            } => {
                let what = match source {
                    VolumeSource::Directory => "a directory".to_string(),
                    VolumeSource::Tmpfs => "a tmpfs".to_string(),
                    VolumeSource::Bind { device } => format!("a bind of {}", device.display()),
                    VolumeSource::Other { what } => what.clone(),
                };
                let idmapped = if *idmapped { ", idmapped" } else { "" };
                write!(
                    f,
                    "Docker volume {name} ({what}{idmapped}) bound at {}",
                    destination.display()
                )
            }
            Change::DroppedCapabilities(caps) => {
                write!(
                    f,
                    "dropped capabilities the runtime lacks: {}",
                    caps.join(", ")
                )
            }
        }
    }
}

/// Why a spec cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    /// `root` or `root.path` is missing.
    #[error("the spec has no root filesystem (root.path)")]
    MissingRoot,
    /// `process` or `process.args` is missing.
    #[error("the spec has no process to run (process.args is empty)")]
    MissingProcess,
    /// `process.cwd` is relative.
    #[error("process.cwd '{0}' is not absolute")]
    RelativeCwd(PathBuf),
    /// A namespace entry with a path, of a type that is always the container's own.
    #[error("joining an existing {ns} namespace ({}) is refused: only network, IPC and UTS namespaces may be shared with another container", path.display())]
    JoinNamespace {
        /// The namespace type.
        ns: &'static str,
        /// The path the spec names.
        path: PathBuf,
    },
    /// A namespace entry whose path is empty or relative.
    #[error("linux.namespaces: the {ns} namespace's path '{}' is not absolute", path.display())]
    RelativeNamespacePath {
        /// The namespace type.
        ns: &'static str,
        /// The path the spec names.
        path: PathBuf,
    },
    /// A sysctl of a namespace the container joins rather than owns.
    #[error("sysctl {key} lives in the {ns} namespace the container joins: it is another container's to set")]
    SysctlOfJoined {
        /// The sysctl.
        key: String,
        /// The joined namespace type.
        ns: &'static str,
    },
    /// A hostname or domain name with a joined UTS namespace.
    #[error("the spec sets a hostname or domain name but joins another container's UTS namespace")]
    HostnameOfJoined,
    /// A bind asks for an idmapped mount (`idmap`, `ridmap`) of a host path whose files may
    /// not be shown with their owners on disk.
    #[error("the bind at {} asks for an idmapped mount ({option}) of {}: container root would act as the owner of every file there (host root's and host users' alike); only engine volumes no host user can reach are idmapped so (a path shared read-only is idmapped for the host's system IDs alone, without asking)", dest.display(), path.display())]
    IdmapRefused {
        /// The bind's destination.
        dest: PathBuf,
        /// The host path.
        path: PathBuf,
        /// The option that asked.
        option: String,
    },
    /// A namespace missing from the spec, which means sharing the host's.
    #[error("the spec shares the host's {0} namespace (no '{0}' entry in linux.namespaces); host namespaces are refused")]
    HostNamespace(&'static str),
    /// The same namespace type listed twice.
    #[error("linux.namespaces lists the {0} namespace twice")]
    DuplicateNamespace(&'static str),
    /// The spec's own ID mappings are invalid.
    #[error("linux.{kind}Mappings: {source}")]
    Mappings {
        /// "uid" or "gid".
        kind: &'static str,
        /// What is wrong with them.
        source: MappingError,
    },
    /// The process user is outside the container's block.
    #[error("process.user {kind} {id} is outside the container's {size} IDs")]
    UserOutsideBlock {
        /// "uid", "gid" or "additional gid".
        kind: &'static str,
        /// The ID.
        id: u32,
        /// The block size.
        size: u32,
    },
    /// A mount destination that is not absolute.
    #[error("mount destination '{0}' is not absolute")]
    RelativeMountDestination(PathBuf),
    /// A mount over the container's root.
    #[error("mount destination '/' would cover the root filesystem")]
    MountOverRoot,
    /// A procfs or sysfs mounted anywhere but /proc or /sys, where the masks and the virtual
    /// files would not cover it.
    #[error("a {fstype} mount at {} is refused: {fstype} is mounted at {} only, where its masks and virtual files apply", dest.display(), home.display())]
    KernelFsElsewhere {
        /// "proc" or "sysfs".
        fstype: &'static str,
        /// Where the spec mounts it.
        dest: PathBuf,
        /// Where it may be mounted.
        home: &'static Path,
    },
    /// A bind mount without a source.
    #[error("bind mount at {0} has no source")]
    BindWithoutSource(PathBuf),
    /// A bind mount source the resolver could not resolve.
    #[error("bind mount source {}: {source}", path.display())]
    UnresolvableSource {
        /// The source as given.
        path: PathBuf,
        /// Why it could not be resolved.
        source: std::io::Error,
    },
    /// A bind mount source beyond a directory only its owner or group may pass: shared paths
    /// give the container what any host user has there, not what the mounter (root) reaches.
    #[error("bind mount source {}: {} lets only its owner and group through; a container gets only what any host user reaches in a shared path", path.display(), closed.display())]
    ClosedOnTheWay {
        /// The resolved source.
        path: PathBuf,
        /// The directory that keeps others out.
        closed: PathBuf,
    },
    /// A bind mount that would show a mount of the host's kernel objects (a procfs, a sysfs, a
    /// devtmpfs...) made at or under a shared path: `arch-chroot /mnt`, a debootstrap chroot.
    #[error("bind mount of host path {} is refused: it would show {}, a {fstype} mount of the host's (the host's processes, devices or kernel objects, unmasked); bind a path without it, or without rbind", path.display(), mount.display())]
    KernelFilesystem {
        /// The resolved source.
        path: PathBuf,
        /// Where the host's kernel filesystem is mounted.
        mount: PathBuf,
        /// Its type.
        fstype: String,
    },
    /// A bind mount of a restricted host path.
    #[error("bind mount of host path {} is refused by the rule for {} ({origin})", path.display(), rule.display())]
    RestrictedSource {
        /// The resolved host path.
        path: PathBuf,
        /// The rule's path.
        rule: PathBuf,
        /// Where the rule came from.
        origin: RuleOrigin,
    },
    /// A bind mount of a shared tree with a restricted path beneath it.
    #[error("bind mount of host path {} is refused: it holds {}, which is restricted ({origin})", path.display(), rule.display())]
    HoldsRestricted {
        /// The resolved host path.
        path: PathBuf,
        /// The restricted rule's path, beneath it.
        rule: PathBuf,
        /// Where the rule came from.
        origin: RuleOrigin,
    },
    /// A bind mount of a tree shared writable with a path shared read-only beneath it.
    #[error("bind mount of host path {} is refused: it holds {}, which is shared read-only ({origin}); bind that read-only, and the paths beside it as they are shared", path.display(), rule.display())]
    HoldsReadOnlyShare {
        /// The resolved host path.
        path: PathBuf,
        /// The read-only share's path, beneath it.
        rule: PathBuf,
        /// Where the rule came from.
        origin: RuleOrigin,
    },
    /// A bind mount of the Docker socket by an image that may not mount it.
    #[error("bind mount of the Docker socket {} is refused: it is a restricted path, and image {} is not in dockerSocketMount.imageList", path.display(), image.as_deref().unwrap_or("(unknown)"))]
    DockerSocket {
        /// The resolved host path of the socket.
        path: PathBuf,
        /// The container's image, if the caller named one.
        image: Option<String>,
    },
    /// A Docker volume whose data directory could not be inspected.
    #[error("bind mount of Docker volume data {}: finding what the engine has there: {source}", path.display())]
    UnreadableVolume {
        /// The volume's data directory.
        path: PathBuf,
        /// Why it could not be inspected.
        source: std::io::Error,
    },
    /// A Docker volume the engine mounted something at that may hold the host's own files.
    #[error("bind mount of Docker volume {name} is refused: the engine mounted {what} at {}; only directory, tmpfs and bind volumes (of paths a bind may name) are allowed", path.display())]
    VolumeFilesystem {
        /// The volume's name.
        name: String,
        /// Its data directory.
        path: PathBuf,
        /// What is mounted there.
        what: String,
    },
    /// A Docker volume that binds a host path the rules refuse.
    #[error("bind mount of Docker volume {name} is refused: it binds host path {}, and {reason}", device.display())]
    VolumeDevice {
        /// The volume's name.
        name: String,
        /// The host path it binds.
        device: PathBuf,
        /// Why a bind of that path is refused.
        reason: Box<HardenError>,
    },
    /// A bind mount of a host path no rule shares.
    #[error("bind mount of host path {} is refused: it is not in the shared paths", path.display())]
    NotSharedSource {
        /// The resolved host path.
        path: PathBuf,
    },
    /// A sysctl that is not namespaced would change the host.
    #[error("sysctl {0} is not namespaced: setting it would change the host")]
    GlobalSysctl(String),
    /// A sysctl key with an empty, `.` or `..` part, which the kernel would read as another
    /// file than its spelling says.
    #[error(
        "sysctl {0:?} is not a sysctl name: each part between dots (or slashes) must be a name"
    )]
    SysctlName(String),
    /// A hook outside the allowed directories (hooks run on the host as root).
    #[error("hook {} is outside the allowed hook directories", .0.display())]
    HookNotAllowed(PathBuf),
    /// A `linux.resources.unified` entry that is not a limit on the container's own cgroup.
    #[error("linux.resources.unified key '{key}' is refused: {reason}")]
    UnifiedKey {
        /// The key as given.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

/// Namespaces whose absence from the spec means sharing the host's; refused.
const REQUIRED_NAMESPACES: [LinuxNamespaceType; 4] = [
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
];

/// Namespaces a container may join (another container's, which the runtime checks) rather
/// than get its own of: sharing them gives the joiner no privilege over them.
const JOINABLE_NAMESPACES: [LinuxNamespaceType; 3] = [
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
];

/// The existing namespaces a spec joins (type and path), in the order listed. Hardening lets
/// through only network, IPC and UTS ones with absolute paths; the runtime must still check
/// that each path leads to another container's namespace and join what it opened.
///
/// ```
/// use eci_policy::harden::joined_namespaces;
/// use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, Spec};
///
/// let mut spec = Spec::default();
/// let mut linux = spec.linux().clone().unwrap();
/// let mut namespaces = linux.namespaces().clone().unwrap();
/// namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network);
/// let net = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
/// namespaces.push(net.path("/proc/42/ns/net").build().unwrap());
/// linux.set_namespaces(Some(namespaces));
/// spec.set_linux(Some(linux));
/// let joined = joined_namespaces(&spec);
/// assert_eq!(joined, [(LinuxNamespaceType::Network, "/proc/42/ns/net".into())]);
/// ```
pub fn joined_namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, PathBuf)> {
    spec.linux()
        .iter()
        .flat_map(|l| l.namespaces().iter().flatten())
        .filter_map(|ns| Some((ns.typ(), ns.path().clone()?)))
        .collect()
}

/// The namespace a namespaced sysctl lives in.
fn sysctl_namespace(key: &str) -> LinuxNamespaceType {
    if key == "kernel.hostname" || key == "kernel.domainname" {
        LinuxNamespaceType::Uts
    } else if key.starts_with("net.") {
        LinuxNamespaceType::Network
    } else {
        LinuxNamespaceType::Ipc
    }
}

/// Refuses what the container would set in a namespace it joins: another container's.
fn check_joined_settings(spec: &Spec, linux: &Linux) -> Result<(), HardenError> {
    let joined: Vec<LinuxNamespaceType> = joined_namespaces(spec)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let named = |name: &Option<String>| name.as_ref().is_some_and(|n| !n.is_empty());
    let names_host = named(spec.hostname()) || named(spec.domainname());
    if joined.contains(&LinuxNamespaceType::Uts) && names_host {
        return Err(HardenError::HostnameOfJoined);
    }
    // Each key as checked (hardening refused those without a name): slashes or dots.
    let sysctls = linux.sysctl().iter().flat_map(|map| map.keys());
    let named = sysctls.filter_map(|key| Some((key, sysctl_namespace(&sysctl_name(key)?))));
    if let Some((key, ns)) = named.into_iter().find(|(_, ns)| joined.contains(ns)) {
        return Err(HardenError::SysctlOfJoined {
            key: key.clone(),
            ns: namespace_name(ns),
        });
    }
    Ok(())
}

/// Namespaces eci adds when the spec leaves them out.
const ADDED_NAMESPACES: [LinuxNamespaceType; 3] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Cgroup,
];

/// The name OCI uses for a namespace type.
pub fn namespace_name(ns: LinuxNamespaceType) -> &'static str {
    match ns {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// Character devices a container may have: (major, minor, path). Minor `None` means any.
pub const SAFE_DEVICES: &[(i64, Option<i64>, &str)] = &[
    (1, Some(3), "/dev/null"),
    (1, Some(5), "/dev/zero"),
    (1, Some(7), "/dev/full"),
    (1, Some(8), "/dev/random"),
    (1, Some(9), "/dev/urandom"),
    (5, Some(0), "/dev/tty"),
    (5, Some(2), "/dev/ptmx"),
    (136, None, "/dev/pts/*"),
    (10, Some(229), "/dev/fuse"),
    (10, Some(200), "/dev/net/tun"),
];

fn is_safe_device(typ: LinuxDeviceType, major: i64, minor: i64) -> bool {
    matches!(typ, LinuxDeviceType::C | LinuxDeviceType::U)
        && SAFE_DEVICES
            .iter()
            .any(|(ma, mi, _)| *ma == major && mi.is_none_or(|mi| mi == minor))
}

/// What hardening asks of the host about the paths a spec names: the facts it cannot know
/// without syscalls. A closure `FnMut(&Path) -> io::Result<PathBuf>` is one that resolves paths
/// and knows of no engine volume.
pub trait HostPaths {
    /// `path` as a host path with every symlink resolved (relative paths are the resolver's to
    /// interpret, usually against the bundle directory).
    fn resolve(&mut self, path: &Path) -> std::io::Result<PathBuf>;

    /// What a Docker engine has at `data`, a resolved path shaped as a volume's data directory,
    /// or `None` when no engine made it (see [`crate::volume`]). Asked only of a path the rules
    /// would refuse otherwise.
    fn engine_volume(&mut self, data: &VolumeData<'_>) -> std::io::Result<Option<EngineVolume>> {
        let _ = data;
        Ok(None)
    }

    /// The first directory strictly between `rule`, a shared path, and `path`, a resolved path
    /// below it, that host users may not search unless they own it or are in its group (no
    /// search bit for others): what lies beyond it is not what any host user has, though the
    /// mounter, as root, would reach it. `None` when each lets others through (or the resolver
    /// cannot tell: a closure knows nothing of the host's directories).
    fn closed_between(&mut self, rule: &Path, path: &Path) -> std::io::Result<Option<PathBuf>> {
        let _ = (rule, path);
        Ok(None)
    }

    /// A mount of a kernel filesystem ([`shows_host_kernel_objects`]) that a bind of `path`, a
    /// resolved path, would show: (its mount point, its type). The mount `path` lies in, and,
    /// for a `recursive` bind, any mount beneath it. `None` when there is none (or the
    /// resolver cannot tell).
    fn kernel_mount(
        &mut self,
        path: &Path,
        recursive: bool,
    ) -> std::io::Result<Option<(PathBuf, String)>> {
        let _ = (path, recursive);
        Ok(None)
    }
}

/// Filesystems whose files are the kernel's objects as the mounting namespace sees them (the
/// host's, for a mount of the host's): processes, devices, kernel state, other namespaces.
/// A container gets its own, masked, from the runtime; one of the host's reached through a
/// shared path would show it all. (tmpfs, FUSE, disks and network filesystems hold files.)
///
/// ```
/// use eci_policy::harden::shows_host_kernel_objects;
/// assert!(shows_host_kernel_objects("proc"));
/// assert!(shows_host_kernel_objects("devtmpfs"));
/// assert!(!shows_host_kernel_objects("tmpfs"));
/// ```
pub fn shows_host_kernel_objects(fstype: &str) -> bool {
    const KERNEL: [&str; 22] = [
        "nfsd",
        "resctrl",
        "smackfs",
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "debugfs",
        "tracefs",
        "securityfs",
        "cgroup",
        "cgroup2",
        "bpf",
        "configfs",
        "efivarfs",
        "pstore",
        "fusectl",
        "mqueue",
        "binfmt_misc",
        "nsfs",
        "rpc_pipefs",
        "selinuxfs",
    ];
    KERNEL.contains(&fstype)
}

/// The error for a question about the host that the source the spec named `asked` raised and
/// that could not be answered.
fn unresolvable(asked: &Path) -> impl FnOnce(std::io::Error) -> HardenError + '_ {
    move |source| HardenError::UnresolvableSource {
        path: asked.to_path_buf(),
        source,
    }
}

/// Refuses a bind of the resolved `path` that would show a host kernel filesystem
/// ([`HostPaths::kernel_mount`]); `asked` is the path as the spec named it.
fn refuse_kernel_mount(
    host: &mut dyn HostPaths,
    path: &Path,
    recursive: bool,
    asked: &Path,
) -> Result<(), HardenError> {
    let found = host
        .kernel_mount(path, recursive)
        .map_err(unresolvable(asked))?;
    match found {
        Some((mount, fstype)) => Err(HardenError::KernelFilesystem {
            path: path.to_path_buf(),
            mount,
            fstype,
        }),
        None => Ok(()),
    }
}

impl<F: FnMut(&Path) -> std::io::Result<PathBuf>> HostPaths for F {
    fn resolve(&mut self, path: &Path) -> std::io::Result<PathBuf> {
        self(path)
    }
}

/// Hardens `spec` for a container that owns `ctx.block`. `host` resolves bind mount sources and
/// hook paths and tells what an engine has at a volume's data directory.
///
/// ```
/// use eci_policy::harden::{harden, Change, HardenContext};
/// use eci_policy::{caps::CapSet, ids::IdBlock, Policy};
/// use oci_spec::runtime::Spec;
/// use std::path::Path;
///
/// let policy = Policy::default();
/// let ctx = HardenContext { policy: &policy, block: IdBlock::new(1 << 28, 65536).unwrap(), runtime_caps: CapSet::ALL };
/// let hardened = harden(Spec::default(), &ctx, &mut |p: &Path| Ok(p.to_path_buf())).unwrap();
/// assert!(hardened.report.contains(&Change::AddedNamespace("user")));
/// let uid_map = hardened.spec.linux().as_ref().unwrap().uid_mappings().clone().unwrap();
/// assert_eq!(uid_map[0].host_id(), 1 << 28);
/// ```
pub fn harden(
    spec: Spec,
    ctx: &HardenContext<'_>,
    host: &mut dyn HostPaths,
) -> Result<Hardened, HardenError> {
    harden_with_image(spec, ctx, None, host)
}

/// [`harden`] for a container whose image is known, so that a bind of the Docker socket can be
/// allowed for images in `dockerSocketMount.imageList`. Without an image the socket is refused.
pub fn harden_with_image(
    mut spec: Spec,
    ctx: &HardenContext<'_>,
    image: Option<&ImageContext<'_>>,
    host: &mut dyn HostPaths,
) -> Result<Hardened, HardenError> {
    let mut report = Vec::new();
    check_root_and_process(&spec, ctx.block)?;
    let mut linux = spec.linux().clone().unwrap_or_default();

    let boot_clock = ctx.policy.procfs.get(ProcFile::Uptime);
    let namespaces = harden_namespaces(
        linux.namespaces().clone().unwrap_or_default(),
        boot_clock,
        &mut report,
    )?;
    linux.set_namespaces(Some(namespaces));
    for (kind, mappings) in [("uid", linux.uid_mappings()), ("gid", linux.gid_mappings())] {
        if let Some(list) = mappings {
            let list: Vec<IdMapping> = list.iter().map(to_mapping).collect();
            validate_mappings(&list).map_err(|source| HardenError::Mappings { kind, source })?;
        }
        report.push(Change::MappedToBlock {
            kind,
            mapping: ctx.block.mapping(),
        });
    }
    let block_mapping = vec![from_mapping(ctx.block.mapping())];
    linux.set_uid_mappings(Some(block_mapping.clone()));
    linux.set_gid_mappings(Some(block_mapping));

    let binds = BindCheck { ctx, image, host };
    let mounts = harden_mounts(
        spec.mounts().clone().unwrap_or_default(),
        binds,
        &mut report,
    )?;
    spec.set_mounts(Some(mounts));

    let masked = union_with_defaults(linux.masked_paths(), DEFAULT_MASKED_PATHS);
    if !masked.1.is_empty() {
        report.push(Change::AddedMaskedPaths(masked.1));
    }
    linux.set_masked_paths(Some(masked.0));
    let readonly = union_with_defaults(linux.readonly_paths(), DEFAULT_READONLY_PATHS);
    if !readonly.1.is_empty() {
        report.push(Change::AddedReadonlyPaths(readonly.1));
    }
    linux.set_readonly_paths(Some(readonly.0));

    harden_devices(&mut linux, &mut report);
    if let Some((key, reason)) = refused_unified_key(linux.resources().as_ref()) {
        return Err(HardenError::UnifiedKey { key, reason });
    }
    for key in linux.sysctl().iter().flat_map(|sysctls| sysctls.keys()) {
        let Some(name) = sysctl_name(key) else {
            return Err(HardenError::SysctlName(key.clone()));
        };
        if !is_namespaced_sysctl(&name) {
            return Err(HardenError::GlobalSysctl(key.clone()));
        }
    }
    check_joined_settings(&spec, &linux)?;
    spec.set_linux(Some(linux));
    check_hooks(&spec, ctx.policy, host)?;
    harden_capabilities(&mut spec, ctx.runtime_caps, &mut report);
    clamp_rlimits(&mut spec, &mut report);
    settle_oom_score_adj(&mut spec, &mut report);
    Ok(Hardened { spec, report })
}

/// Gives the process an OOM score adjustment of 0 unless the spec asks for more: the value is
/// otherwise inherited from whoever spawns it (containerd's shim runs at -998), and a negative
/// one makes the host's out-of-memory killer take host processes before the container's. A
/// negative value asked for is raised to 0 and reported.
fn settle_oom_score_adj(spec: &mut Spec, report: &mut Vec<Change>) {
    let Some(process) = spec.process_mut() else {
        return;
    };
    let asked = process.oom_score_adj();
    if let Some(value) = asked.filter(|value| *value < 0) {
        report.push(Change::RaisedOomScoreAdj(value));
    }
    process.set_oom_score_adj(Some(asked.unwrap_or(0).max(0)));
}

/// The most RLIMIT_NICE may be: a nice value down to 0 (`20 - limit`), an ordinary process's.
const MOST_RLIMIT_NICE: u64 = 20;

/// RLIMIT_RTPRIO at 0 and RLIMIT_NICE at most 20, whether or not the spec lists them (the
/// process would otherwise inherit the runtime's): the kernel lets a process raise its own
/// priority within them without CAP_SYS_NICE, which the container's root holds only in its user
/// namespace, and a real-time policy or a negative nice value would take the host's CPUs ahead
/// of every ordinary process. A spec without a process is left alone (the hardening refuses it
/// elsewhere).
fn clamp_rlimits(spec: &mut Spec, report: &mut Vec<Change>) {
    use oci_spec::runtime::{PosixRlimitBuilder, PosixRlimitType};
    let Some(mut process) = spec.process().clone() else {
        return;
    };
    let mut rlimits = process.rlimits().clone().unwrap_or_default();
    for (typ, most, name) in [
        (PosixRlimitType::RlimitRtprio, 0, "RLIMIT_RTPRIO"),
        (PosixRlimitType::RlimitNice, MOST_RLIMIT_NICE, "RLIMIT_NICE"),
    ] {
        let asked = rlimits.iter().filter(|limit| limit.typ() == typ);
        let (soft, hard) = asked.fold((0, 0), |(soft, hard), limit| {
            (limit.soft().max(soft), limit.hard().max(hard))
        });
        if soft > most || hard > most {
            report.push(Change::ClampedRlimit(name));
        }
        rlimits.retain(|limit| limit.typ() != typ);
        let clamped = PosixRlimitBuilder::default()
            .typ(typ)
            .soft(soft.min(most))
            .hard(hard.min(most))
            .build();
        // The builder fails only without a type, which it has.
        rlimits.extend(clamped.ok());
    }
    process.set_rlimits(Some(rlimits));
    spec.set_process(Some(process));
}

fn to_mapping(m: &LinuxIdMapping) -> IdMapping {
    IdMapping {
        container_start: m.container_id(),
        host_start: m.host_id(),
        size: m.size(),
    }
}

fn from_mapping(m: IdMapping) -> LinuxIdMapping {
    LinuxIdMappingBuilder::default()
        .container_id(m.container_start)
        .host_id(m.host_start)
        .size(m.size)
        .build()
        .expect("every field of an ID mapping is set")
}

fn check_root_and_process(spec: &Spec, block: IdBlock) -> Result<(), HardenError> {
    match spec.root() {
        Some(root) if !root.path().as_os_str().is_empty() => {}
        _ => return Err(HardenError::MissingRoot),
    }
    let process = spec.process().as_ref().ok_or(HardenError::MissingProcess)?;
    if process.args().as_ref().is_none_or(|args| args.is_empty()) {
        return Err(HardenError::MissingProcess);
    }
    if !process.cwd().is_absolute() {
        return Err(HardenError::RelativeCwd(process.cwd().clone()));
    }
    let user = process.user();
    let extra = user.additional_gids().clone().unwrap_or_default();
    let ids = [("uid", user.uid()), ("gid", user.gid())]
        .into_iter()
        .chain(extra.into_iter().map(|gid| ("additional gid", gid)));
    for (kind, id) in ids {
        if block.to_host(id).is_none() {
            return Err(HardenError::UserOutsideBlock {
                kind,
                id,
                size: block.size(),
            });
        }
    }
    Ok(())
}

/// Checks the spec's namespaces and adds the missing ones eci always gives; with `boot_clock`
/// (the uptime setting) also a time namespace, in which the runtime starts the boot clock at
/// zero.
fn harden_namespaces(
    mut list: Vec<LinuxNamespace>,
    boot_clock: bool,
    report: &mut Vec<Change>,
) -> Result<Vec<LinuxNamespace>, HardenError> {
    let mut seen = HashSet::new();
    for ns in &list {
        let name = namespace_name(ns.typ());
        if let Some(path) = ns.path() {
            if !JOINABLE_NAMESPACES.contains(&ns.typ()) {
                return Err(HardenError::JoinNamespace {
                    ns: name,
                    path: path.clone(),
                });
            }
            if !path.is_absolute() {
                return Err(HardenError::RelativeNamespacePath {
                    ns: name,
                    path: path.clone(),
                });
            }
        }
        if !seen.insert(ns.typ()) {
            return Err(HardenError::DuplicateNamespace(name));
        }
    }
    if let Some(missing) = REQUIRED_NAMESPACES.iter().find(|ns| !seen.contains(ns)) {
        return Err(HardenError::HostNamespace(namespace_name(*missing)));
    }
    let time = boot_clock.then_some(LinuxNamespaceType::Time);
    let added = ADDED_NAMESPACES.iter().chain(time.as_ref());
    for ns in added.filter(|ns| !seen.contains(ns)) {
        let mut entry = LinuxNamespace::default();
        entry.set_typ(*ns);
        list.push(entry);
        report.push(Change::AddedNamespace(namespace_name(*ns)));
    }
    Ok(list)
}

/// True for a mount the spec asks to be a bind mount.
pub fn is_bind(mount: &Mount) -> bool {
    mount.typ().as_deref() == Some("bind")
        || mount
            .options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"))
}

/// What checking a bind mount's source needs.
struct BindCheck<'c, 'a> {
    ctx: &'c HardenContext<'a>,
    image: Option<&'c ImageContext<'c>>,
    host: &'c mut dyn HostPaths,
}

fn harden_mounts(
    mounts: Vec<Mount>,
    mut binds: BindCheck<'_, '_>,
    report: &mut Vec<Change>,
) -> Result<Vec<Mount>, HardenError> {
    let mut out = Vec::with_capacity(mounts.len() + DEFAULT_MOUNTS.len());
    for mut mount in mounts {
        let dest = crate::paths::normalize(mount.destination())
            .map_err(|_| HardenError::RelativeMountDestination(mount.destination().clone()))?;
        if dest == Path::new("/") {
            return Err(HardenError::MountOverRoot);
        }
        mount.set_destination(dest.clone());
        // Eci's own words, for the binds it vets as volumes below, never the spec's to give.
        if let Some(options) = mount.options().as_ref() {
            if options.iter().any(|o| o.starts_with(ECI_OPTION_PREFIX)) {
                let kept = options.iter().filter(|o| !o.starts_with(ECI_OPTION_PREFIX));
                mount.set_options(Some(kept.cloned().collect()));
            }
        }
        if is_bind(&mount) {
            check_bind_source(&mut mount, &mut binds, report)?;
        } else {
            check_kernel_fs_home(&mount)?;
        }
        out.push(mount);
    }
    add_default_mounts(&mut out, report);
    Ok(out)
}

/// Refuses a procfs or sysfs outside /proc or /sys: the masks (`linux.maskedPaths`) and the
/// virtual files name paths under those two, so a second procfs elsewhere would show the host's
/// timer_list, sched_debug and meminfo.
fn check_kernel_fs_home(mount: &Mount) -> Result<(), HardenError> {
    let (fstype, home) = match mount.typ().as_deref() {
        Some("proc") => ("proc", Path::new("/proc")),
        Some("sysfs") => ("sysfs", Path::new("/sys")),
        _ => return Ok(()),
    };
    if mount.destination() == home {
        return Ok(());
    }
    Err(HardenError::KernelFsElsewhere {
        fstype,
        dest: mount.destination().clone(),
        home,
    })
}

/// Inserts each default mount the spec lacks without reordering the spec's own (OCI mounts are
/// made in the listed order): right after the last mount of one of its parents (the spec's own
/// /dev before an added /dev/pts), otherwise at the front, defaults in their own order.
fn add_default_mounts(out: &mut Vec<Mount>, report: &mut Vec<Change>) {
    let mut front = 0;
    for (dest, typ, source, options) in DEFAULT_MOUNTS {
        let dest = Path::new(dest);
        if out.iter().any(|m| m.destination() == dest) {
            continue;
        }
        let after_parent = out
            .iter()
            .rposition(|m| dest.starts_with(m.destination()) && dest != m.destination())
            .map(|parent| {
                let parent_dest = out[parent].destination().clone();
                let children = out[parent + 1..]
                    .iter()
                    .take_while(|m| m.destination().starts_with(&parent_dest))
                    .count();
                parent + 1 + children
            });
        let at = after_parent.unwrap_or(front);
        if after_parent.is_none() {
            front += 1;
        }
        let mut mount = Mount::default();
        mount.set_destination(dest.to_path_buf());
        mount.set_typ(Some(typ.to_string()));
        mount.set_source(Some(PathBuf::from(source)));
        mount.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
        out.insert(at, mount);
        report.push(Change::AddedMount(dest.to_path_buf()));
    }
}

/// Mounts every container gets unless the spec has its own at the same destination:
/// (destination, type, source, options).
pub const DEFAULT_MOUNTS: &[(&str, &str, &str, &[&str])] = &[
    ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
    (
        "/dev",
        "tmpfs",
        "tmpfs",
        &["nosuid", "strictatime", "mode=755", "size=65536k"],
    ),
    (
        "/dev/pts",
        "devpts",
        "devpts",
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ],
    ),
    (
        "/dev/shm",
        "tmpfs",
        "shm",
        &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    ),
    (
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    ),
    (
        "/sys",
        "sysfs",
        "sysfs",
        &["nosuid", "noexec", "nodev", "ro"],
    ),
];

fn check_bind_source(
    mount: &mut Mount,
    binds: &mut BindCheck<'_, '_>,
    report: &mut Vec<Change>,
) -> Result<(), HardenError> {
    let dest = mount.destination().clone();
    let source = mount
        .source()
        .clone()
        .ok_or_else(|| HardenError::BindWithoutSource(dest.clone()))?;
    let resolved = binds
        .host
        .resolve(&source)
        .map_err(|err| HardenError::UnresolvableSource {
            path: source.clone(),
            source: err,
        })?;
    let resolved =
        ResolvedPath::from_resolved(&resolved).map_err(|err| HardenError::UnresolvableSource {
            path: source.clone(),
            source: std::io::Error::other(err),
        })?;
    let host_path = resolved.as_path().to_path_buf();
    let asked_idmap = |mount: &Mount| {
        let mut options = mount.options().iter().flatten();
        options.find(|o| *o == "idmap" || *o == "ridmap").cloned()
    };
    if binds.ctx.policy.docker_socket.sockets.contains(&host_path) {
        // The engine's socket is host root's: idmapped, container root would be its owner.
        if let Some(option) = asked_idmap(mount) {
            return Err(HardenError::IdmapRefused {
                dest,
                path: host_path,
                option,
            });
        }
        let change = docker_socket_grant(binds, &host_path, dest)?;
        mount.set_source(Some(host_path));
        report.push(change);
        return Ok(());
    }
    // Idmapped through the container's map, a bind lets container root act as the owner of
    // every file there whose owner is among the first 65,536 IDs: host root's, and host
    // users'. Only a volume no host user can reach is; a path shared read-only (read-only all
    // through, below) is idmapped for the host's system IDs alone.
    let (read_only, idmappable) = match binds.ctx.policy.paths.decide(&resolved) {
        PathDecision::Shared {
            read_only,
            rule,
            origin,
        } => {
            closed_on_the_way(binds.host, rule, origin, &host_path, &source)?;
            let recursive = mount.options().iter().flatten().any(|o| o == "rbind");
            refuse_kernel_mount(binds.host, &host_path, recursive, &source)?;
            if let Some(option) = asked_idmap(mount) {
                return Err(HardenError::IdmapRefused {
                    dest,
                    path: host_path,
                    option,
                });
            }
            if read_only {
                let mut options = mount.options().clone().unwrap_or_default();
                options.push(IDMAP_SYSTEM_IF_SUPPORTED.to_string());
                mount.set_options(Some(options));
            }
            (read_only, false)
        }
        refused => match engine_volume_access(binds, &refused, &host_path, &dest, report)? {
            Some(access) => {
                let mut options = mount.options().clone().unwrap_or_default();
                // What the engine mounts there later (a volume's first container starting)
                // must not reach this container unchecked.
                options.retain(|o| !PROPAGATION_OPTIONS.contains(&o.as_str()));
                options.push("rprivate".to_string());
                options.push(access.identity.to_option());
                if access.idmapped && !options.iter().any(|o| o == "idmap" || o == "ridmap") {
                    options.push(IDMAP_IF_SUPPORTED.to_string());
                }
                if access.system_ids {
                    options.push(IDMAP_SYSTEM_IF_SUPPORTED.to_string());
                }
                mount.set_options(Some(options));
                (access.read_only, access.idmapped)
            }
            None => return Err(bind_refusal(refused, host_path)),
        },
    };
    let mut options = mount.options().clone().unwrap_or_default();
    match asked_idmap(mount) {
        Some(option) if !idmappable => {
            return Err(HardenError::IdmapRefused {
                dest,
                path: host_path,
                option,
            })
        }
        None if idmappable && !options.iter().any(|o| o == IDMAP_IF_SUPPORTED) => {
            options.push(IDMAP_IF_SUPPORTED.to_string());
        }
        _ => {}
    }
    mount.set_source(Some(host_path));
    if read_only {
        force_read_only_all_through(&mut options, dest, report);
    }
    // Without a word of the spec's, private, as Docker binds: a slave of the host's mount (the
    // runtime's namespace is one), it would show what the host mounts there later, unvetted.
    if !options
        .iter()
        .any(|o| PROPAGATION_OPTIONS.contains(&o.as_str()))
    {
        options.push("rprivate".to_string());
    }
    mount.set_options(Some(options));
    Ok(())
}

/// The words that say whether a mount is read-only; the last one counts.
const ACCESS_OPTIONS: [&str; 3] = ["ro", "rw", "rro"];

/// Makes a bind the path rules force read-only read-only on every mount of its tree (`rro`):
/// with `ro` alone, a recursive bind's submounts (an NFS share or automount under the shared
/// path) would stay writable. Every other access word goes, so that no later `rw` undoes it.
/// And private: `rro` covers the mounts the tree has when it is made, and a slave or shared
/// copy would receive what the host mounts there later (a USB drive, an automount), writable.
fn force_read_only_all_through(options: &mut Vec<String>, dest: PathBuf, report: &mut Vec<Change>) {
    let last = options
        .iter()
        .rev()
        .find(|o| ACCESS_OPTIONS.contains(&o.as_str()));
    // Only a recursive private or unbindable tree receives nothing: `private` alone leaves the
    // submounts slaves of the host's (the setup namespace is a slave of the host's).
    let closed = ["rprivate", "runbindable"];
    let receives = options
        .iter()
        .any(|o| PROPAGATION_OPTIONS.contains(&o.as_str()) && !closed.contains(&o.as_str()));
    if last.map(String::as_str) != Some("rro") || receives {
        report.push(Change::ForcedReadOnly(dest));
    }
    options.retain(|o| !ACCESS_OPTIONS.contains(&o.as_str()));
    options.push("rro".to_string());
    if receives {
        options.retain(|o| !PROPAGATION_OPTIONS.contains(&o.as_str()));
        options.push("rprivate".to_string());
    }
}

/// What eci's own mount options start with (`x-` options are for userspace, as in mount(8)).
/// Hardening drops every such option a spec has, and adds its own.
pub const ECI_OPTION_PREFIX: &str = "x-eci.";

/// A mount option of eci's own: idmap this bind
/// if its filesystem can be idmapped, and bind it plain otherwise. Docker volumes get it, where
/// an idmapped bind shows the volume's files with their owners on disk.
pub const IDMAP_IF_SUPPORTED: &str = "x-eci.idmap-if-supported";

/// A mount option of eci's own: idmap this bind through a user namespace that maps the host's
/// system IDs alone (0 to 999, as the container's own), if its filesystem can be idmapped, and
/// bind it plain otherwise. Paths shared read-only get it: host root's files show as root
/// inside and system groups as theirs (a setgid program keeps its group), and every host
/// user's as nobody, whose files container root reaches only as any host user does (through
/// the full block's map it would be their owner, able to read their private files).
pub const IDMAP_SYSTEM_IF_SUPPORTED: &str = "x-eci.idmap-system-if-supported";

/// The mount options that set a mount's propagation.
const PROPAGATION_OPTIONS: &[&str] = &[
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "unbindable",
    "runbindable",
];

/// Why a bind of the host path `path` is refused, from a decision of the path rules that does
/// not share it (ask only of refusals: a shared one would read as not shared). The Docker
/// socket proxy words its refusals of bind sources with it too.
///
/// ```
/// use eci_policy::harden::bind_refusal;
/// use eci_policy::paths::ResolvedPath;
/// use eci_policy::Policy;
/// use std::path::Path;
///
/// let etc = ResolvedPath::from_resolved(Path::new("/etc/x")).unwrap();
/// let why = bind_refusal(Policy::default().paths.decide(&etc), "/etc/x".into());
/// assert!(why.to_string().contains("refused by the rule for /etc"));
/// ```
pub fn bind_refusal(decision: PathDecision<'_>, path: PathBuf) -> HardenError {
    match decision {
        PathDecision::Restricted { rule, origin } => HardenError::RestrictedSource {
            path,
            rule: rule.to_path_buf(),
            origin,
        },
        PathDecision::ContainsRestricted { rule, origin } => HardenError::HoldsRestricted {
            path,
            rule: rule.to_path_buf(),
            origin,
        },
        PathDecision::ContainsReadOnly { rule, origin } => HardenError::HoldsReadOnlyShare {
            path,
            rule: rule.to_path_buf(),
            origin,
        },
        PathDecision::NotShared | PathDecision::Shared { .. } => {
            HardenError::NotSharedSource { path }
        }
    }
}

/// Refuses a bind of `path`, shared by `rule`, if a directory between the two keeps others
/// out ([`HardenError::ClosedOnTheWay`]): an administrator's share gives what host users have
/// there. A directory the embedding runtime shares (an engine's files for this very container)
/// is the container's own. `asked` is the path as the spec named it, for the error.
fn closed_on_the_way(
    host: &mut dyn HostPaths,
    rule: &Path,
    origin: RuleOrigin,
    path: &Path,
    asked: &Path,
) -> Result<(), HardenError> {
    if !matches!(origin, RuleOrigin::Default | RuleOrigin::Settings) {
        return Ok(());
    }
    let closed = host
        .closed_between(rule, path)
        .map_err(unresolvable(asked))?;
    match closed {
        Some(closed) => Err(HardenError::ClosedOnTheWay {
            path: path.to_path_buf(),
            closed,
        }),
        None => Ok(()),
    }
}

/// How a container may have a Docker volume.
struct VolumeAccess {
    /// Read-only, as the path it binds is shared.
    read_only: bool,
    /// Idmapped through the container's map: its files show the owners they have on disk.
    idmapped: bool,
    /// Idmapped for the host's system IDs alone, as a bind of a path shared read-only is.
    system_ids: bool,
    /// The directory that was checked, which the mounter must find there.
    identity: DirIdentity,
}

/// Whether a bind of `path`, which the rules refuse (`refused`), is of a Docker volume's data
/// directory the container may have, and how: `None` when it is no engine's volume, or when a
/// rule refuses it that is not one on the whole data root.
fn engine_volume_access(
    binds: &mut BindCheck<'_, '_>,
    refused: &PathDecision<'_>,
    path: &Path,
    destination: &Path,
    report: &mut Vec<Change>,
) -> Result<Option<VolumeAccess>, HardenError> {
    let Some(data) = volume_data(path, &binds.ctx.policy.engine_data_roots) else {
        return Ok(None);
    };
    let data_root = data.volumes_dir.parent().unwrap_or(data.volumes_dir);
    let refused_for_the_root = match refused {
        PathDecision::NotShared => true,
        PathDecision::Restricted { rule, .. } => data_root.starts_with(rule),
        PathDecision::ContainsRestricted { .. }
        | PathDecision::ContainsReadOnly { .. }
        | PathDecision::Shared { .. } => false,
    };
    if !refused_for_the_root {
        return Ok(None);
    }
    let resolved =
        ResolvedPath::from_resolved(path).map_err(|err| HardenError::UnresolvableSource {
            path: path.to_path_buf(),
            source: std::io::Error::other(err),
        })?;
    if let Some((rule, origin)) = binds.ctx.policy.paths.restricted_beneath(&resolved) {
        return Err(HardenError::HoldsRestricted {
            path: path.to_path_buf(),
            rule: rule.to_path_buf(),
            origin,
        });
    }
    let source =
        binds
            .host
            .engine_volume(&data)
            .map_err(|source| HardenError::UnreadableVolume {
                path: path.to_path_buf(),
                source,
            })?;
    let Some(EngineVolume {
        source,
        identity,
        closed_to_others,
    }) = source
    else {
        return Ok(None);
    };
    let (read_only, idmapped) = match &source {
        // A bind that is not idmapped shows host root's files as nobody's: the volume the
        // engine made (root's) would be of no use to the container's root.
        VolumeSource::Directory | VolumeSource::Tmpfs => (false, closed_to_others),
        // As a bind of the device itself would be: a share's, with what host users have on
        // the way there, and idmapped for the system IDs alone if shared read-only.
        VolumeSource::Bind { device } => {
            let refused = |reason| HardenError::VolumeDevice {
                name: data.name.to_string(),
                device: device.clone(),
                reason: Box::new(reason),
            };
            let resolved = ResolvedPath::from_resolved(device).map_err(|err| {
                refused(HardenError::UnresolvableSource {
                    path: device.clone(),
                    source: std::io::Error::other(err),
                })
            })?;
            match binds.ctx.policy.paths.decide(&resolved) {
                PathDecision::Shared {
                    read_only,
                    rule,
                    origin,
                } => {
                    closed_on_the_way(binds.host, rule, origin, device, device).map_err(refused)?;
                    // The driver's bind may be recursive (o=rbind), and so is the container's.
                    refuse_kernel_mount(binds.host, device, true, device).map_err(refused)?;
                    (read_only, false)
                }
                other => return Err(refused(bind_refusal(other, device.clone()))),
            }
        }
        VolumeSource::Other { what } => {
            return Err(HardenError::VolumeFilesystem {
                name: data.name.to_string(),
                path: path.to_path_buf(),
                what: what.clone(),
            })
        }
    };
    let identity = identity.ok_or_else(|| HardenError::UnreadableVolume {
        path: path.to_path_buf(),
        source: std::io::Error::other("the host did not say which directory it is"),
    })?;
    let system_ids = read_only && matches!(source, VolumeSource::Bind { .. });
    report.push(Change::EngineVolume {
        destination: destination.to_path_buf(),
        name: data.name.to_string(),
        source,
        idmapped,
    });
    Ok(Some(VolumeAccess {
        read_only,
        idmapped,
        system_ids,
        identity,
    }))
}

/// Allows a bind of the Docker socket only for an image in `dockerSocketMount.imageList` (or
/// built from one, with `allowDerivedImages`); the path rules cannot allow it on their own.
fn docker_socket_grant(
    binds: &BindCheck<'_, '_>,
    socket: &Path,
    destination: PathBuf,
) -> Result<Change, HardenError> {
    let refused = || HardenError::DockerSocket {
        path: socket.to_path_buf(),
        image: binds.image.map(|i| i.image.reference.to_string()),
    };
    let image = binds.image.ok_or_else(refused)?;
    let list = &binds.ctx.policy.docker_socket.images;
    let (entry, derived) = match list.decide(image.image, image.base, image.known) {
        Some(ImageGrant::Listed(entry)) => (entry, false),
        Some(ImageGrant::Derived(entry)) => (entry, true),
        None => return Err(refused()),
    };
    Ok(Change::DockerSocketAllowed {
        destination,
        image: image.image.reference.to_string(),
        entry: entry.to_string(),
        derived,
    })
}

/// The spec's list plus every default it lacks, and the defaults that were added.
fn union_with_defaults(
    list: &Option<Vec<String>>,
    defaults: &[&str],
) -> (Vec<String>, Vec<String>) {
    let mut all = list.clone().unwrap_or_default();
    let added: Vec<String> = defaults
        .iter()
        .filter(|d| !all.iter().any(|p| p == *d))
        .map(|d| d.to_string())
        .collect();
    all.extend(added.iter().cloned());
    (all, added)
}

fn harden_devices(linux: &mut oci_spec::runtime::Linux, report: &mut Vec<Change>) {
    if let Some(devices) = linux.devices().clone() {
        let (kept, dropped): (Vec<LinuxDevice>, Vec<LinuxDevice>) = devices
            .into_iter()
            .partition(|d| is_safe_device(d.typ(), d.major(), d.minor()));
        report.extend(
            dropped
                .into_iter()
                .map(|d| Change::DroppedDevice(d.path().clone())),
        );
        linux.set_devices(Some(kept));
    }
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(safe_device_cgroup()));
    linux.set_resources(Some(resources));
    report.push(Change::RestrictedDeviceCgroup);
}

/// Device cgroup rules allowing only [`SAFE_DEVICES`].
pub fn safe_device_cgroup() -> Vec<LinuxDeviceCgroup> {
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false);
    deny_all.set_typ(Some(LinuxDeviceType::A));
    deny_all.set_access(Some("rwm".to_string()));
    let allows = SAFE_DEVICES.iter().map(|(major, minor, _)| {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(LinuxDeviceType::C));
        rule.set_major(Some(*major));
        rule.set_minor(*minor);
        rule.set_access(Some("rwm".to_string()));
        rule
    });
    std::iter::once(deny_all).chain(allows).collect()
}

/// Resource limits of a running container after an update (`runc update`): every limit the
/// update sets replaces the current one, field by field, and the rest stay. The device rules
/// stay the safe set whatever the update says, and the network and RDMA settings stay as they
/// were created: an update changes how much a container may use, never what it may reach.
///
/// ```
/// use eci_policy::harden::{safe_device_cgroup, updated_resources};
/// use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};
///
/// let current = LinuxResourcesBuilder::default()
///     .devices(safe_device_cgroup())
///     .memory(LinuxMemoryBuilder::default().limit(1 << 30).reservation(1 << 20).build()?)
///     .build()?;
/// let update = LinuxResourcesBuilder::default()
///     .memory(LinuxMemoryBuilder::default().limit(1 << 28).build()?)
///     .devices(vec![Default::default()]) // an attempt to allow every device
///     .build()?;
/// let updated = updated_resources(&current, &update)?;
/// let memory = updated.memory().unwrap();
/// assert_eq!((memory.limit(), memory.reservation()), (Some(1 << 28), Some(1 << 20)));
/// assert_eq!(updated.devices().clone().unwrap(), safe_device_cgroup());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn updated_resources(
    current: &LinuxResources,
    update: &LinuxResources,
) -> Result<LinuxResources, ResourceUpdateError> {
    const KEPT: [&str; 3] = ["devices", "network", "rdma"];
    let mut merged = serde_json::to_value(current)?;
    let mut update = serde_json::to_value(update)?;
    if let Some(fields) = update.as_object_mut() {
        fields.retain(|key, _| !KEPT.contains(&key.as_str()));
    }
    merge_json(&mut merged, update);
    let mut resources: LinuxResources = serde_json::from_value(merged)?;
    resources.set_devices(Some(safe_device_cgroup()));
    if let Some((key, reason)) = refused_unified_key(Some(&resources)) {
        return Err(ResourceUpdateError::UnifiedKey { key, reason });
    }
    Ok(resources)
}

/// A resource update that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ResourceUpdateError {
    /// The merged limits do not make a valid set.
    #[error("the resource update is not a valid set of limits: {0}")]
    Invalid(#[from] serde_json::Error),
    /// A `unified` entry that is not a limit on the container's own cgroup.
    #[error("linux.resources.unified key '{key}' is refused: {reason}")]
    UnifiedKey {
        /// The key as given.
        key: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

/// Cgroup v2 controllers whose interface files `linux.resources.unified` may write.
pub const UNIFIED_CONTROLLERS: [&str; 8] = [
    "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc",
];

/// The first `linux.resources.unified` key that is not a limit on the container's own cgroup,
/// with the reason. Each key names a file the runtime writes in the container's cgroup
/// directory, so a key must be a plain file name (a `/` or `..` would write elsewhere on the
/// host) of a controller's interface. Core `cgroup.*` files move, freeze or kill processes, and
/// a cpuset partition takes CPUs from the parent and every sibling; only the core limits on the
/// container's own subtree are allowed.
///
/// ```
/// use std::collections::HashMap;
/// use eci_policy::harden::refused_unified_key;
/// use oci_spec::runtime::LinuxResourcesBuilder;
///
/// let with = |key: &str| {
///     let unified = HashMap::from([(key.to_string(), "1".to_string())]);
///     LinuxResourcesBuilder::default().unified(unified).build().unwrap()
/// };
/// assert_eq!(refused_unified_key(Some(&with("memory.high"))), None);
/// assert!(refused_unified_key(Some(&with("cgroup.procs"))).is_some());
/// assert!(refused_unified_key(Some(&with("../../cgroup.procs"))).is_some());
/// ```
pub fn refused_unified_key(resources: Option<&LinuxResources>) -> Option<(String, &'static str)> {
    let unified = resources?.unified().as_ref()?;
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    keys.into_iter().find_map(|key| {
        let refused =
            unified_key_refusal(key).or_else(|| unified_value_refusal(key, &unified[key]));
        refused.map(|reason| (key.clone(), reason))
    })
}

/// Why a value of a file the container may write is refused: one that takes from the host
/// more than the container's share. Real-time I/O comes ahead of every host process's (as
/// RLIMIT_RTPRIO is clamped for CPU), and a hard memory protection has the host's processes
/// reclaimed and OOM-killed in the container's place wherever no parent bounds it (a
/// `cgroupsPath` at a hierarchy's top). memory.low (Docker's `--memory-reservation`) stays a
/// best effort, and is bounded by the parents' like memory.min.
fn unified_value_refusal(key: &str, value: &str) -> Option<&'static str> {
    let at_most = |most: u32| value.trim().parse::<u32>().is_ok_and(|n| n <= most);
    match key {
        "cgroup.max.descendants" if !at_most(DELEGATED_DESCENDANTS) => {
            Some("at most 1024: eci caps the cgroups below a delegated container's own so, and a larger value would lift the cap")
        }
        "cgroup.max.depth" if !at_most(DELEGATED_DEPTH) => {
            Some("at most 32: eci caps the depth below a delegated container's own cgroup so, and a larger value would lift the cap")
        }
        "io.prio.class" if !matches!(value.trim(), "no-change" | "restrict-to-be" | "idle") => {
            Some("only no-change, restrict-to-be and idle: promote-to-rt (none-to-rt) puts the container's I/O ahead of every host process's")
        }
        "memory.min" => Some("a hard memory protection has host processes reclaimed and OOM-killed in the container's place"),
        _ => None,
    }
}

/// How many cgroups a delegated container may have below its own at once on cgroup v2, and
/// how deep. Each takes kernel memory and, with the memory controller, one of the host's
/// 65,535 memory cgroup IDs (a removed one whose page cache is still charged keeps its ID for
/// a while, uncounted: the cap bounds the live ones). Docker in a container makes one a
/// container, Kubernetes about one a pod plus one a container, four levels deep, and systemd
/// as a container's init a few levels more. runc and systemd set no such cap; eci's own. A
/// spec's `unified` values for these files may lower the caps, never raise them (the runtime
/// writes them after the caps).
pub const DELEGATED_DESCENDANTS: u32 = 1024;
/// See [`DELEGATED_DESCENDANTS`].
pub const DELEGATED_DEPTH: u32 = 32;

fn unified_key_refusal(key: &str) -> Option<&'static str> {
    const CORE_LIMITS: [&str; 2] = ["cgroup.max.depth", "cgroup.max.descendants"];
    const BEYOND_OWN: [&str; 2] = ["cpuset.cpus.partition", "cpuset.cpus.exclusive"];
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !key.contains("..");
    if !plain {
        return Some("it is not the plain name of a file in the container's cgroup");
    }
    if CORE_LIMITS.contains(&key) {
        return None;
    }
    let (controller, file) = key.split_once('.').unwrap_or((key, ""));
    if controller == "cgroup" {
        return Some("core cgroup files other than cgroup.max.depth and cgroup.max.descendants move, freeze or kill processes");
    }
    if !UNIFIED_CONTROLLERS.contains(&controller) || file.is_empty() || file.ends_with('.') {
        return Some("it names no file of a cgroup v2 controller (cpu, cpuset, io, memory, pids, hugetlb, rdma, misc)");
    }
    if BEYOND_OWN.contains(&key) {
        return Some("a cpuset partition takes CPUs from the parent cgroup and every sibling");
    }
    if key == "io.latency" {
        return Some("an I/O latency target throttles the sibling cgroups with a looser one or none, host services among them");
    }
    None
}

/// Puts every value `update` has into `into`, object by object; anything else replaces.
fn merge_json(into: &mut serde_json::Value, update: serde_json::Value) {
    match (into, update) {
        (serde_json::Value::Object(into), serde_json::Value::Object(update)) => {
            for (key, value) in update {
                if value.is_null() {
                    continue;
                }
                match into.get_mut(&key) {
                    Some(existing) => merge_json(existing, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (into, update) => *into = update,
    }
}

/// The parts of a spec's sysctl key, as the kernel's sysctl(8) reads it: separated by slashes
/// when it has any (a dot may then be part of a name: `net/ipv4/conf/eth0.100/forwarding`), by
/// dots otherwise. `None` for a key with an empty, `.` or `..` part, or a NUL:
/// `net.ipv4..tcp_congestion_control` is the file `/proc/sys/net/ipv4//tcp_congestion_control`,
/// which the kernel reads as `net.ipv4.tcp_congestion_control`, which no check spelt with one
/// dot would recognise.
///
/// ```
/// use eci_policy::harden::{sysctl_file, sysctl_name};
/// assert_eq!(sysctl_name("net/ipv4/ip_forward").as_deref(), Some("net.ipv4.ip_forward"));
/// assert_eq!(sysctl_file("net.ipv4.ip_forward").as_deref(), Some("/proc/sys/net/ipv4/ip_forward"));
/// assert_eq!(sysctl_name("net.ipv4..tcp_congestion_control"), None);
/// assert_eq!(sysctl_name("net/ipv4/../../kernel/core_pattern"), None);
/// ```
pub fn sysctl_parts(key: &str) -> Option<Vec<&str>> {
    let separator = if key.contains('/') { '/' } else { '.' };
    let parts: Vec<&str> = key.split(separator).collect();
    let named =
        |part: &&str| !part.is_empty() && *part != "." && *part != ".." && !part.contains('\0');
    parts.iter().all(named).then_some(parts)
}

/// The dotted name of a spec's sysctl key ([`sysctl_parts`]), which checks compare.
pub fn sysctl_name(key: &str) -> Option<String> {
    sysctl_parts(key).map(|parts| parts.join("."))
}

/// The file of a spec's sysctl key ([`sysctl_parts`]) under /proc/sys.
pub fn sysctl_file(key: &str) -> Option<String> {
    sysctl_parts(key).map(|parts| format!("/proc/sys/{}", parts.join("/")))
}

/// True for sysctls that live in a namespace the container owns (IPC, UTS or network).
pub fn is_namespaced_sysctl(key: &str) -> bool {
    const IPC: [&str; 7] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
    ];
    IPC.contains(&key)
        || key == "kernel.shm_rmid_forced"
        || (key.starts_with("net.") && !is_global_net(key) && !key.starts_with("net.core."))
        || is_namespaced_net_core(key)
        || key.starts_with("fs.mqueue.")
        || key == "kernel.hostname"
        || key == "kernel.domainname"
}

/// Sysctls under `net.` that stay global (read-only outside the initial network namespace).
fn is_global_net(key: &str) -> bool {
    matches!(
        key,
        "net.netfilter.nf_conntrack_max"
            | "net.nf_conntrack_max"
            | "net.netfilter.nf_conntrack_buckets"
    )
}

fn is_namespaced_net_core(key: &str) -> bool {
    matches!(
        key,
        "net.core.somaxconn" | "net.core.xfrm_acq_expires" | "net.core.xfrm_aevent_etime"
    )
}

fn check_hooks(spec: &Spec, policy: &Policy, host: &mut dyn HostPaths) -> Result<(), HardenError> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    #[allow(deprecated)]
    let lists = [
        hooks.prestart(),
        hooks.create_runtime(),
        hooks.create_container(),
        hooks.start_container(),
        hooks.poststart(),
        hooks.poststop(),
    ];
    for hook in lists.into_iter().flatten().flatten() {
        let resolved =
            host.resolve(hook.path())
                .map_err(|source| HardenError::UnresolvableSource {
                    path: hook.path().clone(),
                    source,
                })?;
        if !policy.hook_dirs.iter().any(|dir| resolved.starts_with(dir)) {
            return Err(HardenError::HookNotAllowed(hook.path().clone()));
        }
    }
    Ok(())
}

fn harden_capabilities(spec: &mut Spec, runtime: CapSet, report: &mut Vec<Change>) {
    let Some(process) = spec.process_mut() else {
        return;
    };
    let Some(caps) = process.capabilities().clone() else {
        return;
    };
    let mut dropped = Vec::new();
    let mut limit = |set: &Option<Capabilities>| {
        set.as_ref().map(|set| {
            set.iter()
                .copied()
                .filter(|cap| {
                    let keep = runtime.has(number(*cap));
                    if !keep {
                        dropped.push(crate::caps::name(*cap));
                    }
                    keep
                })
                .collect::<Capabilities>()
        })
    };
    let mut limited = LinuxCapabilities::default();
    limited.set_bounding(limit(caps.bounding()));
    limited.set_effective(limit(caps.effective()));
    limited.set_inheritable(limit(caps.inheritable()));
    limited.set_permitted(limit(caps.permitted()));
    limited.set_ambient(limit(caps.ambient()));
    process.set_capabilities(Some(limited));
    if !dropped.is_empty() {
        dropped.sort();
        dropped.dedup();
        report.push(Change::DroppedCapabilities(dropped));
    }
}

#[cfg(test)]
mod tests;
