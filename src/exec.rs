//! Processes added to a running container (`docker exec`): the same namespaces, cgroup, seccomp
//! filters and mount vetting as the init, and a process spec hardened the same way.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

use eci_ns::channel::{Channel, Message};
use eci_ns::failure::Failure;
use eci_ns::{spawn_into, ExitStatus, PidFd};
use eci_policy::harden::{harden_with_image, HardenContext};
use oci_spec::runtime::Process;

use crate::container::{namespaces_of, set_oom_score_adj, set_rlimits, Container, State, Stdio};
use crate::error::{Error, Result};
use crate::init::{InitPlan, START};
use crate::supervise::{receive_listener, start_vetting};
use crate::volume::BundlePaths;

/// A process added to a running container. Dropping it kills it if it still runs.
#[derive(Debug)]
pub struct ExecProcess {
    process: Arc<Reaped>,
    console: Option<OwnedFd>,
}

/// An exec'd process and its exit status once reaped, shared between its [`ExecProcess`] and
/// its container: deleting the container reaps it (the kernel lets the container's init finish
/// exiting only once every process of its PID namespace is reaped), and the handle still
/// reports the status afterwards.
#[derive(Debug)]
pub(crate) struct Reaped {
    pidfd: PidFd,
    status: Mutex<Option<ExitStatus>>,
}

impl Reaped {
    /// Waits for the process to exit and reaps it, once; later calls return the same status.
    pub(crate) fn wait(&self) -> std::result::Result<ExitStatus, eci_ns::sys::Errno> {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(status) = *status {
            return Ok(status);
        }
        let exited = self.pidfd.wait()?;
        *status = Some(exited);
        Ok(exited)
    }

    fn reaped(&self) -> bool {
        self.status.lock().map_or(true, |s| s.is_some())
    }
}

impl ExecProcess {
    /// Its pid in the runtime's PID namespace.
    pub fn pid(&self) -> i32 {
        self.process.pidfd.pid()
    }

    /// The master side of its terminal, once, if its process asked for one.
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    /// Its pidfd, readable once it has exited (to wait for it beside other things).
    pub fn pidfd(&self) -> &PidFd {
        &self.process.pidfd
    }

    /// Waits for it to exit.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        self.process.wait().map_err(|errno| Error::Io {
            what: "waiting for an exec'd process".into(),
            source: errno.into(),
        })
    }

    /// Sends it `signal`.
    pub fn kill(&self, signal: i32) -> Result<()> {
        self.process
            .pidfd
            .signal(signal)
            .map_err(|errno| Error::Io {
                what: "signalling an exec'd process".into(),
                source: errno.into(),
            })
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        if !self.process.reaped() {
            self.process.pidfd.kill_and_reap(KILL_PATIENCE);
        }
    }
}

/// How many exec'd processes' filters (with what they left running) are vetted at once in a
/// container.
const MOST_EXEC_VETTINGS: usize = 32;

/// How long a killed exec'd process is waited for before a thread of its own reaps it
/// ([`PidFd::kill_and_reap`]).
const KILL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

impl Container {
    /// Runs `process` inside the running container and returns once it has been executed. The
    /// process is hardened like the container's own (capabilities never beyond the runtime's,
    /// user within the container's IDs) and gets the same seccomp filters, with its mount calls
    /// vetted by a helper of its own, and the container's AppArmor profile unless it names one.
    ///
    /// ```no_run
    /// # fn demo(container: &eci::Container) -> eci::Result<()> {
    /// let mut process = oci_spec::runtime::Process::default();
    /// process.set_args(Some(vec!["ps".into(), "-ef".into()]));
    /// let mut exec = container.exec(process, eci::Stdio::default())?;
    /// exec.wait()?;
    /// # Ok(()) }
    /// ```
    pub fn exec(&self, mut process: Process, stdio: Stdio) -> Result<ExecProcess> {
        if self.state != State::Running {
            return Err(self.state_error("exec into"));
        }
        // Confined as the container is unless it names a profile of its own (runc's rule).
        if process.apparmor_profile().is_none() {
            let containers = self.spec.process().as_ref().map(|p| p.apparmor_profile());
            process.set_apparmor_profile(containers.cloned().flatten());
        }
        // Refused as the init's would be, rather than run without the label asked for.
        crate::container::check_process_supported(&process)?;
        let mut spec = self.spec.clone();
        spec.set_process(Some(process));
        // The mounts are the container's already, and the process alone is taken from the
        // result: checking them again would fail an exec over a volume changed since.
        spec.set_mounts(None);
        let lease = self
            .resources
            .lease
            .as_ref()
            .expect("a running container holds its lease");
        let ctx = HardenContext {
            policy: &self.policy,
            block: lease.block(),
            runtime_caps: self.shared.runtime_caps,
        };
        let image = self.image.as_ref().map(crate::ContainerImage::context);
        let mut host = BundlePaths::new(&self.bundle);
        let spec = harden_with_image(spec, &ctx, image.as_ref(), &mut host)?.spec;
        // The hostname and domain name are the container's already.
        let mut process_only = spec.clone();
        process_only.set_hostname(None);
        process_only.set_domainname(None);
        let plan = InitPlan::new(
            &process_only,
            stdio.raw(),
            self.shared.filters.clone(),
            self.init_plan.profile().clone(),
            self.shared.last_cap,
        )?;
        let cgroup = self
            .resources
            .cgroup
            .as_ref()
            .expect("a running container has its cgroup");
        // On v1 the process moves itself in once let go, as the init did (no global lock, so
        // no grace period to wait for); elsewhere it is added by pid.
        let thread_lists = cgroup.thread_lists_for_exec()?;
        let mut prepare = |p: &PidFd| -> std::result::Result<u32, eci_ns::spawn::PrepareError> {
            if thread_lists.is_none() {
                cgroup.add_exec(p.pid(), self.init.pid())?;
            }
            set_rlimits(p.pid(), &spec)?;
            set_oom_score_adj(p.pid(), &spec)?;
            Ok(0)
        };
        let init = |channel: &Channel| plan.run(channel);
        let lists: Vec<BorrowedFd<'_>> = thread_lists.iter().flatten().map(AsFd::as_fd).collect();
        let namespaces = namespaces_of(&self.spec);
        let keep = plan.descriptors();
        let spawned = spawn_into(&self.init, namespaces, &init, &mut prepare, &lists, &keep)
            .map_err(|err| match err {
                eci_ns::SpawnError::Child(failure) => explain(failure, &plan),
                other => Error::Spawn(other),
            })?;
        drop(thread_lists);
        // From here on the process exists; dropping `guard` kills it.
        let guard = Killer(&spawned.init);
        // The container may make the process hang before its program runs (its working
        // directory, a PATH entry or /dev/pts/ptmx on a FUSE mount that never answers): a
        // caller serving other requests (eci-runc's monitor: kill, delete) waits a bounded time.
        spawned
            .channel
            .set_receive_timeout(Some(EXEC_PATIENCE))
            .map_err(|errno| Error::Io {
                what: "starting an exec'd process".into(),
                source: errno.into(),
            })?;
        let handover = receive_listener(&spawned.channel, plan.terminal(), |failure| {
            explain(failure, &plan)
        })
        .map_err(not_started_in_time)?;
        cgroup.confirm_exec_member(spawned.init.pid())?;
        let listener = handover.listener;
        let config = self
            .helper_config
            .clone()
            .expect("a running container has its helper config");
        let vetting = start_vetting(
            &self.shared,
            &self.id,
            &self.init,
            &spawned.init,
            listener,
            config,
        )?;
        spawned
            .channel
            .send(Message::of(START))
            .map_err(|errno| Error::Io {
                what: "starting an exec'd process".into(),
                source: errno.into(),
            })?;
        match spawned.channel.recv() {
            // The channel closes when exec succeeds.
            Ok(None) => {}
            Ok(Some((msg, _))) => {
                return Err(Failure::from_message(&msg).map_or_else(
                    || Error::Io {
                        what: "starting an exec'd process".into(),
                        source: std::io::ErrorKind::InvalidData.into(),
                    },
                    |failure| explain(failure, &plan),
                ))
            }
            Err(errno) => {
                return Err(not_started_in_time(Error::Io {
                    what: "starting an exec'd process".into(),
                    source: errno.into(),
                }))
            }
        }
        std::mem::forget(guard);
        let process = Arc::new(Reaped {
            pidfd: spawned.init,
            status: Mutex::new(None),
        });
        let mut execs = self.execs.lock().unwrap_or_else(|e| e.into_inner());
        execs.retain(|e| e.strong_count() > 0);
        execs.push(Arc::downgrade(&process));
        // The container's, not the handle's: the process's children (a daemon it started) run
        // its filter after it is gone, and their mount calls are vetted until the last of
        // them is (or the container).
        let vettings = &self.resources.exec_vettings;
        let mut vettings = vettings.lock().unwrap_or_else(|e| e.into_inner());
        vettings.retain(crate::supervise::Vetting::is_active);
        // Each holds a helper of the runtime's: a container whose execs all leave something
        // running (or, before Linux 6.11's release of a zombie's filter, a zombie its init
        // never reaps) ends the oldest's vetting rather than pile them up. Its processes' mount
        // calls fail (ENOSYS) from then on.
        if vettings.len() >= MOST_EXEC_VETTINGS {
            tracing::warn!(
                container = self.id,
                "{MOST_EXEC_VETTINGS} exec'd processes still run their filters; the oldest's mount calls now fail"
            );
            vettings.remove(0);
        }
        vettings.push(vetting);
        Ok(ExecProcess {
            process,
            console: handover.console,
        })
    }
}

/// How long an exec'd process may take over each step from its spawn until its program runs
/// (its terminal, its listener, its exec): three steps at most, so 30 s in all.
const EXEC_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Names a receive that timed out for what it means.
fn not_started_in_time(err: Error) -> Error {
    match err {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::WouldBlock => Error::Io {
            what: format!(
                "starting an exec'd process: a step before its program ran took over {} s \
                     (a path it needs in the container does not answer?); it was killed",
                EXEC_PATIENCE.as_secs()
            ),
            source: std::io::ErrorKind::TimedOut.into(),
        },
        other => other,
    }
}

/// Kills and reaps a process unless forgotten.
struct Killer<'a>(&'a PidFd);

impl Drop for Killer<'_> {
    fn drop(&mut self) {
        self.0.kill_and_reap(KILL_PATIENCE);
    }
}

fn explain(failure: Failure, plan: &InitPlan) -> Error {
    let what = match failure.stage {
        eci_ns::failure::Stage::Init => plan.explain(failure.step),
        stage => format!("{} (step {})", stage.describe(), failure.step),
    };
    Error::Setup {
        what,
        source: failure.errno.into(),
    }
}
