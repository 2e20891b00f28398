//! Docker Engine API classification: which `docker` command a request to the engine socket is.
//!
//! A container that may mount the Docker socket is still limited to the commands in
//! `dockerSocketMount.commandList`. Enforcement happens on the requests themselves, so a raw HTTP
//! request is judged like the CLI command that sends it. [`classify`] maps a method, a path (with
//! or without the `/vX.Y` prefix) and a query string to one row of [`ENDPOINTS`]: the commands
//! that send the request (named as `docker --help` names them) and the command groups it belongs
//! to. The table covers every endpoint of Engine API v1.24 to v1.47 and is published, row for row,
//! in `docs/docker-api-commands.md`; a test keeps the two equal.
//!
//! Requests the engine would not serve as an endpoint (unknown paths, paths the engine's router
//! would redirect because they are not clean, invalid percent-escapes) classify to nothing, and
//! [`CommandList::decide`] refuses them: what cannot be classified cannot be checked.
//!
//! Classification allocates nothing unless the path has percent-escapes; it matches on path
//! segments the way the engine's router does.

use std::borrow::Cow;
use std::fmt;

/// The HTTP methods the engine routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
}

impl Method {
    /// The method named exactly (HTTP methods are case-sensitive; the engine routes only these).
    pub fn parse(name: &str) -> Option<Method> {
        Some(match name {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// A command group, the target of a wildcard such as `container*`. Mostly the `docker`
/// management command a command sits under; a request can belong to several groups (`docker
/// system prune` sends the container, image, network, volume and build-cache prunes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// `docker container ...` and the top-level container commands.
    Container,
    /// `docker image ...` and the top-level image commands.
    Image,
    /// `docker build` and `docker builder ...`.
    Build,
    /// `docker volume ...`
    Volume,
    /// `docker network ...`
    Network,
    /// `docker system ...` and the top-level info, version, events and login.
    System,
    /// `docker plugin ...`
    Plugin,
    /// `docker swarm ...`
    Swarm,
    /// `docker node ...`
    Node,
    /// `docker service ...`
    Service,
    /// `docker secret ...`
    Secret,
    /// `docker config ...`
    Config,
    /// `docker checkpoint ...`
    Checkpoint,
}

impl Group {
    /// Every group.
    pub const ALL: [Group; 13] = [
        Group::Container,
        Group::Image,
        Group::Build,
        Group::Volume,
        Group::Network,
        Group::System,
        Group::Plugin,
        Group::Swarm,
        Group::Node,
        Group::Service,
        Group::Secret,
        Group::Config,
        Group::Checkpoint,
    ];

    /// The group's name, as written before the `*` of a wildcard.
    pub fn name(self) -> &'static str {
        match self {
            Group::Container => "container",
            Group::Image => "image",
            Group::Build => "build",
            Group::Volume => "volume",
            Group::Network => "network",
            Group::System => "system",
            Group::Plugin => "plugin",
            Group::Swarm => "swarm",
            Group::Node => "node",
            Group::Service => "service",
            Group::Secret => "secret",
            Group::Config => "config",
            Group::Checkpoint => "checkpoint",
        }
    }

    /// The group with this name.
    pub fn parse(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|group| group.name() == name)
    }
}

/// One endpoint of the Engine API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint, for matching in code.
    pub api: Api,
    /// The HTTP method.
    pub method: Method,
    /// The path pattern without the version prefix. `{name}` may contain `/` (the engine's router
    /// matches `.*` there); `{id}` and `{checkpoint}` are one path segment.
    pub path: &'static str,
    /// The query parameter that selects this endpoint, for paths whose meaning depends on it.
    pub query: Option<&'static str>,
    /// The commands that send this request, the first being the one it is named after.
    pub commands: &'static [&'static str],
    /// The groups the request belongs to.
    pub groups: &'static [Group],
}

impl Endpoint {
    /// The command the request is named after.
    pub fn command(&self) -> &'static str {
        self.commands[0]
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method.as_str(), self.path)?;
        if let Some(query) = self.query {
            write!(f, "?{query}=...")?;
        }
        write!(f, " ({})", self.command())
    }
}

macro_rules! endpoints {
    ($($api:ident: $method:ident $path:literal $(? $query:literal)? => [$($command:literal),+] [$($group:ident),+];)+) => {
        /// Every endpoint of Engine API v1.24 to v1.47, one variant per row of [`ENDPOINTS`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Api {
            $(
                #[doc = concat!("`", stringify!($method), " ", $path, "`")]
                $api,
            )+
        }

        /// The classification table, in [`Api`] order.
        pub const ENDPOINTS: &[Endpoint] = &[
            $(Endpoint {
                api: Api::$api,
                method: Method::$method,
                path: $path,
                query: endpoints!(@query $($query)?),
                commands: &[$($command),+],
                groups: &[$(Group::$group),+],
            },)+
        ];
    };
    (@query) => { None };
    (@query $query:literal) => { Some($query) };
}

endpoints! {
    Ping: Get "/_ping" => ["ping"] [System];
    PingHead: Head "/_ping" => ["ping"] [System];
    Auth: Post "/auth" => ["login"] [System];
    Info: Get "/info" => ["info"] [System];
    Version: Get "/version" => ["version"] [System];
    Events: Get "/events" => ["events"] [System];
    SystemDf: Get "/system/df" => ["system df"] [System];

    ContainerList: Get "/containers/json" => ["ps"] [Container];
    ContainerCreate: Post "/containers/create" => ["create", "run"] [Container];
    ContainerInspect: Get "/containers/{name}/json" => ["container inspect", "inspect", "port"] [Container];
    ContainerTop: Get "/containers/{name}/top" => ["top"] [Container];
    ContainerLogs: Get "/containers/{name}/logs" => ["logs"] [Container];
    ContainerChanges: Get "/containers/{name}/changes" => ["diff"] [Container];
    ContainerExport: Get "/containers/{name}/export" => ["export"] [Container];
    ContainerStats: Get "/containers/{name}/stats" => ["stats"] [Container];
    ContainerResize: Post "/containers/{name}/resize" => ["attach", "run", "start"] [Container];
    ContainerStart: Post "/containers/{name}/start" => ["start", "run"] [Container];
    ContainerStop: Post "/containers/{name}/stop" => ["stop"] [Container];
    ContainerRestart: Post "/containers/{name}/restart" => ["restart"] [Container];
    ContainerKill: Post "/containers/{name}/kill" => ["kill"] [Container];
    ContainerUpdate: Post "/containers/{name}/update" => ["update"] [Container];
    ContainerRename: Post "/containers/{name}/rename" => ["rename"] [Container];
    ContainerPause: Post "/containers/{name}/pause" => ["pause"] [Container];
    ContainerUnpause: Post "/containers/{name}/unpause" => ["unpause"] [Container];
    ContainerAttach: Post "/containers/{name}/attach" => ["attach", "run", "start"] [Container];
    ContainerAttachWebsocket: Get "/containers/{name}/attach/ws" => ["attach"] [Container];
    ContainerWait: Post "/containers/{name}/wait" => ["wait", "run", "start"] [Container];
    ContainerDelete: Delete "/containers/{name}" => ["rm"] [Container];
    ContainerArchiveInfo: Head "/containers/{name}/archive" => ["cp"] [Container];
    ContainerArchiveGet: Get "/containers/{name}/archive" => ["cp"] [Container];
    ContainerArchivePut: Put "/containers/{name}/archive" => ["cp"] [Container];
    ContainerPrune: Post "/containers/prune" => ["container prune", "system prune"] [Container, System];
    Commit: Post "/commit" => ["commit"] [Container];

    ExecCreate: Post "/containers/{name}/exec" => ["exec"] [Container];
    ExecStart: Post "/exec/{name}/start" => ["exec"] [Container];
    ExecResize: Post "/exec/{name}/resize" => ["exec"] [Container];
    ExecInspect: Get "/exec/{name}/json" => ["exec"] [Container];

    CheckpointList: Get "/containers/{name}/checkpoints" => ["checkpoint ls"] [Checkpoint];
    CheckpointCreate: Post "/containers/{name}/checkpoints" => ["checkpoint create"] [Checkpoint];
    CheckpointDelete: Delete "/containers/{id}/checkpoints/{checkpoint}" => ["checkpoint rm"] [Checkpoint];

    ImageList: Get "/images/json" => ["images"] [Image];
    ImagePull: Post "/images/create" ? "fromImage" => ["pull"] [Image];
    ImageImport: Post "/images/create" ? "fromSrc" => ["import"] [Image];
    ImageInspect: Get "/images/{name}/json" => ["image inspect", "inspect"] [Image];
    ImageHistory: Get "/images/{name}/history" => ["history"] [Image];
    ImagePush: Post "/images/{name}/push" => ["push"] [Image];
    ImageTag: Post "/images/{name}/tag" => ["tag"] [Image];
    ImageDelete: Delete "/images/{name}" => ["rmi"] [Image];
    ImageSearch: Get "/images/search" => ["search"] [Image];
    ImagePrune: Post "/images/prune" => ["image prune", "system prune"] [Image, System];
    ImageSave: Get "/images/{name}/get" => ["save"] [Image];
    ImageSaveMany: Get "/images/get" => ["save"] [Image];
    ImageLoad: Post "/images/load" => ["load"] [Image];

    Build: Post "/build" => ["build"] [Build, Image];
    BuildPrune: Post "/build/prune" => ["builder prune", "system prune"] [Build, System];
    BuildCancel: Post "/build/cancel" => ["build"] [Build, Image];
    Session: Post "/session" => ["build"] [Build, Image];
    Grpc: Post "/grpc" => ["build"] [Build, Image];

    VolumeList: Get "/volumes" => ["volume ls"] [Volume];
    VolumeCreate: Post "/volumes/create" => ["volume create"] [Volume];
    VolumeInspect: Get "/volumes/{name}" => ["volume inspect", "inspect"] [Volume];
    VolumeUpdate: Put "/volumes/{name}" => ["volume update"] [Volume];
    VolumeDelete: Delete "/volumes/{name}" => ["volume rm"] [Volume];
    VolumePrune: Post "/volumes/prune" => ["volume prune", "system prune"] [Volume, System];

    NetworkList: Get "/networks" => ["network ls"] [Network];
    NetworkListSlash: Get "/networks/" => ["network ls"] [Network];
    NetworkInspect: Get "/networks/{name}" => ["network inspect", "inspect"] [Network];
    NetworkDelete: Delete "/networks/{name}" => ["network rm"] [Network];
    NetworkCreate: Post "/networks/create" => ["network create"] [Network];
    NetworkConnect: Post "/networks/{name}/connect" => ["network connect"] [Network];
    NetworkDisconnect: Post "/networks/{name}/disconnect" => ["network disconnect"] [Network];
    NetworkPrune: Post "/networks/prune" => ["network prune", "system prune"] [Network, System];

    PluginList: Get "/plugins" => ["plugin ls"] [Plugin];
    PluginPrivileges: Get "/plugins/privileges" => ["plugin install", "plugin upgrade"] [Plugin];
    PluginPull: Post "/plugins/pull" => ["plugin install"] [Plugin];
    PluginInspect: Get "/plugins/{name}/json" => ["plugin inspect", "inspect"] [Plugin];
    PluginDelete: Delete "/plugins/{name}" => ["plugin rm"] [Plugin];
    PluginEnable: Post "/plugins/{name}/enable" => ["plugin enable"] [Plugin];
    PluginDisable: Post "/plugins/{name}/disable" => ["plugin disable"] [Plugin];
    PluginUpgrade: Post "/plugins/{name}/upgrade" => ["plugin upgrade"] [Plugin];
    PluginCreate: Post "/plugins/create" => ["plugin create"] [Plugin];
    PluginPush: Post "/plugins/{name}/push" => ["plugin push"] [Plugin];
    PluginSet: Post "/plugins/{name}/set" => ["plugin set"] [Plugin];

    SwarmInspect: Get "/swarm" => ["swarm join-token", "swarm ca", "swarm update"] [Swarm];
    SwarmInit: Post "/swarm/init" => ["swarm init"] [Swarm];
    SwarmJoin: Post "/swarm/join" => ["swarm join"] [Swarm];
    SwarmLeave: Post "/swarm/leave" => ["swarm leave"] [Swarm];
    SwarmUpdate: Post "/swarm/update" => ["swarm update", "swarm join-token", "swarm ca", "swarm unlock-key"] [Swarm];
    SwarmUnlockKey: Get "/swarm/unlockkey" => ["swarm unlock-key"] [Swarm];
    SwarmUnlock: Post "/swarm/unlock" => ["swarm unlock"] [Swarm];

    NodeList: Get "/nodes" => ["node ls"] [Node];
    NodeInspect: Get "/nodes/{id}" => ["node inspect", "inspect"] [Node];
    NodeDelete: Delete "/nodes/{id}" => ["node rm"] [Node];
    NodeUpdate: Post "/nodes/{id}/update" => ["node update", "node promote", "node demote"] [Node];

    ServiceList: Get "/services" => ["service ls"] [Service];
    ServiceCreate: Post "/services/create" => ["service create"] [Service];
    ServiceInspect: Get "/services/{id}" => ["service inspect", "inspect"] [Service];
    ServiceDelete: Delete "/services/{id}" => ["service rm"] [Service];
    ServiceUpdate: Post "/services/{id}/update" => ["service update", "service scale", "service rollback"] [Service];
    ServiceLogs: Get "/services/{id}/logs" => ["service logs"] [Service];
    DistributionInspect: Get "/distribution/{name}/json" => ["service create", "service update"] [Service];

    TaskList: Get "/tasks" => ["service ps", "node ps"] [Service, Node];
    TaskInspect: Get "/tasks/{id}" => ["inspect"] [Service];
    TaskLogs: Get "/tasks/{id}/logs" => ["service logs"] [Service];

    SecretList: Get "/secrets" => ["secret ls"] [Secret];
    SecretCreate: Post "/secrets/create" => ["secret create"] [Secret];
    SecretInspect: Get "/secrets/{id}" => ["secret inspect", "inspect"] [Secret];
    SecretDelete: Delete "/secrets/{id}" => ["secret rm"] [Secret];
    SecretUpdate: Post "/secrets/{id}/update" => ["secret update"] [Secret];

    ConfigList: Get "/configs" => ["config ls"] [Config];
    ConfigCreate: Post "/configs/create" => ["config create"] [Config];
    ConfigInspect: Get "/configs/{id}" => ["config inspect", "inspect"] [Config];
    ConfigDelete: Delete "/configs/{id}" => ["config rm"] [Config];
    ConfigUpdate: Post "/configs/{id}/update" => ["config update"] [Config];
}

impl Api {
    /// The endpoint's row in [`ENDPOINTS`].
    pub fn endpoint(self) -> &'static Endpoint {
        &ENDPOINTS[self as usize]
    }

    /// True for the requests every `docker` command sends first to negotiate the API version
    /// (`/_ping`): they reveal only versions, and refusing them breaks every command, so no
    /// command list refuses them.
    pub fn is_negotiation(self) -> bool {
        matches!(self, Api::Ping | Api::PingHead)
    }

    /// The collection (`containers`, `exec`, `volumes` or `networks`) one of whose objects the
    /// request names in its path, which a proxy scoping them must find and check
    /// ([`container_of_target`], [`exec_of_target`], [`volume_of_target`],
    /// [`network_of_target`]); `None` for a request that names none.
    ///
    /// ```
    /// use eci_policy::docker_api::Api;
    /// assert_eq!(Api::ContainerStart.names_object_in(), Some("containers"));
    /// assert_eq!(Api::ContainerList.names_object_in(), None);
    /// ```
    pub fn names_object_in(self) -> Option<&'static str> {
        let path = self.endpoint().path;
        ["containers", "exec", "volumes", "networks"]
            .into_iter()
            .find(|collection| {
                path.strip_prefix('/')
                    .and_then(|p| p.strip_prefix(collection))
                    .is_some_and(|rest| rest.starts_with("/{"))
            })
    }
}

/// Spellings `docker --help` also accepts for a command in the table: management-command forms
/// (`container ls` is `ps`) and the `list` / `remove` aliases.
pub const ALIASES: &[(&str, &str)] = &[
    ("container attach", "attach"),
    ("container commit", "commit"),
    ("container cp", "cp"),
    ("container create", "create"),
    ("container diff", "diff"),
    ("container exec", "exec"),
    ("container export", "export"),
    ("container kill", "kill"),
    ("container logs", "logs"),
    ("container ls", "ps"),
    ("container list", "ps"),
    ("container ps", "ps"),
    ("container pause", "pause"),
    ("container port", "port"),
    ("container rename", "rename"),
    ("container restart", "restart"),
    ("container rm", "rm"),
    ("container remove", "rm"),
    ("container run", "run"),
    ("container start", "start"),
    ("container stats", "stats"),
    ("container stop", "stop"),
    ("container top", "top"),
    ("container unpause", "unpause"),
    ("container update", "update"),
    ("container wait", "wait"),
    ("image build", "build"),
    ("builder build", "build"),
    ("image history", "history"),
    ("image import", "import"),
    ("image load", "load"),
    ("image ls", "images"),
    ("image list", "images"),
    ("image pull", "pull"),
    ("image push", "push"),
    ("image rm", "rmi"),
    ("image remove", "rmi"),
    ("image save", "save"),
    ("image tag", "tag"),
    ("system events", "events"),
    ("system info", "info"),
    ("volume list", "volume ls"),
    ("volume remove", "volume rm"),
    ("network list", "network ls"),
    ("network remove", "network rm"),
    ("plugin list", "plugin ls"),
    ("plugin remove", "plugin rm"),
    ("node list", "node ls"),
    ("node remove", "node rm"),
    ("service list", "service ls"),
    ("service remove", "service rm"),
    ("secret list", "secret ls"),
    ("secret remove", "secret rm"),
    ("config list", "config ls"),
    ("config remove", "config rm"),
    ("checkpoint list", "checkpoint ls"),
    ("checkpoint remove", "checkpoint rm"),
];

/// Classifies a request to the Engine API. `path` is the request path (with or without the
/// `/vX.Y` prefix) and `query` the query string without the `?`.
///
/// ```
/// use eci_policy::docker_api::{classify, Api};
/// assert_eq!(classify("POST", "/v1.43/images/myimage/push", "tag=latest"), Some(Api::ImagePush));
/// assert_eq!(classify("GET", "/containers/json", ""), Some(Api::ContainerList));
/// assert_eq!(classify("POST", "/images/create", "fromImage=alpine&tag=3"), Some(Api::ImagePull));
/// assert_eq!(classify("GET", "/containers//json", ""), None);
/// ```
pub fn classify(method: &str, path: &str, query: &str) -> Option<Api> {
    let method = Method::parse(method)?;
    if path.contains('%') {
        let decoded = percent_decode(path, false)?;
        return classify_decoded(method, &decoded, query);
    }
    classify_decoded(method, path, query)
}

/// Classifies a request target as it appears in an HTTP request line: a path with an optional
/// query (`/v1.45/containers/json?all=1`), or an absolute URL (`http://docker/v1.45/info`).
pub fn classify_target(method: &str, target: &str) -> Option<Api> {
    let target = origin_form(target)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    classify(method, path, query)
}

/// The container or network a request acts on: `{name}` of a `/containers/{name}/...` or
/// `/networks/{name}/...` endpoint, decoded as the engine reads it, and the request target to
/// send instead once the name is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectTarget {
    /// The object's name or ID (or a prefix of an ID) as the request gives it.
    pub name: String,
    /// `containers` or `networks`.
    collection: &'static str,
    /// The version prefix (`/v1.43`, or empty).
    prefix: String,
    /// What follows the name in the decoded path (`/exec`, or empty for a delete).
    rest: String,
    /// The query, as it came.
    query: Option<String>,
}

impl ObjectTarget {
    /// The same request target naming the object by `id` (a full ID: the engine matches it
    /// before any name or ID prefix).
    pub fn with_id(&self, id: &str) -> String {
        // The rest was decoded: encoded again, a checkpoint's name cannot turn into a query or
        // be decoded twice.
        let rest = percent_encode(&self.rest, b"/");
        let mut target = format!("{}/{}/{id}{rest}", self.prefix, self.collection);
        if let Some(query) = &self.query {
            target.push('?');
            target.push_str(query);
        }
        target
    }
}

/// The container a request acts on ([`ObjectTarget`]); `None` for requests that name no
/// container (list, create, prune) and for targets that classify to nothing.
///
/// ```
/// use eci_policy::docker_api::container_of_target;
/// let exec = container_of_target("POST", "/v1.43/containers/web%2D1/exec").unwrap();
/// assert_eq!(exec.name, "web-1");
/// assert_eq!(exec.with_id("4f2a"), "/v1.43/containers/4f2a/exec");
/// let delete = container_of_target("DELETE", "/containers/db?force=1").unwrap();
/// assert_eq!((delete.name.as_str(), delete.with_id("9c").as_str()), ("db", "/containers/9c?force=1"));
/// assert_eq!(container_of_target("GET", "/v1.43/containers/json"), None);
/// ```
pub fn container_of_target(method: &str, target: &str) -> Option<ObjectTarget> {
    let api = classify_target(method, target)?;
    if matches!(
        api,
        Api::ContainerList | Api::ContainerCreate | Api::ContainerPrune
    ) {
        return None;
    }
    let (decoded, query) = decoded_path(target)?;
    let tail = strip_version(&decoded)?;
    let prefix = decoded[..decoded.len() - tail.len()].to_string();
    let tail = tail.strip_prefix("/containers/")?;
    let name = match api {
        Api::ContainerDelete => tail,
        Api::CheckpointDelete => tail.split('/').next()?,
        Api::ContainerAttachWebsocket => tail.strip_suffix("/attach/ws")?,
        _ => action(tail)?.0,
    };
    (!name.is_empty()).then(|| ObjectTarget {
        name: name.to_string(),
        collection: "containers",
        prefix,
        rest: tail[name.len()..].to_string(),
        query,
    })
}

/// The exec instance a request acts on (`{id}` of `/exec/{id}/start`, `/resize` or `/json`).
///
/// ```
/// use eci_policy::docker_api::exec_of_target;
/// assert_eq!(exec_of_target("POST", "/v1.43/exec/77ab/start").as_deref(), Some("77ab"));
/// assert_eq!(exec_of_target("POST", "/v1.43/containers/x/exec"), None);
/// ```
pub fn exec_of_target(method: &str, target: &str) -> Option<String> {
    let api = classify_target(method, target)?;
    if !matches!(api, Api::ExecStart | Api::ExecResize | Api::ExecInspect) {
        return None;
    }
    let (decoded, _) = decoded_path(target)?;
    let tail = strip_version(&decoded)?.strip_prefix("/exec/")?;
    // The engine's route takes everything before the action as the ID, as for containers.
    let (id, _) = action(tail)?;
    (!id.is_empty()).then(|| id.to_string())
}

/// The volume a request acts on (`{name}` of `/volumes/{name}` for an inspect, an update or a
/// remove), decoded as the engine reads it: everything after `/volumes/`.
///
/// ```
/// use eci_policy::docker_api::volume_of_target;
/// assert_eq!(volume_of_target("DELETE", "/v1.43/volumes/db%2D1?force=1").as_deref(), Some("db-1"));
/// assert_eq!(volume_of_target("GET", "/v1.43/volumes"), None);
/// assert_eq!(volume_of_target("POST", "/v1.43/volumes/prune"), None);
/// ```
pub fn volume_of_target(method: &str, target: &str) -> Option<String> {
    let api = classify_target(method, target)?;
    if !matches!(
        api,
        Api::VolumeInspect | Api::VolumeUpdate | Api::VolumeDelete
    ) {
        return None;
    }
    let (decoded, _) = decoded_path(target)?;
    let name = strip_version(&decoded)?.strip_prefix("/volumes/")?;
    (!name.is_empty()).then(|| name.to_string())
}

/// The network a request acts on (`{name}` of `/networks/{name}` for an inspect or a remove,
/// and of `/networks/{name}/connect` or `/disconnect`), decoded as the engine reads it.
///
/// ```
/// use eci_policy::docker_api::network_of_target;
/// let connect = network_of_target("POST", "/v1.43/networks/app/connect").unwrap();
/// assert_eq!(connect.name, "app");
/// assert_eq!(connect.with_id("9f"), "/v1.43/networks/9f/connect");
/// let remove = network_of_target("DELETE", "/networks/db%2Dnet").unwrap();
/// assert_eq!((remove.name.as_str(), remove.with_id("9f").as_str()), ("db-net", "/networks/9f"));
/// assert_eq!(network_of_target("POST", "/v1.43/networks/create"), None);
/// ```
pub fn network_of_target(method: &str, target: &str) -> Option<ObjectTarget> {
    let api = classify_target(method, target)?;
    let (decoded, query) = decoded_path(target)?;
    let tail = strip_version(&decoded)?;
    let prefix = decoded[..decoded.len() - tail.len()].to_string();
    let tail = tail.strip_prefix("/networks/")?;
    let name = match api {
        Api::NetworkInspect | Api::NetworkDelete => tail,
        Api::NetworkConnect | Api::NetworkDisconnect => action(tail)?.0,
        _ => return None,
    };
    (!name.is_empty()).then(|| ObjectTarget {
        name: name.to_string(),
        collection: "networks",
        prefix,
        rest: tail[name.len()..].to_string(),
        query,
    })
}

/// A container named in a request's query (`POST /commit?container=web`), decoded as the
/// engine's form parser decodes it, and the rest of the query as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryContainer {
    /// The container's name or ID (or a prefix of an ID) as the query gives it.
    pub name: String,
    /// The other parameters, as they came.
    others: Vec<String>,
    key: &'static str,
}

impl QueryContainer {
    /// The query naming the container by `id` instead, once.
    pub fn with_id(&self, id: &str) -> String {
        let mut pairs = self.others.clone();
        pairs.push(format!("{}={id}", self.key));
        pairs.join("&")
    }
}

/// Why a query cannot be read as the engine reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A pair that does not decode, or holds `;` (which Go's parser skips).
    #[error("a query parameter does not decode, or holds ';'")]
    Undecodable,
    /// The parameter twice (the engine takes the first; the proxy would check one of them).
    #[error("the query gives '{0}' twice")]
    Twice(&'static str),
    /// The `filters` parameter is not JSON the engine reads as filters.
    #[error("the query's filters are not an object of lists or of sets of strings")]
    Filters,
}

/// The container the query parameter `key` names, if any: `Ok(None)` when there is none.
///
/// ```
/// use eci_policy::docker_api::query_container;
/// let found = query_container("repo=x&contain%65r=web&tag=1", "container").unwrap().unwrap();
/// assert_eq!(found.name, "web");
/// assert_eq!(found.with_id("4f2a"), "repo=x&tag=1&container=4f2a");
/// assert_eq!(query_container("repo=x", "container"), Ok(None));
/// assert!(query_container("container=a&container=b", "container").is_err());
/// ```
pub fn query_container(
    query: &str,
    key: &'static str,
) -> Result<Option<QueryContainer>, QueryError> {
    if query.contains(';') {
        return Err(QueryError::Undecodable);
    }
    let mut name = None;
    let mut others = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded_key = percent_decode(raw_key, true).ok_or(QueryError::Undecodable)?;
        let value = percent_decode(raw_value, true).ok_or(QueryError::Undecodable)?;
        if decoded_key != key {
            others.push(pair.to_string());
        } else if name.replace(value).is_some() {
            return Err(QueryError::Twice(key));
        }
    }
    Ok(name.map(|name| QueryContainer { name, others, key }))
}

/// `query` with `label` (`key=value`) added to its `filters`, for a list or a prune the engine
/// should answer only for what carries the label: the engine keeps an object only if it
/// matches every `label` filter. The filters are sent on as read here, in the engine's
/// current form (`{"label":{"key=value":true}}`; the older form of lists is read too), the
/// other parameters as they came.
///
/// ```
/// use eci_policy::docker_api::with_label_filter;
/// let query = with_label_filter("filters=%7B%22label%22%3A%5B%22app%22%5D%7D&all=1", "org.eci.runtime=eci").unwrap();
/// assert_eq!(query, "all=1&filters=%7B%22label%22%3A%7B%22app%22%3Atrue%2C%22org.eci.runtime%3Deci%22%3Atrue%7D%7D");
/// assert!(with_label_filter("filters=1", "a=b").is_err());
/// assert!(with_label_filter("filters=%7B%7D&filters=%7B%7D", "a=b").is_err());
/// ```
pub fn with_label_filter(query: &str, label: &str) -> Result<String, QueryError> {
    use serde_json::{Map, Value};
    let mut filters = None;
    let mut others = Vec::new();
    if query.contains(';') {
        return Err(QueryError::Undecodable);
    }
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(raw_key, true).ok_or(QueryError::Undecodable)?;
        let value = percent_decode(raw_value, true).ok_or(QueryError::Undecodable)?;
        if key != "filters" {
            others.push(pair.to_string());
        } else if filters.replace(value).is_some() {
            return Err(QueryError::Twice("filters"));
        }
    }
    let mut fields = match filters.as_deref() {
        None | Some("") => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => fields,
            _ => return Err(QueryError::Filters),
        },
    };
    for values in fields.values_mut() {
        *values = filter_values_as_set(values).ok_or(QueryError::Filters)?;
    }
    let labels = fields
        .entry("label")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(labels) = labels {
        labels.insert(label.to_string(), Value::Bool(true));
    }
    let encoded = percent_encode(&Value::Object(fields).to_string(), b"");
    others.push(format!("filters={encoded}"));
    Ok(others.join("&"))
}

/// One filter's values as the engine's current form, a set of strings (`{"v":true}`), from it
/// or from the older list of strings; `None` for anything else, which the engine refuses.
fn filter_values_as_set(values: &serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    let set = match values {
        Value::Object(set) if set.values().all(Value::is_boolean) => set.clone(),
        Value::Array(list) => list
            .iter()
            .map(|v| Some((v.as_str()?.to_string(), Value::Bool(true))))
            .collect::<Option<_>>()?,
        _ => return None,
    };
    Some(Value::Object(set))
}

/// Why a request is refused on a proxied socket for what its query asks, if it is (ECI.md
/// guarantee 4: builds may not use the host's network nor BuildKit's entitlements):
/// - BuildKit's endpoints (`/session`, `/grpc`) and builds (`version=2`): BuildKit runs its
///   steps with runc whatever the engine's runtimes, and asks for entitlements such as
///   `network.host` inside gRPC, where the proxy cannot look;
/// - a classic build with a parameter the proxy does not know, a `cgroupparent`, or a
///   `networkmode` other than the default network or none (the host's, a container's, a
///   named network no scoping of the proxy's would have vetted);
/// - a build whose context is fetched from a `remote` URL or Git repository, and an import
///   from a `fromSrc` URL: the engine fetches them from the host's network, where the
///   container could not reach (a cloud's metadata service, the host's own services), and
///   hands back what it got (a text file becomes the Dockerfile, whose errors quote it; a
///   tarball becomes an image). A context or an image sent in the request's body is fine;
/// - checkpoints (list, create, remove, and a start from one): the engine makes, lists, tars
///   and removes, as root, the host directory the request names (`dir`, `CheckpointDir`,
///   `checkpoint-dir`), and eci has no checkpoints anyway;
/// - the swarm's secrets (`GET /swarm` shows the join tokens, `/swarm/unlockkey` the key): a
///   node of the caller's could join as a manager and schedule tasks here with any runtime;
/// - a swarm's service and task logs: the tasks run with the engine's default runtime, and a
///   container's logs are readable only for containers of the proxy's runtime.
///
/// ```
/// use eci_policy::docker_api::{query_refusal, Api};
/// assert!(query_refusal(Api::Build, "t=app&networkmode=host").is_some());
/// assert!(query_refusal(Api::Build, "remote=http://169.254.169.254/").is_some());
/// assert!(query_refusal(Api::ImageImport, "fromSrc=http://10.0.0.1/x.tar").is_some());
/// assert_eq!(query_refusal(Api::ImageImport, "fromSrc=-&repo=app"), None);
/// assert!(query_refusal(Api::Build, "t=app&version=2").is_some());
/// assert!(query_refusal(Api::Grpc, "").is_some());
/// assert_eq!(query_refusal(Api::Build, "t=app&networkmode=none"), None);
/// assert_eq!(query_refusal(Api::ContainerList, "all=1"), None);
/// assert!(query_refusal(Api::CheckpointDelete, "dir=/").is_some());
/// assert!(query_refusal(Api::ContainerStart, "checkpoint=c&checkpoint-dir=/etc").is_some());
/// assert_eq!(query_refusal(Api::ContainerStart, ""), None);
/// assert!(query_refusal(Api::SwarmInspect, "").is_some());
/// assert!(query_refusal(Api::ServiceLogs, "stdout=1").is_some());
/// assert!(query_refusal(Api::TaskInspect, "").is_some());
/// assert!(query_refusal(Api::ServiceList, "").is_some());
/// assert!(query_refusal(Api::ServiceDelete, "").is_some());
/// assert!(query_refusal(Api::PluginDisable, "force=1").is_some());
/// assert!(query_refusal(Api::ConfigList, "").is_some());
/// ```
pub fn query_refusal(api: Api, query: &str) -> Option<&'static str> {
    match api {
        Api::Session | Api::Grpc => {
            Some("BuildKit's session and gRPC endpoints carry options the proxy cannot check")
        }
        // The engine creates, lists and removes (as root) the directory a checkpoint request
        // names (`dir`, `CheckpointDir`), anywhere on the host; eci has no checkpoints anyway.
        Api::CheckpointList | Api::CheckpointCreate | Api::CheckpointDelete => {
            Some("checkpoint requests name host directories the engine makes and removes as root")
        }
        Api::ContainerStart => {
            let Ok(values) = query_values(query) else {
                return Some("the start's query does not decode");
            };
            values
                .iter()
                .any(|(key, _)| key == "checkpoint" || key == "checkpoint-dir")
                .then_some("a start from a checkpoint has the engine read a host directory as root")
        }
        // Join tokens and the unlock key would let a node of the caller's join as a manager
        // and schedule tasks here with any runtime and any bind.
        Api::SwarmInspect | Api::SwarmUnlockKey => {
            Some("the swarm's join tokens and unlock key would let another node manage this one")
        }
        // A swarm's tasks run with the engine's default runtime, not the proxy's: their output
        // is another tenant's, as a container of another runtime's is, and so are their specs
        // (the environment among them, which often holds secrets).
        Api::ServiceLogs | Api::TaskLogs => Some(
            "a swarm's tasks run outside this socket's runtime; their logs are not its to read",
        ),
        Api::ServiceList | Api::ServiceInspect | Api::TaskList | Api::TaskInspect => Some(
            "a swarm's services and tasks run outside this socket's runtime; their specs (their environment among them) are not its to read",
        ),
        // Nor its to take away from the swarm's other tenants, or to take this node out of it.
        Api::ServiceDelete | Api::NodeDelete | Api::SwarmLeave => Some(
            "a swarm's services and nodes run outside this socket's runtime; they are not its to remove",
        ),
        // A config's data is a service's (inspect and the list return it), and neither a
        // config nor a secret is this socket's to remove from the services that use it.
        Api::ConfigList | Api::ConfigInspect | Api::ConfigDelete | Api::SecretDelete => Some(
            "a swarm's configs and secrets belong to services outside this socket's runtime",
        ),
        // The engine's plugins are its administrator's: disabling or removing one (an
        // authorization plugin among them) changes what the engine does for every client.
        Api::PluginDisable | Api::PluginDelete => Some(
            "the engine's plugins are its administrator's: disabling or removing one (an authorization plugin, say) changes the engine for every client",
        ),
        Api::Build => {
            let Ok(values) = query_values(query) else {
                return Some("the build's query does not decode");
            };
            // The engine reads the first value of each parameter.
            let first = |key: &str| values.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            let unknown = values
                .iter()
                .find(|(k, _)| !BUILD_PARAMETERS.contains(&k.as_str()));
            // Exactly as spelt: the engine takes "Bridge" for a user network of that name.
            let network = first("networkmode");
            if unknown.is_some_and(|(k, _)| k == "session") {
                Some("BuildKit sessions (session=) run outside eci, with options the proxy cannot check")
            } else if unknown.is_some() {
                // Each one the engine copies into the step containers' host configuration would
                // need the checks a create gets: only those known to be harmless pass.
                Some("a build parameter the proxy does not know is refused")
            } else if first("cgroupparent").is_some_and(|v| !v.is_empty()) {
                Some("builds may not choose their cgroup (cgroupparent), as creates may not")
            } else if network
                .is_some_and(|n| !["", "default", "bridge", "none"].contains(&n.as_str()))
            {
                // A named network would put every step on it, a network no check of the
                // proxy's (it scopes networks for creates and connects) would have vetted.
                Some("builds use the default network or none (networkmode=default, bridge or none)")
            } else if first("version").is_some_and(|v| v == "2") {
                Some("BuildKit builds (version=2) run outside eci, with options the proxy cannot check")
            } else if first("remote").is_some_and(|v| !v.is_empty()) {
                Some(
                    "a build context fetched by the engine (remote=) comes from the host's network",
                )
            } else {
                None
            }
        }
        // The engine runs the host's ps, as root in the host's PID namespace, with these
        // arguments, and shows what the PID column says is the container's: a renamed column
        // (`-oargs=PID`), columns that shift it, or a selection of host processes (`-C`, `-p`)
        // show host processes' command lines and environments.
        Api::ContainerTop => {
            let Ok(values) = query_values(query) else {
                return Some("the top's query does not decode");
            };
            let ps_args = values.iter().find(|(k, _)| k == "ps_args");
            match ps_args.is_none_or(|(_, args)| plain_ps_options(args)) {
                true => None,
                false => Some(
                    "top's ps options may only choose among ps's standard formats (such as -ef, \
                     -eLf, aux): the engine runs them on the host, where others select or \
                     relabel host processes",
                ),
            }
        }
        Api::ImageImport => {
            let Ok(values) = query_values(query) else {
                return Some("the import's query does not decode");
            };
            // Anything but "-" (the request's body) is a URL the engine fetches.
            match values.iter().find(|(k, _)| k == "fromSrc") {
                Some((_, source)) if source == "-" => None,
                _ => Some(
                    "an import the engine fetches (fromSrc= other than -) comes from the host's \
                     network",
                ),
            }
        }
        _ => None,
    }
}

/// Whether `args`, a `docker top` request's `ps_args` (split on spaces by the engine), only
/// picks among ps's standard formats: options that take no argument and neither select
/// processes nor name columns. Empty is the engine's default, `-ef`.
pub fn plain_ps_options(args: &str) -> bool {
    const UNIX: &str = "AacdeFfHjLly";
    const BSD: &str = "aefjluvwx";
    let plain = |word: &str| match word.strip_prefix('-') {
        Some(letters) => !letters.is_empty() && letters.chars().all(|c| UNIX.contains(c)),
        None => !word.is_empty() && word.chars().all(|c| BSD.contains(c)),
    };
    args.is_empty() || args.split(' ').all(plain)
}

/// What a request makes the engine run that is not a container whose runtime the proxy sets
/// in its create body ([`outside_runtime`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutsideRuntime {
    /// A plugin: it runs as host root with whatever privileges it was granted (host network,
    /// mounts of host paths, devices, capabilities), under no runtime the proxy chooses.
    Plugin,
    /// Swarm: the node runs the tasks managers give it (containers with the engine's default
    /// runtime, or plugins), and a service names neither runtime nor eci's settings.
    Swarm,
    /// A classic build: its steps run in containers the engine creates itself, with its
    /// default runtime. Safe only when that is the proxy's runtime.
    DefaultRuntime,
}

impl OutsideRuntime {
    /// Why it is refused, for the 403's message.
    pub fn why(self) -> &'static str {
        match self {
            OutsideRuntime::Plugin => {
                "plugins run as host root with the privileges they are granted, outside eci"
            }
            OutsideRuntime::Swarm => {
                "swarm tasks run with the engine's default runtime or as plugins, which the \
                 proxy cannot set"
            }
            OutsideRuntime::DefaultRuntime => {
                "a classic build runs its steps with the engine's default runtime"
            }
        }
    }
}

/// Whether `api` has the engine run something outside the runtime the proxy gives the
/// containers it creates (ECI.md guarantee 10: containers made through an allowed socket,
/// build containers included, get eci's protections). The proxy refuses
/// [`OutsideRuntime::Plugin`] and [`OutsideRuntime::Swarm`] requests whatever the command
/// list says, and [`OutsideRuntime::DefaultRuntime`] ones unless the engine's default runtime
/// is its own. Disabling, removing or listing plugins and leaving a swarm stay the command
/// list's business.
///
/// ```
/// use eci_policy::docker_api::{outside_runtime, Api, OutsideRuntime};
/// assert_eq!(outside_runtime(Api::PluginPull), Some(OutsideRuntime::Plugin));
/// assert_eq!(outside_runtime(Api::ServiceCreate), Some(OutsideRuntime::Swarm));
/// assert_eq!(outside_runtime(Api::Build), Some(OutsideRuntime::DefaultRuntime));
/// assert_eq!(outside_runtime(Api::ContainerCreate), None);
/// assert_eq!(outside_runtime(Api::PluginDisable), None);
/// ```
pub fn outside_runtime(api: Api) -> Option<OutsideRuntime> {
    match api {
        Api::PluginPull
        | Api::PluginEnable
        | Api::PluginUpgrade
        | Api::PluginCreate
        | Api::PluginSet => Some(OutsideRuntime::Plugin),
        // A node update can make this node available (or a manager) to tasks already
        // scheduled, and a swarm update can change what the managers hand out.
        Api::SwarmInit
        | Api::SwarmJoin
        | Api::SwarmUpdate
        | Api::NodeUpdate
        | Api::ServiceCreate
        | Api::ServiceUpdate => Some(OutsideRuntime::Swarm),
        Api::Build => Some(OutsideRuntime::DefaultRuntime),
        _ => None,
    }
}

/// The parameters of a classic build (`POST /build`) the proxy lets through: what the image
/// is built from and named, caching, and the step containers' resources, as a create may set
/// them. `networkmode`, `cgroupparent`, `remote` and `version` are judged by value.
const BUILD_PARAMETERS: &[&str] = &[
    "dockerfile",
    "t",
    "extrahosts",
    "remote",
    "q",
    "nocache",
    "cachefrom",
    "pull",
    "rm",
    "forcerm",
    "memory",
    "memswap",
    "cpushares",
    "cpusetcpus",
    "cpusetmems",
    "cpuperiod",
    "cpuquota",
    "buildargs",
    "shmsize",
    "squash",
    "labels",
    "networkmode",
    "platform",
    "target",
    "outputs",
    "version",
    "ulimits",
    "cgroupparent",
    "buildid",
    // As a create's HostConfig.SecurityOpt and Isolation, which pass too: the steps run with
    // the holder's runtime (a build passes only then), which enforces its own (the engine
    // itself refuses security options for a build on Linux).
    "securityopt",
    "isolation",
];

/// Whether a request classified as `api` with `query` also returns what `docker logs` would:
/// an attach (or its websocket) whose `logs` parameter is true replays the container's output
/// so far. The engine reads the first value as Go's `httputils.BoolValue` does: anything but
/// empty, `0`, `no`, `false` and `none` (any case) is true. A query that does not decode
/// counts as one that does.
pub fn reads_logs(api: Api, query: &str) -> bool {
    if !matches!(api, Api::ContainerAttach | Api::ContainerAttachWebsocket) {
        return false;
    }
    query_flag(query, "logs").unwrap_or(true)
}

/// The boolean parameter `key` of `query` as the engine reads it (Go's `httputils.BoolValue`
/// of its first value): anything but absent, empty, `0`, `no`, `false` and `none` (any case)
/// is true. `None` for a query that does not decode.
///
/// ```
/// use eci_policy::docker_api::query_flag;
/// assert_eq!(query_flag("force=1&v=0", "force"), Some(true));
/// assert_eq!(query_flag("force=False", "force"), Some(false));
/// assert_eq!(query_flag("v=1", "force"), Some(false));
/// ```
pub fn query_flag(query: &str, key: &str) -> Option<bool> {
    let values = query_values(query).ok()?;
    let first = values.iter().find(|(k, _)| k == key);
    Some(first.is_some_and(|(_, value)| {
        let value = value.trim().to_lowercase();
        !["", "0", "no", "false", "none"].contains(&value.as_str())
    }))
}

/// Every parameter of `query`, decoded as the engine's form parser decodes it, in order. A
/// query with `;` is refused: Go's parser skips pairs holding one, where this one would not.
fn query_values(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    if query.contains(';') {
        return Err(QueryError::Undecodable);
    }
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key, true).ok_or(QueryError::Undecodable)?;
            let value = percent_decode(value, true).ok_or(QueryError::Undecodable)?;
            Ok((key, value))
        })
        .collect()
}

/// The request target's path, decoded as the engine decodes it, and its query as it came.
fn decoded_path(target: &str) -> Option<(String, Option<String>)> {
    let target = origin_form(target)?;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (target, None),
    };
    let decoded = if path.contains('%') {
        percent_decode(path, false)?
    } else {
        path.to_string()
    };
    Some((decoded, query))
}

/// A request target in origin form (`/path?query`), as the engine reads it: an origin-form
/// target itself, or an absolute URL's path and query. `None` for anything else, and for an
/// absolute URL whose authority is more than a host and port or that has no path: Go's parser
/// ends the authority at the first `?`, so for `http://d?x/containers/web/top?ps_args=...` the
/// engine's query is not the one after the first `/`.
///
/// ```
/// use eci_policy::docker_api::origin_form;
/// assert_eq!(origin_form("/v1.45/info?x=1"), Some("/v1.45/info?x=1"));
/// assert_eq!(origin_form("http://docker:2375/v1.45/info"), Some("/v1.45/info"));
/// assert_eq!(origin_form("http://d?x/containers/web/top?ps_args=-e"), None);
/// assert_eq!(origin_form("http://docker"), None);
/// assert_eq!(origin_form("*"), None);
/// ```
pub fn origin_form(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return Some(target);
    }
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    let host_and_port = |b: u8| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b);
    authority.bytes().all(host_and_port).then_some(path)
}

fn classify_decoded(method: Method, path: &str, query: &str) -> Option<Api> {
    let path = strip_version(path)?;
    if !is_clean(path) {
        return None;
    }
    let (head, tail) = match path[1..].split_once('/') {
        Some((head, tail)) => (head, Some(tail)),
        None => (&path[1..], None),
    };
    use Method::*;
    match (method, head, tail) {
        (Get, "_ping", None) => Some(Api::Ping),
        (Head, "_ping", None) => Some(Api::PingHead),
        (Post, "auth", None) => Some(Api::Auth),
        (Get, "info", None) => Some(Api::Info),
        (Get, "version", None) => Some(Api::Version),
        (Get, "events", None) => Some(Api::Events),
        (Get, "system", Some("df")) => Some(Api::SystemDf),
        (Post, "commit", None) => Some(Api::Commit),
        (Post, "session", None) => Some(Api::Session),
        (Post, "grpc", None) => Some(Api::Grpc),
        (_, "build", tail) => build(method, tail),
        (_, "containers", Some(tail)) => containers(method, tail),
        (_, "exec", Some(tail)) => exec(method, tail),
        (_, "images", Some(tail)) => images(method, tail, query),
        (_, "volumes", tail) => volumes(method, tail),
        (_, "networks", tail) => networks(method, tail),
        (_, "plugins", tail) => plugins(method, tail),
        (_, "swarm", tail) => swarm(method, tail),
        (_, "nodes", tail) => nodes(method, tail),
        (_, "services", tail) => services(method, tail),
        (Get, "distribution", Some(tail)) => {
            (action(tail)?.1 == "json").then_some(Api::DistributionInspect)
        }
        (_, "tasks", tail) => tasks(method, tail),
        (_, "secrets", tail) => secrets(method, tail),
        (_, "configs", tail) => configs(method, tail),
        _ => None,
    }
}

/// The path without its `/v{version}` prefix (the engine's router takes `[0-9.]+`).
fn strip_version(path: &str) -> Option<&str> {
    if !path.starts_with('/') {
        return None;
    }
    let Some(rest) = path.strip_prefix("/v") else {
        return Some(path);
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Some(path);
    }
    Some(&rest[end..]).filter(|p| !p.is_empty())
}

/// The engine's router redirects paths with empty, `.` or `..` segments instead of serving
/// them; the only route with a trailing slash is `/networks/`.
fn is_clean(path: &str) -> bool {
    path == "/networks/"
        || (path.len() > 1
            && path[1..]
                .split('/')
                .all(|segment| !segment.is_empty() && segment != "." && segment != ".."))
}

/// Splits `{name}/action`: the name is everything before the last segment.
fn action(tail: &str) -> Option<(&str, &str)> {
    tail.rsplit_once('/')
}

/// `{id}/action` where the id is one segment.
fn id_action(tail: &str) -> Option<&str> {
    let (id, action) = tail.split_once('/')?;
    (!id.is_empty() && !action.contains('/')).then_some(action)
}

fn one_segment(tail: &str) -> bool {
    !tail.contains('/')
}

fn build(method: Method, tail: Option<&str>) -> Option<Api> {
    match (method, tail) {
        (Method::Post, None) => Some(Api::Build),
        (Method::Post, Some("prune")) => Some(Api::BuildPrune),
        (Method::Post, Some("cancel")) => Some(Api::BuildCancel),
        _ => None,
    }
}

fn containers(method: Method, tail: &str) -> Option<Api> {
    use Method::*;
    match (method, tail) {
        (Get, "json") => return Some(Api::ContainerList),
        (Post, "create") => return Some(Api::ContainerCreate),
        (Post, "prune") => return Some(Api::ContainerPrune),
        (Delete, tail) if is_checkpoint(tail) => return Some(Api::CheckpointDelete),
        (Delete, _) => return Some(Api::ContainerDelete),
        _ => {}
    }
    let (name, last) = action(tail)?;
    if last == "ws" {
        let attach = name.strip_suffix("/attach").filter(|n| !n.is_empty());
        return (method == Get && attach.is_some()).then_some(Api::ContainerAttachWebsocket);
    }
    Some(match (method, last) {
        (Head, "archive") => Api::ContainerArchiveInfo,
        (Get, "archive") => Api::ContainerArchiveGet,
        (Put, "archive") => Api::ContainerArchivePut,
        (Get, "json") => Api::ContainerInspect,
        (Get, "top") => Api::ContainerTop,
        (Get, "logs") => Api::ContainerLogs,
        (Get, "changes") => Api::ContainerChanges,
        (Get, "export") => Api::ContainerExport,
        (Get, "stats") => Api::ContainerStats,
        (Get, "checkpoints") => Api::CheckpointList,
        (Post, "checkpoints") => Api::CheckpointCreate,
        (Post, last) => container_action(last)?,
        _ => return None,
    })
}

fn container_action(action: &str) -> Option<Api> {
    Some(match action {
        "resize" => Api::ContainerResize,
        "start" => Api::ContainerStart,
        "stop" => Api::ContainerStop,
        "restart" => Api::ContainerRestart,
        "kill" => Api::ContainerKill,
        "update" => Api::ContainerUpdate,
        "rename" => Api::ContainerRename,
        "pause" => Api::ContainerPause,
        "unpause" => Api::ContainerUnpause,
        "attach" => Api::ContainerAttach,
        "wait" => Api::ContainerWait,
        "exec" => Api::ExecCreate,
        _ => return None,
    })
}

/// `{id}/checkpoints/{checkpoint}`, each one segment. The engine routes checkpoints before
/// containers, so this wins over deleting a container of that (impossible) name.
fn is_checkpoint(tail: &str) -> bool {
    let mut parts = tail.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(_), Some("checkpoints"), Some(_), None)
    )
}

fn exec(method: Method, tail: &str) -> Option<Api> {
    match (method, action(tail)?.1) {
        (Method::Get, "json") => Some(Api::ExecInspect),
        (Method::Post, "start") => Some(Api::ExecStart),
        (Method::Post, "resize") => Some(Api::ExecResize),
        _ => None,
    }
}

fn images(method: Method, tail: &str, query: &str) -> Option<Api> {
    use Method::*;
    match (method, tail) {
        (Get, "json") => return Some(Api::ImageList),
        (Get, "search") => return Some(Api::ImageSearch),
        (Get, "get") => return Some(Api::ImageSaveMany),
        (Post, "load") => return Some(Api::ImageLoad),
        (Post, "create") => return pull_or_import(query),
        (Post, "prune") => return Some(Api::ImagePrune),
        (Delete, _) => return Some(Api::ImageDelete),
        _ => {}
    }
    match (method, action(tail)?.1) {
        (Get, "get") => Some(Api::ImageSave),
        (Get, "history") => Some(Api::ImageHistory),
        (Get, "json") => Some(Api::ImageInspect),
        (Post, "push") => Some(Api::ImagePush),
        (Post, "tag") => Some(Api::ImageTag),
        _ => None,
    }
}

/// `POST /images/create` pulls when `fromImage` is set and imports otherwise, as the engine
/// decides. A query the engine would reject (bad escapes, `;`) classifies to nothing.
fn pull_or_import(query: &str) -> Option<Api> {
    let mut from_image = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        if pair.contains(';') {
            return None;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_query(key)?;
        decode_query(value)?;
        if key == "fromImage" && from_image.is_none() {
            from_image = Some(!value.is_empty());
        }
    }
    Some(if from_image == Some(true) {
        Api::ImagePull
    } else {
        Api::ImageImport
    })
}

fn volumes(method: Method, tail: Option<&str>) -> Option<Api> {
    use Method::*;
    match (method, tail) {
        (Get, None) => Some(Api::VolumeList),
        (Post, Some("create")) => Some(Api::VolumeCreate),
        (Post, Some("prune")) => Some(Api::VolumePrune),
        (Get, Some(_)) => Some(Api::VolumeInspect),
        (Put, Some(_)) => Some(Api::VolumeUpdate),
        (Delete, Some(_)) => Some(Api::VolumeDelete),
        _ => None,
    }
}

fn networks(method: Method, tail: Option<&str>) -> Option<Api> {
    use Method::*;
    match (method, tail) {
        (Get, None) => Some(Api::NetworkList),
        (Get, Some("")) => Some(Api::NetworkListSlash),
        (_, Some("")) => None,
        (Get, Some(_)) => Some(Api::NetworkInspect),
        (Delete, Some(_)) => Some(Api::NetworkDelete),
        (Post, Some("create")) => Some(Api::NetworkCreate),
        (Post, Some("prune")) => Some(Api::NetworkPrune),
        (Post, Some(tail)) => match action(tail)?.1 {
            "connect" => Some(Api::NetworkConnect),
            "disconnect" => Some(Api::NetworkDisconnect),
            _ => None,
        },
        _ => None,
    }
}

fn plugins(method: Method, tail: Option<&str>) -> Option<Api> {
    use Method::*;
    match (method, tail) {
        (Get, None) => Some(Api::PluginList),
        (Get, Some("privileges")) => Some(Api::PluginPrivileges),
        (Post, Some("pull")) => Some(Api::PluginPull),
        (Post, Some("create")) => Some(Api::PluginCreate),
        (Delete, Some(_)) => Some(Api::PluginDelete),
        (Get, Some(tail)) => (action(tail)?.1 == "json").then_some(Api::PluginInspect),
        (Post, Some(tail)) => Some(match action(tail)?.1 {
            "enable" => Api::PluginEnable,
            "disable" => Api::PluginDisable,
            "upgrade" => Api::PluginUpgrade,
            "push" => Api::PluginPush,
            "set" => Api::PluginSet,
            _ => return None,
        }),
        _ => None,
    }
}

fn swarm(method: Method, tail: Option<&str>) -> Option<Api> {
    use Method::*;
    Some(match (method, tail) {
        (Get, None) => Api::SwarmInspect,
        (Get, Some("unlockkey")) => Api::SwarmUnlockKey,
        (Post, Some("init")) => Api::SwarmInit,
        (Post, Some("join")) => Api::SwarmJoin,
        (Post, Some("leave")) => Api::SwarmLeave,
        (Post, Some("update")) => Api::SwarmUpdate,
        (Post, Some("unlock")) => Api::SwarmUnlock,
        _ => return None,
    })
}

fn nodes(method: Method, tail: Option<&str>) -> Option<Api> {
    use Method::*;
    match (method, tail) {
        (Get, None) => Some(Api::NodeList),
        (Get, Some(id)) if one_segment(id) => Some(Api::NodeInspect),
        (Delete, Some(id)) if one_segment(id) => Some(Api::NodeDelete),
        (Post, Some(tail)) => (id_action(tail)? == "update").then_some(Api::NodeUpdate),
        _ => None,
    }
}

fn services(method: Method, tail: Option<&str>) -> Option<Api> {
    use Method::*;
    match (method, tail) {
        (Get, None) => Some(Api::ServiceList),
        (Post, Some("create")) => Some(Api::ServiceCreate),
        (Get, Some(id)) if one_segment(id) => Some(Api::ServiceInspect),
        (Delete, Some(id)) if one_segment(id) => Some(Api::ServiceDelete),
        (Get, Some(tail)) => (id_action(tail)? == "logs").then_some(Api::ServiceLogs),
        (Post, Some(tail)) => (id_action(tail)? == "update").then_some(Api::ServiceUpdate),
        _ => None,
    }
}

fn tasks(method: Method, tail: Option<&str>) -> Option<Api> {
    match (method, tail) {
        (Method::Get, None) => Some(Api::TaskList),
        (Method::Get, Some(id)) if one_segment(id) => Some(Api::TaskInspect),
        (Method::Get, Some(tail)) => (id_action(tail)? == "logs").then_some(Api::TaskLogs),
        _ => None,
    }
}

/// Secrets and configs have the same five endpoints.
struct SwarmObject {
    list: Api,
    create: Api,
    inspect: Api,
    delete: Api,
    update: Api,
}

fn swarm_object(method: Method, tail: Option<&str>, object: SwarmObject) -> Option<Api> {
    use Method::*;
    match (method, tail) {
        (Get, None) => Some(object.list),
        (Post, Some("create")) => Some(object.create),
        (Get, Some(id)) if one_segment(id) => Some(object.inspect),
        (Delete, Some(id)) if one_segment(id) => Some(object.delete),
        (Post, Some(tail)) => (id_action(tail)? == "update").then_some(object.update),
        _ => None,
    }
}

fn secrets(method: Method, tail: Option<&str>) -> Option<Api> {
    let object = SwarmObject {
        list: Api::SecretList,
        create: Api::SecretCreate,
        inspect: Api::SecretInspect,
        delete: Api::SecretDelete,
        update: Api::SecretUpdate,
    };
    swarm_object(method, tail, object)
}

fn configs(method: Method, tail: Option<&str>) -> Option<Api> {
    let object = SwarmObject {
        list: Api::ConfigList,
        create: Api::ConfigCreate,
        inspect: Api::ConfigInspect,
        delete: Api::ConfigDelete,
        update: Api::ConfigUpdate,
    };
    swarm_object(method, tail, object)
}

/// Decodes `%XX` escapes (and, in a query, `+` as a space), as Go's URL parser does before the
/// engine's router sees the path. `None` for an invalid escape or a result that is not UTF-8.
fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // Two hex digits, as Go requires: from_str_radix alone would take "+0" (a
                // sign), which Go's parser refuses, and then skips the whole pair.
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
                continue;
            }
            b'+' if plus_is_space => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `text` with every byte but the unreserved ones and those of `keep` percent-encoded.
fn percent_encode(text: &str, keep: &[u8]) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ if keep.contains(&b) => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode_query(text: &str) -> Option<Cow<'_, str>> {
    if text.contains(['%', '+']) {
        percent_decode(text, true).map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(text))
    }
}

/// Why a `commandList` entry is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not a command name, alias or wildcard this crate knows.
    #[error(
        "'{0}' is not a docker command this project classifies (see docs/docker-api-commands.md)"
    )]
    Unknown(String),
    /// A `*` after something that is not a group name.
    #[error("'{0}' is not a group wildcard: the groups are container, image, build, volume, network, system, plugin, swarm, node, service, secret, config and checkpoint")]
    UnknownGroup(String),
}

/// One entry of `commandList.commands`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandRule {
    /// A command (aliases already resolved to the table's name).
    Command(&'static str),
    /// `group*`: every request of the group.
    Group(Group),
    /// `*`: every request.
    Everything,
}

impl CommandRule {
    /// Parses an entry: a command (`push`, `volume create`), an alias (`image ls`), a group
    /// wildcard (`system*`) or `*`.
    ///
    /// ```
    /// use eci_policy::docker_api::{CommandRule, Group};
    /// assert_eq!(CommandRule::parse("image ls").unwrap(), CommandRule::Command("images"));
    /// assert_eq!(CommandRule::parse("system*").unwrap(), CommandRule::Group(Group::System));
    /// assert!(CommandRule::parse("compose").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<CommandRule, CommandError> {
        if text == "*" {
            return Ok(CommandRule::Everything);
        }
        if let Some(group) = text.strip_suffix('*') {
            return Group::parse(group)
                .map(CommandRule::Group)
                .ok_or_else(|| CommandError::UnknownGroup(text.to_string()));
        }
        let name = ALIASES
            .iter()
            .find(|(alias, _)| *alias == text)
            .map_or(text, |(_, name)| name);
        ENDPOINTS
            .iter()
            .flat_map(|endpoint| endpoint.commands.iter())
            .find(|command| **command == name)
            .map(|command| CommandRule::Command(command))
            .ok_or_else(|| CommandError::Unknown(text.to_string()))
    }

    /// True if the rule names the endpoint: one of its commands, or one of its groups.
    pub fn covers(&self, endpoint: &Endpoint) -> bool {
        match self {
            CommandRule::Command(name) => endpoint.commands.contains(name),
            CommandRule::Group(group) => endpoint.groups.contains(group),
            CommandRule::Everything => true,
        }
    }
}

/// `commandList.type`: what the listed commands are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListKind {
    /// The listed commands are refused, everything else is allowed.
    #[default]
    Deny,
    /// Only the listed commands are allowed.
    Allow,
}

/// `dockerSocketMount.commandList`, compiled so that a decision is one table look-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandList {
    kind: ListKind,
    rules: Vec<(String, CommandRule)>,
    /// For each row of [`ENDPOINTS`], the first rule that covers it.
    first_rule: Vec<Option<usize>>,
}

impl Default for CommandList {
    /// An empty deny list: every classified request is allowed.
    fn default() -> Self {
        CommandList::new(ListKind::Deny, Vec::new())
    }
}

/// Why a request to the engine is allowed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason<'a> {
    /// A rule of the list covers the request (allowed for an allow list, refused for a deny list).
    Listed(&'a str),
    /// No rule covers it (refused for an allow list, allowed for a deny list).
    NotListed,
    /// Version negotiation (`/_ping`), never refused.
    Negotiation,
    /// The request is not an endpoint of the Engine API this crate knows.
    Unclassified,
}

/// The verdict on one request to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiDecision<'a> {
    /// The request may go to the engine.
    pub allowed: bool,
    /// The endpoint it classified to.
    pub endpoint: Option<&'static Endpoint>,
    /// Why.
    pub reason: Reason<'a>,
}

impl CommandList {
    /// A list of `kind` with `rules`, each kept with the text it was written as.
    pub fn new(kind: ListKind, rules: Vec<(String, CommandRule)>) -> CommandList {
        let first_rule = ENDPOINTS
            .iter()
            .map(|endpoint| rules.iter().position(|(_, rule)| rule.covers(endpoint)))
            .collect();
        CommandList {
            kind,
            rules,
            first_rule,
        }
    }

    /// Whether the list allows or denies what it names.
    pub fn kind(&self) -> ListKind {
        self.kind
    }

    /// The rules, as written and as understood.
    pub fn rules(&self) -> &[(String, CommandRule)] {
        &self.rules
    }

    /// Classifies a request and decides it.
    ///
    /// ```
    /// use eci_policy::docker_api::{CommandList, CommandRule, ListKind};
    /// let deny = CommandList::new(ListKind::Deny, vec![("push".into(), CommandRule::parse("push").unwrap())]);
    /// assert!(!deny.decide("POST", "/v1.43/images/x/push", "tag=latest").allowed);
    /// assert!(deny.decide("GET", "/v1.43/containers/json", "").allowed);
    /// ```
    pub fn decide(&self, method: &str, path: &str, query: &str) -> ApiDecision<'_> {
        match classify(method, path, query) {
            Some(api) => self.decide_request(api, query),
            None => ApiDecision {
                allowed: false,
                endpoint: None,
                reason: Reason::Unclassified,
            },
        }
    }

    /// Decides a request already classified as `api`, with its `query`: its row, and for an
    /// attach that replays the output so far ([`reads_logs`]) the `logs` row too, which a deny
    /// list naming `logs` refuses.
    ///
    /// ```
    /// use eci_policy::docker_api::{Api, CommandList, CommandRule, ListKind};
    /// let deny = CommandList::new(ListKind::Deny, vec![("logs".into(), CommandRule::Command("logs"))]);
    /// assert!(deny.decide_request(Api::ContainerAttach, "stream=1&stdout=1").allowed);
    /// assert!(!deny.decide_request(Api::ContainerAttach, "logs=1&stdout=1").allowed);
    /// ```
    pub fn decide_request(&self, api: Api, query: &str) -> ApiDecision<'_> {
        let decision = self.decide_endpoint(api);
        if decision.allowed && reads_logs(api, query) {
            let logs = self.decide_endpoint(Api::ContainerLogs);
            if !logs.allowed {
                return logs;
            }
        }
        decision
    }

    /// Decides a request already classified, by its row alone (see [`CommandList::decide_request`]).
    pub fn decide_endpoint(&self, api: Api) -> ApiDecision<'_> {
        let endpoint = Some(api.endpoint());
        if api.is_negotiation() {
            return ApiDecision {
                allowed: true,
                endpoint,
                reason: Reason::Negotiation,
            };
        }
        let rule = self.first_rule[api as usize].map(|index| self.rules[index].0.as_str());
        let listed = rule.is_some();
        ApiDecision {
            allowed: listed == (self.kind == ListKind::Allow),
            endpoint,
            reason: rule.map_or(Reason::NotListed, Reason::Listed),
        }
    }
}

pub mod create;
pub mod network;
pub mod sharing;
pub mod volumes;

#[cfg(test)]
mod tests;
