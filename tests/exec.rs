//! Processes added to a running container get the same protections. Needs root.

mod common;

use std::os::fd::OwnedFd;

use common::create_with;
use eci::oci_spec::runtime::{Process, ProcessBuilder};
use eci::{Error, Stdio};

fn exec_output(container: &eci::Container, args: &[&str]) -> (i32, String) {
    exec_output_with(container, args, false)
}

fn exec_output_with(
    container: &eci::Container,
    args: &[&str],
    no_new_privs: bool,
) -> (i32, String) {
    let mut process = Process::default();
    process.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
    process.set_capabilities(Some(eci::all_capabilities()));
    process.set_no_new_privileges(Some(no_new_privs));
    let (reader, writer) = std::io::pipe().unwrap();
    let stdio = Stdio {
        stdout: Some(OwnedFd::from(writer)),
        ..Default::default()
    };
    let mut exec = container.exec(process, stdio).expect("exec");
    let code = exec.wait().unwrap().code();
    (code, std::io::read_to_string(reader).unwrap())
}

#[test]
fn an_execd_process_is_in_the_container_and_vetted_like_its_init() {
    let mut c = create_with("exec", &["sleep", "100"], |_| {});
    c.container().start().unwrap();
    let container = c.container.as_ref().unwrap();
    let mapping = container.id_mapping();

    let (code, out) = exec_output(
        container,
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
             readlink /proc/self/ns/time /proc/1/ns/time | uniq | wc -l; \
             cut -d. -f1 /proc/uptime; grep -E '^(Uid|Gid):' /proc/self/status | tr -s '\t' ' '; \
             exit 3",
        ],
    );
    assert_eq!(code, 3);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[4..6],
        ["Uid: 0 0 0 0", "Gid: 0 0 0 0"],
        "all of root's: {out}"
    );
    assert_eq!(lines[2].trim(), "1", "in the init's time namespace: {out}");
    let uptime: u64 = lines[3].parse().unwrap();
    assert!(uptime < 10, "the container's uptime: {out}");
    let first: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(first, ["0", &mapping.host_start.to_string(), "65536"]);
    assert_eq!(
        out.lines().nth(1).unwrap().trim(),
        "sleep 100",
        "pid 1 is the container's init"
    );

    let (code, out) = exec_output(
        container,
        &[
            "/probe",
            "syscall",
            "init_module",
            ",",
            "umount",
            "/proc/kallsyms",
            ",",
            "mount",
            "tmpfs",
            "/mnt",
            "tmpfs",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["EPERM", "EPERM", "ok"]);
}

#[test]
fn what_an_execd_process_leaves_running_is_vetted_and_cannot_install_a_notifier_of_its_own() {
    // A child an exec'd process left running keeps its filter, and its mount calls are vetted
    // after the process is gone (`docker exec c service docker start`: the daemon the script
    // started mounts). A listener of its own, which would be asked before eci's filter and
    // free to answer CONTINUE, is refused (EBUSY) whatever listener is open.
    let mut c = create_with("exec-left", &["sleep", "100"], |_| {});
    c.container().start().unwrap();
    let container = c.container.as_ref().unwrap();
    let script = "(sleep 1; /probe seccomp-listener , mount tmpfs /mnt tmpfs > /tmp/left.new; \
                  mv /tmp/left.new /tmp/left) </dev/null >/dev/null 2>&1 & exit 0";
    let (code, _) = exec_output(container, &["sh", "-c", script]);
    assert_eq!(code, 0);
    let left = (0..100).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (code, out) = exec_output(container, &["sh", "-c", "cat /tmp/left 2>/dev/null"]);
        (code == 0).then_some(out)
    });
    let left = left.expect("the child left running answered");
    assert_eq!(left.lines().collect::<Vec<_>>(), ["EBUSY", "ok"]);
}

#[test]
fn a_security_label_this_host_cannot_apply_is_refused_not_dropped() {
    // The init asks for "unconfined", as Docker's spec does for --privileged.
    let mut c = create_with("exec-label", &["sleep", "100"], |spec| {
        let process = spec.process_mut().as_mut().unwrap();
        process.set_apparmor_profile(Some("unconfined".into()));
    });
    c.container().start().unwrap();
    let with = |edit: fn(ProcessBuilder) -> ProcessBuilder| {
        let builder = ProcessBuilder::default().args(vec!["true".to_string()]);
        edit(builder).build().unwrap()
    };
    // An SELinux label is never applied; an AppArmor profile only where AppArmor is.
    let mut refused = vec![with(|b| {
        b.selinux_label("system_u:system_r:container_t:s0")
    })];
    if !common::apparmor_enabled() {
        refused.push(with(|b| b.apparmor_profile("docker-default")));
    }
    for labelled in refused {
        let err = c.container().exec(labelled, Stdio::default()).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
    }
    // "unconfined" asks for nothing a host without AppArmor lacks.
    let unconfined = with(|b| b.apparmor_profile("unconfined"));
    let mut exec = c.container().exec(unconfined, Stdio::default()).unwrap();
    assert_eq!(exec.wait().unwrap().code(), 0);
}

#[test]
fn exec_into_a_container_that_is_not_running_is_refused() {
    let mut c = create_with("exec-created", &["true"], |_| {});
    let err = c
        .container()
        .exec(Process::default(), Stdio::default())
        .unwrap_err();
    assert!(err.to_string().contains("cannot exec into"), "{err}");
}

#[test]
fn no_runtime_descriptor_reaches_the_container() {
    // A descriptor of the runtime's (a listener, /dev/fuse, a host directory) left open in a
    // container's process would be a way out. The init and an exec'd process hold their stdio
    // and nothing else (ls's own descriptor on the directory it lists aside).
    let mut c = create_with(
        "fds",
        &["sh", "-c", "ls /proc/1/fd; exec sleep 100"],
        |_| {},
    );
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "0\n");
    assert_eq!(c.read_stdout_line(), "1\n");
    assert_eq!(c.read_stdout_line(), "2\n");
    let container = c.container.as_ref().unwrap();
    let (code, out) = exec_output(container, &["ls", "/proc/self/fd"]);
    assert_eq!((code, out.as_str()), (0, "0\n1\n2\n3\n"));
}

/// Runs `f` on a thread and fails the test if it has not returned within 30 s (a deadlock
/// must fail the test, not hang the suite).
fn within_30s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("returned within 30 s")
}

#[test]
fn a_container_ends_even_while_an_execd_process_is_held() {
    // The init's exit completes only once every process of its PID namespace is reaped; the
    // exec'd one is the runtime's child, and its handle is still held here.
    for delete in [false, true] {
        let mut c = create_with("exec-held", &["sleep", "100"], |_| {});
        c.container().start().unwrap();
        let mut process = Process::default();
        process.set_args(Some(vec!["sleep".into(), "100".into()]));
        let mut exec = c.container().exec(process, Stdio::default()).expect("exec");
        let mut container = c.container.take().unwrap();
        let rootfs = c.rootfs.take().unwrap();
        container.kill(libc::SIGKILL).unwrap();
        let status = within_30s(move || {
            let status = if delete {
                container.delete().map(|()| None)
            } else {
                container.wait().map(Some)
            };
            status.unwrap()
        });
        if let Some(status) = status {
            assert_eq!(status.code(), 128 + libc::SIGKILL);
        }
        assert_eq!(
            exec.wait().unwrap().code(),
            128 + libc::SIGKILL,
            "killed with it"
        );
        rootfs.remove().unwrap();
    }
}

#[test]
fn an_exec_that_never_reaches_its_program_is_killed_and_the_container_goes_on() {
    // The container mounts a FUSE filesystem that never answers: a process whose working
    // directory is under it would wait for good before its program runs, and with it whoever
    // waits for the exec (eci-runc's monitor, which must still serve kill and delete).
    let script = "mkdir -p /tmp/hang && exec /probe fuse-hold /tmp/hang";
    let mut c = create_with("exec-hang", &["sh", "-c", script], common::with_fuse_device);
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "ok\n", "the filesystem is mounted");
    let container = c.container.as_ref().unwrap();
    let mut process = Process::default();
    process.set_args(Some(vec!["true".into()]));
    process.set_cwd("/tmp/hang/below".into());
    let started = std::time::Instant::now();
    let err = container
        .exec(process, Stdio::default())
        .map(|_| ())
        .unwrap_err();
    let waited = started.elapsed();
    assert!(err.to_string().contains("took over 10 s"), "{err}");
    assert!(waited < std::time::Duration::from_secs(25), "{waited:?}");
    // The container still answers: another exec runs.
    assert_eq!(
        exec_output(container, &["sh", "-c", "echo alive"]).1,
        "alive\n"
    );
    container.kill(libc::SIGKILL).unwrap();
}

#[test]
fn an_exec_held_in_the_kernel_past_its_kill_does_not_hold_its_caller() {
    // Executing a file of a FUSE filesystem whose server has read the request and never
    // answers holds the process in the kernel for good, SIGKILL or not: the exec gives up
    // after its patience, and its killer no longer waits for the process's end (eci-runc's
    // monitor would serve nothing again: no kill, no delete).
    let script = "mkdir -p /tmp/stall && exec /probe fuse-stall /tmp/stall";
    let mut c = create_with(
        "exec-stall",
        &["sh", "-c", script],
        common::with_fuse_device,
    );
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "ok\n", "the filesystem is mounted");
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let container = c.container.as_ref().unwrap();
        let mut process = Process::default();
        process.set_args(Some(vec!["/tmp/stall/f".into()]));
        let started = std::time::Instant::now();
        let err = container.exec(process, Stdio::default()).map(|_| ());
        let _ = done.send((started.elapsed(), format!("{err:?}")));
        // Deleting the container ends its server, and with it the held process.
        drop(c);
    });
    let (waited, err) = result
        .recv_timeout(std::time::Duration::from_secs(40))
        .expect("the exec never returned");
    assert!(err.contains("took over 10 s"), "{err}");
    assert!(waited < std::time::Duration::from_secs(25), "{waited:?}");
}

#[test]
fn a_container_whose_init_is_held_in_the_kernel_is_deleted_all_the_same() {
    // The init executes a file of the container's own stalled FUSE server: held in the
    // kernel, it outlives its SIGKILL until that server ends, which would die with the init's
    // PID namespace only after the init. A delete waited for good.
    let script = "mkdir -p /tmp/stall && { /probe fuse-stall /tmp/stall & } \
                  && sleep 0.5 && exec /tmp/stall/f";
    let mut c = create_with(
        "init-stall",
        &["sh", "-c", script],
        common::with_fuse_device,
    );
    c.container().start().unwrap();
    let init = c.container().pid();
    let held = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let wchan = std::fs::read_to_string(format!("/proc/{init}/wchan")).unwrap_or_default();
        wchan == "request_wait_answer"
    });
    assert!(held, "the init is not held in the kernel");
    let container = c.container.take().unwrap();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let deleted = container.delete().map_err(|e| e.to_string());
        let _ = done.send((started.elapsed(), deleted));
    });
    let (waited, deleted) = result
        .recv_timeout(std::time::Duration::from_secs(40))
        .expect("the delete never returned");
    assert_eq!(deleted, Ok(()));
    assert!(waited < std::time::Duration::from_secs(15), "{waited:?}");
}

/// A pty of the host's devpts: (master, slave).
fn host_pty() -> (OwnedFd, OwnedFd) {
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // SAFETY: posix_openpt returns a new descriptor or -1; grantpt and unlockpt take it.
    let master = unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        OwnedFd::from_raw_fd(fd)
    };
    let mut name = [0 as libc::c_char; 64];
    // SAFETY: the buffer and its length are passed together.
    let named = unsafe {
        libc::ptsname_r(
            std::os::fd::AsRawFd::as_raw_fd(&master),
            name.as_mut_ptr(),
            name.len(),
        )
    };
    assert_eq!(named, 0);
    // SAFETY: ptsname_r wrote a NUL-terminated path.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path.to_str().unwrap())
        .unwrap();
    (master, OwnedFd::from(slave))
}

#[test]
fn an_exec_terminal_is_a_pty_of_the_containers_devpts_whatever_its_ptmx_answers() {
    // The container may bind a FUSE file over /dev/pts/ptmx whose server answers every ioctl
    // as it likes. Taken as the pty, a number it gives for the peer that names a terminal the
    // runtime handed the process (a host pty as its stdin, here) became the process's
    // controlling terminal, with its output on the host's pty.
    let (_host_master, host_slave) = host_pty();
    let number = std::os::fd::AsRawFd::as_raw_fd(&host_slave);
    let script = format!("mkdir -p /tmp/ptmx && exec /probe fuse-ptmx /tmp/ptmx {number}");
    let mut c = create_with(
        "exec-ptmx",
        &["sh", "-c", &script],
        common::with_fuse_device,
    );
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "ready\n", "the fake ptmx is in place");
    let container = c.container.as_ref().unwrap();
    let mut process = Process::default();
    process.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "echo on-a-host-pty".into(),
    ]));
    process.set_terminal(Some(true));
    let stdio = Stdio {
        stdin: Some(host_slave),
        ..Default::default()
    };
    let err = container.exec(process, stdio).map(|_| ()).unwrap_err();
    // ENOTTY: the checks' answer (TIOCSPTLCK, which the fake file also answers, would not
    // have failed).
    let said = err.to_string();
    assert!(
        said.contains("must be a devpts ptmx") && said.contains("inappropriate ioctl"),
        "{said}"
    );
    container.kill(libc::SIGKILL).unwrap();
}

/// A profile that refuses mount with EACCES and packet sockets with EAFNOSUPPORT, and sends
/// kexec_load and umount2 to a tracer (there is none: the kernel would answer ENOSYS), which
/// eci's own answers outrank.
fn test_profile() -> eci::oci_spec::runtime::LinuxSeccomp {
    use eci::oci_spec::runtime::{
        LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator,
        LinuxSyscallBuilder,
    };
    let rule = |names: &[&str], action, errno: Option<i32>| {
        let mut b = LinuxSyscallBuilder::default()
            .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .action(action);
        if let Some(errno) = errno {
            b = b.errno_ret(errno as u32);
        }
        b.build().unwrap()
    };
    let mut packet = rule(
        &["socket"],
        LinuxSeccompAction::ScmpActErrno,
        Some(libc::EAFNOSUPPORT),
    );
    packet.set_args(Some(vec![LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(libc::AF_PACKET as u64)
        .op(LinuxSeccompOperator::ScmpCmpEq)
        .build()
        .unwrap()]));
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(vec![
            rule(
                &["mount"],
                LinuxSeccompAction::ScmpActErrno,
                Some(libc::EACCES),
            ),
            packet,
            rule(
                &["kexec_load", "umount2"],
                LinuxSeccompAction::ScmpActTrace,
                None,
            ),
        ])
        .build()
        .unwrap()
}

#[test]
fn a_spec_seccomp_profile_binds_the_init_and_execd_processes() {
    let probes = "/probe mount tmpfs /mnt tmpfs , packet-socket , syscall kexec_load , \
                  umount /mnt , tcp-connect 9";
    // Without no_new_privs the profile goes in before the identity is set, with it just
    // before exec: both ways.
    for no_new_privs in [false, true] {
        let script = format!("{probes}; exec sleep 100");
        let mut c = create_with("profile", &["sh", "-c", &script], |spec| {
            let mut linux = spec.linux().clone().unwrap();
            linux.set_seccomp(Some(test_profile()));
            spec.set_linux(Some(linux));
            let mut process = spec.process().clone().unwrap();
            process.set_no_new_privileges(Some(no_new_privs));
            spec.set_process(Some(process));
        });
        c.container().start().unwrap();
        let init: Vec<String> = (0..5)
            .map(|_| c.read_stdout_line().trim().to_string())
            .collect();
        // The profile refuses mount before eci's supervisor sees it, and packet sockets by
        // their argument. Its TRACE loses to eci's EPERM for kexec_load and to eci's vetting
        // of umount2 (/mnt is no mount point). Other sockets go through.
        let expected = ["EACCES", "EAFNOSUPPORT", "EPERM", "EINVAL", "ENETUNREACH"];
        assert_eq!(init, expected, "init, no_new_privs {no_new_privs}");
        let container = c.container.as_ref().unwrap();
        let args: Vec<&str> = probes.split_whitespace().collect();
        let (code, out) = exec_output_with(container, &args, no_new_privs);
        assert_eq!(code, 0);
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            expected,
            "exec, no_new_privs {no_new_privs}"
        );
    }
}

/// The host's `fs.suid_dumpable` at 1 for as long as this lives, then put back.
struct DumpableHost(String);

impl DumpableHost {
    const PATH: &str = "/proc/sys/fs/suid_dumpable";

    fn set() -> DumpableHost {
        let kept = std::fs::read_to_string(Self::PATH).unwrap();
        std::fs::write(Self::PATH, "1").unwrap();
        DumpableHost(kept)
    }
}

impl Drop for DumpableHost {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, self.0.trim());
    }
}

/// What the container's root gets trying to take descriptor 0 of `pid` (pidfd_getfd) from a
/// process that joins `init`'s user namespace as its root: 0, or the errno.
fn container_root_takes_a_descriptor_of(init: i32, pid: i32) -> i32 {
    use std::os::fd::AsRawFd;
    let userns = std::fs::File::open(format!("/proc/{init}/ns/user")).unwrap();
    let userns = userns.as_raw_fd();
    // SAFETY: the child makes only async-signal-safe system calls and exits.
    match unsafe { libc::fork() } {
        // SAFETY: plain system calls with integer arguments; a NULL list is allowed.
        0 => unsafe {
            let code = if libc::setns(userns, libc::CLONE_NEWUSER) != 0
                || libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(0, 0, 0) != 0
                || libc::setresuid(0, 0, 0) != 0
            {
                100
            } else {
                let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
                if pidfd < 0 {
                    101
                } else if libc::syscall(libc::SYS_pidfd_getfd, pidfd, 0, 0) < 0 {
                    *libc::__errno_location()
                } else {
                    0
                }
            };
            libc::_exit(code)
        },
        child => {
            let mut status = 0;
            // SAFETY: waits for the child just forked.
            assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
            libc::WEXITSTATUS(status)
        }
    }
}

#[test]
fn an_execd_process_of_another_user_stays_undumpable_until_its_exec() {
    // Taking the spec's user changes the process's IDs, which sets its dumpable flag to the
    // host's `fs.suid_dumpable`; until its exec it holds the runtime's channel. Held in its
    // chdir by a FUSE mount that never answers, it is open to the container's root there.
    let script = "mkdir -p /tmp/hang && exec /probe fuse-hold /tmp/hang";
    let mut c = create_with(
        "exec-dumpable",
        &["sh", "-c", script],
        common::with_fuse_device,
    );
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "ok\n", "the filesystem is mounted");
    let container = c.container.as_ref().unwrap();
    let init = container.pid();
    let host_uid = container.id_mapping().host_start + 1000;
    let dumpable = DumpableHost::set();
    let attempt = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut process = Process::default();
            process.set_args(Some(vec!["true".into()]));
            process.set_cwd("/tmp/hang/below".into());
            let mut user = eci::oci_spec::runtime::User::default();
            user.set_uid(1000);
            user.set_gid(1000);
            process.set_user(user);
            let _ = container.exec(process, Stdio::default());
        });
        // The exec'd process is this process's child, with the user's host uid.
        let ours = std::process::id().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
        let pid = loop {
            let found = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .find_map(|entry| {
                    let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
                    let field = |name: &str| {
                        status
                            .lines()
                            .find_map(|l| l.strip_prefix(name))
                            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
                    };
                    let mine = field("PPid:")? == ours && field("Uid:")? == host_uid.to_string();
                    mine.then(|| entry.file_name().to_str()?.parse::<i32>().ok())?
                });
            if let Some(pid) = found {
                break pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exec'd process of uid {host_uid}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        // Past its identity, held in chdir.
        std::thread::sleep(std::time::Duration::from_millis(300));
        container_root_takes_a_descriptor_of(init, pid)
    });
    drop(dumpable);
    assert_eq!(attempt, libc::EPERM, "pidfd_getfd on the exec'd process");
    container.kill(libc::SIGKILL).unwrap();
}

/// A runtime whose registrations only the test's own containers count, in `dir`, with the
/// common runtime's settings (which share eci-probe's directory).
fn runtime_of_its_own(dir: &std::path::Path) -> eci::Runtime {
    eci::Runtime::new(eci::RuntimeConfig {
        state_dir: dir.join("state"),
        policy: common::runtime().policy().clone(),
        ..Default::default()
    })
    .unwrap()
}

/// An init that reaps what is left to it: before Linux 6.11 a zombie keeps its filter.
const REAPING: [&str; 3] = ["sh", "-c", "while :; do sleep 0.2; done"];

#[test]
fn an_execd_processs_vetting_lasts_while_a_process_runs_its_filter() {
    // Served while the process or a child it left runs the filter, and no longer: a helper
    // and a registration for each exec (a healthcheck every 30 s) would otherwise pile up.
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_of_its_own(dir.path());
    let mut c = common::create_in(&runtime, "exec-lasts", &REAPING, |_| {});
    c.container().start().unwrap();
    assert_eq!(runtime.supervised(), 1);
    let container = c.container.as_ref().unwrap();
    let (code, _) = exec_output(
        container,
        &["sh", "-c", "sleep 2 </dev/null >/dev/null 2>&1 & exit 0"],
    );
    assert_eq!(code, 0);
    assert_eq!(runtime.supervised(), 2, "the child it left runs its filter");
    let ended = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        runtime.supervised() == 1
    });
    assert!(ended, "the vetting outlived the last process of its filter");
    let (code, _) = exec_output(container, &["true"]);
    assert_eq!(code, 0);
    let ended = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        runtime.supervised() == 1
    });
    assert!(ended, "a process that leaves nothing ends its vetting");
}

#[test]
fn execs_that_leave_processes_running_keep_at_most_32_vettings() {
    // Each keeps a helper of the runtime's while what it left runs: past 32, the oldest's
    // vetting ends (its processes' mount calls fail) rather than the helpers piling up.
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_of_its_own(dir.path());
    let mut c = common::create_in(&runtime, "exec-many", &REAPING, |_| {});
    c.container().start().unwrap();
    let container = c.container.as_ref().unwrap();
    let leave = ["sh", "-c", "sleep 60 </dev/null >/dev/null 2>&1 & exit 0"];
    for _ in 0..34 {
        assert_eq!(exec_output(container, &leave).0, 0);
    }
    assert_eq!(runtime.supervised(), 1 + 32);
}
