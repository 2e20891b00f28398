//! What a container leaves behind when the process that ran it dies without deleting it: its
//! processes run on in its cgroup, unsupervised (their mount calls fail, answered ENOSYS by
//! orphaned mount helpers until a new runtime takes the vetting over with
//! [`Runtime::take_over`](crate::Runtime::take_over); their virtual files read ENOTCONN), and
//! the cgroup stays. [`remove_orphan`] takes them down; [`orphan_init`] and
//! [`signal_orphan`] reach them meanwhile, for a caller that still sees the container running
//! (an engine whose shim waits on the init, not on the runtime).

use std::path::Path;
use std::time::{Duration, Instant};

use eci_ns::PidFd;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};

/// How long the processes of an orphan get to die after SIGKILL.
const DYING: Duration = Duration::from_secs(5);

/// Kills every process left in the cgroup at `cgroup_path` (the path a container was created
/// with, [`Container::cgroup_path`](crate::Container::cgroup_path)) and removes the cgroup.
/// `identity` ([`Container::cgroup_identity`](crate::Container::cgroup_identity), recorded with
/// the path) must still match: a cgroup removed and made again at that path is someone
/// else's, and nothing in it is touched.
/// The processes are frozen while they are listed and signalled, so that none forks past the
/// signal and no pid is reused in between. Returns the pids killed.
///
/// The virtual files servers of dead runtimes are unmounted from `state_dir` (the runtime's
/// [`RuntimeConfig::state_dir`](crate::RuntimeConfig)). The ID block the container held is
/// given back by the next [`Runtime`](crate::Runtime) that opens the state directory once the
/// processes are reaped (their parent, the runtime, is gone, so the system's reaper does that).
///
/// ```no_run
/// // The runtime that created "web" with cgroup /eci/web died; clean up after it.
/// let state = std::path::Path::new("/run/eci");
/// let killed = eci::remove_orphan(state, "web", std::path::Path::new("/eci/web"), Some(4242))?;
/// println!("killed {} processes", killed.len());
/// # Ok::<(), eci::Error>(())
/// ```
pub fn remove_orphan(
    state_dir: &Path,
    id: &str,
    cgroup_path: &Path,
    identity: Option<u64>,
) -> Result<Vec<i32>> {
    if !eci_policy::paths::is_container_cgroup_path(cgroup_path) {
        return Err(Error::CgroupPath(cgroup_path.to_path_buf()));
    }
    let killed = kill_what_is_left(id, cgroup_path, identity)?;
    crate::virt::sweep_dead(&state_dir.join("virtual"));
    // The orphaned mount helpers exit once the container's processes are gone; what a new
    // runtime would have taken over from them goes too: the records whose container's init
    // has ended (killed just now, it may still be a zombie). Those of a live init stay: a
    // container of the same name made since, under another cgroup, may run.
    if crate::valid_container_id(id) {
        crate::takeover::remove_stale_records(state_dir, id);
    }
    let killed = killed.unwrap_or_default();
    tracing::info!(
        container = id,
        killed = killed.len(),
        "removed an orphaned container"
    );
    Ok(killed)
}

/// The init of a container whose runtime died, if it still runs: the process `pid` (the
/// init's pid as the runtime recorded it), provided it is in the container's cgroup (at
/// `cgroup_path`, still the one of `identity`, or below it if the cgroup was delegated) in
/// every hierarchy eci manages. Only the
/// container's processes are in that cgroup, and they all die with its init, so a pid reused
/// since names none of them; and the pidfd, taken first, still shows its process alive after
/// everything was read, so that what was read was that process's. `None` if it has ended.
///
/// ```no_run
/// // The runtime that created "web" (init 4242, cgroup /eci/web) died; stop the container.
/// let cgroup = std::path::Path::new("/eci/web");
/// if let Some(init) = eci::orphan_init("web", cgroup, Some(77), 4242)? {
///     init.signal(libc::SIGTERM).ok();
/// }
/// # Ok::<(), eci::Error>(())
/// ```
pub fn orphan_init(
    id: &str,
    cgroup_path: &Path,
    identity: Option<u64>,
    pid: i32,
) -> Result<Option<PidFd>> {
    if !eci_policy::paths::is_container_cgroup_path(cgroup_path) {
        return Err(Error::CgroupPath(cgroup_path.to_path_buf()));
    }
    let Ok(init) = PidFd::open(pid) else {
        return Ok(None);
    };
    let Ok(listed) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Ok(None);
    };
    let cgroup = Cgroup::open(cgroup_path, id)?;
    let v1 = cgroup.on_v1();
    // A delegated container's init may have moved into a cgroup of its own below (Docker in
    // the container does on cgroup v2, systemd as its init does).
    let member = crate::cgroup::in_cgroup_everywhere(&listed, cgroup_path, v1)
        || (cgroup.delegated() && crate::cgroup::in_cgroup_tree(&listed, cgroup_path, v1));
    // A cgroup with a live member cannot be removed: checked after the read, the identity is
    // that of the cgroup the process was in, and the process lives if it still does after.
    let found = member && is_the_containers(&cgroup, identity) && init.is_alive();
    Ok(found.then_some(init))
}

/// Whether an orphaned container (see [`remove_orphan`] for the arguments) is paused: its
/// cgroup, still the one of `identity`, frozen. False when the cgroup is gone, another's, or
/// its freezer cannot be read.
///
/// ```no_run
/// let paused = eci::orphan_paused("web", std::path::Path::new("/eci/web"), Some(77))?;
/// println!("{}", if paused { "paused" } else { "running" });
/// # Ok::<(), eci::Error>(())
/// ```
pub fn orphan_paused(id: &str, cgroup_path: &Path, identity: Option<u64>) -> Result<bool> {
    if !eci_policy::paths::is_container_cgroup_path(cgroup_path) {
        return Err(Error::CgroupPath(cgroup_path.to_path_buf()));
    }
    let cgroup = Cgroup::open(cgroup_path, id)?;
    Ok(is_the_containers(&cgroup, identity) && cgroup.frozen() == Some(true))
}

/// Sends `signal` to every process left in an orphaned container's cgroup (see
/// [`remove_orphan`] for the arguments), frozen meanwhile as [`Container::kill_all`]
/// freezes them; the cgroup is thawed after, paused before or not. Returns the pids signalled
/// (none if the cgroup at the path is gone or another's).
///
/// [`Container::kill_all`]: crate::Container::kill_all
pub fn signal_orphan(
    id: &str,
    cgroup_path: &Path,
    identity: Option<u64>,
    signal: i32,
) -> Result<Vec<i32>> {
    if !eci_policy::paths::is_container_cgroup_path(cgroup_path) {
        return Err(Error::CgroupPath(cgroup_path.to_path_buf()));
    }
    let signal = crate::container::signal_of(signal)?;
    let cgroup = Cgroup::open(cgroup_path, id)?;
    if !is_the_containers(&cgroup, identity) {
        return Ok(Vec::new());
    }
    cgroup.signal_everything(signal)
}

/// Whether `cgroup` exists and is the one of `identity` (when known): one removed and made
/// again at its path is someone else's.
fn is_the_containers(cgroup: &Cgroup, identity: Option<u64>) -> bool {
    let now = cgroup.identity();
    now.is_some() && identity.is_none_or(|recorded| now == Some(recorded))
}

/// Kills the processes of the container's cgroup and removes it, unless it is gone (none
/// killed) or is another's now (`None`).
fn kill_what_is_left(
    id: &str,
    cgroup_path: &Path,
    identity: Option<u64>,
) -> Result<Option<Vec<i32>>> {
    let cgroup = Cgroup::open(cgroup_path, id)?;
    let now = cgroup.identity();
    if now.is_none() {
        // Gone already: nothing runs in it.
        return Ok(Some(Vec::new()));
    }
    if identity.is_some_and(|recorded| now != Some(recorded)) {
        // The container's own cgroup is gone, so is everything that ran in it; the one there
        // now is someone else's.
        tracing::warn!(
            container = id,
            path = %cgroup_path.display(),
            "the cgroup at the container's path is not the container's any more: nothing killed"
        );
        return Ok(None);
    }
    let killed = cgroup.kill_everything()?;
    let deadline = Instant::now() + DYING;
    loop {
        let left = cgroup.pids_left()?;
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::Cgroup {
                path: cgroup_path.to_path_buf(),
                reason: format!("processes {left:?} did not die after SIGKILL"),
            });
        }
        // Killed without a freeze (one that failed), a process may have forked past its
        // signal: what is listed now is killed too.
        let _ = cgroup.kill_unfrozen();
        std::thread::sleep(Duration::from_millis(10));
    }
    cgroup.remove()?;
    Ok(Some(killed))
}
