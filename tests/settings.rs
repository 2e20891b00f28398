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

/// Relaxed immutability is refused rather than silently not applied.
#[test]
fn relaxed_immutability_is_refused_as_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = eci::Runtime::new(eci::RuntimeConfig {
        state_dir: dir.path().join("state"),
        ..Default::default()
    })
    .unwrap();
    let rootfs = HostRootfs::create(&dir.path().join("rootfs")).unwrap();
    let mut spec = rootfs.spec(vec!["true".into()]);
    spec.set_annotations(Some(
        [("org.eci.allowRemount".to_string(), "true".to_string())].into(),
    ));
    let err = runtime
        .create(ContainerConfig::new("relaxed", spec))
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("allowRemount"), "{err}");
    assert_eq!(runtime.allocator().leases().unwrap(), Vec::new());
    rootfs.remove().unwrap();
}
