//! Vetting and performing a container's `mount` and `umount2` calls.
//!
//! The container's helper lives in the container's user namespace as its root and holds a
//! descriptor of the listener; it receives the notifications itself (one hop from the caller,
//! with the kernel's synchronous wake-up) while the supervisor keeps its own descriptor open and
//! watches the helper and the container's init. For each call the helper, without allocating:
//!
//! 1. copies the arguments out of the caller's memory;
//! 2. checks that the call is still pending (SECCOMP_IOCTL_NOTIF_ID_VALID): the pid it read from
//!    still names the caller;
//! 3. opens the caller's `/proc/PID` (which pins that very process) and checks again;
//! 4. enters the caller's mount namespace, root and working directory, gathers the facts a
//!    verdict needs (the caller's capabilities and user namespace, whether the target is an
//!    initial mount), asks [`eci_policy::mount`] for the verdict and, if allowed, performs the call
//!    itself from the copies;
//! 5. answers the notification with the result.
//!
//! The caller's memory is never read again, so changing it after the check changes nothing, and
//! no vetted call is ever answered with "continue" (only the calls the helper merely observes,
//! [`crate::filters::observed_syscalls`], and sysinfo when its emulation is off, are let run).
//! A refusal is also reported to the runtime, for its log. If the helper dies, the supervisor answers the call it was handling (see
//! [`InFlight`]) and starts a new helper on the same listener, which
//! serves the calls that waited meanwhile; a helper that keeps dying is not replaced, and the
//! supervisor then closes its own descriptor, and the kernel answers ENOSYS to the container's
//! mount calls. If the runtime dies, the helper becomes an *orphan*: it answers every vetted
//! call with ENOSYS itself (and lets observed ones run) but keeps the listener, so that a new runtime can find it
//! ([`find_orphan`]) and take the listener over ([`MountVetter::take_over`]). No call is ever
//! performed unvetted.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use eci_ns::channel::{Channel, ReceivedFds};
use eci_ns::failure::{Failure, Stage};
use eci_ns::helper::{Helper, HelperError, HelperSpec, MAX_REQUEST, MAX_RESPONSE};
use eci_ns::sys::{self, check, check_int, Errno, SysResult};
use eci_ns::yielding::Yielding;
use eci_ns::{Namespaces, PidFd};
use eci_policy::mount::{
    classify_call, decide_mount, decide_options, decide_umount, descriptor_path, path_arguments,
    Caller, InitialMount, MountKind, MountPolicy, Rule, Target, Verdict,
};

use crate::creds::Creds;
use crate::fresh::{enter_own_namespace, spawn_host_half, take_host_half, Fresh, HostHalf, Masks};
use crate::notify::{id_valid, read_cstr, respond, InFlight, Listener, Notification, Reply};
use crate::supervisor::{EventOutcome, Handler};

const CAP_SYS_ADMIN: u32 = 21;
/// What the helper knows about the container, fixed when it starts.
#[derive(Debug, Clone)]
pub struct HelperConfig {
    /// What the container may do.
    pub policy: MountPolicy,
    /// Inode of the container's user namespace.
    pub userns: u64,
    /// The container's user namespace, pinned when it was created: every helper joins it (a
    /// replacement too), whatever the init has joined or made since. Without it helpers join
    /// the init's.
    pub userns_fd: Option<Arc<OwnedFd>>,
    /// The initial mounts: (mount ID, read-only), sorted by ID.
    pub initial: Vec<(u32, bool)>,
    /// What a procfs or sysfs the container mounts itself gets masked, as its own are.
    pub masks: Masks,
    /// Where sysinfo(2) answers come from; `None` lets sysinfo through to the kernel.
    pub sysinfo: Option<SysinfoSource>,
    /// A cgroup v1 `tasks` file, open for writing, of the cgroup every helper moves itself
    /// into before it serves (the container's memory cgroup): what the kernel allocates for
    /// the mounts it performs is then charged to the container, within its limit, and not to
    /// the runtime. A helper has one thread, so moving that thread moves all of it, and a
    /// thread moving itself skips the global lock (and its RCU grace period, 10 ms and more
    /// here) that writing a pid to `cgroup.procs` takes. `None` leaves helpers in the
    /// runtime's cgroups.
    pub charged_to: Option<Arc<OwnedFd>>,
}

/// Asks the OOM killer to pass over this helper (oom_score_adj -999), where the runtime may
/// (CAP_SYS_RESOURCE); else it keeps the runtime's value. Its resident pages are mostly the
/// runtime's, shared since the fork and charged to the runtime's cgroup: killing it would free
/// nothing of the container's memory, and would only cost the container its mount calls
/// (after five replacements within a minute, for good). Allocation-free, for use after fork.
fn avoid_oom_kills(host_proc: RawFd) {
    // SAFETY: a NUL-terminated path relative to a directory descriptor we hold.
    let file = unsafe {
        libc::openat(
            host_proc,
            c"self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        )
    };
    if file >= 0 {
        // SAFETY: writes from a static buffer of the given length.
        unsafe { libc::write(file, b"-999".as_ptr().cast(), 4) };
        sys::close(file);
    }
}

/// Moves the calling thread into the cgroup whose v1 `tasks` file is `tasks`.
/// Allocation-free, for use after fork.
fn join_cgroup(tasks: RawFd) -> Result<(), Errno> {
    // SAFETY: writes one byte from a static buffer.
    let written = unsafe { libc::write(tasks, b"0".as_ptr().cast(), 1) };
    match written {
        1 => Ok(()),
        n if n < 0 => Err(Errno::last()),
        _ => Err(Errno(libc::EIO)),
    }
}

/// Computes a container's sysinfo(2) answer (in the runtime, not in the helper).
#[derive(Clone)]
pub struct SysinfoSource(pub Arc<dyn Fn() -> Option<libc::sysinfo> + Send + Sync>);

impl std::fmt::Debug for SysinfoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SysinfoSource")
    }
}

/// Marks an event as a sysinfo call for the runtime to answer (no pid is this large).
const SYSINFO_EVENT: u32 = u32::MAX;

/// The helper's part of a sysinfo call: it reads nothing of the caller, so when emulation is
/// off the kernel may run the call itself; when on, the runtime computes the answer (which
/// needs allocation) and the helper hands it the call, waiting for room on the channel rather
/// than dropping it.
fn forward_sysinfo(helper: &HelperState<'_>, n: &Notification, channel: &Channel) {
    let fds = helper.fds;
    if helper.config.sysinfo.is_none() {
        let _ = respond(fds.listener, n.id, Reply::Continue);
        return;
    }
    let mut event = [0u8; 24];
    event[..4].copy_from_slice(&SYSINFO_EVENT.to_ne_bytes());
    event[4..12].copy_from_slice(&n.id.to_ne_bytes());
    event[12..16].copy_from_slice(&n.pid.to_ne_bytes());
    event[16..24].copy_from_slice(&n.args[0].to_ne_bytes());
    if channel.send_bytes(&event, &[]).is_err() {
        let _ = respond(fds.listener, n.id, Reply::Error(libc::ENOSYS));
    } else {
        helper.forwarded.remember(n.id);
    }
}

/// The sysinfo calls last handed to the runtime. The helper cannot tell which the runtime has
/// answered; if the runtime dies, the helper answers them all (an answered one is refused by the
/// kernel, ENOENT, and notification IDs are never reused), so that none waits forever.
#[derive(Debug, Default)]
struct Forwarded {
    ids: [AtomicU64; 32],
    next: AtomicU32,
}

impl Forwarded {
    fn remember(&self, id: u64) {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) as usize % self.ids.len();
        self.ids[slot].store(id, Ordering::Relaxed);
    }

    fn refuse_all(&self, listener: RawFd) {
        for id in &self.ids {
            let id = id.swap(0, Ordering::Relaxed);
            if id != 0 {
                let _ = respond(listener, id, Reply::Error(libc::ENOSYS));
            }
        }
    }
}

/// The name a mount helper takes once its runtime is gone, by which [`find_orphan`] knows it.
pub const ORPHAN_NAME: &CStr = c"eci-orphan";

/// The name an orphan takes while it is held ([`hold_orphan`]): it answers no call then.
pub const HELD_ORPHAN_NAME: &CStr = c"eci-orphan-held";

/// How long an orphan stays held unless it is stopped or let go first: a runtime that dies
/// while taking over must not leave the container's calls waiting for good.
const HOLD_LIMIT_MS: i64 = 5_000;

/// The signals an orphan takes: stop, hold, let go.
const ORPHAN_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2];

/// What a mount helper does once its runtime is gone: nobody can vet now, so it answers every
/// trapped call with ENOSYS (what the kernel answers when no listener is left; observed calls,
/// which decide nothing, it lets run), but it keeps the
/// listener open, so that a new runtime can take it over ([`MountVetter::take_over`]). SIGUSR1
/// holds it (it answers nothing, so that the calls wait for the new helper; [`hold_orphan`]),
/// SIGUSR2 lets it go on. It exits on SIGTERM (the new runtime's word that it holds the
/// listener) or once no process uses the filter any more (the container is gone). Runs after
/// fork: async-signal-safe only.
fn refuse_until_taken_over(helper: &HelperState<'_>) {
    let listener = helper.fds.listener;
    // SAFETY: sigaction and sigprocmask with valid, zero-initialised structures; prctl with a
    // NUL-terminated name of at most 16 bytes; signalfd with a valid set.
    let signals = unsafe {
        // The host half exits with its socket; its exit needs no reaping.
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        libc::sigaction(libc::SIGCHLD, &ignore, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in ORPHAN_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
        // Named only once the signals are blocked: whoever finds the name may send them.
        libc::prctl(libc::PR_SET_NAME, ORPHAN_NAME.as_ptr());
        fd
    };
    helper.half.let_go();
    helper.forwarded.refuse_all(listener);
    if signals < 0 {
        return;
    }
    let mut fds = [
        libc::pollfd {
            fd: listener,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: signals,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // While held: until when (CLOCK_MONOTONIC milliseconds).
    let mut held_until: Option<i64> = None;
    loop {
        // Held, it does not ask for calls; it still sees the listener hang up.
        fds[0].events = if held_until.is_some() {
            0
        } else {
            libc::POLLIN
        };
        let timeout =
            held_until.map_or(-1, |until| (until - monotonic_ms()).clamp(0, 1_000) as i32);
        // SAFETY: fds is a valid array of two pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) } < 0 {
            if Errno::last().0 == libc::EINTR {
                continue;
            }
            return;
        }
        if held_until.is_some_and(|until| monotonic_ms() >= until) {
            held_until = None;
            name_orphan(ORPHAN_NAME);
        }
        if fds[0].revents & libc::POLLIN != 0 && held_until.is_none() {
            match Listener::receive_raw(listener) {
                // Observed calls decide nothing: they run; the next helper remembers nothing.
                Ok(Some(n)) if crate::filters::is_observed(n.nr) => {
                    let _ = respond(listener, n.id, Reply::Continue);
                }
                Ok(Some(n)) => {
                    let _ = respond(listener, n.id, Reply::Error(libc::ENOSYS));
                }
                Ok(None) => {}
                // Exiting closes this descriptor; if it was the last, the kernel answers ENOSYS.
                Err(_) => return,
            }
        } else if fds[0].revents != 0 {
            // No process uses the filter any more.
            return;
        }
        if fds[1].revents != 0 {
            match read_signal(signals) {
                Some(libc::SIGUSR1) => {
                    held_until = Some(monotonic_ms() + HOLD_LIMIT_MS);
                    // The name says so only now: no call is received after it.
                    name_orphan(HELD_ORPHAN_NAME);
                }
                Some(libc::SIGUSR2) => {
                    held_until = None;
                    name_orphan(ORPHAN_NAME);
                }
                _ => return,
            }
        }
    }
}

/// Sets the calling thread's name. Async-signal-safe.
fn name_orphan(name: &CStr) {
    // SAFETY: a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// The number of the next signal read from `signalfd`. Async-signal-safe.
fn read_signal(signalfd: RawFd) -> Option<libc::c_int> {
    // SAFETY: signalfd_siginfo is plain data; all-zero is a valid value.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: info is a writable buffer of `size` bytes.
    let read = unsafe { libc::read(signalfd, (&raw mut info).cast(), size) };
    (read == size as isize).then_some(info.ssi_signo as libc::c_int)
}

/// CLOCK_MONOTONIC in milliseconds. Async-signal-safe.
fn monotonic_ms() -> i64 {
    // SAFETY: timespec is plain data; clock_gettime writes it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock and a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec * 1_000 + now.tv_nsec / 1_000_000
}

/// The initial mounts as a helper reads them: (mount ID, read-only), sorted by ID, each packed
/// as `id << 1 | read_only`. Its room is reserved before the fork, so that a helper forked
/// before the mounts exist can take the table later without allocating; atomics rather than a
/// lock, since the helper runs after fork (it has one thread: they never contend).
struct InitialTable {
    len: AtomicUsize,
    entries: Box<[AtomicU64]>,
}

/// How many initial mounts a helper forked ahead of them can take (a message of at most
/// [`MAX_REQUEST`] bytes); a container with more starts its helper once they exist.
const MOST_EARLY_INITIAL: usize = 2_000;
/// The bytes of one initial mount in the start message: its ID and whether it is read-only.
const INITIAL_ENTRY: usize = 5;
const _: () = assert!(START.len() + MOST_EARLY_INITIAL * INITIAL_ENTRY <= MAX_REQUEST);

/// What the runtime sends a helper forked ahead of its listener, with the listener and the
/// initial mounts.
const START: &[u8] = b"eci-start";

impl InitialTable {
    fn with_room(room: usize) -> InitialTable {
        InitialTable {
            len: AtomicUsize::new(0),
            entries: (0..room).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A table holding `initial` (sorted by ID).
    fn of(initial: &[(u32, bool)]) -> InitialTable {
        let table = InitialTable::with_room(initial.len());
        for (slot, (id, read_only)) in table.entries.iter().zip(initial) {
            slot.store(
                u64::from(*id) << 1 | u64::from(*read_only),
                Ordering::Relaxed,
            );
        }
        table.len.store(initial.len(), Ordering::Relaxed);
        table
    }

    fn entry(&self, i: usize) -> (u32, bool) {
        let packed = self.entries[i].load(Ordering::Relaxed);
        ((packed >> 1) as u32, packed & 1 != 0)
    }

    fn find(&self, id: u32) -> Option<InitialMount> {
        let (mut low, mut high) = (0, self.len.load(Ordering::Relaxed));
        while low < high {
            let mid = low + (high - low) / 2;
            match self.entry(mid) {
                (found, read_only) if found == id => return Some(InitialMount { read_only }),
                (found, _) if found < id => low = mid + 1,
                _ => high = mid,
            }
        }
        None
    }

    /// Replaces the table with the entries encoded in `bytes` (see [`encode_initial`]), within
    /// the room reserved. Allocation-free; false, and the table empty, if they do not fit or are
    /// not sorted.
    fn take_encoded(&self, bytes: &[u8]) -> bool {
        self.len.store(0, Ordering::Relaxed);
        let entries = bytes.chunks_exact(INITIAL_ENTRY);
        if !entries.remainder().is_empty() || entries.len() > self.entries.len() {
            return false;
        }
        let mut last = None;
        for (slot, entry) in self.entries.iter().zip(entries.clone()) {
            let id = u32::from_ne_bytes([entry[0], entry[1], entry[2], entry[3]]);
            if last.is_some_and(|last| last >= id) {
                return false;
            }
            last = Some(id);
            slot.store(
                u64::from(id) << 1 | u64::from(entry[4] != 0),
                Ordering::Relaxed,
            );
        }
        self.len.store(entries.len(), Ordering::Relaxed);
        true
    }

    #[cfg(test)]
    fn to_vec(&self) -> Vec<(u32, bool)> {
        (0..self.len.load(Ordering::Relaxed))
            .map(|i| self.entry(i))
            .collect()
    }
}

/// The start message for `initial` (sorted by ID), or `None` if it holds too many.
fn encode_initial(initial: &[(u32, bool)]) -> Option<Vec<u8>> {
    if initial.len() > MOST_EARLY_INITIAL {
        return None;
    }
    let mut message = START.to_vec();
    for (id, read_only) in initial {
        message.extend_from_slice(&id.to_ne_bytes());
        message.push(u8::from(*read_only));
    }
    Some(message)
}

/// The descriptors the helper answers with.
#[derive(Debug, Clone, Copy)]
struct Fds {
    listener: RawFd,
    host_proc: RawFd,
}

/// A mount or umount2 call with its arguments copied into the helper's buffers.
#[derive(Clone, Copy)]
struct Call<'a> {
    umount: bool,
    flags: u64,
    source: Option<&'a CStr>,
    target: &'a CStr,
    fstype: Option<&'a CStr>,
    data: Option<&'a CStr>,
}

/// Buffers for one call's strings.
struct Buffers {
    source: [u8; 4096],
    target: [u8; 4096],
    fstype: [u8; 256],
    data: [u8; 4096],
}

/// The string arguments of a call: (address, buffer) for source, target, fstype, data.
fn copy_call<'a>(n: &Notification, buffers: &'a mut Buffers) -> SysResult<Call<'a>> {
    let Buffers {
        source,
        target,
        fstype,
        data,
    } = buffers;
    let (umount, addrs, flags) = match i64::from(n.nr) {
        libc::SYS_mount => (
            false,
            [n.args[0], n.args[1], n.args[2], n.args[4]],
            n.args[3],
        ),
        libc::SYS_umount2 => (true, [0, n.args[0], 0, 0], n.args[1]),
        _ => return Err(Errno(libc::ENOSYS)),
    };
    if addrs[1] == 0 {
        return Err(Errno(libc::EFAULT));
    }
    let mut bufs: [&mut [u8]; 4] = [source, target, fstype, data];
    let complete = read_first_chunks(n.pid, &addrs, &mut bufs);
    let mut strings: [Option<&CStr>; 4] = [None; 4];
    for (i, (buf, addr)) in bufs.into_iter().zip(addrs).enumerate() {
        if addr == 0 {
            continue;
        }
        strings[i] = Some(match complete[i] {
            Some(len) => {
                CStr::from_bytes_with_nul(&buf[..=len]).map_err(|_| Errno(libc::EINVAL))?
            }
            None => read_cstr(n.pid, addr, buf)?,
        });
    }
    let [source, target, fstype, data] = strings;
    Ok(Call {
        umount,
        flags,
        source,
        target: target.ok_or(Errno(libc::EFAULT))?,
        fstype,
        data,
    })
}

/// Reads, in one process_vm_readv, each string's bytes up to the end of its page; returns, per
/// string, the position of its NUL if it was found there.
fn read_first_chunks(pid: u32, addrs: &[u64; 4], bufs: &mut [&mut [u8]; 4]) -> [Option<usize>; 4] {
    const PAGE: u64 = 4096;
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let (mut local, mut remote) = ([empty; 4], [empty; 4]);
    let mut used = [0usize; 4];
    let mut count = 0;
    for (i, addr) in addrs.iter().enumerate().filter(|(_, a)| **a != 0) {
        let len = ((PAGE - addr % PAGE) as usize).min(bufs[i].len());
        local[count] = libc::iovec {
            iov_base: bufs[i].as_mut_ptr().cast(),
            iov_len: len,
        };
        remote[count] = libc::iovec {
            iov_base: *addr as *mut libc::c_void,
            iov_len: len,
        };
        used[i] = len;
        count += 1;
    }
    // SAFETY: each local iovec points into a buffer we own, of the given length; the remote ones
    // are only read by the kernel from the other process.
    let read = unsafe {
        libc::process_vm_readv(
            pid as libc::pid_t,
            local.as_ptr(),
            count as u64,
            remote.as_ptr(),
            count as u64,
            0,
        )
    };
    let mut left = read.max(0) as usize;
    let mut out = [None; 4];
    for (i, len) in used.iter().enumerate() {
        let got = (*len).min(left);
        left -= got;
        out[i] = bufs[i][..got].iter().position(|b| *b == 0);
    }
    out
}

/// What the helper remembers between calls: the mount namespace, root and working directory
/// it last entered, so that a call from the same view skips setns, chroot and fchdir. Each is
/// pinned by the helper being in it, so its identity cannot be reused meanwhile.
#[derive(Debug, Default)]
struct View {
    mntns: AtomicU64,
    root: [AtomicU64; 2],
    cwd: [AtomicU64; 2],
    pids: PidDirs,
}

/// Open `/proc/PID` directories of recent callers, each with the caller's user namespace once
/// read. A cached directory whose process has exited fails every lookup (ESRCH) instead of
/// reaching a process that reuses the number, so a lookup that succeeds through it reached the
/// caller, and so does what was remembered with it.
#[derive(Debug, Default)]
struct PidDirs {
    slots: [PidSlot; 16],
    next: AtomicU32,
}

/// One caller: its pid, its `/proc/PID` directory (or -1) and its user namespace's inode
/// number (0 until read). The user namespace changes only through calls the helper observes
/// ([`crate::filters::observed_syscalls`]), which make it forget the whole slot.
#[derive(Debug, Default)]
struct PidSlot {
    pid: AtomicU32,
    dir: AtomicI32,
    userns: AtomicU64,
}

impl PidDirs {
    fn cached(&self, pid: u32) -> Option<&PidSlot> {
        self.slots
            .iter()
            .find(|s| s.pid.load(Ordering::Relaxed) == pid && s.dir.load(Ordering::Relaxed) > 0)
    }

    fn open(&self, host_proc: RawFd, pid: u32) -> SysResult<&PidSlot> {
        self.forget(pid);
        let fd = open_pid_dir(host_proc, pid)?;
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) as usize % 16];
        slot.userns.store(0, Ordering::Relaxed);
        let old = slot.dir.swap(fd.as_raw_fd(), Ordering::Relaxed);
        if old > 0 {
            sys::close(old);
        }
        slot.pid.store(pid, Ordering::Relaxed);
        std::mem::forget(fd);
        Ok(slot)
    }

    fn forget(&self, pid: u32) {
        for slot in self
            .slots
            .iter()
            .filter(|s| s.pid.load(Ordering::Relaxed) == pid)
        {
            slot.userns.store(0, Ordering::Relaxed);
            let old = slot.dir.swap(-1, Ordering::Relaxed);
            if old > 0 {
                sys::close(old);
            }
        }
    }
}

impl PidSlot {
    fn dir(&self) -> RawFd {
        self.dir.load(Ordering::Relaxed)
    }

    /// The caller's user namespace, read through its directory the first time (every time
    /// unless `remember`).
    fn userns(&self, remember: bool) -> SysResult<u64> {
        match self.userns.load(Ordering::Relaxed) {
            0 if !remember => namespace_id(self.dir(), c"ns/user"),
            0 => {
                let id = namespace_id(self.dir(), c"ns/user")?;
                self.userns.store(id, Ordering::Relaxed);
                Ok(id)
            }
            id => Ok(id),
        }
    }
}

/// Receives one notification on the helper's descriptor of the listener and answers it. Runs
/// after fork: allocation-free. Refusals are reported on `channel`, without waiting. The call is
/// kept in `in_flight` until answered, for whoever replaces this helper if it dies.
fn handle_one(helper: &HelperState<'_>, channel: &Channel) {
    let fds = helper.fds;
    // Received into the shared record, so that even a helper killed on its way back from the
    // receipt leaves the call for whoever replaces it to answer.
    let n = match helper.in_flight.receive(fds.listener) {
        Ok(Some(n)) => n,
        _ => return,
    };
    if i64::from(n.nr) == libc::SYS_sysinfo {
        forward_sysinfo(helper, &n, channel);
    } else if crate::filters::is_observed(n.nr) {
        // The caller may be leaving its user namespace: what was remembered of it goes, before
        // the call runs (the caller is single-threaded and waits meanwhile).
        helper.view.pids.forget(n.pid);
        let _ = respond(fds.listener, n.id, Reply::Continue);
    } else {
        vet_and_answer(helper, &n, channel);
    }
    helper.in_flight.end();
}

/// Answers a mount or umount2 call, recording the outcome first.
fn vet_and_answer(helper: &HelperState<'_>, n: &Notification, channel: &Channel) {
    let mut buffers = Buffers {
        source: [0; 4096],
        target: [0; 4096],
        fstype: [0; 256],
        data: [0; 4096],
    };
    let Some((errno, rule, target)) = vet_copied(helper, n, &mut buffers) else {
        return;
    };
    helper.in_flight.performed(errno);
    let reply = if errno == 0 {
        Reply::Success(0)
    } else {
        Reply::Error(errno)
    };
    let _ = respond(helper.fds.listener, n.id, reply);
    if rule != 0 {
        let mut event = [0u8; 512];
        let len = encode_event(n.pid, errno, rule, target.to_bytes(), &mut event);
        let _ = channel.try_send_bytes(&event[..len]);
    }
}

/// What a helper works with: fixed at its start, shared (by copy) with its forked process.
struct HelperState<'a> {
    config: &'a HelperConfig,
    fds: Fds,
    view: &'a View,
    half: &'a HostHalf,
    in_flight: &'a InFlight,
    forwarded: &'a Forwarded,
    initial: &'a InitialTable,
    /// Whether callers' user namespaces may be remembered: only where this helper is sure to
    /// see every call that changes one (see [`MountVetter::take_over`]).
    remember_userns: bool,
}

/// Copies the call's arguments into `buffers`, decides and performs: (errno, the rule that
/// refused it or 0, the target). `None` when the caller went away and nobody is to be answered.
fn vet_copied<'b>(
    helper: &HelperState<'_>,
    n: &Notification,
    buffers: &'b mut Buffers,
) -> Option<(i32, u32, &'b CStr)> {
    let HelperState { fds, view, .. } = *helper;
    let call = match copy_call(n, buffers) {
        Ok(call) => call,
        Err(Errno(errno)) => return Some((errno, 0, c"")),
    };
    let outcome = match view.pids.cached(n.pid) {
        Some(caller) => match vet_and_perform(helper, n, &call, caller) {
            // The cached directory belongs to a process that has exited.
            Err(Errno(libc::ESRCH | libc::ENOENT)) => None,
            other => Some(other),
        },
        None => None,
    };
    let outcome = match outcome {
        Some(outcome) => outcome,
        None => match view.pids.open(fds.host_proc, n.pid) {
            Ok(caller) => vet_and_perform(helper, n, &call, caller),
            Err(errno) => Err(errno),
        },
    };
    leave_working_directory(view);
    match outcome {
        Ok(Some((errno, rule))) => Some((errno, rule, call.target)),
        // The caller is gone: there is nobody to answer.
        Ok(None) => None,
        Err(Errno(e)) => Some((e, 0, call.target)),
    }
}

fn open_pid_dir(host_proc: RawFd, pid: u32) -> SysResult<OwnedFd> {
    let mut digits = [0u8; 12];
    let len = sys::write_decimal(&mut digits, u64::from(pid));
    let name = CStr::from_bytes_until_nul(&digits[..=len]).map_err(|_| Errno(libc::EINVAL))?;
    open_at(host_proc, name, libc::O_PATH | libc::O_DIRECTORY)
}

/// Gathers the facts, decides and performs. `None` when the caller went away meanwhile.
fn vet_and_perform(
    helper: &HelperState<'_>,
    n: &Notification,
    call: &Call<'_>,
    slot: &PidSlot,
) -> SysResult<Option<(i32, u32)>> {
    let HelperState {
        config,
        fds,
        view,
        half,
        initial,
        ..
    } = *helper;
    let piddir = slot.dir();
    // capget by pid: the caller is checked as still pending afterwards.
    let caps = sys::effective_caps(n.pid as i32)?;
    let cap_sys_admin = caps & (1 << CAP_SYS_ADMIN) != 0;
    // Everything read so far named the caller by pid: its memory (the copies), its capabilities,
    // and, for a directory opened just now, /proc/PID. It all counts only if the call is still
    // pending: then the caller was alive throughout, so the pid named it. (A cached directory
    // names a process for good: through it, lookups fail once that process has exited.)
    if !id_valid(fds.listener, n.id) {
        return Ok(None);
    }
    // Its lookups through the directory (which every call makes) also prove that a remembered
    // user namespace is the caller's: they fail once the directory's process has exited.
    let kind = classify_call(call.flags, call.data.map_or(&[][..], CStr::to_bytes));
    enter_callers_view(piddir, view, needs_working_directory(call, kind))?;
    let caller = Caller {
        cap_sys_admin,
        in_container_userns: slot.userns(helper.remember_userns)? == config.userns,
    };
    // Nothing is opened or copied for a caller the policy refuses whatever its paths name.
    let may_mount = caller.cap_sys_admin && caller.in_container_userns;
    let copied = match may_mount {
        true => copy_descriptors(n, fds, call, kind, piddir, caps),
        false => Ok(ByDescriptor::No),
    };
    let descriptors = match copied {
        // An answer about the paths (a descriptor the caller lacks, a relative path that is
        // not there), not about the caller's /proc directory: not retried with a fresh one.
        Err(Errno(errno)) => return Ok(Some((errno, 0))),
        Ok(ByDescriptor::No) => None,
        Ok(ByDescriptor::Gone) => return Ok(None),
        Ok(ByDescriptor::Copied(descriptors)) => {
            // Their names are looked up in the helper's own descriptor directory, a host
            // procfs one, left again once the call is done.
            left_elsewhere(&view.cwd);
            // SAFETY: fchdir on a descriptor we hold.
            check_int(unsafe { libc::fchdir(descriptors.dir.as_raw_fd()) })?;
            Some(descriptors)
        }
    };
    let call = &descriptors.as_ref().map_or(*call, |d| d.apply(call));
    let nofollow = call.umount && call.flags & libc::UMOUNT_NOFOLLOW as u64 != 0;
    // Only unmounting, remounting and moving depend on what the target is.
    let needs_target = call.umount || matches!(kind, MountKind::Remount { .. } | MountKind::Move);
    let target = if needs_target {
        // A move's `target` is where the mount goes; the mount moved is named by `source`.
        let moved = match kind {
            // The kernel's answer to a move without a source.
            MountKind::Move => call.source.ok_or(Errno(libc::EINVAL))?,
            _ => call.target,
        };
        target_facts(initial, moved, nofollow)
    } else {
        Target::default()
    };
    let verdict = if call.umount {
        decide_umount(&config.policy, &target, &caller)
    } else {
        let fstype = call.fstype.map_or(&[][..], CStr::to_bytes);
        match decide_mount(&config.policy, kind, fstype, &target, &caller) {
            Verdict::Perform => decide_options(kind, call.data.map_or(&[][..], CStr::to_bytes)),
            refused => refused,
        }
    };
    if let Verdict::Deny { errno, rule } = verdict {
        return Ok(Some((errno, rule.code())));
    }
    let fresh = match kind {
        MountKind::NewFilesystem => call.fstype.and_then(|t| Fresh::of(t.to_bytes())),
        _ => None,
    };
    // A FUSE mount names the caller's /dev/fuse descriptor: the helper mounts with its own copy.
    // Only a new filesystem reads its data (a bind, move or remount ignores it), and only a
    // FUSE one pays for the buffer.
    let mut fuse_buffer;
    let is_fuse = call
        .fstype
        .is_some_and(|t| crate::fuse_fd::is_fuse(t.to_bytes()));
    let fuse = match kind {
        MountKind::NewFilesystem if is_fuse => {
            fuse_buffer = [0u8; 4096 + 16];
            fuse_device(n, fds.listener, call, &mut fuse_buffer)
        }
        _ => Ok(FuseDevice::None),
    };
    let fuse = match fuse {
        Ok(FuseDevice::Gone) => return Ok(None),
        Ok(fuse) => fuse,
        Err(Errno(errno)) => return Ok(Some((errno, 0))),
    };
    let data = match &fuse {
        FuseDevice::Copied { data, .. } => Some(*data),
        _ => call.data,
    };
    let perform = || {
        if call.umount {
            // SAFETY: target is NUL-terminated.
            check_int(unsafe { libc::umount2(call.target.as_ptr(), call.flags as libc::c_int) })
                .map(drop)
        } else {
            sys::mount(
                call.source,
                call.target,
                call.fstype,
                call.flags as libc::c_ulong,
                data,
            )
        }
    };
    // An inner runtime's mqueue is its new IPC namespace's: the helper's own would be the
    // host's, which the kernel refuses it.
    let of_namespace = call.fstype.and_then(|t| namespace_of_type(t.to_bytes()));
    if let (MountKind::NewFilesystem, Some((name, nstype))) = (kind, of_namespace) {
        let entered =
            callers_namespace(piddir, name).and_then(|ns| sys::setns(ns.as_raw_fd(), nstype));
        if let Err(Errno(errno)) = entered {
            return Ok(Some((errno, 0)));
        }
    }
    let descriptor_dir = descriptors.as_ref().map(|d| d.dir.as_raw_fd());
    let new_fuse = matches!(kind, MountKind::NewFilesystem) && is_fuse;
    let mount_it = || match new_fuse {
        true => in_callers_pid_namespace(piddir, &perform),
        false => perform(),
    };
    let done = match fresh {
        Some(fresh) => mount_fresh(half, view, piddir, call, fresh, caps, descriptor_dir),
        // Its paths are looked up as the caller's own would be: the kernel checks what it
        // would check for the caller. (Read through the directory that names the caller for
        // good since the check above.)
        None if Creds::needed(caps) || keeps_mounters_creds(kind, call, caps)? => {
            Creds::of_caller(piddir, caps)?.acting(mount_it)
        }
        None => mount_it(),
    };
    Ok(Some((done.err().map_or(0, |Errno(e)| e), 0)))
}

/// Runs `perform` (a FUSE mount) in a process of the caller's PID namespace. The kernel keeps
/// the mounting task's PID namespace with a FUSE connection and tells the server, in every
/// request, the PID of the process asking as seen from there: mounted by the helper, which
/// lives in the host's, the container's server read host PIDs. A child of the helper's joins
/// the caller's PID namespace, which only its children enter (the helper's own could not be
/// set back: that takes the host's CAP_SYS_ADMIN), and its child mounts. Both are undumpable,
/// as the helper is, with a memory map owned by the host's user namespace, so the container's
/// root can neither trace them nor take their descriptors while they live. Allocation-free.
fn in_callers_pid_namespace(piddir: RawFd, perform: &dyn Fn() -> SysResult<()>) -> SysResult<()> {
    let theirs = callers_namespace(piddir, c"ns/pid")?;
    in_child(&|| {
        sys::setns(theirs.as_raw_fd(), libc::CLONE_NEWPID)?;
        in_child(perform)
    })
}

/// Runs `work` in a child process and waits for it: its errno, or EINTR if it was killed
/// or stopped (the container's root may signal a process of its PID namespace; a stopped one
/// is killed, so that the helper never waits for good). A child that cannot be made is
/// ENOMEM, as mount(2) would say. Allocation-free.
fn in_child(work: &dyn Fn() -> SysResult<()>) -> SysResult<()> {
    // SAFETY: the helper and its children are single-threaded, and the child only makes
    // system calls and exits.
    let forked = unsafe { sys::fork() }.map_err(|_| Errno(libc::ENOMEM))?;
    let pid = match forked {
        sys::Forked::Child => {
            // It may enter the caller's PID namespace: never dumpable there, whatever IDs
            // changed before (see `sys::set_undumpable`).
            let code = match sys::set_undumpable() {
                Ok(()) => work().err().map_or(0, |Errno(errno)| errno),
                Err(Errno(errno)) => errno,
            };
            // SAFETY: the child ends here, running nothing of the helper's on the way out.
            unsafe { libc::_exit(code) }
        }
        sys::Forked::Parent { pid, .. } => pid,
    };
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        let waited = unsafe { libc::waitpid(pid, &mut status, libc::__WALL | libc::WUNTRACED) };
        match waited {
            -1 if Errno::last() == Errno(libc::EINTR) => continue,
            -1 => return Err(Errno::last()),
            _ if libc::WIFSTOPPED(status) => {
                // SAFETY: kill takes plain integers; the child is ours and not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            _ if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => return Ok(()),
            _ if libc::WIFEXITED(status) => return Err(Errno(libc::WEXITSTATUS(status))),
            _ => return Err(Errno(libc::EINTR)),
        }
    }
}

/// Whether a new filesystem keeps its mounter's credentials for later work, and the caller,
/// with `caps`, lacks a capability of the helper's: then it is mounted with the caller's. An
/// overlay makes every copy-up with them (the copy chowned to the lower file's owner, its
/// setuid bits kept), so one mounted with the helper's would do for a caller without
/// CAP_CHOWN or CAP_FSETID what the kernel would refuse it. Allocation-free.
fn keeps_mounters_creds(kind: MountKind, call: &Call<'_>, caps: u64) -> SysResult<bool> {
    let overlay = matches!(kind, MountKind::NewFilesystem)
        && call.fstype.is_some_and(|t| t.to_bytes() == b"overlay");
    if !overlay {
        return Ok(false);
    }
    let (own, _) = sys::own_caps()?;
    Ok(own & !caps != 0)
}

/// The caller's FUSE device, for a FUSE mount that names one (`fd=N`).
enum FuseDevice<'b> {
    /// Not a FUSE mount with a descriptor.
    None,
    /// The helper's copy of the caller's descriptor (open until the mount is made), and the
    /// mount data naming the copy.
    Copied { _device: OwnedFd, data: &'b CStr },
    /// The call is no longer pending: nobody is to be answered.
    Gone,
}

/// Copies the descriptor a FUSE mount's `fd=` names out of the calling thread (pidfd_getfd),
/// and writes the data naming the copy into `out`. The kernel would look the number up in the
/// helper's own table, where it names nothing of the caller's. The pidfd named the caller only
/// if the call is still pending afterwards.
fn fuse_device<'b>(
    n: &Notification,
    listener: RawFd,
    call: &Call<'_>,
    out: &'b mut [u8; 4096 + 16],
) -> SysResult<FuseDevice<'b>> {
    let (Some(fstype), Some(data), false) = (call.fstype, call.data, call.umount) else {
        return Ok(FuseDevice::None);
    };
    if !crate::fuse_fd::is_fuse(fstype.to_bytes()) {
        return Ok(FuseDevice::None);
    }
    let data = data.to_bytes();
    let Some((fd, start, end)) =
        crate::fuse_fd::device_fd(data).map_err(|()| Errno(libc::EINVAL))?
    else {
        return Ok(FuseDevice::None);
    };
    let copy = copy_callers_fd(n, fd);
    if !id_valid(listener, n.id) {
        return Ok(FuseDevice::Gone);
    }
    let copy = copy?;
    let len = crate::fuse_fd::with_fd(data, (start, end), copy.as_raw_fd(), out)
        .ok_or(Errno(libc::EINVAL))?;
    let data = CStr::from_bytes_with_nul(&out[..=len]).map_err(|_| Errno(libc::EINVAL))?;
    Ok(FuseDevice::Copied {
        _device: copy,
        data,
    })
}

/// The caller's namespace `name` (`ns/ipc`, say), which a filesystem about to be mounted is
/// made for. The kernel makes one only for a caller holding CAP_SYS_ADMIN over the
/// namespace's owner: not for one in another container's network namespace, which it joined,
/// nor for one in a user namespace of its own below the namespace's owner. EPERM otherwise.
fn callers_namespace(piddir: RawFd, name: &CStr) -> SysResult<OwnedFd> {
    let ns = open_at(piddir, name, libc::O_RDONLY)?;
    let user = open_at(piddir, c"ns/user", libc::O_RDONLY)?;
    let io = |e: std::io::Error| Errno(e.raw_os_error().unwrap_or(libc::EIO));
    let user = eci_ns::join::namespace_identity(user.as_fd()).map_err(io)?;
    if !eci_ns::join::owned_at_or_below(ns.as_fd(), user).map_err(io)? {
        return Err(Errno(libc::EPERM));
    }
    Ok(ns)
}

/// The namespace the kernel makes a filesystem type for from the mounting task's own:
/// mqueue's IPC namespace. (procfs and sysfs are built by the host half, [`mount_fresh`].)
/// Not cgroupfs: the container's cgroup namespace is rooted at its cgroup only in the
/// hierarchies eci manages; in the others (cgroup2 and named hierarchies beside v1
/// controllers) it is rooted where the runtime is, so a cgroupfs of its own would show the
/// host's tree. The helper stays in the host's cgroup namespace, where the kernel refuses it.
fn namespace_of_type(fstype: &[u8]) -> Option<(&'static CStr, libc::c_int)> {
    match fstype {
        b"mqueue" => Some((c"ns/ipc", libc::CLONE_NEWIPC)),
        _ => None,
    }
}

/// The helper's copy of descriptor `fd` of the calling thread. It named the caller's only if
/// the call is still pending afterwards: the caller checks.
fn copy_callers_fd(n: &Notification, fd: RawFd) -> SysResult<OwnedFd> {
    // PIDFD_THREAD (O_EXCL): the calling thread, whose descriptor table may be its own.
    // Kernels before 6.9 lack it: there the thread's process, whose table its threads
    // share unless one unshared it (found only if the caller leads its thread group).
    let open = |flags: libc::c_uint| {
        // SAFETY: pidfd_open takes plain integers.
        check(unsafe { libc::syscall(libc::SYS_pidfd_open, n.pid as i32, flags) })
    };
    let pidfd = match open(libc::O_EXCL as libc::c_uint) {
        Err(Errno(libc::EINVAL)) => open(0),
        other => other,
    };
    pidfd.and_then(|pidfd| {
        // SAFETY: pidfd_open returned a new descriptor that we now own.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
        sys::pidfd_getfd(pidfd.as_raw_fd(), fd)
    })
}

/// The helper's copies of what a call names by the caller's descriptors, `/proc/self/fd/N`
/// (runc and crun name their mount targets and bind sources so). Looked up in the caller's
/// root, `/proc/self` would name the helper, which is not in the caller's PID namespace: so
/// the helper copies the descriptors and names its copies, by number, in its own descriptor
/// directory, which it enters as its working directory. A relative path beside one (the
/// caller's working directory is left for that directory) is opened first and named so too.
struct Descriptors {
    copies: [Option<OwnedFd>; 2],
    /// The copies' numbers, NUL-terminated: target, then source.
    names: [[u8; 12]; 2],
    /// The helper's own descriptor directory (in the host's procfs).
    dir: OwnedFd,
}

enum ByDescriptor {
    /// No path argument names a descriptor (or the caller's /proc is no procfs).
    No,
    /// The call is no longer pending: nobody is to be answered.
    Gone,
    Copied(Descriptors),
}

impl Descriptors {
    /// `call` with its paths naming the copies.
    fn apply<'r>(&'r self, call: &Call<'r>) -> Call<'r> {
        let name = |i: usize| CStr::from_bytes_until_nul(&self.names[i]).ok();
        let mut applied = *call;
        if self.copies[0].is_some() {
            applied.target = name(0).unwrap_or(call.target);
        }
        if self.copies[1].is_some() {
            applied.source = name(1).or(call.source);
        }
        applied
    }
}

/// Copies the descriptors `call` names (see [`Descriptors`]). Runs in the caller's view; a
/// relative path is opened with the caller's credentials, as its mount(2) would look it up.
fn copy_descriptors(
    n: &Notification,
    fds: Fds,
    call: &Call<'_>,
    kind: MountKind,
    piddir: RawFd,
    caps: u64,
) -> SysResult<ByDescriptor> {
    let fstype = call.fstype.map_or(&[][..], CStr::to_bytes);
    let paths = path_arguments(kind, fstype);
    let source = call.source.filter(|_| !call.umount && paths.source);
    let named = |path: Option<&CStr>| path.and_then(|p| descriptor_path(p.to_bytes()));
    let (target_fd, source_fd) = (named(Some(call.target)), named(source));
    // Options read as paths would be looked up from the wrong directory: left to the kernel
    // (which finds no /proc/self/fd/N of the helper's there).
    let data_paths = !call.umount && paths.data && call.data.is_some();
    if (target_fd.is_none() && source_fd.is_none()) || data_paths || !proc_is_procfs() {
        return Ok(ByDescriptor::No);
    }
    // A new filesystem's source is a path only to some types (a block device), and one given
    // relative there is left as it is; procfs's ("proc") is none.
    let opens_relative =
        |path: &CStr| is_relative(path) && matches!(kind, MountKind::Bind { .. } | MountKind::Move);
    let target_opens_relative = is_relative(call.target);
    let copy = |path: Option<&CStr>, fd: Option<i32>, relative: bool| match (path, fd) {
        // The kernel's answer for a descriptor the caller does not have.
        (_, Some(fd)) => Some(copy_callers_fd(n, fd).map_err(|e| match e {
            Errno(libc::EBADF) => Errno(libc::ENOENT),
            other => other,
        })),
        // Followed at its end, as mount(2) follows a target or a bind's source.
        (Some(path), None) if relative => {
            let open = || open_at(libc::AT_FDCWD, path, libc::O_PATH);
            Some(if Creds::needed(caps) {
                Creds::of_caller(piddir, caps).and_then(|creds| creds.acting(open))
            } else {
                open()
            })
        }
        _ => None,
    };
    let source_opens_relative = source.is_some_and(opens_relative);
    let copies = [
        copy(Some(call.target), target_fd, target_opens_relative),
        copy(source, source_fd, source_opens_relative),
    ];
    if !id_valid(fds.listener, n.id) {
        return Ok(ByDescriptor::Gone);
    }
    let [target, source] = copies;
    let copies = [target.transpose()?, source.transpose()?];
    let dir = open_at(
        fds.host_proc,
        c"thread-self/fd",
        libc::O_PATH | libc::O_DIRECTORY,
    )?;
    let mut names = [[0u8; 12]; 2];
    for (name, copy) in names.iter_mut().zip(&copies) {
        if let Some(copy) = copy {
            // The rest of the buffer stays NUL.
            sys::write_decimal(name, copy.as_raw_fd() as u64);
        }
    }
    Ok(ByDescriptor::Copied(Descriptors { copies, names, dir }))
}

/// Whether `/proc` in the helper's current root (the caller's) is a procfs: only there does
/// `/proc/self/fd/N` name the caller's descriptor.
fn proc_is_procfs() -> bool {
    // SAFETY: an all-zero statfs is valid for the kernel to fill.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out pointer.
    let ok = unsafe { libc::statfs(c"/proc".as_ptr(), &mut fs) } == 0;
    ok && fs.f_type == libc::PROC_SUPER_MAGIC
}

/// Mounts a procfs or sysfs that the host half built (masked, for the caller's PID or network
/// namespace) at the caller's target. See [`crate::fresh`]. `descriptor_dir`: the directory a
/// target naming a descriptor copy is looked up in ([`copy_descriptors`]).
fn mount_fresh(
    half: &HostHalf,
    view: &View,
    piddir: RawFd,
    call: &Call<'_>,
    fresh: Fresh,
    caps: u64,
    descriptor_dir: Option<RawFd>,
) -> SysResult<()> {
    // mount(2) looks an empty target up and fails; attached as given, the tree would land on
    // the caller's working directory.
    if call.target.is_empty() {
        return Err(Errno(libc::ENOENT));
    }
    let ns = match fresh {
        Fresh::Proc => c"ns/pid",
        Fresh::Sysfs => c"ns/net",
    };
    let ns = callers_namespace(piddir, ns)?;
    // A procfs's /proc/sys shows the network and IPC namespaces of whoever looks: its binds
    // are placed from the caller's own (whatever their owner: the caller reads and writes
    // their entries through any procfs, as the kernel allows it).
    let (net, ipc);
    let fds = match fresh {
        Fresh::Proc => {
            net = open_at(piddir, c"ns/net", libc::O_RDONLY)?;
            ipc = open_at(piddir, c"ns/ipc", libc::O_RDONLY)?;
            [ns.as_raw_fd(), net.as_raw_fd(), ipc.as_raw_fd()]
        }
        Fresh::Sysfs => [ns.as_raw_fd(), -1, -1],
    };
    let count = fds.iter().take_while(|fd| **fd >= 0).count();
    // Building leaves the helper in its own mount namespace: the cached view no longer holds.
    let tree = half.build(fresh, &fds[..count], call.flags, call.data);
    view.mntns.store(0, Ordering::Relaxed);
    forget(&view.root);
    forget(&view.cwd);
    let tree = tree?;
    enter_callers_view(
        piddir,
        view,
        descriptor_dir.is_none() && is_relative(call.target),
    )?;
    if let Some(dir) = descriptor_dir {
        left_elsewhere(&view.cwd);
        // SAFETY: fchdir on a descriptor the caller holds.
        check_int(unsafe { libc::fchdir(dir) })?;
    }
    // Placed as the caller's mount(2) would place it: the target is looked up with its
    // credentials, following a symlink at its end (within the caller's root, entered above).
    let attach = || sys::attach_tree_following(tree.as_raw_fd(), libc::AT_FDCWD, call.target);
    if Creds::needed(caps) {
        Creds::of_caller(piddir, caps)?.acting(attach)
    } else {
        attach()
    }
}

/// Whether the kernel would resolve a relative path of `call` against the caller's working
/// directory: its target, or a source or data it reads as paths ([`path_arguments`]). A
/// tmpfs's source ("none", "tmpfs") is no path, and taking a working directory costs a procfs
/// lookup (about 2 µs here).
fn needs_working_directory(call: &Call<'_>, kind: MountKind) -> bool {
    if call.umount {
        return is_relative(call.target);
    }
    let fstype = call.fstype.map_or(&[][..], CStr::to_bytes);
    let paths = path_arguments(kind, fstype);
    is_relative(call.target)
        || (paths.source && call.source.is_some_and(is_relative))
        || (paths.data && call.data.is_some())
}

/// Not starting at `/` (an empty path too, as the kernel then answers for the start directory).
fn is_relative(path: &CStr) -> bool {
    path.to_bytes().first() != Some(&b'/')
}

/// Joins the caller's mount namespace and takes its root and (when `needs_cwd`, as a path
/// argument is relative) its working directory, so that paths, and symlinks in them, resolve
/// exactly as they would for the caller and never outside its root. Skips what already matches
/// the last call's view.
///
/// What the view remembers is always what the helper entered (read from the descriptor it
/// entered through), never what it read beforehand: a thread sharing the caller's root can
/// chroot in between. Whatever fails midway, nothing cached survives a change of namespace.
/// The namespace is checked on every call: a root alone does not name one, since a process can
/// chroot into a mount of another namespace through a descriptor from there.
fn enter_callers_view(piddir: RawFd, view: &View, needs_cwd: bool) -> SysResult<()> {
    let mntns = namespace_id(piddir, c"ns/mnt")?;
    if mntns != view.mntns.load(Ordering::Relaxed) {
        view.mntns.store(0, Ordering::Relaxed);
        forget(&view.root);
        forget(&view.cwd);
        let mnt = open_at(piddir, c"ns/mnt", libc::O_RDONLY)?;
        let entered = inode_of(mnt.as_raw_fd())?;
        sys::setns(mnt.as_raw_fd(), libc::CLONE_NEWNS)?;
        view.mntns.store(entered, Ordering::Relaxed);
    }
    if !matches(&view.root, identity(piddir, c"root")?) {
        forget(&view.root);
        forget(&view.cwd);
        let dir = open_at(piddir, c"root", libc::O_PATH | libc::O_DIRECTORY)?;
        // SAFETY: plain syscalls on an fd we hold and a NUL-terminated path.
        unsafe {
            check_int(libc::fchdir(dir.as_raw_fd()))?;
            check_int(libc::chroot(c".".as_ptr()))?;
        }
        remember(&view.root, identity(dir.as_raw_fd(), c"")?);
    }
    if needs_cwd && !matches(&view.cwd, identity(piddir, c"cwd")?) {
        // Entered, identity unknown until read: no identity matches it, and
        // `leave_working_directory` leaves even a directory whose identity could not be read.
        left_elsewhere(&view.cwd);
        let dir = open_at(piddir, c"cwd", libc::O_PATH | libc::O_DIRECTORY)?;
        // SAFETY: fchdir on an fd we hold.
        check_int(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
        remember(&view.cwd, identity(dir.as_raw_fd(), c"")?);
    }
    Ok(())
}

/// Leaves a working directory entered for a call for the root: staying there would keep that
/// mount busy, and a later umount of it, which the kernel allows the caller, would fail
/// (EBUSY). Only calls with a relative path enter one, so only they pay for entering it again.
fn leave_working_directory(view: &View) {
    if view.cwd[0].load(Ordering::Relaxed) != 0 {
        forget(&view.cwd);
        // SAFETY: chdir with a NUL-terminated path; the root is the caller's, entered above.
        let _ = unsafe { libc::chdir(c"/".as_ptr()) };
    }
}

/// The inode number of what `fd` names (for a namespace, the number its link shows).
fn inode_of(fd: RawFd) -> SysResult<u64> {
    // SAFETY: an all-zero stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out pointer.
    check_int(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st.st_ino)
}

/// The inode number of a namespace link ("mnt:[4026531841]"), read with readlink, which costs
/// half what a stat of the link does.
fn namespace_id(piddir: RawFd, name: &CStr) -> SysResult<u64> {
    let mut buf = [0u8; 64];
    // SAFETY: name is NUL-terminated and buf a valid buffer of the given length.
    let len = sys::check(unsafe {
        libc::readlinkat(piddir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    } as libc::c_long)? as usize;
    parse_namespace_link(&buf[..len]).ok_or(Errno(libc::EIO))
}

/// The number in "type:\[number\]".
pub fn parse_namespace_link(link: &[u8]) -> Option<u64> {
    let open = link.iter().position(|b| *b == b'[')?;
    let digits = link.get(open + 1..link.len().checked_sub(1)?)?;
    if link.last() != Some(&b']') || digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

/// (mount ID, inode) of what `name` under `piddir` leads to (with an empty name, of what
/// `piddir` itself names); never (0, 0). The mount's 64-bit ID where the kernel has one
/// (Linux 6.8): never given to another mount, where a 32-bit one is reused once the mount is
/// gone, so a remembered root cannot be mistaken for a new mount's.
fn identity(piddir: RawFd, name: &CStr) -> SysResult<[u64; 2]> {
    // SAFETY: an all-zero statx is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let mask = libc::STATX_INO | libc::STATX_MNT_ID | libc::STATX_MNT_ID_UNIQUE;
    let flags = if name.is_empty() {
        libc::AT_EMPTY_PATH
    } else {
        0
    };
    // SAFETY: name is NUL-terminated and stx a valid out pointer.
    check_int(unsafe { libc::statx(piddir, name.as_ptr(), flags, mask, &mut stx) })?;
    Ok([stx.stx_mnt_id, stx.stx_ino])
}

fn matches(slot: &[AtomicU64; 2], id: [u64; 2]) -> bool {
    slot[0].load(Ordering::Relaxed) == id[0] && slot[1].load(Ordering::Relaxed) == id[1]
}

fn remember(slot: &[AtomicU64; 2], id: [u64; 2]) {
    slot[0].store(id[0], Ordering::Relaxed);
    slot[1].store(id[1], Ordering::Relaxed);
}

fn forget(slot: &[AtomicU64; 2]) {
    remember(slot, [0, 0]);
}

/// Records that the helper's working directory is one no caller's identity matches (a
/// descriptor directory, a directory of unknown identity): [`leave_working_directory`] then
/// leaves it after the call, so that no later call starts in it.
fn left_elsewhere(slot: &[AtomicU64; 2]) {
    remember(slot, [u64::MAX, u64::MAX]);
}

fn open_at(dir: RawFd, name: &CStr, flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: name is NUL-terminated.
    let fd = check_int(unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: openat returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `target`, resolved in the caller's view, is the root of an initial mount.
fn target_facts(initial: &InitialTable, target: &CStr, nofollow: bool) -> Target {
    // SAFETY: an all-zero statx is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let flags = libc::AT_NO_AUTOMOUNT
        | if nofollow {
            libc::AT_SYMLINK_NOFOLLOW
        } else {
            0
        };
    // SAFETY: target is NUL-terminated and stx a valid out pointer.
    let ok = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            target.as_ptr(),
            flags,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    } == 0;
    let mount_root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if !ok || stx.stx_mask & libc::STATX_MNT_ID == 0 || stx.stx_attributes & mount_root == 0 {
        return Target::default();
    }
    Target {
        initial: u32::try_from(stx.stx_mnt_id)
            .ok()
            .and_then(|id| initial.find(id)),
    }
}

/// A refusal, for the runtime's log: pid, errno, rule, then the target (truncated).
fn encode_event(pid: u32, errno: i32, rule: u32, target: &[u8], out: &mut [u8]) -> usize {
    out[..4].copy_from_slice(&pid.to_ne_bytes());
    out[4..8].copy_from_slice(&errno.to_ne_bytes());
    out[8..12].copy_from_slice(&rule.to_ne_bytes());
    let len = target.len().min(out.len() - 12);
    out[12..12 + len].copy_from_slice(&target[..len]);
    12 + len
}

fn log_event(event: &[u8]) {
    let Some(head) = event.get(..12) else { return };
    if head[..4] == SYSINFO_EVENT.to_ne_bytes() {
        return;
    }
    let word = |i: usize| [head[i], head[i + 1], head[i + 2], head[i + 3]];
    let (pid, errno, rule) = (
        u32::from_ne_bytes(word(0)),
        i32::from_ne_bytes(word(4)),
        u32::from_ne_bytes(word(8)),
    );
    let target = String::from_utf8_lossy(&event[12..]);
    if let Some(rule) = Rule::from_code(rule) {
        tracing::info!(pid, errno, %target, "mount refused: {}", rule.describe());
    }
}

/// The supervisor's handler for one container: watches the container's mount helper, which
/// receives and answers the notifications itself, and starts a new one on the same listener if
/// it dies.
#[derive(Debug)]
pub struct MountVetter {
    /// The helper serving now; `None` once it is gone for good.
    helper: std::sync::Mutex<Option<Helper>>,
    /// The runtime's own descriptor of the listener: the number every helper keeps, and what
    /// sysinfo calls and a dead helper's last call are answered on. Dropped once the helper is
    /// gone for good, so that no descriptor keeps the listener open (the kernel then fails the
    /// container's trapped calls with ENOSYS instead of leaving them waiting).
    listener: std::sync::Mutex<Option<Listener>>,
    sysinfo: Option<SysinfoSource>,
    /// What a replacement helper needs: the process whose user namespace it joins and what the
    /// first one knew.
    init: PidFd,
    config: HelperConfig,
    in_flight: InFlight,
    /// When helpers were replaced lately, to give up on one that keeps dying.
    restarts: std::sync::Mutex<Vec<std::time::Instant>>,
    /// Whether its helpers may remember callers' user namespaces (not after a take-over).
    remember_userns: bool,
    /// The call the helper was last seen on, and since when (or since the FUSE connections that
    /// may hold it were last aborted: [`crate::held`]).
    seen_on: std::sync::Mutex<Option<(u64, std::time::Instant)>>,
    /// Whether a thread is aborting connections for a held helper (one at a time).
    freeing: Arc<std::sync::atomic::AtomicBool>,
}

/// A helper may be replaced this many times within [`RESTART_WINDOW`]; one more death and the
/// container's trapped calls fail (ENOSYS) from then on.
const MOST_RESTARTS: usize = 5;
/// Events a helper's channel is read for at most per wake-up of the supervisor.
const EVENTS_PER_WAKE: usize = 64;
const RESTART_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

impl MountVetter {
    /// Answers a sysinfo call the helper handed over: computes the container's figures, checks
    /// the call is still pending (so the pid names the caller), writes them to the caller's
    /// buffer and completes the call. Nothing of the host's is ever written: without figures
    /// the call fails.
    fn answer_sysinfo(&self, event: &[u8]) {
        let Some(event) = event.get(..24) else { return };
        let word = |range: std::ops::Range<usize>| -> [u8; 8] {
            let mut out = [0u8; 8];
            out[..range.len()].copy_from_slice(&event[range]);
            out
        };
        let id = u64::from_ne_bytes(word(4..12));
        let pid = u32::from_ne_bytes(word(12..16)[..4].try_into().unwrap_or_default());
        let addr = u64::from_ne_bytes(word(16..24));
        let Ok(guard) = self.listener.lock() else {
            return;
        };
        let Some(listener) = guard.as_ref() else {
            return;
        };
        // The helper names the caller; the answer goes only to a process of the container (a
        // helper gone wrong must not make the runtime write into a host process).
        if !in_user_namespace(pid, self.config.userns) {
            let _ = listener.respond(id, Reply::Error(libc::ENOSYS));
            return;
        }
        let figures = self.sysinfo.as_ref().and_then(|source| (source.0)());
        let reply = match figures {
            None => Reply::Error(libc::ENOSYS),
            Some(info) => match write_to(listener, id, pid, addr, &info) {
                Ok(true) => Reply::Success(0),
                // The call is no longer pending: nobody to answer.
                Ok(false) => return,
                Err(Errno(errno)) => Reply::Error(errno),
            },
        };
        let _ = listener.respond(id, reply);
    }
}

impl PendingVetter {
    /// What the helper was forked with (no initial mounts yet).
    pub fn config(&self) -> &HelperConfig {
        &self.config
    }

    /// Has the helper, which serves nothing yet, move itself into the cgroup whose v1 `tasks`
    /// file is `tasks` (the container's memory cgroup, made after the helper was forked) when
    /// it takes the listener in [`PendingVetter::start`], before it serves; any helper that
    /// replaces it goes there too ([`HelperConfig::charged_to`]).
    pub fn charge_to(&mut self, tasks: Arc<OwnedFd>) {
        self.config.charged_to = Some(tasks);
    }

    /// Hands the helper the container's listener and its initial mounts (sorted by mount ID)
    /// and starts vetting. If the helper forked ahead failed, or the container has more initial
    /// mounts than it can take, a helper is started now instead.
    pub fn start(
        self,
        listener: &Listener,
        initial: Vec<(u32, bool)>,
    ) -> Result<Arc<MountVetter>, HelperError> {
        let io = |what| move |source| HelperError::Io { what, source };
        let PendingVetter {
            helper,
            host_half,
            init,
            mut config,
            in_flight,
            slot,
        } = self;
        // The helper waits for its host half before it can take the listener.
        host_half.hurry();
        config.initial = initial;
        // The runtime's descriptor takes the placeholder's number, which the helper serves and
        // which the take-over record names.
        // SAFETY: dup3 on two descriptors we hold; `slot` owns the number afterwards.
        check_int(unsafe { libc::dup3(listener.as_raw_fd(), slot.as_raw_fd(), libc::O_CLOEXEC) })
            .map_err(|errno| io("placing the listener")(errno.into()))?;
        let charged_to = config.charged_to.as_deref();
        let helper = match hand_over(&helper, &slot, charged_to, &config.initial) {
            Ok(()) => helper,
            Err(why) => {
                tracing::debug!("mount helper forked ahead not used ({why}); starting one now");
                drop(helper);
                // It watched nothing before the hand-over, so it cannot have taken a call; were
                // one left, it is answered as a dead helper's is.
                if let Some((id, reply)) = in_flight.take() {
                    let _ = respond(slot.as_raw_fd(), id, reply);
                }
                spawn_helper(&init, slot.as_raw_fd(), &config, &in_flight, true)?
            }
        };
        Ok(Arc::new(MountVetter::serving(
            helper, slot, init, config, in_flight, true,
        )))
    }
}

/// Sends a helper forked ahead its listener, the cgroup it is to join (see
/// [`HelperConfig::charged_to`]) and its initial mounts; why not, if it did not take them.
fn hand_over(
    helper: &Helper,
    listener: &OwnedFd,
    charged_to: Option<&OwnedFd>,
    initial: &[(u32, bool)],
) -> Result<(), String> {
    let message = encode_initial(initial)
        .ok_or_else(|| format!("{} initial mounts, more than it takes", initial.len()))?;
    helper.wait_ready().map_err(|e| e.to_string())?;
    let mut reply = [0u8; 1];
    let fds: Vec<RawFd> = std::iter::once(listener.as_raw_fd())
        .chain(charged_to.map(AsRawFd::as_raw_fd))
        .collect();
    match helper.call(&message, &fds, &mut reply) {
        Ok(1) if reply[0] == 1 => Ok(()),
        Ok(_) => Err("it refused them".into()),
        Err(err) => Err(err.to_string()),
    }
}

/// True if process `pid` is in the user namespace with inode `userns` or one nested in it.
fn in_user_namespace(pid: u32, userns: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    const NS_GET_PARENT: libc::c_ulong = 0xb702;
    let Ok(mut ns) = std::fs::File::open(format!("/proc/{pid}/ns/user")) else {
        return false;
    };
    // User namespaces nest at most 32 deep.
    for _ in 0..33 {
        match ns.metadata() {
            Ok(meta) if meta.ino() == userns => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
        // SAFETY: an ioctl without argument on a namespace descriptor we hold.
        let parent = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_PARENT) };
        if parent < 0 {
            return false;
        }
        // SAFETY: NS_GET_PARENT returned a new descriptor that we own.
        ns = unsafe { std::fs::File::from_raw_fd(parent) };
    }
    false
}

/// Writes `value` at `addr` in the caller of notification `id`, through its /proc/PID/mem
/// opened first and checked after: if the call is still pending once the file is open, the
/// file is the caller's (a process that reuses the pid later is another file). False if the
/// call is gone.
fn write_to<T>(listener: &Listener, id: u64, pid: u32, addr: u64, value: &T) -> SysResult<bool> {
    use std::os::unix::fs::FileExt;
    let errno = |e: std::io::Error| Errno(e.raw_os_error().unwrap_or(libc::EIO));
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/mem"))
        .map_err(errno)?;
    // Opened with it, so of the same process: /proc/PID/mem writes through any protection,
    // where the kernel's own sysinfo(2) fails with EFAULT on memory not mapped writable.
    let maps = std::fs::File::open(format!("/proc/{pid}/maps")).map_err(errno)?;
    if !listener.is_valid(id) {
        return Ok(false);
    }
    let size = std::mem::size_of::<T>();
    if !span_writable(&maps, addr, size as u64).map_err(errno)? {
        return Err(Errno(libc::EFAULT));
    }
    // SAFETY: `value` is plain data of `size` bytes that outlives the slice.
    let bytes = unsafe { std::slice::from_raw_parts(value as *const T as *const u8, size) };
    // Through /proc/PID/mem, not process_vm_writev: this thread serves every container, and
    // the kernel lets a fault of a mem write fail (EFAULT) where process_vm_writev's would
    // wait (a page a userfaultfd of the container's never resolves, with
    // vm.unprivileged_userfaultfd=1). A file on the container's own FUSE mount fails either
    // way: FUSE refuses a request from IDs its user namespace does not map (EOVERFLOW).
    match mem.write_at(bytes, addr) {
        Ok(n) if n == size => Ok(true),
        Ok(_) => Err(Errno(libc::EFAULT)),
        Err(_) => Err(Errno(libc::EFAULT)),
    }
}

/// How much of a /proc/PID/maps text is read at most, where the kernel cannot be asked for
/// one mapping: a process makes its maps as long as it likes (65,530 mappings of files with
/// 4 KiB names, a quarter of a GB for each call). A buffer past it gets EFAULT.
const MAPS_READ_MOST: u64 = 4 << 20;

/// Whether every byte of `len` at `addr` lies in a mapping writable by the process whose
/// /proc/PID/maps is open as `maps`: asked of the kernel mapping by mapping (PROCMAP_QUERY,
/// Linux 6.11), else read from its text, at most [`MAPS_READ_MOST`] of it. Either way the cost
/// does not grow with the process's mappings past that, on a thread that serves every
/// container.
fn span_writable(maps: &std::fs::File, addr: u64, len: u64) -> std::io::Result<bool> {
    use std::io::Read;
    if let Some(writable) = queried_writable(maps, addr, len) {
        return Ok(writable);
    }
    let mut text = String::new();
    maps.take(MAPS_READ_MOST).read_to_string(&mut text)?;
    Ok(mapped_writable(&text, addr, len))
}

/// The kernel's `struct procmap_query` (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: libc::Ioctl = libc::_IOWR::<ProcmapQuery>(b'f' as u32, 17);
/// The mapping is writable (VM_WRITE), in `vma_flags`.
const PROCMAP_QUERY_VMA_WRITABLE: u64 = 0x02;

/// [`span_writable`] asked of the kernel, one mapping at a time from `addr`; `None` if it
/// cannot be asked (before Linux 6.11).
fn queried_writable(maps: &std::fs::File, addr: u64, len: u64) -> Option<bool> {
    let Some(end) = addr.checked_add(len) else {
        return Some(false);
    };
    let mut covered = addr;
    while covered < end {
        let mut query = ProcmapQuery {
            size: std::mem::size_of::<ProcmapQuery>() as u64,
            query_addr: covered,
            ..ProcmapQuery::default()
        };
        // SAFETY: a valid procmap_query that asks for no names (their sizes are 0).
        let done = unsafe { libc::ioctl(maps.as_raw_fd(), PROCMAP_QUERY, &mut query) };
        if done < 0 {
            return match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ENOTTY | libc::EINVAL) if covered == addr => None,
                // ENOENT: nothing mapped there.
                _ => Some(false),
            };
        }
        if query.vma_start > covered || query.vma_flags & PROCMAP_QUERY_VMA_WRITABLE == 0 {
            return Some(false);
        }
        covered = query.vma_end;
    }
    Some(true)
}

/// Whether every byte of `len` at `addr` lies in a mapping that /proc/PID/maps text `maps`
/// shows writable.
fn mapped_writable(maps: &str, addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    // The mappings come in rising order; walk them from `addr` until `end` is covered.
    let mut covered = addr;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            return false;
        };
        let Some((start, stop)) = range.split_once('-') else {
            return false;
        };
        let (Ok(start), Ok(stop)) = (
            u64::from_str_radix(start, 16),
            u64::from_str_radix(stop, 16),
        ) else {
            return false;
        };
        if stop <= covered {
            continue;
        }
        if start > covered || perms.as_bytes().get(1) != Some(&b'w') {
            return false;
        }
        covered = stop;
        if covered >= end {
            return true;
        }
    }
    covered >= end
}

/// A mount helper forked before its container's listener and initial mounts exist
/// ([`MountVetter::prepare`]): it joins the container's user namespace and builds its host half
/// while the runtime mounts the container's root, then starts serving in
/// [`PendingVetter::start`]. Dropping it kills the helper.
#[derive(Debug)]
pub struct PendingVetter {
    helper: Helper,
    /// The helper's host half, setting up on idle CPU time until the listener comes.
    host_half: Arc<Yielding>,
    init: PidFd,
    config: HelperConfig,
    in_flight: InFlight,
    /// Where the runtime's descriptor of the listener goes: the number the helper serves.
    slot: OwnedFd,
}

impl MountVetter {
    /// Forks the container's mount helper ahead of time: `config` needs everything but the
    /// initial mounts (which [`PendingVetter::start`] takes), and `init`'s user namespace must
    /// have its ID maps. The helper does its slow part (its fork, taking its host half's
    /// namespace, joining the user namespace) beside whatever the runtime does next, and its
    /// host half, a thread of the caller's process, sets up beside it.
    ///
    /// ```no_run
    /// # use eci_seccomp::mount::{HelperConfig, MountVetter};
    /// # use eci_seccomp::notify::Listener;
    /// # fn demo(init: &eci_ns::PidFd, config: HelperConfig, listener: &Listener,
    /// #         initial: Vec<(u32, bool)>) -> Result<(), Box<dyn std::error::Error>> {
    /// let pending = MountVetter::prepare(init, config)?;
    /// // ... mount the container's root, receive its listener ...
    /// let vetter = pending.start(listener, initial)?;
    /// # Ok(()) }
    /// ```
    pub fn prepare(init: &PidFd, config: HelperConfig) -> Result<PendingVetter, HelperError> {
        let io = |what| move |source| HelperError::Io { what, source };
        let init = init.try_clone().map_err(io("duplicating a pidfd"))?;
        let in_flight = InFlight::new().map_err(io("mapping the in-flight record"))?;
        let slot = std::fs::File::open("/dev/null").map_err(io("reserving a descriptor"))?;
        let slot = OwnedFd::from(slot);
        let host_half = Arc::new(Yielding::new());
        let helper = fork_helper(
            &init,
            slot.as_raw_fd(),
            &config,
            &in_flight,
            None,
            true,
            Some(Arc::clone(&host_half)),
        )?;
        Ok(PendingVetter {
            helper,
            host_half,
            init,
            config,
            in_flight,
            slot,
        })
    }

    /// Starts the container's mount helper in `init`'s user namespace, as its root, with its own
    /// descriptor of `listener`.
    pub fn start(
        init: &PidFd,
        listener: &Listener,
        config: HelperConfig,
    ) -> Result<Arc<MountVetter>, HelperError> {
        MountVetter::start_with(init, listener, config, true)
    }

    /// [`MountVetter::start`]; `remember_userns` says whether its helpers may remember each
    /// caller's user namespace (they must not where they might miss a call that changes it).
    fn start_with(
        init: &PidFd,
        listener: &Listener,
        config: HelperConfig,
        remember_userns: bool,
    ) -> Result<Arc<MountVetter>, HelperError> {
        let io = |what| move |source| HelperError::Io { what, source };
        let listener = listener
            .try_clone()
            .map_err(io("duplicating the listener"))?;
        let init = init.try_clone().map_err(io("duplicating a pidfd"))?;
        let in_flight = InFlight::new().map_err(io("mapping the in-flight record"))?;
        let helper = spawn_helper(
            &init,
            listener.as_raw_fd(),
            &config,
            &in_flight,
            remember_userns,
        )?;
        Ok(Arc::new(MountVetter::serving(
            helper,
            listener,
            init,
            config,
            in_flight,
            remember_userns,
        )))
    }

    /// The vetter of a started `helper` that serves `listener` (the runtime's descriptor, at
    /// the number the helper keeps), and whose replacements may remember callers' user
    /// namespaces if `remember_userns`.
    fn serving(
        helper: Helper,
        listener: OwnedFd,
        init: PidFd,
        config: HelperConfig,
        in_flight: InFlight,
        remember_userns: bool,
    ) -> MountVetter {
        MountVetter {
            helper: std::sync::Mutex::new(Some(helper)),
            sysinfo: config.sysinfo.clone(),
            listener: std::sync::Mutex::new(Some(Listener::new(listener))),
            init,
            config,
            in_flight,
            restarts: std::sync::Mutex::new(Vec::new()),
            remember_userns,
            seen_on: std::sync::Mutex::new(None),
            freeing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Takes over the listener an orphaned helper holds (its runtime died; see [`find_orphan`]):
    /// takes a copy of the descriptor numbered `listener_fd` in `orphan`, checks it is a seccomp
    /// listener and that `orphan` is in the container's user namespace (`config.userns`), and
    /// holds the orphan ([`hold_orphan`]: it answers nothing, so the calls made meanwhile wait
    /// for ours) and starts a helper of ours on the listener, joining that same user namespace.
    /// If ours cannot start, the orphan is let go as it was. `config` is what the first
    /// runtime's helpers knew (the caller kept it); its `userns_fd` is replaced by the orphan's.
    /// Returns the vetter and the listener, for
    /// [`Supervisor::register`](crate::Supervisor::register); once that is done,
    /// [`stop_orphan`] ends the orphan (or, if registering fails, [`release_orphan`] lets it
    /// answer ENOSYS again), so that nothing that fails on the way leaves the listener with
    /// nobody.
    ///
    /// ```no_run
    /// use eci_seccomp::mount::{find_orphan, HelperConfig, MountVetter};
    /// use eci_seccomp::supervisor::Handler;
    /// # fn demo(init: &eci_ns::PidFd, config: HelperConfig, fd: i32) -> Result<(), Box<dyn std::error::Error>> {
    /// // `config` and the listener's number `fd` are what the dead runtime recorded.
    /// let orphan = find_orphan(config.userns, fd).ok_or("no orphan: is the runtime alive?")?;
    /// let (vetter, listener) = MountVetter::take_over(init, &orphan, fd, config)?;
    /// let supervisor = eci_seccomp::Supervisor::start()?;
    /// let handler: std::sync::Arc<dyn Handler> = vetter;
    /// let _registration = supervisor.register(listener, handler, None)?;
    /// eci_seccomp::mount::stop_orphan(&orphan);
    /// # Ok(()) }
    /// ```
    pub fn take_over(
        init: &PidFd,
        orphan: &PidFd,
        listener_fd: RawFd,
        mut config: HelperConfig,
    ) -> Result<(Arc<MountVetter>, Listener), HelperError> {
        let io = |what| move |source| HelperError::Io { what, source };
        let invalid = |what| HelperError::Io {
            what,
            source: std::io::ErrorKind::InvalidData.into(),
        };
        let listener = sys::pidfd_getfd(orphan.as_raw_fd(), listener_fd)
            .map_err(|errno| io("taking the orphan's listener")(errno.into()))?;
        if !is_seccomp_listener(listener.as_raw_fd()) {
            return Err(invalid("the orphan's descriptor is no seccomp listener"));
        }
        let userns = std::fs::File::open(format!("/proc/{}/ns/user", orphan.pid()))
            .map_err(io("opening the orphan's user namespace"))?;
        let same = userns
            .metadata()
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == config.userns);
        // Still alive after the open: the namespace was the orphan's, not a reused pid's.
        if !same || !orphan.is_alive() {
            return Err(invalid(
                "the orphan is not in the container's user namespace",
            ));
        }
        config.userns_fd = Some(Arc::new(OwnedFd::from(userns)));
        let listener = Listener::new(listener);
        // Held, the orphan answers nothing: the calls made meanwhile wait for ours, rather than
        // meet ENOSYS after ours has answered some.
        match hold_orphan(orphan) {
            // An orphan of an earlier version cannot be held: taken over as it goes on.
            Err(err) if err.kind() == std::io::ErrorKind::Unsupported => {}
            held => held.map_err(io("holding the orphaned mount helper"))?,
        }
        // If ours cannot start, the orphan goes on holding the listener (and failing the calls),
        // so a later attempt can still take over.
        // Ours does not remember callers' user namespaces: the container's filter may be an
        // earlier version's, which does not send the calls that change one, and an orphan
        // whose hold ran out may let such a call run unseen by ours.
        let vetter = MountVetter::start_with(init, &listener, config, false).inspect_err(|_| {
            release_orphan(orphan);
        })?;
        Ok((vetter, listener))
    }

    /// The number at which every helper of this vetter holds the listener (what a new runtime
    /// looks for in an orphan), `None` once the listener is given up.
    pub fn listener_fd(&self) -> Option<RawFd> {
        let listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        listener.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The pid of the helper serving now (0 once it is gone for good).
    pub fn helper_pid(&self) -> i32 {
        self.lock_helper().as_ref().map_or(0, Helper::pid)
    }

    /// The helper has been on one call of `caller`'s for [`crate::held::HELD_AFTER`]: aborts
    /// the FUSE connections that may hold it (see [`crate::held`]), on a thread of its own
    /// (reading mount tables and the control filesystem takes time that grows with what the
    /// container mounted, which the supervisor's thread, serving every container, must not
    /// spend), one at a time.
    fn free_held_helper(&self, caller: u32) {
        let Some(helper) = self.lock_helper().as_ref().map(Helper::pid) else {
            return;
        };
        if self.freeing.swap(true, Ordering::SeqCst) {
            return;
        }
        let freeing = Arc::clone(&self.freeing);
        let spawned = std::thread::Builder::new()
            .name("eci-held-helper".into())
            .spawn(move || {
                match crate::held::abort_waiting_connections(helper, caller) {
                    Ok(0) => tracing::warn!(
                        helper,
                        "a mount helper has been on one call for {:?}; no FUSE connection with \
                         requests waiting found where it or its caller is",
                        crate::held::HELD_AFTER
                    ),
                    Ok(aborted) => tracing::warn!(
                        helper,
                        "a mount helper held by the container's FUSE server: {aborted} \
                         connection(s) aborted"
                    ),
                    Err(err) => tracing::warn!(helper, "freeing a held mount helper: {err}"),
                }
                freeing.store(false, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.freeing.store(false, Ordering::SeqCst);
        }
    }

    fn lock_helper(&self) -> std::sync::MutexGuard<'_, Option<Helper>> {
        self.helper.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The helper died: reap it, answer the call it left, and start another unless helpers keep
    /// dying or the container is gone. What the supervisor does next.
    fn replace_helper(&self, why: &HelperError) -> EventOutcome {
        let mut helper = self.lock_helper();
        // Dropping the old one kills and reaps it: nothing writes the record any more.
        let old = helper.take().map_or(0, |h| h.pid());
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        let Some(fd) = listener.as_ref().map(AsRawFd::as_raw_fd) else {
            return EventOutcome::Gone;
        };
        if let Some((id, reply)) = self.in_flight.take() {
            let _ = respond(fd, id, reply);
        }
        let replacement = if self.may_restart() {
            spawn_helper(
                &self.init,
                fd,
                &self.config,
                &self.in_flight,
                self.remember_userns,
            )
            .map_err(|e| e.to_string())
        } else {
            Err(format!(
                "{MOST_RESTARTS} replacements within {RESTART_WINDOW:?}"
            ))
        };
        match replacement {
            Ok(new) => {
                tracing::warn!(
                    helper = old,
                    new = new.pid(),
                    "mount helper gone ({why}); a new one took over its listener"
                );
                *helper = Some(new);
                EventOutcome::Replaced
            }
            Err(reason) => {
                // The container's init is gone, or helpers keep dying: fail closed.
                tracing::warn!(
                    helper = old,
                    "mount helper gone ({why}), not replaced ({reason}): the container's mount \
                     calls now fail"
                );
                listener.take();
                EventOutcome::Gone
            }
        }
    }

    /// Counts a restart, unless [`MOST_RESTARTS`] happened within [`RESTART_WINDOW`].
    fn may_restart(&self) -> bool {
        let now = std::time::Instant::now();
        let mut restarts = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
        restarts.retain(|at| now.duration_since(*at) < RESTART_WINDOW);
        if restarts.len() >= MOST_RESTARTS {
            return false;
        }
        restarts.push(now);
        true
    }
}

/// How long an orphan has to finish the call it answers and exit before it is killed.
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long an orphan has to say it is held.
const HOLD_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Holds an orphan: once this returns, it answers no call until it is stopped
/// ([`stop_orphan`]), let go ([`release_orphan`]) or five seconds have passed, so the
/// container's calls wait for the helper that takes over rather than meet ENOSYS meanwhile.
/// [`MountVetter::take_over`] holds the orphan it takes the listener of.
pub fn hold_orphan(orphan: &PidFd) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + HOLD_WAIT;
    if !takes_signal(orphan, libc::SIGUSR1)? {
        // An orphan of an earlier version, for which SIGUSR1 would be fatal: not held.
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the orphaned mount helper is of an earlier version, which cannot be held",
        ));
    }
    // A release from an attempt that gave up may still be pending: the orphan reads the lower
    // signal first, so it would undo this hold once it is made.
    while pending_signals(orphan)? & signal_bit(libc::SIGUSR2) != 0 {
        if std::time::Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the orphaned mount helper does not read its signals",
            ));
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    orphan.signal(libc::SIGUSR1).map_err(std::io::Error::from)?;
    let comm = format!("/proc/{}/comm", orphan.pid());
    loop {
        let name = std::fs::read(&comm)?;
        // Alive after the read: the name was the orphan's, not a reused pid's.
        if name.strip_suffix(b"\n") == Some(HELD_ORPHAN_NAME.to_bytes()) && orphan.is_alive() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            release_orphan(orphan);
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the orphaned mount helper did not stop answering",
            ));
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// Lets a held orphan answer calls again (ENOSYS), after a take-over that failed.
pub fn release_orphan(orphan: &PidFd) {
    // Never to an orphan of an earlier version, for which it would be fatal.
    if takes_signal(orphan, libc::SIGUSR2).unwrap_or(false) {
        let _ = orphan.signal(libc::SIGUSR2);
    }
}

/// The bit of `signal` in /proc/PID/status's signal masks.
fn signal_bit(signal: libc::c_int) -> u64 {
    1 << (signal - 1)
}

/// A mask of /proc/PID/status (`SigBlk`, `ShdPnd`, ...) of `process`, checked to be its own.
fn status_mask(process: &PidFd, field: &str) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.pid()))?;
    if !process.is_alive() {
        return Err(std::io::ErrorKind::NotFound.into());
    }
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, field.to_string()))
}

/// Whether `process` blocks `signal` (and so reads it through its signalfd, as an orphan of
/// this version does) rather than dying of it.
fn takes_signal(process: &PidFd, signal: libc::c_int) -> std::io::Result<bool> {
    Ok(status_mask(process, "SigBlk")? & signal_bit(signal) != 0)
}

/// The signals pending for the whole of `process` (those sent to it by pid or pidfd).
fn pending_signals(process: &PidFd) -> std::io::Result<u64> {
    status_mask(process, "ShdPnd")
}

/// Asks an orphan whose listener was taken over ([`MountVetter::take_over`]) to exit, and
/// waits until it has. One that does not exit in time is killed (a call it had received then
/// waits until the listener closes, or until its caller is killed).
pub fn stop_orphan(orphan: &PidFd) {
    let _ = orphan.signal(libc::SIGTERM);
    let deadline = std::time::Instant::now() + ORPHAN_GRACE;
    while orphan.is_alive() {
        if std::time::Instant::now() >= deadline {
            let _ = orphan.signal(libc::SIGKILL);
            wait_exit(orphan, deadline + ORPHAN_GRACE);
            return;
        }
        wait_readable(orphan.as_raw_fd(), 50);
    }
}

/// Waits for `process` to exit, until `deadline` (a process stuck in the kernel may take
/// longer to die; ours serves meanwhile).
fn wait_exit(process: &PidFd, deadline: std::time::Instant) {
    while process.is_alive() && std::time::Instant::now() < deadline {
        wait_readable(process.as_raw_fd(), 50);
    }
}

fn wait_readable(fd: RawFd, millis: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, millis) };
}

/// Whether `fd` is a seccomp user-notification listener.
fn is_seccomp_listener(fd: RawFd) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|link| link.as_os_str() == "anon_inode:seccomp notify")
}

/// Finds the orphaned mount helper (one whose runtime died, named [`ORPHAN_NAME`]) that holds,
/// as descriptor `listener_fd`, a seccomp listener, in the container's user namespace `userns`
/// and in our own PID namespace (so no process of the container's can pose as one: none is in
/// ours, and none can hold a listener).
pub fn find_orphan(userns: u64, listener_fd: RawFd) -> Option<PidFd> {
    orphans_in(userns)?.find_map(|(pid, process)| {
        let fd = std::fs::read_link(format!("/proc/{pid}/fd/{listener_fd}")).ok()?;
        // Alive after the read: it was of this process.
        (fd.as_os_str() == "anon_inode:seccomp notify" && process.is_alive()).then_some(process)
    })
}

/// The orphaned mount helpers in user namespace `userns` (as [`find_orphan`] finds them) other
/// than `except` that hold `listener` itself, the same open listener, at any number. A runtime
/// that dies while it takes over leaves two: the orphan it held (whose hold runs out) and its
/// own new helper, orphaned in turn. A take-over that stops only the one it found leaves the
/// other answering the container's calls with ENOSYS beside the new helper, for good.
pub fn orphans_sharing(listener: &impl AsRawFd, userns: u64, except: &PidFd) -> Vec<PidFd> {
    let Some(orphans) = orphans_in(userns) else {
        return Vec::new();
    };
    let me = std::process::id() as libc::pid_t;
    orphans
        .filter(|(pid, _)| *pid != except.pid())
        .filter(|(pid, process)| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            let shares = fds.flatten().any(|entry| {
                let is_listener = std::fs::read_link(entry.path())
                    .is_ok_and(|link| link.as_os_str() == "anon_inode:seccomp notify");
                let fd = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<RawFd>().ok());
                is_listener
                    && fd.is_some_and(|fd| sys::same_file(me, listener.as_raw_fd(), *pid, fd))
            });
            // Alive after the reads: they were of this process.
            shares && process.is_alive()
        })
        .map(|(_, process)| process)
        .collect()
}

/// Each process named as an orphan (held or not) in user namespace `userns` and in our PID
/// namespace, with a pidfd opened before anything of it was read: whatever a caller reads of
/// it after is of that process if it is alive after the reads. `None` if /proc cannot be read.
fn orphans_in(userns: u64) -> Option<impl Iterator<Item = (i32, PidFd)>> {
    use std::os::unix::fs::MetadataExt;
    let ino = |path: String| std::fs::metadata(path).map(|m| m.ino()).ok();
    let own_pidns = ino("/proc/self/ns/pid".into())?;
    let pids = std::fs::read_dir("/proc").ok()?;
    Some(
        pids.flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(move |pid| {
                // Opened first (the name is all that tells an orphan from a live runtime's
                // helper, so it must be this process's too).
                let process = PidFd::open(pid).ok()?;
                let comm = std::fs::read(format!("/proc/{pid}/comm")).ok()?;
                // A held one too: a runtime that died while taking over may have left it so.
                let name = comm.strip_suffix(b"\n");
                let named = name == Some(ORPHAN_NAME.to_bytes())
                    || name == Some(HELD_ORPHAN_NAME.to_bytes());
                let placed = named
                    && ino(format!("/proc/{pid}/ns/user")) == Some(userns)
                    && ino(format!("/proc/{pid}/ns/pid")) == Some(own_pidns);
                placed.then_some((pid, process))
            }),
    )
}

/// Forks a mount helper that joins `init`'s user namespace as its root and serves the listener
/// descriptor `listener` (which it keeps, at the same number), recording calls in `in_flight`,
/// and waits until it serves.
fn spawn_helper(
    init: &PidFd,
    listener: RawFd,
    config: &HelperConfig,
    in_flight: &InFlight,
    remember_userns: bool,
) -> Result<Helper, HelperError> {
    let initial = Some(&config.initial[..]);
    let helper = fork_helper(
        init,
        listener,
        config,
        in_flight,
        initial,
        remember_userns,
        None,
    )?;
    helper.wait_ready()?;
    Ok(helper)
}

/// Forks a helper; it serves `listener` at once with the initial mounts `initial`, or, when
/// that is `None`, once the runtime sends both ([`PendingVetter::start`]): `listener` is then
/// a placeholder the runtime later replaces with the listener, at the same number.
fn fork_helper(
    init: &PidFd,
    listener: RawFd,
    config: &HelperConfig,
    in_flight: &InFlight,
    initial: Option<&[(u32, bool)]>,
    remember_userns: bool,
    host_half_priority: Option<Arc<Yielding>>,
) -> Result<Helper, HelperError> {
    let host_proc = std::fs::File::open("/proc").map_err(|source| HelperError::Io {
        what: "opening /proc",
        source,
    })?;
    let fds = Fds {
        listener,
        host_proc: host_proc.as_raw_fd(),
    };
    let view = View::default();
    let half = HostHalf::default();
    let forwarded = Forwarded::default();
    let table = initial.map_or_else(
        || InitialTable::with_room(MOST_EARLY_INITIAL),
        InitialTable::of,
    );
    let watched = AtomicI32::new(if initial.is_some() { listener } else { -1 });
    let state = HelperState {
        config,
        fds,
        view: &view,
        half: &half,
        in_flight,
        forwarded: &forwarded,
        initial: &table,
        remember_userns,
    };
    let on_ready = |channel: &Channel| handle_one(&state, channel);
    // The host half sets up beside the helper's own start; the helper waits for it.
    let handover =
        spawn_host_half(&config.masks, host_half_priority).map_err(|source| HelperError::Io {
            what: "starting the host half",
            source,
        })?;
    let charged_to = config.charged_to.as_ref().map_or(-1, |fd| fd.as_raw_fd());
    let before_join = || {
        avoid_oom_kills(fds.host_proc);
        take_host_half(&half, &handover)
    };
    // Into the container's memory cgroup last, once set up, so that only what it does for the
    // container is charged there (the file's opener, the runtime, is what the kernel checks).
    let after_join = || {
        become_container_root()?;
        enter_own_namespace(&half)?;
        if charged_to >= 0 {
            join_cgroup(charged_to).map_err(|errno| Failure {
                stage: Stage::Helper,
                step: 60,
                errno,
            })?;
            sys::close(charged_to);
        }
        Ok(())
    };
    let serve = |request: &[u8], received: &mut ReceivedFds, out: &mut [u8; MAX_RESPONSE]| {
        let table = request.strip_prefix(START)?;
        out[0] = u8::from(take_listener(table, received, listener, &state, &watched));
        Some(1)
    };
    // A helper whose runtime died before handing it the listener has nothing to keep.
    let orphaned = || {
        if watched.load(Ordering::Relaxed) >= 0 {
            refuse_until_taken_over(&state);
        }
    };
    Helper::fork(&HelperSpec {
        target: init,
        join: Namespaces::USER,
        join_via: config.userns_fd.as_ref().map(|fd| fd.as_raw_fd()),
        keep: &[fds.listener, fds.host_proc, handover.raw_fd(), charged_to],
        before_join: Some(&before_join),
        after_join: Some(&after_join),
        serve: &serve,
        watch: Some((&watched, &on_ready)),
        orphaned: Some(&orphaned),
    })
}

/// In a helper forked ahead of its listener: takes the initial mounts (`table`) and the
/// listener the runtime sent, moves itself into the cgroup of the `tasks` file sent after it
/// if there is one, puts the listener at the number the helper serves (`slot`, the
/// placeholder until now) and starts watching it. Once only. Runs after fork: allocation-free.
fn take_listener(
    table: &[u8],
    received: &mut ReceivedFds,
    slot: RawFd,
    state: &HelperState<'_>,
    watched: &AtomicI32,
) -> bool {
    if watched.load(Ordering::Relaxed) >= 0 {
        return false;
    }
    let Some(listener) = received.take() else {
        return false;
    };
    // The container's memory cgroup, when the runtime sent one: joined before anything is
    // served.
    if let Some(tasks) = received.take() {
        if join_cgroup(tasks.as_raw_fd()).is_err() {
            return false;
        }
    }
    if !state.initial.take_encoded(table) {
        return false;
    }
    // SAFETY: dup3 on two descriptors this process holds.
    if unsafe { libc::dup3(listener.as_raw_fd(), slot, libc::O_CLOEXEC) } < 0 {
        return false;
    }
    watched.store(slot, Ordering::Relaxed);
    true
}

/// Joining a user namespace keeps the host's IDs, which the namespace cannot name: what the
/// helper mounts would belong to nobody. Become the namespace's root, as the init did.
fn become_container_root() -> Result<(), Failure> {
    // SAFETY: plain syscalls with integer arguments; a NULL list with size 0 is allowed.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) == -1
            || libc::setresgid(0, 0, 0) == -1
            || libc::setresuid(0, 0, 0) == -1
        {
            return Err(Failure::last_errno(Stage::Helper, 2));
        }
    }
    Ok(())
}

impl Handler for MountVetter {
    fn handle(&self, _: &Notification, _: &Listener) -> Option<Reply> {
        // The helper receives from the listener itself; the supervisor never dispatches.
        Some(Reply::Error(libc::ENOSYS))
    }

    fn serves_itself(&self) -> bool {
        true
    }

    fn event_fd(&self) -> Option<RawFd> {
        self.lock_helper().as_ref().map(Helper::channel_fd)
    }

    fn on_event(&self) -> EventOutcome {
        let mut event = [0u8; MAX_RESPONSE];
        // A bounded batch: the channel stays readable and epoll calls again.
        for _ in 0..EVENTS_PER_WAKE {
            let received = match self.lock_helper().as_ref() {
                Some(helper) => helper.try_recv(&mut event),
                None => return EventOutcome::Gone,
            };
            match received {
                Ok(Some(len)) if event[..4] == SYSINFO_EVENT.to_ne_bytes() => {
                    self.answer_sysinfo(&event[..len])
                }
                Ok(Some(len)) => log_event(&event[..len]),
                Ok(None) => return EventOutcome::Served,
                Err(err) => return self.replace_helper(&err),
            }
        }
        EventOutcome::Served
    }

    fn watch(&self) {
        let pending = self.in_flight.pending();
        let mut seen = self.seen_on.lock().unwrap_or_else(|p| p.into_inner());
        let Some((id, caller)) = pending else {
            *seen = None;
            return;
        };
        match *seen {
            Some((seen_id, since)) if seen_id == id => {
                if since.elapsed() >= crate::held::HELD_AFTER {
                    // Again after as long, while it stays held.
                    *seen = Some((id, std::time::Instant::now()));
                    drop(seen);
                    self.free_held_helper(caller);
                }
            }
            _ => *seen = Some((id, std::time::Instant::now())),
        }
    }

    fn retire(&self) {
        // Kills and reaps the helper, answers the calls it left (the one it had received, and
        // the sysinfo calls it handed on that the supervisor has not read): when another
        // process still holds the listener, as an orphan does after a failed take-over, nobody
        // else would. Then closes the runtime's descriptor of the listener.
        let mut helper = self.lock_helper().take();
        if let Some(helper) = helper.as_mut() {
            helper.kill();
        }
        let mut listener = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fd) = listener.as_ref().map(AsRawFd::as_raw_fd) {
            if let Some(helper) = &helper {
                refuse_unread_sysinfo(helper, fd);
            }
            if let Some((id, reply)) = self.in_flight.take() {
                let _ = respond(fd, id, reply);
            }
        }
        listener.take();
    }
}

/// Answers ENOSYS to the sysinfo calls a dead `helper` handed on and nobody read: the
/// messages it sent before it died.
fn refuse_unread_sysinfo(helper: &Helper, listener: RawFd) {
    let mut event = [0u8; MAX_RESPONSE];
    while let Ok(Some(len)) = helper.try_recv(&mut event) {
        if let Some(id) = sysinfo_event_id(&event[..len]) {
            let _ = respond(listener, id, Reply::Error(libc::ENOSYS));
        }
    }
}

/// The notification id a sysinfo event carries, if `event` is one.
fn sysinfo_event_id(event: &[u8]) -> Option<u64> {
    if event.get(..4)? != SYSINFO_EVENT.to_ne_bytes() {
        return None;
    }
    Some(u64::from_ne_bytes(event.get(4..12)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_and_the_maps_text_agree_on_what_is_writable() {
        // Two pages read-write, the second then made read-only, and one never mapped.
        // SAFETY: a fresh anonymous mapping of two pages, unmapped below.
        let pages = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(pages, libc::MAP_FAILED);
        // SAFETY: the second page of the mapping above.
        let second = unsafe { pages.cast::<u8>().add(4096) };
        // SAFETY: mprotect of a page of our own mapping, which nothing reads meanwhile.
        let protected = unsafe { libc::mprotect(second.cast(), 4096, libc::PROT_READ) };
        assert_eq!(protected, 0);
        let first = pages as u64;
        let on_stack = 0u64;
        let cases = [
            (first, 112, true),
            (first + 4096 - 56, 112, false),
            (first + 4096, 8, false),
            (&on_stack as *const u64 as u64, 8, true),
            (8, 8, false),
            (u64::MAX - 4, 112, false),
        ];
        let maps = std::fs::File::open("/proc/self/maps").unwrap();
        let asked: Vec<Option<bool>> = cases
            .iter()
            .map(|(addr, len, _)| queried_writable(&maps, *addr, *len))
            .collect();
        let text = std::fs::read_to_string("/proc/self/maps").unwrap();
        for ((addr, len, writable), asked) in cases.iter().zip(asked) {
            assert_eq!(mapped_writable(&text, *addr, *len), *writable, "{addr:#x}");
            // A kernel before 6.11 cannot be asked (None); one that can answers the same.
            assert!(asked.is_none_or(|asked| asked == *writable), "{addr:#x}");
            assert_eq!(span_writable(&maps, *addr, *len).unwrap(), *writable);
        }
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(pages, 8192) };
    }

    #[test]
    fn only_memory_mapped_writable_takes_a_sysinfo_answer() {
        let maps = "00400000-00401000 r-xp 00000000 08:01 1 /bin/x\n\
                    00600000-00602000 rw-p 00000000 00:00 0 \n\
                    00602000-00603000 rw-p 00000000 00:00 0 [heap]\n\
                    7f0000000000-7f0000001000 r--p 00000000 00:00 0 \n";
        assert!(mapped_writable(maps, 0x600000, 112));
        // Across two writable mappings that meet.
        assert!(mapped_writable(maps, 0x601fc0, 112));
        // Read-only code, a read-only mapping, past the heap's end, unmapped, overflowing.
        assert!(!mapped_writable(maps, 0x400000, 112));
        assert!(!mapped_writable(maps, 0x7f0000000000, 8));
        assert!(!mapped_writable(maps, 0x602fc0, 112));
        assert!(!mapped_writable(maps, 0x500000, 8));
        assert!(!mapped_writable(maps, u64::MAX - 4, 112));
        assert!(!mapped_writable("garbage", 0x600000, 8));
    }

    proptest::proptest! {
        #[test]
        fn a_span_is_writable_exactly_when_each_byte_is(
            regions in proptest::collection::vec((0u64..64, 1u64..16, proptest::bool::ANY), 0..6),
            addr in 0u64..200,
            len in 1u64..40,
        ) {
            // Non-overlapping mappings in rising order, with gaps.
            let mut maps = String::new();
            let mut at = 0;
            let mut writable = std::collections::BTreeSet::new();
            for (gap, size, w) in regions {
                let start = at + gap;
                at = start + size;
                maps += &format!("{start:x}-{at:x} {}-p 0 0:0 0\n", if w { "rw" } else { "r-" });
                if w {
                    writable.extend(start..at);
                }
            }
            let expected = (addr..addr + len).all(|byte| writable.contains(&byte));
            proptest::prop_assert_eq!(mapped_writable(&maps, addr, len), expected, "{}", maps);
        }
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_relative_paths_the_kernel_resolves_need_the_callers_working_directory() {
        let call = |flags: u64, source: &'static CStr, target: &'static CStr, fstype, data| Call {
            umount: false,
            flags,
            source: Some(source),
            target,
            fstype: Some(fstype),
            data,
        };
        let needs = |c: Call<'_>| needs_working_directory(&c, classify_call(c.flags, b""));
        let bind = libc::MS_BIND;
        // A tmpfs's source and options are no paths; its target is.
        assert!(!needs(call(
            0,
            c"none",
            c"/mnt",
            c"tmpfs",
            Some(c"size=1m")
        )));
        assert!(needs(call(0, c"none", c"mnt", c"tmpfs", None)));
        // A bind's source is a path; a propagation change's is not.
        assert!(needs(call(bind, c"src", c"/mnt", c"", None)));
        assert!(!needs(call(bind, c"/src", c"/mnt", c"", Some(c"x"))));
        let private = libc::MS_PRIVATE;
        assert!(!needs(call(private, c"none", c"/mnt", c"", None)));
        // Options of a filesystem not known to take none may name paths (overlay's, procfs's).
        assert!(needs(call(
            0,
            c"none",
            c"/m",
            c"overlay",
            Some(c"lowerdir=/l")
        )));
        assert!(needs(call(
            0,
            c"proc",
            c"/proc",
            c"proc",
            Some(c"hidepid=2")
        )));
        assert!(needs(call(0, c"dev", c"/mnt", c"ext4", None)));
        let umount = |target| Call {
            umount: true,
            ..call(0, c"", target, c"", None)
        };
        assert!(!needs(umount(c"/mnt")));
        assert!(needs(umount(c"mnt")));
    }

    fn table_of(message: &[u8], room: usize) -> Option<InitialTable> {
        let table = InitialTable::with_room(room);
        table
            .take_encoded(message.strip_prefix(START)?)
            .then_some(table)
    }

    proptest! {
        #[test]
        fn initial_mounts_reach_a_helper_forked_ahead(
            initial in proptest::collection::btree_map(any::<u32>(), any::<bool>(), 0..300),
            absent in any::<u32>(),
        ) {
            let initial: Vec<(u32, bool)> = initial.into_iter().collect();
            let message = encode_initial(&initial).unwrap();
            let table = table_of(&message, MOST_EARLY_INITIAL).unwrap();
            for (id, read_only) in &initial {
                prop_assert_eq!(table.find(*id), Some(InitialMount { read_only: *read_only }));
            }
            if !initial.iter().any(|(id, _)| *id == absent) {
                prop_assert_eq!(table.find(absent), None);
            }
        }

        #[test]
        fn any_start_message_is_taken_whole_and_sorted_or_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let table = InitialTable::with_room(16);
            let taken = table.take_encoded(&bytes);
            let entries = table.to_vec();
            if taken {
                prop_assert_eq!(entries.len(), bytes.len() / INITIAL_ENTRY);
                prop_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
            } else {
                prop_assert!(entries.is_empty());
            }
        }
    }

    #[test]
    fn a_start_message_that_does_not_fit_is_refused() {
        let many: Vec<(u32, bool)> = (0..=MOST_EARLY_INITIAL as u32)
            .map(|id| (id, false))
            .collect();
        assert_eq!(
            encode_initial(&many),
            None,
            "more than a helper forked ahead takes"
        );
        let three = encode_initial(&[(1, true), (2, false), (3, true)]).unwrap();
        assert!(table_of(&three, 2).is_none(), "more than the room reserved");
        assert!(
            table_of(&three[..three.len() - 1], 3).is_none(),
            "cut short"
        );
        let unsorted = encode_initial(&[(2, true), (1, false)]).unwrap();
        assert!(table_of(&unsorted, 3).is_none(), "not sorted");
        assert!(table_of(b"eci-stop", 3).is_none(), "not a start message");
    }

    #[test]
    fn sysinfo_events_name_their_call() {
        let mut event = [0u8; 24];
        event[..4].copy_from_slice(&SYSINFO_EVENT.to_ne_bytes());
        event[4..12].copy_from_slice(&42u64.to_ne_bytes());
        assert_eq!(sysinfo_event_id(&event), Some(42));
        assert_eq!(sysinfo_event_id(&event[..8]), None, "cut short");
        assert_eq!(sysinfo_event_id(&[0u8; 24]), None, "a refusal's event");
    }

    #[test]
    fn a_process_that_does_not_block_the_hold_signal_is_never_sent_it() {
        // As an orphan of an earlier version: SIGUSR1 and SIGUSR2 would kill it.
        let mut earlier = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let process = PidFd::open(earlier.id() as i32).unwrap();
        let err = hold_orphan(&process).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported, "{err}");
        release_orphan(&process);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(process.is_alive(), "neither signal was sent");
        earlier.kill().unwrap();
        earlier.wait().unwrap();
    }

    #[test]
    fn reads_namespace_links() {
        assert_eq!(parse_namespace_link(b"mnt:[4026531841]"), Some(4026531841));
        for bad in [&b"mnt:[]"[..], b"mnt:4026531841", b"mnt:[12x]", b"]", b""] {
            assert_eq!(
                parse_namespace_link(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_nested_user_namespace_counts_as_the_containers() {
        use std::os::unix::fs::MetadataExt;
        let own = std::fs::metadata("/proc/self/ns/user").unwrap().ino();
        let me = std::process::id();
        assert!(in_user_namespace(me, own));
        assert!(!in_user_namespace(me, own + 1));
        let mut nested = std::process::Command::new("unshare")
            .args(["--user", "sleep", "5"])
            .spawn()
            .unwrap();
        let pid = nested.id();
        // unshare has made its namespace once its own differs from ours.
        let moved = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            std::fs::metadata(format!("/proc/{pid}/ns/user")).is_ok_and(|m| m.ino() != own)
        });
        assert!(moved);
        assert!(
            in_user_namespace(pid, own),
            "a child namespace is inside ours"
        );
        let child = std::fs::metadata(format!("/proc/{pid}/ns/user"))
            .unwrap()
            .ino();
        assert!(
            !in_user_namespace(me, child),
            "ours is not inside the child's"
        );
        nested.kill().unwrap();
        nested.wait().unwrap();
    }

    #[test]
    fn reads_own_capabilities() {
        // The test runs as root: CAP_SYS_ADMIN is effective.
        assert_ne!(
            sys::effective_caps(std::process::id() as i32).unwrap() & (1 << CAP_SYS_ADMIN),
            0
        );
    }

    #[test]
    fn pid_directories_are_spelled_out() {
        let proc = std::fs::File::open("/proc").unwrap();
        assert!(open_pid_dir(proc.as_raw_fd(), std::process::id()).is_ok());
        assert!(open_pid_dir(proc.as_raw_fd(), 0).is_err());
    }
}
