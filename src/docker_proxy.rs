//! The Docker Engine socket as a container is allowed to use it: a proxy that passes each Engine
//! API request on to the real socket only if the settings' `dockerSocketMount.commandList`
//! allows its command, and answers the others itself with a 403 that the docker CLI prints.
//!
//! Requests are classified by [`eci_policy::docker_api`] from the request line alone, so a raw
//! HTTP request to a refused endpoint is refused like the CLI command. Everything else passes
//! byte for byte: heads, bodies (by Content-Length or chunk by chunk, so streams such as
//! `docker events` or `logs -f` flow as they come) and, after `101 Switching Protocols` or an
//! unframed response (`attach`, `exec` with a terminal), the raw stream both ways. A request
//! whose framing is ambiguous (both Content-Length and chunked, two lengths, another transfer
//! coding) is refused, so the engine cannot read a different request than the one decided.
//!
//! ```no_run
//! use eci::docker_proxy::DockerProxy;
//! use eci::eci_policy::docker_api::{CommandList, CommandRule, ListKind};
//!
//! let deny_push = CommandList::new(
//!     ListKind::Deny,
//!     vec![("push".into(), CommandRule::parse("push").unwrap())],
//! );
//! let proxy = DockerProxy::start(
//!     "/run/eci/web/docker.sock".as_ref(),
//!     "/var/run/docker.sock".as_ref(),
//!     deny_push,
//! )?;
//! // `docker -H unix:///run/eci/web/docker.sock push app` now fails with a 403.
//! drop(proxy); // stops accepting and removes the socket
//! # Ok::<(), eci::Error>(())
//! ```

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use eci_policy::docker_api::{CommandList, Reason};

use crate::error::{Error, Result};

/// Longest request or response head accepted.
const MOST_HEAD: usize = 64 * 1024;
/// Most headers in a head.
const MOST_HEADERS: usize = 100;
/// Most connections served at once; more are closed on arrival, so that a container cannot
/// make the runtime start threads without end.
const MOST_CONNECTIONS: usize = 64;

/// A running proxy. Dropping it stops accepting connections and removes its socket; connections
/// already open end when either side closes.
#[derive(Debug)]
pub struct DockerProxy {
    path: PathBuf,
    /// The listening socket's descriptor, shut down to wake the accept loop.
    listener: std::os::fd::OwnedFd,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

struct Shared {
    upstream: PathBuf,
    commands: CommandList,
    connections: AtomicUsize,
    /// Both ends of every open connection, by connection, to shut down when the proxy stops
    /// (a thread waiting on a long poll would otherwise outlive the container).
    live: std::sync::Mutex<std::collections::HashMap<u64, Vec<UnixStream>>>,
    next_connection: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn new(upstream: &Path, commands: CommandList) -> Shared {
        Shared {
            upstream: upstream.to_path_buf(),
            commands,
            connections: AtomicUsize::new(0),
            live: Default::default(),
            next_connection: Default::default(),
        }
    }

    /// Keeps a handle of `stream` for shutting connection `id` down.
    fn track(&self, id: u64, stream: &UnixStream) {
        if let (Ok(clone), Ok(mut live)) = (stream.try_clone(), self.live.lock()) {
            live.entry(id).or_default().push(clone);
        }
    }
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
    /// Listens on `path` (an old socket there is replaced) and passes allowed requests on to
    /// the engine socket at `upstream`. The socket is made through its directory's descriptor,
    /// so `path` may be longer than a socket address allows.
    pub fn start(path: &Path, upstream: &Path, commands: CommandList) -> Result<DockerProxy> {
        let io = |what: &str| Error::io(format!("{what} {}", path.display()));
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io("listening on")(std::io::ErrorKind::InvalidInput.into()));
        };
        match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("removing an old socket at")(err))
            }
            _ => {}
        }
        let dir = std::fs::File::open(dir).map_err(io("opening the directory of"))?;
        let short = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
        let listener = UnixListener::bind(short).map_err(io("listening on"))?;
        let wake = std::os::fd::OwnedFd::from(listener.try_clone().map_err(io("listening on"))?);
        let shared = Arc::new(Shared::new(upstream, commands));
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
            for stream in live.values().flatten() {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The image of the engine's container `container_id`, asked of the engine at `socket`: the
/// reference the container was created with, and the repository digest the engine recorded
/// for that repository when the image was pulled (none for an image built or imported
/// locally; tagging cannot add one). No registry is asked, so the result matches `*` and
/// `repo@sha256:` entries of `imageList` but never a tag entry. `Ok(None)` when the engine
/// does not know the container.
///
/// The engine is asked for its container list, not for the container itself: while the
/// engine is starting the container (and waiting for the runtime that asks) it holds the
/// container's lock, which inspecting the container would wait for.
pub fn image_from_engine(
    socket: &Path,
    container_id: &str,
) -> Result<Option<crate::ContainerImage>> {
    use eci_policy::image::{ImageIdentity, ImageRef, KnownDigests};
    let filter = format!("{{\"id\":[\"{container_id}\"]}}");
    let list = engine_get(
        socket,
        &format!("/containers/json?all=1&filters={}", percent_encode(&filter)),
    )?;
    let entry = list
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["Id"].as_str() == Some(container_id));
    let Some(entry) = entry else {
        return Ok(None);
    };
    let (Some(reference), Some(image_id)) = (entry["Image"].as_str(), entry["ImageID"].as_str())
    else {
        return Ok(None);
    };
    // A container created from an image ID names no repository at all.
    let Ok(reference) = reference.parse::<ImageRef>() else {
        return Ok(None);
    };
    if !image_id.starts_with("sha256:") || !image_id[7..].bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let image = engine_get(socket, &format!("/images/{image_id}/json"))?;
    let digest = image["RepoDigests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str()?.parse::<ImageRef>().ok())
        .find(|d| d.repository() == reference.repository())
        .and_then(|d| d.digest().cloned());
    Ok(Some(crate::ContainerImage {
        image: ImageIdentity { reference, digest },
        base: None,
        known: KnownDigests::default(),
    }))
}

/// One GET of the engine's API, answered in JSON.
fn engine_get(socket: &Path, target: &str) -> Result<serde_json::Value> {
    let io = |what: String| Error::io(format!("{what} (engine socket {})", socket.display()));
    // The engine answers at once unless it is busy starting (restoring its containers, say):
    // then the container is refused rather than its creation held.
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut stream = UnixStream::connect(socket).map_err(io("connecting".into()))?;
    stream
        .set_write_timeout(Some(PATIENCE))
        .map_err(io("connecting".into()))?;
    // HTTP/1.0: the engine closes the connection after its answer.
    write!(stream, "GET {target} HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(io(format!("asking GET {target}")))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || response.len() > 64 << 20 {
            return Err(io(format!("reading the answer to GET {target}"))(
                std::io::ErrorKind::TimedOut.into(),
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(io(format!("reading the answer to GET {target}")))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(io(format!("reading the answer to GET {target}"))(err)),
        }
    }
    let invalid = |why: &str| {
        io(format!("the answer to GET {target}"))(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            why.to_string(),
        ))
    };
    let mut headers = [httparse::EMPTY_HEADER; MOST_HEADERS];
    let mut head = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = head.parse(&response) else {
        return Err(invalid("not an HTTP response"));
    };
    if head.code != Some(200) {
        return Err(invalid(&format!("status {}", head.code.unwrap_or(0))));
    }
    serde_json::from_slice(&response[len..]).map_err(|e| invalid(&e.to_string()))
}

/// Percent-encodes everything but unreserved characters.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
                let commands = policy.docker_socket.commands.clone();
                served
                    .proxies
                    .push(DockerProxy::start(&path, &source, commands)?);
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
        if shared.connections.fetch_add(1, Ordering::SeqCst) >= MOST_CONNECTIONS {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
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

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP: {0}")]
    Malformed(&'static str),
}

type ProxyResult<T> = std::result::Result<T, ProxyError>;

/// One side of the proxy: a stream and what has been read from it but not yet passed on.
struct Side {
    stream: UnixStream,
    buf: Vec<u8>,
    start: usize,
}

impl Side {
    fn new(stream: UnixStream) -> Side {
        Side {
            stream,
            buf: Vec::new(),
            start: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads more; false at the end of the stream.
    fn fill(&mut self) -> ProxyResult<bool> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Passes `n` bytes on to `to`.
    fn copy(&mut self, mut n: u64, to: &mut impl Write) -> ProxyResult<()> {
        while n > 0 {
            if self.pending().is_empty() && !self.fill()? {
                return Err(ProxyError::Malformed("the stream ended inside a body"));
            }
            let take = self
                .pending()
                .len()
                .min(usize::try_from(n).unwrap_or(usize::MAX));
            to.write_all(&self.pending()[..take])?;
            self.start += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Takes a line ending in CRLF, which holds no other CR or LF (a bare one could end the
    /// line for the engine but not for us).
    fn take_line(&mut self) -> ProxyResult<Vec<u8>> {
        loop {
            if let Some(end) = self.pending().windows(2).position(|w| w == b"\r\n") {
                let line = self.pending()[..end + 2].to_vec();
                if line[..end].iter().any(|b| matches!(b, b'\r' | b'\n')) {
                    return Err(ProxyError::Malformed("a bare CR or LF in a chunk line"));
                }
                self.start += end + 2;
                return Ok(line);
            }
            if self.pending().len() > MOST_HEAD {
                return Err(ProxyError::Malformed("a chunk line is too long"));
            }
            if !self.fill()? {
                return Err(ProxyError::Malformed("the stream ended inside a chunk"));
            }
        }
    }

    /// Passes a chunked body on to `to`, chunk by chunk, trailers included; each line is
    /// checked before it is passed on.
    fn copy_chunked(&mut self, to: &mut impl Write) -> ProxyResult<()> {
        loop {
            let line = self.take_line()?;
            // httparse reads an empty line as size 0; the engine may not.
            if !line[0].is_ascii_hexdigit() {
                return Err(ProxyError::Malformed("a chunk size"));
            }
            let size = match httparse::parse_chunk_size(&line) {
                Ok(httparse::Status::Complete((_, size))) => size,
                _ => return Err(ProxyError::Malformed("a chunk size")),
            };
            to.write_all(&line)?;
            if size == 0 {
                // No trailers: nothing the engine might take for the next request.
                if self.take_line()? != b"\r\n" {
                    return Err(ProxyError::Malformed("trailers after a chunked body"));
                }
                to.write_all(b"\r\n")?;
                return Ok(());
            }
            self.copy(size, to)?;
            if self.take_line()? != b"\r\n" {
                return Err(ProxyError::Malformed("a chunk without its CRLF"));
            }
            to.write_all(b"\r\n")?;
        }
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Neither: for a response, the body runs until the connection closes.
    Unframed,
}

/// What a head says, once parsed.
struct Head {
    /// The whole head, as received.
    bytes: Vec<u8>,
    method: String,
    target: String,
    framing: Framing,
    /// A response switching to another protocol (`101`): raw bytes from here.
    upgrade: bool,
    /// The connection ends after this exchange (`Connection: close`, or HTTP/1.0).
    close: bool,
    /// An interim response (1xx other than 101): the final one follows.
    interim: bool,
}

/// Whether a head asks for the connection to end after this exchange.
fn closes(headers: &[httparse::Header<'_>], version: Option<u8>) -> bool {
    let named = headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("connection")
            && std::str::from_utf8(h.value).is_ok_and(|v| {
                v.split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("close"))
            })
    });
    named || version == Some(0)
}

fn framing(headers: &[httparse::Header<'_>]) -> ProxyResult<Framing> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for header in headers {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| ProxyError::Malformed("a header value is not text"))?
            .trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            // Digits only: Rust would also take a sign, which the engine refuses.
            let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            let n = value
                .parse::<u64>()
                .ok()
                .filter(|_| digits)
                .ok_or(ProxyError::Malformed("Content-Length is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ProxyError::Malformed(
                    "two different Content-Length headers",
                ));
            }
            length = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case("chunked") {
                return Err(ProxyError::Malformed(
                    "a transfer coding other than chunked",
                ));
            }
            chunked = true;
        }
    }
    match (length, chunked) {
        (Some(_), true) => Err(ProxyError::Malformed(
            "both Content-Length and chunked transfer coding",
        )),
        (Some(n), false) => Ok(Framing::Length(n)),
        (None, true) => Ok(Framing::Chunked),
        (None, false) => Ok(Framing::Unframed),
    }
}

/// What the engine could read differently from the proxy, or wait on forever, refused.
fn check_request(
    headers: &[httparse::Header<'_>],
    version: Option<u8>,
    framing: Framing,
) -> ProxyResult<()> {
    let named = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    };
    // A client waiting for `100 Continue` before it sends its body would wait for the proxy
    // while the proxy waits for the body.
    if named("expect").next().is_some() {
        return Err(ProxyError::Malformed(
            "an Expect header (send the body without waiting for 100 Continue)",
        ));
    }
    // The engine ignores a transfer coding on HTTP/1.0, so a chunked body would be read as
    // the next request.
    if version == Some(0) && framing == Framing::Chunked {
        return Err(ProxyError::Malformed("chunked transfer coding in HTTP/1.0"));
    }
    // The engine reads its parameters from a form body as well as from the query, which is
    // all the decision saw (`/images/create` is a pull or an import by its parameters).
    let form = named("content-type").any(|h| {
        h.value.len() >= 33
            && h.value[..33].eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
    });
    if form && framing != Framing::None && framing != Framing::Length(0) {
        return Err(ProxyError::Malformed(
            "a form-encoded body (the engine would read parameters the decision did not see)",
        ));
    }
    Ok(())
}

/// Reads a request head; `None` when the client closed the connection between requests.
fn read_request(side: &mut Side) -> ProxyResult<Option<Head>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MOST_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(side.pending()) {
            Ok(httparse::Status::Complete(len)) => {
                let framing = framing(request.headers)?;
                let head = Head {
                    bytes: side.pending()[..len].to_vec(),
                    method: request.method.unwrap_or_default().to_string(),
                    target: request.path.unwrap_or_default().to_string(),
                    // A request without a length has no body.
                    framing: if framing == Framing::Unframed {
                        Framing::None
                    } else {
                        framing
                    },
                    upgrade: false,
                    close: closes(request.headers, request.version),
                    interim: false,
                };
                check_request(request.headers, request.version, head.framing)?;
                side.start += len;
                return Ok(Some(head));
            }
            Ok(httparse::Status::Partial) if side.pending().len() > MOST_HEAD => {
                return Err(ProxyError::Malformed("the request head is too long"))
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(ProxyError::Malformed("the request head")),
        }
        let empty = side.pending().is_empty();
        if !side.fill()? {
            return if empty {
                Ok(None)
            } else {
                Err(ProxyError::Malformed(
                    "the client closed inside a request head",
                ))
            };
        }
    }
}

fn read_response(side: &mut Side, request: &Head) -> ProxyResult<Head> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MOST_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(side.pending()) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or_default();
                let framing = framing(response.headers)?;
                let bodiless = request.method.eq_ignore_ascii_case("HEAD")
                    || (100..200).contains(&status) && status != 101
                    || status == 204
                    || status == 304;
                let head = Head {
                    bytes: side.pending()[..len].to_vec(),
                    method: String::new(),
                    target: String::new(),
                    framing: if bodiless { Framing::None } else { framing },
                    upgrade: status == 101,
                    close: closes(response.headers, response.version),
                    interim: (100..200).contains(&status) && status != 101,
                };
                side.start += len;
                return Ok(head);
            }
            Ok(httparse::Status::Partial) if side.pending().len() > MOST_HEAD => {
                return Err(ProxyError::Malformed("the response head is too long"))
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(ProxyError::Malformed("the response head")),
        }
        if !side.fill()? {
            return Err(ProxyError::Malformed(
                "the engine closed inside a response head",
            ));
        }
    }
}

/// Serves one client connection, request by request.
fn serve(client: UnixStream, slot: &Slot) -> ProxyResult<()> {
    let shared = &slot.shared;
    let mut client = Side::new(client);
    let mut engine: Option<Side> = None;
    loop {
        let request = match read_request(&mut client) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(ProxyError::Malformed(why)) => {
                refuse(&mut client.stream, 400, &format!("eci: {why}"))?;
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        let decision = eci_policy::docker_api::classify_target(&request.method, &request.target)
            .map(|api| shared.commands.decide_endpoint(api));
        let allowed = decision.is_some_and(|d| d.allowed);
        if !allowed {
            let message = refusal_message(&request, decision.as_ref());
            tracing::info!(method = %request.method, target = %request.target, "docker proxy: {message}");
            refuse(&mut client.stream, 403, &message)?;
            return Ok(());
        }
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
                .spawn_scoped(scope, || match request.framing {
                    Framing::Length(n) => client.copy(n, &mut to_engine),
                    Framing::Chunked => client.copy_chunked(&mut to_engine),
                    Framing::None | Framing::Unframed => Ok(()),
                })?;
            let relayed = relay_response(engine, &request, &mut to_client);
            let sent = body
                .join()
                .unwrap_or(Err(ProxyError::Malformed("the request body")));
            sent.and(relayed)
        })?;
        if raw {
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
) -> ProxyResult<(Head, bool)> {
    let mut response = read_response(engine, request)?;
    while response.interim {
        client.write_all(&response.bytes)?;
        response = read_response(engine, request)?;
    }
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

/// Answers with `status` and Docker's error body, and closes the connection (what follows the
/// head is not read, so nothing after it can be taken for a request).
fn refuse(client: &mut UnixStream, status: u16, message: &str) -> std::io::Result<()> {
    let body = serde_json::json!({ "message": message }).to_string();
    let reason = if status == 403 {
        "Forbidden"
    } else {
        "Bad Request"
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
mod tests {
    use super::*;
    use eci_policy::docker_api::{CommandRule, ListKind};
    use proptest::prelude::*;

    /// An engine that answers `200` with an empty body to every request head it parses (bodies
    /// by Content-Length only) and keeps each request line it saw.
    fn engine(path: &Path) -> Arc<std::sync::Mutex<Vec<String>>> {
        let listener = UnixListener::bind(path).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let mut side = Side::new(stream);
                    let mut out = side.stream.try_clone().unwrap();
                    while let Ok(Some(head)) = read_request(&mut side) {
                        record
                            .lock()
                            .unwrap()
                            .push(format!("{} {}", head.method, head.target));
                        let skipped = match head.framing {
                            Framing::Length(n) => side.copy(n, &mut std::io::sink()),
                            _ => Ok(()),
                        };
                        let answered =
                            out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                        if skipped.is_err() || answered.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        seen
    }

    fn deny_volumes_and_push() -> CommandList {
        let rules = ["volume*", "push"]
            .map(|r| (r.to_string(), CommandRule::parse(r).unwrap()))
            .to_vec();
        CommandList::new(ListKind::Deny, rules)
    }

    /// Sends `bytes` as a client, then reads whatever comes back until the proxy closes.
    fn exchange(shared: &Arc<Shared>, bytes: &[u8]) -> Vec<u8> {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let slot = Slot {
            shared: Arc::clone(shared),
            id: shared.next_connection.fetch_add(1, Ordering::Relaxed),
        };
        let proxy = std::thread::spawn(move || {
            let _ = serve(theirs, &slot);
        });
        let _ = ours.write_all(bytes);
        let _ = ours.shutdown(std::net::Shutdown::Write);
        let mut back = Vec::new();
        let _ = ours.read_to_end(&mut back);
        proxy.join().expect("the proxy never panics");
        back
    }

    fn request() -> impl Strategy<Value = Vec<u8>> {
        let method = prop::sample::select(vec!["GET", "POST", "DELETE", "HEAD"]);
        let target = prop::sample::select(vec![
            "/v1.41/containers/json",
            "/v1.41/volumes",
            "/v1.41/volumes/create",
            "/v1.41/images/app/push?tag=1",
            "/_ping",
            "/v1.41/containers/x/../../volumes",
            "/v1.41/volumes%2f",
            "/containers/json?x=/volumes",
            "http://docker/v1.41/volumes",
        ]);
        let framing = prop::sample::select(vec![
            "",
            "Content-Length: 3\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            "Content-Length: 3\r\nContent-Length: 4\r\n",
            "Connection: close\r\n",
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n",
        ]);
        let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]);
        (method, target, framing, "[a-z]{0,3}", version).prop_map(|(m, t, f, body, v)| {
            let body = if f.contains("chunked") {
                format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
            } else if f.contains("Content-Length: 3") {
                format!("{body:.3}{}", "xxx".get(body.len().min(3)..).unwrap_or(""))
            } else {
                String::new()
            };
            format!("{m} {t} {v}\r\nHost: d\r\n{f}\r\n{body}").into_bytes()
        })
    }

    #[test]
    fn requests_the_engine_could_read_otherwise_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let upstream = dir.path().join("engine.sock");
        let seen = engine(&upstream);
        let shared = Arc::new(Shared::new(&upstream, deny_volumes_and_push()));
        let hidden = "GET /v1.41/volumes HTTP/1.1\r\nHost: d\r\n\r\n";
        let status = |bytes: String| {
            let back = exchange(&shared, bytes.as_bytes());
            String::from_utf8_lossy(&back)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        };
        let post = "POST /v1.41/containers/prune HTTP/1.1\r\nHost: d\r\n";
        assert_eq!(
            status(format!("{post}Content-Length: +5\r\n\r\nxxxxx{hidden}")),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            status(format!(
                "{post}Expect: 100-continue\r\nContent-Length: 5\r\n\r\nxxxxx"
            )),
            "HTTP/1.1 400 Bad Request"
        );
        let post10 = "POST /v1.41/containers/prune HTTP/1.0\r\nHost: d\r\n";
        assert_eq!(
            status(format!(
                "{post10}Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\r\n{hidden}"
            )),
            "HTTP/1.1 400 Bad Request"
        );
        let create = "POST /v1.41/images/create?fromImage=alpine HTTP/1.1\r\nHost: d\r\n";
        let form = "fromImage=&fromSrc=http://x/a.tar";
        assert_eq!(
            status(format!(
                "{create}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            )),
            "HTTP/1.1 400 Bad Request"
        );
        // An empty chunk size, and trailers: the proxy stops there.
        status(format!(
            "{post}Transfer-Encoding: chunked\r\n\r\n\r\n\r\n{hidden}"
        ));
        status(format!(
            "{post}Transfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n\r\n{hidden}"
        ));
        // A chunk size ended by a bare LF: the proxy stops there, before anything after it.
        status(format!(
            "{post}Transfer-Encoding: chunked\r\n\r\n5\nxxxxx\r\n0\r\n\r\n{hidden}"
        ));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let seen = seen.lock().unwrap();
        assert!(
            !seen.iter().any(|line| line.contains("volumes")),
            "{seen:?}"
        );
    }

    #[test]
    fn an_engine_that_answers_while_it_reads_does_not_stall() {
        // `docker load`: the engine streams progress while it reads the upload. 2 MiB each way
        // is far more than the sockets buffer.
        const SIZE: usize = 2 << 20;
        let dir = tempfile::tempdir().unwrap();
        let upstream = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&upstream).unwrap();
        std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut side = Side::new(stream);
            let mut out = side.stream.try_clone().unwrap();
            read_request(&mut side).unwrap().unwrap();
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
            out.write_all(head.as_bytes()).unwrap();
            // One piece of progress for each piece read, in turn: it reads no further until
            // its progress has gone somewhere.
            let piece = 64 * 1024;
            for _ in 0..SIZE / piece {
                if side.copy(piece as u64, &mut std::io::sink()).is_err()
                    || out.write_all(&vec![b'p'; piece]).is_err()
                {
                    return;
                }
            }
        });
        let shared = Arc::new(Shared::new(&upstream, CommandList::default()));
        let (ours, theirs) = UnixStream::pair().unwrap();
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let slot = Slot {
            shared: Arc::clone(&shared),
            id: 0,
        };
        std::thread::spawn(move || serve(theirs, &slot));
        let mut reader = ours.try_clone().unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut answer = vec![0u8; 64 + SIZE];
            let mut got = 0;
            while got < SIZE + 38 {
                match reader.read(&mut answer[got..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            let _ = done.send(got);
        });
        let mut writer = ours;
        std::thread::spawn(move || {
            let head = format!(
                "POST /v1.41/images/load HTTP/1.1\r\nHost: d\r\nContent-Length: {SIZE}\r\n\r\n"
            );
            let _ = writer.write_all(head.as_bytes());
            let _ = writer.write_all(&vec![b'u'; SIZE]);
        });
        let got = finished
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the answer came through while the upload went up");
        assert!(got >= SIZE, "{got}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn only_allowed_requests_reach_the_engine(
            requests in proptest::collection::vec(request(), 1..4),
            noise in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let upstream = dir.path().join("engine.sock");
            let seen = engine(&upstream);
            let commands = deny_volumes_and_push();
            let shared = Arc::new(Shared::new(&upstream, commands.clone()));
            let mut bytes: Vec<u8> = requests.concat();
            bytes.extend_from_slice(&noise);
            exchange(&shared, &bytes);
            exchange(&shared, &noise);
            // The engine's threads record as they read; give them a moment to finish.
            std::thread::sleep(std::time::Duration::from_millis(5));
            for line in seen.lock().unwrap().iter() {
                let (method, target) = line.split_once(' ').unwrap();
                let allowed = eci_policy::docker_api::classify_target(method, target)
                    .is_some_and(|api| commands.decide_endpoint(api).allowed);
                prop_assert!(allowed, "{line} reached the engine");
            }
        }
    }

    fn headers(pairs: &[(&'static str, &'static [u8])]) -> Vec<httparse::Header<'static>> {
        pairs
            .iter()
            .map(|(name, value)| httparse::Header { name, value })
            .collect()
    }

    #[test]
    fn framing_is_refused_when_it_could_be_read_two_ways() {
        let both = headers(&[("Content-Length", b"5"), ("Transfer-Encoding", b"chunked")]);
        assert!(framing(&both).is_err());
        let two = headers(&[("content-length", b"5"), ("Content-Length", b"6")]);
        assert!(framing(&two).is_err());
        let gzip = headers(&[("Transfer-Encoding", b"gzip, chunked")]);
        assert!(framing(&gzip).is_err());
        let same = headers(&[("content-length", b"5"), ("Content-Length", b"5")]);
        assert_eq!(framing(&same).unwrap(), Framing::Length(5));
        let chunked = headers(&[("Transfer-Encoding", b"Chunked"), ("Upgrade", b"tcp")]);
        assert_eq!(framing(&chunked).unwrap(), Framing::Chunked);
    }
}
