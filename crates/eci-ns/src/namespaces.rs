//! Namespace sets.

use bitflags::bitflags;

bitflags! {
    /// A set of namespace types, with the values of their CLONE_NEW* flags.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Namespaces: u32 {
        /// Mount namespace.
        const MOUNT = libc::CLONE_NEWNS as u32;
        /// UTS (hostname) namespace.
        const UTS = libc::CLONE_NEWUTS as u32;
        /// System V IPC and POSIX message queue namespace.
        const IPC = libc::CLONE_NEWIPC as u32;
        /// User namespace.
        const USER = libc::CLONE_NEWUSER as u32;
        /// PID namespace.
        const PID = libc::CLONE_NEWPID as u32;
        /// Network namespace.
        const NET = libc::CLONE_NEWNET as u32;
        /// Cgroup namespace.
        const CGROUP = libc::CLONE_NEWCGROUP as u32;
        /// Time namespace.
        const TIME = libc::CLONE_NEWTIME as u32;
    }
}

impl Namespaces {
    /// Every namespace a fully isolated container gets.
    pub const CONTAINER: Namespaces = Namespaces::all();

    /// The flags as clone3 takes them.
    pub fn clone_flags(self) -> u64 {
        u64::from(self.bits())
    }

    /// The flags as setns and unshare take them.
    pub fn setns_flags(self) -> libc::c_int {
        self.bits() as libc::c_int
    }
}
