//! User and group ID ranges: the block of host IDs a container owns and the mappings written for
//! its user namespace.

use serde::{Deserialize, Serialize};

/// The number of IDs in one container block unless the settings say otherwise: a full 16-bit
/// range, so that every ID an ordinary Linux distribution uses inside has a host ID.
pub const DEFAULT_BLOCK_SIZE: u32 = 65536;

/// A contiguous range of host IDs owned by one container. Container ID 0 maps to `host_start`.
///
/// ```
/// use eci_policy::ids::IdBlock;
/// let block = IdBlock::new(1 << 28, 65536).unwrap();
/// assert_eq!(block.to_host(0), Some(1 << 28));
/// assert_eq!(block.to_host(65536), None);
/// assert_eq!(block.to_container((1 << 28) + 5), Some(5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdBlock {
    host_start: u32,
    size: u32,
}

impl IdBlock {
    /// A block of `size` host IDs starting at `host_start`, or `None` if it is empty or would run
    /// past the largest valid ID (`u32::MAX - 1`; `u32::MAX` is the kernel's invalid ID).
    pub fn new(host_start: u32, size: u32) -> Option<Self> {
        if size == 0 || u64::from(host_start) + u64::from(size) > u64::from(u32::MAX) {
            return None;
        }
        Some(Self { host_start, size })
    }

    /// First host ID of the block (container root's host ID).
    pub fn host_start(&self) -> u32 {
        self.host_start
    }

    /// Number of IDs in the block.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// One past the last host ID of the block.
    pub fn host_end(&self) -> u64 {
        u64::from(self.host_start) + u64::from(self.size)
    }

    /// The host ID that container ID `id` maps to, if the block covers it.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        (id < self.size).then(|| self.host_start + id)
    }

    /// The container ID that host ID `id` appears as, if the block covers it.
    pub fn to_container(&self, id: u32) -> Option<u32> {
        id.checked_sub(self.host_start)
            .filter(|offset| *offset < self.size)
    }

    /// True if the two blocks share at least one host ID.
    pub fn overlaps(&self, other: &IdBlock) -> bool {
        u64::from(self.host_start) < other.host_end()
            && u64::from(other.host_start) < self.host_end()
    }

    /// The single mapping that gives a container this whole block, container ID 0 first.
    pub fn mapping(&self) -> IdMapping {
        IdMapping {
            container_start: 0,
            host_start: self.host_start,
            size: self.size,
        }
    }
}

impl std::fmt::Display for IdBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {}-{}", self.host_start, self.host_end() - 1)
    }
}

/// One line of a `uid_map` or `gid_map`: `size` IDs starting at `container_start` inside map to
/// IDs starting at `host_start` outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdMapping {
    /// First ID as seen inside the user namespace.
    pub container_start: u32,
    /// First ID as seen in the parent user namespace.
    pub host_start: u32,
    /// Number of IDs mapped.
    pub size: u32,
}

impl std::fmt::Display for IdMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "container {}-{} -> host {}-{}",
            self.container_start,
            u64::from(self.container_start) + u64::from(self.size) - 1,
            self.host_start,
            u64::from(self.host_start) + u64::from(self.size) - 1
        )
    }
}

/// Why a list of ID mappings cannot be written to a user namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The list is empty; the kernel needs at least one line.
    #[error("no ID mappings given")]
    Empty,
    /// More lines than the kernel accepts.
    #[error("{count} ID mappings given; the kernel accepts at most {max}")]
    TooMany {
        /// Number of mappings given.
        count: usize,
        /// The kernel's limit.
        max: usize,
    },
    /// A mapping of size zero.
    #[error("ID mapping #{index} has size 0")]
    ZeroSize {
        /// Position of the mapping in the list.
        index: usize,
    },
    /// A mapping that runs past the largest valid ID.
    #[error("ID mapping #{index} ({mapping:?}) runs past the largest valid ID")]
    OutOfRange {
        /// Position of the mapping in the list.
        index: usize,
        /// The offending mapping.
        mapping: IdMapping,
    },
    /// Two mappings cover the same IDs on one side.
    #[error("ID mappings #{first} and #{second} overlap on the {side} side")]
    Overlap {
        /// Position of the earlier mapping.
        first: usize,
        /// Position of the later mapping.
        second: usize,
        /// "container" or "host".
        side: &'static str,
    },
}

/// The kernel's limit on lines in a `uid_map` or `gid_map` (since Linux 4.15).
pub const MAX_MAPPING_LINES: usize = 340;

/// Checks a mapping list the way the kernel would when it is written to `uid_map`: non-empty,
/// no zero sizes, no ranges past `u32::MAX - 1`, no overlap inside or outside.
///
/// ```
/// use eci_policy::ids::{validate_mappings, IdMapping, MappingError};
/// let a = IdMapping { container_start: 0, host_start: 1000, size: 10 };
/// let b = IdMapping { container_start: 5, host_start: 5000, size: 10 };
/// assert!(matches!(validate_mappings(&[a, b]), Err(MappingError::Overlap { side: "container", .. })));
/// ```
pub fn validate_mappings(mappings: &[IdMapping]) -> Result<(), MappingError> {
    if mappings.is_empty() {
        return Err(MappingError::Empty);
    }
    if mappings.len() > MAX_MAPPING_LINES {
        return Err(MappingError::TooMany {
            count: mappings.len(),
            max: MAX_MAPPING_LINES,
        });
    }
    let limit = u64::from(u32::MAX);
    for (index, mapping) in mappings.iter().enumerate() {
        if mapping.size == 0 {
            return Err(MappingError::ZeroSize { index });
        }
        let size = u64::from(mapping.size);
        if u64::from(mapping.container_start) + size > limit
            || u64::from(mapping.host_start) + size > limit
        {
            return Err(MappingError::OutOfRange {
                index,
                mapping: *mapping,
            });
        }
    }
    for (side, start_of) in [
        (
            "container",
            (|m: &IdMapping| m.container_start) as fn(&IdMapping) -> u32,
        ),
        ("host", |m: &IdMapping| m.host_start),
    ] {
        if let Some((first, second)) = first_overlap(mappings, start_of) {
            return Err(MappingError::Overlap {
                first,
                second,
                side,
            });
        }
    }
    Ok(())
}

/// The positions of two mappings whose ranges (as chosen by `start_of`) overlap, if any.
fn first_overlap(
    mappings: &[IdMapping],
    start_of: fn(&IdMapping) -> u32,
) -> Option<(usize, usize)> {
    let mut order: Vec<usize> = (0..mappings.len()).collect();
    order.sort_by_key(|&i| start_of(&mappings[i]));
    order.windows(2).find_map(|pair| {
        let (a, b) = (&mappings[pair[0]], &mappings[pair[1]]);
        let a_end = u64::from(start_of(a)) + u64::from(a.size);
        (a_end > u64::from(start_of(b))).then(|| (pair[0].min(pair[1]), pair[0].max(pair[1])))
    })
}

/// Reads the text of a `/proc/PID/uid_map` or `gid_map` (lines of three decimal numbers:
/// inside, outside, count). `None` for anything else: the kernel writes nothing else there.
///
/// ```
/// use eci_policy::ids::{parse_map_file, IdMapping};
/// let text = "         0 1879048192      65536\n";
/// let expected = IdMapping { container_start: 0, host_start: 1879048192, size: 65536 };
/// assert_eq!(parse_map_file(text), Some(vec![expected]));
/// assert_eq!(parse_map_file("0 1 two\n"), None);
/// ```
pub fn parse_map_file(text: &str) -> Option<Vec<IdMapping>> {
    text.lines()
        .map(|line| {
            let mut numbers = line.split_whitespace().map(str::parse::<u32>);
            let mapping = IdMapping {
                container_start: numbers.next()?.ok()?,
                host_start: numbers.next()?.ok()?,
                size: numbers.next()?.ok()?,
            };
            numbers.next().is_none().then_some(mapping)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn map_files_read_back_as_the_kernel_writes_them(
            mappings in proptest::collection::vec(any::<(u32, u32, u32)>(), 0..6)
        ) {
            let text: String = mappings
                .iter()
                .map(|(c, h, s)| format!("{c:>10} {h:>10} {s:>10}\n"))
                .collect();
            let expected: Vec<IdMapping> = mappings
                .iter()
                .map(|&(container_start, host_start, size)| IdMapping { container_start, host_start, size })
                .collect();
            prop_assert_eq!(parse_map_file(&text), Some(expected));
        }

        #[test]
        fn any_text_is_read_or_refused_without_panicking(text in ".{0,80}") {
            if let Some(mappings) = parse_map_file(&text) {
                prop_assert_eq!(mappings.len(), text.lines().count());
            }
        }
    }

    #[test]
    fn lines_with_more_or_fewer_numbers_are_refused() {
        assert_eq!(parse_map_file("0 1\n"), None);
        assert_eq!(parse_map_file("0 1 2 3\n"), None);
        assert_eq!(parse_map_file("-1 0 1\n"), None);
        assert_eq!(parse_map_file(""), Some(vec![]));
    }

    fn mapping() -> impl Strategy<Value = IdMapping> {
        (0u32..1000, 0u32..1000, 0u32..50).prop_map(|(c, h, s)| IdMapping {
            container_start: c,
            host_start: h,
            size: s,
        })
    }

    proptest! {
        #[test]
        fn validation_agrees_with_brute_force(list in proptest::collection::vec(mapping(), 1..6)) {
            let brute_overlap = |start: fn(&IdMapping) -> u32| {
                list.iter().enumerate().any(|(i, a)| list.iter().enumerate().any(|(j, b)| {
                    i != j && a.size > 0 && b.size > 0 && start(a) < start(b) + b.size && start(b) < start(a) + a.size
                }))
            };
            let has_zero = list.iter().any(|m| m.size == 0);
            let bad = has_zero || brute_overlap(|m| m.container_start) || brute_overlap(|m| m.host_start);
            prop_assert_eq!(validate_mappings(&list).is_err(), bad);
        }

        #[test]
        fn block_translation_round_trips(start in 0u32..u32::MAX / 2, size in 1u32..1_000_000, id in 0u32..2_000_000) {
            let block = IdBlock::new(start, size).unwrap();
            match block.to_host(id) {
                Some(host) => prop_assert_eq!(block.to_container(host), Some(id)),
                None => prop_assert!(id >= size),
            }
        }
    }

    #[test]
    fn block_refuses_the_invalid_id() {
        assert!(IdBlock::new(u32::MAX - 10, 11).is_none());
        assert!(IdBlock::new(u32::MAX - 10, 10).is_some());
        assert!(IdBlock::new(5, 0).is_none());
    }
}
