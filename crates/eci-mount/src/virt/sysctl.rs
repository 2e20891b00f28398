//! Global kernel tunables emulated per container: which ones, what values they accept, and how
//! a container's value is reconciled with the host's. Pure, tested with proptest.

use eci_policy::settings::SysctlMode;

/// What a tunable accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One integer in the range.
    Int(i64, i64),
    /// One to `n` integers, each in the range (kernel.printk).
    Ints(usize, i64, i64),
}

/// The global tunables eci emulates, by dotted name. Those under `net.` that the kernel keeps
/// per network namespace (somaxconn, unix.max_dgram_qlen, neigh gc_thresh*) are the container's
/// own already; `net.core.default_qdisc` exists only in the host's network namespace, so a
/// container has no such file to write.
pub const TUNABLES: [(&str, Kind); 17] = [
    ("kernel.panic", Kind::Int(i32::MIN as i64, i32::MAX as i64)),
    ("kernel.panic_on_oops", Kind::Int(0, 1)),
    ("kernel.printk", Kind::Ints(4, 0, 15)),
    ("kernel.kptr_restrict", Kind::Int(0, 2)),
    ("kernel.dmesg_restrict", Kind::Int(0, 1)),
    ("kernel.sysrq", Kind::Int(0, 511)),
    ("kernel.pid_max", Kind::Int(301, 4_194_304)),
    ("kernel.yama.ptrace_scope", Kind::Int(0, 3)),
    ("vm.overcommit_memory", Kind::Int(0, 2)),
    // At most 64 KiB: largest-wins lends the host a container's value, and one above where
    // programs load would make their execs fail on the whole host. That is 4 MiB for x86-64
    // executables, but 64 KiB (0x10000) for Go's arm64 and riscv64 ones.
    ("vm.mmap_min_addr", Kind::Int(0, 1 << 16)),
    ("fs.file-max", Kind::Int(0, i64::MAX)),
    ("fs.nr_open", Kind::Int(1, 1_073_741_816)),
    ("fs.protected_hardlinks", Kind::Int(0, 1)),
    ("fs.protected_symlinks", Kind::Int(0, 1)),
    ("fs.protected_fifos", Kind::Int(0, 2)),
    ("fs.protected_regular", Kind::Int(0, 2)),
    (
        "net.netfilter.nf_conntrack_max",
        Kind::Int(0, i32::MAX as i64),
    ),
];

/// Whether a container's value may reach the host under `mode` (the settings' rule, checked when
/// they are read: [`eci_policy::settings::check_sysctl_rule`]).
pub use eci_policy::settings::sysctl_mode_allowed as mode_allowed;

/// Where a tunable lives: `kernel.panic` is `/proc/sys/kernel/panic`.
pub fn proc_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// A written value, checked and normalised ("  7\n" is "7"), or None if the tunable would
/// refuse it (the caller answers EINVAL).
pub fn check(kind: Kind, written: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(written).ok()?.trim();
    let numbers: Vec<i64> = text
        .split_ascii_whitespace()
        .map(|word| word.parse().ok())
        .collect::<Option<_>>()?;
    let (count, min, max) = match kind {
        Kind::Int(min, max) => (1..=1, min, max),
        Kind::Ints(n, min, max) => (1..=n, min, max),
    };
    if !count.contains(&numbers.len()) || numbers.iter().any(|n| *n < min || *n > max) {
        return None;
    }
    let words: Vec<String> = numbers.iter().map(i64::to_string).collect();
    Some(words.join("\t"))
}

/// The capability the kernel's own handler asks of a writer of tunable `name` (a number, as
/// in capability(7)), beyond the file's permissions; `None` for the others.
pub fn capability_to_write(name: &str) -> Option<u32> {
    match name {
        // CAP_SYS_ADMIN, in proc_dointvec_minmax_sysadmin
        "kernel.kptr_restrict" | "kernel.dmesg_restrict" => Some(21),
        // CAP_SYS_PTRACE, in Yama's own handler
        "kernel.yama.ptrace_scope" => Some(19),
        // CAP_SYS_RAWIO, in mmap_min_addr_handler
        "vm.mmap_min_addr" => Some(17),
        _ => None,
    }
}

/// What the host's value becomes after containers wrote `values`, starting from the host's
/// current value `original`; `None` leaves the host alone.
pub fn host_value(mode: SysctlMode, original: &str, values: &[&str]) -> Option<String> {
    let number = |v: &str| v.split_ascii_whitespace().next()?.parse::<i64>().ok();
    match mode {
        SysctlMode::ContainerOnly | SysctlMode::AlwaysHost => None,
        SysctlMode::LargestWins => {
            let largest = values.iter().filter_map(|v| number(v)).max()?;
            let host = number(original)?;
            Some(largest.max(host).to_string())
        }
        // Switching on means going from 0 to 1; a host value that is on already (kptr_restrict
        // 2, sysrq 176) is never touched.
        SysctlMode::EnableWins => {
            let on = values.iter().filter_map(|v| number(v)).any(|v| v != 0);
            (on && number(original) == Some(0)).then(|| "1".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_emulated_tunables_are_the_ones_the_settings_accept() {
        let served: Vec<&str> = TUNABLES.iter().map(|(name, _)| *name).collect();
        assert_eq!(served, eci_policy::settings::EMULATED_SYSCTLS);
    }

    #[test]
    fn writes_that_the_kernel_guards_with_a_capability_ask_for_it() {
        assert_eq!(capability_to_write("kernel.dmesg_restrict"), Some(21));
        assert_eq!(capability_to_write("kernel.kptr_restrict"), Some(21));
        assert_eq!(capability_to_write("kernel.yama.ptrace_scope"), Some(19));
        assert_eq!(capability_to_write("vm.mmap_min_addr"), Some(17));
        assert_eq!(capability_to_write("kernel.panic"), None);
        for (name, _) in TUNABLES {
            assert!(
                capability_to_write(name).is_none_or(|cap| cap <= 40),
                "{name}"
            );
        }
    }

    #[test]
    fn values_are_checked_and_normalised() {
        assert_eq!(check(Kind::Int(0, 2), b" 2\n"), Some("2".into()));
        assert_eq!(check(Kind::Int(0, 2), b"3\n"), None);
        assert_eq!(check(Kind::Int(0, 2), b"two"), None);
        assert_eq!(check(Kind::Int(0, 2), b"1 1"), None);
        assert_eq!(
            check(Kind::Ints(4, 0, 15), b"4 4 1 7\n"),
            Some("4\t4\t1\t7".into())
        );
        assert_eq!(check(Kind::Ints(4, 0, 15), b""), None);
        // A value that would reach the host (largest-wins) and stop its programs loading.
        let mmap_min_addr = TUNABLES.iter().find(|(n, _)| *n == "vm.mmap_min_addr");
        let kind = mmap_min_addr.unwrap().1;
        assert_eq!(check(kind, b"65536"), Some("65536".into()));
        assert_eq!(
            check(kind, b"65537"),
            None,
            "Go's arm64 programs load at 0x10000"
        );
        assert_eq!(check(kind, b"140737488355328"), None);
        assert_eq!(
            proc_path("kernel.yama.ptrace_scope"),
            "/proc/sys/kernel/yama/ptrace_scope"
        );
    }

    #[test]
    fn reconciliation_follows_the_mode() {
        assert_eq!(
            host_value(SysctlMode::LargestWins, "100", &["50", "300"]),
            Some("300".into())
        );
        assert_eq!(
            host_value(SysctlMode::LargestWins, "500", &["50"]),
            Some("500".into())
        );
        assert_eq!(
            host_value(SysctlMode::EnableWins, "0", &["0", "1"]),
            Some("1".into())
        );
        assert_eq!(host_value(SysctlMode::EnableWins, "0", &["0"]), None);
        assert_eq!(
            host_value(SysctlMode::EnableWins, "2", &["1"]),
            None,
            "never lowered"
        );
        assert!(mode_allowed(
            "net.netfilter.nf_conntrack_max",
            SysctlMode::LargestWins
        ));
        assert!(!mode_allowed("kernel.sysrq", SysctlMode::EnableWins));
        assert!(!mode_allowed(
            "kernel.yama.ptrace_scope",
            SysctlMode::LargestWins
        ));
        assert_eq!(host_value(SysctlMode::ContainerOnly, "0", &["9"]), None);
    }

    proptest! {
        #[test]
        fn a_checked_value_is_in_range(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            if let Some(v) = check(Kind::Int(0, 2), &bytes) {
                let n: i64 = v.parse().unwrap();
                prop_assert!((0..=2).contains(&n));
            }
        }

        #[test]
        fn largest_wins_never_lowers_the_host(host in 0i64..1 << 40, values in proptest::collection::vec(0i64..1 << 40, 1..8)) {
            let values: Vec<String> = values.iter().map(i64::to_string).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let after: i64 = host_value(SysctlMode::LargestWins, &host.to_string(), &refs).unwrap().parse().unwrap();
            prop_assert!(after >= host);
            prop_assert!(values.iter().all(|v| v.parse::<i64>().unwrap() <= after));
        }
    }
}
