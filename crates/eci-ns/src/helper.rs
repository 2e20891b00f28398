//! Long-lived helpers that act inside a container's namespaces.
//!
//! A helper is forked from the runtime, closes every descriptor but its channel and those it is
//! told to keep, joins chosen namespaces of a target process through its pidfd (joining a user
//! namespace needs a single-threaded process, which a fresh fork is), and then answers requests
//! until the runtime closes the channel. Hooks may run before and after joining. It is not in the container's PID namespace, so nothing in the container can see,
//! signal or trace it. Requests are served by a caller-supplied function that, like everything
//! after fork, must be async-signal-safe: no allocation, no locks. Once it has been idle for
//! two seconds, a helper unmaps the program pages its start touched, once
//! ([`crate::footprint::IdleTrim`]): they stay in the page cache and what it runs later faults
//! back in.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

use crate::channel::{Channel, Message, ReceivedFds};
use crate::failure::{Failure, Stage};
use crate::footprint::IdleTrim;
use crate::namespaces::Namespaces;
use crate::pidfd::PidFd;
use crate::sys::{self, Forked};

/// Largest request a helper accepts.
pub const MAX_REQUEST: usize = 16 * 1024;
/// Largest response a helper sends.
pub const MAX_RESPONSE: usize = 4 * 1024;

const READY: u32 = 0x2000;

/// The function a helper serves requests with: the request bytes and descriptors in, the
/// response written to the buffer and its length returned, or `None` to send nothing back (for
/// one-way messages). A response is at least one byte: an empty one would read as the end of
/// the stream, so it cannot be sent. Runs after fork: async-signal-safe only.
pub type Serve<'a> =
    dyn Fn(&[u8], &mut ReceivedFds, &mut [u8; MAX_RESPONSE]) -> Option<usize> + Sync + 'a;

/// A step a helper takes before it serves: async-signal-safe only.
pub type Hook<'a> = dyn Fn() -> Result<(), Failure> + Sync + 'a;

/// Called when a watched descriptor is readable, with the helper's channel (to tell the runtime
/// something unasked). Async-signal-safe only.
pub type OnReady<'a> = dyn Fn(&Channel) + Sync + 'a;

/// What a helper does once the runtime is gone (its channel closed) instead of exiting at once;
/// the helper exits when it returns. Async-signal-safe only.
pub type Orphaned<'a> = dyn Fn() + Sync + 'a;

/// How to start a helper.
pub struct HelperSpec<'a> {
    /// The process whose namespaces the helper joins.
    pub target: &'a PidFd,
    /// The namespaces it joins.
    pub join: Namespaces,
    /// A namespace descriptor to join instead of `target`'s (then `join` names its one type):
    /// a namespace pinned earlier, whatever `target` has joined or made since.
    pub join_via: Option<RawFd>,
    /// Descriptors the helper keeps besides its channel; every other one is closed first.
    pub keep: &'a [RawFd],
    /// Runs with the runtime's credentials, before joining.
    pub before_join: Option<&'a Hook<'a>>,
    /// Runs inside the joined namespaces, before serving.
    pub after_join: Option<&'a Hook<'a>>,
    /// Answers requests.
    pub serve: &'a Serve<'a>,
    /// A descriptor (one of `keep`) the helper waits on besides its channel, and what it does
    /// when it is readable. It is read before each wait, so `serve` may set it for a descriptor
    /// the runtime hands over later; a negative value means none yet.
    pub watch: Option<(&'a AtomicI32, &'a OnReady<'a>)>,
    /// Runs when the runtime is gone, before the helper exits.
    pub orphaned: Option<&'a Orphaned<'a>>,
}

/// Why a helper could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// The runtime could not create or reach the helper.
    #[error("helper: {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The helper failed to join the namespaces.
    #[error("helper: {0}")]
    Failed(Failure),
    /// The helper is gone.
    #[error("helper exited")]
    Gone,
}

/// A running helper. Dropping it stops the helper and reaps it.
///
/// ```no_run
/// use eci_ns::{helper::Helper, namespaces::Namespaces, pidfd::PidFd};
///
/// // Answers every request with the first byte of the hostname in the target's UTS namespace.
/// fn hostname(_req: &[u8], _fds: &mut eci_ns::channel::ReceivedFds, out: &mut [u8; 4096]) -> Option<usize> {
///     let mut name = [0 as libc::c_char; 65];
///     // SAFETY: name is a valid buffer of the given length.
///     unsafe { libc::gethostname(name.as_mut_ptr(), name.len()) };
///     out[0] = name[0] as u8;
///     Some(1)
/// }
/// let target = PidFd::open(1234)?;
/// let helper = Helper::spawn(&target, Namespaces::UTS, &hostname)?;
/// let mut reply = [0u8; 4096];
/// let n = helper.call(b"hostname", &[], &mut reply)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Helper {
    pid: i32,
    channel: Mutex<Channel>,
}

impl Helper {
    /// Starts a helper in `target`'s namespaces `join` that answers with `serve`.
    pub fn spawn(
        target: &PidFd,
        join: Namespaces,
        serve: &Serve<'_>,
    ) -> Result<Helper, HelperError> {
        Helper::start(&HelperSpec {
            target,
            join,
            join_via: None,
            keep: &[],
            before_join: None,
            after_join: None,
            serve,
            watch: None,
            orphaned: None,
        })
    }

    /// Starts a helper as `spec` describes and waits until it serves.
    pub fn start(spec: &HelperSpec<'_>) -> Result<Helper, HelperError> {
        let helper = Helper::fork(spec)?;
        helper.wait_ready()?;
        Ok(helper)
    }

    /// Forks a helper as `spec` describes and returns at once, while it joins its namespaces
    /// and runs its hooks; [`Helper::wait_ready`] waits for that. Until then, the runtime can
    /// do other work beside it.
    pub fn fork(spec: &HelperSpec<'_>) -> Result<Helper, HelperError> {
        let (runtime_end, helper_end) = Channel::pair().map_err(|source| HelperError::Io {
            what: "creating its channel",
            source,
        })?;
        // SAFETY: the child runs only `helper_process`, which is async-signal-safe and never
        // returns.
        let pid = match unsafe { sys::fork() } {
            Err(errno) => {
                return Err(HelperError::Io {
                    what: "forking",
                    source: errno.into(),
                })
            }
            Ok(Forked::Child) => helper_process(&helper_end, spec),
            Ok(Forked::Parent { pid, .. }) => pid,
        };
        drop(helper_end);
        Ok(Helper {
            pid,
            channel: Mutex::new(runtime_end),
        })
    }

    /// Waits until a helper from [`Helper::fork`] has joined its namespaces and serves; the
    /// failure it reported otherwise. Call it once, before anything else is sent.
    pub fn wait_ready(&self) -> Result<(), HelperError> {
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match channel.recv() {
            Ok(Some((msg, _))) if msg.kind == READY => {}
            Ok(Some((msg, _))) => {
                return Err(
                    Failure::from_message(&msg).map_or(HelperError::Gone, HelperError::Failed)
                )
            }
            Ok(None) => return Err(HelperError::Gone),
            Err(errno) => {
                return Err(HelperError::Io {
                    what: "waiting for it",
                    source: errno.into(),
                })
            }
        }
        Ok(())
    }

    /// Sends a one-way message (the helper's `serve` returns `None` for it).
    pub fn send(&self, message: &[u8], fds: &[RawFd]) -> Result<(), HelperError> {
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        channel
            .send_bytes(message, fds)
            .map_err(|errno| match errno.0 {
                libc::EPIPE | libc::ECONNRESET => HelperError::Gone,
                _ => HelperError::Io {
                    what: "sending a message",
                    source: errno.into(),
                },
            })
    }

    /// Sends a request with descriptors and waits for the response.
    pub fn call(
        &self,
        request: &[u8],
        fds: &[RawFd],
        response: &mut [u8],
    ) -> Result<usize, HelperError> {
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        channel
            .send_bytes(request, fds)
            .map_err(|errno| match errno.0 {
                libc::EPIPE | libc::ECONNRESET => HelperError::Gone,
                _ => HelperError::Io {
                    what: "sending a request",
                    source: errno.into(),
                },
            })?;
        match channel.recv_bytes(response) {
            Ok(Some((len, _))) => Ok(len),
            Ok(None) | Err(sys::Errno(libc::ECONNRESET)) => Err(HelperError::Gone),
            Err(errno) => Err(HelperError::Io {
                what: "reading a response",
                source: errno.into(),
            }),
        }
    }

    /// The helper's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The runtime's end of the channel, for waiting on messages the helper sends unasked.
    pub fn channel_fd(&self) -> RawFd {
        self.channel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .raw_fd()
    }

    /// A message the helper sent unasked, if one is waiting: its length in `buf`.
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<Option<usize>, HelperError> {
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match channel.try_recv_bytes(buf) {
            Ok(Some((len, _))) => Ok(Some(len)),
            Err(sys::Errno(libc::EAGAIN)) => Ok(None),
            Ok(None) => Err(HelperError::Gone),
            Err(errno) => Err(HelperError::Io {
                what: "reading a message",
                source: errno.into(),
            }),
        }
    }
}

impl Helper {
    /// Kills and reaps the helper. What it sent before dying can still be read with
    /// [`Helper::try_recv`] (then `Gone`); its pid reads 0 from here on. A helper that does not
    /// die within [`REAP_WAIT`] is reaped by a thread of its own (see [`kill_and_reap`]).
    pub fn kill(&mut self) {
        if self.pid > 0 {
            kill_and_reap(self.pid, REAP_WAIT);
            self.pid = 0;
        }
    }
}

/// How long [`Helper::kill`] waits for a killed helper to die before it leaves the reaping to a
/// thread.
pub const REAP_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Sends SIGKILL to child `pid` and reaps it, waiting `wait` at most. A SIGKILL takes effect
/// only when the process leaves the kernel, and a helper can be held there without end: in a
/// FUSE request that a server its container runs reads and never answers, say. Its killer (a
/// supervisor thread that serves other containers too) must not wait for that, so a child not
/// gone by then is reaped by a thread of its own, once the kernel lets it go.
pub fn kill_and_reap(pid: i32, wait: std::time::Duration) {
    // SAFETY: kill takes plain integers; the pid is our unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let exited = match PidFd::open(pid) {
        Ok(pidfd) => {
            let mut fds = [libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd. EINTR reads as not yet exited: a thread reaps it then.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) == 1 }
        }
        // Gone already, or no pidfds: waitpid below, which then returns at once or must block.
        Err(_) => true,
    };
    if exited {
        let _ = sys::waitpid(pid);
        return;
    }
    let reaper = std::thread::Builder::new()
        .name("eci-reap".into())
        .spawn(move || {
            let _ = sys::waitpid(pid);
        });
    // Without a thread to wait in, it stays a zombie until this process ends, rather than
    // hang its killer.
    drop(reaper);
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Serves the watched descriptor until the channel has something; false when the channel closed
/// or failed (the runtime is gone).
fn wait_for_channel(
    channel: &Channel,
    watched: RawFd,
    on_ready: &OnReady<'_>,
    idle: &mut IdleTrim,
) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: channel.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: watched,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        match idle.poll(&mut fds) {
            Ok(_) => {}
            Err(sys::Errno(libc::EINTR)) => continue,
            Err(_) => return false,
        }
        if fds[1].revents & libc::POLLIN != 0 {
            on_ready(channel);
        }
        if fds[0].revents != 0 {
            return fds[0].revents & libc::POLLIN != 0;
        }
        if fds[1].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
            && fds[1].revents & libc::POLLIN == 0
        {
            // Nothing will ever come on the watched descriptor again; wait on the channel only.
            fds[1].fd = -1;
        }
    }
}

/// The runtime closed the channel (or died): do what the helper was told to, then exit.
fn runtime_gone(spec: &HelperSpec<'_>) -> ! {
    if let Some(orphaned) = spec.orphaned {
        orphaned();
    }
    sys::exit(0)
}

/// The helper's step (in [`Stage::Helper`]) in which it leaves a real-time policy it inherited
/// ([`sys::leave_raised_priority`]).
const HELPER_LEAVE_RAISED_PRIORITY_STEP: u32 = 20;

fn helper_process(channel: &Channel, spec: &HelperSpec<'_>) -> ! {
    let fail = |step| Failure::last_errno(Stage::Helper, step).report_and_exit(channel);
    // Signal handlers at their defaults (ignored signals stay ignored): the helper's children
    // may enter the container's PID namespace, where its root may signal them, and none of the
    // runtime's handlers may run there.
    sys::reset_signal_actions(sys::Keep::Ignored);
    // The runtime's blocked signals are not the helper's (a runtime that passes signals on to
    // its container blocks them in every thread): a helper blocks what it reads itself.
    // SAFETY: an empty set, initialised by sigemptyset; sigprocmask and setsid are
    // async-signal-safe.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // Nor is the runtime's process group: a runtime in a terminal's foreground (`run`
        // without --detach) would otherwise share Ctrl-C, and a shell's `kill -INT -PGID`, with
        // the helper, which would die of it and leave the container's mount calls failing.
        // setsid is async-signal-safe, and a child just forked leads no group, so it succeeds.
        libc::setsid();
    }
    // A helper works at its container's request (every mount call): under a real-time policy
    // inherited from its runtime it could be kept busy ahead of every host process.
    if sys::leave_raised_priority().is_err() {
        fail(HELPER_LEAVE_RAISED_PRIORITY_STEP);
    }
    // Nothing of the runtime's may stay open in here: another container's seccomp listener would
    // keep that container's mount calls waiting forever if the runtime died. The pidfd is needed
    // to join, so it goes last.
    let mut keep = [-1; 19];
    keep[0] = channel.raw_fd();
    keep[1] = spec.target.as_raw_fd();
    keep[2] = spec.join_via.unwrap_or(-1);
    for (slot, fd) in keep[3..].iter_mut().zip(spec.keep) {
        *slot = *fd;
    }
    if spec.keep.len() > keep.len() - 3 || sys::close_fds_except(&keep).is_err() {
        fail(1);
    }
    // Nor its standard streams: a caller that waits for the end of the runtime's output (a
    // pipe it reads to the end) would wait as long as an orphaned helper lives. (A runtime
    // started with them closed may have put a kept descriptor there: that one stays.)
    let mut streams = [-1; 3];
    for (slot, fd) in streams.iter_mut().zip(0..3) {
        if !keep.contains(&fd) {
            *slot = fd;
        }
    }
    if sys::to_dev_null(&streams).is_err() {
        fail(11);
    }
    // Joining and setting up run code the loop never runs again: given back once idle. Its
    // smaps is opened now, while the helper's root is the runtime's: a mount helper takes
    // its callers' roots, where a container decides what /proc/self/smaps is.
    let mut idle = IdleTrim::open();
    if let Some(hook) = spec.before_join {
        if let Err(failure) = hook() {
            failure.report_and_exit(channel);
        }
    }
    // Host root's IDs and the container's listener, in the container's user namespace until
    // the after-join hook changes IDs: never dumpable there (see `sys::set_undumpable`).
    if sys::set_undumpable().is_err() {
        fail(9);
    }
    let joined = match spec.join_via {
        Some(ns) => sys::setns(ns, spec.join.setns_flags()).map(|()| sys::close(ns)),
        None => sys::setns(spec.target.as_raw_fd(), spec.join.setns_flags()),
    };
    if joined.is_err() {
        fail(0);
    }
    sys::close(spec.target.as_raw_fd());
    if let Some(hook) = spec.after_join {
        if let Err(failure) = hook() {
            failure.report_and_exit(channel);
        }
        // The hook may have changed IDs, which sets the flag as the host's `fs.suid_dumpable`
        // says; the helper's children may enter the container's PID namespace.
        if sys::set_undumpable().is_err() {
            fail(10);
        }
    }
    if channel.send(Message::of(READY)).is_err() {
        sys::exit(1);
    }
    let mut request = [0u8; MAX_REQUEST];
    let mut response = [0u8; MAX_RESPONSE];
    loop {
        match spec.watch {
            Some((fd, on_ready)) => {
                if !wait_for_channel(channel, fd.load(Ordering::Relaxed), on_ready, &mut idle) {
                    runtime_gone(spec);
                }
            }
            None => idle.wait_readable(channel.raw_fd()),
        }
        match channel.recv_bytes(&mut request) {
            Ok(Some((len, mut fds))) => {
                let answer = (spec.serve)(&request[..len], &mut fds, &mut response);
                drop(fds);
                if let Some(out) = answer {
                    if channel
                        .send_bytes(&response[..out.min(MAX_RESPONSE)], &[])
                        .is_err()
                    {
                        runtime_gone(spec);
                    }
                }
            }
            Ok(None) => runtime_gone(spec),
            Err(sys::Errno(libc::EMSGSIZE)) => {}
            Err(_) => runtime_gone(spec),
        }
    }
}
