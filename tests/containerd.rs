//! containerd's runc shim, pointed at eci-runc through its BinaryName option (`ctr run
//! --runc-binary`), runs a container with eci's protections. Needs root, containerd
//! (scripts/test installs it) and busybox-static.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        // Only root may enter it, as containerd's own root: the test's bundle (a writable
        // rootfs) lives in it.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("eci-ctd")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in("/tmp")
            .unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("containerd")
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--address")
            .arg(dir.path().join("c.sock"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd (install containerd; scripts/test does)");
        let containerd = Containerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !containerd.ctr(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "containerd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        containerd
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.dir.path().join("c.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[test]
fn ctr_runs_a_container_through_eci_runc() {
    let containerd = Containerd::start();
    let bundle = containerd.dir.path().join("bundle");
    assert!(Command::new("scripts/busybox-bundle")
        .arg(&bundle)
        .status()
        .unwrap()
        .success());
    let eci_runc = common::example("eci-runc");
    let rootfs = bundle.join("rootfs");
    // `ctr run` through the runc shim with eci-runc as its binary.
    let run = |mode: &str, id: &str, script: &str| {
        containerd.ctr(&[
            "run",
            mode,
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            eci_runc.to_str().unwrap(),
            "--rootfs",
            rootfs.to_str().unwrap(),
            id,
            "sh",
            "-c",
            script,
        ])
    };
    let out = run(
        "--rm",
        "eci-ctr-test",
        "cat /proc/self/uid_map; id -u; exit 7",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map: Vec<&str> = stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!((map[0], map[2]), ("0", "65536"), "{stdout}");
    assert!(map[1].parse::<u64>().unwrap() >= 65536, "{stdout}");
    assert_eq!(stdout.lines().nth(1), Some("0"));

    // A rootfs that host users could reach is refused, and ctr says why.
    let open = |mode| {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(mode);
        std::fs::set_permissions(containerd.dir.path(), mode).unwrap();
    };
    open(0o755);
    let out = run("--rm", "eci-ctr-reach", "true");
    open(0o700);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains("refused as a container's root: host users other than root can reach it"),
        "{stderr}"
    );
    let _ = containerd.ctr(&["container", "delete", "eci-ctr-reach"]);

    // A detached task: ps, pause and resume, and kill --all reaching the init's children.
    let script = "trap 'echo trapped' TERM; sleep 1000 & sleep 1000 & wait; wait; sleep 1000";
    let out = run("-d", "eci-ctr-bg", script);
    assert!(out.status.success(), "{out:?}");
    let pids = || {
        let out = containerd.ctr(&["task", "ps", "eci-ctr-bg"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    let settle = |expected: usize| {
        for _ in 0..50 {
            if pids() == expected {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    };
    assert!(settle(3), "sh and two sleeps");
    assert!(containerd
        .ctr(&["task", "pause", "eci-ctr-bg"])
        .status
        .success());
    let tasks = containerd.ctr(&["task", "ls"]);
    assert!(
        String::from_utf8_lossy(&tasks.stdout).contains("PAUSED"),
        "{tasks:?}"
    );
    assert!(containerd
        .ctr(&["task", "resume", "eci-ctr-bg"])
        .status
        .success());
    let kill = containerd.ctr(&["task", "kill", "--all", "-s", "SIGTERM", "eci-ctr-bg"]);
    assert!(kill.status.success(), "{kill:?}");
    assert!(
        settle(2),
        "the two sleeps got SIGTERM; the init (a handler) and a new sleep stay"
    );
    let kill = containerd.ctr(&["task", "kill", "-s", "SIGKILL", "eci-ctr-bg"]);
    assert!(kill.status.success(), "{kill:?}");
    for _ in 0..50 {
        if containerd
            .ctr(&["task", "delete", "eci-ctr-bg"])
            .status
            .success()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(containerd
        .ctr(&["container", "delete", "eci-ctr-bg"])
        .status
        .success());
}
