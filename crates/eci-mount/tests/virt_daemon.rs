//! The per-host virtual files daemon on the real kernel: a container's files and tunables
//! served through it, the daemon killed with SIGKILL and started again by its keeper (reads
//! meanwhile wait, then get the container's figures, and its written tunables are kept), and
//! the keeper giving up after too many deaths (reads then fail with ENOTCONN), and a container
//! served on after its runtime exited, while its init lives. Needs root,
//! /dev/fuse, Linux 6.9 and a memory controller.
//!
//! Its own main: the daemon is this program again, run with `--daemon DIR`.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eci_mount::virt::daemon::{self, DaemonClient, RESTARTS};
use eci_mount::virt::{CgroupDirs, Directories};
use eci_policy::settings::SysctlMode;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "--daemon") {
        let dir = PathBuf::from(&args[2]);
        if let Err(err) = daemon::run(&dir, &args) {
            eprintln!("virt_daemon: {err}");
            std::process::exit(1);
        }
        return;
    }
    if args.get(1).is_some_and(|a| a == "--register-and-hold") {
        // A runtime that registers a container, names its init, and exits.
        let text = |i: usize| args[i].to_str().unwrap().to_string();
        let (dir, cgroup, init) = (text(2), text(3), text(4));
        let client = DaemonClient::new(
            Path::new(&dir),
            vec![
                std::env::current_exe().unwrap().into(),
                "--daemon".into(),
                dir.clone().into(),
            ],
        );
        let served = client
            .register("held", Path::new(&cgroup), 0, &|_| {
                SysctlMode::ContainerOnly
            })
            .unwrap();
        let init = eci_idmap::Holder::of(init.parse().unwrap()).unwrap();
        client.hold("held", init).unwrap();
        println!("{}", served.files.display());
        return;
    }
    let started = Instant::now();
    let cgroup = LimitedCgroup::new();
    a_killed_daemon_comes_back_with_the_containers(&cgroup);
    the_keeper_gives_up_and_reads_fail_closed(&cgroup);
    a_container_is_served_while_its_init_lives(&cgroup);
    a_container_that_died_with_its_daemon_is_forgotten(&cgroup);
    aborting_one_connection_ends_both(&cgroup);
    a_runtime_about_to_register_keeps_the_daemon(&cgroup);
    println!("virt_daemon: 6 passed in {:?}", started.elapsed());
}

/// A memory cgroup limited to 256 MiB, removed on drop.
struct LimitedCgroup {
    path: PathBuf,
    memory: PathBuf,
}

impl LimitedCgroup {
    fn new() -> LimitedCgroup {
        let path = PathBuf::from(format!("/eci-test-virtd-{}", std::process::id()));
        let dirs = CgroupDirs::resolve(&path).unwrap();
        let memory = dirs.memory.expect("a memory controller");
        std::fs::create_dir_all(&memory.dir).unwrap();
        let limit = if memory.unified {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        std::fs::write(memory.dir.join(limit), "268435456").unwrap();
        LimitedCgroup {
            path,
            memory: memory.dir,
        }
    }
}

impl Drop for LimitedCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.memory);
    }
}

/// A daemon directory, torn down on drop whatever happened (its daemon and keeper killed, its
/// mount aborted and detached), so a failed test never leaves a reader waiting forever.
struct DaemonDir {
    dir: tempfile::TempDir,
}

impl DaemonDir {
    fn new() -> DaemonDir {
        DaemonDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn client(&self) -> DaemonClient {
        let program = std::env::current_exe().unwrap();
        let command = vec![program.into(), "--daemon".into(), self.path().into()];
        DaemonClient::new(self.path(), command)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn pid_of(&self, file: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.path().join(file)).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    /// Kills the daemon and waits until its keeper has started another (or has given up:
    /// then `None`).
    fn kill_daemon(&self) -> Option<i32> {
        let pid = self.pid_of("pid").expect("a daemon");
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let keeper_alive = self
                .pid_of("keeper")
                .is_some_and(|k| Path::new(&format!("/proc/{k}")).exists());
            match self.pid_of("pid") {
                Some(new) if new != pid && self.path().join("sock").exists() => return Some(new),
                _ if !keeper_alive => return None,
                _ => {}
            }
        }
        panic!("no daemon came back and the keeper did not give up");
    }
}

impl Drop for DaemonDir {
    fn drop(&mut self) {
        for file in ["pid", "keeper"] {
            if let Some(pid) = self.pid_of(file) {
                // SAFETY: kill takes plain integers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let mnt = self.path().join("mnt");
        let _ = eci_mount::virt::abort(&mnt);
        let _ = eci_mount::virt::detach(&mnt);
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

const LIMITED: &str = "MemTotal:         262144 kB\n";

/// A new daemon directory with container "web" registered in `cgroup`: the directory, its
/// client and the container's directory on the mount.
fn serving_web(cgroup: &LimitedCgroup) -> (DaemonDir, DaemonClient, Directories) {
    let daemon = DaemonDir::new();
    let client = daemon.client();
    let dir = client
        .register("web", &cgroup.path, 0, &|_| SysctlMode::ContainerOnly)
        .unwrap();
    (daemon, client, dir)
}

fn a_killed_daemon_comes_back_with_the_containers(cgroup: &LimitedCgroup) {
    let (daemon, client, dir) = serving_web(cgroup);
    let meminfo = dir.files.join("meminfo");
    assert!(std::fs::read_to_string(&meminfo)
        .unwrap()
        .starts_with(LIMITED));
    // A container writing a tunable in a loop: the daemon saves a burst of its values and
    // then one a period, and the last value reaches the disk all the same.
    let panic = dir.tunables.join("kernel.panic");
    for i in 0..60 {
        std::fs::write(&panic, if i % 2 == 0 { "8" } else { "9" }).unwrap();
    }
    std::fs::write(&panic, "7").unwrap();
    let saved = |value: &str| {
        let records = std::fs::read_dir(daemon.path().join("tenants")).unwrap();
        records.flatten().any(|record| {
            let text = std::fs::read_to_string(record.path()).unwrap_or_default();
            text.contains(&format!("\"kernel.panic\":\"{value}\""))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while !saved("7") {
        assert!(Instant::now() < deadline, "the last value was never saved");
        std::thread::sleep(Duration::from_millis(10));
    }
    let info = client.sysinfo("web").expect("sysinfo");
    assert_eq!(info.totalram, 268435456);

    // A registration tagged by its runtime is served where the runtime knew it would be
    // before it asked, also by the daemon that adopts it below.
    assert!(client.takes_tags(), "this daemon takes tags");
    let tag = 0x5eed_0000_0000_0001;
    let tagged = client.directories("tagged", tag);
    let registered = client
        .register_tagged("tagged", tag, &cgroup.path, 0, &|_| {
            SysctlMode::ContainerOnly
        })
        .unwrap();
    assert_eq!(registered, tagged);
    let tagged_meminfo = tagged.files.join("meminfo");
    assert!(std::fs::read_to_string(&tagged_meminfo)
        .unwrap()
        .starts_with(LIMITED));

    // A second registration under the same name is refused, with the reason.
    let err = client
        .register("web", &cgroup.path, 0, &|_| SysctlMode::ContainerOnly)
        .unwrap_err();
    assert!(err.to_string().contains("already registered"), "{err}");

    let first = daemon.pid_of("pid").unwrap();
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(first, libc::SIGKILL) };
    // Past the 100 ms for which the kernel serves a text it read from its page cache, the read
    // needs a daemon.
    std::thread::sleep(Duration::from_millis(150));
    let during = read_later(meminfo.clone());
    let answer = during
        .recv_timeout(Duration::from_secs(10))
        .expect("a read during the restart was never answered")
        .expect("a read during the restart failed");
    assert!(answer.starts_with(LIMITED), "{answer}");
    assert_ne!(daemon.pid_of("pid"), Some(first), "a new daemon serves");
    assert_eq!(
        std::fs::read_to_string(dir.tunables.join("kernel.panic")).unwrap(),
        "7\n",
        "the container's tunable is kept"
    );
    assert_eq!(client.sysinfo("web").expect("sysinfo").totalram, 268435456);
    assert!(client.takes_tags(), "the new daemon takes tags too");
    assert!(std::fs::read_to_string(&tagged_meminfo)
        .unwrap()
        .starts_with(LIMITED));
    client.unregister("tagged").unwrap();
    client.unregister("web").unwrap();
    assert_eq!(
        std::fs::read_to_string(&meminfo)
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOENT)
    );
    println!("a_killed_daemon_comes_back_with_the_containers: ok");
}

fn the_keeper_gives_up_and_reads_fail_closed(cgroup: &LimitedCgroup) {
    let (daemon, _client, dir) = serving_web(cgroup);
    let meminfo = dir.files.join("meminfo");
    for restart in 0..RESTARTS {
        assert!(
            daemon.kill_daemon().is_some(),
            "the daemon was not started again after death {}",
            restart + 1
        );
        assert!(std::fs::read_to_string(&meminfo)
            .unwrap()
            .starts_with(LIMITED));
    }
    assert_eq!(daemon.kill_daemon(), None, "the keeper gives up");
    let err = std::fs::read_to_string(&meminfo).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    println!("the_keeper_gives_up_and_reads_fail_closed: ok");
}

/// The tunables' connection is aborted by hand (fusectl): the keeper and the daemon leave, the
/// files' connection is aborted with them (its reads fail, never with host values), and the
/// next registration gets a new daemon with new mounts.
fn aborting_one_connection_ends_both(cgroup: &LimitedCgroup) {
    use std::os::unix::fs::MetadataExt;
    let (daemon, client, dir) = serving_web(cgroup);
    let meminfo = dir.files.join("meminfo");
    assert!(std::fs::read_to_string(&meminfo)
        .unwrap()
        .starts_with(LIMITED));
    let first = daemon.pid_of("pid").unwrap();
    // What a container's bind holds: the mount, even once the daemon has detached it here.
    let held = std::fs::File::open(&dir.files).unwrap();
    let through_bind = PathBuf::from(format!("/proc/self/fd/{}/meminfo", held.as_raw_fd()));
    let tunables = std::fs::metadata(&dir.tunables).unwrap().dev();
    let connections = Path::new("/sys/fs/fuse/connections");
    if !connections.join("1").exists() && std::fs::read_dir(connections).unwrap().count() == 0 {
        let fusectl = Some("fusectl");
        nix::mount::mount(
            fusectl,
            connections,
            fusectl,
            nix::mount::MsFlags::empty(),
            fusectl,
        )
        .unwrap();
    }
    let abort = connections
        .join(libc::minor(tunables).to_string())
        .join("abort");
    std::fs::write(abort, "1").unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{first}")).exists() {
        assert!(Instant::now() < deadline, "the daemon did not leave");
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = std::fs::read_to_string(&through_bind).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    let again = client
        .register("web", &cgroup.path, 0, &|_| SysctlMode::ContainerOnly)
        .unwrap();
    assert!(std::fs::read_to_string(again.files.join("meminfo"))
        .unwrap()
        .starts_with(LIMITED));
    assert_ne!(daemon.pid_of("pid"), Some(first), "a new daemon serves");
    client.unregister("web").unwrap();
    println!("aborting_one_connection_ends_both: ok");
}

/// A container "held" registered in `cgroup` by a runtime that names a `sleep` as its init and
/// exits: the init, and the container's meminfo on the mount.
fn registered_and_held(daemon: &DaemonDir, cgroup: &LimitedCgroup) -> (StandInInit, PathBuf) {
    let init = StandInInit(
        std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap(),
    );
    let runtime = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--register-and-hold")
        .arg(daemon.path())
        .arg(&cgroup.path)
        .arg(init.id().to_string())
        .output()
        .unwrap();
    assert!(runtime.status.success(), "{runtime:?}");
    let served = PathBuf::from(String::from_utf8(runtime.stdout).unwrap().trim());
    (init, served.join("meminfo"))
}

/// The process a test names as a container's init; killed when dropped, so that a failed
/// assertion leaves no `sleep` behind (holding the harness's output open).
struct StandInInit(std::process::Child);

impl std::ops::Deref for StandInInit {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for StandInInit {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for StandInInit {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A container whose runtime dies is served on while the init the runtime named lives, and
/// forgotten once it is gone; only the registering process may name the init or unregister it.
fn a_container_is_served_while_its_init_lives(cgroup: &LimitedCgroup) {
    let daemon = DaemonDir::new();
    let (mut init, meminfo) = registered_and_held(&daemon, cgroup);
    // The daemon looks for the dead every second: give it three.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        std::fs::read_to_string(&meminfo)
            .unwrap()
            .starts_with(LIMITED),
        "served after its runtime exited"
    );
    // The next daemon finds the init in the record it left, and serves the container on.
    daemon.kill_daemon().expect("a daemon came back");
    assert!(
        std::fs::read_to_string(&meminfo)
            .unwrap()
            .starts_with(LIMITED),
        "served by the next daemon while its init lives"
    );
    let err = daemon
        .client()
        .hold("held", eci_idmap::Holder::current().unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("another process"), "{err}");
    // Nor may another process unregister it (one whose own registration of the name was
    // refused, say): the container keeps its files.
    let err = daemon.client().unregister("held").unwrap_err();
    assert!(err.to_string().contains("another process"), "{err}");
    assert!(
        std::fs::read_to_string(&meminfo)
            .unwrap()
            .starts_with(LIMITED),
        "served after another process asked to unregister it"
    );
    init.kill().unwrap();
    init.wait().unwrap();
    let forgotten = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::fs::read_to_string(&meminfo).is_err_and(|e| e.raw_os_error() == Some(libc::ENOENT))
    });
    assert!(forgotten, "forgotten once its init is gone");
    println!("a_container_is_served_while_its_init_lives: ok");
}

/// A container whose init dies with the daemon is not taken over by the next daemon, and the
/// kernel is made to forget its directory: even a walk that asks the server nothing (an O_PATH
/// open, which the kernel answers from its cached entries) finds nothing.
fn a_container_that_died_with_its_daemon_is_forgotten(cgroup: &LimitedCgroup) {
    use std::os::unix::fs::OpenOptionsExt;
    let daemon = DaemonDir::new();
    let (mut init, meminfo) = registered_and_held(&daemon, cgroup);
    let open_path = || {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&meminfo)
    };
    assert!(std::fs::read_to_string(&meminfo)
        .unwrap()
        .starts_with(LIMITED));
    assert!(open_path().is_ok(), "cached and served");
    // The daemon looks for the dead every second: it dies before it can notice.
    init.kill().unwrap();
    init.wait().unwrap();
    assert!(daemon.kill_daemon().is_some(), "a new daemon");
    let forgotten = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        open_path().is_err_and(|e| e.raw_os_error() == Some(libc::ENOENT))
    });
    assert!(
        forgotten,
        "the kernel still finds the dead container's files"
    );
    println!("a_container_that_died_with_its_daemon_is_forgotten: ok");
}

/// A runtime that saw the daemon's mounts and plans its binds from them (holding
/// `staying_for_tags` until its registration is answered) keeps the daemon past its idle time:
/// leaving, it would take the mounts the runtime's binds need. Let go and idle, it leaves.
fn a_runtime_about_to_register_keeps_the_daemon(cgroup: &LimitedCgroup) {
    let daemon = DaemonDir::new();
    let client = daemon.client();
    let mode = |_: &str| SysctlMode::ContainerOnly;
    client.register("brief", &cgroup.path, 0, &mode).unwrap();
    client.unregister("brief").unwrap();
    let staying = client
        .staying_for_tags()
        .expect("a daemon that takes tags, its mounts in place");
    std::thread::sleep(daemon::IDLE + Duration::from_secs(2));
    assert!(
        daemon.path().join("sock").exists(),
        "listening past its idle time"
    );
    assert!(
        client.takes_tags(),
        "its mounts in place past its idle time"
    );
    let tag = 0x5eed_0000_0000_0002;
    let dirs = client
        .register_tagged("late", tag, &cgroup.path, 0, &mode)
        .unwrap();
    assert_eq!(dirs, client.directories("late", tag));
    assert!(std::fs::read_to_string(dirs.files.join("meminfo"))
        .unwrap()
        .starts_with(LIMITED));
    client.unregister("late").unwrap();
    drop(staying);
    let left = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !daemon.path().join("sock").exists() && !client.takes_tags()
    });
    assert!(left, "an idle daemon no one holds leaves");
    println!("a_runtime_about_to_register_keeps_the_daemon: ok");
}
