//! eci-runc: an OCI runtime with runc's command line (parsed by liboci-cli), for dockerd and
//! containerd's runc shim. Every container it starts gets all of eci's protections.
//!
//! `create` starts a **monitor** (a fork of this process, or this program again as `eci-runc
//! monitor` should the client have threads) that owns the container through the eci facade:
//! it holds what must outlive `create` (the seccomp listener, the mount helper, the virtual
//! files server) and answers the other commands on a socket in the container's state
//! directory. The pid file names the container's init, as runc's does: the init is left to
//! the caller's adopter (containerd's shim), which reaps it for the exit status and reads its
//! cgroup for statistics and OOM events; the monitor learns of its end through its pidfd and
//! exits once everything (mounts, cgroup, ID lease, processes) has been given back. (Before
//! Linux 6.15, which keeps a reaped process's status for pidfds, the init stays the monitor's
//! child and the pid file names the monitor, which exits with the container's code.) `run`
//! without `--detach` is its container's monitor itself, as runc's `run` stays its container's
//! parent: its pid file names the init, as runc's does, and the signals it gets (HUP, INT,
//! QUIT, USR1, USR2, TERM) go on to the init. Idle for 2 s after some work,
//! the monitor unmaps the program pages that work touched (`eci::eci_ns::footprint`).
//!
//! ```text
//! eci-runc [--root DIR] [--log FILE] [--log-format text|json] [--settings FILE] COMMAND
//!   create --bundle DIR [--pid-file FILE] ID      start ID      run [--detach] ID
//!   state ID      kill ID [SIGNAL] [--all]      delete [--force] ID
//!   exec ID      ps [--format json] ID      pause ID      resume ID      update ID
//!   list [--format json] [-q]      features      spec
//! ```
//!
//! OCI hooks run on the host as runc runs them: prestart and createRuntime once the container's
//! namespaces exist (before `create` returns), poststart once it runs (before `start`
//! returns, while the monitor goes on answering other commands), poststop after the container
//! is gone; createContainer and startContainer hooks (which run inside the container) are
//! refused.
//!
//! `exec` hands the process (`--process`, or, as runc builds it, the container's own process
//! from its bundle with the command line's arguments, environment, directory and user over
//! it) and the caller's stdio to the monitor, which starts it in the container and sends its
//! exit code back; a detached exec leaves a stand-in process (named by
//! the pid file) that exits with that code, as the shim expects of the pid it reaps.
//!
//! A terminal (`process.terminal`, `docker run -t`) is a pty made in the container's own devpts;
//! its master goes to `--console-socket`, as runc sends it.
//!
//! `pause` and `resume` use the cgroup freezer; `kill --all` signals every process of the
//! container while it is frozen; `update` changes limits but never the device rules; `ps`
//! lists the container's processes (JSON, or the host's ps cut to them).
//!
//! Not supported yet, each with a clear error: events, checkpoint, --systemd-cgroup.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use eci::oci_spec::runtime::{Box as ConsoleSize, Hook, Hooks, LinuxResources, Spec};
use eci::{
    Container, ContainerConfig, ExecProcess, InitParent, Runtime, RuntimeConfig, State, Stdio,
    VirtualFilesServer,
};
use liboci_cli::{CommonCmd, GlobalOpts, StandardCmd};

type Error = Box<dyn std::error::Error>;

#[derive(Parser, Debug)]
#[command(
    name = "eci-runc",
    version,
    about = "An OCI runtime with eci's protections"
)]
struct Opts {
    #[command(flatten)]
    global: GlobalOpts,
    /// eci settings document (JSON); the built-in defaults otherwise.
    #[arg(long, global = true)]
    settings: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    #[command(flatten)]
    Standard(Box<StandardCmd>),
    #[command(flatten)]
    Common(Box<CommonCmd>),
    /// Internal: a detached exec's stand-in, exiting with the exec'd process's code. It reads
    /// the process's JSON from descriptor 4, not from its command line, which every host
    /// user may read (the environment Docker gives an exec holds the container's secrets).
    #[command(hide = true)]
    ExecWaiter {
        #[arg(long)]
        console_socket: Option<PathBuf>,
        id: String,
    },
    /// Internal: the virtual procfs and sysfs files daemon every monitor under this root
    /// shares (started by the first that needs it, and again by its keeper if it dies).
    #[command(hide = true)]
    Virtd,
    /// Internal: owns one container for its lifetime.
    #[command(hide = true)]
    Monitor {
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        id: String,
    },
}

/// Where everything of one invocation goes.
struct Ctx {
    root: PathBuf,
    log: Option<PathBuf>,
    json: bool,
    settings: Option<PathBuf>,
}

impl Ctx {
    /// The container's directory; every command goes through here, so an ID that is not a
    /// plain name (`..`, `/etc`, `.eci`) never reaches the file system.
    fn dir(&self, id: &str) -> PathBuf {
        if eci::valid_container_id(id) {
            self.root.join(id)
        } else {
            self.root.join(".invalid-id")
        }
    }

    fn socket(&self, id: &str) -> PathBuf {
        self.dir(id).join("monitor.sock")
    }

    /// The runtime's own state (ID leases, rootfs mounts, virtual files), shared by every
    /// monitor under this root; container IDs cannot start with a dot.
    fn state_dir(&self) -> PathBuf {
        self.root.join(".eci")
    }

    /// The virtual files daemon's directory.
    fn virtd_dir(&self) -> PathBuf {
        self.state_dir().join("virtd")
    }

    /// How the virtual files are served: by the daemon under this root, which outlives any
    /// monitor and is started again if it dies.
    fn virtual_files(&self) -> Result<VirtualFilesServer, Error> {
        let program = std::fs::read_link("/proc/self/exe")?;
        let command = vec![
            program.into_os_string(),
            "--root".into(),
            self.root.clone().into_os_string(),
            "virtd".into(),
        ];
        Ok(VirtualFilesServer::Daemon {
            dir: self.virtd_dir(),
            command,
        })
    }

    /// Reports an error where the caller looks: stderr, and the log file (runc's JSON lines,
    /// which containerd shows to the user).
    fn report(&self, msg: &str) {
        eprintln!("eci-runc: {msg}");
        self.log("error", msg);
    }

    /// Appends a line to the log file, in runc's JSON format when asked for.
    fn log(&self, level: &str, msg: &str) {
        if let Some(log) = &self.log {
            append_log(log, self.json, level, msg);
        }
    }
}

fn append_log(log: &Path, json: bool, level: &str, msg: &str) {
    let time = rfc3339(SystemTime::now());
    let line = if json {
        let msg = serde_json::to_string(msg).unwrap_or_default();
        format!("{{\"level\":\"{level}\",\"msg\":{msg},\"time\":\"{time}\"}}\n")
    } else {
        format!("{time} {level}: {msg}\n")
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log);
    if let Ok(mut file) = file {
        let _ = file.write_all(line.as_bytes());
    }
}

/// eci's warnings and errors (its tracing events), in the log file beside eci-runc's own
/// lines: the one place containerd and dockerd look.
struct LogLayer {
    log: PathBuf,
    json: bool,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        // eci's own crates only: libcgroups warns about every controller this kernel lacks,
        // for every container, and its failures come back as errors anyway.
        if !event.metadata().target().starts_with("eci") {
            return;
        }
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            _ => return,
        };
        let mut message = EventText(String::new());
        event.record(&mut message);
        append_log(&self.log, self.json, level, &message.0);
    }
}

/// An event's message, then its other fields as `name=value`.
struct EventText(String);

impl tracing::field::Visit for EventText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// The command line, with runc's default for `kill`'s signal (SIGTERM), which liboci-cli
/// makes required: `runc kill ID` is how scripts and some shims stop a container.
fn parse_opts() -> Opts {
    use clap::{CommandFactory, FromArgMatches};
    let command = Opts::command().mut_subcommand("kill", |kill| {
        kill.mut_arg("signal", |signal| {
            signal.required(false).default_value("SIGTERM")
        })
    });
    let matches = command.get_matches();
    Opts::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
}

fn main() -> ExitCode {
    let opts = parse_opts();
    let root = opts.global.root.clone();
    let root = root.unwrap_or_else(|| PathBuf::from("/run/eci-runc"));
    // Absolute from here on: the virtual files daemon is started with it, and the directories
    // the runtime predicts for a registration must be the ones the daemon names.
    let root = std::path::absolute(&root).unwrap_or(root);
    // And without symlinks, once it exists: what `check_root` checks is then the path every
    // command uses, not one a symlink could point elsewhere later.
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let ctx = Ctx {
        root,
        log: opts.global.log.clone(),
        json: opts.global.log_format.as_deref() == Some("json"),
        settings: opts.settings.clone(),
    };
    if let Some(log) = &ctx.log {
        use tracing_subscriber::layer::SubscriberExt;
        let layer = LogLayer {
            log: log.clone(),
            json: ctx.json,
        };
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
    }
    if opts.global.systemd_cgroup {
        ctx.report("--systemd-cgroup is not supported: eci manages cgroups through cgroupfs");
        return ExitCode::from(1);
    }
    if let Some(format) = opts
        .global
        .log_format
        .as_deref()
        .filter(|f| !["text", "json"].contains(f))
    {
        ctx.report(&format!(
            "--log-format {format}: only text and json are known"
        ));
        return ExitCode::from(1);
    }
    // As runc's: an exec that fails before its process could report an exit code says 255, so
    // that its caller can tell the runtime's failure from the process's own code.
    let failed = match &opts.command {
        Cmd::Common(cmd) if matches!(**cmd, CommonCmd::Exec(_)) => 255,
        Cmd::ExecWaiter { .. } => 255,
        _ => 1,
    };
    match dispatch(&ctx, opts.command) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            ctx.report(&err.to_string());
            ExitCode::from(failed)
        }
    }
}

fn dispatch(ctx: &Ctx, command: Cmd) -> Result<u8, Error> {
    // What the root holds (monitors' sockets, cgroup records, states) is acted on as host
    // root: a root others may change is refused, whatever the command. One not made yet is
    // made by create, root's alone.
    if ctx.root.exists() {
        check_root(&ctx.root)?;
    }
    match command {
        Cmd::Standard(cmd) => match *cmd {
            StandardCmd::Create(c) => {
                creation_flags(ctx, c.preserve_fds, c.no_pivot, false)?;
                let console = c.console_socket.as_deref();
                create(
                    ctx,
                    &c.container_id,
                    &c.bundle,
                    c.pid_file.as_deref(),
                    console,
                )
                .map(|_| 0)
            }
            StandardCmd::Start(s) => ask(ctx, &s.container_id, "start").map(|_| 0),
            StandardCmd::State(s) => {
                println!("{}", state(ctx, &s.container_id)?);
                Ok(0)
            }
            StandardCmd::Kill(k) => {
                let signal = parse_signal(&k.signal)?;
                kill(ctx, &k.container_id, signal, k.all).map(|_| 0)
            }
            StandardCmd::Delete(d) => delete(ctx, &d.container_id, d.force).map(|_| 0),
        },
        Cmd::Common(cmd) => common_command(ctx, *cmd),
        Cmd::Monitor {
            bundle,
            console_socket,
            id,
        } => monitor(ctx, &id, &bundle, console_socket.as_deref()),
        Cmd::Virtd => {
            // The keeper starts the daemon again with these very arguments.
            let command: Vec<std::ffi::OsString> = std::env::args_os().collect();
            eci::eci_mount::virt::daemon::run(&ctx.virtd_dir(), &command)?;
            Ok(0)
        }
        Cmd::ExecWaiter { console_socket, id } => {
            // SAFETY: fds 3 and 4 were set up by spawn_self_with for this process alone.
            let ready = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(3) });
            // SAFETY: as above.
            let mut process = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(4) });
            let mut process_json = String::new();
            std::io::Read::read_to_string(&mut process, &mut process_json)?;
            drop(process);
            let console = console_socket.as_deref();
            exec_through_monitor(ctx, &id, &process_json, console, Some(ready))
        }
    }
}

/// The commands liboci-cli shares with other runtimes (`run`, `exec`, `ps`, ...).
fn common_command(ctx: &Ctx, cmd: CommonCmd) -> Result<u8, Error> {
    if let CommonCmd::Run(r) = &cmd {
        creation_flags(ctx, r.preserve_fds, r.no_pivot, r.keep)?;
    }
    match cmd {
        CommonCmd::Run(r) if r.detach => {
            let console = r.console_socket.as_deref();
            let pid_file = r.pid_file.as_deref();
            let mut monitor = create(ctx, &r.container_id, &r.bundle, pid_file, console)?;
            if let Err(err) = ask(ctx, &r.container_id, "start") {
                // As runc's: a container that could not start is not left for a delete. Its
                // monitor is this process's child, reaped here before the delete finds it.
                let _ = ask(ctx, &r.container_id, "delete force");
                let _ = monitor.wait();
                let _ = delete(ctx, &r.container_id, true);
                return Err(err);
            }
            Ok(0)
        }
        CommonCmd::Run(r) => run_in_foreground(ctx, &r),
        CommonCmd::Features(_) => {
            println!("{}", features());
            Ok(0)
        }
        CommonCmd::Spec(s) => {
            if s.rootless {
                return Err("spec --rootless is not supported: eci's containers run \
                            in a user namespace of their own whoever starts them"
                    .into());
            }
            let path = s.bundle.unwrap_or_default().join("config.json");
            let spec = oci_spec_default();
            // Made new: never written through a symlink left there (a dangling one would
            // have root create its target anywhere).
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path);
            let mut file = match file {
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err("config.json already exists".into())
                }
                other => other?,
            };
            file.write_all(serde_json::to_string_pretty(&spec)?.as_bytes())?;
            Ok(0)
        }
        CommonCmd::List(l) => list(ctx, l.format == "json", l.quiet).map(|_| 0),
        CommonCmd::Pause(p) => ask(ctx, &p.container_id, "pause").map(|_| 0),
        CommonCmd::Resume(r) => ask(ctx, &r.container_id, "resume").map(|_| 0),
        CommonCmd::Ps(p) => ps(ctx, &p).map(|_| 0),
        CommonCmd::Update(u) => {
            let request = format!("update {}", update_request(&u)?);
            ask(ctx, &u.container_id, &request).map(|_| 0)
        }
        CommonCmd::Exec(e) => {
            let process = exec_process(ctx, &e)?;
            let console = e.console_socket.as_deref();
            if !e.detach && e.pid_file.is_some() {
                // The process is the monitor's child, and its pid is not sent back.
                return Err("exec --pid-file is supported only with --detach".into());
            }
            if !e.detach {
                return exec_through_monitor(ctx, &e.container_id, &process, console, None);
            }
            let mut args = vec!["exec-waiter"];
            let console_arg = console.map(|c| c.to_string_lossy().to_string());
            if let Some(console) = &console_arg {
                args.extend(["--console-socket", console]);
            }
            args.push(&e.container_id);
            let process = memory_file("eci-exec-process", process.as_bytes())?;
            let (mut waiter, _) = spawn_self_with(ctx, &args, Some(process.as_raw_fd()))?;
            if let Some(pid_file) = &e.pid_file {
                // Nobody would know the process ran: it goes with its stand-in (the monitor
                // kills an exec'd process whose stand-in hangs up).
                if let Err(err) = write_pid_file(pid_file, waiter.id()) {
                    let _ = waiter.kill();
                    let _ = waiter.wait();
                    return Err(err.into());
                }
            }
            Ok(0)
        }
        other => Err(format!("{} is not supported yet", command_name(&other)).into()),
    }
}

/// Refuses what `create` and `run` cannot do as asked, rather than drop it: passing the
/// caller's descriptors from 3 on to the container (`--preserve-fds`) and keeping a foreground
/// run's container after it exits (`--keep`). `--no-pivot` is taken with a warning: eci always
/// enters the rootfs with pivot_root, which confines more than the chroot it asks for, and
/// fails clearly on a root where it cannot. (`--no-new-keyring` and `--no-subreaper` ask for
/// what eci does anyway: its filters keep every keyring out of the container's reach, and it
/// is no subreaper.)
fn creation_flags(ctx: &Ctx, preserve_fds: i32, no_pivot: bool, keep: bool) -> Result<(), Error> {
    if preserve_fds > 0 {
        return Err("--preserve-fds is not supported: the container gets only its stdio".into());
    }
    if keep {
        return Err("run --keep is not supported: the container goes when its init exits".into());
    }
    if no_pivot {
        ctx.log("warning", "--no-pivot ignored: eci always uses pivot_root");
    }
    Ok(())
}

fn command_name(cmd: &CommonCmd) -> &'static str {
    match cmd {
        CommonCmd::Exec(_) => "exec",
        CommonCmd::Events(_) => "events",
        CommonCmd::Checkpointt(_) => "checkpoint",
        _ => "this command",
    }
}

/// Hands a terminal's master to the console socket, as runc does: one message carrying the
/// descriptor, with a name.
/// The terminal gets the process's `consoleSize` first, as runc sizes it (Docker sends the
/// client's for `run -t` and `exec -t`): otherwise it is 0x0 until the client's first resize.
fn send_console(socket: &Path, master: OwnedFd, size: Option<ConsoleSize>) -> Result<(), Error> {
    if let Some(size) = size {
        let winsize = libc::winsize {
            ws_row: u16::try_from(size.height()).unwrap_or(u16::MAX),
            ws_col: u16::try_from(size.width()).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize we own from a pty master we hold.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &winsize) } != 0 {
            return Err(format!("sizing the terminal: {}", std::io::Error::last_os_error()).into());
        }
    }
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("connecting to the console socket {}: {e}", socket.display()))?;
    send_with_fds(&stream, b"/dev/ptmx", &[master.as_raw_fd()])
}

/// Sends `bytes` with `fds` attached to the first part, and the rest of the bytes if the
/// socket took only part of them.
fn send_with_fds(
    stream: &UnixStream,
    bytes: &[u8],
    fds: &[std::os::fd::RawFd],
) -> Result<(), Error> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let cmsg = [ControlMessage::ScmRights(fds)];
    let iov = [std::io::IoSlice::new(bytes)];
    let sent = sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    let mut rest = stream;
    rest.write_all(&bytes[sent..])?;
    Ok(())
}

/// Starts the monitor, waits until the container is created (or failed), writes the pid file.
fn create(
    ctx: &Ctx,
    id: &str,
    bundle: &Path,
    pid_file: Option<&Path>,
    console_socket: Option<&Path>,
) -> Result<MonitorProcess, Error> {
    let dir = make_container_dir(ctx, id)?;
    let bundle = match std::fs::canonicalize(bundle) {
        Ok(bundle) => bundle,
        Err(err) => {
            let _ = dir.remove();
            return Err(err.into());
        }
    };
    let bundle_arg = bundle.to_string_lossy().to_string();
    let mut args = vec!["monitor", "--bundle", &bundle_arg];
    let console_arg = console_socket.map(|c| c.to_string_lossy().to_string());
    if let Some(console) = &console_arg {
        args.extend(["--console-socket", console]);
    }
    args.push(id);
    let started = fork_monitor(ctx, id, &bundle, console_socket).unwrap_or_else(|| {
        spawn_self(ctx, &args).map(|(child, report)| (MonitorProcess::Executed(child), report))
    });
    let (mut child, report) = match started {
        Ok(started) => started,
        Err(err) => {
            // A monitor that died after making the container (killed while a hook ran, say)
            // left it to whoever finds its record: this command, before the directory goes.
            if let Err(left) = remove_orphan(ctx, id) {
                ctx.log("warning", &format!("container '{id}': {left}"));
            }
            let _ = dir.remove();
            return Err(err);
        }
    };
    if let Some(pid_file) = pid_file {
        // The process whose end is the container's: its init, which the monitor let this
        // process's adopter (the shim) have, or else the monitor itself.
        let named = report
            .parse::<u32>()
            .map_err(|_| Error::from(format!("the monitor reported '{report}', not a pid")))
            .and_then(|pid| write_pid_file(pid_file, pid).map_err(Error::from));
        if let Err(err) = named {
            // The caller will not know of the monitor: take the container down with it.
            let _ = ask(ctx, id, "delete force");
            let _ = child.wait();
            let _ = dir.remove();
            return Err(format!("writing the pid file {}: {err}", pid_file.display()).into());
        }
    }
    Ok(child)
}

/// Whether the peer of `stream` runs as uid 0 of the host's user namespace (the kernel
/// translates SO_PEERCRED into the reader's namespace, where a container's root is not 0).
fn from_host_root(stream: &UnixStream) -> bool {
    nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .is_ok_and(|creds| creds.uid() == 0)
}

/// Takes group and other permissions off `dir` if root owns it (a directory another user
/// owns is not the runtime's to change).
fn close_to_others(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir)?;
    if meta.uid() == 0 && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(meta.mode() & 0o700))?;
    }
    Ok(())
}

/// Makes the container's directory under the root, which claims its ID.
fn make_container_dir(ctx: &Ctx, id: &str) -> Result<ContainerDir, Error> {
    if !eci::valid_container_id(id) {
        return Err(format!("container id '{id}' is invalid").into());
    }
    // Root's alone, as runc's: the monitors' sockets and the containers' records are in it.
    if let Some(parent) = ctx.root.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&ctx.root) {
        // One an earlier version made readable by others (0755) is closed now; one others
        // may write in is refused below (and by every command).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => close_to_others(&ctx.root)?,
        other => other?,
    }
    // Made just now, or by someone else since this command's first look: checked again.
    check_root(&ctx.root)?;
    let dir = ctx.dir(id);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!("container '{id}' already exists"),
            _ => format!("creating {}: {e}", dir.display()),
        })?;
    Ok(ContainerDir::existing(dir)?)
}

/// A container's directory, known by its device and inode, so that removing it does not remove
/// another made since: a `delete` may remove the directory of a `run` in the foreground while
/// that `run` ends, and a new container of the same ID may make it again at once. (A new
/// directory given the same inode number, or one made between the check and the removal, is
/// not told apart: a narrow window, between two commands on the same ID.)
struct ContainerDir {
    path: PathBuf,
    identity: (u64, u64),
}

impl ContainerDir {
    fn existing(path: PathBuf) -> std::io::Result<ContainerDir> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(&path)?;
        let identity = (meta.dev(), meta.ino());
        Ok(ContainerDir { path, identity })
    }

    /// Removes it with everything in it, if it is still the same directory; gone already is
    /// removed.
    fn remove(&self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let not_found = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => {}
            Ok(_) => return Ok(()),
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        match std::fs::remove_dir_all(&self.path) {
            Err(e) if not_found(&e) => Ok(()),
            other => other,
        }
    }
}

/// `run` without --detach: this process is the container's monitor, as runc's `run` stays the
/// parent of its container, and passes the signals it gets on to the container's init. Forking
/// a monitor, waiting for its report, asking it over the socket to start the container and
/// waiting for it to exit cost 1.4 ms of an 18 ms `run` (alternating runs of both builds), and
/// nothing outlives this process that would need one.
fn run_in_foreground(ctx: &Ctx, r: &liboci_cli::Run) -> Result<u8, Error> {
    // What the caller left open (beyond stdio) must not live on in the container, as the
    // monitor `create` starts closes it.
    // SAFETY: close_range with integer arguments; nothing of ours is open from 3 up yet.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    // Before any thread exists, so that every thread leaves them to the monitor's loop.
    let signals = ForwardedSignals::block()?;
    // For this command's own errors: the monitor lets go of its stdio, the container's.
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    let id = &r.container_id;
    let dir = make_container_dir(ctx, id)?;
    let ran = std::fs::canonicalize(&r.bundle)
        .map_err(Error::from)
        .and_then(|bundle| {
            let caller = Caller::Foreground {
                signals,
                pid_file: r.pid_file.as_deref(),
            };
            monitor_container(ctx, id, &bundle, r.console_socket.as_deref(), caller)
        });
    let _ = nix::unistd::dup2(stderr.as_raw_fd(), 2);
    // Like runc run: what is left of a container that ran to its end is removed.
    let removed = dir.remove();
    let code = ran?;
    removed?;
    Ok(code)
}

/// Signals a process in the foreground passes on: to the container's init (`run`), or to an
/// exec'd process (`exec`). As runc: every signal it can catch but SIGCHLD, SIGWINCH and
/// SIGURG, so that neither a Ctrl-Z (SIGTSTP) stops it nor a SIGALRM or a real-time signal ends
/// it while the container runs on. Also kept: SIGPIPE (this process's own writes raise it), the
/// signals of its own faults, and the real-time signals below SIGRTMIN, which the C library
/// uses itself (blocking them would hang set*id calls in a threaded process).
fn forwarded() -> nix::sys::signal::SigSet {
    const KEPT: [libc::c_int; 12] = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGCHLD,
        libc::SIGWINCH,
        libc::SIGURG,
        libc::SIGPIPE,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGSYS,
    ];
    let signals = (1..32).chain(libc::SIGRTMIN()..=libc::SIGRTMAX());
    // SAFETY: sigemptyset initialises the set before sigaddset adds valid signal numbers to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in signals.filter(|s| !KEPT.contains(s)) {
            libc::sigaddset(&mut set, signal);
        }
        nix::sys::signal::SigSet::from_sigset_t_unchecked(set)
    }
}

/// [`forwarded`], blocked in this process and read from a signalfd by the monitor's loop.
struct ForwardedSignals(nix::sys::signalfd::SignalFd);

impl ForwardedSignals {
    /// Blocks the forwarded signals in the calling thread (and every thread it starts after);
    /// the container's init and helpers set their own masks.
    fn block() -> Result<ForwardedSignals, Error> {
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let set = forwarded();
        set.thread_block()?;
        let flags = SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK;
        Ok(ForwardedSignals(SignalFd::with_flags(&set, flags)?))
    }

    /// Passes every pending signal on to the container's init.
    fn forward(&self, container: &Container) {
        while let Ok(Some(info)) = self.0.read_signal() {
            let _ = container.kill(info.ssi_signo as i32);
        }
    }
}

/// Who a monitor tells that the container is created.
enum Caller<'a> {
    /// `create`, waiting on the pipe at fd 3 for "ok" or "error: REASON".
    Create(std::fs::File),
    /// `run` in the foreground, this same process: the monitor writes the pid file, starts the
    /// container at once and forwards `signals` to it.
    Foreground {
        signals: ForwardedSignals,
        pid_file: Option<&'a Path>,
    },
}

/// A container's monitor, as `create` started it.
enum MonitorProcess {
    /// This program started again (`eci-runc monitor`).
    Executed(std::process::Child),
    /// A fork of this process, running [`monitor`] without an exec.
    Forked(nix::unistd::Pid),
}

impl MonitorProcess {
    /// Waits for the monitor to exit: its exit code (1 if a signal ended it).
    fn wait(&mut self) -> Result<i32, Error> {
        match self {
            MonitorProcess::Executed(child) => Ok(child.wait()?.code().unwrap_or(1)),
            MonitorProcess::Forked(pid) => loop {
                match nix::sys::wait::waitpid(*pid, None) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return Ok(code),
                    Ok(nix::sys::wait::WaitStatus::Signaled(..)) => return Ok(1),
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(errno) => return Err(errno.into()),
                }
            },
        }
    }
}

/// Whether this process has one thread: then a fork of it may go on running anything (POSIX
/// limits the child of a multithreaded process to async-signal-safe calls until it execs).
fn is_single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}

/// Starts the monitor as a fork of this process, in a session of its own, and waits for its
/// report as [`spawn_self`] does; `None` if this process has threads (then only an exec will
/// do). Executing this program again costs about 1.8 ms of every start (the dynamic linker
/// relocating and faulting in a 46 MB program); the fork costs a tenth of that. The monitor
/// closes every descriptor but its stdio and the report pipe first thing, as an executed one
/// does.
fn fork_monitor(
    ctx: &Ctx,
    id: &str,
    bundle: &Path,
    console: Option<&Path>,
) -> Option<Result<(MonitorProcess, String), Error>> {
    if !is_single_threaded() {
        return None;
    }
    Some(fork_single_threaded(ctx, id, bundle, console))
}

/// [`fork_monitor`]'s fork, in a process known to have one thread.
fn fork_single_threaded(
    ctx: &Ctx,
    id: &str,
    bundle: &Path,
    console: Option<&Path>,
) -> Result<(MonitorProcess, String), Error> {
    let (mut ready, ready_writer) = std::io::pipe()?;
    // Whatever this process buffered would be written twice.
    std::io::stdout().flush()?;
    // SAFETY: this process has a single thread (checked just before, and nothing here starts
    // one), so the child may run any code; it never returns from this function.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(ready);
            // An executed monitor started with no signal blocked (Command clears the mask);
            // the caller's mask is not the monitor's.
            let unblocked = nix::sys::signal::SigSet::empty().thread_set_mask();
            let code = match unblocked
                .and_then(|()| nix::unistd::dup2(ready_writer.as_raw_fd(), 3).map(drop))
                .map_err(Error::from)
                .and_then(|()| nix::unistd::setsid().map_err(Error::from))
                .and_then(|_| monitor(ctx, id, bundle, console))
            {
                Ok(code) => i32::from(code),
                Err(err) => {
                    ctx.report(&err.to_string());
                    1
                }
            };
            std::process::exit(code)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_writer);
            let mut monitor = MonitorProcess::Forked(child);
            match read_report(&mut ready) {
                Ok(report) => Ok((monitor, report)),
                Err(err) => {
                    let _ = monitor.wait();
                    Err(err)
                }
            }
        }
    }
}

/// Reads a started process's one-line report on its pipe: "ok" and what follows it (a monitor
/// adds the pid its pid file names), or "error: REASON".
fn read_report(ready: &mut std::io::PipeReader) -> Result<String, Error> {
    // One line: the container's processes inherit the pipe too, so its end never comes.
    let mut answer = String::new();
    BufReader::new(ready).read_line(&mut answer)?;
    let answer = answer.trim();
    match answer.strip_prefix("ok") {
        Some(rest) if rest.is_empty() || rest.starts_with(' ') => Ok(rest.trim().to_string()),
        _ => {
            let reason = answer
                .strip_prefix("error: ")
                .unwrap_or("the monitor exited early");
            Err(reason.to_string().into())
        }
    }
}

/// Starts this program again with `args` (and the global options), in a session of its own,
/// and waits for its one-line report on fd 3: "ok" (and what follows it, returned), or
/// "error: REASON".
fn spawn_self(ctx: &Ctx, args: &[&str]) -> Result<(std::process::Child, String), Error> {
    spawn_self_with(ctx, args, None)
}

/// A file in memory holding `bytes`, read from its start: handed to a child as a descriptor,
/// it is readable by that child alone.
fn memory_file(name: &str, bytes: &[u8]) -> Result<std::fs::File, Error> {
    let name = std::ffi::CString::new(name)?;
    // SAFETY: a NUL-terminated name and flags; the descriptor returned is ours alone.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: fd was just created and is owned by nothing else.
    let created = unsafe { OwnedFd::from_raw_fd(fd) };
    // Above the numbers spawn_self_with places descriptors at, so that placing one never
    // overwrites the other.
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own.
    let high = unsafe { libc::fcntl(created.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if high < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    drop(created);
    // SAFETY: high was just made and is owned by nothing else.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(high) });
    file.write_all(bytes)?;
    std::io::Seek::rewind(&mut file)?;
    Ok(file)
}

/// [`spawn_self`], with `extra` (if any) at descriptor 4 of the child.
fn spawn_self_with(
    ctx: &Ctx,
    args: &[&str],
    extra: Option<std::os::fd::RawFd>,
) -> Result<(std::process::Child, String), Error> {
    let (mut ready, ready_writer) = std::io::pipe()?;
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("--root").arg(&ctx.root);
    if let Some(log) = &ctx.log {
        command.arg("--log").arg(log);
    }
    if ctx.json {
        command.args(["--log-format", "json"]);
    }
    if let Some(settings) = &ctx.settings {
        command.arg("--settings").arg(settings);
    }
    command.args(args);
    let writer = ready_writer.as_raw_fd();
    // SAFETY: between fork and exec only dup2 and setsid, both async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            // The writer first: `extra` is above both numbers (see memory_file), the writer
            // may be 4.
            if libc::dup2(writer, 3) == -1
                || extra.is_some_and(|fd| libc::dup2(fd, 4) == -1)
                || libc::setsid() == -1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn();
    drop(ready_writer);
    let child = child?;
    let report = read_report(&mut ready)?;
    Ok((child, report))
}

/// A socket path short enough for sun_path whatever the root and ID (Docker's are long):
/// through this process's descriptor of the container's directory.
fn short_path(dir: &std::fs::File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/monitor.sock", dir.as_raw_fd()))
}

/// Connects to a container's monitor, which runs as host root: a socket whose peer is anyone
/// else is not its, and would be told exec'd processes' environments and handed their stdio.
fn connect(ctx: &Ctx, id: &str) -> std::io::Result<UnixStream> {
    let dir = std::fs::File::open(ctx.dir(id))?;
    let stream = UnixStream::connect(short_path(&dir))?;
    match from_host_root(&stream) {
        true => Ok(stream),
        false => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the monitor's socket is not served by host root",
        )),
    }
}

/// Refuses a root directory that users other than this one (or root) could change: itself
/// owned by this user and writable by no one else, and each directory above it letting no
/// one else rename what it holds (writable by no one else, or sticky with the entry on the way
/// owned by this user or root, as /tmp).
fn check_root(root: &Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let euid = nix::unistd::geteuid().as_raw();
    let root = std::fs::canonicalize(root)?;
    let refuse = |dir: &Path| -> Error {
        format!(
            "refusing the root {}: {} may be changed by other users",
            root.display(),
            dir.display()
        )
        .into()
    };
    let mut entry_owner = None;
    for dir in root.ancestors() {
        let meta = std::fs::symlink_metadata(dir)?;
        let others_write = meta.mode() & 0o022 != 0;
        let trusted = |uid: u32| uid == euid || uid == 0;
        let safe = if dir == root {
            meta.uid() == euid && !others_write
        } else {
            let sticky = meta.mode() & 0o1000 != 0;
            trusted(meta.uid()) && (!others_write || sticky && entry_owner.is_some_and(trusted))
        };
        if !safe {
            return Err(refuse(dir));
        }
        entry_owner = Some(meta.uid());
    }
    Ok(())
}

/// Deletes the exited container. The container's status is what the engine waits for: a
/// failed cleanup is logged (and returned), and `delete` takes down what is left (the cgroup
/// record stays for it then).
fn finish(ctx: &Ctx, id: &str, container: Container) -> Result<(), eci::Error> {
    let deleted = container.delete();
    match &deleted {
        // Nothing is left for `delete` to take down.
        Ok(()) => {
            let _ = std::fs::remove_file(ctx.dir(id).join(CGROUP_FILE));
        }
        Err(err) => ctx.log(
            "warning",
            &format!("cleaning up after container '{id}': {err}"),
        ),
    }
    deleted
}

/// Sends one command to a container's monitor and returns its answer.
fn ask(ctx: &Ctx, id: &str, request: &str) -> Result<String, Error> {
    if !ctx.dir(id).exists() {
        return Err(format!("container '{id}' does not exist").into());
    }
    // In runc's words, which containerd's shim looks for to tell a finished process: also when
    // the monitor leaves without an answer (the init ended meanwhile, and the monitor closed
    // its socket with this request still queued: a reset, or the end of the stream).
    let not_running = || Error::from(format!("container not running: {id}"));
    let mut stream = connect(ctx, id).map_err(|_| not_running())?;
    writeln!(stream, "{request}").map_err(|_| not_running())?;
    let mut answer = String::new();
    match BufReader::new(stream).read_line(&mut answer) {
        Ok(0) | Err(_) => return Err(not_running()),
        Ok(_) => {}
    }
    match answer.trim_end().strip_prefix("ok") {
        Some(rest) => Ok(rest.trim_start().to_string()),
        None => Err(answer
            .trim_end()
            .trim_start_matches("error: ")
            .to_string()
            .into()),
    }
}

/// The OCI state: from the monitor while it runs, else from the state file it left.
fn state(ctx: &Ctx, id: &str) -> Result<String, Error> {
    match ask(ctx, id, "state") {
        Ok(json) => Ok(json),
        Err(_) if ctx.dir(id).join("state.json").exists() => {
            let mut state = recorded_state(ctx, id)?;
            // The monitor is gone. Its init may run on unsupervised (the engine, which waits on
            // the init, sees it running); else, like runc, a stopped container has no pid (the
            // init's may belong to another process by now).
            match orphaned_init(ctx, id, &state) {
                // (A created container's init ends with its monitor: the start it waits for
                // can no longer come.)
                Some(init) => {
                    // Paused before the monitor died, it stays so until someone thaws it.
                    let cgroup = recorded_cgroup(ctx, id).ok().flatten();
                    let paused = cgroup.is_some_and(|(path, identity)| {
                        matches!(eci::orphan_paused(id, &path, identity), Ok(true))
                    });
                    state["status"] = if paused { "paused" } else { "running" }.into();
                    state["pid"] = init.pid().into();
                }
                None => {
                    state["status"] = "stopped".into();
                    state["pid"] = 0.into();
                }
            }
            Ok(state.to_string())
        }
        Err(err) => Err(err),
    }
}

/// The state the monitor wrote at create.
fn recorded_state(ctx: &Ctx, id: &str) -> Result<serde_json::Value, Error> {
    let text = std::fs::read_to_string(ctx.dir(id).join("state.json"))?;
    match serde_json::from_str(&text)? {
        state @ serde_json::Value::Object(_) => Ok(state),
        _ => Err(format!("container '{id}': its recorded state is no JSON object").into()),
    }
}

/// The init of a container, if it runs on: found by the pid its state records and proven by
/// the cgroup it records ([`eci::orphan_init`]), whether its monitor lives or not.
fn orphaned_init(ctx: &Ctx, id: &str, state: &serde_json::Value) -> Option<eci::eci_ns::PidFd> {
    let pid = i32::try_from(state["pid"].as_i64()?).ok()?;
    let (path, identity) = recorded_cgroup(ctx, id).ok()??;
    eci::orphan_init(id, &path, identity, pid).ok()?
}

/// Signals the container's init (or, with `all`, every process of it) through its monitor;
/// with the monitor gone, directly, while the container runs on (the engine, which waits on
/// the init, still sees it running and stops it so).
fn kill(ctx: &Ctx, id: &str, signal: i32, all: bool) -> Result<(), Error> {
    let request = format!("kill {signal}{}", if all { " all" } else { "" });
    let asked = ask(ctx, id, &request);
    if asked.is_ok() || connect(ctx, id).is_ok() || !ctx.dir(id).join("state.json").exists() {
        return asked.map(drop);
    }
    let state = recorded_state(ctx, id)?;
    let Some(init) = orphaned_init(ctx, id, &state) else {
        return asked.map(drop);
    };
    if all {
        if let Some((path, identity)) = recorded_cgroup(ctx, id)? {
            eci::signal_orphan(id, &path, identity, signal)?;
        }
        return Ok(());
    }
    init.signal(signal)
        .map_err(|errno| format!("signalling container '{id}': {errno}").into())
}

/// The image of a container that binds an engine's socket, asked of that engine (Docker passes
/// no image to its runtime): without it the bind is refused, with it `imageList` decides and
/// the container reaches the engine through the commandList proxy. `None` (and a warning in
/// the log) when the engine cannot say.
fn engine_image(
    ctx: &Ctx,
    spec: &Spec,
    id: &str,
    policy: &eci::Policy,
) -> Option<eci::ContainerImage> {
    let mut sockets: Vec<PathBuf> = spec
        .mounts()
        .iter()
        .flatten()
        .filter_map(|m| std::fs::canonicalize(m.source().as_ref()?).ok())
        .filter(|source| policy.docker_socket.sockets.contains(source))
        .collect();
    sockets.sort();
    sockets.dedup();
    // One engine's word covers one engine: binds of two different engines are refused.
    let [socket] = &sockets[..] else {
        if sockets.len() > 1 {
            ctx.log(
                "warning",
                "binds of more than one engine socket are refused",
            );
        }
        return None;
    };
    // Tag entries match by what the registry says the tag is now.
    let mut problems = Vec::new();
    let found = eci::docker_proxy::image_from_engine(
        socket,
        id,
        &policy.docker_socket.images,
        &mut problems,
    );
    for problem in problems {
        ctx.log("warning", &problem);
    }
    match found {
        Ok(Some(image)) => Some(image),
        Ok(None) => {
            ctx.log(
                "warning",
                &format!(
                    "the engine at {} does not know container {id}, or names no repository \
                     for its image",
                    socket.display()
                ),
            );
            None
        }
        Err(err) => {
            ctx.log(
                "warning",
                &format!("asking the engine for the image: {err}"),
            );
            None
        }
    }
}

/// Writes a pid file as runc does, in one step (a hidden file beside it, renamed over it): an
/// engine that polls for it never reads it half written. The hidden file is made anew
/// (O_EXCL): one left there, a symlink say by whoever may write in that directory, is removed
/// (the link, not what it names) rather than written through as root.
fn write_pid_file(file: &Path, pid: u32) -> std::io::Result<()> {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let partial = file.with_file_name(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .and_then(|mut out| out.write_all(pid.to_string().as_bytes()));
    written
        .and_then(|()| std::fs::rename(&partial, file))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })
}

/// Replaces `file` with `bytes` in one step (a file beside it, renamed over it).
fn write_whole(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = file.with_extension("new");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, file)
}

/// Where the monitor records the container's cgroup: its path, a newline, its identity.
const CGROUP_FILE: &str = "cgroup";

/// Where the monitor records itself as it starts: its pid and start time, as JSON.
const MONITOR_FILE: &str = "monitor";

/// The container's monitor as it recorded itself, if it did and still runs.
fn live_monitor(ctx: &Ctx, id: &str) -> Option<eci::eci_idmap::Holder> {
    let recorded = std::fs::read(ctx.dir(id).join(MONITOR_FILE)).ok()?;
    let monitor: eci::eci_idmap::Holder = serde_json::from_slice(&recorded).ok()?;
    monitor.is_alive().then_some(monitor)
}

/// What became of a delete sent to a monitor that did not answer at first.
enum Waited {
    /// The monitor answered: it deleted the container.
    Answered,
    /// No monitor runs (any more): what it ran is the caller's to take down.
    Gone,
}

/// Waits, for a minute at most, for a monitor that runs but did not answer: one still making
/// the container (no socket yet) or cleaning up after it (its socket removed). Removing the
/// directory under a monitor still making the container would leave a container no command
/// can reach. The request goes to it once it answers. Past the bound, a live monitor is killed
/// with `force` (and the delete fails if it has not ended ten seconds later); without, the
/// delete fails and nothing is touched.
fn wait_for_live_monitor(
    ctx: &Ctx,
    id: &str,
    monitor: eci::eci_idmap::Holder,
    request: &str,
    force: bool,
) -> Result<Waited, Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while monitor.is_alive() {
        match ask(ctx, id, request) {
            Ok(_) => return Ok(Waited::Answered),
            Err(err) if connect(ctx, id).is_ok() => return Err(err),
            Err(_) => {}
        }
        let now = std::time::Instant::now();
        if now >= deadline + std::time::Duration::from_secs(10) {
            // Killed and still there: held in the kernel (a FUSE request no server answers).
            let pid = monitor.pid;
            return Err(format!(
                "container '{id}': its monitor (pid {pid}) was killed but has not ended; \
                 not deleted"
            )
            .into());
        }
        if now >= deadline {
            if !force {
                let pid = monitor.pid;
                return Err(format!(
                    "container '{id}': its monitor (pid {pid}) runs but does not answer; \
                     not deleted (--force kills it)"
                )
                .into());
            }
            ctx.log(
                "warning",
                &format!("container '{id}': killing its monitor, which does not answer"),
            );
            if let Ok(pidfd) = eci::eci_ns::PidFd::open(monitor.pid) {
                // The pid named the monitor when the pidfd was opened: still the same start.
                if monitor.is_alive() {
                    let _ = pidfd.signal(libc::SIGKILL);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(Waited::Gone)
}

fn delete(ctx: &Ctx, id: &str, force: bool) -> Result<(), Error> {
    let dir = match ContainerDir::existing(ctx.dir(id)) {
        Ok(dir) => dir,
        // As runc's: forcing the deletion of what is not there is no error.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && force => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("container '{id}' does not exist").into())
        }
        Err(err) => return Err(err.into()),
    };
    let request = if force { "delete force" } else { "delete" };
    match ask(ctx, id, request) {
        Ok(_) => {}
        Err(err) if connect(ctx, id).is_ok() => return Err(err),
        Err(_) => {
            let waited = match live_monitor(ctx, id) {
                Some(monitor) => wait_for_live_monitor(ctx, id, monitor, request, force)?,
                None => Waited::Gone,
            };
            if let Waited::Gone = waited {
                // A monitor that stopped answering may still be cleaning up after its
                // container (one of an earlier version, unrecorded, included).
                wait_for_monitor_exit(ctx, id);
                remove_orphan(ctx, id)?
            }
        }
    }
    // A `run` in the foreground removes its own once its container is deleted.
    dir.remove()?;
    Ok(())
}

/// Taken by the monitor once its container has ended, before it removes its socket, until it
/// exits: an exclusive flock on the container's directory. Opened then, after every fork, so
/// that no process of the container or helper shares it. `None` if it cannot be had (nothing
/// then waits for the cleanup; logged).
fn hold_while_cleaning(ctx: &Ctx, id: &str) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let locked = std::fs::File::open(ctx.dir(id))
        .map_err(|err| err.to_string())
        .and_then(|dir| {
            nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock)
                .map_err(|(_, errno)| errno.to_string())
        });
    locked
        .inspect_err(|err| ctx.log("warning", &format!("locking '{id}' for cleanup: {err}")))
        .ok()
}

/// Waits, for a minute at most, until no monitor holds the container's directory: one that
/// removed its socket on the way out may still be deleting its container (poststop hooks,
/// cgroup, helpers, lease), and taking that down beside it would race it
/// ([`hold_while_cleaning`]). An engine's `delete` usually comes while it does, since the
/// engine learns of the container's end from the init's reaping. Past the bound the delete
/// goes on, as it would for a monitor that never lets go (logged).
fn wait_for_monitor_exit(ctx: &Ctx, id: &str) {
    const BOUND: std::time::Duration = std::time::Duration::from_secs(60);
    let Ok(dir) = std::fs::File::open(ctx.dir(id)) else {
        return;
    };
    // flock(2) cannot time out: a thread waits in it (woken the moment the monitor exits),
    // and is left behind past the bound.
    let (done, waited) = std::sync::mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("cleanup-lock".into())
        .spawn(move || {
            let locked = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusive);
            let _ = done.send(locked.map(drop).map_err(|(_, errno)| errno));
        });
    let outcome = match waiter {
        Ok(_) => match waited.recv_timeout(BOUND) {
            Ok(Ok(())) => return,
            Ok(Err(errno)) => errno.to_string(),
            Err(_) => format!("still held after {} s", BOUND.as_secs()),
        },
        Err(err) => format!("no thread to wait with: {err}"),
    };
    let why = format!("container '{id}': waiting for its monitor's cleanup: {outcome}");
    ctx.log("warning", &why);
}

/// The monitor is gone, and what it ran may not be: its processes run on unsupervised (mount
/// calls fail, virtual files read ENOTCONN), which `state` reports as stopped, as the engine
/// sees it once the monitor it waited on has exited. Delete takes them down, with or without
/// --force, and removes the cgroup.
fn remove_orphan(ctx: &Ctx, id: &str) -> Result<(), Error> {
    // The monitor died before the container existed (or just after it created it, a window
    // the record cannot close): nothing known runs.
    let Some((path, identity)) = recorded_cgroup(ctx, id)? else {
        return Ok(());
    };
    let killed = eci::remove_orphan(&ctx.state_dir(), id, &path, identity)?;
    if !killed.is_empty() {
        ctx.log(
            "warning",
            &format!("container '{id}' outlived its monitor; killed {killed:?}"),
        );
    }
    Ok(())
}

/// The container's cgroup as its monitor recorded it at create: its path and identity. `None`
/// if there is no record (none written yet, or the container deleted).
fn recorded_cgroup(ctx: &Ctx, id: &str) -> Result<Option<(PathBuf, Option<u64>)>, Error> {
    let recorded = match std::fs::read(ctx.dir(id).join(CGROUP_FILE)) {
        Ok(recorded) => recorded,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("reading what the monitor recorded: {err}").into()),
    };
    let (path, identity) = match recorded.iter().rposition(|b| *b == b'\n') {
        Some(at) => (
            &recorded[..at],
            std::str::from_utf8(&recorded[at + 1..])
                .ok()
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n != 0),
        ),
        None => (&recorded[..], None),
    };
    let path = PathBuf::from(std::ffi::OsString::from_vec(path.to_vec()));
    Ok(Some((path, identity)))
}

fn list(ctx: &Ctx, json: bool, quiet: bool) -> Result<(), Error> {
    let mut states = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&ctx.root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            if let Ok(text) = state(ctx, &name) {
                states.push(serde_json::from_str::<serde_json::Value>(&text)?);
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Array(states));
    } else if quiet {
        states
            .iter()
            .for_each(|s| println!("{}", s["id"].as_str().unwrap_or_default()));
    } else {
        println!("ID\tPID\tSTATUS\tBUNDLE\tCREATED");
        for s in &states {
            println!(
                "{}\t{}\t{}\t{}\t{}",
                s["id"].as_str().unwrap_or_default(),
                s["pid"],
                s["status"].as_str().unwrap_or_default(),
                s["bundle"].as_str().unwrap_or_default(),
                s["created"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `ps`: the container's processes as a JSON array of pids, or as the host's ps(1) shows them
/// (with the given options, `-ef` by default), cut to the container's.
fn ps(ctx: &Ctx, p: &liboci_cli::Ps) -> Result<(), Error> {
    let answer = ask(ctx, &p.container_id, "ps")?;
    match p.format.as_str() {
        "json" => {
            println!("{answer}");
            return Ok(());
        }
        "table" => {}
        other => return Err(format!("unknown ps format '{other}': use table or json").into()),
    }
    let pids: Vec<i32> = serde_json::from_str(&answer)?;
    let options = if p.ps_options.is_empty() {
        vec!["-ef".to_string()]
    } else {
        p.ps_options.clone()
    };
    let output = Command::new("ps").args(&options).output()?;
    if !output.status.success() {
        return Err(format!("ps: {}", String::from_utf8_lossy(&output.stderr).trim()).into());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or("ps printed no PID column")?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|pid: i32| pids.contains(&pid)) {
            println!("{line}");
        }
    }
    Ok(())
}

/// `update`: the new limits as one line of OCI resources JSON, from `--resources` (a file, or
/// `-` for stdin) or from the limit flags.
fn update_request(u: &liboci_cli::Update) -> Result<String, Error> {
    use serde_json::{json, Value};
    if let Some(path) = &u.resources {
        let text = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(path)?
        };
        let resources: LinuxResources =
            serde_json::from_str(&text).map_err(|e| format!("--resources: {e}"))?;
        return Ok(serde_json::to_string(&resources)?);
    }
    if u.l3_cache_schema.is_some() || u.mem_bw_schema.is_some() {
        return Err("Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported".into());
    }
    let mut resources = json!({});
    let limits: [(&str, &str, Option<Value>); 12] = [
        ("memory", "limit", u.memory.map(Value::from)),
        (
            "memory",
            "reservation",
            u.memory_reservation.map(Value::from),
        ),
        ("memory", "swap", u.memory_swap.map(Value::from)),
        ("cpu", "shares", u.cpu_share.map(Value::from)),
        ("cpu", "quota", u.cpu_quota.map(Value::from)),
        ("cpu", "period", u.cpu_period.map(Value::from)),
        ("cpu", "realtimeRuntime", u.cpu_rt_runtime.map(Value::from)),
        ("cpu", "realtimePeriod", u.cpu_rt_period.map(Value::from)),
        ("cpu", "cpus", u.cpuset_cpus.clone().map(Value::from)),
        ("cpu", "mems", u.cpuset_mems.clone().map(Value::from)),
        ("pids", "limit", u.pids_limit.map(Value::from)),
        ("blockIO", "weight", u.blkio_weight.map(Value::from)),
    ];
    for (section, key, value) in limits {
        if let Some(value) = value {
            resources[section][key] = value;
        }
    }
    if resources == json!({}) {
        return Err("update needs --resources or a limit to change".into());
    }
    let resources: LinuxResources = serde_json::from_value(resources)?;
    Ok(serde_json::to_string(&resources)?)
}

/// A signal as runc takes it: a number the kernel knows (real-time ones too: Docker stops a
/// systemd image with 37, its `SIGRTMIN+3`), or a name in any case, with or without `SIG`
/// (`TERM`, `sigkill`, `RTMIN+3`).
fn parse_signal(text: &str) -> Result<i32, Error> {
    let unknown = || -> Error { format!("unknown signal {text:?}").into() };
    let number = match text.parse::<i32>() {
        Ok(number) => number,
        Err(_) => signal_named(text).ok_or_else(unknown)?,
    };
    match (0..=libc::SIGRTMAX()).contains(&number) {
        true => Ok(number),
        false => Err(unknown()),
    }
}

/// The number of a signal name (see [`parse_signal`]).
fn signal_named(text: &str) -> Option<i32> {
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let offset = |rest: &str| match rest {
        "" => Some(0),
        _ => rest.parse::<u8>().ok().map(i32::from),
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let rest = if rest.is_empty() {
            rest
        } else {
            rest.strip_prefix('+')?
        };
        return Some(libc::SIGRTMIN() + offset(rest)?);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let rest = if rest.is_empty() {
            rest
        } else {
            rest.strip_prefix('-')?
        };
        return Some(libc::SIGRTMAX() - offset(rest)?);
    }
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// The runtime spec version eci-runc follows (its state documents, `features`).
const OCI_VERSION: &str = "1.2.0";

/// What `features` reports (the OCI runtime features document).
fn features() -> String {
    let mut capabilities: Vec<_> = eci::all_capabilities()
        .bounding()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    capabilities.sort_by_key(|cap| eci::eci_policy::caps::number(*cap));
    let capabilities: Vec<String> = capabilities
        .into_iter()
        .map(eci::eci_policy::caps::name)
        .collect();
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        // createContainer and startContainer hooks, which run inside the container, are refused.
        "hooks": ["prestart", "createRuntime", "poststart", "poststop"],
        "mountOptions": ["bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "idmap"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": false},
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "knownFlags": [
                    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
                ],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"]
            },
            "apparmor": {"enabled": eci::apparmor_enabled()},
            "selinux": {"enabled": false}
        },
        "annotations": {"org.eci.runtime": "eci-runc"}
    })
    .to_string()
}

/// oci-spec's default spec (runc's `spec`: a shell in `rootfs`, the usual namespaces and
/// masks), named for this runtime.
fn oci_spec_default() -> Spec {
    let mut spec = Spec::default();
    spec.set_hostname(Some("eci".into()));
    spec
}

/// RFC 3339 UTC time to the nanosecond, as runc writes it.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_nanos()
    )
}

/// The monitor: creates the container, reports to `create` on fd 3, then serves commands until
/// the container's init exits, gives everything back and exits with the container's code.
fn monitor(ctx: &Ctx, id: &str, bundle: &Path, console: Option<&Path>) -> Result<u8, Error> {
    // Whatever else the caller left open (containerd leaves pipes of its own) must not live on
    // in the monitor and its container: the caller may wait for them to close.
    // SAFETY: close_range with integer arguments; fds from 4 up are none of ours yet.
    unsafe { libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) };
    // SAFETY: fd 3 was set up by `create` for this process alone.
    let ready = unsafe { OwnedFd::from_raw_fd(3) };
    // Not for the programs the container runs.
    nix::fcntl::fcntl(
        ready.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    let ready = std::fs::File::from(ready);
    monitor_container(ctx, id, bundle, console, Caller::Create(ready))
}

/// Creates the container, tells `caller`, then serves commands until the container's init
/// exits, gives everything back and returns the container's exit code.
fn monitor_container(
    ctx: &Ctx,
    id: &str,
    bundle: &Path,
    console: Option<&Path>,
    caller: Caller<'_>,
) -> Result<u8, Error> {
    let started = rfc3339(SystemTime::now());
    // Before anything else: a `delete` that finds no socket yet waits for a monitor recorded
    // here rather than remove what it works in. If the directory went already, nothing starts.
    let me = eci::eci_idmap::Holder::current()?;
    write_whole(&ctx.dir(id).join(MONITOR_FILE), &serde_json::to_vec(&me)?)?;
    // The caller's stdio is the container's, and nothing of the monitor's may hold it: the
    // helpers forked from here would keep the caller's pipes open (containerd waits for them to
    // close), so the monitor lets go of its own before it starts anything.
    let caller_stdio = [
        std::io::stdin().as_fd().try_clone_to_owned()?,
        std::io::stdout().as_fd().try_clone_to_owned()?,
        std::io::stderr().as_fd().try_clone_to_owned()?,
    ];
    detach_stdio()?;
    // A created container's init goes to the process that reaps `create` (containerd's shim),
    // which names it in the pid file, reaps it for the container's exit and reads its cgroup
    // for statistics and OOM events, as runc's init does; the monitor learns of its end through
    // its pidfd. Kernels before 6.15 forget a reaped process's exit status: there the init
    // stays the monitor's child and the pid file names the monitor.
    let init_parent = match caller {
        Caller::Create(_) if eci::eci_ns::pidfd::exit_status_outlives_reaping() => {
            InitParent::Adopter
        }
        Caller::Create(_) => {
            // Said every time: statistics and OOM events of the engine read the wrong cgroup.
            ctx.log(
                "warning",
                "before Linux 6.15 the pid file names the monitor, not the container's init: \
                 the engine's statistics and OOM events read the monitor's cgroup",
            );
            InitParent::Runtime
        }
        _ => InitParent::Runtime,
    };
    let created = create_container(ctx, id, bundle, caller_stdio, init_parent).and_then(
        |(mut container, listener, hooks, spec)| {
            let described = Described::of(id, bundle, &spec, started.clone());
            match (container.take_console(), console) {
                (Some(master), Some(socket)) => {
                    let size = spec.process().as_ref().and_then(|p| p.console_size());
                    send_console(socket, master, size)?
                }
                (Some(_), None) => return Err("a terminal needs --console-socket".into()),
                (None, _) => {}
            }
            let state = oci_state(&described, &container);
            let before = [hooks.create_runtime().clone(), hooks.prestart().clone()];
            match before
                .into_iter()
                .flatten()
                .try_for_each(|h| run_hooks(&h, &state, None))
            {
                Ok(()) => Ok((container, listener, hooks, described)),
                Err(err) => {
                    let _ = container.delete();
                    Err(err)
                }
            }
        },
    );
    let ((mut container, listener, hooks, described), caller) = match (created, caller) {
        (Ok(created), caller) => (created, caller),
        (Err(err), Caller::Create(mut ready)) => {
            let _ = writeln!(ready, "error: {err}");
            return Ok(1);
        }
        (Err(err), Caller::Foreground { .. }) => return Err(err),
    };
    let poststart = |container: &Container| {
        if let Some(hooks) = hooks.poststart() {
            let state = oci_state(&described, container);
            if let Err(err) = run_hooks(hooks, &state, None) {
                ctx.log("warning", &format!("poststart hook: {err}"));
            }
        }
    };
    let signals = match caller {
        Caller::Create(mut ready) => {
            let reaped = match init_parent {
                InitParent::Adopter => container.pid().unsigned_abs(),
                InitParent::Runtime => std::process::id(),
            };
            writeln!(ready, "ok {reaped}")?;
            None
        }
        Caller::Foreground { signals, pid_file } => {
            let started = pid_file
                .map_or(Ok(()), |file| {
                    write_pid_file(file, container.pid().unsigned_abs()).map_err(|err| {
                        format!("writing the pid file {}: {err}", file.display()).into()
                    })
                })
                .and_then(|()| container.start().map_err(Error::from));
            if let Err(err) = started {
                let _ = container.delete();
                return Err(err);
            }
            poststart(&container);
            Some(signals)
        }
    };
    let poststop = |container: &Container| {
        if let Some(hooks) = hooks.poststop() {
            let state = oci_state(&described, container);
            if let Err(err) = run_hooks(hooks, &state, None) {
                ctx.log("warning", &format!("poststop hook: {err}"));
            }
        }
    };
    // For `state` once the monitor is gone, which then reports the container stopped: what
    // else it says never changes, so it is written once. Written again at each change, as it
    // was, a rename over the old file cost 0.2-0.4 ms of a disk-backed root (the old file's
    // blocks are freed: a flush and a discard), one of them on `run`'s way out. Whole or not
    // at all: the monitor may die in the middle of the write.
    let state_file = ctx.dir(id).join("state.json");
    let _ = write_whole(&state_file, oci_state(&described, &container).as_bytes());
    // Processes added with exec, each with the connection of its client.
    let mut execs: Vec<Exec> = Vec::new();
    // Whether the monitor has run code since it last gave back its footprint (creating the
    // container is most of its program; exec and the requests add more).
    let mut worked = true;
    // A started container's poststart hooks, run beside the loop: a hook with no timeout may
    // take as long as it likes, and `state`, `kill` and `delete` are answered meanwhile (as
    // runc's are: its hooks run in `start`'s own process).
    let mut poststarting: Option<Poststart> = None;
    // The container's exit code once its end is seen while its poststart hooks still run: it
    // is dealt with once they have (poststop after them), and until then it reads stopped and
    // may be deleted, which ends the hooks.
    let mut ended: Option<u8> = None;
    loop {
        let watch = |fd: std::os::fd::BorrowedFd<'_>, events| libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        };
        // An end already seen is not watched again (its pidfd would stay readable).
        let init_events = if ended.is_some() { 0 } else { libc::POLLIN };
        let mut fds = vec![
            watch(container.pidfd().as_fd(), init_events),
            watch(listener.as_fd(), libc::POLLIN),
        ];
        for exec in &execs {
            fds.push(watch(exec.process.pidfd().as_fd(), libc::POLLIN));
            // A client that went away is not listened to again: its stream would report its
            // hang-up on every poll (a paused container's process may take long to die). The
            // process's pidfd without events keeps the indices aligned instead.
            fds.push(if exec.connected {
                watch(exec.stream.as_fd(), libc::POLLIN)
            } else {
                watch(exec.process.pidfd().as_fd(), 0)
            });
        }
        if let Some(signals) = &signals {
            fds.push(watch(signals.0.as_fd(), libc::POLLIN));
        }
        if let Some(poststart) = &poststarting {
            fds.push(watch(poststart.done.as_fd(), libc::POLLIN));
        }
        let waited = if worked {
            wait_then_trim(&mut fds, ctx)
        } else {
            eci::eci_ns::sys::poll(&mut fds, -1)
        };
        match waited {
            Ok(_) => {}
            Err(eci::eci_ns::sys::Errno(libc::EINTR)) => continue,
            Err(errno) => return Err(std::io::Error::from(errno).into()),
        }
        worked = true;
        let ready: Vec<bool> = fds.iter().map(|f| f.revents != 0).collect();
        drop(fds);
        let (exited, asked) = (ready[0], ready[1]);
        let after_execs = 2 + 2 * execs.len();
        if let Some(signals) = signals.as_ref().filter(|_| ready[after_execs]) {
            signals.forward(&container);
        }
        let hooks_done = poststarting.is_some() && ready[after_execs + signals.is_some() as usize];
        for index in (0..execs.len()).rev() {
            if ready[3 + 2 * index] && execs[index].connected {
                execs[index].relay();
            }
            if ready[2 + 2 * index] {
                let Exec {
                    mut process,
                    mut stream,
                    ..
                } = execs.swap_remove(index);
                let code = process.wait().map(|s| s.code()).unwrap_or(255);
                let _ = writeln!(stream, "exited {code}");
            }
        }
        if exited && ended.is_none() {
            // The container's PID namespace is gone, and every exec'd process with it.
            report_exits(&mut execs);
            // Also a container killed before it was started. A status that cannot be had
            // (logged) leaves the cleanup to do all the same.
            ended = Some(exit_code(ctx, &mut container));
        }
        if hooks_done {
            if let Some(poststart) = poststarting.take() {
                poststart.finish();
            }
        }
        // `start` is answered before the container's end is dealt with.
        if let Some(code) = ended.filter(|_| poststarting.is_none()) {
            let _cleaning = hold_while_cleaning(ctx, id);
            let _ = std::fs::remove_file(ctx.socket(id));
            poststop(&container);
            let _ = finish(ctx, id, container);
            return Ok(code);
        }
        if asked {
            let Ok((stream, _)) = listener.accept() else {
                continue;
            };
            // Only host root drives a monitor, as only it may run the runtime: the socket's
            // directory is root's alone, and this holds even where it was made reachable.
            if !from_host_root(&stream) {
                ctx.log(
                    "warning",
                    "a request from a process other than host root, refused",
                );
                continue;
            }
            // A client that stalls or goes away must not stop the monitor.
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let _ = stream.set_write_timeout(Some(std::time::Duration::from_secs(10)));
            let describe = |c: &Container| oci_state(&described, c);
            let served = match serve(&mut container, stream, &describe) {
                Ok(served) => served,
                Err(err) => {
                    ctx.log("warning", &format!("a request failed: {err}"));
                    continue;
                }
            };
            match served {
                Served::Continue => {}
                Served::Started(mut stream) => match hooks.poststart() {
                    Some(hooks) if !hooks.is_empty() => {
                        let state = oci_state(&described, &container);
                        // Without a thread (none to be had) the hooks do not run and the
                        // client hears of it as its connection closes; the container runs on.
                        match Poststart::run(ctx, hooks.clone(), state, stream) {
                            Ok(running) => poststarting = Some(running),
                            Err(err) => ctx.log("warning", &format!("poststart hooks: {err}")),
                        }
                    }
                    _ => {
                        let _ = writeln!(stream, "ok ");
                    }
                },
                Served::Exec(process, stream) => execs.push(Exec {
                    process,
                    stream,
                    connected: true,
                    pending: Vec::new(),
                }),
                Served::Deleted(stream) => {
                    // Poststart hooks still running end with the container (the `start` they
                    // hold is answered, the hook logged as killed), before its poststop hooks.
                    if let Some(poststart) = poststarting.take() {
                        poststart.stop();
                    }
                    // Exec'd processes die with the container; their clients get their codes
                    // (the facade's wait would reap them too, but tells no one).
                    report_exits(&mut execs);
                    let _cleaning = hold_while_cleaning(ctx, id);
                    let _ = std::fs::remove_file(ctx.socket(id));
                    let code = match container.state() {
                        State::Created => 0,
                        _ => exit_code(ctx, &mut container),
                    };
                    poststop(&container);
                    // A failed cleanup is the delete's failure: the client, which then finds
                    // the monitor gone, takes down what is left.
                    let answer = match finish(ctx, id, container) {
                        Ok(()) => "ok".to_string(),
                        Err(err) => format!("error: {err}"),
                    };
                    let mut stream = stream;
                    let _ = writeln!(stream, "{answer}");
                    return Ok(code);
                }
            }
        }
    }
}

/// A started container's poststart hooks, running on a thread of their own; the client of
/// `start` is answered once they have run. A hook that fails is logged, not the start's
/// failure: the container runs.
struct Poststart {
    thread: std::thread::JoinHandle<()>,
    /// Reads its end of stream once the thread is done.
    done: std::io::PipeReader,
    /// Set to end the hooks early.
    stop: Arc<AtomicBool>,
}

impl Poststart {
    /// Starts running `hooks` with the container's `state`.
    fn run(
        ctx: &Ctx,
        hooks: Vec<Hook>,
        state: String,
        mut stream: UnixStream,
    ) -> Result<Poststart, Error> {
        let log = ctx.log.clone().map(|file| (file, ctx.json));
        let (done, finished) = std::io::pipe()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("poststart".into())
            .spawn(move || {
                if let (Err(err), Some((file, json))) =
                    (run_hooks(&hooks, &state, Some(&stopping)), &log)
                {
                    append_log(file, *json, "warning", &format!("poststart hook: {err}"));
                }
                let _ = writeln!(stream, "ok ");
                drop(finished);
            })?;
        Ok(Poststart { thread, done, stop })
    }

    /// Waits for the hooks, done or nearly (their thread has answered `start`).
    fn finish(self) {
        let _ = self.thread.join();
    }

    /// Kills the hook running, runs no other, and waits for the thread to answer `start`.
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.finish();
    }
}

/// The ended container's exit code for the monitor's own, 255 (logged) if it cannot be had.
fn exit_code(ctx: &Ctx, container: &mut Container) -> u8 {
    match container.wait() {
        Ok(status) => status.code().clamp(0, 255) as u8,
        Err(err) => {
            ctx.log("warning", &format!("the container's exit status: {err}"));
            255
        }
    }
}

/// How long the monitor waits, idle after some work, before it gives back the pages that work
/// touched: long enough that `run` of a short command and a burst of requests never pay for it.
const IDLE_BEFORE_TRIM_MS: u16 = 2000;

/// Waits until `fd` has something (or hung up); if [`IDLE_BEFORE_TRIM_MS`] pass first, gives
/// back the program pages this process's start touched on the way.
fn wait_readable_trimming(fd: std::os::fd::BorrowedFd<'_>, ctx: &Ctx) {
    let mut fds = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    while let Err(eci::eci_ns::sys::Errno(libc::EINTR)) = wait_then_trim(&mut fds, ctx) {}
}

/// Waits for `fds`; if [`IDLE_BEFORE_TRIM_MS`] pass without anything, gives back the pages the
/// work before touched (creating a container runs most of eci-runc, about 4.5 MiB of its own
/// and libc's text; waiting runs little) and goes on waiting, without a limit. How many have
/// something.
fn wait_then_trim(fds: &mut [libc::pollfd], ctx: &Ctx) -> Result<usize, eci::eci_ns::sys::Errno> {
    use eci::eci_ns::footprint::poll_trimming_once_idle;
    let (trimmed, ready) = poll_trimming_once_idle(fds, IDLE_BEFORE_TRIM_MS.into());
    if let Some(Err(err)) = trimmed {
        ctx.log("warning", &format!("giving back memory: {err}"));
    }
    ready
}

/// A process added with exec, and the connection to its client (`eci-runc exec`, or a detached
/// exec's stand-in), on which its signals come and its exit code goes back.
struct Exec {
    process: ExecProcess,
    stream: UnixStream,
    connected: bool,
    /// What the client sent that is not a whole line yet.
    pending: Vec<u8>,
}

impl Exec {
    /// Applies what the client sent: `signal N` lines are sent on to the process. A client that
    /// goes away takes the process with it: the shim signals a detached exec through its
    /// stand-in's pid, and a SIGKILL there cannot be passed on otherwise.
    fn relay(&mut self) {
        use std::io::Read;
        let mut buf = [0u8; 256];
        match (&self.stream).read(&mut buf) {
            Ok(0) | Err(_) => {
                self.connected = false;
                let _ = self.process.kill(libc::SIGKILL);
            }
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.pending.drain(..=end).collect();
                    let signal = std::str::from_utf8(&line)
                        .ok()
                        .and_then(|l| l.trim_end().strip_prefix("signal "))
                        .and_then(|s| s.parse().ok());
                    if let Some(signal) = signal {
                        let _ = self.process.kill(signal);
                    }
                }
                if self.pending.len() > 1024 {
                    // Not a client of ours: never let it grow the monitor.
                    self.pending.clear();
                }
            }
        }
    }
}

/// Reaps exec'd processes and tells each one's client its exit code.
fn report_exits(execs: &mut Vec<Exec>) {
    for Exec {
        mut process,
        mut stream,
        ..
    } in execs.drain(..)
    {
        let code = process.wait().map(|s| s.code()).unwrap_or(255);
        let _ = writeln!(stream, "exited {code}");
    }
}

enum Served {
    Continue,
    /// Started: the client hears so once the poststart hooks have run.
    Started(UnixStream),
    Exec(ExecProcess, UnixStream),
    Deleted(UnixStream),
}

/// Answers one command.
fn serve(
    container: &mut Container,
    stream: UnixStream,
    describe: &dyn Fn(&Container) -> String,
) -> Result<Served, Error> {
    let (line, fds) = receive_request(&stream)?;
    let mut words = line.split_whitespace();
    let answer: Result<String, String> = match words.next() {
        Some("exec") => {
            let json = line.trim_start().trim_start_matches("exec").trim();
            match start_exec(container, json, fds) {
                Ok(process) => {
                    let mut stream = stream;
                    writeln!(stream, "ok {}", process.pid())?;
                    return Ok(Served::Exec(process, stream));
                }
                Err(err) => Err(err.to_string()),
            }
        }
        // The poststart hooks run before the answer, as the runtime spec has them run before
        // `start` returns: the loop has them run beside it ([`Served::Started`]).
        Some("start") => match container.start() {
            Ok(_) => return Ok(Served::Started(stream)),
            Err(err) => Err(err.to_string()),
        },
        Some("state") => Ok(describe(container)),
        Some("kill") => match words.next().and_then(|s| s.parse().ok()) {
            Some(signal) if words.next() == Some("all") => container
                .kill_all(signal)
                .map(|_| String::new())
                .map_err(|e| e.to_string()),
            Some(signal) => container
                .kill(signal)
                .map(|_| String::new())
                .map_err(|e| e.to_string()),
            None => Err("kill needs a signal number".into()),
        },
        Some("pause") => container
            .pause()
            .map(|_| String::new())
            .map_err(|e| e.to_string()),
        Some("resume") => container
            .resume()
            .map(|_| String::new())
            .map_err(|e| e.to_string()),
        Some("ps") => container
            .processes()
            .map(|pids| serde_json::Value::from(pids).to_string())
            .map_err(|e| e.to_string()),
        Some("update") => {
            let json = line.trim_start().trim_start_matches("update").trim();
            serde_json::from_str::<LinuxResources>(json)
                .map_err(|e| format!("the resources are not valid: {e}"))
                .and_then(|resources| container.update(&resources).map_err(|e| e.to_string()))
                .map(|_| String::new())
        }
        Some("delete") => {
            let force = words.next() == Some("force");
            match container.state() {
                State::Running | State::Paused if !force => {
                    Err("cannot delete a running container without --force".into())
                }
                // Never started: deleting kills and reaps the waiting init.
                State::Stopped(_) | State::Created => return Ok(Served::Deleted(stream)),
                State::Running | State::Paused => {
                    // Every process of the container, as runc's: one held in the kernel (by a
                    // FUSE server of the container's that never answers) outlives its own
                    // SIGKILL until that server ends, and the waits below would never return.
                    // An init that has ended already, its end not yet seen here (ESRCH), is
                    // deleted all the same; a failure is answered, never a dropped request.
                    if container.kill_all(libc::SIGKILL).is_err() {
                        let _ = container.kill(libc::SIGKILL);
                    }
                    let thawed = match container.state() {
                        // A frozen init dies only once thawed.
                        State::Paused => container.resume().map_err(|e| e.to_string()),
                        _ => Ok(()),
                    };
                    match thawed {
                        Ok(()) => return Ok(Served::Deleted(stream)),
                        Err(err) => Err(format!("thawing the container to delete it: {err}")),
                    }
                }
            }
        }
        other => Err(format!("unknown request {other:?}")),
    };
    let mut stream = stream;
    match answer {
        Ok(text) => writeln!(stream, "ok {text}")?,
        Err(err) => writeln!(stream, "error: {err}")?,
    }
    Ok(Served::Continue)
}

/// Reads one request line and the descriptors that came with it.
fn receive_request(stream: &UnixStream) -> Result<(String, Vec<OwnedFd>), Error> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut line = Vec::new();
    let mut fds = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !line.ends_with(b"\n") {
        if line.len() > 1 << 20 {
            return Err("request too long".into());
        }
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 3]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                // SAFETY: the kernel just gave us these descriptors.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let read = msg.bytes;
        if read == 0 {
            break;
        }
        line.extend_from_slice(&buf[..read]);
    }
    Ok((String::from_utf8_lossy(&line).trim_end().to_string(), fds))
}

/// Starts an exec'd process from its OCI process JSON, with the three descriptors the client
/// sent as its stdin, stdout and stderr.
fn start_exec(container: &Container, json: &str, fds: Vec<OwnedFd>) -> Result<ExecProcess, Error> {
    let request: serde_json::Value = serde_json::from_str(json)?;
    let process: eci::oci_spec::runtime::Process =
        serde_json::from_value(request["process"].clone())?;
    let console = request["consoleSocket"].as_str().map(PathBuf::from);
    // Refused before the program runs, not after (its command would have run in part).
    if process.terminal() == Some(true) && console.is_none() {
        return Err("a terminal needs --console-socket".into());
    }
    // With a terminal the caller's descriptors are not the process's (and must not stay open).
    let mut fds = fds.into_iter().filter(|_| process.terminal() != Some(true));
    let stdio = Stdio {
        stdin: fds.next(),
        stdout: fds.next(),
        stderr: fds.next(),
    };
    let size = process.console_size();
    let mut exec = container.exec(process, stdio)?;
    match (exec.take_console(), console) {
        (Some(master), Some(socket)) => send_console(&socket, master, size)?,
        (Some(_), None) => return Err("a terminal needs --console-socket".into()),
        (None, _) => {}
    }
    Ok(exec)
}

/// The client side of exec: sends the process and this process's stdio to the monitor, then
/// (after telling `ready`, for a detached exec) waits for the exit code.
fn exec_through_monitor(
    ctx: &Ctx,
    id: &str,
    process: &str,
    console: Option<&Path>,
    ready: Option<std::fs::File>,
) -> Result<u8, Error> {
    let stream = connect(ctx, id).map_err(|_| format!("container not running: {id}"))?;
    let process: serde_json::Value = serde_json::from_str(process)?;
    // The monitor connects from its own working directory: a relative path is the client's,
    // as runc's exec takes it. A JSON string is Unicode: a path that is not cannot be told.
    let console = console.map(std::path::absolute).transpose()?;
    let console = console
        .as_deref()
        .map(|path| {
            path.to_str()
                .ok_or_else(|| format!("--console-socket {}: not UTF-8", path.display()))
        })
        .transpose()?;
    let request = serde_json::json!({"process": process, "consoleSocket": console});
    let request = format!("exec {request}\n");
    send_with_fds(&stream, request.as_bytes(), &[0, 1, 2])?;
    let mut reader = BufReader::new(&stream);
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    let answer = answer.trim_end();
    if !answer.starts_with("ok") {
        let reason = answer.trim_start_matches("error: ").to_string();
        if let Some(mut ready) = ready {
            let _ = writeln!(ready, "error: {reason}");
        }
        return Err(reason.into());
    }
    forward_signals(&stream)?;
    if let Some(mut ready) = ready {
        writeln!(ready, "ok")?;
        // The process holds the caller's stdio now; ours must not keep its pipes open.
        detach_stdio()?;
    }
    // The process may run for long (a shell, a server, the shim's every `docker exec`): what
    // starting this program touched is given back while it waits.
    if reader.buffer().is_empty() {
        wait_readable_trimming(stream.as_fd(), ctx);
    }
    let mut exited = String::new();
    reader.read_line(&mut exited)?;
    let code = exited
        .trim_end()
        .strip_prefix("exited ")
        .and_then(|c| c.parse::<i32>().ok())
        .unwrap_or(255);
    Ok(code.clamp(0, 255) as u8)
}

/// Passes the signals this process gets (as runc exec does, and as the shim sends them to a
/// detached exec's pid) on to the exec'd process, through the monitor.
fn forward_signals(stream: &UnixStream) -> Result<(), Error> {
    let set = forwarded();
    // Blocked here, before the thread exists, so that every thread leaves them to its sigwait.
    set.thread_block()?;
    let mut out = stream.try_clone()?;
    std::thread::spawn(move || loop {
        let mut signal = 0;
        // SAFETY: a valid set and out pointer. (nix's wait knows no real-time signals.)
        if unsafe { libc::sigwait(set.as_ref(), &mut signal) } != 0 {
            return;
        }
        // One write per line: the monitor reads whatever has arrived.
        let line = format!("signal {signal}\n");
        if out.write_all(line.as_bytes()).is_err() {
            return;
        }
    });
    Ok(())
}

/// The process an exec asks for: the --process file, or, as runc builds it, the container's
/// own process (from the bundle's config.json: its environment, user, working directory,
/// capabilities, limits) with what the command line says over it.
fn exec_process(ctx: &Ctx, e: &liboci_cli::Exec) -> Result<String, Error> {
    // Never dropped without a word: the process would run with less (or more) than asked.
    // runc applies these two with --process too.
    if e.preserve_fds > 0 || e.cgroup.is_some() {
        return Err("exec --preserve-fds and --cgroup are not supported".into());
    }
    if let Some(path) = &e.process {
        return Ok(std::fs::read_to_string(path)?.replace('\n', " "));
    }
    if e.command.is_empty() {
        return Err("exec needs a command or --process".into());
    }
    let unsupported = [
        ("--cap", !e.cap.is_empty()),
        ("--process-label", e.process_label.is_some()),
    ];
    if let Some((flag, _)) = unsupported.iter().find(|(_, given)| *given) {
        return Err(format!("exec {flag} is not supported").into());
    }
    let mut process = containers_process(ctx, &e.container_id)?;
    process.set_args(Some(e.command.clone()));
    if e.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    process.set_terminal(Some(e.tty));
    process.set_console_size(None);
    if let Some(profile) = &e.apparmor {
        process.set_apparmor_profile(Some(profile.clone()));
    }
    // A variable given again replaces the container's, as runc's exec leaves the last one.
    let mut env = process.env().clone().unwrap_or_default();
    for (key, value) in &e.env {
        env.retain(|entry| entry.split_once('=').map_or(entry.as_str(), |(k, _)| k) != key);
        env.push(format!("{key}={value}"));
    }
    process.set_env(Some(env));
    if let Some(cwd) = &e.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some((uid, gid)) = e.user {
        let mut user = process.user().clone();
        user.set_uid(uid);
        if let Some(gid) = gid {
            user.set_gid(gid);
        }
        process.set_user(user);
    }
    // Added to the container's, as runc adds them.
    if !e.additional_gids.is_empty() {
        let mut user = process.user().clone();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(&e.additional_gids);
        user.set_additional_gids(Some(gids));
        process.set_user(user);
    }
    Ok(serde_json::to_string(&process)?)
}

/// The process of container `id`'s spec, as its bundle (recorded at create) has it.
fn containers_process(ctx: &Ctx, id: &str) -> Result<eci::oci_spec::runtime::Process, Error> {
    // From the monitor while it runs, else from what it recorded (`state` says which is
    // missing: the container, or its running).
    let state: serde_json::Value = serde_json::from_str(&state(ctx, id)?)?;
    if state["status"] != "running" {
        return Err(format!("container not running: {id}").into());
    }
    let bundle = state["bundle"]
        .as_str()
        .ok_or_else(|| format!("container '{id}': no bundle in its state"))?;
    let spec = eci::load_spec(Path::new(bundle))
        .map_err(|err| format!("container '{id}': the process of its bundle: {err}"))?;
    Ok(spec.process().clone().unwrap_or_default())
}

/// Creates the container from the bundle, with this process's stdio as its own.
fn create_container(
    ctx: &Ctx,
    id: &str,
    bundle: &Path,
    caller_stdio: [OwnedFd; 3],
    init_parent: InitParent,
) -> Result<(Container, UnixListener, Hooks, Spec), Error> {
    let mut config = RuntimeConfig {
        state_dir: ctx.state_dir(),
        virtual_files: ctx.virtual_files()?,
        // Leases mean something only within one boot (the journal is the boot's own), and a
        // monitor that dies loses nothing it wrote: syncing each change bought nothing but
        // three disk flushes a container.
        lease_durability: eci::Durability::BootScoped,
        ..Default::default()
    };
    if let Some(settings) = &ctx.settings {
        config.policy = eci::load_settings(settings)?;
    }
    let mut spec = eci::load_spec(bundle)?;
    // The engine's files for this very container (Docker's resolv.conf, hosts, hostname and
    // shm under /var/lib/docker/containers/ID, which the policy otherwise restricts with the
    // rest of the engine's state) are the container's own: share that directory, and only it.
    // Their parent's parent is the engine's data root, whose volumes may then be mounted
    // wherever `--data-root` put it (the ID, the engine's, is not the API's to choose).
    for dir in own_engine_dirs(&spec, id) {
        if let Some(root) = dir.parent().and_then(Path::parent) {
            config.policy = config.policy.with_engine_data_root(root)?;
        }
        config.policy.paths.share(&dir, false)?;
    }
    // Joining another container's namespaces (`--network container:NAME`): only one of this
    // root's, whose files the engine binds are then shared one by one.
    // Open until the container is created: the spec names them as /proc/self/fd/N.
    let joined = joined_owners(ctx, &mut spec)?;
    for file in joined_engine_files(&spec, &joined.owners) {
        config.policy.paths.share(&file, false)?;
    }
    // Every container's directory under the root (its monitor's socket, its records), not
    // only the shared state: a container that could bind one could drive another's monitor.
    config.policy = config
        .policy
        .with_state_dir(&std::fs::canonicalize(&ctx.root)?)?;
    let runtime = Runtime::new(config)?;
    // Hooks are the runtime's to run, not the container's: the facade never sees them.
    let hooks = spec.hooks().clone().unwrap_or_default();
    spec.set_hooks(None);
    if hooks
        .create_container()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
        || hooks
            .start_container()
            .as_ref()
            .is_some_and(|h| !h.is_empty())
    {
        return Err("createContainer and startContainer hooks are not supported yet".into());
    }
    // With a terminal the process's stdio is the pty; the caller's pipes must not be kept open
    // by the waiting init (containerd waits for them to close before it calls start).
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let stdio = if terminal {
        // Closed now, before the container's processes are forked: they would hold them open
        // until they exec.
        drop(caller_stdio);
        Stdio::default()
    } else {
        let [stdin, stdout, stderr] = caller_stdio;
        Stdio {
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    };
    let mut config = ContainerConfig::new(id, spec.clone())
        .bundle(bundle)
        .stdio(stdio)
        .init_parent(init_parent);
    if let Some(image) = engine_image(ctx, &spec, id, runtime.policy()) {
        config = config.image(image);
    }
    let container = runtime.create(config)?;
    record_cgroup(ctx, id, &container);
    let dir = std::fs::File::open(ctx.dir(id))?;
    let listener = UnixListener::bind(short_path(&dir))?;
    // The container keeps what it needs of the runtime (supervisor, helpers, virtual files).
    drop(runtime);
    Ok((container, listener, hooks, spec))
}

/// Records what `delete` needs to take the container down should this monitor die before it
/// does: the cgroup's path and what tells it from a later one there. Written as soon as the
/// container exists, before its hooks (which may run for minutes) and before `create` is told,
/// so that no moment leaves a container delete cannot find (a write and a rename, about 0.14
/// ms on this VM's ext4 /run; the state file, which only `state` after the monitor's death
/// reads, waits until after).
fn record_cgroup(ctx: &Ctx, id: &str, container: &Container) {
    if let Some(path) = container.cgroup_path() {
        let mut record = path.as_os_str().as_encoded_bytes().to_vec();
        record.extend(format!("\n{}", container.cgroup_identity().unwrap_or(0)).bytes());
        if let Err(err) = write_whole(&ctx.dir(id).join(CGROUP_FILE), &record) {
            ctx.log(
                "warning",
                &format!("recording the cgroup (delete cannot clean up if I die): {err}"),
            );
        }
    }
}

/// Runs hooks one after another, each with the container's state on stdin, as the OCI runtime
/// spec says: a hook that fails or outlives its timeout is an error. Once `stop` is set, the
/// hook running is killed and no other starts (an error too).
fn run_hooks(hooks: &[Hook], state: &str, stop: Option<&AtomicBool>) -> Result<(), Error> {
    let stopped = || stop.is_some_and(|stop| stop.load(Ordering::SeqCst));
    for hook in hooks {
        let path = hook.path();
        if stopped() {
            return Err(
                format!("hook {} not run: the container was deleted", path.display()).into(),
            );
        }
        let mut command = Command::new(path);
        if let Some(args) = hook.args() {
            if let Some(arg0) = args.first() {
                command.arg0(arg0);
            }
            command.args(args.iter().skip(1));
        }
        command.env_clear();
        for pair in hook.env().iter().flatten() {
            if let Some((key, value)) = pair.split_once('=') {
                command.env(key, value);
            }
        }
        command.stdin(std::process::Stdio::piped());
        command.stdout(std::process::Stdio::null());
        let mut child = command
            .spawn()
            .map_err(|e| format!("hook {}: {e}", path.display()))?;
        // Fed in the wait's turns, as much as the pipe takes each time: a hook that reads none
        // of a state larger than a pipe holds (annotations are in it) would otherwise hold a
        // blocking write, and the monitor, past its timeout. Closed once all is written (the
        // hook reads its end), or once the hook has closed its own.
        let mut stdin = child.stdin.take();
        if let Some(pipe) = &stdin {
            // SAFETY: fcntl on a descriptor we own; only our end of the pipe is changed.
            unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        }
        let (state, mut written) = (state.as_bytes(), 0);
        let timeout = hook
            .timeout()
            .map(|t| std::time::Duration::from_secs(t.max(1) as u64));
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(pipe) = stdin.as_mut() {
                match pipe.write(&state[written..]) {
                    Ok(n) => written += n,
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => written = state.len(),
                }
                if written == state.len() {
                    stdin = None;
                }
            }
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if timeout.is_some_and(|t| start.elapsed() > t) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("hook {} timed out", path.display()).into());
            }
            if stopped() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(
                    format!("hook {} killed: the container was deleted", path.display()).into(),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        if !status.success() {
            return Err(format!("hook {} failed: {status}", path.display()).into());
        }
    }
    Ok(())
}

/// The destinations of the files Docker keeps for each container and binds in itself.
const ENGINE_FILES: [&str; 4] = [
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/dev/shm",
];

/// Directories `.../containers/ID` (Docker's layout) that the sources of the engine's own binds
/// (`ENGINE_FILES`) are under: what the engine keeps for this container alone. Only for IDs of
/// engine length (Docker's are 64 hex digits), so that a short ID such as `etc` can never name
/// a host directory, and only from those binds, not from a user's.
fn own_engine_dirs(spec: &Spec, id: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if id.len() < 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return dirs;
    }
    let named = |p: &Path, name: &str| p.file_name() == Some(std::ffi::OsStr::new(name));
    let engines = spec.mounts().iter().flatten().filter(|mount| {
        ENGINE_FILES
            .iter()
            .any(|file| mount.destination() == Path::new(file))
    });
    for mount in engines {
        let Some(source) = mount.source() else {
            continue;
        };
        let own = source
            .ancestors()
            .find(|a| named(a, id) && a.parent().is_some_and(|p| named(p, "containers")));
        if let Some(own) = own.filter(|d| d.is_absolute() && !dirs.iter().any(|x| x == d)) {
            dirs.push(own.to_path_buf());
        }
    }
    dirs
}

/// The containers of this root whose namespaces `spec` joins, each with the type joined
/// ("net", "ipc" or "uts"). Every joined namespace must be one of theirs: a container's init,
/// found by its recorded pid and proven by its cgroup (a pid reused since names none of its
/// processes, [`eci::orphan_init`]), runs in it. The runtime checks on its own that a joined
/// namespace is an eci container's; this keeps the reach to this root's (one engine's
/// runtime: a socket proxied for it reaches the same ones). Each namespace is opened once, and
/// the spec then names the open file (`/proc/self/fd/N`, with the files returned, to be kept
/// open until the container is created): the runtime joins what was checked here, not what
/// the path may lead to by then.
fn joined_owners(ctx: &Ctx, spec: &mut Spec) -> Result<Joined, Error> {
    use eci::oci_spec::runtime::LinuxNamespaceType;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let identity = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let joined = eci::eci_policy::harden::joined_namespaces(spec);
    if joined.is_empty() {
        return Ok(Joined::default());
    }
    let mut inits = Vec::new();
    let ids = std::fs::read_dir(&ctx.root).into_iter().flatten().flatten();
    for id in ids.filter_map(|entry| entry.file_name().into_string().ok()) {
        if id.starts_with('.') || !eci::valid_container_id(&id) {
            continue;
        }
        let Ok(state) = recorded_state(ctx, &id) else {
            continue;
        };
        if let Some(init) = orphaned_init(ctx, &id, &state) {
            inits.push((id, init));
        }
    }
    let mut owners = Vec::new();
    let mut files = Vec::new();
    for (typ, path) in &joined {
        let ns = match typ {
            LinuxNamespaceType::Network => "net",
            LinuxNamespaceType::Ipc => "ipc",
            LinuxNamespaceType::Uts => "uts",
            // The runtime refuses the others, with their names.
            _ => continue,
        };
        // O_PATH opens nothing: a device or FIFO named there is never really opened.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(path)
            .map_err(|err| format!("opening the {ns} namespace {}: {err}", path.display()))?;
        let wanted = file.metadata().ok().map(|m| (m.dev(), m.ino()));
        let owner = inits.iter().find(|(_, init)| {
            let theirs = identity(Path::new(&format!("/proc/{}/ns/{ns}", init.pid())));
            // Alive when read after: what was read was that init's.
            wanted.is_some() && theirs == wanted && init.is_alive()
        });
        match owner {
            Some((id, _)) => {
                owners.push((id.clone(), ns));
                rename_joined(spec, *typ, &format!("/proc/self/fd/{}", file.as_raw_fd()));
                files.push(file);
            }
            None => {
                return Err(format!(
                    "joining the {ns} namespace {}: no container of this runtime's root ({}) \
                     runs in it; only their namespaces may be shared",
                    path.display(),
                    ctx.root.display()
                )
                .into())
            }
        }
    }
    Ok(Joined {
        owners,
        _files: files,
    })
}

/// The containers whose namespaces a spec joins, each with the type joined, and the joined
/// namespaces' files, to be kept open until the container is created (the spec names them as
/// `/proc/self/fd/N`).
#[derive(Default)]
struct Joined {
    owners: Vec<(String, &'static str)>,
    _files: Vec<std::fs::File>,
}

/// Has `spec` name its `typ` namespace by `path`.
fn rename_joined(spec: &mut Spec, typ: eci::oci_spec::runtime::LinuxNamespaceType, path: &str) {
    let Some(mut linux) = spec.linux().clone() else {
        return;
    };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    for ns in namespaces.iter_mut().filter(|ns| ns.typ() == typ) {
        ns.set_path(Some(PathBuf::from(path)));
    }
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
}

/// The sources of the engine's binds that belong to the containers whose namespaces `spec`
/// joins (`owners`, from [`joined_owners`]): with `--network container:NAME` Docker binds
/// NAME's `hosts`, `hostname` and `resolv.conf`, and with `--ipc container:NAME` NAME's
/// `mounts/shm` at /dev/shm. Only those exact files, by clean paths, at those exact
/// destinations: NAME's directory holds its configuration and logs too.
fn joined_engine_files(spec: &Spec, owners: &[(String, &'static str)]) -> Vec<PathBuf> {
    use std::path::Component;
    // The files each joined type brings: (destination, path under the container's directory).
    let files_of = |ns: &str| -> &'static [(&'static str, &'static str)] {
        match ns {
            "net" => &[
                ("/etc/hosts", "hosts"),
                ("/etc/hostname", "hostname"),
                ("/etc/resolv.conf", "resolv.conf"),
            ],
            "ipc" => &[("/dev/shm", "mounts/shm")],
            _ => &[],
        }
    };
    let clean = |p: &Path| {
        p.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
    };
    let mut files = Vec::new();
    for (id, ns) in owners {
        for dir in own_engine_dirs(spec, id) {
            for (destination, name) in files_of(ns) {
                let expected = dir.join(name);
                let bound = spec.mounts().iter().flatten().any(|m| {
                    m.destination() == Path::new(destination)
                        && m.source().as_deref() == Some(expected.as_path())
                });
                if bound && clean(&expected) {
                    files.push(expected);
                }
            }
        }
    }
    files
}

/// The monitor's own stdio goes to /dev/null: the container holds the caller's.
fn detach_stdio() -> Result<(), Error> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        nix::unistd::dup2(null.as_raw_fd(), fd)?;
    }
    Ok(())
}

/// The OCI state document.
/// What a container's OCI state says besides its status and pid: fixed at create.
struct Described<'a> {
    id: &'a str,
    bundle: &'a Path,
    /// `root.path`, against the bundle when relative.
    rootfs: PathBuf,
    /// The spec's, which hooks read here (runc copies them too).
    annotations: serde_json::Value,
    created: String,
}

impl Described<'_> {
    fn of<'a>(id: &'a str, bundle: &'a Path, spec: &Spec, created: String) -> Described<'a> {
        let root = spec.root().as_ref().map(|r| r.path().clone());
        Described {
            id,
            bundle,
            rootfs: bundle.join(root.unwrap_or_else(|| "rootfs".into())),
            annotations: serde_json::json!(spec.annotations().clone().unwrap_or_default()),
            created,
        }
    }
}

fn oci_state(described: &Described<'_>, container: &Container) -> String {
    let status = match container.state() {
        State::Created => "created",
        State::Running => "running",
        State::Paused => "paused",
        State::Stopped(_) => "stopped",
    };
    // The container's init, where hooks and tools find its namespaces; none once it has
    // stopped (as runc says), when the pid may name another process.
    let pid = match container.state() {
        State::Stopped(_) => 0,
        _ => container.pid(),
    };
    serde_json::json!({
        "ociVersion": OCI_VERSION,
        "id": described.id,
        "status": status,
        "pid": pid,
        // JSON strings are Unicode: a path that is not is shown with U+FFFD in its place
        // (serde_json refuses to write it, and the macro would panic).
        "bundle": described.bundle.to_string_lossy(),
        "rootfs": described.rootfs.to_string_lossy(),
        "created": described.created,
        "owner": "",
        "annotations": described.annotations
    })
    .to_string()
}
