//! A rootfs on a filesystem that cannot be idmapped (ramfs) gets its owners shifted into the
//! container's block, once per (rootfs, block). One test: consecutive containers then get the
//! same block, and a container cannot have it shifted from another that runs on it. Needs root
//! and busybox-static.

mod common;

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use eci::{ContainerConfig, Runtime, RuntimeConfig, Stdio};

/// A runtime with a state directory, a lease journal and an ID pool of its own, so that which
/// block comes next depends on this test alone and not on containers elsewhere on the host. The
/// test's own, dropped at its end (before the directory) with its virtual files server's mount:
/// a runtime kept in a static was never dropped, and left that mount behind for good in a
/// directory no later runtime looks at.
fn own_runtime() -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().unwrap();
    // And a pool of its own: the host-wide journal's blocks may be in use.
    let mut policy = common::runtime().policy().clone();
    policy.id_pool =
        eci::eci_policy::settings::IdPool::new(0x6000_0000, 16 << 16, 1 << 16).unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        state_dir: dir.path().join("state"),
        leases_dir: dir.path().join("idmap"),
        policy,
        ..Default::default()
    })
    .expect("runtime");
    (dir, runtime)
}

/// A ramfs mounted for the test, unmounted however the test ends.
struct Ramfs(PathBuf);

impl Ramfs {
    fn mount(path: &Path) -> Ramfs {
        std::fs::create_dir_all(path).unwrap();
        let c = |s: &str| CString::new(s).unwrap();
        let target = c(path.to_str().unwrap());
        // SAFETY: valid NUL-terminated strings.
        let ret = unsafe {
            libc::mount(
                c("ramfs").as_ptr(),
                target.as_ptr(),
                c("ramfs").as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(
            ret,
            0,
            "mounting a ramfs: {}",
            std::io::Error::last_os_error()
        );
        Ramfs(path.to_path_buf())
    }
}

impl Drop for Ramfs {
    fn drop(&mut self) {
        let target = CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn run_in(runtime: &Runtime, rootfs: &Path, id: &str) -> (u32, String) {
    let spec = eci::privileged_spec(
        rootfs,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "stat -c %u /bin/busybox /etc/owned".into(),
        ],
        &[],
    );
    let (reader, writer) = std::io::pipe().unwrap();
    let stdio = Stdio {
        stdout: Some(writer.into()),
        ..Default::default()
    };
    let mut container = runtime
        .create(ContainerConfig::new(id, spec).stdio(stdio))
        .expect("create");
    let block = container.id_mapping().host_start;
    container.start().unwrap();
    assert_eq!(container.wait().unwrap().code(), 0);
    container.delete().unwrap();
    (block, std::io::read_to_string(reader).unwrap())
}

#[test]
fn a_rootfs_that_cannot_be_idmapped_is_shifted_once_per_block() {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "install busybox-static (scripts/test does)"
    );
    let (_state, runtime) = own_runtime();
    let runtime = &runtime;
    let dir = common::closed_tempdir("eci-shift");
    let ramfs = Ramfs::mount(&dir.path().join("rootfs"));
    let rootfs = &ramfs.0;
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/stat")).unwrap();
    std::fs::write(rootfs.join("etc/owned"), b"").unwrap();

    let id = format!("shift-{}", std::process::id());
    let (block, out) = run_in(runtime, rootfs, &format!("{id}-1"));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "0"],
        "container root owns its rootfs"
    );
    let on_host = std::fs::metadata(rootfs.join("bin/busybox")).unwrap();
    assert_eq!(on_host.uid(), block, "shifted on disk into the block");
    let ctime = (on_host.ctime(), on_host.ctime_nsec());

    // Alone in its journal, the next container gets the lowest free block: the same one.
    let (again, out) = run_in(runtime, rootfs, &format!("{id}-2"));
    assert_eq!(again, block);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "0"]);
    let now = std::fs::metadata(rootfs.join("bin/busybox")).unwrap();
    assert_eq!(
        (now.ctime(), now.ctime_nsec()),
        ctime,
        "the same block is not shifted twice"
    );

    // While one container runs on it, another (with another block) cannot have it shifted
    // away: the first would lose its files, and could race the walk.
    let sleeper = eci::privileged_spec(
        rootfs,
        vec!["/bin/sh".into(), "-c".into(), "sleep 100".into()],
        &[],
    );
    let mut running = runtime
        .create(ContainerConfig::new(format!("{id}-3"), sleeper))
        .expect("create");
    assert_eq!(running.id_mapping().host_start, block);
    running.start().unwrap();
    let second = eci::privileged_spec(rootfs, vec!["/bin/true".into()], &[]);
    let refused = runtime
        .create(ContainerConfig::new(format!("{id}-4"), second))
        .map(|_| ())
        .expect_err("a second container's shift of a rootfs in use");
    assert!(
        refused.to_string().contains("a running container owns it"),
        "{refused}"
    );
    assert_eq!(
        std::fs::metadata(rootfs.join("bin/busybox")).unwrap().uid(),
        block
    );
    running.kill(libc::SIGKILL).unwrap();
    running.wait().unwrap();
    running.delete().unwrap();
}
