//! The BPF programs every container process runs under.
//!
//! - The **deny filter** answers EPERM for operations on global kernel state (modules, kexec,
//!   raw I/O ports, swap, accounting, the clock, file handles, BPF, the kernel log), and ENOSYS
//!   for the new mount API, so that mount(8) falls back to mount(2), which is vetted, for
//!   the kernel keyrings, so that runc and crun in the container go on without one
//!   ([`keyring_syscalls`]), and for io_uring, whose operations no seccomp filter sees
//!   ([`io_uring_syscalls`]).
//! - The **family filter** answers EAFNOSUPPORT to a socket of a family that reaches past the
//!   container's network namespace ([`refused_families`]).
//! - The **listener filter** answers EBUSY to a seccomp listener of the container's own, which
//!   would be asked before eci's ([`listener_filter`]).
//! - The **notify filter** sends `mount`, `umount2` and `sysinfo` to the supervisor
//!   (SECCOMP_RET_USER_NOTIF), and the calls that may move a process into another user
//!   namespace, which the supervisor only observes ([`observed_syscalls`]). Every other syscall
//!   is decided in the kernel.
//!
//! Both start with a guard of our own: a syscall of a foreign architecture (i386 through
//! `int 0x80` on x86-64) or an x32 syscall number answers ENOSYS, so no numbering the rules do
//! not cover reaches the kernel. seccompiler builds the rest; it has no notify action, so the
//! notify filter is built with a sentinel action that is rewritten afterwards.

use std::collections::BTreeMap;

use seccompiler::{SeccompAction, SeccompFilter, SeccompRule, TargetArch};

/// A compiled BPF program.
pub type Program = Vec<libc::sock_filter>;

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// seccompiler refused the rules.
    #[error("building the {which} filter: {source}")]
    Build {
        /// Which filter.
        which: &'static str,
        /// seccompiler's error.
        source: seccompiler::BackendError,
    },
    /// The architecture is not one eci builds filters for.
    #[error("no seccomp filters for architecture {0}")]
    Arch(&'static str),
}

/// Syscalls that change global kernel state: EPERM.
fn denied_syscalls() -> Vec<i64> {
    let mut list = vec![
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_open_by_handle_at,
        libc::SYS_bpf,
        libc::SYS_syslog,
        libc::SYS_quotactl,
        SYS_QUOTACTL_FD,
        libc::SYS_lookup_dcookie,
        libc::SYS_perf_event_open,
        libc::SYS_vhangup,
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
        libc::SYS_nfsservctl,
        libc::SYS__sysctl,
    ]);
    list
}

/// quotactl_fd(2) (Linux 5.14): quotactl on a filesystem named by a descriptor, refused as
/// quotactl is. The same number on every architecture (the unified syscall table).
const SYS_QUOTACTL_FD: i64 = 443;

/// open_tree_attr(2) (Linux 6.15): open_tree with mount_setattr's attributes in one call. The
/// number is the same on every architecture (the unified syscall table).
const SYS_OPEN_TREE_ATTR: i64 = 467;

/// The kernel keyrings: ENOSYS, as on a kernel built without them. They are refused because
/// keyrings are kernel state not every part of which a user namespace scopes; ENOSYS rather
/// than EPERM because runc and crun take ENOSYS to mean "no keyrings here" and go on without a
/// session keyring, but stop on EPERM: Docker in the container could run no container.
pub fn keyring_syscalls() -> [i64; 3] {
    [libc::SYS_add_key, libc::SYS_request_key, libc::SYS_keyctl]
}

/// io_uring: ENOSYS, as on a kernel built without it or with `kernel.io_uring_disabled` set.
/// The operations a ring performs (opening files, making and connecting sockets, setting
/// extended attributes) are not syscalls, so no seccomp filter sees them: a ring would go
/// round every rule that looks at an argument, the family filter's and a spec profile's. It is
/// also much of the kernel's recent attack surface. Programs that use it fall back without it
/// (liburing's users check for ENOSYS).
pub fn io_uring_syscalls() -> [i64; 3] {
    [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ]
}

/// Socket families refused, as a kernel without them would (EAFNOSUPPORT): AF_VSOCK, whose
/// sockets no network namespace scopes. In a virtual machine (Docker Desktop's, a CI runner's
/// Firecracker guest) they reach the hypervisor's host and every vsock service of the guest,
/// across the container's network namespace.
pub fn refused_families() -> [u64; 1] {
    [libc::AF_VSOCK as u64]
}

/// The rules of the family filter: socket(2) and socketpair(2) naming a [`refused_families`]
/// family. The family is an `int`: compared on its low 32 bits, as the kernel reads it, so
/// that high bits set in the register do not slip past.
fn family_rules() -> Result<Vec<(i64, Vec<SeccompRule>)>, seccompiler::BackendError> {
    use seccompiler::{SeccompCmpArgLen::Dword, SeccompCmpOp, SeccompCondition};
    let rules = || -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
        refused_families()
            .into_iter()
            .map(|family| {
                SeccompRule::new(vec![SeccompCondition::new(
                    0,
                    Dword,
                    SeccompCmpOp::Eq,
                    family,
                )?])
            })
            .collect()
    };
    Ok(vec![
        (libc::SYS_socket, rules()?),
        (libc::SYS_socketpair, rules()?),
    ])
}

/// The new mount API: ENOSYS, so that tools fall back to the vetted mount(2).
pub fn new_mount_api_syscalls() -> [i64; 8] {
    [
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_mount_setattr,
        SYS_OPEN_TREE_ATTR,
    ]
}

/// seccomp(2) installing a filter with a listener of its own: EBUSY. A notify filter installed
/// after eci's would be asked first and could answer CONTINUE, so the kernel refuses a second
/// listener in a chain (EBUSY) while eci's is open; but eci's closes when the process it was
/// made for ends (an exec'd process whose children live on) or when vetting gives up, and
/// then the kernel would allow one. This rule refuses it always, with the kernel's own errno.
fn listener_rules() -> Result<Vec<(i64, Vec<SeccompRule>)>, seccompiler::BackendError> {
    use seccompiler::SeccompCmpArgLen::{Dword, Qword};
    use seccompiler::{SeccompCmpOp, SeccompCondition};
    const SET_MODE_FILTER: u64 = 1;
    let new_listener = u64::from(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32);
    // A call without a program is left to the kernel, which answers EFAULT: libseccomp probes
    // for the flag that way and would otherwise take the kernel to lack it.
    let rule = SeccompRule::new(vec![
        SeccompCondition::new(0, Dword, SeccompCmpOp::Eq, SET_MODE_FILTER)?,
        SeccompCondition::new(1, Dword, SeccompCmpOp::MaskedEq(new_listener), new_listener)?,
        SeccompCondition::new(2, Qword, SeccompCmpOp::Ne, 0)?,
    ])?;
    Ok(vec![(libc::SYS_seccomp, vec![rule])])
}

/// The syscalls sent to user space: the mount calls eci vets, and sysinfo, which it answers
/// from the container's cgroup (or lets through unchanged when that is switched off).
pub fn notified_syscalls() -> Vec<i64> {
    vec![libc::SYS_mount, libc::SYS_umount2, libc::SYS_sysinfo]
}

/// The calls that move a process into another user namespace: `unshare` with CLONE_NEWUSER and
/// `setns` that may join one (`nstype` 0 or naming CLONE_NEWUSER). They are also sent to user
/// space, only to be seen: the mount helper remembers each caller's user namespace (reading it
/// costs a procfs lookup per mount call) and forgets it when one of these comes, then lets the
/// call run. Both need a single-threaded caller, which waits while the helper forgets, so no
/// mount call can be decided with the namespace it is leaving.
pub fn observed_syscalls() -> [i64; 2] {
    [libc::SYS_unshare, libc::SYS_setns]
}

/// The rules under which [`observed_syscalls`] are sent to user space.
fn observed_rules() -> Result<Vec<(i64, Vec<SeccompRule>)>, seccompiler::BackendError> {
    use seccompiler::{SeccompCmpArgLen::Dword, SeccompCmpOp, SeccompCondition};
    let newuser = libc::CLONE_NEWUSER as u64;
    let names_newuser =
        |arg| SeccompCondition::new(arg, Dword, SeccompCmpOp::MaskedEq(newuser), newuser);
    let unshare = vec![SeccompRule::new(vec![names_newuser(0)?])?];
    let setns = vec![
        SeccompRule::new(vec![SeccompCondition::new(1, Dword, SeccompCmpOp::Eq, 0)?])?,
        SeccompRule::new(vec![names_newuser(1)?])?,
    ];
    Ok(vec![(libc::SYS_unshare, unshare), (libc::SYS_setns, setns)])
}

/// True for a call the helper only observes (see [`observed_syscalls`]): it is let run.
pub fn is_observed(nr: i32) -> bool {
    observed_syscalls().contains(&i64::from(nr))
}

const SENTINEL: u32 = 0x0ec1;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;

fn native_arch() -> Result<(TargetArch, u32), FilterError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok((TargetArch::x86_64, 0xc000_003e)),
        "aarch64" => Ok((TargetArch::aarch64, 0xc000_00b7)),
        "riscv64" => Ok((TargetArch::riscv64, 0xc000_00f3)),
        other => Err(FilterError::Arch(other)),
    }
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const fn errno_action(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)
}

/// The guard every program starts with: foreign architectures and x32 numbers answer ENOSYS.
fn guard(audit_arch: u32) -> Program {
    let enosys = errno_action(libc::ENOSYS);
    let mut prog = vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4), // seccomp_data.arch
        jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            audit_arch,
            1,
            0,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, enosys),
    ];
    if cfg!(target_arch = "x86_64") {
        const X32_SYSCALL_BIT: u32 = 0x4000_0000;
        prog.extend([
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0), // seccomp_data.nr
            jump(
                libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
                X32_SYSCALL_BIT,
                0,
                1,
            ),
            stmt(libc::BPF_RET | libc::BPF_K, enosys),
        ]);
    }
    prog
}

fn compile(
    which: &'static str,
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    action: SeccompAction,
) -> Result<Program, FilterError> {
    compile_between(which, rules, SeccompAction::Allow, action, None)
}

/// A guarded program that answers `matched` where `rules` match and `mismatched` elsewhere,
/// and ENOSYS to syscall numbers above `enosys_above` if given.
pub(crate) fn compile_between(
    which: &'static str,
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatched: SeccompAction,
    matched: SeccompAction,
    enosys_above: Option<u32>,
) -> Result<Program, FilterError> {
    let (arch, audit_arch) = native_arch()?;
    let filter = SeccompFilter::new(rules, mismatched, matched, arch)
        .map_err(|source| FilterError::Build { which, source })?;
    let body: seccompiler::BpfProgram = filter
        .try_into()
        .map_err(|source| FilterError::Build { which, source })?;
    let mut prog = guard(audit_arch);
    if let Some(last) = enosys_above {
        prog.extend([
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0), // seccomp_data.nr
            jump(libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K, last, 0, 1),
            stmt(libc::BPF_RET | libc::BPF_K, errno_action(libc::ENOSYS)),
        ]);
    }
    prog.extend(body.into_iter().map(|i| libc::sock_filter {
        code: i.code,
        jt: i.jt,
        jf: i.jf,
        k: i.k,
    }));
    Ok(prog)
}

/// The deny filter: EPERM for global kernel operations, ENOSYS for the new mount API, the
/// keyrings and io_uring.
///
/// It is two seccompiler filters joined (seccompiler gives one action per filter), each
/// starting with the guard; the kernel runs them as one list where the strictest answer wins.
pub fn deny_filter() -> Result<(Program, Program), FilterError> {
    let eperm = compile(
        "deny",
        denied_syscalls()
            .into_iter()
            .map(|nr| (nr, vec![]))
            .collect(),
        SeccompAction::Errno(libc::EPERM as u32),
    )?;
    let enosys = compile(
        "new mount API, keyring and io_uring",
        new_mount_api_syscalls()
            .into_iter()
            .chain(keyring_syscalls())
            .chain(io_uring_syscalls())
            .map(|nr| (nr, vec![]))
            .collect(),
        SeccompAction::Errno(libc::ENOSYS as u32),
    )?;
    Ok((eperm, enosys))
}

/// The listener filter: EBUSY for seccomp(2) installing a filter with a listener of the
/// container's own, which would be asked before eci's and could answer CONTINUE. The kernel
/// refuses a second listener only while eci's is open; this refuses it always, with the same
/// errno. Plain filters (an inner runtime's profile) still install.
pub fn listener_filter() -> Result<Program, FilterError> {
    let which = "listener";
    let rules = listener_rules().map_err(|source| FilterError::Build { which, source })?;
    compile(
        which,
        rules.into_iter().collect(),
        SeccompAction::Errno(libc::EBUSY as u32),
    )
}

/// The family filter: EAFNOSUPPORT for a socket of a [`refused_families`] family.
pub fn family_filter() -> Result<Program, FilterError> {
    let which = "socket family";
    let rules = family_rules().map_err(|source| FilterError::Build { which, source })?;
    compile(
        which,
        rules.into_iter().collect(),
        SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
    )
}

/// The notify filter: `mount`, `umount2` and `sysinfo` go to user space, and so do the calls
/// that change a process's user namespace ([`observed_syscalls`]).
pub fn notify_filter() -> Result<Program, FilterError> {
    let which = "notify";
    let observed = observed_rules().map_err(|source| FilterError::Build { which, source })?;
    let mut prog = compile(
        which,
        notified_syscalls()
            .into_iter()
            .map(|nr| (nr, vec![]))
            .chain(observed)
            .collect(),
        SeccompAction::Trace(SENTINEL),
    )?;
    let sentinel = SECCOMP_RET_TRACE | SENTINEL;
    for insn in prog
        .iter_mut()
        .filter(|i| i.code == BPF_RET_K && i.k == sentinel)
    {
        insn.k = libc::SECCOMP_RET_USER_NOTIF;
    }
    Ok(prog)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs a classic BPF program over a seccomp_data, as the kernel would.
    pub(crate) fn run(prog: &[libc::sock_filter], arch: u32, nr: i32) -> u32 {
        run_with(prog, arch, nr, [0; 6])
    }

    /// [`run`] with the call's arguments.
    pub(crate) fn run_with(prog: &[libc::sock_filter], arch: u32, nr: i32, args: [u64; 6]) -> u32 {
        let mut data = [0u32; 16];
        data[0] = nr as u32;
        data[1] = arch;
        for (i, arg) in args.iter().enumerate() {
            data[4 + 2 * i] = *arg as u32;
            data[5 + 2 * i] = (*arg >> 32) as u32;
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let insn = prog[pc];
            let class = u32::from(insn.code) & 0x07;
            match class {
                0x00 => acc = data[insn.k as usize / 4],
                0x05 => {
                    let op = u32::from(insn.code) & 0xf0;
                    let taken = match op {
                        0x00 => {
                            pc += insn.k as usize + 1;
                            continue;
                        }
                        0x10 => acc == insn.k,
                        0x20 => acc > insn.k,
                        0x30 => acc >= insn.k,
                        0x40 => acc & insn.k != 0,
                        _ => panic!("unknown jump {op:#x}"),
                    };
                    pc += 1 + usize::from(if taken { insn.jt } else { insn.jf });
                    continue;
                }
                0x06 => return insn.k,
                0x04 => {
                    let op = u32::from(insn.code) & 0xf0;
                    acc = match op {
                        0x50 => acc & insn.k,
                        _ => panic!("unknown alu {op:#x}"),
                    };
                }
                _ => panic!("unknown class {class:#x}"),
            }
            pc += 1;
        }
    }

    const NATIVE: u32 = 0xc000_003e;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn mount_is_notified_and_nothing_else() {
        let prog = notify_filter().unwrap();
        assert_eq!(
            run(&prog, NATIVE, libc::SYS_mount as i32),
            libc::SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(
            run(&prog, NATIVE, libc::SYS_umount2 as i32),
            libc::SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(
            run(&prog, NATIVE, libc::SYS_sysinfo as i32),
            libc::SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(
            run(&prog, NATIVE, libc::SYS_getppid as i32),
            libc::SECCOMP_RET_ALLOW
        );
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn only_calls_that_may_change_the_user_namespace_are_observed() {
        let prog = notify_filter().unwrap();
        let notify = libc::SECCOMP_RET_USER_NOTIF;
        let allow = libc::SECCOMP_RET_ALLOW;
        let newuser = libc::CLONE_NEWUSER as u64;
        let newns = libc::CLONE_NEWNS as u64;
        let unshare = |flags| {
            run_with(
                &prog,
                NATIVE,
                libc::SYS_unshare as i32,
                [flags, 0, 0, 0, 0, 0],
            )
        };
        let setns = |nstype| {
            run_with(
                &prog,
                NATIVE,
                libc::SYS_setns as i32,
                [3, nstype, 0, 0, 0, 0],
            )
        };
        assert_eq!(unshare(newuser), notify);
        assert_eq!(unshare(newuser | newns), notify);
        assert_eq!(unshare(newns), allow);
        assert_eq!(unshare(0), allow);
        assert_eq!(setns(0), notify);
        assert_eq!(setns(newuser), notify);
        assert_eq!(setns(newuser | newns), notify);
        assert_eq!(setns(libc::CLONE_NEWNET as u64), allow);
        assert_eq!(setns(newns), allow);
        assert!(is_observed(libc::SYS_setns as i32));
        assert!(!is_observed(libc::SYS_mount as i32));
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vsock_sockets_are_refused_whatever_the_high_bits_say() {
        let prog = family_filter().unwrap();
        let refused = errno_action(libc::EAFNOSUPPORT);
        let vsock = libc::AF_VSOCK as u64;
        let call =
            |nr: i64, family: u64| run_with(&prog, NATIVE, nr as i32, [family, 1, 0, 0, 0, 0]);
        for nr in [libc::SYS_socket, libc::SYS_socketpair] {
            assert_eq!(call(nr, vsock), refused);
            assert_eq!(
                call(nr, vsock | 1 << 32),
                refused,
                "the kernel reads an int"
            );
            for family in [
                libc::AF_UNIX,
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_NETLINK,
            ] {
                assert_eq!(call(nr, family as u64), libc::SECCOMP_RET_ALLOW);
            }
        }
        assert_eq!(call(libc::SYS_bind, vsock), libc::SECCOMP_RET_ALLOW);
        // i386's socketcall and x32 numbers meet the guard.
        assert_eq!(run(&prog, 0x4000_0003, 102), errno_action(libc::ENOSYS));
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn foreign_and_x32_numbers_answer_enosys() {
        let enosys = errno_action(libc::ENOSYS);
        let (deny, _) = deny_filter().unwrap();
        for prog in [notify_filter().unwrap(), deny] {
            // i386 mount through int 0x80.
            assert_eq!(run(&prog, 0x4000_0003, 21), enosys);
            assert_eq!(
                run(&prog, NATIVE, 0x4000_0000 | libc::SYS_mount as i32),
                enosys
            );
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn global_operations_answer_eperm_and_the_new_mount_api_enosys() {
        let (eperm, enosys) = deny_filter().unwrap();
        for nr in [
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_kexec_load,
            libc::SYS_iopl,
            libc::SYS_quotactl,
            SYS_QUOTACTL_FD,
        ] {
            assert_eq!(run(&eperm, NATIVE, nr as i32), errno_action(libc::EPERM));
        }
        assert_eq!(
            run(&eperm, NATIVE, libc::SYS_read as i32),
            libc::SECCOMP_RET_ALLOW
        );
        for nr in [
            libc::SYS_fsopen,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
        ] {
            assert_eq!(run(&enosys, NATIVE, nr as i32), errno_action(libc::ENOSYS));
            assert_eq!(run(&eperm, NATIVE, nr as i32), libc::SECCOMP_RET_ALLOW);
        }
        assert_eq!(
            run(&enosys, NATIVE, libc::SYS_mount as i32),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(&enosys, NATIVE, SYS_OPEN_TREE_ATTR as i32),
            errno_action(libc::ENOSYS)
        );
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn a_listener_of_the_containers_own_answers_ebusy_and_other_filters_install() {
        let prog = listener_filter().unwrap();
        let seccomp = libc::SYS_seccomp as i32;
        let listener = u64::from(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32);
        let tsync = u64::from(libc::SECCOMP_FILTER_FLAG_TSYNC as u32);
        let ebusy = errno_action(libc::EBUSY);
        let program = 0x7fff_1234_5000;
        let install = |flags| run_with(&prog, NATIVE, seccomp, [1, flags, program, 0, 0, 0]);
        assert_eq!(install(listener), ebusy);
        assert_eq!(install(listener | tsync), ebusy);
        let allow = libc::SECCOMP_RET_ALLOW;
        // libseccomp's probe for the flag (no program) gets the kernel's EFAULT.
        assert_eq!(
            run_with(&prog, NATIVE, seccomp, [1, listener, 0, 0, 0, 0]),
            allow
        );
        // A plain filter (an inner runtime's profile), and the other operations.
        assert_eq!(run_with(&prog, NATIVE, seccomp, [1, 0, 0, 0, 0, 0]), allow);
        assert_eq!(
            run_with(&prog, NATIVE, seccomp, [1, tsync, 0, 0, 0, 0]),
            allow
        );
        assert_eq!(
            run_with(&prog, NATIVE, seccomp, [2, listener, 0, 0, 0, 0]),
            allow
        );
        assert_eq!(run(&prog, NATIVE, libc::SYS_read as i32), allow);
    }
}
