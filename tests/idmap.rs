//! Ownership across the container boundary: idmapped rootfs and read-only binds, plain
//! writable binds. Needs root.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::create_with;
use eci::oci_spec::runtime::Mount;

/// A host directory with a file owned by host root and one owned by a host ID no container
/// block maps (70000 is above the 65536 IDs an idmapped mount shows).
fn host_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root-owned"), b"").unwrap();
    std::fs::write(dir.path().join("foreign"), b"").unwrap();
    std::os::unix::fs::chown(dir.path().join("foreign"), Some(70000), Some(70000)).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    dir
}

fn bind(source: &Path, dest: &str, options: &[&str]) -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(dest.into());
    mount.set_typ(Some("bind".into()));
    mount.set_source(Some(source.to_path_buf()));
    mount.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    mount
}

fn run_with_bind(name: &str, mount: Mount, script: &str) -> (i32, String) {
    create_with(name, &["sh", "-c", script], |spec| {
        spec.mounts_mut().as_mut().unwrap().push(mount)
    })
    .run_to_end()
}

#[test]
fn a_path_shared_read_only_shows_host_root_as_root_and_every_host_user_as_nobody() {
    // Host root's files are root's inside, and system groups theirs (a setgid program keeps
    // its group); a host user's are nobody's, so container root has there what any other host
    // user has (`/home` shared read-only: not their private keys).
    let dir = host_dir();
    let setgid = dir.path().join("setgid");
    std::fs::write(&setgid, b"").unwrap();
    std::os::unix::fs::chown(&setgid, Some(0), Some(100)).unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "host user's\n").unwrap();
    std::os::unix::fs::chown(&secret, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (shared_ro, _state) = common::runtime_sharing(dir.path(), true);
    let script = "stat -c %u:%g /data/root-owned /data/setgid /data/foreign /data/secret; \
                  cat /data/secret 2>/dev/null || echo unread; \
                  touch /data/new 2>/dev/null || echo refused";
    let mount = bind(dir.path(), "/data", &["rbind"]);
    let (code, out) = common::create_in(&shared_ro, "ro-share", &["sh", "-c", script], |spec| {
        spec.mounts_mut().as_mut().unwrap().push(mount)
    })
    .run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "0:0",
            "0:100",
            "65534:65534",
            "65534:65534",
            "unread",
            "refused"
        ]
    );
}

#[test]
fn a_read_only_bind_of_a_writable_share_keeps_host_users_files_theirs() {
    // Idmapped, container root would read every host user's private file there as its owner.
    let dir = host_dir();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "host user's\n").unwrap();
    std::os::unix::fs::chown(&secret, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let script = "stat -c %u:%g /data/root-owned /data/secret; \
                  cat /data/secret 2>/dev/null || echo refused";
    let (code, out) = run_with_bind(
        "ro-bind",
        bind(dir.path(), "/data", &["rbind", "ro"]),
        script,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["65534:65534", "65534:65534", "refused"]
    );
}

#[test]
fn files_created_in_a_writable_bind_belong_to_the_containers_block_on_the_host() {
    let dir = host_dir();
    let mut c = create_with(
        "rw-bind",
        &[
            "sh",
            "-c",
            "stat -c %u /data/root-owned; echo hi > /data/made-inside",
        ],
        |spec| {
            spec.mounts_mut()
                .as_mut()
                .unwrap()
                .push(bind(dir.path(), "/data", &["rbind", "rw"]))
        },
    );
    let block_start = c.container().id_mapping().host_start;
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    // Not idmapped: host root's files are not the container's.
    assert_eq!(out.trim(), "65534");
    let made = std::fs::metadata(dir.path().join("made-inside")).unwrap();
    assert_eq!((made.uid(), made.gid()), (block_start, block_start));
}

#[test]
fn an_idmapped_bind_of_a_writable_share_is_refused() {
    // It would let container root write as host root there: setuid programs for host users.
    let dir = host_dir();
    let refused = common::try_create(common::runtime(), "idmap-opt", |spec| {
        let mounts = spec.mounts_mut().get_or_insert_with(Vec::new);
        mounts.push(bind(dir.path(), "/data", &["rbind", "rw", "idmap"]));
    });
    let Err(err) = refused else {
        panic!("the create was not refused")
    };
    assert!(err.to_string().contains("idmapped mount (idmap)"), "{err}");
}

#[test]
fn the_rootfs_and_host_programs_appear_owned_by_container_root() {
    let script =
        "stat -c %u:%g /etc/passwd /usr/bin/env; grep -c ' / .*idmapped' /proc/self/mountinfo";
    let (code, out) = create_with("rootfs-owner", &["sh", "-c", script], |_| {}).run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0:0", "0:0", "1"]);
}

#[test]
fn a_process_whose_main_thread_ended_alone_has_not_exited() {
    // Its leader reads as a zombie while its other threads run: counted as exited, a live
    // container's init that did so had its vetting records removed by a take-over.
    use std::io::BufRead;
    let mut process = std::process::Command::new(common::PROBE)
        .args(["leader-exits", "30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(process.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ok\n");
    let pid = process.id() as i32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !common::is_zombie(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the main thread never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let holder = eci::eci_idmap::Holder::of(pid).unwrap();
    let exited = holder.has_exited();
    process.kill().unwrap();
    process.wait().unwrap();
    assert!(!exited, "a process whose other thread runs has not exited");
    assert!(holder.has_exited());
}
