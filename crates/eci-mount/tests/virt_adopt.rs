//! A new server takes over the FUSE connection of one killed with SIGKILL, and the containers'
//! files work again without being mounted anew: reads made while no server runs wait and are
//! then answered with the container's figures, including a request the dead server had read
//! and never answered. Without a descriptor kept, reads fail with ENOTCONN instead. Needs root,
//! /dev/fuse, Linux 6.9 (FUSE_NOTIFY_RESEND) and a memory controller.
//!
//! Its own main (no test harness): the first server is this program again, so that it can be
//! killed, and a server needs threads, which a fork of a threaded test harness cannot start.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eci_mount::virt::{CgroupDirs, Connections, ControllerDir, Tenant, VirtualFs};
use eci_policy::settings::SysctlMode;

/// Set in the copy of this program that is the first server: the test's directory.
const FIRST_SERVER: &str = "ECI_TEST_FIRST_SERVER";
/// The stalled container's slot and the limited one's, as the first server registers them.
const STALLED: u64 = 3;
const LIMITED: u64 = 5;

fn main() {
    if let Ok(dir) = std::env::var(FIRST_SERVER) {
        first_server(Path::new(&dir));
    }
    let started = Instant::now();
    a_new_server_answers_the_dead_ones_callers();
    without_a_kept_descriptor_reads_fail_closed();
    println!("virt_adopt: 2 passed in {:?}", started.elapsed());
}

/// The first server: registers a container whose memory.stat is a FIFO nobody writes (its
/// request stays read and unanswered), and one with a 256 MiB limit; tells the test its
/// connections' descriptor numbers; waits to be killed.
fn first_server(dir: &Path) -> ! {
    let fs = VirtualFs::mount(&dir.join("mnt")).expect("mount");
    let stall = dir.join("stall");
    std::fs::create_dir_all(&stall).unwrap();
    nix::unistd::mkfifo(&stall.join("memory.stat"), nix::sys::stat::Mode::S_IRUSR).unwrap();
    let stalled = CgroupDirs {
        memory: Some(ControllerDir {
            dir: stall.clone(),
            root: stall,
            unified: false,
        }),
        ..CgroupDirs::default()
    };
    fs.register_at(STALLED, tenant("stalled", stalled)).unwrap();
    fs.register_at(LIMITED, tenant("limited", limited_dirs(dir)))
        .unwrap();
    let connections = fs.connections().unwrap();
    let ready = format!(
        "{} {}",
        connections.files.into_raw_fd(),
        connections.tunables.into_raw_fd(),
    );
    std::fs::write(dir.join("ready"), ready).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn tenant(name: &str, dirs: CgroupDirs) -> Tenant<'_> {
    Tenant {
        name,
        dirs,
        started: Instant::now(),
        owner: 0,
        mode_of: &|_| SysctlMode::ContainerOnly,
        written: BTreeMap::new(),
        tag: None,
    }
}

/// A "memory controller" directory of plain files: a 256 MiB limit, nothing used.
fn limited_dirs(dir: &Path) -> CgroupDirs {
    let memory = dir.join("limited");
    std::fs::create_dir_all(&memory).unwrap();
    for (file, value) in [
        ("memory.limit_in_bytes", "268435456\n"),
        ("memory.usage_in_bytes", "0\n"),
        ("memory.stat", ""),
    ] {
        std::fs::write(memory.join(file), value).unwrap();
    }
    CgroupDirs {
        memory: Some(ControllerDir {
            dir: memory.clone(),
            root: memory,
            unified: false,
        }),
        ..CgroupDirs::default()
    }
}

/// The first server and its mount. Dropped (a test done, or failed), the server is killed and
/// its connection aborted: a reader left waiting on it could otherwise never end, nor this
/// program exit.
struct FirstServer {
    child: Option<Child>,
    mnt: PathBuf,
}

impl FirstServer {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for FirstServer {
    fn drop(&mut self) {
        self.kill();
        let _ = eci_mount::virt::abort(&self.mnt);
        let _ = eci_mount::virt::detach(&self.mnt);
    }
}

/// Starts the first server in `dir` and waits until it serves; returns it and its connections'
/// descriptor numbers (files, tunables).
fn start_first_server(dir: &Path) -> (FirstServer, [i32; 2]) {
    let child = Command::new(std::env::current_exe().unwrap())
        .env(FIRST_SERVER, dir)
        .spawn()
        .unwrap();
    let server = FirstServer {
        child: Some(child),
        mnt: dir.join("mnt"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("ready")) {
            let fields: Vec<&str> = text.split(' ').collect();
            if let [files, tunables] = fields[..] {
                let fds = [files.parse().unwrap(), tunables.parse().unwrap()];
                return (server, fds);
            }
        }
        assert!(Instant::now() < deadline, "the first server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `path` on a thread of its own; the result comes on the channel.
fn read_later(path: PathBuf) -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read_to_string(path));
    });
    rx
}

/// A copy of descriptor `fd` of process `pid`.
fn steal(pid: u32, fd: i32) -> OwnedFd {
    // SAFETY: plain syscalls on numbers; the results are checked before use.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let pidfd = OwnedFd::from_raw_fd(pidfd);
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) as i32;
        assert!(
            copy >= 0,
            "pidfd_getfd: {}",
            std::io::Error::last_os_error()
        );
        OwnedFd::from_raw_fd(copy)
    }
}

/// Whether a thread of process `pid` waits on the FIFO (opening it: no writer ever comes).
fn waits_on_a_pipe(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("wchan"))
            .is_ok_and(|w| w.contains("partner") || w.contains("pipe"))
    })
}

fn a_new_server_answers_the_dead_ones_callers() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let (mut server, [files, tunables]) = start_first_server(dir.path());
    let kept = Connections {
        files: steal(server.pid(), files),
        tunables: steal(server.pid(), tunables),
    };
    let limited = mnt.join(format!("files/limited.{LIMITED}/meminfo"));
    let tunable = mnt.join(format!("tunables/limited.{LIMITED}/kernel.panic"));
    let host_panic = std::fs::read_to_string("/proc/sys/kernel/panic").unwrap();
    assert_eq!(std::fs::read_to_string(&tunable).unwrap(), host_panic);
    // Opened now, read once the new server serves.
    let opened_before = std::fs::File::open(&tunable).unwrap();
    let before = std::fs::read_to_string(&limited).unwrap();
    assert!(
        before.starts_with("MemTotal:         262144 kB\n"),
        "{before}"
    );

    // A request the first server reads and never answers.
    let stalled = read_later(mnt.join(format!("files/stalled.{STALLED}/meminfo")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !waits_on_a_pipe(server.pid()) {
        assert!(
            Instant::now() < deadline,
            "the stalled request never reached the server"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    // The kernel serves a file it read within the last 100 ms from its page cache, the same
    // text again; after that it asks the server.
    std::thread::sleep(Duration::from_millis(150));

    // No server: reads wait; nothing answers them, least of all with the host's figures.
    let waiting = read_later(limited.clone());
    let waiting_tunable = read_later(tunable.clone());
    for rx in [&stalled, &waiting, &waiting_tunable] {
        if let Ok(answer) = rx.recv_timeout(Duration::from_millis(300)) {
            panic!("a read was answered with no server: {answer:?}");
        }
    }

    // The new server: the stalled container now has a readable memory controller.
    let adoption = VirtualFs::adopt(&mnt, kept).unwrap();
    let unstalled = limited_dirs(&dir.path().join("again"));
    adoption
        .register_at(STALLED, tenant("stalled", unstalled))
        .unwrap();
    adoption
        .register_at(LIMITED, tenant("limited", limited_dirs(dir.path())))
        .unwrap();
    let fs = adoption.serve().unwrap();
    let answer = waiting_tunable.recv_timeout(Duration::from_secs(10));
    assert_eq!(answer.expect("the waiting tunable").unwrap(), host_panic);
    let mut buf = [0u8; 64];
    let read = opened_before
        .read_at(&mut buf, 0)
        .expect("the tunable opened before");
    assert_eq!(String::from_utf8_lossy(&buf[..read]), host_panic);
    for (what, rx) in [
        ("the resent request", stalled),
        ("the waiting read", waiting),
    ] {
        let text = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{what} was never answered"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            text.starts_with("MemTotal:         262144 kB\n"),
            "{what}: {text}"
        );
    }
    // New opens work, through sendfile too (busybox cat), and a slot taken again is never
    // handed out.
    assert_eq!(std::fs::read_to_string(&limited).unwrap(), before);
    let cat = Command::new("busybox")
        .arg("cat")
        .arg(&limited)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), before);
    // A retired slot is refused.
    let retired = fs.register_at(STALLED - 1, tenant("retired", CgroupDirs::default()));
    assert!(retired.is_err());
    let fresh = fs
        .register_with("fresh", CgroupDirs::default(), Instant::now(), 0, &|_| {
            SysctlMode::ContainerOnly
        })
        .unwrap();
    assert!(
        fresh
            .files
            .ends_with(format!("files/fresh.{}", LIMITED + 1)),
        "{fresh:?}"
    );
    drop(fs);
    drop(server);
    println!("a_new_server_answers_the_dead_ones_callers: ok");
}

fn without_a_kept_descriptor_reads_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let (mut server, _) = start_first_server(dir.path());
    let limited = mnt.join(format!("files/limited.{LIMITED}/meminfo"));
    let tunable = mnt.join(format!("tunables/limited.{LIMITED}/kernel.panic"));
    assert!(std::fs::read_to_string(&limited).is_ok());
    server.kill();
    // The kernel serves a text it read within the last 100 ms from its page cache: wait that
    // out.
    std::thread::sleep(Duration::from_millis(150));
    for path in [limited, tunable] {
        let err = std::fs::read_to_string(&path).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    }
    drop(server);
    println!("without_a_kept_descriptor_reads_fail_closed: ok");
}
