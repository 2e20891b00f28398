//! Starts real inits in real namespaces (needs root).

use eci_ns::channel::{Channel, Message};
use eci_ns::failure::{Failure, Stage};
use eci_ns::sys::{self, Errno};
use eci_ns::{
    spawn, ExitStatus, InitParent, Namespaces, PidFd, SetupContext, SpawnError, SpawnRequest,
};

const HOST_BASE: u32 = 0x3000_0000;
/// The block of the test that looks for leftover processes by their host IDs, apart from the
/// other tests' (which run at the same time and may have live children).
const FAILING_BASE: u32 = 0x3100_0000;

type PrepareResult = Result<u32, Box<dyn std::error::Error + Send + Sync>>;

fn write_maps_at(init: &PidFd, base: u32) -> PrepareResult {
    for file in ["uid_map", "gid_map"] {
        std::fs::write(
            format!("/proc/{}/{file}", init.pid()),
            format!("0 {base} 65536\n"),
        )?;
    }
    Ok(0)
}

fn write_maps(init: &PidFd) -> PrepareResult {
    write_maps_at(init, HOST_BASE)
}

fn children_of_this_process() -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(children.split_whitespace().map(str::to_string));
    }
    out
}

#[test]
fn init_is_pid_one_and_root_of_its_own_user_namespace() {
    let init = |channel: &Channel| {
        // SAFETY: getpid and getuid cannot fail.
        let (pid, uid) = unsafe { (libc::getpid(), libc::getuid()) };
        let _ = channel.send(Message {
            kind: 42,
            a: pid,
            b: uid as i32,
            c: 0,
        });
        sys::exit(0)
    };
    let spawned = spawn_plain(&init);
    let (msg, _) = spawned.channel.recv().unwrap().unwrap();
    assert_eq!((msg.kind, msg.a, msg.b), (42, 1, 0));
    assert_eq!(spawned.init.wait().unwrap().code(), 0);
}

#[test]
fn a_setup_failure_comes_back_typed_and_leaves_no_process() {
    let setup = |_: SetupContext<'_>| {
        Err(Failure {
            stage: Stage::Mounts,
            step: 5,
            errno: Errno(libc::EPERM),
        })
    };
    let init = |_: &Channel| sys::exit(0);
    let err = spawn(SpawnRequest {
        namespaces: Namespaces::CONTAINER,
        joined: &[],
        setup: &setup,
        init: &init,
        prepare: &mut |init: &PidFd| write_maps_at(init, FAILING_BASE),
        late_mounts: false,
        init_parent: InitParent::Runtime,
        boot_clock_origin: None,
        while_mounting: None,
        keep: &[],
    })
    .unwrap_err();
    match err {
        SpawnError::Child(failure) => {
            assert_eq!(
                (failure.stage, failure.step, failure.errno),
                (Stage::Mounts, 5, Errno(libc::EPERM))
            )
        }
        other => panic!("unexpected error {other}"),
    }
    // Other tests in this binary may have children of their own, in another block; ours are
    // reaped, and none of the remaining children runs with this test's host IDs.
    for pid in children_of_this_process() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(
            !status.contains(&format!("Uid:\t{FAILING_BASE}")),
            "leftover child {pid}"
        );
    }
}

#[test]
fn what_prepare_returns_reaches_the_mounter() {
    // The mounter reports the flags and the init's pid back as a failure of its own.
    let setup = |ctx: SetupContext<'_>| {
        Err(Failure {
            stage: Stage::Mounts,
            step: ctx.flags,
            errno: Errno(ctx.init_pid),
        })
    };
    let init = |_: &Channel| sys::exit(0);
    let mut pid = 0;
    let mut prepare = |init: &PidFd| -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
        write_maps(init)?;
        pid = init.pid();
        Ok(0xABCD)
    };
    let err = spawn(SpawnRequest {
        namespaces: Namespaces::CONTAINER,
        joined: &[],
        setup: &setup,
        init: &init,
        prepare: &mut prepare,
        late_mounts: false,
        init_parent: InitParent::Runtime,
        boot_clock_origin: None,
        while_mounting: None,
        keep: &[],
    })
    .unwrap_err();
    match err {
        SpawnError::Child(f) => assert_eq!((f.step, f.errno), (0xABCD, Errno(pid))),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn a_prepare_failure_kills_the_init() {
    let setup = |_: SetupContext<'_>| Ok(());
    let init = |_: &Channel| sys::exit(0);
    let mut seen = None;
    let mut prepare = |init: &PidFd| -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
        seen = Some(init.pid());
        Err("no cgroup for you".into())
    };
    let err = spawn(SpawnRequest {
        namespaces: Namespaces::CONTAINER,
        joined: &[],
        setup: &setup,
        init: &init,
        prepare: &mut prepare,
        late_mounts: false,
        init_parent: InitParent::Runtime,
        boot_clock_origin: None,
        while_mounting: None,
        keep: &[],
    })
    .unwrap_err();
    assert!(matches!(err, SpawnError::Prepare(_)), "{err}");
    let pid = seen.unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "init {pid} was left behind"
    );
}

/// With late mounts, the mounter's second phase starts only once the init has its own mount
/// namespace, and the init goes on only after the mounter is done.
#[test]
fn late_mounts_wait_for_the_inits_own_namespace() {
    let setup = |ctx: SetupContext<'_>| {
        let late = ctx.late.expect("asked for late mounts");
        late.wait_for_unshare()?;
        // The init's namespace differs from ours (the setup namespace) by now.
        let mut ours = [0u8; 64];
        let mut theirs = [0u8; 64];
        let mut path = [0u8; 40];
        path[..6].copy_from_slice(b"/proc/");
        let len = sys::write_decimal(&mut path[6..], ctx.init_pid as u64);
        path[6 + len..6 + len + 7].copy_from_slice(b"/ns/mnt");
        // SAFETY: NUL-terminated paths and buffers of the given lengths.
        let (a, b) = unsafe {
            (
                libc::readlink(c"/proc/self/ns/mnt".as_ptr(), ours.as_mut_ptr().cast(), 64),
                libc::readlink(path.as_ptr().cast(), theirs.as_mut_ptr().cast(), 64),
            )
        };
        if a <= 0 || b <= 0 || ours == theirs {
            return Err(Failure {
                stage: Stage::Mounts,
                step: 99,
                errno: Errno(libc::EINVAL),
            });
        }
        Ok(())
    };
    let init = |channel: &Channel| {
        let _ = channel.send(Message::of(42));
        sys::exit(0)
    };
    let spawned = spawn(SpawnRequest {
        namespaces: Namespaces::CONTAINER,
        joined: &[],
        setup: &setup,
        init: &init,
        prepare: &mut write_maps,
        late_mounts: true,
        init_parent: InitParent::Runtime,
        boot_clock_origin: None,
        while_mounting: None,
        keep: &[],
    })
    .unwrap();
    let (msg, _) = spawned.channel.recv().unwrap().unwrap();
    assert_eq!(msg.kind, 42);
    assert_eq!(spawned.init.wait().unwrap().code(), 0);
}

/// CLOCK_BOOTTIME in whole seconds. Async-signal-safe.
/// Stays until the runtime hangs up, for a process to join. Other descriptors are closed
/// first: forked from the multithreaded test harness, the process holds copies of other tests'
/// channels, and two such processes would each keep the other's runtime end open for ever.
/// A container of its own namespaces whose init runs `init`, made by the runtime with the
/// test's ID maps and nothing to set up.
fn spawn_plain(init: &(dyn Fn(&Channel) -> Failure + Sync)) -> eci_ns::Spawned {
    spawn_plain_keeping(init, &[])
}

/// [`spawn_plain`] whose init keeps `keep` of the test's descriptors.
fn spawn_plain_keeping(
    init: &(dyn Fn(&Channel) -> Failure + Sync),
    keep: &[std::os::fd::RawFd],
) -> eci_ns::Spawned {
    let setup = |_: SetupContext<'_>| Ok(());
    spawn(SpawnRequest {
        namespaces: Namespaces::CONTAINER,
        joined: &[],
        setup: &setup,
        init,
        prepare: &mut write_maps,
        late_mounts: false,
        init_parent: InitParent::Runtime,
        boot_clock_origin: None,
        while_mounting: None,
        keep,
    })
    .unwrap()
}

fn stay_until_hung_up(channel: &Channel) -> ! {
    let _ = sys::close_fds_except(&[channel.raw_fd()]);
    let _ = channel.recv();
    sys::exit(0)
}

fn boot_seconds() -> i32 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock and a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
    now.tv_sec as i32
}

#[test]
fn a_boot_clock_from_start_reads_zero_in_the_init_and_in_a_process_joining_it() {
    let setup = |_: SetupContext<'_>| Ok(());
    let report_clock = |channel: &Channel| {
        let _ = channel.send(Message {
            kind: 42,
            a: boot_seconds(),
            b: 0,
            c: 0,
        });
        stay_until_hung_up(channel)
    };
    let spawned = spawn(SpawnRequest {
        namespaces: Namespaces::CONTAINER,
        joined: &[],
        setup: &setup,
        init: &report_clock,
        prepare: &mut write_maps,
        late_mounts: false,
        init_parent: InitParent::Runtime,
        boot_clock_origin: Some(eci_ns::timens::boot_clock().unwrap()),
        while_mounting: None,
        keep: &[],
    })
    .unwrap();
    let (msg, _) = spawned.channel.recv().unwrap().unwrap();
    assert_eq!(
        (msg.kind, msg.a),
        (42, 0),
        "the init's boot clock starts at 0"
    );
    assert!(boot_seconds() > 2, "the host's runs on");

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let joined = eci_ns::spawn::spawn_into(
        &spawned.init,
        Namespaces::CONTAINER,
        &report_clock,
        &mut |_: &PidFd| Ok(0),
        &[],
        &[],
    )
    .unwrap();
    let (msg, _) = joined.channel.recv().unwrap().unwrap();
    assert_eq!(
        (msg.kind, msg.a),
        (42, 1),
        "a joining process reads the container's clock"
    );
    drop(joined.channel);
    assert_eq!(joined.init.wait().unwrap().code(), 0);
    drop(spawned.channel);
    assert_eq!(spawned.init.wait().unwrap().code(), 0);
}

/// A v1 hierarchy's directory for a test cgroup, or `None` where this host has no v1 pids
/// hierarchy (the init's own move is a cgroup v1 path).
fn test_pids_cgroup(name: &str) -> Option<std::path::PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup/pids");
    if !root.join("tasks").exists() {
        eprintln!("skipped: no cgroup v1 pids hierarchy at {}", root.display());
        return None;
    }
    let dir = root.join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Some(dir)
}

fn spawn_with_thread_lists(
    files: impl Fn() -> Vec<std::os::fd::OwnedFd>,
) -> Result<eci_ns::Spawned, SpawnError> {
    let setup = |_: SetupContext<'_>| Ok(());
    let init = |channel: &Channel| {
        let _ = channel.send(Message::of(42));
        match channel.recv() {
            Ok(_) => sys::exit(0),
            Err(_) => sys::exit(1),
        }
    };
    let mut while_mounting =
        |_: &PidFd| -> Result<Vec<std::os::fd::OwnedFd>, eci_ns::spawn::PrepareError> {
            Ok(files())
        };
    spawn(SpawnRequest {
        namespaces: Namespaces::CONTAINER,
        joined: &[],
        setup: &setup,
        init: &init,
        prepare: &mut write_maps,
        late_mounts: false,
        init_parent: InitParent::Runtime,
        boot_clock_origin: None,
        while_mounting: Some(&mut while_mounting),
        keep: &[],
    })
}

#[test]
fn the_init_moves_itself_into_the_cgroups_it_is_handed() {
    let Some(dir) = test_pids_cgroup("eci-ns-self-join") else {
        return;
    };
    let tasks = || {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("tasks"))
            .unwrap();
        vec![std::os::fd::OwnedFd::from(file)]
    };
    let spawned = spawn_with_thread_lists(tasks).unwrap();
    let (msg, _) = spawned.channel.recv().unwrap().unwrap();
    assert_eq!(msg.kind, 42);
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), spawned.init.pid().to_string());
    spawned.channel.send(Message::of(0)).unwrap();
    assert_eq!(spawned.init.wait().unwrap().code(), 0);
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn an_init_that_cannot_join_its_cgroup_fails_with_the_errno() {
    // A thread list opened read-only: the init's write fails, and the init must not go on.
    let Some(dir) = test_pids_cgroup("eci-ns-self-join-fails") else {
        return;
    };
    let read_only = || {
        let file = std::fs::File::open(dir.join("tasks")).unwrap();
        vec![std::os::fd::OwnedFd::from(file)]
    };
    // The init fails once let go, so its report comes on its channel.
    let spawned = spawn_with_thread_lists(read_only).unwrap();
    let (msg, _) = spawned.channel.recv().unwrap().unwrap();
    let failure = Failure::from_message(&msg).expect("a failure report");
    assert_eq!(
        (failure.stage, failure.step, failure.errno),
        (
            Stage::InitNamespaces,
            eci_ns::spawn::JOIN_CGROUPS_STEP,
            Errno(libc::EBADF)
        )
    );
    let _ = spawned.init.wait();
    assert_eq!(
        std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
        ""
    );
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn a_process_added_later_moves_itself_into_the_cgroups_it_is_handed() {
    let Some(dir) = test_pids_cgroup("eci-ns-self-join-exec") else {
        return;
    };
    let wait_for_end = |channel: &Channel| match channel.recv() {
        Ok(_) => sys::exit(0),
        Err(_) => sys::exit(1),
    };
    let spawned = spawn_plain(&wait_for_end);
    let tasks = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("tasks"))
        .unwrap();
    let report = |channel: &Channel| {
        let _ = channel.send(Message::of(42));
        wait_for_end(channel)
    };
    let joined = eci_ns::spawn::spawn_into(
        &spawned.init,
        Namespaces::CONTAINER,
        &report,
        &mut |_: &PidFd| Ok(0),
        &[std::os::fd::AsFd::as_fd(&tasks)],
        &[],
    )
    .unwrap();
    let (msg, _) = joined.channel.recv().unwrap().unwrap();
    assert_eq!(msg.kind, 42);
    // Only the added process: the init stays where it was.
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), joined.init.pid().to_string());
    drop(joined.channel);
    assert_eq!(joined.init.wait().unwrap().code(), 0);
    drop(spawned.channel);
    assert_eq!(spawned.init.wait().unwrap().code(), 0);
    std::fs::remove_dir(&dir).unwrap();
}

/// What the container's root gets trying to take descriptor 0 of `pid` (pidfd_getfd): a
/// process forked for it joins `init`'s user namespace and becomes its root, as a process of
/// the container is. Returns 0 on success, else the errno.
fn container_root_takes_a_descriptor_of(init: &PidFd, pid: i32) -> i32 {
    let userns = std::fs::File::open(format!("/proc/{}/ns/user", init.pid())).unwrap();
    use std::os::fd::AsRawFd;
    let userns = userns.as_raw_fd();
    // SAFETY: the child makes only async-signal-safe syscalls and exits.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: plain syscalls with integer arguments; a NULL list is allowed.
            let errno = unsafe {
                if libc::setns(userns, libc::CLONE_NEWUSER) == -1
                    || libc::setgroups(0, std::ptr::null()) == -1
                    || libc::setresgid(0, 0, 0) == -1
                    || libc::setresuid(0, 0, 0) == -1
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
                }
            };
            sys::exit(errno)
        }
        child => {
            let mut status = 0;
            // SAFETY: waits for the child just forked.
            assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
            assert!(libc::WIFEXITED(status), "the attacker exited");
            libc::WEXITSTATUS(status)
        }
    }
}

#[test]
fn a_joining_process_cannot_be_taken_over_by_the_containers_root() {
    // Until it becomes the namespace's root, a process joining a container keeps host root's
    // IDs and the runtime's descriptors; the container's root has CAP_SYS_PTRACE in that
    // namespace. Undumpable, it is out of reach (runc's CVE-2016-9962).
    let stay = |channel: &Channel| stay_until_hung_up(channel);
    let spawned = spawn_plain(&stay);
    let mut attempt = None;
    let joined = eci_ns::spawn::spawn_into(
        &spawned.init,
        Namespaces::CONTAINER,
        &stay,
        &mut |joining: &PidFd| {
            attempt = Some(container_root_takes_a_descriptor_of(
                &spawned.init,
                joining.pid(),
            ));
            Ok(0)
        },
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(
        attempt,
        Some(libc::EPERM),
        "pidfd_getfd on the joining process"
    );
    drop(joined.channel);
    assert_eq!(joined.init.wait().unwrap().code(), 0);
    drop(spawned.channel);
    assert_eq!(spawned.init.wait().unwrap().code(), 0);
}

/// Runs `start` with a process that reports (in a message of kind 42: `a` for the one kept,
/// `b` for the other) whether two descriptors of the test's are open in it, the first of which
/// `start` is asked to keep; checks that only that one is, and ends the process.
fn keeps_only_the_descriptor_given(
    start: impl FnOnce(&(dyn Fn(&Channel) -> Failure + Sync), std::os::fd::RawFd) -> eci_ns::Spawned,
) {
    use std::os::fd::AsRawFd;
    let (kept, other) = (
        std::fs::File::open("/dev/null").unwrap(),
        std::fs::File::open("/dev/null").unwrap(),
    );
    let (kept_fd, other_fd) = (kept.as_raw_fd(), other.as_raw_fd());
    let open = |fd: i32| {
        // SAFETY: fcntl with integer arguments only asks about the descriptor.
        i32::from(unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
    };
    let report = |channel: &Channel| {
        let _ = channel.send(Message {
            kind: 42,
            a: open(kept_fd),
            b: open(other_fd),
            c: 0,
        });
        stay_until_hung_up(channel)
    };
    let started = start(&report, kept_fd);
    let (msg, _) = started.channel.recv().unwrap().unwrap();
    assert_eq!(
        (msg.kind, msg.a, msg.b),
        (42, 1, 0),
        "kept open, the other closed"
    );
    drop(started.channel);
    assert_eq!(started.init.wait().unwrap().code(), 0);
}

#[test]
fn an_init_keeps_only_the_descriptors_it_is_given() {
    // Until its start it lives in the container's reach (and holds whatever another create
    // had open when it was forked): of the runtime's descriptors it keeps only those given.
    keeps_only_the_descriptor_given(|init, kept| spawn_plain_keeping(init, &[kept]));
}

#[test]
fn a_joined_process_keeps_only_the_descriptors_it_is_given() {
    // It lives in the container's reach until its exec, where the container can hold it: of
    // the runtime's descriptors it keeps only those its init uses.
    let stay = |channel: &Channel| stay_until_hung_up(channel);
    let spawned = spawn_plain(&stay);
    keeps_only_the_descriptor_given(|init, kept| {
        let no_prepare = &mut |_: &PidFd| Ok(0);
        eci_ns::spawn::spawn_into(
            &spawned.init,
            Namespaces::CONTAINER,
            init,
            no_prepare,
            &[],
            &[kept],
        )
        .unwrap()
    });
    drop(spawned.channel);
    assert_eq!(spawned.init.wait().unwrap().code(), 0);
}

/// The host's `fs.suid_dumpable` set to a value for as long as this lives, then put back.
struct SuidDumpable(String);

impl SuidDumpable {
    const PATH: &str = "/proc/sys/fs/suid_dumpable";

    fn set(value: &str) -> SuidDumpable {
        let kept = std::fs::read_to_string(Self::PATH).unwrap();
        std::fs::write(Self::PATH, value).unwrap();
        SuidDumpable(kept)
    }
}

impl Drop for SuidDumpable {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, self.0.trim());
    }
}

#[test]
fn container_processes_stay_undumpable_after_becoming_root_whatever_the_host_says() {
    // The kernel sets a process's dumpable flag to `fs.suid_dumpable` whenever it changes its
    // IDs. A host that sets it to 1 would leave an init (until its exec), an exec'd process
    // (until its exec) and a helper that became the namespace's root open to the container's
    // root, with the runtime's descriptors in them. (Put back at once: other tests of this
    // binary do not depend on it.)
    let dumpable = SuidDumpable::set("1");
    let report_then_stay = |channel: &Channel| {
        let _ = channel.send(Message::of(42));
        stay_until_hung_up(channel)
    };
    let spawned = spawn_plain(&report_then_stay);
    let joined = eci_ns::spawn::spawn_into(
        &spawned.init,
        Namespaces::CONTAINER,
        &report_then_stay,
        &mut |_: &PidFd| Ok(0),
        &[],
        &[],
    )
    .unwrap();
    let become_root = || {
        // SAFETY: plain syscalls with integer arguments; a NULL list is allowed.
        let changed = unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setresgid(0, 0, 0) == 0
                && libc::setresuid(0, 0, 0) == 0
        };
        match changed {
            true => Ok(()),
            false => Err(Failure::last_errno(Stage::Helper, 99)),
        }
    };
    let serve = |_: &[u8],
                 _: &mut eci_ns::channel::ReceivedFds,
                 _: &mut [u8; eci_ns::helper::MAX_RESPONSE]| None;
    let helper = eci_ns::helper::Helper::start(&eci_ns::helper::HelperSpec {
        target: &spawned.init,
        join: Namespaces::USER,
        join_via: None,
        keep: &[],
        before_join: None,
        after_join: Some(&become_root),
        serve: &serve,
        watch: None,
        orphaned: None,
    })
    .unwrap();
    for channel in [&spawned.channel, &joined.channel] {
        let (msg, _) = channel.recv().unwrap().unwrap();
        assert_eq!(msg.kind, 42, "the process became root and waits");
    }
    let attempts = [spawned.init.pid(), joined.init.pid(), helper.pid()]
        .map(|pid| container_root_takes_a_descriptor_of(&spawned.init, pid));
    drop(dumpable);
    assert_eq!(
        attempts,
        [libc::EPERM; 3],
        "pidfd_getfd on the init, the exec'd process and the helper"
    );
    drop(helper);
    drop(joined.channel);
    assert_eq!(joined.init.wait().unwrap().code(), 0);
    drop(spawned.channel);
    assert_eq!(spawned.init.wait().unwrap().code(), 0);
}

/// The parent pid in a process's `/proc/PID/stat` (the fourth field, after the name).
fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, after_name) = stat.rsplit_once(')').unwrap();
    after_name
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn an_adopted_init_is_no_child_of_the_runtime_yet_its_end_is_known() {
    if !eci_ns::pidfd::exit_status_outlives_reaping() {
        eprintln!("skipped: this kernel forgets a reaped process's exit status");
        return;
    }
    let setup = |_: SetupContext<'_>| Ok(());
    let init = |_: &Channel| loop {
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
    };
    let spawned = spawn(SpawnRequest {
        namespaces: Namespaces::CONTAINER,
        joined: &[],
        setup: &setup,
        init: &init,
        prepare: &mut write_maps,
        late_mounts: false,
        init_parent: InitParent::Adopter,
        boot_clock_origin: None,
        while_mounting: None,
        keep: &[],
    })
    .unwrap();
    let pid = spawned.init.pid();
    // The setup process that cloned it is gone, and this process (no subreaper) was skipped:
    // its adopter is this process's (the PID namespace's init, or a subreaper above).
    assert_ne!(parent_of(pid), std::process::id() as i32);
    assert!(!children_of_this_process().contains(&pid.to_string()));
    assert_eq!(spawned.init.try_wait(), Ok(None));
    spawned.init.signal(libc::SIGKILL).unwrap();
    assert_eq!(spawned.init.wait(), Ok(ExitStatus::Signaled(libc::SIGKILL)));
}

/// A handler of the runtime's, for the test below: it must never run in a child.
extern "C" fn runtimes_handler(_: libc::c_int) {}

/// Where clone3 answers ENOSYS (an old kernel, or a seccomp profile that makes the C library
/// fall back to clone), the clone(2) that replaces it cannot clear the signal handlers: the
/// child clears them itself, with every signal held off until then, and gets the caller's
/// signal mask back.
#[test]
fn a_child_made_by_the_clone_fallback_keeps_none_of_the_callers_handlers() {
    // Allows everything but clone3, which gets ENOSYS (the architecture is the build's own).
    let allow_but_clone3 = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_clone3 as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: allow_but_clone3.len() as u16,
        filter: allow_but_clone3.as_ptr().cast_mut(),
    };
    // SAFETY: the forked child makes only async-signal-safe calls and exits.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: sigaction with a valid handler; prctl and seccomp with a valid program.
            let code = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = runtimes_handler as *const () as usize;
                libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
                let mut usr2: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut usr2);
                libc::sigaddset(&mut usr2, libc::SIGUSR2);
                libc::sigprocmask(libc::SIG_SETMASK, &usr2, std::ptr::null_mut());
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                if libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    0u32,
                    &program,
                ) != 0
                {
                    sys::exit(10);
                }
                match sys::clone_fork(sys::CLONE_CLEAR_SIGHAND) {
                    Ok(sys::Forked::Child) => {
                        let mut now: libc::sigaction = std::mem::zeroed();
                        libc::sigaction(libc::SIGUSR1, std::ptr::null(), &mut now);
                        let mut mask: libc::sigset_t = std::mem::zeroed();
                        libc::sigprocmask(libc::SIG_SETMASK, std::ptr::null(), &mut mask);
                        let kept_mask = libc::sigismember(&mask, libc::SIGUSR2) == 1
                            && libc::sigismember(&mask, libc::SIGUSR1) == 0;
                        sys::exit(match (now.sa_sigaction, kept_mask) {
                            (libc::SIG_DFL, true) => 0,
                            (libc::SIG_DFL, false) => 2,
                            _ => 1,
                        })
                    }
                    Ok(sys::Forked::Parent { pid, .. }) => {
                        let mut status = 0;
                        libc::waitpid(pid, &mut status, 0);
                        let mut mask: libc::sigset_t = std::mem::zeroed();
                        libc::sigprocmask(libc::SIG_SETMASK, std::ptr::null(), &mut mask);
                        match libc::sigismember(&mask, libc::SIGUSR1) {
                            0 => libc::WEXITSTATUS(status),
                            _ => 3,
                        }
                    }
                    Err(_) => 11,
                }
            };
            sys::exit(code)
        }
        child => {
            let mut status = 0;
            // SAFETY: waits for the child just forked.
            assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
            assert!(libc::WIFEXITED(status), "the prober exited");
            let code = libc::WEXITSTATUS(status);
            assert_eq!(code, 0, "1: handler kept; 2/3: signal mask not restored");
        }
    }
}
