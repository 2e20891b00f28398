//! A container: created, started, waited for, killed and deleted.

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eci_idmap::{write_id_maps, Holder, Lease, LeaseRecord};
use eci_mount::exec::{ExecContext, RootfsMount};
use eci_mount::MountPlan;
use eci_ns::channel::Channel;
use eci_ns::failure::{Failure, Stage};
use eci_ns::join::JoinableNamespace;
use eci_ns::{
    spawn, ExitStatus, InitParent, Namespaces, PidFd, SetupContext, SpawnError, SpawnRequest,
};
use eci_policy::harden::{harden_with_image, Change, HardenContext, ImageContext};
use eci_policy::ids::{IdBlock, IdMapping};
use eci_policy::overrides::Overrides;
use eci_policy::root::{RootAccess, RootRefusal};
use eci_policy::settings::ProcFile;
use eci_seccomp::mount::{HelperConfig, MountVetter, PendingVetter};
use eci_seccomp::profile::Profile;
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Spec};

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::init::{InitPlan, Sysctls, START};
use crate::runtime::Shared;
use crate::supervise::{
    helper_config, initial_mounts_once_final, receive_listener, start_prepared_vetting,
    start_vetting,
};
use crate::volume::BundlePaths;

/// Descriptors for the container's stdin, stdout and stderr. `None` keeps the runtime's own.
#[derive(Debug, Default)]
pub struct Stdio {
    /// Standard input.
    pub stdin: Option<OwnedFd>,
    /// Standard output.
    pub stdout: Option<OwnedFd>,
    /// Standard error.
    pub stderr: Option<OwnedFd>,
}

impl Stdio {
    pub(crate) fn raw(&self) -> [RawFd; 3] {
        let raw = |fd: &Option<OwnedFd>| fd.as_ref().map_or(-1, |fd| fd.as_raw_fd());
        [raw(&self.stdin), raw(&self.stdout), raw(&self.stderr)]
    }
}

/// What to create.
#[derive(Debug)]
pub struct ContainerConfig {
    /// The container's ID.
    pub id: String,
    /// The OCI runtime spec; hardened before use.
    pub spec: Spec,
    /// The bundle directory: a relative `root.path` and relative bind sources are resolved
    /// against it.
    pub bundle: PathBuf,
    /// Standard streams.
    pub stdio: Stdio,
    /// The image the container runs, if the caller knows it: only then may it bind-mount the
    /// Docker socket (`dockerSocketMount.imageList`).
    pub image: Option<ContainerImage>,
    /// Which process the container's init is a child of: this runtime (the default), or
    /// whoever adopts its orphans (see [`ContainerConfig::init_parent`]).
    pub init_parent: InitParent,
}

/// The image a container runs, as the caller found it, for `dockerSocketMount.imageList`. A
/// container whose image is allowed gets the engine's socket through a proxy that enforces
/// `dockerSocketMount.commandList` ([`crate::docker_proxy`]).
#[derive(Debug, Clone)]
pub struct ContainerImage {
    /// The reference the container was created with and the local image's repository digest.
    pub image: eci_policy::image::ImageIdentity,
    /// The allowed image it was built from, if the caller found one (counts only with
    /// `allowDerivedImages`).
    pub base: Option<eci_policy::image::ImageIdentity>,
    /// Digests the registry gives for tags of allowed images.
    pub known: eci_policy::image::KnownDigests,
}

impl ContainerImage {
    pub(crate) fn context(&self) -> ImageContext<'_> {
        ImageContext {
            image: &self.image,
            base: self.base.as_ref(),
            known: &self.known,
        }
    }
}

impl ContainerConfig {
    /// A container `id` running `spec`, with the current directory as its bundle.
    pub fn new(id: impl Into<String>, spec: Spec) -> ContainerConfig {
        ContainerConfig {
            id: id.into(),
            spec,
            bundle: PathBuf::from("."),
            stdio: Stdio::default(),
            image: None,
            init_parent: InitParent::Runtime,
        }
    }

    /// Sets the bundle directory.
    pub fn bundle(mut self, dir: impl Into<PathBuf>) -> ContainerConfig {
        self.bundle = dir.into();
        self
    }

    /// Sets the standard streams.
    pub fn stdio(mut self, stdio: Stdio) -> ContainerConfig {
        self.stdio = stdio;
        self
    }

    /// Sets the image the container runs.
    pub fn image(mut self, image: ContainerImage) -> ContainerConfig {
        self.image = Some(image);
        self
    }

    /// Sets which process the container's init is a child of. With [`InitParent::Adopter`]
    /// the init is adopted, before `create` returns, by the nearest ancestor of this process
    /// that made itself a child subreaper (containerd's shim does), else by the init of its
    /// PID namespace. That is what an OCI runtime's `create` needs: its caller names the init
    /// in the pid file, reaps it for the exit status and reads its cgroup for statistics and
    /// OOM events. [`Container::wait`] still reports how it ended. Needs Linux 6.15 or later
    /// ([`eci_ns::pidfd::exit_status_outlives_reaping`]): `create` refuses it before.
    ///
    /// ```
    /// use eci::{ContainerConfig, InitParent};
    /// let spec = eci::oci_spec::runtime::Spec::default();
    /// let config = ContainerConfig::new("web", spec).init_parent(InitParent::Adopter);
    /// assert_eq!(config.init_parent, InitParent::Adopter);
    /// ```
    pub fn init_parent(mut self, parent: InitParent) -> ContainerConfig {
        self.init_parent = parent;
        self
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Set up, its process waiting to be started.
    Created,
    /// Its process is running the spec's program.
    Running,
    /// Its processes are frozen ([`Container::pause`]).
    Paused,
    /// Its process has exited.
    Stopped(ExitStatus),
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Created => write!(f, "created"),
            State::Running => write!(f, "running"),
            State::Paused => write!(f, "paused"),
            State::Stopped(status) => write!(f, "stopped ({status})"),
        }
    }
}

/// A container. Dropping it deletes it (best effort); [`Container::delete`] reports errors.
pub struct Container {
    pub(crate) id: String,
    pub(crate) state: State,
    pub(crate) init: PidFd,
    channel: Option<Channel>,
    mapping: IdMapping,
    report: Vec<Change>,
    pub(crate) init_plan: InitPlan,
    pub(crate) resources: Resources,
    pub(crate) shared: Arc<Shared>,
    /// The hardened spec, which processes added later are hardened against.
    pub(crate) spec: Spec,
    /// The runtime's settings with this container's overrides.
    pub(crate) policy: eci_policy::Policy,
    /// What the mount helpers of this container know.
    pub(crate) helper_config: Option<HelperConfig>,
    /// Where relative bind sources were resolved.
    pub(crate) bundle: PathBuf,
    /// The image, as the caller gave it (processes added later are hardened with it too).
    pub(crate) image: Option<ContainerImage>,
    /// The master of the init's terminal, until taken.
    console: Option<OwnedFd>,
    /// The processes added with [`Container::exec`], reaped on delete if their handles have
    /// not been.
    pub(crate) execs: std::sync::Mutex<Vec<std::sync::Weak<crate::exec::Reaped>>>,
}

/// What a container holds that must be given back, in the order it is given back.
pub(crate) struct Resources {
    vetting: Option<crate::supervise::Vetting>,
    /// The mount vetting of each process added with [`Container::exec`], kept while any
    /// process runs its filter (the exec'd process or the children it left).
    pub(crate) exec_vettings: std::sync::Mutex<Vec<crate::supervise::Vetting>>,
    pub(crate) cgroup: Option<Cgroup>,
    pub(crate) lease: Option<Lease>,
    virtual_files: Option<crate::virt::Registration>,
    /// The engine socket as the container reaches it.
    docker_proxies: crate::docker_proxy::ContainerProxies,
}

impl Resources {
    fn release(&mut self) -> Result<()> {
        let (vetting, files, cgroup) = (
            self.vetting.take(),
            self.virtual_files.take(),
            self.cgroup.take(),
        );
        let exec_vettings =
            std::mem::take(&mut *self.exec_vettings.lock().unwrap_or_else(|e| e.into_inner()));
        self.docker_proxies = Default::default();
        // Each waits on something else (the virtual files daemon's answer; the mount helpers'
        // exit and then the cgroup's directories in a dozen hierarchies): side by side, a
        // delete waits for the longer rather than for the sum. The helpers go first because
        // they are in the cgroup's memory hierarchy, whose directory is busy until they have
        // exited. The virtual files are dropped right here by a thread that cannot start. The
        // lease goes last: its IDs are free only once the helper and the cgroup's processes
        // are gone.
        let cgroup = std::thread::scope(|scope| {
            let beside = std::thread::Builder::new();
            let files = beside.spawn_scoped(scope, move || drop(files));
            // The listener closes with the registration: any mount call still waiting fails.
            drop(vetting);
            drop(exec_vettings);
            let removed = cgroup.map(|c| c.remove());
            // Joined here, so that a panic in it is not passed on by the scope.
            if let Ok(dropping) = files {
                let _ = dropping.join();
            }
            removed
        });
        let lease = self.lease.take();
        if let Err(err) = cgroup.transpose() {
            // Processes of the container may be left, with its IDs: the block stays leased
            // while this runtime lives (and a new lease's scan of live namespaces sees it as
            // long as they do).
            if let Some(lease) = lease {
                lease.keep();
            }
            return Err(err);
        }
        lease.map(Lease::release).transpose()?;
        Ok(())
    }
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("pid", &self.init.pid())
            .field("mapping", &self.mapping)
            .finish_non_exhaustive()
    }
}

/// Whether `id` is a container ID eci accepts: 1-128 letters, digits, `.`, `_` or `-`, not
/// starting with a dot (so that it is always a plain file name).
///
/// ```
/// assert!(eci::valid_container_id("web-1"));
/// assert!(!eci::valid_container_id(".."));
/// ```
pub fn valid_container_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn namespaces_of(spec: &Spec) -> Namespaces {
    let mut set = Namespaces::empty();
    for ns in spec
        .linux()
        .iter()
        .flat_map(|l| l.namespaces().iter().flatten())
    {
        set |= namespace_flag(ns.typ());
    }
    set
}

fn namespace_flag(typ: LinuxNamespaceType) -> Namespaces {
    match typ {
        LinuxNamespaceType::Mount => Namespaces::MOUNT,
        LinuxNamespaceType::Cgroup => Namespaces::CGROUP,
        LinuxNamespaceType::Uts => Namespaces::UTS,
        LinuxNamespaceType::Ipc => Namespaces::IPC,
        LinuxNamespaceType::User => Namespaces::USER,
        LinuxNamespaceType::Pid => Namespaces::PID,
        LinuxNamespaceType::Network => Namespaces::NET,
        LinuxNamespaceType::Time => Namespaces::TIME,
    }
}

/// Opens the namespaces the spec joins, each checked to be another container's network, IPC or
/// UTS namespace, and finds the ID lease of that container. The container joins these open
/// files, never the paths again, and holds those leases: the namespaces stay owned by that
/// container's IDs, which must not go to another container while it runs.
fn open_joined_namespaces(
    spec: &Spec,
    allocator: &eci_idmap::Allocator,
) -> Result<(Vec<JoinableNamespace>, Vec<LeaseRecord>)> {
    let mut joined = Vec::new();
    let mut leases: Vec<LeaseRecord> = Vec::new();
    for (typ, path) in eci_policy::harden::joined_namespaces(spec) {
        let ns = JoinableNamespace::open(&path, namespace_flag(typ))?;
        let lease = lease_owning(allocator, ns.owner())?.ok_or(Error::JoinForeign(path))?;
        if !leases.iter().any(|l| l.index == lease.index) {
            leases.push(lease);
        }
        joined.push(ns);
    }
    Ok((joined, leases))
}

/// The lease whose block the user namespace identified by `owner` (device and inode) maps: one
/// of its live holders (a container's init) is in that namespace, and the namespace maps that
/// block and nothing else. (A container that joined another's namespaces holds that one's
/// lease too, from its own user namespace, which maps its own block.) Never a lease the journal
/// took over from a scan of live namespaces at its start: whoever made those (another runtime, a
/// host user's tool) is not known to be this runtime's, and whether a namespace could be
/// joined would depend on whether it existed before the journal did.
fn lease_owning(
    allocator: &eci_idmap::Allocator,
    owner: (u64, u64),
) -> Result<Option<LeaseRecord>> {
    use std::os::unix::fs::MetadataExt;
    let pool = allocator.pool();
    let leases = allocator.leases()?;
    Ok(leases.into_iter().find(|lease| {
        if lease.found_live() {
            return false;
        }
        let Some(block) = pool.block(lease.index) else {
            return false;
        };
        lease.holders.iter().any(|holder| {
            let user = std::fs::metadata(format!("/proc/{}/ns/user", holder.pid));
            // Alive when read after: what was read was the holder's, not a pid reuser's.
            user.is_ok_and(|m| (m.dev(), m.ino()) == owner)
                && maps_only(holder.pid, block)
                && holder.is_alive()
        })
    }))
}

/// Whether the user namespace of process `pid` maps host IDs of `block` alone (its uid_map,
/// read from the runtime's user namespace, names host IDs).
fn maps_only(pid: i32, block: IdBlock) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/uid_map")) else {
        return false;
    };
    let start = u64::from(block.host_start());
    let end = start + u64::from(block.size());
    eci_policy::ids::parse_map_file(&text).is_some_and(|mappings| {
        !mappings.is_empty()
            && mappings.iter().all(|m| {
                let from = u64::from(m.host_start);
                start <= from && from + u64::from(m.size) <= end
            })
    })
}

/// Refuses what the runtime cannot do yet, rather than run less isolated than asked, and
/// compiles the spec's seccomp profile (a profile it cannot apply is refused here, before
/// anything is leased).
fn check_supported(spec: &Spec) -> Result<Profile> {
    let linux = spec.linux().clone().unwrap_or_default();
    let profile = match linux.seccomp() {
        Some(seccomp) => Profile::compile(seccomp)?,
        None => Profile::default(),
    };
    if linux.time_offsets().as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(Error::Unsupported("time namespace offsets"));
    }
    if spec.hooks().is_some() {
        return Err(Error::Unsupported("OCI hooks"));
    }
    // Fields eci does not apply: refused rather than dropped, which would run the container
    // otherwise than asked (a network device left on the host, a memory policy not set).
    let unapplied = [
        (
            linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
            "linux.netDevices (moving network devices into the container)",
        ),
        (linux.intel_rdt().is_some(), "linux.intelRdt"),
        (linux.memory_policy().is_some(), "linux.memoryPolicy"),
        (
            linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()),
            "linux.mountLabel (SELinux)",
        ),
    ];
    if let Some((_, field)) = unapplied.iter().find(|(given, _)| *given) {
        return Err(Error::Unsupported(field));
    }
    check_process_supported(&spec.process().clone().unwrap_or_default())?;
    Ok(profile)
}

/// Refuses what the runtime cannot apply to a process (the init's, or one added with exec).
pub(crate) fn check_process_supported(process: &oci_spec::runtime::Process) -> Result<()> {
    if process.selinux_label().is_some() {
        return Err(Error::Unsupported("SELinux labels"));
    }
    let unapplied = [
        (process.scheduler().is_some(), "process.scheduler"),
        (process.io_priority().is_some(), "process.ioPriority"),
        (
            process.exec_cpu_affinity().is_some(),
            "process.execCPUAffinity",
        ),
    ];
    if let Some((_, field)) = unapplied.iter().find(|(given, _)| *given) {
        return Err(Error::Unsupported(field));
    }
    match process.apparmor_profile() {
        Some(profile) => crate::apparmor::check(profile),
        None => Ok(()),
    }
}

/// Resolves a path of the spec against the bundle, following symlinks on the host.
pub(crate) fn resolve_in_bundle(bundle: &Path, path: &Path) -> std::io::Result<PathBuf> {
    std::fs::canonicalize(if path.is_absolute() {
        path.to_path_buf()
    } else {
        bundle.join(path)
    })
}

impl Container {
    pub(crate) fn create(shared: Arc<Shared>, config: ContainerConfig) -> Result<Container> {
        let ContainerConfig {
            id,
            spec,
            bundle,
            stdio,
            image,
            init_parent,
        } = config;
        if !valid_container_id(&id) {
            return Err(Error::InvalidId(id));
        }
        if init_parent == InitParent::Adopter && !eci_ns::pidfd::exit_status_outlives_reaping() {
            return Err(Error::Unsupported(
                "an init adopted by another process before Linux 6.15 (its exit status would \
                 reach the adopter alone)",
            ));
        }
        if !shared.live.lock().expect("live set").insert(id.clone()) {
            return Err(Error::Exists(id));
        }
        let created = Self::create_reserved(
            Arc::clone(&shared),
            &id,
            spec,
            &bundle,
            stdio,
            image,
            init_parent,
        );
        if created.is_err() {
            shared.live.lock().expect("live set").remove(&id);
        }
        created
    }

    fn create_reserved(
        shared: Arc<Shared>,
        id: &str,
        spec: Spec,
        bundle: &Path,
        stdio: Stdio,
        image: Option<ContainerImage>,
        init_parent: InitParent,
    ) -> Result<Container> {
        let bundle = std::fs::canonicalize(bundle).map_err(|source| Error::Path {
            what: "bundle",
            path: bundle.to_path_buf(),
            source,
        })?;
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default();
        let rootfs = resolve_in_bundle(&bundle, &root).map_err(|source| Error::Path {
            what: "rootfs",
            path: bundle.join(&root),
            source,
        })?;
        let profile = check_supported(&spec)?;
        // Before anything is leased, and before the other checks: a spec that joins what it
        // may not is refused for that (not for its binds of the other container's files).
        let (joined, joined_leases) = open_joined_namespaces(&spec, &shared.allocator)?;
        crate::cgroup::prime_migration();

        let holder = Holder::current().map_err(Error::io("reading the runtime's start time"))?;
        // The container's own settings: the runtime's with the overrides its annotations ask for.
        let overrides = Overrides::from_annotations(spec.annotations().iter().flatten())?;
        let policy = shared.policy.with_overrides(&overrides)?;
        let lease = shared.allocator.allocate(id, holder)?;
        let block = lease.block();
        tracing::debug!(container = id, block = %block, "leased");
        let ctx = HardenContext {
            policy: &policy,
            block,
            runtime_caps: shared.runtime_caps,
        };
        let image_ctx = image.as_ref().map(ContainerImage::context);
        let mut host = BundlePaths::new(&bundle);
        let hardened = harden_with_image(spec, &ctx, image_ctx.as_ref(), &mut host)?;
        let spec = hardened.spec;
        let cgroup_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .unwrap_or_else(|| PathBuf::from(format!("/eci/{id}")));
        if !eci_policy::paths::is_container_cgroup_path(&cgroup_path) {
            return Err(Error::CgroupPath(cgroup_path));
        }
        // The binds of the virtual files are the runtime's own: they go in the mount plan, not in
        // the spec later processes are checked against (their sources are in the state
        // directory, which specs may not name).
        let mut mounted = spec.clone();
        let root = crate::cgroupfs::Owner {
            uid: block.mapping().host_start,
            gid: block.mapping().host_start,
        };
        let (mut cgroup_dirs, delegated) =
            crate::cgroupfs::expand(&mut mounted, &cgroup_path, root, policy.delegate_cgroups)?;
        // After the directories the cgroup mounts need: the opening makes the same ones, and
        // is dropped (waited for) before they are on an early failure.
        let resources_spec = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default();
        // A terminal is opened in the container's devpts before the start: the device rules
        // must be in place by then.
        let terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
        let mut opening = Cgroup::open_beside(
            &cgroup_path,
            id,
            &resources_spec,
            cgroup_dirs.paths(),
            !terminal,
        );
        // The container's boot clock (the time namespace hardening added for the uptime
        // setting) counts from here, as its virtual files do from their registration below.
        let boot_clock_origin = if policy.procfs.get(ProcFile::Uptime) {
            let now = eci_ns::timens::boot_clock().map_err(std::io::Error::from);
            Some(now.map_err(Error::io("reading the boot clock"))?)
        } else {
            None
        };
        let virtual_files = crate::virt::serve(
            &shared.virtual_files,
            &shared.state_dir,
            &policy,
            id,
            &cgroup_path,
            block.mapping().host_start,
            &mut mounted,
        )?;
        let docker_proxies = crate::docker_proxy::serve_container(
            &shared.state_dir,
            id,
            &policy,
            block.mapping().host_start,
            &mut mounted,
        )?;
        // The server's files are files: asking would cost a round trip to it for each.
        let served = virtual_files
            .as_ref()
            .map(crate::virt::Registration::sources);
        let mut mount_plan =
            MountPlan::from_spec_with_files(&mounted, &rootfs, block, &served.unwrap_or_default())?;
        let overlay = overlay_root(&rootfs);
        if let Some(root) = &overlay {
            mount_plan = mount_plan.with_overlay_root(root)?;
        }
        // Unmountable first: a late mount that may also be remounted is attached writable and
        // made read-only by the init.
        if policy.immutability.allow_unmount {
            mount_plan = mount_plan.with_unmountable();
        }
        if policy.immutability.allow_remount {
            mount_plan = mount_plan.with_remountable_read_only(&remountable_binds(&spec, &policy));
        }
        // Asked once every setting that may leave it writable has had its say.
        let rootfs_writable = mount_plan.root_may_become_writable();
        // Idmapped (or shifted) into the block, the rootfs lets the container's root act as the
        // owner of every file in it: judged (eci_policy::root) on the path resolved above, which
        // the mounter opens, and no bind may show it as the mounter builds it.
        let resolved_root = eci_policy::paths::ResolvedPath::from_resolved(&rootfs);
        let resolved_root = resolved_root.map_err(|e| Error::Path {
            what: "rootfs",
            path: rootfs.clone(),
            source: std::io::Error::other(e),
        })?;
        let access = policy.decide_root(&resolved_root, rootfs_writable)?;
        let bind_sources = spec
            .mounts()
            .iter()
            .flatten()
            .filter(|m| eci_policy::harden::is_bind(m))
            .filter_map(|m| m.source().as_deref());
        eci_policy::root::check_binds_beside(&rootfs, bind_sources)?;
        if access == RootAccess::IfClosedToOthers {
            // Read as resolved above: a component swapped for a symlink since shows as one.
            let reachable = eci_idmap::reach::resolved_reachable_by_others(&rootfs).map_err(
                Error::io(format!("checking who can reach {}", rootfs.display())),
            )?;
            if reachable {
                return Err(RootRefusal::ReachableByOthers { path: rootfs }.into());
            }
        }
        let init_plan = InitPlan::new(
            &spec,
            stdio.raw(),
            shared.filters.clone(),
            profile,
            shared.last_cap,
        )?
        .announcing_final_mounts();
        let sysctls = Sysctls::from_spec(&spec)?;
        tracing::debug!(container = id, "planned");

        let mut resources = Resources {
            vetting: None,
            exec_vettings: Default::default(),
            cgroup: None,
            lease: Some(lease),
            virtual_files,
            docker_proxies,
        };
        let mut pending = None;
        // The cgroup is still being made beside: the init is spawned and mapped meanwhile, and
        // the cgroup is waited for only where it is first needed (on v1, often only once the
        // container is otherwise created, see `Cgroup::open_beside`).
        let mut opened = None;
        let spawned = {
            let mapping = [block.mapping()];
            let lease = resources.lease.as_ref().expect("just set");
            let virtual_files = resources.virtual_files.as_ref();
            let shifted = shared.state_dir.join("idmap").join("shifted");
            let mut prepare =
                |init: &PidFd| -> std::result::Result<u32, eci_ns::spawn::PrepareError> {
                    // Held by the init before it has the IDs: a runtime killed in between
                    // leaves a lease whose holder lives as long as anything with its IDs.
                    lease.add_holder(Holder::of(init.pid())?)?;
                    for joined in &joined_leases {
                        shared.allocator.hold(joined, Holder::of(init.pid())?)?;
                    }
                    tracing::debug!(container = id, "held by its init");
                    write_id_maps(init.pid(), &mapping, &mapping)?;
                    tracing::debug!(container = id, "mapped");
                    set_rlimits(init.pid(), &spec)?;
                    set_oom_score_adj(init.pid(), &spec)?;
                    // The mounter binds the virtual files once let go.
                    if let Some(files) = virtual_files {
                        files.registered()?;
                    }
                    let ownership = RootfsOwnership {
                        markers: &shifted,
                        allocator: &shared.allocator,
                        lease: lease.token(),
                        writable: rootfs_writable,
                    };
                    ownership.settle(&rootfs, overlay.as_ref(), init.pid(), block)
                };
            // While the mounter works: the mount helper is forked (its start then leaves the
            // critical path), and the cgroup is made ready before the init is let go (on v1 the
            // init then moves itself in, see `Cgroup::new`; elsewhere it is added by pid here).
            let mut while_mounting =
                |init: &PidFd| -> std::result::Result<Vec<OwnedFd>, eci_ns::spawn::PrepareError> {
                    pending = prepare_vetting(init, &policy, &spec, virtual_files, block.mapping());
                    if let Some(thread_lists) = opening.thread_lists_ahead() {
                        tracing::debug!(container = id, "cgroup made, its limits to follow");
                        return Ok(thread_lists);
                    }
                    let cgroup = opened.insert(opening.wait()?.delegated_if(delegated));
                    let thread_lists = cgroup.take_thread_lists();
                    if thread_lists.is_none() {
                        cgroup.join(init.pid(), &resources_spec)?;
                    }
                    tracing::debug!(container = id, "cgroup ready");
                    Ok(thread_lists.unwrap_or_default())
                };
            let setup = |ctx: SetupContext<'_>| {
                sysctls.write()?;
                let rootfs = match ctx.flags {
                    ROOTFS_IDMAP => RootfsMount::Idmapped,
                    ROOTFS_LAYERS => RootfsMount::IdmappedLayers,
                    _ => RootfsMount::Bind,
                };
                mount_plan.execute(&ExecContext {
                    init_pid: ctx.init_pid,
                    rootfs,
                    late: ctx.late,
                })
            };
            let init = |channel: &Channel| match mount_plan.apply_deferred() {
                Ok(()) => init_plan.run(channel),
                Err(failure) => failure,
            };
            spawn(SpawnRequest {
                namespaces: namespaces_of(&spec),
                joined: &joined,
                setup: &setup,
                init: &init,
                prepare: &mut prepare,
                late_mounts: mount_plan.has_late_mounts(),
                init_parent,
                boot_clock_origin,
                while_mounting: Some(&mut while_mounting),
                keep: &init_plan.descriptors(),
            })
        };
        tracing::debug!(container = id, "spawned");
        resources.cgroup = opened;
        if resources.cgroup.is_some() {
            // Released with the cgroup from here on.
            cgroup_dirs.keep();
        }
        let spawned = match spawned {
            Ok(spawned) => spawned,
            Err(err) => {
                // The helper forked ahead holds the block's IDs: it goes before they do.
                drop(pending);
                let _ = resources.release();
                return Err(explain_spawn(
                    err,
                    &Plans {
                        mounts: &mount_plan,
                        init: &init_plan,
                        sysctls: &sysctls,
                    },
                ));
            }
        };
        let holding = resources
            .virtual_files
            .as_ref()
            .map(|files| files.hold_while(&spawned.init));
        // From here on the init exists: any error kills it before giving everything back.
        let mut container = Container {
            id: id.to_string(),
            state: State::Created,
            init: spawned.init,
            channel: Some(spawned.channel),
            mapping: block.mapping(),
            report: hardened.report,
            init_plan,
            resources,
            shared,
            spec,
            policy,
            helper_config: None,
            bundle,
            image,
            console: None,
            execs: Default::default(),
        };
        let supervised = container.supervise(&mount_plan, &sysctls, pending);
        // Before anything is given back: a hold answered after the unregistration would be
        // refused, and a container reported created is held.
        if let Some(holding) = holding {
            holding.wait();
        }
        // The init joined a cgroup whose limits were still being written (its thread lists
        // went ahead): it is created once they are.
        let cgrouped = supervised.and_then(|()| {
            if container.resources.cgroup.is_none() {
                container.resources.cgroup = Some(opening.wait()?.delegated_if(delegated));
                cgroup_dirs.keep();
            }
            container.confirm_cgroup()
        });
        if let Err(err) = cgrouped {
            let _ = container.destroy();
            return Err(err);
        }
        tracing::debug!(container = id, "created");
        Ok(container)
    }

    /// Receives the init's seccomp listener and starts vetting its mount calls, with the helper
    /// forked while the mounter worked if there is one.
    fn supervise(
        &mut self,
        mount_plan: &MountPlan,
        sysctls: &Sysctls,
        pending: Option<PendingVetter>,
    ) -> Result<()> {
        let channel = self
            .channel
            .as_ref()
            .expect("a created container has its channel");
        let plans = Plans {
            mounts: mount_plan,
            init: &self.init_plan,
            sysctls,
        };
        let explain_failure = |failure| explain(failure, &plans);
        let initial = initial_mounts_once_final(channel, &self.init, explain_failure)?;
        let handover = receive_listener(channel, self.init_plan.terminal(), explain_failure)?;
        self.console = handover.console;
        let listener = handover.listener;
        // The init is in its cgroup by now (it moved itself in, or was added, before it was
        // let go).
        let charged_to = crate::cgroup::memory_tasks_of(self.init.pid())?;
        // An adopted init's pid is free for reuse once its adopter reaps it: what was read
        // is the init's only if it still runs now (it waits for its start, unless killed).
        if !self.init.is_alive() {
            return Err(Error::Io {
                what: "reading the init's memory cgroup".into(),
                source: std::io::Error::from_raw_os_error(libc::ESRCH),
            });
        }
        let (vetting, config) = match pending {
            Some(mut pending) => {
                if let Some(tasks) = &charged_to {
                    pending.charge_to(Arc::clone(tasks));
                }
                let mut config = pending.config().clone();
                config.initial = initial;
                let vetting = start_prepared_vetting(
                    &self.shared,
                    &self.id,
                    &self.init,
                    pending,
                    listener,
                    &config,
                )?;
                (vetting, config)
            }
            None => {
                let mut config = vetting_config(
                    &self.init,
                    &self.policy,
                    &self.spec,
                    self.resources.virtual_files.as_ref(),
                    self.mapping,
                )?;
                config.initial = initial;
                config.charged_to = charged_to;
                let vetting = start_vetting(
                    &self.shared,
                    &self.id,
                    &self.init,
                    &self.init,
                    listener,
                    config.clone(),
                )?;
                (vetting, config)
            }
        };
        self.helper_config = Some(config);
        self.resources.vetting = Some(vetting);
        Ok(())
    }

    /// Makes sure the init, which moved itself into its cgroup (v1) once let go, is there in
    /// every hierarchy before it may run anything.
    fn confirm_cgroup(&self) -> Result<()> {
        match &self.resources.cgroup {
            Some(cgroup) => cgroup.confirm_member(self.init.pid(), "the init"),
            None => Ok(()),
        }
    }

    /// Runs the spec's program. Returns once it has been executed inside the container.
    pub fn start(&mut self) -> Result<()> {
        if self.state != State::Created {
            return Err(self.state_error("start"));
        }
        // Taken by a start that failed before reaching the init (it is gone): nothing can start
        // it now, and `delete` cleans up.
        let Some(channel) = self.channel.take() else {
            return Err(Error::Io {
                what: "starting the container: an earlier start could not reach its init".into(),
                source: std::io::ErrorKind::NotConnected.into(),
            });
        };
        channel
            .send(eci_ns::channel::Message::of(START))
            .map_err(|errno| Error::Io {
                what: "starting the container".into(),
                source: errno.into(),
            })?;
        // The channel closes when exec succeeds; a message means it failed.
        match channel.recv() {
            Ok(None) => {
                self.state = State::Running;
                Ok(())
            }
            Ok(Some((msg, _))) => {
                let status = self.init.wait().ok();
                self.state = State::Stopped(status.unwrap_or(ExitStatus::Exited(127)));
                Err(Failure::from_message(&msg).map_or_else(
                    || Error::Io {
                        what: "starting the container".into(),
                        source: std::io::ErrorKind::InvalidData.into(),
                    },
                    |f| Error::Setup {
                        what: self.init_plan.explain(f.step),
                        source: f.errno.into(),
                    },
                ))
            }
            Err(errno) => Err(Error::Io {
                what: "starting the container".into(),
                source: errno.into(),
            }),
        }
    }

    /// Waits for the container's process to exit. A container not yet started has nothing to
    /// wait for unless its init was killed meanwhile: its status then, an error otherwise.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        match self.state {
            State::Stopped(status) => Ok(status),
            State::Created => match self.init.try_wait() {
                Ok(Some(status)) => {
                    self.state = State::Stopped(status);
                    Ok(status)
                }
                Ok(None) => Err(self.state_error("wait before start")),
                Err(errno) => Err(Error::Io {
                    what: format!("waiting for container '{}'", self.id),
                    source: errno.into(),
                }),
            },
            State::Running | State::Paused => {
                self.reap_execs();
                let status = self.init.wait().map_err(|errno| Error::Io {
                    what: format!("waiting for container '{}'", self.id),
                    source: errno.into(),
                })?;
                self.state = State::Stopped(status);
                Ok(status)
            }
        }
    }

    /// Sends `signal` to the container's init.
    pub fn kill(&self, signal: i32) -> Result<()> {
        if let State::Stopped(_) = self.state {
            return Err(self.state_error("signal"));
        }
        self.init.signal(signal).map_err(|errno| Error::Io {
            what: format!("signalling container '{}'", self.id),
            source: errno.into(),
        })
    }

    /// Sends `signal` to every process in the container, not only its init (`kill --all`).
    /// The container is frozen meanwhile, so that no process forks past the signal and no pid
    /// is reused between being listed and being signalled; except for SIGKILL, which needs no
    /// freeze (each process is signalled through a pidfd checked to be in the container's
    /// cgroup, and what forks past it dies with the init's PID namespace).
    pub fn kill_all(&self, signal: i32) -> Result<()> {
        let signal = signal_of(signal)?;
        // A created container too, as runc allows: its init waits for start in the cgroup.
        let was_paused = match self.state {
            State::Created | State::Running => false,
            State::Paused => true,
            State::Stopped(_) => return Err(self.state_error("signal every process")),
        };
        let cgroup = self.cgroup("signal every process")?;
        if signal == libc::SIGKILL && !was_paused {
            // Final without a freeze: what forks meanwhile dies with the init's PID namespace.
            // And a process held in the kernel (by a FUSE server of the container's that never
            // answers) never freezes, so a freeze first would wait for it in vain.
            return cgroup.kill_unfrozen().map(drop);
        }
        if !was_paused {
            cgroup.freeze(true)?;
        }
        let signalled = cgroup.pids().and_then(|pids| {
            // 0 stands for a process outside our PID namespace (cgroup v2); kill(0) would be
            // our own process group.
            for pid in pids.into_iter().filter(|pid| *pid > 0) {
                match eci_ns::sys::kill(pid, signal) {
                    Ok(()) | Err(eci_ns::sys::Errno(libc::ESRCH)) => {}
                    Err(errno) => {
                        return Err(Error::Io {
                            what: format!("signalling process {pid} of container '{}'", self.id),
                            source: errno.into(),
                        })
                    }
                }
            }
            Ok(())
        });
        let thawed = if was_paused {
            Ok(())
        } else {
            cgroup.freeze(false)
        };
        signalled.and(thawed)
    }

    /// Freezes every process of the container (the cgroup freezer) until
    /// [`Container::resume`].
    ///
    /// ```no_run
    /// # fn demo(container: &mut eci::Container) -> eci::Result<()> {
    /// container.pause()?;
    /// println!("frozen: {:?}", container.processes()?);
    /// container.kill_all(libc::SIGTERM)?; // delivered once thawed
    /// container.resume()?;
    /// # Ok(()) }
    /// ```
    pub fn pause(&mut self) -> Result<()> {
        self.switch_freezer(State::Running, State::Paused, "pause")
    }

    /// Thaws a paused container.
    pub fn resume(&mut self) -> Result<()> {
        self.switch_freezer(State::Paused, State::Running, "resume")
    }

    /// Freezes (to Paused) or thaws (to Running) a container that is `from`.
    fn switch_freezer(&mut self, from: State, to: State, action: &'static str) -> Result<()> {
        if self.state != from {
            return Err(self.state_error(action));
        }
        self.cgroup(action)?.freeze(to == State::Paused)?;
        self.state = to;
        Ok(())
    }

    /// The host pids of the container's processes (`ps`).
    pub fn processes(&self) -> Result<Vec<i32>> {
        if matches!(self.state, State::Stopped(_)) {
            return Ok(Vec::new());
        }
        self.cgroup("list processes")?.pids()
    }

    /// Changes the container's resource limits while it runs: every limit `resources` sets
    /// replaces the current one, the rest stay, and the device rules stay eci's safe set
    /// whatever the update asks (see [`eci_policy::harden::updated_resources`]).
    pub fn update(&mut self, resources: &LinuxResources) -> Result<()> {
        if matches!(self.state, State::Stopped(_)) {
            return Err(self.state_error("update"));
        }
        let mut linux = self.spec.linux().clone().unwrap_or_default();
        let current = linux.resources().clone().unwrap_or_default();
        let updated = eci_policy::harden::updated_resources(&current, resources)?;
        self.cgroup("update")?.update(&updated)?;
        linux.set_resources(Some(updated));
        self.spec.set_linux(Some(linux));
        Ok(())
    }

    /// An init held in the kernel past its SIGKILL (executing or reading a file of a FUSE
    /// server of the container's that has read the request and never answers) ends only once
    /// that server does, which dies with the init's PID namespace only after the init: the
    /// rest of the cgroup is killed then, each process through a pidfd checked to be the
    /// container's, until the init goes (the server's end aborts the request).
    fn kill_what_holds_the_init(&self) {
        const ROUNDS: u32 = 20;
        let Some(cgroup) = &self.resources.cgroup else {
            return;
        };
        for _ in 0..ROUNDS {
            if self
                .init
                .exits_within(std::time::Duration::from_millis(500))
            {
                return;
            }
            let _ = cgroup.kill_unfrozen();
        }
        tracing::warn!(container = %self.id, "the init outlives SIGKILL; waiting for it");
    }

    /// Waits for and reaps every exec'd process. The init's exit kills them all, but completes
    /// only once they are reaped, and they are the runtime's children: waiting for the init
    /// alone would wait forever.
    fn reap_execs(&self) {
        let execs = std::mem::take(&mut *self.execs.lock().unwrap_or_else(|e| e.into_inner()));
        for exec in execs.iter().filter_map(std::sync::Weak::upgrade) {
            let _ = exec.wait();
        }
    }

    fn cgroup(&self, action: &'static str) -> Result<&Cgroup> {
        self.resources
            .cgroup
            .as_ref()
            .ok_or_else(|| self.state_error(action))
    }

    /// Deletes the container: kills what still runs, and gives back its helper, seccomp
    /// registration, cgroup and ID block. Processes added with [`Container::exec`] die with it
    /// and are reaped here; their [`ExecProcess`](crate::ExecProcess) handles then report that
    /// they were killed.
    pub fn delete(mut self) -> Result<()> {
        self.destroy()
    }

    fn destroy(&mut self) -> Result<()> {
        tracing::debug!(container = %self.id, "deleting");
        if !matches!(self.state, State::Stopped(_)) {
            let _ = self.init.signal(libc::SIGKILL);
            if self.state == State::Paused {
                // A frozen process dies only once thawed.
                if let Some(cgroup) = &self.resources.cgroup {
                    let _ = cgroup.freeze(false);
                }
            }
            self.kill_what_holds_the_init();
            self.reap_execs();
            let status = self
                .init
                .wait()
                .unwrap_or(ExitStatus::Signaled(libc::SIGKILL));
            self.state = State::Stopped(status);
        }
        self.channel.take();
        let released = self.resources.release();
        self.shared.live.lock().expect("live set").remove(&self.id);
        tracing::debug!(container = %self.id, "deleted");
        released
    }

    pub(crate) fn state_error(&self, action: &'static str) -> Error {
        Error::State {
            id: self.id.clone(),
            state: self.state,
            action,
        }
    }

    /// The container's cgroup, as a path below each hierarchy's root (the spec's
    /// `linux.cgroupsPath`, or `/eci/ID`); `None` once deleted. What [`crate::remove_orphan`]
    /// needs if the runtime dies without deleting the container.
    pub fn cgroup_path(&self) -> Option<&Path> {
        self.resources.cgroup.as_ref().map(Cgroup::path)
    }

    /// What tells the container's cgroup from one made later at the same path (the inode of
    /// its directory), for [`crate::remove_orphan`].
    pub fn cgroup_identity(&self) -> Option<u64> {
        self.resources.cgroup.as_ref().and_then(Cgroup::identity)
    }

    /// The container's ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The master side of the init's terminal, once, if its spec asked for one
    /// (`process.terminal`): the runtime's caller relays it (to a console socket, say).
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    /// The init's pid in the runtime's PID namespace.
    pub fn pid(&self) -> i32 {
        self.init.pid()
    }

    /// The container's current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The container's uid and gid mapping (its whole ID block).
    pub fn id_mapping(&self) -> IdMapping {
        self.mapping
    }

    /// What hardening changed in the spec.
    pub fn hardening_report(&self) -> &[Change] {
        &self.report
    }

    /// The process handle of the init.
    pub fn pidfd(&self) -> &PidFd {
        &self.init
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.resources.lease.is_some() || self.resources.cgroup.is_some() {
            if let Err(err) = self.destroy() {
                tracing::warn!(container = %self.id, "deleting on drop: {err}");
            }
        }
    }
}

/// Flag for the mounter: mount the rootfs idmapped.
const ROOTFS_IDMAP: u32 = 1;
/// Flag for the mounter: rebuild the rootfs overlay from idmapped layers.
const ROOTFS_LAYERS: u32 = 2;

/// The layers of the rootfs, if it is an overlay mount that could be rebuilt from them.
/// The binds of the (hardened) spec that `allowRemount` may make writable: those whose host
/// source the policy shares writable, so that their read-only flag is the spec's own choice.
/// A bind the policy forces read-only, and every bind the runtime adds itself (virtual files,
/// cgroup directories, engine sockets), stays locked.
fn remountable_binds(spec: &Spec, policy: &eci_policy::Policy) -> Vec<PathBuf> {
    use eci_policy::paths::{PathDecision, ResolvedPath};
    let writable = |source: &Path| {
        ResolvedPath::from_resolved(source).is_ok_and(|path| {
            matches!(
                policy.paths.decide(&path),
                PathDecision::Shared {
                    read_only: false,
                    ..
                }
            )
        })
    };
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind")
        })
        .filter(|m| m.source().as_deref().is_some_and(writable))
        .map(|m| m.destination().clone())
        .collect()
}

fn overlay_root(rootfs: &Path) -> Option<eci_mount::mountinfo::OverlayRoot> {
    let rootfs = std::fs::canonicalize(rootfs).ok()?;
    let mounts = eci_mount::mountinfo::read(std::process::id() as i32).ok()?;
    eci_mount::mountinfo::overlay_root(&mounts, &rootfs)
}

/// Makes the rootfs appear with container-relative owners: idmapped through the init's user
/// namespace where the filesystem allows it (tried, not guessed from versions); for an overlay
/// that cannot be (Docker's), rebuilt from its layers idmapped when they all can be; otherwise
/// by shifting its owners on disk into the block, once per (rootfs, block), which copies every
/// file of an overlay up.
/// How a container's rootfs comes to be owned by its block, and what that needs to know.
struct RootfsOwnership<'a> {
    /// Where the shift fallback records what it did.
    markers: &'a Path,
    /// Whose leases are live: a rootfs a running container was given is never shifted from it.
    allocator: &'a eci_idmap::Allocator,
    /// This container's lease (its token).
    lease: u64,
    /// Whether the container may write to its rootfs (or make it writable).
    writable: bool,
}

impl RootfsOwnership<'_> {
    /// Idmapped if its filesystem allows (or its overlay's layers do), else shifted on disk.
    fn settle(
        &self,
        rootfs: &Path,
        overlay: Option<&eci_mount::mountinfo::OverlayRoot>,
        pid: i32,
        block: eci_policy::ids::IdBlock,
    ) -> std::result::Result<u32, eci_ns::spawn::PrepareError> {
        use std::os::fd::AsFd;
        use std::os::unix::fs::OpenOptionsExt;
        let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
        // The rootfs with whatever is mounted under it; a layer alone, as the rebuilt overlay takes
        // it (the upper layer's directory has Docker's own overlay mounted beneath it).
        let idmappable = |path: &Path, recursive: bool| -> std::io::Result<bool> {
            let dir = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH)
                .open(path)?;
            Ok(eci_idmap::idmapped::supported(
                dir.as_fd(),
                recursive,
                userns.as_fd(),
            )?)
        };
        if idmappable(rootfs, true)? {
            self.refuse_if_reachable(rootfs, overlay)?;
            return Ok(ROOTFS_IDMAP);
        }
        if let Some(overlay) = overlay {
            let upper = overlay.upper.iter().map(|(parent, _, _)| parent);
            let mut all = true;
            for layer in overlay.lower.iter().chain(upper) {
                all = all && idmappable(layer, false)?;
            }
            if all {
                self.refuse_if_reachable(rootfs, Some(overlay))?;
                tracing::info!(rootfs = %rootfs.display(), "the overlay rootfs is rebuilt from its layers, idmapped");
                return Ok(ROOTFS_LAYERS);
            }
        }
        let live = |token| self.lease_is_live(token);
        let shifted =
            eci_idmap::shift::shift_rootfs(self.markers, rootfs, block, self.lease, live)?;
        tracing::info!(rootfs = %rootfs.display(), ?shifted, "the rootfs cannot be idmapped; its owners were shifted");
        Ok(0)
    }

    /// Refuses an idmapped rootfs that is writable where host users other than root can reach
    /// it (see [`Error::ReachableRootfs`]): the rootfs, and an overlay's upper layer, where its
    /// writes are stored.
    fn refuse_if_reachable(
        &self,
        rootfs: &Path,
        overlay: Option<&eci_mount::mountinfo::OverlayRoot>,
    ) -> std::result::Result<(), eci_ns::spawn::PrepareError> {
        if !self.writable {
            return Ok(());
        }
        // The upper layer's path comes from the overlay's options as its engine gave them
        // (through a symlinked data root, say): resolved here, once.
        let upper = overlay
            .and_then(|o| o.upper.as_ref())
            .map(|(parent, upper, _)| std::fs::canonicalize(parent.join(upper)))
            .transpose()
            .map_err(|source| {
                let what = "resolving the rootfs's upper layer".to_string();
                Box::new(Error::Io { what, source })
            })?;
        for landing in std::iter::once(rootfs.to_path_buf()).chain(upper) {
            // Read as create resolved it: resolved again, a path with a component swapped for
            // a symlink since would be judged where the link points, and mounted where the
            // swap back points.
            let reachable = eci_idmap::reach::resolved_reachable_by_others(&landing);
            let reachable = reachable.map_err(|source| {
                let what = format!("checking who can reach {}", landing.display());
                Box::new(Error::Io { what, source })
            })?;
            if reachable {
                return Err(Box::new(Error::ReachableRootfs { path: landing }));
            }
        }
        Ok(())
    }

    /// Whether the lease with `token` has a live holder; `true` if the leases cannot be read
    /// (a shift is refused rather than done on doubt).
    fn lease_is_live(&self, token: u64) -> bool {
        self.allocator.leases().map_or(true, |leases| {
            leases
                .iter()
                .any(|lease| lease.token == token && lease.holders.iter().any(Holder::is_alive))
        })
    }
}

pub(crate) fn set_rlimits(pid: i32, spec: &Spec) -> std::io::Result<()> {
    use oci_spec::runtime::PosixRlimitType as T;
    for limit in spec
        .process()
        .iter()
        .flat_map(|p| p.rlimits().iter().flatten())
    {
        let resource = match limit.typ() {
            T::RlimitCpu => libc::RLIMIT_CPU,
            T::RlimitFsize => libc::RLIMIT_FSIZE,
            T::RlimitData => libc::RLIMIT_DATA,
            T::RlimitStack => libc::RLIMIT_STACK,
            T::RlimitCore => libc::RLIMIT_CORE,
            T::RlimitRss => libc::RLIMIT_RSS,
            T::RlimitNproc => libc::RLIMIT_NPROC,
            T::RlimitNofile => libc::RLIMIT_NOFILE,
            T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
            T::RlimitAs => libc::RLIMIT_AS,
            T::RlimitLocks => libc::RLIMIT_LOCKS,
            T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
            T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
            T::RlimitNice => libc::RLIMIT_NICE,
            T::RlimitRtprio => libc::RLIMIT_RTPRIO,
            T::RlimitRttime => libc::RLIMIT_RTTIME,
        };
        let value = libc::rlimit {
            rlim_cur: limit.soft(),
            rlim_max: limit.hard(),
        };
        // SAFETY: value is a valid rlimit; a NULL old-limit pointer is allowed.
        if unsafe { libc::prlimit(pid, resource, &value, std::ptr::null_mut()) } == -1 {
            let err = std::io::Error::last_os_error();
            // EPERM: a hard limit above the runtime's own, which takes CAP_SYS_RESOURCE.
            return Err(std::io::Error::new(
                err.kind(),
                format!(
                    "setting {} to {} (soft) and {} (hard): {err}",
                    limit.typ(),
                    limit.soft(),
                    limit.hard()
                ),
            ));
        }
    }
    Ok(())
}

/// Gives process `pid` the spec's OOM score adjustment (the hardening always sets one, 0 or
/// above), before it runs anything of the container: it would otherwise keep the runtime's,
/// inherited from containerd's shim (-998), and the host's out-of-memory killer would take
/// host processes first.
pub(crate) fn set_oom_score_adj(pid: i32, spec: &Spec) -> std::io::Result<()> {
    let Some(value) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) else {
        return Ok(());
    };
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), value.to_string())
}

/// The plans a failure's step codes refer to.
pub(crate) struct Plans<'a> {
    pub(crate) mounts: &'a MountPlan,
    pub(crate) init: &'a InitPlan,
    pub(crate) sysctls: &'a Sysctls,
}

pub(crate) fn explain(failure: Failure, plans: &Plans<'_>) -> Error {
    let what = match failure.stage {
        Stage::Mounts => plans.mounts.explain(failure.step),
        Stage::Init => plans
            .sysctls
            .explain(failure.step)
            .unwrap_or_else(|| plans.init.explain(failure.step)),
        Stage::InitNamespaces if failure.step == eci_ns::spawn::JOIN_CGROUPS_STEP => {
            "moving the container's init into its cgroups".to_string()
        }
        stage => format!("{} (step {})", stage.describe(), failure.step),
    };
    Error::Setup {
        what,
        source: failure.errno.into(),
    }
}

fn explain_spawn(err: SpawnError, plans: &Plans<'_>) -> Error {
    match err {
        SpawnError::Child(failure) => explain(failure, plans),
        // The cgroup is opened and joined while the init waits: its errors are its own.
        SpawnError::Prepare(err) => match err.downcast::<Error>() {
            Ok(err)
                if matches!(
                    *err,
                    Error::Cgroup { .. } | Error::ReachableRootfs { .. } | Error::Io { .. }
                ) =>
            {
                *err
            }
            Ok(err) => Error::Spawn(SpawnError::Prepare(err)),
            Err(err) => Error::Spawn(SpawnError::Prepare(err)),
        },
        other => Error::Spawn(other),
    }
}

/// `number` if the kernel knows it as a signal: 0 (no signal: only whether the target
/// lives), a standard one or a real-time one (`SIGRTMIN+3`, which systemd takes as its stop
/// signal).
pub(crate) fn signal_of(number: i32) -> Result<i32> {
    match (0..=libc::SIGRTMAX()).contains(&number) {
        true => Ok(number),
        false => Err(Error::Io {
            what: format!("signal {number}"),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        }),
    }
}

/// The mount helpers' configuration, but the initial mounts.
fn vetting_config(
    init: &PidFd,
    policy: &eci_policy::Policy,
    spec: &Spec,
    virtual_files: Option<&crate::virt::Registration>,
    mapping: IdMapping,
) -> Result<HelperConfig> {
    let mut config = helper_config(init, policy, spec, virtual_files, mapping)?;
    if policy.procfs.get(ProcFile::Sysinfo) {
        // Emulated, with figures or without (every call then fails): never the host's.
        let unanswered = || eci_seccomp::mount::SysinfoSource(std::sync::Arc::new(|| None));
        config.sysinfo =
            Some(virtual_files.map_or_else(unanswered, crate::virt::Registration::sysinfo_source));
    }
    Ok(config)
}

/// Forks the container's mount helper while its mounts are built. `None` if that fails: the
/// helper is then started once the listener is there, and that reports what is wrong.
fn prepare_vetting(
    init: &PidFd,
    policy: &eci_policy::Policy,
    spec: &Spec,
    virtual_files: Option<&crate::virt::Registration>,
    mapping: IdMapping,
) -> Option<PendingVetter> {
    let prepared = vetting_config(init, policy, spec, virtual_files, mapping)
        .and_then(|config| Ok(MountVetter::prepare(init, config)?));
    match prepared {
        Ok(prepared) => Some(prepared),
        Err(err) => {
            tracing::debug!("mount helper not forked ahead: {err}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid_container_id as valid_id;

    #[test]
    fn ids_are_path_safe() {
        for good in ["a", "web-1", "x.y_z", &"a".repeat(128)] {
            assert!(valid_id(good), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", &"a".repeat(129)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
