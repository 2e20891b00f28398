//! The Docker Engine socket as a container is allowed to use it: a proxy that passes each Engine
//! API request on to the real socket only if the settings' `dockerSocketMount.commandList`
//! allows its command, and answers the others itself with a 403 that the docker CLI prints.
//!
//! Requests are classified by [`eci_policy::docker_api`] from the request line alone, so a raw
//! HTTP request to a refused endpoint is refused like the CLI command. One body is read as
//! well: a container create's, which may not name another runtime nor carry eci's annotations,
//! and gets the runtime of [`CreateRuntime`] filled in
//! ([`eci_policy::docker_api::create`]): the engine's `runc` would run it without eci. For
//! the same reason a request on a container (its path, an exec's, a commit's query, a network
//! connect's body) reaches only containers of that runtime, named by full ID once checked, and
//! requests that would have the engine run something outside it (plugins, swarm services, a
//! classic build while the engine's default runtime is another) are refused
//! ([`eci_policy::docker_api::outside_runtime`]).
//! Everything else passes byte for byte: heads, bodies (by Content-Length or chunk by chunk, so streams such as
//! `docker events` or `logs -f` flow as they come) and, after `101 Switching Protocols` or an
//! unframed response (`attach`, `exec` with a terminal), the raw stream both ways. A request
//! whose framing is ambiguous (both Content-Length and chunked, two lengths, another transfer
//! coding) is refused, so the engine cannot read a different request than the one decided.
//!
//! ```no_run
//! use eci::docker_proxy::{CreateRuntime, DockerProxy};
//! use eci::eci_policy::docker_api::{CommandList, CommandRule, ListKind};
//!
//! let mut policy = eci::Policy::default();
//! policy.docker_socket.commands = CommandList::new(
//!     ListKind::Deny,
//!     vec![("push".into(), CommandRule::parse("push").unwrap())],
//! );
//! let proxy = DockerProxy::start(
//!     "/run/eci/web/docker.sock".as_ref(),
//!     "/var/run/docker.sock".as_ref(),
//!     &policy,
//!     CreateRuntime::Named("eci".into()),
//! )?;
//! // `docker -H unix:///run/eci/web/docker.sock push app` now fails with a 403.
//! drop(proxy); // stops accepting and removes the socket
//! # Ok::<(), eci::Error>(())
//! ```

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use eci_policy::docker_api::{Api, CommandList, OutsideRuntime, Reason};

use crate::error::{Error, Result};

mod engine;
mod http;

pub use engine::{image_from_engine, registry_digest};
use http::{read_request, read_response, Framing, Head, ProxyError, ProxyResult, Side};

/// The largest container create body read (the engine's own requests are a few KiB).
const MOST_CREATE_BODY: u64 = 1 << 20;

/// Which runtime containers created through the proxy run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateRuntime {
    /// This one, by the engine's name for it.
    Named(String),
    /// The one the engine's container with this full ID runs with (the container the socket
    /// is given to), asked of the engine at the first create. The engine must answer for that
    /// very ID: it also takes names and ID prefixes, so an ID that is neither its container's
    /// full ID could find another container (a host tool's, run with runc).
    OfContainer(String),
}

/// Most connections served at once, so that a container cannot make the runtime start threads
/// without end. When all are taken, a newcomer takes the place of the connection that has
/// waited longest for its next request, if one is waiting (else it is closed on arrival):
/// idle connections cannot keep others out.
const MOST_CONNECTIONS: usize = 64;

/// How long a client may stay silent while the proxy reads from it: after the answer before,
/// between bytes of a head, or of a body (5 minutes, dockerd's own ReadHeaderTimeout, though
/// that one bounds a whole head). Raw streams (attach, exec) are not timed. A client that
/// trickles a head out byte by byte is displaced first when places run out
/// ([`MOST_CONNECTIONS`]); one that trickles a body is not, and holds its place until then.
const HEAD_TIMEOUT: std::time::Duration = if cfg!(test) {
    std::time::Duration::from_millis(500)
} else {
    std::time::Duration::from_secs(300)
};

/// How long a newcomer waits for the connection it displaced to let go of its place.
const DISPLACING: std::time::Duration = std::time::Duration::from_millis(200);

/// A running proxy. Dropping it stops accepting connections, shuts down those still open and
/// removes its socket.
#[derive(Debug)]
pub struct DockerProxy {
    path: PathBuf,
    /// The listening socket's descriptor, shut down to wake the accept loop.
    listener: std::os::fd::OwnedFd,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// What the accept loop and every connection share.
struct Shared {
    upstream: PathBuf,
    commands: CommandList,
    /// The host paths binds may name, and the engine sockets (binds of those are the runtime's
    /// to judge, by image): a create binding another path is refused, since the engine itself
    /// mounts a container's binds for `docker cp`, outside the runtime's checks.
    binds: BindRules,
    create_runtime: CreateRuntime,
    /// The runtime's name once known.
    runtime_name: std::sync::Mutex<Option<String>>,
    connections: AtomicUsize,
    /// Every open connection, to shut down when the proxy stops (a thread waiting on a long
    /// poll would otherwise outlive the container) or when a newcomer displaces it.
    live: std::sync::Mutex<std::collections::HashMap<u64, Connection>>,
    next_connection: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn new(upstream: &Path, commands: CommandList, create_runtime: CreateRuntime) -> Shared {
        Shared {
            upstream: upstream.to_path_buf(),
            commands,
            binds: BindRules::of(&eci_policy::Policy::default()),
            create_runtime,
            runtime_name: Default::default(),
            connections: AtomicUsize::new(0),
            live: Default::default(),
            next_connection: Default::default(),
        }
    }

    /// The runtime a created container must run with, or why it cannot be told.
    fn runtime_for_creates(&self) -> std::result::Result<String, String> {
        let mut known = self
            .runtime_name
            .lock()
            .map_err(|_| "a poisoned lock".to_string())?;
        if let Some(name) = known.as_ref() {
            return Ok(name.clone());
        }
        let name = match &self.create_runtime {
            CreateRuntime::Named(name) => name.clone(),
            CreateRuntime::OfContainer(id) => {
                let facts = engine::container_facts(&self.upstream, id)
                    .map_err(|err| format!("eci: which runtime this container runs with: {err}"))?
                    .ok_or_else(|| format!("eci: the engine does not know container {id}"))?;
                if facts.id != *id {
                    return Err(format!(
                        "eci: this container ({id}) is not the engine's container of that full ID: the engine found {}",
                        facts.id
                    ));
                }
                facts.runtime
            }
        };
        Ok(known.insert(name).clone())
    }

    /// The full ID of the engine's container `name` if it runs with the runtime created
    /// containers get; else the status and message to refuse the request with (a 404, as the
    /// engine's own, for a container it does not know).
    fn same_runtime(&self, name: &str) -> std::result::Result<String, (u16, String)> {
        let ours = self.runtime_for_creates().map_err(|why| (403, why))?;
        match engine::container_facts(&self.upstream, name) {
            Ok(Some(facts)) if facts.runtime == ours => Ok(facts.id),
            Ok(Some(facts)) => Err((
                403,
                format!(
                    "eci: container {name} runs with the runtime '{}'; this socket reaches only \
                     containers of '{ours}'",
                    facts.runtime
                ),
            )),
            Ok(None) => Err((404, format!("No such container: {name}"))),
            Err(err) => Err((
                403,
                format!("eci: which runtime container {name} runs with: {err}"),
            )),
        }
    }

    /// Refuses `docker cp` (the archive request on `target`, naming its container by full ID)
    /// on a container with a mount other than a tmpfs: the engine mounts binds and volumes
    /// itself for the copy, on the host, by paths that may lead elsewhere by then, outside the
    /// runtime's checks ([`engine::mount_reaching_the_host`]).
    fn no_mount_but_tmpfs(&self, target: &str) -> std::result::Result<(), (u16, String)> {
        let Some(container) = eci_policy::docker_api::container_of_target("GET", target) else {
            return Err((400, "eci: which container the copy is of".into()));
        };
        match engine::mount_reaching_the_host(&self.upstream, &container.name) {
            Ok(None) => Ok(()),
            Ok(Some(destination)) => Err((
                403,
                format!(
                    "eci: docker cp into or out of a container with bind mounts or volumes (here \
                     at {destination}): the engine would mount them itself, on the host, outside \
                     eci's checks"
                ),
            )),
            Err(err) => Err((403, format!("eci: the mounts of the container: {err}"))),
        }
    }

    /// Refuses a request on the engine's volume `name` unless it was made through a socket of
    /// the runtime created containers get ([`eci_policy::docker_api::volumes`]). A volume the
    /// engine does not have is left to the engine to make (a create's volume mount).
    fn volume_in_scope(&self, name: &str) -> std::result::Result<(), Refusal> {
        self.volume_found_in_scope(name, Ok(()))
    }

    /// [`Shared::volume_in_scope`] for a request on the volume itself (inspect, remove): one
    /// the engine does not have is answered here, as the engine would (404, or 204 for a
    /// forced remove, `docker volume rm -f`). Passed on, its name could by then be a host
    /// volume's, made meanwhile, which the request would remove.
    fn existing_volume_in_scope(
        &self,
        name: &str,
        forced_remove: bool,
    ) -> std::result::Result<(), Refusal> {
        let missing = match forced_remove {
            true => Err((204, String::new())),
            false => Err((404, format!("get {name}: no such volume"))),
        };
        self.volume_found_in_scope(name, missing)
    }

    fn volume_found_in_scope(
        &self,
        name: &str,
        missing: std::result::Result<(), Refusal>,
    ) -> std::result::Result<(), Refusal> {
        let runtime = self.runtime_for_creates().map_err(|why| (403, why))?;
        match engine::volume(&self.upstream, name) {
            Ok(None) => missing,
            Ok(Some(volume)) => eci_policy::docker_api::volumes::volume_in_scope(&volume, &runtime)
                .map_err(|refusal| (403, format!("eci: {refusal}"))),
            Err(err) => Err((403, format!("eci: the volume {name}: {err}"))),
        }
    }

    /// The full ID of the engine's network `reference` if it was made through a socket of
    /// the runtime created containers get, or is one of the engine's own
    /// ([`eci_policy::docker_api::network::network_in_scope`]); `Ok(None)` when the engine has
    /// no such network; else the refusal.
    fn network_in_scope(&self, reference: &str) -> std::result::Result<Option<String>, Refusal> {
        let runtime = self.runtime_for_creates().map_err(|why| (403, why))?;
        match engine::network(&self.upstream, reference) {
            Ok(None) => Ok(None),
            Ok(Some(network)) => {
                eci_policy::docker_api::network::network_in_scope(&network, reference, &runtime)
                    .map(Some)
                    .map_err(|refusal| (403, format!("eci: {refusal}")))
            }
            Err(err) => Err((403, format!("eci: the network {reference}: {err}"))),
        }
    }

    /// The full ID of the network `reference` a container is to join, which must exist (the
    /// engine would otherwise look the name up again at the container's start, when it may
    /// find one made meanwhile) and be in scope.
    fn network_to_join(&self, reference: &str) -> std::result::Result<String, Refusal> {
        self.network_in_scope(reference)?
            .ok_or_else(|| (404, format!("eci: no such network: {reference}")))
    }

    /// Has a volume list, or a volume, network or container prune, answer only for what is in
    /// scope: the request's `filters` get the scope's label.
    fn only_in_scope(&self, request: &mut Head) -> std::result::Result<(), Refusal> {
        use eci_policy::docker_api::{volumes::scope_filter, with_label_filter};
        let runtime = self.runtime_for_creates().map_err(|why| (403, why))?;
        let (path, query) = request
            .target
            .split_once('?')
            .unwrap_or((&request.target, ""));
        let query = with_label_filter(query, &scope_filter(&runtime))
            .map_err(|err| (400, format!("eci: the query: {err}")))?;
        retarget(request, format!("{path}?{query}"))
    }

    /// [`Shared::same_runtime`] for the container of the engine's exec instance `exec_id`.
    fn exec_in_same_runtime(&self, exec_id: &str) -> std::result::Result<(), (u16, String)> {
        match engine::exec_container(&self.upstream, exec_id) {
            Ok(Some(container)) => self.same_runtime(&container).map(drop),
            Ok(None) => Err((404, format!("No such exec instance: {exec_id}"))),
            Err(err) => Err((
                403,
                format!("eci: which container exec {exec_id} runs in: {err}"),
            )),
        }
    }

    /// Whether a request that has the engine run `outside` its create bodies' runtime may
    /// pass: a classic build only when the engine's default runtime is the one created
    /// containers get; plugins and swarm never.
    fn may_run(&self, outside: OutsideRuntime) -> std::result::Result<(), String> {
        let refused = |detail: String| format!("eci: {}{detail}", outside.why());
        if outside != OutsideRuntime::DefaultRuntime {
            return Err(refused(String::new()));
        }
        let ours = self.runtime_for_creates()?;
        match engine::default_runtime(&self.upstream) {
            Ok(default) if default == ours => Ok(()),
            Ok(default) => Err(refused(format!(
                " ('{default}'), not this socket's '{ours}': make '{ours}' the engine's default \
                 runtime to build through it"
            ))),
            Err(err) => Err(refused(format!(", which could not be read: {err}"))),
        }
    }

    /// Keeps a handle of `stream` for shutting connection `id` down.
    fn track(&self, id: u64, stream: &UnixStream) {
        if let (Ok(clone), Ok(mut live)) = (stream.try_clone(), self.live.lock()) {
            live.entry(id).or_default().streams.push(clone);
        }
    }

    /// Notes whether connection `id` waits for its next request head (from now on) or not.
    fn waiting(&self, id: u64, waiting: bool) {
        if let Ok(mut live) = self.live.lock() {
            if let Some(connection) = live.get_mut(&id) {
                connection.waiting_since = waiting.then(std::time::Instant::now);
            }
        }
    }

    /// Shuts down the connection that has waited longest for its next request head; false if
    /// none waits. Its thread then ends and gives its place back.
    fn displace_longest_waiting(&self) -> bool {
        let Ok(mut live) = self.live.lock() else {
            return false;
        };
        let longest = live
            .iter()
            .filter_map(|(id, c)| Some((c.waiting_since?, *id)))
            .min();
        let Some((_, id)) = longest else {
            return false;
        };
        let connection = live.get_mut(&id).expect("just found");
        connection.waiting_since = None;
        for stream in &connection.streams {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        true
    }
}

/// An open connection: its streams (the client's and, once asked, the engine's) and since when
/// it has waited for its next request head, if it does.
#[derive(Default)]
struct Connection {
    streams: Vec<UnixStream>,
    waiting_since: Option<std::time::Instant>,
}

/// A connection's claim on the proxy: counted among [`MOST_CONNECTIONS`] and tracked until
/// dropped, whichever way its thread ends (or fails to start).
struct Slot {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut live) = self.shared.live.lock() {
            live.remove(&self.id);
        }
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

impl DockerProxy {
    /// Listens on `path` (an old socket there is replaced; anything else there is an error)
    /// and passes the requests `policy.docker_socket.commands` allows on to the engine socket
    /// at `upstream`; containers created through it run with `runtime`, and may bind only the
    /// host paths `policy.paths` shares and the engine sockets. The socket is made through its
    /// directory's descriptor, so `path` may be longer than a socket address allows.
    pub fn start(
        path: &Path,
        upstream: &Path,
        policy: &eci_policy::Policy,
        runtime: CreateRuntime,
    ) -> Result<DockerProxy> {
        use std::os::unix::fs::FileTypeExt;
        let io = |what: &str| Error::io(format!("{what} {}", path.display()));
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io("listening on")(std::io::ErrorKind::InvalidInput.into()));
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                std::fs::remove_file(path).map_err(io("removing an old socket at"))?
            }
            Ok(_) => return Err(io("listening on")(std::io::ErrorKind::AlreadyExists.into())),
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("looking at")(err))
            }
            Err(_) => {}
        }
        let dir = std::fs::File::open(dir).map_err(io("opening the directory of"))?;
        let short = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        let listener = UnixListener::bind(short).map_err(io("listening on"))?;
        let wake = std::os::fd::OwnedFd::from(listener.try_clone().map_err(io("listening on"))?);
        let mut shared = Shared::new(upstream, policy.docker_socket.commands.clone(), runtime);
        shared.binds = BindRules::of(policy);
        let shared = Arc::new(shared);
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let serving = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("eci-docker-proxy".into())
            .spawn(move || accept(&listener, &serving, &stop))
            .map_err(io("starting the proxy for"))?;
        Ok(DockerProxy {
            path: path.to_path_buf(),
            listener: wake,
            stopping,
            thread: Some(thread),
            shared,
        })
    }

    /// The socket clients connect to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // A listening socket shut down fails its accept (EINVAL): the loop wakes and stops.
        // SAFETY: shutdown on a descriptor we own.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Connections still open end now, whatever their threads wait for.
        if let Ok(live) = self.shared.live.lock() {
            for stream in live.values().flat_map(|c| &c.streams) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The proxies of one container, in a directory of their own; dropping them stops them and
/// removes the directory.
#[derive(Debug, Default)]
pub(crate) struct ContainerProxies {
    dir: Option<PathBuf>,
    proxies: Vec<DockerProxy>,
}

impl Drop for ContainerProxies {
    fn drop(&mut self) {
        self.proxies.clear();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Gives a container whose image may mount the engine's socket a proxy in its place: every
/// bind in `mounted` (the spec the mount plan is made from) of one of the policy's engine
/// sockets gets the source `STATE/docker-proxy/ID/N.sock` instead, owned by the container's
/// root (`root`, a host uid and gid) and refused to everyone else. Hardening has already
/// refused the bind for any other image.
pub(crate) fn serve_container(
    state_dir: &Path,
    id: &str,
    policy: &eci_policy::Policy,
    root: u32,
    mounted: &mut oci_spec::runtime::Spec,
) -> Result<ContainerProxies> {
    use std::os::unix::fs::PermissionsExt;
    let mut served = ContainerProxies::default();
    let mut upstreams: Vec<PathBuf> = Vec::new();
    let sockets = &policy.docker_socket.sockets;
    for mount in mounted.mounts_mut().iter_mut().flatten() {
        let Some(source) = mount.source().clone() else {
            continue;
        };
        if !sockets.contains(&source) {
            continue;
        }
        let index = match upstreams.iter().position(|upstream| *upstream == source) {
            Some(index) => index,
            None => {
                let dir = state_dir.join("docker-proxy").join(id);
                if served.dir.is_none() {
                    std::fs::create_dir_all(&dir)
                        .map_err(Error::io(format!("creating {}", dir.display())))?;
                    served.dir = Some(dir.clone());
                }
                let path = dir.join(format!("{}.sock", upstreams.len()));
                let runtime = CreateRuntime::OfContainer(id.to_string());
                served
                    .proxies
                    .push(DockerProxy::start(&path, &source, policy, runtime)?);
                let owned =
                    std::os::unix::fs::chown(&path, Some(root), Some(root)).and_then(|()| {
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
                    });
                owned.map_err(Error::io(format!(
                    "giving {} to the container",
                    path.display()
                )))?;
                upstreams.push(source.clone());
                upstreams.len() - 1
            }
        };
        mount.set_source(Some(served.proxies[index].path().to_path_buf()));
    }
    Ok(served)
}

fn accept(listener: &UnixListener, shared: &Arc<Shared>, stopping: &AtomicBool) {
    for client in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else {
            // Out of descriptors, say: give the system a moment rather than spin.
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        };
        if !take_place(shared) {
            continue;
        }
        let slot = Slot {
            shared: Arc::clone(shared),
            id: shared.next_connection.fetch_add(1, Ordering::Relaxed),
        };
        shared.track(slot.id, &client);
        let spawned = std::thread::Builder::new()
            .name("eci-docker-proxy-conn".into())
            .spawn(move || {
                if let Err(err) = serve(client, &slot) {
                    tracing::debug!("docker proxy connection: {err}");
                }
            });
        if spawned.is_err() {
            tracing::warn!("docker proxy: no thread for a connection");
        }
    }
}

/// Counts a newcomer among [`MOST_CONNECTIONS`], displacing the connection that waited longest
/// for a request if all places are taken; false if none could be had.
fn take_place(shared: &Shared) -> bool {
    let taken = || shared.connections.fetch_add(1, Ordering::SeqCst) < MOST_CONNECTIONS;
    if taken() {
        return true;
    }
    shared.connections.fetch_sub(1, Ordering::SeqCst);
    if !shared.displace_longest_waiting() {
        return false;
    }
    let deadline = std::time::Instant::now() + DISPLACING;
    while std::time::Instant::now() < deadline {
        if taken() {
            return true;
        }
        shared.connections.fetch_sub(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}

/// Serves one client connection, request by request.
fn serve(client: UnixStream, slot: &Slot) -> ProxyResult<()> {
    let shared = &slot.shared;
    let mut client = Side::new(client);
    let mut engine: Option<Side> = None;
    // Reads of the client (heads and bodies) are timed until a raw stream, which ends the
    // connection's loop (see HEAD_TIMEOUT).
    client.stream.set_read_timeout(Some(HEAD_TIMEOUT))?;
    loop {
        // Waiting for a request head: displaceable by a newcomer.
        shared.waiting(slot.id, true);
        let read = read_request(&mut client);
        shared.waiting(slot.id, false);
        let request = match read {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(ProxyError::Malformed(why)) => {
                refuse(&mut client.stream, 400, &format!("eci: {why}"))?;
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        // Passed on in origin form, as the engine reads it: everything below then reads the
        // path and query the engine will. A target the two could read apart goes no further.
        let mut request = request;
        match eci_policy::docker_api::origin_form(&request.target).map(str::to_string) {
            Some(origin) if origin == request.target => {}
            Some(origin) => {
                if let Err((status, message)) = retarget(&mut request, origin) {
                    refuse(&mut client.stream, status, &message)?;
                    return Ok(());
                }
            }
            None => {
                let message = "eci: a request target that is no path, or a URL with more than a host and port before its path";
                refuse(&mut client.stream, 400, message)?;
                return Ok(());
            }
        }
        let api = eci_policy::docker_api::classify_target(&request.method, &request.target);
        // As the client sent it: pinning a name to an ID below keeps the query.
        let query = request
            .target
            .split_once('?')
            .map_or("", |(_, query)| query)
            .to_string();
        let decision = api.map(|api| shared.commands.decide_request(api, &query));
        let allowed = decision.is_some_and(|d| d.allowed);
        if !allowed {
            let message = refusal_message(&request, decision.as_ref());
            tracing::info!(method = %request.method, target = %request.target, "docker proxy: {message}");
            refuse(&mut client.stream, 403, &message)?;
            return Ok(());
        }
        // Before API 1.24 a start could carry a HostConfig (a runtime, binds) the engine applies.
        let start_body = !matches!(request.framing, Framing::None | Framing::Length(0));
        if api == Some(Api::ContainerStart) && start_body {
            let message = "eci: a container start with a body (a HostConfig, API before 1.24)";
            refuse(&mut client.stream, 403, message)?;
            return Ok(());
        }
        // Only containers of the same runtime: an exec (privileged, say) into one the engine
        // runs with runc would be host root. The request then names the container by its
        // full ID, which the engine matches first: a name or ID prefix could be made to mean
        // another container (by a rename) between the question and the request.
        let scope = if let Some(container) =
            eci_policy::docker_api::container_of_target(&request.method, &request.target)
        {
            shared
                .same_runtime(&container.name)
                .and_then(|id| retarget(&mut request, container.with_id(&id)))
        } else if let Some(exec) =
            eci_policy::docker_api::exec_of_target(&request.method, &request.target)
        {
            shared.exec_in_same_runtime(&exec)
        } else if let Some(volume) =
            eci_policy::docker_api::volume_of_target(&request.method, &request.target)
        {
            let forced = request.method == "DELETE"
                && eci_policy::docker_api::query_flag(&query, "force") == Some(true);
            shared.existing_volume_in_scope(&volume, forced)
        } else if let Some(network) =
            eci_policy::docker_api::network_of_target(&request.method, &request.target)
        {
            // Named by full ID from here on: a name or prefix could find another network once
            // this one is gone.
            let found = if api == Some(Api::NetworkConnect) {
                shared.network_to_join(&network.name).map(Some)
            } else {
                shared.network_in_scope(&network.name)
            };
            // One the engine does not have is answered here: passed on by its name, the
            // request could by then act on a host network made meanwhile.
            found.and_then(|id| match id {
                Some(id) => retarget(&mut request, network.with_id(&id)),
                None => Err((404, format!("network {} not found", network.name))),
            })
        } else if let Some(collection) = api.and_then(Api::names_object_in) {
            // Scoping is chosen by the name found: a request that names an object the proxy
            // could not read goes no further than one it could not check.
            Err((400, format!("eci: the request names one of the {collection} in a form the proxy does not read")))
        } else {
            Ok(())
        };
        let scope = scope.and_then(|()| match api {
            Some(
                Api::ContainerArchiveInfo | Api::ContainerArchiveGet | Api::ContainerArchivePut,
            ) => shared.no_mount_but_tmpfs(&request.target),
            Some(Api::VolumeList | Api::VolumePrune | Api::NetworkPrune | Api::ContainerPrune) => {
                shared.only_in_scope(&mut request)
            }
            _ => Ok(()),
        });
        if let Err((status, message)) = scope {
            tracing::info!("docker proxy: {message}");
            refuse(&mut client.stream, status, &message)?;
            return Ok(());
        }
        if let Some(why) = api.and_then(|api| eci_policy::docker_api::query_refusal(api, &query)) {
            let message = format!("eci: {why}");
            tracing::info!("docker proxy: {message}");
            refuse(&mut client.stream, 403, &message)?;
            return Ok(());
        }
        if let Some(outside) = api.and_then(eci_policy::docker_api::outside_runtime) {
            if let Err(message) = shared.may_run(outside) {
                tracing::info!("docker proxy: {message}");
                refuse(&mut client.stream, 403, &message)?;
                return Ok(());
            }
        }
        if api == Some(Api::Commit) {
            if let Err((status, message)) = vet_commit(&mut request, shared) {
                tracing::info!("docker proxy: {message}");
                refuse(&mut client.stream, status, &message)?;
                return Ok(());
            }
        }
        let vet_body = match api {
            Some(Api::ContainerCreate) => Some(vet_create as BodyVetter),
            Some(Api::VolumeCreate) => Some(vet_volume_create as BodyVetter),
            Some(Api::NetworkCreate) => Some(vet_network_create as BodyVetter),
            Some(Api::NetworkConnect | Api::NetworkDisconnect) => {
                Some(vet_network_member as BodyVetter)
            }
            _ => None,
        };
        let Vetted {
            head: request,
            made_volumes,
            mark,
        } = if let Some(vet_body) = vet_body {
            match vet_body(&mut client, request, shared)? {
                Ok(vetted) => vetted,
                Err((status, message)) => {
                    tracing::info!("docker proxy: {message}");
                    refuse(&mut client.stream, status, &message)?;
                    return Ok(());
                }
            }
        } else {
            request.into()
        };
        // Until the engine has accepted the request.
        let mut made = MadeVolumes {
            names: made_volumes,
            mark,
            shared,
        };
        let engine = match &mut engine {
            Some(engine) => engine,
            None => {
                let stream = UnixStream::connect(&shared.upstream)?;
                shared.track(slot.id, &stream);
                engine.insert(Side::new(stream))
            }
        };
        engine.stream.write_all(&request.bytes)?;
        let mut to_engine = engine.stream.try_clone()?;
        let mut to_client = client.stream.try_clone()?;
        // The body goes up while the answer comes down: an engine that answers as it reads
        // (`docker load` reports progress) would otherwise stop reading once its answer fills
        // the socket, and wait for the proxy as the proxy waits for it.
        let (response, raw) = std::thread::scope(|scope| {
            let body = std::thread::Builder::new()
                .name("eci-docker-proxy-body".into())
                .spawn_scoped(scope, || {
                    let sent = match request.framing {
                        Framing::Length(n) => client.copy(n, &mut to_engine),
                        Framing::Chunked => client.copy_chunked(&mut to_engine),
                        Framing::None | Framing::Unframed => Ok(()),
                    };
                    // A body cut short (a client gone, or silent too long) leaves the engine
                    // waiting for the rest, and the answer with it: end the engine's side.
                    if sent.is_err() {
                        let _ = to_engine.shutdown(std::net::Shutdown::Both);
                    }
                    sent
                })?;
            // Removed before the client hears of the failure: `docker run` pulls the image and
            // creates again at once, and would find the volume still there.
            let mut settle = |status: u16| {
                if (200..300).contains(&status) {
                    made.names.clear();
                }
                made.remove();
            };
            let relayed = relay_response(engine, &request, &mut to_client, &mut settle);
            let sent = body
                .join()
                .unwrap_or(Err(ProxyError::Malformed("the request body")));
            sent.and(relayed)
        })?;
        if raw {
            // An attached stream may be silent for as long as its program is.
            client.stream.set_read_timeout(None)?;
            return splice(client, engine);
        }
        if request.close || response.close {
            let _ = client.stream.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
    }
}

/// Passes the engine's answer to `request` on: interim responses, the final head and its
/// body. True as well when raw bytes follow both ways (`101`, or an unframed answer: a
/// hijacked stream, or a body that ends with the connection).
fn relay_response(
    engine: &mut Side,
    request: &Head,
    client: &mut UnixStream,
    before_final: &mut dyn FnMut(u16),
) -> ProxyResult<(Head, bool)> {
    let mut response = read_response(engine, request)?;
    while response.interim {
        client.write_all(&response.bytes)?;
        response = read_response(engine, request)?;
    }
    before_final(response.status);
    client.write_all(&response.bytes)?;
    let raw = response.upgrade || response.framing == Framing::Unframed;
    match response.framing {
        _ if raw => {}
        Framing::Length(n) => engine.copy(n, client)?,
        Framing::Chunked => engine.copy_chunked(client)?,
        Framing::None | Framing::Unframed => {}
    }
    Ok((response, raw))
}

/// Copies raw bytes both ways until each side has finished sending.
fn splice(mut client: Side, engine: &mut Side) -> ProxyResult<()> {
    // What is already buffered goes first.
    engine.stream.write_all(client.pending())?;
    client.stream.write_all(engine.pending())?;
    let mut client_in = client.stream.try_clone()?;
    let mut engine_out = engine.stream.try_clone()?;
    std::thread::scope(|scope| {
        let upward = std::thread::Builder::new()
            .name("eci-docker-proxy-raw".into())
            .spawn_scoped(scope, move || {
                let _ = std::io::copy(&mut client_in, &mut engine_out);
                let _ = engine_out.shutdown(std::net::Shutdown::Write);
            })?;
        let _ = std::io::copy(&mut engine.stream, &mut client.stream);
        let _ = client.stream.shutdown(std::net::Shutdown::Write);
        let _ = upward.join();
        Ok(())
    })
}

fn refusal_message(
    request: &Head,
    decision: Option<&eci_policy::docker_api::ApiDecision<'_>>,
) -> String {
    let Some(decision) = decision else {
        return format!(
            "eci: {} {} is not an Engine API endpoint eci knows, so it is refused on this socket",
            request.method, request.target
        );
    };
    let command = decision.endpoint.map_or("?", |e| e.command());
    match decision.reason {
        Reason::Listed(rule) => format!(
            "eci: 'docker {command}' is refused on this socket (commandList entry \"{rule}\")"
        ),
        _ => format!(
            "eci: 'docker {command}' is refused on this socket (not in the commandList allow list)"
        ),
    }
}

/// A refusal: the status and message to answer with.
type Refusal = (u16, String);

/// Reads a request's body and checks it: the request to send on, or a refusal.
type BodyVetter = fn(&mut Side, Head, &Shared) -> ProxyResult<std::result::Result<Vetted, Refusal>>;

/// A request a body vetter passed, and the volumes the proxy made for it: if the engine then
/// refuses the request (a container create naming an image it does not have, say), they go.
struct Vetted {
    head: Head,
    made_volumes: Vec<String>,
    /// Their [`MADE_FOR_LABEL`] value.
    mark: String,
}

impl From<Head> for Vetted {
    fn from(head: Head) -> Vetted {
        Vetted {
            head,
            made_volumes: Vec::new(),
            mark: String::new(),
        }
    }
}

/// Reads a JSON body the proxy must look into (`what` names it in refusals), at most
/// [`MOST_CREATE_BODY`] bytes and framed by Content-Length; an absent body reads as `{}`.
fn read_body(
    client: &mut Side,
    request: &Head,
    what: &str,
) -> ProxyResult<std::result::Result<Vec<u8>, Refusal>> {
    let length = match request.framing {
        Framing::None => 0,
        Framing::Length(n) if n <= MOST_CREATE_BODY => n,
        Framing::Length(_) => {
            return Ok(Err((
                400,
                format!("eci: a {what} body over {MOST_CREATE_BODY} bytes"),
            )));
        }
        Framing::Chunked | Framing::Unframed => {
            return Ok(Err((
                400,
                format!("eci: a {what} body needs a Content-Length"),
            )));
        }
    };
    let mut body = Vec::new();
    client.copy(length, &mut body)?;
    if body.is_empty() {
        body = b"{}".to_vec();
    }
    Ok(Ok(body))
}

/// `request` with `body` as its body, sent in its head's bytes.
fn with_body(request: Head, body: &[u8]) -> Head {
    Head {
        bytes: http::head_with_body(&request.bytes, body),
        framing: Framing::None,
        ..request
    }
}

/// The create with each container whose namespaces it shares (`--network container:NAME`)
/// checked to run with the holder's runtime and named by full ID
/// ([`eci_policy::docker_api::sharing`]).
fn pin_shared_containers(vetted: &[u8], shared: &Shared) -> std::result::Result<Vec<u8>, Refusal> {
    use eci_policy::docker_api::sharing;
    let refused = |refusal| (403, format!("eci: {refusal}"));
    let mut resolved = Vec::new();
    for name in sharing::shared_containers(vetted).map_err(refused)? {
        let id = shared.same_runtime(&name)?;
        resolved.push((name, id));
    }
    sharing::pin_shared_containers(vetted, &resolved).map_err(refused)
}

/// The label with which the proxy marks a volume it made for one container create: the value
/// is that create's own, so that only a volume this create made is ever removed for it (not
/// one of the same name another request made meanwhile). Clients may set no `org.eci.` label.
const MADE_FOR_LABEL: &str = "org.eci.made-for-create";

/// Volumes a create had the engine make, removed again unless kept (a later refusal of the
/// create, by the proxy or the engine, leaves none).
struct MadeVolumes<'a> {
    names: Vec<String>,
    /// This create's value of [`MADE_FOR_LABEL`].
    mark: String,
    shared: &'a Shared,
}

impl<'a> MadeVolumes<'a> {
    fn new(shared: &'a Shared) -> MadeVolumes<'a> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static CREATES: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let count = CREATES.fetch_add(1, Ordering::Relaxed);
        MadeVolumes {
            names: Vec::new(),
            mark: format!("{}-{nanos}-{count}", std::process::id()),
            shared,
        }
    }

    /// `body` (a volume create) with this create's mark among its labels.
    fn marked(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut create: serde_json::Value = serde_json::from_slice(body).ok()?;
        let labels = create.get_mut("Labels")?.as_object_mut()?;
        labels.insert(MADE_FOR_LABEL.into(), self.mark.clone().into());
        serde_json::to_vec(&create).ok()
    }

    /// Whether the engine's `volume` is one this create made.
    fn made_here(&self, volume: &serde_json::Value) -> bool {
        volume["Labels"][MADE_FOR_LABEL].as_str() == Some(&self.mark)
    }

    fn remove(&mut self) {
        for name in std::mem::take(&mut self.names) {
            // Still the one made here (not one of that name made since), and without force:
            // one a container has mounted meanwhile stays, as it must.
            let found = engine::volume(&self.shared.upstream, &name);
            if !found.is_ok_and(|v| v.is_some_and(|v| self.made_here(&v))) {
                continue;
            }
            if let Err(err) = engine::remove_volume(&self.shared.upstream, &name) {
                tracing::warn!(
                    "docker proxy: removing volume {name}, made for a refused create: {err}"
                );
            }
        }
    }
}

impl Drop for MadeVolumes<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Reads a container create's body and checks it: the request to send on (its body now in
/// its head's bytes) with the volumes made for it, or the status and message to refuse it
/// with.
fn vet_create(
    client: &mut Side,
    request: Head,
    shared: &Shared,
) -> ProxyResult<std::result::Result<Vetted, Refusal>> {
    let body = match read_body(client, &request, "container create")? {
        Ok(body) => body,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let runtime = match shared.runtime_for_creates() {
        Ok(runtime) => runtime,
        Err(why) => return Ok(Err((403, why))),
    };
    let vetted = match eci_policy::docker_api::create::vet_create_body(&body, &runtime) {
        Ok(vetted) => vetted,
        Err(refusal) => return Ok(Err((403, format!("eci: {refusal}")))),
    };
    let sources = eci_policy::docker_api::create::host_bind_sources(&vetted);
    if let Some(why) = shared.binds.refusal(sources) {
        return Ok(Err((403, why)));
    }
    // Networks first, and volumes are made only once all else passed: a create refused, by
    // the proxy or then by the engine, leaves nothing behind (`MadeVolumes`).
    use eci_policy::docker_api::network::{network_references, pin_create_networks};
    let networks = match network_references(&vetted) {
        Ok(networks) => networks,
        Err(refusal) => return Ok(Err((403, format!("eci: {refusal}")))),
    };
    let mut resolved = Vec::new();
    for network in networks {
        match shared.network_to_join(&network) {
            Ok(id) => resolved.push((network, id)),
            Err(refusal) => return Ok(Err(refusal)),
        }
    }
    let vetted = match pin_create_networks(&vetted, &resolved) {
        Ok(vetted) => vetted,
        Err(refusal) => return Ok(Err((403, format!("eci: {refusal}")))),
    };
    let vetted = match pin_shared_containers(&vetted, shared) {
        Ok(vetted) => vetted,
        Err(refusal) => return Ok(Err(refusal)),
    };
    use eci_policy::docker_api::volumes::{mountable_volume, volume_claims};
    let claims = match volume_claims(&vetted, &runtime) {
        Ok(claims) => claims,
        Err(refusal) => return Ok(Err((403, format!("eci: {refusal}")))),
    };
    // Each looked up first: the engine then asks every driver for a volume it has no record
    // of (a plugin's, a restored directory), and records it with the labels it really has; a
    // create would have it take the labels of the request instead. Only once every existing
    // one passes are the missing ones made, labelled for this socket's runtime (the engine
    // would make them unlabelled, out of scope from then on); if another is made meanwhile,
    // the engine answers with that one, which is judged the same way.
    let mut missing = Vec::new();
    for claim in claims {
        match engine::volume(&shared.upstream, &claim.name) {
            Ok(Some(volume)) => {
                if let Err(refusal) = mountable_volume(&volume, &runtime) {
                    return Ok(Err((403, format!("eci: {refusal}"))));
                }
            }
            Ok(None) => missing.push(claim),
            Err(err) => return Ok(Err((403, format!("eci: the volume {}: {err}", claim.name)))),
        }
    }
    let mut made = MadeVolumes::new(shared);
    for claim in missing {
        let name = &claim.name;
        let Some(body) = made.marked(&claim.body) else {
            return Ok(Err((
                403,
                format!("eci: the volume {name}: no labels to mark"),
            )));
        };
        let volume = match engine::create_volume(&shared.upstream, &body) {
            Ok(volume) => volume,
            Err(err) => return Ok(Err((403, format!("eci: the volume {name}: {err}")))),
        };
        if let Err(refusal) = mountable_volume(&volume, &runtime) {
            return Ok(Err((403, format!("eci: {refusal}"))));
        }
        // The engine answers with one of that name made meanwhile, if there is one: not ours
        // to remove.
        if made.made_here(&volume) {
            made.names.push(claim.name);
        }
    }
    Ok(Ok(Vetted {
        head: with_body(request, &vetted),
        made_volumes: std::mem::take(&mut made.names),
        mark: made.mark.clone(),
    }))
}

/// The host paths a container created through the proxy may bind.
struct BindRules {
    paths: eci_policy::paths::PathPolicy,
    sockets: Vec<PathBuf>,
}

impl BindRules {
    fn of(policy: &eci_policy::Policy) -> BindRules {
        BindRules {
            paths: policy.paths.clone(),
            sockets: policy.docker_socket.sockets.clone(),
        }
    }

    /// Why a request is refused for one of the host paths it binds (`sources`), judged as the
    /// runtime would judge a bind: where the path leads now, the part that exists with its
    /// links followed and the rest as named (a missing source makes the engine refuse the
    /// create, as a `Mounts` bind, but a judgement on where it would lead costs nothing).
    fn refusal(&self, sources: impl IntoIterator<Item = String>) -> Option<String> {
        use eci_policy::paths::{PathDecision, ResolvedPath};
        for source in sources {
            let refused = |reason: String| Some(format!("eci: the bind source {source} {reason}"));
            let Ok(named) = eci_policy::paths::normalize(Path::new(&source)) else {
                return refused("is not an absolute path".into());
            };
            let resolved = match where_it_leads(&named) {
                Ok(Lead::To(resolved)) => resolved,
                // Their links lead into processes (/proc/1/cwd, and /dev/fd/N through
                // /proc/self, which is the proxy's here and the engine's there): never
                // followed, and where they lead is none of the caller's business.
                Ok(Lead::IntoProcOrSys) => {
                    return refused("is in, or leads into, /proc or /sys, never shared".into())
                }
                Err(err) => return refused(format!("cannot be looked up: {err}")),
            };
            let Ok(resolved) = ResolvedPath::from_resolved(&resolved) else {
                return refused("cannot be looked up".into());
            };
            if self
                .sockets
                .iter()
                .any(|socket| socket == resolved.as_path())
            {
                continue;
            }
            let decision = self.paths.decide(&resolved);
            if let PathDecision::Shared { .. } = decision {
                continue;
            }
            // Where a link led is the host's to know: the caller gets the path it gave.
            if resolved.as_path() != named {
                return refused("leads, through a link, to a path this socket may not bind".into());
            }
            let why = eci_policy::harden::bind_refusal(decision, named);
            return Some(format!("eci: the bind source {source}: {why}"));
        }
        None
    }
}

/// Where a bind source leads ([`where_it_leads`]).
enum Lead {
    /// This path.
    To(PathBuf),
    /// Into /proc or /sys, which was not followed.
    IntoProcOrSys,
}

/// Where the absolute, lexically clean `named` leads: followed one entry at a time, every link
/// as the kernel would follow it (at most 40), up to the first entry that is missing, then the
/// rest as named. An entry in /proc or /sys is never looked at, since a link there means one
/// thing to this process and another to the engine (`/proc/self`).
fn where_it_leads(named: &Path) -> std::io::Result<Lead> {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::path::Component;
    // The entries still to follow, owned: a link's target adds its own in front.
    let entries = |path: &Path| -> Vec<Option<OsString>> {
        let entry = |c: Component<'_>| match c {
            Component::Normal(name) => Some(Some(name.to_owned())),
            Component::ParentDir => Some(None),
            _ => None,
        };
        path.components().filter_map(entry).collect()
    };
    let mut resolved = PathBuf::from("/");
    let mut rest: VecDeque<Option<OsString>> = entries(named).into();
    let mut links = 0;
    let mut missing = false;
    while let Some(entry) = rest.pop_front() {
        // None stands for "..".
        let Some(name) = entry else {
            resolved.pop();
            continue;
        };
        let candidate = resolved.join(&name);
        if candidate.starts_with("/proc") || candidate.starts_with("/sys") {
            return Ok(Lead::IntoProcOrSys);
        }
        if missing {
            resolved = candidate;
            continue;
        }
        let meta = match std::fs::symlink_metadata(&candidate) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                missing = true;
                resolved = candidate;
                continue;
            }
            Err(err) => return Err(err),
        };
        if !meta.file_type().is_symlink() {
            resolved = candidate;
            continue;
        }
        links += 1;
        if links > 40 {
            return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
        }
        let target = std::fs::read_link(&candidate)?;
        if target.is_absolute() {
            resolved = PathBuf::from("/");
        }
        for entry in entries(&target).into_iter().rev() {
            rest.push_front(entry);
        }
    }
    Ok(Lead::To(resolved))
}

/// Reads a volume create's body, checks the options of a `local` volume and labels it in the
/// socket's scope. A volume of that name the engine already has must be in scope: the engine
/// would answer with it.
fn vet_volume_create(
    client: &mut Side,
    request: Head,
    shared: &Shared,
) -> ProxyResult<std::result::Result<Vetted, Refusal>> {
    let vet = eci_policy::docker_api::create::vet_volume_create_body;
    let vetted = match read_and_vet(client, &request, shared, "volume create", vet)? {
        Ok(vetted) => vetted,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let fields: serde_json::Value = serde_json::from_slice(&vetted).unwrap_or_default();
    if let Some(name) = fields["Name"].as_str().filter(|name| !name.is_empty()) {
        if let Err(refusal) = shared.volume_in_scope(name) {
            return Ok(Err(refusal));
        }
    }
    Ok(Ok(with_body(request, &vetted).into()))
}

/// Reads a network create's body: a plain bridge with the engine's own addresses, labelled in
/// the socket's scope.
fn vet_network_create(
    client: &mut Side,
    request: Head,
    shared: &Shared,
) -> ProxyResult<std::result::Result<Vetted, Refusal>> {
    let vet = eci_policy::docker_api::network::vet_network_create_body;
    let vetted = read_and_vet(client, &request, shared, "network create", vet)?;
    Ok(vetted.map(|body| with_body(request, &body).into()))
}

/// Reads a body (`what` names it): the body `vet` makes of it for the runtime created
/// containers get, or a refusal.
fn read_and_vet(
    client: &mut Side,
    request: &Head,
    shared: &Shared,
    what: &str,
    vet: fn(
        &[u8],
        &str,
    ) -> std::result::Result<Vec<u8>, eci_policy::docker_api::create::CreateRefusal>,
) -> ProxyResult<std::result::Result<Vec<u8>, Refusal>> {
    let body = match read_body(client, request, what)? {
        Ok(body) => body,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let runtime = match shared.runtime_for_creates() {
        Ok(runtime) => runtime,
        Err(why) => return Ok(Err((403, why))),
    };
    Ok(vet(&body, &runtime).map_err(|refusal| (403, format!("eci: {refusal}"))))
}

/// Reads a network connect or disconnect body, whose `Container` must be of the holder's
/// runtime, and names it by its full ID.
fn vet_network_member(
    client: &mut Side,
    request: Head,
    shared: &Shared,
) -> ProxyResult<std::result::Result<Vetted, Refusal>> {
    let body = match read_body(client, &request, "network connect")? {
        Ok(body) => body,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let vetted = network_member_body(&body, &request, shared).and_then(|body| {
        // Its endpoint joins the network the target names (by full ID, since checked), not
        // one the endpoint names itself.
        let api = eci_policy::docker_api::classify_target(&request.method, &request.target);
        let network = eci_policy::docker_api::network_of_target(&request.method, &request.target);
        match (api, network) {
            (Some(Api::NetworkConnect), Some(network)) => {
                eci_policy::docker_api::network::pin_connect_network(&body, &network.name)
                    .map_err(|refusal| (403, format!("eci: {refusal}")))
            }
            (Some(Api::NetworkConnect), None) => Err((400, "eci: which network".to_string())),
            _ => Ok(body),
        }
    });
    Ok(vetted.map(|body| with_body(request, &body).into()))
}

/// The network connect or disconnect `body` to send on, its `Container` named by full ID.
fn network_member_body(
    body: &[u8],
    request: &Head,
    shared: &Shared,
) -> std::result::Result<Vec<u8>, Refusal> {
    let mut json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| (400, format!("eci: the network connect body: {e}")))?;
    let fields = json.as_object_mut().ok_or((
        400,
        "eci: the network connect body is not an object".to_string(),
    ))?;
    if let Some(key) = fields.keys().find(|key| {
        eci_policy::docker_api::create::folds_to(key, "Container") && *key != "Container"
    }) {
        return Err((403, format!("eci: the key '{key}' stands for 'Container'")));
    }
    let name = fields
        .get("Container")
        .and_then(serde_json::Value::as_str)
        .ok_or((
            400,
            "eci: the network connect body names no Container".to_string(),
        ))?;
    let id = match shared.same_runtime(name) {
        Ok(id) => id,
        // `network disconnect --force` of a container that is gone removes its stale
        // endpoint: the engine is asked as the client asked.
        Err((404, _)) if forced_disconnect(request, fields) => return Ok(body.to_vec()),
        Err(refusal) => return Err(refusal),
    };
    fields.insert("Container".into(), serde_json::Value::String(id));
    Ok(json.to_string().into_bytes())
}

/// Whether `request` is a network disconnect with `"Force": true`.
fn forced_disconnect(request: &Head, fields: &serde_json::Map<String, serde_json::Value>) -> bool {
    let api = eci_policy::docker_api::classify_target(&request.method, &request.target);
    api == Some(Api::NetworkDisconnect)
        && fields.get("Force") == Some(&serde_json::Value::Bool(true))
}

/// Names the container of a commit (`?container=`) by its full ID, once it is of the holder's
/// runtime.
fn vet_commit(request: &mut Head, shared: &Shared) -> std::result::Result<(), Refusal> {
    let unreadable = || (400, "eci: the commit's query".to_string());
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let named = eci_policy::docker_api::query_container(query, "container")
        .map_err(|e| (400, format!("eci: the commit's query: {e}")))?;
    let Some(named) = named else {
        return Ok(());
    };
    let id = shared.same_runtime(&named.name)?;
    let target = format!("{path}?{}", named.with_id(&id));
    retarget(request, target).map_err(|_| unreadable())
}

/// Has `request` name `target` instead, in its request line too.
fn retarget(request: &mut Head, target: String) -> std::result::Result<(), Refusal> {
    request.bytes = http::head_with_target(&request.bytes, &target)
        .ok_or((400, "eci: the request line".to_string()))?;
    request.target = target;
    Ok(())
}

/// Answers with `status` and Docker's error body (for 204, done already, none), and closes the
/// connection (what follows the head is not read, so nothing after it can be taken for a
/// request).
fn refuse(client: &mut UnixStream, status: u16, message: &str) -> std::io::Result<()> {
    if status == 204 {
        // Done already, as the engine would answer: nothing to do (a forced remove of what
        // is not there).
        client.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")?;
        client.flush()?;
        let _ = client.shutdown(std::net::Shutdown::Both);
        return Ok(());
    }
    let body = serde_json::json!({ "message": message }).to_string();
    let reason = match status {
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Bad Request",
    };
    write!(
        client,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    client.flush()?;
    let _ = client.shutdown(std::net::Shutdown::Both);
    Ok(())
}

#[cfg(test)]
mod tests;
