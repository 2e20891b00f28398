//! The seccomp profile a spec asks for (`linux.seccomp`: Docker's default profile, or one given
//! with `--security-opt seccomp=FILE`), compiled into filters that go on top of eci's own.
//!
//! seccompiler gives a filter one action on a match and one elsewhere, and a profile has a
//! default action and one action per rule. A profile is therefore compiled into several
//! filters, which the kernel runs as one list where the strictest answer wins:
//!
//! - one filter per action other than ALLOW that the rules use: that action where one of its
//!   rules matches, ALLOW elsewhere;
//! - one filter for the default action (unless it is ALLOW): ALLOW where any rule matches, the
//!   default action elsewhere.
//!
//! A call that one rule matches gets that rule's action; a call that none matches gets the
//! default action; a call that rules of different actions match gets the strictest of them,
//! and of equally strict ones (two errnos) the one the profile names first. libseccomp would
//! refuse such a profile or keep one of them.
//!
//! As runc reads a profile with libseccomp:
//! - a syscall name this architecture does not know is skipped, and so is a rule naming none;
//! - an `errnoRet` left out means EPERM;
//! - the conditions of a rule must all hold, unless two name the same argument, in which case
//!   each is a rule of its own;
//! - unless the default action lets calls run (ALLOW, LOG, TRACE), a syscall numbered above
//!   every one the profile names answers ENOSYS, so that a program falls back as on an older
//!   kernel (glibc's fchmodat does on `fchmodat2`) instead of failing with EPERM.
//!
//! The `architectures` list is not needed: eci's guard answers ENOSYS to every foreign
//! architecture and to x32 numbers. `SECCOMP_FILTER_FLAG_TSYNC` and `SPEC_ALLOW` are accepted
//! and change nothing (one thread installs the filters; eci's own, installed first, have
//! already turned the speculative store bypass mitigation on).
//!
//! A profile cannot loosen eci's filters, only refuse more:
//! - whatever it allows, eci's refusals still hold, and a call eci sends to its supervisor
//!   (mount, umount2, sysinfo; unshare and setns of a user namespace) goes there unless the
//!   profile refuses it (ERRNO, TRAP, KILL). Its LOG or TRACE on such a call never happens;
//! - where the profile and eci both answer with an errno, the profile's errno is the one
//!   returned (its filters are the later ones): Docker's EPERM for `fsopen` instead of eci's
//!   ENOSYS, in a container without CAP_SYS_ADMIN, which could not mount either way.
//!
//! What a profile may not have is a listener (`SCMP_ACT_NOTIFY`, `listenerPath`): the kernel
//! would ask it before eci's supervisor.

use std::collections::BTreeMap;
use std::str::FromStr;

use eci_ns::sys::SysResult;
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

use crate::filters::{compile_between, FilterError, Program};
use crate::install::install_filter;

/// The largest errno a filter can return (the kernel's MAX_ERRNO).
const MAX_ERRNO: u32 = 4095;
/// The most instructions one filter may have (BPF_MAXINSNS).
const MAX_FILTER_LEN: usize = 4096;
/// The most instructions, plus 4 a filter, in the list of filters one process runs
/// (MAX_INSNS_PER_PATH).
const MAX_LIST_LEN: usize = 32768;
/// What eci's own filters take of that list, rounded up (a test keeps it true).
const ECI_RESERVE: usize = 1024;

/// A spec's seccomp profile, compiled in the runtime and installed in the container's process
/// just before its program runs.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    programs: Vec<Program>,
    flags: libc::c_ulong,
    skipped: Vec<String>,
}

/// Why a profile cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// SCMP_ACT_NOTIFY: a listener of the profile's own.
    #[error(
        "the seccomp profile sends {0} to a listener (SCMP_ACT_NOTIFY); a listener of the \
         container's would be asked before eci's, so a profile may not have one"
    )]
    Notify(String),
    /// A listener path.
    #[error(
        "the seccomp profile names a listener ({0}); a listener of the container's would be \
         asked before eci's, so a profile may not have one"
    )]
    ListenerPath(String),
    /// A flag that only a filter with a listener may have.
    #[error(
        "seccomp flag {0} applies only to a filter with a listener, which a profile may not have"
    )]
    ListenerFlag(&'static str),
    /// An errno a filter cannot return.
    #[error("errno {value} for {what} is out of range (a filter returns at most {MAX_ERRNO})")]
    Errno {
        /// The default action or the syscall it is for.
        what: String,
        /// The value given.
        value: u32,
    },
    /// More instructions than the kernel takes.
    #[error("the seccomp profile is too large: {0}")]
    TooLong(String),
    /// A condition on an argument a syscall does not have.
    #[error("a condition on argument {index} of {syscall}; a syscall has arguments 0 to 5")]
    ArgIndex {
        /// The rule's first syscall name.
        syscall: String,
        /// The index given.
        index: usize,
    },
    /// seccompiler refused the rules, or the architecture has no filters.
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// Where one action's rules match a syscall.
#[derive(Debug, Clone)]
enum Match {
    Always,
    /// Where any of the rules holds (never empty).
    When(Vec<SeccompRule>),
}

impl Match {
    fn widen(&mut self, other: Match) {
        match (&mut *self, other) {
            (Match::Always, _) => {}
            (_, Match::Always) => *self = Match::Always,
            (Match::When(mine), Match::When(theirs)) => mine.extend(theirs),
        }
    }

    fn into_rules(self) -> Vec<SeccompRule> {
        match self {
            // seccompiler's spelling of "unconditionally".
            Match::Always => Vec::new(),
            Match::When(rules) => rules,
        }
    }
}

type Matches = BTreeMap<i64, Match>;

fn add(matches: &mut Matches, nr: i64, matched: Match) {
    match matches.get_mut(&nr) {
        Some(existing) => existing.widen(matched),
        None => {
            matches.insert(nr, matched);
        }
    }
}

impl Profile {
    /// Compiles `seccomp`. Syscall names this architecture does not have are skipped and
    /// listed in [`Profile::skipped`].
    ///
    /// ```
    /// use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};
    ///
    /// let seccomp = LinuxSeccompBuilder::default()
    ///     .default_action(LinuxSeccompAction::ScmpActAllow)
    ///     .syscalls(vec![LinuxSyscallBuilder::default()
    ///         .names(vec!["mkdir".to_string(), "mkdirat".to_string()])
    ///         .action(LinuxSeccompAction::ScmpActErrno)
    ///         .errno_ret(libc::EACCES as u32)
    ///         .build()
    ///         .unwrap()])
    ///     .build()
    ///     .unwrap();
    /// let profile = eci_seccomp::profile::Profile::compile(&seccomp).unwrap();
    /// assert_eq!(profile.filter_count(), 1);
    /// // In the container's process, just before exec: profile.install()?
    /// ```
    pub fn compile(seccomp: &LinuxSeccomp) -> Result<Profile, ProfileError> {
        if let Some(path) = seccomp.listener_path() {
            return Err(ProfileError::ListenerPath(path.display().to_string()));
        }
        let flags = filter_flags(seccomp.flags().as_deref().unwrap_or_default())?;
        let default = action_of(
            seccomp.default_action(),
            seccomp.default_errno_ret(),
            "the default action",
        )?;
        let mut any: Matches = BTreeMap::new();
        let mut by_action: Vec<(SeccompAction, Matches)> = Vec::new();
        let mut skipped = Vec::new();
        let mut last_named = 0;
        for rule in seccomp.syscalls().iter().flatten() {
            // A rule that names nothing matches nothing (runc ignores it too).
            let Some(first) = rule.names().first() else {
                continue;
            };
            let action = action_of(rule.action(), rule.errno_ret(), &format!("syscall {first}"))?;
            // In the order the profile names them, whether their rules can match or not.
            let at = match by_action.iter().position(|(a, _)| *a == action) {
                Some(at) => at,
                None => {
                    by_action.push((action.clone(), BTreeMap::new()));
                    by_action.len() - 1
                }
            };
            let mut numbers = Vec::with_capacity(rule.names().len());
            for name in rule.names() {
                match syscalls::Sysno::from_str(name) {
                    Ok(sysno) => numbers.push(sysno.id()),
                    Err(()) if !skipped.contains(name) => skipped.push(name.clone()),
                    Err(()) => {}
                }
            }
            last_named = numbers.iter().copied().fold(last_named, i32::max);
            let Some(matched) = match_of(rule, first)? else {
                continue;
            };
            for nr in numbers.into_iter().map(i64::from) {
                add(&mut any, nr, matched.clone());
                if action != SeccompAction::Allow {
                    add(&mut by_action[at].1, nr, matched.clone());
                }
            }
        }
        let mut programs = Vec::new();
        // Of equally strict answers the kernel keeps the latest filter's: the action named
        // first is installed last.
        for (action, matches) in by_action.into_iter().rev() {
            if !matches.is_empty() {
                programs.push(compile(matches, SeccompAction::Allow, action, None)?);
            }
        }
        if default != SeccompAction::Allow {
            // runc's reading too: a syscall newer than every one the profile names gets
            // ENOSYS rather than a refusal, so that programs fall back as they would on an
            // older kernel; not where the default lets calls run anyway.
            let permissive = matches!(default, SeccompAction::Log | SeccompAction::Trace(_));
            let enosys_above = (!permissive && last_named > 0).then_some(last_named as u32);
            programs.push(compile(any, default, SeccompAction::Allow, enosys_above)?);
        }
        check_size(&programs)?;
        if !skipped.is_empty() {
            tracing::debug!(?skipped, "syscalls of the seccomp profile unknown here");
        }
        Ok(Profile {
            programs,
            flags,
            skipped,
        })
    }

    /// How many filters the profile became (none for a profile that allows everything).
    pub fn filter_count(&self) -> usize {
        self.programs.len()
    }

    /// The syscall names the profile gave that this architecture does not have.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The compiled filters, in the order they are installed.
    pub fn programs(&self) -> &[Program] {
        &self.programs
    }

    /// Installs the filters in the calling thread. Allocation-free: runs between fork and exec.
    /// Needs no_new_privs or CAP_SYS_ADMIN in the caller's user namespace. After it, the
    /// caller's own syscalls are subject to the profile too, so it is called as late as may be.
    pub fn install(&self) -> SysResult<()> {
        for program in &self.programs {
            install_filter(program, self.flags)?;
        }
        Ok(())
    }
}

fn compile(
    matches: Matches,
    mismatched: SeccompAction,
    matched: SeccompAction,
    enosys_above: Option<u32>,
) -> Result<Program, ProfileError> {
    let rules = matches
        .into_iter()
        .map(|(nr, m)| (nr, m.into_rules()))
        .collect();
    compile_between("profile", rules, mismatched, matched, enosys_above).map_err(|err| match err {
        FilterError::Build {
            source: seccompiler::BackendError::FilterTooLarge(len),
            ..
        } => too_long(len),
        other => ProfileError::Filter(other),
    })
}

fn too_long(len: usize) -> ProfileError {
    ProfileError::TooLong(format!(
        "one of its filters has {len} instructions, the kernel takes {MAX_FILTER_LEN}"
    ))
}

/// Refuses filters the kernel would refuse at install, when it would be too late to say why.
fn check_size(programs: &[Program]) -> Result<(), ProfileError> {
    if let Some(long) = programs.iter().find(|p| p.len() > MAX_FILTER_LEN) {
        return Err(too_long(long.len()));
    }
    // The kernel counts each filter's length plus 4, for the whole list a process runs.
    let total: usize = programs.iter().map(|p| p.len() + 4).sum();
    if total > MAX_LIST_LEN - ECI_RESERVE {
        return Err(ProfileError::TooLong(format!(
            "its filters have {total} instructions, and the kernel takes {} beside eci's own",
            MAX_LIST_LEN - ECI_RESERVE
        )));
    }
    Ok(())
}

fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> Result<libc::c_ulong, ProfileError> {
    flags.iter().try_fold(0, |all, flag| {
        let bit = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            // The process that installs it has one thread; with this flag the kernel would
            // report a failure as a thread ID, which reads as success.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            // eci's own filters, installed first, have turned the speculative store bypass
            // mitigation on for the process; the kernel does not turn it off again.
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 0,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(ProfileError::ListenerFlag(
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
                ))
            }
        };
        Ok(all | bit)
    })
}

fn errno_of(value: Option<u32>, what: &str) -> Result<u32, ProfileError> {
    match value {
        None => Ok(libc::EPERM as u32),
        Some(value) if value <= MAX_ERRNO => Ok(value),
        Some(value) => Err(ProfileError::Errno {
            what: what.to_string(),
            value,
        }),
    }
}

fn action_of(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    what: &str,
) -> Result<SeccompAction, ProfileError> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno_of(errno, what)?),
        // runc passes errnoRet as the tracer's message, EPERM when left out.
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno_of(errno, what)?),
        // libseccomp's SCMP_ACT_KILL kills the thread.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActNotify => return Err(ProfileError::Notify(what.to_string())),
    })
}

/// Where `rule` matches; None if it never can.
fn match_of(rule: &LinuxSyscall, first: &str) -> Result<Option<Match>, ProfileError> {
    let args = rule.args().as_deref().unwrap_or_default();
    if args.is_empty() {
        return Ok(Some(Match::Always));
    }
    let mut conditions = Vec::with_capacity(args.len());
    for arg in args {
        conditions.push(condition_of(arg, first)?);
    }
    let repeats_an_argument = args
        .iter()
        .enumerate()
        .any(|(i, arg)| args[..i].iter().any(|a| a.index() == arg.index()));
    let rules: Vec<SeccompRule> = if repeats_an_argument {
        // runc's reading: conditions on the same argument are alternatives.
        conditions
            .into_iter()
            .flatten()
            .map(|c| SeccompRule::new(vec![c]))
            .collect::<Result<_, _>>()
    } else {
        match conditions.into_iter().collect::<Option<Vec<_>>>() {
            Some(all) => SeccompRule::new(all).map(|rule| vec![rule]),
            None => Ok(Vec::new()),
        }
    }
    .map_err(|source| FilterError::Build {
        which: "profile",
        source,
    })?;
    Ok((!rules.is_empty()).then_some(Match::When(rules)))
}

/// One condition; None for one no argument can meet (a masked comparison with bits outside
/// the mask).
fn condition_of(
    arg: &LinuxSeccompArg,
    first: &str,
) -> Result<Option<SeccompCondition>, ProfileError> {
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|i| *i <= 5)
        .ok_or_else(|| ProfileError::ArgIndex {
            syscall: first.to_string(),
            index: arg.index(),
        })?;
    let (op, value) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            // `value` is the mask and `valueTwo` what the masked argument must equal.
            let (mask, datum) = (arg.value(), arg.value_two().unwrap_or(0));
            if datum & !mask != 0 {
                return Ok(None);
            }
            (SeccompCmpOp::MaskedEq(mask), datum)
        }
    };
    // The whole 64-bit register, as libseccomp compares it.
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map(Some)
        .map_err(|source| {
            ProfileError::Filter(FilterError::Build {
                which: "profile",
                source,
            })
        })
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};
    use proptest::prelude::*;

    use super::*;
    use crate::filters::tests::run_with;

    #[cfg(target_arch = "x86_64")]
    const NATIVE: u32 = 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    const NATIVE: u32 = 0xc000_00b7;

    fn syscall(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>) -> LinuxSyscall {
        let mut b = LinuxSyscallBuilder::default()
            .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .action(action);
        if let Some(errno) = errno {
            b = b.errno_ret(errno);
        }
        b.build().unwrap()
    }

    fn with_args(mut rule: LinuxSyscall, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
        rule.set_args(Some(args));
        rule
    }

    fn arg(index: usize, op: LinuxSeccompOperator, value: u64, two: u64) -> LinuxSeccompArg {
        LinuxSeccompArgBuilder::default()
            .index(index)
            .op(op)
            .value(value)
            .value_two(two)
            .build()
            .unwrap()
    }

    fn profile(default: LinuxSeccompAction, rules: Vec<LinuxSyscall>) -> LinuxSeccomp {
        LinuxSeccompBuilder::default()
            .default_action(default)
            .syscalls(rules)
            .build()
            .unwrap()
    }

    fn nr(name: &str) -> i32 {
        syscalls::Sysno::from_str(name).unwrap().id()
    }

    /// What the kernel answers a call under every filter of `profile`: the strictest action,
    /// the latest filter's among equals.
    fn verdict(profile: &Profile, arch: u32, nr: i32, args: [u64; 6]) -> u32 {
        profile
            .programs()
            .iter()
            .rev()
            .map(|p| run_with(p, arch, nr, args))
            .fold(libc::SECCOMP_RET_ALLOW, strictest)
    }

    fn strictest(a: u32, b: u32) -> u32 {
        let action = |r: u32| (r & 0xffff_0000) as i32;
        if action(b) < action(a) {
            b
        } else {
            a
        }
    }

    /// x86-64's numbers for the names the property test uses, written out rather than looked
    /// up the way the code under test looks them up.
    #[cfg(target_arch = "x86_64")]
    fn number_of(name: &str) -> Option<i32> {
        match name {
            "getpid" => Some(39),
            "clone" => Some(56),
            "personality" => Some(135),
            "mkdirat" => Some(258),
            "faccessat2" => Some(439),
            _ => None,
        }
    }

    /// What the kernel should answer, read straight from the profile: kernel return values
    /// written out, not taken from the code under test.
    #[cfg(target_arch = "x86_64")]
    fn expected(seccomp: &LinuxSeccomp, nr: i32, args: [u64; 6]) -> u32 {
        let ret = |action: LinuxSeccompAction, errno: Option<u32>| match action {
            LinuxSeccompAction::ScmpActAllow => 0x7fff_0000,
            LinuxSeccompAction::ScmpActErrno => 0x0005_0000 | errno.unwrap_or(1),
            LinuxSeccompAction::ScmpActTrace => 0x7ff0_0000 | errno.unwrap_or(1),
            LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => 0,
            LinuxSeccompAction::ScmpActKillProcess => 0x8000_0000,
            LinuxSeccompAction::ScmpActTrap => 0x0003_0000,
            LinuxSeccompAction::ScmpActLog => 0x7ffc_0000,
            LinuxSeccompAction::ScmpActNotify => unreachable!("not generated"),
        };
        let holds = |a: &LinuxSeccompArg| {
            let x = args[a.index()];
            match a.op() {
                LinuxSeccompOperator::ScmpCmpNe => x != a.value(),
                LinuxSeccompOperator::ScmpCmpLt => x < a.value(),
                LinuxSeccompOperator::ScmpCmpLe => x <= a.value(),
                LinuxSeccompOperator::ScmpCmpEq => x == a.value(),
                LinuxSeccompOperator::ScmpCmpGe => x >= a.value(),
                LinuxSeccompOperator::ScmpCmpGt => x > a.value(),
                LinuxSeccompOperator::ScmpCmpMaskedEq => {
                    x & a.value() == a.value_two().unwrap_or(0)
                }
            }
        };
        let rules: Vec<&LinuxSyscall> = seccomp.syscalls().iter().flatten().collect();
        let matching = rules.iter().filter(|rule| {
            let named = rule.names().iter().any(|n| number_of(n) == Some(nr));
            let args = rule.args().as_deref().unwrap_or_default();
            let repeated = args
                .iter()
                .enumerate()
                .any(|(i, a)| args[..i].iter().any(|b| b.index() == a.index()));
            named
                && (args.is_empty()
                    || if repeated {
                        args.iter().any(holds)
                    } else {
                        args.iter().all(holds)
                    })
        });
        // Precedence: the kernel's action values read as signed numbers, lowest first.
        let named_at = |r: u32| {
            rules
                .iter()
                .position(|rule| ret(rule.action(), rule.errno_ret()) == r)
                .unwrap()
        };
        let strictest = matching
            .map(|rule| ret(rule.action(), rule.errno_ret()))
            .reduce(|a, b| {
                let action = |r: u32| (r & 0xffff_0000) as i32;
                match action(a).cmp(&action(b)) {
                    std::cmp::Ordering::Less => a,
                    std::cmp::Ordering::Greater => b,
                    std::cmp::Ordering::Equal if named_at(b) < named_at(a) => b,
                    std::cmp::Ordering::Equal => a,
                }
            });
        if let Some(answer) = strictest {
            return answer;
        }
        let last = rules
            .iter()
            .flat_map(|rule| rule.names())
            .filter_map(|n| number_of(n))
            .max();
        let permissive = matches!(
            seccomp.default_action(),
            LinuxSeccompAction::ScmpActAllow
                | LinuxSeccompAction::ScmpActLog
                | LinuxSeccompAction::ScmpActTrace
        );
        match last {
            Some(last) if !permissive && nr > last => 0x0005_0000 | libc::ENOSYS as u32,
            _ => ret(seccomp.default_action(), seccomp.default_errno_ret()),
        }
    }

    #[test]
    fn a_rule_answers_its_action_and_other_calls_the_default() {
        let seccomp = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![
                syscall(&["getpid", "read"], LinuxSeccompAction::ScmpActAllow, None),
                syscall(&["clone3"], LinuxSeccompAction::ScmpActErrno, Some(38)),
            ],
        );
        let compiled = Profile::compile(&seccomp).unwrap();
        assert_eq!(compiled.filter_count(), 2);
        let at = |name| verdict(&compiled, NATIVE, nr(name), [0; 6]);
        assert_eq!(at("getpid"), libc::SECCOMP_RET_ALLOW);
        assert_eq!(at("read"), libc::SECCOMP_RET_ALLOW);
        assert_eq!(at("clone3"), libc::SECCOMP_RET_ERRNO | 38);
        assert_eq!(at("mkdirat"), libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
    }

    #[test]
    fn names_this_architecture_lacks_are_skipped() {
        let seccomp = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![syscall(
                &["getpid", "socketcall", "no_such_call", "socketcall"],
                LinuxSeccompAction::ScmpActAllow,
                None,
            )],
        );
        let compiled = Profile::compile(&seccomp).unwrap();
        assert_eq!(compiled.skipped(), ["socketcall", "no_such_call"]);
        assert_eq!(
            verdict(&compiled, NATIVE, nr("getpid"), [0; 6]),
            libc::SECCOMP_RET_ALLOW
        );
    }

    #[test]
    fn a_profile_that_allows_everything_is_no_filter() {
        let seccomp = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![syscall(&["getpid"], LinuxSeccompAction::ScmpActAllow, None)],
        );
        assert_eq!(Profile::compile(&seccomp).unwrap().filter_count(), 0);
    }

    #[test]
    fn foreign_architectures_answer_enosys() {
        let seccomp = profile(
            LinuxSeccompAction::ScmpActKillProcess,
            vec![syscall(&["getpid"], LinuxSeccompAction::ScmpActAllow, None)],
        );
        let compiled = Profile::compile(&seccomp).unwrap();
        // i386's audit arch.
        assert_eq!(
            verdict(&compiled, 0x4000_0003, 20, [0; 6]),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
    }

    #[test]
    fn conditions_on_one_argument_are_alternatives_and_on_several_all_must_hold() {
        let eq = LinuxSeccompOperator::ScmpCmpEq;
        let seccomp = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![
                with_args(
                    syscall(&["personality"], LinuxSeccompAction::ScmpActAllow, None),
                    vec![arg(0, eq, 0, 0), arg(0, eq, 8, 0)],
                ),
                with_args(
                    syscall(&["socket"], LinuxSeccompAction::ScmpActAllow, None),
                    vec![arg(0, eq, 1, 0), arg(1, eq, 2, 0)],
                ),
            ],
        );
        let compiled = Profile::compile(&seccomp).unwrap();
        let allow = libc::SECCOMP_RET_ALLOW;
        let personality = |p| verdict(&compiled, NATIVE, nr("personality"), [p, 0, 0, 0, 0, 0]);
        assert_eq!(personality(0), allow);
        assert_eq!(personality(8), allow);
        assert_ne!(personality(9), allow);
        let socket = |d, t| verdict(&compiled, NATIVE, nr("socket"), [d, t, 0, 0, 0, 0]);
        assert_eq!(socket(1, 2), allow);
        assert_ne!(socket(1, 1), allow);
        assert_ne!(socket(2, 2), allow);
    }

    #[test]
    fn a_masked_comparison_reads_value_as_the_mask() {
        // Docker's clone rule: none of the namespace flags set.
        let namespaces = 0x7E02_0000;
        let seccomp = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![with_args(
                syscall(&["clone"], LinuxSeccompAction::ScmpActAllow, None),
                vec![arg(0, LinuxSeccompOperator::ScmpCmpMaskedEq, namespaces, 0)],
            )],
        );
        let compiled = Profile::compile(&seccomp).unwrap();
        let clone = |flags| verdict(&compiled, NATIVE, nr("clone"), [flags, 0, 0, 0, 0, 0]);
        assert_eq!(clone(libc::SIGCHLD as u64), libc::SECCOMP_RET_ALLOW);
        assert_eq!(
            clone(libc::CLONE_NEWUSER as u64 | libc::SIGCHLD as u64),
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32
        );
    }

    #[test]
    fn what_a_profile_may_not_have_is_refused_by_name() {
        let notify = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![syscall(&["mount"], LinuxSeccompAction::ScmpActNotify, None)],
        );
        let err = Profile::compile(&notify).unwrap_err();
        assert!(
            matches!(&err, ProfileError::Notify(w) if w == "syscall mount"),
            "{err}"
        );

        let mut listener = profile(LinuxSeccompAction::ScmpActAllow, vec![]);
        listener.set_listener_path(Some("/run/agent.sock".into()));
        let err = Profile::compile(&listener).unwrap_err();
        assert!(err.to_string().contains("/run/agent.sock"), "{err}");

        let mut killable = profile(LinuxSeccompAction::ScmpActAllow, vec![]);
        killable.set_flags(Some(vec![
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
        ]));
        assert!(matches!(
            Profile::compile(&killable),
            Err(ProfileError::ListenerFlag(_))
        ));

        let big_errno = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![syscall(
                &["mkdir"],
                LinuxSeccompAction::ScmpActErrno,
                Some(4096),
            )],
        );
        assert!(matches!(
            Profile::compile(&big_errno),
            Err(ProfileError::Errno { value: 4096, .. })
        ));

        let seventh = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![with_args(
                syscall(&["mkdir"], LinuxSeccompAction::ScmpActErrno, None),
                vec![arg(6, LinuxSeccompOperator::ScmpCmpEq, 0, 0)],
            )],
        );
        assert!(matches!(
            Profile::compile(&seventh),
            Err(ProfileError::ArgIndex { index: 6, .. })
        ));

        // A thousand alternatives for one argument: more than a filter may hold.
        let eq = LinuxSeccompOperator::ScmpCmpEq;
        let huge = profile(
            LinuxSeccompAction::ScmpActErrno,
            vec![with_args(
                syscall(&["personality"], LinuxSeccompAction::ScmpActAllow, None),
                (0..1000).map(|v| arg(0, eq, v, 0)).collect(),
            )],
        );
        let err = Profile::compile(&huge).unwrap_err();
        assert!(matches!(err, ProfileError::TooLong(_)), "{err}");
    }

    #[test]
    fn flags_reach_the_install() {
        let mut logged = profile(
            LinuxSeccompAction::ScmpActLog,
            vec![syscall(&["getpid"], LinuxSeccompAction::ScmpActAllow, None)],
        );
        logged.set_flags(Some(vec![
            LinuxSeccompFilterFlag::SeccompFilterFlagLog,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        ]));
        let compiled = Profile::compile(&logged).unwrap();
        assert_eq!(compiled.flags, libc::SECCOMP_FILTER_FLAG_LOG);
    }

    #[test]
    fn a_rule_that_names_nothing_is_skipped() {
        let nameless = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![syscall(&[], LinuxSeccompAction::ScmpActErrno, None)],
        );
        assert_eq!(Profile::compile(&nameless).unwrap().filter_count(), 0);
    }

    #[test]
    fn syscalls_newer_than_the_profile_answer_enosys_unless_the_default_lets_them_run() {
        let rules = || {
            vec![syscall(
                &["getpid", "faccessat2"],
                LinuxSeccompAction::ScmpActAllow,
                None,
            )]
        };
        let refusing =
            Profile::compile(&profile(LinuxSeccompAction::ScmpActErrno, rules())).unwrap();
        let at = |p: &Profile, name| verdict(p, NATIVE, nr(name), [0; 6]);
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        assert_eq!(at(&refusing, "fchmodat2"), enosys);
        assert_eq!(at(&refusing, "mkdirat"), eperm);
        assert_eq!(at(&refusing, "faccessat2"), libc::SECCOMP_RET_ALLOW);
        let logging = Profile::compile(&profile(LinuxSeccompAction::ScmpActLog, rules())).unwrap();
        assert_eq!(at(&logging, "fchmodat2"), libc::SECCOMP_RET_LOG);
    }

    #[test]
    fn ecis_own_filters_fit_in_what_a_profile_leaves_them() {
        let (deny, new_mount_api) = crate::filters::deny_filter().unwrap();
        let own = [
            crate::filters::notify_filter().unwrap(),
            deny,
            new_mount_api,
            crate::filters::family_filter().unwrap(),
            crate::filters::listener_filter().unwrap(),
        ];
        let total: usize = own.iter().map(|p| p.len() + 4).sum();
        assert!(
            total <= ECI_RESERVE,
            "eci's filters take {total} instructions"
        );
    }

    /// Runs `child` in a forked child under `profile` (with no_new_privs) and returns its exit
    /// code. Only async-signal-safe work happens in the child.
    fn under(profile: &Profile, child: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child makes plain syscalls and ends with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: prctl with integer arguments; _exit ends the child without unwinding.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                libc::_exit(match profile.install() {
                    Ok(()) => child(),
                    Err(_) => 100,
                })
            }
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        libc::WEXITSTATUS(status)
    }

    fn errno() -> i32 {
        // SAFETY: the calling thread's errno.
        unsafe { *libc::__errno_location() }
    }

    #[test]
    fn the_kernel_answers_as_the_profile_says() {
        let seccomp = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![
                syscall(
                    &["mkdir", "mkdirat"],
                    LinuxSeccompAction::ScmpActErrno,
                    Some(libc::EACCES as u32),
                ),
                with_args(
                    syscall(
                        &["personality"],
                        LinuxSeccompAction::ScmpActErrno,
                        Some(libc::EDOM as u32),
                    ),
                    vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, 0xffff_ffff, 0)],
                ),
                // Named later: where both match, the errno named first is the answer.
                syscall(
                    &["personality"],
                    LinuxSeccompAction::ScmpActErrno,
                    Some(libc::ENOENT as u32),
                ),
            ],
        );
        let compiled = Profile::compile(&seccomp).unwrap();
        let code = under(&compiled, || {
            let path = c"/eci-profile-test-never-made";
            // SAFETY: plain syscalls with a NUL-terminated path.
            unsafe {
                if libc::mkdirat(libc::AT_FDCWD, path.as_ptr(), 0o700) != -1
                    || errno() != libc::EACCES
                {
                    return 1;
                }
                if libc::syscall(libc::SYS_personality, 0xffff_ffffu64) != -1
                    || errno() != libc::EDOM
                {
                    return 2;
                }
                if libc::syscall(libc::SYS_personality, 0u64) != -1 || errno() != libc::ENOENT {
                    return 3;
                }
                // Other calls go through.
                if libc::getppid() <= 0 {
                    return 4;
                }
            }
            0
        });
        assert_eq!(code, 0);
    }

    const NAMES: [&str; 6] = [
        "getpid",
        "personality",
        "mkdirat",
        "clone",
        "faccessat2",
        "socketcall",
    ];

    fn any_action() -> impl Strategy<Value = (LinuxSeccompAction, Option<u32>)> {
        prop_oneof![
            Just((LinuxSeccompAction::ScmpActAllow, None)),
            Just((LinuxSeccompAction::ScmpActErrno, None)),
            (1u32..4).prop_map(|e| (LinuxSeccompAction::ScmpActErrno, Some(e))),
            Just((LinuxSeccompAction::ScmpActKillProcess, None)),
            Just((LinuxSeccompAction::ScmpActKill, None)),
            Just((LinuxSeccompAction::ScmpActTrap, None)),
            Just((LinuxSeccompAction::ScmpActLog, None)),
            (0u32..3).prop_map(|e| (LinuxSeccompAction::ScmpActTrace, Some(e))),
        ]
    }

    fn any_value() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(2),
            Just(0xff),
            Just(0x1_0000_0000),
            Just(u64::MAX)
        ]
    }

    fn any_arg() -> impl Strategy<Value = LinuxSeccompArg> {
        let ops = prop_oneof![
            Just(LinuxSeccompOperator::ScmpCmpNe),
            Just(LinuxSeccompOperator::ScmpCmpLt),
            Just(LinuxSeccompOperator::ScmpCmpLe),
            Just(LinuxSeccompOperator::ScmpCmpEq),
            Just(LinuxSeccompOperator::ScmpCmpGe),
            Just(LinuxSeccompOperator::ScmpCmpGt),
            Just(LinuxSeccompOperator::ScmpCmpMaskedEq),
        ];
        (0usize..3, ops, any_value(), any_value()).prop_map(|(i, op, v, t)| arg(i, op, v, t))
    }

    fn any_rule() -> impl Strategy<Value = LinuxSyscall> {
        (
            proptest::sample::subsequence(NAMES.to_vec(), 1..=3),
            any_action(),
            proptest::collection::vec(any_arg(), 0..3),
        )
            .prop_map(|(names, (action, errno), args)| {
                with_args(syscall(&names, action, errno), args)
            })
    }

    #[cfg(target_arch = "x86_64")]
    proptest! {
        /// The filters a profile compiles into answer every call as the profile reads.
        #[test]
        fn compiled_filters_answer_as_the_profile_reads(
            (default, default_errno) in any_action(),
            rules in proptest::collection::vec(any_rule(), 0..6),
            which in 0usize..7,
            args in proptest::array::uniform6(any_value()),
        ) {
            let mut seccomp = profile(default, rules);
            seccomp.set_default_errno_ret(default_errno);
            let compiled = Profile::compile(&seccomp).unwrap();
            // getpid, personality, mkdirat, clone, and one no rule names.
            // getpid, personality, mkdirat, clone, faccessat2; getppid, which no rule names;
            // fchmodat2, above every name.
            let nrs = [39, 135, 258, 56, 439, 110, 452];
            let nr = nrs[which];
            prop_assert_eq!(
                verdict(&compiled, NATIVE, nr, args),
                expected(&seccomp, nr, args)
            );
        }
    }
}
