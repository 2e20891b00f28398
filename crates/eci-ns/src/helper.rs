//! Long-lived helpers that act inside a container's namespaces.
//!
//! A helper is forked from the runtime, joins chosen namespaces of a target process through its
//! pidfd (joining a user namespace needs a single-threaded process, which a fresh fork is), closes
//! every descriptor but its channel, and then answers requests until the runtime closes the
//! channel. It is not in the container's PID namespace, so nothing in the container can see,
//! signal or trace it. Requests are served by a caller-supplied function that, like everything
//! after fork, must be async-signal-safe: no allocation, no locks.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;

use crate::channel::{Channel, Message, ReceivedFds};
use crate::failure::{Failure, Stage};
use crate::namespaces::Namespaces;
use crate::pidfd::PidFd;
use crate::sys::{self, Forked};

/// Largest request a helper accepts.
pub const MAX_REQUEST: usize = 16 * 1024;
/// Largest response a helper sends.
pub const MAX_RESPONSE: usize = 4 * 1024;

const READY: u32 = 0x2000;

/// The function a helper serves requests with: the request bytes and descriptors in, the
/// response written to the buffer, its length returned. Runs after fork: async-signal-safe only.
pub type Serve<'a> = dyn Fn(&[u8], &mut ReceivedFds, &mut [u8; MAX_RESPONSE]) -> usize + Sync + 'a;

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
/// fn hostname(_req: &[u8], _fds: &mut eci_ns::channel::ReceivedFds, out: &mut [u8; 4096]) -> usize {
///     let mut name = [0 as libc::c_char; 65];
///     // SAFETY: name is a valid buffer of the given length.
///     unsafe { libc::gethostname(name.as_mut_ptr(), name.len()) };
///     out[0] = name[0] as u8;
///     1
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
        let (runtime_end, helper_end) = Channel::pair().map_err(|source| HelperError::Io {
            what: "creating its channel",
            source,
        })?;
        let pidfd = target.as_raw_fd();
        // SAFETY: the child runs only `helper_process`, which is async-signal-safe and never
        // returns.
        let pid = match unsafe { sys::fork() } {
            Err(errno) => {
                return Err(HelperError::Io {
                    what: "forking",
                    source: errno.into(),
                })
            }
            Ok(Forked::Child) => {
                helper_process(&helper_end, runtime_end.raw_fd(), pidfd, join, serve)
            }
            Ok(Forked::Parent { pid, .. }) => pid,
        };
        drop(helper_end);
        let helper = Helper {
            pid,
            channel: Mutex::new(runtime_end),
        };
        let channel = helper.channel.lock().expect("not yet shared");
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
        drop(channel);
        Ok(helper)
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
}

impl Drop for Helper {
    fn drop(&mut self) {
        // SAFETY: kill takes plain integers; the pid is our unreaped child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = sys::waitpid(self.pid);
    }
}

fn helper_process(
    channel: &Channel,
    runtime_end: RawFd,
    pidfd: RawFd,
    join: Namespaces,
    serve: &Serve<'_>,
) -> ! {
    sys::close(runtime_end);
    if sys::setns(pidfd, join.setns_flags()).is_err() {
        Failure::last_errno(Stage::Helper, 0).report_and_exit(channel);
    }
    // Nothing of the runtime's may stay open in here: another container's seccomp listener would
    // keep that container's mount calls waiting forever if the runtime died.
    if sys::close_fds_except(&[channel.raw_fd()]).is_err() {
        Failure::last_errno(Stage::Helper, 1).report_and_exit(channel);
    }
    if channel.send(Message::of(READY)).is_err() {
        sys::exit(1);
    }
    let mut request = [0u8; MAX_REQUEST];
    let mut response = [0u8; MAX_RESPONSE];
    loop {
        match channel.recv_bytes(&mut request) {
            Ok(Some((len, mut fds))) => {
                let out = serve(&request[..len], &mut fds, &mut response);
                drop(fds);
                if channel
                    .send_bytes(&response[..out.min(MAX_RESPONSE)], &[])
                    .is_err()
                {
                    sys::exit(1);
                }
            }
            Ok(None) => sys::exit(0),
            Err(sys::Errno(libc::EMSGSIZE)) => {
                if channel.send_bytes(&[], &[]).is_err() {
                    sys::exit(1);
                }
            }
            Err(_) => sys::exit(1),
        }
    }
}
