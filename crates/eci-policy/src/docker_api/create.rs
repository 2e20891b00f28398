//! What a container create request sent through a proxied engine socket may ask for. The
//! request line says only that it creates a container; the body says how. Two of its fields
//! would let a container with the socket escape eci altogether:
//! - `HostConfig.Runtime`: the engine always has `runc` (and its shim names) registered, and a
//!   container it runs there has no user namespace, so its root is host root;
//! - `HostConfig.Annotations` (API 1.43 on) reach the OCI spec, where `org.eci.*` annotations
//!   relax the settings for that container unless the administrator locked them.
//!
//! A container created through the socket therefore runs with the runtime of the container
//! that holds the socket (filled in when the body names none), and may not carry eci's
//! annotations.
//!
//! Two more would have the engine itself act on the host for the caller, where the container's
//! isolation does not reach: a log driver that ships the container's output (`gelf`, `syslog`,
//! `fluentd`, `splunk`, ...) connects from the host's network to any address it is given, and a
//! volume of the `local` driver with mount options (`HostConfig.Mounts[].VolumeOptions`, or
//! `POST /volumes/create`, [`vet_volume_create_body`]) is mounted on the host by the engine: an
//! NFS or CIFS one connects from the host's network, a disk or an overlay shows host files, and
//! into a bind one the engine copies an image's files as root. So only the log drivers that
//! write on the host (`json-file`, `local`, `journald`, `none`) and plain and tmpfs volumes
//! pass. Volumes of other drivers (plugins the administrator installed) pass as they are.
//!
//! And a host path in `HostConfig.Binds` would have the engine make it, as root, when missing,
//! each time the container starts: it goes on as a `HostConfig.Mounts` bind, which the engine
//! never creates ([`host_bind_sources`] lists the paths a proxy must then judge). `VolumesFrom`,
//! `Links`, `Devices` beyond eci's safe set and a `CgroupParent` are refused: the engine acts
//! on them itself, on the host.
//!
//! ```
//! use eci_policy::docker_api::create::{vet_create_body, CreateRefusal};
//!
//! let body = br#"{"Image":"alpine","HostConfig":{"Privileged":true}}"#;
//! let vetted = vet_create_body(body, "eci").unwrap();
//! let json: serde_json::Value = serde_json::from_slice(&vetted).unwrap();
//! assert_eq!(json["HostConfig"]["Runtime"], "eci");
//!
//! let escape = br#"{"Image":"alpine","HostConfig":{"Runtime":"runc"}}"#;
//! assert!(matches!(vet_create_body(escape, "eci"), Err(CreateRefusal::Runtime { .. })));
//! ```

use serde_json::{Map, Value};

use crate::overrides::ANNOTATION_PREFIX;

/// Annotations by which containerd's runc shim (and CRI) would put the container's task in
/// another's shim: a container of another runtime's, whose lifetime the two would then share.
const SHIM_ANNOTATIONS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// Why a create request's body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateRefusal {
    /// The body is not a JSON object (the engine would refuse it too).
    #[error("the container create body is not a JSON object: {0}")]
    NotAnObject(String),
    /// `HostConfig` is there but not an object.
    #[error("the container create body's HostConfig is not a JSON object")]
    HostConfig,
    /// The body asks for another runtime.
    #[error("containers created through this socket run with the runtime '{required}' (the one the container holding the socket runs with), not '{asked}'")]
    Runtime {
        /// What the body asked for.
        asked: String,
        /// The only runtime allowed.
        required: String,
    },
    /// A key the engine would read as one of the fields checked here, spelt otherwise: Go's
    /// JSON decoder matches field names without regard to case (and with Unicode folding, so
    /// `ſ` is `s`), and the last of two matching keys wins.
    #[error("the container create body's key '{0}' stands for '{1}' in another spelling; use '{1}' as it is spelt")]
    Spelling(String, &'static str),
    /// The body carries an annotation that would change eci's settings, or put the container
    /// in another's shim.
    #[error("the annotation '{0}' changes eci's settings or puts the container in another's shim, which a container created through this socket may not")]
    Annotation(String),
    /// A field checked here has a type the engine would not decode either.
    #[error("the request body's {0} is malformed")]
    Malformed(&'static str),
    /// A log driver that sends the container's output somewhere from the host.
    #[error("the log driver '{0}' ships the container's output from the host, which a container created through this socket may not use (only json-file, local, journald and none)")]
    LogDriver(String),
    /// Log options for the engine's default driver.
    #[error("log options (HostConfig.LogConfig.Config) without a log driver are refused through this socket: the engine's default driver would take them, an address to ship the container's output to among them; name json-file, local, journald or none")]
    LogOptions,
    /// A log option the driver named is not given through this socket.
    #[error("the log option '{option}' of the {driver} driver is refused through this socket (journald's labels and env options set the journal's own fields, the container's ID among them, which is how the engine finds a container's logs: another container's would be read; allowed: {allowed})")]
    LogOption {
        /// The driver.
        driver: String,
        /// The option refused.
        option: String,
        /// What the driver may be given.
        allowed: String,
    },
    /// A `local` volume the engine would mount on the host as something other than a plain
    /// directory, a tmpfs or a bind.
    #[error("a local volume of type '{0}' would be mounted on the host by the engine (a network filesystem connects from the host's network, a disk or an overlay shows host files); only plain and tmpfs volumes may be made through this socket")]
    VolumeType(String),
    /// A `local` bind volume: the engine binds its device into its own storage, and copies an
    /// image's files into it (as root, setuid bits and all) when it is empty.
    #[error("a local bind volume (of '{0}') is refused through this socket: the engine would copy an image's files into the host path as root; bind the path itself instead")]
    VolumeBind(String),
    /// `HostConfig.VolumesFrom`: the engine copies another container's binds as binds it makes
    /// on the host when missing, whatever the proxy had made of them.
    #[error("HostConfig.VolumesFrom (--volumes-from) is refused through this socket: the engine would bind another container's host paths, and make them on the host when missing; name the volumes or paths instead")]
    VolumesFrom,
    /// A host setting given beside `HostConfig`, where the engine still reads it (API before
    /// 1.24).
    #[error("the container create body's top-level {0} is refused through this socket: give it in HostConfig")]
    TopLevel(&'static str),
    /// A field the engine acts on itself, on the host, outside eci.
    #[error("HostConfig.{0} is refused through this socket: the engine acts on it itself, on the host (Links copy another container's environment, Devices and the Blkio device limits look host paths up as root, a CgroupParent places the container outside the cgroup the administrator gave the engine)")]
    EngineSide(&'static str),
    /// A network create asks for what the engine would set up on the host beyond a plain
    /// bridge with addresses of its own pools.
    #[error("a network with {0} is refused through this socket: the engine would set it up on the host (a host interface, the host's routes, its forwarding); only a plain bridge with the engine's own addresses may be made")]
    NetworkOption(String),
    /// A volume or network label under `org.eci.`, which says which runtime's socket made it.
    #[error(
        "the label '{0}' is eci's own (it says which runtime's socket made a volume or network)"
    )]
    Label(String),
    /// An endpoint that names its network (or endpoint) itself, apart from the network it is
    /// listed under: the engine would join that one.
    #[error("an endpoint's {0} is refused through this socket: the engine would join the network it names instead of the one checked")]
    EndpointNetwork(String),
    /// A `container:NAME` sharing mode that names no container clearly, or one not resolved.
    #[error("HostConfig.{0} '{1}': the container whose namespace it shares must be named, and be one this socket reaches")]
    SharedContainer(&'static str, String),
    /// A host bind with an option the proxy does not pass on.
    #[error("a bind mount with the option '{0}' (it would have the engine change the host: make a missing source, relabel a path)")]
    BindOption(String),
}

/// The log drivers that write the container's output on the host and connect nowhere.
pub const LOCAL_LOG_DRIVERS: &[&str] = &["json-file", "local", "journald", "none"];

/// The options each of [`LOCAL_LOG_DRIVERS`] may be given through the socket: where it keeps
/// the output and how much, and the engine's own buffering (`mode`, `max-buffer-size`).
/// json-file's `labels`, `env` and `tag` only add fields to the container's own file; the
/// `labels` and `env` options of journald overwrite the journal's fields (`CONTAINER_ID_FULL`,
/// by which the engine finds a container's logs, `PRIORITY`), so they are not; its `tag` names
/// the container's own entries (`SYSLOG_IDENTIFIER`, `CONTAINER_TAG`; Compose files set it).
fn log_options_of(driver: &str) -> &'static [&'static str] {
    const BUFFERING: [&str; 2] = ["mode", "max-buffer-size"];
    match driver {
        "json-file" => &[
            "mode",
            "max-buffer-size",
            "max-size",
            "max-file",
            "compress",
            "labels",
            "labels-regex",
            "env",
            "env-regex",
            "tag",
        ],
        "local" => &[
            "mode",
            "max-buffer-size",
            "max-size",
            "max-file",
            "compress",
        ],
        "journald" => &["mode", "max-buffer-size", "tag"],
        _ => &BUFFERING,
    }
}

/// Checks the body of `POST /containers/create` and returns the body to send on: the same
/// request, run with `runtime` and labelled as made for it
/// ([`SCOPE_LABEL`](super::volumes::SCOPE_LABEL)). Refuses another runtime, and annotations and
/// labels under `org.eci.`.
pub fn vet_create_body(body: &[u8], runtime: &str) -> Result<Vec<u8>, CreateRefusal> {
    let mut request: Value =
        serde_json::from_slice(body).map_err(|e| CreateRefusal::NotAnObject(e.to_string()))?;
    let Value::Object(request_fields) = &mut request else {
        return Err(CreateRefusal::NotAnObject("not an object".into()));
    };
    only_exact_spellings(
        request_fields,
        &["HostConfig", "NetworkingConfig", "VolumeDriver", "Labels"],
    )?;
    // Labelled as made for `runtime`, as volumes and networks are: a prune through the socket
    // then reaches only such containers.
    let labels = super::volumes::scoped_labels(request_fields.get("Labels"), runtime)?;
    request_fields.insert("Labels".into(), Value::Object(labels));
    // The engine still reads a top-level VolumeDriver (API before 1.24) when HostConfig has
    // none: the proxy would make a volume with one driver and the engine mount another's.
    if !matches!(request_fields.get("VolumeDriver"), None | Some(Value::Null)) {
        return Err(CreateRefusal::TopLevel("VolumeDriver"));
    }
    let host_config = request_fields
        .entry("HostConfig")
        .or_insert_with(|| Value::Object(Map::new()));
    if host_config.is_null() {
        *host_config = Value::Object(Map::new());
    }
    let Value::Object(host_config) = host_config else {
        return Err(CreateRefusal::HostConfig);
    };
    only_exact_spellings(
        host_config,
        &[
            "Runtime",
            "Annotations",
            "LogConfig",
            "Mounts",
            "Binds",
            "VolumesFrom",
            "Links",
            "Devices",
            "BlkioWeightDevice",
            "BlkioDeviceReadBps",
            "BlkioDeviceWriteBps",
            "BlkioDeviceReadIOps",
            "BlkioDeviceWriteIOps",
            "CgroupParent",
            "VolumeDriver",
            "NetworkMode",
            "IpcMode",
            "PidMode",
        ],
    )?;
    check_engine_side_fields(host_config)?;
    check_binds(host_config.get("Binds"))?;
    match host_config.get("VolumesFrom") {
        None | Some(Value::Null) => {}
        Some(Value::Array(from)) if from.is_empty() => {}
        Some(_) => return Err(CreateRefusal::VolumesFrom),
    }
    check_log_config(host_config.get("LogConfig"))?;
    check_mounts(host_config.get("Mounts"))?;
    move_host_binds_to_mounts(host_config)?;
    no_copy_into_named_volumes(host_config);
    match host_config.get("Runtime") {
        None | Some(Value::Null) => {}
        Some(Value::String(asked)) if asked.is_empty() || asked == runtime => {}
        Some(other) => {
            let asked = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string);
            return Err(CreateRefusal::Runtime {
                asked,
                required: runtime.to_string(),
            });
        }
    }
    host_config.insert("Runtime".into(), Value::String(runtime.into()));
    if let Some(Value::Object(annotations)) = host_config.get("Annotations") {
        if let Some(key) = annotations.keys().find(|key| {
            let key = key.to_ascii_lowercase();
            key.starts_with(ANNOTATION_PREFIX) || SHIM_ANNOTATIONS.contains(&key.as_str())
        }) {
            return Err(CreateRefusal::Annotation(key.clone()));
        }
    }
    Ok(request.to_string().into_bytes())
}

/// Checks the body of `POST /volumes/create` and returns the body to send on: the same request,
/// as read here (a key given twice is sent once: the engine's decoder would merge two
/// `DriverOpts` where this one keeps the last), labelled as made for `runtime`
/// ([`SCOPE_LABEL`](super::volumes::SCOPE_LABEL)). A `local` volume may be plain or a tmpfs.
///
/// ```
/// use eci_policy::docker_api::create::{vet_volume_create_body, CreateRefusal};
///
/// let vetted = vet_volume_create_body(br#"{"Name":"db"}"#, "eci").unwrap();
/// let vetted: serde_json::Value = serde_json::from_slice(&vetted).unwrap();
/// assert_eq!(vetted["Labels"]["org.eci.runtime"], "eci");
/// let nfs = br#"{"Name":"n","DriverOpts":{"type":"nfs","o":"addr=10.0.0.1","device":":/x"}}"#;
/// assert_eq!(vet_volume_create_body(nfs, "eci"), Err(CreateRefusal::VolumeType("nfs".into())));
/// ```
pub fn vet_volume_create_body(body: &[u8], runtime: &str) -> Result<Vec<u8>, CreateRefusal> {
    let mut request: Value =
        serde_json::from_slice(body).map_err(|e| CreateRefusal::NotAnObject(e.to_string()))?;
    let Value::Object(fields) = &mut request else {
        return Err(CreateRefusal::NotAnObject("not an object".into()));
    };
    super::volumes::vet_volume_create_fields(fields, runtime)?;
    Ok(request.to_string().into_bytes())
}

/// `HostConfig.LogConfig`: its type must be one of [`LOCAL_LOG_DRIVERS`] (or empty, the
/// engine's default, which is the administrator's choice).
fn check_log_config(log_config: Option<&Value>) -> Result<(), CreateRefusal> {
    let fields = match log_config {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err(CreateRefusal::Malformed("HostConfig.LogConfig")),
    };
    only_exact_spellings(fields, &["Type", "Config"])?;
    let options = match fields.get("Config") {
        None | Some(Value::Null) => None,
        Some(Value::Object(options)) => Some(options),
        Some(_) => return Err(CreateRefusal::Malformed("HostConfig.LogConfig.Config")),
    };
    let has_options = options.is_some_and(|options| !options.is_empty());
    if let (Some(Value::String(driver)), Some(options)) = (fields.get("Type"), options) {
        check_log_options(driver, options)?;
    }
    match fields.get("Type") {
        // The engine's default driver then, with these options over the administrator's: for
        // a driver that ships logs, an address of the container's choosing.
        None | Some(Value::Null) if has_options => Err(CreateRefusal::LogOptions),
        Some(Value::String(driver)) if driver.is_empty() && has_options => {
            Err(CreateRefusal::LogOptions)
        }
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(driver)) if driver.is_empty() => Ok(()),
        Some(Value::String(driver)) if LOCAL_LOG_DRIVERS.contains(&driver.as_str()) => Ok(()),
        Some(Value::String(driver)) => Err(CreateRefusal::LogDriver(driver.clone())),
        Some(_) => Err(CreateRefusal::Malformed("HostConfig.LogConfig.Type")),
    }
}

/// Each of `options` must be one [`log_options_of`] `driver` allows, spelt exactly (the
/// engine's drivers read them so). Other drivers are refused on their own.
fn check_log_options(driver: &str, options: &Map<String, Value>) -> Result<(), CreateRefusal> {
    if !LOCAL_LOG_DRIVERS.contains(&driver) {
        return Ok(());
    }
    let allowed = log_options_of(driver);
    match options.keys().find(|key| !allowed.contains(&key.as_str())) {
        None => Ok(()),
        Some(option) => Err(CreateRefusal::LogOption {
            driver: driver.to_string(),
            option: option.clone(),
            allowed: allowed.join(", "),
        }),
    }
}

/// The fields the engine acts on itself, on the host, before the runtime sees the container:
/// - `Links`: the engine copies a linked container's environment (its secrets, for one of
///   another runtime) into the new one;
/// - `Devices`: the engine looks each `PathOnHost` up as root (following links, walking a
///   directory), which tells what exists on the host; only the devices eci's runtime allows
///   may be named ([`crate::harden::SAFE_DEVICES`]);
/// - the block I/O limits per device (`BlkioWeightDevice`, `BlkioDevice{Read,Write}{Bps,IOps}`):
///   the engine looks each `Path` up on the host as root when the container starts, and its
///   error tells whether a host path exists; no block device is in the safe set, so none may
///   be named;
/// - `CgroupParent`: it would put the container's cgroup outside the one the administrator gave
///   the engine (`--cgroup-parent`) and its limits, at the cgroup root say, or (with `..`)
///   have the engine make and write cgroup files outside the tree.
fn check_engine_side_fields(host_config: &Map<String, Value>) -> Result<(), CreateRefusal> {
    match host_config.get("Links") {
        None | Some(Value::Null) => {}
        Some(Value::Array(links)) if links.is_empty() => {}
        Some(_) => return Err(CreateRefusal::EngineSide("Links")),
    }
    let safe = |path: &str| {
        crate::harden::SAFE_DEVICES
            .iter()
            .any(|(_, _, safe)| *safe == path)
    };
    match host_config.get("Devices") {
        None | Some(Value::Null) => {}
        Some(Value::Array(devices)) => {
            for device in devices {
                let Value::Object(fields) = device else {
                    return Err(CreateRefusal::Malformed("HostConfig.Devices"));
                };
                only_exact_spellings(fields, &["PathOnHost"])?;
                match fields.get("PathOnHost") {
                    Some(Value::String(path)) if safe(path) => {}
                    _ => return Err(CreateRefusal::EngineSide("Devices")),
                }
            }
        }
        Some(_) => return Err(CreateRefusal::Malformed("HostConfig.Devices")),
    }
    for field in BLKIO_DEVICE_FIELDS {
        match host_config.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(devices)) if devices.is_empty() => {}
            Some(_) => return Err(CreateRefusal::EngineSide(field)),
        }
    }
    match host_config.get("CgroupParent") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(parent)) if parent.is_empty() => Ok(()),
        Some(_) => Err(CreateRefusal::EngineSide("CgroupParent")),
    }
}

/// The block I/O limits that name a device by its host path.
const BLKIO_DEVICE_FIELDS: [&str; 5] = [
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
];

/// `HostConfig.Mounts[].BindOptions`: `CreateMountpoint` would have the engine make a missing
/// source on the host, as root, every time the container starts.
fn check_bind_options(options: Option<&Value>) -> Result<(), CreateRefusal> {
    let fields = match options {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err(CreateRefusal::Malformed("HostConfig.Mounts[].BindOptions")),
    };
    only_exact_spellings(fields, &["CreateMountpoint"])?;
    match fields.get("CreateMountpoint") {
        None | Some(Value::Null | Value::Bool(false)) => Ok(()),
        Some(_) => Err(CreateRefusal::BindOption("CreateMountpoint".into())),
    }
}

/// Rewrites each `HostConfig.Binds` entry that binds a host path (`/src:/dst[:mode]`) as a
/// `HostConfig.Mounts` entry of type `bind`. The engine makes a missing `Binds` source on the
/// host, as root, each time the container starts (or is copied into), wherever the path
/// leads by then; it never does for a `Mounts` bind, whose missing source is an error. Entries
/// that name volumes stay in `Binds`.
fn move_host_binds_to_mounts(host_config: &mut Map<String, Value>) -> Result<(), CreateRefusal> {
    let Some(Value::Array(binds)) = host_config.get("Binds") else {
        return Ok(());
    };
    let mut kept = Vec::new();
    let mut moved = Vec::new();
    for bind in binds {
        let text = bind.as_str().unwrap_or_default();
        match host_bind(text) {
            Some((source, target, mode)) => moved.push(bind_mount(source, target, mode)?),
            None => kept.push(bind.clone()),
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    host_config.insert("Binds".into(), Value::Array(kept));
    match host_config.get_mut("Mounts") {
        Some(Value::Array(mounts)) => mounts.extend(moved),
        _ => {
            host_config.insert("Mounts".into(), Value::Array(moved));
        }
    }
    Ok(())
}

/// Marks every named volume the container mounts `nocopy`. Into an empty volume the engine
/// copies the image's files at the mount point, as root and by path, on the host; a named volume
/// is shared by the containers made through the socket, and one of them holding it already can
/// swap a directory of the copy for a symlink (to `/etc/cron.d`) while the copy runs, and have
/// the engine write there. Anonymous volumes are made for the one container and are out of
/// every other's reach ([`volumes`](super::volumes)), so they are still filled.
fn no_copy_into_named_volumes(host_config: &mut Map<String, Value>) {
    if let Some(Value::Array(binds)) = host_config.get_mut("Binds") {
        for bind in binds.iter_mut() {
            if let Some(marked) = bind.as_str().and_then(named_volume_without_copy) {
                *bind = Value::String(marked);
            }
        }
    }
    if let Some(Value::Array(mounts)) = host_config.get_mut("Mounts") {
        for mount in mounts.iter_mut().filter_map(Value::as_object_mut) {
            let named = mount.get("Type").and_then(Value::as_str) == Some("volume")
                && mount
                    .get("Source")
                    .and_then(Value::as_str)
                    .is_some_and(|source| !source.is_empty());
            if !named {
                continue;
            }
            let options = mount
                .entry("VolumeOptions")
                .or_insert_with(|| Value::Object(Map::new()));
            if options.is_null() {
                *options = Value::Object(Map::new());
            }
            // check_mounts let only an object or null through.
            if let Value::Object(options) = options {
                options.insert("NoCopy".into(), Value::Bool(true));
            }
        }
    }
}

/// A `Binds` entry naming a volume (`name:/target[:mode]`), with `nocopy` added to its mode;
/// `None` for any other entry (a host path, an anonymous volume, one the engine refuses).
fn named_volume_without_copy(bind: &str) -> Option<String> {
    let (name, target, mode) = named_volume_bind(bind)?;
    if mode.split(',').any(|word| word == "nocopy") {
        return Some(bind.to_string());
    }
    let mode = if mode.is_empty() {
        "nocopy".to_string()
    } else {
        format!("{mode},nocopy")
    };
    Some(format!("{name}:{target}:{mode}"))
}

/// A `Binds` entry that binds a host path, as the engine splits it: (source, target, mode).
/// One part is an anonymous volume; a source that is no absolute path names a volume.
fn host_bind(bind: &str) -> Option<(&str, &str, &str)> {
    bind_parts(bind).filter(|(source, _, _)| source.starts_with('/'))
}

/// A `Binds` entry naming a volume (`name:/target[:mode]`), as the engine splits it: (name,
/// target, mode). An empty name is refused by the engine (and would make a volume of a random
/// name); an absolute one is a host path.
pub(super) fn named_volume_bind(bind: &str) -> Option<(&str, &str, &str)> {
    bind_parts(bind).filter(|(name, _, _)| !name.is_empty() && !name.starts_with('/'))
}

/// A `Binds` entry split as the engine splits one on Linux: (source, target, mode), the mode
/// empty when left out; `None` for any other number of parts (the engine refuses them, or one
/// part is an anonymous volume).
fn bind_parts(bind: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = bind.split(':').collect();
    match parts[..] {
        [source, target] => Some((source, target, "")),
        [source, target, mode] => Some((source, target, mode)),
        _ => None,
    }
}

/// The `Mounts` entry a host path bind with `mode` (`ro`, `rw`, a propagation, a consistency)
/// stands for; a mode it cannot carry is refused (`z`/`Z` would relabel the host path).
fn bind_mount(source: &str, target: &str, mode: &str) -> Result<Value, CreateRefusal> {
    let mut read_only = false;
    let mut propagation = None;
    let mut consistency = None;
    for word in mode.split(',').filter(|w| !w.is_empty()) {
        match word {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                propagation = Some(word)
            }
            "consistent" | "cached" | "delegated" => consistency = Some(word),
            other => return Err(CreateRefusal::BindOption(other.to_string())),
        }
    }
    let mut mount = serde_json::json!({
        "Type": "bind",
        "Source": source,
        "Target": target,
        "ReadOnly": read_only,
    });
    if let Some(propagation) = propagation {
        mount["BindOptions"] = serde_json::json!({ "Propagation": propagation });
    }
    if let Some(consistency) = consistency {
        mount["Consistency"] = Value::String(consistency.into());
    }
    Ok(mount)
}

/// `HostConfig.Binds`: strings, or the engine would refuse them too.
fn check_binds(binds: Option<&Value>) -> Result<(), CreateRefusal> {
    match binds {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(binds)) if binds.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(CreateRefusal::Malformed("HostConfig.Binds")),
    }
}

/// The host paths a create body binds: `HostConfig.Binds` entries whose source is a path
/// (`/src:/dst[:options]`; other sources name volumes) and `HostConfig.Mounts` of type
/// `bind` (where [`vet_create_body`] moves the former). The engine mounts them itself for
/// `docker cp`, outside the runtime's checks, so a proxy judges them before the create.
///
/// ```
/// use eci_policy::docker_api::create::host_bind_sources;
///
/// let body = br#"{"HostConfig":{"Binds":["/srv/a:/a:ro","data:/d"],
///                 "Mounts":[{"Type":"bind","Source":"/srv/b","Target":"/b"}]}}"#;
/// assert_eq!(host_bind_sources(body), ["/srv/a", "/srv/b"]);
/// ```
pub fn host_bind_sources(body: &[u8]) -> Vec<String> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let host_config = &request["HostConfig"];
    let binds = host_config["Binds"].as_array().into_iter().flatten();
    let from_binds = binds
        .filter_map(Value::as_str)
        .filter_map(|bind| host_bind(bind).map(|(source, _, _)| source));
    let mounts = host_config["Mounts"].as_array().into_iter().flatten();
    let from_mounts = mounts
        .filter(|mount| mount["Type"] == "bind")
        .filter_map(|mount| mount["Source"].as_str());
    from_binds.chain(from_mounts).map(str::to_string).collect()
}

/// `HostConfig.Mounts`: a volume mount may create its volume with a driver's options.
fn check_mounts(mounts: Option<&Value>) -> Result<(), CreateRefusal> {
    let mounts = match mounts {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(mounts)) => mounts,
        Some(_) => return Err(CreateRefusal::Malformed("HostConfig.Mounts")),
    };
    for mount in mounts {
        let Value::Object(fields) = mount else {
            return Err(CreateRefusal::Malformed("HostConfig.Mounts"));
        };
        only_exact_spellings(fields, &["VolumeOptions", "Type", "Source", "BindOptions"])?;
        for key in ["Type", "Source"] {
            if !matches!(fields.get(key), None | Some(Value::Null | Value::String(_))) {
                return Err(CreateRefusal::Malformed("HostConfig.Mounts"));
            }
        }
        check_bind_options(fields.get("BindOptions"))?;
        let options = match fields.get("VolumeOptions") {
            None | Some(Value::Null) => continue,
            Some(Value::Object(options)) => options,
            Some(_) => {
                return Err(CreateRefusal::Malformed(
                    "HostConfig.Mounts[].VolumeOptions",
                ))
            }
        };
        only_exact_spellings(options, &["DriverConfig", "Labels", "NoCopy"])?;
        let driver_config = match options.get("DriverConfig") {
            None | Some(Value::Null) => continue,
            Some(Value::Object(driver_config)) => driver_config,
            Some(_) => {
                return Err(CreateRefusal::Malformed(
                    "HostConfig.Mounts[].VolumeOptions.DriverConfig",
                ))
            }
        };
        only_exact_spellings(driver_config, &["Name", "Options"])?;
        check_volume(driver_config.get("Name"), driver_config.get("Options"))?;
    }
    Ok(())
}

/// A volume of `driver` (the `local` one when empty) made with `options`.
pub(super) fn check_volume(
    driver: Option<&Value>,
    options: Option<&Value>,
) -> Result<(), CreateRefusal> {
    match driver {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) if name.is_empty() || name == "local" => {}
        Some(Value::String(_)) => return Ok(()),
        Some(_) => return Err(CreateRefusal::Malformed("volume driver")),
    }
    let options = match options {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(options)) => options,
        Some(_) => return Err(CreateRefusal::Malformed("volume options")),
    };
    // The driver's option names are map keys, which Go matches exactly.
    let option = |name: &str| -> Result<&str, CreateRefusal> {
        match options.get(name) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(value)) => Ok(value),
            Some(_) => Err(CreateRefusal::Malformed("volume options")),
        }
    };
    let (typ, mount_opts, device) = (option("type")?, option("o")?, option("device")?);
    let binds = mount_opts
        .split(',')
        .any(|word| word == "bind" || word == "rbind");
    if binds {
        return Err(CreateRefusal::VolumeBind(device.to_string()));
    }
    match typ {
        "" if mount_opts.is_empty() && device.is_empty() => Ok(()),
        "tmpfs" => Ok(()),
        "" => Err(CreateRefusal::VolumeType("(none)".into())),
        other => Err(CreateRefusal::VolumeType(other.to_string())),
    }
}

/// Refuses a key of `fields` that Go's decoder would match to one of `names` but that is not
/// spelt as it: the proxy would check one key and the engine use another.
pub(crate) fn only_exact_spellings(
    fields: &Map<String, Value>,
    names: &[&'static str],
) -> Result<(), CreateRefusal> {
    for key in fields.keys() {
        if let Some(name) = names
            .iter()
            .find(|name| folds_to(key, name) && key != *name)
        {
            return Err(CreateRefusal::Spelling(key.clone(), name));
        }
    }
    Ok(())
}

/// Whether `key` equals `name` under Unicode simple case folding, as Go's `EqualFold` compares
/// (ſ, U+017F, folds to s; the Kelvin sign to k).
pub fn folds_to(key: &str, name: &str) -> bool {
    let fold = |c: char| -> String { c.to_uppercase().flat_map(char::to_lowercase).collect() };
    let folded = |text: &str| -> String { text.chars().map(fold).collect() };
    folded(key) == folded(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn runtime_of(body: &[u8]) -> Value {
        serde_json::from_slice::<Value>(body).unwrap()["HostConfig"]["Runtime"].clone()
    }

    #[test]
    fn named_volumes_are_never_filled_from_the_image() {
        let body = br#"{"Image":"a","HostConfig":{
            "Binds":["db:/db","logs:/l:ro","cache:/c:nocopy","/anon","/srv:/s"],
            "Mounts":[{"Type":"volume","Source":"v","Target":"/v"},
                      {"Type":"volume","Source":"w","Target":"/w","VolumeOptions":{"NoCopy":false}},
                      {"Type":"volume","Target":"/anonymous"}]}}"#;
        let vetted: Value = serde_json::from_slice(&vet_create_body(body, "eci").unwrap()).unwrap();
        assert_eq!(
            vetted["HostConfig"]["Binds"],
            serde_json::json!([
                "db:/db:nocopy",
                "logs:/l:ro,nocopy",
                "cache:/c:nocopy",
                "/anon"
            ])
        );
        let mounts = vetted["HostConfig"]["Mounts"].as_array().unwrap();
        let no_copy: Vec<&Value> = mounts
            .iter()
            .map(|m| &m["VolumeOptions"]["NoCopy"])
            .collect();
        assert_eq!(
            no_copy,
            [
                &Value::Bool(true),
                &Value::Bool(true),
                &Value::Null,
                &Value::Null
            ]
        );
        let respelt = br#"{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","VolumeOptions":{"nocopy":false}}]}}"#;
        assert!(matches!(
            vet_create_body(respelt, "eci"),
            Err(CreateRefusal::Spelling(..))
        ));
    }

    proptest! {
        /// Whatever a Binds entry names, once vetted a named volume's carries `nocopy` and any
        /// other entry is as it was (or moved to Mounts, for a host path).
        #[test]
        fn every_named_volume_bind_is_marked_nocopy(
            name in "[a-z/]{0,3}",
            mode in prop::sample::select(vec!["", "ro", "rw", "nocopy", "ro,nocopy", "z"]),
        ) {
            let bind = if mode.is_empty() { format!("{name}:/t") } else { format!("{name}:/t:{mode}") };
            let body = serde_json::json!({"HostConfig": {"Binds": [bind.clone()]}}).to_string();
            if let Ok(vetted) = vet_create_body(body.as_bytes(), "eci") {
                let vetted: Value = serde_json::from_slice(&vetted).unwrap();
                let binds: Vec<&str> = vetted["HostConfig"]["Binds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                if !name.is_empty() && !name.starts_with('/') {
                    prop_assert_eq!(binds.len(), 1);
                    let words = binds[0].rsplit(':').next().unwrap();
                    prop_assert!(words.split(',').any(|w| w == "nocopy"), "{}", binds[0]);
                } else if !name.starts_with('/') {
                    prop_assert_eq!(binds, [bind.as_str()]);
                }
            }
        }
    }

    #[test]
    fn the_holders_runtime_is_filled_in_or_required() {
        for body in [
            &br#"{"Image":"a"}"#[..],
            br#"{"Image":"a","HostConfig":null}"#,
            br#"{"Image":"a","HostConfig":{"Runtime":""}}"#,
            br#"{"Image":"a","HostConfig":{"Runtime":null}}"#,
            br#"{"Image":"a","HostConfig":{"Runtime":"eci"}}"#,
        ] {
            assert_eq!(runtime_of(&vet_create_body(body, "eci").unwrap()), "eci");
        }
        for (body, asked) in [
            (&br#"{"HostConfig":{"Runtime":"runc"}}"#[..], "runc"),
            (
                br#"{"HostConfig":{"Runtime":"io.containerd.runc.v2"}}"#,
                "io.containerd.runc.v2",
            ),
            (br#"{"HostConfig":{"Runtime":"ECI"}}"#, "ECI"),
            (br#"{"HostConfig":{"Runtime":7}}"#, "7"),
        ] {
            assert_eq!(
                vet_create_body(body, "eci"),
                Err(CreateRefusal::Runtime {
                    asked: asked.into(),
                    required: "eci".into()
                })
            );
        }
    }

    #[test]
    fn a_created_container_is_labelled_for_the_runtime() {
        let vetted = vet_create_body(br#"{"Image":"a","Labels":{"app":"web"}}"#, "eci").unwrap();
        let vetted: Value = serde_json::from_slice(&vetted).unwrap();
        assert_eq!(
            vetted["Labels"],
            serde_json::json!({"app": "web", "org.eci.runtime": "eci"})
        );
        for (body, refusal) in [
            (
                &br#"{"Labels":{"org.eci.runtime":"eci"}}"#[..],
                CreateRefusal::Label("org.eci.runtime".into()),
            ),
            (
                br#"{"labels":{}}"#,
                CreateRefusal::Spelling("labels".into(), "Labels"),
            ),
            (br#"{"Labels":["a"]}"#, CreateRefusal::Malformed("Labels")),
        ] {
            assert_eq!(vet_create_body(body, "eci"), Err(refusal));
        }
    }

    #[test]
    fn eci_annotations_and_malformed_bodies_are_refused() {
        let body = br#"{"HostConfig":{"Annotations":{"org.eci.allowRemount":"true"}}}"#;
        assert_eq!(
            vet_create_body(body, "eci"),
            Err(CreateRefusal::Annotation("org.eci.allowRemount".into()))
        );
        let upper = br#"{"HostConfig":{"Annotations":{"ORG.ECI.allowUnmount":"true"}}}"#;
        assert!(matches!(
            vet_create_body(upper, "eci"),
            Err(CreateRefusal::Annotation(_))
        ));
        let other = br#"{"HostConfig":{"Annotations":{"com.example":"x"}}}"#;
        assert!(vet_create_body(other, "eci").is_ok());
        // Into another container's shim.
        for key in [
            "io.containerd.runc.v2.group",
            "IO.Kubernetes.CRI.sandbox-id",
        ] {
            let body = format!(r#"{{"HostConfig":{{"Annotations":{{"{key}":"abc"}}}}}}"#);
            assert_eq!(
                vet_create_body(body.as_bytes(), "eci"),
                Err(CreateRefusal::Annotation(key.into()))
            );
        }
        assert!(matches!(
            vet_create_body(b"[]", "eci"),
            Err(CreateRefusal::NotAnObject(_))
        ));
        assert!(matches!(
            vet_create_body(b"{", "eci"),
            Err(CreateRefusal::NotAnObject(_))
        ));
        assert_eq!(
            vet_create_body(br#"{"HostConfig":[]}"#, "eci"),
            Err(CreateRefusal::HostConfig)
        );
    }

    #[test]
    fn other_spellings_of_the_checked_keys_are_refused() {
        for body in [
            &br#"{"Image":"a","HostConfig":{"runtime":"runc","Privileged":true}}"#[..],
            br#"{"Image":"a","HostConfig":{"Runtime":"eci","RUNTIME":"runc"}}"#,
            br#"{"Image":"a","hostconfig":{"Runtime":"runc"}}"#,
            "{\"Image\":\"a\",\"Ho\u{17f}tConfig\":{\"Runtime\":\"runc\"}}".as_bytes(),
            br#"{"HostConfig":{"annotations":{"org.eci.allowRemount":"true"}}}"#,
            "{\"HostConfig\":{\"Annotation\u{17f}\":{\"org.eci.allowRemount\":\"true\"}}}"
                .as_bytes(),
        ] {
            assert!(
                matches!(
                    vet_create_body(body, "eci"),
                    Err(CreateRefusal::Spelling(..))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(folds_to("\u{212a}ey", "key"), "the Kelvin sign");
        assert!(!folds_to("Runtimes", "Runtime"));
    }

    #[test]
    fn binds_are_read_as_the_engine_reads_them() {
        let body = br#"{"HostConfig":{"Binds":["/a:/x","vol:/y","/b/c:/z:ro,rslave","/anon"],
            "Mounts":[{"Type":"bind","Source":"/d","Target":"/w"},
                      {"Type":"volume","Source":"/e","Target":"/v"}]}}"#;
        assert_eq!(host_bind_sources(body), ["/a", "/b/c", "/d"]);
        assert!(host_bind_sources(b"{").is_empty());
        for odd in [
            &br#"{"HostConfig":{"Binds":"/a:/x"}}"#[..],
            br#"{"HostConfig":{"Binds":[1]}}"#,
            br#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":["/a"]}]}}"#,
        ] {
            assert!(
                matches!(
                    vet_create_body(odd, "eci"),
                    Err(CreateRefusal::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(odd)
            );
        }
        for spelt in [
            &br#"{"HostConfig":{"BINDS":["/a:/x"]}}"#[..],
            br#"{"HostConfig":{"Mounts":[{"Type":"bind","source":"/a","Target":"/x"}]}}"#,
        ] {
            assert!(matches!(
                vet_create_body(spelt, "eci"),
                Err(CreateRefusal::Spelling(..))
            ));
        }
    }

    #[test]
    fn host_binds_become_mounts_the_engine_never_creates() {
        let body = br#"{"HostConfig":{"Binds":["/a:/x:ro,rslave","vol:/y","/data","/b:/z"],
            "Mounts":[{"Type":"tmpfs","Target":"/t"}]}}"#;
        let vetted: Value = serde_json::from_slice(&vet_create_body(body, "eci").unwrap()).unwrap();
        assert_eq!(
            vetted["HostConfig"]["Binds"],
            serde_json::json!(["vol:/y:nocopy", "/data"])
        );
        assert_eq!(
            vetted["HostConfig"]["Mounts"],
            serde_json::json!([
                {"Type": "tmpfs", "Target": "/t"},
                {"Type": "bind", "Source": "/a", "Target": "/x", "ReadOnly": true,
                 "BindOptions": {"Propagation": "rslave"}},
                {"Type": "bind", "Source": "/b", "Target": "/z", "ReadOnly": false},
            ])
        );
        assert_eq!(
            host_bind_sources(&serde_json::to_vec(&vetted).unwrap()),
            ["/a", "/b"]
        );
        for (bind, word) in [
            ("/a:/x:z", "z"),
            ("/a:/x:ro,Z", "Z"),
            ("/a:/x:nocopy", "nocopy"),
        ] {
            let body = format!(r#"{{"HostConfig":{{"Binds":["{bind}"]}}}}"#);
            assert_eq!(
                vet_create_body(body.as_bytes(), "eci"),
                Err(CreateRefusal::BindOption(word.into()))
            );
        }
        let create = br#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/new","Target":"/x",
            "BindOptions":{"CreateMountpoint":true}}]}}"#;
        assert_eq!(
            vet_create_body(create, "eci"),
            Err(CreateRefusal::BindOption("CreateMountpoint".into()))
        );
        let spelt = br#"{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/new","Target":"/x",
            "BindOptions":{"createmountpoint":true}}]}}"#;
        assert!(matches!(
            vet_create_body(spelt, "eci"),
            Err(CreateRefusal::Spelling(..))
        ));
    }

    #[test]
    fn volumes_from_is_refused_and_bind_volume_devices_are_bind_sources() {
        for body in [
            &br#"{"HostConfig":{"VolumesFrom":["other"]}}"#[..],
            br#"{"HostConfig":{"VolumesFrom":"other"}}"#,
        ] {
            assert_eq!(
                vet_create_body(body, "eci"),
                Err(CreateRefusal::VolumesFrom)
            );
        }
        assert!(vet_create_body(br#"{"HostConfig":{"VolumesFrom":[]}}"#, "eci").is_ok());
        let spelt = br#"{"HostConfig":{"volumesfrom":["other"]}}"#;
        assert!(matches!(
            vet_create_body(spelt, "eci"),
            Err(CreateRefusal::Spelling(..))
        ));
        for (host_config, field) in [
            (r#"{"Links":["db:db"]}"#, "Links"),
            (r#"{"Devices":[{"PathOnHost":"/dev/sda"}]}"#, "Devices"),
            (r#"{"Devices":[{"PathOnHost":"/"}]}"#, "Devices"),
            (r#"{"CgroupParent":"/../../x"}"#, "CgroupParent"),
            (r#"{"CgroupParent":"/"}"#, "CgroupParent"),
            (r#"{"CgroupParent":"/ci"}"#, "CgroupParent"),
            (
                r#"{"BlkioDeviceReadBps":[{"Path":"/root/.ssh/id_rsa","Rate":1}]}"#,
                "BlkioDeviceReadBps",
            ),
            (
                r#"{"BlkioWeightDevice":[{"Path":"/dev/sda","Weight":10}]}"#,
                "BlkioWeightDevice",
            ),
            (r#"{"BlkioDeviceWriteBps":{}}"#, "BlkioDeviceWriteBps"),
            (
                r#"{"BlkioDeviceReadIOps":[{"Path":"/etc/shadow","Rate":1}]}"#,
                "BlkioDeviceReadIOps",
            ),
            (
                r#"{"BlkioDeviceWriteIOps":[{"Path":"/x","Rate":1}]}"#,
                "BlkioDeviceWriteIOps",
            ),
        ] {
            let body = format!(r#"{{"HostConfig":{host_config}}}"#);
            assert_eq!(
                vet_create_body(body.as_bytes(), "eci"),
                Err(CreateRefusal::EngineSide(field)),
                "{host_config}"
            );
        }
        let legacy = br#"{"VolumeDriver":"x","HostConfig":{"Binds":["v:/d"]}}"#;
        assert_eq!(
            vet_create_body(legacy, "eci"),
            Err(CreateRefusal::TopLevel("VolumeDriver"))
        );
        let spelt = br#"{"HostConfig":{"blkiodevicereadbps":[{"Path":"/x","Rate":1}]}}"#;
        assert!(matches!(
            vet_create_body(spelt, "eci"),
            Err(CreateRefusal::Spelling(..))
        ));
        let fine = br#"{"HostConfig":{"Links":[],"CgroupParent":"","BlkioWeightDevice":[],
            "BlkioDeviceReadBps":null,
            "Devices":[{"PathOnHost":"/dev/fuse","PathInContainer":"/dev/fuse"}]}}"#;
        assert!(vet_create_body(fine, "eci").is_ok());
    }

    #[test]
    fn a_key_given_twice_is_sent_once() {
        // Go's decoder would merge the two maps, and make an NFS volume of this.
        let twice = br#"{"Name":"v","DriverOpts":{"type":"nfs","o":"addr=10.0.0.1","device":":/x"},"DriverOpts":{}}"#;
        let vetted = vet_volume_create_body(twice, "eci").unwrap();
        let vetted: Value = serde_json::from_slice(&vetted).unwrap();
        assert_eq!(
            vetted,
            serde_json::json!({"Name": "v", "DriverOpts": {}, "Labels": {"org.eci.runtime": "eci"}})
        );
    }

    #[test]
    fn log_drivers_that_connect_out_are_refused() {
        for driver in ["json-file", "local", "journald", "none", ""] {
            let body =
                format!(r#"{{"HostConfig":{{"LogConfig":{{"Type":"{driver}","Config":{{}}}}}}}}"#);
            assert!(vet_create_body(body.as_bytes(), "eci").is_ok(), "{driver}");
        }
        for driver in [
            "gelf",
            "syslog",
            "fluentd",
            "splunk",
            "awslogs",
            "JSON-FILE",
        ] {
            let body = format!(r#"{{"HostConfig":{{"LogConfig":{{"Type":"{driver}"}}}}}}"#);
            assert_eq!(
                vet_create_body(body.as_bytes(), "eci"),
                Err(CreateRefusal::LogDriver(driver.into()))
            );
        }
        // The engine's default driver with the container's options: refused.
        for log_config in [
            r#"{"Config":{"syslog-address":"tcp://169.254.169.254:80"}}"#,
            r#"{"Type":"","Config":{"gelf-address":"udp://10.0.0.1:12201"}}"#,
            r#"{"Type":null,"Config":{"fluentd-address":"unix:///run/x.sock"}}"#,
        ] {
            let body = format!(r#"{{"HostConfig":{{"LogConfig":{log_config}}}}}"#);
            assert_eq!(
                vet_create_body(body.as_bytes(), "eci"),
                Err(CreateRefusal::LogOptions),
                "{log_config}"
            );
        }
        let body = br#"{"HostConfig":{"LogConfig":{"Type":"local","Config":{"max-size":"1m"}}}}"#;
        assert!(vet_create_body(body, "eci").is_ok());
        let body =
            br#"{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"env":"A","tag":"x"}}}}"#;
        assert!(vet_create_body(body, "eci").is_ok());
        // journald's labels and env overwrite the journal's fields, CONTAINER_ID_FULL (whose
        // logs the engine reads back) among them.
        for (driver, option) in [
            ("journald", "env"),
            ("journald", "labels"),
            ("journald", "env-regex"),
            ("journald", "labels-regex"),
            ("local", "env"),
            ("none", "max-size"),
            ("json-file", "Max-Size"),
        ] {
            let body = format!(
                r#"{{"HostConfig":{{"LogConfig":{{"Type":"{driver}","Config":{{"{option}":"x"}}}}}}}}"#
            );
            assert!(
                matches!(
                    vet_create_body(body.as_bytes(), "eci"),
                    Err(CreateRefusal::LogOption { option: o, .. }) if o == option
                ),
                "{driver} {option}"
            );
        }
        let body =
            br#"{"HostConfig":{"LogConfig":{"Type":"journald","Config":{"mode":"non-blocking","tag":"{{.Name}}"}}}}"#;
        assert!(vet_create_body(body, "eci").is_ok());
        let spelt = br#"{"HostConfig":{"LogConfig":{"config":{"a":"b"}}}}"#;
        assert!(matches!(
            vet_create_body(spelt, "eci"),
            Err(CreateRefusal::Spelling(..))
        ));
        let spelt = br#"{"HostConfig":{"LogConfig":{"type":"gelf"}}}"#;
        assert!(matches!(
            vet_create_body(spelt, "eci"),
            Err(CreateRefusal::Spelling(..))
        ));
        let spelt = br#"{"HostConfig":{"logconfig":{"Type":"gelf"}}}"#;
        assert!(matches!(
            vet_create_body(spelt, "eci"),
            Err(CreateRefusal::Spelling(..))
        ));
        let odd = br#"{"HostConfig":{"LogConfig":{"Type":7}}}"#;
        assert!(matches!(
            vet_create_body(odd, "eci"),
            Err(CreateRefusal::Malformed(_))
        ));
    }

    fn volume_mount(driver_config: &str) -> Vec<u8> {
        format!(
            r#"{{"HostConfig":{{"Mounts":[{{"Type":"tmpfs","Target":"/t"}},{{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{{"DriverConfig":{driver_config}}}}}]}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn only_plain_and_tmpfs_local_volumes_are_made() {
        let allowed = [
            r#"{}"#,
            r#"{"Options":{"size":"1G"}}"#,
            r#"{"Name":"local","Options":{"type":"tmpfs","device":"tmpfs","o":"size=1m"}}"#,
            r#"{"Name":"a-plugin","Options":{"type":"nfs"}}"#,
        ];
        for config in allowed {
            assert!(
                vet_create_body(&volume_mount(config), "eci").is_ok(),
                "{config}"
            );
            let create = format!(
                r#"{{"Name":"v","Driver":{},"DriverOpts":{}}}"#,
                serde_json::from_str::<Value>(config)
                    .unwrap()
                    .get("Name")
                    .unwrap_or(&Value::Null),
                serde_json::from_str::<Value>(config)
                    .unwrap()
                    .get("Options")
                    .unwrap_or(&Value::Null),
            );
            assert!(
                vet_volume_create_body(create.as_bytes(), "eci").is_ok(),
                "{create}"
            );
        }
        let refused = [
            (
                r#"{"Options":{"type":"nfs","o":"addr=127.0.0.1","device":":/"}}"#,
                CreateRefusal::VolumeType("nfs".into()),
            ),
            (
                r#"{"Name":"local","Options":{"type":"cifs","device":"//h/s"}}"#,
                CreateRefusal::VolumeType("cifs".into()),
            ),
            (
                r#"{"Options":{"type":"overlay","o":"lowerdir=/etc:/srv","device":"overlay"}}"#,
                CreateRefusal::VolumeType("overlay".into()),
            ),
            (
                r#"{"Options":{"type":"ext4","device":"/dev/vda"}}"#,
                CreateRefusal::VolumeType("ext4".into()),
            ),
            (
                r#"{"Options":{"device":"/dev/vda"}}"#,
                CreateRefusal::VolumeType("(none)".into()),
            ),
            (
                r#"{"Options":{"type":"none","o":"bind","device":"/srv/db"}}"#,
                CreateRefusal::VolumeBind("/srv/db".into()),
            ),
            (
                r#"{"Options":{"type":"nfs","o":"ro,rbind","device":"/srv"}}"#,
                CreateRefusal::VolumeBind("/srv".into()),
            ),
        ];
        for (config, refusal) in refused {
            assert_eq!(
                vet_create_body(&volume_mount(config), "eci"),
                Err(refusal.clone()),
                "{config}"
            );
            let options = serde_json::from_str::<Value>(config).unwrap()["Options"].to_string();
            let create = format!(r#"{{"Name":"v","DriverOpts":{options}}}"#);
            assert_eq!(
                vet_volume_create_body(create.as_bytes(), "eci"),
                Err(refusal),
                "{create}"
            );
        }
        for body in [
            &br#"{"Name":"v","driveropts":{"type":"nfs"}}"#[..],
            br#"{"Name":"v","DRIVER":"x","DriverOpts":{"type":"nfs"}}"#,
        ] {
            assert!(matches!(
                vet_volume_create_body(body, "eci"),
                Err(CreateRefusal::Spelling(..))
            ));
        }
        let spelt = volume_mount(r#"{"options":{"type":"nfs"}}"#);
        assert!(matches!(
            vet_create_body(&spelt, "eci"),
            Err(CreateRefusal::Spelling(..))
        ));
        let odd = volume_mount(r#"{"Options":{"type":["nfs"]}}"#);
        assert!(matches!(
            vet_create_body(&odd, "eci"),
            Err(CreateRefusal::Malformed(_))
        ));
        assert!(matches!(
            vet_create_body(br#"{"HostConfig":{"Mounts":{}}}"#, "eci"),
            Err(CreateRefusal::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn a_local_volume_passes_only_as_plain_or_tmpfs(
            typ in proptest::option::of(prop::sample::select(vec!["", "tmpfs", "nfs", "none", "ext4"])),
            words in proptest::collection::vec(prop::sample::select(vec!["bind", "rbind", "ro", "addr=1.2.3.4", "size=1m"]), 0..3),
            device in proptest::option::of(prop::sample::select(vec!["", "/srv", "srv", "tmpfs", ":/x"])),
        ) {
            let mut options = Map::new();
            if let Some(typ) = typ { options.insert("type".into(), typ.into()); }
            if !words.is_empty() { options.insert("o".into(), words.join(",").into()); }
            if let Some(device) = device { options.insert("device".into(), device.into()); }
            let body = serde_json::json!({"Name": "v", "DriverOpts": options}).to_string();
            let verdict = vet_volume_create_body(body.as_bytes(), "eci");
            let bind = words.iter().any(|w| *w == "bind" || *w == "rbind");
            let plain = typ.unwrap_or("").is_empty() && words.is_empty() && device.unwrap_or("").is_empty();
            let expected = !bind && (plain || typ == Some("tmpfs"));
            prop_assert_eq!(verdict.is_ok(), expected, "{:?}", verdict);
        }

        #[test]
        fn reading_bind_sources_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = host_bind_sources(&body);
        }

        #[test]
        fn volume_create_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = vet_volume_create_body(&body, "eci");
        }

        #[test]
        fn a_key_in_any_case_is_refused_unless_exact(mask in any::<u16>()) {
            let key: String = "Runtime"
                .chars()
                .enumerate()
                .map(|(i, c)| if mask >> i & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect();
            let body = format!(r#"{{"HostConfig":{{"{key}":"runc"}}}}"#);
            let verdict = vet_create_body(body.as_bytes(), "eci");
            if key == "Runtime" {
                prop_assert!(matches!(verdict, Err(CreateRefusal::Runtime { .. })), "{:?}", verdict);
            } else {
                prop_assert!(matches!(verdict, Err(CreateRefusal::Spelling(..))), "{:?}", verdict);
            }
        }

        #[test]
        fn whatever_passes_runs_with_the_holders_runtime_and_keeps_the_rest(
            image in "[a-z]{1,8}", runtime in proptest::option::of("[a-z.]{0,12}"),
            privileged in any::<bool>(), key in "[a-zA-Z.]{1,16}"
        ) {
            let mut host_config = serde_json::json!({"Privileged": privileged, "Annotations": {key.clone(): "v"}});
            if let Some(runtime) = &runtime {
                host_config["Runtime"] = Value::String(runtime.clone());
            }
            let body = serde_json::json!({"Image": image, "HostConfig": host_config}).to_string();
            match vet_create_body(body.as_bytes(), "eci") {
                Ok(vetted) => {
                    let vetted: Value = serde_json::from_slice(&vetted).unwrap();
                    prop_assert_eq!(&vetted["HostConfig"]["Runtime"], "eci");
                    prop_assert_eq!(&vetted["Image"], &Value::String(image));
                    prop_assert_eq!(&vetted["HostConfig"]["Privileged"], &Value::Bool(privileged));
                    prop_assert!(!key.to_ascii_lowercase().starts_with("org.eci."));
                }
                Err(CreateRefusal::Runtime { asked, .. }) => {
                    prop_assert_eq!(Some(asked), runtime.filter(|r| !r.is_empty() && r != "eci"));
                }
                Err(CreateRefusal::Annotation(found)) => prop_assert_eq!(found, key),
                Err(other) => prop_assert!(false, "{other}"),
            }
        }

        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = vet_create_body(&body, "eci");
        }
    }
}
