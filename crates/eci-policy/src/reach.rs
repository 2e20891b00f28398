//! Whether host users other than root can reach a directory, judged from the directories above
//! it (the directory itself does not count: whoever writes inside it can change its mode).
//!
//! This matters for a writable idmapped rootfs: the idmapping that shows the image's root-owned
//! files as the container's root also stores what the container's root creates as host root, so
//! a setuid binary made there would make root any host user who can reach it. Docker closes its
//! own storage (0710 root:root) for the same reason (CVE-2021-41091).
//!
//! A directory that keeps others out protects what is below it only while no one else can move
//! it: a user who may rename it (or any directory above it) can swap in a tree of their own
//! between the check and the mount, which opens the path again. So every directory above the
//! closed one must also be out of other users' hands (not writable by them, or sticky with the
//! entry on the path owned by root, as a root-owned directory in /tmp is).
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

    /// Whether some host user other than root may rename or replace `entry`, the directory on
    /// the path inside this one: this directory is theirs, carries an ACL, or is writable by
    /// others or a group other than root's, unless it is sticky and root owns it and `entry`
    /// (then only root may move `entry`).
    pub fn lets_others_move(&self, entry: &Ancestor) -> bool {
        self.lets_others_than_move(entry, 0)
    }

    /// [`Ancestor::lets_others_move`] where `trusted` counts as root does: a user other than
    /// root and `trusted` may rename or replace `entry`. For what a runtime of uid `trusted`
    /// keeps for itself (with 0, the same answer).
    pub fn lets_others_than_move(&self, entry: &Ancestor, trusted: u32) -> bool {
        const GROUP_WRITE: u32 = 0o020;
        const OTHERS_WRITE: u32 = 0o002;
        const STICKY: u32 = 0o1000;
        let ours = |uid: u32| uid == 0 || uid == trusted;
        let writable =
            self.mode & OTHERS_WRITE != 0 || (self.mode & GROUP_WRITE != 0 && self.gid != 0);
        let sticky_guarded = self.mode & STICKY != 0 && ours(entry.uid);
        !ours(self.uid) || self.has_acl || (writable && !sticky_guarded)
    }
}

/// Where a user other than root and `trusted` may rename or replace a directory, or one above
/// it: the index in `chain` (the directory first, then its ancestors up to `/`) of the first
/// ancestor that lets them move the entry below it, if any. Whoever may do so can swap the
/// directory for one of theirs after it was checked.
///
/// ```
/// use eci_policy::reach::{first_movable, Ancestor};
///
/// let run = Ancestor { uid: 0, gid: 0, mode: 0o755, has_acl: false };
/// let state = Ancestor { mode: 0o700, ..run };
/// let tmp = Ancestor { mode: 0o1777, ..run };
/// let shared = Ancestor { mode: 0o777, ..run };
/// assert_eq!(first_movable(&[state, run, run], 0), None); // /run/eci
/// assert_eq!(first_movable(&[state, tmp, run], 0), None); // /tmp/eci, root's
/// assert_eq!(first_movable(&[state, shared, run], 0), Some(1)); // /shared/eci
/// ```
pub fn first_movable(chain: &[Ancestor], trusted: u32) -> Option<usize> {
    (1..chain.len()).find(|&above| chain[above].lets_others_than_move(&chain[above - 1], trusted))
}

/// Whether a host user other than root may reach a directory whose ancestors (nearest first, up
/// to `/`) are `ancestors`, now or by moving a directory on its path: unless one of them keeps
/// such users out and neither it nor any directory above it can be moved by them. Errs towards
/// "reachable": users who can pass through each directory are not required to be the same.
///
/// ```
/// use eci_policy::reach::{reachable_by_others, Ancestor};
///
/// let open = Ancestor { uid: 0, gid: 0, mode: 0o755, has_acl: false };
/// let private = Ancestor { mode: 0o700, ..open };
/// let tmp = Ancestor { mode: 0o1777, ..open };
/// let home = Ancestor { uid: 1000, gid: 1000, mode: 0o755, has_acl: false };
/// assert!(reachable_by_others([open, open]));
/// assert!(!reachable_by_others([open, private, open]));
/// assert!(!reachable_by_others([private, tmp, open])); // a root-owned 0700 directory in /tmp
/// assert!(reachable_by_others([open, private, home, open])); // its owner may move `private`
/// ```
pub fn reachable_by_others(ancestors: impl IntoIterator<Item = Ancestor>) -> bool {
    let chain: Vec<Ancestor> = ancestors.into_iter().collect();
    let guards = |closed: usize| {
        !chain[closed].lets_others_through()
            && (closed + 1..chain.len())
                .all(|above| !chain[above].lets_others_move(&chain[above - 1]))
    };
    !(0..chain.len()).any(guards)
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
        // Who may move a directory out from under the path: the writers of a directory, not
        // of a sticky one whose entry root owns.
        let private = root(0o700, 0);
        assert!(root(0o777, 0).lets_others_move(&private));
        assert!(!root(0o1777, 0).lets_others_move(&private));
        assert!(root(0o1777, 0).lets_others_move(&home));
        assert!(root(0o770, 100).lets_others_move(&private));
        assert!(!root(0o770, 0).lets_others_move(&private));
        assert!(home.lets_others_move(&private));
        assert!(!reachable_by_others([
            root(0o755, 0),
            private,
            root(0o1777, 0),
            root(0o755, 0)
        ]));
        assert!(reachable_by_others([
            root(0o755, 0),
            private,
            root(0o777, 0),
            root(0o755, 0)
        ]));
    }

    proptest! {
        #[test]
        fn a_root_owned_directory_without_search_bits_or_acl_is_closed(
            a in ancestor(), extra in 0u32..0o10000
        ) {
            let closed = Ancestor { uid: 0, mode: extra & !0o011, has_acl: false, ..a };
            let root_dir = Ancestor { uid: 0, gid: 0, mode: 0o755, has_acl: false };
            prop_assert!(!closed.lets_others_through());
            prop_assert!(!reachable_by_others([a, closed, root_dir]));
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
        fn a_directory_others_may_move_guards_nothing_below_it(
            chain in proptest::collection::vec(ancestor(), 0..8), uid in 1u32.., mode in 0u32..0o10000
        ) {
            // Their own directory at the top: they may move whatever closes the path below it.
            let theirs = Ancestor { uid, gid: uid, mode, has_acl: false };
            let with_theirs = chain.iter().copied().chain([theirs]);
            prop_assert!(reachable_by_others(with_theirs));
        }

        #[test]
        fn a_root_directory_on_top_changes_nothing(
            chain in proptest::collection::vec(ancestor(), 0..8)
        ) {
            let open = Ancestor { uid: 0, gid: 0, mode: 0o755, has_acl: false };
            let verdict = reachable_by_others(chain.clone());
            let longer = chain.iter().copied().chain([open]);
            prop_assert_eq!(reachable_by_others(longer), verdict);
        }

        #[test]
        fn a_chain_is_movable_where_an_untrusted_user_owns_or_may_write_a_directory(
            chain in proptest::collection::vec(ancestor(), 1..8), trusted in any::<u32>(),
            at in any::<proptest::sample::Index>(), uid in any::<u32>(), mode in 0u32..0o10000
        ) {
            let found = first_movable(&chain, trusted);
            // The first directory alone is never judged: its own mode does not move it.
            prop_assert_eq!(first_movable(&chain[..1], trusted), None);
            if let Some(i) = found {
                prop_assert!(i >= 1 && chain[i].lets_others_than_move(&chain[i - 1], trusted));
            }
            // One owned by another user anywhere above the first is found there or earlier.
            let mut theirs = chain.clone();
            theirs.push(Ancestor { uid, gid: uid, mode, has_acl: false });
            let last = theirs.len() - 1;
            let i = at.index(last) + 1;
            theirs.swap(i, last);
            let found = first_movable(&theirs, trusted);
            prop_assert!(uid == 0 || uid == trusted || found.is_some_and(|f| f <= i));
            // With 0 trusted it agrees with the root-only rule.
            prop_assert_eq!(
                first_movable(&chain, 0).is_some(),
                (1..chain.len()).any(|a| chain[a].lets_others_move(&chain[a - 1]))
            );
        }
    }

    #[test]
    fn the_runtimes_own_directories_and_sticky_ones_do_not_let_others_move() {
        let dir = |uid, mode| Ancestor {
            uid,
            gid: uid,
            mode,
            has_acl: false,
        };
        // A rootless runtime's state in its own home: its user is trusted.
        let home = dir(1000, 0o755);
        assert!(home.lets_others_move(&dir(1000, 0o700)));
        assert!(!home.lets_others_than_move(&dir(1000, 0o700), 1000));
        // /tmp guards the runtime's entry, not another user's.
        let tmp = dir(0, 0o1777);
        assert!(!tmp.lets_others_than_move(&dir(1000, 0o700), 1000));
        assert!(tmp.lets_others_than_move(&dir(1001, 0o700), 1000));
        // A group-writable directory of root's group is root's; another group's is not.
        assert!(!dir(0, 0o775).lets_others_than_move(&dir(0, 0o700), 0));
        let staff = Ancestor {
            gid: 50,
            ..dir(0, 0o775)
        };
        assert!(staff.lets_others_than_move(&dir(0, 0o700), 0));
    }
}
