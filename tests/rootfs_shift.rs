//! A rootfs on a filesystem that cannot be idmapped (ramfs) gets its owners shifted into the
//! container's block, once per (rootfs, block). One test: consecutive containers then get the
//! same block. Needs root and busybox-static.

mod common;

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::runtime;
use eci::{ContainerConfig, Stdio};

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

fn run_in(rootfs: &Path, id: &str) -> (u32, String) {
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
    let mut container = runtime()
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
    let dir = tempfile::tempdir().unwrap();
    let ramfs = Ramfs::mount(&dir.path().join("rootfs"));
    let rootfs = &ramfs.0;
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/stat")).unwrap();
    std::fs::write(rootfs.join("etc/owned"), b"").unwrap();

    let id = format!("shift-{}", std::process::id());
    let (block, out) = run_in(rootfs, &format!("{id}-1"));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "0"],
        "container root owns its rootfs"
    );
    let on_host = std::fs::metadata(rootfs.join("bin/busybox")).unwrap();
    assert_eq!(on_host.uid(), block, "shifted on disk into the block");
    let ctime = (on_host.ctime(), on_host.ctime_nsec());

    // Alone in this process, the next container gets the lowest free block: the same one.
    let (again, out) = run_in(rootfs, &format!("{id}-2"));
    assert_eq!(again, block);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "0"]);
    let now = std::fs::metadata(rootfs.join("bin/busybox")).unwrap();
    assert_eq!(
        (now.ctime(), now.ctime_nsec()),
        ctime,
        "the same block is not shifted twice"
    );
}

/// An overlay mounted for the test, unmounted however the test ends.
struct Overlay(PathBuf);

impl Drop for Overlay {
    fn drop(&mut self) {
        let target = CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn an_overlay_rootfs_is_rebuilt_from_idmapped_layers_not_shifted() {
    // Docker's case: the overlay itself cannot be idmapped, its layers (ext4 here) can. The
    // container sees the image's owners as its own, and writes land in the upper layer with
    // the image's owners; nothing is chowned and nothing copied up.
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let (lower, upper, work, merged) = (
        dir.path().join("lower"),
        dir.path().join("layer/diff"),
        dir.path().join("layer/work"),
        dir.path().join("merged"),
    );
    for d in [
        &lower.join("bin"),
        &lower.join("etc"),
        &upper,
        &work,
        &merged,
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy("/bin/busybox", lower.join("bin/busybox")).unwrap();
    for applet in ["sh", "stat", "echo"] {
        std::os::unix::fs::symlink("busybox", lower.join("bin").join(applet)).unwrap();
    }
    std::fs::write(lower.join("etc/owned"), b"").unwrap();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let c = |s: &str| CString::new(s).unwrap();
    // SAFETY: valid NUL-terminated strings.
    let ret = unsafe {
        libc::mount(
            c("overlay").as_ptr(),
            c(merged.to_str().unwrap()).as_ptr(),
            c("overlay").as_ptr(),
            0,
            c(&options).as_ptr().cast(),
        )
    };
    assert_eq!(
        ret,
        0,
        "mounting the overlay: {}",
        std::io::Error::last_os_error()
    );
    let overlay = Overlay(merged.clone());

    let mut spec = eci::privileged_spec(
        &overlay.0,
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "stat -c %u /bin/busybox /etc/owned && echo x > /written && stat -c %u /written".into(),
        ],
        &[],
    );
    let mut root = spec.root().clone().unwrap();
    root.set_readonly(Some(false));
    spec.set_root(Some(root));
    let (reader, writer) = std::io::pipe().unwrap();
    let stdio = Stdio {
        stdout: Some(writer.into()),
        ..Default::default()
    };
    let id = format!("overlay-{}", std::process::id());
    let mut container = runtime()
        .create(ContainerConfig::new(id, spec).stdio(stdio))
        .expect("create");
    container.start().unwrap();
    assert_eq!(container.wait().unwrap().code(), 0);
    container.delete().unwrap();
    let out = std::io::read_to_string(reader).unwrap();
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "0", "0"]);
    let written = std::fs::metadata(upper.join("written")).unwrap();
    assert_eq!(
        written.uid(),
        0,
        "the image's owner on disk, not the block's"
    );
    assert!(
        !upper.join("bin/busybox").exists() && !upper.join("etc/owned").exists(),
        "nothing was copied up"
    );
    assert_eq!(
        std::fs::metadata(lower.join("bin/busybox")).unwrap().uid(),
        0
    );
    drop(overlay);
}
