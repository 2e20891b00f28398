//! eci-run: runs a command as root in a privileged container that cannot reach the host.
//!
//! ```text
//! cargo run --release --example eci-run -- [OPTIONS] -- COMMAND [ARGS...]
//! ```
//! With no `--rootfs` or `--bundle`, the root is built from the host's own /usr, /bin, /sbin and
//! /lib* (read-only) with a small /etc of its own, and `eci-probe` (this program under another
//! name, see `eci::probe`) on its PATH. The container ID and its ID mapping go to stderr; the exit
//! code is the command's. `--virtual-files-daemon DIR` serves the container's virtual /proc files
//! from the per-host daemon in DIR (this program again, started when none runs), which serves
//! them on if eci-run dies while the container runs. A container still running 2 s after its
//! start has eci-run give back the program pages creating it touched (`eci_ns::footprint`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use eci::{ContainerConfig, HostRootfs, Runtime, RuntimeConfig};
use nix::sys::signal::{SigSet, Signal};

#[derive(Parser, Debug)]
#[command(version, about = "Run a command in an eci container")]
struct Args {
    /// Run in this root filesystem directory (read-only, as root with every capability).
    #[arg(long, conflicts_with = "bundle")]
    rootfs: Option<PathBuf>,
    /// Run the OCI bundle in this directory (config.json and its rootfs).
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Container ID [default: eci-PID].
    #[arg(long)]
    id: Option<String>,
    /// Where the runtime keeps ID leases.
    #[arg(long, default_value = "/run/eci")]
    state_dir: PathBuf,
    /// The settings document (docs/settings.md) [default: the built-in settings].
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Take container ID blocks from this user's /etc/subuid and /etc/subgid range instead of
    /// the pool in the settings.
    #[arg(long, value_name = "USER")]
    subuid_user: Option<String>,
    /// Bind a host directory into the container: HOST:CONTAINER[:ro]. Only paths the policy
    /// shares are allowed.
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Serve the container's virtual /proc files from the per-host daemon in this directory
    /// (started when none runs; it outlives this program) instead of from this process.
    #[arg(long, value_name = "DIR")]
    virtual_files_daemon: Option<PathBuf>,
    /// Run the virtual files daemon in DIR (how the daemon is started; not for users).
    #[arg(long, value_name = "DIR", hide = true)]
    serve_virtual_files: Option<PathBuf>,
    /// Print what hardening changed in the spec.
    #[arg(long)]
    verbose: bool,
    /// The command and its arguments (with --bundle, replaces the spec's process.args).
    #[arg(last = true)]
    command: Vec<String>,
}

/// Signals passed on to the container instead of ending eci-run.
const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

fn main() -> ExitCode {
    // Run as eci-probe (inside the default root), this program answers probe commands.
    let argv0 = std::env::args().next().unwrap_or_default();
    if argv0.ends_with("eci-probe") {
        eci::probe::main_with(&std::env::args().skip(1).collect::<Vec<_>>());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("ECI_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(dir) = &args.serve_virtual_files {
        // The daemon's keeper starts it again with these very arguments.
        let command: Vec<std::ffi::OsString> = std::env::args_os().collect();
        return match eci::eci_mount::virt::daemon::run(dir, &command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("eci-run: virtual files daemon: {err}");
                ExitCode::from(125)
            }
        };
    }
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("eci-run: {err}");
            ExitCode::from(125)
        }
    }
}

fn run(args: Args) -> Result<u8, Box<dyn std::error::Error>> {
    // Block the forwarded signals in every thread (the runtime's too); one thread waits for them.
    let mut signals = SigSet::empty();
    FORWARDED.iter().for_each(|s| signals.add(*s));
    signals.thread_block()?;

    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("eci-{}", std::process::id()));
    let mut config = RuntimeConfig {
        state_dir: args.state_dir.clone(),
        ..Default::default()
    };
    if let Some(path) = &args.settings {
        config.policy = eci::load_settings(path)?;
    }
    if let Some(dir) = &args.virtual_files_daemon {
        let dir = std::path::absolute(dir)?;
        let command = vec![
            std::fs::read_link("/proc/self/exe")?.into_os_string(),
            "--serve-virtual-files".into(),
            dir.clone().into_os_string(),
        ];
        config.virtual_files = eci::VirtualFilesServer::Daemon { dir, command };
    }
    if let Some(user) = &args.subuid_user {
        let uid = nix::unistd::User::from_name(user)?
            .ok_or_else(|| format!("no user {user}"))?
            .uid;
        let block_size = config.policy.id_pool.block_size();
        config.policy.id_pool =
            eci::eci_idmap::subid::pool_from_system(user, uid.as_raw(), block_size)?;
        // The user's subordinate IDs are a pool of their own, with a journal of their own.
        config.leases_dir = format!("{}-{user}", eci::HOST_LEASES_DIR).into();
    }
    let runtime = Runtime::new(config)?;
    let mut host_rootfs = None;
    let (spec, bundle) = match (&args.bundle, &args.rootfs) {
        (Some(bundle), _) => {
            let mut spec = eci::load_spec(bundle)?;
            if !args.command.is_empty() {
                let mut process = spec.process().clone().unwrap_or_default();
                process.set_args(Some(args.command.clone()));
                spec.set_process(Some(process));
            }
            (spec, bundle.clone())
        }
        (None, Some(rootfs)) => (
            eci::privileged_spec(&std::fs::canonicalize(rootfs)?, command(&args), &[]),
            PathBuf::from("/"),
        ),
        (None, None) => {
            let rootfs = HostRootfs::create(&runtime.state_dir().join("rootfs").join(&id))?;
            rootfs.add_tool(&std::env::current_exe()?, "eci-probe")?;
            let spec = rootfs.spec(command(&args));
            host_rootfs = Some(rootfs);
            (spec, PathBuf::from("/"))
        }
    };
    let spec = with_volumes(spec, &args.volumes)?;
    let result = run_container(&runtime, &id, spec, bundle, args.verbose, signals);
    if let Some(rootfs) = host_rootfs {
        rootfs.remove()?;
    }
    result
}

/// Adds `-v HOST:CONTAINER[:ro]` binds to the spec.
fn with_volumes(
    mut spec: oci_spec::runtime::Spec,
    volumes: &[String],
) -> Result<oci_spec::runtime::Spec, String> {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for volume in volumes {
        let parts: Vec<&str> = volume.split(':').collect();
        let (host, inside, read_only) = match parts.as_slice() {
            [host, inside] => (host, inside, false),
            [host, inside, "ro"] => (host, inside, true),
            _ => return Err(format!("volume '{volume}' is not HOST:CONTAINER[:ro]")),
        };
        let mut mount = oci_spec::runtime::Mount::default();
        mount.set_destination(PathBuf::from(inside));
        mount.set_typ(Some("bind".into()));
        mount.set_source(Some(PathBuf::from(host)));
        let mut options = vec!["rbind".to_string()];
        if read_only {
            options.push("ro".into());
        }
        mount.set_options(Some(options));
        mounts.push(mount);
    }
    spec.set_mounts(Some(mounts));
    Ok(spec)
}

fn command(args: &Args) -> Vec<String> {
    if args.command.is_empty() {
        vec!["sh".into()]
    } else {
        args.command.clone()
    }
}

fn run_container(
    runtime: &Runtime,
    id: &str,
    spec: oci_spec::runtime::Spec,
    bundle: PathBuf,
    verbose: bool,
    signals: SigSet,
) -> Result<u8, Box<dyn std::error::Error>> {
    let mut container = runtime.create(ContainerConfig::new(id, spec).bundle(bundle))?;
    let map = container.id_mapping();
    eprintln!("eci-run: container {id}: uid and gid {map}");
    if verbose {
        for change in container.hardening_report() {
            eprintln!("eci-run: hardening: {change}");
        }
    }
    let forward = eci::eci_ns::PidFd::open(container.pid())?;
    std::thread::spawn(move || {
        while let Ok(signal) = signals.wait() {
            if forward.signal(signal as i32).is_err() {
                break;
            }
        }
    });
    container.start()?;
    give_back_pages_once_idle(&container);
    let status = container.wait()?;
    container.delete()?;
    Ok(status.code().clamp(0, 255) as u8)
}

/// Waits for the container's init to exit; if it runs on for 2 s, unmaps the program pages
/// that creating it touched (most of this program, about 4.5 MiB of RSS) and trims the
/// allocator on the way: they stay in the page cache, and a short command never pays for it.
fn give_back_pages_once_idle(container: &eci::Container) {
    use eci::eci_ns::footprint::poll_trimming_once_idle;
    use std::os::fd::AsRawFd;
    let mut init = [libc::pollfd {
        fd: container.pidfd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    while let (_, Err(eci::eci_ns::sys::Errno(libc::EINTR))) =
        poll_trimming_once_idle(&mut init, 2000)
    {}
}
