//! An overlay rootfs (Docker's kind) is rebuilt from its layers, idmapped, instead of having
//! its owners shifted: nothing is chowned or copied up. Its own test binary: the shift test
//! relies on being the only container of its process. Needs root and busybox-static.

mod common;

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use common::runtime;
use eci::{ContainerConfig, Stdio};

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
    // Only root may enter them, as Docker's storage: a writable rootfs other users can reach
    // is refused. The layers have a directory of their own, to see that their upper layer
    // (where the writes land) is checked too.
    use std::os::unix::fs::PermissionsExt;
    let private = || {
        tempfile::Builder::new()
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in("/var/tmp")
            .unwrap()
    };
    let (dir, layers) = (private(), private());
    let (lower, upper, work, merged) = (
        layers.path().join("lower"),
        layers.path().join("layer/diff"),
        layers.path().join("layer/work"),
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
    let chmod_layers = |mode| {
        std::fs::set_permissions(layers.path(), std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod_layers(0o755);
    let refused = runtime().create(ContainerConfig::new(id.clone(), spec.clone()));
    chmod_layers(0o700);
    match refused {
        Err(eci::Error::ReachableRootfs { path }) => assert_eq!(path, upper),
        other => panic!("an upper layer others can reach: {other:?}"),
    }
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
