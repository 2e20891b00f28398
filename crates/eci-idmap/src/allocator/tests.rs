use super::*;

fn pool(blocks: u32) -> IdPool {
    IdPool::new(1 << 28, blocks * 65536, 65536).unwrap()
}

#[test]
fn blocks_are_exclusive_and_reused_after_release() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(3)).unwrap();
    let me = Holder::current().unwrap();
    let a = alloc.allocate("a", me).unwrap();
    let b = alloc.allocate("b", me).unwrap();
    assert!(!a.block().overlaps(&b.block()));
    let (a_index, b_start) = (a.index(), b.block().host_start());
    a.release().unwrap();
    let c = alloc.allocate("c", me).unwrap();
    assert_eq!(c.index(), a_index);
    assert_ne!(c.block().host_start(), b_start);
    drop(b);
    assert_eq!(alloc.leases().unwrap().len(), 1);
}

#[test]
fn a_second_allocator_sees_the_first_ones_leases() {
    let dir = tempfile::tempdir().unwrap();
    let first = Allocator::open(dir.path(), pool(3)).unwrap();
    let me = Holder::current().unwrap();
    let a = first.allocate("a", me).unwrap();
    let second = Allocator::open(dir.path(), pool(3)).unwrap();
    let b = second.allocate("b", me).unwrap();
    assert_ne!(a.index(), b.index());
    a.add_holder(Holder {
        pid: 1,
        start_time: Holder::of(1).unwrap().start_time,
    })
    .unwrap();
    let seen = second.leases().unwrap();
    assert_eq!(
        seen.iter().find(|l| l.owner == "a").unwrap().holders.len(),
        2
    );
}

#[test]
fn exhaustion_names_the_pool_and_the_blocks_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(1)).unwrap();
    let me = Holder::current().unwrap();
    let _held = alloc.allocate("a", me).unwrap();
    let err = alloc.allocate("b", me).unwrap_err();
    assert!(
        matches!(
            err,
            AllocError::Exhausted {
                blocks: 1,
                in_use: 1,
                block_size: 65536,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("all 1 are in use"), "{err}");
}

#[test]
fn dead_holders_are_reclaimed_when_the_pool_is_full_and_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(2)).unwrap();
    let me = Holder::current().unwrap();
    let dead = Holder {
        start_time: me.start_time + 1,
        ..me
    };
    std::mem::forget(alloc.allocate("ghost-1", dead).unwrap());
    std::mem::forget(alloc.allocate("ghost-2", dead).unwrap());
    let lease = alloc.allocate("live", me).unwrap();
    assert_eq!(lease.index(), 0);
    std::mem::forget(lease);
    let reopened = Allocator::open(dir.path(), pool(2)).unwrap();
    let leases = reopened.leases().unwrap();
    assert_eq!(
        leases.iter().map(|l| l.owner.as_str()).collect::<Vec<_>>(),
        ["live"]
    );
}

#[test]
fn an_unfinished_last_write_is_cut_and_a_corrupt_line_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(2)).unwrap();
    let lease = alloc.allocate("a", Holder::current().unwrap()).unwrap();
    let journal = dir.path().join(journal_name(&boot_id().unwrap()));
    let before = std::fs::read(&journal).unwrap();
    // A crash in the middle of appending the next line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap()
        .write_all(b"{\"op\":\"lea")
        .unwrap();
    let fresh = Allocator::open(dir.path(), pool(2)).unwrap();
    assert_eq!(fresh.leases().unwrap().len(), 1);
    assert_eq!(std::fs::read(&journal).unwrap(), before);
    drop(lease);
    // A garbled complete line is corruption, not something to skip.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap()
        .write_all(b"garbage\n")
        .unwrap();
    let err = Allocator::open(dir.path(), pool(2)).unwrap_err();
    assert!(matches!(err, AllocError::Corrupt { line: 4, .. }), "{err}");
    assert!(
        std::fs::read(&journal).unwrap().ends_with(b"garbage\n"),
        "the record is left as it was"
    );
}

#[test]
fn a_changed_pool_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(2)).unwrap();
    let _lease = alloc.allocate("a", Holder::current().unwrap()).unwrap();
    assert!(matches!(
        Allocator::open(dir.path(), pool(3)),
        Err(AllocError::PoolChanged { .. })
    ));
}

#[test]
fn the_journal_is_compacted_and_stays_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(4)).unwrap();
    let me = Holder::current().unwrap();
    let keep = alloc.allocate("keep", me).unwrap();
    for i in 0..600 {
        alloc
            .allocate(&format!("tmp-{i}"), me)
            .unwrap()
            .release()
            .unwrap();
    }
    let lines = std::fs::read_to_string(dir.path().join(journal_name(&boot_id().unwrap())))
        .unwrap()
        .lines()
        .count();
    assert!(
        lines < 300,
        "the journal was never compacted ({lines} lines)"
    );
    let other = Allocator::open(dir.path(), pool(4)).unwrap();
    let leases = other.leases().unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].index, keep.index());
}

#[test]
fn journals_of_earlier_boots_are_removed_and_boot_scoped_writes_work() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir
        .path()
        .join("leases-00000000-0000-0000-0000-000000000000.jsonl");
    std::fs::write(&old, b"whatever an earlier boot left\n").unwrap();
    let alloc = Allocator::open_with(dir.path(), pool(2), Durability::BootScoped).unwrap();
    assert!(!old.exists());
    let a = alloc.allocate("a", Holder::current().unwrap()).unwrap();
    let other = Allocator::open(dir.path(), pool(2)).unwrap();
    assert_eq!(other.leases().unwrap().len(), 1);
    a.release().unwrap();
    assert_eq!(other.leases().unwrap().len(), 0);
}
