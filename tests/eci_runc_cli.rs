//! eci-runc's own command line, where no engine is needed to show a behaviour: what a client
//! is told when the container goes away under it, and what a failed create leaves behind.
//! Needs root and busybox-static.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn eci_runc() -> PathBuf {
    common::example("eci-runc")
}

/// A runtime root and a busybox bundle running `args`, in a fresh directory.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(args: &[&str]) -> Setup {
        let dir = common::closed_tempdir("eci-runc-cli");
        let status = Command::new("scripts/busybox-bundle")
            .arg(dir.path().join("bundle"))
            .arg("--")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success());
        Setup { dir }
    }

    fn runc(&self, args: &[&str]) -> Output {
        Command::new(eci_runc())
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .args(args)
            .output()
            .unwrap()
    }

    /// A command whose stdio a container process keeps (`run --detach`, `exec --detach`):
    /// there is no end of its output to wait for, so it gets none; what it says on stderr is
    /// kept in a file ([`Setup::detached_errors`]).
    fn runc_detached(&self, args: &[&str]) -> bool {
        let errors = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("detached.err"))
            .unwrap();
        Command::new(eci_runc())
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(errors)
            .status()
            .unwrap()
            .success()
    }

    /// What the detached commands said on stderr.
    fn detached_errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("detached.err")).unwrap_or_default()
    }

    fn bundle(&self) -> String {
        self.dir.path().join("bundle").display().to_string()
    }

    /// Changes the bundle's config.json.
    fn edit_spec(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        let config = self.dir.path().join("bundle/config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        edit(&mut spec);
        std::fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
    }

    /// `create` of container `id` that is to fail: its output once it has, stderr kept (no
    /// container process is left to hold it open).
    fn create_failing(&self, id: &str) -> Output {
        self.create_command(id)
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    /// `eci-runc create` of container `id` from the bundle, with no stdin or stdout (a
    /// process left running would hold a pipe open).
    fn create_command(&self, id: &str) -> Command {
        let mut command = Command::new(eci_runc());
        command
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .args(["create", "--bundle", &self.bundle(), id])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    }

    /// Creates container `id`; its monitor's pid.
    fn create_with_monitor(&self, id: &str) -> i32 {
        self.create_named(id);
        self.monitor_of(id)
    }

    /// Creates container `id`; the pid its pid file names.
    fn create_named(&self, id: &str) -> i32 {
        let pid_file = self.dir.path().join(format!("{id}.pid"));
        let created = self.runc_detached(&[
            "create",
            "--bundle",
            &self.bundle(),
            "--pid-file",
            &pid_file.display().to_string(),
            id,
        ]);
        assert!(created, "create {id}: {}", self.detached_errors());
        read_pid(&pid_file)
    }

    /// The pid of container `id`'s monitor: the process listening on its socket, as the
    /// kernel says (SO_PEERCRED), asked for the container's state.
    fn monitor_of(&self, id: &str) -> i32 {
        use std::io::{BufRead, Write};
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(self.container_dir(id)).unwrap();
        let socket = format!("/proc/self/fd/{}/monitor.sock", dir.as_raw_fd());
        let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        let creds =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .unwrap();
        writeln!(stream, "state").unwrap();
        let mut answer = String::new();
        std::io::BufReader::new(stream)
            .read_line(&mut answer)
            .unwrap();
        assert!(answer.starts_with("ok"), "{answer}");
        creds.pid()
    }

    /// Creates and starts container `id`; its monitor's pid.
    fn start_with_monitor(&self, id: &str) -> i32 {
        let monitor = self.create_with_monitor(id);
        let started = self.runc_detached(&["start", id]);
        assert!(started, "start {id}: {}", self.detached_errors());
        monitor
    }

    /// `exec --detach` of `command` in container `id`; the stand-in's pid (from the pid file
    /// `name`.pid, as containerd's shim reads it).
    fn exec_detached(&self, id: &str, name: &str, command: &[&str]) -> i32 {
        let pid_file = self.dir.path().join(format!("{name}.pid"));
        let pid_path = pid_file.to_str().unwrap();
        let mut args = vec!["exec", "--detach", "--pid-file", pid_path, id];
        args.extend(command);
        assert!(self.runc_detached(&args));
        read_pid(&pid_file)
    }
}

/// The pid in a pid file.
fn read_pid(file: &Path) -> i32 {
    std::fs::read_to_string(file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

impl Setup {
    /// Container `id`'s directory under the runtime root.
    fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join("root").join(id)
    }

    /// The root's virtual files daemon's directory.
    fn virtd(&self) -> PathBuf {
        self.dir.path().join("root/.eci/virtd")
    }

    /// The pid in the daemon's file `name` (`pid`, or `keeper`).
    fn virtd_pid(&self, name: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.virtd().join(name)).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    /// Whether the daemon keeps a record of container `id` (within 2 s of a change).
    fn virtd_serves(&self, id: &str) -> bool {
        let has_record = || {
            std::fs::read_dir(self.virtd().join("tenants"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    std::fs::read_to_string(e.path())
                        .is_ok_and(|t| t.contains(&format!("\"name\":\"{id}\"")))
                })
        };
        let first = has_record();
        // The daemon notices a dead runtime within a second.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        first && has_record()
    }
}

impl Drop for Setup {
    /// Whatever a failed test left running goes too (a container left in its cgroup would
    /// make the next run's create refuse that cgroup), and the virtual files daemon with its
    /// keeper and mount, rather than idling out later.
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("root")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if !name.starts_with('.') {
                    let _ = self.runc(&["delete", "--force", &name]);
                }
            }
        }
        for name in ["keeper", "pid"] {
            if let Some(pid) = self.virtd_pid(name) {
                // SAFETY: kill takes plain integers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = eci::eci_mount::virt::detach(&self.virtd().join("mnt"));
    }
}

#[test]
fn an_exec_client_gets_the_exit_code_when_the_container_is_force_deleted() {
    let setup = Setup::new(&["sleep", "1000"]);
    let id = "exec-on-delete";
    assert!(setup.runc_detached(&["run", "--detach", "--bundle", &setup.bundle(), id]));
    let exec = std::thread::scope(|scope| {
        let exec = scope.spawn(|| setup.runc(&["exec", id, "sleep", "1000"]));
        // Wait until the exec'd sleep runs beside the init's.
        let started = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let ps = setup.runc(&["ps", "--format", "json", id]);
            let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).unwrap_or_default();
            pids.len() == 2
        });
        assert!(started, "the exec'd process started");
        let delete = setup.runc(&["delete", "--force", id]);
        assert!(delete.status.success(), "{delete:?}");
        exec.join().unwrap()
    });
    assert_eq!(
        exec.status.code(),
        Some(128 + libc::SIGKILL),
        "killed with the container, and told so: {exec:?}"
    );
}

#[test]
fn a_forced_delete_ends_a_container_whose_init_is_held_in_the_kernel() {
    // The init executes a file of the container's own stalled FUSE server: held in the kernel,
    // it outlives a SIGKILL of its own until that server ends. A forced delete that killed the
    // init alone then waited for it for good, and every later command on the container with
    // it; runc's kills every process of the container.
    let setup = Setup::new(&["true"]);
    let rootfs = eci::HostRootfs::create(&setup.dir.path().join("bundle/host")).unwrap();
    let script = "mkdir -p /tmp/stall && { /probe fuse-stall /tmp/stall & } \
                  && sleep 0.5 && exec /tmp/stall/f";
    let mut spec = rootfs.spec(vec!["sh".into(), "-c".into(), script.into()]);
    // The probe from the bundle: the command line's policy shares no build directory.
    let probe = setup.dir.path().join("bundle/probe");
    std::fs::copy(common::PROBE, &probe).unwrap();
    let mut bind = common::probe_mount();
    bind.set_source(Some(probe));
    spec.mounts_mut().as_mut().unwrap().push(bind);
    common::with_fuse_device(&mut spec);
    let config = setup.dir.path().join("bundle/config.json");
    std::fs::write(config, serde_json::to_vec(&spec).unwrap()).unwrap();
    let id = "held-init";
    let init = setup.create_named(id);
    assert!(
        setup.runc_detached(&["start", id]),
        "{}",
        setup.detached_errors()
    );
    let held = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let wchan = std::fs::read_to_string(format!("/proc/{init}/wchan")).unwrap_or_default();
        wchan == "request_wait_answer"
    });
    assert!(held, "the init is not held in the kernel");
    let started = std::time::Instant::now();
    let deleted = Command::new("timeout")
        .arg("40")
        .arg(eci_runc())
        .arg("--root")
        .arg(setup.dir.path().join("root"))
        .args(["delete", "--force", id])
        .output()
        .unwrap();
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(!setup.container_dir(id).exists());
}

#[test]
fn a_monitor_that_leaves_without_an_answer_means_the_container_is_not_running() {
    // A kill queued on the monitor's socket as the init ends: the monitor closes its socket
    // without answering, and containerd's shim tells an ended process only by runc's words.
    use std::os::unix::fs::DirBuilderExt;
    let setup = Setup::new(&["true"]);
    let id = "leaves";
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(setup.container_dir(id))
        .unwrap();
    let listener =
        std::os::unix::net::UnixListener::bind(setup.container_dir(id).join("monitor.sock"))
            .unwrap();
    let monitor = std::thread::spawn(move || {
        // The first one hangs up at once; the second, queued meanwhile, is never accepted:
        // the socket closes under it.
        drop(listener.accept().unwrap());
        std::thread::sleep(std::time::Duration::from_secs(1));
        drop(listener);
    });
    for attempt in ["ended", "reset"] {
        let out = setup.runc(&["kill", id, "0"]);
        assert!(!out.status.success(), "{attempt}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("container not running: leaves"),
            "{attempt}: {stderr}"
        );
    }
    monitor.join().unwrap();
}

#[test]
fn the_root_and_container_directories_are_roots_alone() {
    // The monitors' sockets and the containers' records are in them; a root an earlier
    // version made open to others is closed.
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new(&["sleep", "1000"]);
    let root = setup.dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let id = "closed-dirs";
    assert!(setup.runc_detached(&["create", "--bundle", &setup.bundle(), id]));
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&setup.container_dir(id)), 0o700);
    assert!(setup.runc(&["delete", "--force", id]).status.success());
}

#[test]
fn a_create_whose_pid_file_cannot_be_written_leaves_nothing() {
    let setup = Setup::new(&["sleep", "1000"]);
    let id = "bad-pid-file";
    let pid_file = "/nonexistent-dir/pid";
    let create = setup.runc(&[
        "create",
        "--bundle",
        &setup.bundle(),
        "--pid-file",
        pid_file,
        id,
    ]);
    assert!(!create.status.success());
    let stderr = String::from_utf8_lossy(&create.stderr);
    assert!(stderr.contains("pid file"), "{stderr}");
    assert!(!setup.container_dir(id).exists(), "no state left");
    let list = setup.runc(&["list", "--quiet"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "");
    // The monitor, which would hold the container, is gone with it.
    let monitors = Command::new("pgrep")
        .args(["-f", &format!("monitor .*{id}")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&monitors.stdout),
        "",
        "no monitor left"
    );
}

#[test]
fn a_containers_helpers_hold_none_of_the_hosts_mounts() {
    // A copy of the host's mount table in a helper's namespace would keep every host
    // filesystem (and every FUSE connection) alive as long as the container.
    let setup = Setup::new(&["sleep", "1000"]);
    let id = "helper-mounts";
    let pid_file = setup.dir.path().join("pid");
    let pid_path = pid_file.to_str().unwrap();
    assert!(setup.runc_detached(&[
        "run",
        "--detach",
        "--bundle",
        &setup.bundle(),
        "--pid-file",
        pid_path,
        id
    ]));
    let monitor = setup.monitor_of(id);
    let children = std::fs::read_to_string(format!("/proc/{monitor}/task/{monitor}/children"))
        .unwrap_or_default();
    let helpers: Vec<String> = children
        .split_whitespace()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.ends_with("eci-runc"))
        })
        .map(str::to_string)
        .collect();
    assert!(!helpers.is_empty(), "the mount helper runs");
    for helper in helpers {
        let mounts = std::fs::read_to_string(format!("/proc/{helper}/mountinfo")).unwrap();
        let points: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).collect();
        assert!(
            !points.contains(&"/sys") && !points.contains(&"/run") && !points.contains(&"/dev"),
            "helper {helper} holds host mounts: {points:?}"
        );
    }
    assert!(setup.runc(&["delete", "--force", id]).status.success());
}

#[test]
fn run_in_the_foreground_monitors_the_container_itself_and_passes_signals_on() {
    // As runc's `run`: the process the caller started serves the other commands, the signals
    // sent to it reach the container's init, and it exits with the container's code, leaving
    // nothing behind.
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let setup = Setup::new(&[
        "sh",
        "-c",
        "trap 'exit 7' TERM; trap 'echo alarm' ALRM; trap 'echo interrupt' INT; echo ready; \
         while :; do sleep 0.05; done",
    ]);
    let id = "foreground";
    let pid_file = setup.dir.path().join("pid");
    let mut run = Command::new(eci_runc())
        .arg("--root")
        .arg(setup.dir.path().join("root"))
        .args(["run", "--bundle", &setup.bundle(), "--pid-file"])
        .arg(&pid_file)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // A process group of its own, as a shell gives a job in a terminal.
        .process_group(0)
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(run.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let state: serde_json::Value =
        serde_json::from_slice(&setup.runc(&["state", id]).stdout).unwrap();
    assert_eq!(state["status"], "running");
    // As runc's, the pid file names the container's init, not run.
    let named = read_pid(&pid_file);
    assert_eq!(state["pid"], named, "{state}");
    let pid_ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_ne!(
        pid_ns(named),
        pid_ns(run.id() as i32),
        "the pid file names run"
    );
    // The signals it passes on are blocked in it, but not in the mount helper it forked.
    let blocked = |pid: i32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .unwrap();
        u64::from_str_radix(mask.trim(), 16).unwrap()
    };
    let term = 1u64 << (libc::SIGTERM - 1);
    assert_ne!(blocked(run.id() as i32) & term, 0, "run reads TERM itself");
    let helpers: Vec<i32> = descendants(run.id() as i32)
        .into_iter()
        .filter(|&pid| comm(pid) == "eci-runc")
        .collect();
    assert!(!helpers.is_empty(), "the mount helper runs");
    for &helper in &helpers {
        assert_eq!(blocked(helper) & term, 0, "helper {helper} blocks TERM");
    }
    // What a terminal sends its foreground job goes to the whole group: run passes a Ctrl-C on
    // to the init, and the mount helper, in a session of its own, never gets it.
    // SAFETY: kill takes plain integers.
    assert_eq!(unsafe { libc::kill(-(run.id() as i32), libc::SIGINT) }, 0);
    // A Ctrl-Z and a real-time signal are passed on too (this init, PID 1 without a handler
    // for them, ignores them), rather than stopping or ending run while its container runs on.
    for signal in [libc::SIGTSTP, libc::SIGRTMIN() + 3, libc::SIGALRM] {
        // SAFETY: kill takes plain integers.
        assert_eq!(unsafe { libc::kill(run.id() as i32, signal) }, 0);
    }
    let mut traps: Vec<String> = (0..2)
        .map(|_| {
            line.clear();
            out.read_line(&mut line).unwrap();
            line.clone()
        })
        .collect();
    traps.sort();
    assert_eq!(
        traps,
        ["alarm\n", "interrupt\n"],
        "INT and ALRM were passed on"
    );
    assert_eq!(run.try_wait().unwrap(), None, "run goes on");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", run.id())).unwrap();
    let run_state = stat.rsplit(") ").next().unwrap().chars().next();
    assert_ne!(run_state, Some('T'), "run is not stopped");
    for &helper in &helpers {
        let alive = std::fs::read_to_string(format!("/proc/{helper}/stat"))
            .is_ok_and(|stat| !stat.rsplit(") ").next().unwrap().starts_with('Z'));
        assert!(alive, "helper {helper} survived the group's Ctrl-C");
    }
    // SAFETY: kill takes plain integers.
    assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGTERM) }, 0);
    let exited = (0..200).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        run.try_wait().unwrap()
    });
    if exited.is_none() {
        let _ = run.kill();
    }
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(7),
        "the init's trap ran"
    );
    assert!(!setup.container_dir(id).exists(), "no state left");

    // A container that cannot start: the error on stderr, and nothing left either.
    setup.edit_spec(|spec| spec["process"]["args"] = serde_json::json!(["/no/such/program"]));
    let failed = setup.runc(&["run", "--bundle", &setup.bundle(), id]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("eci-runc: "), "{stderr}");
    assert!(!setup.container_dir(id).exists(), "no state left");
    assert_eq!(
        String::from_utf8_lossy(&setup.runc(&["list", "--quiet"]).stdout),
        ""
    );
}

#[test]
fn a_foreground_run_and_a_delete_of_its_container_both_succeed() {
    // Both remove the container's directory as they finish: whichever comes second finds it
    // gone, and neither may fail of that (nor remove another container's of the same ID).
    use std::io::BufRead;
    let setup = Setup::new(&["sh", "-c", "echo ready; while :; do sleep 0.05; done"]);
    for round in 0..3 {
        let id = format!("deleted-{round}");
        let mut run = Command::new(eci_runc())
            .arg("--root")
            .arg(setup.dir.path().join("root"))
            .args(["run", "--bundle", &setup.bundle(), &id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(run.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        let deleted = setup.runc(&["delete", "--force", &id]);
        assert!(
            deleted.status.success(),
            "{}",
            String::from_utf8_lossy(&deleted.stderr)
        );
        let ran = run.wait_with_output().unwrap();
        assert_eq!(
            ran.status.code(),
            Some(128 + libc::SIGKILL),
            "{}",
            String::from_utf8_lossy(&ran.stderr)
        );
        assert!(!setup.container_dir(&id).exists());
    }
}

#[test]
fn the_container_process_starts_with_no_signal_ignored_or_blocked() {
    // Whatever the runtime's caller ignored or blocked (a shell ignores INT for a background
    // job; runc's own callers block signals), the container's process starts with every
    // signal at its default, up to the last real-time one.
    use std::os::unix::process::CommandExt;
    let setup = Setup::new(&["cat", "/proc/self/status"]);
    let mut run = Command::new(eci_runc());
    run.arg("--root").arg(setup.dir.path().join("root")).args([
        "run",
        "--bundle",
        &setup.bundle(),
        "signals",
    ]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        run.pre_exec(|| {
            for signal in [libc::SIGINT, libc::SIGRTMIN() + 1, libc::SIGRTMAX()] {
                libc::signal(signal, libc::SIG_IGN);
            }
            let mut blocked: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut blocked);
            libc::sigaddset(&mut blocked, libc::SIGUSR1);
            libc::sigaddset(&mut blocked, libc::SIGRTMAX());
            libc::sigprocmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut());
            Ok(())
        });
    }
    let out = run.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    for field in ["SigIgn:", "SigBlk:"] {
        let mask = status.lines().find_map(|l| l.strip_prefix(field)).unwrap();
        assert_eq!(
            u64::from_str_radix(mask.trim(), 16).unwrap(),
            0,
            "{field}{mask}"
        );
    }
}

#[test]
fn a_relative_root_serves_virtual_files_to_every_container() {
    // The daemon is started with the root made absolute; the runtime must name the directories
    // it predicts for a registration the same way, or every start after the first fails.
    let setup = Setup::new(&["cat", "/proc/meminfo"]);
    for id in ["first", "second", "third"] {
        let run = Command::new(eci_runc())
            .current_dir(setup.dir.path())
            .args(["--root", "root", "run", "--bundle", "bundle", id])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{id}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(String::from_utf8_lossy(&run.stdout).starts_with("MemTotal:"));
    }
}

#[test]
fn registrations_are_tagged_only_with_a_daemon_that_takes_tags() {
    // The runtime names a container's virtual files directory itself (and plans its binds
    // before the daemon answers) only where the running daemon says it takes tags; a daemon of
    // an older version, which names directories by slot, gets the registration it knows.
    let setup = Setup::new(&["cat", "/proc/self/mountinfo"]);
    let meminfo_source = |id: &str| -> String {
        let run = setup.runc(&["run", "--bundle", &setup.bundle(), id]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let table = String::from_utf8_lossy(&run.stdout).to_string();
        let line = table
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/proc/meminfo"));
        line.expect("meminfo is bound")
            .split(' ')
            .nth(3)
            .unwrap()
            .to_string()
    };
    // The first start starts the daemon, whose mounts a tagged registration needs first.
    assert!(meminfo_source("first").starts_with("/first."));
    let tagged = meminfo_source("tagged");
    assert!(tagged.starts_with("/tagged.t"), "{tagged}");
    let pid_file = setup.virtd().join("pid");
    let text = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(text.split_whitespace().nth(1), Some("tags"), "{text}");
    // As an older daemon writes it: its pid alone.
    std::fs::write(&pid_file, text.split_whitespace().next().unwrap()).unwrap();
    let by_slot = meminfo_source("by-slot");
    let slot = by_slot
        .trim_start_matches("/by-slot.")
        .trim_end_matches("/meminfo");
    assert!(slot.parse::<u64>().is_ok(), "{by_slot}");
}

#[test]
fn signals_to_a_detached_execs_pid_reach_the_process() {
    // containerd's shim signals an exec'd process through the pid in its pid file, which names
    // eci-runc's stand-in: a TERM there must reach the process, and a KILL (which cannot be
    // passed on) must end it too.
    let setup = Setup::new(&["sleep", "1000"]);
    let id = "exec-signals";
    assert!(setup.runc_detached(&["run", "--detach", "--bundle", &setup.bundle(), id]));
    let processes = || -> usize {
        let ps = setup.runc(&["ps", "--format", "json", id]);
        serde_json::from_slice::<Vec<i32>>(&ps.stdout).map_or(0, |p| p.len())
    };
    let settle = |expected: usize| {
        (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            processes() == expected
        })
    };
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let stand_in = setup.exec_detached(id, &format!("exec-{signal}"), &["sleep", "1000"]);
        assert!(settle(2), "the exec'd sleep runs beside the init");
        // The process (its environment holds the container's secrets under Docker) is not
        // on the stand-in's command line, which every host user may read.
        let cmdline = std::fs::read(format!("/proc/{stand_in}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(!cmdline.contains("sleep"), "{cmdline}");
        // SAFETY: kill takes plain integers.
        assert_eq!(unsafe { libc::kill(stand_in, signal) }, 0);
        if !settle(1) {
            let ps = setup.runc(&["ps", "--format", "json", id]);
            let status = |pid: &str| {
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.starts_with("Sig") || l.starts_with("State"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let pids = String::from_utf8_lossy(&ps.stdout).to_string();
            let details: Vec<String> = pids
                .trim_matches(|c| c == '[' || c == ']' || c == '\n')
                .split(',')
                .map(|pid| format!("{pid}: {}", status(pid.trim())))
                .collect();
            panic!(
                "signal {signal} did not end the exec'd process: {details:?}; stand-in {stand_in}: {}",
                status(&stand_in.to_string())
            );
        }
    }
    assert!(setup.runc(&["delete", "--force", id]).status.success());
}

#[test]
fn the_librarys_warnings_reach_the_log_file() {
    // containerd and dockerd show the runtime's log file; eci's own warnings belong there,
    // in runc's JSON lines, and other crates' chatter does not.
    let setup = Setup::new(&["true"]);
    let settings = setup.dir.path().join("settings.json");
    std::fs::write(
        &settings,
        r#"{"configurationFileVersion": 2, "enhancedContainerIsolation": {"value": false}}"#,
    )
    .unwrap();
    let log = setup.dir.path().join("log.json");
    let run = Command::new(eci_runc())
        .arg("--root")
        .arg(setup.dir.path().join("root"))
        .arg("--settings")
        .arg(&settings)
        .arg("--log")
        .arg(&log)
        .args([
            "--log-format",
            "json",
            "run",
            "--bundle",
            &setup.bundle(),
            "logged",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(run.success());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["level"], "warning");
    assert!(lines[0]["msg"]
        .as_str()
        .unwrap()
        .contains("switch Enhanced Container Isolation off"));
}

#[test]
fn delete_takes_down_a_container_whose_monitor_died() {
    let setup = Setup::new(&["sh", "-c", "sleep 1000 & sleep 1000"]);
    let id = "orphan";
    let monitor = setup.start_with_monitor(id);
    let ps = setup.runc(&["ps", "--format", "json", id]);
    let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).unwrap();
    let started = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let ps = setup.runc(&["ps", "--format", "json", id]);
        serde_json::from_slice::<Vec<i32>>(&ps.stdout).is_ok_and(|p| p.len() == 2)
    });
    assert!(started, "both sleeps run: {pids:?}");
    let ps = setup.runc(&["ps", "--format", "json", id]);
    let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).unwrap();
    let served = || setup.virtd_serves(id);
    assert!(served(), "the virtual files daemon serves the container");
    kill_monitor(monitor);
    assert!(
        pids.iter()
            .all(|p| Path::new(&format!("/proc/{p}")).exists()),
        "the container runs on without its monitor"
    );
    // The container runs on, as the engine (whose shim waits on its init) sees it, and the
    // engine can still signal it: its init alone, or all of its processes.
    let out = setup.runc(&["state", id]);
    let state: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {out:?}"));
    assert_eq!(state["status"], "running", "{state}");
    let init = state["pid"].as_i64().unwrap() as i32;
    assert!(pids.contains(&init), "{state} {pids:?}");
    let run_state = |pid: i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(") ")
            .map_or(' ', |(_, rest)| rest.chars().next().unwrap_or(' '))
    };
    let stop = setup.runc(&["kill", id, "STOP"]);
    assert!(stop.status.success(), "{stop:?}");
    assert!(eventually(|| run_state(init) == 'T'), "the init stops");
    assert!(pids.iter().any(|p| *p != init && run_state(*p) != 'T'));
    let cont = setup.runc(&["kill", "--all", id, "CONT"]);
    assert!(cont.status.success(), "{cont:?}");
    assert!(eventually(|| run_state(init) == 'S'), "the init goes on");
    // The daemon looks for the dead every second; the container's init still lives.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        served(),
        "the daemon serves the container while its init lives"
    );

    let delete = setup.runc(&["delete", id]);
    assert!(delete.status.success(), "{delete:?}");
    let all_dead = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        pids.iter().all(|p| {
            // A zombie waiting for init to reap it is dead too.
            std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |s| {
                s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z'))
            })
        })
    });
    assert!(
        all_dead,
        "every process of the container is killed: {pids:?}"
    );
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = hierarchy.path().join("eci").join(id);
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    let forgotten = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !served()
    });
    assert!(
        forgotten,
        "the daemon no longer serves the container once its processes are gone"
    );
    assert!(!setup.container_dir(id).exists());
}

#[test]
fn a_paused_container_whose_monitor_died_reads_paused() {
    let setup = Setup::new(&["sleep", "1000"]);
    let id = "orphan-paused";
    let monitor = setup.start_with_monitor(id);
    let paused = setup.runc(&["pause", id]);
    assert!(paused.status.success(), "{paused:?}");
    kill_monitor(monitor);
    let status = || {
        let out = setup.runc(&["state", id]);
        let state: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {out:?}"));
        state["status"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(status(), "paused");
    // As runc does, `kill --all` thaws the processes it signals.
    let cont = setup.runc(&["kill", "--all", id, "CONT"]);
    assert!(cont.status.success(), "{cont:?}");
    assert_eq!(status(), "running");
    let delete = setup.runc(&["delete", "--force", id]);
    assert!(delete.status.success(), "{delete:?}");
}

#[test]
fn a_created_containers_init_ends_with_its_monitor() {
    // The start it waits for can no longer come: the init ends, and the container reads
    // stopped.
    let setup = Setup::new(&["sleep", "1000"]);
    let id = "orphan-created";
    kill_monitor(setup.create_with_monitor(id));
    let stopped = || {
        let out = setup.runc(&["state", id]);
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        state["status"] == "stopped" && state["pid"] == 0
    };
    assert!(eventually(stopped));
    let delete = setup.runc(&["delete", id]);
    assert!(delete.status.success(), "{delete:?}");
    assert!(!setup.container_dir(id).exists());
}

#[test]
fn a_delete_waits_for_a_monitor_still_cleaning_up() {
    // A monitor removes its socket before it deletes its container; a `delete` that comes in
    // between finds no one to ask. It must wait for the monitor (which holds a lock on the
    // container's directory for its life) rather than take the container down beside it. The
    // test holds that lock in the monitor's place, after killing the monitor.
    let setup = Setup::new(&["sleep", "1000"]);
    let id = "cleaning";
    kill_monitor(setup.start_with_monitor(id));
    let dir = std::fs::File::open(setup.container_dir(id)).unwrap();
    let held = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .expect("a dead monitor holds nothing");
    let mut delete = Command::new(eci_runc())
        .arg("--root")
        .arg(setup.dir.path().join("root"))
        .args(["delete", id])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(delete.try_wait().unwrap().is_none(), "delete waits");
    drop(held);
    assert!(delete.wait().unwrap().success());
    assert!(!setup.container_dir(id).exists());
}

#[test]
fn the_command_line_keeps_runcs_contract() {
    let setup = Setup::new(&["sleep", "1000"]);
    // What create and run cannot do as asked is refused, not dropped.
    for (args, refusal) in [
        (
            &["create", "--preserve-fds", "1"][..],
            "--preserve-fds is not supported",
        ),
        (
            &["run", "--detach", "--preserve-fds", "2"],
            "--preserve-fds is not supported",
        ),
        (&["run", "--keep"], "--keep is not supported"),
    ] {
        let mut args = args.to_vec();
        let bundle = setup.bundle();
        args.extend(["--bundle", &bundle, "refused"]);
        let out = setup.runc(&args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains(refusal),
            "{args:?}: {said}"
        );
        assert!(!setup.container_dir("refused").exists());
    }
    let out = setup.runc(&["--log-format", "yaml", "list"]);
    assert!(!out.status.success(), "{out:?}");
    // Forcing the deletion of what is not there is no error; without force it is.
    assert!(setup
        .runc(&["delete", "--force", "never-made"])
        .status
        .success());
    let out = setup.runc(&["delete", "never-made"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{out:?}"
    );
    // The state carries the spec's annotations, which hooks read there. (And a bind from the
    // bundle, which lies in a directory closed to others, is the container's own.)
    std::fs::create_dir(setup.dir.path().join("bundle/data")).unwrap();
    let data = format!("{}/data", setup.bundle());
    setup.edit_spec(|spec| {
        spec["annotations"] = serde_json::json!({"org.example.team": "blue"});
        let bind = serde_json::json!({"destination": "/data", "type": "bind", "source": data, "options": ["rbind"]});
        spec["mounts"].as_array_mut().unwrap().push(bind);
    });
    let id = "contract";
    setup.create_named(id);
    let state: serde_json::Value =
        serde_json::from_slice(&setup.runc(&["state", id]).stdout).unwrap();
    assert_eq!(state["annotations"]["org.example.team"], "blue", "{state}");
    assert_eq!(state["rootfs"], format!("{}/rootfs", setup.bundle()));
    assert!(state["created"].as_str().unwrap().contains('.'), "{state}");
    assert!(setup.runc(&["delete", "--force", id]).status.success());
    // A detached run whose start fails leaves no container behind.
    setup.edit_spec(|spec| spec["process"]["args"] = serde_json::json!(["/no/such/program"]));
    let run = setup.runc_detached(&["run", "--detach", "--bundle", &setup.bundle(), "no-start"]);
    assert!(!run);
    assert!(!setup.container_dir("no-start").exists());
    // features names the hooks that run and every capability.
    let features: serde_json::Value =
        serde_json::from_slice(&setup.runc(&["features"]).stdout).unwrap();
    assert_eq!(
        features["hooks"],
        serde_json::json!(["prestart", "createRuntime", "poststart", "poststop"])
    );
    let caps = features["linux"]["capabilities"].as_array().unwrap();
    assert_eq!(caps.len(), 41, "{caps:?}");
    assert_eq!(caps[21], "CAP_SYS_ADMIN");
    // spec writes into --bundle.
    let spec_dir = setup.dir.path().join("spec");
    std::fs::create_dir(&spec_dir).unwrap();
    let out = setup.runc(&["spec", "--bundle", spec_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(spec_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["hostname"], "eci");
    // Never through a symlink left at config.json, dangling or not.
    let linked = setup.dir.path().join("linked");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink(setup.dir.path().join("made"), linked.join("config.json")).unwrap();
    let out = setup.runc(&["spec", "--bundle", linked.to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("config.json already exists"),
        "{out:?}"
    );
    assert!(!setup.dir.path().join("made").exists());
}

/// Accepts one connection on `listener` and receives the descriptor it carries (a console).
fn receive_console(listener: &std::os::unix::net::UnixListener) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};
    // Ten seconds at most: a runtime that never connects fails the test rather than hang it.
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "no console came");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("accepting the console: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    let mut buf = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("a descriptor");
    // SAFETY: the descriptor just came with the message and is ours alone.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

#[test]
fn a_terminal_has_the_size_the_process_asks_for() {
    // Docker sends the client's terminal size as consoleSize for `run -t`: without it the
    // terminal is 0x0 until the client's first resize.
    let setup = Setup::new(&["sh", "-c", "stty size; sleep 30"]);
    setup.edit_spec(|spec| {
        spec["process"]["terminal"] = true.into();
        spec["process"]["consoleSize"] = serde_json::json!({"height": 33, "width": 77});
    });
    let socket = setup.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let id = "sized";
    let console = std::thread::scope(|scope| {
        let received = scope.spawn(|| receive_console(&listener));
        let created = setup.runc_detached(&[
            "create",
            "--bundle",
            &setup.bundle(),
            "--console-socket",
            socket.to_str().unwrap(),
            id,
        ]);
        assert!(created, "{}", setup.detached_errors());
        received.join().unwrap()
    });
    assert!(setup.runc_detached(&["start", id]));
    assert_eq!(first_line(console).trim(), "33 77");
    // An exec's console socket named relative to the exec's working directory (the monitor,
    // which connects, has its own).
    std::fs::remove_file(&socket).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let console = std::thread::scope(|scope| {
        let received = scope.spawn(|| receive_console(&listener));
        let exec = Command::new(eci_runc())
            .arg("--root")
            .arg(setup.dir.path().join("root"))
            .args([
                "exec",
                "--tty",
                "--detach",
                "--console-socket",
                "console.sock",
                id,
                "tty",
            ])
            .current_dir(setup.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(exec.status.success(), "{exec:?}");
        received.join().unwrap()
    });
    assert!(first_line(console).starts_with("/dev/pts/"));
    let _ = setup.runc(&["delete", "--force", id]);
}

/// The first line read from a terminal's master.
fn first_line(console: std::os::fd::OwnedFd) -> String {
    use std::io::Read;
    let mut output = String::new();
    let mut console = std::fs::File::from(console);
    let mut buf = [0u8; 256];
    while !output.contains('\n') {
        match console.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => output.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    output
}

#[test]
fn exec_refuses_the_flags_it_does_not_apply_and_applies_additional_groups() {
    let setup = Setup::new(&["sleep", "1000"]);
    let id = "exec-flags";
    setup.start_with_monitor(id);
    for flag in [
        &["--cap", "CAP_SYS_ADMIN"][..],
        &["--preserve-fds", "1"],
        &["--cgroup", "x"],
    ] {
        let mut args = vec!["exec"];
        args.extend_from_slice(flag);
        args.extend([id, "true"]);
        let out = setup.runc(&args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("not supported"),
            "{flag:?}: {said}"
        );
    }
    // A terminal without a console socket is refused before the program runs.
    let out = setup.runc(&["exec", "--tty", id, "sh", "-c", "echo ran > /tmp/ran"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("console-socket"),
        "{said}"
    );
    let ran = setup.runc(&["exec", id, "cat", "/tmp/ran"]);
    assert!(!ran.status.success(), "the program never ran: {ran:?}");
    // As runc's, an exec that fails itself says 255, whatever its process would have said.
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let pid_file = setup.dir.path().join("foreground.pid");
    let out = setup.runc(&["exec", "--pid-file", pid_file.to_str().unwrap(), id, "true"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("only with --detach"), "{said}");
    assert_eq!(out.status.code(), Some(255));
    let out = setup.runc(&["exec", id, "/no/such/program"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    let out = setup.runc(&["exec", id, "sh", "-c", "exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the process's own code: {out:?}"
    );
    let out = setup.runc(&["exec", "--additional-gids", "7", id, "id", "-G"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0 7",
        "{out:?}"
    );
    // A detached exec whose pid file cannot be written fails and leaves nothing running.
    let args = [
        "exec",
        "--detach",
        "--pid-file",
        "/nonexistent/pid",
        id,
        "sleep",
        "999",
    ];
    assert!(!setup.runc_detached(&args));
    let only_init = eventually(|| {
        let ps = setup.runc(&["ps", "--format", "json", id]);
        serde_json::from_slice::<Vec<i32>>(&ps.stdout).is_ok_and(|p| p.len() == 1)
    });
    assert!(only_init, "the exec'd sleep is gone");
    assert!(setup.runc(&["delete", "--force", id]).status.success());
}

#[test]
fn a_command_line_exec_starts_from_the_containers_own_process() {
    // As runc's: the container's environment, working directory and user, with what the
    // command line gives over them.
    let setup = Setup::new(&["sleep", "1000"]);
    setup.edit_spec(|spec| {
        let process = &mut spec["process"];
        process["env"].as_array_mut().unwrap().extend([
            serde_json::json!("FROM_SPEC=spec"),
            serde_json::json!("BOTH=spec"),
        ]);
        process["cwd"] = "/tmp".into();
        process["user"] = serde_json::json!({ "uid": 0, "gid": 7, "additionalGids": [8] });
    });
    let id = "exec-base";
    setup.start_with_monitor(id);
    let show = "echo $FROM_SPEC $BOTH $GIVEN; pwd; id -G";
    let out = setup.runc(&["exec", id, "sh", "-c", show]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "spec spec\n/tmp\n7 8\n",
        "{out:?}"
    );
    let args = [
        "exec",
        "--env",
        "BOTH=cli",
        "--env",
        "GIVEN=cli",
        "--cwd",
        "/",
        "--user",
        "0",
        "--additional-gids",
        "9",
        id,
        "sh",
        "-c",
        show,
    ];
    let out = setup.runc(&args);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "spec cli cli\n/\n7 8 9\n",
        "{out:?}"
    );
    assert!(setup.runc(&["delete", "--force", id]).status.success());
}

#[test]
fn a_container_killed_before_start_is_cleaned_up_by_its_monitor() {
    // The monitor waited for the init of a container never started with "wait before start",
    // failed, and exited with 1 before its poststop hooks and its delete.
    let setup = Setup::new(&["sleep", "1000"]);
    let poststop = setup.dir.path().join("poststop");
    setup.with_hooks(serde_json::json!({ "poststop": [recording_hook(&poststop)] }));
    let id = "killed-early";
    let monitor = setup.create_with_monitor(id);
    let killed = setup.runc(&["kill", id, "KILL"]);
    assert!(killed.status.success(), "{killed:?}");
    assert!(
        eventually(|| !Path::new(&format!("/proc/{monitor}")).exists()),
        "the monitor exits with its container"
    );
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = hierarchy.path().join("eci").join(id);
        assert!(!dir.exists(), "cgroup {} left for delete", dir.display());
    }
    assert_eq!(recorded(&poststop)["status"], "stopped");
    let out = setup.runc(&["kill", id, "KILL"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("container not running"), "{said}");
    let delete = setup.runc(&["delete", id]);
    assert!(delete.status.success(), "{delete:?}");
    // kill --all reaches a created container too, as runc's does.
    let id = "killed-early-all";
    let monitor = setup.create_with_monitor(id);
    let killed = setup.runc(&["kill", "--all", id, "KILL"]);
    assert!(killed.status.success(), "{killed:?}");
    assert!(eventually(
        || !Path::new(&format!("/proc/{monitor}")).exists()
    ));
    assert!(setup.runc(&["delete", id]).status.success());
}

#[test]
fn kill_takes_real_time_signals_and_names_in_any_case() {
    // As runc's: Docker stops a systemd image with its STOPSIGNAL, SIGRTMIN+3, sent as 37.
    let setup = Setup::new(&[
        "sh",
        "-c",
        "trap 'true' USR1; trap 'exit 9' 37; while :; do sleep 0.05; done",
    ]);
    let id = "real-time";
    setup.start_with_monitor(id);
    let status = |id: &str| -> String {
        let state = setup.runc(&["state", id]);
        let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
        state["status"].as_str().unwrap_or_default().to_string()
    };
    for (signal, refused) in [
        ("usr1", false),
        ("SigUsr1", false),
        ("65", true),
        ("RTMIN+31", true),
    ] {
        let out = setup.runc(&["kill", id, signal]);
        assert_eq!(!out.status.success(), refused, "{signal}: {out:?}");
        if refused {
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(said.contains("unknown signal"), "{said}");
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(status(id), "running", "USR1 was trapped");
    let out = setup.runc(&["kill", id, "37"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        eventually(|| status(id) == "stopped"),
        "37 reached the trap"
    );
    assert!(setup.runc(&["delete", id]).status.success());
    // Every process of a container, with a name for the same signal.
    let id = "real-time-all";
    setup.start_with_monitor(id);
    let out = setup.runc(&["kill", "--all", id, "rtmin+3"]);
    assert!(out.status.success(), "{out:?}");
    assert!(eventually(|| status(id) == "stopped"));
    assert!(setup.runc(&["delete", id]).status.success());
}

#[test]
fn kill_without_a_signal_sends_term() {
    // runc's default: `runc kill ID` is how scripts and some shims stop a container.
    let setup = Setup::new(&[
        "sh",
        "-c",
        "trap 'exit 3' TERM; while :; do sleep 0.05; done",
    ]);
    let id = "default-signal";
    setup.start_with_monitor(id);
    let out = setup.runc(&["kill", id]);
    assert!(out.status.success(), "{out:?}");
    let stopped = || {
        let state = setup.runc(&["state", id]);
        let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
        state["status"] == "stopped"
    };
    assert!(eventually(stopped), "TERM reached the trap");
    assert!(setup.runc(&["delete", id]).status.success());
}

#[test]
fn the_pid_file_names_the_init_in_the_containers_cgroup_and_the_monitor_sees_its_end() {
    // containerd's shim reaps the process the pid file names for the container's exit status,
    // and reads that process's cgroup for `docker stats` and OOM events: as runc's, the pid
    // file must name the init, not the monitor (which sits in the shim's own cgroup).
    if !adopted_inits() {
        eprintln!("skipped: before Linux 6.15 the pid file names the monitor");
        return;
    }
    let setup = Setup::new(&["sleep", "1000"]);
    let poststop = setup.dir.path().join("poststop");
    setup.with_hooks(serde_json::json!({ "poststop": [recording_hook(&poststop)] }));
    let id = "named-init";
    let named = setup.create_named(id);
    let monitor = setup.monitor_of(id);
    assert_ne!(named, monitor, "the pid file names the monitor");
    let state = setup.runc(&["state", id]);
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(state["pid"], named, "{state}");
    let pid_ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_ne!(pid_ns(named), pid_ns(monitor), "not in the container");
    let cgroups = std::fs::read_to_string(format!("/proc/{named}/cgroup")).unwrap();
    let memory = format!(":memory:/eci/{id}");
    assert!(
        cgroups.lines().any(|line| line.ends_with(&memory)),
        "not in the container's cgroup: {cgroups}"
    );
    assert!(
        !descendants(monitor).contains(&named),
        "the monitor's child, not the caller's"
    );
    assert!(setup.runc_detached(&["start", id]));
    // The container's end, which its adopter reaps and the monitor learns of on its own; an
    // engine deletes the container as soon as the reaping tells it, while the monitor may
    // still be cleaning up: the delete waits for it.
    // SAFETY: kill takes plain integers; the init is alive (it sleeps).
    assert_eq!(unsafe { libc::kill(named, libc::SIGKILL) }, 0);
    assert!(
        eventually(|| !Path::new(&format!("/proc/{named}")).exists()),
        "reaped by its adopter"
    );
    let delete = setup.runc(&["delete", id]);
    assert!(delete.status.success(), "{delete:?}");
    assert_eq!(recorded(&poststop)["status"], "stopped");
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = hierarchy.path().join("eci").join(id);
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    assert!(!setup.container_dir(id).exists());
    assert!(
        eventually(|| !Path::new(&format!("/proc/{monitor}")).exists()),
        "the monitor exits with its container"
    );
}

/// SIGKILLs a container's monitor and waits until it is gone (reaped by whoever adopted it
/// when the test's `eci-runc create` exited).
fn kill_monitor(monitor: i32) {
    // SAFETY: kill takes plain integers; the monitor lives (it serves its container).
    assert_eq!(unsafe { libc::kill(monitor, libc::SIGKILL) }, 0);
    assert!(
        eventually(|| !Path::new(&format!("/proc/{monitor}")).exists()),
        "the monitor is dead"
    );
}

/// Whether `create` leaves the init to its caller's adopter and names it in the pid file
/// (Linux 6.15 and later), rather than naming the monitor.
fn adopted_inits() -> bool {
    eci::eci_ns::pidfd::exit_status_outlives_reaping()
}

#[test]
fn delete_leaves_alone_a_cgroup_made_again_at_a_dead_containers_path() {
    let setup = Setup::new(&["sleep", "1000"]);
    let id = "orphan-reused";
    let monitor = setup.start_with_monitor(id);
    let state = setup.runc(&["state", id]);
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    let init = state["pid"].as_i64().unwrap() as i32;
    let kill = |pid: i32| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
    };
    kill(monitor).unwrap();
    kill(init).unwrap();
    // The container's cgroup goes, and one is made again at its path, with a process that is
    // not the container's.
    let dirs: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h| h.path().join("eci").join(id))
        .filter(|d| d.is_dir())
        .collect();
    assert!(!dirs.is_empty());
    for dir in &dirs {
        let gone = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            std::fs::remove_dir(dir).is_ok()
        });
        assert!(
            gone,
            "{} is removed once the container is dead",
            dir.display()
        );
    }
    let memory = Path::new("/sys/fs/cgroup/memory/eci").join(id);
    let pids_dir = if Path::new("/sys/fs/cgroup/memory/eci").is_dir() {
        memory
    } else {
        dirs[0].clone()
    };
    std::fs::create_dir(&pids_dir).unwrap();
    let mut bystander = Command::new("sleep").arg("1000").spawn().unwrap();
    std::fs::write(pids_dir.join("cgroup.procs"), bystander.id().to_string()).unwrap();

    let delete = setup.runc(&["delete", id]);
    let alive = bystander.try_wait().unwrap().is_none();
    // Taken out again before anything can fail.
    let _ = std::fs::write(
        Path::new("/sys/fs/cgroup/memory/cgroup.procs"),
        bystander.id().to_string(),
    );
    let _ = std::fs::write(
        Path::new("/sys/fs/cgroup/unified/cgroup.procs"),
        bystander.id().to_string(),
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
    let _ = std::fs::remove_dir(&pids_dir);
    assert!(delete.status.success(), "{delete:?}");
    assert!(alive, "a process of the cgroup made again was killed");
    assert!(!setup.container_dir(id).exists());
}

#[test]
fn a_killed_virtual_files_daemon_is_replaced_and_the_container_reads_on() {
    let setup = Setup::new(&["sleep", "1000"]);
    setup.edit_spec(|spec| spec["linux"]["resources"]["memory"]["limit"] = 268435456.into());
    let id = "reads-on";
    setup.start_with_monitor(id);
    let meminfo = || {
        let out = setup.runc(&["exec", id, "grep", "MemTotal", "/proc/meminfo"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    const LIMITED: &str = "MemTotal:         262144 kB\n";
    assert_eq!(meminfo(), LIMITED);
    let daemon = setup.virtd_pid("pid").expect("a daemon serves the files");
    let keeper = setup
        .virtd_pid("keeper")
        .expect("a keeper holds the connection");

    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(daemon, libc::SIGKILL) };
    assert_eq!(
        meminfo(),
        LIMITED,
        "the files work again, and never show the host's"
    );
    let replaced = setup.virtd_pid("pid");
    assert!(replaced.is_some_and(|p| p != daemon), "{replaced:?}");
    assert_eq!(setup.virtd_pid("keeper"), Some(keeper));
    assert!(setup.runc(&["delete", "--force", id]).status.success());
}

/// `create` forks its monitor; should the client ever have threads, it executes `eci-runc
/// monitor` instead. That path, started here as `create` would start it (a session of its own,
/// its report on fd 3), creates the container, runs it when started and exits with its code.
#[test]
fn a_monitor_executed_as_its_own_program_runs_the_container() {
    use std::io::BufRead;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let setup = Setup::new(&["sh", "-c", "exit 3"]);
    let id = "executed-monitor";
    let root = setup.dir.path().join("root");
    std::fs::create_dir_all(root.join(id)).unwrap();
    let (ready, writer) = std::io::pipe().unwrap();
    let fd = writer.as_raw_fd();
    let mut command = Command::new(eci_runc());
    command
        .arg("--root")
        .arg(&root)
        .args(["monitor", "--bundle", &setup.bundle(), id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec only dup2 and setsid, both async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(fd, 3) == -1 || libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut monitor = command.spawn().unwrap();
    drop(writer);
    let mut report = String::new();
    std::io::BufReader::new(ready)
        .read_line(&mut report)
        .unwrap();
    let state = setup.runc(&["state", id]);
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(state["status"], "created", "{state}");
    // What `create` writes in the pid file: the init, which the monitor's adopter reaps (or
    // the monitor, on kernels that forget a reaped process's status).
    let named = if adopted_inits() {
        state["pid"].to_string()
    } else {
        monitor.id().to_string()
    };
    assert_eq!(report.trim(), format!("ok {named}"));
    let cgroup = format!("/sys/fs/cgroup/memory/eci/{id}");
    assert!(Path::new(&cgroup).exists(), "the container's cgroup");
    assert!(setup.runc(&["start", id]).status.success());
    assert_eq!(monitor.wait().unwrap().code(), Some(3));
    // What the engine asks after the exit comes from the file written at create.
    let stopped = setup.runc(&["state", id]);
    let stopped: serde_json::Value = serde_json::from_slice(&stopped.stdout).unwrap();
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert_eq!(stopped["id"], id, "{stopped}");
    assert_eq!(
        stopped["pid"], 0,
        "no pid, as runc says of a stopped container"
    );
    assert_eq!(stopped["bundle"], setup.bundle(), "{stopped}");
    // Its socket and the cgroup record `delete` would need are gone with the container.
    assert!(!root.join(id).join("monitor.sock").exists());
    assert!(!root.join(id).join("cgroup").exists());
    assert!(
        !Path::new(&cgroup).exists(),
        "the monitor gave everything back"
    );
}

impl Setup {
    /// Adds `hooks` (an OCI `hooks` object) to the bundle's config.json.
    fn with_hooks(&self, hooks: serde_json::Value) {
        self.edit_spec(|spec| spec["hooks"] = hooks);
    }
}

/// A hook that writes the state it is given on stdin to `file`.
fn recording_hook(file: &Path) -> serde_json::Value {
    serde_json::json!({ "path": "/usr/bin/tee", "args": ["tee", file] })
}

/// Waits up to ten seconds for `file` to exist; its JSON.
fn recorded(file: &Path) -> serde_json::Value {
    for _ in 0..200 {
        if let Ok(bytes) = std::fs::read(file) {
            if let Ok(state) = serde_json::from_slice(&bytes) {
                return state;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{} was never written", file.display());
}

#[test]
fn oci_hooks_run_on_the_host_with_the_containers_state() {
    let setup = Setup::new(&["true"]);
    let out = setup.dir.path().join("hooks");
    std::fs::create_dir(&out).unwrap();
    let names = ["createRuntime", "prestart", "poststart", "poststop"];
    let mut hooks = serde_json::Map::new();
    for name in names {
        hooks.insert(
            name.into(),
            serde_json::json!([recording_hook(&out.join(name))]),
        );
    }
    // A slow poststart hook: start returns only once it has run, as the runtime spec says.
    let poststart = format!("sleep 0.3; exec tee {}", out.join("poststart").display());
    hooks.insert(
        "poststart".into(),
        serde_json::json!([{ "path": "/bin/sh", "args": ["sh", "-c", poststart] }]),
    );
    setup.with_hooks(hooks.into());
    let id = "hooked";
    assert!(setup.runc_detached(&["create", "--bundle", &setup.bundle(), id]));
    // Both run before create returns, on the host, with the container created.
    for name in ["createRuntime", "prestart"] {
        let state = recorded(&out.join(name));
        assert_eq!(state["status"], "created", "{name}: {state}");
        assert_eq!(state["id"], id, "{name}: {state}");
        assert_eq!(state["bundle"], setup.bundle(), "{name}: {state}");
        let pid = state["pid"].as_i64().expect("a pid");
        assert!(
            Path::new(&format!("/proc/{pid}/ns/user")).exists(),
            "{name}: the init's namespaces are there to be found: {state}"
        );
    }
    assert!(!out.join("poststart").exists(), "poststart waits for start");
    assert!(setup.runc(&["start", id]).status.success());
    assert!(
        out.join("poststart").exists(),
        "start returned before poststart ran"
    );
    let started = recorded(&out.join("poststart"));
    assert_eq!(started["status"], "running", "{started}");
    // poststop runs once the container is gone: its init's pid is no longer its own.
    let stopped = recorded(&out.join("poststop"));
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    assert_eq!(stopped["pid"], 0, "{stopped}");
    assert!(setup.runc(&["delete", id]).status.success());
}

#[test]
fn a_poststart_hook_that_never_ends_holds_only_start() {
    // runc runs poststart hooks in `start`'s own process. eci-runc's monitor ran them in its
    // request loop, so a hook without a timeout that never ended held every later `state`,
    // `kill` and `delete` of the container as well; then, run beside the loop, a forced delete
    // left the hook running and `start` without an answer.
    let (setup, id, hook, mut start) = poststart_that_hangs("poststart-hangs", &["sleep", "1000"]);
    let state = finished_within(setup.command(&["state", id]), 10).expect("state answered");
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(state["status"], "running", "{state}");
    let delete =
        finished_within(setup.command(&["delete", "--force", id]), 10).expect("delete answered");
    assert!(delete.status.success(), "{delete:?}");
    assert_hook_ended_and_start_answered(hook, &mut start);
}

#[test]
fn a_container_that_ends_while_its_poststart_hook_runs_can_be_deleted() {
    // The container's end was dealt with only once the hook had run: the monitor gave up its
    // socket and waited, so `delete` waited a minute for it and then went on beside it.
    let (setup, id, hook, mut start) = poststart_that_hangs("poststart-ended", &["true"]);
    let stopped = || {
        let state = setup.runc(&["state", id]);
        serde_json::from_slice::<serde_json::Value>(&state.stdout)
            .is_ok_and(|state| state["status"] == "stopped")
    };
    assert!(eventually(stopped), "the container reads stopped");
    let delete = finished_within(setup.command(&["delete", id]), 10).expect("delete answered");
    assert!(delete.status.success(), "{delete:?}");
    assert_hook_ended_and_start_answered(hook, &mut start);
}

/// A container created from a bundle running `args` whose poststart hook never ends, and
/// started: the setup, the container's ID, the hook's pid and the `start` still waiting.
fn poststart_that_hangs(
    id: &'static str,
    args: &[&str],
) -> (Setup, &'static str, i32, std::process::Child) {
    let setup = Setup::new(args);
    let pid_file = setup.dir.path().join("hook.pid");
    let hook = format!(
        "echo $$ > {}.new; mv {0}.new {0}; exec sleep 1000",
        pid_file.display()
    );
    setup.with_hooks(serde_json::json!({
        "poststart": [{ "path": "/bin/sh", "args": ["sh", "-c", hook] }]
    }));
    assert!(setup.runc_detached(&["create", "--bundle", &setup.bundle(), id]));
    let start = setup.command(&["start", id]).spawn().unwrap();
    assert!(eventually(|| pid_file.exists()), "the hook ran");
    let pid = read_pid(&pid_file);
    (setup, id, pid, start)
}

/// The hook `pid` is killed, and `start` answered as a start whose container ran.
fn assert_hook_ended_and_start_answered(pid: i32, start: &mut std::process::Child) {
    // SAFETY: kill takes plain integers (signal 0 only asks whether the process exists).
    let hook_lives = || unsafe { libc::kill(pid, 0) } == 0 && !common::is_zombie(pid);
    let hook_ended = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !hook_lives()
    });
    if !hook_ended {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let answered = (0..100).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        start.try_wait().unwrap()
    });
    assert!(hook_ended, "the hook was left running");
    assert!(answered.expect("start returned").success(), "start failed");
}

impl Setup {
    /// `eci-runc ARGS` on this root, output piped.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(eci_runc());
        command
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

/// `command`'s output if it ends within `seconds`; else it is killed and there is none.
fn finished_within(mut command: Command, seconds: u64) -> Option<Output> {
    let mut child = command.spawn().unwrap();
    for _ in 0..seconds * 10 {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_failing_prestart_hook_fails_create_and_leaves_nothing() {
    let setup = Setup::new(&["true"]);
    setup.with_hooks(serde_json::json!({
        "prestart": [{ "path": "/bin/false", "args": ["false"] }]
    }));
    let id = "hook-fails";
    let out = setup.create_failing(id);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hook /bin/false failed"), "{err}");
    assert!(
        !setup.container_dir(id).exists(),
        "no container directory is left"
    );
    assert!(
        !Path::new(&format!("/sys/fs/cgroup/memory/eci/{id}")).exists(),
        "no cgroup is left"
    );
    let state = setup.runc(&["state", id]);
    assert!(!state.status.success(), "no container is left");
}

#[test]
fn a_hook_that_reads_no_state_still_times_out() {
    // A state larger than a pipe holds (an annotation of 200 KiB) written to a hook that never
    // reads it held the monitor until the hook ended, past its timeout.
    let setup = Setup::new(&["true"]);
    setup.with_hooks(serde_json::json!({
        "prestart": [{ "path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1 }]
    }));
    setup.edit_spec(|spec| {
        spec["annotations"] = serde_json::json!({ "org.example.big": "x".repeat(200 * 1024) });
    });
    let started = std::time::Instant::now();
    let out = setup.create_failing("hook-stdin");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hook /bin/sleep timed out"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_monitor_killed_while_a_hook_runs_leaves_no_container() {
    // The container exists while its prestart hooks run, which may take minutes: a monitor
    // killed meanwhile (OOM, a delete --force that lost patience) leaves it to create.
    let setup = Setup::new(&["sleep", "1000"]);
    let started = setup.dir.path().join("hook-started");
    let hook = format!("touch {}; exec sleep 31.7", started.display());
    setup.with_hooks(serde_json::json!({
        "prestart": [{ "path": "/bin/sh", "args": ["sh", "-c", hook] }]
    }));
    let id = "hook-monitor-killed";
    let mut create = setup
        .create_command(id)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(|| started.exists()), "the hook ran");
    let record = std::fs::read(setup.container_dir(id).join("monitor")).unwrap();
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    let monitor = record["pid"].as_i64().unwrap() as i32;
    // The container's cgroup in the first hierarchy that has it (memory on v1, the unified
    // one on v2).
    let cgroup = [
        "/sys/fs/cgroup/memory/eci",
        "/sys/fs/cgroup/unified/eci",
        "/sys/fs/cgroup/eci",
    ]
    .iter()
    .map(|dir| Path::new(dir).join(id))
    .find(|dir| dir.exists())
    .expect("the container's cgroup");
    kill_monitor(monitor);
    let _ = Command::new("pkill").args(["-f", "sleep 31.7"]).status();
    assert!(!create.wait().unwrap().success());
    assert!(!cgroup.exists(), "no cgroup is left");
    assert!(
        !setup.container_dir(id).exists(),
        "no container directory is left"
    );
}

/// A live process's resident KiB (VmRSS).
fn resident_kib(pid: i32) -> u64 {
    common::resident_kib(pid).unwrap_or_else(|| panic!("process {pid} is gone"))
}

/// The process JSON for `exec --process` of `sh -c SCRIPT` as root with CAP_SYS_ADMIN and
/// CAP_SYS_CHROOT.
fn admin_process(script: &str) -> serde_json::Value {
    let caps = ["CAP_SYS_ADMIN", "CAP_SYS_CHROOT", "CAP_KILL"];
    serde_json::json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", script],
        "env": ["PATH=/bin"],
        "cwd": "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
    })
}

#[test]
fn idle_monitors_and_helpers_give_back_the_pages_their_start_touched_and_serve_on() {
    // Creating a container runs most of eci-runc; a monitor then idle for 2 s unmaps that
    // code (about 4.5 MiB of program and libc text in a release build, from 6 MiB RSS to 0.8),
    // and so does the mount helper, once, and the root's virtual files daemon and its keeper.
    // All of them keep serving: an exec mounts a tmpfs (the helper) and a procfs (the host
    // half, a thread of the monitor, builds it), and the monitor comes back down once idle
    // again. A detached exec's stand-in trims as well.
    let setup = Setup::new(&["sleep", "1000"]);
    setup.edit_spec(|spec| spec["process"] = admin_process("sleep 1000"));
    let id = "idle-trim";
    let monitor = setup.create_with_monitor(id);
    // Not the init, which is still eci-runc until `start`, in the container's PID namespace.
    let pid_ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let helpers: Vec<i32> = descendants(monitor)
        .into_iter()
        .filter(|&pid| comm(pid) == "eci-runc" && pid_ns(pid) == pid_ns(monitor))
        .collect();
    assert_eq!(
        helpers.len(),
        1,
        "the mount helper; its host half is a thread"
    );
    let [daemon, keeper] = ["pid", "keeper"].map(|name| setup.virtd_pid(name).unwrap());
    // Sampled before any of them has been idle for 2 s; each must come down by its margin.
    let busy = |pid| resident_kib(pid);
    let (monitor_busy, daemon_busy, keeper_busy) = (busy(monitor), busy(daemon), busy(keeper));
    let mut expected: Vec<(&str, i32, u64)> = vec![
        ("monitor", monitor, monitor_busy / 2),
        ("daemon", daemon, daemon_busy - 512),
        ("keeper", keeper, keeper_busy),
    ];
    for &helper in &helpers {
        expected.push(("helper", helper, busy(helper) - 256));
    }
    assert!(setup.runc_detached(&["start", id]));
    for (what, pid, below) in expected {
        assert!(
            eventually(|| resident_kib(pid) < below),
            "{what} {pid} still {} KiB after 6 s (wanted under {below})",
            resident_kib(pid)
        );
    }
    let idle = resident_kib(monitor);
    let process = setup.dir.path().join("mounts.json");
    let script = "mkdir /dev/shm/t /dev/shm/p && mount -t tmpfs t /dev/shm/t \
        && mount -t proc p /dev/shm/p && test -e /dev/shm/p/self/status && echo served";
    std::fs::write(&process, admin_process(script).to_string()).unwrap();
    let exec = setup.runc(&["exec", "--process", process.to_str().unwrap(), id]);
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        "served\n",
        "{exec:?}"
    );
    assert!(
        resident_kib(monitor) > idle,
        "the exec's code faulted back in"
    );
    assert!(
        eventually(|| resident_kib(monitor) < monitor_busy / 2),
        "idle again after the exec"
    );
    // A detached exec's stand-in (the shim makes one for every `docker exec`) lives as long
    // as its process and gives back its start's pages too.
    let stand_in = setup.exec_detached(id, "exec", &["sleep", "1000"]);
    let stand_in_busy = resident_kib(stand_in);
    assert!(
        eventually(|| resident_kib(stand_in) < stand_in_busy / 2),
        "the stand-in still {} KiB after 6 s (busy: {stand_in_busy} KiB)",
        resident_kib(stand_in)
    );
    assert!(setup.runc(&["delete", "--force", id]).status.success());
}

#[test]
fn the_host_half_is_a_thread_of_the_monitor_in_a_namespace_of_its_own() {
    // The host half builds fresh procfs and sysfs trees with host credentials, in a mount
    // namespace of its own whose root is a minimal tmpfs. As a thread of the monitor it must
    // change nothing the monitor's other threads see, and it lives as long as its helper: a
    // helper that dies is replaced together with a new host half, and the old one ends.
    let setup = Setup::new(&["sleep", "1000"]);
    let id = "host-half-thread";
    let monitor = setup.start_with_monitor(id);
    let task = |tid: i32, what: &str| format!("/proc/{monitor}/task/{tid}/{what}");
    let halves = || -> Vec<i32> {
        std::fs::read_dir(format!("/proc/{monitor}/task"))
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .filter(|&tid| {
                std::fs::read_to_string(task(tid, "comm")).is_ok_and(|c| c == "eci-host-half\n")
            })
            .collect()
    };
    let link = |path: String| std::fs::read_link(path).unwrap();
    let [half] = halves()[..] else {
        panic!("one host half thread: {:?}", halves())
    };
    assert_eq!(
        link(task(monitor, "ns/mnt")),
        link("/proc/self/ns/mnt".into())
    );
    assert_ne!(link(task(half, "ns/mnt")), link(task(monitor, "ns/mnt")));
    // Its root is the minimal one (proc, the workshop, the bind sources), not the host's.
    let mut root: Vec<String> = std::fs::read_dir(task(half, "root"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    root.sort();
    assert_eq!(root, ["proc", "src", "tmp"]);
    assert!(std::fs::metadata(task(monitor, "root/etc")).is_ok());
    let helper = descendants(monitor)
        .into_iter()
        .find(|&pid| comm(pid) == "eci-runc")
        .unwrap();
    // SAFETY: kill with a pid and a signal.
    assert_eq!(unsafe { libc::kill(helper, libc::SIGKILL) }, 0);
    assert!(
        eventually(|| matches!(halves()[..], [new] if new != half)),
        "the old host half ended and a new one serves: {:?}",
        halves()
    );
    // The new pair builds a procfs for the container.
    let process = setup.dir.path().join("proc.json");
    let script =
        "mkdir /dev/shm/p && mount -t proc p /dev/shm/p && test -e /dev/shm/p/self/status \
        && echo built";
    std::fs::write(&process, admin_process(script).to_string()).unwrap();
    let exec = setup.runc(&["exec", "--process", process.to_str().unwrap(), id]);
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "built\n", "{exec:?}");
    assert!(setup.runc(&["delete", "--force", id]).status.success());
}

#[test]
fn a_mount_helper_in_a_callers_root_never_reads_that_roots_smaps() {
    // The mount helper takes each caller's root to resolve its paths, and trims once idle.
    // The container's init chroots into a directory with its own proc/self/smaps, claiming
    // the whole address space is clean, mounts there and waits: had the helper opened smaps
    // in that root when it trimmed, it would unmap its own stack and die (and be replaced;
    // seen with the smaps opened late and not checked to be procfs). It opened its own at
    // its start, so it trims and lives on, the same process.
    let forge = "mkdir -p /dev/f/proc/self /dev/f/bin /dev/f/t && cp /bin/busybox /dev/f/bin/ \
        && printf '0-7ffffffff000 r--p 00000000 08:01 1 /x\\nRss: 9 kB\\nAnonymous: 0 kB\\n\
Swap: 0 kB\\nLocked: 0 kB\\n' > /dev/f/proc/self/smaps \
        && chroot /dev/f /bin/busybox mount -t tmpfs t /t && touch /dev/f/t/mounted; sleep 1000";
    let setup = Setup::new(&["sleep", "1000"]);
    setup.edit_spec(|spec| spec["process"] = admin_process(forge));
    let id = "forged-smaps";
    let monitor = setup.start_with_monitor(id);
    let helper = descendants(monitor)
        .into_iter()
        .find(|&pid| comm(pid) == "eci-runc")
        .unwrap();
    let busy = resident_kib(helper);
    let root = format!("/proc/{helper}/root");
    assert!(
        eventually(|| std::fs::read_link(&root).is_ok_and(|r| r == Path::new("/dev/f"))),
        "the helper never took the caller's root"
    );
    let trimmed = eventually(|| common::resident_kib(helper).is_some_and(|kib| kib + 256 < busy));
    let helpers: Vec<i32> = descendants(monitor)
        .into_iter()
        .filter(|&pid| comm(pid) == "eci-runc")
        .collect();
    assert!(
        helpers.contains(&helper),
        "helper {helper} replaced: {helpers:?}"
    );
    assert!(trimmed, "helper {helper} did not trim: {busy} KiB busy");
    let ls = setup.runc(&["exec", id, "ls", "/dev/f/t"]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout), "mounted\n", "{ls:?}");
    assert!(setup.runc(&["delete", "--force", id]).status.success());
}

/// Whether `condition` holds within 6 s (looked at every 100 ms).
fn eventually(condition: impl Fn() -> bool) -> bool {
    (0..60).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        condition()
    })
}

/// Every descendant of `pid`.
fn descendants(pid: i32) -> Vec<i32> {
    let children = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .flat_map(|task| {
            std::fs::read_to_string(task.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect::<Vec<_>>();
    let mut all = children.clone();
    for child in children {
        all.extend(descendants(child));
    }
    all
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn a_container_joins_only_the_namespaces_of_its_own_roots_containers() {
    let owners = Setup::new(&["sleep", "1000"]);
    let init = owners.create_named("net-owner");
    let join_owner = |spec: &mut serde_json::Value| {
        let namespaces = spec["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|ns| ns["type"] != "network");
        namespaces
            .push(serde_json::json!({"type": "network", "path": format!("/proc/{init}/ns/net")}));
    };
    // Another root (another engine's runtime) may not reach it.
    let others = Setup::new(&["true"]);
    others.edit_spec(join_owner);
    let refused = others.runc_detached(&["create", "--bundle", &others.bundle(), "outsider"]);
    assert!(!refused);
    assert!(
        others
            .detached_errors()
            .contains("no container of this runtime's root"),
        "{}",
        others.detached_errors()
    );
    // Its own root's containers may.
    owners.edit_spec(join_owner);
    owners.create_named("net-joiner");
    for id in ["net-joiner", "net-owner"] {
        let deleted = owners.runc(&["delete", "--force", id]);
        assert!(deleted.status.success(), "{deleted:?}");
    }
}

/// Serves `socket` from a forked child that listens as uid 65534 (after binding as root, in a
/// directory only root may enter) and answers every request `ok FAKE`. Killed and reaped
/// by the returned guard.
fn fake_monitor(socket: &Path) -> ChildGuard {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = socket.as_os_str().as_bytes();
    assert!(path.len() < addr.sun_path.len());
    for (slot, byte) in addr.sun_path.iter_mut().zip(path) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: the child makes only async-signal-safe system calls and never returns.
    match unsafe { libc::fork() } {
        // SAFETY: plain system calls on buffers and an address that live through them.
        0 => unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let size = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            let bound = libc::bind(fd, (&raw const addr).cast(), size) == 0;
            // The peer's credentials are taken at listen(2).
            if !bound || libc::setresgid(65534, 65534, 65534) != 0 {
                libc::_exit(1);
            }
            if libc::setresuid(65534, 65534, 65534) != 0 || libc::listen(fd, 8) != 0 {
                libc::_exit(1);
            }
            loop {
                let conn = libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut());
                if conn >= 0 {
                    // The request first, as a monitor reads it.
                    let mut request = [0u8; 256];
                    libc::read(conn, request.as_mut_ptr().cast(), request.len());
                    let answer = b"ok FAKE\n";
                    libc::write(conn, answer.as_ptr().cast(), answer.len());
                    libc::close(conn);
                }
            }
        },
        pid => {
            assert!(pid > 0, "fork");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !socket.exists() {
                assert!(std::time::Instant::now() < deadline, "the fake socket");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // listen(2) follows the bind at once; give it its moment.
            std::thread::sleep(std::time::Duration::from_millis(50));
            ChildGuard(pid)
        }
    }
}

/// Kills and reaps a forked child when dropped.
struct ChildGuard(libc::pid_t);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SAFETY: kill and waitpid on a child of this process.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}

#[test]
fn only_a_root_of_roots_and_a_monitor_of_host_roots_are_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("eci-runc-root")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("x")).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    let state = || {
        Command::new(eci_runc())
            .arg("--root")
            .arg(&root)
            .args(["state", "x"])
            .output()
            .unwrap()
    };
    // A socket someone other than host root listens on is not the monitor's.
    let fake = fake_monitor(&root.join("x/monitor.sock"));
    let out = state();
    drop(fake);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("FAKE"),
        "{out:?}"
    );
    // A root others may write in is refused outright.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = state();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("may be changed by other users"),
        "{said}"
    );
}

#[test]
fn a_bundle_path_that_is_not_utf8_runs_and_a_broken_state_is_an_error() {
    // JSON strings are Unicode: the state shows such a path with U+FFFD; the monitor used to
    // panic writing it.
    use std::os::unix::ffi::OsStrExt;
    let setup = Setup::new(&["sleep", "1000"]);
    let odd = setup
        .dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"bundle-\xff"));
    std::fs::rename(setup.bundle(), &odd).unwrap();
    let id = "odd-bundle";
    let created = Command::new(eci_runc())
        .arg("--root")
        .arg(setup.dir.path().join("root"))
        .args(["create", "--bundle"])
        .arg(&odd)
        .arg(id)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(created.success());
    let state = setup.runc(&["state", id]);
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(state["status"], "created");
    assert!(state["bundle"]
        .as_str()
        .unwrap()
        .ends_with("bundle-\u{fffd}"));
    assert!(setup.runc(&["delete", "--force", id]).status.success());
    // A state file that is no JSON object (the monitor gone) is reported, not a panic.
    std::fs::create_dir_all(setup.container_dir("broken")).unwrap();
    std::fs::write(setup.container_dir("broken").join("state.json"), "[]").unwrap();
    let out = setup.runc(&["state", "broken"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("no JSON object"),
        "{said}"
    );
}

#[test]
fn delete_waits_for_a_monitor_that_runs_but_does_not_answer_yet() {
    // A monitor still making its container has no socket yet: removing its directory then
    // left a container no command could reach. Here a stand-in (a sleep) is recorded as the
    // monitor; delete waits while it runs, and goes on once it is gone.
    let dir = tempfile::Builder::new()
        .prefix("eci-runc-wait")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path().join("root");
    let container = root.join("waited");
    std::fs::create_dir_all(&container).unwrap();
    let mut stand_in = Command::new("sleep").arg("100").spawn().unwrap();
    let monitor = eci::eci_idmap::Holder::of(stand_in.id() as i32).unwrap();
    std::fs::write(
        container.join("monitor"),
        serde_json::to_vec(&monitor).unwrap(),
    )
    .unwrap();
    let mut delete = Command::new(eci_runc())
        .arg("--root")
        .arg(&root)
        .args(["delete", "waited"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(delete.try_wait().unwrap().is_none(), "delete waits");
    assert!(container.exists(), "nothing removed meanwhile");
    stand_in.kill().unwrap();
    stand_in.wait().unwrap();
    let out = delete.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!container.exists());
}
