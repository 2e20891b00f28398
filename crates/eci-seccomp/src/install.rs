//! Installing filters in a container process. Allocation-free: runs between fork and exec.

use std::os::fd::RawFd;

use eci_ns::sys::{check, Errno, SysResult};

use crate::filters::{self, FilterError, Program};

/// Every filter a container process gets, compiled in the runtime before fork.
#[derive(Debug, Clone)]
pub struct Filters {
    notify: Program,
    deny: Program,
    new_mount_api: Program,
    families: Program,
    listener: Program,
}

/// Which install step failed, for [`eci_ns::failure::Failure::step`].
pub mod step {
    /// Installing the notify filter.
    pub const NOTIFY: u32 = 1;
    /// Installing the deny filter.
    pub const DENY: u32 = 2;
    /// Installing the new-mount-API filter.
    pub const NEW_MOUNT_API: u32 = 3;
    /// Installing the filter that refuses a listener of the container's own.
    pub const LISTENER: u32 = 4;
    /// Installing the filter that refuses socket families.
    pub const FAMILIES: u32 = 5;
}

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

impl Filters {
    /// Compiles every filter.
    ///
    /// ```
    /// let filters = eci_seccomp::Filters::build().unwrap();
    /// // In the container's init, after fork: let listener = filters.install()?;
    /// # let _ = filters;
    /// ```
    pub fn build() -> Result<Filters, FilterError> {
        let (deny, new_mount_api) = filters::deny_filter()?;
        Ok(Filters {
            notify: filters::notify_filter()?,
            deny,
            new_mount_api,
            families: filters::family_filter()?,
            listener: filters::listener_filter()?,
        })
    }

    /// Installs every filter in the calling thread and returns the notify listener. The caller
    /// must hand the listener to the supervisor and close its own copy: a container that kept it
    /// could answer its own mount calls.
    ///
    /// Needs CAP_SYS_ADMIN in the caller's user namespace or no_new_privs.
    pub fn install(&self) -> Result<RawFd, (u32, Errno)> {
        let listener = install_notify(&self.notify).map_err(|e| (step::NOTIFY, e))?;
        install_filter(&self.deny, 0).map_err(|e| (step::DENY, e))?;
        install_filter(&self.new_mount_api, 0).map_err(|e| (step::NEW_MOUNT_API, e))?;
        install_filter(&self.families, 0).map_err(|e| (step::FAMILIES, e))?;
        // Last, after eci's own listener: from here on nothing in the chain may add one, even
        // once eci's has closed (see filters::listener_filter).
        install_filter(&self.listener, 0).map_err(|e| (step::LISTENER, e))?;
        Ok(listener)
    }
}

/// Installs `prog` with seccomp(2) flags `flags`; returns what the syscall returns (a listener
/// fd with SECCOMP_FILTER_FLAG_NEW_LISTENER).
pub fn install_filter(prog: &[libc::sock_filter], flags: libc::c_ulong) -> SysResult<i64> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| Errno(libc::E2BIG))?,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at `prog`, which outlives the call; the kernel copies the program.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    })
}

/// Installs a notify filter, asking the kernel (5.19+) not to let signals interrupt a call
/// waiting for the supervisor, and returns the listener.
pub fn install_notify(prog: &[libc::sock_filter]) -> SysResult<RawFd> {
    let listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
    match install_filter(
        prog,
        listener | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
    ) {
        Err(Errno(libc::EINVAL)) => install_filter(prog, listener),
        other => other,
    }
    .map(|fd| fd as RawFd)
}
