//! Host path policy: which host paths may be bind-mounted into a container.
//!
//! Decisions are lexical and never touch the filesystem. Resolving symlinks needs the filesystem,
//! so it is the caller's job, and the API makes that explicit: [`PathPolicy::decide`] takes a
//! [`ResolvedPath`], which the caller builds only from a path it resolved itself, with every
//! component checked not to be a symlink (`openat2` with `RESOLVE_NO_SYMLINKS`, or
//! `RESOLVE_IN_ROOT` against the right root, then reading the fd's path back). Deciding on a path
//! that still has a symlink in it would let `/home/me/link -> /etc` pass as a path under `/home`.
//! The resolved path must also be the one that is mounted, not re-resolved later: bind the fd
//! that was checked, or the link can be swapped between the check and the mount.
//!
//! Rules come from three places, and every decision names the rule that made it and where the
//! rule came from ([`RuleOrigin`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Why a path could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start at `/`.
    #[error("path '{0}' is not absolute")]
    NotAbsolute(PathBuf),
    /// The path is empty.
    #[error("path is empty")]
    Empty,
}

/// True for a cgroup path a container may have: absolute, at least one name below the root,
/// no `.` or `..`. A relative path would mean "below the runtime's own cgroup", which differs
/// between the process that creates a container and one that cleans up after it; joined to a
/// hierarchy's mount point, a plain one stays under it.
///
/// ```
/// use eci_policy::paths::is_container_cgroup_path;
/// use std::path::Path;
/// assert!(is_container_cgroup_path(Path::new("/eci/web")));
/// assert!(!is_container_cgroup_path(Path::new("/")));
/// assert!(!is_container_cgroup_path(Path::new("/../../tmp/x")));
/// assert!(!is_container_cgroup_path(Path::new("eci/web")));
/// ```
pub fn is_container_cgroup_path(path: &Path) -> bool {
    path.is_absolute()
        && path.components().any(|c| matches!(c, Component::Normal(_)))
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Normalises an absolute path lexically: repeated and trailing slashes and `.` go, `..` removes
/// the previous component and never climbs above `/`.
///
/// ```
/// use eci_policy::paths::normalize;
/// use std::path::Path;
/// assert_eq!(normalize(Path::new("//etc/../../var/./lib/")).unwrap(), Path::new("/var/lib"));
/// assert!(normalize(Path::new("etc")).is_err());
/// ```
pub fn normalize(path: &Path) -> Result<PathBuf, PathError> {
    if path.as_os_str().is_empty() {
        return Err(PathError::Empty);
    }
    if !path.has_root() {
        return Err(PathError::NotAbsolute(path.to_path_buf()));
    }
    let mut parts: Vec<&OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut out = PathBuf::from("/");
    out.extend(parts);
    Ok(out)
}

/// A host path whose symlinks the caller has already resolved, normalised lexically. Building one
/// is the caller's promise that no component of the path is a symlink; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResolvedPath(PathBuf);

impl ResolvedPath {
    /// Wraps a path the caller has resolved. The caller promises that no component is a symlink;
    /// the policy cannot check that without a syscall.
    pub fn from_resolved(path: &Path) -> Result<Self, PathError> {
        normalize(path).map(Self)
    }

    /// The normalised path.
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

/// Whether a rule covers only its own path or everything beneath it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Scope {
    /// The path itself only.
    Exact,
    /// The path and every path beneath it.
    Subtree,
}

/// What a rule says about the paths it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// May be bind-mounted; `read_only` forces the bind read-only.
    Shared {
        /// The bind is made read-only whatever the spec asks.
        read_only: bool,
    },
    /// May never be bind-mounted.
    Restricted,
}

/// Where a rule came from, so that a refusal can say who to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleOrigin {
    /// Built into eci ([`crate::settings::DEFAULT_SHARED_PATHS`] and
    /// [`crate::settings::DEFAULT_RESTRICTED_PATHS`]).
    Default,
    /// The administrator's settings document.
    Settings,
    /// The runtime's own state directory, always restricted.
    StateDirectory,
    /// Added by the program embedding eci, through [`PathPolicy::share`] or
    /// [`PathPolicy::restrict`].
    Runtime,
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleOrigin::Default => "built-in default",
            RuleOrigin::Settings => "settings",
            RuleOrigin::StateDirectory => "the runtime's state directory",
            RuleOrigin::Runtime => "added by the runtime",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    access: Access,
    scope: Scope,
    origin: RuleOrigin,
}

/// One rule of a [`PathPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRule<'a> {
    /// The rule's path.
    pub path: &'a Path,
    /// What it allows.
    pub access: Access,
    /// What it covers.
    pub scope: Scope,
    /// Where it came from.
    pub origin: RuleOrigin,
}

/// The decision for one host path, naming the rule that made it and the rule's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathDecision<'a> {
    /// The path is under a shared rule and holds no restricted path.
    Shared {
        /// The rule's path.
        rule: &'a Path,
        /// The bind must be read-only.
        read_only: bool,
        /// Where the rule came from.
        origin: RuleOrigin,
    },
    /// The path is under a restricted rule.
    Restricted {
        /// The rule's path.
        rule: &'a Path,
        /// Where the rule came from.
        origin: RuleOrigin,
    },
    /// The path is shared but a restricted path lies beneath it, which a bind of the whole tree
    /// would expose (sharing `/var` must not hand out `/var/lib/docker`).
    ContainsRestricted {
        /// The restricted rule's path, beneath the requested one.
        rule: &'a Path,
        /// Where the rule came from.
        origin: RuleOrigin,
    },
    /// The path is shared writable but a path shared read-only lies beneath it, which a
    /// writable bind of the whole tree would make writable.
    ContainsReadOnly {
        /// The read-only share's path, beneath the requested one.
        rule: &'a Path,
        /// Where the rule came from.
        origin: RuleOrigin,
    },
    /// No rule covers the path: it is not shared, so it is refused.
    NotShared,
}

/// Shared and restricted host paths. The most specific rule covering a path decides; at the same
/// path a restricted rule beats a shared one; and a shared path with a restricted path beneath it
/// is refused as a whole.
///
/// ```
/// use eci_policy::paths::{PathDecision, PathPolicy, ResolvedPath, Scope};
/// use std::path::Path;
/// let mut policy = PathPolicy::empty();
/// policy.share(Path::new("/home"), false).unwrap();
/// policy.restrict(Path::new("/home/secret"), Scope::Subtree).unwrap();
/// let p = |s: &str| ResolvedPath::from_resolved(Path::new(s)).unwrap();
/// assert!(matches!(policy.decide(&p("/home/alice")), PathDecision::Shared { .. }));
/// assert!(matches!(policy.decide(&p("/home/secret/x")), PathDecision::Restricted { .. }));
/// assert!(matches!(policy.decide(&p("/home")), PathDecision::ContainsRestricted { .. }));
/// assert_eq!(policy.decide(&p("/var/log")), PathDecision::NotShared);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathPolicy {
    /// The rules by normalised path. A hash map: a decision looks up each ancestor of the path,
    /// and hashing a short path costs less than a dozen path comparisons in a tree.
    rules: HashMap<Box<[u8]>, Rule, Fnv>,
    /// Every strict ancestor of a restricted rule's path, with the first restricted path beneath
    /// it: "does this shared path hold a restricted one" is then a single look-up.
    holds_restricted: HashMap<Box<[u8]>, Beneath, Fnv>,
    /// The same for the paths shared read-only.
    holds_read_only: HashMap<Box<[u8]>, Beneath, Fnv>,
}

/// A restricted rule's path beneath another path, and the rule's origin.
type Beneath = (Box<[u8]>, RuleOrigin);

/// FNV-1a: fast on short keys. The keys are the administrator's paths, not a container's, so
/// the flooding a keyed hash defends against cannot happen here.
#[derive(Debug, Clone, Copy)]
struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type Fnv = BuildHasherDefault<FnvHasher>;

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// `path` and its ancestors, longest first, for a normalised absolute path.
/// Notes `path` (a rule's, with its `origin`) under every strict ancestor in `holds`. The
/// first path in path order is named, whatever order rules came in, so that equal rule sets
/// make equal policies and decisions.
fn note_beneath(holds: &mut HashMap<Box<[u8]>, Beneath, Fnv>, path: &[u8], origin: RuleOrigin) {
    for ancestor in ancestors(path).skip(1) {
        let beneath: Beneath = (path.into(), origin);
        holds
            .entry(ancestor.into())
            .and_modify(|named| {
                if as_path(path) < as_path(&named.0) {
                    *named = beneath.clone();
                }
            })
            .or_insert(beneath);
    }
}

fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.iter().rposition(|b| *b == b'/') {
            Some(0) if current.len() > 1 => Some(&current[..1]),
            Some(i) if i > 0 => Some(&current[..i]),
            _ => None,
        };
        Some(current)
    })
}

impl PathPolicy {
    /// A policy with no rules: nothing may be bind-mounted.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Shares `path` and everything beneath it, read-only if `read_only`. A restricted rule at the
    /// same path stays.
    pub fn share(&mut self, path: &Path, read_only: bool) -> Result<(), PathError> {
        self.share_as(path, read_only, RuleOrigin::Runtime)
    }

    /// Restricts `path` (and, with [`Scope::Subtree`], everything beneath it). A restriction
    /// replaces a shared rule at the same path and never narrows a restriction already there.
    pub fn restrict(&mut self, path: &Path, scope: Scope) -> Result<(), PathError> {
        self.restrict_as(path, scope, RuleOrigin::Runtime)
    }

    /// [`PathPolicy::share`] with the rule's origin.
    pub fn share_as(
        &mut self,
        path: &Path,
        read_only: bool,
        origin: RuleOrigin,
    ) -> Result<(), PathError> {
        let path = normalize(path)?;
        let rule = Rule {
            access: Access::Shared { read_only },
            scope: Scope::Subtree,
            origin,
        };
        let path = key(&path);
        // The first rule at a path stands: a later one changes nothing.
        if let std::collections::hash_map::Entry::Vacant(vacant) = self.rules.entry(path.clone()) {
            vacant.insert(rule);
            if read_only {
                note_beneath(&mut self.holds_read_only, &path, origin);
            }
        }
        Ok(())
    }

    /// Makes `path` shared read-only at most: a writable share at `path` itself becomes
    /// read-only (where [`PathPolicy::share_as`] would leave the first rule standing), no path
    /// without a rule gets one but a read-only share, and a restriction stays.
    ///
    /// ```
    /// use eci_policy::paths::{PathDecision, PathPolicy, ResolvedPath, RuleOrigin};
    /// use std::path::Path;
    /// let mut policy = PathPolicy::empty();
    /// policy.share(Path::new("/opt"), false).unwrap();
    /// policy.share_read_only_as(Path::new("/opt"), RuleOrigin::Settings).unwrap();
    /// let p = ResolvedPath::from_resolved(Path::new("/opt/x")).unwrap();
    /// assert!(matches!(policy.decide(&p), PathDecision::Shared { read_only: true, .. }));
    /// ```
    pub fn share_read_only_as(&mut self, path: &Path, origin: RuleOrigin) -> Result<(), PathError> {
        let key_path = key(&normalize(path)?);
        match self.rules.get_mut(&key_path) {
            Some(rule) if rule.access == (Access::Shared { read_only: false }) => {
                rule.access = Access::Shared { read_only: true };
                rule.origin = origin;
                note_beneath(&mut self.holds_read_only, &key_path, origin);
                Ok(())
            }
            Some(_) => Ok(()),
            None => self.share_as(path, true, origin),
        }
    }

    /// [`PathPolicy::restrict`] with the rule's origin.
    pub fn restrict_as(
        &mut self,
        path: &Path,
        scope: Scope,
        origin: RuleOrigin,
    ) -> Result<(), PathError> {
        let path = key(&normalize(path)?);
        note_beneath(&mut self.holds_restricted, &path, origin);
        let rule = Rule {
            access: Access::Restricted,
            scope,
            origin,
        };
        // Restricting only ever adds: an exact rule must not narrow a subtree one at the same
        // path (an administrator's exact /etc must not open /etc/shadow).
        let narrows = |old: &Rule| old.access == Access::Restricted && old.scope == Scope::Subtree;
        if !self.rules.get(&path).is_some_and(narrows) {
            self.rules.insert(path, rule);
        }
        Ok(())
    }

    /// The first restricted rule strictly beneath `path`, and its origin: what a bind of `path`
    /// would also show.
    pub fn restricted_beneath(&self, path: &ResolvedPath) -> Option<(&Path, RuleOrigin)> {
        let path = path.as_path().as_os_str().as_bytes();
        self.holds_restricted
            .get(path)
            .map(|(inner, origin)| (as_path(inner), *origin))
    }

    /// Decides whether a resolved host path may be bind-mounted. Costs one hash look-up per path
    /// component, and one more when the path is shared.
    pub fn decide(&self, path: &ResolvedPath) -> PathDecision<'_> {
        let path = path.as_path().as_os_str().as_bytes();
        let Some((rule_path, rule)) = self.covering_rule(path) else {
            return PathDecision::NotShared;
        };
        match rule.access {
            Access::Restricted => PathDecision::Restricted {
                rule: as_path(rule_path),
                origin: rule.origin,
            },
            Access::Shared { read_only } => {
                let read_only_beneath = self.holds_read_only.get(path).filter(|_| !read_only);
                match (self.holds_restricted.get(path), read_only_beneath) {
                    (Some((inner, origin)), _) => PathDecision::ContainsRestricted {
                        rule: as_path(inner),
                        origin: *origin,
                    },
                    (None, Some((inner, origin))) => PathDecision::ContainsReadOnly {
                        rule: as_path(inner),
                        origin: *origin,
                    },
                    (None, None) => PathDecision::Shared {
                        rule: as_path(rule_path),
                        read_only,
                        origin: rule.origin,
                    },
                }
            }
        }
    }

    /// The most specific rule that covers `path`.
    fn covering_rule(&self, path: &[u8]) -> Option<(&[u8], &Rule)> {
        ancestors(path).find_map(|ancestor| {
            let (rule_path, rule) = self.rules.get_key_value(ancestor)?;
            let covers = rule.scope == Scope::Subtree || ancestor.len() == path.len();
            covers.then_some((&rule_path[..], rule))
        })
    }

    /// Every rule, most general first.
    pub fn rules(&self) -> impl Iterator<Item = PathRule<'_>> {
        let mut rules: Vec<PathRule<'_>> = self
            .rules
            .iter()
            .map(|(path, rule)| PathRule {
                path: as_path(path),
                access: rule.access,
                scope: rule.scope,
                origin: rule.origin,
            })
            .collect();
        rules.sort_by(|a, b| a.path.cmp(b.path));
        rules.into_iter()
    }
}

fn key(path: &Path) -> Box<[u8]> {
    path.as_os_str().as_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn messy_path() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("..".to_string()),
                Just(".".to_string()),
                Just(String::new()),
                "[a-c]{1,2}",
            ],
            0..8,
        )
        .prop_map(|parts| format!("/{}", parts.join("/")))
    }

    proptest! {
        #[test]
        fn a_container_cgroup_path_joined_to_a_mount_point_stays_below_it(path in messy_path()) {
            let mount = Path::new("/sys/fs/cgroup/memory");
            if is_container_cgroup_path(Path::new(&path)) {
                let joined = mount.join(path.trim_start_matches('/'));
                let normal = normalize(&joined).unwrap();
                prop_assert!(normal.starts_with(mount) && normal != mount, "{path}");
            } else {
                let climbs = path.split('/').any(|part| part == "..");
                let names = path.split('/').any(|part| !part.is_empty() && part != "." && part != "..");
                prop_assert!(climbs || !names || path.split('/').any(|part| part == "."), "{path}");
            }
        }
    }

    proptest! {
        #[test]
        fn normalize_is_idempotent_and_stays_absolute(path in messy_path()) {
            let once = normalize(Path::new(&path)).unwrap();
            prop_assert!(once.is_absolute());
            prop_assert!(once.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
            prop_assert_eq!(normalize(&once).unwrap(), once);
        }

        #[test]
        fn restricted_subtree_is_never_allowed_whatever_the_spelling(suffix in messy_path()) {
            let mut policy = PathPolicy::empty();
            policy.share(Path::new("/"), false).unwrap();
            policy.restrict(Path::new("/a"), Scope::Subtree).unwrap();
            let spelled = format!("/a/{suffix}");
            let resolved = ResolvedPath::from_resolved(Path::new(&spelled)).unwrap();
            let lands_in_a = resolved.as_path().starts_with("/a");
            let restricted = matches!(policy.decide(&resolved), PathDecision::Restricted { .. });
            prop_assert_eq!(restricted, lands_in_a);
        }
    }

    #[test]
    fn exact_rule_does_not_cover_children() {
        let mut policy = PathPolicy::empty();
        policy.restrict(Path::new("/"), Scope::Exact).unwrap();
        policy.share(Path::new("/home"), false).unwrap();
        let p = |s: &str| ResolvedPath::from_resolved(Path::new(s)).unwrap();
        assert!(matches!(
            policy.decide(&p("/")),
            PathDecision::Restricted { .. }
        ));
        assert_eq!(policy.decide(&p("/srv")), PathDecision::NotShared);
        assert!(matches!(
            policy.decide(&p("/home/x")),
            PathDecision::Shared { .. }
        ));
    }

    #[test]
    fn a_shared_tree_holding_a_restricted_path_is_refused_whole() {
        let mut policy = PathPolicy::empty();
        policy
            .share_as(Path::new("/var"), false, RuleOrigin::Settings)
            .unwrap();
        policy
            .restrict_as(
                Path::new("/var/lib/docker"),
                Scope::Subtree,
                RuleOrigin::Default,
            )
            .unwrap();
        policy
            .restrict_as(
                Path::new("/var/run/docker.sock"),
                Scope::Exact,
                RuleOrigin::Default,
            )
            .unwrap();
        let p = |s: &str| ResolvedPath::from_resolved(Path::new(s)).unwrap();
        assert_eq!(
            policy.decide(&p("/var")),
            PathDecision::ContainsRestricted {
                rule: Path::new("/var/lib/docker"),
                origin: RuleOrigin::Default
            }
        );
        assert!(matches!(
            policy.decide(&p("/var/run")),
            PathDecision::ContainsRestricted { .. }
        ));
        assert_eq!(
            policy.decide(&p("/var/lib/dockerd")),
            PathDecision::Shared {
                rule: Path::new("/var"),
                read_only: false,
                origin: RuleOrigin::Settings
            },
            "a sibling whose name extends the restricted one is not beneath it"
        );
        assert!(matches!(
            policy.decide(&p("/var/lib/docker/volumes")),
            PathDecision::Restricted {
                origin: RuleOrigin::Default,
                ..
            }
        ));
    }

    proptest! {
        #[test]
        fn decisions_agree_with_a_brute_force_reading_of_the_rules(
            rules in proptest::collection::vec((messy_path(), any::<bool>(), any::<bool>()), 0..8),
            probe in messy_path(),
        ) {
            let mut policy = PathPolicy::empty();
            for (path, restricted, exact) in &rules {
                let path = Path::new(path);
                if *restricted {
                    let scope = if *exact { Scope::Exact } else { Scope::Subtree };
                    policy.restrict(path, scope).unwrap();
                } else {
                    policy.share(path, *exact).unwrap();
                }
            }
            let probe = ResolvedPath::from_resolved(Path::new(&probe)).unwrap();
            let decision = policy.decide(&probe);
            prop_assert_eq!(decision, policy.decide(&probe), "deterministic");
            let p = probe.as_path();
            let rules: Vec<PathRule<'_>> = policy.rules().collect();
            let covering = rules
                .iter()
                .filter(|r| p.starts_with(r.path) && (r.scope == Scope::Subtree || r.path == p))
                .max_by_key(|r| r.path.components().count());
            let shared_above = covering.is_some_and(|r| matches!(r.access, Access::Shared { .. }));
            let restricted_at_or_beneath = rules
                .iter()
                .any(|r| r.access == Access::Restricted && r.path.starts_with(p));
            let writable_above = covering.is_some_and(|r| r.access == Access::Shared { read_only: false });
            let read_only_beneath = rules.iter().any(|r| {
                r.access == Access::Shared { read_only: true } && r.path.starts_with(p) && r.path != p
            });
            let allowed = matches!(decision, PathDecision::Shared { .. });
            prop_assert_eq!(
                allowed,
                shared_above && !restricted_at_or_beneath && !(writable_above && read_only_beneath)
            );
        }
    }

    #[test]
    fn a_writable_share_holding_a_read_only_one_is_refused_whole() {
        let p = |s: &str| ResolvedPath::from_resolved(Path::new(s)).unwrap();
        for read_only_first in [false, true] {
            let mut policy = PathPolicy::empty();
            if read_only_first {
                policy.share(Path::new("/srv/pub"), true).unwrap();
            }
            policy.share(Path::new("/srv"), false).unwrap();
            policy.share(Path::new("/srv/pub"), true).unwrap();
            policy.share(Path::new("/usr"), true).unwrap();
            policy.share(Path::new("/usr/share"), true).unwrap();
            assert_eq!(
                policy.decide(&p("/srv")),
                PathDecision::ContainsReadOnly {
                    rule: Path::new("/srv/pub"),
                    origin: RuleOrigin::Runtime,
                }
            );
            assert!(matches!(
                policy.decide(&p("/srv/pub/x")),
                PathDecision::Shared {
                    read_only: true,
                    ..
                }
            ));
            assert!(matches!(
                policy.decide(&p("/srv/other")),
                PathDecision::Shared {
                    read_only: false,
                    ..
                }
            ));
            // Read-only all the way down is read-only.
            assert!(matches!(
                policy.decide(&p("/usr")),
                PathDecision::Shared {
                    read_only: true,
                    ..
                }
            ));
        }
    }

    #[test]
    fn an_exact_restriction_never_narrows_a_subtree_one() {
        let mut policy = PathPolicy::empty();
        policy.share(Path::new("/"), false).unwrap();
        policy.restrict(Path::new("/etc"), Scope::Subtree).unwrap();
        policy.restrict(Path::new("/etc"), Scope::Exact).unwrap();
        let shadow = ResolvedPath::from_resolved(Path::new("/etc/shadow")).unwrap();
        assert!(matches!(
            policy.decide(&shadow),
            PathDecision::Restricted { .. }
        ));
    }

    #[test]
    fn restriction_beats_sharing_at_the_same_path() {
        let mut policy = PathPolicy::empty();
        policy.restrict(Path::new("/srv"), Scope::Subtree).unwrap();
        policy.share(Path::new("/srv"), false).unwrap();
        let p = ResolvedPath::from_resolved(Path::new("/srv/x")).unwrap();
        assert!(matches!(policy.decide(&p), PathDecision::Restricted { .. }));
    }
}
