//! Seccomp for eci: the filters every container process runs under, and the supervisor that
//! vets and performs the container's mount syscalls.
//!
//! - [`filters`]: the BPF programs (seccompiler, plus an architecture/x32 guard and a notify
//!   action seccompiler does not have);
//! - [`install`]: installing them in the container's init, allocation-free;
//! - [`profile`]: the spec's own seccomp profile (Docker's default one), compiled into filters
//!   that go on top of eci's;
//! - [`notify`]: the listener: receive, answer, check that a call is still pending, read the
//!   caller's memory;
//! - [`supervisor`]: one thread watching every container: its listener, its init, its helper;
//! - [`fresh`]: procfs and sysfs that the container mounts itself, built masked outside it;
//! - [`held`]: freeing a helper that the container's own FUSE server holds;
//! - [`mount`]: the vetting of `mount` and `umount2` by a helper in the container's namespaces,
//!   which receives from the listener itself.
//!
//! ```no_run
//! use std::os::fd::{AsFd, OwnedFd};
//! use std::sync::Arc;
//! use eci_seccomp::mount::{HelperConfig, MountVetter};
//! use eci_seccomp::notify::Listener;
//! use eci_seccomp::supervisor::Handler;
//! use eci_seccomp::{Filters, Supervisor};
//!
//! # fn listener_from_the_container() -> OwnedFd { unreachable!() }
//! # fn run(init: eci_ns::PidFd) -> Result<(), Box<dyn std::error::Error>> {
//! let filters = Filters::build()?;
//! // In the container's init, after fork: `let fd = filters.install()?`, sent to the runtime
//! // and closed there.
//! let listener = Listener::new(listener_from_the_container());
//! let supervisor = Supervisor::start()?;
//! let config = HelperConfig { policy: Default::default(), userns: 0, userns_fd: None, initial: Vec::new(), masks: Default::default(), sysinfo: None, charged_to: None };
//! let vetter = MountVetter::start(&init, &listener, config)?;
//! let handler: Arc<dyn Handler> = vetter;
//! let exit = init.as_fd().try_clone_to_owned()?;
//! let _registration = supervisor.register(listener, handler, Some(exit))?;
//! # Ok(()) }
//! ```

mod creds;
pub mod filters;
pub mod fresh;
mod fuse_fd;
pub mod held;
pub mod install;
pub mod mount;
pub mod notify;
pub mod profile;
pub mod supervisor;

pub use install::Filters;
pub use supervisor::{Registration, Supervisor};
