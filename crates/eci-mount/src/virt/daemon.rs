//! One virtual files server per host, shared by every runtime process, that survives its own
//! death: a daemon serves the FUSE mounts and a control socket, and a small **keeper** process
//! holds descriptors of the two FUSE connections and starts the daemon again if it dies.
//!
//! While no daemon runs, the containers' reads wait (the kernel keeps the connections while the
//! keeper holds them); the new daemon adopts them ([`VirtualFs::adopt`]), puts every
//! container back in its slot from the records kept on disk, with the tunables it had
//! written, and then serves, so the waiting reads are answered, even one the dead daemon had
//! read and not answered. A keeper that saw the daemon die [`RESTARTS`] times within
//! [`RESTART_WINDOW`] gives up and closes its descriptors: the files then fail with ENOTCONN
//! (fail closed), until the next runtime starts a new daemon with a new mount.
//!
//! The directory (root's only) holds: `sock` (requests, one per connection, JSON), `lock`
//! (held by the live daemon), `pid` (the daemon's), `mnt` (the server's two FUSE mounts),
//! `keeper` (the keeper's pid, start time, descriptor numbers and whether the files pass
//! through), `next-slot`, and `tenants/SLOT.json` (one record per container) with
//! `tenants/SLOT.init` (its init, once the runtime names it: [`DaemonClient::hold`]). A
//! container's record goes when the process that registered it (its runtime) is gone and so is
//! the container's init, if the runtime named it, or when it is unregistered; the daemon
//! leaves, unmounting, after [`IDLE`] without any.
//!
//! ```no_run
//! use std::path::Path;
//! use eci_mount::virt::daemon::DaemonClient;
//! use eci_policy::settings::SysctlMode;
//!
//! // `my-runtime virtd` calls `eci_mount::virt::daemon::run(Path::new("/run/eci/virtd"), ...)`.
//! let client = DaemonClient::new(
//!     Path::new("/run/eci/virtd"),
//!     vec!["/usr/bin/my-runtime".into(), "virtd".into()],
//! );
//! let dirs = client.register("web", Path::new("/eci/web"), 0, &|_| SysctlMode::ContainerOnly)?;
//! // bind dirs.files.join("meminfo") over /proc/meminfo in the container, ...
//! let figures = client.sysinfo("web");
//! client.unregister("web")?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eci_idmap::Holder;
use eci_ns::pidfd::PidFd;
use eci_ns::sys::{self, Forked};
use eci_policy::settings::SysctlMode;
use serde::{Deserialize, Serialize};

use super::{sysctl, CgroupDirs, Connections, Directories, Role, Tenant, VirtualFs, WriteHook};

/// How many times within [`RESTART_WINDOW`] the keeper starts a dead daemon again; at the
/// next death it gives up.
pub const RESTARTS: usize = 5;
/// See [`RESTARTS`].
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// How long the daemon stays with no container before it unmounts and leaves.
pub const IDLE: Duration = Duration::from_secs(10);
/// How long the daemon goes without a client before it gives back the program pages its start
/// and the registrations touched.
const QUIET_BEFORE_TRIM: Duration = Duration::from_secs(2);
/// How long a client waits for a daemon to answer, or to start.
const PATIENCE: Duration = Duration::from_secs(5);
/// Largest request or answer.
const MAX_MESSAGE: u64 = 64 * 1024;
/// How many clients one turn of the loop answers before it saves, forgets the dead and checks
/// its connections: containers' sysinfo calls (one client each) could otherwise keep it
/// answering for as long as they call.
const MOST_ANSWERED_A_TURN: usize = 32;
/// How many saves of one container's record may follow each other at once, and how often one
/// more may be made after that: a container writing its tunables in a loop would otherwise
/// have the daemon write and rename a file on the host's disk for every value. What it wrote
/// meanwhile is saved at the next turn (see [`SaveBudget`]).
const SAVE_BURST: u32 = 16;
/// See [`SAVE_BURST`].
const SAVE_EVERY: Duration = Duration::from_millis(100);
/// Set when a client starts the daemon: it then leaves its starter (a fork whose parent exits
/// once the daemon listens), so the runtime that started it need not reap it.
const DETACH: &str = "ECI_VIRTD_DETACH";

/// A request to the daemon.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Register {
        name: String,
        cgroup: PathBuf,
        owner: u32,
        /// By tunable (dotted name): a list by position would mean other tunables to a
        /// daemon of another version.
        modes: BTreeMap<String, SysctlMode>,
        /// The tag the runtime chose to name the directory by ([`super::directory_name`]).
        #[serde(default)]
        tag: Option<u64>,
    },
    Sysinfo {
        name: String,
    },
    Unregister {
        name: String,
    },
    /// Serves `name` also while process `pid` (the container's init) lives.
    Hold {
        name: String,
        pid: i32,
        /// The init's start time, as the runtime read it while the init's pidfd showed it alive:
        /// a pid reused before the daemon reads it is told apart. (Absent from earlier
        /// runtimes.)
        #[serde(default)]
        start_time: Option<u64>,
    },
}

/// The word in the pid file that says the daemon takes tagged registrations.
const TAGGED: &str = "tags";

/// The daemon's answer.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Registered(Directories),
    Sysinfo(Figures),
    Done,
    Refused(String),
}

/// sysinfo(2)'s figures, as the daemon computes them.
#[derive(Debug, Serialize, Deserialize)]
struct Figures {
    uptime: i64,
    totalram: u64,
    freeram: u64,
    sharedram: u64,
    totalswap: u64,
    freeswap: u64,
    procs: u16,
    loads: [u64; 3],
}

/// What the daemon keeps on disk of a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    name: String,
    slot: u64,
    cgroup: PathBuf,
    owner: u32,
    modes: BTreeMap<String, SysctlMode>,
    written: BTreeMap<String, String>,
    /// When it was registered, in CLOCK_MONOTONIC nanoseconds (its uptime's start).
    started: u64,
    /// The process that registered it (pid and start time, to tell it from a later process
    /// with the same pid).
    holder: Holder,
    /// The container's init, once its runtime named it ([`DaemonClient::hold`]): the
    /// container is served while either lives.
    #[serde(default)]
    container: Option<Holder>,
    /// The tag its directory is named by, if its runtime chose one.
    #[serde(default)]
    tag: Option<u64>,
    /// How soon it may be saved again, and whether it holds writes not saved yet.
    #[serde(skip)]
    saves: SaveBudget,
}

/// A token bucket for a record's saves: [`SAVE_BURST`] at once, then one per [`SAVE_EVERY`].
#[derive(Debug, Clone, Default)]
struct SaveBudget {
    /// Saves taken from the full bucket and not yet given back.
    spent: u32,
    /// Since when `spent` has been counted; `None` while the bucket is full.
    since: Option<Instant>,
    /// A write is kept that the record on disk lacks.
    pending: bool,
}

impl SaveBudget {
    /// Whether a save may be made at `now`, taking it if so.
    fn take(&mut self, now: Instant) -> bool {
        if let Some(since) = self.since {
            let elapsed = now.saturating_duration_since(since);
            let back = elapsed.as_nanos() / SAVE_EVERY.as_nanos();
            if back >= u128::from(self.spent) {
                self.spent = 0;
                self.since = None;
            } else {
                // Only whole periods come back; the part of one under way still counts.
                self.spent -= back as u32;
                self.since = Some(since + SAVE_EVERY * back as u32);
            }
        }
        if self.spent >= SAVE_BURST {
            return false;
        }
        self.spent += 1;
        self.since.get_or_insert(now);
        true
    }

    /// Whether the bucket is full again at `now` (every save taken has come back): a write
    /// then is saved at once, so nobody needs to look for one held back.
    fn full_at(&self, now: Instant) -> bool {
        self.since
            .is_none_or(|since| now.saturating_duration_since(since) >= SAVE_EVERY * self.spent)
    }
}

impl Record {
    /// Whether anyone still needs the container served.
    fn is_needed(&self) -> bool {
        self.holder.is_alive() || self.container.is_some_and(|c| c.is_alive())
    }
}

/// Talks to the daemon in a directory, starting it when none runs.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    dir: PathBuf,
    command: Vec<OsString>,
}

impl DaemonClient {
    /// A client of the daemon in `dir`; `command` (program and arguments) starts one that
    /// calls [`run`] on the same directory.
    pub fn new(dir: &Path, command: Vec<OsString>) -> DaemonClient {
        DaemonClient {
            dir: dir.to_path_buf(),
            command,
        }
    }

    /// Where the server is mounted (its `files` and `tunables` mounts are under it).
    pub fn mountpoint(&self) -> PathBuf {
        self.dir.join("mnt")
    }

    /// Serves a container named `name` whose cgroup is at `cgroup` (as in the spec's
    /// `cgroupsPath`) and whose tunables belong to host uid `owner`, reconciled as `mode_of`
    /// says; returns its directories on the mounts. It stays served until
    /// [`DaemonClient::unregister`] or until this process is gone (and the init named with
    /// [`DaemonClient::hold`], if any).
    pub fn register(
        &self,
        name: &str,
        cgroup: &Path,
        owner: u32,
        mode_of: &dyn Fn(&str) -> SysctlMode,
    ) -> std::io::Result<Directories> {
        self.register_as(name, None, cgroup, owner, mode_of)
    }

    /// [`DaemonClient::register`] under a directory named by `tag` (a random number the
    /// caller chose), which [`DaemonClient::directories`] gives before the daemon answers: a
    /// caller may plan its binds of the files meanwhile, and use them once this has returned
    /// those same directories.
    pub fn register_tagged(
        &self,
        name: &str,
        tag: u64,
        cgroup: &Path,
        owner: u32,
        mode_of: &dyn Fn(&str) -> SysctlMode,
    ) -> std::io::Result<Directories> {
        self.register_as(name, Some(tag), cgroup, owner, mode_of)
    }

    /// Whether a registration may be tagged ([`DaemonClient::register_tagged`]) and planned
    /// before the daemon answers: the daemon that runs understands tags (one of an older
    /// version, left serving its containers, would name the directory by its slot), and its
    /// mounts are in place, so that a mount namespace copied from this one now has them.
    pub fn takes_tags(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let pid = std::fs::read_to_string(self.dir.join("pid")).unwrap_or_default();
        if !pid.split_whitespace().skip(1).any(|word| word == TAGGED) {
            return false;
        }
        let mountpoint = self.mountpoint();
        let files = mountpoint.join(Role::Files.dir_name());
        match (std::fs::metadata(&mountpoint), std::fs::metadata(files)) {
            (Ok(below), Ok(mounted)) => below.dev() != mounted.dev(),
            _ => false,
        }
    }

    /// When the running daemon takes tags and its mounts are in place ([`takes_tags`]): a hold
    /// that keeps it from leaving for idleness until dropped. A runtime that plans its binds
    /// from the mounts it sees keeps it until its registration is answered: a daemon leaving
    /// meanwhile would take the mounts with it and the binds would fail. Waits while a daemon
    /// is leaving (its mounts are gone then, and the answer is `None`).
    ///
    /// [`takes_tags`]: DaemonClient::takes_tags
    pub fn staying_for_tags(&self) -> Option<Staying> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.dir.join(STAYING))
            .ok()?;
        // A daemon leaving holds it until it has unmounted: wait for that, but not for ever (a
        // registration without a tag then starts the next daemon and waits for it).
        let deadline = Instant::now() + PATIENCE;
        // SAFETY: flock on an open descriptor.
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } != 0 {
            let busy = std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock;
            if !busy || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.takes_tags().then_some(Staying { _lock: file })
    }

    /// The directories a registration of `name` tagged `tag` gets.
    pub fn directories(&self, name: &str, tag: u64) -> Directories {
        let dir = super::directory_name(name, 0, Some(tag));
        let mountpoint = self.mountpoint();
        Directories {
            files: mountpoint.join(Role::Files.dir_name()).join(&dir),
            tunables: mountpoint.join(Role::Tunables.dir_name()).join(&dir),
        }
    }

    fn register_as(
        &self,
        name: &str,
        tag: Option<u64>,
        cgroup: &Path,
        owner: u32,
        mode_of: &dyn Fn(&str) -> SysctlMode,
    ) -> std::io::Result<Directories> {
        let modes = sysctl::TUNABLES
            .iter()
            .map(|(n, _)| (n.to_string(), mode_of(n)))
            .collect();
        let request = Request::Register {
            name: name.to_string(),
            cgroup: cgroup.to_path_buf(),
            owner,
            modes,
            tag,
        };
        match self.ask(&request, true) {
            Ok(Answer::Registered(dirs)) => Ok(dirs),
            Ok(other) => Err(refused(other)),
            Err(err) => {
                // The daemon may have registered it after all (an answer lost or late): a
                // registration nobody holds would keep the name taken.
                let _ = self.unregister(name);
                Err(err)
            }
        }
    }

    /// The container's sysinfo(2) figures; `None` if the daemon cannot say now (the caller
    /// then fails the call rather than let the host's figures through).
    pub fn sysinfo(&self, name: &str) -> Option<libc::sysinfo> {
        let request = Request::Sysinfo {
            name: name.to_string(),
        };
        let Ok(Answer::Sysinfo(figures)) = self.ask(&request, false) else {
            return None;
        };
        // SAFETY: sysinfo is plain data; all-zero is a valid value.
        let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
        info.uptime = figures.uptime as libc::c_long;
        info.totalram = figures.totalram as libc::c_ulong;
        info.freeram = figures.freeram as libc::c_ulong;
        info.sharedram = figures.sharedram as libc::c_ulong;
        info.totalswap = figures.totalswap as libc::c_ulong;
        info.freeswap = figures.freeswap as libc::c_ulong;
        info.procs = figures.procs;
        for (to, load) in info.loads.iter_mut().zip(figures.loads) {
            *to = load as libc::c_ulong;
        }
        info.mem_unit = 1;
        Some(info)
    }

    /// Keeps serving `name` while `init` (the container's init, as a pid and start time) lives,
    /// even after the registering process is gone. Only the process that registered `name`
    /// may ask.
    pub fn hold(&self, name: &str, init: Holder) -> std::io::Result<()> {
        let request = Request::Hold {
            name: name.to_string(),
            pid: init.pid,
            start_time: Some(init.start_time),
        };
        match self.ask(&request, false)? {
            Answer::Done => Ok(()),
            other => Err(refused(other)),
        }
    }

    /// Stops serving `name`.
    pub fn unregister(&self, name: &str) -> std::io::Result<()> {
        let request = Request::Unregister {
            name: name.to_string(),
        };
        match self.ask(&request, false)? {
            Answer::Done => Ok(()),
            other => Err(refused(other)),
        }
    }

    /// Sends one request and reads the answer; starts the daemon if `start` and none answers
    /// (unless a keeper lives: it is starting one).
    fn ask(&self, request: &Request, start: bool) -> std::io::Result<Answer> {
        let socket = self.dir.join("sock");
        let deadline = Instant::now() + PATIENCE;
        let mut started: Option<Instant> = None;
        let mut stream = loop {
            match UnixStream::connect(&socket) {
                Ok(stream) => break stream,
                Err(err) if Instant::now() >= deadline => {
                    return Err(std::io::Error::new(
                        err.kind(),
                        format!("virtual files daemon at {}: {err}", socket.display()),
                    ))
                }
                // A daemon started a moment ago may have found another one leaving: try again
                // each second.
                Err(_)
                    if start
                        && started.is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
                        && keeper(&self.dir).is_none() =>
                {
                    self.start()?;
                    started = Some(Instant::now());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        // What it answers becomes the containers' binds (writable ones for the tunables): only
        // root's daemon is asked, whoever made a socket there.
        if peer(&stream).is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "the process listening at {} is not root's",
                    socket.display()
                ),
            ));
        }
        stream.set_read_timeout(Some(PATIENCE))?;
        stream.set_write_timeout(Some(PATIENCE))?;
        let bytes = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        stream.write_all(&bytes)?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = Vec::new();
        stream.take(MAX_MESSAGE).read_to_end(&mut answer)?;
        serde_json::from_slice(&answer).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "virtual files daemon's answer (a daemon of another eci version speaks \
                     another protocol; it leaves once no container uses it): {err}"
                ),
            )
        })
    }

    /// Starts the daemon, which leaves this process once it listens (see [`DETACH`]).
    fn start(&self) -> std::io::Result<()> {
        let (program, args) = self
            .command
            .split_first()
            .ok_or_else(|| std::io::Error::other("no command starts the virtual files daemon"))?;
        let status = std::process::Command::new(program)
            .args(args)
            .env(DETACH, "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "starting the virtual files daemon: {status}"
            )));
        }
        Ok(())
    }
}

/// The file runtimes hold a shared lock on while they count on the daemon staying
/// ([`DaemonClient::staying_for_tags`]). A daemon leaves for idleness only with an exclusive
/// lock on it, which it keeps until it has unmounted.
const STAYING: &str = "staying";

/// A hold on the daemon: it does not leave for idleness while this lives.
#[derive(Debug)]
pub struct Staying {
    _lock: std::fs::File,
}

/// Whether the daemon may leave for idleness: the exclusive lock on [`STAYING`] that keeps
/// runtimes waiting until it is gone, or `None` while one holds it. A file that cannot be
/// opened coordinates nothing: the daemon leaves as it did before there was one.
fn may_leave(dir: &Path) -> Option<Option<std::fs::File>> {
    let Ok(file) = std::fs::File::create(dir.join(STAYING)) else {
        return Some(None);
    };
    // SAFETY: flock on an open descriptor.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    locked.then_some(Some(file))
}

fn refused(answer: Answer) -> std::io::Error {
    match answer {
        Answer::Refused(why) => std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
        other => std::io::Error::other(format!("unexpected answer {other:?}")),
    }
}

/// Runs the daemon for `dir` until it has been idle for [`IDLE`]. `command` (program and
/// arguments) starts it again; the keeper runs it when the daemon dies. Call it first thing in
/// `main` of the program `command` runs: it may fork, which needs a single-threaded process.
/// Returns at once if another daemon serves `dir`.
pub fn run(dir: &Path, command: &[OsString]) -> std::io::Result<()> {
    // It serves every container's reads: under a real-time policy inherited from the runtime
    // that started it, a container reading in a loop would keep it ahead of every host process.
    sys::leave_raised_priority()
        .map_err(|sys::Errno(errno)| std::io::Error::from_raw_os_error(errno))?;
    // Written to once the daemon listens, so that its starter returns only then.
    let mut serving: Option<std::io::PipeWriter> = None;
    if std::env::var_os(DETACH).is_some() {
        std::env::remove_var(DETACH);
        let (started, ready) = std::io::pipe()?;
        // SAFETY: single-threaded here (documented): the child may do anything.
        match unsafe { sys::fork() }.map_err(std::io::Error::from)? {
            Forked::Parent { pid, .. } => {
                drop(ready);
                wait_until_serving(started, pid);
                sys::exit(0)
            }
            Forked::Child => {
                // SAFETY: setsid takes no arguments.
                unsafe { libc::setsid() };
                serving = Some(ready);
            }
        }
    }
    // Nothing of the runtime that started it: no inherited descriptor reaches the keeper or
    // a daemon it starts, and no bundle directory stays busy.
    sys::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC).map_err(std::io::Error::from)?;
    std::env::set_current_dir("/")?;
    std::fs::create_dir_all(dir.join("tenants"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let lock = std::fs::File::create(dir.join("lock"))?;
    // SAFETY: flock on an open descriptor.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(());
    }
    // The pid, then what this daemon understands beyond the first protocol (a daemon of an
    // older version, left serving its containers, writes its pid alone).
    let pid = format!("{} {TAGGED}", std::process::id());
    write_whole(&dir.join("pid"), pid.as_bytes())?;
    let mnt = dir.join("mnt");
    let records = Arc::new(Mutex::new(BTreeMap::new()));
    let hook = write_hook(dir, &records);
    let fs = match keeper(dir) {
        Some(keeper) => match keeper.connections() {
            Ok(connections) => adopt(dir, &mnt, connections, hook, &records)?,
            Err(_) => {
                // A keeper whose connection cannot be taken would keep it alive unserved:
                // end it, so the connection fails closed, and start again.
                keeper.end();
                fresh(dir, &mnt, command, hook)?
            }
        },
        None => fresh(dir, &mnt, command, hook)?,
    };
    let daemon = Daemon {
        dir: dir.to_path_buf(),
        fs: Arc::new(fs),
        records,
    };
    daemon.serve(&lock, serving)
}

/// How long a starter waits for the daemon it forked to listen: clients try to connect again
/// anyway, for longer, should a daemon that adopts many containers take more.
const START_WAIT_MS: i32 = 2_000;

/// Returns once the daemon forked as `daemon` listens (a byte on `started`), has given up
/// (the pipe's end without one, or its exit) or [`START_WAIT_MS`] have passed. Without it the
/// client that started the daemon tried to connect every 10 ms, and the first container after
/// an idle spell waited for the next try.
fn wait_until_serving(started: std::io::PipeReader, daemon: i32) {
    let Ok(daemon) = PidFd::open(daemon) else {
        return;
    };
    let watched = |fd: RawFd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut fds = [watched(started.as_raw_fd()), watched(daemon.as_raw_fd())];
    // SAFETY: two valid pollfds. Whatever poll says, the starter only leaves.
    unsafe { libc::poll(fds.as_mut_ptr(), 2, START_WAIT_MS) };
}

/// A new mount and a keeper for it (a mount left by a dead daemon whose keeper is gone is
/// aborted and taken down first).
fn fresh(
    dir: &Path,
    mnt: &Path,
    command: &[OsString],
    hook: WriteHook,
) -> std::io::Result<VirtualFs> {
    let _ = super::abort(mnt);
    let _ = super::detach(mnt);
    for entry in std::fs::read_dir(dir.join("tenants"))?.flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    let fs = VirtualFs::mount(mnt)?;
    fs.on_write(hook);
    let connections = fs.connections()?;
    start_keeper(dir, &connections, command)?;
    Ok(fs)
}

/// Takes over the connection and puts back every container whose runtime still lives (the
/// newest record of a name wins); the other records go. Serves only then.
fn adopt(
    dir: &Path,
    mnt: &Path,
    connections: Connections,
    hook: WriteHook,
    records: &Mutex<BTreeMap<String, Record>>,
) -> std::io::Result<VirtualFs> {
    let adoption = VirtualFs::adopt(mnt, connections)?;
    adoption.on_write(hook);
    let mut loaded = load_records(dir);
    loaded.sort_by_key(|r| std::cmp::Reverse(r.slot));
    // Slots stay retired even if the counter was lost.
    if let Some(newest) = loaded.first() {
        raise_next_slot(dir, newest.slot)?;
    }
    let mut live = records
        .lock()
        .map_err(|_| std::io::Error::other("records poisoned"))?;
    // The dead daemon's containers that are not taken over: the kernel still keeps their
    // entries, which this daemon has it forget once it serves.
    let mut dropped = Vec::new();
    for record in loaded {
        if record.is_needed() && !live.contains_key(&record.name) {
            if let Ok(dirs) = CgroupDirs::resolve(&record.cgroup) {
                let tenant = Tenant {
                    name: &record.name,
                    dirs,
                    started: instant_of(record.started),
                    owner: record.owner,
                    mode_of: &|n| mode_in(&record.modes, n),
                    written: still_valid(&record.written),
                    tag: record.tag,
                };
                if adoption.register_at(record.slot, tenant).is_ok() {
                    live.insert(record.name.clone(), record);
                    continue;
                }
            }
        }
        remove_record(dir, record.slot);
        dropped.push(super::directory_name(&record.name, record.slot, record.tag));
    }
    drop(live);
    let fs = adoption.serve()?;
    for dir in dropped {
        fs.forget_directory(dir);
    }
    Ok(fs)
}

/// The saved tunable writes that today's checks still take. A value an earlier version took
/// and this one refuses (vm.mmap_min_addr above today's cap, say) is left out alone: taken
/// whole, the container's record would be refused, and all its virtual files with it.
fn still_valid(written: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let valid = |name: &str, value: &str| {
        super::sysctl::TUNABLES
            .iter()
            .any(|(n, kind)| *n == name && super::sysctl::check(*kind, value.as_bytes()).is_some())
    };
    written
        .iter()
        .filter(|(name, value)| valid(name, value))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

fn mode_in(modes: &BTreeMap<String, SysctlMode>, name: &str) -> SysctlMode {
    modes.get(name).copied().unwrap_or_default()
}

/// Keeps what containers write to their tunables in their records, for the next daemon.
fn write_hook(dir: &Path, records: &Arc<Mutex<BTreeMap<String, Record>>>) -> WriteHook {
    let records = Arc::clone(records);
    let dir = dir.to_path_buf();
    Box::new(move |name, slot, tunable, value| {
        let Ok(mut records) = records.lock() else {
            return;
        };
        // The record of the container that wrote, not one registered under its name since.
        if let Some(record) = records.get_mut(name).filter(|r| r.slot == slot) {
            let before = record
                .written
                .insert(tunable.to_string(), value.to_string());
            // A container writing the same value in a loop costs the host no file writes.
            if before.as_deref() != Some(value) {
                record.saves.pending = true;
                save_if_due(&dir, record, Instant::now());
            }
        }
    })
}

/// Saves `record` if it holds writes the disk lacks and its budget allows a save at `now`.
/// Whether its writes may still be held back: it holds some, or its budget is not full, so
/// that the next may be.
fn save_if_due(dir: &Path, record: &mut Record, now: Instant) -> bool {
    if record.saves.pending && record.saves.take(now) && save_record(dir, record).is_ok() {
        record.saves.pending = false;
    }
    record.saves.pending || !record.saves.full_at(now)
}

/// The running daemon.
struct Daemon {
    dir: PathBuf,
    fs: Arc<VirtualFs>,
    /// By name.
    records: Arc<Mutex<BTreeMap<String, Record>>>,
}

impl Daemon {
    fn remember(&self, record: Record) {
        if let Ok(mut records) = self.records.lock() {
            records.insert(record.name.clone(), record);
        }
    }

    /// Answers requests until idle, then unmounts. Tells its starter, on `serving`, once it
    /// listens.
    fn serve(
        self,
        _lock: &std::fs::File,
        serving: Option<std::io::PipeWriter>,
    ) -> std::io::Result<()> {
        let socket = self.dir.join("sock");
        let mut listener = self.listen(&socket)?;
        if let Some(mut serving) = serving {
            // The starter leaves at this byte or at the pipe's end: either will do.
            let _ = serving.write_all(b"1");
        }
        let mut idle_since = Instant::now();
        // Since when no client has asked anything, if the daemon has not trimmed since.
        let mut quiet_since = Some(Instant::now());
        // Held from the decision to leave until the mounts are gone (see [`STAYING`]).
        let mut leaving = None;
        // Whether a container's write may be held back: the loop then comes round every
        // period, so that such a write reaches the disk within about one.
        let mut saving = false;
        loop {
            let mut poll = [libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            let wait_ms = if saving {
                SAVE_EVERY.as_millis() as i32
            } else {
                1000
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(poll.as_mut_ptr(), 1, wait_ms) };
            saving = self.save_pending();
            if self.accept_some(&listener, MOST_ANSWERED_A_TURN) {
                quiet_since = Some(Instant::now());
            } else if quiet_since.is_some_and(|since| since.elapsed() >= QUIET_BEFORE_TRIM) {
                // Starting and registering ran code that serving files does not; the FUSE
                // threads fault back in what they use.
                quiet_since = None;
                let _ = eci_ns::footprint::trim();
            }
            self.forget_the_dead();
            if self.fs.ended() {
                // One connection was aborted (through fusectl, by hand): the containers' binds
                // of it fail, and new ones would too. End the other as well, and leave; the
                // next client starts a daemon with new mounts. What was held back is saved now,
                // whatever the budgets say: the next daemon puts the containers back from it.
                let _ = std::fs::remove_file(&socket);
                self.save_held_back();
                break;
            }
            if !self.is_idle() {
                idle_since = Instant::now();
            } else if idle_since.elapsed() >= IDLE {
                // A runtime that saw the mounts and is about to register holds the file: stay.
                let Some(lock) = may_leave(&self.dir) else {
                    idle_since = Instant::now();
                    continue;
                };
                // No new client finds the socket now; those already queued are answered, and
                // if one registered a container the daemon stays.
                let _ = std::fs::remove_file(&socket);
                self.accept_some(&listener, usize::MAX);
                if self.is_idle() {
                    leaving = lock;
                    break;
                }
                listener = self.listen(&socket)?;
            }
        }
        // The connections are aborted: the keeper sees it and leaves.
        let unmounted = self.fs.unmount();
        drop(leaving);
        unmounted?;
        let _ = std::fs::remove_file(self.dir.join("keeper"));
        Ok(())
    }

    fn listen(&self, socket: &Path) -> std::io::Result<UnixListener> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    }

    /// Answers the clients waiting, `most` of them at most; whether there was one.
    fn accept_some(&self, listener: &UnixListener, most: usize) -> bool {
        answer_waiting(listener, most, |stream| self.answer(stream)) > 0
    }

    /// Saves every record holding writes its budget held back, budget or not.
    fn save_held_back(&self) {
        if let Ok(mut records) = self.records.lock() {
            for record in records.values_mut().filter(|r| r.saves.pending) {
                if save_record(&self.dir, record).is_ok() {
                    record.saves.pending = false;
                }
            }
        }
    }

    /// Saves the records holding writes their budgets held back, where they now allow it.
    /// Whether a record's writes may still be held back ([`save_if_due`]).
    fn save_pending(&self) -> bool {
        let Ok(mut records) = self.records.lock() else {
            return false;
        };
        let now = Instant::now();
        let mut left = false;
        for record in records.values_mut() {
            left |= save_if_due(&self.dir, record, now);
        }
        left
    }

    fn is_idle(&self) -> bool {
        self.records.lock().map(|r| r.is_empty()).unwrap_or(true)
    }

    fn answer(&self, mut stream: UnixStream) {
        let Some(pid) = peer(&stream) else {
            return;
        };
        let asker = Asker::of(&stream, pid);
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(PATIENCE));
        let Ok(bytes) = read_request(&mut stream, PATIENCE) else {
            return;
        };
        let answer = match serde_json::from_slice::<Request>(&bytes) {
            Ok(request) => self.handle(request, &asker),
            Err(err) => Answer::Refused(format!("not a request: {err}")),
        };
        if let Ok(bytes) = serde_json::to_vec(&answer) {
            let _ = stream.write_all(&bytes);
        }
    }

    /// Answers `request`; who asks is asked of `asker` only by the requests that record it.
    fn handle(&self, request: Request, asker: &Asker) -> Answer {
        let refused = |err: std::io::Error| Answer::Refused(err.to_string());
        match request {
            Request::Register {
                name,
                cgroup,
                owner,
                modes,
                tag,
            } => match asker
                .holder()
                .and_then(|holder| self.register(name, cgroup, owner, modes, tag, holder))
            {
                Ok(dirs) => Answer::Registered(dirs),
                Err(err) => refused(err),
            },
            Request::Sysinfo { name } => match self.fs.sysinfo(&name) {
                Some(info) => Answer::Sysinfo(Figures {
                    uptime: info.uptime,
                    totalram: info.totalram,
                    freeram: info.freeram,
                    sharedram: info.sharedram,
                    totalswap: info.totalswap,
                    freeswap: info.freeswap,
                    procs: info.procs,
                    loads: info.loads,
                }),
                None => Answer::Refused(format!("'{name}' is not served")),
            },
            Request::Unregister { name } => {
                match asker
                    .holder()
                    .and_then(|holder| self.unregister(&name, holder))
                {
                    Ok(()) => Answer::Done,
                    Err(err) => refused(err),
                }
            }
            Request::Hold {
                name,
                pid,
                start_time,
            } => match asker
                .holder()
                .and_then(|holder| self.hold(&name, pid, start_time, holder))
            {
                Ok(()) => Answer::Done,
                Err(err) => refused(err),
            },
        }
    }

    /// Forgets the container `name` for the process that registered it. Another process may
    /// not: its own registration of the name refused, it would otherwise take away a live
    /// container's files. (What nobody holds any more is forgotten without asking.)
    fn unregister(&self, name: &str, asker: Holder) -> std::io::Result<()> {
        let holder = match self.records.lock() {
            Ok(records) => records.get(name).map(|record| record.holder),
            Err(_) => return Err(std::io::Error::other("records poisoned")),
        };
        match holder {
            // Not served (any more): nothing to forget.
            None => Ok(()),
            Some(holder) if holder == asker => {
                self.forget(name);
                Ok(())
            }
            Some(_) => Err(std::io::Error::other(format!(
                "'{name}' was registered by another process"
            ))),
        }
    }

    /// Records `pid` as the container `name`'s init, for the process that registered it.
    fn hold(
        &self,
        name: &str,
        pid: i32,
        start_time: Option<u64>,
        asker: Holder,
    ) -> std::io::Result<()> {
        let container = init_holder(pid, start_time)?;
        let mut records = self
            .records
            .lock()
            .map_err(|_| std::io::Error::other("records poisoned"))?;
        let record = records
            .get_mut(name)
            .ok_or_else(|| std::io::Error::other(format!("'{name}' is not served")))?;
        if record.holder != asker {
            return Err(std::io::Error::other(format!(
                "'{name}' was registered by another process"
            )));
        }
        record.container = Some(container);
        // A file of its own rather than the record written again: a rename over an existing
        // file frees the old one's blocks, which a disk-backed directory pays for on every
        // container (a flush and a discard, 0.2-0.4 ms here); a new name costs neither.
        let bytes = serde_json::to_vec(&container).map_err(std::io::Error::other)?;
        write_whole(&init_path(&self.dir, record.slot), &bytes)
    }

    fn register(
        &self,
        name: String,
        cgroup: PathBuf,
        owner: u32,
        modes: BTreeMap<String, SysctlMode>,
        tag: Option<u64>,
        holder: Holder,
    ) -> std::io::Result<Directories> {
        if !eci_policy::paths::is_container_cgroup_path(&cgroup) {
            return Err(std::io::Error::other(format!(
                "the cgroup {} is not a container's (absolute, plain, below /)",
                cgroup.display()
            )));
        }
        let dirs = CgroupDirs::resolve(&cgroup)?;
        let slot = next_slot(&self.dir)?;
        let started = monotonic_now();
        let record = Record {
            name: name.clone(),
            slot,
            cgroup,
            owner,
            modes: modes.clone(),
            written: BTreeMap::new(),
            started,
            holder,
            container: None,
            tag,
            saves: SaveBudget::default(),
        };
        let tenant = Tenant {
            name: &name,
            dirs,
            started: instant_of(started),
            owner,
            mode_of: &|n| mode_in(&modes, n),
            written: BTreeMap::new(),
            tag,
        };
        let dir = self.fs.register_at(slot, tenant)?;
        if let Err(err) = save_record(&self.dir, &record) {
            self.fs.unregister(&name);
            return Err(err);
        }
        self.remember(record);
        Ok(dir)
    }

    fn forget(&self, name: &str) {
        self.fs.unregister(name);
        if let Ok(mut records) = self.records.lock() {
            if let Some(record) = records.remove(name) {
                remove_record(&self.dir, record.slot);
            }
        }
    }

    /// Drops the containers whose runtime and init are both gone.
    fn forget_the_dead(&self) {
        let dead: Vec<String> = match self.records.lock() {
            Ok(records) => records
                .values()
                .filter(|r| !r.is_needed())
                .map(|r| r.name.clone())
                .collect(),
            Err(_) => return,
        };
        for name in dead {
            self.forget(&name);
        }
    }
}

/// A process that connected: the pid SO_PEERCRED gave, and the pidfd SO_PEERPIDFD gave as it
/// was accepted (Linux 6.5; none on older kernels), before its request was read and its turn
/// came.
struct Asker {
    pid: i32,
    pidfd: Result<Option<PidFd>, sys::Errno>,
}

impl Asker {
    fn of(stream: &UnixStream, pid: i32) -> Asker {
        let mut fd: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: fd and len are valid for an int option's output.
        let got = sys::check_int(unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERPIDFD,
                (&mut fd as *mut libc::c_int).cast(),
                &mut len,
            )
        });
        let pidfd = match got {
            // SAFETY: SO_PEERPIDFD returned a new pidfd for the peer, which we now own.
            Ok(_) if fd >= 0 => Ok(Some(unsafe { PidFd::from_raw(fd, pid) })),
            Ok(_) => Err(sys::Errno(libc::EBADF)),
            // A kernel before 6.5, which has none to give.
            Err(sys::Errno(libc::ENOPROTOOPT)) => Ok(None),
            // Before 6.16, a peer already reaped (its pid free for another) has none either.
            Err(errno) => Err(errno),
        };
        Asker { pid, pidfd }
    }

    /// As a holder: its pid and start time, counted only if the process its pidfd names still
    /// lives once the start time is read, so that a process that reused the pid meanwhile is
    /// never taken for it. (On a kernel without SO_PEERPIDFD, read as it stands.)
    fn holder(&self) -> std::io::Result<Holder> {
        let pidfd = match &self.pidfd {
            Ok(pidfd) => pidfd,
            Err(sys::Errno(errno)) => return Err(std::io::Error::from_raw_os_error(*errno)),
        };
        let holder = Holder::of(self.pid)?;
        match pidfd {
            Some(pidfd) if !pidfd.is_alive() => {
                Err(std::io::Error::other("the asking process has ended"))
            }
            _ => Ok(holder),
        }
    }
}

/// The container's init `pid` as a holder, if it started at `start_time` (when the runtime
/// said): a pid reused since is refused rather than held for the container.
fn init_holder(pid: i32, start_time: Option<u64>) -> std::io::Result<Holder> {
    let holder = Holder::of(pid)?;
    match start_time {
        Some(expected) if expected != holder.start_time => Err(std::io::Error::other(format!(
            "process {pid} is no longer the container's init"
        ))),
        _ => Ok(holder),
    }
}

/// Passes up to `most` of the clients waiting on `listener` (non-blocking) to `answer`; how
/// many there were.
fn answer_waiting(
    listener: &UnixListener,
    most: usize,
    mut answer: impl FnMut(UnixStream),
) -> usize {
    let mut answered = 0;
    while answered < most {
        let Ok((stream, _)) = listener.accept() else {
            break;
        };
        answer(stream);
        answered += 1;
    }
    answered
}

/// A request read to its end (the client's shutdown) within `patience` in all, and no longer
/// than [`MAX_MESSAGE`]: a client sending a byte now and then holds the loop no longer than one
/// sending nothing (a timeout per read would let it hold the loop for hours).
fn read_request(stream: &mut UnixStream, patience: Duration) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + patience;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let read = match stream.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            // What a read timeout answers.
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(std::io::ErrorKind::TimedOut.into())
            }
            Err(err) => return Err(err),
        };
        if (bytes.len() + read) as u64 > MAX_MESSAGE {
            return Err(std::io::Error::other("request too long"));
        }
        bytes.extend_from_slice(&chunk[..read]);
    }
}

/// The pid of the peer of `stream`, if it is root.
fn peer(stream: &UnixStream) -> Option<i32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for SO_PEERCRED's output.
    let ret = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    (ret == 0 && cred.uid == 0 && cred.pid > 0).then_some(cred.pid)
}

/// CLOCK_MONOTONIC in nanoseconds (async-signal-safe: the keeper uses it too).
fn monotonic_now() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// The `Instant` of CLOCK_MONOTONIC time `nanos` (Instant is that clock on Linux).
fn instant_of(nanos: u64) -> Instant {
    let ago = Duration::from_nanos(monotonic_now().saturating_sub(nanos));
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

fn record_path(dir: &Path, slot: u64) -> PathBuf {
    dir.join("tenants").join(format!("{slot}.json"))
}

/// Where the container's init is recorded once its runtime names it ([`DaemonClient::hold`]).
fn init_path(dir: &Path, slot: u64) -> PathBuf {
    dir.join("tenants").join(format!("{slot}.init"))
}

fn remove_record(dir: &Path, slot: u64) {
    let _ = std::fs::remove_file(record_path(dir, slot));
    let _ = std::fs::remove_file(init_path(dir, slot));
}

/// Writes a record whole (a new file renamed over the old).
fn save_record(dir: &Path, record: &Record) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    write_whole(&record_path(dir, record.slot), &bytes)
}

fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

fn load_records(dir: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(dir.join("tenants")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let mut record: Record = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            if record.container.is_none() {
                let init = std::fs::read(init_path(dir, record.slot)).ok();
                record.container = init.and_then(|bytes| serde_json::from_slice(&bytes).ok());
            }
            Some(record)
        })
        .collect()
}

/// The next slot, never one used before in this directory: the kernel, and the binds of a
/// container whose runtime died, may still name a retired slot's files.
fn next_slot(dir: &Path) -> std::io::Result<u64> {
    let slot = read_next_slot(dir)?;
    let next = slot
        .checked_add(1)
        .ok_or_else(|| std::io::Error::other("no slot is left"))?;
    write_next_slot(dir, next)?;
    Ok(slot)
}

/// Writes the counter in place, at a fixed width: renamed over the old file as records are,
/// it would free a block at every registration, which a disk-backed directory pays for with
/// a flush and a discard (0.2-0.4 ms here, at times 2 ms). One write of 20 bytes into one
/// page lands whole or not at all should the daemon die (the kernel checks for a fatal signal
/// only between pages), and with the width fixed no digit of a longer number is left behind.
fn write_next_slot(dir: &Path, next: u64) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join("next-slot"))?;
    let digits = format!("{next:020}");
    file.write_all_at(digits.as_bytes(), 0)?;
    // Only a counter damaged by hand is longer: cut what follows the number.
    if file.metadata()?.len() > digits.len() as u64 {
        file.set_len(digits.len() as u64)?;
    }
    Ok(())
}

/// The counter: 0 if there is none yet, an error if it cannot be read (counting again from 0
/// could hand out a retired slot).
fn read_next_slot(dir: &Path) -> std::io::Result<u64> {
    match std::fs::read_to_string(dir.join("next-slot")) {
        Ok(text) => text.trim().parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not a slot number", dir.join("next-slot").display()),
            )
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(err) => Err(err),
    }
}

/// Makes the counter pass `used`, a slot a record names.
fn raise_next_slot(dir: &Path, used: u64) -> std::io::Result<()> {
    let next = used.saturating_add(1);
    if read_next_slot(dir).unwrap_or(0) < next {
        write_next_slot(dir, next)?;
    }
    Ok(())
}

/// What the `keeper` file says: `PID START FILES TUNABLES LAYOUT`, as [`start_keeper`]
/// writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeeperRecord {
    pid: i32,
    start: u64,
    /// `None` for a keeper of another version (one connection, or a files' connection that
    /// did not agree to what this server needs): it is still found, so that it is ended
    /// rather than left holding a connection no one serves.
    fds: Option<[RawFd; 2]>,
}

/// The connections' layout this version keeps: two, the files' one with
/// FUSE_AUTO_INVAL_DATA. (The earlier layouts wrote 0 or 1 here: passthrough or not.)
const KEEPER_LAYOUT: u64 = 2;

impl KeeperRecord {
    fn parse(text: &str) -> Option<KeeperRecord> {
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        let (pid, start) = (fields.next()??, fields.next()??);
        let rest: Vec<Option<u64>> = fields.collect();
        let fds = match rest[..] {
            [Some(files), Some(tunables), Some(KEEPER_LAYOUT)] => RawFd::try_from(files)
                .ok()
                .zip(RawFd::try_from(tunables).ok())
                .map(|(files, tunables)| [files, tunables]),
            _ => None,
        };
        Some(KeeperRecord {
            pid: i32::try_from(pid).ok()?,
            start,
            fds,
        })
    }

    fn format(&self) -> String {
        let [files, tunables] = self.fds.unwrap_or([-1, -1]);
        format!(
            "{} {} {files} {tunables} {KEEPER_LAYOUT}\n",
            self.pid, self.start
        )
    }
}

/// The keeper recorded in `dir`, if that very process still lives.
struct Keeper {
    pidfd: PidFd,
    /// Its descriptors of the files' and the tunables' connections (`None`: a keeper of
    /// another version).
    fds: Option<[RawFd; 2]>,
}

fn keeper(dir: &Path) -> Option<Keeper> {
    let text = std::fs::read_to_string(dir.join("keeper")).ok()?;
    let KeeperRecord { pid, start, fds } = KeeperRecord::parse(&text)?;
    // The pidfd first: checked after it, the start time proves the pidfd names the keeper.
    let pidfd = PidFd::open(pid).ok()?;
    let same = Holder {
        pid,
        start_time: start,
    }
    .is_alive();
    same.then_some(Keeper { pidfd, fds })
}

impl Keeper {
    /// Copies of the keeper's descriptors of the connections.
    fn connections(&self) -> std::io::Result<Connections> {
        let [files, tunables] = self.fds.ok_or_else(|| {
            std::io::Error::other("the keeper was started by another version of eci")
        })?;
        Ok(Connections {
            files: self.connection(files)?,
            tunables: self.connection(tunables)?,
        })
    }

    /// A copy of the keeper's descriptor `fd`, checked to be /dev/fuse.
    fn connection(&self, fd: RawFd) -> std::io::Result<OwnedFd> {
        let fd = sys::pidfd_getfd(self.pidfd.as_raw_fd(), fd).map_err(std::io::Error::from)?;
        let stat = nix::sys::stat::fstat(fd.as_raw_fd())?;
        // /dev/fuse is the misc device 10:229.
        if stat.st_mode & libc::S_IFMT != libc::S_IFCHR || stat.st_rdev != libc::makedev(10, 229) {
            return Err(std::io::Error::other(
                "the keeper's descriptor is not /dev/fuse",
            ));
        }
        Ok(fd)
    }

    /// Kills the keeper and waits (up to a second) until it is gone.
    fn end(&self) {
        let _ = self.pidfd.signal(libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.pidfd.is_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Forks the keeper: it holds `connections` and the daemon's pidfd, and starts `command` when
/// the daemon dies. Writes its record.
fn start_keeper(
    dir: &Path,
    connections: &Connections,
    command: &[OsString],
) -> std::io::Result<()> {
    // execv does not search PATH.
    let mut command = command.to_vec();
    if let Some(program) = command.first_mut() {
        if !Path::new(program).is_absolute() {
            *program = std::env::current_exe()?.into_os_string();
        }
    }
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let argv: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    if argv.is_empty() {
        return Err(std::io::Error::other(
            "no command starts the virtual files daemon",
        ));
    }
    let mut pointers: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    pointers.push(std::ptr::null());
    let daemon = sys::pidfd_open(std::process::id() as i32).map_err(std::io::Error::from)?;
    // SAFETY: daemon is a new descriptor we own.
    let daemon = unsafe { OwnedFd::from_raw_fd(daemon) };
    let kept = [
        connections.files.as_raw_fd(),
        connections.tunables.as_raw_fd(),
    ];
    // SAFETY: the child runs only keep(), which is async-signal-safe.
    let pid = match unsafe { sys::fork() }.map_err(std::io::Error::from)? {
        Forked::Child => keep(kept, daemon.as_raw_fd(), null.as_raw_fd(), &pointers),
        Forked::Parent { pid, .. } => pid,
    };
    let record = KeeperRecord {
        pid,
        start: Holder::of(pid)?.start_time,
        fds: Some(kept),
    };
    write_whole(&dir.join("keeper"), record.format().as_bytes())
}

/// The keeper's life, after fork: async-signal-safe only (no allocation, no locks).
fn keep(connections: [RawFd; 2], daemon: RawFd, null: RawFd, argv: &[*const libc::c_char]) -> ! {
    // Its stdio (and so the daemons it starts) on /dev/null: not the first runtime's.
    for stdio in 0..3 {
        // SAFETY: dup2 on open descriptors.
        unsafe { libc::dup2(null, stdio) };
    }
    if sys::close_fds_except(&[connections[0], connections[1], daemon]).is_err() {
        sys::exit(1);
    }
    // SAFETY: setsid takes no arguments; the keeper outlives the daemon's session.
    unsafe { libc::setsid() };
    let mut daemon = daemon;
    // The keeper ran the runtime's code until it forked; from now on it only waits.
    let mut idle = eci_ns::footprint::IdleTrim::open();
    let mut deaths = [0i64; RESTARTS];
    let mut died = 0usize;
    loop {
        let watched = |fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        let mut fds = [
            watched(connections[0]),
            watched(connections[1]),
            libc::pollfd {
                fd: daemon,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if idle.poll(&mut fds).is_err() {
            continue;
        }
        // One aborted or unmounted (the daemon left, or someone aborted it): nothing to keep.
        // The daemon sees it too and aborts the other (see `Daemon::serve`).
        let ended = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
        if fds[..2].iter().any(|fd| fd.revents & ended != 0) {
            sys::exit(0);
        }
        if fds[2].revents & libc::POLLIN == 0 {
            continue;
        }
        sys::close(daemon);
        // Reap the daemons this keeper started.
        // SAFETY: waitpid with a null status pointer.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let now = (monotonic_now() / 1_000_000_000) as i64;
        if died >= RESTARTS && now - deaths[died % RESTARTS] < RESTART_WINDOW.as_secs() as i64 {
            // Too many deaths: closing the last descriptor aborts the connection (ENOTCONN).
            sys::exit(1);
        }
        deaths[died % RESTARTS] = now;
        died += 1;
        // SAFETY: the child only calls execv and _exit.
        match unsafe { sys::fork() } {
            Ok(Forked::Child) => {
                // SAFETY: argv is a null-terminated array of C strings made before fork.
                unsafe { libc::execv(argv[0], argv.as_ptr()) };
                sys::exit(127);
            }
            Ok(Forked::Parent { pid, .. }) => match sys::pidfd_open(pid) {
                Ok(fd) => daemon = fd,
                Err(_) => sys::exit(1),
            },
            Err(_) => sys::exit(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_answers_no_more_clients_than_its_share() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sock");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let clients: Vec<UnixStream> = (0..5)
            .map(|_| UnixStream::connect(&socket).unwrap())
            .collect();
        assert_eq!(answer_waiting(&listener, 2, drop), 2);
        assert_eq!(answer_waiting(&listener, usize::MAX, drop), 3);
        assert_eq!(answer_waiting(&listener, usize::MAX, drop), 0);
        drop(clients);
    }

    #[test]
    fn a_request_dribbled_in_is_given_up_within_the_patience_in_all() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        let dribbler = std::thread::spawn(move || {
            // A byte every 100 ms: each read alone would wait for it.
            for _ in 0..20 {
                if theirs.write_all(b"{").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let started = Instant::now();
        let read = read_request(&mut ours, Duration::from_millis(500));
        assert_eq!(read.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        drop(ours);
        dribbler.join().unwrap();
        // A whole request is read to its end; a longer one than the most is refused.
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"{\"Sysinfo\":{\"name\":\"a\"}}").unwrap();
        drop(theirs);
        let read = read_request(&mut ours, Duration::from_secs(5)).unwrap();
        assert_eq!(read, b"{\"Sysinfo\":{\"name\":\"a\"}}");
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let flood = std::thread::spawn(move || {
            let mut theirs = theirs;
            let _ = theirs.write_all(&vec![b' '; MAX_MESSAGE as usize + 1]);
        });
        assert!(read_request(&mut ours, Duration::from_secs(5)).is_err());
        drop(ours);
        flood.join().unwrap();
    }

    #[test]
    fn only_roots_daemon_is_asked() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (mut listening, listened) = std::io::pipe().unwrap();
        // SAFETY: the child makes plain syscalls on descriptors it has, then exits.
        let child = match unsafe { sys::fork() }.unwrap() {
            Forked::Child => {
                // SO_PEERCRED tells the credentials the listener had at its last listen(2).
                // SAFETY: plain syscalls; the child is single-threaded.
                unsafe {
                    libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534);
                    libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534);
                    libc::listen(listener.as_raw_fd(), 8);
                    libc::write(listened.as_raw_fd(), b"1".as_ptr().cast(), 1);
                    libc::pause();
                }
                sys::exit(0)
            }
            Forked::Parent { pid, .. } => pid,
        };
        drop(listened);
        let mut byte = [0u8; 1];
        listening.read_exact(&mut byte).unwrap();
        let client = DaemonClient::new(dir.path(), Vec::new());
        let answered = client.ask(&Request::Sysinfo { name: "a".into() }, false);
        // SAFETY: kill and waitpid on our own child.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        let denied = answered.map(drop).unwrap_err();
        assert_eq!(
            denied.kind(),
            std::io::ErrorKind::PermissionDenied,
            "{denied}"
        );
    }

    #[test]
    fn an_asker_gone_by_its_turn_is_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sock");
        let listener = UnixListener::bind(&socket).unwrap();
        // A live asker is itself.
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let me = std::process::id() as i32;
        assert_eq!(
            Asker::of(&ours, me).holder().unwrap(),
            Holder::of(me).unwrap()
        );
        // One that connected and has gone (its pid free for another) is no one.
        // SAFETY: the child connects and exits.
        let child = match unsafe { sys::fork() }.unwrap() {
            Forked::Child => {
                let connected = UnixStream::connect(&socket);
                std::mem::forget(connected);
                sys::exit(0)
            }
            Forked::Parent { pid, .. } => pid,
        };
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
        let (stream, _) = listener.accept().unwrap();
        assert_eq!(peer(&stream), Some(child));
        assert!(Asker::of(&stream, child).holder().is_err());
    }

    #[test]
    fn an_init_is_held_only_if_it_started_when_the_runtime_said() {
        let me = std::process::id() as i32;
        let started = Holder::of(me).unwrap().start_time;
        assert!(init_holder(me, Some(started)).is_ok());
        assert!(
            init_holder(me, None).is_ok(),
            "an earlier runtime's request"
        );
        assert!(init_holder(me, Some(started + 1)).is_err());
    }

    #[test]
    fn slots_are_never_handed_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let slots: Vec<u64> = (0..3).map(|_| next_slot(dir.path()).unwrap()).collect();
        assert_eq!(slots, [0, 1, 2]);
        // A record naming a later slot moves the counter past it, never back.
        raise_next_slot(dir.path(), 9).unwrap();
        raise_next_slot(dir.path(), 4).unwrap();
        assert_eq!(next_slot(dir.path()).unwrap(), 10);
        // A damaged counter stops registrations instead of counting from 0 again.
        std::fs::write(dir.path().join("next-slot"), "garbage").unwrap();
        assert!(next_slot(dir.path()).is_err());
        std::fs::write(dir.path().join("next-slot"), u64::MAX.to_string()).unwrap();
        assert!(next_slot(dir.path()).is_err());
    }

    #[test]
    fn a_saved_write_todays_checks_refuse_is_left_out_alone() {
        let written: BTreeMap<String, String> = [
            ("vm.mmap_min_addr", "1048576"),
            ("kernel.pid_max", "65536"),
            ("no.such.tunable", "1"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let kept = still_valid(&written);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["kernel.pid_max"]);
    }

    #[test]
    fn the_counter_is_written_in_place_and_reads_an_older_one() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("next-slot");
        // An earlier version wrote the number alone.
        std::fs::write(&counter, "648").unwrap();
        let inode = std::fs::metadata(&counter).unwrap().ino();
        assert_eq!(next_slot(dir.path()).unwrap(), 648);
        assert_eq!(
            std::fs::read_to_string(&counter).unwrap(),
            "00000000000000000649"
        );
        assert_eq!(next_slot(dir.path()).unwrap(), 649);
        assert_eq!(
            std::fs::metadata(&counter).unwrap().ino(),
            inode,
            "same file"
        );
        // A damaged counter longer than the width is cut once a record raises it.
        std::fs::write(&counter, "damaged by hand, longer than twenty").unwrap();
        raise_next_slot(dir.path(), 700).unwrap();
        assert_eq!(next_slot(dir.path()).unwrap(), 701);
    }

    #[test]
    fn a_write_is_kept_in_the_record_of_the_container_that_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tenants")).unwrap();
        let record = Record {
            name: "web".into(),
            slot: 5,
            cgroup: "/eci/web".into(),
            owner: 100_000,
            modes: BTreeMap::new(),
            written: BTreeMap::new(),
            started: 1,
            holder: Holder::current().unwrap(),
            container: None,
            tag: None,
            saves: SaveBudget::default(),
        };
        let records = Arc::new(Mutex::new(BTreeMap::from([("web".to_string(), record)])));
        let hook = write_hook(dir.path(), &records);
        // An earlier "web", served in slot 4, writes as the name is served again in slot 5.
        hook("web", 4, "kernel.panic", "1");
        assert!(records.lock().unwrap()["web"].written.is_empty());
        hook("web", 5, "kernel.panic", "2");
        let written = &records.lock().unwrap()["web"].written;
        assert_eq!(written.get("kernel.panic").map(String::as_str), Some("2"));
    }

    #[test]
    fn a_records_init_is_read_back_from_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tenants")).unwrap();
        let me = Holder::of(std::process::id() as i32).unwrap();
        let record = Record {
            name: "web".into(),
            slot: 3,
            cgroup: "/eci/web".into(),
            owner: 100_000,
            modes: BTreeMap::new(),
            written: BTreeMap::new(),
            started: 1,
            holder: me,
            container: None,
            tag: Some(7),
            saves: SaveBudget::default(),
        };
        save_record(dir.path(), &record).unwrap();
        assert_eq!(load_records(dir.path())[0].tag, Some(7), "the tag is kept");
        assert_eq!(load_records(dir.path())[0].container, None);
        let init = serde_json::to_vec(&me).unwrap();
        write_whole(&init_path(dir.path(), 3), &init).unwrap();
        assert_eq!(load_records(dir.path())[0].container, Some(me));
        remove_record(dir.path(), 3);
        assert!(load_records(dir.path()).is_empty());
        assert!(!init_path(dir.path(), 3).exists());
    }

    #[test]
    fn a_keeper_of_another_version_is_found_but_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let me = Holder::of(std::process::id() as i32).unwrap();
        // This version's record: two descriptors and the layout.
        let record = format!("{} {} 7 8 2\n", me.pid, me.start_time);
        std::fs::write(dir.path().join("keeper"), record).unwrap();
        let current = keeper(dir.path()).expect("a live keeper");
        assert_eq!(current.fds, Some([7, 8]));
        // Earlier versions': one descriptor, or two with a passthrough flag. Found, so that
        // they are ended; never adopted.
        for earlier in ["7 1", "7 8 1", "7 8 0"] {
            let record = format!("{} {} {earlier}\n", me.pid, me.start_time);
            std::fs::write(dir.path().join("keeper"), record).unwrap();
            let older = keeper(dir.path()).expect("a live keeper");
            assert_eq!(older.fds, None, "{earlier}");
            let err = older.connections().unwrap_err();
            assert!(err.to_string().contains("another version"), "{err}");
        }
        // A keeper that is gone is none at all.
        let record = format!("{} {} 7 8 2\n", me.pid, me.start_time + 1);
        std::fs::write(dir.path().join("keeper"), record).unwrap();
        assert!(keeper(dir.path()).is_none());
    }

    #[test]
    fn saves_come_in_a_burst_and_then_one_a_period() {
        let start = Instant::now();
        let mut budget = SaveBudget::default();
        let taken = (0..40).filter(|_| budget.take(start)).count();
        assert_eq!(taken, SAVE_BURST as usize);
        // A period later, one more; half a period after that, none.
        assert!(budget.take(start + SAVE_EVERY));
        assert!(!budget.take(start + SAVE_EVERY));
        assert!(!budget.take(start + SAVE_EVERY * 3 / 2));
        assert!(budget.take(start + SAVE_EVERY * 2));
        assert!(!budget.full_at(start + SAVE_EVERY * 2));
        assert!(budget.full_at(start + SAVE_EVERY * 100));
        // Long enough later, a whole burst again, and never more.
        let later = start + SAVE_EVERY * 100;
        let taken = (0..40).filter(|_| budget.take(later)).count();
        assert_eq!(taken, SAVE_BURST as usize);
    }

    proptest::proptest! {
        #[test]
        fn no_span_of_time_holds_more_saves_than_the_budget(
            gaps_ms in proptest::collection::vec(0u64..250, 1..300),
        ) {
            let start = Instant::now();
            let mut budget = SaveBudget::default();
            let mut at = start;
            let mut taken = Vec::new();
            for gap in gaps_ms {
                at += Duration::from_millis(gap);
                if budget.take(at) {
                    taken.push(at);
                }
            }
            // Between any two saves, at most a burst plus one per whole period.
            for (i, first) in taken.iter().enumerate() {
                for (j, last) in taken.iter().enumerate().skip(i) {
                    let periods = (*last - *first).as_nanos() / SAVE_EVERY.as_nanos();
                    let most = u128::from(SAVE_BURST) + periods;
                    proptest::prop_assert!((j - i + 1) as u128 <= most);
                }
            }
        }

        #[test]
        fn saves_a_period_apart_are_never_held_back(
            gaps_ms in proptest::collection::vec(100u64..1000, 1..100),
        ) {
            let mut budget = SaveBudget::default();
            let mut at = Instant::now();
            for gap in gaps_ms {
                at += Duration::from_millis(gap);
                proptest::prop_assert!(budget.take(at));
            }
        }

        #[test]
        fn keeper_records_read_back_what_was_written(
            pid in 1i32..i32::MAX,
            start in proptest::num::u64::ANY,
            files in 0i32..i32::MAX,
            tunables in 0i32..i32::MAX,
        ) {
            let record = KeeperRecord { pid, start, fds: Some([files, tunables]) };
            proptest::prop_assert_eq!(KeeperRecord::parse(&record.format()), Some(record));
        }

        #[test]
        fn any_keeper_text_parses_without_panicking(text in "[0-9 \n-]{0,60}") {
            if let Some(record) = KeeperRecord::parse(&text) {
                proptest::prop_assert!(record.pid >= 0);
                proptest::prop_assert!(record.fds.is_none_or(|fds| fds.iter().all(|fd| *fd >= 0)));
            }
        }
    }

    #[test]
    fn modes_are_found_by_tunable_name() {
        let name = sysctl::TUNABLES[1].0;
        let modes = BTreeMap::from([(name.to_string(), SysctlMode::LargestWins)]);
        assert_eq!(mode_in(&modes, name), SysctlMode::LargestWins);
        assert_eq!(mode_in(&modes, "no.such"), SysctlMode::ContainerOnly);
    }
}
