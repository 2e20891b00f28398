//! Translating IDs between a container and the host through its uid and gid maps.

use eci_policy::ids::{validate_mappings, IdBlock, IdMapping, MappingError};

/// A container's uid and gid maps.
///
/// ```
/// use eci_idmap::translate::IdMap;
/// use eci_policy::ids::IdBlock;
/// let map = IdMap::from_block(IdBlock::new(1 << 28, 65536).unwrap());
/// assert_eq!(map.uid_to_host(1000), Some((1 << 28) + 1000));
/// assert_eq!(map.gid_to_container(5), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    uid: Vec<IdMapping>,
    gid: Vec<IdMapping>,
}

impl IdMap {
    /// Maps checked as the kernel would check them.
    pub fn new(uid: Vec<IdMapping>, gid: Vec<IdMapping>) -> Result<IdMap, MappingError> {
        validate_mappings(&uid)?;
        validate_mappings(&gid)?;
        Ok(IdMap { uid, gid })
    }

    /// The maps of a container that owns `block`: the same one range for uids and gids.
    pub fn from_block(block: IdBlock) -> IdMap {
        IdMap {
            uid: vec![block.mapping()],
            gid: vec![block.mapping()],
        }
    }

    /// The host uid that container uid `id` is.
    pub fn uid_to_host(&self, id: u32) -> Option<u32> {
        to_host(&self.uid, id)
    }

    /// The container uid that host uid `id` appears as.
    pub fn uid_to_container(&self, id: u32) -> Option<u32> {
        to_container(&self.uid, id)
    }

    /// The host gid that container gid `id` is.
    pub fn gid_to_host(&self, id: u32) -> Option<u32> {
        to_host(&self.gid, id)
    }

    /// The container gid that host gid `id` appears as.
    pub fn gid_to_container(&self, id: u32) -> Option<u32> {
        to_container(&self.gid, id)
    }

    /// The uid mappings.
    pub fn uid_mappings(&self) -> &[IdMapping] {
        &self.uid
    }

    /// The gid mappings.
    pub fn gid_mappings(&self) -> &[IdMapping] {
        &self.gid
    }
}

fn to_host(map: &[IdMapping], id: u32) -> Option<u32> {
    map.iter().find_map(|m| {
        id.checked_sub(m.container_start)
            .filter(|o| *o < m.size)
            .map(|o| m.host_start + o)
    })
}

fn to_container(map: &[IdMapping], id: u32) -> Option<u32> {
    map.iter().find_map(|m| {
        id.checked_sub(m.host_start)
            .filter(|o| *o < m.size)
            .map(|o| m.container_start + o)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Up to four mappings, disjoint on both sides by construction.
    fn mappings() -> impl Strategy<Value = Vec<IdMapping>> {
        proptest::collection::vec((1u32..5000, 1u32..5000, 1u32..5000), 1..4).prop_map(|sizes| {
            let (mut c, mut h) = (0u32, 1u32 << 20);
            sizes
                .into_iter()
                .map(|(gap_c, gap_h, size)| {
                    let m = IdMapping {
                        container_start: c + gap_c,
                        host_start: h + gap_h,
                        size,
                    };
                    c += gap_c + size;
                    h += gap_h + size;
                    m
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn translation_round_trips(uid in mappings(), gid in mappings(), id in 0u32..40_000, host in (1u32 << 20)..(1u32 << 20) + 40_000) {
            let map = IdMap::new(uid, gid).unwrap();
            if let Some(h) = map.uid_to_host(id) {
                prop_assert_eq!(map.uid_to_container(h), Some(id));
            }
            if let Some(c) = map.gid_to_container(host) {
                prop_assert_eq!(map.gid_to_host(c), Some(host));
            }
            let mapped = map.uid_mappings().iter().any(|m| id >= m.container_start && id - m.container_start < m.size);
            prop_assert_eq!(map.uid_to_host(id).is_some(), mapped);
        }
    }
}
