//! The virtual files server on the real kernel: a cgroup with limits, the files read through
//! FUSE, and the server's death. Needs root, /dev/fuse and the cgroup v1 or v2 memory and cpuset
//! controllers.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eci_mount::virt::{CgroupDirs, VirtualFs};

/// A cgroup made for the test in every hierarchy the files read, removed on drop.
struct TestCgroup {
    path: PathBuf,
    dirs: CgroupDirs,
}

impl TestCgroup {
    fn new(name: &str) -> TestCgroup {
        let path = PathBuf::from(format!("/eci-test-virt-{}-{name}", std::process::id()));
        let dirs = CgroupDirs::resolve(&path).unwrap();
        for c in [&dirs.memory, &dirs.cpuset, &dirs.cpu, &dirs.cpuacct]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(&c.dir).unwrap();
        }
        TestCgroup { path, dirs }
    }

    fn write(&self, dir: &Option<eci_mount::virt::ControllerDir>, file: &str, value: &str) {
        let dir = &dir.as_ref().expect("controller present").dir;
        std::fs::write(dir.join(file), value).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for c in [
            &self.dirs.memory,
            &self.dirs.cpuset,
            &self.dirs.cpu,
            &self.dirs.cpuacct,
        ]
        .into_iter()
        .flatten()
        {
            let _ = std::fs::remove_dir(&c.dir);
        }
        let _ = &self.path;
    }
}

fn read(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

#[test]
fn files_reflect_the_cgroup_and_fail_when_the_server_is_gone() {
    let mount = tempfile::tempdir().unwrap();
    let fs = VirtualFs::mount(mount.path()).unwrap();
    let cgroup = TestCgroup::new("limits");
    let memory = &cgroup.dirs.memory;
    let unified = memory.as_ref().unwrap().unified;
    cgroup.write(
        memory,
        if unified {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        },
        "268435456",
    );
    if !cgroup.dirs.cpuset.as_ref().unwrap().unified {
        // v1 needs the memory nodes set before the CPUs.
        cgroup.write(&cgroup.dirs.cpuset, "cpuset.mems", "0");
    }
    cgroup.write(&cgroup.dirs.cpuset, "cpuset.cpus", "0");
    let dir = fs
        .register("limits", cgroup.dirs.clone(), Instant::now())
        .unwrap();

    let meminfo = read(&dir.files.join("meminfo")).unwrap();
    assert!(
        meminfo.starts_with("MemTotal:         262144 kB\n"),
        "{meminfo}"
    );
    let cpuinfo = read(&dir.files.join("cpuinfo")).unwrap();
    assert_eq!(cpuinfo.matches("processor").count(), 1, "{cpuinfo}");
    assert_eq!(read(&dir.files.join("cpuOnline")).unwrap(), "0\n");
    let stat = read(&dir.files.join("stat")).unwrap();
    assert!(
        stat.starts_with("cpu  ") && stat.contains("\ncpu0 ") && !stat.contains("\ncpu1 "),
        "{stat}"
    );
    assert!(read(&dir.files.join("swaps"))
        .unwrap()
        .starts_with("Filename"));

    // Another container's directory is its own, and an unregistered one is gone.
    let other = fs
        .register(
            "other",
            CgroupDirs::resolve(Path::new("/")).unwrap(),
            Instant::now() - Duration::from_secs(100),
        )
        .unwrap();
    assert_ne!(read(&other.files.join("meminfo")).unwrap(), meminfo);
    fs.unregister("other");
    assert_eq!(
        read(&other.files.join("meminfo"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENOENT)
    );

    // Writing is refused: the files' mount is read-only, so that the kernel keeps their
    // attributes across reads. The tunables are on a mount of their own, and only there.
    let write = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.files.join("meminfo"));
    assert_eq!(write.unwrap_err().raw_os_error(), Some(libc::EROFS));
    let flags = nix::sys::statvfs::statvfs(&dir.files).unwrap().flags();
    assert!(flags.contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    let names = |at: &Path| -> Vec<String> {
        let entries = std::fs::read_dir(at).unwrap();
        entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    assert_eq!(names(&dir.files).len(), eci_mount::virt::SERVED.len());
    assert!(names(&dir.tunables).iter().all(|n| n.contains('.')));
    assert!(!dir.files.join("kernel.panic").exists());
    assert!(!dir.tunables.join("meminfo").exists());
    let panic = read(&dir.tunables.join("kernel.panic")).unwrap();
    assert_eq!(panic, read(Path::new("/proc/sys/kernel/panic")).unwrap());
    // An open tunable reads the value of the moment, as the kernel's own do: what was
    // written through another handle since it was opened, and its first byte and the rest
    // from the one text.
    let opened = std::fs::File::open(dir.tunables.join("kernel.panic")).unwrap();
    std::fs::write(dir.tunables.join("kernel.panic"), "17").unwrap();
    let mut buf = [0u8; 16];
    let whole = opened.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..whole], b"17\n");
    let rest = opened.read_at(&mut buf, 1).unwrap();
    assert_eq!(&buf[..rest], b"7\n");
    assert_eq!(opened.read_at(&mut buf, 3).unwrap(), 0);

    // The server dies (its connection aborted, as when its process is killed): reads fail.
    let file = dir.files.join("meminfo");
    eci_mount::virt::abort(mount.path()).unwrap();
    // The kernel serves a text it read within the last 100 ms from its page cache: wait that
    // out.
    std::thread::sleep(Duration::from_millis(150));
    let err = read(&file).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    drop(fs);
}

#[test]
fn unmounting_ends_the_server_even_when_another_namespace_holds_a_copy() {
    let mount = tempfile::tempdir().unwrap();
    let fs = VirtualFs::mount(mount.path()).unwrap();
    let dirs = CgroupDirs::resolve(Path::new("/")).unwrap();
    let dir = fs.register("copied", dirs, Instant::now()).unwrap();
    // A mount namespace made now holds a copy of the server's mount, as a container's helper
    // or an unrelated process may; it would keep the connection, and the server, alive.
    let mut holder = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sleep", "60"])
        .spawn()
        .unwrap();
    let copy = PathBuf::from(format!("/proc/{}/root", holder.id()))
        .join(dir.files.strip_prefix("/").unwrap())
        .join("meminfo");
    let seen = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        read(&copy).is_ok_and(|text| text.starts_with("MemTotal"))
    });
    assert!(seen, "the copy serves the files");

    let started = Instant::now();
    drop(fs);
    let took = started.elapsed();
    // The kernel serves a text it read within the last 100 ms from its page cache (and keeps
    // the entries on its path): wait that out.
    std::thread::sleep(Duration::from_millis(150));
    let after = read(&copy);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(took < Duration::from_secs(5), "unmounting took {took:?}");
    assert_eq!(
        after.unwrap_err().raw_os_error(),
        Some(libc::ENOTCONN),
        "the copy fails closed"
    );
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(mount.path().to_str().unwrap()),
        "nothing is left mounted here"
    );
}

/// A server of the earlier layout (one connection, mounted at the mountpoint itself, as a
/// daemon or runtime of an earlier version left it): abort and detach take it down, so that a
/// server of this version can mount under it.
#[test]
fn a_server_of_the_earlier_layout_is_taken_down() {
    struct Empty;
    impl fuser::Filesystem for Empty {}
    let mount = tempfile::tempdir().unwrap();
    let mut config = fuser::Config::default();
    config.mount_options = vec![fuser::MountOption::FSName("eci-virtual".into())];
    let earlier = fuser::Session::new(Empty, mount.path(), &config)
        .unwrap()
        .spawn()
        .unwrap();
    let mounted = |at: &Path| {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let at = at.to_str().unwrap().to_string();
        table
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(at.as_str()))
    };
    assert!(mounted(mount.path()));
    eci_mount::virt::abort(mount.path()).unwrap();
    eci_mount::virt::detach(mount.path()).unwrap();
    assert!(!mounted(mount.path()));
    let fs = VirtualFs::mount(mount.path()).unwrap();
    let served = fs
        .register("after", CgroupDirs::default(), Instant::now())
        .unwrap();
    assert!(read(&served.files.join("loadavg")).is_ok());
    drop(fs);
    drop(earlier);
}
