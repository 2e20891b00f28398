//! Vetting and performing a container's `mount` and `umount2` calls.
//!
//! The supervisor copies the arguments out of the caller's memory, checks that the call is
//! still pending (SECCOMP_IOCTL_NOTIF_ID_VALID) and opens the caller's `/proc/PID` directory,
//! which pins that very process, then checks again. A helper living in the container's user and
//! mount namespaces receives the copies and that directory. For each call it enters the caller's
//! mount namespace, root and working directory, gathers the facts a verdict needs (the caller's
//! capabilities and user namespace, whether the target is an initial mount), asks
//! [`eci_policy::mount`] for the verdict and, if allowed, performs the call itself from the
//! copies. The caller's memory is never read again, so changing it after the check changes
//! nothing, and no call is ever answered with "continue".

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use eci_ns::channel::ReceivedFds;
use eci_ns::helper::{Helper, HelperError, MAX_RESPONSE};
use eci_ns::sys::{self, check_int, Errno, SysResult};
use eci_ns::{Namespaces, PidFd};
use eci_policy::mount::{
    classify, decide_mount, decide_umount, Caller, InitialMount, MountPolicy, Rule, Target, Verdict,
};

use crate::notify::{read_string, Listener, Notification, Reply};
use crate::supervisor::Handler;

const OP_MOUNT: u32 = 1;
const OP_UMOUNT: u32 = 2;
const HAS_SOURCE: u32 = 1;
const HAS_FSTYPE: u32 = 2;
const HAS_DATA: u32 = 4;
const HEADER: usize = 24;
/// Longest path read from a caller.
const PATH_MAX: usize = 4095;
/// Longest filesystem type read from a caller.
const FSTYPE_MAX: usize = 255;
/// Longest mount data read from a caller (the kernel copies one page).
const DATA_MAX: usize = 4095;
const CAP_SYS_ADMIN: u32 = 21;

/// A mount or umount2 call with its arguments copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedCall {
    /// `mount` or `umount2`.
    pub op: Op,
    /// mount(2) flags or umount2(2) flags.
    pub flags: u64,
    /// mount source.
    pub source: Option<Vec<u8>>,
    /// The path operated on.
    pub target: Vec<u8>,
    /// mount filesystem type.
    pub fstype: Option<Vec<u8>>,
    /// mount data.
    pub data: Option<Vec<u8>>,
}

/// Which call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// mount(2).
    Mount,
    /// umount2(2).
    Umount,
}

impl CopiedCall {
    /// The request sent to the helper.
    pub fn encode(&self) -> Vec<u8> {
        let strings = [
            &self.source,
            &Some(self.target.clone()),
            &self.fstype,
            &self.data,
        ];
        let mut present = 0;
        for (bit, s) in [
            (HAS_SOURCE, &self.source),
            (HAS_FSTYPE, &self.fstype),
            (HAS_DATA, &self.data),
        ] {
            if s.is_some() {
                present |= bit;
            }
        }
        let op = match self.op {
            Op::Mount => OP_MOUNT,
            Op::Umount => OP_UMOUNT,
        };
        let mut out = Vec::with_capacity(HEADER + self.target.len() + 64);
        out.extend_from_slice(&op.to_ne_bytes());
        out.extend_from_slice(&self.flags.to_ne_bytes());
        out.extend_from_slice(&present.to_ne_bytes());
        for s in strings {
            let len = s.as_ref().map_or(0, |s| s.len() + 1) as u16;
            out.extend_from_slice(&len.to_ne_bytes());
        }
        for s in strings.into_iter().flatten() {
            out.extend_from_slice(s);
            out.push(0);
        }
        out
    }
}

/// A request as the helper sees it, borrowing the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// `mount` or `umount2`.
    pub op: Op,
    /// The call's flags.
    pub flags: u64,
    /// mount source.
    pub source: Option<&'a CStr>,
    /// The path operated on.
    pub target: &'a CStr,
    /// mount filesystem type.
    pub fstype: Option<&'a CStr>,
    /// mount data.
    pub data: Option<&'a CStr>,
}

/// Parses a request without allocating. `None` for anything malformed.
pub fn decode(bytes: &[u8]) -> Option<Request<'_>> {
    let header = bytes.get(..HEADER)?;
    let word =
        |i: usize| u32::from_ne_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let op = match word(0) {
        OP_MOUNT => Op::Mount,
        OP_UMOUNT => Op::Umount,
        _ => return None,
    };
    let mut flags = [0u8; 8];
    flags.copy_from_slice(&header[4..12]);
    let present = word(12);
    let len = |i: usize| usize::from(u16::from_ne_bytes([header[16 + 2 * i], header[17 + 2 * i]]));
    let mut at = HEADER;
    let mut take = |i: usize| -> Option<Option<&CStr>> {
        let n = len(i);
        if n == 0 {
            return Some(None);
        }
        let s = CStr::from_bytes_with_nul(bytes.get(at..at + n)?).ok()?;
        at += n;
        Some(Some(s))
    };
    let (source, target, fstype, data) = (take(0)?, take(1)??, take(2)?, take(3)?);
    let consistent = |bit: u32, s: Option<&CStr>| (present & bit != 0) == s.is_some();
    if !(consistent(HAS_SOURCE, source)
        && consistent(HAS_FSTYPE, fstype)
        && consistent(HAS_DATA, data))
    {
        return None;
    }
    Some(Request {
        op,
        flags: u64::from_ne_bytes(flags),
        source,
        target,
        fstype,
        data,
    })
}

/// Copies the arguments of a trapped `mount` or `umount2` out of the caller's memory.
pub fn copy_call(n: &Notification) -> Result<CopiedCall, Errno> {
    let pid = n.pid;
    let optional =
        |addr: u64, max: usize| (addr != 0).then(|| read_string(pid, addr, max)).transpose();
    match n.nr as i64 {
        libc::SYS_mount => Ok(CopiedCall {
            op: Op::Mount,
            target: read_string(pid, n.args[1], PATH_MAX)?,
            source: optional(n.args[0], PATH_MAX)?,
            fstype: optional(n.args[2], FSTYPE_MAX)?,
            flags: n.args[3],
            data: optional(n.args[4], DATA_MAX)?,
        }),
        libc::SYS_umount2 => Ok(CopiedCall {
            op: Op::Umount,
            target: read_string(pid, n.args[0], PATH_MAX)?,
            flags: n.args[1],
            source: None,
            fstype: None,
            data: None,
        }),
        _ => Err(Errno(libc::ENOSYS)),
    }
}

/// What the helper answers: the errno the call returns (0 for success) and, for a refusal, the
/// rule's code.
pub fn encode_answer(errno: i32, rule: u32, out: &mut [u8; MAX_RESPONSE]) -> usize {
    out[..4].copy_from_slice(&errno.to_ne_bytes());
    out[4..8].copy_from_slice(&rule.to_ne_bytes());
    8
}

fn decode_answer(bytes: &[u8]) -> Option<(i32, u32)> {
    let b = bytes.get(..8)?;
    Some((
        i32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    ))
}

/// What the helper knows about the container, fixed when it starts.
#[derive(Debug, Clone)]
pub struct HelperConfig {
    /// What the container may do.
    pub policy: MountPolicy,
    /// Inode of the container's user namespace.
    pub userns: u64,
    /// The initial mounts: (mount ID, read-only), sorted by ID.
    pub initial: Vec<(u32, bool)>,
}

impl HelperConfig {
    fn initial_mount(&self, id: u32) -> Option<InitialMount> {
        let i = self.initial.binary_search_by_key(&id, |(m, _)| *m).ok()?;
        Some(InitialMount {
            read_only: self.initial[i].1,
        })
    }
}

/// The helper's request handler. Runs after fork: allocation-free.
pub fn serve(
    config: &HelperConfig,
    request: &[u8],
    fds: &mut ReceivedFds,
    out: &mut [u8; MAX_RESPONSE],
) -> usize {
    let (errno, rule) = match (decode(request), fds.raw().first()) {
        (Some(request), Some(&piddir)) => match vet_and_perform(config, &request, piddir) {
            Ok(answer) => answer,
            Err(Errno(errno)) => (errno, 0),
        },
        _ => (libc::EINVAL, 0),
    };
    encode_answer(errno, rule, out)
}

fn vet_and_perform(
    config: &HelperConfig,
    req: &Request<'_>,
    piddir: RawFd,
) -> SysResult<(i32, u32)> {
    let caller = Caller {
        cap_sys_admin: has_capability(piddir, CAP_SYS_ADMIN)?,
        in_container_userns: namespace_inode(piddir, c"ns/user")? == config.userns,
    };
    enter_callers_view(piddir)?;
    let nofollow = req.op == Op::Umount && req.flags & libc::UMOUNT_NOFOLLOW as u64 != 0;
    let target = target_facts(config, req.target, nofollow);
    let verdict = match req.op {
        Op::Mount => {
            let fstype = req.fstype.map_or(&[][..], CStr::to_bytes);
            decide_mount(
                &config.policy,
                classify(req.flags),
                fstype,
                &target,
                &caller,
            )
        }
        Op::Umount => decide_umount(&config.policy, &target, &caller),
    };
    if let Verdict::Deny { errno, rule } = verdict {
        return Ok((errno, rule.code()));
    }
    let done = match req.op {
        Op::Mount => sys::mount(
            req.source,
            req.target,
            req.fstype,
            req.flags as libc::c_ulong,
            req.data,
        ),
        Op::Umount => {
            // SAFETY: target is NUL-terminated.
            check_int(unsafe { libc::umount2(req.target.as_ptr(), req.flags as libc::c_int) })
                .map(drop)
        }
    };
    Ok((done.err().map_or(0, |Errno(e)| e), 0))
}

/// Joins the caller's mount namespace and takes its root and working directory, so that paths
/// (and symlinks in them) resolve exactly as they would for the caller and never outside its
/// root.
fn enter_callers_view(piddir: RawFd) -> SysResult<()> {
    let mnt = open_at(piddir, c"ns/mnt", libc::O_RDONLY)?;
    let root = open_at(piddir, c"root", libc::O_PATH | libc::O_DIRECTORY)?;
    let cwd = open_at(piddir, c"cwd", libc::O_PATH | libc::O_DIRECTORY)?;
    sys::setns(mnt.as_raw_fd(), libc::CLONE_NEWNS)?;
    // SAFETY: plain syscalls on fds we hold and a NUL-terminated path.
    unsafe {
        check_int(libc::fchdir(root.as_raw_fd()))?;
        check_int(libc::chroot(c".".as_ptr()))?;
        check_int(libc::fchdir(cwd.as_raw_fd()))?;
    }
    Ok(())
}

fn open_at(dir: RawFd, name: &CStr, flags: i32) -> SysResult<OwnedFd> {
    // SAFETY: name is NUL-terminated.
    let fd = check_int(unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: openat returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn namespace_inode(piddir: RawFd, name: &CStr) -> SysResult<u64> {
    // SAFETY: an all-zero stat is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: name is NUL-terminated and st a valid out pointer.
    check_int(unsafe { libc::fstatat(piddir, name.as_ptr(), &mut st, 0) })?;
    Ok(st.st_ino)
}

/// Reads CapEff from /proc/PID/status.
fn has_capability(piddir: RawFd, cap: u32) -> SysResult<bool> {
    let status = open_at(piddir, c"status", libc::O_RDONLY)?;
    let mut buf = [0u8; 8192];
    // SAFETY: buf is a valid writable buffer of the given length.
    let len =
        sys::check(
            unsafe { libc::read(status.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
                as libc::c_long,
        )? as usize;
    let effective = parse_cap_eff(&buf[..len]).ok_or(Errno(libc::EIO))?;
    Ok(effective & (1 << cap) != 0)
}

/// The CapEff mask in the text of /proc/PID/status.
pub fn parse_cap_eff(status: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\nCapEff:\t";
    let at = status.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let mut value: u64 = 0;
    let mut digits = 0;
    for &b in status
        .get(at..)?
        .iter()
        .take_while(|b| b.is_ascii_hexdigit())
    {
        value = value.checked_mul(16)? + u64::from((b as char).to_digit(16)?);
        digits += 1;
    }
    (digits > 0).then_some(value)
}

/// Whether `target`, resolved in the caller's view, is the root of an initial mount.
fn target_facts(config: &HelperConfig, target: &CStr, nofollow: bool) -> Target {
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
            .and_then(|id| config.initial_mount(id)),
    }
}

/// The supervisor's handler for one container: copies, checks, forwards to the helper.
#[derive(Debug)]
pub struct MountVetter {
    helper: Helper,
}

impl MountVetter {
    /// Starts the container's mount helper in `init`'s user and mount namespaces.
    pub fn start(init: &PidFd, config: HelperConfig) -> Result<Arc<MountVetter>, HelperError> {
        let serve = |request: &[u8], fds: &mut ReceivedFds, out: &mut [u8; MAX_RESPONSE]| {
            serve(&config, request, fds, out)
        };
        let helper = Helper::spawn(init, Namespaces::USER | Namespaces::MOUNT, &serve)?;
        Ok(Arc::new(MountVetter { helper }))
    }

    /// The helper's pid.
    pub fn helper_pid(&self) -> i32 {
        self.helper.pid()
    }
}

impl Handler for MountVetter {
    fn handle(&self, n: &Notification, listener: &Listener) -> Reply {
        let call = match copy_call(n) {
            Ok(call) => call,
            Err(Errno(errno)) => return Reply::Error(errno),
        };
        // The copies are only trusted if the call is still pending: then the pid still names
        // the caller, whose memory we read.
        if !listener.is_valid(n.id) {
            return Reply::Error(libc::EINTR);
        }
        let piddir = match open_at(
            libc::AT_FDCWD,
            &proc_dir(n.pid),
            libc::O_PATH | libc::O_DIRECTORY,
        ) {
            Ok(fd) => fd,
            Err(Errno(errno)) => return Reply::Error(errno),
        };
        if !listener.is_valid(n.id) {
            return Reply::Error(libc::EINTR);
        }
        let mut answer = [0u8; MAX_RESPONSE];
        let reply = match self.helper.call(&call.encode(), &[piddir.as_raw_fd()], &mut answer) {
            Ok(len) => decode_answer(&answer[..len]).map_or(Reply::Error(libc::EIO), |(errno, rule)| {
                if let Some(rule) = Rule::from_code(rule) {
                    tracing::info!(pid = n.pid, target = %String::from_utf8_lossy(&call.target), "refused: {}", rule.describe());
                }
                if errno == 0 { Reply::Success(0) } else { Reply::Error(errno) }
            }),
            // Fail closed: with no helper nothing is performed.
            Err(err) => {
                tracing::warn!(pid = n.pid, "mount helper unavailable: {err}");
                Reply::Error(libc::ENOSYS)
            }
        };
        reply
    }
}

fn proc_dir(pid: u32) -> std::ffi::CString {
    std::ffi::CString::new(format!("/proc/{pid}")).expect("no NUL in a number")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 0..40)
    }

    proptest! {
        #[test]
        fn requests_round_trip(
            umount in any::<bool>(), flags in any::<u64>(), target in bytes(),
            source in proptest::option::of(bytes()), fstype in proptest::option::of(bytes()), data in proptest::option::of(bytes()),
        ) {
            let call = CopiedCall { op: if umount { Op::Umount } else { Op::Mount }, flags, source, target, fstype, data };
            let encoded = call.encode();
            let req = decode(&encoded).unwrap();
            prop_assert_eq!(req.op, call.op);
            prop_assert_eq!(req.flags, call.flags);
            prop_assert_eq!(req.target.to_bytes(), &call.target[..]);
            prop_assert_eq!(req.source.map(|s| s.to_bytes().to_vec()), call.source.clone());
            prop_assert_eq!(req.fstype.map(|s| s.to_bytes().to_vec()), call.fstype.clone());
            prop_assert_eq!(req.data.map(|s| s.to_bytes().to_vec()), call.data.clone());
        }

        #[test]
        fn decoding_garbage_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode(&garbage);
        }
    }

    #[test]
    fn reads_cap_eff() {
        let status =
            b"Name:\tsh\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t0\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(
            parse_cap_eff(b"CapEff:\t12"),
            None,
            "the key needs its line start"
        );
    }
}
