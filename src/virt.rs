//! The virtual procfs and sysfs files in the facade: a FUSE server in the runtime process,
//! mounted on first use under the state directory, or the per-host daemon
//! ([`eci_mount::virt::daemon`]); for each container a directory of its own whose files are
//! bound over its /proc and /sys entries (see [`eci_mount::virt`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use eci_idmap::Holder;
use eci_mount::virt::daemon::DaemonClient;
use eci_mount::virt::{sysctl, CgroupDirs, VirtualFs, SERVED};
use eci_ns::PidFd;
use eci_policy::Policy;
use eci_seccomp::mount::SysinfoSource;
use oci_spec::runtime::{Mount, Spec};

use crate::error::{Error, Result};

/// Where a runtime's virtual procfs and sysfs files are served from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum VirtualFilesServer {
    /// A FUSE server in the runtime's own process, mounted on first use at
    /// `STATE/virtual/PID-N`. It ends with the process: the containers' files then fail with
    /// ENOTCONN.
    #[default]
    InProcess,
    /// The per-host daemon in `dir` ([`eci_mount::virt::daemon`]), shared by every runtime
    /// process that names it and started with `command` (program and arguments, a program
    /// that calls [`eci_mount::virt::daemon::run`] on `dir`) when none runs. Its keeper
    /// starts it again if it dies, and the containers' files carry on.
    Daemon {
        /// The daemon's directory.
        dir: PathBuf,
        /// What starts it.
        command: Vec<std::ffi::OsString>,
    },
}

/// The runtime's server: chosen at start, reached (or mounted) on first use.
#[derive(Debug, Default)]
pub(crate) struct Server {
    kind: VirtualFilesServer,
    local: Mutex<Option<Arc<VirtualFs>>>,
}

/// A server a container is registered with.
#[derive(Debug, Clone)]
enum Backend {
    Local(Arc<VirtualFs>),
    Daemon(DaemonClient),
}

impl Server {
    pub(crate) fn new(kind: VirtualFilesServer) -> Server {
        Server {
            kind,
            local: Mutex::new(None),
        }
    }

    /// Where this runtime's server is mounted, once it is.
    pub(crate) fn mountpoint(&self) -> Option<PathBuf> {
        match &self.kind {
            VirtualFilesServer::Daemon { dir, .. } => Some(dir.join("mnt")),
            VirtualFilesServer::InProcess => {
                let server = self.local.lock().expect("virtual files server lock");
                server.as_ref().map(|fs| fs.mountpoint().to_path_buf())
            }
        }
    }

    /// sysinfo(2) answers for a container this runtime did not register (one taken over from
    /// a runtime that died): the per-host daemon still serves it while its init lives; an
    /// in-process server died with that runtime, and then the calls fail.
    pub(crate) fn sysinfo_of(&self, name: &str) -> SysinfoSource {
        match &self.kind {
            VirtualFilesServer::Daemon { dir, command } => {
                let client = DaemonClient::new(dir, command.clone());
                let name = name.to_string();
                SysinfoSource(Arc::new(move || client.sysinfo(&name)))
            }
            VirtualFilesServer::InProcess => SysinfoSource(Arc::new(|| None)),
        }
    }

    fn get(&self, state_dir: &Path) -> Result<Backend> {
        match &self.kind {
            VirtualFilesServer::Daemon { dir, command } => {
                Ok(Backend::Daemon(DaemonClient::new(dir, command.clone())))
            }
            VirtualFilesServer::InProcess => self.local(state_dir).map(Backend::Local),
        }
    }

    /// The in-process server, mounted at `STATE/virtual/PID-N` (per runtime: several
    /// runtimes, in one process or several, may share a state directory, and a container's
    /// binds must reach its own runtime's server). Mounts left by dead processes are taken
    /// down first.
    fn local(&self, state_dir: &Path) -> Result<Arc<VirtualFs>> {
        let mut server = self.local.lock().expect("virtual files server lock");
        if let Some(fs) = server.as_ref() {
            return Ok(Arc::clone(fs));
        }
        let base = state_dir.join("virtual");
        sweep_dead(&base);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mountpoint = base.join(format!("{}-{n}", std::process::id()));
        let fs = VirtualFs::mount(&mountpoint).map_err(Error::io(format!(
            "mounting the virtual procfs files at {}",
            mountpoint.display()
        )))?;
        let fs = Arc::new(fs);
        *server = Some(Arc::clone(&fs));
        Ok(fs)
    }
}

/// Unmounts servers of runtime processes that no longer exist.
pub(crate) fn sweep_dead(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split('-').next()?.parse::<i32>().ok());
        let Some(pid) = pid else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eci_mount::virt::remove(&entry.path());
    }
}

/// A container's directory on the server; unregistered when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    backend: Backend,
    name: String,
    /// (file on the server, where it goes in the container).
    binds: Vec<(PathBuf, &'static str)>,
    /// (tunable on the server, where it goes in the container), bound writable.
    tunables: Vec<(PathBuf, String)>,
    /// The daemon's answer to a registration sent ahead ([`serve`]), until taken.
    pending: Mutex<Option<std::sync::mpsc::Receiver<std::io::Result<()>>>>,
    /// Whether that registration failed: then the name may be another's, not to unregister.
    refused: std::sync::atomic::AtomicBool,
}

impl Registration {
    /// Waits until the daemon has the container registered (asked beside the start, see
    /// [`serve`]): its files may be bound from then on. An error once, then `Ok`.
    pub(crate) fn registered(&self) -> Result<()> {
        let pending = self.pending.lock().expect("registration lock").take();
        let answer = match pending {
            None => return Ok(()),
            Some(answer) => answer.recv().unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "the thread registering them ended without an answer",
                ))
            }),
        };
        if answer.is_err() {
            self.refused
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        answer.map_err(Error::io("registering the container's virtual files"))
    }

    /// Every file of the server bound into the container (the computed files and the
    /// tunables).
    pub(crate) fn sources(&self) -> Vec<&Path> {
        let files = self.binds.iter().map(|(source, _)| source.as_path());
        let tunables = self.tunables.iter().map(|(source, _)| source.as_path());
        files.chain(tunables).collect()
    }

    /// The files bound into the container, and where.
    pub(crate) fn binds(&self) -> &[(PathBuf, &'static str)] {
        &self.binds
    }

    /// The emulated tunables bound writable into the container, and where.
    pub(crate) fn tunables(&self) -> &[(PathBuf, String)] {
        &self.tunables
    }

    /// Asks the daemon, on a thread of its own, to serve the container while its `init` lives,
    /// even if this runtime dies first; the round trip (the daemon records it on disk) then
    /// overlaps the rest of the start. An in-process server dies with the runtime anyway.
    pub(crate) fn hold_while(&self, init: &PidFd) -> Holding {
        let Backend::Daemon(client) = &self.backend else {
            return Holding(None);
        };
        // Its start time counts only if read while its pidfd shows it alive: the pid then
        // named it, whoever its parent is (an adopter may have reaped it already).
        let init = match Holder::of(init.pid()) {
            Ok(holder) if init.is_alive() => holder,
            _ => return Holding(None),
        };
        let (client, name) = (client.clone(), self.name.clone());
        let hold = move || {
            if let Err(err) = client.hold(&name, init) {
                tracing::warn!(
                    "virtual files of {name}: the daemon will stop serving them with this \
                     runtime: {err}"
                );
            }
        };
        let thread = std::thread::Builder::new().name("eci-files-hold".into());
        match thread.spawn(hold.clone()) {
            Ok(thread) => Holding(Some(thread)),
            Err(_) => {
                hold();
                Holding(None)
            }
        }
    }

    /// The container's sysinfo(2) answers, for its mount helper to hand over.
    pub(crate) fn sysinfo_source(&self) -> SysinfoSource {
        let backend = self.backend.clone();
        let name = self.name.clone();
        SysinfoSource(Arc::new(move || match &backend {
            Backend::Local(fs) => fs.sysinfo(&name),
            Backend::Daemon(client) => client.sysinfo(&name),
        }))
    }
}

/// A hold asked for beside the start: [`Holding::wait`] before the start is reported done.
#[must_use]
pub(crate) struct Holding(Option<std::thread::JoinHandle<()>>);

impl Holding {
    /// Waits for the daemon's answer (a failed hold has been logged).
    pub(crate) fn wait(self) {
        if let Some(thread) = self.0 {
            let _ = thread.join();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // A registration still on its way would come after the unregistration.
        let _ = self.registered();
        if self.refused.load(std::sync::atomic::Ordering::Relaxed) {
            // Nothing of ours to unregister (a mismatched answer was unregistered at once).
            return;
        }
        match &self.backend {
            Backend::Local(fs) => fs.unregister(&self.name),
            Backend::Daemon(client) => {
                if let Err(err) = client.unregister(&self.name) {
                    // The daemon forgets it anyway once this process is gone.
                    tracing::warn!("virtual files of {}: {err}", self.name);
                }
            }
        }
    }
}

/// Serves the container `id`'s files (those its settings switch on), reading its cgroup at
/// `cgroup_path`, and its global tunables (owned by `root`, its root's host uid), and adds to
/// `spec` the binds that put them in place.
pub(crate) fn serve(
    server: &Server,
    state_dir: &Path,
    policy: &Policy,
    id: &str,
    cgroup_path: &Path,
    root: u32,
    spec: &mut Spec,
) -> Result<Option<Registration>> {
    let files: Vec<_> = SERVED
        .iter()
        .filter(|(file, _)| policy.procfs.get(*file))
        .collect();
    let backend = server.get(state_dir)?;
    let mode_of = |name: &str| policy.sysctls.mode(name);
    let mut ahead = None;
    // Tagged only with a daemon that takes tags and has its mounts in place (and stays while
    // the registration is on its way): the mounter works in a copy of this mount namespace,
    // made before a daemon the registration starts would mount them.
    let staying = match &backend {
        Backend::Daemon(client) => client.staying_for_tags(),
        Backend::Local(_) => None,
    };
    let dirs = match (&backend, random_tag(), staying) {
        (Backend::Local(fs), _, _) => {
            let dirs = CgroupDirs::resolve(cgroup_path)
                .map_err(Error::io("finding the cgroup controllers"))?;
            fs.register_with(id, dirs, Instant::now(), root, &mode_of)
        }
        (Backend::Daemon(client), Some(tag), Some(staying)) => {
            let dirs = client.directories(id, tag);
            let modes = sysctl::TUNABLES
                .iter()
                .map(|(name, _)| (name.to_string(), mode_of(name)))
                .collect();
            ahead = Some(Ahead {
                client: client.clone(),
                name: id.to_string(),
                tag,
                cgroup: cgroup_path.to_path_buf(),
                owner: root,
                modes,
                dirs: dirs.clone(),
                _staying: staying,
            });
            Ok(dirs)
        }
        (Backend::Daemon(client), _, _) => client.register(id, cgroup_path, root, &mode_of),
    }
    .map_err(Error::io("registering the container's virtual files"))?;
    let binds: Vec<(PathBuf, &'static str)> = files
        .iter()
        .map(|(file, target)| (dirs.files.join(file.name()), *target))
        .collect();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.extend(
        binds
            .iter()
            .map(|(source, target)| bind(source, target, true)),
    );
    // Namespaced tunables need no server: the kernel picks the table of the opener's own
    // namespaces, and refuses what the container's root may not change. They only need to be
    // writable under the read-only /proc/sys. They go first: the emulated tunables below
    // (nf_conntrack_max is under net/) are bound on top of them.
    for target in NAMESPACED_TUNABLES {
        if Path::new(target).exists() {
            mounts.push(writable_bind(target));
        }
    }
    // The global tunables this kernel has, writable: the server keeps each container's value.
    let tunables: Vec<(PathBuf, String)> = sysctl::TUNABLES
        .iter()
        .map(|(name, _)| (dirs.tunables.join(name), sysctl::proc_path(name)))
        .filter(|(_, target)| Path::new(target).exists())
        .collect();
    mounts.extend(
        tunables
            .iter()
            .map(|(source, target)| bind(source, target, false)),
    );
    spec.set_mounts(Some(mounts));
    let sources = binds.iter().map(|(source, _)| source);
    let sources: Vec<PathBuf> = sources
        .chain(tunables.iter().map(|(source, _)| source))
        .cloned()
        .collect();
    let pending = match (ahead, &backend) {
        (Some(ahead), _) => Some(ahead.send(sources)),
        (None, Backend::Daemon(_)) => {
            look_up_beside(sources);
            None
        }
        (None, Backend::Local(_)) => None,
    };
    let registration = Registration {
        backend,
        name: id.to_string(),
        binds,
        tunables,
        pending: Mutex::new(pending),
        refused: Default::default(),
    };
    Ok(Some(registration))
}

/// Has the kernel look up each of the container's files on a thread while the container is
/// planned and spawned. The mounter binds every one of them and the mount helper's host half,
/// forked while the mounter works, opens the same paths; the first lookup of each name is a
/// round trip to the server (about 22), and the two queued behind each other on the critical
/// path (the mounter's first bind waited 1.5 ms in one trace). The kernel keeps a name's entry
/// as long as its slot, so done here first they find them cached. An O_PATH open asks for
/// nothing but the lookups; errors do not matter (the bind gets its own).
///
/// Only for the per-host daemon: a FUSE server must never look into its own mount (a lookup
/// its dying server had read would keep the process from ever exiting), so the daemon cannot
/// do this itself, nor can a runtime that serves the files in its own process.
fn look_up_beside(paths: Vec<PathBuf>) {
    let _ = std::thread::Builder::new()
        .name("eci-files-lookup".into())
        .spawn(move || look_up(&paths));
}

fn look_up(paths: &[PathBuf]) {
    use std::os::unix::fs::OpenOptionsExt;
    for path in paths {
        let _ = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(path);
    }
}

/// A registration with the daemon under a tag of the runtime's choosing, whose directories
/// are known before the daemon answers: the container is planned and spawned meanwhile
/// (the round trip was 0.45-0.55 ms of every start, most of it the daemon's work), and the
/// mounter is let go only once the answer is in ([`Registration::registered`]).
struct Ahead {
    client: DaemonClient,
    name: String,
    tag: u64,
    cgroup: PathBuf,
    owner: u32,
    modes: std::collections::BTreeMap<String, eci_policy::settings::SysctlMode>,
    dirs: eci_mount::virt::Directories,
    /// Keeps the daemon from leaving until the registration is answered.
    _staying: eci_mount::virt::daemon::Staying,
}

impl Ahead {
    /// Registers on a thread, then has the kernel look up `sources` there (as
    /// [`look_up_beside`] does); the answer comes back through the receiver. Without a
    /// thread, registers here.
    fn send(self, sources: Vec<PathBuf>) -> std::sync::mpsc::Receiver<std::io::Result<()>> {
        let (answer, answered) = std::sync::mpsc::channel();
        let ahead = Arc::new(self);
        let thread = std::thread::Builder::new()
            .name("eci-files-register".into())
            .spawn({
                let (ahead, answer) = (Arc::clone(&ahead), answer.clone());
                move || {
                    let registered = ahead.register();
                    let ok = registered.is_ok();
                    let _ = answer.send(registered);
                    if ok {
                        look_up(&sources);
                    }
                }
            });
        if thread.is_err() {
            let _ = answer.send(ahead.register());
        }
        answered
    }

    fn register(&self) -> std::io::Result<()> {
        let mode_of = |name: &str| self.modes.get(name).copied().unwrap_or_default();
        let dirs = self.client.register_tagged(
            &self.name,
            self.tag,
            &self.cgroup,
            self.owner,
            &mode_of,
        )?;
        if dirs != self.dirs {
            let _ = self.client.unregister(&self.name);
            return Err(std::io::Error::other(format!(
                "the daemon serves them at {} rather than {}",
                dirs.files.display(),
                self.dirs.files.display()
            )));
        }
        Ok(())
    }
}

/// A random tag for a registration sent ahead; `None` if the kernel gives no random bytes.
fn random_tag() -> Option<u64> {
    let mut tag = [0u8; 8];
    // SAFETY: a valid buffer of the given length.
    let read = unsafe { libc::getrandom(tag.as_mut_ptr().cast(), tag.len(), 0) };
    (read == tag.len() as isize).then(|| u64::from_ne_bytes(tag))
}

/// Tunables the kernel keeps per network, UTS, IPC or mqueue namespace, which the container
/// may write in its own namespaces (a directory binds everything under it).
pub(crate) const NAMESPACED_TUNABLES: [&str; 11] = [
    "/proc/sys/net",
    "/proc/sys/kernel/msgmax",
    "/proc/sys/kernel/msgmnb",
    "/proc/sys/kernel/msgmni",
    "/proc/sys/kernel/sem",
    "/proc/sys/kernel/shmall",
    "/proc/sys/kernel/shmmax",
    "/proc/sys/kernel/shmmni",
    "/proc/sys/kernel/shm_rmid_forced",
    "/proc/sys/fs/mqueue",
    "/proc/sys/user",
];

/// A writable recursive bind of a /proc/sys path over itself.
fn writable_bind(path: &str) -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from(path));
    mount.set_typ(Some("bind".into()));
    mount.set_source(Some(PathBuf::from(path)));
    let options = ["rbind", "rw", "nosuid", "nodev", "noexec"];
    mount.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    mount
}

fn bind(source: &Path, target: &str, read_only: bool) -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from(target));
    mount.set_typ(Some("bind".into()));
    mount.set_source(Some(source.to_path_buf()));
    let access = if read_only { "ro" } else { "rw" };
    let options = ["bind", access, "nosuid", "nodev", "noexec"];
    mount.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    mount
}
