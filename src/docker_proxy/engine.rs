//! Asking the engine which image a container runs.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::http::MOST_HEADERS;
use crate::error::{Error, Result};

/// The image of the engine's container `container_id`, asked of the engine at `socket`: the
/// reference the container was created with, and the digest of the manifest it runs as a
/// registry would name it, when the engine can vouch for it:
/// - with the classic image store, the repository digest the engine recorded for that
///   repository when it pulled the image (a build, an import, a load or a tag records none);
/// - with the containerd image store, the digest of the manifest (or index) the image is, its
///   ID. Its repository digests are not read: there they are names given to the image, and a
///   loaded archive may name an image with any digest.
///
/// For the tag entries of `list` that could decide, the registry is asked what the tags are
/// ([`registry_digest`]). With `allowDerivedImages`, when the image matches no entry itself,
/// its base is looked for: an allowed image the store has, named by a digest entry or by what
/// the registry says a tag entry is, whose layers begin the image's. What could not be asked
/// (a registry out of reach) goes to `problems`, and matches nothing. A `*` or digest entry
/// that matches needs no registry, which is then not asked. `Ok(None)` when the engine does not
/// know the container, or the container was created from an image ID (which names no
/// repository).
///
/// The engine is asked for its container list, not for the container itself: while the
/// engine is starting the container (and waiting for the runtime that asks) it holds the
/// container's lock, which inspecting the container would wait for.
pub fn image_from_engine(
    socket: &Path,
    container_id: &str,
    list: &eci_policy::image::ImageList,
    problems: &mut Vec<String>,
) -> Result<Option<crate::ContainerImage>> {
    use eci_policy::image::{ImageRef, KnownDigests};
    let filter = format!("{{\"id\":[\"{container_id}\"]}}");
    let containers = engine_get(
        socket,
        &format!("/containers/json?all=1&filters={}", percent_encode(&filter)),
    )?;
    let entry = containers
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["Id"].as_str() == Some(container_id));
    let Some(entry) = entry else {
        return Ok(None);
    };
    let (Some(named), Some(image_id)) = (entry["Image"].as_str(), entry["ImageID"].as_str()) else {
        return Ok(None);
    };
    let Some(id_hex) = image_id
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return Ok(None);
    };
    let store = ImageStore::of(socket)?;
    let inspected = engine_get(socket, &format!("/images/{image_id}/json"))?;
    // An ID, or a prefix of one, parses as a repository of that name (`library/abcd`); the
    // engine's list also shows the ID once the name no longer leads to the image. A name the
    // image is tagged with is a name, whatever its letters.
    let tagged = |reference: &ImageRef| {
        let tags = inspected["RepoTags"].as_array().into_iter().flatten();
        tags.filter_map(|tag| tag.as_str()?.parse::<ImageRef>().ok())
            .any(|tag| tag.repository() == reference.repository())
    };
    let by_id = id_hex.starts_with(named.strip_prefix("sha256:").unwrap_or(named));
    let reference = match named.parse::<ImageRef>() {
        Ok(reference) if !by_id || tagged(&reference) => reference,
        _ => {
            problems.push(format!(
                "container {container_id} names its image by ID ({named}), which names no \
                 repository"
            ));
            return Ok(None);
        }
    };
    let identities = vouched_identities(store, &inspected, image_id, reference);
    // `*` and digest entries need no registry (nor its pull limit, nor its delays).
    let nothing = KnownDigests::default();
    if let Some(image) = identities
        .iter()
        .find(|i| list.decide(i, None, &nothing).is_some())
    {
        return Ok(Some(crate::ContainerImage {
            image: image.clone(),
            base: None,
            known: nothing,
        }));
    }
    let deadline = std::time::Instant::now() + REGISTRY_PATIENCE;
    let mut asked = Vec::new();
    let questions = list.registry_questions(&identities[0]);
    let mut known = ask_registry(socket, &questions, &mut asked, deadline, problems);
    let matched = identities
        .iter()
        .find(|image| list.decide(image, None, &known).is_some());
    let image = matched.unwrap_or(&identities[0]).clone();
    let mut base = None;
    if list.allow_derived_images && matched.is_none() {
        let questions = list.base_questions();
        known.extend(ask_registry(
            socket, &questions, &mut asked, deadline, problems,
        ));
        base = find_base(
            socket,
            store,
            &layers_of(&inspected),
            list,
            &known,
            problems,
        );
        if base.is_none() {
            problems.push(format!(
                "no allowed image in the engine's store is a base of {} (a derived image counts \
                 only while the image an entry names is the one it was built on)",
                image.reference
            ));
        }
    }
    Ok(Some(crate::ContainerImage { image, base, known }))
}

/// The image `image_id` (as the engine `inspected` it), referenced as `reference`, with each
/// digest the store vouches for: with the classic store every repository digest pulled for
/// the reference's repository (an image may have been pulled at several), with containerd's
/// its ID. Without one, the reference alone.
fn vouched_identities(
    store: ImageStore,
    inspected: &serde_json::Value,
    image_id: &str,
    reference: eci_policy::image::ImageRef,
) -> Vec<eci_policy::image::ImageIdentity> {
    use eci_policy::image::{Digest, ImageIdentity, ImageRef};
    let digests: Vec<Digest> = match store {
        ImageStore::Containerd => Digest::parse(image_id).ok().into_iter().collect(),
        ImageStore::Classic => inspected["RepoDigests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str()?.parse::<ImageRef>().ok())
            .filter(|d| d.repository() == reference.repository())
            .filter_map(|d| d.digest().cloned())
            .collect(),
    };
    if digests.is_empty() {
        return vec![ImageIdentity {
            reference,
            digest: None,
        }];
    }
    digests
        .into_iter()
        .map(|digest| ImageIdentity {
            reference: reference.clone(),
            digest: Some(digest),
        })
        .collect()
}

/// The allowed image (named by an entry of `list`, with what `known` says of tags) that the
/// store has and whose layers begin `layers`, if any.
fn find_base(
    socket: &Path,
    store: ImageStore,
    layers: &[String],
    list: &eci_policy::image::ImageList,
    known: &eci_policy::image::KnownDigests,
    problems: &mut Vec<String>,
) -> Option<eci_policy::image::ImageIdentity> {
    list.base_candidates(known)
        .into_iter()
        .find_map(|candidate| {
            let found = base_in_store(socket, &candidate, store);
            let base_layers = found.map_err(|err| problems.push(err.to_string())).ok()??;
            eci_policy::image::built_on(layers, &base_layers).then(|| {
                eci_policy::image::ImageIdentity {
                    digest: candidate.digest().cloned(),
                    reference: candidate,
                }
            })
        })
}

/// How long one container's start may spend asking registries (through the engine) about tags:
/// no question is begun after this, and each may take the proxy's 10 s wait for an answer.
const REGISTRY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(15);

/// [`registry_digest`] for each of `questions` not in `asked` yet, begun before `deadline`;
/// what could not be learnt goes to `problems`.
fn ask_registry(
    socket: &Path,
    questions: &[eci_policy::image::ImageRef],
    asked: &mut Vec<eci_policy::image::ImageRef>,
    deadline: std::time::Instant,
    problems: &mut Vec<String>,
) -> eci_policy::image::KnownDigests {
    let mut known = eci_policy::image::KnownDigests::default();
    for question in questions {
        if asked.contains(question) {
            continue;
        }
        asked.push(question.clone());
        if std::time::Instant::now() >= deadline {
            problems.push(format!(
                "the registry was not asked about {question}: out of time"
            ));
            continue;
        }
        match registry_digest(socket, question) {
            Ok(digest) => known.insert(question, digest),
            Err(problem) => problems.push(problem),
        }
    }
    known
}

/// Which image store the engine keeps: what its repository digests are worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageStore {
    /// The graph drivers' store: a repository digest is recorded only by a pull (or push).
    Classic,
    /// containerd's store (Docker 24 on, as an option; the default of fresh installs from 29):
    /// repository digests are names given to images, any of them, and an image's ID is its
    /// own manifest digest.
    Containerd,
}

impl ImageStore {
    /// The engine's store as its information tells: classic only for a graph driver known to
    /// be one, and without containerd's snapshotter named. Anything else counts as
    /// containerd's, whose rule (the ID) at worst matches nothing on a classic store.
    fn of(socket: &Path) -> Result<ImageStore> {
        const CLASSIC_DRIVERS: &[&str] = &[
            "overlay2",
            "fuse-overlayfs",
            "btrfs",
            "zfs",
            "vfs",
            "devicemapper",
            "aufs",
            "overlay",
        ];
        let info = engine_get(socket, "/info")?;
        let status = info["DriverStatus"].as_array().into_iter().flatten();
        let snapshotter = status
            .filter_map(|pair| Some((pair[0].as_str()?, pair[1].as_str()?)))
            .any(|(key, value)| key == "driver-type" && value.contains("containerd"));
        let driver = info["Driver"].as_str().unwrap_or_default();
        Ok(if !snapshotter && CLASSIC_DRIVERS.contains(&driver) {
            ImageStore::Classic
        } else {
            ImageStore::Containerd
        })
    }
}

/// The layers (diff IDs, bottom first) of an image as the engine described it.
fn layers_of(inspected: &serde_json::Value) -> Vec<String> {
    let layers = inspected["RootFS"]["Layers"]
        .as_array()
        .into_iter()
        .flatten();
    layers
        .filter_map(|layer| Some(layer.as_str()?.to_string()))
        .collect()
}

/// The layers of the store's image `candidate` (a name with a digest), if the store has that
/// very image: found by the digest, which the classic store records only at a pull and
/// containerd's store must show as the image's own ID (there a name may carry any digest).
fn base_in_store(
    socket: &Path,
    candidate: &eci_policy::image::ImageRef,
    store: ImageStore,
) -> Result<Option<Vec<String>>> {
    let Some(digest) = candidate.digest() else {
        return Ok(None);
    };
    let by_digest = format!("{}@{digest}", candidate.repository());
    let Some(found) = engine_get_found(socket, &format!("/images/{by_digest}/json"))? else {
        return Ok(None);
    };
    let vouched = if store == ImageStore::Containerd {
        found["Id"].as_str() == Some(digest.as_str())
    } else {
        found["RepoDigests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|named| named.as_str()?.parse::<eci_policy::image::ImageRef>().ok())
            .any(|named| {
                named.repository() == candidate.repository() && named.digest() == Some(digest)
            })
    };
    Ok(vouched.then(|| layers_of(&found)))
}

/// What the registry says the tag `question` resolves to, asked through the engine at
/// `socket` (`GET /distribution/{reference}/json`: the engine asks the registry, with its own
/// mirrors, certificates and proxy settings); else why it could not be learnt. A tag entry of
/// `imageList` whose digest is not learnt matches nothing.
pub fn registry_digest(
    socket: &Path,
    question: &eci_policy::image::ImageRef,
) -> std::result::Result<eci_policy::image::Digest, String> {
    // Only characters a reference may hold, each fine in a path: the engine's route takes
    // everything between `/distribution/` and `/json` as the name.
    let target = format!("/distribution/{question}/json");
    match engine_get_found(socket, &target) {
        Ok(Some(answer)) => answer["Descriptor"]["digest"]
            .as_str()
            .and_then(|digest| eci_policy::image::Digest::parse(digest).ok())
            .ok_or_else(|| format!("the engine's answer about {question} names no digest")),
        Ok(None) => Err(format!("the registry has no manifest for {question}")),
        Err(err) => Err(format!("asking the registry about {question}: {err}")),
    }
}

/// What the proxy needs to know of an engine's container: its full ID and the runtime (the
/// engine's name for it) it runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ContainerFacts {
    pub(super) id: String,
    pub(super) runtime: String,
}

/// The facts of the engine's container `container` (an ID, a name or an ID prefix, resolved
/// as the engine resolves it); `Ok(None)` when the engine has no such container.
pub(super) fn container_facts(socket: &Path, container: &str) -> Result<Option<ContainerFacts>> {
    let target = format!("/containers/{}/json", percent_encode(container));
    let Some(found) = engine_get_found(socket, &target)? else {
        return Ok(None);
    };
    let invalid = |what: &str| {
        Error::io(format!(
            "reading container {container} (engine socket {})",
            socket.display()
        ))(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            what.to_string(),
        ))
    };
    let id = found["Id"]
        .as_str()
        .filter(|id| is_full_id(id))
        .ok_or_else(|| invalid("no full Id"))?;
    let runtime = found["HostConfig"]["Runtime"]
        .as_str()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| invalid("no runtime"))?;
    Ok(Some(ContainerFacts {
        id: id.to_string(),
        runtime: runtime.to_string(),
    }))
}

/// The first mount of the engine's container `id` (its full ID) that a `docker cp` would have
/// the engine mount itself, on the host, outside the runtime's checks: anything but a tmpfs.
/// A bind's source may lead elsewhere by then; a volume with mount options binds its device;
/// and the engine makes each mount point inside the others by path, so a container sharing a
/// plain volume can turn one into a symlink out of it meanwhile. `Ok(None)` when there is
/// none; an error when the engine does not say.
pub(super) fn mount_reaching_the_host(socket: &Path, id: &str) -> Result<Option<String>> {
    let found = engine_get(socket, &format!("/containers/{}/json", percent_encode(id)))?;
    let mounts = found["Mounts"].as_array().ok_or_else(|| {
        Error::io(format!("reading the mounts of container {id}"))(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no Mounts",
        ))
    })?;
    Ok(mounts
        .iter()
        .find(|mount| mount["Type"] != "tmpfs")
        .map(|mount| mount["Destination"].as_str().unwrap_or("?").to_string()))
}

/// The engine's description of its volume `name`; `Ok(None)` when it has none.
pub(super) fn volume(socket: &Path, name: &str) -> Result<Option<serde_json::Value>> {
    engine_get_found(socket, &format!("/volumes/{}", percent_encode(name)))
}

/// The engine's description of the network `reference` (an ID, a name or an ID prefix, found
/// as the engine finds it); `Ok(None)` when it has none.
pub(super) fn network(socket: &Path, reference: &str) -> Result<Option<serde_json::Value>> {
    engine_get_found(socket, &format!("/networks/{}", percent_encode(reference)))
}

/// Has the engine make a volume (`body` is a `POST /volumes/create` body) and returns its
/// description of it: of the volume it already had by that name, if it had one.
pub(super) fn create_volume(socket: &Path, body: &[u8]) -> Result<serde_json::Value> {
    // A 404 here is the engine's why (a volume plugin it does not have), not "none".
    let answer = engine_ask(socket, "POST", "/volumes/create", body, NotFound::IsAnError)?;
    Ok(answer.unwrap_or_default())
}

/// Has the engine remove the volume `name`, unless a container uses it (no force); a volume
/// already gone counts as removed.
pub(super) fn remove_volume(socket: &Path, name: &str) -> Result<()> {
    let target = format!("/volumes/{}", percent_encode(name));
    engine_ask(socket, "DELETE", &target, b"", NotFound::IsNone).map(drop)
}

/// The full ID of the container the engine's exec instance `exec_id` runs in; `Ok(None)` when
/// the engine has no such exec instance.
pub(super) fn exec_container(socket: &Path, exec_id: &str) -> Result<Option<String>> {
    let target = format!("/exec/{}/json", percent_encode(exec_id));
    let Some(found) = engine_get_found(socket, &target)? else {
        return Ok(None);
    };
    match found["ContainerID"].as_str().filter(|id| is_full_id(id)) {
        Some(id) => Ok(Some(id.to_string())),
        None => Err(Error::io(format!("reading exec instance {exec_id}"))(
            std::io::Error::new(std::io::ErrorKind::InvalidData, "no full ContainerID"),
        )),
    }
}

/// The engine's default runtime (its name for it): what the containers it creates itself, such
/// as a classic build's steps, run with.
pub(super) fn default_runtime(socket: &Path) -> Result<String> {
    let info = engine_get(socket, "/info")?;
    match info["DefaultRuntime"].as_str().filter(|r| !r.is_empty()) {
        Some(runtime) => Ok(runtime.to_string()),
        None => Err(Error::io(format!(
            "reading the engine's information (engine socket {})",
            socket.display()
        ))(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no DefaultRuntime",
        ))),
    }
}

/// A container ID as the engine makes them: 64 lowercase hex digits.
fn is_full_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One GET of the engine's API, answered in JSON.
fn engine_get(socket: &Path, target: &str) -> Result<serde_json::Value> {
    engine_get_found(socket, target)?.ok_or_else(|| {
        Error::io(format!(
            "the answer to GET {target} (engine socket {})",
            socket.display()
        ))(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "status 404",
        ))
    })
}

/// The engine's JSON answer to `GET target`; `None` for a 404.
fn engine_get_found(socket: &Path, target: &str) -> Result<Option<serde_json::Value>> {
    engine_ask(socket, "GET", target, &[], NotFound::IsNone)
}

/// What an engine's 404 means to the one who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotFound {
    /// That what was asked about does not exist: `None`.
    IsNone,
    /// A failure, with the engine's message.
    IsAnError,
}

/// The engine's JSON answer to `method target` with a JSON `body` (none if empty); a 404 as
/// `not_found` says.
fn engine_ask(
    socket: &Path,
    method: &str,
    target: &str,
    body: &[u8],
    not_found: NotFound,
) -> Result<Option<serde_json::Value>> {
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
    let mut request = format!("{method} {target} HTTP/1.0\r\nHost: docker\r\n");
    if !body.is_empty() {
        request += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    request += "\r\n";
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    stream
        .write_all(&request)
        .map_err(io(format!("asking {method} {target}")))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || response.len() > 64 << 20 {
            return Err(io(format!("reading the answer to {method} {target}"))(
                std::io::ErrorKind::TimedOut.into(),
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(io(format!("reading the answer to {method} {target}")))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(io(format!("reading the answer to {method} {target}"))(err)),
        }
    }
    let invalid = |why: &str| {
        io(format!("the answer to {method} {target}"))(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            why.to_string(),
        ))
    };
    let mut headers = [httparse::EMPTY_HEADER; MOST_HEADERS];
    let mut head = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = head.parse(&response) else {
        return Err(invalid("not an HTTP response"));
    };
    match head.code {
        Some(200 | 201) => {}
        Some(204) => return Ok(None),
        Some(404) if not_found == NotFound::IsNone => return Ok(None),
        code => {
            // The engine says why in its error body.
            let said = serde_json::from_slice::<serde_json::Value>(&response[len..]).ok();
            let message = said.as_ref().and_then(|said| said["message"].as_str());
            let code = code.unwrap_or(0);
            return Err(invalid(&message.map_or_else(
                || format!("status {code}"),
                |message| format!("status {code}: {message}"),
            )));
        }
    }
    serde_json::from_slice(&response[len..])
        .map(Some)
        .map_err(|e| invalid(&e.to_string()))
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
