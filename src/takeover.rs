//! Taking over the mount vetting of a live container whose runtime died.
//!
//! For every vetted process (the init and each exec'd one) the runtime keeps a record in
//! `STATE_DIR/vetting/ID/PID-START.json`: the process, the container's init, what its mount helpers
//! know, and the number at which they hold the listener. When the runtime dies, its helpers
//! become orphans that answer ENOSYS and keep the listener; [`Runtime::take_over`] finds them by
//! the records and puts helpers of its own on the listeners. A record is removed with the
//! vetting it describes; one left by a dead runtime is removed once its process is gone.

use std::ffi::CString;
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eci_idmap::Holder;
use eci_ns::PidFd;
use eci_policy::mount::MountPolicy;
use eci_seccomp::fresh::Masks;
use eci_seccomp::mount::{
    find_orphan, hold_orphan, orphans_sharing, release_orphan, stop_orphan, HelperConfig,
    MountVetter,
};
use eci_seccomp::supervisor::Handler;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::{Runtime, Shared};
use crate::supervise::{register, Vetting};

/// What a new runtime needs to take over one process's vetting.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The process whose calls are vetted.
    process: Holder,
    /// The container's init, whose namespaces replacement helpers join.
    init: Holder,
    /// The number at which the helpers hold the listener.
    listener_fd: i32,
    /// Inode of the container's user namespace.
    userns: u64,
    policy: MountPolicy,
    initial: Vec<(u32, bool)>,
    masks: Masks,
    /// Whether the filter traps sysinfo(2).
    sysinfo: bool,
}

impl Record {
    /// The record of `process`'s vetting by `vetter`, which knows what `config` says.
    fn of(
        process: Holder,
        init: Holder,
        vetter: &MountVetter,
        config: &HelperConfig,
    ) -> Result<Record> {
        Ok(Record {
            process,
            init,
            listener_fd: vetter.listener_fd().ok_or_else(|| Error::Setup {
                what: "the mount helper gave up its listener at once".into(),
                source: std::io::ErrorKind::BrokenPipe.into(),
            })?,
            userns: config.userns,
            policy: config.policy,
            initial: config.initial.clone(),
            masks: config.masks.clone(),
            sysinfo: config.sysinfo.is_some(),
        })
    }
}

/// A record on disk, removed when dropped.
pub(crate) struct RecordFile(PathBuf);

impl RecordFile {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RecordFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        // The last record of a container takes its directory along.
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Removes the vetting records of `container` whose container's init has ended (a zombie, not
/// yet reaped, has), and the halves of records a runtime that died was writing; the directory
/// too once nothing is left. A record of a live init stays: a container of the same name made
/// since, under another cgroup, may run.
pub(crate) fn remove_stale_records(state_dir: &Path, container: &str) {
    let dir = records_dir(state_dir, container);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for path in entries.flatten().map(|entry| entry.path()) {
        let partial = path.extension().is_some_and(|ext| ext == "new");
        let stale = partial
            || path.extension().is_some_and(|ext| ext == "json")
                // Kept while the container lives: an exec'd process's children run its filter
                // after it is gone.
                && read_record(&path).map_or(true, |record| record.init.has_exited());
        if stale {
            let _ = std::fs::remove_file(&path);
        }
    }
    let _ = std::fs::remove_dir(&dir);
}

/// Where the vetting records of `container` are kept under a runtime's state directory.
pub(crate) fn records_dir(state_dir: &Path, container: &str) -> PathBuf {
    state_dir.join("vetting").join(container)
}

/// Writes the record of `process`'s vetting by `vetter`.
pub(crate) fn record(
    shared: &Shared,
    container: &str,
    init: &PidFd,
    process: &PidFd,
    vetter: &MountVetter,
    config: &HelperConfig,
) -> Result<RecordFile> {
    let holder = |pidfd: &PidFd| {
        Holder::of(pidfd.pid()).map_err(Error::io(format!("reading process {}", pidfd.pid())))
    };
    let record = Record::of(holder(process)?, holder(init)?, vetter, config)?;
    write_record(&records_dir(&shared.state_dir, container), &record)
}

fn write_record(dir: &Path, record: &Record) -> Result<RecordFile> {
    // Named by the process and its start: a process that reuses the pid of one whose handle
    // is still held (reaped, not dropped) writes its own, which that handle's drop leaves.
    let process = &record.process;
    let path = dir.join(format!("{}-{}.json", process.pid, process.start_time));
    let io = |what: &str| Error::io(format!("{what} {}", path.display()));
    std::fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    let text = serde_json::to_vec(record).map_err(|e| Error::Io {
        what: format!("encoding {}", path.display()),
        source: e.into(),
    })?;
    // Written aside and renamed: a crash never leaves half a record.
    let partial = path.with_extension("json.new");
    std::fs::write(&partial, text).map_err(io("writing"))?;
    std::fs::rename(&partial, &path).map_err(io("renaming into place"))?;
    Ok(RecordFile(path))
}

/// Mount vetting taken over from a runtime that died ([`Runtime::take_over`]). The container's
/// mount calls are vetted as long as this lives; dropping it ends the vetting, and they fail.
pub struct TakenOver {
    id: String,
    processes: Vec<(i32, Vetting)>,
    failures: Vec<(i32, Error)>,
}

impl TakenOver {
    /// The container's ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The processes (host pids) whose mount calls are vetted again.
    pub fn processes(&self) -> Vec<i32> {
        self.processes.iter().map(|(pid, _)| *pid).collect()
    }

    /// The processes whose vetting could not be taken over, and why: their calls still fail
    /// (ENOSYS) and their records are kept, so a later attempt may succeed.
    pub fn failures(&self) -> &[(i32, Error)] {
        &self.failures
    }
}

impl fmt::Debug for TakenOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TakenOver")
            .field("id", &self.id)
            .field("processes", &self.processes())
            .field("failures", &self.failures)
            .finish()
    }
}

impl Runtime {
    /// Takes over the mount vetting of container `id`, whose runtime (using the same state
    /// directory) died while the container ran on. Until then its mount calls failed with
    /// ENOSYS; from now on they are vetted, with the settings and initial mounts it was created
    /// with. Fails, changing nothing, if the runtime that created it still lives (its helpers
    /// are not orphans); a process whose vetting cannot be taken over is listed in
    /// [`TakenOver::failures`] and left as it was. The container's virtual files, if they died
    /// with the old runtime, become read-only masks in a procfs or sysfs it mounts later. A
    /// mount call made during the take-over waits for the new helper (the orphan is held
    /// meanwhile, for at most five seconds), so once one call is vetted, none fails with
    /// ENOSYS any more.
    ///
    /// ```no_run
    /// # fn demo() -> eci::Result<()> {
    /// let runtime = eci::Runtime::new(eci::RuntimeConfig::default())?;
    /// let vetting = runtime.take_over("web")?;
    /// println!("vetting {:?} again", vetting.processes());
    /// # Ok(()) }
    /// ```
    pub fn take_over(&self, id: &str) -> Result<TakenOver> {
        if !crate::valid_container_id(id) {
            return Err(Error::InvalidId(id.to_string()));
        }
        let dir = records_dir(&self.shared.state_dir, id);
        // One runtime at a time: two taking the same listener would each start a helper.
        let _lock = lock_dir(&dir)?;
        // Every live record with its orphan first: nothing is touched unless one is there (a
        // helper becomes an orphan only once its runtime has ended). One whose orphan is gone
        // (killed) is a failure of that process alone: no one holds its listener to take.
        let mut found = Vec::new();
        let mut failures = Vec::new();
        // One wait for all: a helper of a runtime that just died becomes an orphan within it,
        // and records without one (an ended process's) must not each cost it again.
        let deadline = std::time::Instant::now() + ORPHAN_WAIT;
        for path in record_paths(&dir)? {
            let record = read_record(&path)?;
            if record.init.has_exited() {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            // The vetted process may be gone and its children, which run its filter, not: the
            // orphan serves them. Gone with no orphan, its filter may be gone too, or its
            // runtime may live on (or its helper not have seen it end yet): the record is left
            // alone either way, for that runtime or a later take-over (the init's end, or
            // `remove_orphan`, clears it).
            match wait_for_orphan(record.userns, record.listener_fd, deadline) {
                Some(orphan) => found.push((path, record, orphan)),
                None if !record.process.is_alive() => {}
                None => failures.push((record.process.pid, no_orphan(record.process.pid))),
            }
        }
        if found.is_empty() {
            return Err(match failures.pop() {
                Some((_, err)) => err,
                None => Error::Io {
                    what: format!("taking over container {id}: no live vetted process is recorded"),
                    source: std::io::ErrorKind::NotFound.into(),
                },
            });
        }
        let mut processes = Vec::new();
        for (path, record, orphan) in found {
            let pid = record.process.pid;
            // A failure leaves that orphan and its record as they were, for another attempt.
            match take_over_one(&self.shared, id, &path, record, &orphan) {
                Ok(vetting) => processes.push(vetting),
                Err(err) => failures.push((pid, err)),
            }
        }
        if processes.is_empty() {
            // The last failure is a take-over's own (the missing orphans come first).
            if let Some((_, err)) = failures.pop() {
                return Err(err);
            }
        }
        Ok(TakenOver {
            id: id.to_string(),
            processes,
            failures,
        })
    }
}

/// No orphaned helper holds the listener of `pid`'s vetting.
fn no_orphan(pid: i32) -> Error {
    Error::Io {
        what: format!(
            "no orphaned mount helper holds the listener of process {pid}; is the runtime that \
             created it still alive?"
        ),
        source: std::io::ErrorKind::NotFound.into(),
    }
}

/// How long a helper may take to notice that its runtime died and become an orphan.
const ORPHAN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The orphan holding listener `fd` in user namespace `userns`, waiting until `deadline` for
/// it: a helper becomes one only once it sees its runtime's end, which on a busy machine may
/// come a little after a new runtime was started.
fn wait_for_orphan(userns: u64, fd: i32, deadline: std::time::Instant) -> Option<PidFd> {
    loop {
        let found = find_orphan(userns, fd);
        if found.is_some() || std::time::Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// An exclusive lock on `dir`, held while the guard lives.
fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(dir).map_err(Error::io(format!("opening {}", dir.display())))?;
    // SAFETY: flock on a descriptor we hold.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::Io {
            what: format!("locking {}", dir.display()),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(file)
}

fn record_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(Error::io(format!("reading {}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    Ok(paths)
}

fn read_record(path: &Path) -> Result<Record> {
    let text = std::fs::read(path).map_err(Error::io(format!("reading {}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| Error::Io {
        what: format!("reading the vetting record {}", path.display()),
        source: e.into(),
    })
}

/// Opens a pidfd of `holder`, checked to be that very process (not a reuse of its pid).
fn open_holder(holder: &Holder, what: &str) -> Result<PidFd> {
    let gone = |source: std::io::Error| Error::Io {
        what: format!("{what} (pid {}) is gone", holder.pid),
        source,
    };
    let pidfd = PidFd::open(holder.pid).map_err(|errno| gone(errno.into()))?;
    let same = Holder::of(holder.pid).is_ok_and(|now| now == *holder);
    if !same || !pidfd.is_alive() {
        return Err(gone(std::io::ErrorKind::NotFound.into()));
    }
    Ok(pidfd)
}

/// The memory cgroup the orphan's replacements are to join (the init's, as at create). A
/// take-over that could not find it goes on without: the container keeps its mount calls,
/// and only their kernel memory is charged to the runtime.
fn charge_replacements_to(init: &PidFd) -> Option<Arc<OwnedFd>> {
    let found = crate::cgroup::memory_tasks_of(init.pid());
    // What was read named the init only if it still runs (its pid is not ours to hold).
    match found {
        Ok(tasks) if init.is_alive() => tasks,
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(
                pid = init.pid(),
                "mount helpers stay in the runtime's cgroups: {err}"
            );
            None
        }
    }
}

/// Takes over the vetting `record` (read from `read_from`) describes from `orphan`.
fn take_over_one(
    shared: &Shared,
    id: &str,
    read_from: &Path,
    record: Record,
    orphan: &PidFd,
) -> Result<(i32, Vetting)> {
    let dir = read_from.parent().unwrap_or(read_from);
    let pid = record.process.pid;
    // The vetted process itself may be gone: its filter lives on in the children it left (a
    // daemon an exec started), whose calls the orphan holds.
    let init = open_holder(&record.init, "the container's init")?;
    let mut masks = record.masks;
    let dead = mask_dead_binds(&mut masks);
    if dead > 0 {
        tracing::warn!(
            pid,
            dead,
            "virtual files no longer served: masked in the procfs and sysfs the container mounts"
        );
    }
    let config = HelperConfig {
        policy: record.policy,
        userns: record.userns,
        userns_fd: None,
        initial: record.initial,
        masks,
        // From the per-host daemon, which serves the container while its init lives; without
        // one, the calls fail (ENOSYS) rather than reach the kernel, which would give the
        // host's figures.
        sysinfo: record.sysinfo.then(|| shared.virtual_files.sysinfo_of(id)),
        charged_to: charge_replacements_to(&init),
    };
    // From here until it is stopped or let go, the orphan is held: it answers nothing.
    let (vetter, listener) =
        MountVetter::take_over(&init, orphan, record.listener_fd, config.clone())?;
    // Any other orphan on the same listener (a runtime that died taking over left it) goes
    // with this one: left, it would answer calls with ENOSYS beside ours. Held meanwhile, as
    // this one is, so that none answers a call before ours is registered.
    let others = orphans_sharing(&listener, record.userns, orphan);
    for other in &others {
        if let Err(err) = hold_orphan(other) {
            tracing::warn!(pid, orphan = other.pid(), "holding a second orphan: {err}");
        }
    }
    let registered = register(shared, listener, &vetter, &init).and_then(|registration| {
        let record = Record::of(record.process, record.init, &vetter, &config)?;
        Ok((registration, write_record(dir, &record)?))
    });
    let (registration, file) = match registered {
        Ok(done) => done,
        Err(err) => {
            // Ours goes first, answering the call it had received (the held orphan would not),
            // and only then may the orphan answer again: never two at once. The orphan, and
            // its record, stay for another attempt.
            vetter.retire();
            release_orphan(orphan);
            others.iter().for_each(release_orphan);
            return Err(err);
        }
    };
    // Ours serves, is registered and recorded (anew, under the name of this version: a record
    // left by an earlier one, named otherwise, would pair a later take-over with this orphan
    // twice): only now may the orphan go.
    if read_from != file.path() {
        let _ = std::fs::remove_file(read_from);
    }
    stop_orphan(orphan);
    for other in &others {
        tracing::warn!(
            pid,
            orphan = other.pid(),
            "a second orphan on the listener: stopped"
        );
        stop_orphan(other);
    }
    tracing::info!(pid, helper = vetter.helper_pid(), "took over mount vetting");
    Ok((pid, Vetting::new(registration, vetter, file)))
}

/// Turns the binds whose source no longer answers (virtual files whose server died with the
/// runtime) into read-only masks: a procfs or sysfs the container mounts then reads them empty
/// and cannot write them, rather than showing or changing the host's (and a helper cannot start
/// with a bind it cannot open). Returns how many.
fn mask_dead_binds(masks: &mut Masks) -> usize {
    let mut dead_proc = take_dead(&mut masks.proc_binds);
    dead_proc.extend(take_dead(&mut masks.proc_rw_binds));
    let dead_sys = take_dead(&mut masks.sys_binds);
    let count = dead_proc.len() + dead_sys.len();
    masks.proc_readonly.extend(dead_proc.iter().cloned());
    masks.proc_masked.extend(dead_proc);
    masks.sys_masked.extend(dead_sys);
    count
}

/// Removes from `binds` those whose source does not answer; returns their targets.
fn take_dead(binds: &mut Vec<(CString, CString)>) -> Vec<CString> {
    // Read, not just opened or looked up: the kernel answers both itself for the computed
    // files (it stops sending opens once the server refuses the first), and only a read
    // asks the server (once the kernel's 100 ms of caching a text are over).
    let alive = |(source, _): &(CString, CString)| {
        std::fs::read(Path::new(std::ffi::OsStr::from_bytes(source.as_bytes()))).is_ok()
    };
    let (live, dead): (Vec<_>, Vec<_>) = std::mem::take(binds).into_iter().partition(alive);
    *binds = live;
    dead.into_iter().map(|(_, target)| target).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_that_cannot_be_opened_become_read_only_masks() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let live = CString::new(file.path().as_os_str().as_bytes()).unwrap();
        let dead = c"/nonexistent/eci/meminfo".to_owned();
        let mut masks = Masks {
            proc_binds: vec![
                (live.clone(), c"cpuinfo".into()),
                (dead.clone(), c"meminfo".into()),
            ],
            proc_rw_binds: vec![(dead.clone(), c"sys/kernel/panic".into())],
            sys_binds: vec![(dead, c"devices/system/cpu/online".into())],
            ..Masks::default()
        };
        assert_eq!(mask_dead_binds(&mut masks), 3);
        assert_eq!(masks.proc_binds, [(live, c"cpuinfo".into())]);
        assert!(masks.proc_rw_binds.is_empty() && masks.sys_binds.is_empty());
        let proc: Vec<CString> = vec![c"meminfo".into(), c"sys/kernel/panic".into()];
        assert_eq!(masks.proc_masked, proc);
        assert_eq!(masks.proc_readonly, proc);
        assert_eq!(masks.sys_masked, [c"devices/system/cpu/online".to_owned()]);
    }

    #[test]
    fn a_record_from_before_the_refusals_were_known_refuses_fresh_filesystems() {
        // Records written before a fresh procfs or sysfs could be refused for what the spec
        // mounted under /proc or /sys do not say: read as "not refused", a new runtime let a
        // fresh procfs show what such a mount hid.
        let mut json = serde_json::to_value(Masks::default()).unwrap();
        let fields = json.as_object_mut().unwrap();
        assert!(fields.remove("proc_refused").is_some() && fields.remove("sys_refused").is_some());
        let masks: Masks = serde_json::from_value(json).unwrap();
        assert!(masks.proc_refused && masks.sys_refused);
        let known: Masks =
            serde_json::from_value(serde_json::to_value(Masks::default()).unwrap()).unwrap();
        assert!(!known.proc_refused && !known.sys_refused);
    }
}
