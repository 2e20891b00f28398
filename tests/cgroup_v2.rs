//! eci on a host whose cgroups are cgroup v2 alone (Debian 12, Ubuntu 22.04, Docker Desktop's
//! VM). Needs root.
//!
//! This machine's controllers are on cgroup v1 (the hybrid layout), so each test runs itself
//! again in a mount namespace of its own where /sys/fs/cgroup is the cgroup2 hierarchy alone,
//! which libcgroups, and so eci, take for a cgroup v2 host. The kernel still keeps the v1
//! hierarchies, mounted nowhere there, and lists them in /proc/PID/cgroup; cgroup2 has only
//! the controllers v1 does not hold (hugetlb here), so memory and pids limits cannot be tried.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether /sys/fs/cgroup is cgroup2 (the whole tree) in this process's mount namespace.
fn on_cgroup2_alone() -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    statfs("/sys/fs/cgroup").is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// True where the test `name` is to run here: on a cgroup v2 host. Elsewhere it runs the test
/// again in a private mount namespace with cgroup2 mounted at /sys/fs/cgroup
/// (scripts/on-cgroup2), fails if that does, and returns false.
fn runs_here_on_cgroup2(name: &str) -> bool {
    if on_cgroup2_alone() {
        return true;
    }
    let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/on-cgroup2"))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .output()
        .expect("scripts/on-cgroup2");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} on cgroup2 alone: {}\n{stdout}\n{stderr}",
        output.status
    );
    false
}

/// The container's directory in the cgroup2 tree.
fn cgroup_dir(container: &eci::Container) -> PathBuf {
    let relative = container.cgroup_path().unwrap().strip_prefix("/").unwrap();
    Path::new("/sys/fs/cgroup").join(relative)
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

#[test]
fn a_container_and_its_execd_processes_live_in_its_cgroup2_directory() {
    if !runs_here_on_cgroup2("a_container_and_its_execd_processes_live_in_its_cgroup2_directory") {
        return;
    }
    let mut c = common::create_with("v2", &["sleep", "1000"], |_| {});
    let dir = cgroup_dir(c.container());
    let init = c.container().pid();
    // In it before it runs anything, as the kernel sees it.
    let own = format!("0::{}", c.container().cgroup_path().unwrap().display());
    let listed = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    assert!(listed.lines().any(|l| l == own), "{listed}");
    assert_eq!(read(&dir, "cgroup.procs").trim(), init.to_string());
    c.container().start().unwrap();

    // A process added later is put in by pid.
    let mut process = eci::oci_spec::runtime::Process::default();
    process.set_args(Some(vec!["sleep".into(), "1000".into()]));
    let mut exec = c
        .container()
        .exec(process, eci::Stdio::default())
        .expect("exec");
    let mut listed = c.container().processes().unwrap();
    listed.sort();
    let mut expected = vec![init, exec.pid()];
    expected.sort();
    assert_eq!(listed, expected);

    // pause and resume through cgroup2's own freezer.
    c.container().pause().unwrap();
    assert!(read(&dir, "cgroup.events").contains("frozen 1"));
    c.container().resume().unwrap();
    assert!(read(&dir, "cgroup.events").contains("frozen 0"));

    c.container().kill_all(libc::SIGKILL).unwrap();
    assert_eq!(exec.wait().unwrap().code(), 128 + libc::SIGKILL);
    drop(c);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn a_delegated_cgroup2_directory_is_capped_and_its_own_files_stay_the_hosts() {
    if !runs_here_on_cgroup2(
        "a_delegated_cgroup2_directory_is_capped_and_its_own_files_stay_the_hosts",
    ) {
        return;
    }
    // The container's directory is bound at /sys/fs/cgroup itself on cgroup v2. It moves a
    // process into a cgroup of its own and back; it cannot raise its caps; it makes cgroups
    // until the depth cap stops it, then beside them until the count cap does.
    let script = "cd /sys/fs/cgroup && cat cgroup.max.descendants cgroup.max.depth \
         && (echo max > cgroup.max.descendants) 2>&1 | grep -c 'Permission denied'; \
         mkdir inner && echo $$ > inner/cgroup.procs && grep -c '/inner$' /proc/self/cgroup; \
         echo $$ > cgroup.procs; echo back=$?; \
         d=inner; n=1; while mkdir $d/d 2>/tmp/depth; do d=$d/d; n=$((n+1)); done; \
         echo depth=$n; cat /tmp/depth; \
         while mkdir s$n 2>/tmp/count; do n=$((n+1)); done; echo count=$n; cat /tmp/count";
    let runtime = common::delegating_runtime();
    let mut c = common::create_in(runtime, "v2-delegated", &["sh", "-c", script], |spec| {
        common::with_cgroup_mount(spec, false);
    });
    let dir = cgroup_dir(c.container());
    let owner = |file: &str| std::fs::metadata(dir.join(file)).unwrap().uid();
    let root = c.container().id_mapping().host_start;
    for given in [
        ".",
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
    ] {
        assert_eq!(owner(given), root, "{given}");
    }
    for kept in [
        "cgroup.max.descendants",
        "cgroup.max.depth",
        "hugetlb.2MB.max",
    ] {
        if dir.join(kept).exists() {
            assert_eq!(owner(kept), 0, "{kept}");
        }
    }
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..6],
        ["1024", "32", "1", "1", "back=0", "depth=32"],
        "{out}"
    );
    assert!(
        lines[6].ends_with("Resource temporarily unavailable"),
        "{out}"
    );
    assert_eq!(lines[7], "count=1024", "{out}");
    assert!(
        lines[8].ends_with("Resource temporarily unavailable"),
        "{out}"
    );
    // The 1,024 cgroups it made go with the container's.
    drop(c);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn kill_all_reaches_a_process_in_a_delegated_cgroup2_chain_deeper_than_path_max() {
    if !runs_here_on_cgroup2(
        "kill_all_reaches_a_process_in_a_delegated_cgroup2_chain_deeper_than_path_max",
    ) {
        return;
    }
    common::kill_all_reaches_a_process_past_path_max();
}

#[test]
fn a_threaded_cgroup_the_container_made_does_not_hide_its_processes() {
    if !runs_here_on_cgroup2("a_threaded_cgroup_the_container_made_does_not_hide_its_processes") {
        return;
    }
    // The kernel refuses to read a threaded cgroup's cgroup.procs (EOPNOTSUPP); its threaded
    // domain, the container's own directory here, lists the processes.
    let script = "cd /sys/fs/cgroup && mkdir th && echo threaded > th/cgroup.type \
         && cat th/cgroup.type && exec sleep 1000";
    let runtime = common::delegating_runtime();
    let mut c = common::create_in(runtime, "v2-threaded", &["sh", "-c", script], |spec| {
        common::with_cgroup_mount(spec, false);
    });
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "threaded\n");
    let dir = cgroup_dir(c.container());
    assert!(std::fs::read_to_string(dir.join("th/cgroup.procs")).is_err());
    // Once cat is gone and the shell has become the sleep, the init is all there is.
    let init = c.container().pid();
    let comm = format!("/proc/{init}/comm");
    while std::fs::read_to_string(&comm).unwrap() != "sleep\n" {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(c.container().processes().unwrap(), [init]);
    c.container().kill_all(libc::SIGKILL).unwrap();
    assert_eq!(c.finish().0, 128 + libc::SIGKILL);
}

#[test]
fn an_exec_joins_the_inits_cgroup_where_the_container_keeps_none_at_its_top() {
    if !runs_here_on_cgroup2(
        "an_exec_joins_the_inits_cgroup_where_the_container_keeps_none_at_its_top",
    ) {
        return;
    }
    // Docker in the container moves its processes below its top cgroup and hands controllers
    // down from it; the kernel then refuses any process at the top (EBUSY), and a process
    // added later goes where the init is, as under runc.
    let script = "cd /sys/fs/cgroup && mkdir init && echo $$ > init/cgroup.procs \
         && echo +hugetlb > cgroup.subtree_control && echo ready && exec sleep 1000";
    let runtime = common::delegating_runtime();
    let mut c = common::create_in(runtime, "v2-exec-below", &["sh", "-c", script], |spec| {
        common::with_cgroup_mount(spec, false);
    });
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "ready\n");
    let dir = cgroup_dir(c.container());
    assert_eq!(read(&dir, "cgroup.subtree_control").trim(), "hugetlb");
    let mut process = eci::oci_spec::runtime::Process::default();
    process.set_args(Some(vec!["cat".into(), "/proc/self/cgroup".into()]));
    let (reader, writer) = std::io::pipe().unwrap();
    let stdio = eci::Stdio {
        stdout: Some(writer.into()),
        ..Default::default()
    };
    let mut exec = c.container().exec(process, stdio).expect("exec");
    assert_eq!(exec.wait().unwrap().code(), 0);
    let listed = std::io::read_to_string(reader).unwrap();
    assert!(listed.lines().any(|l| l == "0::/init"), "{listed}");
    c.container().kill_all(libc::SIGKILL).unwrap();
    assert_eq!(c.finish().0, 128 + libc::SIGKILL);
}
