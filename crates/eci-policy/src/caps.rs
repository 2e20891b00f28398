//! Capability numbers and sets, for turning the spec's names into what capset(2) takes.

use oci_spec::runtime::{Capabilities, Capability};

/// The kernel's number for a capability.
///
/// ```
/// use eci_policy::caps::number;
/// use oci_spec::runtime::Capability;
/// assert_eq!(number(Capability::SysAdmin), 21);
/// assert_eq!(number(Capability::CheckpointRestore), 40);
/// ```
pub fn number(cap: Capability) -> u8 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// The name OCI specs use for a capability (`CAP_SYS_ADMIN`).
pub fn name(cap: Capability) -> String {
    format!("CAP_{cap}")
}

/// The highest capability number this crate knows.
pub const LAST_CAP: u8 = 40;

/// A set of capabilities as a bit mask (bit N is capability N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapSet(pub u64);

impl CapSet {
    /// Every capability this crate knows.
    pub const ALL: CapSet = CapSet((1 << (LAST_CAP as u64 + 1)) - 1);

    /// The set of the named capabilities.
    pub fn from_spec(caps: &Capabilities) -> CapSet {
        CapSet(caps.iter().fold(0, |bits, cap| bits | 1 << number(*cap)))
    }

    /// True if capability number `cap` is in the set.
    pub fn has(&self, cap: u8) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    /// Capabilities in both sets.
    pub fn intersect(self, other: CapSet) -> CapSet {
        CapSet(self.0 & other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_distinct_and_dense() {
        let names = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_DAC_READ_SEARCH",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_IPC_LOCK",
            "CAP_IPC_OWNER",
            "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO",
            "CAP_SYS_CHROOT",
            "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT",
            "CAP_SYS_ADMIN",
            "CAP_SYS_BOOT",
            "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE",
            "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG",
            "CAP_MKNOD",
            "CAP_LEASE",
            "CAP_AUDIT_WRITE",
            "CAP_AUDIT_CONTROL",
            "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE",
            "CAP_MAC_ADMIN",
            "CAP_SYSLOG",
            "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND",
            "CAP_AUDIT_READ",
            "CAP_PERFMON",
            "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        ];
        for (expected, name) in names.iter().enumerate() {
            let cap: Capability = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(usize::from(number(cap)), expected, "{name}");
        }
    }
}
