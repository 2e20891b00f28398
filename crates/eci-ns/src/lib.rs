//! Namespaces and processes for eci: starting a container's init with clone3 so that the kernel
//! locks its initial mounts, a parent/child channel that carries typed failures and file
//! descriptors, pidfds, long-lived helpers that act inside a container's namespaces, a way
//! for long-lived processes to give back the program pages they no longer run (`footprint`),
//! and side work that runs on idle CPU time until it is waited for (`yielding`).
//!
//! Everything that runs in a child is allocation-free, because a library cannot know whether the
//! program that links it has other threads: between fork and exec only async-signal-safe work is
//! allowed. Callers prepare every string and buffer first and pass closures that only make
//! syscalls.
//!
//! ```
//! use eci_ns::channel::{Channel, Message};
//! use eci_ns::failure::{Failure, Stage};
//! use eci_ns::sys::Errno;
//!
//! // A child reports a failure; the parent reads it back as a typed value.
//! let (parent, child) = Channel::pair().unwrap();
//! child.send(Failure { stage: Stage::Init, step: 3, errno: Errno(2) }.to_message()).unwrap();
//! let (msg, _) = parent.recv().unwrap().unwrap();
//! let failure = Failure::from_message(&msg).unwrap();
//! assert_eq!((failure.stage, failure.step), (Stage::Init, 3));
//! ```

pub mod channel;
pub mod failure;
pub mod footprint;
pub mod helper;
pub mod join;
pub mod namespaces;
pub mod pidfd;
pub mod spawn;
pub mod sys;
pub mod timens;
pub mod yielding;

pub use namespaces::Namespaces;
pub use pidfd::{ExitStatus, PidFd};
pub use spawn::{
    spawn, spawn_into, InitParent, LatePhase, SetupContext, SpawnError, SpawnRequest, Spawned,
};
