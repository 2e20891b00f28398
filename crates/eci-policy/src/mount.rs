//! Decisions for the mount syscalls a container makes.
//!
//! Everything here is `Copy` and allocation-free: the decision runs inside a helper process that
//! was forked from a multi-threaded runtime, where only async-signal-safe work is allowed.

use crate::settings::{FsTypes, Immutability};

/// mount(2) flag values (identical on every Linux architecture).
pub mod flags {
    /// MS_RDONLY
    pub const RDONLY: u64 = 1;
    /// MS_NOSUID
    pub const NOSUID: u64 = 2;
    /// MS_NODEV
    pub const NODEV: u64 = 4;
    /// MS_NOEXEC
    pub const NOEXEC: u64 = 8;
    /// MS_REMOUNT
    pub const REMOUNT: u64 = 32;
    /// MS_BIND
    pub const BIND: u64 = 4096;
    /// MS_MOVE
    pub const MOVE: u64 = 8192;
    /// MS_REC
    pub const REC: u64 = 16384;
    /// MS_UNBINDABLE
    pub const UNBINDABLE: u64 = 1 << 17;
    /// MS_PRIVATE
    pub const PRIVATE: u64 = 1 << 18;
    /// MS_SLAVE
    pub const SLAVE: u64 = 1 << 19;
    /// MS_SHARED
    pub const SHARED: u64 = 1 << 20;
    /// The magic number old programs put in the top 16 bits; the kernel strips it.
    pub const MGC_VAL: u64 = 0xC0ED_0000;
    /// Mask for [`MGC_VAL`].
    pub const MGC_MSK: u64 = 0xFFFF_0000;
}

/// errno values used in decisions (identical on every Linux architecture).
pub mod errno {
    /// EPERM
    pub const EPERM: i32 = 1;
    /// EINVAL
    pub const EINVAL: i32 = 22;
    /// ENOSYS
    pub const ENOSYS: i32 = 38;
}

/// What a mount(2) call does, decided from its flags in the order the kernel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A new filesystem instance.
    NewFilesystem,
    /// A bind mount; `recursive` for MS_REC.
    Bind {
        /// MS_REC was given.
        recursive: bool,
    },
    /// MS_REMOUNT: new options for a mount (`bind`: its per-mount flags only).
    Remount {
        /// MS_BIND was given too: only the mount's own flags change.
        bind: bool,
        /// The mount becomes (or stays) read-only.
        read_only: bool,
    },
    /// MS_MOVE.
    Move,
    /// A change of propagation type (shared, private, slave, unbindable).
    Propagation,
}

/// Strips the legacy magic number from mount(2) flags, as the kernel does.
pub fn effective_flags(flags: u64) -> u64 {
    if flags & flags::MGC_MSK == flags::MGC_VAL {
        flags & !flags::MGC_MSK
    } else {
        flags
    }
}

/// Classifies mount(2) flags the way `path_mount` in the kernel does.
///
/// ```
/// use eci_policy::mount::{classify, flags, MountKind};
/// assert_eq!(classify(flags::REMOUNT | flags::BIND), MountKind::Remount { bind: true, read_only: false });
/// assert_eq!(classify(flags::BIND | flags::REC), MountKind::Bind { recursive: true });
/// assert_eq!(classify(0), MountKind::NewFilesystem);
/// ```
pub fn classify(raw_flags: u64) -> MountKind {
    let f = effective_flags(raw_flags);
    let read_only = f & flags::RDONLY != 0;
    if f & flags::REMOUNT != 0 {
        MountKind::Remount {
            bind: f & flags::BIND != 0,
            read_only,
        }
    } else if f & flags::BIND != 0 {
        MountKind::Bind {
            recursive: f & flags::REC != 0,
        }
    } else if f & (flags::SHARED | flags::PRIVATE | flags::SLAVE | flags::UNBINDABLE) != 0 {
        MountKind::Propagation
    } else if f & flags::MOVE != 0 {
        MountKind::Move
    } else {
        MountKind::NewFilesystem
    }
}

/// [`classify`], with what a remount of a filesystem also reads from its options: the kernel
/// takes `ro` and `rw` among them as the superblock's flags, the last one winning, so a
/// `MS_RDONLY` remount whose options end in `rw` makes the filesystem writable. (A bind
/// remount, and every other kind, ignores its options.)
///
/// ```
/// use eci_policy::mount::{classify_call, flags, MountKind};
/// let remount_ro = flags::REMOUNT | flags::RDONLY;
/// let writable = MountKind::Remount { bind: false, read_only: false };
/// assert_eq!(classify_call(remount_ro, b"mode=755,rw"), writable);
/// assert_eq!(classify_call(remount_ro, b"rw,ro"), MountKind::Remount { bind: false, read_only: true });
/// ```
pub fn classify_call(raw_flags: u64, data: &[u8]) -> MountKind {
    match classify(raw_flags) {
        MountKind::Remount {
            bind: false,
            read_only: true,
        } => MountKind::Remount {
            bind: false,
            read_only: last_access_option(data) != Some(false),
        },
        kind => kind,
    }
}

/// The last `ro` (`Some(true)`) or `rw` (`Some(false)`) among comma-separated mount options.
fn last_access_option(data: &[u8]) -> Option<bool> {
    data.split(|&byte| byte == b',')
        .filter_map(|option| match option {
            b"ro" => Some(true),
            b"rw" => Some(false),
            _ => None,
        })
        .next_back()
}

/// Which of mount(2)'s arguments other than the target the kernel looks up as paths. Whoever
/// performs a call for another process needs that process's working directory only when one
/// of them (or the target) is a relative path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathArguments {
    /// `source` names a file or directory.
    pub source: bool,
    /// `data` may name some (overlay's `lowerdir=`, for one).
    pub data: bool,
}

/// Filesystems whose `source` is only a name and whose options name no file: the ones a
/// container mounts most. Any other type counts as taking paths in both (procfs too: its
/// `pidns=` option names a file).
const PATHLESS_TYPES: [&[u8]; 8] = [
    b"tmpfs", b"ramfs", b"sysfs", b"devpts", b"mqueue", b"cgroup", b"cgroup2", b"fuse",
];

/// Which arguments of a mount(2) call of `kind` with filesystem type `fstype` the kernel looks
/// up as paths, as `path_mount` reads them: a bind's or a move's source is a path and its data
/// unused; a remount's or a propagation change's source is unused, and so is a bind remount's
/// data; a new filesystem's source and options may be paths for all but the types known to
/// take none: tmpfs, ramfs, sysfs, devpts, mqueue, cgroup, cgroup2 and FUSE (also with a
/// subtype, `fuse.NAME`; `fuseblk` takes a device path, procfs's `pidns=` option names a file).
///
/// ```
/// use eci_policy::mount::*;
/// let tmpfs = path_arguments(MountKind::NewFilesystem, b"tmpfs");
/// assert_eq!(tmpfs, PathArguments { source: false, data: false });
/// let bind = path_arguments(classify(flags::BIND), b"");
/// assert_eq!(bind, PathArguments { source: true, data: false });
/// assert!(path_arguments(MountKind::NewFilesystem, b"overlay").data);
/// ```
pub fn path_arguments(kind: MountKind, fstype: &[u8]) -> PathArguments {
    let (source, data) = match kind {
        MountKind::Bind { .. } | MountKind::Move => (true, false),
        MountKind::Propagation | MountKind::Remount { bind: true, .. } => (false, false),
        // The type argument of a remount is ignored: the mount's own may take paths.
        MountKind::Remount { bind: false, .. } => (false, true),
        MountKind::NewFilesystem => {
            let pathless = PATHLESS_TYPES.contains(&fstype) || fstype.starts_with(b"fuse.");
            (!pathless, !pathless)
        }
    };
    PathArguments { source, data }
}

/// The descriptor a path names through procfs, `/proc/self/fd/N` or `/proc/thread-self/fd/N`,
/// as container runtimes (runc, crun) name their mount targets and sources since they stopped
/// trusting paths. Any other spelling (a trailing slash, a component after the number, a
/// sign, leading zeros beyond one digit) is an ordinary path and yields None.
///
/// ```
/// use eci_policy::mount::descriptor_path;
/// assert_eq!(descriptor_path(b"/proc/self/fd/7"), Some(7));
/// assert_eq!(descriptor_path(b"/proc/thread-self/fd/12"), Some(12));
/// assert_eq!(descriptor_path(b"/proc/self/fd/7/"), None);
/// assert_eq!(descriptor_path(b"/proc/1/fd/7"), None);
/// ```
pub fn descriptor_path(path: &[u8]) -> Option<i32> {
    let number = path
        .strip_prefix(b"/proc/self/fd/")
        .or_else(|| path.strip_prefix(b"/proc/thread-self/fd/"))?;
    let canonical = !number.is_empty()
        && number.len() <= 10
        && number.iter().all(u8::is_ascii_digit)
        && (number.len() == 1 || number[0] != b'0');
    if !canonical {
        return None;
    }
    std::str::from_utf8(number).ok()?.parse().ok()
}

/// Facts about the mount a target path is the root of, gathered in the caller's own namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Target {
    /// Set when the path is the root of a mount the runtime set up (an initial mount).
    pub initial: Option<InitialMount>,
}

/// An initial mount: one the runtime made before the container started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialMount {
    /// The runtime made it read-only.
    pub read_only: bool,
}

/// Facts about the calling process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// CAP_SYS_ADMIN is in the caller's effective set.
    pub cap_sys_admin: bool,
    /// The caller is in the container's own user namespace (not a nested one).
    pub in_container_userns: bool,
}

/// The rule behind a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The caller lacks CAP_SYS_ADMIN, so the kernel would refuse too.
    NotPrivileged,
    /// The caller is in a nested user namespace, whose mounts are not vetted yet.
    NestedUserNamespace,
    /// Making an initial read-only mount writable.
    InitialReadOnly,
    /// Unmounting an initial mount, which would reveal what it covers.
    InitialUnmount,
    /// Moving an initial mount, which would reveal what it covers.
    InitialMove,
    /// A filesystem type the policy does not allow.
    FilesystemType,
    /// Options that label the filesystem for a Linux security module (SELinux, Smack).
    SecurityLabel,
}

impl Rule {
    /// A sentence naming the rule, for logs and errors.
    pub fn describe(&self) -> &'static str {
        match self {
            Rule::NotPrivileged => "the caller lacks CAP_SYS_ADMIN",
            Rule::NestedUserNamespace => "mounts from nested user namespaces are refused",
            Rule::InitialReadOnly => "initial read-only mounts stay read-only",
            Rule::InitialUnmount => "initial mounts cannot be unmounted",
            Rule::InitialMove => "initial mounts cannot be moved",
            Rule::FilesystemType => "the filesystem type is not allowed",
            Rule::SecurityLabel => "security label options are refused",
        }
    }

    /// A stable number for the rule, for wire formats.
    pub fn code(&self) -> u32 {
        *self as u32 + 1
    }

    /// The rule with [`Rule::code`] `code`.
    pub fn from_code(code: u32) -> Option<Rule> {
        const ALL: [Rule; 7] = [
            Rule::NotPrivileged,
            Rule::NestedUserNamespace,
            Rule::InitialReadOnly,
            Rule::InitialUnmount,
            Rule::InitialMove,
            Rule::FilesystemType,
            Rule::SecurityLabel,
        ];
        ALL.into_iter().find(|rule| rule.code() == code)
    }
}

/// What to do with a mount syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Perform it in the caller's namespaces from the copied arguments.
    Perform,
    /// Fail it with `errno`, because of `rule`.
    Deny {
        /// The error the caller sees.
        errno: i32,
        /// Why.
        rule: Rule,
    },
}

const fn deny(rule: Rule) -> Verdict {
    Verdict::Deny {
        errno: errno::EPERM,
        rule,
    }
}

/// The settings a mount decision reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct MountPolicy {
    /// Protection of initial mounts.
    pub immutability: Immutability,
    /// Filesystem types the container may mount.
    pub types: FsTypes,
}

fn check_caller(caller: &Caller) -> Option<Verdict> {
    if !caller.cap_sys_admin {
        return Some(deny(Rule::NotPrivileged));
    }
    if !caller.in_container_userns {
        return Some(deny(Rule::NestedUserNamespace));
    }
    None
}

/// Decides a mount(2) call.
///
/// ```
/// use eci_policy::mount::*;
/// let policy = MountPolicy::default();
/// let root = Caller { cap_sys_admin: true, in_container_userns: true };
/// let ro = Target { initial: Some(InitialMount { read_only: true }) };
/// let remount_rw = classify(flags::REMOUNT | flags::BIND);
/// assert!(matches!(decide_mount(&policy, remount_rw, b"", &ro, &root), Verdict::Deny { rule: Rule::InitialReadOnly, .. }));
/// assert_eq!(decide_mount(&policy, MountKind::NewFilesystem, b"tmpfs", &Target::default(), &root), Verdict::Perform);
/// ```
pub fn decide_mount(
    policy: &MountPolicy,
    kind: MountKind,
    fstype: &[u8],
    target: &Target,
    caller: &Caller,
) -> Verdict {
    if let Some(verdict) = check_caller(caller) {
        return verdict;
    }
    let imm = policy.immutability;
    match kind {
        MountKind::Remount {
            read_only: false, ..
        } if target.initial.is_some_and(|m| m.read_only) && !imm.allow_remount => {
            deny(Rule::InitialReadOnly)
        }
        MountKind::Move if target.initial.is_some() && !imm.allow_unmount => {
            deny(Rule::InitialMove)
        }
        MountKind::NewFilesystem if !policy.types.allows(fstype) => deny(Rule::FilesystemType),
        _ => Verdict::Perform,
    }
}

/// Mount options a Linux security module takes for itself before the filesystem sees the rest:
/// SELinux's labels and Smack's. The kernel checks them against the mounter's own label, and the
/// mounter of a vetted call is the runtime's helper, not the confined caller.
const SECURITY_LABEL_OPTIONS: [&[u8]; 11] = [
    b"context",
    b"fscontext",
    b"defcontext",
    b"rootcontext",
    b"seclabel",
    b"smackfsdef",
    b"smackfsdefault",
    b"smackfsfloor",
    b"smackfshat",
    b"smackfsroot",
    b"smackfstransmute",
];

/// Whether mount(2) `data` holds an option that labels the filesystem for a security module.
/// Every comma starts an option here, even one inside quotes (SELinux lets a quoted label hold
/// commas): that finds every option the modules find, and a few more.
///
/// ```
/// use eci_policy::mount::names_security_label;
/// assert!(names_security_label(b"size=1m,context=\"system_u:object_r:tmp_t:s0\""));
/// assert!(names_security_label(b"seclabel"));
/// assert!(!names_security_label(b"size=1m,mode=755"));
/// ```
pub fn names_security_label(data: &[u8]) -> bool {
    data.split(|&byte| byte == b',').any(|option| {
        let key = option.split(|&byte| byte == b'=').next().unwrap_or(option);
        SECURITY_LABEL_OPTIONS.contains(&key)
    })
}

/// Decides the options (`data`) of a mount(2) call of `kind`, once [`decide_mount`] allowed
/// it. Only a new filesystem and a remount of one read them. A security module's label options
/// are refused: the helper that performs the call would be checked in the caller's stead, so a
/// confined caller could label a filesystem as it is not allowed to.
///
/// ```
/// use eci_policy::mount::*;
/// let refused = decide_options(MountKind::NewFilesystem, b"rootcontext=system_u:object_r:etc_t:s0");
/// assert!(matches!(refused, Verdict::Deny { rule: Rule::SecurityLabel, .. }));
/// assert_eq!(decide_options(MountKind::NewFilesystem, b"size=1m"), Verdict::Perform);
/// // A bind ignores its data.
/// assert_eq!(decide_options(MountKind::Bind { recursive: false }, b"context=x"), Verdict::Perform);
/// ```
pub fn decide_options(kind: MountKind, data: &[u8]) -> Verdict {
    let reads_data = matches!(
        kind,
        MountKind::NewFilesystem | MountKind::Remount { bind: false, .. }
    );
    if reads_data && names_security_label(data) {
        return deny(Rule::SecurityLabel);
    }
    Verdict::Perform
}

/// Decides an umount2(2) call on `target`.
///
/// ```
/// use eci_policy::mount::*;
/// let root = Caller { cap_sys_admin: true, in_container_userns: true };
/// let initial = Target { initial: Some(InitialMount { read_only: false }) };
/// assert!(matches!(decide_umount(&MountPolicy::default(), &initial, &root), Verdict::Deny { rule: Rule::InitialUnmount, .. }));
/// ```
pub fn decide_umount(policy: &MountPolicy, target: &Target, caller: &Caller) -> Verdict {
    if let Some(verdict) = check_caller(caller) {
        return verdict;
    }
    if target.initial.is_some() && !policy.immutability.allow_unmount {
        return deny(Rule::InitialUnmount);
    }
    Verdict::Perform
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_remount_counts_read_only_only_if_its_options_leave_it_so(
            flags in any::<u64>(),
            options in proptest::collection::vec(prop_oneof![
                Just("ro"), Just("rw"), Just("size=1m"), Just("mode=755"), Just(""), Just("rwx"),
            ], 0..6),
        ) {
            let data = options.join(",");
            let kind = classify_call(flags, data.as_bytes());
            let last = options.iter().rev().find(|o| **o == "ro" || **o == "rw");
            match classify(flags) {
                MountKind::Remount { bind: false, read_only: true } => prop_assert_eq!(
                    kind,
                    MountKind::Remount { bind: false, read_only: last != Some(&"rw") }
                ),
                other => prop_assert_eq!(kind, other),
            }
        }
    }

    fn caller() -> impl Strategy<Value = Caller> {
        (any::<bool>(), any::<bool>()).prop_map(|(cap_sys_admin, in_container_userns)| Caller {
            cap_sys_admin,
            in_container_userns,
        })
    }

    fn target() -> impl Strategy<Value = Target> {
        prop_oneof![
            Just(Target { initial: None }),
            any::<bool>().prop_map(|read_only| Target {
                initial: Some(InitialMount { read_only })
            }),
        ]
    }

    fn policy() -> impl Strategy<Value = MountPolicy> {
        (any::<bool>(), any::<bool>()).prop_map(|(allow_remount, allow_unmount)| MountPolicy {
            immutability: Immutability {
                allow_remount,
                allow_unmount,
            },
            types: FsTypes::default(),
        })
    }

    proptest! {
        #[test]
        fn a_descriptor_path_is_read_back_from_its_one_spelling(
            fd in 0..=i32::MAX, thread in any::<bool>()
        ) {
            let dir = if thread { "thread-self" } else { "self" };
            let path = format!("/proc/{dir}/fd/{fd}");
            prop_assert_eq!(descriptor_path(path.as_bytes()), Some(fd));
            prop_assert_eq!(descriptor_path(format!("{path}/").as_bytes()), None);
            prop_assert_eq!(descriptor_path(format!("/proc/{dir}/fd/0{fd}").as_bytes()), None);
        }

        #[test]
        fn any_other_path_names_no_descriptor(path in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Some(fd) = descriptor_path(&path) {
                let canonical = [format!("/proc/self/fd/{fd}"), format!("/proc/thread-self/fd/{fd}")];
                prop_assert!(canonical.iter().any(|c| c.as_bytes() == path.as_slice()));
            }
        }

        #[test]
        fn an_initial_read_only_mount_never_becomes_writable_unless_allowed(
            flags in any::<u64>(), p in policy(), c in caller(), fstype in proptest::collection::vec(any::<u8>(), 0..8)
        ) {
            let t = Target { initial: Some(InitialMount { read_only: true }) };
            let kind = classify(flags);
            let verdict = decide_mount(&p, kind, &fstype, &t, &c);
            if matches!(kind, MountKind::Remount { read_only: false, .. }) && !p.immutability.allow_remount {
                let denied = matches!(verdict, Verdict::Deny { .. });
                prop_assert!(denied);
            }
        }

        #[test]
        fn initial_mounts_are_never_unmounted_or_moved_unless_allowed(p in policy(), c in caller(), t in target(), flags in any::<u64>()) {
            let protected = t.initial.is_some() && !p.immutability.allow_unmount;
            if protected {
                let umount_denied = matches!(decide_umount(&p, &t, &c), Verdict::Deny { .. });
                prop_assert!(umount_denied);
                if classify(flags) == MountKind::Move {
                    let move_denied = matches!(decide_mount(&p, MountKind::Move, b"", &t, &c), Verdict::Deny { .. });
                    prop_assert!(move_denied);
                }
            }
        }

        #[test]
        fn unprivileged_callers_never_mount(p in policy(), t in target(), flags in any::<u64>()) {
            let c = Caller { cap_sys_admin: false, in_container_userns: true };
            prop_assert_eq!(decide_mount(&p, classify(flags), b"tmpfs", &t, &c), Verdict::Deny { errno: errno::EPERM, rule: Rule::NotPrivileged });
            prop_assert_eq!(decide_umount(&p, &t, &c), Verdict::Deny { errno: errno::EPERM, rule: Rule::NotPrivileged });
        }

        #[test]
        fn only_known_filesystems_are_read_as_taking_no_paths(
            flags in any::<u64>(), fstype in proptest::collection::vec(any::<u8>(), 0..12)
        ) {
            let kind = classify(flags);
            let args = path_arguments(kind, &fstype);
            let known = PATHLESS_TYPES.contains(&fstype.as_slice()) || fstype.starts_with(b"fuse.");
            match kind {
                MountKind::Bind { .. } | MountKind::Move => prop_assert!(args.source),
                MountKind::NewFilesystem => {
                    prop_assert_eq!(args, PathArguments { source: !known, data: !known });
                }
                MountKind::Remount { bind, .. } => {
                    prop_assert_eq!(args, PathArguments { source: false, data: !bind });
                }
                MountKind::Propagation => prop_assert!(!args.source && !args.data),
            }
        }

        #[test]
        fn a_label_option_is_found_wherever_it_stands(
            before in proptest::collection::vec("[a-z0-9=\"]{0,8}", 0..4),
            after in proptest::collection::vec("[a-z0-9=\"]{0,8}", 0..4),
            label in proptest::sample::select(SECURITY_LABEL_OPTIONS.to_vec()),
            value in proptest::option::of("[a-z0-9:_\",]{0,16}"),
        ) {
            let mut option = label.to_vec();
            if let Some(value) = value {
                option.push(b'=');
                option.extend_from_slice(value.as_bytes());
            }
            let mut options: Vec<Vec<u8>> = before.into_iter().map(String::into_bytes).collect();
            options.push(option);
            options.extend(after.into_iter().map(String::into_bytes));
            let data = options.join(&b',');
            prop_assert!(names_security_label(&data));
            let refused = matches!(decide_options(MountKind::NewFilesystem, &data), Verdict::Deny { rule: Rule::SecurityLabel, .. });
            prop_assert!(refused);
        }

        #[test]
        fn options_that_name_no_label_option_pass(data in "[a-z0-9=,\"]{0,40}") {
            // Only data holding a label option's name can be refused.
            let names_one = SECURITY_LABEL_OPTIONS
                .iter()
                .any(|name| data.as_bytes().windows(name.len()).any(|w| w == *name));
            if !names_one {
                prop_assert!(!names_security_label(data.as_bytes()));
                prop_assert_eq!(decide_options(MountKind::NewFilesystem, data.as_bytes()), Verdict::Perform);
            }
            for kind in [MountKind::Bind { recursive: true }, MountKind::Move, MountKind::Propagation, MountKind::Remount { bind: true, read_only: false }] {
                prop_assert_eq!(decide_options(kind, data.as_bytes()), Verdict::Perform);
            }
        }

        #[test]
        fn decisions_are_deterministic(p in policy(), c in caller(), t in target(), flags in any::<u64>()) {
            let kind = classify(flags);
            prop_assert_eq!(decide_mount(&p, kind, b"proc", &t, &c), decide_mount(&p, kind, b"proc", &t, &c));
        }
    }

    #[test]
    fn magic_number_is_stripped() {
        assert_eq!(
            classify(flags::MGC_VAL | flags::BIND),
            MountKind::Bind { recursive: false }
        );
        assert_eq!(classify(flags::MGC_VAL), MountKind::NewFilesystem);
    }

    #[test]
    fn rule_codes_round_trip() {
        for rule in [
            Rule::NotPrivileged,
            Rule::InitialUnmount,
            Rule::FilesystemType,
            Rule::SecurityLabel,
        ] {
            assert_eq!(Rule::from_code(rule.code()), Some(rule));
        }
        assert_eq!(Rule::from_code(0), None);
    }

    #[test]
    fn block_device_and_overlay_mounts_take_paths() {
        for fstype in [
            &b"fuseblk"[..],
            b"overlay",
            b"ext4",
            b"",
            b"tmpfs2",
            b"fus",
            b"proc",
        ] {
            let args = path_arguments(MountKind::NewFilesystem, fstype);
            assert_eq!(
                args,
                PathArguments {
                    source: true,
                    data: true
                },
                "{fstype:?}"
            );
        }
        let sshfs = path_arguments(MountKind::NewFilesystem, b"fuse.sshfs");
        assert_eq!(
            sshfs,
            PathArguments {
                source: false,
                data: false
            }
        );
    }

    #[test]
    fn unknown_filesystems_are_refused() {
        let root = Caller {
            cap_sys_admin: true,
            in_container_userns: true,
        };
        let verdict = decide_mount(
            &MountPolicy::default(),
            MountKind::NewFilesystem,
            b"ext4",
            &Target::default(),
            &root,
        );
        assert_eq!(
            verdict,
            Verdict::Deny {
                errno: errno::EPERM,
                rule: Rule::FilesystemType
            }
        );
    }
}
