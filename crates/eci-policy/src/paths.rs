//! Host path policy: which host paths may be bind-mounted into a container.
//!
//! Decisions are lexical. Resolving symlinks needs the filesystem, so it is the caller's job; the
//! API makes that explicit by taking a [`ResolvedPath`], which the caller builds only from a path
//! it resolved (for example with `std::fs::canonicalize` or `openat2(RESOLVE_NO_SYMLINKS)`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
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

/// A host path whose symlinks the caller has already resolved, normalised lexically.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    access: Access,
    scope: Scope,
}

/// The decision for one host path, naming the rule that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathDecision<'a> {
    /// The path is under a shared rule.
    Shared {
        /// The rule's path.
        rule: &'a Path,
        /// The bind must be read-only.
        read_only: bool,
    },
    /// The path is under a restricted rule.
    Restricted {
        /// The rule's path.
        rule: &'a Path,
    },
    /// No rule covers the path: it is not shared, so it is refused.
    NotShared,
}

/// Shared and restricted host paths. The most specific rule wins; at the same path a restricted
/// rule beats a shared one.
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
/// assert_eq!(policy.decide(&p("/var/log")), PathDecision::NotShared);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathPolicy {
    rules: BTreeMap<PathBuf, Rule>,
}

impl PathPolicy {
    /// A policy with no rules: nothing may be bind-mounted.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Shares `path` and everything beneath it, read-only if `read_only`. A restricted rule at the
    /// same path stays.
    pub fn share(&mut self, path: &Path, read_only: bool) -> Result<(), PathError> {
        let path = normalize(path)?;
        let rule = Rule {
            access: Access::Shared { read_only },
            scope: Scope::Subtree,
        };
        self.rules.entry(path).or_insert(rule);
        Ok(())
    }

    /// Restricts `path` (and, with [`Scope::Subtree`], everything beneath it).
    pub fn restrict(&mut self, path: &Path, scope: Scope) -> Result<(), PathError> {
        let path = normalize(path)?;
        self.rules.insert(
            path,
            Rule {
                access: Access::Restricted,
                scope,
            },
        );
        Ok(())
    }

    /// Decides whether a resolved host path may be bind-mounted. Costs one map lookup per path
    /// component.
    pub fn decide(&self, path: &ResolvedPath) -> PathDecision<'_> {
        let path = path.as_path();
        for ancestor in path.ancestors() {
            let Some((rule_path, rule)) = self.rules.get_key_value(ancestor) else {
                continue;
            };
            if rule.scope == Scope::Exact && ancestor != path {
                continue;
            }
            return match rule.access {
                Access::Shared { read_only } => PathDecision::Shared {
                    rule: rule_path,
                    read_only,
                },
                Access::Restricted => PathDecision::Restricted { rule: rule_path },
            };
        }
        PathDecision::NotShared
    }

    /// Every rule, most general first: (path, access, scope).
    pub fn rules(&self) -> impl Iterator<Item = (&Path, Access, Scope)> {
        self.rules
            .iter()
            .map(|(path, rule)| (path.as_path(), rule.access, rule.scope))
    }
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
    fn restriction_beats_sharing_at_the_same_path() {
        let mut policy = PathPolicy::empty();
        policy.restrict(Path::new("/srv"), Scope::Subtree).unwrap();
        policy.share(Path::new("/srv"), false).unwrap();
        let p = ResolvedPath::from_resolved(Path::new("/srv/x")).unwrap();
        assert!(matches!(policy.decide(&p), PathDecision::Restricted { .. }));
    }
}
