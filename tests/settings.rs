//! The settings document reaches containers. Needs root.

mod common;

use std::path::Path;

use eci::{ContainerConfig, Error, HostRootfs};

/// A container may not override a locked setting through its annotations.
#[test]
fn a_locked_setting_cannot_be_overridden_by_a_container() {
    let settings =
        r#"{"eci": {"immutability": {"allowUnmount": {"value": false, "locked": true}}}}"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("settings.json"), settings).unwrap();
    let mut policy = eci::load_settings(&dir.path().join("settings.json")).unwrap();
    let probe_dir = Path::new(common::PROBE).parent().unwrap();
    policy.paths.share(probe_dir, true).unwrap();
    let runtime = eci::Runtime::new(eci::RuntimeConfig {
        state_dir: dir.path().join("state"),
        policy,
        ..Default::default()
    })
    .unwrap();
    let rootfs = HostRootfs::create(&dir.path().join("rootfs")).unwrap();
    let mut spec = rootfs.spec(vec!["true".into()]);
    spec.set_annotations(Some(
        [("org.eci.allowUnmount".to_string(), "true".to_string())].into(),
    ));
    let err = runtime
        .create(ContainerConfig::new("locked-override", spec))
        .unwrap_err();
    assert!(matches!(err, Error::Override(_)), "{err}");
    assert!(err.to_string().contains("allowUnmount"), "{err}");
    let leases = runtime.allocator().leases().unwrap();
    assert!(
        leases.iter().all(|l| l.owner != "locked-override"),
        "nothing leased"
    );
}

/// A runtime of its own in `dir` (state in `dir/state`) with the settings document `settings`.
fn runtime_with_settings(dir: &Path, settings: &str) -> eci::Runtime {
    std::fs::write(dir.join("settings.json"), settings).unwrap();
    let policy = eci::load_settings(&dir.join("settings.json")).unwrap();
    eci::Runtime::new(eci::RuntimeConfig {
        state_dir: dir.join("state"),
        policy,
        ..Default::default()
    })
    .unwrap()
}

/// The spec of `rootfs` running `true`, with a bind of `source` at `dest` added.
fn spec_binding(rootfs: &HostRootfs, source: &Path, dest: &str) -> eci::oci_spec::runtime::Spec {
    let mut spec = rootfs.spec(vec!["true".into()]);
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let mut bind = eci::oci_spec::runtime::Mount::default();
    bind.set_destination(dest.into());
    bind.set_typ(Some("bind".into()));
    bind.set_source(Some(source.to_path_buf()));
    bind.set_options(Some(vec!["bind".into()]));
    mounts.push(bind);
    spec.set_mounts(Some(mounts));
    spec
}

/// A restricted path named through a symlink (a data directory moved to a bigger disk) is
/// restricted where it really is: a bind of its real place is refused, though a shared path
/// holds it.
#[test]
fn a_restricted_path_named_through_a_symlink_is_restricted_where_it_is() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let real = dir.path().join("disk/secrets");
    std::fs::create_dir_all(&real).unwrap();
    let link = dir.path().join("secrets");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let settings = format!(
        r#"{{"eci": {{"restrictedPaths": [{{"path": "{}"}}]}}}}"#,
        link.display()
    );
    let runtime = runtime_with_settings(dir.path(), &settings);
    let rootfs = HostRootfs::create(&dir.path().join("rootfs")).unwrap();
    let spec = spec_binding(&rootfs, &real.join("."), "/secrets");
    let err = runtime
        .create(ContainerConfig::new("moved-secrets", spec))
        .unwrap_err();
    assert!(matches!(err, Error::Spec(_)), "{err}");
    assert!(
        err.to_string().contains("refused by the rule for")
            && err.to_string().contains("disk/secrets (settings)"),
        "{err}"
    );
}

/// An engine socket named through a symlink is still an engine socket where it really is:
/// neither it nor the directory holding it can be bound in past the image list.
#[test]
fn an_engine_socket_named_through_a_symlink_is_guarded_where_it_is() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let real_dir = dir.path().join("engine");
    std::fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("docker.sock");
    let _listening = std::os::unix::net::UnixListener::bind(&real).unwrap();
    let link = dir.path().join("docker.sock");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let settings = format!(r#"{{"eci": {{"engineSockets": ["{}"]}}}}"#, link.display());
    let runtime = runtime_with_settings(dir.path(), &settings);
    let rootfs = HostRootfs::create(&dir.path().join("rootfs")).unwrap();
    for (source, id) in [(&real_dir, "socket-dir"), (&real, "socket")] {
        let spec = spec_binding(&rootfs, source, "/engine");
        let err = runtime.create(ContainerConfig::new(id, spec)).unwrap_err();
        assert!(matches!(err, Error::Spec(_)), "{id}: {err}");
        assert!(
            err.to_string().contains("engine/docker.sock"),
            "{id}: {err}"
        );
    }
}

/// A runtime whose policy shares a directory holding one file, `inside` (read-only or not).
fn runtime_with_volume(dir: &Path, read_only: bool) -> (eci::Runtime, std::path::PathBuf) {
    let volume = dir.join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("inside"), "host-data\n").unwrap();
    let mut policy = eci::Policy::default();
    let probe_dir = Path::new(common::PROBE).parent().unwrap();
    policy.paths.share(probe_dir, true).unwrap();
    policy.paths.share(&volume, read_only).unwrap();
    let runtime = eci::Runtime::new(eci::RuntimeConfig {
        state_dir: dir.join("state"),
        policy,
        ..Default::default()
    })
    .unwrap();
    (runtime, volume)
}

/// The spec edit: `annotations` set, and `volume` bound read-only at /data.
fn relaxed_with_volume<'a>(
    annotations: &'a [&'a str],
    volume: &'a Path,
) -> impl FnOnce(&mut eci::oci_spec::runtime::Spec) + 'a {
    move |spec| {
        spec.set_annotations(Some(
            annotations
                .iter()
                .map(|a| (format!("org.eci.{a}"), "true".to_string()))
                .collect(),
        ));
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        let mut bind = eci::oci_spec::runtime::Mount::default();
        bind.set_destination("/data".into());
        bind.set_typ(Some("bind".into()));
        bind.set_source(Some(volume.to_path_buf()));
        bind.set_options(Some(vec!["rbind".into(), "ro".into()]));
        mounts.push(bind);
        spec.set_mounts(Some(mounts));
    }
}

/// With allowUnmount, a bind the spec made can be unmounted (showing the image's directory
/// beneath), but stays read-only, and so do its copies in a new mount namespace and elsewhere
/// (the kernel's lock); a mask stays locked (EINVAL).
#[test]
fn allow_unmount_lets_binds_go_but_keeps_them_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, volume) = runtime_with_volume(dir.path(), true);
    let script = "cat /data/inside; mkdir /tmp/copy; \
        unshare --mount /probe remount-rw /data; \
        /probe remount-rw /data , bind /data /tmp/copy , remount-rw /tmp/copy \
        , umount /proc/kallsyms , umount /data ; \
        ls -A /data | wc -l; cat /tmp/copy/inside";
    let (code, out) = common::create_in(
        &runtime,
        "allow-unmount",
        &["sh", "-c", script],
        relaxed_with_volume(&["allowUnmount"], &volume),
    )
    .run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "host-data",
            "EPERM",
            "EPERM",
            "ok",
            "EPERM",
            "EINVAL",
            "ok",
            "0",
            "host-data"
        ],
        "remount refused (kernel in a new mount namespace, vetter, kernel on a bind copy), \
         mask locked, bind unmounted"
    );
}

/// With both relaxations, the same bind can be made writable and unmounted.
#[test]
fn allow_remount_and_unmount_together() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, volume) = runtime_with_volume(dir.path(), false);
    let script = "/probe remount-rw /data , umount /data , umount /proc/kallsyms";
    let (code, out) = common::create_in(
        &runtime,
        "allow-both",
        &["sh", "-c", script],
        relaxed_with_volume(&["allowUnmount", "allowRemount"], &volume),
    )
    .run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ok", "ok", "EINVAL"]);
}

/// With allowRemount, the read-only rootfs and a bind the spec made read-only (of a path the
/// policy shares writable) can be made writable from inside; a bind the policy forces
/// read-only (/usr), /proc/sys (a read-only path) and unmounting stay refused, and the bind is
/// not idmapped (the host's owners count).
#[test]
fn allow_remount_lets_the_rootfs_and_the_specs_read_only_binds_become_writable() {
    let dir = tempfile::tempdir().unwrap();
    let (runtime, volume) = runtime_with_volume(dir.path(), false);
    let script =
        "/probe remount-rw / nosuid,nodev , remount-rw /data , remount-rw /usr nosuid,nodev \
        , remount-rw /proc/sys nosuid,nodev,noexec , umount /data ; \
        touch /made-writable && echo root-written; \
        touch /data/written && echo volume-written; \
        touch /usr/eci-must-not-exist 2>/dev/null || echo usr-denied";
    let mut c = common::create_in(
        &runtime,
        "allow-remount",
        &["sh", "-c", script],
        relaxed_with_volume(&["allowRemount"], &volume),
    );
    // The volume belongs to the container's root, so that a writable bind shows in a write.
    let root = c.container().id_mapping().host_start;
    std::os::unix::fs::chown(&volume, Some(root), Some(root)).unwrap();
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "ok",
            "ok",
            "EPERM",
            "EPERM",
            "EPERM",
            "root-written",
            "volume-written",
            "usr-denied"
        ]
    );
    assert!(volume.join("written").exists());
    assert!(!Path::new("/usr/eci-must-not-exist").exists());
    // Without the setting, the same remounts are refused.
    let strict = common::probe(
        "strict-remount",
        &[
            "remount-rw",
            "/",
            "nosuid,nodev",
            ",",
            "remount-rw",
            "/usr",
            "nosuid,nodev",
        ],
    );
    assert_eq!(strict, ["EPERM", "EPERM"]);
}

/// The virtual files daemon's directory, wherever the embedding program puts it, is the
/// runtime's: its mount lists every container's directory of files.
#[test]
fn the_virtual_files_daemons_directory_cannot_be_bound() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    // Open to others, so that only the daemon's rule keeps a bind out (/tmp is shared).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = dir.path().join("virtd");
    std::fs::create_dir(&daemon).unwrap();
    let runtime = eci::Runtime::new(eci::RuntimeConfig {
        state_dir: dir.path().join("state"),
        virtual_files: eci::VirtualFilesServer::Daemon {
            dir: daemon.clone(),
            command: vec![common::example("eci-run").into_os_string()],
        },
        ..Default::default()
    })
    .unwrap();
    let rootfs = HostRootfs::create(&dir.path().join("rootfs")).unwrap();
    let spec = spec_binding(&rootfs, &daemon, "/virtd");
    let err = runtime
        .create(ContainerConfig::new("daemon-dir", spec))
        .unwrap_err();
    assert!(matches!(err, Error::Spec(_)), "{err}");
    assert!(err.to_string().contains("virtd"), "{err}");
}
