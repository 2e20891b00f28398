//! /etc/subuid and /etc/subgid: the subordinate IDs delegated to a user, as a pool of blocks.

use eci_policy::settings::{IdPool, PoolError};

/// One line: `owner:start:count`, the owner a user name or a numeric uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubIdRange {
    /// User name or uid.
    pub owner: String,
    /// First subordinate ID.
    pub start: u32,
    /// Number of IDs.
    pub count: u32,
}

/// Why a subordinate ID file or entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubIdError {
    /// A malformed line.
    #[error("{file} line {line}: {reason}")]
    Malformed {
        /// Which file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No range of the user is in both files.
    #[error("user {user} has no subordinate range that is in both {subuid} and {subgid}")]
    NoRange {
        /// The user.
        user: String,
        /// The uid file.
        subuid: String,
        /// The gid file.
        subgid: String,
    },
    /// The common range cannot be a pool.
    #[error("the subordinate range {start}+{count} of {user}: {source}")]
    Pool {
        /// The user.
        user: String,
        /// First ID of the range.
        start: u32,
        /// Size of the range.
        count: u32,
        /// Why it is not a pool.
        source: PoolError,
    },
    /// A file could not be read.
    #[error("reading {file}: {reason}")]
    Read {
        /// Which file.
        file: String,
        /// The error.
        reason: String,
    },
}

/// Parses the text of a subuid or subgid file (`file` names it in errors). Blank lines and lines
/// starting with `#` are skipped.
///
/// ```
/// let ranges = eci_idmap::subid::parse("alice:100000:65536\n1001:165536:65536\n", "/etc/subuid").unwrap();
/// assert_eq!(ranges[1].owner, "1001");
/// assert!(eci_idmap::subid::parse("alice:100000\n", "/etc/subuid").unwrap_err().to_string().contains("line 1"));
/// ```
pub fn parse(text: &str, file: &str) -> Result<Vec<SubIdRange>, SubIdError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| SubIdError::Malformed {
            file: file.to_string(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let fields: Vec<&str> = trimmed.split(':').collect();
        let [owner, start, count] = fields[..] else {
            return Err(bad("expected owner:start:count"));
        };
        if owner.is_empty() {
            return Err(bad("empty owner"));
        }
        let start: u32 = start.parse().map_err(|_| bad("start is not a number"))?;
        let count: u32 = count.parse().map_err(|_| bad("count is not a number"))?;
        if count == 0 {
            return Err(bad("count is 0"));
        }
        if u64::from(start) + u64::from(count) > u64::from(u32::MAX) {
            return Err(bad("range runs past the largest ID"));
        }
        out.push(SubIdRange {
            owner: owner.to_string(),
            start,
            count,
        });
    }
    Ok(out)
}

/// The pool for `user` (name and uid both match entries): the largest range that is delegated
/// in both files, since uid and gid blocks are allocated together and identical.
///
/// ```
/// let pool = eci_idmap::subid::pool_for("alice:100000:131072\n", "1000:100000:65536\n", "alice", 1000, 65536).unwrap();
/// assert_eq!((pool.start(), pool.block_count()), (100000, 1));
/// ```
pub fn pool_for(
    subuid: &str,
    subgid: &str,
    user: &str,
    uid: u32,
    block_size: u32,
) -> Result<IdPool, SubIdError> {
    let uids = parse(subuid, "/etc/subuid")?;
    let gids = parse(subgid, "/etc/subgid")?;
    let mine = |r: &&SubIdRange| r.owner == user || r.owner == uid.to_string();
    let best = uids
        .iter()
        .filter(mine)
        .flat_map(|u| {
            gids.iter()
                .filter(mine)
                .filter_map(move |g| intersect(u, g))
        })
        .max_by_key(|(_, count)| *count);
    let (start, count) = best.ok_or_else(|| SubIdError::NoRange {
        user: user.to_string(),
        subuid: "/etc/subuid".into(),
        subgid: "/etc/subgid".into(),
    })?;
    let whole = count - count % block_size.max(1);
    IdPool::new(start, whole, block_size).map_err(|source| SubIdError::Pool {
        user: user.to_string(),
        start,
        count,
        source,
    })
}

fn intersect(a: &SubIdRange, b: &SubIdRange) -> Option<(u32, u32)> {
    let start = a.start.max(b.start);
    let end =
        (u64::from(a.start) + u64::from(a.count)).min(u64::from(b.start) + u64::from(b.count));
    (end > u64::from(start)).then(|| (start, (end - u64::from(start)) as u32))
}

/// The pool for `user` from the system's /etc/subuid and /etc/subgid.
pub fn pool_from_system(user: &str, uid: u32, block_size: u32) -> Result<IdPool, SubIdError> {
    let read = |file: &str| {
        std::fs::read_to_string(file).map_err(|e| SubIdError::Read {
            file: file.into(),
            reason: e.to_string(),
        })
    };
    pool_for(
        &read("/etc/subuid")?,
        &read("/etc/subgid")?,
        user,
        uid,
        block_size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn malformed_lines_name_their_number() {
        for (text, reason) in [
            ("a:1:2\nb:x:2\n", "line 2: start is not a number"),
            ("a:1:2:3\n", "line 1: expected owner:start:count"),
            ("\n# comment\na:1:0\n", "line 3: count is 0"),
            (":1:2\n", "line 1: empty owner"),
            ("a:4294967295:2\n", "line 1: range runs past the largest ID"),
        ] {
            let err = parse(text, "/etc/subuid").unwrap_err().to_string();
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn the_pool_is_what_both_files_delegate_in_whole_blocks() {
        let pool = pool_for(
            "bob:200000:200000\n",
            "bob:250000:200000\n",
            "bob",
            7,
            65536,
        )
        .unwrap();
        assert_eq!((pool.start(), pool.size()), (250000, 131072));
        let err = pool_for(
            "bob:200000:65536\n",
            "carol:200000:65536\n",
            "bob",
            7,
            65536,
        )
        .unwrap_err();
        assert!(matches!(err, SubIdError::NoRange { .. }));
        let low = pool_for("bob:1000:65536\n", "bob:1000:65536\n", "bob", 7, 65536).unwrap_err();
        assert!(
            matches!(
                low,
                SubIdError::Pool {
                    source: PoolError::OverlapsHostIds(1000),
                    ..
                }
            ),
            "{low}"
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in ".{0,200}") {
            let _ = parse(&text, "/etc/subuid");
        }

        #[test]
        fn well_formed_lines_round_trip(entries in proptest::collection::vec(("[a-z]{1,8}", 0u32..1 << 30, 1u32..1 << 20), 0..8)) {
            let text: String = entries.iter().map(|(o, s, c)| format!("{o}:{s}:{c}\n")).collect();
            let parsed = parse(&text, "f").unwrap();
            prop_assert_eq!(parsed.len(), entries.len());
            for (range, (o, s, c)) in parsed.iter().zip(&entries) {
                prop_assert_eq!((&range.owner, range.start, range.count), (o, *s, *c));
            }
        }
    }
}
