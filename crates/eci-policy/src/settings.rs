//! The isolation settings every decision reads. This is the built-in default; the settings
//! document that an administrator writes is parsed into the same types.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::docker_api::CommandList;
use crate::ids::{IdBlock, DEFAULT_BLOCK_SIZE};
use crate::image::ImageList;
use crate::paths::{PathPolicy, RuleOrigin, Scope};

mod describe;

/// The range of host IDs that container blocks are carved from.
///
/// ```
/// use eci_policy::settings::IdPool;
/// let pool = IdPool::new(1 << 28, 1 << 20, 65536).unwrap();
/// assert_eq!(pool.block_count(), 16);
/// assert_eq!(pool.block(1).unwrap().host_start(), (1 << 28) + 65536);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdPool {
    start: u32,
    size: u32,
    block_size: u32,
}

/// Why an ID pool is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Block sizes are whole 16-bit ranges so that every container sees IDs 0-65535.
    #[error("block size {0} is not a positive multiple of 65536")]
    BlockSize(u32),
    /// The pool would hand out host IDs 0-65535, which belong to the host's own users.
    #[error("pool starts at {0}; host IDs 0-65535 are never handed out")]
    OverlapsHostIds(u32),
    /// The pool runs past the largest valid ID.
    #[error("pool {start}+{size} runs past the largest valid ID")]
    OutOfRange {
        /// First ID of the pool.
        start: u32,
        /// Size of the pool.
        size: u32,
    },
    /// The pool holds no whole block.
    #[error("pool of {size} IDs holds no block of {block_size}")]
    TooSmall {
        /// Size of the pool.
        size: u32,
        /// Size of one block.
        block_size: u32,
    },
}

impl IdPool {
    /// A pool of `size` host IDs from `start`, cut into blocks of `block_size`.
    pub fn new(start: u32, size: u32, block_size: u32) -> Result<Self, PoolError> {
        if block_size == 0 || !block_size.is_multiple_of(DEFAULT_BLOCK_SIZE) {
            return Err(PoolError::BlockSize(block_size));
        }
        if start < DEFAULT_BLOCK_SIZE {
            return Err(PoolError::OverlapsHostIds(start));
        }
        if u64::from(start) + u64::from(size) > u64::from(u32::MAX) {
            return Err(PoolError::OutOfRange { start, size });
        }
        if size < block_size {
            return Err(PoolError::TooSmall { size, block_size });
        }
        Ok(Self {
            start,
            size,
            block_size,
        })
    }

    /// First host ID of the pool.
    pub fn start(&self) -> u32 {
        self.start
    }

    /// Number of host IDs in the pool.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Number of IDs in one block.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Number of whole blocks in the pool.
    pub fn block_count(&self) -> u32 {
        self.size / self.block_size
    }

    /// The block at `index`, if the pool has it.
    pub fn block(&self, index: u32) -> Option<IdBlock> {
        if index >= self.block_count() {
            return None;
        }
        IdBlock::new(self.start + index * self.block_size, self.block_size)
    }

    /// The indexes of the pool's blocks that host IDs `host_start..host_start + size` touch,
    /// in order (none for a range outside the pool).
    ///
    /// ```
    /// use eci_policy::settings::IdPool;
    /// let pool = IdPool::new(1 << 20, 4 << 16, 1 << 16).unwrap();
    /// assert_eq!(pool.blocks_touched((1 << 20) + 65535, 2).collect::<Vec<_>>(), [0, 1]);
    /// assert_eq!(pool.blocks_touched(0, 1 << 20).count(), 0);
    /// ```
    pub fn blocks_touched(&self, host_start: u32, size: u32) -> std::ops::Range<u32> {
        let (start, end) = (u64::from(self.start), u64::from(self.block_count()));
        let block = u64::from(self.block_size);
        let first = u64::from(host_start).saturating_sub(start) / block;
        let last_id = u64::from(host_start) + u64::from(size);
        // Blocks up to the one holding the range's last ID (none if the range ends before the
        // pool or is empty).
        let past = match last_id.checked_sub(start) {
            Some(past_offset) if size > 0 && past_offset > 0 => (past_offset - 1) / block + 1,
            _ => 0,
        };
        let (first, past) = (first.min(end) as u32, past.min(end) as u32);
        first..past.max(first)
    }

    /// The index of `block` in this pool, if it is one of the pool's blocks.
    pub fn index_of(&self, block: &IdBlock) -> Option<u32> {
        let offset = block.host_start().checked_sub(self.start)?;
        let index = offset / self.block_size;
        (offset.is_multiple_of(self.block_size)
            && block.size() == self.block_size
            && index < self.block_count())
        .then_some(index)
    }
}

impl Default for IdPool {
    /// 4096 blocks of 65536 starting at 2^28: far above the IDs distributions hand to users and
    /// to /etc/subuid entries (which start at 100000), and below 2^31 for tools that treat IDs
    /// as signed.
    fn default() -> Self {
        Self {
            start: 1 << 28,
            size: 1 << 28,
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

/// How strictly the mounts the runtime sets up are protected from the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Immutability {
    /// Let the container remount an initial read-only mount read-write.
    pub allow_remount: bool,
    /// Let the container unmount (or move) an initial mount.
    pub allow_unmount: bool,
}

/// Filesystem types a container may mount itself. Every type here is one the kernel lets a user
/// namespace mount; the list only narrows what the kernel allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FsTypes(u32);

/// Known filesystem types, each one bit of [`FsTypes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum FsType {
    /// tmpfs
    Tmpfs = 1 << 0,
    /// ramfs
    Ramfs = 1 << 1,
    /// proc
    Proc = 1 << 2,
    /// sysfs
    Sysfs = 1 << 3,
    /// devpts
    Devpts = 1 << 4,
    /// mqueue
    Mqueue = 1 << 5,
    /// cgroup (v1)
    Cgroup = 1 << 6,
    /// cgroup2
    Cgroup2 = 1 << 7,
    /// overlay
    Overlay = 1 << 8,
    /// fuse and fuse.* subtypes
    Fuse = 1 << 9,
    /// binfmt_misc (per user namespace since Linux 6.7)
    BinfmtMisc = 1 << 10,
}

impl FsType {
    /// The mount(2) type name (`fuse` for every FUSE subtype).
    pub fn name(self) -> &'static str {
        match self {
            FsType::Tmpfs => "tmpfs",
            FsType::Ramfs => "ramfs",
            FsType::Proc => "proc",
            FsType::Sysfs => "sysfs",
            FsType::Devpts => "devpts",
            FsType::Mqueue => "mqueue",
            FsType::Cgroup => "cgroup",
            FsType::Cgroup2 => "cgroup2",
            FsType::Overlay => "overlay",
            FsType::Fuse => "fuse",
            FsType::BinfmtMisc => "binfmt_misc",
        }
    }

    /// Every known type.
    pub const ALL: [FsType; 11] = [
        FsType::Tmpfs,
        FsType::Ramfs,
        FsType::Proc,
        FsType::Sysfs,
        FsType::Devpts,
        FsType::Mqueue,
        FsType::Cgroup,
        FsType::Cgroup2,
        FsType::Overlay,
        FsType::Fuse,
        FsType::BinfmtMisc,
    ];

    /// The type named by a mount(2) `filesystemtype` argument, if it is a known one.
    ///
    /// ```
    /// use eci_policy::settings::FsType;
    /// assert_eq!(FsType::parse(b"tmpfs"), Some(FsType::Tmpfs));
    /// assert_eq!(FsType::parse(b"fuse.sshfs"), Some(FsType::Fuse));
    /// assert_eq!(FsType::parse(b"ext4"), None);
    /// ```
    pub fn parse(name: &[u8]) -> Option<FsType> {
        Some(match name {
            b"tmpfs" => FsType::Tmpfs,
            b"ramfs" => FsType::Ramfs,
            b"proc" => FsType::Proc,
            b"sysfs" => FsType::Sysfs,
            b"devpts" => FsType::Devpts,
            b"mqueue" => FsType::Mqueue,
            b"cgroup" => FsType::Cgroup,
            b"cgroup2" => FsType::Cgroup2,
            b"overlay" => FsType::Overlay,
            b"fuse" | b"fuseblk" => FsType::Fuse,
            name if name.starts_with(b"fuse.") => FsType::Fuse,
            b"binfmt_misc" => FsType::BinfmtMisc,
            _ => return None,
        })
    }
}

impl FsTypes {
    /// No type.
    pub const NONE: FsTypes = FsTypes(0);

    /// The set holding just `types`.
    pub const fn of(types: &[FsType]) -> FsTypes {
        let mut bits = 0;
        let mut i = 0;
        while i < types.len() {
            bits |= types[i] as u32;
            i += 1;
        }
        FsTypes(bits)
    }

    /// True if `fs` is in the set.
    pub fn contains(&self, fs: FsType) -> bool {
        self.0 & fs as u32 != 0
    }

    /// True if the mount(2) type name is a known type in the set. Unknown names are refused.
    pub fn allows(&self, name: &[u8]) -> bool {
        FsType::parse(name).is_some_and(|fs| self.contains(fs))
    }
}

impl Default for FsTypes {
    /// Everything an inner container runtime needs; not binfmt_misc, whose per-namespace
    /// instances are new enough (6.7) that a default should not rely on them.
    fn default() -> Self {
        FsTypes::of(&[
            FsType::Tmpfs,
            FsType::Ramfs,
            FsType::Proc,
            FsType::Sysfs,
            FsType::Devpts,
            FsType::Mqueue,
            FsType::Cgroup,
            FsType::Cgroup2,
            FsType::Overlay,
            FsType::Fuse,
        ])
    }
}

/// Paths masked inside every container, on top of whatever the spec lists: the OCI defaults plus
/// the entries that reveal host kernel state.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/kallsyms",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/sysrq-trigger",
    "/sys/firmware",
    "/sys/kernel/security",
];

/// Paths made read-only inside every container, on top of whatever the spec lists.
pub const DEFAULT_READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"];

/// Host paths that may be bind-mounted by default, and whether they are forced read-only.
pub const DEFAULT_SHARED_PATHS: &[(&str, bool)] = &[
    ("/home", false),
    ("/tmp", false),
    ("/var/tmp", false),
    ("/mnt", false),
    ("/media", false),
    ("/srv", false),
    ("/opt", false),
    ("/usr", true),
    ("/bin", true),
    ("/sbin", true),
    ("/lib", true),
    ("/lib32", true),
    ("/lib64", true),
    ("/libx32", true),
];

/// Host paths never bind-mounted by default, with their scope. The runtime's own state
/// directory is added by [`Policy::with_state_dir`].
pub const DEFAULT_RESTRICTED_PATHS: &[(&str, Scope)] = &[
    ("/", Scope::Exact),
    ("/etc", Scope::Subtree),
    ("/proc", Scope::Subtree),
    ("/sys", Scope::Subtree),
    ("/dev", Scope::Subtree),
    ("/boot", Scope::Subtree),
    ("/root", Scope::Subtree),
    ("/var/lib/docker", Scope::Subtree),
    ("/var/lib/containerd", Scope::Subtree),
    ("/run/docker.sock", Scope::Exact),
    ("/var/run/docker.sock", Scope::Exact),
    ("/run/containerd", Scope::Subtree),
    ("/run/eci", Scope::Subtree),
];

/// Docker engines' data roots whose volumes containers may mount (`.../volumes/NAME/_data`),
/// though the roots themselves are restricted: see [`crate::volume`].
pub const DEFAULT_ENGINE_DATA_ROOTS: &[&str] = &["/var/lib/docker"];

/// Where engines other than Docker keep the root filesystems they hand a runtime, root (images,
/// snapshots) and state (bundles, with the rootfs mounted in them): containerd's, CRI-O's and
/// Podman's (containers/storage), and k3s's containerd. Restricted, yet a container's root may
/// lie inside one: see [`crate::root`].
pub const DEFAULT_ENGINE_STORAGE: &[&str] = &[
    "/var/lib/containerd",
    "/run/containerd",
    "/var/lib/containers",
    "/run/containers",
    "/var/lib/rancher/k3s/agent/containerd",
    "/run/k3s/containerd",
];

/// `dockerSocketMount`: which containers may bind-mount the Docker socket, and what they may ask
/// the engine through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSocketPolicy {
    /// `imageList`: the images allowed to mount the socket.
    pub images: ImageList,
    /// `commandList`: the engine commands those containers may send.
    pub commands: CommandList,
    /// The engine sockets this applies to: [`crate::harden::DOCKER_SOCKETS`] and those the
    /// settings add (`eci.engineSockets`, such as a rootless engine's). A bind of one is allowed
    /// only by `imageList`, whatever the path rules say.
    pub sockets: Vec<PathBuf>,
}

impl Default for DockerSocketPolicy {
    fn default() -> Self {
        DockerSocketPolicy {
            images: ImageList::default(),
            commands: CommandList::default(),
            sockets: crate::harden::DOCKER_SOCKETS
                .iter()
                .map(PathBuf::from)
                .collect(),
        }
    }
}

/// A virtual procfs or sysfs file that eci can make reflect the container rather than the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProcFile {
    /// `/proc/meminfo`
    Meminfo,
    /// `/proc/cpuinfo`
    Cpuinfo,
    /// `/proc/stat`
    Stat,
    /// `/proc/uptime`
    Uptime,
    /// `/proc/loadavg`
    Loadavg,
    /// `/proc/swaps`
    Swaps,
    /// `/proc/diskstats`
    Diskstats,
    /// `/sys/devices/system/cpu/online`
    CpuOnline,
    /// The `sysinfo(2)` system call, which `free` and `uptime` read.
    Sysinfo,
}

impl ProcFile {
    /// Every virtual file.
    pub const ALL: [ProcFile; 9] = [
        ProcFile::Meminfo,
        ProcFile::Cpuinfo,
        ProcFile::Stat,
        ProcFile::Uptime,
        ProcFile::Loadavg,
        ProcFile::Swaps,
        ProcFile::Diskstats,
        ProcFile::CpuOnline,
        ProcFile::Sysinfo,
    ];

    /// The name in the settings document (`eci.procfs.<name>`) and in annotations.
    pub fn name(self) -> &'static str {
        match self {
            ProcFile::Meminfo => "meminfo",
            ProcFile::Cpuinfo => "cpuinfo",
            ProcFile::Stat => "stat",
            ProcFile::Uptime => "uptime",
            ProcFile::Loadavg => "loadavg",
            ProcFile::Swaps => "swaps",
            ProcFile::Diskstats => "diskstats",
            ProcFile::CpuOnline => "cpuOnline",
            ProcFile::Sysinfo => "sysinfo",
        }
    }

    /// The file with this settings name.
    pub fn parse(name: &str) -> Option<ProcFile> {
        ProcFile::ALL.into_iter().find(|file| file.name() == name)
    }
}

/// Which virtual files reflect the container (on) rather than the host (off).
///
/// ```
/// use eci_policy::settings::{ProcFile, ProcfsSwitches};
/// let mut switches = ProcfsSwitches::default();
/// assert!(switches.get(ProcFile::Meminfo));
/// switches.set(ProcFile::Meminfo, false);
/// assert!(!switches.get(ProcFile::Meminfo));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcfsSwitches {
    /// One bit per [`ProcFile`], set when the file is virtualized.
    on: u16,
}

impl ProcfsSwitches {
    /// True if `file` is virtualized.
    pub fn get(&self, file: ProcFile) -> bool {
        self.on & (1 << file as u16) != 0
    }

    /// Switches `file` on or off.
    pub fn set(&mut self, file: ProcFile, on: bool) {
        if on {
            self.on |= 1 << file as u16;
        } else {
            self.on &= !(1 << file as u16);
        }
    }
}

impl Default for ProcfsSwitches {
    /// Every file virtualized: the container sees its own limits.
    fn default() -> Self {
        let mut switches = ProcfsSwitches { on: 0 };
        for file in ProcFile::ALL {
            switches.set(file, true);
        }
        switches
    }
}

/// How a write to a global (not namespaced) sysctl is reconciled with the host.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum SysctlMode {
    /// The container reads back its own value; the host never changes.
    #[default]
    ContainerOnly,
    /// The host takes the largest value any container (or the host itself) asked for.
    LargestWins,
    /// For on/off settings: the host is switched on if any container switches it on.
    EnableWins,
    /// The container sees the host's value and cannot change it (writes fail with EPERM).
    AlwaysHost,
}

impl SysctlMode {
    /// Every mode.
    pub const ALL: [SysctlMode; 4] = [
        SysctlMode::ContainerOnly,
        SysctlMode::LargestWins,
        SysctlMode::EnableWins,
        SysctlMode::AlwaysHost,
    ];

    /// The name in the settings document.
    pub fn name(self) -> &'static str {
        match self {
            SysctlMode::ContainerOnly => "container-only",
            SysctlMode::LargestWins => "largest-wins",
            SysctlMode::EnableWins => "enable-wins",
            SysctlMode::AlwaysHost => "always-host",
        }
    }

    /// The mode with this name.
    pub fn parse(name: &str) -> Option<SysctlMode> {
        SysctlMode::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

/// Reconciliation modes for global sysctls, by dotted name (`vm.overcommit_memory`). A sysctl
/// without a rule is [`SysctlMode::ContainerOnly`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SysctlRules {
    rules: BTreeMap<String, SysctlMode>,
}

/// Why a sysctl name cannot have a reconciliation rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlError {
    /// Not a dotted sysctl name.
    #[error("'{0}' is not a sysctl name (dotted, like vm.overcommit_memory)")]
    Name(String),
    /// The sysctl lives in a namespace the container owns, so there is nothing to reconcile.
    #[error("sysctl {0} is namespaced: the container always has its own value")]
    Namespaced(String),
    /// eci does not emulate the sysctl: a container's write fails (its /proc/sys is read-only)
    /// whatever the mode, so a rule or a lock on it would do nothing.
    #[error("sysctl {0} is not one eci emulates, so no mode or lock applies to it (the container cannot write it): {list}", list = EMULATED_SYSCTLS.join(", "))]
    NotEmulated(String),
    /// The mode would let a container's value harm the host.
    #[error("sysctl {name} cannot be {}: a container's value would harm the host (largest-wins is for {largest}; enable-wins for {enable})", mode.name(), largest = LARGEST_WINS_SYSCTLS.join(", "), enable = ENABLE_WINS_SYSCTLS.join(", "))]
    ModeRefused {
        /// The sysctl.
        name: String,
        /// The mode asked for.
        mode: SysctlMode,
    },
}

/// The global sysctls eci emulates per container (their /proc/sys files are served, writable):
/// the only ones a reconciliation mode applies to.
pub const EMULATED_SYSCTLS: [&str; 17] = [
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.printk",
    "kernel.kptr_restrict",
    "kernel.dmesg_restrict",
    "kernel.sysrq",
    "kernel.pid_max",
    "kernel.yama.ptrace_scope",
    "vm.overcommit_memory",
    "vm.mmap_min_addr",
    "fs.file-max",
    "fs.nr_open",
    "fs.protected_hardlinks",
    "fs.protected_symlinks",
    "fs.protected_fifos",
    "fs.protected_regular",
    "net.netfilter.nf_conntrack_max",
];

/// The sysctls a container's value may raise on the host ([`SysctlMode::LargestWins`]): raising
/// them makes the host safer or only lends it capacity.
pub const LARGEST_WINS_SYSCTLS: [&str; 9] = [
    "kernel.pid_max",
    "kernel.kptr_restrict",
    "kernel.dmesg_restrict",
    "vm.mmap_min_addr",
    "fs.file-max",
    "fs.nr_open",
    "net.netfilter.nf_conntrack_max",
    "fs.protected_fifos",
    "fs.protected_regular",
];

/// The sysctls a container may switch on for the host ([`SysctlMode::EnableWins`]). Switching
/// on sysrq or panic_on_oops, or raising overcommit_memory or ptrace_scope (3 cannot be undone),
/// would let a container harm the host, whatever the settings say.
pub const ENABLE_WINS_SYSCTLS: [&str; 5] = [
    "kernel.dmesg_restrict",
    "fs.protected_hardlinks",
    "fs.protected_symlinks",
    "fs.protected_fifos",
    "fs.protected_regular",
];

/// Whether a container's value of `name` may reach the host under `mode`.
///
/// ```
/// use eci_policy::settings::{sysctl_mode_allowed, SysctlMode};
/// assert!(sysctl_mode_allowed("fs.file-max", SysctlMode::LargestWins));
/// assert!(!sysctl_mode_allowed("kernel.sysrq", SysctlMode::EnableWins));
/// ```
pub fn sysctl_mode_allowed(name: &str, mode: SysctlMode) -> bool {
    match mode {
        SysctlMode::ContainerOnly | SysctlMode::AlwaysHost => true,
        SysctlMode::LargestWins => LARGEST_WINS_SYSCTLS.contains(&name),
        SysctlMode::EnableWins => ENABLE_WINS_SYSCTLS.contains(&name),
    }
}

/// Checks a reconciliation rule: `name` is a sysctl eci emulates, and `mode` may apply to it.
///
/// ```
/// use eci_policy::settings::{check_sysctl_rule, SysctlError, SysctlMode};
/// assert!(check_sysctl_rule("fs.file-max", SysctlMode::LargestWins).is_ok());
/// assert!(matches!(
///     check_sysctl_rule("kernel.panic_on_opps", SysctlMode::AlwaysHost),
///     Err(SysctlError::NotEmulated(_))
/// ));
/// ```
pub fn check_sysctl_rule(name: &str, mode: SysctlMode) -> Result<(), SysctlError> {
    check_global_sysctl(name)?;
    if !EMULATED_SYSCTLS.contains(&name) {
        return Err(SysctlError::NotEmulated(name.to_string()));
    }
    if !sysctl_mode_allowed(name, mode) {
        return Err(SysctlError::ModeRefused {
            name: name.to_string(),
            mode,
        });
    }
    Ok(())
}

/// Checks that `name` is a dotted name of a global sysctl.
pub fn check_global_sysctl(name: &str) -> Result<(), SysctlError> {
    let valid = !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if !valid {
        return Err(SysctlError::Name(name.to_string()));
    }
    if crate::harden::is_namespaced_sysctl(name) {
        return Err(SysctlError::Namespaced(name.to_string()));
    }
    Ok(())
}

impl SysctlRules {
    /// The mode for `name`.
    pub fn mode(&self, name: &str) -> SysctlMode {
        self.rules.get(name).copied().unwrap_or_default()
    }

    /// Sets the mode for an emulated global sysctl ([`check_sysctl_rule`]).
    pub fn set(&mut self, name: &str, mode: SysctlMode) -> Result<(), SysctlError> {
        check_sysctl_rule(name, mode)?;
        self.rules.insert(name.to_string(), mode);
        Ok(())
    }

    /// Every rule, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, SysctlMode)> {
        self.rules.iter().map(|(name, mode)| (name.as_str(), *mode))
    }
}

/// A setting a container may override unless the administrator locked it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Setting {
    /// `eci.immutability.allowRemount`
    AllowRemount,
    /// `eci.immutability.allowUnmount`
    AllowUnmount,
    /// `eci.procfs.<file>`
    Procfs(ProcFile),
    /// `eci.sysctls.<name>`
    Sysctl(String),
}

impl Setting {
    /// The setting's path in the settings document.
    pub fn json_path(&self) -> String {
        match self {
            Setting::AllowRemount => "eci.immutability.allowRemount".to_string(),
            Setting::AllowUnmount => "eci.immutability.allowUnmount".to_string(),
            Setting::Procfs(file) => format!("eci.procfs.{}", file.name()),
            Setting::Sysctl(name) => format!("eci.sysctls.{name}"),
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json_path())
    }
}

/// What the administrator locked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Locks {
    /// `enhancedContainerIsolation.locked`: users may not switch ECI off.
    pub eci: bool,
    /// Settings no container may override.
    pub settings: BTreeSet<Setting>,
}

impl Locks {
    /// True if `setting` is locked.
    pub fn is_locked(&self, setting: &Setting) -> bool {
        self.settings.contains(setting)
    }
}

/// Everything the runtime decides with.
///
/// ```
/// use eci_policy::Policy;
/// let policy = Policy::default();
/// assert_eq!(policy.id_pool.block_size(), 65536);
/// assert!(!policy.immutability.allow_unmount);
/// assert!(policy.eci_enabled);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `enhancedContainerIsolation.value`: whether the administrator switched ECI on. What a
    /// runtime does when it is off is the runtime's decision; this crate only reports it.
    pub eci_enabled: bool,
    /// Host IDs that container blocks come from.
    pub id_pool: IdPool,
    /// Protection of initial mounts.
    pub immutability: Immutability,
    /// Filesystem types a container may mount.
    pub mount_types: FsTypes,
    /// Host paths that may and may not be bind-mounted.
    pub paths: PathPolicy,
    /// Directories whose programs may run as OCI hooks (hooks run on the host as root).
    pub hook_dirs: Vec<PathBuf>,
    /// Which containers may mount the Docker socket, and what they may send through it.
    pub docker_socket: DockerSocketPolicy,
    /// Docker engines' data roots: [`DEFAULT_ENGINE_DATA_ROOTS`] and those the settings add
    /// (`eci.engineDataRoots`). Restricted, except for their volumes' data directories.
    pub engine_data_roots: Vec<PathBuf>,
    /// Other trees where engines keep the root filesystems they hand the runtime:
    /// [`DEFAULT_ENGINE_STORAGE`] and those the settings add (`eci.engineStorage`). Restricted,
    /// though a container's root may lie inside one (as inside an engine data root).
    pub engine_storage: Vec<PathBuf>,
    /// Which virtual procfs files reflect the container.
    pub procfs: ProcfsSwitches,
    /// How writes to global sysctls are reconciled with the host.
    pub sysctls: SysctlRules,
    /// `eci.delegateCgroups`: a cgroup mount a spec asks for read-write is given to the
    /// container's root (child cgroups of its own, for Docker in the container); otherwise
    /// every cgroup mount is bound read-only.
    pub delegate_cgroups: bool,
    /// Settings containers may not override.
    pub locks: Locks,
}

/// The built-in restricted paths, without any shared path.
pub fn default_restricted_paths() -> PathPolicy {
    let mut paths = PathPolicy::empty();
    let engine_storage = DEFAULT_ENGINE_STORAGE
        .iter()
        .map(|dir| (*dir, Scope::Subtree));
    for (path, scope) in DEFAULT_RESTRICTED_PATHS
        .iter()
        .copied()
        .chain(engine_storage)
    {
        paths
            .restrict_as(Path::new(path), scope, RuleOrigin::Default)
            .expect("default paths are absolute");
    }
    paths
}

impl Default for Policy {
    fn default() -> Self {
        let mut paths = default_restricted_paths();
        for (path, read_only) in DEFAULT_SHARED_PATHS {
            paths
                .share_as(Path::new(path), *read_only, RuleOrigin::Default)
                .expect("default paths are absolute");
        }
        Self {
            eci_enabled: true,
            id_pool: IdPool::default(),
            immutability: Immutability::default(),
            mount_types: FsTypes::default(),
            paths,
            hook_dirs: Vec::new(),
            docker_socket: DockerSocketPolicy::default(),
            engine_data_roots: DEFAULT_ENGINE_DATA_ROOTS
                .iter()
                .map(PathBuf::from)
                .collect(),
            engine_storage: DEFAULT_ENGINE_STORAGE.iter().map(PathBuf::from).collect(),
            procfs: ProcfsSwitches::default(),
            sysctls: SysctlRules::default(),
            delegate_cgroups: false,
            locks: Locks::default(),
        }
    }
}

impl Policy {
    /// Adds the runtime's state directory to the restricted paths: a container that could bind it
    /// could read or forge other containers' records.
    pub fn with_state_dir(mut self, state_dir: &Path) -> Result<Self, crate::paths::PathError> {
        self.paths
            .restrict_as(state_dir, Scope::Subtree, RuleOrigin::StateDirectory)?;
        Ok(self)
    }

    /// Adds where each engine socket really is, as `resolve` (symlinks followed) says: bind
    /// sources are compared once resolved, so a socket named through a symlink
    /// (`/var/run/docker.sock` to a user's directory) would otherwise neither be recognised
    /// as an engine's nor keep its directories from being bound. Sockets that do not resolve
    /// (no engine there yet) stay as named.
    ///
    /// ```
    /// use eci_policy::Policy;
    /// use std::path::{Path, PathBuf};
    /// let moved = |p: &Path| -> std::io::Result<PathBuf> {
    ///     Ok(if p == Path::new("/var/run/docker.sock") { "/home/a/.docker/run/docker.sock".into() } else { p.into() })
    /// };
    /// let policy = Policy::default().with_resolved_engine_sockets(moved).unwrap();
    /// assert!(policy.docker_socket.sockets.contains(&PathBuf::from("/home/a/.docker/run/docker.sock")));
    /// ```
    pub fn with_resolved_engine_sockets(
        mut self,
        resolve: impl Fn(&Path) -> std::io::Result<PathBuf>,
    ) -> Result<Self, crate::paths::PathError> {
        let sockets = &mut self.docker_socket.sockets;
        add_resolved(&mut self.paths, sockets, Scope::Exact, resolve)?;
        Ok(self)
    }

    /// Adds `root` to the engine data roots and restricts it (as the program embedding eci
    /// found it: eci-runc learns Docker's from where the engine keeps the container's own
    /// files, `ROOT/containers/ID`). Its volumes may then be mounted, nothing else of it.
    ///
    /// ```
    /// use eci_policy::Policy;
    /// use std::path::{Path, PathBuf};
    /// let policy = Policy::default().with_engine_data_root(Path::new("/data/docker")).unwrap();
    /// assert!(policy.engine_data_roots.contains(&PathBuf::from("/data/docker")));
    /// ```
    pub fn with_engine_data_root(mut self, root: &Path) -> Result<Self, crate::paths::PathError> {
        let root = crate::paths::normalize(root)?;
        if !self.engine_data_roots.contains(&root) {
            self.paths
                .restrict_as(&root, Scope::Subtree, RuleOrigin::Runtime)?;
            self.engine_data_roots.push(root);
        }
        Ok(self)
    }

    /// Adds where each engine data root really is, as `resolve` (symlinks followed) says, and
    /// restricts it: a data root moved through a symlink (`/var/lib/docker` to `/srv/docker`)
    /// would otherwise be bindable where it really is, and its volumes, which are compared
    /// once resolved, unrecognised. Roots that do not resolve (no engine yet) stay as named.
    ///
    /// ```
    /// use eci_policy::Policy;
    /// use std::path::{Path, PathBuf};
    /// let moved = |p: &Path| -> std::io::Result<PathBuf> {
    ///     Ok(if p == Path::new("/var/lib/docker") { "/srv/docker".into() } else { p.into() })
    /// };
    /// let policy = Policy::default().with_resolved_engine_data_roots(moved).unwrap();
    /// assert!(policy.engine_data_roots.contains(&PathBuf::from("/srv/docker")));
    /// ```
    pub fn with_resolved_engine_data_roots(
        mut self,
        resolve: impl Fn(&Path) -> std::io::Result<PathBuf>,
    ) -> Result<Self, crate::paths::PathError> {
        add_resolved(
            &mut self.paths,
            &mut self.engine_data_roots,
            Scope::Subtree,
            resolve,
        )?;
        Ok(self)
    }

    /// Adds `dir` to the engine storage and restricts it: the program embedding eci keeps the
    /// roots it builds there (eci's own `HostRootfs` builds them in the state directory's
    /// `rootfs`). A container's root may then lie inside it; nothing may bind it.
    ///
    /// ```
    /// use eci_policy::Policy;
    /// use std::path::{Path, PathBuf};
    /// let policy = Policy::default().with_engine_storage(Path::new("/var/lib/containers")).unwrap();
    /// assert!(policy.engine_storage.contains(&PathBuf::from("/var/lib/containers")));
    /// ```
    pub fn with_engine_storage(mut self, dir: &Path) -> Result<Self, crate::paths::PathError> {
        let dir = crate::paths::normalize(dir)?;
        if !self.engine_storage.contains(&dir) {
            self.paths
                .restrict_as(&dir, Scope::Subtree, RuleOrigin::Runtime)?;
            self.engine_storage.push(dir);
        }
        Ok(self)
    }

    /// Adds where each engine storage tree really is, as `resolve` (symlinks followed) says, and
    /// restricts it: a container's root is judged once resolved, so one inside
    /// `/var/lib/containerd` moved through a symlink would otherwise lie in no engine's storage.
    /// Trees that do not resolve (no engine yet) stay as named.
    ///
    /// ```
    /// use eci_policy::Policy;
    /// use std::path::{Path, PathBuf};
    /// let moved = |p: &Path| -> std::io::Result<PathBuf> {
    ///     Ok(if p == Path::new("/var/lib/containerd") { "/srv/containerd".into() } else { p.into() })
    /// };
    /// let policy = Policy::default().with_resolved_engine_storage(moved).unwrap();
    /// assert!(policy.engine_storage.contains(&PathBuf::from("/srv/containerd")));
    /// ```
    pub fn with_resolved_engine_storage(
        mut self,
        resolve: impl Fn(&Path) -> std::io::Result<PathBuf>,
    ) -> Result<Self, crate::paths::PathError> {
        add_resolved(
            &mut self.paths,
            &mut self.engine_storage,
            Scope::Subtree,
            resolve,
        )?;
        Ok(self)
    }
}

impl Policy {
    /// Restricts, besides each restricted path, where it really is, as `resolve` (symlinks
    /// followed) says: bind sources are compared once resolved, so `/var/lib/containerd` moved to
    /// a bigger disk through a symlink (to `/srv/containerd`) would otherwise be bindable there,
    /// under the shared `/srv`. The rule keeps its scope and origin; paths that do not resolve
    /// stay as named.
    ///
    /// ```
    /// use eci_policy::paths::{PathDecision, ResolvedPath};
    /// use eci_policy::Policy;
    /// use std::path::{Path, PathBuf};
    /// let moved = |p: &Path| -> std::io::Result<PathBuf> {
    ///     Ok(if p == Path::new("/var/lib/containerd") { "/srv/containerd".into() } else { p.into() })
    /// };
    /// let policy = Policy::default().with_resolved_restrictions(moved).unwrap();
    /// let real = ResolvedPath::from_resolved(Path::new("/srv/containerd/snapshots")).unwrap();
    /// assert!(matches!(policy.paths.decide(&real), PathDecision::Restricted { .. }));
    /// ```
    pub fn with_resolved_restrictions(
        mut self,
        resolve: impl Fn(&Path) -> std::io::Result<PathBuf>,
    ) -> Result<Self, crate::paths::PathError> {
        let restricted: Vec<(PathBuf, Scope, RuleOrigin)> = self
            .paths
            .rules()
            .filter(|rule| rule.access == crate::paths::Access::Restricted)
            .map(|rule| (rule.path.to_path_buf(), rule.scope, rule.origin))
            .collect();
        for (path, scope, origin) in restricted {
            match resolve(&path) {
                Ok(real) if real != path => self.paths.restrict_as(&real, scope, origin)?,
                _ => {}
            }
        }
        Ok(self)
    }
}

/// Adds to `named`, and restricts with `scope`, where each of them really is when that differs
/// from its name.
fn add_resolved(
    paths: &mut PathPolicy,
    named: &mut Vec<PathBuf>,
    scope: Scope,
    resolve: impl Fn(&Path) -> std::io::Result<PathBuf>,
) -> Result<(), crate::paths::PathError> {
    for path in named.clone() {
        let Ok(real) = resolve(&path) else {
            continue;
        };
        if real != path && !named.contains(&real) {
            paths.restrict_as(&real, scope, RuleOrigin::Settings)?;
            named.push(real);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pool_blocks_are_disjoint_and_inside(start in 65536u32..1 << 30, blocks in 1u32..64, a in 0u32..64, b in 0u32..64) {
            let pool = IdPool::new(start, blocks * 65536, 65536).unwrap();
            let (ba, bb) = (pool.block(a), pool.block(b));
            prop_assert_eq!(ba.is_some(), a < blocks);
            if let (Some(x), Some(y)) = (ba, bb) {
                prop_assert_eq!(x.overlaps(&y), a == b);
                prop_assert!(x.host_start() >= start);
                prop_assert!(x.host_end() <= u64::from(start) + u64::from(pool.size()));
                prop_assert_eq!(pool.index_of(&x), Some(a));
            }
        }

        #[test]
        fn a_range_touches_exactly_the_blocks_it_overlaps(
            start in 65536u32..1 << 30, blocks in 1u32..16, host in 0u32..=u32::MAX, size in 0u32..1 << 21
        ) {
            let pool = IdPool::new(start, blocks * 65536, 65536).unwrap();
            let touched: Vec<u32> = pool.blocks_touched(host, size).collect();
            let overlapping: Vec<u32> = (0..blocks)
                .filter(|&i| {
                    let block = pool.block(i).unwrap();
                    let (lo, hi) = (u64::from(host), u64::from(host) + u64::from(size));
                    size > 0 && lo < block.host_end() && u64::from(block.host_start()) < hi
                })
                .collect();
            prop_assert_eq!(touched, overlapping);
        }
    }

    #[test]
    fn pool_rejects_bad_shapes() {
        assert_eq!(
            IdPool::new(0, 1 << 20, 65536),
            Err(PoolError::OverlapsHostIds(0))
        );
        assert_eq!(
            IdPool::new(1 << 20, 1 << 20, 1000),
            Err(PoolError::BlockSize(1000))
        );
        assert!(matches!(
            IdPool::new(1 << 20, 100, 65536),
            Err(PoolError::TooSmall { .. })
        ));
        assert!(matches!(
            IdPool::new(u32::MAX - 70000, 131072, 65536),
            Err(PoolError::OutOfRange { .. })
        ));
    }

    #[test]
    fn default_shared_paths_hold_no_restricted_path() {
        use crate::paths::{PathDecision, ResolvedPath};
        let policy = Policy::default();
        for (path, read_only) in DEFAULT_SHARED_PATHS {
            let resolved = ResolvedPath::from_resolved(Path::new(path)).unwrap();
            assert_eq!(
                policy.paths.decide(&resolved),
                PathDecision::Shared {
                    rule: Path::new(path),
                    read_only: *read_only,
                    origin: RuleOrigin::Default
                }
            );
        }
    }

    #[test]
    fn default_policy_restricts_the_sensitive_paths() {
        use crate::paths::{PathDecision, ResolvedPath};
        let policy = Policy::default()
            .with_state_dir(Path::new("/var/lib/eci"))
            .unwrap();
        for path in [
            "/",
            "/etc/shadow",
            "/proc/1",
            "/sys/kernel",
            "/dev/sda",
            "/boot/vmlinuz",
            "/root/.ssh",
            "/run/docker.sock",
            "/var/run/docker.sock",
            "/var/lib/docker/x",
            "/var/lib/containerd/io.containerd.content.v1.content",
            "/run/containerd/containerd.sock",
            "/var/lib/eci/ids",
        ] {
            let resolved = ResolvedPath::from_resolved(Path::new(path)).unwrap();
            assert!(
                matches!(
                    policy.paths.decide(&resolved),
                    PathDecision::Restricted { .. }
                ),
                "{path} must be restricted"
            );
        }
        let usr = ResolvedPath::from_resolved(Path::new("/usr/bin")).unwrap();
        assert!(matches!(
            policy.paths.decide(&usr),
            PathDecision::Shared {
                read_only: true,
                ..
            }
        ));
    }
}
