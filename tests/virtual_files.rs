//! /proc and /sys files that reflect the container, read from inside real containers. Needs
//! root, /dev/fuse and cgroup memory and cpuset controllers.

mod common;

use common::{create_full, create_with, PROBE};
use eci::oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder, Spec};
use eci::{Policy, Runtime, RuntimeConfig};

/// A runtime of the test's own in `dir` (its virtual files server is the test's to break),
/// sharing eci-probe's directory like the common one.
fn own_runtime(dir: &std::path::Path, mut policy: Policy) -> Runtime {
    policy
        .paths
        .share(std::path::Path::new(PROBE).parent().unwrap(), true)
        .unwrap();
    Runtime::new(RuntimeConfig {
        state_dir: dir.to_path_buf(),
        policy,
        ..Default::default()
    })
    .unwrap()
}

/// Limits the container's memory to `bytes` and its CPUs to `cpus`.
fn limit(spec: &mut Spec, bytes: i64, cpus: Option<&str>) {
    let mut resources = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(bytes).build().unwrap());
    if let Some(cpus) = cpus {
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .cpus(cpus)
                .mems("0")
                .build()
                .unwrap(),
        );
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_resources(Some(resources.build().unwrap()));
    spec.set_linux(Some(linux));
}

fn run_limited(name: &str, script: &str, bytes: i64, cpus: Option<&str>) -> (i32, String) {
    create_with(name, &["sh", "-c", script], |spec| limit(spec, bytes, cpus)).run_to_end()
}

#[test]
fn a_memory_limit_is_the_memory_total() {
    // procps free reads /proc/meminfo; busybox free asks sysinfo(2), which eci answers.
    let total = "grep ^Mem: | tr -s ' ' | cut -d' ' -f2";
    let script = format!(
        "grep MemTotal /proc/meminfo; free -k | {total}; busybox free | {total}; \
         busybox uptime | grep -c 'up 0 min'"
    );
    let (code, out) = run_limited("meminfo", &script, 256 << 20, None);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["MemTotal:         262144 kB", "262144", "262144", "1"],
        "procps and busybox free agree; sysinfo's uptime starts at 0"
    );
}

#[test]
fn sysinfo_never_writes_where_the_kernel_would_not() {
    // The answer is written through /proc/PID/mem, which ignores page protections: a
    // read-only page gets the kernel's EFAULT, as without eci.
    assert_eq!(
        common::probe("sysinfo-ro", &["sysinfo-readonly", ",", "sysinfo-uptime"]),
        ["EFAULT", "0"]
    );
}

#[test]
fn sysinfo_into_a_page_of_the_containers_own_fuse_server_never_waits_on_it() {
    // The runtime writes the answer into the caller's memory, on the thread that serves every
    // container. A private mapping of a file of the container's own FUSE server, whose reads
    // it never answers, would have that write wait for good. It does not: the fault reaches
    // FUSE with the runtime's IDs, which the container's user namespace does not map, and
    // FUSE refuses such a request without asking its server (EOVERFLOW): the caller gets
    // EFAULT, and the next container is answered.
    let dir = tempfile::tempdir().unwrap();
    let runtime = own_runtime(dir.path(), Policy::default());
    let script = "mkdir -p /tmp/f && exec /probe sysinfo-fuse /tmp/f";
    let mut fused = common::create_in(
        &runtime,
        "sysinfo-fuse",
        &["sh", "-c", script],
        common::with_fuse_device,
    );
    fused.container().start().unwrap();
    assert_eq!(fused.read_stdout_line().trim(), "mapped");
    // Its server's end frees the wait (a line read now would wait for good).
    another_containers_sysinfo_is_answered(&runtime, &mut fused);
}

#[test]
fn files_read_with_sendfile_have_their_text() {
    // busybox cat copies with sendfile(2), which reads a FUSE file through the page cache up to
    // its size: with procfs's size of 0 it printed nothing. A tunable's text grows and shrinks.
    let script = "busybox cat /proc/meminfo | head -n 1; \
                  for v in 1 123456 7; do echo $v > /proc/sys/kernel/panic; \
                  busybox cat /proc/sys/kernel/panic; done";
    let (code, out) = run_limited("sendfile", script, 256 << 20, None);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["MemTotal:         262144 kB", "1", "123456", "7"]
    );
}

#[test]
fn sysinfo_into_a_page_the_container_never_resolves_holds_up_only_that_call() {
    // A page a userfaultfd of the container's watches and never resolves would hold a write
    // through process_vm_writev until the descriptor is gone, on the runtime's thread that
    // serves every container. (A full userfaultfd, one that catches the kernel's faults, takes
    // vm.unprivileged_userfaultfd=1 on the host, set here for the test.) A write through
    // /proc/PID/mem fails instead (EFAULT), and the next container is answered.
    const KNOB: &str = "/proc/sys/vm/unprivileged_userfaultfd";
    struct Restored(String);
    impl Drop for Restored {
        fn drop(&mut self) {
            let _ = std::fs::write(KNOB, &self.0);
        }
    }
    let _restored = Restored(std::fs::read_to_string(KNOB).unwrap());
    std::fs::write(KNOB, "1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runtime = own_runtime(dir.path(), Policy::default());
    let mut stuck = common::create_in(
        &runtime,
        "sysinfo-uffd",
        &["/probe", "sysinfo-uffd"],
        |_| {},
    );
    stuck.container().start().unwrap();
    assert_eq!(stuck.read_stdout_line().trim(), "registered");
    // Its end closes the userfaultfd, which would free a write waiting there.
    another_containers_sysinfo_is_answered(&runtime, &mut stuck);
}

/// While `stuck`'s sysinfo call waits on a page the runtime cannot write (it answers EFAULT,
/// which `stuck` prints), another container of `runtime` is answered: within 20 s, or `stuck`
/// is killed, which frees what holds the write, and the test fails.
fn another_containers_sysinfo_is_answered(runtime: &Runtime, stuck: &mut common::TestContainer) {
    std::thread::scope(|scope| {
        let (sent, answered) = std::sync::mpsc::channel();
        scope.spawn(move || {
            let mut other = common::create_in(
                runtime,
                "sysinfo-beside",
                &["/probe", "sysinfo-uptime"],
                |_| {},
            );
            let _ = sent.send(other.run_to_end());
        });
        let Ok((code, out)) = answered.recv_timeout(std::time::Duration::from_secs(20)) else {
            stuck.container().kill(libc::SIGKILL).unwrap();
            panic!("another container's sysinfo was never answered");
        };
        assert_eq!(stuck.read_stdout_line().trim(), "EFAULT");
        stuck.container().kill(libc::SIGKILL).unwrap();
        assert_eq!(code, 0, "{out}");
        assert!(out.trim().parse::<u64>().is_ok(), "{out}");
    });
}

#[test]
fn a_file_kept_open_never_freezes_what_later_opens_read() {
    // Overlapping opens of one file share the kernel's backing file: a later open must still
    // get a new text (and the open one reads it too, as procfs gives a new text from the start).
    // The idle time on /proc/stat's first line grows with the container's uptime.
    let script = "exec 3< /proc/stat; sleep 1.2; busybox head -n 1 /proc/stat; \
                  busybox head -n 1 <&3";
    let (code, out) = run_limited("kept-open", script, 1 << 30, None);
    assert_eq!(code, 0, "{out}");
    let idle_ticks: Vec<u64> = out
        .lines()
        .map(|l| l.split_whitespace().nth(4).unwrap().parse().unwrap())
        .collect();
    assert_eq!(idle_ticks.len(), 2, "{out}");
    assert!(idle_ticks.iter().all(|t| *t >= 100), "{out}");
}

#[test]
fn one_cpu_is_one_cpu_everywhere() {
    let script = "nproc; grep -c ^processor /proc/cpuinfo; cat /sys/devices/system/cpu/online; \
                  grep -c '^cpu[0-9]' /proc/stat";
    let (code, out) = run_limited("cpus", script, 1 << 30, Some("0"));
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1", "1", "0", "1"]);
}

#[test]
fn a_quota_on_a_parent_cgroup_is_the_containers_too() {
    // A pod's cgroup, or Docker's --cgroup-parent, may hold the quota: the kernel holds the
    // container to it, and so do its CPU files. Half a CPU of this host's two shows as one.
    let cpu = std::path::Path::new("/sys/fs/cgroup/cpu");
    if !cpu.join("cpu.cfs_quota_us").exists() {
        return;
    }
    let parent = format!("eci-test-quota-{}", std::process::id());
    std::fs::create_dir(cpu.join(&parent)).unwrap();
    std::fs::write(cpu.join(&parent).join("cpu.cfs_quota_us"), "50000").unwrap();
    let script = "grep -c ^processor /proc/cpuinfo; cat /sys/devices/system/cpu/online";
    let (code, out) = create_with("parent-quota", &["sh", "-c", script], |spec| {
        let mut linux = spec.linux().clone().unwrap();
        linux.set_cgroups_path(Some(format!("/{parent}/c").into()));
        spec.set_linux(Some(linux));
    })
    .run_to_end();
    // The parent directory in every hierarchy (eci made it in the others).
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(&parent));
    }
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1", "0"], "{out}");
}

#[test]
fn cpu_time_on_a_cpu_the_quota_hides_still_counts() {
    // A quota of one CPU shows one of this host's two; the kernel still runs the container on
    // either, and /proc/stat (top's figures) must count the time spent on the hidden one.
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: needs two CPUs");
        return;
    }
    let script = "timeout 1 taskset -c 1 sh -c 'while :; do :; done'; \
                  grep -c '^cpu[0-9]' /proc/stat; head -n 1 /proc/stat";
    let (code, out) = create_with("hidden-cpu", &["sh", "-c", script], |spec| {
        let cpu = LinuxCpuBuilder::default()
            .quota(100_000i64)
            .period(100_000u64)
            .build()
            .unwrap();
        let resources = LinuxResourcesBuilder::default().cpu(cpu).build().unwrap();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_resources(Some(resources));
        spec.set_linux(Some(linux));
    })
    .run_to_end();
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    let fields: Vec<u64> = lines[1]
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect();
    // user + system, in ticks of 10 ms: a good part of the second spent spinning (the CPU is
    // shared with whatever else the host runs; the hidden CPU's time alone counted 0 before).
    assert!(fields[0] + fields[2] >= 20, "{out}");
}

#[test]
fn uptime_and_process_start_times_count_from_the_containers_start() {
    // The kernel's own /proc/uptime, in the container's time namespace; a process's start time
    // (ticks since boot, field 22 of /proc/PID/stat) counts from the same start, and so does
    // the boot time /proc/stat gives, so that ps shows when processes really started.
    let script = "cat /proc/uptime; cut -d' ' -f22 /proc/self/stat; grep ^btime /proc/stat; \
                  date +%s; readlink /proc/self/ns/time; readlink /proc/1/ns/time; \
                  cut -d' ' -f22 /proc/1/stat";
    let (code, out) = run_limited("uptime", script, 1 << 30, None);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let uptime: f64 = lines[0].split_whitespace().next().unwrap().parse().unwrap();
    assert!((0.0..5.0).contains(&uptime), "{out}");
    let started_ticks: u64 = lines[1].parse().unwrap();
    assert!(started_ticks < 500, "{out}");
    let btime: u64 = lines[2].trim_start_matches("btime ").parse().unwrap();
    let now: u64 = lines[3].parse().unwrap();
    assert!(now - btime < 5, "booted with the container: {out}");
    let host_time_ns = std::fs::read_link("/proc/self/ns/time").unwrap();
    assert_ne!(lines[4], host_time_ns.to_str().unwrap(), "{out}");
    assert_eq!(lines[4], lines[5], "{out}");
    // The init started after the clock's origin: no start time before it (which the kernel
    // would print wrapped around, centuries ahead).
    let init_started: u64 = lines[6].parse().unwrap();
    assert!(init_started < 500, "{out}");
}

#[test]
fn concurrent_readers_in_four_containers_get_their_own_values() {
    // Two readers per container, 200 reads each; every read must show the container's own
    // limit.
    let reader = "i=0; while [ $i -lt 200 ]; do grep MemTotal /proc/meminfo; i=$((i+1)); done";
    let script = format!("({reader}) > /tmp/a & ({reader}) > /tmp/b; wait; sort -u /tmp/a /tmp/b");
    let mut containers: Vec<_> = (1..=4)
        .map(|n| {
            let c = create_with(&format!("readers{n}"), &["sh", "-c", &script], |spec| {
                limit(spec, n << 26, None)
            });
            (n, c)
        })
        .collect();
    for (_, c) in &mut containers {
        c.container().start().unwrap();
    }
    for (n, c) in &mut containers {
        c.container().wait().unwrap();
        let out = c.read_stdout();
        let expected = format!("MemTotal:{:>15} kB", (*n << 26) / 1024);
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [expected.as_str()],
            "container {n}"
        );
    }
}

#[test]
fn reads_fail_when_the_server_is_gone_and_never_show_the_host() {
    // A runtime of its own: its server is this test's to break.
    let dir = tempfile::tempdir().unwrap();
    let runtime = own_runtime(dir.path(), Policy::default());
    let script = "grep MemTotal /proc/meminfo; read go; cat /proc/meminfo; echo status $?; \
                  cat /proc/loadavg; echo status $?";
    let (reader, mut writer) = std::io::pipe().unwrap();
    let stdin = Some(std::os::fd::OwnedFd::from(reader));
    let mut c = create_full(
        &runtime,
        "dead-server",
        &["sh", "-c", script],
        stdin,
        |spec| limit(spec, 256 << 20, None),
    );
    c.container().start().unwrap();
    let server = runtime
        .virtual_files_mountpoint()
        .expect("the server is mounted");
    let first = c.read_stdout_line();
    assert_eq!(first, "MemTotal:         262144 kB\n");
    eci::eci_mount::virt::abort(&server).unwrap();
    // The kernel serves a text it read within the last 100 ms from its page cache, without
    // asking the server (the container's own figures, never the host's); then reads fail.
    std::thread::sleep(std::time::Duration::from_millis(150));
    use std::io::Write;
    writeln!(writer, "go").unwrap();
    c.container().wait().unwrap();
    let rest = c.read_stdout();
    assert_eq!(
        rest.lines().collect::<Vec<_>>(),
        ["status 1", "status 1"],
        "nothing is read, least of all the host's values"
    );
    drop(c);
    drop(runtime);
}

#[test]
fn a_procfs_mounted_inside_gets_the_virtual_files_too() {
    let script = "mkdir -p /tmp/p && mount -t proc proc /tmp/p && grep MemTotal /tmp/p/meminfo \
                  && umount -l /tmp/p \
                  && unshare --mount --pid --fork --mount-proc grep MemTotal /proc/meminfo";
    let (code, out) = run_limited("inner-meminfo", script, 256 << 20, None);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["MemTotal:         262144 kB", "MemTotal:         262144 kB"]
    );
}

#[test]
fn a_global_tunable_written_inside_stays_inside() {
    let host = std::fs::read_to_string("/proc/sys/kernel/panic").unwrap();
    let new = if host.trim() == "7" { "8" } else { "7" };
    let script = format!(
        "/probe write /proc/sys/kernel/panic {new} , write /proc/sys/kernel/panic abc , \
         write /proc/sys/kernel/panic_on_oops 2 , write /proc/sys/kernel/pid_max 100 ; \
         cat /proc/sys/kernel/panic"
    );
    let (code, out) = run_limited("panic-a", &script, 1 << 30, None);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "EINVAL", "EINVAL", "EINVAL", new],
        "the container reads back its own value; bad values are refused"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/panic").unwrap(),
        host,
        "host unchanged"
    );
    let (_, other) = run_limited("panic-b", "cat /proc/sys/kernel/panic", 1 << 30, None);
    assert_eq!(other, host, "another container sees the host's value");
}

#[test]
fn a_tunable_is_written_only_by_whom_the_kernel_would_let() {
    // The kernel's handler asks CAP_SYS_ADMIN for dmesg_restrict (root without it is refused,
    // while panic needs only the file's permission), and a user namespace made inside the
    // container is refused the host's tunables altogether. The permission is asked of each
    // writer, not only of whoever opened the file.
    let without_admin = "setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin /probe";
    let script = format!(
        "/probe write /proc/sys/kernel/dmesg_restrict 1 ; \
         {without_admin} write /proc/sys/kernel/dmesg_restrict 0 , write /proc/sys/kernel/panic 3 ; \
         unshare --user --map-root-user /probe write /proc/sys/kernel/panic 4 ; \
         exec 3<> /proc/sys/kernel/panic; \
         setpriv --reuid 1000 --regid 1000 --clear-groups busybox sh -c 'echo 5 >&3' 2>&1 \
           | grep -c 'Permission denied'; \
         cat /proc/sys/kernel/dmesg_restrict /proc/sys/kernel/panic"
    );
    let (code, out) = run_limited("tunable-writers", &script, 1 << 30, None);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "EPERM", "ok", "EACCES", "1", "1", "3"],
        "root writes; root without CAP_SYS_ADMIN writes panic only; a nested namespace \
         nothing; nor another user through root's descriptor"
    );
}

#[test]
fn conntrack_max_follows_largest_wins() {
    const KEY: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
    let Ok(original) = std::fs::read_to_string(KEY) else {
        panic!("{KEY} is missing: the nf_conntrack module is needed");
    };
    let original: u64 = original.trim().parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut policy = Policy::default();
    policy
        .sysctls
        .set(
            "net.netfilter.nf_conntrack_max",
            eci::eci_policy::settings::SysctlMode::LargestWins,
        )
        .unwrap();
    let runtime = own_runtime(dir.path(), policy);
    let (higher, lower) = (original + 1024, original / 2);
    let run = |name: &str, value: u64| {
        let script = format!("/probe write {KEY} {value}; cat {KEY}");
        let mut c = common::create_in(&runtime, name, &["sh", "-c", &script], |_| {});
        c.run_to_end()
    };
    let raised = run("conntrack-high", higher);
    let host_after_raise = std::fs::read_to_string(KEY).unwrap();
    let lowered = run("conntrack-low", lower);
    let host_after_lower = std::fs::read_to_string(KEY).unwrap();
    std::fs::write(KEY, original.to_string()).unwrap();
    assert_eq!(raised.1, format!("ok\n{higher}\n"));
    assert_eq!(
        host_after_raise.trim(),
        higher.to_string(),
        "the largest wins on the host"
    );
    assert_eq!(
        lowered.1,
        format!("ok\n{lower}\n"),
        "the container reads its own value"
    );
    assert_eq!(
        host_after_lower.trim(),
        higher.to_string(),
        "a smaller value never lowers the host"
    );
}

#[test]
fn namespaced_tunables_are_the_containers_own_and_others_stay_read_only() {
    let host_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shmmax = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let forward = if host_forward.trim() == "1" { "0" } else { "1" };
    let script = format!(
        "/probe write /proc/sys/net/ipv4/ip_forward {forward} , \
         write /proc/sys/kernel/shmmax 12345678 , write /proc/sys/vm/swappiness 5 , \
         write /proc/sys/kernel/hostname other; \
         cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax"
    );
    let (code, out) = run_limited("namespaced", &script, 1 << 30, None);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "ok", "EACCES", "EACCES", forward, "12345678"],
        "network and IPC tunables are the container's; vm.swappiness and the hostname file \
         stay read-only"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_forward
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host_shmmax
    );
}

#[test]
fn loadavg_counts_the_containers_own_threads() {
    // Idle at first: no load, two threads (sh and cat), the newest with a small PID. Then one
    // busy thread for longer than the 5-second sampling interval.
    let script = "cat /proc/loadavg; (while :; do :; done) & sleep 7; cat /proc/loadavg; \
                  busybox uptime; kill $!";
    let (code, out) = run_limited("loadavg", script, 1 << 30, None);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let fields =
        |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_string).collect() };
    let idle = fields(lines[0]);
    assert_eq!(&idle[..3], ["0.00", "0.00", "0.00"], "{out}");
    assert!(idle[3].ends_with("/2"), "sh and cat only: {out}");
    let last_pid: u32 = idle[4].parse().unwrap();
    assert!(
        (2..10).contains(&last_pid),
        "a PID of the container's: {out}"
    );
    let busy = fields(lines[1]);
    let one_minute: f64 = busy[0].parse().unwrap();
    assert!(one_minute >= 0.08, "one sample of one busy thread: {out}");
    assert!(busy[3].ends_with("/3"), "sh, the loop and cat: {out}");
    let sysinfo = lines[2].rsplit("load average: ").next().unwrap();
    assert_ne!(&sysinfo[..4], "0.00", "sysinfo(2) has the load too: {out}");
}

#[test]
fn a_delegated_containers_processes_in_its_own_cgroups_still_count() {
    // Docker in a delegated container moves its processes into cgroups below the container's:
    // they are the container's all the same, in /proc/loadavg's thread count (and /proc/stat's
    // and sysinfo's, which count the same way).
    // The cpuacct hierarchy (cpuacct, or cpu,cpuacct mounted together) on cgroup v1, which
    // the counts come from, else the cgroup2 tree.
    let script = "cd /sys/fs/cgroup; for d in *cpuacct*; do [ -d \"$d\" ] && cd \"$d\" && break; \
         done; mkdir inner || exit 1; sleep 1000 & \
         echo $! > inner/cgroup.procs && grep -c inner /proc/$!/cgroup; \
         read -r one five fifteen threads last < /proc/loadavg; echo ${threads#*/}; kill $!";
    let runtime = common::delegating_runtime();
    let mut c = common::create_in(runtime, "delegated-load", &["sh", "-c", script], |spec| {
        common::with_cgroup_mount(spec, false);
    });
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    // The sleep is in "inner"; the threads are the shell's and the sleep's (read and echo are
    // the shell's own).
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["1", "2"], "{out}");
}

#[test]
fn diskstats_counts_the_containers_own_io() {
    use std::os::unix::fs::MetadataExt;
    // The disk under the test's rootfs. cgroup v1 counts a device's I/O only once some cgroup
    // throttles it, so the container gets a limit no one reaches.
    let dev = std::fs::metadata(common::STATE_DIR).unwrap().dev();
    let (major, minor) = whole_disk(libc::major(dev), libc::minor(dev));
    let name = disk_name(major, minor);
    let script = format!(
        "dd if=/dev/zero of=/written bs=64k count=100 oflag=direct 2>/dev/null && rm /written \
         && grep ' {name} ' /proc/diskstats"
    );
    let (code, out) = create_with("diskstats", &["sh", "-c", &script], |spec| {
        let mut root = spec.root().clone().unwrap();
        root.set_readonly(Some(false));
        spec.set_root(Some(root));
        let throttle = eci::oci_spec::runtime::LinuxThrottleDeviceBuilder::default()
            .major(i64::from(major))
            .minor(i64::from(minor))
            .rate(1u64 << 40)
            .build()
            .unwrap();
        let block_io = eci::oci_spec::runtime::LinuxBlockIoBuilder::default()
            .throttle_write_bps_device(vec![throttle])
            .build()
            .unwrap();
        let mut linux = spec.linux().clone().unwrap_or_default();
        let resources = LinuxResourcesBuilder::default()
            .block_io(block_io)
            .build()
            .unwrap();
        linux.set_resources(Some(resources));
        spec.set_linux(Some(linux));
    })
    .run_to_end();
    assert_eq!(code, 0, "{out}");
    let fields: Vec<u64> = out
        .split_whitespace()
        .skip(3)
        .map(|f| f.parse().unwrap())
        .collect();
    let (writes, sectors_written) = (fields[4], fields[6]);
    // 100 direct writes of 64 KiB, and the few the filesystem adds; the host's counts since
    // boot are far higher.
    assert!((100..1000).contains(&writes), "{out}");
    assert!(sectors_written >= 100 * 128, "{out}");
    assert_eq!(fields[3], 0, "no time figures: {out}");
}

/// The whole disk a block device (maybe a partition) belongs to.
fn whole_disk(major: u32, minor: u32) -> (u32, u32) {
    let sys = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    assert!(
        sys.exists(),
        "the test rootfs is on a block device ({major}:{minor})"
    );
    if !sys.join("partition").exists() {
        return (major, minor);
    }
    let parent = std::fs::read_to_string(sys.join("../dev")).unwrap();
    let (major, minor) = parent.trim().split_once(':').unwrap();
    (major.parse().unwrap(), minor.parse().unwrap())
}

fn disk_name(major: u32, minor: u32) -> String {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent")).unwrap();
    let line = uevent.lines().find(|l| l.starts_with("DEVNAME=")).unwrap();
    line["DEVNAME=".len()..].to_string()
}

#[test]
fn a_procfs_mounted_inside_has_the_containers_tunables() {
    // An inner runtime's procfs (Docker in the container setting an inner container's sysctls):
    // the namespaced tables and the emulated tunables are writable there too, and are the same
    // ones the container's own /proc shows; the rest of /proc/sys stays read-only.
    let host_panic = std::fs::read_to_string("/proc/sys/kernel/panic").unwrap();
    let new = if host_panic.trim() == "9" { "8" } else { "9" };
    // The IPC and mqueue tables and nf_conntrack_max have an entry per namespace: their binds
    // are placed where the container's namespaces look (EROFS when they hung on the host's).
    let conntrack = "/proc/sys/net/netfilter/nf_conntrack_max";
    let conntrack = if std::path::Path::new(conntrack).exists() {
        conntrack
    } else {
        "/proc/sys/kernel/shmmax"
    };
    let script = format!(
        "mkdir -p /tmp/p && mount -t proc proc /tmp/p \
         && /probe write /tmp/p/sys/net/ipv4/ip_forward 1 , \
            write /tmp/p/sys/kernel/panic {new} , write /tmp/p/sys/vm/swappiness 10 , \
            write /tmp/p/sys/kernel/shmmni 4000 , write /tmp/p/sys/fs/mqueue/msg_max 20 , \
            write /tmp/p{} 12345 \
         && cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/panic /proc/sys/kernel/shmmni \
            /proc/sys/fs/mqueue/msg_max {conntrack}",
        &conntrack["/proc".len()..]
    );
    let (code, out) = run_limited("inner-sysctl", &script, 1 << 30, None);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "ok", "EACCES", "ok", "ok", "ok", "1", new, "4000", "20", "12345"]
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/panic").unwrap(),
        host_panic,
        "the host's value is untouched"
    );
}
