//! The in-memory lease table: which blocks of the pool are taken, with O(log n) allocation of
//! the lowest free block and O(log n) release.

use std::collections::BTreeMap;

/// Free and taken block indices of a pool of `capacity` blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTable {
    capacity: u32,
    /// Free runs: first index -> length.
    free: BTreeMap<u32, u32>,
}

impl BlockTable {
    /// A table with every block free.
    pub fn new(capacity: u32) -> Self {
        let mut free = BTreeMap::new();
        if capacity > 0 {
            free.insert(0, capacity);
        }
        Self { capacity, free }
    }

    /// Number of blocks in the pool.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Number of free blocks.
    pub fn free_count(&self) -> u32 {
        self.free.values().sum()
    }

    /// The lowest free block, left free.
    pub fn lowest_free(&self) -> Option<u32> {
        self.free.keys().next().copied()
    }

    /// The lowest free block not in `skip`, left free.
    pub fn lowest_free_except(&self, skip: &std::collections::BTreeSet<u32>) -> Option<u32> {
        self.free
            .iter()
            .flat_map(|(&start, &len)| start..start.saturating_add(len))
            .find(|index| !skip.contains(index))
    }

    /// Takes the lowest free block.
    pub fn take_lowest(&mut self) -> Option<u32> {
        let (&start, &len) = self.free.iter().next()?;
        self.free.remove(&start);
        if len > 1 {
            self.free.insert(start + 1, len - 1);
        }
        Some(start)
    }

    /// Marks `index` as taken. Returns false if it was already taken or is out of range.
    pub fn take(&mut self, index: u32) -> bool {
        let Some((&start, &len)) = self.free.range(..=index).next_back() else {
            return false;
        };
        if index >= start + len {
            return false;
        }
        self.free.remove(&start);
        if index > start {
            self.free.insert(start, index - start);
        }
        if index + 1 < start + len {
            self.free.insert(index + 1, start + len - index - 1);
        }
        true
    }

    /// Frees `index`, merging it with free neighbours. Returns false if it was already free or is
    /// out of range.
    pub fn release(&mut self, index: u32) -> bool {
        if index >= self.capacity || self.is_free(index) {
            return false;
        }
        let mut start = index;
        let mut len = 1;
        if let Some((&prev, &prev_len)) = self.free.range(..index).next_back() {
            if prev + prev_len == index {
                self.free.remove(&prev);
                start = prev;
                len += prev_len;
            }
        }
        if let Some(next_len) = self.free.remove(&(index + 1)) {
            len += next_len;
        }
        self.free.insert(start, len);
        true
    }

    /// True if `index` is free.
    pub fn is_free(&self, index: u32) -> bool {
        self.free
            .range(..=index)
            .next_back()
            .is_some_and(|(&start, &len)| index < start + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Op {
        Allocate,
        Release(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![3 => Just(Op::Allocate), 2 => any::<usize>().prop_map(Op::Release)],
            0..200,
        )
    }

    proptest! {
        #[test]
        fn random_allocations_never_overlap_and_stay_in_the_pool(capacity in 1u32..40, ops in ops()) {
            let mut table = BlockTable::new(capacity);
            let mut taken = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Allocate => match table.take_lowest() {
                        Some(index) => {
                            prop_assert!(index < capacity);
                            prop_assert!(taken.insert(index), "block {} handed out twice", index);
                            // Lowest-first: nothing below it is free.
                            prop_assert!((0..index).all(|i| taken.contains(&i)));
                        }
                        None => prop_assert_eq!(taken.len() as u32, capacity),
                    },
                    Op::Release(pick) if !taken.is_empty() => {
                        let index = *taken.iter().nth(pick % taken.len()).unwrap();
                        taken.remove(&index);
                        prop_assert!(table.release(index));
                        prop_assert!(!table.release(index));
                    }
                    Op::Release(_) => {}
                }
                prop_assert_eq!(table.free_count() + taken.len() as u32, capacity);
            }
        }

        #[test]
        fn the_lowest_free_block_skipped_is_none_of_the_skipped(
            capacity in 1u32..40,
            taken in proptest::collection::btree_set(0u32..40, 0..40),
            skip in proptest::collection::btree_set(0u32..45, 0..20),
        ) {
            let mut table = BlockTable::new(capacity);
            for index in &taken {
                table.take(*index);
            }
            let usable = |i: &u32| table.is_free(*i) && !skip.contains(i);
            prop_assert_eq!(table.lowest_free_except(&skip), (0..capacity).find(usable));
        }

        #[test]
        fn take_matches_a_set(capacity in 1u32..40, picks in proptest::collection::vec(0u32..45, 0..60)) {
            let mut table = BlockTable::new(capacity);
            let mut taken = BTreeSet::new();
            for index in picks {
                let fresh = index < capacity && !taken.contains(&index);
                prop_assert_eq!(table.take(index), fresh);
                if fresh { taken.insert(index); }
                for i in 0..capacity {
                    prop_assert_eq!(table.is_free(i), !taken.contains(&i));
                }
            }
        }
    }
}
