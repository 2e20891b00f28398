//! Whether host users other than root can reach a directory, judged from the directories above
//! it (the directory itself does not count: whoever writes inside it can change its mode).
//!
//! This matters for a writable idmapped rootfs: the idmapping that shows the image's root-owned
//! files as the container's root also stores what the container's root creates as host root, so
//! a setuid binary made there would make root any host user who can reach it. Docker closes its
//! own storage (0710 root:root) for the same reason (CVE-2021-41091).
//!
//! ```
//! use eci_policy::reach::Ancestor;
//!
//! let tmp = Ancestor { uid: 0, gid: 0, mode: 0o1777, has_acl: false };
//! let docker_storage = Ancestor { uid: 0, gid: 0, mode: 0o710, has_acl: false };
//! assert!(tmp.lets_others_through());
//! assert!(!docker_storage.lets_others_through());
//! ```

/// A directory above the one judged, as stat(2) and getxattr(2) see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ancestor {
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Its mode (only the permission bits are read).
    pub mode: u32,
    /// Whether it carries an access ACL, which may let named users or groups in.
    pub has_acl: bool,
}

impl Ancestor {
    /// Whether some host user other than root may pass through it:
    /// - its owner is not root (an owner may always make its directory searchable);
    /// - others may search it;
    /// - a group other than root's may search it (root's group is taken to hold only root, as
    ///   Docker's 0710 root:root storage assumes);
    /// - or an ACL may let someone in (not read further: assumed to).
    pub fn lets_others_through(&self) -> bool {
        const GROUP_SEARCH: u32 = 0o010;
        const OTHERS_SEARCH: u32 = 0o001;
        self.uid != 0
            || self.mode & OTHERS_SEARCH != 0
            || (self.mode & GROUP_SEARCH != 0 && self.gid != 0)
            || self.has_acl
    }
}

/// Whether a host user other than root may reach a directory whose ancestors (nearest first, up
/// to `/`) are `ancestors`: none of them keeps such users out. Errs towards "reachable": users
/// who can pass through each directory are not required to be the same user.
///
/// ```
/// use eci_policy::reach::{reachable_by_others, Ancestor};
///
/// let open = Ancestor { uid: 0, gid: 0, mode: 0o755, has_acl: false };
/// let private = Ancestor { mode: 0o700, ..open };
/// assert!(reachable_by_others([open, open]));
/// assert!(!reachable_by_others([open, private, open]));
/// ```
pub fn reachable_by_others(ancestors: impl IntoIterator<Item = Ancestor>) -> bool {
    ancestors.into_iter().all(|a| a.lets_others_through())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ancestor() -> impl Strategy<Value = Ancestor> {
        (
            prop_oneof![Just(0u32), any::<u32>()],
            prop_oneof![Just(0u32), any::<u32>()],
            0u32..0o10000,
            any::<bool>(),
        )
            .prop_map(|(uid, gid, mode, has_acl)| Ancestor {
                uid,
                gid,
                mode,
                has_acl,
            })
    }

    #[test]
    fn common_layouts() {
        let root = |mode, gid| Ancestor {
            uid: 0,
            gid,
            mode,
            has_acl: false,
        };
        // /tmp, a plain directory, Docker's storage, a private tempdir, a group's share.
        assert!(root(0o1777, 0).lets_others_through());
        assert!(root(0o755, 0).lets_others_through());
        assert!(root(0o711, 0).lets_others_through());
        assert!(!root(0o710, 0).lets_others_through());
        assert!(!root(0o700, 0).lets_others_through());
        assert!(root(0o750, 100).lets_others_through());
        // A user's home, however closed.
        let home = Ancestor {
            uid: 1000,
            ..root(0o700, 1000)
        };
        assert!(home.lets_others_through());
        assert!(reachable_by_others([]));
    }

    proptest! {
        #[test]
        fn a_root_owned_directory_without_search_bits_or_acl_is_closed(
            a in ancestor(), extra in 0u32..0o10000
        ) {
            let closed = Ancestor { uid: 0, mode: extra & !0o011, has_acl: false, ..a };
            let open_to_group = closed.gid != 0 && extra & 0o010 != 0;
            prop_assert!(!closed.lets_others_through());
            prop_assert_eq!(Ancestor { mode: extra, ..closed }.lets_others_through(), extra & 0o001 != 0 || open_to_group);
            prop_assert!(!reachable_by_others([a, closed, a]));
        }

        #[test]
        fn more_permission_never_closes(a in ancestor(), bits in 0u32..0o10000, uid in any::<u32>()) {
            let wider = Ancestor { mode: a.mode | bits, ..a };
            let with_acl = Ancestor { has_acl: true, ..a };
            if a.lets_others_through() {
                prop_assert!(wider.lets_others_through());
                prop_assert!(with_acl.lets_others_through());
            }
            let owned = Ancestor { uid, ..a };
            prop_assert!(uid == 0 || owned.lets_others_through());
        }

        #[test]
        fn order_and_open_directories_do_not_change_the_verdict(
            chain in proptest::collection::vec(ancestor(), 0..8)
        ) {
            let open = Ancestor { uid: 0, gid: 0, mode: 0o755, has_acl: false };
            let verdict = reachable_by_others(chain.clone());
            prop_assert_eq!(reachable_by_others(chain.iter().rev().copied()), verdict);
            let longer = chain.iter().copied().chain([open]);
            prop_assert_eq!(reachable_by_others(longer), verdict);
        }
    }
}
