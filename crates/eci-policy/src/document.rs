//! The settings document: the JSON an administrator writes, parsed into a [`Policy`].
//!
//! The document holds Docker's `enhancedContainerIsolation` block exactly as Docker's
//! `admin-settings.json` has it, and this project's extensions beside it under `eci`. Unknown
//! fields are errors, and every error, whether the JSON is malformed, a field has the wrong type
//! or a value makes no sense (a relative path, an unusable ID pool, an unknown command), names
//! the JSON path of the offending field and its line and column. `docs/settings.md` describes
//! every field.
//!
//! ```
//! let policy = eci_policy::document::parse(r#"{
//!     "enhancedContainerIsolation": {
//!         "value": true, "locked": true,
//!         "dockerSocketMount": { "commandList": { "type": "deny", "commands": ["push", "systme*"] } }
//!     }
//! }"#);
//! let err = policy.unwrap_err();
//! assert_eq!(err.path, "enhancedContainerIsolation.dockerSocketMount.commandList.commands[1]");
//! assert_eq!(err.line, 4);
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::docker_api::{CommandError, CommandList, CommandRule, ListKind};
use crate::image::{ImageError, ImageList, ImagePattern};
use crate::paths::{
    normalize, PathDecision, PathError, PathPolicy, ResolvedPath, RuleOrigin, Scope,
};
use crate::settings::{
    default_restricted_paths, DockerSocketPolicy, FsType, FsTypes, IdPool, Immutability, Locks,
    Policy, PoolError, ProcFile, ProcfsSwitches, Setting, SysctlError, SysctlMode, SysctlRules,
    DEFAULT_SHARED_PATHS,
};

/// What is wrong with the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not JSON, a field of the wrong type, an unknown or duplicate field, a bad enum value.
    #[error("{0}")]
    Syntax(String),
    /// A path that is not absolute.
    #[error("{0}")]
    Path(#[from] PathError),
    /// An ID pool [`IdPool::new`] refuses.
    #[error("{0}")]
    Pool(#[from] PoolError),
    /// A malformed image reference.
    #[error("{0}")]
    Image(#[from] ImageError),
    /// An unknown command or wildcard.
    #[error("{0}")]
    Command(#[from] CommandError),
    /// A sysctl that cannot have a rule.
    #[error("{0}")]
    Sysctl(#[from] SysctlError),
    /// A filesystem type eci does not know.
    #[error("'{0}' is not a filesystem type eci knows (tmpfs, ramfs, proc, sysfs, devpts, mqueue, cgroup, cgroup2, overlay, fuse, binfmt_misc)")]
    FsType(String),
    /// A shared path inside a restricted one: the restriction would silently lose.
    #[error("{} cannot be shared: it is inside the restricted path {} ({origin})", path.display(), rule.display())]
    SharedInsideRestricted {
        /// The shared path.
        path: PathBuf,
        /// The restricted rule's path.
        rule: PathBuf,
        /// Where the restriction came from.
        origin: RuleOrigin,
    },
    /// The same path listed twice.
    #[error("{} is listed twice", .0.display())]
    Duplicate(PathBuf),
    /// A `configurationFileVersion` this parser does not know.
    #[error("configuration file version {0} is not supported (1 or 2)")]
    Version(u32),
}

/// A settings document that cannot be used: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem} (line {line}, column {column})")]
pub struct SettingsError {
    /// The JSON path of the offending field (`.` for the document itself).
    pub path: String,
    /// The line of the offending field, from 1.
    pub line: usize,
    /// The column where it was found, from 1.
    pub column: usize,
    /// What is wrong.
    pub problem: Problem,
}

/// Parses a settings document into the policy it describes. `{}` gives [`Policy::default`].
pub fn parse(text: &str) -> Result<Policy, SettingsError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let raw: RawDocument = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        // The root is "."; an empty path is a field named "" at the root.
        let path = match err.path().to_string() {
            empty if empty.is_empty() => "\"\"".to_string(),
            path => path,
        };
        json_error(path, err.into_inner())
    })?;
    deserializer
        .end()
        .map_err(|err| json_error(".".to_string(), err))?;
    build(raw).map_err(|(path, problem)| {
        let (line, column) = locate(text, &path.0);
        SettingsError {
            path: path.to_string(),
            line,
            column,
            problem,
        }
    })
}

impl Policy {
    /// Parses a settings document; see [`crate::document`].
    pub fn from_settings_json(text: &str) -> Result<Policy, SettingsError> {
        parse(text)
    }
}

/// A serde_json error, whose message ends with the position it also reports separately.
fn json_error(path: String, inner: serde_json::Error) -> SettingsError {
    let (line, column) = (inner.line(), inner.column());
    let message = inner.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = message
        .strip_suffix(&suffix)
        .unwrap_or(&message)
        .to_string();
    SettingsError {
        path,
        line,
        column,
        problem: Problem::Syntax(message),
    }
}

// ---------------------------------------------------------------------------------------------
// The document as written. Every struct refuses unknown fields.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDocument {
    configuration_file_version: Option<u32>,
    enhanced_container_isolation: Option<RawEci>,
    eci: Option<RawExtensions>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEci {
    #[serde(default = "yes")]
    value: bool,
    #[serde(default)]
    locked: bool,
    docker_socket_mount: Option<RawSocketMount>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSocketMount {
    image_list: Option<RawImageList>,
    command_list: Option<RawCommandList>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawImageList {
    #[serde(default)]
    images: Vec<String>,
    #[serde(default = "yes")]
    allow_derived_images: bool,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawListKind {
    #[default]
    Deny,
    Allow,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommandList {
    #[serde(rename = "type", default)]
    kind: RawListKind,
    #[serde(default)]
    commands: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawExtensions {
    shared_paths: Option<Vec<RawSharedPath>>,
    #[serde(default)]
    restricted_paths: Vec<RawRestrictedPath>,
    id_pool: Option<RawIdPool>,
    #[serde(default)]
    immutability: RawImmutability,
    #[serde(default)]
    procfs: RawProcfs,
    #[serde(default)]
    sysctls: UniqueMap<Lockable<SysctlMode>>,
    mount_types: Option<Vec<String>>,
    #[serde(default)]
    hook_directories: Vec<String>,
    #[serde(default)]
    engine_sockets: Vec<String>,
    #[serde(default)]
    engine_data_roots: Vec<String>,
    #[serde(default)]
    engine_storage: Vec<String>,
    #[serde(default)]
    delegate_cgroups: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSharedPath {
    path: String,
    #[serde(default)]
    read_only: bool,
}

fn subtree() -> Scope {
    Scope::Subtree
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestrictedPath {
    path: String,
    #[serde(default = "subtree")]
    scope: Scope,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawIdPool {
    start: Option<u32>,
    size: Option<u32>,
    block_size: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawImmutability {
    allow_remount: Option<Lockable<bool>>,
    allow_unmount: Option<Lockable<bool>>,
}

/// One switch per virtual file; an unknown name is an unknown field.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProcfs {
    meminfo: Option<Lockable<bool>>,
    cpuinfo: Option<Lockable<bool>>,
    stat: Option<Lockable<bool>>,
    uptime: Option<Lockable<bool>>,
    loadavg: Option<Lockable<bool>>,
    swaps: Option<Lockable<bool>>,
    diskstats: Option<Lockable<bool>>,
    cpu_online: Option<Lockable<bool>>,
    sysinfo: Option<Lockable<bool>>,
}

impl RawProcfs {
    fn entries(&self) -> [(ProcFile, &Option<Lockable<bool>>); 9] {
        [
            (ProcFile::Meminfo, &self.meminfo),
            (ProcFile::Cpuinfo, &self.cpuinfo),
            (ProcFile::Stat, &self.stat),
            (ProcFile::Uptime, &self.uptime),
            (ProcFile::Loadavg, &self.loadavg),
            (ProcFile::Swaps, &self.swaps),
            (ProcFile::Diskstats, &self.diskstats),
            (ProcFile::CpuOnline, &self.cpu_online),
            (ProcFile::Sysinfo, &self.sysinfo),
        ]
    }
}

/// A setting a container could override: `{"value": ..., "locked": true}` as in Docker's
/// admin-settings.json. Without `value` the built-in default is kept (and can still be locked).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Lockable<T> {
    value: Option<T>,
    #[serde(default)]
    locked: bool,
}

/// A JSON object whose keys must be distinct (serde_json keeps the last of a repeated key, which
/// would silently drop a rule).
struct UniqueMap<V>(Vec<(String, V)>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        UniqueMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueVisitor<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.iter().any(|(seen, _)| *seen == key) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(UniqueMap(entries))
            }
        }
        deserializer.deserialize_map(UniqueVisitor(std::marker::PhantomData))
    }
}

// ---------------------------------------------------------------------------------------------
// From the document to a policy, checking what types alone cannot.

/// A JSON path, segment by segment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JsonPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl JsonPath {
    fn new(keys: &[&str]) -> JsonPath {
        JsonPath(keys.iter().map(|k| Segment::Key(k.to_string())).collect())
    }

    fn key(mut self, key: &str) -> JsonPath {
        self.0.push(Segment::Key(key.to_string()));
        self
    }

    fn index(mut self, index: usize) -> JsonPath {
        self.0.push(Segment::Index(index));
        self
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

type Invalid = (JsonPath, Problem);

fn at<E: Into<Problem>>(path: JsonPath) -> impl FnOnce(E) -> Invalid {
    move |err| (path, err.into())
}

fn build(raw: RawDocument) -> Result<Policy, Invalid> {
    if let Some(version) = raw
        .configuration_file_version
        .filter(|v| !(1..=2).contains(v))
    {
        return Err((
            JsonPath::new(&["configurationFileVersion"]),
            Problem::Version(version),
        ));
    }
    let mut policy = Policy::default();
    if let Some(eci) = raw.enhanced_container_isolation {
        policy.eci_enabled = eci.value;
        policy.locks.eci = eci.locked;
        let socket = eci.docker_socket_mount.unwrap_or_default();
        policy.docker_socket = docker_socket(socket)?;
    }
    apply_extensions(&mut policy, raw.eci.unwrap_or_default())?;
    Ok(policy)
}

fn docker_socket(raw: RawSocketMount) -> Result<DockerSocketPolicy, Invalid> {
    let base = JsonPath::new(&["enhancedContainerIsolation", "dockerSocketMount"]);
    let mut images = ImageList::default();
    if let Some(list) = raw.image_list {
        let path = base.clone().key("imageList").key("images");
        for (i, text) in list.images.iter().enumerate() {
            let pattern = ImagePattern::parse(text).map_err(at(path.clone().index(i)))?;
            images.images.push(pattern);
        }
        images.allow_derived_images = list.allow_derived_images;
    }
    let mut commands = CommandList::default();
    if let Some(list) = raw.command_list {
        let path = base.key("commandList").key("commands");
        let rules = list
            .commands
            .into_iter()
            .enumerate()
            .map(|(i, text)| {
                let rule = CommandRule::parse(&text).map_err(at(path.clone().index(i)))?;
                Ok((text, rule))
            })
            .collect::<Result<Vec<_>, Invalid>>()?;
        let kind = match list.kind {
            RawListKind::Deny => ListKind::Deny,
            RawListKind::Allow => ListKind::Allow,
        };
        commands = CommandList::new(kind, rules);
    }
    Ok(DockerSocketPolicy {
        images,
        commands,
        ..DockerSocketPolicy::default()
    })
}

fn apply_extensions(policy: &mut Policy, raw: RawExtensions) -> Result<(), Invalid> {
    let base = JsonPath::new(&["eci"]);
    let listed = ListedDirs::read(&raw, &base)?;
    policy.paths = paths(&raw, &base, &listed.restrictions())?;
    hooks_read_only(&mut policy.paths, &listed.hooks)?;
    if let Some(pool) = &raw.id_pool {
        policy.id_pool = id_pool(pool).map_err(at(base.clone().key("idPool")))?;
    }
    let (immutability, locks) = immutability(&raw.immutability);
    policy.immutability = immutability;
    policy.locks.settings.extend(locks);
    procfs(&raw.procfs, &mut policy.procfs, &mut policy.locks);
    policy.sysctls = sysctls(&raw.sysctls, &mut policy.locks, &base)?;
    policy.delegate_cgroups = raw.delegate_cgroups;
    if let Some(names) = &raw.mount_types {
        policy.mount_types = mount_types(names, &base.clone().key("mountTypes"))?;
    }
    policy.hook_dirs = listed.hooks.into_iter().map(|(dir, _)| dir).collect();
    let add = |to: &mut Vec<PathBuf>, dirs: Vec<(PathBuf, JsonPath)>| {
        for (dir, _) in dirs {
            if !to.contains(&dir) {
                to.push(dir);
            }
        }
    };
    add(&mut policy.docker_socket.sockets, listed.sockets);
    add(&mut policy.engine_data_roots, listed.data_roots);
    add(&mut policy.engine_storage, listed.storage);
    Ok(())
}

/// The directories and sockets the document names for other settings: hook directories (their
/// programs run as host root: a container that could write there would plant one; see
/// [`hooks_read_only`]), and, each restricted, engine sockets (reached only through the proxy: a
/// bind of a directory holding one would give the engine itself), engine data roots (their
/// volumes alone may be bound, see crate::volume) and engine storage (containers' roots may lie
/// inside, see crate::root).
struct ListedDirs {
    hooks: Vec<(PathBuf, JsonPath)>,
    sockets: Vec<(PathBuf, JsonPath)>,
    data_roots: Vec<(PathBuf, JsonPath)>,
    storage: Vec<(PathBuf, JsonPath)>,
}

impl ListedDirs {
    fn read(raw: &RawExtensions, base: &JsonPath) -> Result<ListedDirs, Invalid> {
        let list = |key: &str, entries: &[String]| -> Result<Vec<(PathBuf, JsonPath)>, Invalid> {
            let at_key = base.clone().key(key);
            entries
                .iter()
                .enumerate()
                .map(|(i, entry)| {
                    let at_entry = at_key.clone().index(i);
                    let path = normalize(Path::new(entry)).map_err(at(at_entry.clone()))?;
                    Ok((path, at_entry))
                })
                .collect()
        };
        Ok(ListedDirs {
            hooks: list("hookDirectories", &raw.hook_directories)?,
            sockets: list("engineSockets", &raw.engine_sockets)?,
            data_roots: list("engineDataRoots", &raw.engine_data_roots)?,
            storage: list("engineStorage", &raw.engine_storage)?,
        })
    }

    /// The restrictions: the sockets exact, the engines' trees with everything beneath them.
    fn restrictions(&self) -> Vec<(&Path, Scope, &JsonPath)> {
        let exact = self
            .sockets
            .iter()
            .map(|(p, at)| (p.as_path(), Scope::Exact, at));
        let subtrees = [&self.data_roots, &self.storage]
            .into_iter()
            .flatten()
            .map(|(p, at)| (p.as_path(), Scope::Subtree, at));
        exact.chain(subtrees).collect()
    }
}

/// Makes each hook directory that a writable share covers a read-only share: containers may
/// still read the hooks (a read-only bind of /usr holds /usr/libexec/oci/hooks.d), never write
/// one, and a writable bind of a tree holding one is refused whole.
fn hooks_read_only(paths: &mut PathPolicy, hooks: &[(PathBuf, JsonPath)]) -> Result<(), Invalid> {
    for (dir, at_entry) in hooks {
        let resolved = ResolvedPath::from_resolved(dir).map_err(at(at_entry.clone()))?;
        let writable = matches!(
            paths.decide(&resolved),
            PathDecision::Shared {
                read_only: false,
                ..
            } | PathDecision::ContainsReadOnly { .. }
                | PathDecision::ContainsRestricted { .. }
        );
        if writable {
            // Also where the directory is itself a share (`/opt`): that rule becomes read-only.
            paths
                .share_read_only_as(dir, RuleOrigin::Settings)
                .map_err(at(at_entry.clone()))?;
        }
    }
    Ok(())
}

/// The built-in restrictions plus the document's (`restrictedPaths`, and the directories other
/// settings name), then the shared paths (the document's list replaces the built-in one). A
/// shared path may not lie inside a restricted one.
fn paths(
    raw: &RawExtensions,
    base: &JsonPath,
    listed: &[(&Path, Scope, &JsonPath)],
) -> Result<PathPolicy, Invalid> {
    let mut paths = default_restricted_paths();
    let restricted = base.clone().key("restrictedPaths");
    for (i, rule) in raw.restricted_paths.iter().enumerate() {
        let path = restricted.clone().index(i).key("path");
        paths
            .restrict_as(Path::new(&rule.path), rule.scope, RuleOrigin::Settings)
            .map_err(at(path))?;
    }
    for (path, scope, at_entry) in listed {
        paths
            .restrict_as(path, *scope, RuleOrigin::Settings)
            .map_err(at((*at_entry).clone()))?;
    }
    let Some(shared) = &raw.shared_paths else {
        for (path, read_only) in DEFAULT_SHARED_PATHS {
            paths
                .share_as(Path::new(path), *read_only, RuleOrigin::Default)
                .expect("default paths are absolute");
        }
        return Ok(paths);
    };
    let restrictions = paths.clone();
    let listed = base.clone().key("sharedPaths");
    let mut seen = Vec::new();
    for (i, entry) in shared.iter().enumerate() {
        let at_path = listed.clone().index(i).key("path");
        let resolved =
            ResolvedPath::from_resolved(Path::new(&entry.path)).map_err(at(at_path.clone()))?;
        check_shareable(&restrictions, &resolved, &seen).map_err(|p| (at_path, p))?;
        seen.push(resolved.as_path().to_path_buf());
        paths
            .share_as(resolved.as_path(), entry.read_only, RuleOrigin::Settings)
            .map_err(at(listed.clone().index(i)))?;
    }
    Ok(paths)
}

fn check_shareable(
    restrictions: &PathPolicy,
    path: &ResolvedPath,
    seen: &[PathBuf],
) -> Result<(), Problem> {
    if let PathDecision::Restricted { rule, origin } = restrictions.decide(path) {
        return Err(Problem::SharedInsideRestricted {
            path: path.as_path().to_path_buf(),
            rule: rule.to_path_buf(),
            origin,
        });
    }
    if seen.iter().any(|p| p == path.as_path()) {
        return Err(Problem::Duplicate(path.as_path().to_path_buf()));
    }
    Ok(())
}

fn id_pool(raw: &RawIdPool) -> Result<IdPool, PoolError> {
    let default = IdPool::default();
    IdPool::new(
        raw.start.unwrap_or(default.start()),
        raw.size.unwrap_or(default.size()),
        raw.block_size.unwrap_or(default.block_size()),
    )
}

fn lockable_bool(raw: &Option<Lockable<bool>>, default: bool) -> (bool, bool) {
    raw.as_ref()
        .map_or((default, false), |l| (l.value.unwrap_or(default), l.locked))
}

fn immutability(raw: &RawImmutability) -> (Immutability, Vec<Setting>) {
    let defaults = Immutability::default();
    let (allow_remount, remount_locked) = lockable_bool(&raw.allow_remount, defaults.allow_remount);
    let (allow_unmount, unmount_locked) = lockable_bool(&raw.allow_unmount, defaults.allow_unmount);
    let locks = [
        (remount_locked, Setting::AllowRemount),
        (unmount_locked, Setting::AllowUnmount),
    ]
    .into_iter()
    .filter_map(|(locked, setting)| locked.then_some(setting))
    .collect();
    let immutability = Immutability {
        allow_remount,
        allow_unmount,
    };
    (immutability, locks)
}

fn procfs(raw: &RawProcfs, switches: &mut ProcfsSwitches, locks: &mut Locks) {
    for (file, lockable) in raw.entries() {
        let Some(lockable) = lockable else {
            continue;
        };
        if let Some(on) = lockable.value {
            switches.set(file, on);
        }
        if lockable.locked {
            locks.settings.insert(Setting::Procfs(file));
        }
    }
}

fn sysctls(
    raw: &UniqueMap<Lockable<SysctlMode>>,
    locks: &mut Locks,
    base: &JsonPath,
) -> Result<SysctlRules, Invalid> {
    let mut rules = SysctlRules::default();
    for (name, lockable) in &raw.0 {
        let path = base.clone().key("sysctls").key(name);
        let mode = lockable.value.unwrap_or_default();
        rules.set(name, mode).map_err(at(path))?;
        if lockable.locked {
            locks.settings.insert(Setting::Sysctl(name.clone()));
        }
    }
    Ok(rules)
}

fn mount_types(names: &[String], path: &JsonPath) -> Result<FsTypes, Invalid> {
    let types = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            FsType::parse(name.as_bytes())
                .filter(|fs| fs.name() == name)
                .ok_or_else(|| (path.clone().index(i), Problem::FsType(name.clone())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FsTypes::of(&types))
}

// ---------------------------------------------------------------------------------------------
// Finding the line and column of a JSON path, for problems found after parsing: the document is
// read again, skipping everything but the path, and the reading stops with an error where the
// path's value starts; serde_json attaches that position to the error.

fn locate(text: &str, path: &[Segment]) -> (usize, usize) {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match Seek(path).deserialize(&mut deserializer) {
        Err(err) => (err.line(), err.column()),
        Ok(()) => (0, 0),
    }
}

struct Seek<'p>(&'p [Segment]);

/// The error that stops the reading at the path's value.
const FOUND: &str = "found";

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        // Any container is read: serde lets a struct be written as an array of its fields, so
        // the path's keys may lead into an array (the reading then stops at its start).
        match self.0.split_first() {
            None => deserializer.deserialize_any(Found),
            Some(_) => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the path's container")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(wanted), rest)) = self.0.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == *wanted {
                return map.next_value_seed(Seek(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(de::Error::custom(FOUND))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(wanted), rest)) = self.0.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        for _ in 0..*wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(FOUND));
            }
        }
        seq.next_element_seed(Seek(rest))?;
        Err(de::Error::custom(FOUND))
    }
}

/// Stops at the first token of a value.
struct Found;

impl<'de> Visitor<'de> for Found {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
}

#[cfg(test)]
mod tests;
