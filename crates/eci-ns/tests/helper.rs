//! A long-lived helper in real namespaces (needs root).

use std::io::Write;
use std::os::fd::AsRawFd;

use eci_ns::channel::{Channel, ReceivedFds};
use eci_ns::helper::{Helper, HelperError, HelperSpec, MAX_RESPONSE};
use eci_ns::{Namespaces, PidFd};

/// A runtime that kills a helper must still learn what it said before it died (a call it had
/// handed on, which would otherwise wait for good).
#[test]
fn what_a_killed_helper_sent_before_it_died_can_still_be_read() {
    let me = PidFd::open(std::process::id() as i32).unwrap();
    let (wake_read, mut wake_write) = std::io::pipe().unwrap();
    let wake = wake_read.as_raw_fd();
    let watched = std::sync::atomic::AtomicI32::new(wake);
    let on_ready = |channel: &Channel| {
        let mut byte = 0u8;
        // SAFETY: a one-byte read into a local.
        unsafe { libc::read(wake, (&raw mut byte).cast(), 1) };
        let _ = channel.try_send_bytes(b"event");
    };
    let serve = |_: &[u8], _: &mut ReceivedFds, _: &mut [u8; MAX_RESPONSE]| None;
    let mut helper = Helper::start(&HelperSpec {
        target: &me,
        join: Namespaces::UTS,
        join_via: None,
        keep: &[wake],
        before_join: None,
        after_join: None,
        serve: &serve,
        watch: Some((&watched, &on_ready)),
        orphaned: None,
    })
    .unwrap();
    wake_write.write_all(b"x").unwrap();
    let mut ready = libc::pollfd {
        fd: helper.channel_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let polled = unsafe { libc::poll(&mut ready, 1, 5_000) };
    assert_eq!(polled, 1, "the event comes");

    helper.kill();
    assert_eq!(helper.pid(), 0);
    let mut buf = [0u8; 64];
    assert_eq!(helper.try_recv(&mut buf).unwrap(), Some(5));
    assert_eq!(&buf[..5], b"event");
    assert!(matches!(helper.try_recv(&mut buf), Err(HelperError::Gone)));
}

#[test]
fn a_killed_child_stuck_in_the_kernel_does_not_hold_up_its_killer() {
    // A task frozen by the cgroup v1 freezer takes a SIGKILL only once thawed, as a helper held
    // in a FUSE request that its container's server never answers takes it only once answered.
    use std::time::{Duration, Instant};
    let freezer = std::path::Path::new("/sys/fs/cgroup/freezer");
    assert!(
        freezer.is_dir(),
        "a cgroup v1 freezer hierarchy at {freezer:?}"
    );
    let dir = freezer.join(format!("eci-test-reap-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let frozen_group = FreezerGroup(dir.clone());
    // SAFETY: the child only calls close_range and pause, which are async-signal-safe.
    let pid = match unsafe { eci_ns::sys::fork() }.unwrap() {
        eci_ns::sys::Forked::Child => {
            // Nothing of the other tests' (a helper's channel kept open here would never read
            // as closed there).
            // SAFETY: close_range with integer arguments.
            unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
            loop {
                // SAFETY: pause takes no arguments.
                unsafe { libc::pause() };
            }
        }
        eci_ns::sys::Forked::Parent { pid, .. } => pid,
    };
    let state = dir.join("freezer.state");
    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();
    std::fs::write(&state, "FROZEN").unwrap();
    let frozen = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == "FROZEN")
    });
    assert!(frozen, "the child froze");
    let (done, finished) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        eci_ns::helper::kill_and_reap(pid, Duration::from_millis(50));
        let _ = done.send(());
    });
    let returned = finished.recv_timeout(Duration::from_secs(3)).is_ok();
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    std::fs::write(&state, "THAWED").unwrap();
    assert!(returned, "its killer went on after {:?}", started.elapsed());
    assert!(alive, "the frozen child was still there");
    // Thawed, it dies, and the thread left to wait for it reaps it.
    let reaped = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    drop(frozen_group);
    assert!(reaped, "reaped once it could die");
}

/// A freezer cgroup, thawed and removed however the test ends (a frozen child would otherwise
/// stay, unkillable, with its directory).
struct FreezerGroup(std::path::PathBuf);

impl Drop for FreezerGroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
        let procs = std::fs::read_to_string(self.0.join("cgroup.procs")).unwrap_or_default();
        for pid in procs
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// A field of a process's status file, read as hex.
fn status_mask(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap()
}

#[test]
fn a_helper_runs_none_of_the_runtimes_handlers_and_holds_none_of_its_streams() {
    // Its children may enter a container's PID namespace, whose root may signal them; a caller
    // reading the runtime's output to its end would wait as long as the helper lives.
    extern "C" fn noted(_: libc::c_int) {}
    // SAFETY: a handler that does nothing, for a signal nothing else in this test binary uses.
    unsafe { libc::signal(libc::SIGPWR, noted as *const () as libc::sighandler_t) };
    let me = PidFd::open(std::process::id() as i32).unwrap();
    let serve = |_: &[u8], _: &mut ReceivedFds, _: &mut [u8; MAX_RESPONSE]| None;
    let helper = Helper::start(&HelperSpec {
        target: &me,
        join: Namespaces::UTS,
        join_via: None,
        keep: &[],
        before_join: None,
        after_join: None,
        serve: &serve,
        watch: None,
        orphaned: None,
    })
    .unwrap();
    let pid = helper.pid();
    let bit = |signal: libc::c_int| 1u64 << (signal - 1);
    assert_eq!(status_mask(pid, "SigCgt:") & bit(libc::SIGPWR), 0);
    // Ignored signals stay ignored (Rust ignores SIGPIPE, which a helper's writes rely on).
    assert_ne!(status_mask(pid, "SigIgn:") & bit(libc::SIGPIPE), 0);
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"), "fd {fd}");
    }
}
