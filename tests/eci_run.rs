//! The eci-run example, run as a user would. Needs root; `--bundle` needs busybox-static and jq
//! (scripts/test installs them).

mod common;

use std::path::PathBuf;
use std::process::Command;

/// The example binary, built by `cargo test` next to this test's executable.
fn eci_run() -> Command {
    let mut command = Command::new(common::example("eci-run"));
    command.args(["--state-dir", "/run/eci-test"]);
    command
}

#[test]
fn runs_a_command_in_the_default_host_root_and_reports_the_mapping() {
    let out = eci_run()
        .args([
            "--",
            "sh",
            "-c",
            "cat /proc/self/uid_map; id -u; eci-probe syscall init_module; exit 3",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("uid and gid container 0-65535 -> host "),
        "{stderr}"
    );
    let host_start = stdout.split_whitespace().nth(1).unwrap();
    assert!(
        stderr.contains(&format!("host {host_start}-")),
        "{stdout} {stderr}"
    );
    assert_eq!(stdout.lines().nth(1), Some("0"));
    assert_eq!(
        stdout.lines().nth(2),
        Some("EPERM"),
        "eci-probe is on the default root's PATH"
    );
}

#[test]
fn runs_an_oci_bundle() {
    let dir = common::closed_tempdir("eci-run-bundle");
    let bundle = dir.path().join("bundle");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/busybox-bundle");
    let built = Command::new(script)
        .arg(&bundle)
        .args(["--", "sh", "-c", "echo hello from $(hostname); exit 5"])
        .status()
        .unwrap();
    assert!(
        built.success(),
        "building the busybox bundle (needs busybox-static and jq)"
    );
    let out = eci_run().arg("--bundle").arg(&bundle).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from bench\n");
}

#[test]
fn a_bad_bundle_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = eci_run().arg("--bundle").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config.json") && stderr.contains("No such file"),
        "{stderr}"
    );
}

#[test]
fn a_container_that_runs_on_leaves_eci_run_with_its_pages_given_back() {
    // Creating the container runs most of eci-run; if the container is still running 2 s
    // after its start, eci-run unmaps those program pages while it waits for it.
    let mut child = eci_run()
        .args(["--", "sleep", "5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = |kib: u64| kib > 0;
    let busy = (0..50)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            common::resident_kib(child.id() as i32).unwrap_or(0)
        })
        .filter(|&kib| started(kib))
        .max()
        .unwrap_or(0);
    let idle = (0..40).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        Some(common::resident_kib(child.id() as i32).unwrap_or(0))
            .filter(|&kib| kib > 0 && kib < busy / 2)
    });
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        idle.is_some(),
        "eci-run kept {busy} KiB while its container slept"
    );
}
