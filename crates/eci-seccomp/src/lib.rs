//! Seccomp for eci: the filters every container process runs under, and the supervisor that
//! vets and performs the container's mount syscalls.
//!
//! - [`filters`]: the BPF programs (seccompiler, plus an architecture/x32 guard and a notify
//!   action seccompiler does not have);
//! - [`install`]: installing them in the container's init, allocation-free;
//! - [`notify`]: the listener: receive, answer, check that a call is still pending, read the
//!   caller's memory;
//! - [`supervisor`]: one thread serving every container's listener;
//! - [`mount`]: the vetting of `mount` and `umount2` by a helper in the container's namespaces.
//!
//! ```no_run
//! use std::os::fd::{FromRawFd, OwnedFd};
//! use eci_seccomp::{Filters, Supervisor};
//!
//! let filters = Filters::build()?;
//! let supervisor = Supervisor::start()?;
//! // In the container's init (after fork): let fd = filters.install()?; send fd to the runtime.
//! # let fd = 3;
//! // In the runtime, with a handler for that container (see mount::MountVetter):
//! # let handler: std::sync::Arc<dyn eci_seccomp::supervisor::Handler> = unimplemented!();
//! let registration = supervisor.register(unsafe { OwnedFd::from_raw_fd(fd) }, handler)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod filters;
pub mod install;
pub mod mount;
pub mod notify;
pub mod supervisor;

pub use install::Filters;
pub use supervisor::{Registration, Supervisor};
