//! The mount vetter from inside real containers: every attempt to undo the initial mounts, in
//! every arrangement of namespaces and roots, gets the exact errno; what inner runtimes need keeps
//! working. Needs root.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{create_in, run, PROBE, STATE_DIR};
use eci::eci_policy::settings::{FsType, FsTypes};
use eci::{Policy, Runtime, RuntimeConfig};

const MATRIX: &str = include_str!("scripts/mount-matrix.sh");

/// Runs the matrix script; returns its (scenario, operation, answer) lines.
fn matrix() -> Vec<(String, String, String)> {
    let (code, out) = run(
        "matrix",
        &[
            "sh",
            "-c",
            "printf '%s' \"$0\" > /tmp/matrix.sh && exec sh /tmp/matrix.sh /probe",
            MATRIX,
        ],
    );
    assert_eq!(code, 0, "{out}");
    out.lines()
        .map(|line| {
            let mut words = line.splitn(3, ' ').map(str::to_string);
            let mut next = || words.next().unwrap_or_default();
            (next(), next(), next())
        })
        .collect()
}

#[test]
fn initial_mounts_hold_in_all_eight_scenarios() {
    let lines = matrix();
    let scenarios = [
        "same-plain",
        "same-chroot",
        "same-pivot",
        "same-pivot-chroot",
        "new-plain",
        "new-chroot",
        "new-pivot",
        "new-pivot-chroot",
    ];
    for scenario in scenarios {
        let answers: Vec<(&str, &str)> = lines
            .iter()
            .filter(|(s, _, _)| s == scenario)
            .map(|(_, op, answer)| (op.as_str(), answer.as_str()))
            .collect();
        // Where the caller sees the initial mounts themselves, the vetter refuses (EPERM);
        // elsewhere it sees copies, which the kernel locked when the container's mount namespace
        // was made (EINVAL for unmounting or moving a locked mount).
        let undo = if scenario == "same-plain" {
            "EPERM"
        } else {
            "EINVAL"
        };
        let expected = [
            ("remount-rw", "EPERM"),
            ("remount-ro", "ok"),
            ("proc-sys-rw", "EPERM"),
            ("bind", "ok"),
            ("bind-rw", "EPERM"),
            ("umount-mask", undo),
            ("umount-mask-lazy", undo),
            ("umount-usr", undo),
            ("move", undo),
            ("tmpfs", "ok"),
            ("umount-tmpfs", "ok"),
            ("bind-proc", "EINVAL"),
            ("proc-copy", "masked"),
            ("kallsyms", "masked"),
        ];
        assert_eq!(answers, expected, "{scenario}: {lines:?}");
    }
    assert_eq!(lines.len(), scenarios.len() * 14, "{lines:?}");
}

#[test]
fn an_inner_procfs_and_sysfs_are_masked_and_locked() {
    // The container's /sys is read-only: a sysfs of its own must be too, as the kernel asks
    // of a mount in a user namespace, and stays so.
    let script = "mkdir -p /tmp/p /tmp/s && mount -t proc proc /tmp/p && /probe mount sysfs /tmp/s sysfs \
        && mount -t sysfs -o ro sysfs /tmp/s \
        && /probe umount /tmp/p/kallsyms , remount-rw /tmp/p/sys nosuid,nodev,noexec , umount /tmp/s/firmware \
           , mount proc /tmp/s proc pidns=/proc/1/ns/pid , remount-rw /tmp/s nosuid,nodev,noexec \
        && { mount -o remount,rw /tmp/s 2>/dev/null; echo \"superblock $?\"; } \
        && mkdir -p /tmp/e /tmp/m && /probe mount o /tmp/m overlay lowerdir=/sys:/tmp/e \
           , mount o /tmp/m overlay lowerdir=/tmp/s:/tmp/e , mount o /tmp/m overlay lowerdir=/tmp/p:/tmp/e \
        && head -c 1 /tmp/p/kallsyms | wc -c && ls /tmp/s/class/net \
        && umount -l /tmp/p && umount -l /tmp/s && echo unmounted \
        && unshare --mount --pid --fork --mount-proc sh -c 'echo \"pid $$\"; head -c 1 /proc/kallsyms | wc -c'";
    let (code, out) = run("inner-proc", &["sh", "-c", script]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "EPERM",
            "EINVAL",
            "EPERM",
            "EINVAL",
            "EINVAL",
            "EPERM",
            "superblock 32",
            "EINVAL",
            "EINVAL",
            "EINVAL",
            "0",
            "lo",
            "unmounted",
            "pid 1",
            "0"
        ],
        "a sysfs must be read-only as /sys is, a mask cannot be unmounted, /proc/sys and the \
         sysfs stay read-only, an overlay cannot read past the masks of /sys or of a fresh \
         sysfs or procfs (the kernel refuses a layer with locked mounts below it), a procfs of \
         another PID namespace is refused, sysfs shows the container's \
         network namespace, and an inner PID namespace's /proc is masked too"
    );
}

#[test]
fn a_fresh_procfs_or_sysfs_never_shows_what_the_containers_own_hides() {
    // The host half builds them with the host's privileges, so the kernel's own check (no
    // mount in a user namespace more revealing than the one visible) does not apply: /sys
    // made read-only by readonlyPaths keeps a fresh sysfs read-only, and a mount of the
    // spec's under /proc or /sys, which a fresh one would not have, refuses it.
    let tmpfs_at = |destination: &str| {
        let mut tmpfs = eci::oci_spec::runtime::Mount::default();
        tmpfs.set_destination(destination.into());
        tmpfs.set_typ(Some("tmpfs".into()));
        tmpfs.set_source(Some("tmpfs".into()));
        tmpfs.set_options(Some(vec!["ro".into()]));
        tmpfs
    };
    let script = "mkdir -p /tmp/s /tmp/p \
                  && /probe mount sysfs /tmp/s sysfs , mount-ro sysfs /tmp/s sysfs \
                  , mount proc /tmp/p proc";
    let mut c = common::create_with("fresh-covered", &["sh", "-c", script], |spec| {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.retain(|m| m.destination() != Path::new("/sys"));
        let mut sysfs = tmpfs_at("/sys");
        sysfs.set_typ(Some("sysfs".into()));
        sysfs.set_source(Some("sysfs".into()));
        sysfs.set_options(Some(
            ["nosuid", "noexec", "nodev", "rw"].map(Into::into).to_vec(),
        ));
        mounts.push(sysfs);
        mounts.push(tmpfs_at("/proc/tty"));
        spec.set_mounts(Some(mounts));
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut readonly = linux.readonly_paths().clone().unwrap_or_default();
        readonly.push("/sys".into());
        linux.set_readonly_paths(Some(readonly));
        spec.set_linux(Some(linux));
    });
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["EPERM", "ok", "EPERM"]);
    let script = "mkdir -p /tmp/s && /probe mount-ro sysfs /tmp/s sysfs";
    let mut c = common::create_with("fresh-sys-covered", &["sh", "-c", script], |spec| {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.push(tmpfs_at("/sys/kernel"));
        spec.set_mounts(Some(mounts));
    });
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "EPERM", "/sys/kernel's contents would show");
}

#[test]
fn the_helper_holds_no_mount_of_the_callers_busy() {
    // The helper resolves a relative path from the caller's working directory, which it
    // enters: staying there after the call made that mount busy to a later umount (EBUSY
    // where the kernel answers 0).
    let script = "mkdir -p /tmp/d && /probe mount t /tmp/d tmpfs && mkdir /tmp/d/a /tmp/d/b \
                  && cd /tmp/d && /probe bind a b && cd / && /probe umount /tmp/d/b , umount /tmp/d";
    let (code, out) = common::run("helper-cwd", &["sh", "-c", script]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ok", "ok", "ok", "ok"]);
}

#[test]
fn security_module_label_options_are_refused() {
    // The helper mounts, so SELinux or Smack would check its label in the caller's stead. This
    // host has neither: without the vetter, tmpfs itself refuses the unknown options (EINVAL).
    let script = "mkdir -p /tmp/t && /probe mount t /tmp/t tmpfs context=system_u:object_r:tmp_t:s0 \
        , mount t /tmp/t tmpfs size=1m,seclabel , mount t /tmp/t tmpfs 'size=1m,rootcontext=\"a,b\"' \
        , mount t /tmp/t tmpfs size=1m , remount-fs /tmp/t size=2m,smackfsroot=x \
        , remount-fs /tmp/t size=2m";
    let (code, out) = run("labels", &["sh", "-c", script]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["EPERM", "EPERM", "EPERM", "ok", "EPERM", "ok"],
        "label options refused for a new tmpfs and its remount, other options kept"
    );
}

#[test]
fn a_caller_mounts_with_its_own_credentials() {
    // A process of uid 1000 given CAP_SYS_ADMIN alone may mount, but may not look up what its
    // uid cannot: the kernel refuses it /proc/1/root (a process of another uid) and a directory
    // it cannot search, whoever performs the call for it, also as the place of a new procfs
    // (which the helper builds elsewhere and then places). Container root may do all of it.
    let as_user = "setpriv --reuid 1000 --regid 1000 --clear-groups --inh-caps=-all,+sys_admin \
                   --ambient-caps=-all,+sys_admin /probe";
    // As mount(2) does, a new procfs goes where a symlink at the end of the target points.
    let script = format!(
        "mkdir -p /tmp/r /tmp/closed/in/p /tmp/c /tmp/t /tmp/p /tmp/p2 && chmod 700 /tmp/closed \
         && ln -s p2 /tmp/plink \
         && {as_user} rbind /proc/1/root /tmp/r , bind /tmp/closed/in /tmp/c , mount t /tmp/t tmpfs \
            , mount proc /tmp/closed/in/p proc , mount proc /tmp/p proc \
         && /probe rbind /proc/1/root /tmp/r , bind /tmp/closed/in /tmp/c \
            , mount proc /tmp/closed/in/p proc , mount proc /tmp/plink proc \
         && test -e /tmp/p2/self && echo landed"
    );
    let (code, out) = run("caller-creds", &["sh", "-c", &script]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["EACCES", "EACCES", "ok", "EACCES", "ok", "ok", "ok", "ok", "ok", "landed"]
    );
}

#[test]
fn a_fuse_server_is_told_its_callers_pids_as_the_container_sees_them() {
    // The kernel keeps the mounting task's PID namespace with a FUSE connection, and tells the
    // server each request's PID as seen there: mounted from the host's, host PIDs.
    let script = "mkdir -p /tmp/f && /probe fuse-pid /tmp/f";
    let mut c = common::create_with("fuse-pid", &["sh", "-c", script], common::with_fuse_device);
    let (code, out) = c.run_to_end();
    assert_eq!((code, out.trim()), (0, "same"));
}

#[test]
fn an_overlay_copies_up_with_its_callers_capabilities() {
    // An overlay makes every copy-up with its mounter's credentials: the copy is chowned to the
    // lower file's owner. A caller without CAP_CHOWN (container root, its bounding set cut)
    // cannot have a file of uid 1000 copied up, as without eci; container root can.
    let script = "mkdir -p /tmp/o && /probe mount none /tmp/o tmpfs \
         && mkdir /tmp/o/l /tmp/o/u /tmp/o/w /tmp/o/m /tmp/o/u2 /tmp/o/w2 /tmp/o/m2 \
         && echo lower > /tmp/o/l/owned && chown 1000:1000 /tmp/o/l/owned && cd /tmp/o \
         && setpriv --bounding-set=-chown /bin/sh -c \
            '/probe mount none /tmp/o/m overlay lowerdir=l,upperdir=u,workdir=w; \
             (echo upper >> /tmp/o/m/owned) 2>/dev/null && echo appended || echo refused' \
         && /probe mount none /tmp/o/m2 overlay lowerdir=l,upperdir=u2,workdir=w2 \
         && (echo upper >> /tmp/o/m2/owned) && stat -c %u /tmp/o/u2/owned";
    let (code, out) = run("overlay-creds", &["sh", "-c", script]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "ok", "refused", "ok", "1000"]
    );
}

#[test]
fn relative_paths_resolve_in_each_callers_working_directory() {
    // The helper keeps the working directory it last took. Every call whose target, bind
    // source or overlay options are relative takes the caller's anew; a tmpfs's source ("none")
    // is no path and takes nothing. The binds come from two directories in turn, the last from
    // /tmp/a after the helper was left in /tmp/b. The overlay's layers are on a tmpfs of their
    // own, whatever /tmp is on.
    let script = "mkdir -p /tmp/a/src /tmp/a/t /tmp/b/src /tmp/b/t /tmp/dst /tmp/o \
         && touch /tmp/a/src/from-a /tmp/b/src/from-b \
         && cd /tmp/a && /probe mount none t tmpfs \
         && cd /tmp/b && /probe mount none t tmpfs , bind src /tmp/dst , mount none /tmp/a/t tmpfs \
         && cd /tmp/a && /probe bind src /tmp/dst \
         && /probe mount none /tmp/o tmpfs && mkdir /tmp/o/l /tmp/o/u /tmp/o/w /tmp/o/m \
         && touch /tmp/o/l/lower \
         && cd /tmp/o && /probe mount none /tmp/o/m overlay lowerdir=l,upperdir=u,workdir=w \
         && ls /tmp/dst && ls /tmp/o/m && grep -c -e ' /tmp/a/t ' -e ' /tmp/b/t ' /proc/self/mountinfo";
    let (code, out) = run("relative-paths", &["sh", "-c", script]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "ok", "ok", "ok", "ok", "ok", "ok", "from-a", "lower", "3"]
    );
}

#[test]
fn the_kernel_memory_of_the_helpers_mounts_counts_against_the_containers_limit() {
    if !memory_is_cgroup_v1() {
        eprintln!("skipped: helpers join a memory cgroup on cgroup v1 only (ARCHITECTURE.md)");
        return;
    }
    // Each tmpfs mount costs the kernel about 6 KiB here, of which it charges about 1.5 KiB
    // (the mount, its root's inode and dentry) to the memory cgroup of the process that
    // mounts: 20,000 exceed 16 MiB. The helper performs them; left in the runtime's cgroup it
    // would make the host pay for all of them, whatever the container's limit.
    let limit = 16 << 20;
    let mut c = common::create_with(
        "charged",
        &["/probe", "stack-mounts", "20000", "/tmp"],
        |spec| {
            let memory = eci::oci_spec::runtime::LinuxMemoryBuilder::default()
                .limit(limit)
                .build()
                .unwrap();
            let resources = eci::oci_spec::runtime::LinuxResourcesBuilder::default()
                .memory(memory)
                .build()
                .unwrap();
            let mut linux = spec.linux().clone().unwrap();
            linux.set_resources(Some(resources));
            spec.set_linux(Some(linux));
        },
    );
    let (code, out) = c.run_to_end();
    // The limit stops it: the container's OOM killer ends the probe (SIGKILL) or the helper
    // (whose call in flight then fails with ENOSYS), or a mount fails for want of memory.
    if code != 128 + libc::SIGKILL {
        assert_eq!(code, 0, "{out}");
        let (made, answer) = out.trim().split_once(' ').unwrap();
        assert!(["ENOMEM", "ENOSYS"].contains(&answer), "{out}");
        assert!(made.parse::<u32>().unwrap() < 20000, "{out}");
    }
}

#[test]
fn a_fuse_mount_gets_the_callers_device() {
    // fusermount and libfuse name their /dev/fuse descriptor in the data (`fd=N`): the helper
    // must mount with the caller's descriptor, not whatever its own number N is.
    let script = "mkdir -p /tmp/f && /probe fuse /tmp/f && grep -c ' /tmp/f .* fuse.eci-probe ' \
                  /proc/self/mountinfo && umount /tmp/f && echo unmounted \
                  && /probe mount x /tmp/f fuse fd=999,rootmode=40000,user_id=0,group_id=0 \
                  , mount x /tmp/f fuse fd=3,fd=4,rootmode=40000";
    let mut c = common::create_with("fuse", &["sh", "-c", script], common::with_fuse_device);
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "1", "unmounted", "EBADF", "EINVAL"],
        "a descriptor the caller does not have is EBADF, as from the kernel; two are refused"
    );
}

#[test]
fn an_inner_procfs_gid_is_the_containers_gid() {
    // The kernel shows a procfs's gid= in the host's numbering, so the line tells which group
    // the host half gave it. A gid outside the container's block is refused, as the kernel
    // refuses an unmapped gid.
    let script = "mkdir -p /tmp/p && mount -t proc -o hidepid=2,gid=5 proc /tmp/p         && grep -o 'gid=[0-9]*' /proc/self/mountinfo | tail -n 1         && /probe mount proc /tmp/p proc gid=65536";
    let mut c = common::create_with("inner-proc-gid", &["sh", "-c", script], |_| {});
    let host_start = c.container().id_mapping().host_start;
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [format!("gid={}", host_start + 5).as_str(), "EINVAL"]
    );
}

#[test]
fn an_inner_procfs_keeps_its_flags_and_needs_a_target() {
    // nosymfollow reaches the built procfs as a mount attribute; an empty target is looked up
    // and fails (ENOENT) as mount(2) fails it, rather than landing on the working directory.
    let script = "mkdir -p /tmp/q && cd /tmp/q && mount -t proc -o nosymfollow proc /tmp/q \
                  && grep -c ' /tmp/q .*nosymfollow' /proc/self/mountinfo \
                  && cd / && /probe mount proc '' proc , mount sysfs '' sysfs";
    let (code, out) =
        common::create_with("inner-proc-flags", &["sh", "-c", script], |_| {}).run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["1", "ENOENT", "ENOENT"]);
}

#[test]
fn a_root_from_another_mount_namespace_does_not_take_the_helper_there() {
    // The helper skips joining a caller's namespace when it stands where the caller does. A
    // process of a new mount namespace can chroot into a mount of the old one (through a
    // descriptor opened there); its mount call must still be made in its own namespace, where
    // the kernel refuses a mount onto another namespace's mount (EINVAL), and never land in
    // the namespace the helper served last.
    // (No propagation change by unshare: that call would move the helper first.)
    let script = "mkdir -p /tmp/x /tmp/y; exec 3</; \
                  /probe mount tmpfs /tmp/y tmpfs; \
                  unshare -m --propagation unchanged \
                      chroot /proc/self/fd/3 /probe mount tmpfs /tmp/x tmpfs; \
                  grep -c ' /tmp/x ' /proc/self/mountinfo";
    let (code, out) = run("foreign-root", &["sh", "-c", script]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "EINVAL", "0"],
        "exit {code}"
    );
}

#[test]
fn util_linux_and_busybox_mount_work_and_are_vetted() {
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (scripts/test installs it)");
    // Each line: what was tried, the exit code and the end of the error message's first line,
    // whose wording is each tool's for EPERM.
    let script = format!(
        "try() {{ label=$1; shift; out=$(\"$@\" 2>&1); rc=$?; \
         first=$(printf '%s\\n' \"$out\" | head -n 1); echo \"$label $rc ${{first##*: }}\"; }}; \
         mkdir -p /tmp/u /tmp/b; \
         try util-tmpfs mount -t tmpfs -o size=1m tmpfs /tmp/u; \
         try util-remount-ro mount -o remount,ro,bind /usr; \
         try util-remount-rw mount -o remount,rw /usr; \
         try util-umount-mask umount /proc/kallsyms; \
         try util-umount umount /tmp/u; \
         try busybox-tmpfs {busybox} mount -t tmpfs tmpfs /tmp/b; \
         try busybox-remount-rw {busybox} mount -o remount,rw /usr; \
         try busybox-umount-mask {busybox} umount /proc/kallsyms; \
         try busybox-umount {busybox} umount /tmp/b; \
         grep -c ' /usr .* ro,' /proc/self/mountinfo"
    );
    let (code, out) = run("mount-tools", &["sh", "-c", &script]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().map(str::trim_end).collect::<Vec<_>>(),
        [
            "util-tmpfs 0",
            "util-remount-ro 0",
            "util-remount-rw 32 permission denied.",
            "util-umount-mask 32 must be superuser to unmount.",
            "util-umount 0",
            "busybox-tmpfs 0",
            "busybox-remount-rw 1 permission denied (are you root?)",
            "busybox-umount-mask 1 Operation not permitted",
            "busybox-umount 0",
            "1",
        ]
    );
}

#[test]
fn rewriting_the_arguments_during_the_call_never_mounts_what_the_policy_forbids() {
    let mut policy = Policy {
        mount_types: FsTypes::of(&[FsType::Tmpfs]),
        ..Default::default()
    };
    policy
        .paths
        .share(Path::new(PROBE).parent().unwrap(), true)
        .unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        state_dir: PathBuf::from(STATE_DIR),
        policy,
        ..Default::default()
    })
    .unwrap();
    let script = "mkdir -p /tmp/r && /probe race-fstype 100000 /tmp/r";
    let (code, out) = create_in(&runtime, "race", &["sh", "-c", script], |_| {}).run_to_end();
    assert_eq!(code, 0, "{out}");
    let words: Vec<&str> = out.split_whitespace().collect();
    let count = |name: &str| -> u64 {
        let at = words.iter().position(|w| *w == name).expect(name);
        words[at + 1].parse().unwrap()
    };
    assert_eq!(
        count("ramfs"),
        0,
        "a forbidden filesystem was mounted: {out}"
    );
    assert!(count("tmpfs") > 0, "{out}");
    assert!(
        count("refused") > 0,
        "the flipping thread never won a read, so the test proved nothing: {out}"
    );
}

/// Runs `script` in container `id` through `eci_run` (eci-run with its options) with `stdin`,
/// until it prints "ready": eci-run and the container's stdout.
fn run_until_ready(
    mut eci_run: Command,
    id: &str,
    script: &str,
    stdin: Stdio,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut runner = eci_run
        .args(["--id", id, "--", "sh", "-c", script])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(runner.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (runner, stdout)
}

/// The next `count` lines of `out`, without their line ends.
fn next_lines(out: &mut impl BufRead, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim_end().to_string()
        })
        .collect()
}

/// Waits until a mount helper in the user namespace `userns` (as /proc/PID/ns/user reads) has
/// found its runtime gone and become an orphan.
fn wait_for_orphan(userns: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let orphan_in_userns = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            let path = entry.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let ns = std::fs::read_link(path.join("ns/user")).unwrap_or_default();
            comm == "eci-orphan\n" && ns.as_os_str() == userns
        })
    };
    while !orphan_in_userns() {
        assert!(
            std::time::Instant::now() < deadline,
            "no orphaned helper in {userns}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The eci-run example, with its own state directory.
fn eci_run(state: &Path) -> Command {
    let mut command = Command::new(common::example("eci-run"));
    command.arg("--state-dir").arg(state);
    command
}

#[test]
fn when_the_runtime_dies_mount_calls_fail_and_nothing_is_mounted() {
    let state = tempfile::tempdir().unwrap();
    let script = "mkdir /tmp/x; echo ready; sleep 2; \
                  eci-probe mount tmpfs /tmp/x tmpfs , umount /proc/kallsyms , unshare-user; \
                  grep -c '^[^ ]* [^ ]* [^ ]* [^ ]* /tmp/x ' /proc/self/mountinfo";
    let id = format!("eci-crash-{}", std::process::id());
    let (mut runner, mut stdout) =
        run_until_ready(eci_run(state.path()), &id, script, Stdio::null());
    runner.kill().unwrap();
    runner.wait().unwrap();
    // The container carries on; its stdout closes when it exits.
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(
        rest.lines().collect::<Vec<_>>(),
        ["ENOSYS", "ENOSYS", "ok", "0"],
        "with nobody to vet them, mount calls fail and nothing is mounted; \
         calls that are only observed run"
    );
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let leaked = host_mounts
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.ends_with("/tmp/x")));
    assert_eq!(leaked.count(), 0, "{host_mounts}");
    cleanup_after_crash(state.path(), &id);
}

/// A runtime killed while its container runs leaves that container's ID block to it alone: a
/// new runtime on the same state directory gives the next container another block, and the
/// block comes free once the container has gone.
#[test]
fn a_runtime_that_dies_leaves_its_containers_id_block_to_no_other() {
    use std::io::Write;
    let state = tempfile::tempdir().unwrap();
    let script = "echo ready; cat /proc/self/uid_map; read go";
    let id = format!("eci-crash-ids-{}", std::process::id());
    let (stdin, mut go) = std::io::pipe().unwrap();
    let (mut runner, mut stdout) =
        run_until_ready(eci_run(state.path()), &id, script, stdin.into());
    let first = host_start(&next_lines(&mut stdout, 1)[0]);
    runner.kill().unwrap();
    runner.wait().unwrap();
    let after = eci_run(state.path())
        .args([
            "--id",
            &format!("{id}-after"),
            "--",
            "cat",
            "/proc/self/uid_map",
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&after.stdout);
    assert!(after.status.success(), "{out}");
    let second = host_start(out.trim());
    let runtime = runtime_on(state.path());
    assert!(
        second.abs_diff(first) >= 65536,
        "blocks at {first} and {second} overlap"
    );
    let leased = |start: u64| {
        let pool = runtime.allocator().pool();
        runtime.allocator().leases().unwrap().iter().any(|lease| {
            pool.block(lease.index)
                .is_some_and(|block| u64::from(block.host_start()) == start)
        })
    };
    assert!(leased(first), "the dead runtime's container lost its block");
    writeln!(go, "go").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    cleanup_after_crash(state.path(), &id);
    drop(runtime);
    // Once its processes are reaped (by whoever adopted them: a zombie still holds its IDs),
    // a runtime opening the state directory gives it back.
    let given_back = (0..100).any(|_| {
        let reopened = runtime_on(state.path());
        let pool = reopened.allocator().pool();
        let still = reopened.allocator().leases().unwrap().iter().any(|lease| {
            pool.block(lease.index)
                .is_some_and(|block| u64::from(block.host_start()) == first)
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        !still
    });
    assert!(
        given_back,
        "the ended container's block was never given back"
    );
}

/// The host ID a one-line uid_map maps the container's first ID to.
fn host_start(uid_map: &str) -> u64 {
    uid_map.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A runtime that dies leaves its container's mount calls failing (ENOSYS) and nothing mounted;
/// a new runtime on the same state directory takes the vetting over, and the calls are vetted
/// again, with the container's initial mounts still protected.
#[test]
fn a_new_runtime_takes_over_the_vetting_of_a_container_whose_runtime_died() {
    use std::io::Write;
    let state = tempfile::tempdir().unwrap();
    let script = "mkdir /tmp/x /tmp/y /tmp/p; echo ready; readlink /proc/self/ns/user; \
                  read go; eci-probe mount tmpfs /tmp/x tmpfs , umount /proc/kallsyms; \
                  read go; eci-probe mount tmpfs /tmp/y tmpfs , umount /proc/kallsyms \
                  , remount-rw /usr , mount proc /tmp/p proc , umount /tmp/p/kallsyms \
                  , write /tmp/p/sys/kernel/panic 1; \
                  grep -c '^[^ ]* [^ ]* [^ ]* [^ ]* /tmp/[xy] ' /proc/self/mountinfo; \
                  cat /tmp/p/meminfo /tmp/p/cpuinfo /tmp/p/sys/kernel/panic 2>/dev/null | wc -c";
    let id = format!("eci-takeover-{}", std::process::id());
    let (stdin, mut go) = std::io::pipe().unwrap();
    let (mut runner, mut stdout) =
        run_until_ready(eci_run(state.path()), &id, script, stdin.into());
    let userns = next_lines(&mut stdout, 1).remove(0);
    // The record of an exec'd process that has ended while its runtime lives (children it
    // left may run its filter, and the runtime keeps the record for them): a take-over tried
    // meanwhile removed it, so once the runtime died those children could not be vetted again.
    let records = state.path().join("vetting").join(&id);
    let mut record = first_record(state.path(), &id);
    let me = eci::eci_idmap::Holder::current().unwrap();
    record["process"] = serde_json::json!({"pid": me.pid, "startTime": me.start_time + 1});
    record["listener_fd"] = 1000.into();
    let ended = records.join("ended.json");
    std::fs::write(&ended, serde_json::to_vec(&record).unwrap()).unwrap();
    let runtime = runtime_on(state.path());
    let err = runtime.take_over(&id).unwrap_err().to_string();
    assert!(err.contains("no orphaned mount helper"), "{err}");
    assert!(ended.exists(), "a take-over refused changed nothing");
    runner.kill().unwrap();
    runner.wait().unwrap();
    // The helper vets until it sees its runtime gone, which takes it a moment.
    wait_for_orphan(&userns);
    let mut answers = |count: usize| next_lines(&mut stdout, count);
    writeln!(go, "go").unwrap();
    assert_eq!(answers(2), ["ENOSYS", "ENOSYS"], "nobody vets");

    let taken = runtime.take_over(&id).unwrap();
    assert_eq!(taken.processes().len(), 1, "{taken:?}");
    writeln!(go, "go").unwrap();
    assert_eq!(
        answers(7),
        ["ok", "EPERM", "EPERM", "ok", "EINVAL", "EACCES", "1"],
        "vetted again: a tmpfs mounts, a mask and a read-only mount stay, a procfs is masked"
    );
    // The virtual files died with the runtime (its in-process server): in a procfs mounted
    // now they cannot be opened (EACCES), and nothing of the host's shows.
    assert_eq!(answers(1), ["0"]);
    drop(taken);
    cleanup_after_crash(state.path(), &id);
}

/// Runs `script` in a container under eci-run, which is then killed (its mount helper becomes
/// an orphan): the pipe that feeds the script's `read go`, its output lines as they come, and
/// the orphan, once the helper has noticed the runtime's end.
fn orphaned(
    state: &Path,
    id: &str,
    script: &str,
) -> (
    std::io::PipeWriter,
    std::sync::mpsc::Receiver<String>,
    eci::eci_ns::PidFd,
) {
    let (stdin, go) = std::io::pipe().unwrap();
    let (mut runner, stdout) = run_until_ready(eci_run(state), id, script, stdin.into());
    runner.kill().unwrap();
    runner.wait().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    (go, rx, orphan_of(state, id))
}

/// The orphaned mount helper of container `id`, found from what its dead runtime recorded.
fn orphan_of(state: &Path, id: &str) -> eci::eci_ns::PidFd {
    let record = first_record(state, id);
    let userns = record["userns"].as_u64().unwrap();
    let listener_fd = record["listener_fd"].as_i64().unwrap() as i32;
    for _ in 0..500 {
        if let Some(orphan) = eci::eci_seccomp::mount::find_orphan(userns, listener_fd) {
            return orphan;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the helper never became an orphan");
}

/// A runtime of its own on `state`, as a new runtime after a crash would be.
fn runtime_on(state: &Path) -> eci::Runtime {
    eci::Runtime::new(eci::RuntimeConfig {
        state_dir: state.to_path_buf(),
        ..Default::default()
    })
    .unwrap()
}

/// A process whose orphaned helper is gone (killed) does not keep the container's other
/// processes from being taken over: it is listed among the failures.
#[test]
fn a_process_whose_orphan_is_gone_does_not_block_the_take_over() {
    use std::io::Write;
    let state = tempfile::tempdir().unwrap();
    // The init lives on after its call, until the container is removed at the end.
    let script = "mkdir /tmp/x; echo ready; read go; eci-probe mount tmpfs /tmp/x tmpfs; \
                  exec sleep 1000";
    let id = format!("eci-takeover-partial-{}", std::process::id());
    let (mut go, lines, _orphan) = orphaned(state.path(), &id, script);
    // A second record, as an exec'd process's would be, whose listener no helper holds.
    let records = state.path().join("vetting").join(&id);
    let real = std::fs::read_dir(&records)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(real.path()).unwrap()).unwrap();
    // Named as an earlier version named it: the take-over's record replaces it.
    let earlier = records.join(format!("{}.json", record["process"]["pid"]));
    std::fs::rename(real.path(), &earlier).unwrap();
    record["listener_fd"] = 1000.into();
    std::fs::write(records.join("1.json"), serde_json::to_vec(&record).unwrap()).unwrap();
    let runtime = runtime_on(state.path());
    let taken = runtime.take_over(&id).unwrap();
    assert_eq!(taken.processes().len(), 1, "{taken:?}");
    assert!(
        !earlier.exists(),
        "the earlier version's record is replaced"
    );
    let failures = taken.failures();
    assert_eq!(failures.len(), 1, "{taken:?}");
    assert!(
        failures[0]
            .1
            .to_string()
            .contains("no orphaned mount helper"),
        "{taken:?}"
    );
    writeln!(go, "go").unwrap();
    let answer = lines.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(answer.unwrap(), "ok", "vetted again");
    drop(taken);
    // When the cgroup at the path is not the container's (nothing is killed), only half-written
    // records go: one of an ended process stays while the container's init lives (what the
    // process left running runs its filter); removing the orphan takes them all along.
    let me = eci::eci_idmap::Holder::current().unwrap();
    let mut write_as = |name: &str, start_time: u64| {
        record["process"] = serde_json::json!({"pid": me.pid, "startTime": start_time});
        std::fs::write(records.join(name), serde_json::to_vec(&record).unwrap()).unwrap();
    };
    write_as("live.json", me.start_time);
    write_as("ended.json", me.start_time + 1);
    std::fs::write(records.join("9-9.json.new"), b"{").unwrap();
    let cgroup = PathBuf::from(format!("/eci/{id}"));
    let killed = eci::remove_orphan(state.path(), &id, &cgroup, Some(u64::MAX)).unwrap();
    assert!(killed.is_empty());
    let mut left: Vec<String> = std::fs::read_dir(&records)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["1.json", "ended.json", "live.json"],
        "the init's and ours stay, and so does the ended one's"
    );
    // A container of the same name made since, under another cgroup (its init is this live
    // process): removing the orphan took its record along with the orphan's.
    record["init"] = serde_json::json!({"pid": me.pid, "startTime": me.start_time});
    std::fs::write(
        records.join("same-name.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    cleanup_after_crash(state.path(), &id);
    let left: Vec<_> = std::fs::read_dir(&records)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["same-name.json"], "only the orphan's records go");
    std::fs::remove_dir_all(&records).unwrap();
}

/// A runtime that dies in the middle of a take-over, once its helper has taken the listener and
/// before it stops the orphan, leaves two orphans on one listener: the one it held (let go when
/// its hold runs out) and its own helper. A later take-over stopped only the one it found; the
/// other went on answering the container's mount calls with ENOSYS beside the new helper.
#[test]
fn a_take_over_stops_every_orphan_on_the_listener() {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    let state = tempfile::tempdir().unwrap();
    let script = "mkdir /tmp/x; echo ready; read go; \
                  for i in 1 2 3 4 5 6 7 8; do eci-probe mount tmpfs /tmp/x tmpfs , umount /tmp/x; done";
    let id = format!("eci-two-orphans-{}", std::process::id());
    let (mut go, lines, _orphan) = orphaned(state.path(), &id, script);
    let record = first_record(state.path(), &id);
    let userns = record["userns"].as_u64().unwrap();
    // The dying runtime: this test program again, running the half take-over below.
    let half = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "half_a_take_over", "--ignored", "--nocapture"])
        .env(HALF_TAKE_OVER, format!("{}:{id}", state.path().display()))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(half.signal(), Some(libc::SIGKILL), "{half:?}");
    let orphans = || orphans_in(userns).len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while orphans() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second orphan never came"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let taken = runtime_on(state.path()).take_over(&id).unwrap();
    assert_eq!(taken.processes().len(), 1, "{taken:?}");
    assert_eq!(orphans_in(userns), Vec::<i32>::new(), "an orphan is left");
    writeln!(go, "go").unwrap();
    let answers: Vec<String> = (0..16)
        .map(|_| {
            lines
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap()
        })
        .collect();
    assert_eq!(
        answers, ["ok"; 16],
        "every call vetted, none refused by a left orphan"
    );
    drop(taken);
    cleanup_after_crash(state.path(), &id);
}

/// What tells the program run again by [`a_take_over_stops_every_orphan_on_the_listener`] to
/// take over half-way: the state directory and container, as `DIR:ID`.
const HALF_TAKE_OVER: &str = "ECI_TEST_HALF_TAKE_OVER";

/// A runtime killed between starting its helper on an orphan's listener and stopping the orphan
/// (run only by [`a_take_over_stops_every_orphan_on_the_listener`]).
#[test]
#[ignore = "the dying runtime of a_take_over_stops_every_orphan_on_the_listener"]
fn half_a_take_over() {
    let Ok(arg) = std::env::var(HALF_TAKE_OVER) else {
        return;
    };
    let (state, id) = arg.rsplit_once(':').unwrap();
    let record = first_record(Path::new(state), id);
    let userns = record["userns"].as_u64().unwrap();
    let listener_fd = record["listener_fd"].as_i64().unwrap() as i32;
    let init = eci::eci_ns::PidFd::open(record["init"]["pid"].as_i64().unwrap() as i32).unwrap();
    let orphan = eci::eci_seccomp::mount::find_orphan(userns, listener_fd).unwrap();
    let config = eci::eci_seccomp::mount::HelperConfig {
        policy: serde_json::from_value(record["policy"].clone()).unwrap(),
        userns,
        userns_fd: None,
        initial: serde_json::from_value(record["initial"].clone()).unwrap(),
        masks: serde_json::from_value(record["masks"].clone()).unwrap(),
        sysinfo: None,
        charged_to: None,
    };
    let taken =
        eci::eci_seccomp::mount::MountVetter::take_over(&init, &orphan, listener_fd, config);
    let _kept = taken.unwrap();
    // SAFETY: kill takes plain integers; this process ends here, as a killed runtime would.
    unsafe { libc::kill(std::process::id() as i32, libc::SIGKILL) };
}

/// The first vetting record of container `id` under `state`.
fn first_record(state: &Path, id: &str) -> serde_json::Value {
    let records = state.join("vetting").join(id);
    let record = std::fs::read_dir(&records)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    serde_json::from_slice(&std::fs::read(record.path()).unwrap()).unwrap()
}

/// The pids of the orphaned mount helpers (held or not) in user namespace `userns` that have
/// not exited (an exited one may stay a zombie here a while: its new parent reaps it).
fn orphans_in(userns: u64) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let ns = std::fs::metadata(entry.path().join("ns/user")).ok()?.ino();
            let running = !common::is_zombie(pid);
            (comm.starts_with("eci-orphan") && ns == userns && running).then_some(pid)
        })
        .collect()
}

/// A take-over leaves no gap: a container mounting in a loop meanwhile gets ENOSYS from the
/// orphan until the take-over and `ok` from then on, never the two interleaved (the orphan is
/// held, answering nothing, while the new helper starts and is registered).
#[test]
fn a_take_over_never_interleaves_refusals_with_vetted_calls() {
    use std::io::Write;
    use std::time::Duration;
    let state = tempfile::tempdir().unwrap();
    let script = "mkdir /tmp/x; echo ready; read go; eci-probe mount tmpfs /tmp/x tmpfs; \
                  eci-probe mount-runs 3000 /tmp/x";
    let id = format!("eci-takeover-seamless-{}", std::process::id());
    let (mut go, lines, _) = orphaned(state.path(), &id, script);
    let runtime = runtime_on(state.path());
    let next = || lines.recv_timeout(Duration::from_secs(10)).unwrap();
    writeln!(go, "go").unwrap();
    assert_eq!(next(), "ENOSYS", "the orphan answers");
    // The loop starts meanwhile, and meets the orphan first.
    std::thread::sleep(Duration::from_millis(100));
    let taken = runtime.take_over(&id).unwrap();
    let runs = next();
    let answers: Vec<&str> = runs
        .split(' ')
        .map(|run| run.split('*').next().unwrap_or_default())
        .collect();
    // Vetted within the loop's three seconds, and never refused again once vetted.
    let vetted = answers.iter().position(|a| *a == "ok");
    let vetted = vetted.unwrap_or_else(|| panic!("never vetted: {runs}"));
    assert!(
        answers[..vetted].iter().all(|a| *a == "ENOSYS") && answers[vetted..] == ["ok"],
        "{runs}"
    );
    drop(taken);
    cleanup_after_crash(state.path(), &id);
}

/// A take-over that fails once its helper has started (here its record cannot be written: the
/// records' directory is made read-only) stops that helper, answering the call it had, before
/// the orphan answers again: a container mounting in a loop meanwhile finishes its loop, with
/// nothing but ENOSYS and `ok`, and a later take-over succeeds.
#[test]
fn a_failed_take_over_leaves_no_call_waiting() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use std::io::Write;
    use std::time::Duration;
    let state = tempfile::tempdir().unwrap();
    let script = "mkdir /tmp/x; echo ready; read go; eci-probe mount tmpfs /tmp/x tmpfs; \
                  eci-probe mount-runs 2000 /tmp/x; read go; eci-probe mount tmpfs /tmp/x tmpfs";
    let id = format!("eci-takeover-failed-{}", std::process::id());
    let (mut go, lines, _) = orphaned(state.path(), &id, script);
    let runtime = runtime_on(state.path());
    writeln!(go, "go").unwrap();
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(5)).unwrap(),
        "ENOSYS"
    );

    let records = state.path().join("vetting").join(&id);
    let none: Option<&str> = None;
    mount(Some(&records), &records, none, MsFlags::MS_BIND, none).unwrap();
    let read_only = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    let remounted = mount(none, &records, none, read_only, none);
    let failed = remounted.map(|()| runtime.take_over(&id));
    umount2(&records, MntFlags::MNT_DETACH).unwrap();
    let err = failed
        .unwrap()
        .expect_err("the record could not be written");
    assert!(err.to_string().contains("vetting"), "{err}");

    let runs = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the loop ended: no call was left waiting");
    assert!(
        runs.split(' ')
            .all(|run| run.starts_with("ENOSYS*") || run.starts_with("ok*")),
        "{runs}"
    );
    let taken = runtime.take_over(&id).unwrap();
    writeln!(go, "go").unwrap();
    assert_eq!(lines.recv_timeout(Duration::from_secs(5)).unwrap(), "ok");
    drop(taken);
    cleanup_after_crash(state.path(), &id);
}

/// A held orphan answers nothing: a call made meanwhile waits, and gets ENOSYS once the orphan
/// is let go, or by itself once the hold has lasted five seconds (a runtime that dies while
/// taking over must not leave the container's calls waiting for good).
#[test]
fn a_held_orphan_lets_calls_wait_until_it_is_let_go() {
    use eci::eci_seccomp::mount::{hold_orphan, release_orphan};
    use std::io::Write;
    use std::time::{Duration, Instant};
    let state = tempfile::tempdir().unwrap();
    let script = "mkdir /tmp/x; echo ready; read go; eci-probe mount tmpfs /tmp/x tmpfs; \
                  read go; eci-probe mount tmpfs /tmp/x tmpfs";
    let id = format!("eci-held-orphan-{}", std::process::id());
    let (mut go, lines, orphan) = orphaned(state.path(), &id, script);

    hold_orphan(&orphan).unwrap();
    writeln!(go, "go").unwrap();
    let waiting = lines.recv_timeout(Duration::from_millis(300));
    assert!(waiting.is_err(), "answered while held: {waiting:?}");
    release_orphan(&orphan);
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(5)).unwrap(),
        "ENOSYS"
    );

    hold_orphan(&orphan).unwrap();
    let held = Instant::now();
    writeln!(go, "go").unwrap();
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(10)).unwrap(),
        "ENOSYS"
    );
    assert!(
        held.elapsed() >= Duration::from_secs(4),
        "{:?}",
        held.elapsed()
    );
    cleanup_after_crash(state.path(), &id);
}

/// The same with the virtual files served by the per-host daemon: it serves the container on
/// while its init lives, so after the take-over a procfs the container mounts gets them, and
/// sysinfo(2) is answered again with the container's uptime, never the host's.
#[test]
fn a_take_over_keeps_the_virtual_files_of_the_per_host_daemon() {
    use std::io::Write;
    let state = tempfile::tempdir().unwrap();
    let daemon = state.path().join("virtd");
    let script = "mkdir /tmp/p; echo ready; \
                  read go; eci-probe sysinfo-uptime; \
                  read go; eci-probe sysinfo-uptime , mount proc /tmp/p proc; \
                  cut -d. -f1 /tmp/p/uptime; cut -d. -f1 /proc/uptime";
    let id = format!("eci-takeover-daemon-{}", std::process::id());
    let (stdin, mut go) = std::io::pipe().unwrap();
    let mut with_daemon = eci_run(state.path());
    with_daemon.arg("--virtual-files-daemon").arg(&daemon);
    let (mut runner, mut stdout) = run_until_ready(with_daemon, &id, script, stdin.into());
    runner.kill().unwrap();
    runner.wait().unwrap();
    let mut answers = |count: usize| next_lines(&mut stdout, count);
    writeln!(go, "go").unwrap();
    assert_eq!(answers(1), ["ENOSYS"], "nobody answers sysinfo");

    let command = vec![
        common::example("eci-run").into_os_string(),
        "--serve-virtual-files".into(),
        daemon.clone().into_os_string(),
    ];
    let runtime = eci::Runtime::new(eci::RuntimeConfig {
        state_dir: state.path().to_path_buf(),
        virtual_files: eci::VirtualFilesServer::Daemon {
            dir: daemon.clone(),
            command,
        },
        ..Default::default()
    })
    .unwrap();
    let taken = runtime.take_over(&id).unwrap();
    writeln!(go, "go").unwrap();
    let out = answers(4);
    let seconds = |s: &str| s.parse::<u64>().unwrap_or_else(|_| panic!("{out:?}"));
    let host_uptime: u64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seconds(&out[0]) < 60, "the container's uptime: {out:?}");
    assert_eq!(out[1], "ok", "{out:?}");
    assert!(
        seconds(&out[2]) < 60,
        "a fresh procfs has the virtual uptime: {out:?}"
    );
    assert!(seconds(&out[3]) < 60, "{out:?}");
    assert!(
        host_uptime > 120,
        "the host has been up longer than the test needs"
    );
    drop(taken);
    cleanup_after_crash(state.path(), &id);
    stop_daemon(&daemon);
}

/// Kills the virtual files daemon in `dir` and its keeper, and takes its mount down.
fn stop_daemon(dir: &Path) {
    for file in ["pid", "keeper"] {
        let pid = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<i32>().ok());
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let mnt = dir.join("mnt");
    let _ = eci::eci_mount::virt::abort(&mnt);
    let _ = eci::eci_mount::virt::detach(&mnt);
}

/// Takes down what the killed runtime left: its container's cgroup (waiting for its processes
/// to be gone), its virtual files server and its rootfs mounts.
fn cleanup_after_crash(state: &Path, id: &str) {
    let cgroup = PathBuf::from(format!("/eci/{id}"));
    eci::remove_orphan(state, id, &cgroup, None).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = state.to_string_lossy();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(prefix.as_ref()))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The mount helpers serving the container whose init is `init`: this process's children in the
/// container's user namespace but in our PID namespace (the container's processes are in its
/// own). A killed helper not yet reaped has no namespaces left to read and is not listed.
fn mount_helpers(init: i32) -> Vec<i32> {
    let ns = |pid: &str, name: &str| std::fs::read_link(format!("/proc/{pid}/ns/{name}")).ok();
    let userns = ns(&init.to_string(), "user").expect("the container runs");
    let our_pidns = ns("self", "pid");
    let me = std::process::id().to_string();
    let parent = |pid: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after_name = stat
            .rsplit_once(") ")
            .map_or("", |(_, rest)| rest)
            .to_string();
        after_name.split(' ').nth(1).unwrap_or_default().to_string()
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let pid = pid.to_string();
            ns(&pid, "user").as_ref() == Some(&userns)
                && ns(&pid, "pid") == our_pidns
                && parent(&pid) == me
        })
        .collect()
}

/// Kills the container's one mount helper and waits for the runtime to have started another;
/// returns the new one's pid, or `None` if none came within 10 seconds.
fn kill_mount_helper(init: i32) -> Option<i32> {
    let helpers = mount_helpers(init);
    assert_eq!(helpers.len(), 1, "one mount helper: {helpers:?}");
    let old = helpers[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Under the full suite's load a replacement has taken more than 3 s (CI, once).
    for _ in 0..1000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        match mount_helpers(init)[..] {
            [new] if new != old => return Some(new),
            _ => {}
        }
    }
    None
}

/// Whether this host accounts memory on a cgroup v1 hierarchy of its own, where mount helpers
/// join the container's memory cgroup.
fn memory_is_cgroup_v1() -> bool {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    own.lines().any(|l| l.split(':').nth(1) == Some("memory"))
}

/// A container running `script` with a pipe to its stdin.
fn with_stdin(name: &str, script: &str) -> (common::TestContainer, std::io::PipeWriter) {
    let (reader, writer) = std::io::pipe().unwrap();
    let stdin = Some(std::os::fd::OwnedFd::from(reader));
    let c = common::create_full(
        common::runtime(),
        name,
        &["sh", "-c", script],
        stdin,
        |_| {},
    );
    (c, writer)
}

/// A started container that, once told to go, tries an allowed mount and a refused unmount;
/// with its init's pid.
fn waiting_to_mount(name: &str) -> (common::TestContainer, std::io::PipeWriter, i32) {
    let script = "mkdir -p /tmp/x; echo ready; read go; \
                  /probe mount tmpfs /tmp/x tmpfs , umount /proc/kallsyms";
    let (mut c, go) = with_stdin(name, script);
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "ready\n");
    let init = c.container().pid();
    (c, go, init)
}

/// Tells a [`waiting_to_mount`] container to go; its answers, once it exited with 0.
fn go_and_answers(mut c: common::TestContainer, mut go: std::io::PipeWriter) -> Vec<String> {
    use std::io::Write;
    writeln!(go, "go").unwrap();
    let (code, out) = c.finish();
    assert_eq!(code, 0, "{out}");
    out.lines().map(str::to_string).collect()
}

#[test]
fn a_mount_helper_that_dies_is_replaced_and_vetting_goes_on() {
    let (c, go, init) = waiting_to_mount("helper-replaced");
    // Helpers are charged to the container's memory cgroup, a replacement too.
    let memory_cgroup = |pid: i32| {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let memory = cgroups
            .lines()
            .find(|l| l.split(':').nth(1) == Some("memory"));
        memory.map(|l| l.split_once(":memory:").unwrap().1.to_string())
    };
    let container_memory = memory_cgroup(init).filter(|_| memory_is_cgroup_v1());
    assert!(
        container_memory.is_some() || !memory_is_cgroup_v1(),
        "the container has a memory cgroup"
    );
    assert!(
        container_memory
            .as_ref()
            .is_none_or(|m| m.contains("helper-replaced")),
        "the container's own: {container_memory:?}"
    );
    let helper_memory = |pid: i32| memory_cgroup(pid).filter(|_| memory_is_cgroup_v1());
    assert_eq!(helper_memory(mount_helpers(init)[0]), container_memory);
    let replacement = kill_mount_helper(init);
    assert!(replacement.is_some(), "a new helper starts");
    assert_eq!(helper_memory(replacement.unwrap()), container_memory);
    assert_eq!(
        go_and_answers(c, go),
        ["ok", "EPERM"],
        "the new helper performs what is allowed and refuses what is not"
    );
}

#[test]
fn a_call_in_flight_when_its_helper_dies_is_answered() {
    // The container mounts and unmounts without pause, so a killed helper is almost always in
    // the middle of a call; a call it left unanswered would wait forever.
    let script = "mkdir -p /tmp/x; echo ready; \
                  /probe churn-mount 3000 /tmp/x , mount tmpfs /tmp/x tmpfs , umount /proc/kallsyms";
    let (mut c, _stdin) = with_stdin("helper-in-flight", script);
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "ready\n");
    let init = c.container().pid();
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(kill_mount_helper(init).is_some(), "a new helper starts");
    }
    let mut container = c.container.take().unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = container.wait().unwrap();
        let _ = done.send(());
        (container, status)
    });
    let timely = finished.recv_timeout(std::time::Duration::from_secs(30));
    if timely.is_err() {
        // Leave the container to the process's end: waiting for it would hang the test.
        panic!("a mount call was left waiting after its helper died");
    }
    let (container, status) = waiter.join().unwrap();
    c.container = Some(container);
    let out = c.read_stdout();
    assert_eq!(status.code(), 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for count in lines[0].split(' ') {
        let (answer, n) = count.split_once('=').unwrap();
        assert!(
            [
                "mount:ok",
                "mount:ENOSYS",
                "umount:ok",
                "umount:ENOSYS",
                "umount:EINVAL"
            ]
            .contains(&answer),
            "{answer} ({n} times) in {out}"
        );
    }
    assert!(lines[0].starts_with("mount:"), "{out}");
    assert_eq!(lines[1..], ["ok", "EPERM"], "vetting goes on: {out}");
}

#[test]
fn a_mount_helper_that_keeps_dying_leaves_mount_calls_failing() {
    let (c, go, init) = waiting_to_mount("helper-gives-up");
    let mut replaced = 0;
    while kill_mount_helper(init).is_some() {
        replaced += 1;
        assert!(replaced <= 5, "helpers are replaced without end");
    }
    // All three at once, so that a failure tells a helper given up on too early (no helper
    // left, calls failing) from one slow to replace (a helper listed, calls vetted).
    let helpers = mount_helpers(init);
    let answers = go_and_answers(c, go);
    assert_eq!(
        (replaced, helpers, answers),
        (
            5,
            Vec::new(),
            vec!["ENOSYS".to_string(), "ENOSYS".to_string()]
        ),
        "five replacements, then none, and with nobody to vet them mount calls fail"
    );
}

#[test]
fn a_container_with_more_initial_mounts_than_an_early_helper_takes_is_vetted() {
    // The helper forked while the mounter works takes at most 2,000 initial mounts; beyond
    // that the runtime starts one the old way, which must protect them all the same.
    let count = 2_001;
    let mut c = common::create_with(
        "many-mounts",
        &[
            "/probe",
            "mount",
            "tmpfs",
            "/tmp",
            "tmpfs",
            ",",
            "umount",
            "/tmp",
            ",",
            "umount",
            "/many/2000",
            ",",
            "remount-rw",
            "/many/0",
        ],
        |spec| {
            let mut mounts = spec.mounts().clone().unwrap_or_default();
            for i in 0..count {
                let mut mount = oci_spec::runtime::Mount::default();
                mount.set_destination(PathBuf::from(format!("/many/{i}")));
                mount.set_typ(Some("tmpfs".into()));
                mount.set_source(Some(PathBuf::from("tmpfs")));
                mount.set_options(Some(vec!["ro".into(), "size=4k".into()]));
                mounts.push(mount);
            }
            spec.set_mounts(Some(mounts));
        },
    );
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["ok", "ok", "EPERM", "EPERM"],
        "own mounts come and go; the last initial mount stays, read-only"
    );
}

#[test]
fn a_caller_that_moves_into_a_nested_user_namespace_is_refused_from_then_on() {
    // The helper remembers each caller's user namespace after its first mount call; both ways
    // of leaving it (unshare and setns) must make it forget. Were the first answer kept, the
    // helper, root of the container's namespace, would perform the nested caller's mounts.
    let script = "mkdir -p /tmp/x; unshare --user sleep 60 & \
                  while [ \"$(readlink /proc/$!/ns/user)\" = \"$(readlink /proc/self/ns/user)\" ]; \
                  do sleep 0.01; done; \
                  /probe mount tmpfs /tmp/x tmpfs , umount /tmp/x , unshare-user , \
                  mount tmpfs /tmp/x tmpfs , umount /proc/kallsyms; \
                  /probe mount tmpfs /tmp/x tmpfs , umount /tmp/x , setns-user /proc/$!/ns/user , \
                  mount tmpfs /tmp/x tmpfs; kill $!";
    let (code, out) = common::run("userns-change", &["sh", "-c", script]);
    assert_eq!(code, 0, "{out}");
    let answers: Vec<&str> = out.lines().collect();
    assert_eq!(
        answers,
        ["ok", "ok", "ok", "EPERM", "EPERM", "ok", "ok", "ok", "EPERM"],
        "mounts after unshare and after setns are the nested namespace's"
    );
}

#[test]
fn a_replacement_helper_joins_the_containers_user_namespace_not_the_inits_new_one() {
    // The init moves itself into a user namespace of its own: a helper that followed it there
    // could not even become its root, and vetting would end.
    let script = "mkdir -p /tmp/x; exec unshare --user sh -c \
                  'echo ready; read go; /probe mount tmpfs /tmp/x tmpfs , umount /proc/kallsyms'";
    let (mut c, go) = with_stdin("helper-pinned-userns", script);
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "ready\n");
    let init = c.container().pid();
    // The init's namespace is no longer the container's but one inside it: the container's is
    // its parent, where the helper is.
    let container_ns = {
        use std::os::fd::{AsRawFd, FromRawFd};
        use std::os::unix::fs::MetadataExt;
        const NS_GET_PARENT: libc::c_ulong = 0xb702;
        let own = std::fs::File::open(format!("/proc/{init}/ns/user")).unwrap();
        // SAFETY: an ioctl without argument on a namespace descriptor we hold.
        let parent = unsafe { libc::ioctl(own.as_raw_fd(), NS_GET_PARENT) };
        assert!(parent >= 0, "the init's namespace has a parent");
        // SAFETY: NS_GET_PARENT returned a new descriptor that we own.
        let parent = unsafe { std::fs::File::from_raw_fd(parent) };
        parent.metadata().unwrap().ino()
    };
    let helpers = || {
        use std::os::unix::fs::MetadataExt;
        let me = std::process::id().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let ours = stat
                    .rsplit_once(") ")
                    .map(|(_, r)| r.split(' ').nth(1) == Some(&me));
                let ns = std::fs::metadata(format!("/proc/{pid}/ns/user")).map(|m| m.ino());
                ours == Some(true) && ns.ok() == Some(container_ns)
            })
            .collect::<Vec<i32>>()
    };
    let before = helpers();
    assert_eq!(before.len(), 1, "{before:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let replaced = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        matches!(helpers()[..], [new] if new != before[0])
    });
    assert!(replaced, "a new helper starts in the container's namespace");
    let answers = go_and_answers(c, go);
    assert_eq!(
        answers,
        ["EPERM", "EPERM"],
        "vetted (a caller in a namespace of its own may not mount here), not ENOSYS"
    );
}

#[test]
fn paths_that_name_descriptors_are_vetted_and_served_as_runtimes_give_them() {
    // runc and crun name mount targets and bind sources /proc/self/fd/N: the caller's
    // descriptors, which the helper (outside the caller's PID namespace) reaches by copies.
    let script = "mkdir -p /tmp/x /tmp/y \
        && /probe mount-fd none /tmp/x tmpfs , bind-fd /etc /tmp/y , umount-fd /probe , umount /probe \
           , remount-rw-fd /probe , remount-rw /probe , mount none /proc/self/fd/999 tmpfs \
        && grep ' /tmp/x ' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1 \
        && [ \"$(ls /tmp/y)\" = \"$(ls /etc)\" ] && echo bound \
        && /probe umount-fd /tmp/x , umount /tmp/x && { grep -c ' /tmp/x ' /proc/self/mountinfo || true; }";
    let (code, out) = run("by-descriptor", &["sh", "-c", script]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 12, "{out}");
    assert_eq!(lines[..2], ["ok", "ok"], "a tmpfs and a bind by descriptor");
    // An initial mount named by a descriptor is protected as by its path.
    assert_eq!(lines[2], lines[3], "unmounting an initial mount: {out}");
    assert_ne!(lines[2], "ok");
    assert_eq!(lines[4..6], ["EPERM", "EPERM"], "remounting it read-write");
    assert_eq!(lines[6], "ENOENT", "a descriptor the caller does not have");
    // The descriptor naming it holds the mount busy, as the kernel has it.
    assert_eq!(lines[7..], ["tmpfs", "bound", "EBUSY", "ok", "0"], "{out}");
}

#[test]
fn the_helper_leaves_the_descriptor_directory_it_looked_names_up_in() {
    // A call naming /proc/self/fd/N is served from the helper's own descriptor directory, a
    // host procfs one: staying there, a later call's relative path (misjudged as needing no
    // working directory) would be looked up in the host's /proc.
    let script = "mkdir -p /tmp/x && /probe mount-fd none /tmp/x tmpfs && exec sleep 1000";
    let mut c = common::create_with("fd-cwd", &["sh", "-c", script], |_| {});
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "ok\n");
    let init = c.container().pid();
    let helpers = mount_helpers(init);
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", helpers[0])).unwrap();
    assert!(
        !cwd.starts_with("/proc"),
        "the helper works in {}",
        cwd.display()
    );
    c.container().kill_all(libc::SIGKILL).unwrap();
    c.finish();
}

#[test]
fn a_helper_held_by_the_containers_fuse_server_is_freed() {
    // The helper reads a caller's strings as container root, whose IDs the container's FUSE
    // mounts map: strings in a page of a server that never answers held it, every later mount
    // call waited behind it, and deleting the container hung (the server's process could not
    // finish exiting while the helper's read held its memory). The supervisor aborts the
    // connection once the helper has been on one call for `HELD_AFTER`. Between the FUSE
    // mount and the held call, calls from a mount namespace without it leave the helper
    // there: the caller's namespace counts too. The later call is made once the held one
    // has had a second to reach the helper.
    let script =
        "mkdir -p /tmp/f /tmp/y && { /probe mount-fuse-page /tmp/f /tmp/go > /tmp/held & } \
        && until grep -q mapped /tmp/held 2>/dev/null; do sleep 0.1; done \
        && unshare -m sh -c 'umount -l /tmp/f && /probe mount none /tmp/y tmpfs' \
        && touch /tmp/go && sleep 1 \
        && timeout -s KILL 60 /probe mount none /tmp/y tmpfs; echo later=$?; wait; cat /tmp/held";
    let mut c = common::create_with("fuse-held", &["sh", "-c", script], common::with_fuse_device);
    let started = std::time::Instant::now();
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    // The held call fails (its strings cannot be read); the later one is served.
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["EFAULT", "later=0", "mapped", "ok", "ok"], "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(40));
}

#[test]
fn an_inner_ipc_namespace_gets_its_own_message_queues_and_no_cgroupfs() {
    // The helper mounts mqueue from the caller's IPC namespace, not its own (the host's,
    // which the kernel would refuse it): a queue made there is not the container's.
    // A cgroupfs of the container's own would show the host's tree where the container's
    // cgroup namespace is rooted at the runtime's cgroup (cgroup2 beside v1 controllers):
    // refused.
    let script = "mkdir -p /tmp/q /tmp/c && unshare --ipc sh -c \
        'mount -t mqueue none /tmp/q && echo mounted && : > /tmp/q/inner && ls /tmp/q' \
        && mount -t mqueue none /tmp/q && ls /tmp/q | wc -l \
        && /probe mount none /tmp/c cgroup2 , mount none /tmp/c cgroup name=systemd";
    let (code, out) = run("inner-mqueue", &["sh", "-c", script]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["mounted", "inner", "0", "EPERM", "EPERM"],
        "{out}"
    );
}

#[test]
fn crun_runs_a_container_inside_a_container() {
    // An inner runtime, without cgroups (this container's spec asks for none; see
    // tests/docker.rs for Docker's runc in a delegated cgroup). eci's ENOSYS for keyrings has
    // crun go on without a session keyring.
    let bundle = common::inner_bundle(
        "eci-inner",
        &["sh", "-c", "echo inner-ok; cat /proc/self/uid_map"],
    );
    let script = "mount -t tmpfs none /sys/fs/cgroup && mkdir -p /tmp/crun \
        && crun --root /tmp/crun --cgroup-manager=disabled run -b /bundle inner";
    let mut c = common::create_with("inner-crun", &["sh", "-c", script], |spec| {
        let mount = common::read_only_bind(&bundle.path().join("b"), "/bundle");
        spec.mounts_mut().as_mut().unwrap().push(mount);
    });
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "inner-ok", "{out}");
    // The inner container shares the outer one's user namespace: its root is the outer root.
    let outer = c.container().id_mapping();
    assert!(common::maps_block(lines[1], outer), "{out}");
}
