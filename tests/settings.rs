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
    assert_eq!(
        runtime.allocator().leases().unwrap(),
        Vec::new(),
        "nothing leased"
    );
}

/// Relaxed unmounting is refused rather than silently not applied.
#[test]
fn allow_unmount_is_refused_as_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = eci::Runtime::new(eci::RuntimeConfig {
        state_dir: dir.path().join("state"),
        ..Default::default()
    })
    .unwrap();
    let rootfs = HostRootfs::create(&dir.path().join("rootfs")).unwrap();
    let mut spec = rootfs.spec(vec!["true".into()]);
    spec.set_annotations(Some(
        [("org.eci.allowUnmount".to_string(), "true".to_string())].into(),
    ));
    let err = runtime
        .create(ContainerConfig::new("relaxed", spec))
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("allowUnmount"), "{err}");
    assert_eq!(runtime.allocator().leases().unwrap(), Vec::new());
    rootfs.remove().unwrap();
}

/// With allowRemount, the read-only rootfs and read-only binds can be made writable from
/// inside; /proc/sys (a read-only path) stays locked by the kernel, unmounting stays refused,
/// and a host directory made writable still answers to the host's permissions (the bind is not
/// idmapped).
#[test]
fn allow_remount_lets_the_rootfs_and_read_only_binds_become_writable() {
    let script = "/probe remount-rw / nosuid,nodev , remount-rw /usr nosuid,nodev , remount-rw /proc/sys nosuid,nodev,noexec \
        , umount /usr ; \
        touch /made-writable && echo root-written; \
        touch /usr/eci-must-not-exist 2>/dev/null || echo usr-denied";
    let relaxed = |spec: &mut eci::oci_spec::runtime::Spec| {
        spec.set_annotations(Some(
            [("org.eci.allowRemount".to_string(), "true".to_string())].into(),
        ));
    };
    let (code, out) =
        common::create_with("allow-remount", &["sh", "-c", script], relaxed).run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "ok", "EPERM", "EPERM", "root-written", "usr-denied"]
    );
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
