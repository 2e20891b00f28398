//! Starting a container's init process so that the kernel locks its initial mounts.
//!
//! Four processes take part:
//!
//! - the **runtime** (the caller, possibly multi-threaded);
//! - a **setup** process forked from it, which enters a new mount namespace owned by the host user
//!   namespace (the *setup namespace*);
//! - the **init**, cloned by the setup process into new user, PID, network, IPC and UTS namespaces
//!   (with `CLONE_PARENT`, so the runtime is its parent, unless [`InitParent::Adopter`] leaves
//!   it to the setup process's adopter). It starts inside the setup namespace, where it can
//!   change nothing, and waits;
//! - a **mounter**, forked by the setup process after it joined the init's PID, network and IPC
//!   namespaces. With host credentials it builds the container's whole mount table in the setup
//!   namespace (so /proc shows the container's PIDs, /sys its network devices, /dev/mqueue its
//!   queues) and pivots into the rootfs, which moves the waiting init's root along.
//!
//! Only then does the init `unshare(CLONE_NEWNS)`. Its new mount namespace is owned by its own,
//! less privileged user namespace, so the kernel marks every mount it inherits `MNT_LOCKED`, with
//! the read-only, nosuid, nodev and noexec flags locked too: no process in the container can
//! unmount them or make them writable, whatever its capabilities. Nothing is ever mounted in the
//! runtime's own mount namespace.
//!
//! With [`SpawnRequest::late_mounts`] the mounter has a second phase: after the pivot it reports
//! (MOUNTED) and waits on a pipe; the runtime releases the init, which unshares and writes the
//! pipe; the mounter attaches the late mounts under the (shared) root, they propagate into the
//! init's namespace (read-only locked, but unmountable), the mounter exits, and the runtime
//! lets the init go on (ATTACHED).
//!
//! Every child runs between fork and exec of a possibly multi-threaded program, so the work
//! passed in must be async-signal-safe: prepare every string and buffer before calling
//! [`spawn`], and only make syscalls in the closures.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::channel::{Channel, Message};
use crate::failure::{Failure, Stage, FAILURE_EXIT_CODE};
use crate::join::JoinableNamespace;
use crate::namespaces::Namespaces;
use crate::pidfd::{ExitStatus, PidFd};
use crate::sys::{self, clone_fork, Errno, Forked};

const INIT_PID: u32 = 0x1000;
const GO: u32 = 0x1001;
const DONE: u32 = 0x1002;
/// The mounter's first phase is done (late mounts only).
const MOUNTED: u32 = 0x1003;
/// The late mounts are in place: the init goes on (late mounts only).
const ATTACHED: u32 = 0x1004;
/// Step codes (stage JoinNamespaces) of joining [`SpawnRequest::joined`]: this plus the index.
pub const JOINED_STEP: u32 = 100;

/// What the mounter learns when it starts: the init (in the runtime's PID namespace) and the
/// flags the runtime's `prepare` step returned.
#[derive(Debug, Clone, Copy)]
pub struct SetupContext<'a> {
    /// The init's pid, as /proc of the runtime's PID namespace names it.
    pub init_pid: i32,
    /// What `prepare` returned.
    pub flags: u32,
    /// With [`SpawnRequest::late_mounts`]: the boundary between the mounts made before the
    /// init's own mount namespace exists and those made after.
    pub late: Option<LatePhase<'a>>,
}

/// The mounter's hold on the moment the init unshares its mount namespace. Mounts made in the
/// setup namespace before it are copied into the init's namespace locked (MNT_LOCKED, and
/// read-only locked if read-only). A read-only mount attached afterwards under a shared mount
/// of the setup namespace reaches the init's namespace by propagation instead: still locked
/// read-only, but not against unmounting.
#[derive(Debug, Clone, Copy)]
pub struct LatePhase<'a> {
    channel: &'a Channel,
    unshared: RawFd,
}

impl LatePhase<'_> {
    /// Tells the runtime the first phase is done (it then lets the init unshare) and waits
    /// until the init has its own mount namespace. Async-signal-safe.
    pub fn wait_for_unshare(&self) -> Result<(), Failure> {
        let failed = |step| Failure::last_errno(Stage::LateMounts, step);
        self.channel
            .send(Message::of(MOUNTED))
            .map_err(|_| failed(0))?;
        let mut byte = [0u8; 1];
        loop {
            // SAFETY: byte is a valid one-byte buffer.
            match unsafe { libc::read(self.unshared, byte.as_mut_ptr().cast(), 1) } {
                1 => return Ok(()),
                // The init died before unsharing: every write end is closed.
                0 => {
                    return Err(Failure {
                        stage: Stage::LateMounts,
                        step: 1,
                        errno: Errno(libc::ESRCH),
                    })
                }
                _ if Errno::last().0 == libc::EINTR => {}
                _ => return Err(failed(1)),
            }
        }
    }
}

/// What to start.
pub struct SpawnRequest<'a> {
    /// The namespaces the container gets. USER, MOUNT and PID are always used.
    pub namespaces: Namespaces,
    /// Existing namespaces (another container's) the init joins instead of getting its own of
    /// their types: the setup process enters them before it clones the init, so the mounter
    /// works in them too.
    pub joined: &'a [JoinableNamespace],
    /// Runs in the mounter: host credentials, the init's PID, network and IPC namespaces, the
    /// setup mount namespace. Builds the mount table and pivots into the rootfs.
    /// Async-signal-safe work only.
    pub setup: &'a (dyn Fn(SetupContext<'_>) -> Result<(), Failure> + Sync),
    /// Runs in the init once it is root of its user namespace, in its own session and mount
    /// namespace. Does whatever is left and execs; returns only on failure. The channel is the
    /// init's end of the runtime's [`Spawned::channel`]. Async-signal-safe work only.
    pub init: &'a (dyn Fn(&Channel) -> Failure + Sync),
    /// Runs in the runtime once the init exists and before the mounts are made: write the ID
    /// maps, place the init in its cgroups. What it returns reaches `setup` as
    /// [`SetupContext::flags`].
    pub prepare: &'a mut Prepare<'a>,
    /// The mounter works in two phases ([`SetupContext::late`]): it calls
    /// [`LatePhase::wait_for_unshare`] between them, and the init goes on only once the mounter
    /// has finished.
    pub late_mounts: bool,
    /// Which process the init is a child of (and reaped by).
    pub init_parent: InitParent,
    /// A reading of [`crate::timens::boot_clock`] taken before this call: the container gets
    /// a time namespace whose boot clock reads zero at it, so that its uptime, `btime` and
    /// process start times (its init's included) count from there. Taken when the container's
    /// virtual files start counting, the two agree. Without it, [`Namespaces::TIME`] gives a
    /// time namespace with the runtime's clocks.
    pub boot_clock_origin: Option<libc::timespec>,
    /// Runs in the runtime while the mounter works (on another CPU, if there is one): what the
    /// init needs before it goes on but the mounts do not, such as making its cgroups. It
    /// returns the thread lists (cgroup v1 `tasks` files, opened for writing) the init moves
    /// itself into before it unshares its cgroup namespace (see [`WhileMounting`]).
    pub while_mounting: Option<&'a mut WhileMounting<'a>>,
    /// The runtime's descriptors `setup` and `init` use (the init's standard streams), at most
    /// [`MOST_KEPT`]; the setup process and the init close every other one but 0 to 2 as they
    /// start: the init lives in the container's reach until its start, and another container's
    /// listener or channel held there would never read as closed.
    pub keep: &'a [RawFd],
}

/// Which process a container's init is a child of, which is the process that reaps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitParent {
    /// The runtime (the caller of [`spawn`]), which reaps it with [`PidFd::wait`].
    #[default]
    Runtime,
    /// Whoever adopts the runtime's orphans: its nearest ancestor that made itself a child
    /// subreaper (containerd's shim does), else the init of its PID namespace. The init is
    /// adopted when the setup process exits, before [`spawn`] returns; the adopter reaps it,
    /// and [`PidFd::wait`] reads how it ended (always so only where
    /// [`crate::pidfd::exit_status_outlives_reaping`]). An OCI runtime's `create` needs this:
    /// its caller names that process in its pid file, reaps it for the container's exit status
    /// and reads its cgroup for the container's statistics and OOM events.
    Adopter,
}

/// The init's step (in [`Stage::InitNamespaces`]) that moves it into the cgroups of
/// [`WhileMounting`]'s thread lists.
pub const JOIN_CGROUPS_STEP: u32 = 8;

/// The step (in [`Stage::InitNamespaces`]) in which a container's process leaves a real-time
/// policy it inherited ([`sys::leave_raised_priority`]).
const LEAVE_RAISED_PRIORITY_STEP: u32 = 20;
/// The step (the init's in [`Stage::InitNamespaces`], an exec's joining process's in
/// [`Stage::JoinNamespaces`]) of staying undumpable once the process became the namespace's
/// root (the change of IDs made it as dumpable as the host's `fs.suid_dumpable` says).
const UNDUMPABLE_AS_ROOT_STEP: u32 = 21;

/// The runtime's step while the mounter works. The files it returns (at most
/// [`crate::channel::MAX_FDS`]) reach the init with its go-ahead: it writes `0` to each, which
/// moves the writing thread (the whole init, single-threaded) into that cgroup. A process that
/// moves itself so skips the global lock a migration by pid takes, whose first taking after a
/// quiet spell waits for an RCU grace period (5-15 ms here). The kernel checks the opener's
/// credentials, not the init's.
pub type WhileMounting<'a> = dyn FnMut(&PidFd) -> Result<Vec<OwnedFd>, PrepareError> + 'a;

/// An error from the runtime's own `prepare` step.
pub type PrepareError = Box<dyn std::error::Error + Send + Sync>;

/// The runtime's step between the init's creation and its mounts.
pub type Prepare<'a> = dyn FnMut(&PidFd) -> Result<u32, PrepareError> + 'a;

/// A started init, waiting in its own namespaces for what its `init` closure expects next.
#[derive(Debug)]
pub struct Spawned {
    /// The init process; the runtime is its parent unless [`InitParent::Adopter`] was asked.
    pub init: PidFd,
    /// The runtime's end of the init's channel.
    pub channel: Channel,
}

/// Why a container's init could not be started. Every child is killed and reaped before this is
/// returned.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// A syscall in the runtime failed.
    #[error("{what}: {source}")]
    Runtime {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A child reported a failure.
    #[error("{0}")]
    Child(Failure),
    /// The `prepare` step failed.
    #[error("preparing the container's init: {0}")]
    Prepare(PrepareError),
    /// A child died or broke the protocol without reporting why.
    #[error("the {who} process {status} without reporting why")]
    Died {
        /// Which child.
        who: &'static str,
        /// How it ended.
        status: String,
    },
}

fn runtime_err(what: &'static str) -> impl FnOnce(Errno) -> SpawnError {
    move |errno| SpawnError::Runtime {
        what,
        source: errno.into(),
    }
}

/// Kills and reaps a child unless disarmed.
struct Reaper {
    pid: i32,
    armed: bool,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.armed {
            // SAFETY: kill takes plain integers; the pid is our unreaped child, so it cannot have
            // been reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = sys::waitpid(self.pid);
        }
    }
}

/// Kills the init unless disarmed, and reaps it if it is the runtime's child (else waits for
/// its end).
struct InitReaper<'a> {
    init: &'a PidFd,
    armed: bool,
}

impl Drop for InitReaper<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.init.signal(libc::SIGKILL);
            let _ = self.init.wait();
        }
    }
}

/// Starts a container's init as described in the module documentation.
pub fn spawn(request: SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
    if request.keep.len() > MOST_KEPT || request.joined.len() > MOST_JOINED {
        let reason = format!(
            "{} descriptors to keep and {} namespaces to join, at most {MOST_KEPT} and \
             {MOST_JOINED}",
            request.keep.len(),
            request.joined.len()
        );
        return Err(SpawnError::Prepare(reason.into()));
    }
    let (runtime_setup, setup_end) = Channel::pair().map_err(|source| SpawnError::Runtime {
        what: "creating the setup channel",
        source,
    })?;
    let (runtime_init, init_end) = Channel::pair().map_err(|source| SpawnError::Runtime {
        what: "creating the init channel",
        source,
    })?;
    let ends = ChildEnds {
        setup: &setup_end,
        init: &init_end,
        keep: request.keep,
    };
    let joined_kinds = request
        .joined
        .iter()
        .fold(Namespaces::empty(), |kinds, ns| kinds | ns.kind());
    // SAFETY: the child runs only `setup_process`, which is async-signal-safe and never returns.
    let setup_pid =
        match unsafe { sys::fork() }.map_err(runtime_err("forking the setup process"))? {
            Forked::Child => setup_process(
                &ends,
                Entered {
                    made: request.namespaces - joined_kinds,
                    joined: request.joined,
                },
                request.late_mounts,
                request.init_parent,
                request.boot_clock_origin,
                request.setup,
                request.init,
            ),
            Forked::Parent { pid, .. } => pid,
        };
    drop(setup_end);
    drop(init_end);
    let mut setup = Reaper {
        pid: setup_pid,
        armed: true,
    };

    let init_pid = match receive(&runtime_setup, "setup") {
        Ok(msg) if msg.kind == INIT_PID => msg.a,
        Ok(_) | Err(SpawnError::Died { .. }) => return Err(died(&mut setup, "setup")),
        Err(err) => return Err(err),
    };
    // The init is our child (CLONE_PARENT) or the setup process's, which reaps nothing but the
    // mounter before it exits: its pid cannot be reused yet.
    // Killed (and reaped if ours) should no pidfd be had: it would otherwise wait for good.
    let mut unopened = Reaper {
        pid: init_pid,
        armed: true,
    };
    let init = PidFd::open(init_pid).map_err(runtime_err("opening a pidfd for the init"))?;
    unopened.armed = false;
    let mut init_guard = InitReaper {
        init: &init,
        armed: true,
    };
    let flags = (request.prepare)(&init).map_err(SpawnError::Prepare)?;

    let go = Message {
        kind: GO,
        a: 0,
        b: 0,
        c: flags,
    };
    runtime_setup
        .send(go)
        .map_err(runtime_err("starting the mount setup"))?;
    let thread_lists = match request.while_mounting {
        Some(step) => step(&init).map_err(SpawnError::Prepare)?,
        None => Vec::new(),
    };
    fit_in_a_go_ahead(thread_lists.len())?;
    let thread_lists: Vec<RawFd> = thread_lists.iter().map(AsRawFd::as_raw_fd).collect();
    let init_go = |kind| {
        runtime_init
            .send_with_fds(Message::of(kind), &thread_lists)
            .map_err(runtime_err("releasing the init"))
    };
    if request.late_mounts {
        // The first phase is done: the init unshares its namespace, then the mounter goes on.
        expect(&runtime_setup, MOUNTED, &mut setup)?;
        init_go(GO)?;
    }
    match expect(&runtime_setup, DONE, &mut setup) {
        Ok(()) => {}
        // The mounter only saw the init go: the init's own report says why.
        Err(SpawnError::Child(f)) if f.stage == Stage::LateMounts => {
            return Err(SpawnError::Child(init_failure(&runtime_init).unwrap_or(f)))
        }
        Err(err) => return Err(err),
    }
    setup.armed = false;
    sys::waitpid(setup_pid).map_err(runtime_err("reaping the setup process"))?;

    if request.late_mounts {
        runtime_init
            .send(Message::of(ATTACHED))
            .map_err(runtime_err("releasing the init"))?;
    } else {
        init_go(GO)?;
    }
    init_guard.armed = false;
    drop(init_guard);
    Ok(Spawned {
        init,
        channel: runtime_init,
    })
}

/// A failure the init reported before it exited, if one is waiting.
fn init_failure(channel: &Channel) -> Option<Failure> {
    match channel.try_recv() {
        Ok(Some((message, _))) => Failure::from_message(&message),
        _ => None,
    }
}

/// Receives the setup process's next message, which must be `kind`.
fn expect(channel: &Channel, kind: u32, setup: &mut Reaper) -> Result<(), SpawnError> {
    match receive(channel, "setup") {
        Ok(msg) if msg.kind == kind => Ok(()),
        Ok(_) | Err(SpawnError::Died { .. }) => Err(died(setup, "setup")),
        Err(err) => Err(err),
    }
}

/// Receives the next message from a child, turning failure reports into errors.
fn receive(channel: &Channel, who: &'static str) -> Result<Message, SpawnError> {
    match channel
        .recv()
        .map_err(runtime_err("reading from a child"))?
    {
        None => Err(SpawnError::Died {
            who,
            status: "exited".into(),
        }),
        Some((msg, _fds)) => match Failure::from_message(&msg) {
            Some(failure) => Err(SpawnError::Child(failure)),
            None => Ok(msg),
        },
    }
}

/// Reaps a child that stopped talking and says how it ended.
fn died(child: &mut Reaper, who: &'static str) -> SpawnError {
    child.armed = false;
    // SAFETY: kill takes plain integers; the pid is our unreaped child.
    unsafe { libc::kill(child.pid, libc::SIGKILL) };
    let status = match sys::waitpid(child.pid) {
        Ok(raw) => ExitStatus::from_wait_status(raw).to_string(),
        Err(errno) => format!("could not be reaped ({errno})"),
    };
    SpawnError::Died { who, status }
}

/// The channel ends a child inherits, and the other descriptors it keeps (its closures'): it
/// closes every other descriptor of the runtime's.
struct ChildEnds<'a> {
    setup: &'a Channel,
    init: &'a Channel,
    keep: &'a [RawFd],
}

/// The pipe on which the init tells the mounter it has unshared (late mounts only): (read,
/// write) ends, -1 when unused.
#[derive(Clone, Copy)]
struct UnsharedPipe {
    read: RawFd,
    write: RawFd,
}

/// The namespaces the init is in: new ones it gets, and existing ones it joins.
struct Entered<'a> {
    made: Namespaces,
    joined: &'a [JoinableNamespace],
}

/// The setup process. Never returns.
fn setup_process(
    ends: &ChildEnds<'_>,
    Entered {
        made: namespaces,
        joined,
    }: Entered<'_>,
    late_mounts: bool,
    init_parent: InitParent,
    boot_clock_origin: Option<libc::timespec>,
    setup: &(dyn Fn(SetupContext<'_>) -> Result<(), Failure> + Sync),
    init: &(dyn Fn(&Channel) -> Failure + Sync),
) -> ! {
    let channel = ends.setup;
    let fail = |stage, step| Failure::last_errno(stage, step).report_and_exit(channel);
    // Nothing of the runtime's beyond what this process, the mounter and the init use: the
    // runtime's ends of these channels (whose end of stream tells the runtime they are gone),
    // and whatever another container's create had open, go.
    let mut kept = [-1; 2 + MOST_JOINED + MOST_KEPT];
    kept[0] = ends.setup.raw_fd();
    kept[1] = ends.init.raw_fd();
    let joined_fds = joined.iter().map(|ns| ns.file().as_raw_fd());
    for (slot, fd) in kept[2..]
        .iter_mut()
        .zip(joined_fds.chain(ends.keep.iter().copied()))
    {
        *slot = fd;
    }
    if sys::close_fds_except(&kept).is_err() {
        fail(Stage::SetupNamespace, 2);
    }
    // Nor the runtime's working directory, a host directory the init would otherwise keep:
    // pivot_root carries along only a working directory that is the old root, and a process
    // whose `cwd` is a magic link to its own (`/proc/self/cwd`) would start there, with the
    // host's file system above it (runc's CVE-2024-21626 reached it through a leaked fd).
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        fail(Stage::SetupNamespace, 3);
    }
    if sys::unshare(libc::CLONE_NEWNS).is_err() {
        fail(Stage::SetupNamespace, 0);
    }
    // Nothing done here may propagate back to the runtime's mount namespace.
    if sys::mount(None, c"/", None, libc::MS_SLAVE | libc::MS_REC, None).is_err() {
        fail(Stage::SetupNamespace, 1);
    }
    // The init is cloned into them, and the mounter, forked later, works in them.
    for (i, ns) in joined.iter().enumerate() {
        if sys::setns(ns.file().as_raw_fd(), ns.kind().setns_flags()).is_err() {
            fail(Stage::JoinNamespaces, JOINED_STEP + i as u32);
        }
    }
    // The init makes its mount and cgroup namespaces itself, and a time namespace with offsets
    // (which a namespace made by clone3 cannot be given).
    let made_by_init = if boot_clock_origin.is_some() {
        Namespaces::MOUNT | Namespaces::CGROUP | Namespaces::TIME
    } else {
        Namespaces::MOUNT | Namespaces::CGROUP
    };
    // Without CLONE_PARENT the init is this process's child, and adopted when it exits.
    let parent_flag = match init_parent {
        InitParent::Runtime => libc::CLONE_PARENT as u64,
        InitParent::Adopter => 0,
    };
    // Its handlers at their defaults from the start: a signal the container sends it before
    // its program runs must not run a handler of the runtime's (a self-pipe's write, say).
    let clone_flags = (namespaces & !made_by_init | Namespaces::USER | Namespaces::PID)
        .clone_flags()
        | parent_flag
        | libc::CLONE_PIDFD as u64
        | sys::CLONE_CLEAR_SIGHAND;
    let mut pipe = UnsharedPipe {
        read: -1,
        write: -1,
    };
    if late_mounts {
        let mut fds = [-1; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            fail(Stage::SetupNamespace, 2);
        }
        pipe = UnsharedPipe {
            read: fds[0],
            write: fds[1],
        };
    }
    // SAFETY: the child runs only `init_process`, which is async-signal-safe and never returns.
    let (init_pid, init_pidfd) = match unsafe { clone_fork(clone_flags) } {
        Err(errno) => Failure {
            stage: Stage::Clone,
            step: 0,
            errno,
        }
        .report_and_exit(channel),
        Ok(Forked::Child) => init_process(ends, namespaces, boot_clock_origin, pipe, init),
        Ok(Forked::Parent { pid, pidfd }) => (pid, pidfd),
    };
    sys::close(ends.init.raw_fd());
    // Only the init writes (and its death closes the last write end); only the mounter reads.
    if pipe.write >= 0 {
        sys::close(pipe.write);
    }
    if channel
        .send(Message {
            kind: INIT_PID,
            a: init_pid,
            b: 0,
            c: 0,
        })
        .is_err()
    {
        sys::exit(1);
    }
    let context = match channel.recv() {
        Ok(Some((msg, _))) if msg.kind == GO => SetupContext {
            init_pid,
            flags: msg.c,
            late: late_mounts.then_some(LatePhase {
                channel,
                unshared: pipe.read,
            }),
        },
        _ => sys::exit(1),
    };
    // The namespaces the spec's sysctls live in (UTS for kernel.domainname and
    // kernel.hostname): written from outside them, they would change the host's.
    let join = namespaces & (Namespaces::PID | Namespaces::NET | Namespaces::IPC | Namespaces::UTS);
    if sys::setns(init_pidfd, join.setns_flags()).is_err() {
        fail(Stage::JoinNamespaces, 0);
    }
    // SAFETY: the child runs only the caller's async-signal-safe setup, then exits.
    let mounter = match unsafe { sys::fork() } {
        Err(_) => fail(Stage::JoinNamespaces, 1),
        Ok(Forked::Child) => match setup(context) {
            Ok(()) => sys::exit(0),
            Err(failure) => failure.report_and_exit(channel),
        },
        Ok(Forked::Parent { pid, .. }) => pid,
    };
    if pipe.read >= 0 {
        sys::close(pipe.read);
    }
    match sys::waitpid(mounter).map(ExitStatus::from_wait_status) {
        Ok(ExitStatus::Exited(0)) => {
            let _ = channel.send(Message::of(DONE));
        }
        Ok(ExitStatus::Exited(FAILURE_EXIT_CODE)) => {}
        _ => {
            let _ = channel.send(
                Failure {
                    stage: Stage::Died,
                    step: 0,
                    errno: Errno(0),
                }
                .to_message(),
            );
        }
    }
    sys::exit(0)
}

/// The container's init before it runs the caller's `init`. Never returns.
fn init_process(
    ends: &ChildEnds<'_>,
    namespaces: Namespaces,
    boot_clock_origin: Option<libc::timespec>,
    pipe: UnsharedPipe,
    init: &(dyn Fn(&Channel) -> Failure + Sync),
) -> ! {
    // Holding the setup channel would hide the setup process's death from the runtime.
    sys::close(ends.setup.raw_fd());
    let channel = ends.init;
    let fail = |step| Failure::last_errno(Stage::InitNamespaces, step).report_and_exit(channel);
    if sys::leave_raised_priority().is_err() {
        fail(LEAVE_RAISED_PRIORITY_STEP);
    }
    match channel.recv() {
        Ok(Some((msg, thread_lists))) if msg.kind == GO => {
            // Into its cgroups first, before anything else runs here; the files close as
            // `thread_lists` goes.
            if join_cgroups(thread_lists.raw()).is_err() {
                fail(JOIN_CGROUPS_STEP);
            }
        }
        _ => sys::exit(1),
    }
    // Still with the host's root IDs, under which /proc/self stays writable (changing them
    // below makes the init undumpable, its /proc files the host root's).
    if let Some(origin) = boot_clock_origin {
        if let Err(errno) = crate::timens::enter_with_boot_clock_from(origin) {
            Failure {
                stage: Stage::InitNamespaces,
                step: 7,
                errno,
            }
            .report_and_exit(channel);
        }
    }
    // The maps exist now: become root of the user namespace. Until now the init carried the
    // host's root IDs, which the namespace cannot name.
    // SAFETY: plain syscalls with integer arguments; a NULL list with size 0 is allowed.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) == -1 {
            fail(0);
        }
        if libc::setresgid(0, 0, 0) == -1 {
            fail(1);
        }
        if libc::setresuid(0, 0, 0) == -1 {
            fail(2);
        }
        if libc::setsid() == -1 {
            fail(3);
        }
    }
    // Until its exec, the init holds the runtime's descriptors (the listener among them) in
    // reach of any process of the namespace: one joined to it, or a container sharing it.
    if sys::set_undumpable().is_err() {
        fail(UNDUMPABLE_AS_ROOT_STEP);
    }
    if pipe.read >= 0 {
        sys::close(pipe.read);
    }
    if sys::unshare(libc::CLONE_NEWNS).is_err() {
        fail(4);
    }
    if pipe.write >= 0 {
        // The mounter makes the late mounts now; they arrive here by propagation.
        // SAFETY: a valid one-byte buffer.
        if unsafe { libc::write(pipe.write, [1u8].as_ptr().cast(), 1) } != 1 {
            fail(6);
        }
        sys::close(pipe.write);
        match channel.recv() {
            Ok(Some((msg, _))) if msg.kind == ATTACHED => {}
            _ => sys::exit(1),
        }
    }
    if namespaces.contains(Namespaces::CGROUP) && sys::unshare(libc::CLONE_NEWCGROUP).is_err() {
        fail(5);
    }
    init(channel).report_and_exit(channel)
}

/// Refuses more thread lists than one message carries.
fn fit_in_a_go_ahead(thread_lists: usize) -> Result<(), SpawnError> {
    if thread_lists > crate::channel::MAX_FDS {
        let reason = format!(
            "{thread_lists} cgroup thread lists, at most {} fit in a go-ahead",
            crate::channel::MAX_FDS
        );
        return Err(SpawnError::Prepare(reason.into()));
    }
    Ok(())
}

/// Moves the calling (single-threaded) process into the cgroup of each v1 thread list, by
/// writing `0` (itself). Async-signal-safe.
fn join_cgroups(thread_lists: &[RawFd]) -> Result<(), Errno> {
    for &fd in thread_lists {
        // SAFETY: a valid one-byte buffer.
        if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(Errno::last());
        }
    }
    Ok(())
}

/// Starts a process inside the namespaces of a running container: a helper joins them through
/// `target`'s pidfd (and so is single-threaded, as joining a user namespace requires) and
/// becomes root of the user namespace, then clones the process into the container's PID
/// namespace with `CLONE_PARENT`, so the runtime is its parent and can wait for it. The process
/// waits for `prepare` (cgroup placement, limits), moves itself into the cgroups of
/// `thread_lists` (v1 `tasks` files opened for writing, at most
/// [`crate::channel::MAX_FDS`]; see [`WhileMounting`]), starts a session of its own and runs
/// `init`.
///
/// Of the runtime's descriptors, the process keeps only `keep` (those `init` uses, at most
/// [`MOST_KEPT`]; its standard ones, 0 to 2, stay too): it lives in the container's reach
/// until its exec, where the container can hold it (a working directory on a FUSE mount that
/// never answers), and another container's listener or channel held there would never read
/// as closed.
///
/// `init` must be async-signal-safe, as for [`spawn`].
pub fn spawn_into(
    target: &PidFd,
    namespaces: Namespaces,
    init: &(dyn Fn(&Channel) -> Failure + Sync),
    prepare: &mut Prepare<'_>,
    thread_lists: &[BorrowedFd<'_>],
    keep: &[RawFd],
) -> Result<Spawned, SpawnError> {
    fit_in_a_go_ahead(thread_lists.len())?;
    if keep.len() > MOST_KEPT {
        let reason = format!("{} descriptors to keep, at most {MOST_KEPT}", keep.len());
        return Err(SpawnError::Prepare(reason.into()));
    }
    let (runtime_end, child_end) = Channel::pair().map_err(|source| SpawnError::Runtime {
        what: "creating the exec channel",
        source,
    })?;
    let join = namespaces | Namespaces::USER | Namespaces::MOUNT | Namespaces::PID;
    // SAFETY: the child runs only `joining_process`, which is async-signal-safe and never returns.
    let joiner = match unsafe { sys::fork() }.map_err(runtime_err("forking the joining process"))? {
        Forked::Child => joining_process(&child_end, target.as_raw_fd(), join, init, keep),
        Forked::Parent { pid, .. } => pid,
    };
    drop(child_end);
    let mut joiner = Reaper {
        pid: joiner,
        armed: true,
    };
    let pid = match receive(&runtime_end, "joining") {
        Ok(msg) if msg.kind == INIT_PID => msg.a,
        Ok(_) | Err(SpawnError::Died { .. }) => return Err(died(&mut joiner, "joining")),
        Err(err) => return Err(err),
    };
    // Our child (CLONE_PARENT): killed and reaped should no pidfd be had.
    let mut unopened = Reaper { pid, armed: true };
    let process = PidFd::open(pid).map_err(runtime_err("opening a pidfd for the new process"))?;
    unopened.armed = false;
    let mut guard = InitReaper {
        init: &process,
        armed: true,
    };
    joiner.armed = false;
    sys::waitpid(joiner.pid).map_err(runtime_err("reaping the joining process"))?;
    let flags = prepare(&process).map_err(SpawnError::Prepare)?;
    let thread_lists: Vec<RawFd> = thread_lists.iter().map(AsRawFd::as_raw_fd).collect();
    let go = Message {
        kind: GO,
        a: 0,
        b: 0,
        c: flags,
    };
    runtime_end
        .send_with_fds(go, &thread_lists)
        .map_err(runtime_err("releasing the new process"))?;
    guard.armed = false;
    drop(guard);
    Ok(Spawned {
        init: process,
        channel: runtime_end,
    })
}

/// How many descriptors [`spawn`] and [`spawn_into`] keep for their closures beside their own.
pub const MOST_KEPT: usize = 8;

/// How many namespaces [`spawn`] joins at most (network, IPC and UTS are the joinable ones).
const MOST_JOINED: usize = 4;

fn joining_process(
    channel: &Channel,
    target: RawFd,
    join: Namespaces,
    init: &(dyn Fn(&Channel) -> Failure + Sync),
    keep: &[RawFd],
) -> ! {
    // Nothing of the runtime's beyond what this process needs (the runtime's end of the
    // channel included, whose end of stream tells the runtime this one is gone).
    let mut kept = [-1; MOST_KEPT + 2];
    kept[0] = channel.raw_fd();
    kept[1] = target;
    for (slot, &fd) in kept[2..].iter_mut().zip(keep) {
        *slot = fd;
    }
    if sys::close_fds_except(&kept).is_err() {
        Failure::last_errno(Stage::JoinNamespaces, 3).report_and_exit(channel);
    }
    // Until it becomes the namespace's root, the process keeps host root's IDs and every
    // descriptor of the runtime: never dumpable in the container's reach.
    if sys::set_undumpable().is_err() {
        Failure::last_errno(Stage::JoinNamespaces, 2).report_and_exit(channel);
    }
    if sys::setns(target, join.setns_flags()).is_err() {
        Failure::last_errno(Stage::JoinNamespaces, 0).report_and_exit(channel);
    }
    become_namespace_root(channel);
    // Signal handlers at their defaults from the start: from here the container may signal
    // the process, and none of the runtime's handlers may run in it.
    let flags = libc::CLONE_PARENT as u64 | libc::CLONE_PIDFD as u64 | sys::CLONE_CLEAR_SIGHAND;
    // SAFETY: the child runs only `joined_process`, which is async-signal-safe and never returns.
    match unsafe { clone_fork(flags) } {
        Err(errno) => Failure {
            stage: Stage::Clone,
            step: 1,
            errno,
        }
        .report_and_exit(channel),
        Ok(Forked::Child) => joined_process(channel, init),
        Ok(Forked::Parent { pid, pidfd }) => {
            sys::close(pidfd);
            let _ = channel.send(Message {
                kind: INIT_PID,
                a: pid,
                b: 0,
                c: 0,
            });
            sys::exit(0)
        }
    }
}

/// Joining kept the host's IDs, which the namespace cannot name: the joining process becomes
/// its root before the clone, out of the container's sight (it is not in the container's PID
/// namespace), so that the process the container sees never changes its effective IDs. A
/// change of those makes a process as dumpable as the host's `fs.suid_dumpable` says until it
/// undoes that: in the container's sight, a tracer there could attach in between and skip the
/// filters to come. The real uid stays host root's until the clone, which RLIMIT_NPROC then
/// does not hold back (the runtime's limit against the container root's processes); the child
/// takes it after `prepare` set the spec's limits, as runc's process does, which the kernel
/// checks at the exec (a real uid's change leaves the dumpable flag alone).
fn become_namespace_root(channel: &Channel) {
    let fail = |step| Failure::last_errno(Stage::JoinNamespaces, step).report_and_exit(channel);
    // SAFETY: plain syscalls with integer arguments; a NULL list with size 0 is allowed.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) == -1 {
            fail(10);
        }
        if libc::setresgid(0, 0, 0) == -1 {
            fail(11);
        }
        if libc::setresuid(libc::uid_t::MAX, 0, 0) == -1 {
            fail(12);
        }
    }
    if sys::set_undumpable().is_err() {
        fail(UNDUMPABLE_AS_ROOT_STEP);
    }
}

fn joined_process(channel: &Channel, init: &(dyn Fn(&Channel) -> Failure + Sync)) -> ! {
    let fail = |step| Failure::last_errno(Stage::InitNamespaces, step).report_and_exit(channel);
    if sys::leave_raised_priority().is_err() {
        fail(LEAVE_RAISED_PRIORITY_STEP);
    }
    match channel.recv() {
        Ok(Some((msg, thread_lists))) if msg.kind == GO => {
            // Into the container's cgroups first, as its init did.
            if join_cgroups(thread_lists.raw()).is_err() {
                fail(JOIN_CGROUPS_STEP);
            }
        }
        _ => sys::exit(1),
    }
    // The namespace's root as its real uid too (see `become_namespace_root`), and a session
    // of its own, which keeps the process off the runtime's terminal.
    // SAFETY: setresuid and setsid take integers or nothing.
    unsafe {
        if libc::setresuid(0, libc::uid_t::MAX, libc::uid_t::MAX) == -1 {
            fail(14);
        }
        if libc::setsid() == -1 {
            fail(13);
        }
    }
    // Undumpable already: the flag came with the joining process's memory, and this process
    // changes no effective IDs.
    init(channel).report_and_exit(channel)
}
