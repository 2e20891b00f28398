//! A user without privileges but with delegated subordinate IDs gets a child's maps written
//! through newuidmap and newgidmap. Needs root to set the user up, and the uidmap package.

use std::process::{Command, Stdio};

use eci_idmap::write_id_maps;
use eci_policy::ids::IdMapping;

const USER: &str = "eci-rootless-test";
/// Below eci's default pool (2^28 onwards) and above the IDs distributions use.
const SUB_START: u32 = 150_000_000;

/// Creates the test user and its /etc/subuid and /etc/subgid entries if missing.
fn ensure_user() -> (u32, u32) {
    let exists = Command::new("id")
        .arg("-u")
        .arg(USER)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !exists {
        let made = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ])
            .status()
            .expect("useradd (Debian's passwd package)");
        assert!(made.success(), "creating the test user");
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
            let mut text = text;
            text.push_str(&format!("{USER}:{SUB_START}:65536\n"));
            std::fs::write(file, text).unwrap();
        }
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").arg(flag).arg(USER).output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

/// Run as the unprivileged user by the test below.
#[test]
#[ignore = "run as an unprivileged user by the other test"]
fn rootless_worker() {
    if std::env::var("ECI_ROOTLESS_WORKER").is_err() {
        return;
    }
    assert!(!nix::unistd::geteuid().is_root());
    let mut child = Command::new("unshare")
        .args(["--user", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // unshare must have entered the namespace before its map can be written.
    let own = std::fs::read_link("/proc/self/ns/user").unwrap();
    while std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap() == own {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let map = [IdMapping {
        container_start: 0,
        host_start: SUB_START,
        size: 65536,
    }];
    let written = write_id_maps(pid, &map, &map);
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    written.unwrap();
    println!(
        "UID_MAP {}",
        uid_map.split_whitespace().collect::<Vec<_>>().join(" ")
    );
}

#[test]
fn a_user_with_subordinate_ids_gets_its_maps_through_newuidmap() {
    assert!(
        Command::new("newuidmap")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok(),
        "newuidmap is missing: install the uidmap package (scripts/test does)"
    );
    let (uid, gid) = ensure_user();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe)
        .args([
            "--exact",
            "rootless_worker",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ECI_ROOTLESS_WORKER", "1")
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("UID_MAP 0 {SUB_START} 65536")),
        "{stdout}"
    );
}

use std::os::unix::process::CommandExt;
