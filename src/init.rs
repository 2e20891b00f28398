//! What the container's init does once its mounts exist: hostname, seccomp, identity,
//! capabilities, exec. Built from the hardened spec in the runtime; run after fork, so the run
//! is allocation-free and every string and pointer array is prepared here.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

use eci_ns::channel::{Channel, Message};
use eci_ns::failure::{Failure, Stage};
use eci_ns::sys::{self, check, check_int, Errno, SysResult};
use eci_policy::caps::CapSet;
use eci_policy::harden::{sysctl_file, sysctl_name};
use eci_seccomp::profile::Profile;

use crate::apparmor::OnExec;
use eci_seccomp::Filters;
use oci_spec::runtime::{Process, Spec};

/// Message kind: the init's seccomp listener (with the fd).
pub(crate) const LISTENER: u32 = 0x3000;
/// Message kind: the runtime says start.
pub(crate) const START: u32 = 0x3001;
/// Message kind: the master side of the process's terminal (with the fd), before the listener.
pub(crate) const CONSOLE: u32 = 0x3002;
/// Message kind: the container's mount table is what it will be when the container starts.
/// Sent first, and only by an init asked to ([`InitPlan::announcing_final_mounts`]).
pub(crate) const MOUNTS_FINAL: u32 = 0x3003;

/// Steps of the init, as failures name them.
pub(crate) mod step {
    pub const HOSTNAME: u32 = 1;
    pub const DOMAINNAME: u32 = 2;
    pub const ANNOUNCE_MOUNTS: u32 = 3;
    pub const SECCOMP: u32 = 10;
    pub const SEND_LISTENER: u32 = 11;
    pub const WAIT_START: u32 = 12;
    pub const CONSOLE: u32 = 13;
    pub const SEND_CONSOLE: u32 = 14;
    pub const CONTROLLING_TERMINAL: u32 = 15;
    pub const STDIO: u32 = 20;
    pub const GROUPS: u32 = 21;
    pub const GID: u32 = 22;
    pub const UID: u32 = 23;
    pub const BOUNDING: u32 = 24;
    pub const CAPSET: u32 = 25;
    pub const AMBIENT: u32 = 26;
    pub const NO_NEW_PRIVS: u32 = 27;
    pub const CWD: u32 = 28;
    pub const CLOSE_FDS: u32 = 29;
    pub const EXEC: u32 = 30;
    pub const PROFILE: u32 = 31;
    pub const APPARMOR: u32 = 32;
    pub const UNDUMPABLE: u32 = 33;
    pub const PERSONALITY: u32 = 34;
    pub const CWD_INSIDE_ROOT: u32 = 35;
}

/// The spec's sysctls, written by the mounter: it is in the container's network and IPC
/// namespaces (which namespaced sysctls resolve against) before /proc/sys is made read-only.
pub(crate) struct Sysctls {
    entries: Vec<Sysctl>,
}

/// One sysctl of the spec.
struct Sysctl {
    key: String,
    path: CString,
    value: CString,
    /// For a congestion control ([`CONGESTION_CONTROLS`]): how many names it may give.
    most_algorithms: Option<usize>,
}

/// Step codes of sysctl failures (stage Init): this plus the entry's index.
const SYSCTL_STEP: u32 = 1000;

/// The sysctls that name TCP congestion control algorithms. Set to one the kernel lacks by a
/// writer with CAP_NET_ADMIN in the host's user namespace, as the mounter is, the kernel
/// loads the module `tcp_NAME` for it: a module load the container could not make itself.
/// With how many names each takes: the default takes one (the kernel looks up "reno cubic"
/// whole, and would load `tcp_reno cubic`).
const CONGESTION_CONTROLS: [(&str, usize); 2] = [
    ("net.ipv4.tcp_congestion_control", 1),
    ("net.ipv4.tcp_allowed_congestion_control", usize::MAX),
];

/// Fails with ENOENT (what the kernel answers the container's own root) unless `value` names
/// at most `most` algorithms, each loaded already: listed in tcp_available_congestion_control
/// (read whole: a list cut short could pass the first letters of a name). Allocation-free.
fn congestion_controls_loaded(value: &[u8], most: usize) -> SysResult<()> {
    // The kernel's TCP_CA_BUF_MAX, with room to see a longer list.
    let mut buf = [0u8; 2048 + 1];
    let path = c"/proc/sys/net/ipv4/tcp_available_congestion_control";
    // SAFETY: a NUL-terminated path and plain flags.
    let fd = check_int(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: buf is a valid writable buffer of its length.
    let read = check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } as libc::c_long);
    sys::close(fd);
    let read = read? as usize;
    let names = value
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty());
    if read == buf.len() || names.count() > most {
        return Err(Errno(libc::ENOENT));
    }
    if names_all_available(value, &buf[..read]) {
        Ok(())
    } else {
        Err(Errno(libc::ENOENT))
    }
}

/// Whether `value` names at least one algorithm, each one of `available`'s (both lists
/// separated by whitespace).
fn names_all_available(value: &[u8], available: &[u8]) -> bool {
    let mut names = value
        .split(u8::is_ascii_whitespace)
        .filter(|word| !word.is_empty())
        .peekable();
    names.peek().is_some()
        && names.all(|name| {
            available
                .split(u8::is_ascii_whitespace)
                .any(|known| known == name)
        })
}

impl Sysctls {
    pub(crate) fn from_spec(spec: &Spec) -> Result<Sysctls, ProcessError> {
        let map = spec
            .linux()
            .as_ref()
            .and_then(|l| l.sysctl().clone())
            .unwrap_or_default();
        let mut entries = Vec::with_capacity(map.len());
        for (key, value) in map {
            // Named with dots or with slashes, as the kernel's own sysctl(8) takes both; the
            // file and the name checked are read from the same parts (hardening refused a key
            // with an empty one, which the kernel would read as another name).
            let (Some(path), Some(name)) = (sysctl_file(&key), sysctl_name(&key)) else {
                return Err(ProcessError::SysctlName(key));
            };
            let most_algorithms = CONGESTION_CONTROLS
                .iter()
                .find(|(congestion, _)| *congestion == name)
                .map(|(_, most)| *most);
            entries.push(Sysctl {
                path: cstr(path.as_bytes(), "sysctl")?,
                value: cstr(value.as_bytes(), "sysctl value")?,
                key,
                most_algorithms,
            });
        }
        Ok(Sysctls { entries })
    }

    /// Writes them through the host's /proc. Allocation-free.
    pub(crate) fn write(&self) -> Result<(), Failure> {
        for (i, sysctl) in self.entries.iter().enumerate() {
            let fail = |errno| Failure {
                stage: Stage::Init,
                step: SYSCTL_STEP + i as u32,
                errno,
            };
            if let Some(most) = sysctl.most_algorithms {
                congestion_controls_loaded(sysctl.value.as_bytes(), most).map_err(fail)?;
            }
            write_file(&sysctl.path, sysctl.value.as_bytes()).map_err(fail)?;
        }
        Ok(())
    }

    /// Names the sysctl of a failure's step code, if it is one.
    pub(crate) fn explain(&self, step: u32) -> Option<String> {
        let i = step.checked_sub(SYSCTL_STEP)? as usize;
        self.entries.get(i).map(|sysctl| {
            format!(
                "setting sysctl {}={}",
                sysctl.key,
                sysctl.value.to_string_lossy()
            )
        })
    }
}

/// Strings and the NULL-terminated pointer array execve takes, built once.
struct StringArray {
    strings: Vec<CString>,
    pointers: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into the CStrings of the same value, which are never mutated or
// dropped while it lives (CString data is on the heap and does not move with the Vec), so
// sharing or sending it shares or sends read-only pointers to immutable data.
unsafe impl Sync for StringArray {}
// SAFETY: as above.
unsafe impl Send for StringArray {}

impl StringArray {
    fn new(strings: Vec<CString>) -> StringArray {
        let pointers = strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        StringArray { strings, pointers }
    }
}

/// Capability sets as capset(2) and prctl(2) take them.
#[derive(Debug, Clone, Copy, Default)]
struct Caps {
    bounding: CapSet,
    effective: CapSet,
    permitted: CapSet,
    inheritable: CapSet,
    ambient: CapSet,
}

/// The init's work after its mounts, prepared.
pub(crate) struct InitPlan {
    hostname: Option<CString>,
    domainname: Option<CString>,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    umask: Option<u32>,
    /// The execution domain (`linux.personality`), PER_LINUX unless the spec asks LINUX32:
    /// never the runtime's own, whose flags (ADDR_NO_RANDOMIZE, under `setarch -R`) would pass
    /// to the container.
    personality: libc::c_ulong,
    caps: Caps,
    last_cap: u8,
    no_new_privs: bool,
    cwd: CString,
    args: StringArray,
    env: StringArray,
    search_path: Vec<CString>,
    stdio: [RawFd; 3],
    /// A terminal: a pty made in the container's devpts, its master handed to the runtime.
    terminal: bool,
    filters: Filters,
    /// The spec's own seccomp profile, installed after eci's filters.
    profile: Profile,
    /// The AppArmor profile to confine the program with, from its exec on.
    apparmor: Option<OnExec>,
    /// Sends [`MOUNTS_FINAL`] before anything else.
    announces_final_mounts: bool,
}

/// Why a spec's process cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A string with a NUL byte.
    #[error("{0} contains a NUL byte")]
    Nul(&'static str),
    /// No process.
    #[error("the spec has no process")]
    Missing,
    /// A sysctl key with an empty, `.` or `..` part
    /// ([`eci_policy::harden::sysctl_parts`]).
    #[error("sysctl {0:?} is not a sysctl name")]
    SysctlName(String),
    /// `linux.personality.flags`, which eci does not apply.
    #[error(
        "linux.personality flags {0:?} are not supported (only the LINUX and LINUX32 domains)"
    )]
    PersonalityFlags(Vec<String>),
}

/// The execution domain `linux.personality` asks for. Its flags are refused: none changes what
/// the container may do to the host, but none is applied either, and a flag asked for and
/// silently dropped would run the program otherwise than the spec says.
fn personality_of(spec: &Spec) -> Result<libc::c_ulong, ProcessError> {
    use oci_spec::runtime::LinuxPersonalityDomain;
    const PER_LINUX: libc::c_ulong = 0x0000;
    const PER_LINUX32: libc::c_ulong = 0x0008;
    let Some(personality) = spec.linux().as_ref().and_then(|l| l.personality().clone()) else {
        return Ok(PER_LINUX);
    };
    if let Some(flags) = personality.flags().as_ref().filter(|f| !f.is_empty()) {
        return Err(ProcessError::PersonalityFlags(flags.clone()));
    }
    Ok(match personality.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    })
}

fn cstr(bytes: &[u8], what: &'static str) -> Result<CString, ProcessError> {
    CString::new(bytes).map_err(|_| ProcessError::Nul(what))
}

impl InitPlan {
    /// The runtime's descriptors the plan uses (its standard streams'), for a process that
    /// closes all others.
    pub(crate) fn descriptors(&self) -> [RawFd; 3] {
        self.stdio
    }

    pub(crate) fn new(
        spec: &Spec,
        stdio: [RawFd; 3],
        filters: Filters,
        profile: Profile,
        last_cap: u8,
    ) -> Result<InitPlan, ProcessError> {
        let process: &Process = spec.process().as_ref().ok_or(ProcessError::Missing)?;
        let args: Vec<CString> = process
            .args()
            .iter()
            .flatten()
            .map(|a| cstr(a.as_bytes(), "process.args"))
            .collect::<Result<_, _>>()?;
        let env: Vec<CString> = process
            .env()
            .iter()
            .flatten()
            .map(|e| cstr(e.as_bytes(), "process.env"))
            .collect::<Result<_, _>>()?;
        let path = process
            .env()
            .iter()
            .flatten()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        let search_path = path
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstr(d.as_bytes(), "PATH"))
            .collect::<Result<_, _>>()?;
        let caps = process
            .capabilities()
            .as_ref()
            .map_or(Caps::default(), |c| {
                let set = |s: &Option<oci_spec::runtime::Capabilities>| {
                    s.as_ref().map_or(CapSet::default(), CapSet::from_spec)
                };
                Caps {
                    bounding: set(c.bounding()),
                    effective: set(c.effective()),
                    permitted: set(c.permitted()),
                    inheritable: set(c.inheritable()),
                    ambient: set(c.ambient()),
                }
            });
        let user = process.user();
        Ok(InitPlan {
            // An empty name sets nothing, as runc reads it (and a joined UTS namespace is
            // another container's: the hardening lets only empty names through there).
            hostname: spec
                .hostname()
                .as_ref()
                .filter(|h| !h.is_empty())
                .map(|h| cstr(h.as_bytes(), "hostname"))
                .transpose()?,
            domainname: spec
                .domainname()
                .as_ref()
                .filter(|d| !d.is_empty())
                .map(|d| cstr(d.as_bytes(), "domainname"))
                .transpose()?,
            uid: user.uid(),
            gid: user.gid(),
            groups: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask(),
            personality: personality_of(spec)?,
            caps,
            last_cap,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            cwd: cstr(process.cwd().as_os_str().as_bytes(), "process.cwd")?,
            args: StringArray::new(args),
            env: StringArray::new(env),
            search_path,
            stdio,
            terminal: process.terminal() == Some(true),
            filters,
            profile,
            apparmor: process
                .apparmor_profile()
                .as_deref()
                .and_then(OnExec::prepare),
            announces_final_mounts: false,
        })
    }

    /// Has the init say [`MOUNTS_FINAL`] as it begins: its mounts are done by then (the
    /// deferred ones included), and nothing it does afterwards mounts, so the runtime may read
    /// the initial mount table while the init installs its filters, rather than after.
    pub(crate) fn announcing_final_mounts(mut self) -> InitPlan {
        self.announces_final_mounts = true;
        self
    }

    /// The spec's seccomp profile, compiled.
    pub(crate) fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The program the init will run.
    pub(crate) fn program(&self) -> String {
        self.args
            .strings
            .first()
            .map_or_else(String::new, |a| a.to_string_lossy().into_owned())
    }

    /// Whether the process gets a terminal (its master comes to the runtime before the
    /// listener).
    pub(crate) fn terminal(&self) -> bool {
        self.terminal
    }

    /// Runs in the init: returns only on failure.
    pub(crate) fn run(&self, channel: &Channel) -> Failure {
        match self.run_steps(channel) {
            Ok(never) => match never {},
            Err((step, errno)) => Failure {
                stage: Stage::Init,
                step,
                errno,
            },
        }
    }

    fn run_steps(&self, channel: &Channel) -> Result<std::convert::Infallible, (u32, Errno)> {
        let at = |step: u32| move |errno: Errno| (step, errno);
        if self.announces_final_mounts {
            channel
                .send(Message::of(MOUNTS_FINAL))
                .map_err(at(step::ANNOUNCE_MOUNTS))?;
        }
        if let Some(name) = &self.hostname {
            // SAFETY: name is a valid buffer of the given length.
            check_int(unsafe { libc::sethostname(name.as_ptr(), name.as_bytes().len()) })
                .map_err(at(step::HOSTNAME))?;
        }
        if let Some(name) = &self.domainname {
            // SAFETY: name is a valid buffer of the given length.
            check_int(unsafe { libc::setdomainname(name.as_ptr(), name.as_bytes().len()) })
                .map_err(at(step::DOMAINNAME))?;
        }
        // The pty comes from the container's own devpts; the runtime gets its master first.
        let terminal = if self.terminal {
            Some(open_terminal(channel)?)
        } else {
            None
        };
        let listener = self
            .filters
            .install()
            .map_err(|(_, errno)| (step::SECCOMP, errno))?;
        let sent = channel.send_with_fds(Message::of(LISTENER), &[listener]);
        // A container that kept its listener could answer its own mount calls.
        sys::close(listener);
        sent.map_err(at(step::SEND_LISTENER))?;
        // Before start, so that a profile the host lacks fails the create, as under runc; it
        // takes effect at the exec. Before the identity, after which /proc/self is no longer
        // the init's to write.
        if let Some(apparmor) = &self.apparmor {
            let (file, request) = apparmor.request();
            write_proc_file(file, request).map_err(at(step::APPARMOR))?;
        }
        match channel.recv() {
            Ok(Some((msg, _))) if msg.kind == START => {}
            Ok(_) => sys::exit(1),
            Err(errno) => return Err((step::WAIT_START, errno)),
        }
        match terminal {
            Some(slave) => become_terminal_owner(slave)?,
            None => self.set_stdio().map_err(at(step::STDIO))?,
        }
        // Nothing of the runtime's survives exec; the channel closes on exec, which tells the
        // runtime that exec succeeded. Before the profile, which need not allow these.
        sys::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC).map_err(at(step::CLOSE_FDS))?;
        reset_signals();
        if let Some(mask) = self.umask {
            // SAFETY: umask cannot fail.
            unsafe { libc::umask(mask as libc::mode_t) };
        }
        // SAFETY: personality takes an integer.
        check_int(unsafe { libc::personality(self.personality) }).map_err(at(step::PERSONALITY))?;
        // The profile applies to what follows. Without no_new_privs installing it takes
        // CAP_SYS_ADMIN, which the identity may drop: first, then (runc's order too).
        if !self.no_new_privs {
            self.profile.install().map_err(at(step::PROFILE))?;
        }
        self.set_identity()?;
        if self.no_new_privs {
            // SAFETY: prctl with integer arguments.
            check_int(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
                .map_err(at(step::NO_NEW_PRIVS))?;
        }
        // SAFETY: cwd is NUL-terminated.
        check_int(unsafe { libc::chdir(self.cwd.as_ptr()) }).map_err(at(step::CWD))?;
        inside_root().map_err(at(step::CWD_INSIDE_ROOT))?;
        // With no_new_privs, as late as may be: only the exec follows.
        if self.no_new_privs {
            self.profile.install().map_err(at(step::PROFILE))?;
        }
        Err((step::EXEC, self.exec()))
    }

    /// Puts the runtime-supplied descriptors at 0, 1 and 2.
    fn set_stdio(&self) -> SysResult<()> {
        let mut moved = [-1; 3];
        for (i, &fd) in self.stdio.iter().enumerate() {
            if fd >= 0 {
                // First out of the way of 0-2, so one source cannot be overwritten by another.
                // SAFETY: fcntl with integer arguments.
                moved[i] = check_int(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) })?;
            }
        }
        for (target, &fd) in moved.iter().enumerate() {
            if fd >= 0 {
                // SAFETY: dup2 with integer arguments; the copy at `target` is not close-on-exec.
                check_int(unsafe { libc::dup2(fd, target as RawFd) })?;
                sys::close(fd);
            }
        }
        Ok(())
    }

    /// Groups, then the bounding set (dropping needs CAP_SETPCAP, which a switch to a non-root
    /// uid clears from the effective set), then the uid with capabilities kept, then the final
    /// capability sets.
    ///
    /// Each change of the effective gid or uid sets the dumpable flag to the host's
    /// `fs.suid_dumpable`; where that is 1, the process (in the container's PID namespace,
    /// holding the runtime's channel and a copy of its memory, and with no_new_privileges
    /// before its seccomp profile) could be traced by container root until the flag is
    /// cleared again. So it is cleared right after each change, not once at the end, which
    /// narrows the window to the return from one system call but does not close it: a tracer
    /// that attaches in it stays attached. (Root's identity is taken out of the container's
    /// sight, see `eci_ns::spawn`; this path is for a process given another user.)
    fn set_identity(&self) -> Result<(), (u32, Errno)> {
        let at = |step: u32| move |errno: Errno| (step, errno);
        // SAFETY: plain syscalls; groups is a valid array of the given length.
        unsafe {
            check_int(libc::setgroups(self.groups.len(), self.groups.as_ptr()))
                .map_err(at(step::GROUPS))?;
            check_int(libc::setresgid(self.gid, self.gid, self.gid)).map_err(at(step::GID))?;
        }
        sys::set_undumpable().map_err(at(step::UNDUMPABLE))?;
        for cap in (0..=self.last_cap).filter(|cap| !self.caps.bounding.has(*cap)) {
            // SAFETY: prctl with integer arguments.
            check_int(unsafe {
                libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0)
            })
            .map_err(at(step::BOUNDING))?;
        }
        // SAFETY: plain syscalls with integer arguments.
        unsafe {
            check_int(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0)).map_err(at(step::UID))?;
            check_int(libc::setresuid(self.uid, self.uid, self.uid)).map_err(at(step::UID))?;
        }
        sys::set_undumpable().map_err(at(step::UNDUMPABLE))?;
        // SAFETY: prctl with integer arguments.
        check_int(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) })
            .map_err(at(step::UID))?;
        capset(self.caps).map_err(at(step::CAPSET))?;
        for cap in (0..=self.last_cap).filter(|cap| self.caps.ambient.has(*cap)) {
            // SAFETY: prctl with integer arguments.
            check_int(unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    libc::c_ulong::from(cap),
                    0,
                    0,
                )
            })
            .map_err(at(step::AMBIENT))?;
        }
        Ok(())
    }

    /// execve, searching PATH like execvp when the program has no slash. Returns the error.
    fn exec(&self) -> Errno {
        let Some(program) = self.args.strings.first() else {
            return Errno(libc::ENOENT);
        };
        if program.as_bytes().contains(&b'/') {
            return execve(program, &self.args, &self.env);
        }
        let program = program.as_bytes();
        let mut best = Errno(libc::ENOENT);
        let mut buf = [0u8; 4096];
        for dir in &self.search_path {
            let dir = dir.as_bytes();
            let len = dir.len() + 1 + program.len();
            if len >= buf.len() {
                continue;
            }
            buf[..dir.len()].copy_from_slice(dir);
            buf[dir.len()] = b'/';
            buf[dir.len() + 1..len].copy_from_slice(program);
            buf[len] = 0;
            let Ok(path) = CStr::from_bytes_with_nul(&buf[..=len]) else {
                continue;
            };
            match execve(path, &self.args, &self.env) {
                Errno(libc::ENOENT) | Errno(libc::ENOTDIR) => {}
                Errno(libc::EACCES) => best = Errno(libc::EACCES),
                other => return other,
            }
        }
        best
    }

    /// What a failed init step means, in words.
    pub(crate) fn explain(&self, step: u32) -> String {
        let program = self.program();
        match step {
            step::ANNOUNCE_MOUNTS => "telling the runtime its mounts are done".into(),
            step::HOSTNAME => "setting the hostname".into(),
            step::DOMAINNAME => "setting the domain name".into(),
            step::SECCOMP => "installing the seccomp filters".into(),
            step::SEND_LISTENER => "handing the seccomp listener to the runtime".into(),
            step::WAIT_START => "waiting for start".into(),
            step::CONSOLE => {
                "opening a terminal in the container's /dev/pts (its ptmx must be a devpts \
                 ptmx, and the pty it gives one of the same devpts)"
                    .into()
            }
            step::SEND_CONSOLE => "handing the terminal to the runtime".into(),
            step::CONTROLLING_TERMINAL => "making the terminal the process's own".into(),
            step::STDIO => "setting up stdin, stdout and stderr".into(),
            step::GROUPS => format!("setting supplementary groups {:?}", self.groups),
            step::GID => format!("switching to gid {}", self.gid),
            step::UID => format!("switching to uid {}", self.uid),
            step::BOUNDING => "limiting the capability bounding set".into(),
            step::CAPSET => "setting capabilities".into(),
            step::AMBIENT => "raising ambient capabilities".into(),
            step::UNDUMPABLE => "staying undumpable after taking the process's identity".into(),
            step::PERSONALITY => format!("setting the execution domain {:#x}", self.personality),
            step::NO_NEW_PRIVS => "setting no_new_privs".into(),
            step::CWD => format!(
                "changing to the working directory {}",
                self.cwd.to_string_lossy()
            ),
            step::CWD_INSIDE_ROOT => format!(
                "checking that the working directory {} is inside the container's root (it is \
                 not, or its directory was removed: refused, as a way out of the container)",
                self.cwd.to_string_lossy()
            ),
            step::CLOSE_FDS => "closing the runtime's descriptors".into(),
            step::EXEC => format!("executing '{program}' in the container"),
            step::PROFILE => "installing the spec's seccomp profile".into(),
            step::APPARMOR => match &self.apparmor {
                Some(apparmor) => format!("applying AppArmor profile '{}'", apparmor.profile()),
                None => "applying the AppArmor profile".into(),
            },
            other => format!("init step {other}"),
        }
    }
}

/// devpts's magic number (statfs(2)).
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// The status of `fd` if it is a character device of a devpts filesystem, else ENOTTY (also
/// when either call fails: on a FUSE file the container's server answers them, with any
/// errno; it cannot change the magic number the kernel gives). Async-signal-safe.
fn devpts_node(fd: RawFd) -> SysResult<libc::stat> {
    // SAFETY: all-zero statfs and stat are valid out-buffers for the calls that fill them.
    let (mut fs, mut st): (libc::statfs, libc::stat) = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs and fstat write into the buffers passed.
    let read = unsafe { libc::fstatfs(fd, &mut fs) == 0 && libc::fstat(fd, &mut st) == 0 };
    if !read {
        return Err(Errno(libc::ENOTTY));
    }
    // f_type's type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let devpts = fs.f_type as i64 == DEVPTS_SUPER_MAGIC;
    match devpts && st.st_mode & libc::S_IFMT == libc::S_IFCHR {
        true => Ok(st),
        false => Err(Errno(libc::ENOTTY)),
    }
}

/// The pty slave TIOCGPTPEER gave for `master` (whose status is `ptmx`), checked to be a pty
/// of the same devpts: a number the answer merely names could be any descriptor the process
/// holds, a terminal of the host's among them. Async-signal-safe.
fn peer_of(master: RawFd, ptmx: &libc::stat) -> SysResult<RawFd> {
    // UNIX98 pty slaves: majors 136 to 143.
    const SLAVE_MAJORS: std::ops::RangeInclusive<u32> = 136..=143;
    // SAFETY: an ioctl on a descriptor we own, with the flags it takes.
    let slave = check_int(unsafe {
        libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY)
    })?;
    match devpts_node(slave) {
        Ok(st) if st.st_dev == ptmx.st_dev && SLAVE_MAJORS.contains(&libc::major(st.st_rdev)) => {
            Ok(slave)
        }
        // Not closed: the number may name a descriptor of the process's that is not this
        // pty's (it is closed at exec, close-on-exec as all of them).
        _ => Err(Errno(libc::ENOTTY)),
    }
}

/// Opens a pty in the container's devpts and sends its master to the runtime; returns the
/// slave. The container decides what /dev/pts/ptmx is (a FUSE file bound over it may answer
/// every ioctl as it likes): the file opened must be a devpts ptmx, and the slave a pty of the
/// same devpts (as runc checks). After fork: async-signal-safe only.
fn open_terminal(channel: &Channel) -> Result<RawFd, (u32, Errno)> {
    let at = |step: u32| move |errno: Errno| (step, errno);
    // SAFETY: a NUL-terminated path.
    let master = check_int(unsafe {
        libc::open(
            c"/dev/pts/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })
    .map_err(at(step::CONSOLE))?;
    let ptmx = devpts_node(master).and_then(|st| match st.st_rdev == libc::makedev(5, 2) {
        true => Ok(st),
        false => Err(Errno(libc::ENOTTY)),
    });
    let unlock: libc::c_int = 0;
    let slave = ptmx.and_then(|ptmx| {
        // SAFETY: an ioctl on the master we just opened, with the argument it expects.
        check_int(unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) })?;
        peer_of(master, &ptmx)
    });
    let sent = slave.and_then(|_| channel.send_with_fds(Message::of(CONSOLE), &[master]));
    sys::close(master);
    match (slave, sent) {
        (Ok(slave), Ok(())) => Ok(slave),
        (Ok(slave), Err(errno)) => {
            sys::close(slave);
            Err((step::SEND_CONSOLE, errno))
        }
        (Err(errno), _) => Err((step::CONSOLE, errno)),
    }
}

/// A session of its own with the pty as its controlling terminal and as stdin, stdout, stderr.
fn become_terminal_owner(slave: RawFd) -> Result<(), (u32, Errno)> {
    let at = |step: u32| move |errno: Errno| (step, errno);
    // SAFETY: plain syscalls on a descriptor we own.
    unsafe {
        // A process eci_ns spawned may already lead a session of its own.
        if libc::getsid(0) != libc::getpid() {
            check_int(libc::setsid()).map_err(at(step::CONTROLLING_TERMINAL))?;
        }
        check_int(libc::ioctl(slave, libc::TIOCSCTTY, 0))
            .map_err(at(step::CONTROLLING_TERMINAL))?;
        for target in 0..3 {
            check_int(libc::dup2(slave, target)).map_err(at(step::STDIO))?;
        }
    }
    if slave > 2 {
        sys::close(slave);
    }
    Ok(())
}

/// Gives the program default signal handling: ignored signals (Rust ignores SIGPIPE, and the
/// runtime's caller may ignore others) and a blocked mask would otherwise survive exec.
fn reset_signals() {
    sys::reset_signal_actions(sys::Keep::Nothing);
    // SAFETY: an all-zero sigset_t is a valid argument to sigemptyset; sigprocmask is
    // async-signal-safe.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

fn execve(path: &CStr, args: &StringArray, env: &StringArray) -> Errno {
    // SAFETY: path is NUL-terminated; both arrays are NULL-terminated arrays of pointers to
    // NUL-terminated strings they own.
    unsafe { libc::execve(path.as_ptr(), args.pointers.as_ptr(), env.pointers.as_ptr()) };
    Errno::last()
}

fn write_file(path: &CStr, value: &[u8]) -> SysResult<()> {
    let fd = open_for_writing(path)?;
    let written = write_to(fd, value);
    sys::close(fd);
    written
}

/// Fails (ENOENT) when the working directory is not under the root: the kernel's getcwd(2)
/// then begins the path with "(unreachable)", or fails with ENOENT if the directory has been
/// removed (where it is cannot be told; runc refuses both too). The process never runs in a
/// directory outside its root, however its `cwd` got there (a magic link of /proc).
/// Allocation-free, for use after fork.
fn inside_root() -> SysResult<()> {
    let mut path = [0u8; libc::PATH_MAX as usize];
    // SAFETY: getcwd writes at most `path.len()` bytes into the buffer.
    let length = unsafe { libc::syscall(libc::SYS_getcwd, path.as_mut_ptr(), path.len()) };
    check(length)?;
    match path[0] {
        b'/' => Ok(()),
        _ => Err(Errno(libc::ENOENT)),
    }
}

/// [`write_file`] to a file of the procfs mounted at /proc: the container's mounts could put
/// a file of another filesystem at its path, or another procfs file (bound over it), which
/// would take the write and apply nothing (EXDEV then).
fn write_proc_file(path: &CStr, value: &[u8]) -> SysResult<()> {
    let fd = open_for_writing(path)?;
    let written = on_proc_mount(fd).and_then(|()| write_to(fd, value));
    sys::close(fd);
    written
}

/// Fails with EXDEV unless `fd` is a procfs file on the mount at /proc itself.
fn on_proc_mount(fd: RawFd) -> SysResult<()> {
    // SAFETY: an all-zero statfs is a valid value for fstatfs to fill in.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open and fs is a valid statfs to write to.
    check_int(unsafe { libc::fstatfs(fd, &mut fs) })?;
    let file_mount = sys::mount_id_at(fd, c"", libc::AT_EMPTY_PATH)?;
    let proc_mount = sys::mount_id_at(libc::AT_FDCWD, c"/proc", 0)?;
    match fs.f_type == libc::PROC_SUPER_MAGIC && file_mount == proc_mount {
        true => Ok(()),
        false => Err(Errno(libc::EXDEV)),
    }
}

fn open_for_writing(path: &CStr) -> SysResult<RawFd> {
    // SAFETY: path is NUL-terminated.
    check_int(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })
}

fn write_to(fd: RawFd, value: &[u8]) -> SysResult<()> {
    // SAFETY: value is a valid buffer of the given length.
    check(unsafe { libc::write(fd, value.as_ptr().cast(), value.len()) } as libc::c_long).map(drop)
}

fn capset(caps: Caps) -> SysResult<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let half = |set: CapSet, i: u32| (set.0 >> (32 * i)) as u32;
    let data: [Data; 2] = std::array::from_fn(|i| {
        let i = i as u32;
        Data {
            effective: half(caps.effective, i),
            permitted: half(caps.permitted, i),
            inheritable: half(caps.inheritable, i),
        }
    });
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    // SAFETY: header and data are valid version-3 capset arguments.
    check(unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_congestion_control_is_set_only_to_algorithms_loaded_already() {
        let available = b"reno cubic\n";
        assert!(names_all_available(b"cubic", available));
        assert!(names_all_available(b"reno cubic\n", available));
        assert!(
            !names_all_available(b"bbr", available),
            "would load tcp_bbr"
        );
        assert!(!names_all_available(b"cubic bbr", available));
        assert!(!names_all_available(b"cub", available));
        assert!(!names_all_available(b"  \n", available));
    }

    proptest::proptest! {
        #[test]
        fn a_name_passes_only_if_listed(name in "[a-z]{1,8}", listed in proptest::collection::vec("[a-z]{1,8}", 0..5)) {
            let available = listed.join(" ");
            proptest::prop_assert_eq!(
                names_all_available(name.as_bytes(), available.as_bytes()),
                listed.contains(&name)
            );
        }
    }

    #[test]
    fn a_procfs_write_lands_only_in_procfs() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("exec");
        std::fs::write(&fake, "").unwrap();
        let fake = CString::new(fake.as_os_str().as_bytes()).unwrap();
        // A file of another filesystem where the procfs one should be takes nothing.
        assert_eq!(write_proc_file(&fake, b"exec x"), Err(Errno(libc::EXDEV)));
        assert_eq!(std::fs::read(fake.to_str().unwrap()).unwrap(), b"");
        // procfs's own file takes the write (this thread's name, on a thread of its own).
        std::thread::spawn(|| {
            write_proc_file(c"/proc/thread-self/comm", b"eci-procfs").unwrap();
            let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
            assert_eq!(name.trim(), "eci-procfs");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_procfs_file_bound_over_the_one_asked_for_takes_nothing() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        // In a child with a mount namespace of its own: its comm file bound over its
        // attr/exec, as a container's mounts could bind one procfs file over another.
        let (source, target) = (c"/proc/self/comm", c"/proc/self/attr/exec");
        let bind = (libc::MS_BIND, libc::MS_PRIVATE | libc::MS_REC);
        // SAFETY: the child makes syscalls only, on strings made before the fork, then exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: syscalls with valid NUL-terminated paths; the child exits with the result.
            let code = unsafe {
                let private = libc::unshare(libc::CLONE_NEWNS) == 0
                    && libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        bind.1,
                        std::ptr::null(),
                    ) == 0;
                let bound = private
                    && libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        bind.0,
                        std::ptr::null(),
                    ) == 0;
                match (bound, write_proc_file(target, b"exec x")) {
                    (false, _) => 2,
                    (true, Err(Errno(libc::EXDEV))) => 0,
                    (true, _) => 1,
                }
            };
            // SAFETY: ends the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let status = eci_ns::sys::waitpid(pid).unwrap();
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        assert_eq!(
            code,
            Some(0),
            "1: the bound file took the write; 2: no bind"
        );
    }
}
