//! What a container leaves behind when the process that ran it dies without deleting it: its
//! processes run on in its cgroup, unsupervised (their mount calls fail, answered ENOSYS by
//! orphaned mount helpers until a new runtime takes the vetting over with
//! [`Runtime::take_over`](crate::Runtime::take_over); their virtual files read ENOTCONN), and
//! the cgroup stays. [`remove_orphan`] takes them down.

use std::path::Path;
use std::time::{Duration, Instant};

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
    if !crate::cgroup::valid_path(cgroup_path) {
        return Err(Error::CgroupPath(cgroup_path.to_path_buf()));
    }
    let killed = kill_what_is_left(id, cgroup_path, identity)?;
    crate::virt::sweep_dead(&state_dir.join("virtual"));
    // The orphaned mount helpers exit once the container's processes are gone; what a new
    // runtime would have taken over from them goes too.
    if crate::valid_container_id(id) {
        let _ = std::fs::remove_dir_all(crate::takeover::records_dir(state_dir, id));
    }
    tracing::info!(
        container = id,
        killed = killed.len(),
        "removed an orphaned container"
    );
    Ok(killed)
}

/// Kills the processes of the container's cgroup and removes it, unless it is gone or is
/// another's now.
fn kill_what_is_left(id: &str, cgroup_path: &Path, identity: Option<u64>) -> Result<Vec<i32>> {
    let cgroup = Cgroup::open(cgroup_path, id)?;
    let now = cgroup.identity();
    if now.is_none() {
        // Gone already: nothing runs in it.
        return Ok(Vec::new());
    }
    if identity.is_some_and(|recorded| now != Some(recorded)) {
        // The container's own cgroup is gone, so is everything that ran in it; the one there
        // now is someone else's.
        tracing::warn!(
            container = id,
            path = %cgroup_path.display(),
            "the cgroup at the container's path is not the container's any more: nothing killed"
        );
        return Ok(Vec::new());
    }
    let killed = cgroup.kill_everything()?;
    let deadline = Instant::now() + DYING;
    // A cgroup that cannot be listed no longer exists.
    while let Some(left) = cgroup.pids().ok().filter(|pids| !pids.is_empty()) {
        if Instant::now() > deadline {
            return Err(Error::Cgroup {
                path: cgroup_path.to_path_buf(),
                reason: format!("processes {left:?} did not die after SIGKILL"),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cgroup.remove()?;
    Ok(killed)
}
