//! Which host directories may be a container's root filesystem.
//!
//! The rootfs is mounted idmapped (or its owners shifted) into the container's ID block, so the
//! container's root acts there as the files' host owners: a root of `/etc` would hand over the
//! host's files, and one of `/home` (even read-only) every user's private files, which a plain
//! bind of `/home` never shows. So a root must either lie strictly inside one of the restricted
//! trees where engines keep the roots they hand a runtime (an engine data root,
//! [`Policy::engine_data_roots`], Docker's `/var/lib/docker/overlay2/ID/merged`; or engine
//! storage, [`Policy::engine_storage`], containerd's `/run/containerd/.../rootfs`), or be a
//! path the bind rules share (read-only where they force it, then for a root that stays
//! read-only), holding no restricted path, **and** closed to host users other than root
//! ([`RootAccess::IfClosedToOthers`], which the caller checks on the filesystem with
//! [`crate::reach`]): then only root put its files there, and no one else can swap a directory
//! on its path between the check and the mount.
//!
//! ```
//! use eci_policy::paths::ResolvedPath;
//! use eci_policy::root::{RootAccess, RootRefusal};
//! use eci_policy::Policy;
//! use std::path::Path;
//!
//! let policy = Policy::default();
//! let root = |p: &str| ResolvedPath::from_resolved(Path::new(p)).unwrap();
//! let docker = policy.decide_root(&root("/var/lib/docker/overlay2/abc/merged"), true);
//! assert_eq!(docker, Ok(RootAccess::EngineTree));
//! let bundle = policy.decide_root(&root("/srv/bundles/web/rootfs"), true);
//! assert_eq!(bundle, Ok(RootAccess::IfClosedToOthers));
//! assert!(matches!(policy.decide_root(&root("/etc"), false), Err(RootRefusal::Restricted { .. })));
//! assert!(matches!(policy.decide_root(&root("/usr"), true), Err(RootRefusal::ReadOnlyShare { .. })));
//! ```

use std::path::{Path, PathBuf};

use crate::paths::{PathDecision, ResolvedPath, RuleOrigin};
use crate::Policy;

/// On what a directory may be a container's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootAccess {
    /// It lies in an engine's tree of roots: the engine chose it.
    EngineTree,
    /// Only if no host user but root can reach it or move a directory on its path
    /// ([`crate::reach`]); otherwise [`RootRefusal::ReachableByOthers`].
    IfClosedToOthers,
}

/// Why a directory may not be a container's root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootRefusal {
    /// The root is inside a restricted tree that no engine keeps roots in (or is such a tree
    /// itself, which would show every container's files).
    #[error("{}: refused as a container's root: it is inside the restricted path {} ({origin}), and not strictly inside an engine's tree of roots", path.display(), rule.display())]
    Restricted {
        /// The root.
        path: PathBuf,
        /// The restricted rule's path.
        rule: PathBuf,
        /// Where the rule came from.
        origin: RuleOrigin,
    },
    /// A restricted path lies beneath the root, which the container would reach through it.
    #[error("{}: refused as a container's root: the restricted path {} ({origin}) lies beneath it", path.display(), rule.display())]
    HoldsRestricted {
        /// The root.
        path: PathBuf,
        /// The restricted rule's path, beneath the root.
        rule: PathBuf,
        /// Where the rule came from.
        origin: RuleOrigin,
    },
    /// The root may become writable, but the rules share it (or a path beneath it) read-only.
    #[error("{}: refused as a writable container's root: the shared path {} ({origin}) is read-only; make the root read-only (and not remountable)", path.display(), rule.display())]
    ReadOnlyShare {
        /// The root.
        path: PathBuf,
        /// The read-only share's path: covering the root, or beneath it.
        rule: PathBuf,
        /// Where the rule came from.
        origin: RuleOrigin,
    },
    /// No rule shares the root and it is in no engine's storage.
    #[error("{}: refused as a container's root: it is neither under a shared path nor in an engine's tree of roots (keep the bundle under a shared path, in a directory only root can enter, or add the engine's tree to eci.engineStorage)", path.display())]
    NotShared {
        /// The root.
        path: PathBuf,
    },
    /// A bind's host source is the root, lies inside it or holds it ([`check_binds_beside`]).
    #[error("{}: refused as a bind source: it is, lies inside or holds the container's root {}, which the mounter builds there, its own procfs and sysfs included before their masks", bind.display(), path.display())]
    BindOfRoot {
        /// The root.
        path: PathBuf,
        /// The bind's source.
        bind: PathBuf,
    },
    /// Outside an engine's tree, host users other than root can reach the root or move a
    /// directory on its path ([`RootAccess::IfClosedToOthers`]).
    #[error("{}: refused as a container's root: host users other than root can reach it (every directory above it lets them through, or one they may move is on its path), and the container's root would act there as the owner of every file, theirs included. Keep the bundle in a directory only root can enter or move (mode 0700, or 0710 with root's group, in root's directories)", path.display())]
    ReachableByOthers {
        /// The root.
        path: PathBuf,
    },
}

/// Refuses a bind whose resolved host `sources` is the resolved `root`, lies inside it or holds
/// it: the mounter binds the root onto itself and builds the container's mounts there (a fresh
/// procfs, unmasked until the masks come last), so such a bind, opened after that, would copy
/// them into the container as they stand.
///
/// ```
/// use eci_policy::root::check_binds_beside;
/// use std::path::Path;
/// let root = Path::new("/srv/b/rootfs");
/// assert!(check_binds_beside(root, [Path::new("/srv/data")]).is_ok());
/// assert!(check_binds_beside(root, [Path::new("/srv/b/rootfs/proc")]).is_err());
/// assert!(check_binds_beside(root, [Path::new("/srv/b")]).is_err());
/// assert!(check_binds_beside(root, [Path::new("/srv/b/rootfs2")]).is_ok());
/// ```
pub fn check_binds_beside<'a>(
    root: &Path,
    sources: impl IntoIterator<Item = &'a Path>,
) -> Result<(), RootRefusal> {
    match sources
        .into_iter()
        .find(|source| source.starts_with(root) || root.starts_with(source))
    {
        Some(source) => Err(RootRefusal::BindOfRoot {
            path: root.to_path_buf(),
            bind: source.to_path_buf(),
        }),
        None => Ok(()),
    }
}

impl Policy {
    /// Whether `root`, resolved as the runtime will mount it, may be a container's root, and on
    /// what; `writable` says whether the container may write to it or remount it writable.
    /// Costs a hash look-up per path component, like a bind's decision.
    pub fn decide_root(
        &self,
        root: &ResolvedPath,
        writable: bool,
    ) -> Result<RootAccess, RootRefusal> {
        let path = || root.as_path().to_path_buf();
        if let Some((rule, origin)) = self.paths.restricted_beneath(root) {
            return Err(RootRefusal::HoldsRestricted {
                path: path(),
                rule: rule.to_path_buf(),
                origin,
            });
        }
        match self.paths.decide(root) {
            PathDecision::Restricted { rule, .. } if self.keeps_roots_beneath(rule, root) => {
                Ok(RootAccess::EngineTree)
            }
            PathDecision::Restricted { rule, origin } => Err(RootRefusal::Restricted {
                path: path(),
                rule: rule.to_path_buf(),
                origin,
            }),
            PathDecision::ContainsRestricted { rule, origin } => {
                Err(RootRefusal::HoldsRestricted {
                    path: path(),
                    rule: rule.to_path_buf(),
                    origin,
                })
            }
            PathDecision::Shared {
                read_only: true,
                rule,
                origin,
            }
            | PathDecision::ContainsReadOnly { rule, origin }
                if writable =>
            {
                Err(RootRefusal::ReadOnlyShare {
                    path: path(),
                    rule: rule.to_path_buf(),
                    origin,
                })
            }
            PathDecision::Shared { .. } | PathDecision::ContainsReadOnly { .. } => {
                Ok(RootAccess::IfClosedToOthers)
            }
            PathDecision::NotShared => Err(RootRefusal::NotShared { path: path() }),
        }
    }

    /// Whether the restricted rule at `rule` is an engine's tree of roots and `root` lies
    /// strictly inside it. A more specific restriction inside the tree is its own rule, so it
    /// still refuses.
    fn keeps_roots_beneath(&self, rule: &Path, root: &ResolvedPath) -> bool {
        root.as_path() != rule
            && self
                .engine_data_roots
                .iter()
                .chain(&self.engine_storage)
                .any(|dir| dir == rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Scope;
    use proptest::prelude::*;

    fn resolved(path: &str) -> ResolvedPath {
        ResolvedPath::from_resolved(Path::new(path)).unwrap()
    }

    #[test]
    fn engine_roots_are_accepted_inside_their_restricted_trees() {
        let policy = Policy::default();
        for root in [
            "/var/lib/docker/overlay2/0123/merged",
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
            "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/7/fs",
        ] {
            assert_eq!(
                policy.decide_root(&resolved(root), true),
                Ok(RootAccess::EngineTree),
                "{root}"
            );
        }
    }

    #[test]
    fn an_engine_tree_itself_is_refused() {
        let policy = Policy::default();
        for root in ["/var/lib/docker", "/run/containerd", "/var/lib/containerd"] {
            assert!(
                matches!(
                    policy.decide_root(&resolved(root), false),
                    Err(RootRefusal::Restricted { .. })
                ),
                "{root}"
            );
        }
    }

    #[test]
    fn host_trees_are_refused_by_their_rule() {
        let policy = Policy::default()
            .with_state_dir(Path::new("/run/eci"))
            .unwrap();
        let refusal = |root: &str| policy.decide_root(&resolved(root), false).unwrap_err();
        assert!(matches!(refusal("/etc"), RootRefusal::Restricted { .. }));
        assert!(matches!(
            refusal("/root/.ssh"),
            RootRefusal::Restricted { .. }
        ));
        assert!(matches!(
            refusal("/run/eci/web"),
            RootRefusal::Restricted { .. }
        ));
        assert!(matches!(refusal("/"), RootRefusal::HoldsRestricted { .. }));
        assert!(matches!(
            refusal("/var"),
            RootRefusal::HoldsRestricted { rule, origin: RuleOrigin::Default, .. }
                if rule.starts_with("/var/lib")
        ));
        assert!(matches!(refusal("/var/log"), RootRefusal::NotShared { .. }));
    }

    #[test]
    fn a_read_only_share_is_a_root_only_read_only() {
        let policy = Policy::default();
        assert_eq!(
            policy.decide_root(&resolved("/usr"), false),
            Ok(RootAccess::IfClosedToOthers)
        );
        assert!(matches!(
            policy.decide_root(&resolved("/usr/share"), true),
            Err(RootRefusal::ReadOnlyShare { .. })
        ));
        let mut policy = Policy::default();
        policy.paths.share(Path::new("/data"), false).unwrap();
        policy.paths.share(Path::new("/data/golden"), true).unwrap();
        assert!(matches!(
            policy.decide_root(&resolved("/data"), true),
            Err(RootRefusal::ReadOnlyShare { .. })
        ));
        assert_eq!(
            policy.decide_root(&resolved("/data/scratch"), true),
            Ok(RootAccess::IfClosedToOthers)
        );
    }

    #[test]
    fn a_restriction_inside_an_engine_tree_holds() {
        let mut policy = Policy::default();
        policy
            .paths
            .restrict(Path::new("/var/lib/docker/secrets"), Scope::Subtree)
            .unwrap();
        assert!(matches!(
            policy.decide_root(&resolved("/var/lib/docker/secrets/x"), false),
            Err(RootRefusal::Restricted { .. })
        ));
        assert_eq!(
            policy.decide_root(&resolved("/var/lib/docker/overlay2"), false),
            Ok(RootAccess::EngineTree)
        );
    }

    #[test]
    fn added_engine_storage_holds_roots_and_is_restricted() {
        let policy = Policy::default()
            .with_engine_storage(Path::new("/var/lib/containers/"))
            .unwrap();
        let root = resolved("/var/lib/containers/storage/overlay/1/merged");
        assert_eq!(policy.decide_root(&root, true), Ok(RootAccess::EngineTree));
        assert!(matches!(
            policy.paths.decide(&root),
            PathDecision::Restricted { .. }
        ));
    }

    fn component() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "etc",
            "var",
            "lib",
            "docker",
            "containerd",
            "run",
            "eci",
            "usr",
            "srv",
            "x",
        ])
        .prop_map(String::from)
    }

    proptest! {
        /// Whatever the path, an accepted root holds no restricted path, and is either inside an
        /// engine's tree or a path a bind could name (read-only where the rules force it).
        #[test]
        fn an_accepted_root_is_an_engine_root_or_a_bindable_path(
            parts in prop::collection::vec(component(), 0..5),
            writable in any::<bool>(),
        ) {
            let policy = Policy::default();
            let root = resolved(&format!("/{}", parts.join("/")));
            if let Ok(access) = policy.decide_root(&root, writable) {
                prop_assert!(policy.paths.restricted_beneath(&root).is_none());
                let inside_engine = policy
                    .engine_data_roots
                    .iter()
                    .chain(&policy.engine_storage)
                    .any(|dir| root.as_path().starts_with(dir) && root.as_path() != dir);
                let bindable = match policy.paths.decide(&root) {
                    PathDecision::Shared { read_only, .. } => !(read_only && writable),
                    PathDecision::ContainsReadOnly { .. } => !writable,
                    _ => false,
                };
                // Every root outside an engine's tree is still to be found closed to others.
                let expected = if inside_engine {
                    RootAccess::EngineTree
                } else {
                    RootAccess::IfClosedToOthers
                };
                prop_assert!(inside_engine || bindable, "{}", root.as_path().display());
                prop_assert_eq!(access, expected);
            }
        }
    }
}
