//! The container's cgroup, through libcgroups (cgroup v1, v2 and the hybrid layout).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eci_mount::virt::Hierarchy;
use eci_ns::yielding::Yielding;

use libcgroups::common::{
    create_cgroup_manager, get_cgroup_setup, AnyCgroupManager, CgroupConfig, CgroupManager,
    CgroupSetup, ControllerOpt, FreezerState,
};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};

/// Starts, on a thread of its own, the wait the kernel makes the first cgroup migration after
/// a quiet spell pay, so that it passes while the container is planned and its init made.
///
/// Every migration takes one global lock for writing (`cgroup_threadgroup_rwsem`); when none
/// has for a while, taking it first waits for an RCU grace period (12-18 ms here), and the
/// migrations within about a grace period of the last one do not wait. The init joins its
/// cgroup some 10 ms into a start, and paid that wait in full: this moves a thread of ours to
/// the cgroup it is already in (a no-op that takes the lock) as the start begins. It writes
/// its thread id, never `0`: the kernel lets a thread that moves itself skip the lock.
///
/// Not on cgroup v1, where the init moves itself without that lock ([`Cgroup::new`]): the
/// priming write holds the cgroup mutex through its whole wait, which would hold up making the
/// container's cgroup instead.
pub(crate) fn prime_migration() {
    if matches!(
        get_cgroup_setup(),
        Ok(CgroupSetup::Legacy | CgroupSetup::Hybrid)
    ) {
        return;
    }
    let primed = std::thread::Builder::new()
        .name("eci-cgroup-prime".into())
        .spawn(|| {
            if let Err(err) = move_to_own_cgroup() {
                // Only the start's speed depends on it.
                tracing::debug!("priming the cgroup migration lock: {err}");
            }
        });
    if let Err(err) = primed {
        tracing::debug!("priming the cgroup migration lock: {err}");
    }
}

/// Writes this thread's id to the thread list of the cgroup it is in.
fn move_to_own_cgroup() -> std::io::Result<()> {
    let hierarchies = eci_mount::virt::mounted_hierarchies()?;
    let own = std::fs::read_to_string("/proc/thread-self/cgroup")?;
    let file = own_thread_list(&own, &hierarchies)
        .ok_or_else(|| std::io::Error::other("no mounted hierarchy holds this thread"))?;
    std::fs::write(file, nix::unistd::gettid().to_string())
}

/// The lines of a /proc/PID/cgroup `text` as (controllers, path below the hierarchy's root),
/// without any line whose path would leave that root: in a cgroup namespace a cgroup outside
/// its root reads as "/../x".
fn cgroup_lines(text: &str) -> impl Iterator<Item = (&str, &Path)> {
    text.lines().filter_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let relative = Path::new(path).strip_prefix("/").ok()?;
        let below = relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        below.then_some((controllers, relative))
    })
}

/// The thread list (v1 `tasks`, v2 `cgroup.threads`) of the cgroup a thread is in, from its
/// /proc/thread-self/cgroup text: in the first hierarchy listed there that is mounted (at its
/// root) in `hierarchies`. Never a path out of a hierarchy's mount.
fn own_thread_list(text: &str, hierarchies: &[Hierarchy]) -> Option<PathBuf> {
    cgroup_lines(text).find_map(|(controllers, relative)| {
        let hierarchy = hierarchies.iter().find(|h| match controllers {
            "" => h.unified,
            named => {
                !h.unified
                    && named
                        .split(',')
                        .all(|c| h.controllers.iter().any(|o| o == c))
            }
        })?;
        let file = if hierarchy.unified {
            "cgroup.threads"
        } else {
            "tasks"
        };
        Some(hierarchy.mount.join(relative).join(file))
    })
}

/// The directory of the cgroup at `path` whose tree holds every process of it: where the
/// controllers are on cgroup v1 (`v1`), the one in the devices hierarchy (where libcgroups
/// lists them: a hierarchy every container has), on v2 its one directory.
fn tree_dir(path: &Path, v1: bool) -> std::io::Result<PathBuf> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let hierarchies = eci_mount::virt::mounted_hierarchies()?;
    let found = hierarchies.iter().find(|h| match v1 {
        true => !h.unified && h.controllers.iter().any(|c| c == "devices"),
        false => h.unified,
    });
    let missing = || std::io::Error::other("no devices hierarchy (v1) or cgroup2 is mounted");
    found.map(|h| h.mount.join(relative)).ok_or_else(missing)
}

/// Where the processes of the v1 cgroup at `path` are listed: its directory in the freezer
/// hierarchy, which no container is given ([`crate::cgroupfs`]), so that it has no cgroups
/// below it and its one `cgroup.procs` lists every process of the container's. In a hierarchy
/// given to a delegated container, the container may rename its cgroups while they are
/// walked (cgroup v1 allows a rename within a parent), and a process whose cgroup keeps
/// changing its name is missed by a walk, and so by `kill --all` and by the kill of what holds
/// a dying init. Without a freezer hierarchy or directory there: the devices one, walked
/// ([`tree_dir`]).
fn listing_dir_v1(path: &Path) -> std::io::Result<PathBuf> {
    match freezer_dir_v1(path)? {
        Some(dir) => Ok(dir),
        None => tree_dir(path, true),
    }
}

/// The directory of the cgroup at `path` in the v1 freezer hierarchy libcgroups manages, if
/// there is one and the directory exists.
fn freezer_dir_v1(path: &Path) -> std::io::Result<Option<PathBuf>> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let hierarchies = eci_mount::virt::mounted_hierarchies()?;
    let freezer = hierarchies
        .iter()
        .filter(|h| crate::cgroupfs::managed(h))
        .find(|h| h.controllers.iter().any(|c| c == "freezer"));
    Ok(freezer
        .map(|h| h.mount.join(relative))
        .filter(|dir| dir.is_dir()))
}

/// Fails if the cgroup at `path`, or one above it, was given to a container (its directory
/// is another user's, [`crate::cgroupfs`]) in any hierarchy eci manages: a cgroup made there
/// would be in that container's reach, which on cgroup v2 may move the processes into
/// cgroups of its own and limit or freeze them there. Fails too if a cgroup above it holds
/// processes of its own: another container's, or a host service's or session's. A container
/// made below would count against their memory, pids and CPU limits (and so have them
/// OOM-killed, or unable to fork), and be frozen and killed with them. A spec may name any
/// path (Docker's `--cgroup-parent` another container's cgroup). `hierarchies`: the mounted
/// ones; each hierarchy's root holds the host's processes and is not counted.
pub(crate) fn check_cgroup_parents(path: &Path, hierarchies: &[Hierarchy]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |reason: String| Error::Cgroup {
        path: path.to_path_buf(),
        reason,
    };
    let relative = path.strip_prefix("/").unwrap_or(path);
    let runtime = nix::unistd::geteuid().as_raw();
    let managed = hierarchies
        .iter()
        .filter(|h| crate::cgroupfs::managed(h) || h.unified);
    for hierarchy in managed.clone() {
        // The path's own directories, from the hierarchy's root down, as far as they exist.
        let mut dir = hierarchy.mount.clone();
        for name in relative.components() {
            dir.push(name);
            match std::fs::metadata(&dir) {
                Ok(meta) if meta.uid() != runtime => {
                    return Err(refuse(format!(
                        "{} was delegated to a container or user (it is uid {}'s, not the \
                         runtime's); no container's cgroup may be made in it",
                        dir.display(),
                        meta.uid()
                    )))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(refuse(format!("reading {}: {e}", dir.display()))),
            }
        }
    }
    // The directories above the path's own, as far as they exist (a delegated container's
    // that moved its processes below is refused above).
    let above: Vec<_> = relative.ancestors().skip(1).collect();
    for hierarchy in managed {
        for ancestor in above.iter().rev().filter(|a| !a.as_os_str().is_empty()) {
            let dir = hierarchy.mount.join(ancestor);
            if !dir.exists() {
                break;
            }
            if holds_processes(&dir) {
                return Err(refuse(format!(
                    "{} holds processes of its own (another container's, or a service's); \
                     no container's cgroup may be made below it",
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// Whether the cgroup directory `dir` lists a process of its own (not those of the cgroups
/// below it). A missing one holds none; one that cannot be read counts as holding some.
fn holds_processes(dir: &Path) -> bool {
    use std::io::Read;
    let mut first = [0u8; 1];
    match std::fs::File::open(dir.join("cgroup.procs")) {
        Ok(mut procs) => !matches!(procs.read(&mut first), Ok(0)),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// Whether a /proc/PID/cgroup `text` puts the process at `path`: where the controllers are on
/// cgroup v1 (`v1`, the hybrid layout too), in every v1 hierarchy with a controller libcgroups
/// manages (other v1 hierarchies do not count) and in at least one; on cgroup v2, in the v2
/// hierarchy (v1 hierarchies the kernel still lists, mounted nowhere, are none libcgroups
/// manages). A line that cannot be read counts against it, and so does a text that says
/// nothing of the hierarchies that count.
pub(crate) fn in_cgroup_everywhere(text: &str, path: &Path, v1: bool) -> bool {
    in_cgroups_where(text, v1, |at| Path::new(at) == path)
}

/// [`in_cgroup_everywhere`], at `path` or in a cgroup below it (a delegated container's).
pub(crate) fn in_cgroup_tree(text: &str, path: &Path, v1: bool) -> bool {
    in_cgroups_where(text, v1, |at| {
        let at = Path::new(at);
        at.starts_with(path)
            && at.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            })
    })
}

/// Whether every line of a /proc/PID/cgroup `text` that counts (see [`in_cgroup_everywhere`])
/// names a cgroup `wanted` accepts.
fn in_cgroups_where(text: &str, v1: bool, wanted: impl Fn(&str) -> bool) -> bool {
    let mut managed_hierarchies = 0;
    let mut unified = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(at)) = (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        let managed = || {
            controllers
                .split(',')
                .any(|c| crate::cgroupfs::MANAGED.contains(&c))
        };
        if !v1 && controllers.is_empty() {
            unified = Some(at);
        } else if v1 && managed() {
            if !wanted(at) {
                return false;
            }
            managed_hierarchies += 1;
        }
    }
    match v1 {
        // On the hybrid layout the v2 line is systemd's, not the container's.
        true => managed_hierarchies > 0,
        false => unified.is_some_and(wanted),
    }
}

/// The `tasks` file of the cgroup that accounts a process's memory on cgroup v1, given its
/// /proc/PID/cgroup `text` and the `hierarchies` mounted. `None` on cgroup v2, where a
/// process's cgroup is every controller's (joining it would list the runtime's helper among
/// the container's processes, and freeze it with them), and where memory shares its v1
/// hierarchy with another controller (devices, whose cgroup lists the container's processes,
/// or freezer, which pauses them).
fn memory_tasks_path(text: &str, hierarchies: &[Hierarchy]) -> Option<PathBuf> {
    let (_, relative) = cgroup_lines(text).find(|(controllers, _)| *controllers == "memory")?;
    let hierarchy = hierarchies
        .iter()
        .find(|h| !h.unified && h.controllers.iter().any(|c| c == "memory"))?;
    Some(hierarchy.mount.join(relative).join("tasks"))
}

/// Process `pid`'s memory cgroup (v1), its `tasks` file open for writing: where the
/// container's mount helpers move themselves, so that what the kernel allocates for the
/// mounts they perform counts against the container's memory limit. `None` where there is
/// none to join (see [`memory_tasks_path`]).
pub(crate) fn memory_tasks_of(pid: i32) -> Result<Option<Arc<OwnedFd>>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(Error::io("reading the container's cgroups"))?;
    let hierarchies = eci_mount::virt::mounted_hierarchies()
        .map_err(Error::io("finding the cgroup hierarchies"))?;
    let Some(path) = memory_tasks_path(&text, &hierarchies) else {
        return Ok(None);
    };
    let tasks = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(Error::io(format!(
            "opening the container's memory cgroup ({})",
            path.display()
        )))?;
    Ok(Some(Arc::new(OwnedFd::from(tasks))))
}

/// Copies a cpuset `file` (`cpuset.cpus`, `cpuset.mems`) down from the hierarchy's root to the
/// cgroup at `relative` wherever it is empty: a v1 cpuset without CPUs or memory nodes refuses
/// every task.
fn fill_from_parents(root: &Path, relative: &Path, file: &str) -> std::io::Result<()> {
    let mut dir = root.to_path_buf();
    let mut value = std::fs::read_to_string(dir.join(file))?;
    for name in relative.components() {
        dir.push(name);
        let own = std::fs::read_to_string(dir.join(file))?;
        if own.trim().is_empty() {
            std::fs::write(dir.join(file), value.trim())?;
        } else {
            value = own;
        }
    }
    Ok(())
}

/// A cgroup being made beside the start ([`Cgroup::open_beside`]). One never waited for (a
/// start that failed first) is waited for when dropped, and what it made is removed.
pub(crate) struct Opening {
    state: Option<OpeningState>,
    /// The thread lists, sent ahead of the rest by an opening that allows it.
    ahead: Option<std::sync::mpsc::Receiver<Vec<OwnedFd>>>,
    /// What a failed opening made: removed on drop, once the caller has taken down an init that
    /// may have joined it (its thread lists may have gone ahead).
    leftover: Vec<PathBuf>,
}

enum OpeningState {
    Beside {
        thread: std::thread::JoinHandle<std::result::Result<Cgroup, Box<Failed>>>,
        /// libcgroups' manager costs 1.3-2.9 ms of CPU, about a tenth of all a start takes
        /// here, and at the start's own priority it slowed the init's spawn beside it by about
        /// as much (at nice 10 instead, `eci-runc run` took 0.14-0.46 ms longer than as
        /// SCHED_IDLE in three alternating runs): the thread yields until it is waited for.
        priority: Arc<Yielding>,
        path: PathBuf,
        /// What the thread made, as soon as it made it: removed even if the thread panics.
        made: Arc<std::sync::Mutex<Vec<PathBuf>>>,
    },
    Inline(Box<Request>),
}

/// What [`Cgroup::open_beside`] is to make.
#[derive(Clone)]
struct Request {
    path: PathBuf,
    container: String,
    resources: LinuxResources,
    /// Directories of it the caller made just before (and so knows to be new).
    made_before: Vec<PathBuf>,
}

/// An opening's error, with the directories it made (which it cannot remove itself: its
/// thread lists may have gone ahead to an init that joined).
struct Failed {
    error: Error,
    made: Vec<PathBuf>,
}

impl Opening {
    /// On cgroup v1, when every directory of the cgroup is new and the init may join before
    /// its limits are written: the thread lists, as soon as they are open (the opening goes
    /// on making libcgroups' manager and writing the limits). `None` otherwise: then
    /// [`Opening::wait`] gives the cgroup with its limits written and its thread lists.
    pub(crate) fn thread_lists_ahead(&mut self) -> Option<Vec<OwnedFd>> {
        let ahead = self.ahead.take()?;
        match ahead.try_recv() {
            Ok(lists) => Some(lists),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                // Waited for now: a yielding thread on a busy machine could starve.
                if let Some(OpeningState::Beside { priority, .. }) = &self.state {
                    priority.hurry();
                }
                ahead.recv().ok()
            }
        }
    }

    /// The cgroup once libcgroups has found it, made on cgroup v1 (with its limits written,
    /// see [`Cgroup::open_beside`]).
    pub(crate) fn wait(&mut self) -> Result<Cgroup> {
        let opened = match self.state.take() {
            Some(OpeningState::Beside {
                thread,
                priority,
                path,
                made,
            }) => {
                priority.hurry();
                thread.join().unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let made = made.lock().map(|m| m.clone()).unwrap_or_default();
                    Err(Box::new(Failed {
                        error: Error::Cgroup {
                            path,
                            reason: format!("the thread opening the cgroup panicked: {what}"),
                        },
                        made,
                    }))
                })
            }
            Some(OpeningState::Inline(request)) => request.make(None, None),
            None => Err(Box::new(Failed {
                error: Error::Cgroup {
                    path: PathBuf::new(),
                    reason: "the cgroup was waited for twice".into(),
                },
                made: Vec::new(),
            })),
        };
        opened.map_err(|failed| {
            self.leftover = failed.made;
            failed.error
        })
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        if let Some(OpeningState::Beside { .. }) = &self.state {
            if let Ok(cgroup) = self.wait() {
                cgroup.remove_unused();
            }
        }
        for dir in self.leftover.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Request {
    /// Makes the cgroup. On cgroup v1 its directories come first, with their thread lists
    /// (plain mkdir and open: well under a millisecond); when all of them are new, `ahead`
    /// gets the lists at once. Then libcgroups' manager (1.3-2.9 ms of CPU here), the check
    /// for processes already there, and on v1 the limits.
    fn make(
        self,
        ahead: Option<std::sync::mpsc::Sender<Vec<OwnedFd>>>,
        made_so_far: Option<&std::sync::Mutex<Vec<PathBuf>>>,
    ) -> std::result::Result<Cgroup, Box<Failed>> {
        let v1 = matches!(
            get_cgroup_setup(),
            Ok(CgroupSetup::Legacy | CgroupSetup::Hybrid)
        );
        let made = if v1 {
            let made = make_v1_dirs(&self.path, &self.made_before);
            made.map_err(|error| {
                Box::new(Failed {
                    error,
                    made: Vec::new(),
                })
            })?
        } else {
            MadeDirs::default()
        };
        let MadeDirs {
            dirs,
            mut thread_lists,
            all_new,
        } = made;
        if let Some(Ok(mut so_far)) = made_so_far.map(std::sync::Mutex::lock) {
            so_far.clone_from(&dirs);
        }
        if let Some(ahead) = ahead.filter(|_| v1 && all_new) {
            let _ = ahead.send(std::mem::take(&mut thread_lists));
        }
        // What it made goes to the opening either way: removed when it is dropped, once the
        // caller has taken down an init that may have joined.
        let finished = self.finish(v1, all_new, dirs.clone(), thread_lists);
        finished.map_err(|error| Box::new(Failed { error, made: dirs }))
    }

    /// [`Request::make`] after the directories: libcgroups' manager, the check, the limits.
    fn finish(
        self,
        v1: bool,
        all_new: bool,
        dirs: Vec<PathBuf>,
        thread_lists: Vec<OwnedFd>,
    ) -> Result<Cgroup> {
        let mut cgroup = Cgroup::open(&self.path, &self.container)?;
        cgroup.made = dirs;
        // Processes already there (a container whose runtime died, another container given
        // the same path) would share the new container's limits and freezer, and be signalled
        // and killed with it. Directories this start made hold none. On v1 each hierarchy's
        // directory found there was listed as it was found ([`make_v1_dirs`]). On v2 nothing
        // has made the directory unless the spec mounts the cgroup, and a missing one holds
        // nobody.
        if !all_new && !v1 {
            let pids = cgroup.pids().unwrap_or_default();
            if !pids.is_empty() {
                let reason =
                    format!("it already holds processes {pids:?}; a container left running?");
                return Err(cgroup.error("creating", &reason));
            }
        }
        if v1 {
            cgroup.apply(&self.resources)?;
            // Empty if they went ahead.
            cgroup.thread_lists = Some(thread_lists);
        }
        Ok(cgroup)
    }
}

/// The container's directories in each v1 hierarchy, as [`make_v1_dirs`] made them.
#[derive(Default)]
struct MadeDirs {
    /// What it created (parents first), to be removed if nothing joins.
    dirs: Vec<PathBuf>,
    /// Each directory's `tasks` file, open for writing.
    thread_lists: Vec<OwnedFd>,
    /// Whether every one of them is new (made here, or listed as made just before).
    all_new: bool,
}

/// Makes the container's directory in each v1 hierarchy libcgroups manages (a cpuset's CPUs
/// and memory nodes copied from its parent, as libcgroups does) and opens each one's `tasks`
/// file for writing, for the init to move itself into (see
/// [`eci_ns::spawn::WhileMounting`]: no global lock, so no grace period to wait for). On an
/// error, what it made is removed.
fn make_v1_dirs(path: &Path, made_before: &[PathBuf]) -> Result<MadeDirs> {
    let error = |what: &str, e: &dyn std::fmt::Display| Error::Cgroup {
        path: path.to_path_buf(),
        reason: format!("{what}: {e}"),
    };
    let relative = path.strip_prefix("/").unwrap_or(path);
    let mut made = MadeDirs {
        all_new: true,
        ..MadeDirs::default()
    };
    let make = |made: &mut MadeDirs| -> Result<()> {
        for (mount, dir, cpuset) in v1_dirs(path).map_err(|e| error("finding", &e))? {
            let new = create_dirs(&dir, &mut made.dirs).map_err(|e| error("creating", &e))?;
            made.all_new &= new || made_before.contains(&dir);
            // One found there is taken only if nothing runs in it or below, in this hierarchy
            // too: the check after this one lists the devices hierarchy alone, where a host
            // service's cgroup (in the memory or pids hierarchy only) has no directory, and
            // the container's limits would then bind that service, and its end kill it.
            if !new && !made_before.contains(&dir) {
                let pids = eci_mount::virt::cgroup_tree::ids_in_tree(&dir, c"cgroup.procs")
                    .map_err(|e| error("listing the processes already there", &e))?;
                if !pids.is_empty() {
                    let reason = format!("{} already holds processes {pids:?}", dir.display());
                    return Err(error("creating", &reason));
                }
            }
            if cpuset {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    fill_from_parents(&mount, relative, file)
                        .map_err(|e| error(&format!("filling in {file}"), &e))?;
                }
            }
            made.thread_lists
                .push(open_thread_list(&dir).map_err(|e| error("opening its thread list", &e))?);
        }
        Ok(())
    };
    match make(&mut made) {
        Ok(()) => Ok(made),
        Err(err) => {
            made.dirs
                .iter()
                .rev()
                .for_each(|d| drop(std::fs::remove_dir(d)));
            Err(err)
        }
    }
}

/// Creates `dir` and its missing parents, recording (in `made`) each one this call created;
/// whether it created `dir` itself (rather than finding it there).
pub(crate) fn create_dirs(dir: &Path, made: &mut Vec<PathBuf>) -> std::io::Result<bool> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    let mut new = false;
    for missing in missing.into_iter().rev() {
        match std::fs::create_dir(missing) {
            Ok(()) => {
                made.push(missing.to_path_buf());
                new = missing == dir;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => new = false,
            Err(e) => return Err(e),
        }
    }
    Ok(new)
}

/// The container's directory in each v1 hierarchy libcgroups manages, once per hierarchy,
/// with the hierarchy's mount and whether it is the cpuset one.
fn v1_dirs(path: &Path) -> std::io::Result<Vec<(PathBuf, PathBuf, bool)>> {
    let hierarchies = eci_mount::virt::mounted_hierarchies()?;
    let relative = path.strip_prefix("/").unwrap_or(path);
    let mut seen: Vec<&[String]> = Vec::new();
    let mut dirs = Vec::new();
    for h in hierarchies.iter().filter(|h| crate::cgroupfs::managed(h)) {
        // The same hierarchy mounted twice is one cgroup.
        if seen.contains(&h.controllers.as_slice()) {
            continue;
        }
        seen.push(&h.controllers);
        let cpuset = h.controllers.iter().any(|c| c == "cpuset");
        dirs.push((h.mount.clone(), h.mount.join(relative), cpuset));
    }
    Ok(dirs)
}

fn open_thread_list(dir: &Path) -> std::io::Result<OwnedFd> {
    let tasks = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("tasks"))?;
    Ok(OwnedFd::from(tasks))
}

/// A container's cgroup. Removed (with anything left in it killed) on [`Cgroup::remove`].
pub(crate) struct Cgroup {
    manager: AnyCgroupManager,
    path: PathBuf,
    /// On cgroup v1, once made by [`Cgroup::new`]: the thread lists the init moves itself into.
    thread_lists: Option<Vec<OwnedFd>>,
    /// The directories [`Cgroup::new`] made them in, for [`Cgroup::remove_unused`].
    made: Vec<PathBuf>,
    /// Given to the container (crate::cgroupfs): cgroups it made below may be left to remove.
    delegated: bool,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup").field("path", &self.path).finish()
    }
}

impl Cgroup {
    /// Removes the directories [`Cgroup::open_beside`] made, if nothing ever joined them. Unlike
    /// [`Cgroup::remove`] it kills nothing: a cgroup another container was given at the same
    /// moment stays as it is (its directory is busy).
    fn remove_unused(&self) {
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// For a process added to the running container: the thread lists of its cgroup (v1), for
    /// it to move itself in as the init did; `None` where it is to be added by pid.
    pub(crate) fn thread_lists_for_exec(&self) -> Result<Option<Vec<OwnedFd>>> {
        if !matches!(self.manager, AnyCgroupManager::V1(_)) {
            return Ok(None);
        }
        let dirs = v1_dirs(&self.path).map_err(|e| self.error("finding", &e))?;
        let files = dirs.iter().map(|(_, dir, _)| {
            open_thread_list(dir).map_err(|e| self.error("opening its thread list", &e))
        });
        files.collect::<Result<Vec<_>>>().map(Some)
    }

    /// The thread lists [`Cgroup::open_beside`] opened for the init (cgroup v1) unless they
    /// went ahead, once; `None` where the init is to be added by pid.
    pub(crate) fn take_thread_lists(&mut self) -> Option<Vec<OwnedFd>> {
        self.thread_lists.take()
    }

    /// Makes the container's cgroup at `path` on a thread of its own, to be waited for with
    /// [`Opening::wait`]; on cgroup v1 with the `resources` limits written (elsewhere the
    /// caller adds the init by pid and then writes them, [`Cgroup::join`]). `made_before`:
    /// directories of it the caller has just made. With `join_before_limits` (the init opens
    /// no device before it is started, so the device rules may come after it joined), the
    /// thread lists may go ahead ([`Opening::thread_lists_ahead`]).
    ///
    /// libcgroups finds each controller's hierarchy by opening a fresh procfs handle and
    /// reading /proc/self/mountinfo and /proc/self/cgroup again, controller by controller:
    /// 1.3-2.9 ms of CPU a container here, which neither the planning nor, on v1, the init's
    /// spawn need wait for.
    pub(crate) fn open_beside(
        path: &Path,
        container: &str,
        resources: &LinuxResources,
        made_before: &[PathBuf],
        join_before_limits: bool,
    ) -> Opening {
        let request = Request {
            path: path.to_path_buf(),
            container: container.to_string(),
            resources: resources.clone(),
            made_before: made_before.to_vec(),
        };
        let priority = Arc::new(Yielding::new());
        let made = Arc::default();
        let (ahead, ahead_receiver) = match join_before_limits {
            true => {
                let (sender, receiver) = std::sync::mpsc::channel();
                (Some(sender), Some(receiver))
            }
            false => (None, None),
        };
        let thread = std::thread::Builder::new()
            .name("eci-cgroup-open".into())
            .spawn({
                let priority = Arc::clone(&priority);
                let made = Arc::clone(&made);
                let request = request.clone();
                move || {
                    let _done = priority.begin();
                    request.make(ahead, Some(&made))
                }
            });
        let state = match thread {
            Ok(thread) => OpeningState::Beside {
                thread,
                priority,
                path: request.path,
                made,
            },
            // Without a thread, the caller's own waits for it.
            Err(_) => OpeningState::Inline(Box::new(request)),
        };
        Opening {
            state: Some(state),
            ahead: ahead_receiver,
            leftover: Vec::new(),
        }
    }

    /// The cgroup of an existing container, whatever it holds (to take down what a dead runtime
    /// left).
    pub(crate) fn open(path: &Path, container: &str) -> Result<Cgroup> {
        let config = CgroupConfig {
            cgroup_path: path.to_path_buf(),
            systemd_cgroup: false,
            container_name: container.to_string(),
        };
        let manager = create_cgroup_manager(config).map_err(|e| Error::Cgroup {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let mut cgroup = Cgroup {
            manager,
            path: path.to_path_buf(),
            thread_lists: None,
            made: Vec::new(),
            delegated: false,
        };
        cgroup.delegated = cgroup.given_away();
        Ok(cgroup)
    }

    /// Whether the cgroup was delegated to its container: its directory is another user's
    /// (the container's root, [`crate::cgroupfs`]). A cgroup eci kept is this process's user's,
    /// and its container cannot change that. Only then are the empty cgroups below it removed
    /// with it: another container's cgroup may lie below a cgroup that was not given away. (A
    /// cgroupsPath naming a directory the host gave some user, systemd's `user@UID.service`,
    /// reads as given away too: its empty children would go with the container.)
    fn given_away(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let owner = self.tree_dir().and_then(std::fs::metadata);
        owner.is_ok_and(|meta| meta.uid() != nix::unistd::geteuid().as_raw())
    }

    /// Marks the cgroup as given to its container ([`crate::cgroupfs`]) if `delegated`: the
    /// cgroups it made below its own are removed with it.
    pub(crate) fn delegated_if(mut self, delegated: bool) -> Cgroup {
        self.delegated = delegated;
        self
    }

    /// SIGKILLs every process in the cgroup, frozen meanwhile so that none forks past the signal
    /// and no listed pid is reused before it is signalled; the pids signalled. A cgroup that no
    /// longer exists holds nothing.
    pub(crate) fn kill_everything(&self) -> Result<Vec<i32>> {
        self.signal_everything(libc::SIGKILL)
    }

    /// [`Cgroup::kill_everything`] with any signal; the cgroup is thawed after, whatever it was.
    pub(crate) fn signal_everything(&self, signal: i32) -> Result<Vec<i32>> {
        match self.tree_dir() {
            Ok(dir) if !dir.exists() => return Ok(Vec::new()),
            Ok(_) => {}
            Err(e) => return Err(self.error("finding it", &e)),
        }
        // Frozen before it is listed: a process moving between the container's own cgroups
        // could keep out of a listing made while it runs.
        if let Err(err) = self.freeze(true) {
            // A container that cannot be frozen still dies: SIGKILL needs no freeze to be
            // final, and whoever kills waits for the cgroup to empty.
            return match signal {
                libc::SIGKILL => self.kill_unfrozen(),
                _ => Err(err),
            };
        }
        let pids = self.pids_left();
        if let Ok(pids) = &pids {
            // 0 stands for a process outside our PID namespace (cgroup v2); kill(0) would be
            // our own process group.
            for pid in pids.iter().filter(|pid| **pid > 0) {
                let _ = eci_ns::sys::kill(*pid, signal);
            }
        }
        // Frozen processes die only once thawed, and those in a cgroup the container froze
        // itself only once that is thawed too.
        let thawed = self.freeze(false);
        let pids = pids?;
        thawed.map(|()| pids)
    }

    /// SIGKILLs every process listed in the cgroup's tree without freezing it, each through a
    /// pidfd opened first and signalled only if the process it names was still in the tree
    /// after the pidfd was opened: a listed pid reused meanwhile by a process elsewhere is left
    /// alone. The pids signalled.
    pub(crate) fn kill_unfrozen(&self) -> Result<Vec<i32>> {
        let v1 = self.on_v1();
        let mut killed = Vec::new();
        for pid in self.pids_left()?.into_iter().filter(|pid| *pid > 0) {
            let Ok(process) = eci_ns::PidFd::open(pid) else {
                continue;
            };
            let Ok(listed) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
                continue;
            };
            // Read after the pidfd was opened: if its process still lives, the read was its.
            if in_cgroup_tree(&listed, &self.path, v1)
                && process.is_alive()
                && process.signal(libc::SIGKILL).is_ok()
            {
                killed.push(pid);
            }
        }
        Ok(killed)
    }

    /// Whether the cgroup was given to its container ([`crate::cgroupfs`]).
    pub(crate) fn delegated(&self) -> bool {
        self.delegated
    }

    /// Whether the controllers are on cgroup v1 (the hybrid layout too).
    pub(crate) fn on_v1(&self) -> bool {
        matches!(self.manager, AnyCgroupManager::V1(_))
    }

    /// The cgroup's path, as the spec gave it.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// What tells this cgroup from one made later at the same path: the inode of its
    /// directory in the first hierarchy (by mount point) that has it. `None` if none has.
    pub(crate) fn identity(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let relative = self.path.strip_prefix("/").ok()?;
        let mut hierarchies = eci_mount::virt::mounted_hierarchies().ok()?;
        hierarchies.sort_by(|a, b| a.mount.cmp(&b.mount));
        hierarchies
            .iter()
            .find_map(|h| std::fs::metadata(h.mount.join(relative)).ok())
            .map(|meta| meta.ino())
    }

    /// Puts `pid` in the cgroup (a process added to a running container).
    pub(crate) fn add(&self, pid: i32) -> Result<()> {
        self.manager
            .add_task(Pid::from_raw(pid))
            .map_err(|e| self.error(&format!("adding process {pid}"), &e))
    }

    /// Puts `pid`, a process added to the running container (exec), in the cgroup or, on a
    /// delegated cgroup v2 the kernel refuses it in, in the cgroup of `init`, the container's
    /// init, as runc does: a container that enabled controllers for the cgroups it makes
    /// (Docker in it) must keep its processes below, and the kernel then refuses any in its
    /// top cgroup (EBUSY). Only a cgroup of the container's own tree is taken.
    pub(crate) fn add_exec(&self, pid: i32, init: i32) -> Result<()> {
        let refused = match self.add(pid) {
            Err(refused) if self.delegated && !self.on_v1() => refused,
            added => return added,
        };
        let listed = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap_or_default();
        // The cgroup2 line's: the one that names no controllers.
        let unified = cgroup_lines(&listed).find(|(controllers, _)| controllers.is_empty());
        let own = self.path.strip_prefix("/").unwrap_or(&self.path);
        let Some((_, at)) = unified.filter(|(_, at)| *at != own) else {
            return Err(refused);
        };
        if !in_cgroup_tree(&listed, &self.path, false) {
            return Err(refused);
        }
        let procs = Path::new(libcgroups::common::DEFAULT_CGROUP_ROOT)
            .join(at)
            .join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|e| {
            let what = format!(
                "adding process {pid} to the init's cgroup /{}",
                at.display()
            );
            self.error(&format!("{refused}; {what}"), &e)
        })
    }

    /// Puts `pid` in the cgroup and applies the limits (on cgroup v2 with the device rules,
    /// which libcgroups leaves out there: see [`crate::device_filter`]).
    pub(crate) fn join(&self, pid: i32, resources: &LinuxResources) -> Result<()> {
        self.manager
            .add_task(Pid::from_raw(pid))
            .map_err(|e| self.error("adding the init", &e))?;
        self.apply(resources)?;
        if matches!(self.manager, AnyCgroupManager::V2(_)) {
            self.restrict_devices_v2(resources)?;
        }
        Ok(())
    }

    /// Attaches the device program for `resources`' rules (eci's safe set when it has none) to
    /// the cgroup's v2 directory. Once, when the init joins: an update never changes the
    /// rules, and a second program would only repeat the first.
    fn restrict_devices_v2(&self, resources: &LinuxResources) -> Result<()> {
        let rules = resources
            .devices()
            .clone()
            .unwrap_or_else(eci_policy::harden::safe_device_cgroup);
        let program = crate::device_filter::program(&rules)
            .map_err(|e| self.error("restricting devices", &e))?;
        let relative = self.path.strip_prefix("/").unwrap_or(&self.path);
        let dir = Path::new(libcgroups::common::DEFAULT_CGROUP_ROOT).join(relative);
        crate::device_filter::attach(&program, &dir)
            .map_err(|e| self.error("restricting devices", &e))
    }

    /// Applies `resources` before the container runs (on v1 with eci's device rules alone).
    pub(crate) fn apply(&self, resources: &LinuxResources) -> Result<()> {
        self.apply_limits(resources)?;
        if matches!(self.manager, AnyCgroupManager::V1(_)) {
            self.narrow_v1_devices()
                .map_err(|e| self.error("narrowing the device rules", &e))?;
        }
        Ok(())
    }

    /// Has libcgroups write `resources` (on v1 with its own device rules after them).
    fn apply_limits(&self, resources: &LinuxResources) -> Result<()> {
        // libcgroups leaves `unified` out on v1 without a word: say the limits cannot be had,
        // as runc does, rather than run the container without them.
        let unified = resources.unified().as_ref().is_some_and(|u| !u.is_empty());
        if unified && matches!(self.manager, AnyCgroupManager::V1(_)) {
            return Err(self.error(
                "applying the limits",
                &"linux.resources.unified sets cgroup v2 files, and this host's controllers are \
                  on cgroup v1",
            ));
        }
        let opt = ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        self.manager
            .apply(&opt)
            .map_err(|e| self.error("applying the limits", &e))
    }

    /// Changes a running container's limits to `resources` (the device rules among them stay
    /// as they were made: see [`eci_policy::harden::updated_resources`]).
    ///
    /// On cgroup v1, libcgroups writes the device rules on every apply, whatever changes: the
    /// given ones (eci's safe set, which begins by denying everything, a reset the kernel
    /// refuses in a delegated container's cgroup, which has children) and then its own
    /// defaults, the host's console among them, in the order of its map of controllers. So
    /// none is handed to it here, the container stays frozen while the limits are written
    /// (nothing it runs can open a device meanwhile), and the defaults are taken back
    /// whether or not every limit could be written. An update that cannot freeze the
    /// container (no v1 freezer cgroup of its own; a process the freezer cannot stop) is
    /// refused; one whose narrowing fails kills the container's processes before they run
    /// again.
    pub(crate) fn update(&self, resources: &LinuxResources) -> Result<()> {
        if matches!(self.manager, AnyCgroupManager::V2(_)) {
            return self.apply(resources);
        }
        // libcgroups would make a missing one and freeze that, empty.
        if freezer_dir_v1(&self.path).ok().flatten().is_none() {
            let reason = "the container has no v1 freezer cgroup, so its processes could not be \
                          held while libcgroups writes its own device rules (the host's \
                          console among them)";
            return Err(self.error("updating", &reason));
        }
        let mut limits = resources.clone();
        limits.set_devices(Some(Vec::new()));
        let paused = self.frozen() == Some(true);
        if !paused {
            self.freeze(true)?;
        }
        let applied = self.apply_limits(&limits);
        if let Err(narrowing) = self.narrow_v1_devices() {
            return Err(self.kill_frozen_after(&narrowing, applied.err()));
        }
        let thawed = if paused { Ok(()) } else { self.freeze(false) };
        applied.and(thawed)
    }

    /// Fails closed after an update whose device rules could not be narrowed again: every
    /// process of the (frozen) container gets SIGKILL, which ends it before it returns to its
    /// own code once thawed, so none runs with libcgroups' rules. The error names both
    /// failures.
    /// If its processes cannot even be listed, it stays frozen.
    fn kill_frozen_after(&self, narrowing: &std::io::Error, applying: Option<Error>) -> Error {
        let what = match self.pids_left() {
            Ok(pids) => {
                for pid in pids.into_iter().filter(|pid| *pid > 0) {
                    let _ = eci_ns::sys::kill(pid, libc::SIGKILL);
                }
                let _ = self.freeze(false);
                "narrowing the device rules after an update; the container was killed"
            }
            Err(_) => "narrowing the device rules after an update; the container stays frozen",
        };
        let applying = applying.map_or_else(String::new, |e| format!(" (and before: {e})"));
        self.error(what, &format!("{narrowing}{applying}"))
    }

    /// Takes back what libcgroups adds to the v1 device rules after the spec's (eci's safe
    /// set) on every apply: mknod of any device (`c *:* m`, `b *:* m`: the kernel asks the
    /// host's CAP_MKNOD anyway) and the host's console (`c 5:1 rwm`, which a device node in
    /// the image would open; a container's /dev/console is a pty of its own). cgroup v2's
    /// program allows the safe set alone.
    fn narrow_v1_devices(&self) -> std::io::Result<()> {
        let deny = tree_dir(&self.path, true)?.join("devices.deny");
        for rule in ["c *:* m", "b *:* m", "c 5:1 rwm"] {
            std::fs::write(&deny, rule)?;
        }
        Ok(())
    }

    /// Freezes (`true`) or thaws every process in the cgroup.
    /// A freeze that fails (libcgroups gives up after 10 s on a task the freezer cannot stop,
    /// one in a killable wait on a FUSE server that is frozen itself, say) is undone: cgroup
    /// v2's freezer would stay set, leaving a container that says it runs frozen.
    pub(crate) fn freeze(&self, frozen: bool) -> Result<()> {
        let state = if frozen {
            FreezerState::Frozen
        } else {
            FreezerState::Thawed
        };
        // (A cgroup frozen already, paused, stays so.)
        let was_frozen = frozen && self.frozen() == Some(true);
        let done = self.manager.freeze(state);
        if done.is_err() && frozen && !was_frozen {
            let _ = self.manager.freeze(FreezerState::Thawed);
        }
        done.map_err(|e| self.error(if frozen { "freezing" } else { "thawing" }, &e))
    }

    /// Whether the cgroup's processes are frozen (paused, or being paused), as the freezer
    /// says: the v1 freezer where a v1 hierarchy has it (libcgroups freezes with that one
    /// then), else cgroup v2's own. `None` when neither can be read.
    pub(crate) fn frozen(&self) -> Option<bool> {
        let relative = self.path.strip_prefix("/").ok()?;
        let hierarchies = eci_mount::virt::mounted_hierarchies().ok()?;
        let v1 = hierarchies
            .iter()
            .find(|h| !h.unified && h.controllers.iter().any(|c| c == "freezer"));
        if let Some(freezer) = v1 {
            let state = std::fs::read_to_string(freezer.mount.join(relative).join("freezer.state"));
            return Some(state.ok()?.trim() != "THAWED");
        }
        let unified = hierarchies.iter().find(|h| h.unified)?;
        let freeze = std::fs::read_to_string(unified.mount.join(relative).join("cgroup.freeze"));
        Some(freeze.ok()?.trim() == "1")
    }

    /// The processes in the cgroup and in the cgroups below it (a delegated container's), as
    /// host pids.
    pub(crate) fn pids(&self) -> Result<Vec<i32>> {
        self.list_pids()
            .map_err(|e| self.error("listing the processes", &e))
    }

    /// [`Cgroup::pids`], none where the cgroup no longer exists.
    pub(crate) fn pids_left(&self) -> Result<Vec<i32>> {
        match self.list_pids() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            listed => listed.map_err(|e| self.error("listing the processes", &e)),
        }
    }

    fn list_pids(&self) -> std::io::Result<Vec<i32>> {
        let dir = match self.on_v1() {
            true => listing_dir_v1(&self.path)?,
            false => self.tree_dir()?,
        };
        eci_mount::virt::cgroup_tree::ids_in_tree(&dir, c"cgroup.procs")
    }

    /// The directory whose tree holds every process of the container ([`tree_dir`]).
    fn tree_dir(&self) -> std::io::Result<PathBuf> {
        tree_dir(&self.path, self.on_v1())
    }

    fn error(&self, what: &str, e: &dyn std::fmt::Display) -> Error {
        Error::Cgroup {
            path: self.path.clone(),
            reason: format!("{what}: {e}"),
        }
    }

    /// Fails unless the kernel lists `pid` (`who`) in this cgroup in every v1 hierarchy
    /// libcgroups manages: what a process's own move must have achieved before it may run
    /// anything. Adding it by pid then would be too late: it has its cgroup namespace already.
    pub(crate) fn confirm_member(&self, pid: i32, who: &str) -> Result<()> {
        let listed = std::fs::read_to_string(format!("/proc/{pid}/cgroup"));
        if listed.is_ok_and(|text| in_cgroup_everywhere(&text, &self.path, self.on_v1())) {
            return Ok(());
        }
        let reason = format!(
            "{who} is not in it in every hierarchy libcgroups manages (a cgroup mount eci did \
             not find?)"
        );
        Err(self.error("confirming", &reason))
    }

    /// [`Cgroup::confirm_member`] for a process added to the running container: in a delegated
    /// cgroup v2 it may be below ([`Cgroup::add_exec`]).
    pub(crate) fn confirm_exec_member(&self, pid: i32) -> Result<()> {
        if !self.delegated || self.on_v1() {
            return self.confirm_member(pid, "the process added");
        }
        let listed = std::fs::read_to_string(format!("/proc/{pid}/cgroup"));
        if listed.is_ok_and(|text| in_cgroup_tree(&text, &self.path, false)) {
            return Ok(());
        }
        Err(self.error("confirming", &"the process added is not in its tree"))
    }

    pub(crate) fn remove(&self) -> Result<()> {
        if self.delegated {
            crate::cgroupfs::remove_descendants(&self.path).map_err(|e| Error::Cgroup {
                path: self.path.clone(),
                reason: format!("removing the cgroups its container made: {e}"),
            })?;
        }
        self.manager
            .remove()
            .map_err(|e| self.error("removing", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hierarchy(mount: &str, unified: bool, controllers: &[&str]) -> Hierarchy {
        Hierarchy {
            mount: PathBuf::from(mount),
            unified,
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn a_process_is_in_its_cgroup_only_if_every_managed_hierarchy_says_so() {
        let path = Path::new("/eci/c1");
        let text = "12:pids:/eci/c1\n4:cpu,cpuacct:/eci/c1\n1:name=systemd:/init.scope\n0::/x\n";
        assert!(in_cgroup_everywhere(text, path, true));
        let left_behind = "12:pids:/eci/c1\n4:cpu,cpuacct:/\n";
        assert!(!in_cgroup_everywhere(left_behind, path, true));
        assert!(!in_cgroup_everywhere("12:pids:/eci/c1/sub\n", path, true));
        assert!(!in_cgroup_everywhere("garbage\n", path, true));
        assert!(!in_cgroup_everywhere("0::/eci/c1\n", path, true));
        // cgroup v2: its one line decides, whatever v1 hierarchies mounted nowhere say;
        // nothing said is not a yes.
        assert!(in_cgroup_everywhere("0::/eci/c1\n", path, false));
        assert!(in_cgroup_everywhere("12:pids:/\n0::/eci/c1\n", path, false));
        assert!(!in_cgroup_everywhere(
            "12:pids:/eci/c1\n0::/x\n",
            path,
            false
        ));
        assert!(!in_cgroup_everywhere("0::/user.slice\n", path, false));
        assert!(!in_cgroup_everywhere("garbage\n0::/eci/c1\n", path, false));
        // Below it: only where a tree is asked for, and never by way of "..".
        assert!(!in_cgroup_everywhere("0::/eci/c1/init\n", path, false));
        assert!(in_cgroup_tree("0::/eci/c1/init\n", path, false));
        assert!(in_cgroup_tree("12:pids:/eci/c1/a/b\n", path, true));
        assert!(!in_cgroup_tree("0::/eci/c10\n", path, false));
        assert!(!in_cgroup_tree("0::/eci/c1/../c2\n", path, false));
        assert!(!in_cgroup_tree("12:pids:/eci/c1/a\n4:cpu:/\n", path, true));
        for v1 in [true, false] {
            assert!(!in_cgroup_everywhere("", path, v1));
            assert!(!in_cgroup_everywhere("1:name=systemd:/eci/c1\n", path, v1));
        }
    }

    proptest::proptest! {
        #[test]
        fn a_line_with_a_managed_controller_elsewhere_is_never_accepted(
            id in 1u32..64,
            controller in proptest::sample::select(crate::cgroupfs::MANAGED.to_vec()),
            other in "/[a-z]{1,8}(/[a-z]{1,8}){0,3}",
        ) {
            let path = Path::new("/eci/c1");
            proptest::prop_assume!(other != "/eci/c1");
            let text = format!("{id}:{controller}:{other}\n");
            proptest::prop_assert!(!in_cgroup_everywhere(&text, path, true));
            let text = format!("{id}:{controller}:/eci/c1\n");
            proptest::prop_assert!(in_cgroup_everywhere(&text, path, true));
        }
    }

    #[test]
    fn the_thread_list_is_in_the_first_mounted_hierarchy() {
        let mounted = [
            hierarchy("/sys/fs/cgroup/unified", true, &[]),
            hierarchy("/sys/fs/cgroup/memory", false, &["rw", "memory"]),
            hierarchy(
                "/sys/fs/cgroup/cpu,cpuacct",
                false,
                &["rw", "cpu", "cpuacct"],
            ),
        ];
        let own = |text: &str| own_thread_list(text, &mounted);
        assert_eq!(
            own("9:name=systemd:/\n4:memory:/a/b\n0::/c\n"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/a/b/tasks"))
        );
        assert_eq!(
            own("3:cpu,cpuacct:/\n"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/tasks"))
        );
        assert_eq!(
            own("0::/c\n"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/c/cgroup.threads"))
        );
        // Outside a cgroup namespace's root, or not absolute: never a path out of the mount.
        assert_eq!(own("4:memory:/../x\n0::/../../y\n"), None);
        assert_eq!(own("4:memory:a\n"), None);
        assert_eq!(own("7:pids:/\n"), None, "not mounted here");
    }

    proptest::proptest! {
        #[test]
        fn the_memory_cgroup_is_the_first_plain_memory_only_line(
            lines in proptest::collection::vec(
                (
                    "[0-9]{1,2}",
                    "(memory|devices|cpu,memory|devices,memory|name=systemd|)",
                    "(/([a-z]{1,3}|\\.|\\.\\.)){0,3}|[a-z]{1,3}(/[a-z]{1,3})?",
                ),
                0..5,
            )
        ) {
            let text: String = lines
                .iter()
                .map(|(n, controllers, path)| format!("{n}:{controllers}:{path}\n"))
                .collect();
            let mounted = [
                hierarchy("/cg/unified", true, &[]),
                hierarchy("/cg/memory", false, &["rw", "memory"]),
            ];
            // Absolute and never above the hierarchy's root ("." names where it stands).
            let plain =
                |path: &str| path.starts_with('/') && !path.split('/').any(|s| s == "..");
            let expected = lines
                .iter()
                .find(|(_, controllers, path)| controllers == "memory" && plain(path))
                .map(|(_, _, path)| {
                    Path::new("/cg/memory")
                        .join(path.trim_start_matches('/'))
                        .join("tasks")
                });
            proptest::prop_assert_eq!(memory_tasks_path(&text, &mounted), expected, "{}", text);
        }

        #[test]
        fn the_thread_list_never_leaves_its_hierarchy(text in "[0-9a-z=,:/.\n]{0,80}") {
            let mounted = [
                hierarchy("/cg/unified", true, &[]),
                hierarchy("/cg/memory", false, &["rw", "memory"]),
            ];
            if let Some(file) = own_thread_list(&text, &mounted) {
                proptest::prop_assert!(mounted.iter().any(|h| file.starts_with(&h.mount)));
                let normal = file
                    .components()
                    .all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)));
                proptest::prop_assert!(normal, "{}", file.display());
            }
        }
    }

    #[test]
    fn helpers_join_the_memory_cgroup_on_v1_only() {
        let mounted = [
            hierarchy("/cg/unified", true, &[]),
            hierarchy("/cg/devices", false, &["rw", "devices"]),
            hierarchy("/cg/memory", false, &["rw", "memory"]),
        ];
        let tasks = |text: &str| memory_tasks_path(text, &mounted);
        assert_eq!(
            tasks("5:devices:/eci/a\n4:memory:/eci/a\n0::/\n"),
            Some(PathBuf::from("/cg/memory/eci/a/tasks"))
        );
        assert_eq!(tasks("0::/eci/a\n"), None, "cgroup v2");
        assert_eq!(
            tasks("4:devices,memory:/eci/a\n"),
            None,
            "sharing the hierarchy that lists the container's processes"
        );
        assert_eq!(tasks("4:freezer,memory:/eci/a\n"), None, "or pauses them");
        assert_eq!(tasks("4:cpu,memory:/eci/a\n"), None, "or any other");
        assert_eq!(tasks("4:memory:/../x\n"), None, "outside the namespace");
        assert_eq!(tasks("4:memory:eci\n"), None);
        let v2_only = [hierarchy("/cg", true, &[])];
        assert_eq!(memory_tasks_path("4:memory:/eci/a\n", &v2_only), None);
    }

    /// Test cgroup directories in every managed v1 hierarchy, removed (with anything below)
    /// when dropped.
    struct TestDirs(Vec<PathBuf>);

    impl Drop for TestDirs {
        fn drop(&mut self) {
            for dir in &self.0 {
                let _ = std::fs::remove_dir(dir.join("other"));
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    /// A cgroup made for a test in every managed hierarchy, removed with the guard: its path
    /// and the guard. `None` where the test cannot run (not root, no managed hierarchy).
    fn test_cgroup(kind: &str) -> Option<(PathBuf, TestDirs)> {
        let hierarchies = eci_mount::virt::mounted_hierarchies().unwrap();
        if !nix::unistd::geteuid().is_root() || !hierarchies.iter().any(crate::cgroupfs::managed) {
            return None;
        }
        let name = format!("eci-test-{kind}-{}", std::process::id());
        let managed = hierarchies.iter().filter(|h| crate::cgroupfs::managed(h));
        let dirs = TestDirs(managed.map(|h| h.mount.join(&name)).collect());
        for dir in &dirs.0 {
            std::fs::create_dir(dir).unwrap();
        }
        Some((Path::new("/").join(&name), dirs))
    }

    #[test]
    fn only_a_cgroup_given_away_has_the_cgroups_below_it_removed_with_it() {
        let Some((path, dirs)) = test_cgroup("given") else {
            return;
        };
        let kept = Cgroup::open(&path, "t").unwrap();
        let tree = kept.tree_dir().unwrap();
        // Another cgroup below one eci kept (another container's, say) stays, and so does it.
        std::fs::create_dir(tree.join("other")).unwrap();
        assert!(!kept.delegated);
        assert!(kept.remove().is_err());
        assert!(tree.join("other").is_dir());
        assert_eq!(kept.pids().unwrap(), Vec::<i32>::new());
        // Given to a container's root, what is below is the container's.
        std::os::unix::fs::chown(&tree, Some(100_000), Some(100_000)).unwrap();
        let given = Cgroup::open(&path, "t").unwrap();
        assert!(given.delegated);
        given.remove().unwrap();
        assert!(dirs.0.iter().all(|dir| !dir.exists()));
    }

    #[test]
    fn a_cgroup_that_cannot_be_frozen_is_killed_process_by_process() {
        let Some((path, dirs)) = test_cgroup("unfrozen") else {
            return;
        };
        let cgroup = Cgroup::open(&path, "t").unwrap();
        let spawn = || {
            std::process::Command::new("sleep")
                .arg("100")
                .spawn()
                .unwrap()
        };
        let (mut inside, mut outside) = (spawn(), spawn());
        cgroup.add(inside.id() as i32).unwrap();
        let killed = cgroup.kill_unfrozen().unwrap();
        assert_eq!(killed, [inside.id() as i32]);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(inside.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(
            outside.try_wait().unwrap(),
            None,
            "a process elsewhere was signalled"
        );
        outside.kill().unwrap();
        outside.wait().unwrap();
        cgroup.remove().unwrap();
        drop(dirs);
    }

    #[test]
    fn priming_leaves_the_thread_where_it_was() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        // On a thread of its own, as the runtime does: the harness's threads stay untouched.
        let (before, after) = std::thread::spawn(|| {
            let before = std::fs::read_to_string("/proc/thread-self/cgroup").unwrap();
            move_to_own_cgroup().unwrap();
            let after = std::fs::read_to_string("/proc/thread-self/cgroup").unwrap();
            (before, after)
        })
        .join()
        .unwrap();
        assert_eq!(before, after);
    }
}
