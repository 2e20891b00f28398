//! Docker, started here with eci-runc as a runtime, runs containers through it: what a user of
//! `docker run --runtime=eci` sees. Needs root, docker.io and containerd (scripts/test installs
//! them) and busybox-static (for the image).

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A dockerd of the test's own, with its own data, sockets and containerd.
struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
    /// The engine's data, where a real install keeps it (under /var/lib/docker, which eci's
    /// policy restricts): its per-container files must still reach the container.
    data: tempfile::TempDir,
}

use common::example;

impl Dockerd {
    fn start() -> Dockerd {
        Dockerd::start_with_config(None)
    }

    /// A dockerd with `config` as its daemon.json (runtimes with their arguments, say), beside
    /// the plain `eci` runtime.
    fn start_with_config(config: Option<&str>) -> Dockerd {
        assert!(
            Path::new("/usr/sbin/dockerd").exists() || which("dockerd"),
            "dockerd is missing: install docker.io and containerd (scripts/test does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("eci-dk")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir_all("/var/lib/docker").unwrap();
        let data = tempfile::Builder::new()
            .prefix("eci-test-")
            .tempdir_in("/var/lib/docker")
            .unwrap();
        let path = |name: &str| dir.path().join(name);
        let log = std::fs::File::create(path("dockerd.log")).unwrap();
        let config_file = path("daemon.json");
        std::fs::write(&config_file, config.unwrap_or("{}")).unwrap();
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(&config_file)
            .arg("--data-root")
            .arg(data.path())
            .arg("--exec-root")
            .arg(path("exec"))
            .arg("--pidfile")
            .arg(path("pid"))
            .arg("-H")
            .arg(format!("unix://{}", path("docker.sock").display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .arg("--add-runtime")
            .arg(format!("eci={}", example("eci-runc").display()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let dockerd = Dockerd { child, dir, data };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dockerd.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                dockerd.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        dockerd.import_busybox();
        dockerd
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.docker_with_input(args, "")
    }

    /// `docker ARGS` with `input` on its standard input.
    /// The daemon's address, as DOCKER_HOST takes it.
    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn docker_with_input(&self, args: &[&str], input: &str) -> Output {
        self.docker_on(&self.host(), args, input)
    }

    /// `docker ARGS` against `host` (a proxy in front of this daemon, say), with `input`.
    fn docker_on(&self, host: &str, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("docker")
            .env("DOCKER_HOST", host)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    /// Runs `docker run --rm --runtime=eci --network none ARGS`; (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["run", "--rm", "--runtime=eci", "--network", "none"];
        all.extend_from_slice(args);
        let out = self.docker(&all);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// `docker run` of the test image through eci under `name`, kept for later commands
    /// (`flags` such as `-d`).
    fn run_named(&self, flags: &[&str], name: &str, command: &[&str]) -> Output {
        let mut all = vec!["run"];
        all.extend_from_slice(flags);
        all.extend([
            "--name",
            name,
            "--runtime=eci",
            "--network",
            "none",
            "eci-busybox",
        ]);
        all.extend_from_slice(command);
        self.docker(&all)
    }

    fn import_busybox(&self) {
        let bundle = self.dir.path().join("image");
        let built = Command::new("scripts/busybox-bundle")
            .arg(&bundle)
            .status()
            .unwrap();
        assert!(
            built.success(),
            "scripts/busybox-bundle (needs busybox-static and jq)"
        );
        let import = format!(
            "tar -C {} -c . | DOCKER_HOST={} docker import - eci-busybox",
            bundle.join("rootfs").display(),
            self.host()
        );
        let status = Command::new("sh")
            .args(["-c", &import])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "docker import");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            self.docker(&["rm", "-f", id]);
        }
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefixes = [self.dir.path(), self.data.path()].map(|p| p.to_string_lossy().to_string());
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| prefixes.iter().any(|prefix| p.starts_with(prefix.as_str())))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// `docker run -i` of the test image through eci, without a network; the command follows.
const RUN_INTERACTIVE: [&str; 7] = [
    "run",
    "-i",
    "--rm",
    "--runtime=eci",
    "--network",
    "none",
    "eci-busybox",
];

/// A daemon.json whose runtimes are eci-runc, each reading its own settings file:
/// `(name, settings)` pairs.
fn runtimes_reading(runtimes: &[(&str, &Path)]) -> String {
    let entries: Vec<String> = runtimes
        .iter()
        .map(|(name, settings)| {
            format!(
                r#""{name}": {{"path": "{}", "runtimeArgs": ["--settings", "{}"]}}"#,
                example("eci-runc").display(),
                settings.display()
            )
        })
        .collect();
    format!(r#"{{"runtimes": {{{}}}}}"#, entries.join(", "))
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn docker_runs_containers_through_eci_runc() {
    let docker = Dockerd::start();

    // A shell's view: root inside, a block of host IDs outside.
    let (code, out, err) = docker.run(&[
        "eci-busybox",
        "sh",
        "-c",
        "cat /proc/self/uid_map; id -u; exit 3",
    ]);
    assert_eq!(code, 3, "{err}\n{}", docker.log());
    let map: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(map[0], "0");
    assert!(
        map[1].parse::<u64>().unwrap() >= 65536,
        "container root is not a host system user: {out}"
    );
    assert_eq!(map[2], "65536");
    assert_eq!(out.lines().nth(1), Some("0"));

    // Detached, with logs, stop (SIGTERM reaches the program), start, restart, kill, rm -f.
    let script = "echo started; trap 'echo got term; exit 0' TERM; while true; do sleep 0.1; done";
    let d = docker.run_named(&["-d"], "d1", &["sh", "-c", script]);
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    std::thread::sleep(Duration::from_millis(800));
    assert!(docker.docker(&["stop", "-t", "10", "d1"]).status.success());
    let logs = String::from_utf8_lossy(&docker.docker(&["logs", "d1"]).stdout).to_string();
    assert_eq!(logs, "started\ngot term\n");
    let inspect = |field: &str| {
        let out = docker.docker(&["inspect", "-f", field, "d1"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(inspect("{{.State.ExitCode}}"), "0");
    assert!(docker.docker(&["start", "d1"]).status.success());
    assert!(docker
        .docker(&["restart", "-t", "2", "d1"])
        .status
        .success());
    assert_eq!(inspect("{{.State.Running}}"), "true");
    assert!(docker.docker(&["kill", "d1"]).status.success());
    assert_eq!(inspect("{{.State.ExitCode}}"), "137");
    assert!(docker.docker(&["rm", "-f", "d1"]).status.success());

    // Docker's overlay root is rebuilt from its layers idmapped: the image's files are root's
    // inside, and only what the container wrote is in its layer (shifting the owners on disk
    // instead would copy the whole image up).
    let script = "echo x > /new; stat -c '%u %g' /bin/busybox /new";
    let write = docker.run_named(&[], "layers", &["sh", "-c", script]);
    assert_eq!(
        String::from_utf8_lossy(&write.stdout),
        "0 0\n0 0\n",
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
    let diff = docker.docker(&["diff", "layers"]);
    assert_eq!(String::from_utf8_lossy(&diff.stdout), "A /new\n");
    assert!(docker.docker(&["rm", "layers"]).status.success());

    // An interactive shell's input (`docker run -i`) reaches the container and its answers
    // come back.
    let shell = docker.docker_with_input(
        &[RUN_INTERACTIVE.as_slice(), &["sh"]].concat(),
        "echo hello from stdin; id -u; exit 4\n",
    );
    assert_eq!(
        (
            shell.status.code(),
            String::from_utf8_lossy(&shell.stdout).as_ref()
        ),
        (Some(4), "hello from stdin\n0\n"),
        "{}",
        String::from_utf8_lossy(&shell.stderr)
    );

    // `docker run -it`: the client needs a terminal of its own, which script(1) gives it; the
    // shell in the container gets one too (from its own devpts) and reads the typed lines.
    let command = format!(
        "docker -H {} run -it --rm --runtime=eci --network none eci-busybox sh",
        docker.host()
    );
    let mut typed = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::{Read, Write};
    // Typed, and held open until the session ends: an end of input would end it first.
    let mut stdin = typed.stdin.take().unwrap();
    stdin.write_all(b"tty; exit 6\n").unwrap();
    let mut seen = String::new();
    typed
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    let status = typed.wait().unwrap();
    drop(stdin);
    let seen = seen.replace('\r', "");
    assert_eq!(status.code(), Some(6), "{seen}");
    assert!(seen.contains("/dev/pts/0\n"), "{seen}");

    // Limits and read-only roots.
    let (_, out, err) = docker.run(&[
        "-m",
        "256m",
        "eci-busybox",
        "grep",
        "MemTotal",
        "/proc/meminfo",
    ]);
    assert_eq!(out, "MemTotal:         262144 kB\n", "{err}");
    let (code, _, err) = docker.run(&["--read-only", "eci-busybox", "touch", "/x"]);
    assert_eq!(code, 1);
    assert!(err.contains("Read-only file system"), "{err}");
    // A program that is not there, or cannot run: the client's codes for these, as with runc.
    let (code, _, err) = docker.run(&["eci-busybox", "/no/such/program"]);
    assert_eq!(code, 127, "{err}");
    let (code, _, err) = docker.run(&["eci-busybox", "/etc/passwd"]);
    assert_eq!(code, 126, "{err}");

    // A shared host directory.
    let shared = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(shared.path().join("f"), "from the host\n").unwrap();
    let volume = format!("{}:/data", shared.path().display());
    let (_, out, err) = docker.run(&["-v", &volume, "eci-busybox", "cat", "/data/f"]);
    assert_eq!(out, "from the host\n", "{err}");

    // --privileged is confined: /proc/sys stays read-only, the masks stay.
    let (code, out, _) = docker.run(&[
        "--privileged",
        "eci-busybox",
        "sh",
        "-c",
        "mount -o remount,rw /proc/sys 2>/dev/null; echo $?; umount /proc/kallsyms 2>/dev/null; echo $?",
    ]);
    assert_eq!((code, out.as_str()), (0, "1\n1\n"));

    // The engine's socket is refused, with the reason in the client's error.
    let created_socket_dir = !Path::new("/var/run/docker.sock").exists();
    let (code, _, err) = docker.run(&[
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "eci-busybox",
        "true",
    ]);
    if created_socket_dir {
        let _ = std::fs::remove_dir("/var/run/docker.sock");
    }
    assert_eq!(code, 125);
    assert!(err.contains("bind mount of the Docker socket"), "{err}");

    // exec: output and exit code come back; the process is in the container's namespaces.
    let d = docker.run_named(&["-d"], "d2", &["sleep", "30"]);
    assert!(d.status.success());
    let exec = docker.docker(&[
        "exec",
        "d2",
        "sh",
        "-c",
        "cat /proc/self/uid_map; ls /proc | grep -c '^[0-9]'; exit 5",
    ]);
    assert_eq!(
        exec.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    let out = String::from_utf8_lossy(&exec.stdout).to_string();
    // The block the container's init holds, as the host sees it (the lease journal is
    // host-wide, so other tests' containers decide which block d2 gets). `docker top` lists
    // the container's own processes.
    let top = docker.docker(&["top", "d2", "-o", "pid"]);
    let top = String::from_utf8_lossy(&top.stdout).to_string();
    let init = top.lines().nth(1).unwrap_or_default().trim();
    let init_map = std::fs::read_to_string(format!("/proc/{init}/uid_map")).unwrap_or_default();
    assert_eq!(
        out.lines().next(),
        init_map.lines().next(),
        "same ID block as the container's init ({top}): {out}"
    );
    // grep may not exist yet when ls reads /proc.
    assert!(
        matches!(out.lines().nth(1), Some("3" | "4")),
        "sleep, sh, ls (and grep): the container's processes only: {out}"
    );

    // pause/unpause (the cgroup freezer), top (runc ps), update (new limits, seen inside).
    assert!(docker.docker(&["pause", "d2"]).status.success());
    let paused = docker.docker(&["inspect", "-f", "{{.State.Status}}", "d2"]);
    assert_eq!(String::from_utf8_lossy(&paused.stdout).trim(), "paused");
    assert!(docker.docker(&["unpause", "d2"]).status.success());
    let top = docker.docker(&["top", "d2"]);
    let top_out = String::from_utf8_lossy(&top.stdout).to_string();
    assert!(
        top.status.success() && top_out.contains("sleep 30") && top_out.lines().count() == 2,
        "the header and the container's one process: {top_out}{}",
        String::from_utf8_lossy(&top.stderr)
    );
    let update = docker.docker(&["update", "-m", "128m", "--memory-swap", "256m", "d2"]);
    assert!(
        update.status.success(),
        "{}",
        String::from_utf8_lossy(&update.stderr)
    );
    let meminfo = docker.docker(&["exec", "d2", "grep", "MemTotal", "/proc/meminfo"]);
    assert_eq!(
        String::from_utf8_lossy(&meminfo.stdout),
        "MemTotal:         131072 kB\n"
    );

    // The engine's State.Pid is the container's init, which the pid file names as runc's
    // does; containerd's shim reads the statistics and OOM kills from that process's cgroup.
    let inspect_of = |field: &str, name: &str| {
        let out = docker.docker(&["inspect", "-f", field, name]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // (Before Linux 6.15 the pid file names the monitor, and none of this holds.)
    if eci::eci_ns::pidfd::exit_status_outlives_reaping() {
        assert_eq!(inspect_of("{{.State.Pid}}", "d2"), init, "{top_out}");
        let stats = docker.docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "d2"]);
        let stats = String::from_utf8_lossy(&stats.stdout).to_string();
        assert!(stats.trim_end().ends_with("/ 128MiB"), "{stats}");
        let oom = docker.run_named(&["-m", "16m"], "oom", &["tail", "/dev/zero"]);
        assert_eq!(oom.status.code(), Some(137), "{oom:?}");
        assert_eq!(inspect_of("{{.State.OOMKilled}}", "oom"), "true");
        assert!(docker.docker(&["rm", "oom"]).status.success());
    }

    // Terminals: a pty from the container's own devpts, for exec -t and run -t.
    let tty = docker.docker(&[
        "exec",
        "-t",
        "d2",
        "sh",
        "-c",
        "tty; test -t 0 && echo is-a-tty",
    ]);
    assert_eq!(tty.status.code(), Some(0), "{tty:?}");
    let out = String::from_utf8_lossy(&tty.stdout).replace('\r', "");
    assert!(
        out.starts_with("/dev/pts/") && out.contains("is-a-tty"),
        "{out:?}"
    );
    let (code, out, err) = docker.run(&["-t", "eci-busybox", "tty"]);
    assert_eq!(
        (code, out.replace('\r', "").as_str()),
        (0, "/dev/pts/0\n"),
        "{err}"
    );
}

/// A child process killed when dropped, so that a failed test leaves none behind (holding the
/// test's output pipe open, among others).
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command's stdout then stderr, for assertions and their messages.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A raw HTTP exchange on a Unix socket: the response's status line and body.
fn raw_request(socket: &Path, request: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.lines().next().unwrap_or_default().to_string();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[test]
fn the_socket_proxy_enforces_the_command_list() {
    let docker = Dockerd::start();
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.json");
    std::fs::write(
        &settings,
        r#"{"enhancedContainerIsolation": {"value": true, "dockerSocketMount": {
             "imageList": {"images": ["eci-busybox"]},
             "commandList": {"type": "deny", "commands": ["push", "volume ls", "system df", "logs"]}}}}"#,
    )
    .unwrap();
    let socket = dir.path().join("proxy.sock");
    let upstream = docker.dir.path().join("docker.sock");
    let mut proxy = KilledOnDrop(
        Command::new(example("eci-docker-proxy"))
            .arg("--listen")
            .arg(&socket)
            .arg("--upstream")
            .arg(&upstream)
            .arg("--settings")
            .arg(&settings)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the proxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let proxy_host = format!("unix://{}", socket.display());
    let through = |args: &[&str], input: &str| {
        let out = docker.docker_on(&proxy_host, args, input);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    // A request the proxy refuses: the CLI exits with `code` and prints the proxy's `reason`.
    let refused = |args: &[&str], code: i32, reason: &str| {
        let (got, _, err) = through(args, "");
        assert_eq!(got, code, "{args:?}: {err}");
        assert!(err.contains(reason), "{args:?}: {err}");
    };

    // Allowed: listing, and a whole `docker run` (create, the attach stream, start, wait,
    // remove), with input going in and output coming back through the upgraded connection.
    let (code, out, err) = through(&["ps", "-a", "--format", "{{.Names}}"], "");
    assert_eq!(code, 0, "{err}");
    let run = [RUN_INTERACTIVE.as_slice(), &["sh", "-c", "cat; echo done"]].concat();
    let (code, out2, err) = through(&run, "through the proxy\n");
    assert_eq!(code, 0, "{err}\n{out}");
    assert_eq!(out2, "through the proxy\ndone\n");

    // Refused: the CLI prints the daemon's message; the engine never sees the request.
    let (code, _, err) = through(&["volume", "ls"], "");
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "'docker volume ls' is refused on this socket (commandList entry \"volume ls\")"
        ),
        "{err}"
    );
    let (code, _, err) = through(&["push", "eci-busybox"], "");
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "Error response from daemon: eci: 'docker push' is refused on this socket \
         (commandList entry \"push\")"
    );
    refused(&["system", "df"], 1, "(commandList entry \"system df\")");
    assert!(
        docker.docker(&["volume", "ls"]).status.success(),
        "the engine itself still answers"
    );
    // What the engine would fetch from the host's network for the caller (a loopback port
    // here, a cloud's metadata service elsewhere) is refused before it asks.
    refused(
        &["import", "http://127.0.0.1:9/x.tar", "fetched"],
        1,
        "comes from the host's network",
    );
    // So is what the engine would connect to or mount on the host for the container: a log
    // driver that ships its output, a volume it would mount over NFS.
    let gelf = [
        "run",
        "--rm",
        "--log-driver",
        "gelf",
        "--log-opt",
        "gelf-address=udp://127.0.0.1:9",
        "eci-busybox",
        "true",
    ];
    refused(&gelf, 125, "the log driver 'gelf' ships");
    let nfs = "type=volume,src=n,dst=/n,volume-opt=type=nfs,volume-opt=o=addr=127.0.0.1,\
               volume-opt=device=:/";
    refused(
        &["run", "--rm", "--mount", nfs, "eci-busybox", "true"],
        125,
        "a local volume of type 'nfs'",
    );
    // journald's env option overwrites the journal's fields, the one the engine finds a
    // container's logs by among them.
    let journald = [
        "run",
        "--rm",
        "--log-driver",
        "journald",
        "--log-opt",
        "env=CONTAINER_ID_FULL",
        "eci-busybox",
        "true",
    ];
    refused(
        &journald,
        125,
        "the log option 'env' of the journald driver",
    );
    // `docker top` runs the host's ps: only its standard formats, never a selection of host
    // processes or a relabelled PID column.
    let run_detached = ["run", "-d", "--network", "none", "--name", "topped"];
    let (code, _, err) = through(
        &[&run_detached[..], &["eci-busybox", "sleep", "100"]].concat(),
        "",
    );
    assert_eq!(code, 0, "{err}");
    let (code, listed, err) = through(&["top", "topped", "aux"], "");
    assert_eq!(code, 0, "{err}");
    assert!(listed.contains("sleep 100"), "{listed}");
    refused(&["top", "topped", "-C", "dockerd"], 1, "top's ps options");
    refused(&["top", "topped", "-oargs=PID", "e"], 1, "top's ps options");
    // An attach that replays the output so far is `docker logs` by another door.
    refused(&["logs", "topped"], 1, "(commandList entry \"logs\")");
    let replay = "POST /containers/topped/attach?logs=1&stdout=1 HTTP/1.1\r\n\
                  Host: docker\r\nConnection: close\r\n\r\n";
    let (status, body) = raw_request(&socket, replay);
    assert!(status.contains(" 403 "), "{status} {body}");
    assert!(body.contains("'docker logs' is refused"), "{body}");
    assert_eq!(through(&["rm", "-f", "topped"], "").0, 0);
    // A bind of a host path the rules refuse, missing or not: the engine would make a missing
    // one, and `docker cp` has it mount the binds itself. And `docker cp` of a container with
    // any bind is refused: a shared source may lead elsewhere by the time of the copy.
    let missing = format!("/etc/eci-made-{}", std::process::id());
    for bind in [format!("{missing}:/x"), "/etc:/x".to_string()] {
        refused(
            &["create", "-v", &bind, "eci-busybox", "true"],
            1,
            "is refused by the rule for /etc",
        );
    }
    assert!(!Path::new(&missing).exists());
    let shared_dir = tempfile::tempdir_in("/tmp").unwrap();
    let bind = format!("{}:/h", shared_dir.path().display());
    let create = [
        "create",
        "--name",
        "cp-bound",
        "--network",
        "none",
        "-v",
        &bind,
    ];
    let (code, _, err) = through(&[&create[..], &["eci-busybox", "true"]].concat(), "");
    assert_eq!(code, 0, "{err}");
    refused(
        &["cp", "cp-bound:/h/.", "-"],
        1,
        "docker cp into or out of a container with bind mounts",
    );
    refused(
        &["create", "--volumes-from", "cp-bound", "eci-busybox"],
        1,
        "VolumesFrom",
    );
    assert!(docker.docker(&["rm", "cp-bound"]).status.success());
    // A volume with mount options (here a bind of a shared directory, made on the host): the
    // engine would fill it from the image as root. And a plain volume is mounted by the engine
    // itself for a copy, by paths a container sharing it can change.
    let device = format!("device={}", shared_dir.path().display());
    let made = [
        "volume",
        "create",
        "--label",
        "org.eci.runtime=eci",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &device,
        "bound",
    ];
    assert!(docker.docker(&made).status.success());
    refused(
        &["create", "-v", "bound:/h", "eci-busybox"],
        1,
        "the volume bound has mount options",
    );
    // A volume not made through a socket of eci (here by the engine's own client, as for a
    // runc container) is out of reach: not mounted, inspected, removed, pruned nor made again.
    assert!(docker
        .docker(&["volume", "create", "theirs"])
        .status
        .success());
    let out_of_scope = "the volume theirs was not made through a socket of the runtime 'eci'";
    let mount = "type=volume,src=theirs,dst=/t";
    for args in [
        &["create", "-v", "theirs:/t", "eci-busybox"][..],
        &["create", "--mount", mount, "eci-busybox"],
        &["volume", "inspect", "theirs"],
        &["volume", "rm", "theirs"],
        &["volume", "create", "theirs"],
    ] {
        refused(args, 1, out_of_scope);
    }
    // Asked at API 1.41, under which an engine prunes every unused volume, named ones too
    // (from 1.42 a prune without `all` takes anonymous ones only, and would prove nothing).
    let prune = "POST /v1.41/volumes/prune HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n";
    let (status, body) = raw_request(&socket, prune);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let kept = docker.docker(&["volume", "inspect", "theirs"]);
    assert!(kept.status.success(), "a prune through the socket took it");
    // One made through the socket, or by a create through it, is its own: shared by its
    // containers, and removed through it.
    let (code, _, err) = through(&["volume", "create", "ours"], "");
    assert_eq!(code, 0, "{err}");
    for volume in ["ours", "implicit"] {
        let bind = format!("{volume}:/v");
        for command in ["echo kept > /v/f", "cat /v/f"] {
            let run = [
                "run",
                "--rm",
                "--network",
                "none",
                "-v",
                &bind,
                "eci-busybox",
            ];
            let (code, out, err) = through(&[&run[..], &["sh", "-c", command]].concat(), "");
            assert_eq!(code, 0, "{volume}: {err}");
            assert_eq!(
                out,
                if command.starts_with("cat") {
                    "kept\n"
                } else {
                    ""
                }
            );
        }
        let label = [
            "volume",
            "inspect",
            "--format",
            "{{index .Labels \"org.eci.runtime\"}}",
        ];
        let (code, out, err) = through(&[&label[..], &[volume]].concat(), "");
        assert_eq!((code, out.as_str()), (0, "eci\n"), "{err}");
        let (code, _, err) = through(&["volume", "rm", volume], "");
        assert_eq!(code, 0, "{err}");
    }
    assert!(docker
        .docker(&["volume", "rm", "theirs", "bound"])
        .status
        .success());
    // So are networks: another runtime's is neither joined, inspected nor removed; the
    // socket's own is.
    assert!(docker
        .docker(&["network", "create", "theirs-net"])
        .status
        .success());
    for args in [
        &["create", "--network", "theirs-net", "eci-busybox"][..],
        &["network", "inspect", "theirs-net"],
        &["network", "rm", "theirs-net"],
    ] {
        refused(
            args,
            1,
            "the network theirs-net was not made through a socket of the runtime",
        );
    }
    let (code, _, err) = through(&["network", "create", "ours-net"], "");
    assert_eq!(code, 0, "{err}");
    let run = [
        "run",
        "--rm",
        "--network",
        "ours-net",
        "eci-busybox",
        "true",
    ];
    let (code, _, err) = through(&run, "");
    assert_eq!(code, 0, "{err}");
    // An endpoint may not name another network than the one it is listed under (the engine
    // would join that one at start).
    let elsewhere = r#"{"Image":"eci-busybox","HostConfig":{"NetworkMode":"ours-net"},
        "NetworkingConfig":{"EndpointsConfig":{"ours-net":{"NetworkID":"theirs-net"}}}}"#;
    let request = format!(
        "POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{elsewhere}",
        elsewhere.len()
    );
    let (status, body) = raw_request(&socket, &request);
    assert_eq!(status, "HTTP/1.1 403 Forbidden", "{body}");
    assert!(body.contains("an endpoint's NetworkID"), "{body}");
    // A volume the proxy made for a create the engine refuses (no such image) goes again.
    let unmade = r#"{"Image":"no-such-image","HostConfig":{"Binds":["for-nothing:/n"]}}"#;
    let request = format!(
        "POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{unmade}",
        unmade.len()
    );
    let (status, body) = raw_request(&socket, &request);
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{body}");
    let inspect = docker.docker(&["volume", "inspect", "for-nothing"]);
    assert!(!inspect.status.success(), "the volume stayed");
    let (code, _, err) = through(&["network", "rm", "ours-net"], "");
    assert_eq!(code, 0, "{err}");
    assert!(docker
        .docker(&["network", "rm", "theirs-net"])
        .status
        .success());
    let create = [
        "create",
        "--name",
        "cp-vol",
        "--network",
        "none",
        "-v",
        "plain:/h",
    ];
    let (code, _, err) = through(&[&create[..], &["eci-busybox", "true"]].concat(), "");
    assert_eq!(code, 0, "{err}");
    refused(&["cp", "cp-vol:/h/.", "-"], 1, "bind mounts or volumes");
    // A network that would take over a host interface, or route an address range of the
    // host's.
    let takeover = [
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.name=lo",
        "lo-net",
    ];
    refused(
        &takeover,
        1,
        "a network with Options com.docker.network.bridge.name",
    );
    let routed = [
        "network",
        "create",
        "--subnet",
        "169.254.169.252/30",
        "meta-net",
    ];
    refused(&routed, 1, "IPAM.Config");
    // Checkpoints name host directories the engine makes and removes as root.
    let checkpoint =
        "GET /v1.41/containers/cp-vol/checkpoints?dir=/root HTTP/1.1\r\nHost: d\r\n\r\n";
    let (status, body) = raw_request(&socket, checkpoint);
    assert_eq!(status, "HTTP/1.1 403 Forbidden", "{body}");
    assert!(docker.docker(&["rm", "cp-vol"]).status.success());
    // A container prune through the socket takes only containers made through a socket of
    // eci, not a stopped runc container of the host's.
    let host_made = [
        "create",
        "--runtime",
        "runc",
        "--name",
        "host-made",
        "eci-busybox",
        "true",
    ];
    let made = docker.docker(&host_made);
    assert!(made.status.success(), "{made:?}");
    let inside = ["create", "--name", "made-inside", "eci-busybox", "true"];
    let (code, _, err) = through(&inside, "");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = through(&["container", "prune", "-f"], "");
    assert_eq!(code, 0, "{err}");
    let exists = |name: &str| docker.docker(&["inspect", name]).status.success();
    assert!(exists("host-made"), "a prune through the socket took it");
    assert!(
        !exists("made-inside"),
        "a prune through the socket left its own"
    );
    assert!(docker.docker(&["rm", "host-made"]).status.success());

    // A raw request is refused like the command, and a request whose body could be read two
    // ways never reaches the engine.
    let (status, body) = raw_request(&socket, "GET /v1.41/volumes HTTP/1.1\r\nHost: d\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert!(body.contains("volume ls"), "{body}");
    let (status, _) = raw_request(
        &socket,
        "POST /v1.41/containers/prune HTTP/1.1\r\nHost: d\r\nContent-Length: 4\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    let (status, _) = raw_request(
        &socket,
        "GET /v1.41/nothing/here HTTP/1.1\r\nHost: d\r\n\r\n",
    );
    assert_eq!(
        status, "HTTP/1.1 403 Forbidden",
        "unknown endpoints are refused"
    );

    // SIGTERM stops it and removes the socket.
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(proxy.0.id() as i32, libc::SIGTERM) };
    assert!(proxy.0.wait().unwrap().success());
    assert!(!socket.exists());
}

#[test]
fn an_allowed_image_reaches_the_engine_through_the_command_list() {
    // The engine's socket is where this dockerd listens; the probe comes from the build's
    // directory. eci-runc asks the engine which image each container runs.
    let dir = tempfile::tempdir().unwrap();
    let probe = PathBuf::from(env!("CARGO_BIN_EXE_eci-probe"));
    let settings = |images: &str, socket: &Path| {
        format!(
            r#"{{"enhancedContainerIsolation": {{"value": true, "dockerSocketMount": {{
                  "imageList": {{"images": [{images}]}},
                  "commandList": {{"type": "deny", "commands": ["volume*"]}}}}}},
                "eci": {{"engineSockets": ["{}"],
                         "sharedPaths": [{{"path": "{}", "readOnly": true}},
                                         {{"path": "/usr", "readOnly": true}}]}}}}"#,
            socket.display(),
            probe.parent().unwrap().display()
        )
    };
    // The daemon's socket path is only known once its directory exists: start it with the
    // runtimes reading settings files written next.
    let any = dir.path().join("any.json");
    let cli_only = dir.path().join("cli.json");
    let config = runtimes_reading(&[("eci-any", &any), ("eci-cli", &cli_only)]);
    std::fs::write(&any, "{}").unwrap();
    std::fs::write(&cli_only, "{}").unwrap();
    let docker = Dockerd::start_with_config(Some(&config));
    let socket = docker.dir.path().join("docker.sock");
    std::fs::write(&any, settings("\"*\"", &socket)).unwrap();
    std::fs::write(&cli_only, settings("\"docker:cli\"", &socket)).unwrap();

    let request = |runtime: &str, method: &str, target: &str, body: Option<&str>| {
        let out = docker.docker(&[
            "run",
            "--rm",
            "--runtime",
            runtime,
            "--network",
            "none",
            "-v",
            &format!("{}:/var/run/docker.sock", socket.display()),
            "-v",
            &format!("{}:/probe:ro", probe.display()),
            // eci-probe needs the C library, which the busybox image lacks.
            "-v",
            "/usr/lib:/lib:ro",
            "-v",
            "/usr/lib64:/lib64:ro",
            "eci-busybox",
            "/probe",
            "http",
            "/var/run/docker.sock",
            method,
            target,
            body.unwrap_or(""),
        ]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let run = |runtime: &str, target: &str| request(runtime, "GET", target, None);
    let (code, out, err) = run("eci-any", "/v1.41/containers/json");
    assert_eq!(
        (code, out.as_str()),
        (0, "HTTP/1.1 200 OK"),
        "{err}\n{}",
        docker.log()
    );
    let (code, out, err) = run("eci-any", "/v1.41/volumes");
    assert_eq!((code, out.as_str()), (0, "HTTP/1.1 403 Forbidden"), "{err}");
    // A container created through the socket runs with the holder's runtime: asking for the
    // engine's runc (no user namespace, host root) is refused, asking for none gets eci-any.
    let create = "/v1.41/containers/create?name=made-inside";
    let runc = r#"{"Image":"eci-busybox","HostConfig":{"Runtime":"runc","Privileged":true}}"#;
    let (code, out, err) = request("eci-any", "POST", create, Some(runc));
    assert_eq!((code, out.as_str()), (0, "HTTP/1.1 403 Forbidden"), "{err}");
    let plain = r#"{"Image":"eci-busybox","Cmd":["true"]}"#;
    let (code, out, err) = request("eci-any", "POST", create, Some(plain));
    assert_eq!((code, out.as_str()), (0, "HTTP/1.1 201 Created"), "{err}");
    let made = docker.docker(&["inspect", "-f", "{{.HostConfig.Runtime}}", "made-inside"]);
    assert_eq!(String::from_utf8_lossy(&made.stdout).trim(), "eci-any");
    // Containers of another runtime are out of reach (an exec into a runc one would be host
    // root); those of the holder's are not.
    let victim = docker.docker(&[
        "create",
        "--runtime",
        "runc",
        "--name",
        "victim",
        "eci-busybox",
        "true",
    ]);
    assert!(victim.status.success(), "{victim:?}");
    let exec = r#"{"Cmd":["true"],"Privileged":true}"#;
    let (code, out, err) = request(
        "eci-any",
        "POST",
        "/v1.41/containers/victim/exec",
        Some(exec),
    );
    assert_eq!((code, out.as_str()), (0, "HTTP/1.1 403 Forbidden"), "{err}");
    let (code, out, err) = run("eci-any", "/v1.41/containers/made-inside/json");
    assert_eq!((code, out.as_str()), (0, "HTTP/1.1 200 OK"), "{err}");
    // Nor may it have the engine run anything outside eci-any: a classic build (this engine's
    // default runtime is runc), a plugin, a swarm task.
    for target in [
        "/v1.41/build?t=made-inside",
        "/v1.41/plugins/pull?remote=vieux/sshfs",
        "/v1.41/swarm/init",
    ] {
        let (code, out, err) = request("eci-any", "POST", target, Some("{}"));
        assert_eq!(
            (code, out.as_str()),
            (0, "HTTP/1.1 403 Forbidden"),
            "{target}: {err}"
        );
    }
    assert!(docker
        .docker(&["rm", "made-inside", "victim"])
        .status
        .success());
    let (code, _, err) = run("eci-cli", "/v1.41/containers/json");
    assert_eq!(code, 125);
    assert!(
        err.contains("eci-busybox") && err.contains("is not in dockerSocketMount.imageList"),
        "{err}"
    );
}

/// A tag entry of `imageList` (`name:tag`, `name:*`) matches the image the registry gives for
/// the tag now, as the engine recorded it when it pulled the image; a local image tagged with
/// the allowed name does not match. The registry is one of the test's own on loopback, asked
/// through the engine.
#[test]
fn a_tag_entry_matches_the_image_the_registry_gives_for_the_tag() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("image");
    let built = Command::new("scripts/busybox-bundle")
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(built.success(), "scripts/busybox-bundle");
    // A file of its own: its layer must differ from eci-busybox's, built the same way.
    std::fs::write(bundle.join("rootfs/registry-image"), "eci/tool\n").unwrap();
    let registry = registry::serve("eci/tool", "v1", &bundle.join("rootfs"));
    let image = format!("{}/eci/tool:v1", registry.address);
    // Runtimes whose settings allow the image by its tag, and by any tag of its repository;
    // the engine's socket path is only known once the daemon runs.
    let by_tag = dir.path().join("tag.json");
    let any_tag = dir.path().join("any-tag.json");
    std::fs::write(&by_tag, "{}").unwrap();
    std::fs::write(&any_tag, "{}").unwrap();
    let config = runtimes_reading(&[("eci-tag", &by_tag), ("eci-any-tag", &any_tag)]);
    let docker = Dockerd::start_with_config(Some(&config));
    let socket = docker.dir.path().join("docker.sock");
    for (settings, entry) in [
        (&by_tag, image.clone()),
        (&any_tag, format!("{}/eci/tool:*", registry.address)),
    ] {
        let document = format!(
            r#"{{"enhancedContainerIsolation": {{"value": true, "dockerSocketMount": {{
                  "imageList": {{"images": ["{entry}"]}}}}}},
                "eci": {{"engineSockets": ["{}"]}}}}"#,
            socket.display()
        );
        std::fs::write(settings, document).unwrap();
    }
    let pulled = docker.docker(&["pull", &image]);
    assert!(
        pulled.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&pulled.stderr),
        docker.log()
    );
    let recorded = docker.docker(&["image", "inspect", "-f", "{{json .RepoDigests}}", &image]);
    let recorded = String::from_utf8_lossy(&recorded.stdout).to_string();
    assert!(recorded.contains(&registry.digest), "{recorded}");
    let bind = format!("{}:/var/run/docker.sock", socket.display());
    let run_image = |runtime: &str, image: &str| {
        let args = [
            "run",
            "--rm",
            "--runtime",
            runtime,
            "--network",
            "none",
            "-v",
            &bind,
            image,
        ];
        let out = docker.docker(&[&args[..], &["test", "-S", "/var/run/docker.sock"]].concat());
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let run = |runtime: &str| run_image(runtime, &image);
    for runtime in ["eci-tag", "eci-any-tag"] {
        let (code, err) = run(runtime);
        assert_eq!(code, 0, "{runtime}: {err}\n{}", docker.log());
    }
    // allowDerivedImages (on by default): an image built on the one a tag entry names passes
    // by its layers; one built on another image does not, and a `name:*` entry names no image
    // to build on.
    let context = dir.path().join("context");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(context.join("marker"), "derived\n").unwrap();
    for (tag, from) in [
        ("derived-tool", image.as_str()),
        ("unrelated-tool", "eci-busybox"),
    ] {
        let dockerfile = format!("FROM {from}\nCOPY marker /marker\n");
        std::fs::write(context.join("Dockerfile"), dockerfile).unwrap();
        let built = docker.docker(&["build", "-q", "-t", tag, context.to_str().unwrap()]);
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
    }
    for (runtime, tag, allowed) in [
        ("eci-tag", "derived-tool", true),
        ("eci-any-tag", "derived-tool", false),
        ("eci-tag", "unrelated-tool", false),
    ] {
        let (code, err) = run_image(runtime, tag);
        let expected = if allowed { 0 } else { 125 };
        assert_eq!(code, expected, "{runtime} {tag}: {err}");
        let refused = err.contains("is not in dockerSocketMount.imageList");
        assert_eq!(refused, !allowed, "{runtime} {tag}: {err}");
    }
    // The same name on a local image: the registry gives another digest for the tag.
    let retagged = docker.docker(&["tag", "eci-busybox", &image]);
    assert!(retagged.status.success());
    for runtime in ["eci-tag", "eci-any-tag"] {
        let (code, err) = run(runtime);
        assert_eq!(code, 125, "{runtime}: {err}");
        assert!(
            err.contains("is not in dockerSocketMount.imageList"),
            "{err}"
        );
    }
}

/// Docker's volumes live in its data root, which no bind may name: a named, anonymous or tmpfs
/// volume still works, its files keep their owners (the image's copied-up 999, root's for what
/// the container's root writes, seen alike by the next container), and a volume of the `local`
/// driver that would show host files (a bind of /etc, an overlay of it) is refused.
#[test]
fn network_container_mode_joins_an_eci_containers_network_only() {
    let docker = Dockerd::start();
    let serve = "echo shared > /dev/shm/note; exec httpd -f -p 127.0.0.1:8080 -h /etc";
    let web = docker.run_named(&["-d", "--ipc", "shareable"], "web", &["sh", "-c", serve]);
    assert!(web.status.success(), "{}", text(&web));
    let hostname = docker.docker(&["inspect", "-f", "{{.Config.Hostname}}", "web"]);
    let hostname = String::from_utf8_lossy(&hostname.stdout).trim().to_string();

    // `--network container:web`: web's loopback is reachable, but web's network is not the
    // joiner's to change (its root holds no capability over web's user namespace). With
    // `--ipc container:web`, web's /dev/shm is the joiner's too.
    let script = "wget -qO- http://127.0.0.1:8080/hostname; cat /dev/shm/note; \
                  ip link set lo down; echo down=$?";
    let joined = docker.docker(&[
        "run",
        "--rm",
        "--runtime=eci",
        "--network",
        "container:web",
        "--ipc",
        "container:web",
        "eci-busybox",
        "sh",
        "-c",
        script,
    ]);
    let out = String::from_utf8_lossy(&joined.stdout).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{}\n{}", text(&joined), docker.log());
    assert_eq!(lines[0], hostname, "{}", text(&joined));
    assert_eq!(lines[1], "shared", "{}", text(&joined));
    assert_ne!(lines[2], "down=0", "{}", text(&joined));
    // web's message queues stay web's: the joiner's setup did not take their directory.
    let queues = docker.docker(&["exec", "web", "stat", "-c", "%u", "/dev/mqueue"]);
    assert_eq!(
        String::from_utf8_lossy(&queues.stdout),
        "0\n",
        "{}",
        text(&queues)
    );
    assert!(
        String::from_utf8_lossy(&joined.stderr).contains("Operation not permitted"),
        "{}",
        text(&joined)
    );

    // A runc container's network is no eci container's: refused.
    let plain = docker.docker(&[
        "run",
        "-d",
        "--name",
        "plain",
        "--network",
        "none",
        "eci-busybox",
        "sleep",
        "60",
    ]);
    assert!(plain.status.success(), "{}", text(&plain));
    let refused = docker.docker(&[
        "run",
        "--rm",
        "--runtime=eci",
        "--network",
        "container:plain",
        "eci-busybox",
        "true",
    ]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("only their namespaces may be shared"),
        "{}",
        text(&refused)
    );
    for name in ["web", "plain"] {
        assert!(docker.docker(&["rm", "-f", name]).status.success());
    }
}

#[test]
fn dockers_seccomp_profiles_apply_to_eci_containers() {
    let docker = Dockerd::start();
    // Docker's default profile lets a container without CAP_SYS_ADMIN make no user namespace,
    // which the kernel alone would let it make.
    let unshare = ["sh", "-c", "unshare -U true; echo unshare=$?"];
    let confined = docker.run_named(&["--rm"], "confined", &unshare);
    assert_eq!(
        String::from_utf8_lossy(&confined.stdout),
        "unshare=1\n",
        "{}\n{}",
        text(&confined),
        docker.log()
    );
    assert!(
        String::from_utf8_lossy(&confined.stderr).contains("Operation not permitted"),
        "{}",
        text(&confined)
    );
    let unconfined = docker.run_named(
        &["--rm", "--security-opt", "seccomp=unconfined"],
        "unconfined",
        &unshare,
    );
    assert_eq!(
        String::from_utf8_lossy(&unconfined.stdout),
        "unshare=0\n",
        "{}",
        text(&unconfined)
    );

    // A profile of the user's own applies to the container's processes and to those added
    // with `docker exec`.
    let profile = docker.dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let mkdir = "mkdir /tmp/made; echo mkdir=$?; exec sleep 60";
    let own = docker.run_named(&["-d", "--security-opt", &opt], "own", &["sh", "-c", mkdir]);
    assert!(own.status.success(), "{}", text(&own));
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = text(&docker.docker(&["logs", "own"]));
        if logs.contains("mkdir=") || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(logs.contains("mkdir=1"), "{logs}");
    assert!(logs.contains("Permission denied"), "{logs}");
    let exec = docker.docker(&["exec", "own", "mkdir", "/tmp/from-exec"]);
    assert!(!exec.status.success());
    assert!(text(&exec).contains("Permission denied"), "{}", text(&exec));
    assert!(docker.docker(&["rm", "-f", "own"]).status.success());
}

#[test]
fn docker_volumes_keep_their_owners_and_show_no_host_files() {
    // This engine's data root is a directory of its own, which eci-runc learns from where the
    // engine keeps each container's files (ROOT/containers/ID).
    let docker = Dockerd::start();
    let root = docker.data.path().display().to_string();
    let run = |args: &[&str]| docker.run(args);
    let ok = |out: Output| -> String {
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            docker.log()
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ok(docker.docker(&["volume", "create", "named"]));
    let (code, out, err) = run(&[
        "-v",
        "named:/v",
        "eci-busybox",
        "sh",
        "-c",
        "echo one > /v/f && stat -c '%u %g' /v /v/f",
    ]);
    assert_eq!((code, out.as_str()), (0, "0 0\n0 0\n"), "{err}");
    let (code, out, err) = run(&["-v", "named:/v", "eci-busybox", "cat", "/v/f"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "one\n"),
        "the next container, another ID block: {err}"
    );
    let on_host = docker.data.path().join("volumes/named/_data/f");
    let meta = std::fs::metadata(&on_host).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "as Docker without eci stores it"
    );

    // An image's VOLUME: an anonymous volume, filled from the image with its owners.
    let rootfs = tempfile::tempdir().unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(docker.dir.path().join("image/rootfs/."))
        .arg(rootfs.path())
        .status();
    assert!(copied.unwrap().success());
    let db = rootfs.path().join("var/lib/db");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(db.join("seed"), "seed\n").unwrap();
    for path in [&db, &db.join("seed")] {
        std::os::unix::fs::chown(path, Some(999), Some(999)).unwrap();
    }
    let import = format!(
        "tar -C {} -c . | DOCKER_HOST={} docker import --change 'VOLUME /var/lib/db' - eci-db",
        rootfs.path().display(),
        docker.host()
    );
    let status = Command::new("sh")
        .args(["-c", &import])
        .stdout(Stdio::null())
        .status();
    assert!(status.unwrap().success());
    let script = "echo 'db:x:999:999::/:/bin/sh' >> /etc/passwd; \
        stat -c '%u %g' /var/lib/db/seed; \
        su db -c 'echo more >> /var/lib/db/seed && cat /var/lib/db/seed'";
    let (code, out, err) = run(&["eci-db", "sh", "-c", script]);
    assert_eq!((code, out.as_str()), (0, "999 999\nseed\nmore\n"), "{err}");

    // `docker volume create --opt type=... --opt o=... --opt device=... NAME`.
    let create = |name: &str, typ: &str, options: &str, device: &str| {
        let opts = [
            format!("type={typ}"),
            format!("o={options}"),
            format!("device={device}"),
        ];
        let mut args = vec!["volume", "create"];
        for opt in &opts {
            args.extend(["--opt", opt.as_str()]);
        }
        args.push(name);
        ok(docker.docker(&args));
    };
    // A container refused before it starts, for `reason`.
    let refused = |volume: &str, reason: &str| {
        let (code, out, err) = run(&["-v", volume, "eci-busybox", "ls", "/v"]);
        assert_eq!((code, out.as_str()), (125, ""), "{volume}");
        assert!(err.contains(reason), "{err}");
    };
    create("scratch", "tmpfs", "size=1m", "tmpfs");
    let (code, out, err) = run(&[
        "-v",
        "scratch:/v",
        "eci-busybox",
        "sh",
        "-c",
        "echo x > /v/f && grep ' /v ' /proc/self/mountinfo | grep -c ' - tmpfs '",
    ]);
    assert_eq!((code, out.as_str()), (0, "1\n"), "{err}");

    // A bind volume is judged as a bind of its device: a shared path passes, /etc does not.
    let shared = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(shared.path().join("f"), "shared\n").unwrap();
    create(
        "tmpdir",
        "none",
        "bind",
        &shared.path().display().to_string(),
    );
    let (code, out, err) = run(&["-v", "tmpdir:/v", "eci-busybox", "cat", "/v/f"]);
    assert_eq!((code, out.as_str()), (0, "shared\n"), "{err}");
    create("etc", "none", "bind", "/etc");
    refused(
        "etc:/v",
        "Docker volume etc is refused: it binds host path /etc",
    );
    create("etc-overlay", "overlay", "lowerdir=/etc:/srv", "overlay");
    refused(
        "etc-overlay:/v",
        "the engine mounted a filesystem of type overlay",
    );
    // A volume the driver has not mounted yet, bound by its path: it would show /etc once a
    // container using the volume starts.
    create("etc-later", "none", "bind", "/etc");
    refused(
        &format!("{root}/volumes/etc-later/_data:/v"),
        "the engine mounted nothing yet",
    );
    // The rest of the data root stays out of reach.
    refused(
        &format!("{root}/image:/v"),
        &format!("is refused by the rule for {root}"),
    );
}

/// A runtime whose settings allow unmounting: in a privileged Docker container, Docker's own
/// binds (/etc/hosts) and a read-only volume can be unmounted, the volume stays read-only while
/// mounted, and /proc stays where it is.
#[test]
fn relaxed_unmounting_reaches_docker_containers() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(volume.join("f"), "from the host\n").unwrap();
    let settings = dir.path().join("relaxed.json");
    std::fs::write(
        &settings,
        format!(
            r#"{{"eci": {{"immutability": {{"allowUnmount": {{"value": true}}}},
                         "sharedPaths": [{{"path": "{}", "readOnly": true}}]}}}}"#,
            volume.display()
        ),
    )
    .unwrap();
    let config = format!(
        r#"{{"runtimes": {{"eci-relaxed": {{"path": "{}", "runtimeArgs": ["--settings", "{}"]}}}}}}"#,
        example("eci-runc").display(),
        settings.display()
    );
    let docker = Dockerd::start_with_config(Some(&config));
    let script = "cat /data/f; \
        mount -o remount,bind,rw /data 2>/dev/null || echo volume-stays-read-only; \
        umount /etc/hosts && echo hosts-unmounted; \
        umount /data && ls /data | wc -l; \
        umount /proc 2>/dev/null || echo proc-stays";
    let out = docker.docker(&[
        "run",
        "--rm",
        "--runtime",
        "eci-relaxed",
        "--privileged",
        "--network",
        "none",
        "-v",
        &format!("{}:/data:ro", volume.display()),
        "eci-busybox",
        "sh",
        "-c",
        script,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        docker.log()
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "from the host",
            "volume-stays-read-only",
            "hosts-unmounted",
            "0",
            "proc-stays"
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docker_runs_inside_an_eci_container() {
    // Docker-in-Docker, the workload ECI exists for: dockerd, containerd and runc from the
    // host's /usr run in a privileged eci container whose cgroup mount is read-write (so
    // delegated to it), and run a container of their own, which lands in the same ID block.
    assert!(
        Path::new("/usr/sbin/dockerd").exists() || which("dockerd"),
        "dockerd is missing: install docker.io and containerd (scripts/test does)"
    );
    let bundle = common::inner_bundle("eci-dind", &[]);
    let script = "exec 2>&1; d=/tmp/dind; mkdir -p $d && export DOCKER_HOST=unix://$d/docker.sock \
        && (dockerd --data-root $d/data --exec-root $d/exec --pidfile $d/pid -H $DOCKER_HOST \
            --iptables=false --ip6tables=false --bridge=none > $d/log 2>&1 &) \
        && for i in $(seq 100); do docker version > /dev/null 2>&1 && break; sleep 0.1; done \
        && tar -C /busybox/rootfs -c . | docker import - inner > /dev/null \
        && docker run --rm --network none inner sh -c 'echo inner-ok; cat /proc/self/uid_map' \
        ; r=$?; [ $r = 0 ] || tail -5 $d/log; kill $(cat $d/pid) 2>/dev/null; echo run=$r";
    let runtime = common::delegating_runtime();
    let mut c = common::create_in(runtime, "dind", &["sh", "-c", script], |spec| {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        let mut cgroup = eci::oci_spec::runtime::Mount::default();
        cgroup.set_destination("/sys/fs/cgroup".into());
        cgroup.set_typ(Some("cgroup".into()));
        cgroup.set_source(Some("cgroup".into()));
        cgroup.set_options(Some(vec!["nosuid".into(), "noexec".into(), "nodev".into()]));
        mounts.push(cgroup);
        // dockerd keeps its identity key in /etc/docker, which the host rootfs has read-only.
        let mut config = eci::oci_spec::runtime::Mount::default();
        config.set_destination("/etc/docker".into());
        config.set_typ(Some("tmpfs".into()));
        config.set_source(Some("tmpfs".into()));
        mounts.push(config);
        mounts.push(common::read_only_bind(&bundle.path().join("b"), "/busybox"));
        spec.set_mounts(Some(mounts));
    });
    let outer = c.container().id_mapping();
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"inner-ok"), "{out}");
    assert!(common::maps_block(lines[1], outer), "{out}");
    assert_eq!(lines.last(), Some(&"run=0"), "{out}");
}
