//! Virtual procfs and sysfs files that tell the truth about a container: a FUSE server
//! (fuser) mounted once on the host, with directories per container ([`Directories`]) whose
//! files are bind-mounted over the container's `/proc/meminfo`, `/proc/cpuinfo`, `/proc/stat`,
//! `/proc/loadavg`, `/proc/swaps`, `/proc/diskstats` and `/sys/devices/system/cpu/online`, and
//! over the global tunables of its `/proc/sys`. `/proc/uptime` needs no server: the container's
//! time namespace starts its boot clock with it ([`eci_ns::timens`]), and the kernel computes
//! the file for each reader.
//!
//! The server has two FUSE connections, mounted under its mountpoint as `files` (read-only)
//! and `tunables` (read-write): the kernel forgets a FUSE file's atime after every read unless
//! its superblock is read-only, and each stat of it is then a request to the server.
//!
//! Each container's directory holds only its own files, computed from its cgroup (memory limit
//! and use, cpuset, CPU quota, CPU usage, I/O), its start time and its load averages, which a
//! thread samples every 5 seconds as the kernel does; the kernel tells the server which file
//! is read, so no caller has to be identified by its PID namespace (no lookup per read, and no
//! race with a PID being reused). A container sees no other container's directory: only its
//! binds.
//!
//! **How the kernel reads the computed files.** The server refuses the first open on the
//! files' connection with ENOSYS, and the kernel then opens them itself, sends neither opens
//! nor releases, and keeps their page cache across opens. A file's attributes carry the size
//! and the time of the text the server publishes, and the kernel may keep them while that
//! text is fresh (100 ms from when it was computed); reads within that time come from the page
//! cache with no request at all. After it, an open or a read asks for the attributes
//! (FUSE_AUTO_INVAL_DATA): a newer text has a newer time, so the kernel drops the old pages
//! and reads the new text, which the server keeps unchanged until the next request for
//! attributes, so that it matches the size the kernel was told. A lookup computes nothing (it
//! answers with the last text's attributes, kept for no time): the runtime looks the files up
//! when it binds them, before the container's limits exist.
//!
//! If the server is gone, reads fail with ENOTCONN once the kernel's 100 ms of a text are
//! over (until then the kernel serves the text it has, the container's own): host values
//! never appear in their place.
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Instant;
//! use eci_mount::virt::{CgroupDirs, VirtualFs, SERVED};
//!
//! let fs = VirtualFs::mount(Path::new("/run/eci/virtual"))?;
//! let dirs = CgroupDirs::resolve(Path::new("/eci/web"))?;
//! let served = fs.register("web", dirs, Instant::now())?;
//! for (file, target) in SERVED {
//!     // bind served.files.join(file.name()) over target in the container's mount table
//! }
//! fs.unregister("web");
//! # Ok::<(), std::io::Error>(())
//! ```

mod cgroup;
pub mod cgroup_tree;
pub mod daemon;
pub mod render;
pub mod sysctl;

use std::collections::BTreeMap;
use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eci_policy::settings::{ProcFile, SysctlMode};
use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request, SessionACL,
};

pub use cgroup::{mounted_hierarchies, CgroupDirs, ControllerDir, Hierarchy};
use render::{LoadAverage, Tasks};

/// The files the server computes, and where each goes in a container.
pub const SERVED: [(ProcFile, &str); 7] = [
    (ProcFile::Meminfo, "/proc/meminfo"),
    (ProcFile::Cpuinfo, "/proc/cpuinfo"),
    (ProcFile::Stat, "/proc/stat"),
    (ProcFile::Loadavg, "/proc/loadavg"),
    (ProcFile::Swaps, "/proc/swaps"),
    (ProcFile::Diskstats, "/proc/diskstats"),
    (ProcFile::CpuOnline, "/sys/devices/system/cpu/online"),
];

const ROOT: u64 = 1;
/// Inodes per container directory: the directory, its served files, its tunables.
const PER_DIR: u64 = 64;
/// The first tunable's index in a directory.
const FIRST_TUNABLE: usize = 1 + SERVED.len();
/// A directory's attributes never change: let the kernel keep them.
const TTL: Duration = Duration::from_secs(3600);
/// The size a tunable reports (the server reads tunables out itself, direct I/O). Like
/// procfs's, tunables have no size of their own, but one of zero makes the kernel's splice path
/// (sendfile(2), which busybox's cat uses) read nothing: since Linux 6.5 it reads a direct I/O
/// FUSE file through the page cache, up to the size. With a size no text reaches, the server's
/// short answer sets the size to the text's end; with attributes that are never kept, the next
/// open asks again (default_permissions checks them at every open), which sets this size again
/// and drops the previous text's pages.
const SPLICE_SIZE: u64 = 1 << 20;

/// What the host has, read once.
#[derive(Debug)]
struct Host {
    meminfo: String,
    cpuinfo: String,
    cpus: Vec<u32>,
    boot_wall: SystemTime,
    boot_instant: Instant,
}

impl Host {
    fn read() -> std::io::Result<Host> {
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
        Ok(Host {
            meminfo: std::fs::read_to_string("/proc/meminfo")?,
            cpuinfo: std::fs::read_to_string("/proc/cpuinfo")?,
            cpus: render::parse_cpu_list(&online).unwrap_or_else(|| vec![0]),
            boot_wall: SystemTime::now(),
            boot_instant: Instant::now(),
        })
    }

    /// The wall-clock time at `instant`.
    fn wall_time(&self, instant: Instant) -> SystemTime {
        match instant.checked_duration_since(self.boot_instant) {
            Some(after) => self.boot_wall + after,
            None => self.boot_wall - self.boot_instant.duration_since(instant),
        }
    }

    /// Wall-clock seconds at `instant`.
    fn wall_secs(&self, instant: Instant) -> u64 {
        let wall = self.wall_time(instant);
        wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

/// One registered container.
#[derive(Debug)]
struct Entry {
    name: String,
    /// Its directory's name: the name and the slot, so that a container registered again under
    /// the same name never meets the kernel's cached entries of the earlier one.
    dir: String,
    dirs: CgroupDirs,
    started: Instant,
    /// Owner of the tunables (the container's root on the host), so that it may write them.
    owner: u32,
    /// Reconciliation mode of each tunable (indexed like [`sysctl::TUNABLES`]).
    modes: Vec<SysctlMode>,
    /// The values the container wrote, by tunable.
    written: Mutex<BTreeMap<usize, String>>,
    /// Each served file's last text and when it was computed.
    recent: Mutex<[Option<Computed>; SERVED.len()]>,
    /// Its load averages, sampled by the server's sampling thread.
    load: Mutex<LoadAverage>,
    /// Its tasks as counted last (see [`Entry::tasks`]).
    kept_count: Mutex<Option<KeptCount>>,
    /// Held while its tasks are counted: one count at a time, outside `kept_count`.
    counting: Mutex<()>,
}

/// A count of a container's tasks ([`CgroupDirs::count`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TaskCount {
    /// Its threads, and how many of them run or wait on I/O.
    threads: Tasks,
    /// Its processes.
    processes: u64,
    /// Its newest thread's number in the container's PID namespace (0 if unknown), read
    /// while the thread was just listed in the container's cgroup: a host TID kept instead
    /// could be reused by a host process by the time a read turned it into a number.
    last_pid: u64,
}

/// A [`TaskCount`] kept, with when it was finished and how long it took.
#[derive(Debug, Clone, Copy)]
struct KeptCount {
    done: Instant,
    took: Duration,
    count: TaskCount,
}

impl KeptCount {
    /// Whether a read may be answered with this count ([`reuse_for`]).
    fn serves_reads(&self) -> bool {
        self.done.elapsed() < reuse_for(self.took)
    }

    /// Whether it took long enough to count that a read may be served it beyond [`FRESH`].
    fn costly(&self) -> bool {
        reuse_for(self.took) > FRESH
    }
}

/// How long a read may reuse a count of the container's threads that took `took` to make:
/// [`FRESH`], or longer for a count that costs more, so that counting one container's tasks
/// for reads takes at most a [`COUNTING_SHARE`] of one server thread's time, however many
/// threads it makes. A container of 100,000 threads (about 0.7 s to count) is served the
/// sampler's counts, made about every [`LoadAverage::INTERVAL`], and the threads that serve
/// every container's files count it only for its first read.
fn reuse_for(took: Duration) -> Duration {
    took.saturating_mul(COUNTING_SHARE).max(FRESH)
}

/// How many cgroups below a container's own its counts walk. A container given its cgroup
/// (delegated) may make cgroups without end on cgroup v1, and every count would walk them
/// all; on cgroup2 eci caps a delegated tree at this many (`cgroup.max.descendants`). Tasks
/// in cgroups past it are not counted: the container's own figures, never the host's, fall
/// short.
const MOST_CGROUPS_COUNTED: usize = 1024;

/// One over the share of a server thread's time that counting a container's threads for reads
/// may take ([`reuse_for`]).
const COUNTING_SHARE: u32 = 20;

/// A file's text and when it was computed.
type Computed = (Instant, Arc<[u8]>);

impl Entry {
    /// The container's tasks for a read ([`CgroupDirs::count`]): the last count while
    /// [`reuse_for`] allows, else one made now and kept. Counting reads every thread's
    /// /proc/TID/stat (about 7 µs each here).
    fn tasks_for_read(&self) -> TaskCount {
        self.tasks(KeptCount::serves_reads, |_| true)
    }

    /// The container's tasks for a load sample: counted anew unless counted in the last
    /// [`FRESH`], and kept only if [`KeptCount::costly`], so that a read never gets a cheap
    /// count made before the reader existed.
    fn tasks_for_sample(&self) -> TaskCount {
        self.tasks(|kept| kept.done.elapsed() < FRESH, KeptCount::costly)
    }

    /// The last count if `may_reuse` it, else one made now, kept if `keep` says so. One
    /// count at a time, outside the kept count's lock: while a costly count is under way,
    /// others are served the last one rather than wait for it.
    fn tasks(
        &self,
        may_reuse: impl Fn(&KeptCount) -> bool,
        keep: impl Fn(&KeptCount) -> bool,
    ) -> TaskCount {
        let kept = || {
            *self
                .kept_count
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if let Some(last) = kept().filter(&may_reuse) {
            return last.count;
        }
        let _counting = match self.counting.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => match kept() {
                Some(last) if last.costly() => return last.count,
                _ => self.counting.lock().unwrap_or_else(PoisonError::into_inner),
            },
        };
        // One made while this waited may do.
        if let Some(last) = kept().filter(&may_reuse) {
            return last.count;
        }
        let start = Instant::now();
        let count = self.dirs.count();
        let done = Instant::now();
        let made = KeptCount {
            done,
            took: done - start,
            count,
        };
        if keep(&made) {
            *self
                .kept_count
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(made);
        }
        count
    }
}

/// Whether process `pid` (writing, so alive until answered) may write tunable `name`, as the
/// kernel would let it write the host's: from a user namespace host root made (the
/// container's own; one made inside the container belongs to its root, whom the kernel
/// refuses the host's tunables: EACCES), holding the capability the kernel's handler asks for
/// in it (EPERM; [`sysctl::capability_to_write`]), and as the tunable's `owner` (the
/// container's root's host uid), as its effective uid, on this very write (EACCES): FUSE's own
/// check (`default_permissions`) asked that of whoever opened the file, and the kernel asks
/// it of every writer of its tunables again, so that a descriptor handed to another user
/// writes nothing. What cannot be read is refused.
fn writer_may_write(pid: u32, name: &str, owner: u32) -> Result<(), Errno> {
    // ioctl_ns(2): _IO(0xb7, 0x4).
    const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(|_| Errno::EACCES)?;
    let mut made_by: libc::uid_t = libc::uid_t::MAX;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer, which is valid.
    let asked = unsafe { libc::ioctl(userns.as_raw_fd(), NS_GET_OWNER_UID, &mut made_by) };
    if asked != 0 || made_by != 0 {
        return Err(Errno::EACCES);
    }
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| Errno::EACCES)?;
    let effective_uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1)?.parse::<u32>().ok());
    if effective_uid != Some(owner) {
        return Err(Errno::EACCES);
    }
    let Some(capability) = sysctl::capability_to_write(name) else {
        return Ok(());
    };
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or(Errno::EPERM)?;
    match effective & (1 << capability) {
        0 => Err(Errno::EPERM),
        _ => Ok(()),
    }
}

/// The handle every open tunable is given: nothing is kept per open (see `Served::open`).
const TUNABLE_HANDLE: u64 = 1;

/// How long a computed file is served again before it is computed anew. Computing reads
/// several cgroup files (about 10 µs each here); a reader polling faster than this sees the
/// same figures, as it would from a tool that samples.
const FRESH: Duration = Duration::from_millis(100);

/// The filesystem's state, shared with the session thread.
#[derive(Debug)]
struct Registry {
    host: Host,
    /// By slot: a directory's inode is `PER_DIR * (slot + 1)`. Slots are never reused, so an
    /// inode never changes meaning.
    entries: RwLock<BTreeMap<u64, Arc<Entry>>>,
    next_slot: AtomicU64,
    /// Held while the host's value of a tunable is read and changed.
    reconciling: Mutex<()>,
    /// Told of every value a container writes to a tunable (see [`VirtualFs::on_write`]).
    on_write: std::sync::OnceLock<Hook>,
}

/// A [`WriteHook`] kept in the registry.
struct Hook(WriteHook);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteHook")
    }
}

/// Called with a container's name and the slot it is served in (a name may be served again,
/// in another slot, while a write of the earlier container's is under way), a tunable's dotted
/// name and the value it wrote.
pub type WriteHook = Box<dyn Fn(&str, u64, &str, &str) + Send + Sync>;

/// Where an inode points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Root,
    Dir(u64),
    File(u64, ProcFile),
    Tunable(u64, usize),
}

fn node_of(ino: u64) -> Option<Node> {
    if ino == ROOT {
        return Some(Node::Root);
    }
    let slot = (ino / PER_DIR).checked_sub(1)?;
    match (ino % PER_DIR) as usize {
        0 => Some(Node::Dir(slot)),
        n if n < FIRST_TUNABLE => SERVED.get(n - 1).map(|(file, _)| Node::File(slot, *file)),
        n => (n - FIRST_TUNABLE < sysctl::TUNABLES.len())
            .then_some(Node::Tunable(slot, n - FIRST_TUNABLE)),
    }
}

fn ino_of(node: Node) -> u64 {
    match node {
        Node::Root => ROOT,
        Node::Dir(slot) => PER_DIR * (slot + 1),
        Node::File(slot, file) => {
            let index = SERVED.iter().position(|(f, _)| *f == file).unwrap_or(0) as u64;
            PER_DIR * (slot + 1) + 1 + index
        }
        Node::Tunable(slot, index) => PER_DIR * (slot + 1) + (FIRST_TUNABLE + index) as u64,
    }
}

/// What each of a server's two FUSE connections serves. The computed files come from a
/// read-only mount: after each read from the server the kernel forgets a FUSE file's atime
/// unless the superblock is read-only, and the next stat of it (std's `fs::read` and stdio's
/// `fopen` both make one) is then a GETATTR to the server. The files' connection also refuses
/// opens, which the tunables need. Tunables must take writes, so they come from a second
/// connection, mounted read-write. Both serve the same registry and inode numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Files,
    Tunables,
}

impl Role {
    const BOTH: [Role; 2] = [Role::Files, Role::Tunables];

    /// The mount's directory under the server's mountpoint.
    fn dir_name(self) -> &'static str {
        match self {
            Role::Files => "files",
            Role::Tunables => "tunables",
        }
    }

    fn serves(self, node: Node) -> bool {
        match node {
            Node::Root | Node::Dir(_) => true,
            Node::File(..) => self == Role::Files,
            Node::Tunable(..) => self == Role::Tunables,
        }
    }
}

/// A container's two directories on a server: its computed files (on the read-only mount)
/// and its tunables (on the read-write one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Directories {
    /// Holds a file named [`ProcFile::name`] for each of [`SERVED`].
    pub files: PathBuf,
    /// Holds a file named by each dotted name of [`sysctl::TUNABLES`].
    pub tunables: PathBuf,
}

/// Descriptors of a server's two FUSE connections: see [`VirtualFs::connections`].
#[derive(Debug)]
pub struct Connections {
    /// The computed files' connection (mounted read-only).
    pub files: OwnedFd,
    /// The tunables' connection (mounted read-write).
    pub tunables: OwnedFd,
}

impl Connections {
    /// New descriptors of the same two connections.
    pub fn try_clone(&self) -> std::io::Result<Connections> {
        Ok(Connections {
            files: self.files.try_clone()?,
            tunables: self.tunables.try_clone()?,
        })
    }

    fn of(&self, role: Role) -> &OwnedFd {
        match role {
            Role::Files => &self.files,
            Role::Tunables => &self.tunables,
        }
    }
}

/// A node's attributes; `sized` for a file the server reads out itself (see [`SPLICE_SIZE`]).
fn attr(node: Node, owner: u32, sized: bool) -> FileAttr {
    let (kind, perm, nlink, uid) = match node {
        Node::File(..) => (FileType::RegularFile, 0o444, 1, 0),
        Node::Tunable(..) => (FileType::RegularFile, 0o644, 1, owner),
        _ => (FileType::Directory, 0o555, 2, 0),
    };
    FileAttr {
        ino: INodeNo(ino_of(node)),
        size: if sized { SPLICE_SIZE } else { 0 },
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink,
        uid,
        gid: uid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Registry {
    fn new() -> std::io::Result<Arc<Registry>> {
        Ok(Arc::new(Registry {
            host: Host::read()?,
            entries: RwLock::new(BTreeMap::new()),
            next_slot: AtomicU64::new(0),
            reconciling: Mutex::new(()),
            on_write: std::sync::OnceLock::new(),
        }))
    }

    fn register(
        &self,
        mountpoint: &Path,
        slot: u64,
        tenant: Tenant<'_>,
    ) -> std::io::Result<Directories> {
        let name = tenant.name;
        let invalid = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("virtual files for '{name}': {what}"),
            )
        };
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(invalid("not a file name"));
        }
        let modes: Vec<SysctlMode> = sysctl::TUNABLES
            .iter()
            .map(|(n, _)| (tenant.mode_of)(n))
            .collect();
        if let Some(((tunable, _), mode)) = sysctl::TUNABLES
            .iter()
            .zip(&modes)
            .find(|((n, _), mode)| !sysctl::mode_allowed(n, **mode))
        {
            return Err(invalid(&format!(
                "{tunable} cannot be reconciled with the host as {}: a container could harm the host",
                mode.name()
            )));
        }
        let mut written = BTreeMap::new();
        for (tunable, value) in &tenant.written {
            let index = sysctl::TUNABLES
                .iter()
                .position(|(n, _)| n == tunable)
                .ok_or_else(|| invalid(&format!("{tunable} is not an emulated tunable")))?;
            let (_, kind) = sysctl::TUNABLES[index];
            let value = sysctl::check(kind, value.as_bytes())
                .ok_or_else(|| invalid(&format!("{tunable}: {value:?} is not a valid value")))?;
            written.insert(index, value);
        }
        if slot > u64::MAX / PER_DIR - 2 {
            return Err(invalid(&format!("slot {slot} is out of range")));
        }
        let mut entries = self
            .entries
            .write()
            .map_err(|_| invalid("registry poisoned"))?;
        if entries.values().any(|e| e.name == name) {
            return Err(invalid("already registered"));
        }
        if entries.contains_key(&slot) {
            return Err(invalid(&format!("slot {slot} is taken")));
        }
        self.next_slot.fetch_max(slot + 1, Ordering::Relaxed);
        let dir = directory_name(name, slot, tenant.tag);
        entries.insert(
            slot,
            Arc::new(Entry {
                name: name.to_string(),
                dir: dir.clone(),
                dirs: tenant.dirs,
                started: tenant.started,
                owner: tenant.owner,
                modes,
                written: Mutex::new(written),
                recent: Mutex::new(Default::default()),
                load: Mutex::new(LoadAverage::default()),
                kept_count: Mutex::new(None),
                counting: Mutex::new(()),
            }),
        );
        Ok(Directories {
            files: mountpoint.join(Role::Files.dir_name()).join(&dir),
            tunables: mountpoint.join(Role::Tunables.dir_name()).join(&dir),
        })
    }

    /// The attributes of an existing node and how long the kernel may keep them: a tunable's
    /// never (see [`SPLICE_SIZE`]); a computed file's (those of the text it publishes now,
    /// computed anew once the last is no longer fresh) for as long as that text stays fresh,
    /// so that reads within that time come from the kernel's page cache without a request
    /// (see the module's documentation).
    fn attr_and_ttl(&self, node: Node) -> Option<(Duration, FileAttr)> {
        match node {
            Node::File(slot, file) => {
                let published = self.publish(slot, file)?;
                let ttl = FRESH.saturating_sub(published.0.elapsed());
                Some((ttl, self.file_attr(node, Some(&published))))
            }
            Node::Tunable(..) => Some((Duration::ZERO, self.attr_of(node)?)),
            Node::Root | Node::Dir(_) => Some((TTL, self.attr_of(node)?)),
        }
    }

    /// A computed file's attributes: the size and time of `text` (none yet: size 0).
    fn file_attr(&self, node: Node, text: Option<&Computed>) -> FileAttr {
        let mut attr = attr(node, 0, false);
        if let Some((at, text)) = text {
            attr.size = text.len() as u64;
            attr.mtime = self.host.wall_time(*at);
        }
        attr
    }

    fn exists(&self, node: Node) -> bool {
        match node {
            Node::Root => true,
            Node::Dir(slot) | Node::File(slot, _) | Node::Tunable(slot, _) => {
                self.entries.read().is_ok_and(|e| e.contains_key(&slot))
            }
        }
    }

    /// The attributes of an existing node (a computed file's: see [`Registry::attr_and_ttl`]).
    fn attr_of(&self, node: Node) -> Option<FileAttr> {
        let owner = match node {
            Node::Tunable(slot, _) => self.entries.read().ok()?.get(&slot)?.owner,
            Node::File(..) => return self.attr_and_ttl(node).map(|(_, attr)| attr),
            _ if self.exists(node) => 0,
            _ => return None,
        };
        Some(attr(node, owner, matches!(node, Node::Tunable(..))))
    }

    /// A tunable as the container reads it: its own value once it wrote one, else the host's.
    fn tunable(&self, slot: u64, index: usize) -> Option<Arc<[u8]>> {
        let entry = self.entry(slot)?;
        let (name, _) = sysctl::TUNABLES.get(index)?;
        let own = match entry.modes.get(index) {
            Some(SysctlMode::AlwaysHost) => None,
            _ => entry.written.lock().ok()?.get(&index).cloned(),
        };
        let value = match own {
            Some(value) => format!("{value}\n"),
            None => std::fs::read_to_string(sysctl::proc_path(name)).ok()?,
        };
        Some(value.into_bytes().into())
    }

    /// A container writes a tunable: checked, kept as its own, and reconciled with the host
    /// as its mode says.
    fn write_tunable(&self, slot: u64, index: usize, data: &[u8]) -> Result<(), Errno> {
        let entry = self.entry(slot).ok_or(Errno::ENOENT)?;
        let (name, kind) = sysctl::TUNABLES.get(index).ok_or(Errno::ENOENT)?;
        let mode = entry.modes.get(index).copied().unwrap_or_default();
        if mode == SysctlMode::AlwaysHost {
            return Err(Errno::EPERM);
        }
        let value = sysctl::check(*kind, data).ok_or(Errno::EINVAL)?;
        if matches!(mode, SysctlMode::LargestWins | SysctlMode::EnableWins) {
            self.reconcile(name, mode, &value)?;
        }
        if let Some(Hook(hook)) = self.on_write.get() {
            hook(&entry.name, slot, name, &value);
        }
        entry
            .written
            .lock()
            .map_err(|_| Errno::EIO)?
            .insert(index, value);
        Ok(())
    }

    /// Raises (largest-wins) or switches on (enable-wins) the host's value for a container's
    /// `value`. Never lowers or switches off: the host, or another container, may rely on what
    /// is there now.
    fn reconcile(&self, name: &str, mode: SysctlMode, value: &str) -> Result<(), Errno> {
        let path = sysctl::proc_path(name);
        let _one_at_a_time = self.reconciling.lock().map_err(|_| Errno::EIO)?;
        let current = std::fs::read_to_string(&path).map_err(|_| Errno::EIO)?;
        match sysctl::host_value(mode, current.trim(), &[value]) {
            Some(host) if host != current.trim() => {
                std::fs::write(&path, host).map_err(Errno::from)
            }
            _ => Ok(()),
        }
    }

    /// The text `file` publishes: the last one while it is fresh, else one computed now.
    fn publish(&self, slot: u64, file: ProcFile) -> Option<Computed> {
        self.computed(slot, file, |at| at.elapsed() < FRESH)
    }

    /// The text the kernel reads: the one published last, whatever its age, so that it
    /// matches the size the kernel was told (or one computed now if none was published).
    fn published(&self, slot: u64, file: ProcFile) -> Option<Arc<[u8]>> {
        self.computed(slot, file, |_| true).map(|(_, text)| text)
    }

    /// The text `file` published last, if any, computing none.
    fn last_published(&self, slot: u64, file: ProcFile) -> Option<Computed> {
        let entry = self.entry(slot)?;
        let index = SERVED.iter().position(|(f, _)| *f == file)?;
        let recent = entry.recent.lock().ok()?;
        recent[index].clone()
    }

    /// The entry in `slot`, if any: held without the registry's lock, so that computing one
    /// container's file (a walk of all its threads) never holds up another's lookups, nor a
    /// registration waiting for the lock, and every reader queued behind it.
    fn entry(&self, slot: u64) -> Option<Arc<Entry>> {
        self.entries.read().ok()?.get(&slot).cloned()
    }

    /// `file`'s last text if `keep` says it may be served, else one computed now (and kept).
    fn computed(
        &self,
        slot: u64,
        file: ProcFile,
        keep: impl Fn(Instant) -> bool,
    ) -> Option<Computed> {
        let entry = self.entry(slot)?;
        let index = SERVED.iter().position(|(f, _)| *f == file)?;
        if let Some((at, text)) = &entry.recent.lock().ok()?[index] {
            if keep(*at) {
                return Some((*at, Arc::clone(text)));
            }
        }
        // Rendered without the lock: a lookup of any of the container's files takes it, and
        // a render may wait on a count of every thread (see `Entry::tasks`).
        let at = Instant::now();
        let text: Arc<[u8]> = self.render(&entry, file)?.into();
        let mut recent = entry.recent.lock().ok()?;
        // One begun later by another reader and kept meanwhile is newer: it stays, and is
        // what this reader answers too, so that a size told matches the text kept.
        if let Some((kept_at, kept)) = &recent[index] {
            if *kept_at > at {
                return Some((*kept_at, Arc::clone(kept)));
            }
        }
        recent[index] = Some((at, Arc::clone(&text)));
        Some((at, text))
    }

    fn render(&self, entry: &Entry, file: ProcFile) -> Option<Vec<u8>> {
        let cpuset = entry.dirs.cpuset(&self.host.cpus);
        let visible = render::visible_cpus(&cpuset, entry.dirs.quota());
        let uptime = entry.started.elapsed();
        let text = match file {
            ProcFile::Meminfo => render::meminfo(&self.host.meminfo, &entry.dirs.memory()),
            ProcFile::Cpuinfo => render::cpuinfo(&self.host.cpuinfo, &visible),
            ProcFile::CpuOnline => render::cpu_online(visible.len()),
            ProcFile::Stat => {
                let usage = entry.dirs.cpu_usage(&visible);
                let btime = self.host.wall_secs(entry.started);
                // The kernel's procs_running and procs_blocked count threads, too.
                let count = entry.tasks_for_read();
                let tasks = Tasks {
                    total: count.processes,
                    ..count.threads
                };
                render::stat(&usage, uptime, btime, &tasks)
            }
            ProcFile::Swaps => {
                let host_swap = render::meminfo_value(&self.host.meminfo, "SwapTotal").unwrap_or(0);
                render::swaps(&entry.dirs.memory(), host_swap)
            }
            ProcFile::Loadavg => {
                let TaskCount {
                    threads, last_pid, ..
                } = entry.tasks_for_read();
                let load = *entry.load.lock().ok()?;
                render::loadavg(&load, threads.running, threads.total, last_pid)
            }
            ProcFile::Diskstats => {
                let host = std::fs::read_to_string("/proc/diskstats").ok()?;
                render::diskstats(&host, &entry.dirs.disk_io())
            }
            // Uptime is the kernel's, in the container's time namespace; sysinfo is a call.
            ProcFile::Uptime | ProcFile::Sysinfo => return None,
        };
        Some(text.into_bytes())
    }
}

impl CgroupDirs {
    /// The IDs listed in a cgroup file (`v1_list` or `v2_list`, by hierarchy) of the
    /// container's cgroup and the first [`MOST_CGROUPS_COUNTED`] cgroups below it, each once,
    /// in rising order.
    fn ids(&self, v1_list: &CStr, v2_list: &CStr) -> Vec<i32> {
        let Some(dir) = self.cpuacct.as_ref().or(self.memory.as_ref()) else {
            return Vec::new();
        };
        let list = if dir.unified { v2_list } else { v1_list };
        let most = MOST_CGROUPS_COUNTED + 1;
        let mut ids = cgroup_tree::ids_in_first_cgroups(&dir.dir, list, most).unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Counts the container's processes, and its threads by state, in its cgroup and the
    /// cgroups below it (where a delegated container, Docker in it say, moves its
    /// processes), each once; and finds the host TID of the newest thread. One read of
    /// /proc/TID/task/TID/stat a thread: see [`Entry::tasks`]. (Not /proc/TID/stat: for a
    /// thread other than its process's first, that is the whole process's, which the kernel
    /// adds up over every thread, so a process of N threads would cost N² steps.)
    fn count(&self) -> TaskCount {
        let processes = self.ids(c"cgroup.procs", c"cgroup.procs").len() as u64;
        let ids = self.ids(c"tasks", c"cgroup.threads");
        let mut tasks = Tasks::default();
        let newest = ids.last().and_then(|id| u32::try_from(*id).ok());
        for pid in ids {
            tasks.total += 1;
            let stat =
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).unwrap_or_default();
            match stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
            {
                Some('R') => tasks.running += 1,
                Some('D') => tasks.blocked += 1,
                _ => {}
            }
        }
        TaskCount {
            threads: tasks,
            processes,
            last_pid: newest.and_then(namespace_pid).unwrap_or(0),
        }
    }
}

/// A host PID's number in its own (innermost) PID namespace. PIDs are handed out in rising
/// order in every namespace alike, so the newest thread on the host is the newest inside.
/// None for a process of the server's own PID namespace (a runtime's process placed in the
/// container's cgroup for a moment): its number there is a host PID.
fn namespace_pid(host_pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    innermost_of_nested(line)
}

/// The last number of a `NSpid:` line that names more than one PID namespace.
fn innermost_of_nested(line: &str) -> Option<u64> {
    let numbers: Vec<&str> = line.strip_prefix("NSpid:")?.split_whitespace().collect();
    match numbers.as_slice() {
        [_, .., innermost] => innermost.parse().ok(),
        _ => None,
    }
}

/// Samples every container's load every [`LoadAverage::INTERVAL`] until stopped.
struct Sampler {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    fn start(registry: Arc<Registry>) -> std::io::Result<Sampler> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("eci-loadavg".into())
            .spawn(move || {
                let (stopped, wake) = &*signal;
                let Ok(mut stopped) = stopped.lock() else {
                    return;
                };
                while !*stopped {
                    stopped = match wake.wait_timeout(stopped, LoadAverage::INTERVAL) {
                        Ok((guard, _)) => guard,
                        Err(_) => return,
                    };
                    if !*stopped {
                        registry.sample_loads();
                    }
                }
            })?;
        Ok(Sampler {
            stop,
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        if let Ok(mut stopped) = self.stop.0.lock() {
            *stopped = true;
        }
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Registry {
    /// One load sample for every container: its threads running or in uninterruptible sleep.
    fn sample_loads(&self) {
        let Ok(entries) = self
            .entries
            .read()
            .map(|e| e.values().cloned().collect::<Vec<_>>())
        else {
            return;
        };
        for entry in entries {
            let threads = entry.tasks_for_sample().threads;
            if let Ok(mut load) = entry.load.lock() {
                load.sample(threads.running + threads.blocked);
            }
        }
    }
}

/// The fuser filesystem over the registry, as one connection serves it.
struct Served {
    registry: Arc<Registry>,
    role: Role,
}

impl Served {
    fn new(registry: &Arc<Registry>, role: Role) -> Served {
        Served {
            registry: Arc::clone(registry),
            role,
        }
    }

    /// The node `ino` names, if this connection serves it.
    fn node(&self, ino: INodeNo) -> Option<Node> {
        node_of(ino.0).filter(|node| self.role.serves(*node))
    }
}

impl Filesystem for Served {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if self.role == Role::Files {
            // Without it the kernel would keep a file's old text after a newer one's
            // attributes (see the module's documentation).
            config
                .add_capabilities(InitFlags::FUSE_AUTO_INVAL_DATA)
                .map_err(|_| std::io::Error::other("the kernel lacks FUSE_AUTO_INVAL_DATA"))?;
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = match node_of(parent.0) {
            Some(Node::Root) => self.registry.entries.read().ok().and_then(|entries| {
                let name = name.to_str()?;
                entries
                    .iter()
                    .find(|(_, e)| e.dir == name)
                    .map(|(slot, _)| Node::Dir(*slot))
            }),
            Some(Node::Dir(slot)) if self.registry.exists(Node::Dir(slot)) => SERVED
                .iter()
                .find(|(file, _)| OsStr::new(file.name()) == name)
                .map(|(file, _)| Node::File(slot, *file))
                .or_else(|| {
                    sysctl::TUNABLES
                        .iter()
                        .position(|(tunable, _)| OsStr::new(tunable) == name)
                        .map(|index| Node::Tunable(slot, index))
                }),
            _ => None,
        };
        let found = found.filter(|node| self.role.serves(*node));
        let entry = found.and_then(|node| match node {
            // Nothing is computed for a lookup (the runtime's own, when it binds the file,
            // would publish a text from before the container's limits), and the attributes are
            // those of the text published last, if any: a lookup's attributes replace the
            // inode's, and any other size would cut what a reader in the container reads.
            // Kept for no time, so the next read asks for them.
            Node::File(slot, file) => {
                let last = self.registry.last_published(slot, file);
                Some((Duration::ZERO, self.registry.file_attr(node, last.as_ref())))
            }
            _ => self.registry.attr_and_ttl(node),
        });
        // A name means the same node for as long as its directory's slot does (a directory's
        // entry is kept as long), so the kernel may keep the entry even where it may not keep
        // the attributes: the runtime and the mount helper walk each file's path moments apart.
        match entry {
            Some((attr_ttl, attr)) => reply.entry_with_ttls(&attr_ttl, &TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self
            .node(ino)
            .and_then(|node| self.registry.attr_and_ttl(node))
        {
            Some((ttl, attr)) => reply.attr(&ttl, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    // Truncation on open for writing (`echo 1 > file`) arrives as a size change: nothing to do.
    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.node(ino).and_then(|node| self.registry.attr_of(node)) {
            Some(
                attr @ FileAttr {
                    kind: FileType::RegularFile,
                    perm: 0o644,
                    ..
                },
            ) => reply.attr(&Duration::ZERO, &attr),
            Some(_) => reply.error(Errno::EACCES),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: fuser::ReplyWrite,
    ) {
        let Some(Node::Tunable(slot, index)) = self.node(ino) else {
            return reply.error(Errno::EACCES);
        };
        // Like the kernel's own tunables: one whole value per write, from the start.
        if offset != 0 {
            return reply.error(Errno::EINVAL);
        }
        let name = sysctl::TUNABLES.get(index).map_or("", |(name, _)| name);
        let Some(owner) = self.registry.entry(slot).map(|entry| entry.owner) else {
            return reply.error(Errno::ENOENT);
        };
        if let Err(errno) = writer_may_write(req.pid(), name, owner) {
            return reply.error(errno);
        }
        match self.registry.write_tunable(slot, index, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(errno) => reply.error(errno),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let writing = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        match self.node(ino) {
            // ENOSYS tells the kernel not to send opens (nor releases) on this connection again:
            // it then opens the files itself, keeping their page cache (see the module's documentation).
            // A write is refused by the read-only mount before it gets here.
            Some(Node::File(..)) if !writing => return reply.error(Errno::ENOSYS),
            Some(Node::File(..)) => return reply.error(Errno::EACCES),
            Some(tunable @ Node::Tunable(..)) if self.registry.exists(tunable) => {}
            Some(Node::Root | Node::Dir(_)) => return reply.error(Errno::EISDIR),
            Some(Node::Tunable(..)) | None => return reply.error(Errno::ENOENT),
        };
        // An open tunable keeps nothing here: every read is served the value of the moment,
        // as the kernel's own tunables are. So no number of opens (a container may hold
        // millions) costs the server memory, and a file opened before an adoption reads on.
        let flags = FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NOFLUSH;
        reply.opened(FileHandle(TUNABLE_HANDLE), flags);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let content = match self.node(ino) {
            // The kernel fills its page cache: the text whose size it was told.
            Some(Node::File(slot, file)) => self.registry.published(slot, file),
            Some(Node::Tunable(slot, index)) => self.registry.tunable(slot, index),
            _ => None,
        };
        let Some(content) = content else {
            return reply.error(Errno::EBADF);
        };
        let start = (offset as usize).min(content.len());
        let end = start.saturating_add(size as usize).min(content.len());
        reply.data(&content[start..end]);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut children: Vec<(Node, String)> = Vec::new();
        match node_of(ino.0) {
            Some(Node::Root) => {
                if let Ok(entries) = self.registry.entries.read() {
                    children.extend(
                        entries
                            .iter()
                            .map(|(slot, e)| (Node::Dir(*slot), e.dir.clone())),
                    );
                }
            }
            Some(Node::Dir(slot)) if self.registry.exists(Node::Dir(slot)) => match self.role {
                Role::Files => children.extend(
                    SERVED
                        .iter()
                        .map(|(f, _)| (Node::File(slot, *f), f.name().to_string())),
                ),
                Role::Tunables => children.extend(
                    sysctl::TUNABLES
                        .iter()
                        .enumerate()
                        .map(|(i, (name, _))| (Node::Tunable(slot, i), name.to_string())),
                ),
            },
            _ => return reply.error(Errno::ENOENT),
        }
        for (i, (node, name)) in children.iter().enumerate().skip(offset as usize) {
            let kind = attr(*node, 0, false).kind;
            if reply.add(INodeNo(ino_of(*node)), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// A container to serve: what [`VirtualFs::register_at`] and [`Adoption::register_at`] take.
pub struct Tenant<'a> {
    /// Its name (a file name; unique on the server).
    pub name: &'a str,
    /// Its cgroup.
    pub dirs: CgroupDirs,
    /// When it started.
    pub started: Instant,
    /// The host uid that owns its tunables (its root), so that it may write them.
    pub owner: u32,
    /// How each tunable, by dotted name, is reconciled with the host.
    pub mode_of: &'a dyn Fn(&str) -> SysctlMode,
    /// Tunables it had written, by dotted name (after an adoption; see
    /// [`VirtualFs::written`]). Checked again, not reconciled again.
    pub written: BTreeMap<String, String>,
    /// What its directory is named after instead of its slot: a number its runtime chose,
    /// which then knows the directory before the server answers ([`directory_name`]).
    pub tag: Option<u64>,
}

/// The mounted server: two FUSE mounts under its mountpoint, `files` (read-only) and
/// `tunables`. Dropping it unmounts them; every container's files then fail with ENOTCONN.
pub struct VirtualFs {
    registry: Arc<Registry>,
    mountpoint: PathBuf,
    /// Duplicates of the sessions' /dev/fuse descriptors, for [`VirtualFs::connections`].
    connections: Connections,
    sessions: Mutex<Vec<BackgroundSession>>,
    sampler: Mutex<Sampler>,
    forgetter: Forgetter,
}

impl std::fmt::Debug for VirtualFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualFs")
            .field("mountpoint", &self.mountpoint)
            .finish()
    }
}

/// A connection taken over from a dead server, not yet served: see [`VirtualFs::adopt`].
pub struct Adoption {
    registry: Arc<Registry>,
    mountpoint: PathBuf,
    connections: Connections,
    sessions: Vec<fuser::Session<Served>>,
}

impl std::fmt::Debug for Adoption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adoption")
            .field("mountpoint", &self.mountpoint)
            .finish()
    }
}

impl Adoption {
    /// See [`VirtualFs::on_write`]: set before serving, so that no write is missed.
    pub fn on_write(&self, hook: WriteHook) {
        let _ = self.registry.on_write.set(Hook(hook));
    }

    /// Serves `tenant` again in the `slot` it had: see [`VirtualFs::register_at`] (here a
    /// slot below the next one is expected).
    pub fn register_at(&self, slot: u64, tenant: Tenant<'_>) -> std::io::Result<Directories> {
        self.registry.register(&self.mountpoint, slot, tenant)
    }

    /// Starts serving, and asks the kernel to queue again every request the dead server had
    /// read but not answered, so that their callers get an answer rather than waiting forever
    /// (FUSE_NOTIFY_RESEND; on a kernel older than 6.9 those few wait until killed).
    pub fn serve(self) -> std::io::Result<VirtualFs> {
        // The kernel may hold a text of the dead server's (its size and its pages), which this
        // server never published: it must ask for the attributes again, whose new time then
        // drops the old pages, rather than read a text of another length.
        invalidate_files(self.connections.of(Role::Files), &self.registry)?;
        let fs = VirtualFs::serve(
            self.registry,
            &self.mountpoint,
            self.connections,
            self.sessions,
        )?;
        for role in Role::BOTH {
            match resend(fs.connections.of(role)) {
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {}
                other => other?,
            }
        }
        Ok(fs)
    }
}

/// Makes the kernel forget the attributes of every registered container's computed files
/// (FUSE_NOTIFY_INVAL_INODE with a negative offset: not the pages, whose invalidation would
/// wait, uninterruptibly, for a page under a read the dead server never answered and no
/// session serves yet); files it does not hold are skipped.
fn invalidate_files(connection: &OwnedFd, registry: &Registry) -> std::io::Result<()> {
    let slots: Vec<u64> = registry
        .entries
        .read()
        .map_err(|_| std::io::Error::other("registry poisoned"))?
        .keys()
        .copied()
        .collect();
    for slot in slots {
        for (file, _) in SERVED {
            let mut body = Vec::with_capacity(24);
            body.extend_from_slice(&ino_of(Node::File(slot, file)).to_ne_bytes());
            body.extend_from_slice(&(-1i64).to_ne_bytes()); // attributes only
            body.extend_from_slice(&0i64.to_ne_bytes());
            unless_not_held(notify(connection, FUSE_NOTIFY_INVAL_INODE, &body))?;
        }
    }
    Ok(())
}

/// Writes notification `code` with `body` to a connection: the out-header (its unique 0 is
/// what makes it a notification), then the body.
fn notify(connection: &OwnedFd, code: i32, body: &[u8]) -> std::io::Result<()> {
    let length = 16 + body.len();
    let mut notification = Vec::with_capacity(length);
    notification.extend_from_slice(&(length as u32).to_ne_bytes());
    notification.extend_from_slice(&code.to_ne_bytes());
    notification.extend_from_slice(&0u64.to_ne_bytes());
    notification.extend_from_slice(body);
    let written = nix::unistd::write(connection, &notification)?;
    if written != length {
        return Err(std::io::Error::other(format!(
            "short write of FUSE notification {code}"
        )));
    }
    Ok(())
}

/// An invalidation of something the kernel does not hold (ENOENT) is no failure.
fn unless_not_held(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// The notification that makes the kernel forget an inode's attributes (and pages).
const FUSE_NOTIFY_INVAL_INODE: i32 = 2;
/// The notification that makes the kernel forget a directory entry (and what lies below it).
const FUSE_NOTIFY_INVAL_ENTRY: i32 = 3;

/// The directory of container `name` registered in `slot`, or with `tag`: the name and the
/// slot (slots are never handed out twice), or the tag (a random 64-bit number its runtime
/// chose, in a form no slot takes), so that a container registered again under the same name
/// never meets the kernel's cached entries of the earlier one.
pub fn directory_name(name: &str, slot: u64, tag: Option<u64>) -> String {
    match tag {
        Some(tag) => format!("{name}.t{tag:016x}"),
        None => format!("{name}.{slot}"),
    }
}

/// How long an unregistering caller waits for the kernel to forget a directory.
const FORGET_WAIT: Duration = Duration::from_millis(500);

/// A directory to forget, and where to say it is done.
type ForgetRequest = (String, std::sync::mpsc::SyncSender<()>);

/// Has the kernel forget unregistered directories' entries (FUSE_NOTIFY_INVAL_ENTRY on both
/// connections) from a thread of its own. The kernel handles the notification with the root
/// directory locked, uninterruptibly, and a lookup no server will ever answer (one a dead
/// server had read, on a kernel without FUSE_NOTIFY_RESEND) would hold that lock, and the
/// notifying thread, for good: the caller waits [`FORGET_WAIT`] at most, and not at all while
/// an earlier notification is still stuck. A late or lost one leaves entries whose inodes
/// answer nothing any more (slots are never reused).
#[derive(Debug)]
struct Forgetter {
    queue: Mutex<std::sync::mpsc::Sender<ForgetRequest>>,
    stuck: Arc<std::sync::atomic::AtomicBool>,
}

impl Forgetter {
    fn start(connections: Connections) -> std::io::Result<Forgetter> {
        let (queue, requests) = std::sync::mpsc::channel::<ForgetRequest>();
        let stuck = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let unstuck = Arc::clone(&stuck);
        // Ends when the server (the queue's sender) is dropped.
        std::thread::Builder::new()
            .name("eci-virt-forget".into())
            .spawn(move || {
                for (dir, done) in requests {
                    for role in Role::BOTH {
                        let _ = forget_entry(connections.of(role), ROOT, &dir);
                    }
                    unstuck.store(false, std::sync::atomic::Ordering::Relaxed);
                    let _ = done.try_send(());
                }
            })?;
        Ok(Forgetter {
            queue: Mutex::new(queue),
            stuck,
        })
    }

    /// Queues `dir` and waits for it to be forgotten, within bounds (see [`Forgetter`]).
    fn forget(&self, dir: String) {
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        let queued = match self.queue.lock() {
            Ok(queue) => queue.send((dir, done)).is_ok(),
            Err(_) => false,
        };
        if !queued || self.stuck.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if finished.recv_timeout(FORGET_WAIT).is_err() {
            self.stuck.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Makes the kernel forget the entry `name` in directory `parent` (FUSE_NOTIFY_INVAL_ENTRY);
/// an entry it does not hold is no error.
fn forget_entry(connection: &OwnedFd, parent: u64, name: &str) -> std::io::Result<()> {
    let mut body = Vec::with_capacity(16 + name.len() + 1);
    body.extend_from_slice(&parent.to_ne_bytes());
    body.extend_from_slice(&(name.len() as u32).to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes()); // flags: none
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    unless_not_held(notify(connection, FUSE_NOTIFY_INVAL_ENTRY, &body))
}

/// FUSE_INIT's opcode, for the handshake played again on adoption.
const FUSE_INIT: u32 = 26;
/// The notification that asks the kernel to queue again every request a server read but did
/// not answer (Linux 6.9).
const FUSE_NOTIFY_RESEND: i32 = 7;

impl VirtualFs {
    /// Mounts the server under `mountpoint` (created if missing) and serves it from threads.
    pub fn mount(mountpoint: &Path) -> std::io::Result<VirtualFs> {
        let registry = Registry::new()?;
        let mut sessions = Vec::new();
        for role in Role::BOTH {
            let at = mountpoint.join(role.dir_name());
            std::fs::create_dir_all(&at)?;
            let served = Served::new(&registry, role);
            sessions.push(fuser::Session::new(
                served,
                &at,
                &session_config(role, true),
            )?);
        }
        let connections = Connections {
            files: sessions[0].as_fd().try_clone_to_owned()?,
            tunables: sessions[1].as_fd().try_clone_to_owned()?,
        };
        VirtualFs::serve(registry, mountpoint, connections, sessions)
    }

    /// Takes over the live connections of a server that died, mounted under `mountpoint`:
    /// `connections` are descriptors of them that outlived that server (see
    /// [`VirtualFs::connections`]). Nothing is served until [`Adoption::serve`]: register the
    /// containers again in their slots first, so that no caller meets a missing file.
    ///
    /// ```no_run
    /// # use std::collections::BTreeMap;
    /// # use std::os::fd::OwnedFd;
    /// # use std::path::Path;
    /// # use std::time::Instant;
    /// # use eci_mount::virt::{CgroupDirs, Tenant, VirtualFs};
    /// # use eci_policy::settings::SysctlMode;
    /// # use eci_mount::virt::Connections;
    /// # fn kept_connections() -> Connections { unimplemented!() }
    /// let adoption = VirtualFs::adopt(Path::new("/run/eci/virtual"), kept_connections())?;
    /// adoption.register_at(0, Tenant {
    ///     name: "web",
    ///     dirs: CgroupDirs::resolve(Path::new("/eci/web"))?,
    ///     started: Instant::now(),
    ///     owner: 0,
    ///     mode_of: &|_| SysctlMode::ContainerOnly,
    ///     written: BTreeMap::new(),
    ///     tag: None,
    /// })?;
    /// let fs = adoption.serve()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn adopt(mountpoint: &Path, connections: Connections) -> std::io::Result<Adoption> {
        let registry = Registry::new()?;
        let mut sessions = Vec::new();
        for role in Role::BOTH {
            let served = Served::new(&registry, role);
            sessions.push(handshake_again(served, connections.of(role))?);
        }
        Ok(Adoption {
            registry,
            mountpoint: mountpoint.to_path_buf(),
            connections,
            sessions,
        })
    }

    fn serve(
        registry: Arc<Registry>,
        mountpoint: &Path,
        connections: Connections,
        sessions: Vec<fuser::Session<Served>>,
    ) -> std::io::Result<VirtualFs> {
        let sessions = sessions
            .into_iter()
            .map(fuser::Session::spawn)
            .collect::<std::io::Result<Vec<_>>>()?;
        let sampler = Sampler::start(Arc::clone(&registry))?;
        let forgetter = Forgetter::start(connections.try_clone()?)?;
        Ok(VirtualFs {
            registry,
            mountpoint: mountpoint.to_path_buf(),
            connections,
            sessions: Mutex::new(sessions),
            sampler: Mutex::new(sampler),
            forgetter,
        })
    }

    /// Descriptors of the server's two FUSE connections. Held by another process, they keep
    /// the connections alive if this one dies: the containers' reads then wait, rather than
    /// fail, until a new server adopts them ([`VirtualFs::adopt`]); once every descriptor of
    /// a connection is closed its files fail with ENOTCONN.
    pub fn connections(&self) -> std::io::Result<Connections> {
        self.connections.try_clone()
    }

    /// Whether either connection has ended (aborted, or its mount gone): its files fail with
    /// ENOTCONN, whatever this server does.
    pub fn ended(&self) -> bool {
        let watched = |fd: &OwnedFd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        let mut fds = [
            watched(&self.connections.files),
            watched(&self.connections.tunables),
        ];
        // SAFETY: two valid pollfds; a timeout of 0 only looks.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, 0) };
        let ended = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
        ready > 0 && fds.iter().any(|fd| fd.revents & ended != 0)
    }

    /// Where the server is mounted: its two mounts are `files` and `tunables` under it.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Serves a directory named `name` for a container whose cgroup is `dirs` and which
    /// started at `started`; returns the directory. Its tunables belong to host uid 0 and are
    /// container-only (see [`VirtualFs::register_with`]).
    pub fn register(
        &self,
        name: &str,
        dirs: CgroupDirs,
        started: Instant,
    ) -> std::io::Result<Directories> {
        self.register_with(name, dirs, started, 0, &|_| SysctlMode::ContainerOnly)
    }

    /// [`VirtualFs::register`], with the tunables owned by host uid `owner` (the container's
    /// root, so that it may write them) and reconciled as `mode_of` says for each dotted name.
    pub fn register_with(
        &self,
        name: &str,
        dirs: CgroupDirs,
        started: Instant,
        owner: u32,
        mode_of: &dyn Fn(&str) -> SysctlMode,
    ) -> std::io::Result<Directories> {
        let slot = self.registry.next_slot.fetch_add(1, Ordering::Relaxed);
        let tenant = Tenant {
            name,
            dirs,
            started,
            owner,
            mode_of,
            written: BTreeMap::new(),
            tag: None,
        };
        // A slot just taken from the counter: new, whatever the counter says now.
        self.registry.register(&self.mountpoint, slot, tenant)
    }

    /// Serves `tenant` in a chosen `slot`; returns its directory. After an adoption, a
    /// container goes back in the slot it had: the kernel and the container's binds still name
    /// its files by the inodes the slot gives them. Slots taken here are never handed out
    /// later.
    pub fn register_at(&self, slot: u64, tenant: Tenant<'_>) -> std::io::Result<Directories> {
        if slot < self.registry.next_slot.load(Ordering::Relaxed) {
            // A retired slot's inodes may still be bound in a container whose runtime died.
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "virtual files for '{}': slot {slot} was handed out before",
                    tenant.name
                ),
            ));
        }
        self.registry.register(&self.mountpoint, slot, tenant)
    }

    /// Calls `hook` with every value a container writes to a tunable, once it is checked and
    /// reconciled (to keep it for a server that adopts this one). Only the first hook counts.
    pub fn on_write(&self, hook: WriteHook) {
        let _ = self.registry.on_write.set(Hook(hook));
    }

    /// The slot `name` is served in.
    pub fn slot_of(&self, name: &str) -> Option<u64> {
        let entries = self.registry.entries.read().ok()?;
        entries
            .iter()
            .find(|(_, e)| e.name == name)
            .map(|(s, _)| *s)
    }

    /// The tunables `name`'s container wrote, by dotted name, to give back through
    /// [`Tenant::written`] after an adoption.
    pub fn written(&self, name: &str) -> BTreeMap<String, String> {
        let Ok(entries) = self.registry.entries.read() else {
            return BTreeMap::new();
        };
        let Some(entry) = entries.values().find(|e| e.name == name) else {
            return BTreeMap::new();
        };
        let Ok(written) = entry.written.lock() else {
            return BTreeMap::new();
        };
        written
            .iter()
            .filter_map(|(index, value)| {
                let (tunable, _) = sysctl::TUNABLES.get(*index)?;
                Some((tunable.to_string(), value.clone()))
            })
            .collect()
    }

    /// What sysinfo(2) tells `name`'s processes, agreeing with its meminfo and uptime: its
    /// memory and swap totals, its uptime, its load averages and its number of threads (as
    /// the kernel's `procs` counts). `None` once `name` is unregistered.
    pub fn sysinfo(&self, name: &str) -> Option<libc::sysinfo> {
        let entry = {
            let entries = self.registry.entries.read().ok()?;
            Arc::clone(entries.values().find(|e| e.name == name)?)
        };
        let memory = entry.dirs.memory();
        let totals = render::totals(&self.registry.host.meminfo, &memory);
        // SAFETY: sysinfo is plain data; all-zero is a valid value.
        let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
        info.uptime = entry.started.elapsed().as_secs() as libc::c_long;
        info.totalram = totals.total as libc::c_ulong;
        info.freeram = totals.free as libc::c_ulong;
        info.sharedram = memory.shmem as libc::c_ulong;
        info.bufferram = 0;
        info.totalswap = totals.swap_total as libc::c_ulong;
        info.freeswap = totals.swap_free as libc::c_ulong;
        // The kernel's procs is its number of threads: the count the files are served, made
        // again at most as often as theirs, on this thread that serves every container's
        // calls and registrations (a count made per call let containers calling sysinfo in a
        // loop keep it from anything else).
        info.procs = entry
            .tasks_for_read()
            .threads
            .total
            .min(u64::from(u16::MAX)) as u16;
        let loads = entry.load.lock().ok()?.for_sysinfo();
        for (to, load) in info.loads.iter_mut().zip(loads) {
            *to = load as libc::c_ulong;
        }
        info.mem_unit = 1;
        Some(info)
    }

    /// Stops serving `name`'s directory; its files answer ENOENT from then on.
    pub fn unregister(&self, name: &str) {
        let mut gone = Vec::new();
        if let Ok(mut entries) = self.registry.entries.write() {
            entries.retain(|_, e| {
                if e.name == name {
                    gone.push(e.dir.clone());
                }
                e.name != name
            });
        }
        // The kernel keeps the directory's entry, and its files', for a long time: make it
        // forget them, so that the next walk asks (and meets ENOENT). Only once the registry is
        // unlocked: the kernel takes the root directory's lock, which a lookup waiting for the
        // registry would be holding.
        for dir in gone {
            self.forgetter.forget(dir);
        }
    }

    /// Makes the kernel forget the entries of directory `dir` (a container's `name.slot`) that
    /// a dead server had registered and this one did not take over.
    pub(crate) fn forget_directory(&self, dir: String) {
        self.forgetter.forget(dir);
    }

    /// Unmounts and stops the server. The connection is aborted rather than left to end with
    /// its last mount: copies of the mount in other mount namespaces (a container's binds, a
    /// namespace created while it was mounted) would keep it, and the server's threads, alive.
    /// Containers still using the files get ENOTCONN from then on, as if the server had died.
    pub fn unmount(&self) -> std::io::Result<()> {
        if let Ok(mut sampler) = self.sampler.lock() {
            sampler.stop();
        }
        let sessions = match self.sessions.lock() {
            Ok(mut sessions) => std::mem::take(&mut *sessions),
            Err(_) => return Ok(()),
        };
        if sessions.is_empty() {
            return Ok(());
        }
        let aborted = abort(&self.mountpoint);
        let detached = detach(&self.mountpoint);
        match aborted {
            // The threads see the end of the connections; fuser's own unmount finds nothing.
            Ok(()) => {
                for session in sessions {
                    session.join()?;
                }
            }
            // Joining could wait forever: let the threads go with the process.
            Err(err) => {
                drop(sessions);
                return Err(err);
            }
        }
        detached
    }
}

/// How a connection's session runs: mount options (for a new mount) and threads.
fn session_config(role: Role, mounting: bool) -> Config {
    let mut config = Config::default();
    if mounting {
        config.mount_options = vec![
            MountOption::FSName("eci-virtual".into()),
            MountOption::NoSuid,
            MountOption::NoDev,
            MountOption::NoExec,
            MountOption::DefaultPermissions,
        ];
        if role == Role::Files {
            // See [`Role`]: a read-only superblock keeps the files' attributes.
            config.mount_options.push(MountOption::RO);
        }
    }
    // The containers' processes run under their own IDs.
    config.acl = SessionACL::All;
    // Tunables are read and written rarely; the files are what tools poll.
    config.n_threads = Some(match role {
        Role::Files => 2,
        Role::Tunables => 1,
    });
    // Both threads read the one descriptor: a request read on a cloned descriptor is failed
    // (ECONNABORTED) when its server dies, rather than kept for the next server to answer.
    config.clone_fd = false;
    config
}

/// A fuser session over `connection`, a connection whose handshake happened with a server now
/// gone. The kernel sends FUSE_INIT once per connection, and fuser serves nothing before it
/// has answered one: so the session's handshake is played over a socket pair with an INIT of
/// our making, and then its descriptor is pointed at the connection (dup3 replaces what the
/// number refers to, atomically). The options the kernel agreed to stay as they were.
fn handshake_again(fs: Served, connection: &OwnedFd) -> std::io::Result<fuser::Session<Served>> {
    use std::io::Write;
    let (mut kernel_side, server_side) = std::os::unix::net::UnixStream::pair()?;
    kernel_side.write_all(&init_request())?;
    let config = session_config(fs.role, false);
    let session = fuser::Session::from_fd(fs, OwnedFd::from(server_side), SessionACL::All, config)?;
    // SAFETY: both are open descriptors; dup3 only changes what the session's number refers
    // to (the socket is closed, the connection takes its place).
    let duplicated = unsafe {
        libc::dup3(
            connection.as_raw_fd(),
            session.as_fd().as_raw_fd(),
            libc::O_CLOEXEC,
        )
    };
    if duplicated < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(session)
}

/// A FUSE_INIT request as the kernel sends it: the in-header, then `fuse_init_in` (major 7,
/// minor 40, 128 KiB of readahead), offering what the first server asked for and the kernel
/// agreed to (the files' server refuses to start without FUSE_AUTO_INVAL_DATA).
fn init_request() -> Vec<u8> {
    const HEADER: usize = 40;
    const INIT_IN: usize = 64;
    const FUSE_INIT_EXT: u32 = 1 << 30;
    let flags = FUSE_INIT_EXT | InitFlags::FUSE_AUTO_INVAL_DATA.bits() as u32;
    let mut request = Vec::with_capacity(HEADER + INIT_IN);
    request.extend_from_slice(&((HEADER + INIT_IN) as u32).to_ne_bytes());
    request.extend_from_slice(&FUSE_INIT.to_ne_bytes());
    request.extend_from_slice(&1u64.to_ne_bytes()); // unique
    request.extend_from_slice(&0u64.to_ne_bytes()); // nodeid
    request.extend_from_slice(&[0u8; 16]); // uid, gid, pid, padding
                                           // major, minor, max_readahead, flags, flags2
    for field in [7u32, 40, 128 * 1024, flags, 0] {
        request.extend_from_slice(&field.to_ne_bytes());
    }
    request.resize(HEADER + INIT_IN, 0);
    request
}

/// Asks the kernel to queue again the requests a dead server read and never answered.
fn resend(connection: &OwnedFd) -> std::io::Result<()> {
    notify(connection, FUSE_NOTIFY_RESEND, &[])
}

/// Aborts the FUSE connections of the eci server mounted under `mountpoint`, through fusectl
/// (mounted at /sys/fs/fuse/connections if it is not yet): every request to them fails with
/// ENOTCONN from then on, in every mount namespace, and the server's reads end. The connections
/// are found in the mount table, not by a stat of the mounts: that would wait forever on a
/// connection nobody serves, and the device of a directory that is not a mount would name some
/// other connection. NotFound if no eci server is mounted there.
pub fn abort(mountpoint: &Path) -> std::io::Result<()> {
    let mut found = false;
    let mut result = Ok(());
    for at in mounts_of(mountpoint) {
        // All are tried: one left serving must not keep another.
        match mounted_connection(&at) {
            Ok(Some(connection)) => {
                found = true;
                if let Err(err) = abort_connection(connection) {
                    result = Err(err);
                }
            }
            Ok(None) => {}
            Err(err) => result = Err(err),
        }
    }
    result?;
    if !found {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "no eci virtual files server is mounted at {}",
                mountpoint.display()
            ),
        ));
    }
    Ok(())
}

/// Detaches a dead server's mounts under `mountpoint` and removes its directories, one at a
/// time (never a recursion into a mount that is still there). Best effort.
pub fn remove(mountpoint: &Path) {
    let _ = detach(mountpoint);
    for role in Role::BOTH {
        let _ = std::fs::remove_dir(mountpoint.join(role.dir_name()));
    }
    let _ = std::fs::remove_dir(mountpoint);
}

/// Detaches the server's two mounts under `mountpoint` (see [`abort`] to end their
/// connections first). Not mounted is not an error.
pub fn detach(mountpoint: &Path) -> std::io::Result<()> {
    let mut result = Ok(());
    // A server of an earlier version was mounted at the mountpoint itself: that goes first
    // (only if it is one, never whatever else is mounted there), so that the paths below are
    // looked up on the directory again.
    if let Ok(Some(_)) = mounted_connection(mountpoint) {
        if let Err(errno) = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH) {
            result = Err(errno.into());
        }
    }
    for role in Role::BOTH {
        let at = mountpoint.join(role.dir_name());
        match nix::mount::umount2(&at, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            // Both are tried: one left mounted must not keep the other.
            Err(errno) => result = Err(errno.into()),
        }
    }
    result
}

/// Where a server under `mountpoint` may be mounted: the mountpoint itself (a server of an
/// earlier version, with one connection), then the two mounts of this one.
fn mounts_of(mountpoint: &Path) -> [PathBuf; 3] {
    [
        mountpoint.to_path_buf(),
        mountpoint.join(Role::Files.dir_name()),
        mountpoint.join(Role::Tunables.dir_name()),
    ]
}

/// Aborts FUSE connection number `connection` through fusectl.
fn abort_connection(connection: u32) -> std::io::Result<()> {
    let connections = Path::new("/sys/fs/fuse/connections");
    let abort_file = connections.join(connection.to_string()).join("abort");
    if !abort_file.exists() {
        // Not mounted (EBUSY: another thread or process mounted it just now).
        match nix::mount::mount(
            Some("fusectl"),
            connections,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        ) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    std::fs::write(abort_file, "1")
}

/// The FUSE connection number (the device's minor) of the eci server mounted on top at
/// `mountpoint`, from this process's mount table.
fn mounted_connection(mountpoint: &Path) -> std::io::Result<Option<u32>> {
    // Only the parent is resolved: resolving the mount itself would ask its server.
    let parent = mountpoint.parent().unwrap_or(Path::new("/"));
    let name = mountpoint.file_name().unwrap_or_default();
    let target = std::fs::canonicalize(parent)?.join(name);
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(table
        .lines()
        .rev()
        .find_map(|line| eci_connection(line, &target)))
}

/// The connection number in one mountinfo line, if it is an eci server mounted at `target`.
fn eci_connection(line: &str, target: &Path) -> Option<u32> {
    let (mount, rest) = line.split_once(" - ")?;
    let fields: Vec<&str> = mount.split(' ').collect();
    let mut after = rest.split(' ');
    let (fstype, source) = (after.next()?, after.next()?);
    let at = unescape_mountinfo(fields.get(4)?);
    if fstype != "fuse" || source != "eci-virtual" || Path::new(&at) != target {
        return None;
    }
    fields.get(2)?.split_once(':')?.1.parse().ok()
}

/// Undoes mountinfo's octal escapes (space, tab, newline, backslash).
fn unescape_mountinfo(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

impl Drop for VirtualFs {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare_entry() -> Entry {
        Entry {
            name: "c".into(),
            dir: "c.0".into(),
            dirs: CgroupDirs::default(),
            started: Instant::now(),
            owner: 0,
            modes: Vec::new(),
            written: Mutex::default(),
            recent: Mutex::default(),
            load: Mutex::default(),
            kept_count: Mutex::default(),
            counting: Mutex::default(),
        }
    }

    #[test]
    fn only_a_pid_of_a_nested_namespace_is_shown() {
        assert_eq!(innermost_of_nested("NSpid:\t4242\t7"), Some(7));
        assert_eq!(innermost_of_nested("NSpid:\t4242\t7\t1"), Some(1));
        assert_eq!(innermost_of_nested("NSpid:\t4242"), None, "a host PID");
        assert_eq!(innermost_of_nested("NSpid:"), None);
        assert_eq!(innermost_of_nested("Pid:\t4242\t7"), None);
    }

    #[test]
    fn a_thread_count_is_kept_and_reused_only_while_the_caller_allows() {
        let entry = bare_entry();
        let counted_at = || entry.kept_count.lock().unwrap().map(|kept| kept.done);
        assert_eq!(entry.tasks(|_| true, |_| true), TaskCount::default());
        let first = counted_at().expect("a count is kept");
        std::thread::sleep(Duration::from_millis(2));
        entry.tasks(|_| true, |_| true);
        assert_eq!(counted_at(), Some(first), "reused");
        let young = |kept: &KeptCount| kept.done.elapsed() < Duration::from_millis(1);
        entry.tasks(young, |_| false);
        assert_eq!(counted_at(), Some(first), "counted anew, not kept");
        entry.tasks(young, |_| true);
        assert!(counted_at().unwrap() > first, "counted anew and kept");
        // A sample's count of a container this small is never kept for reads.
        *entry.kept_count.lock().unwrap() = None;
        entry.tasks_for_sample();
        assert_eq!(counted_at(), None);
        entry.tasks_for_read();
        assert!(counted_at().is_some());
    }

    #[test]
    fn reads_reuse_a_count_for_as_long_as_it_cost() {
        let kept = |age_ms: u64, took_ms: u64| KeptCount {
            done: Instant::now() - Duration::from_millis(age_ms),
            took: Duration::from_millis(took_ms),
            count: TaskCount::default(),
        };
        // Cheap counts: 100 ms.
        assert!(kept(50, 1).serves_reads());
        assert!(!kept(150, 1).serves_reads());
        assert!(!kept(1, 1).costly());
        // A count that took 0.5 s serves reads for 10 s.
        assert!(kept(9_000, 500).serves_reads());
        assert!(!kept(11_000, 500).serves_reads());
        assert!(kept(1, 500).costly());
    }

    proptest::proptest! {
        #[test]
        fn counting_for_reads_takes_a_bounded_share_of_a_thread(micros in 0u64..3_600_000_000) {
            let took = Duration::from_micros(micros);
            let reuse = reuse_for(took);
            proptest::prop_assert!(reuse >= FRESH);
            // At most one count per reuse period, each taking `took`.
            proptest::prop_assert!(took.as_secs_f64() * f64::from(COUNTING_SHARE)
                <= reuse.as_secs_f64() * (1.0 + 1e-9));
            proptest::prop_assert!(reuse_for(took + Duration::from_micros(1)) >= reuse);
        }
    }

    #[test]
    fn only_an_eci_server_at_the_very_path_names_a_connection() {
        let line = "60 25 0:41 / /run/eci\\040x/mnt rw,nosuid - fuse eci-virtual rw,user_id=0";
        assert_eq!(eci_connection(line, Path::new("/run/eci x/mnt")), Some(41));
        assert_eq!(eci_connection(line, Path::new("/run/eci x")), None);
        let other = "61 25 0:42 / /run/eci/mnt rw - fuse lxcfs rw";
        assert_eq!(eci_connection(other, Path::new("/run/eci/mnt")), None);
        let disk = "62 25 8:48 / /run/eci/mnt rw - ext4 /dev/sdd rw";
        assert_eq!(eci_connection(disk, Path::new("/run/eci/mnt")), None);
    }

    #[test]
    fn inodes_name_their_nodes() {
        for node in [
            Node::Root,
            Node::Dir(0),
            Node::Dir(7),
            Node::File(3, ProcFile::Stat),
            Node::File(0, ProcFile::CpuOnline),
        ] {
            assert_eq!(node_of(ino_of(node)), Some(node));
        }
        assert_eq!(node_of(0), None);
        assert_eq!(node_of(PER_DIR - 1), None);
        assert_eq!(node_of(PER_DIR + 63), None);
        assert_eq!(
            node_of(ino_of(Node::Tunable(2, 16))),
            Some(Node::Tunable(2, 16))
        );
    }
}
