//! Shared harness: a runtime for the test binary and a way to run a command in a fresh
//! privileged container built from the host's /usr, with eci-probe at /probe.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use eci::oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, Mount, Spec};
use eci::{Container, ContainerConfig, HostRootfs, Policy, Runtime, RuntimeConfig, Stdio};

pub const STATE_DIR: &str = "/run/eci-test";
pub const PROBE: &str = env!("CARGO_BIN_EXE_eci-probe");

/// The test binary's runtime. Its policy also shares the directory of eci-probe, read-only.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut policy = Policy::default();
        let probe_dir = Path::new(PROBE).parent().unwrap();
        policy.paths.share(probe_dir, true).unwrap();
        // As the runtime makes it; a directory left by an older build may be open to others,
        // which refuses the writable rootfs some tests make below it.
        if let Err(e) = std::fs::set_permissions(STATE_DIR, std::fs::Permissions::from_mode(0o700))
        {
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        }
        Runtime::new(RuntimeConfig {
            state_dir: PathBuf::from(STATE_DIR),
            policy,
            ..Default::default()
        })
        .expect("runtime")
    })
}

/// A runtime like [`runtime`] whose policy also shares `path` (read-only if `read_only`), with
/// the directory that holds its state.
#[allow(dead_code)]
pub fn runtime_sharing(path: &Path, read_only: bool) -> (Runtime, tempfile::TempDir) {
    let mut policy = runtime().policy().clone();
    policy.paths.share(path, read_only).unwrap();
    let state = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        state_dir: state.path().join("state"),
        policy,
        ..Default::default()
    })
    .expect("runtime");
    (runtime, state)
}

/// A fresh directory under /tmp closed to other users (mode 0700), as a container's root outside
/// an engine's storage must be ([`eci::eci_policy::root`]).
#[allow(dead_code)]
pub fn closed_tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in("/tmp")
        .unwrap()
}

/// A busybox bundle (scripts/busybox-bundle, running `args` if any) at `b` in a fresh
/// directory under /tmp that the containers' root may enter, for a runtime in a container.
#[allow(dead_code)]
pub fn inner_bundle(prefix: &str, args: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut build = std::process::Command::new("scripts/busybox-bundle");
    build.arg(dir.path().join("b"));
    if !args.is_empty() {
        build.arg("--").args(args);
    }
    let built = build.stdout(std::process::Stdio::null()).status().unwrap();
    assert!(
        built.success(),
        "scripts/busybox-bundle (needs busybox-static and jq)"
    );
    dir
}

/// Whether a uid_map line maps root to the first host ID of `block`, and only its IDs.
#[allow(dead_code)]
pub fn maps_block(line: &str, block: eci::IdMapping) -> bool {
    let expected = [0, block.host_start, block.size].map(|n| n.to_string());
    line.split_whitespace()
        .eq(expected.iter().map(String::as_str))
}

/// A read-only bind of `source` at `destination`.
#[allow(dead_code)]
pub fn read_only_bind(source: &Path, destination: &str) -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from(destination));
    mount.set_typ(Some("bind".into()));
    mount.set_source(Some(source.to_path_buf()));
    mount.set_options(Some(vec!["bind".into(), "ro".into()]));
    mount
}

/// A mount made on the host for a test, detached however the test ends.
#[allow(dead_code)]
pub struct Mounted(PathBuf);

#[allow(dead_code)]
impl Mounted {
    /// A procfs of the host's at `path`.
    pub fn proc_at(path: &Path) -> Mounted {
        nix::mount::mount(
            Some("proc"),
            path,
            Some("proc"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mounting a procfs");
        Mounted(path.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A directory a test makes (a cgroup below a container's, as Docker inside would), removed
/// however the test ends: left, it would keep the container's own from being removed.
pub struct MadeDir(PathBuf);

impl MadeDir {
    pub fn create(path: PathBuf) -> MadeDir {
        std::fs::create_dir(&path).expect("making the directory");
        MadeDir(path)
    }
}

impl Drop for MadeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A runtime whose settings delegate read-write cgroup mounts (`eci.delegateCgroups`).
#[allow(dead_code)]
pub fn delegating_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut policy = runtime().policy().clone();
        policy.delegate_cgroups = true;
        Runtime::new(RuntimeConfig {
            state_dir: PathBuf::from(STATE_DIR),
            policy,
            ..Default::default()
        })
        .expect("runtime")
    })
}

/// An example program built with the tests (`cargo build --examples`).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

/// A unique container ID for this test binary.
pub fn unique_id(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A container with its host rootfs, removed together.
pub struct TestContainer {
    pub container: Option<Container>,
    pub rootfs: Option<HostRootfs>,
    stdout: Option<BufReader<std::fs::File>>,
}

impl TestContainer {
    pub fn container(&mut self) -> &mut Container {
        self.container.as_mut().unwrap()
    }

    /// Starts, waits, and returns (exit code, stdout).
    pub fn run_to_end(&mut self) -> (i32, String) {
        self.container().start().expect("start");
        self.finish()
    }

    /// Waits for a started container; returns (exit code, stdout).
    pub fn finish(&mut self) -> (i32, String) {
        let status = self.container().wait().expect("wait");
        (status.code(), self.read_stdout())
    }

    /// The rest of the container's stdout (until every process in it has closed it).
    pub fn read_stdout(&mut self) -> String {
        let mut out = String::new();
        self.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    /// The next line of the container's stdout.
    pub fn read_stdout_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.as_mut().unwrap().read_line(&mut line).unwrap();
        line
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        if let Some(container) = self.container.take() {
            container.delete().expect("delete");
        }
        if let Some(rootfs) = self.rootfs.take() {
            rootfs.remove().expect("remove rootfs");
        }
    }
}

/// A spec's cgroup mount at /sys/fs/cgroup, read-write or read-only.
pub fn with_cgroup_mount(spec: &mut Spec, read_only: bool) {
    let mut mount = Mount::default();
    mount.set_destination("/sys/fs/cgroup".into());
    mount.set_typ(Some("cgroup".into()));
    mount.set_source(Some("cgroup".into()));
    let mut options = vec!["nosuid".to_string(), "noexec".into(), "nodev".into()];
    if read_only {
        options.push("ro".into());
    }
    mount.set_options(Some(options));
    spec.mounts_mut().as_mut().unwrap().push(mount);
}

/// Shell that makes a chain of cgroups from the working directory and walks down it until the
/// shell's own path passes PATH_MAX (longer still on the host), then prints `deep`. Names of
/// 200 characters: cgroup v2's depth cap (32, for a delegated container) comes later.
pub const DEEPER_THAN_PATH_MAX: &str = "n=$(printf '%0200d' 0); \
    while mkdir $n; do cd $n 2>/dev/null || { echo deep; break; }; done";

/// A process at the bottom of a cgroup chain a delegated container made, deeper than PATH_MAX:
/// the container lists it, and `kill --all` signals it. The container's init, pid 1 without a
/// handler, ignores SIGTERM; the process dies of it.
pub fn kill_all_reaches_a_process_past_path_max() {
    // The hierarchy processes are listed in: devices on cgroup v1, else the cgroup2 tree.
    let hierarchy = if Path::new("/sys/fs/cgroup/devices").is_dir() {
        "devices"
    } else {
        "."
    };
    let script = format!(
        "cd /sys/fs/cgroup/{hierarchy} && {DEEPER_THAN_PATH_MAX}; \
         sleep 1000 & echo $! > cgroup.procs && echo moved; wait $!; echo status=$?"
    );
    let mut c = create_in(
        delegating_runtime(),
        "deep-kill",
        &["sh", "-c", &script],
        |spec| {
            with_cgroup_mount(spec, false);
        },
    );
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "deep\n");
    assert_eq!(c.read_stdout_line(), "moved\n");
    let listed = c.container().processes().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    c.container().kill_all(libc::SIGTERM).unwrap();
    let (code, out) = c.finish();
    assert_eq!((code, out.as_str()), (0, "status=143\n"));
}

/// Whether this host enforces AppArmor (runc's test, and eci's).
pub fn apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|text| text.starts_with(b"Y"))
}

/// A bind of eci-probe at /probe.
pub fn probe_mount() -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from("/probe"));
    mount.set_typ(Some("bind".into()));
    mount.set_source(Some(PathBuf::from(PROBE)));
    mount.set_options(Some(vec!["bind".into(), "ro".into()]));
    mount
}

/// The spec for `args` in a fresh host rootfs, edited by `edit`.
pub fn create_with(name: &str, args: &[&str], edit: impl FnOnce(&mut Spec)) -> TestContainer {
    create_in(runtime(), name, args, edit)
}

/// [`create_with`] in another runtime.
pub fn create_in(
    runtime: &Runtime,
    name: &str,
    args: &[&str],
    edit: impl FnOnce(&mut Spec),
) -> TestContainer {
    create_full(runtime, name, args, None, edit)
}

/// [`create_in`] with the container's stdin.
pub fn create_full(
    runtime: &Runtime,
    name: &str,
    args: &[&str],
    stdin: Option<OwnedFd>,
    edit: impl FnOnce(&mut Spec),
) -> TestContainer {
    let id = unique_id(name);
    let rootfs = HostRootfs::create(&runtime.state_dir().join("rootfs").join(&id)).expect("rootfs");
    let mut spec = rootfs.spec(args.iter().map(|a| a.to_string()).collect());
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(probe_mount());
    spec.set_mounts(Some(mounts));
    edit(&mut spec);
    let (reader, writer) = std::io::pipe().unwrap();
    let stdio = Stdio {
        stdin,
        stdout: Some(OwnedFd::from(writer)),
        stderr: None,
    };
    let container = runtime.create(ContainerConfig::new(id, spec).stdio(stdio));
    match container {
        Ok(container) => TestContainer {
            container: Some(container),
            rootfs: Some(rootfs),
            stdout: Some(BufReader::new(std::fs::File::from(OwnedFd::from(reader)))),
        },
        Err(err) => {
            rootfs.remove().unwrap();
            panic!("create {name}: {err}");
        }
    }
}

/// Creates a container running `true` in `runtime` from a spec `edit` changes (without the
/// probe's mount): what the create returns. Its rootfs is removed either way, so this is for
/// creates that are to fail, or whose container is not started.
#[allow(dead_code)]
pub fn try_create(
    runtime: &Runtime,
    name: &str,
    edit: impl FnOnce(&mut Spec),
) -> Result<Container, eci::Error> {
    let id = unique_id(name);
    let rootfs = HostRootfs::create(&runtime.state_dir().join("rootfs").join(&id)).unwrap();
    let mut spec = rootfs.spec(vec!["true".into()]);
    edit(&mut spec);
    let created = runtime.create(ContainerConfig::new(id, spec));
    rootfs.remove().unwrap();
    created
}

/// Runs `args` in a fresh container; returns (exit code, stdout).
pub fn run(name: &str, args: &[&str]) -> (i32, String) {
    create_with(name, args, |_| {}).run_to_end()
}

/// Runs eci-probe commands; returns its answers, one per command.
pub fn probe(name: &str, commands: &[&str]) -> Vec<String> {
    let mut args = vec!["/probe"];
    args.extend_from_slice(commands);
    let (code, out) = run(name, &args);
    assert_eq!(code, 0, "probe exited with {code}: {out}");
    out.lines().map(str::to_string).collect()
}

/// Whether process `pid` (or, for a leader, its main thread) has exited and is not reaped
/// yet: a zombie. False once it is gone.
pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(") ")?.1.starts_with('Z')))
        .unwrap_or(false)
}

/// A process's resident KiB (VmRSS); None once it is gone.
pub fn resident_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    kib.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// Replaces `spec`'s `typ` namespace by the existing one at `path`, which it then joins.
pub fn join_namespace(spec: &mut Spec, typ: LinuxNamespaceType, path: &str) {
    let mut linux = spec.linux().clone().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap();
    namespaces.retain(|ns| ns.typ() != typ);
    let joined = LinuxNamespaceBuilder::default().typ(typ).path(path);
    namespaces.push(joined.build().unwrap());
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
}

/// Adds /dev/fuse to `spec`'s devices (FUSE is among the devices a container may have).
pub fn with_fuse_device(spec: &mut Spec) {
    let fuse = eci::oci_spec::runtime::LinuxDeviceBuilder::default()
        .path("/dev/fuse")
        .typ(eci::oci_spec::runtime::LinuxDeviceType::C)
        .major(10)
        .minor(229)
        .file_mode(0o666u32)
        .build()
        .unwrap();
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut devices = linux.devices().clone().unwrap_or_default();
    devices.push(fuse);
    linux.set_devices(Some(devices));
    spec.set_linux(Some(linux));
}
