//! Handing a starting process's seccomp listener to the supervisor and its mount helper, for
//! the container's init and for every process added later.

use std::io::ErrorKind::InvalidData;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use eci_ns::channel::{Channel, ReceivedFds};
use eci_ns::failure::Failure;
use eci_ns::PidFd;
use eci_policy::mount::MountPolicy;
use eci_policy::Policy;
use eci_seccomp::fresh::Masks;
use eci_seccomp::mount::{HelperConfig, MountVetter, PendingVetter};
use eci_seccomp::notify::Listener;
use eci_seccomp::supervisor::Handler;
use eci_seccomp::Registration;
use oci_spec::runtime::Spec;

use crate::error::{Error, Result};
use crate::init::{CONSOLE, LISTENER, MOUNTS_FINAL};
use crate::runtime::Shared;

/// What a starting process hands over: its seccomp listener, and its terminal's master if it
/// asked for one.
pub(crate) struct Handover {
    pub(crate) listener: OwnedFd,
    pub(crate) console: Option<OwnedFd>,
}

/// Receives what a starting process hands over: its terminal's master first if it asked for
/// one, then its seccomp listener. A failure it reports instead is explained.
pub(crate) fn receive_listener(
    channel: &Channel,
    terminal: bool,
    explain: impl Fn(Failure) -> Error,
) -> Result<Handover> {
    let console = if terminal {
        let gone = "the process exited before handing over its terminal";
        let mut fds = expect_message(channel, CONSOLE, gone, &explain)?;
        Some(fds.take().ok_or_else(|| protocol(InvalidData.into()))?)
    } else {
        None
    };
    let gone = "the process exited before handing over its seccomp listener";
    let mut fds = expect_message(channel, LISTENER, gone, &explain)?;
    let listener = fds.take().ok_or_else(|| protocol(InvalidData.into()))?;
    Ok(Handover { listener, console })
}

/// The container's initial mounts, read once its init has said they are final
/// ([`crate::init::InitPlan::announcing_final_mounts`]): the init installs its filters and
/// sends its listener meanwhile, instead of the runtime reading them after (0.4-0.5 ms of
/// every create).
pub(crate) fn initial_mounts_once_final(
    channel: &Channel,
    init: &PidFd,
    explain: impl Fn(Failure) -> Error,
) -> Result<Vec<(u32, bool)>> {
    let gone = "the process exited before its mounts were done";
    expect_message(channel, MOUNTS_FINAL, gone, &explain)?;
    initial_mounts(init)
}

/// The next message from a starting process, which must be of `kind`: the descriptors it
/// carried. A failure the process reports instead is explained; `gone` says what an exit
/// before it means.
fn expect_message(
    channel: &Channel,
    kind: u32,
    gone: &str,
    explain: &impl Fn(Failure) -> Error,
) -> Result<ReceivedFds> {
    match channel.recv() {
        Ok(Some((msg, fds))) if msg.kind == kind => Ok(fds),
        Ok(Some((msg, _))) => {
            Err(Failure::from_message(&msg).map_or_else(|| protocol(InvalidData.into()), explain))
        }
        Ok(None) => Err(Error::Setup {
            what: gone.into(),
            source: std::io::ErrorKind::UnexpectedEof.into(),
        }),
        Err(errno) => Err(protocol(errno.into())),
    }
}

fn protocol(source: std::io::Error) -> Error {
    Error::Io {
        what: "talking to a starting process".into(),
        source,
    }
}

/// What the mount helpers of a container know, but its initial mounts ([`initial_mounts`]):
/// its policy, its user namespace (pinned now: the init has its ID maps but has not run
/// anything of the container), and the masks of the (hardened) spec for the procfs and sysfs
/// it mounts itself.
pub(crate) fn helper_config(
    init: &PidFd,
    policy: &Policy,
    spec: &Spec,
    virtual_files: Option<&crate::virt::Registration>,
    mapping: eci_policy::ids::IdMapping,
) -> Result<HelperConfig> {
    let pid = init.pid();
    let userns_file = std::fs::File::open(format!("/proc/{pid}/ns/user"))
        .map_err(Error::io("opening the container's user namespace"))?;
    // An init its runtime's adopter reaps may leave its pid to another process: the namespace
    // opened is the init's only if it still runs after the open.
    if !init.is_alive() {
        return Err(Error::Io {
            what: "opening the container's user namespace".into(),
            source: std::io::Error::from_raw_os_error(libc::ESRCH),
        });
    }
    let userns = userns_file
        .metadata()
        .map_err(Error::io("reading the container's user namespace"))?
        .ino();
    let policy = MountPolicy {
        immutability: policy.immutability,
        types: policy.mount_types,
    };
    let linux = spec.linux().clone().unwrap_or_default();
    let masks = Masks::from_paths(
        linux.masked_paths().as_deref().unwrap_or_default(),
        linux.readonly_paths().as_deref().unwrap_or_default(),
    )
    .with_binds(
        virtual_files
            .iter()
            .flat_map(|r| r.binds())
            .map(|(source, target)| (source.as_path(), *target)),
    );
    // Like the container's own /proc/sys, when it has virtual files at all: namespaced tables
    // and the emulated tunables writable, the rest read-only.
    let masks = match virtual_files {
        Some(registration) => masks
            .with_writable(crate::virt::NAMESPACED_TUNABLES)
            .with_writable_binds(
                registration
                    .tunables()
                    .iter()
                    .map(|(source, target)| (source.as_path(), target.as_str())),
            ),
        None => masks,
    };
    // The last mount at /proc or /sys is the one the container sees; its last ro or rw wins.
    let read_only_at = |dest: &str| {
        let visible = spec
            .mounts()
            .iter()
            .flatten()
            .rfind(|m| m.destination() == Path::new(dest));
        visible
            .and_then(|m| {
                m.options()
                    .iter()
                    .flatten()
                    .rfind(|o| *o == "ro" || *o == "rw")
            })
            .is_some_and(|o| o == "ro")
    };
    let masks = masks
        .with_read_only_roots(read_only_at("/proc"), read_only_at("/sys"))
        .with_spec_mounts(
            spec.mounts()
                .iter()
                .flatten()
                .map(|m| m.destination().as_path()),
        );
    // A procfs `gid=` is translated from 0 up; a block mapped elsewhere refuses it.
    let masks = if mapping.container_start == 0 {
        masks.with_gids(mapping.host_start, mapping.size)
    } else {
        masks
    };
    Ok(HelperConfig {
        policy,
        userns,
        userns_fd: Some(Arc::new(OwnedFd::from(userns_file))),
        initial: Vec::new(),
        masks,
        sysinfo: None,
        // Joined once the init is in its cgroup ([`crate::cgroup::memory_tasks_of`]).
        charged_to: None,
    })
}

/// The container's initial mounts, (mount ID, read-only) sorted by ID: those in the init's
/// mount namespace once its mounts are built, before anything of the container runs.
pub(crate) fn initial_mounts(init: &PidFd) -> Result<Vec<(u32, bool)>> {
    let pid = init.pid();
    let mounts = eci_mount::mountinfo::read(pid).map_err(Error::io(format!(
        "reading the container's mount table (/proc/{pid}/mountinfo)"
    )))?;
    let mut initial: Vec<(u32, bool)> = mounts.iter().map(|m| (m.id, m.read_only())).collect();
    initial.sort_unstable();
    Ok(initial)
}

/// A process's mount vetting: the supervisor's registration, the vetter, and the record a new
/// runtime would take over from. Dropping it ends the vetting (the container's mount calls
/// then fail) and removes the record.
pub(crate) struct Vetting {
    _registration: Registration,
    _vetter: Arc<MountVetter>,
    _record: crate::takeover::RecordFile,
}

/// Starts a mount helper in `init`'s user namespace for `listener`, the filter of `process`,
/// registers the listener with the supervisor until `init` exits or no process runs the filter
/// any more, and records what a new runtime needs to take the vetting over if this one dies.
pub(crate) fn start_vetting(
    shared: &Shared,
    container: &str,
    init: &PidFd,
    process: &PidFd,
    listener: OwnedFd,
    config: HelperConfig,
) -> Result<Vetting> {
    let listener = Listener::new(listener);
    let vetter = MountVetter::start(init, &listener, config.clone())?;
    finish_vetting(shared, container, init, process, listener, vetter, &config)
}

/// [`start_vetting`] with a helper forked ahead ([`MountVetter::prepare`]), which `config`
/// (with its initial mounts now) must match.
pub(crate) fn start_prepared_vetting(
    shared: &Shared,
    container: &str,
    init: &PidFd,
    pending: PendingVetter,
    listener: OwnedFd,
    config: &HelperConfig,
) -> Result<Vetting> {
    let listener = Listener::new(listener);
    let vetter = pending.start(&listener, config.initial.clone())?;
    finish_vetting(shared, container, init, init, listener, vetter, config)
}

fn finish_vetting(
    shared: &Shared,
    container: &str,
    init: &PidFd,
    process: &PidFd,
    listener: Listener,
    vetter: Arc<MountVetter>,
    config: &HelperConfig,
) -> Result<Vetting> {
    // Until the container's init exits, or every process that runs the filter has: an exec'd
    // process may leave children that mount (a daemon it started, Docker in the container).
    let registration = register(shared, listener, &vetter, init)?;
    let record = crate::takeover::record(shared, container, init, process, &vetter, config)?;
    Ok(Vetting::new(registration, vetter, record))
}

/// Registers `listener` with the supervisor, handled by `vetter`, until `init` (the
/// container's) exits or no process runs the filter any more.
pub(crate) fn register(
    shared: &Shared,
    listener: Listener,
    vetter: &Arc<MountVetter>,
    init: &PidFd,
) -> Result<Registration> {
    let handler: Arc<dyn Handler> = vetter.clone();
    let exit = init
        .as_fd()
        .try_clone_to_owned()
        .map_err(Error::io("duplicating a pidfd"))?;
    shared
        .supervisor
        .register(listener, handler, Some(exit))
        .map_err(Error::io("registering the seccomp listener"))
}

impl std::fmt::Debug for Vetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vetting")
            .field("helper", &self._vetter.helper_pid())
            .finish()
    }
}

impl Vetting {
    /// Whether the supervisor still serves it (see [`register`]).
    pub(crate) fn is_active(&self) -> bool {
        self._registration.is_active()
    }

    pub(crate) fn new(
        registration: Registration,
        vetter: Arc<MountVetter>,
        record: crate::takeover::RecordFile,
    ) -> Vetting {
        Vetting {
            _registration: registration,
            _vetter: vetter,
            _record: record,
        }
    }
}
