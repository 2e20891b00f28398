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
fn the_live_leases_of_another_journal_are_adopted_once() {
    // A runtime of an earlier version leased blocks 0 and 1 in a journal of its own; this
    // journal gave block 1 out as well (the overlap the move to one journal ends).
    let (older_dir, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let older = Allocator::open(older_dir.path(), pool(4)).unwrap();
    let here = Allocator::open(dir.path(), pool(4)).unwrap();
    let me = Holder::current().unwrap();
    let init = Holder::of(1).unwrap();
    let dead = Holder {
        start_time: me.start_time + 1,
        ..me
    };
    std::mem::forget(older.allocate("old-0", me).unwrap());
    std::mem::forget(older.allocate("old-1", init).unwrap());
    std::mem::forget(older.allocate("old-dead", dead).unwrap());
    std::mem::forget(here.allocate("ours-0", me).unwrap());
    std::mem::forget(here.allocate("ours-1", me).unwrap());
    // Block 0 and 1 are taken here already: the older holders join those leases; block 2's
    // lease died with its holder and is not taken in.
    let records = older.leases().unwrap();
    assert_eq!(here.adopt(&records).unwrap(), 1, "pid 1 joins block 1");
    assert_eq!(here.adopt(&records).unwrap(), 0, "nothing twice");
    let fresh = Allocator::open(dir.path(), pool(4)).unwrap();
    let leases = fresh.leases().unwrap();
    let block_1 = leases.iter().find(|l| l.index == 1).unwrap();
    assert_eq!(block_1.holders, [me, init]);
    // In a journal with those blocks free, they are leased to the older owners.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Allocator::open(other_dir.path(), pool(4)).unwrap();
    assert_eq!(other.adopt(&records).unwrap(), 2);
    let next = other.allocate("new", me).unwrap();
    assert_eq!(next.index(), 2, "the adopted blocks are not handed out");
    let owners: Vec<String> = other
        .leases()
        .unwrap()
        .into_iter()
        .map(|l| l.owner)
        .collect();
    assert_eq!(owners, ["old-0", "old-1", "new"]);
}

#[test]
fn records_naming_one_block_twice_are_adopted_into_one_lease() {
    // Two user namespaces may map the same block (a container's and one nested in it): the
    // second record joins the lease the first made in the same change.
    let dir = tempfile::tempdir().unwrap();
    let here = Allocator::open(dir.path(), pool(4)).unwrap();
    let (me, init) = (Holder::current().unwrap(), Holder::of(1).unwrap());
    let record = |owner: &str, holder| LeaseRecord {
        index: 2,
        owner: owner.to_string(),
        token: 0,
        holders: vec![holder],
    };
    let records = [
        record("userns:1", me),
        record("userns:2", init),
        record("userns:3", me),
    ];
    assert_eq!(
        here.adopt(&records).unwrap(),
        2,
        "one lease, one more holder"
    );
    let leases = here.leases().unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(
        (leases[0].index, leases[0].holders.clone()),
        (2, vec![me, init])
    );
}

#[test]
fn a_block_both_journals_gave_out_stays_taken_while_the_adopted_holder_lives() {
    // Block 0 went to a container of the older journal (a live process) and to one here;
    // adopting joined the two leases. Ending ours must leave the block to theirs.
    let (older_dir, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let older = Allocator::open(older_dir.path(), pool(4)).unwrap();
    let here = Allocator::open(dir.path(), pool(4)).unwrap();
    let me = Holder::current().unwrap();
    let mut theirs = std::process::Command::new("sleep")
        .arg("100")
        .spawn()
        .unwrap();
    let their_holder = Holder::of(theirs.id() as i32).unwrap();
    std::mem::forget(older.allocate("old-0", their_holder).unwrap());
    let ours = here.allocate("ours-0", me).unwrap();
    assert_eq!(ours.index(), 0);
    assert_eq!(here.adopt(&older.leases().unwrap()).unwrap(), 1);
    ours.release().unwrap();
    let next = here.allocate("next", me).unwrap();
    assert_eq!(next.index(), 1, "block 0 still runs a container");
    let block_0 = here.leases().unwrap();
    let block_0 = block_0.iter().find(|l| l.index == 0).unwrap();
    assert_eq!(block_0.holders, [their_holder]);
    theirs.kill().unwrap();
    theirs.wait().unwrap();
    // Dead leases are reclaimed on open (and when the pool is full).
    let reopened = Allocator::open(dir.path(), pool(4)).unwrap();
    let after = reopened.allocate("after", me).unwrap();
    assert_eq!(after.index(), 0, "free once its last holder is gone");
}

#[test]
fn a_holder_added_by_another_process_keeps_the_block_past_its_release() {
    // Container "web" leased block 0; a container joining web's namespaces holds it too.
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(4)).unwrap();
    let me = Holder::current().unwrap();
    let web = alloc.allocate("web", me).unwrap();
    let mut joiner = std::process::Command::new("sleep")
        .arg("100")
        .spawn()
        .unwrap();
    let joiner_holder = Holder::of(joiner.id() as i32).unwrap();
    let listed = alloc.leases().unwrap();
    let record = listed.iter().find(|l| l.owner == "web").unwrap();
    Allocator::open(dir.path(), pool(4))
        .unwrap()
        .hold(record, joiner_holder)
        .unwrap();
    web.release().unwrap();
    assert_eq!(alloc.allocate("next", me).unwrap().index(), 1);
    let kept = alloc.leases().unwrap();
    let kept = kept.iter().find(|l| l.index == 0).unwrap();
    assert_eq!(kept.holders, [joiner_holder]);
    // A lease that ended since it was listed cannot be held.
    let err = alloc.hold(record, me).unwrap_err();
    assert!(
        matches!(err, AllocError::LeaseGone { index: 0, .. }),
        "{err}"
    );
    joiner.kill().unwrap();
    joiner.wait().unwrap();
    let reopened = Allocator::open(dir.path(), pool(4)).unwrap();
    assert_eq!(reopened.allocate("after", me).unwrap().index(), 0);
}

#[test]
fn a_journal_cut_short_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(4)).unwrap();
    let me = Holder::current().unwrap();
    let kept = alloc.allocate("kept", me).unwrap();
    let journal = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let text = std::fs::read(&journal).unwrap();
    // Below what this allocator has read: it must not go on from a hole.
    std::fs::write(&journal, &text[..text.len() / 3]).unwrap();
    assert!(matches!(
        alloc.allocate("next", me),
        Err(AllocError::Corrupt { .. })
    ));
    // Without a whole header, nothing says which blocks are free.
    std::fs::write(&journal, b"").unwrap();
    let fresh = Allocator::open(dir.path(), pool(4));
    let allocated = fresh.and_then(|a| a.allocate("next", me));
    assert!(
        matches!(allocated, Err(AllocError::Corrupt { line: 1, .. })),
        "{allocated:?}"
    );
    std::mem::forget(kept);
}

#[test]
fn a_lock_file_removed_beneath_an_allocator_fails_it() {
    // Another process opening the directory now would lock a new file: the two would no
    // longer exclude each other.
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(2)).unwrap();
    let me = Holder::current().unwrap();
    std::mem::forget(alloc.allocate("a", me).unwrap());
    std::fs::remove_file(dir.path().join(LOCK)).unwrap();
    let other = Allocator::open(dir.path(), pool(2)).unwrap();
    assert!(matches!(
        alloc.allocate("b", me),
        Err(AllocError::Io {
            what: "locking",
            ..
        })
    ));
    assert_eq!(other.allocate("c", me).unwrap().index(), 1);
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
fn a_release_cut_short_never_frees_a_block_another_holder_keeps() {
    // Released while another process still holds it: the release and the lease that keeps the
    // block for that process are one line, so a write cut short (a full /run, a kill) loses
    // both, never the second alone.
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(2)).unwrap();
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let lease = alloc.allocate("a", Holder::current().unwrap()).unwrap();
    lease
        .add_holder(Holder::of(other.id() as i32).unwrap())
        .unwrap();
    let journal = dir.path().join(journal_name(&boot_id().unwrap()));
    let before = std::fs::metadata(&journal).unwrap().len();
    lease.release().unwrap();
    let after = std::fs::metadata(&journal).unwrap().len();
    let text = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(
        text.lines().count(),
        4,
        "header, lease, hold, then one line: {text}"
    );
    // Cut in the middle of what the release wrote.
    let cut = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    cut.set_len(before + (after - before) / 2).unwrap();
    let reread = Allocator::open(dir.path(), pool(2)).unwrap();
    let leases = reread.leases().unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].index, 0);
    let _ = other.kill();
    let _ = other.wait();
}

#[test]
fn a_header_whose_next_token_has_none_after_it_is_corruption_not_a_panic() {
    // The header's next token was taken as read: the next lease got u64::MAX, which its own
    // line then refused, and `allocate` panicked with that line in the journal.
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(2)).unwrap();
    drop(alloc);
    let journal = dir.path().join(journal_name(&boot_id().unwrap()));
    let text = std::fs::read_to_string(&journal).unwrap();
    let (header, rest) = text.split_once('\n').unwrap();
    let mut header: serde_json::Value = serde_json::from_str(header).unwrap();
    assert!(header["nextToken"].is_u64(), "{header}");
    header["nextToken"] = u64::MAX.into();
    std::fs::write(&journal, format!("{header}\n{rest}")).unwrap();
    let err = Allocator::open(dir.path(), pool(2)).unwrap_err();
    assert!(matches!(err, AllocError::Corrupt { line: 1, .. }), "{err}");
}

#[test]
fn lease_owners_that_name_a_user_namespace_are_kept_for_blocks_found_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(2)).unwrap();
    let me = Holder::current().unwrap();
    let err = alloc.allocate("userns:4026531837", me).unwrap_err();
    assert!(matches!(err, AllocError::Owner(_)), "{err}");
    assert!(alloc.leases().unwrap().is_empty());
    let _web = alloc.allocate("web", me).unwrap();
    assert!(!alloc.leases().unwrap()[0].found_live());
}

#[test]
fn a_lease_token_with_none_after_it_is_corruption_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(2)).unwrap();
    let lease = alloc.allocate("a", Holder::current().unwrap()).unwrap();
    let journal = dir.path().join(journal_name(&boot_id().unwrap()));
    let text = std::fs::read_to_string(&journal).unwrap();
    let leased = text.lines().find(|l| l.contains("\"lease\"")).unwrap();
    let token = format!("\"token\":{}", lease.token());
    assert!(leased.contains(&token), "{leased}");
    let last = leased
        .replace(&token, &format!("\"token\":{}", u64::MAX))
        .replace("\"index\":0", "\"index\":1");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap();
    file.write_all(format!("{last}\n").as_bytes()).unwrap();
    let err = Allocator::open(dir.path(), pool(2)).unwrap_err();
    assert!(matches!(err, AllocError::Corrupt { .. }), "{err}");
    std::mem::forget(lease);
}

#[test]
fn a_changed_pool_is_refused_while_a_block_of_the_old_one_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(2)).unwrap();
    let me = Holder::current().unwrap();
    let lease = alloc.allocate("a", me).unwrap();
    let token = lease.token();
    assert!(matches!(
        Allocator::open(dir.path(), pool(3)),
        Err(AllocError::PoolChanged { .. })
    ));
    // Once none is, the journal starts again with the new pool (tokens never repeat), and
    // the old pool's runtime is the one refused.
    lease.release().unwrap();
    let dead = Holder {
        start_time: me.start_time + 1,
        ..me
    };
    let dead_lease = alloc.allocate("dead", dead).unwrap();
    let dead_token = dead_lease.token();
    std::mem::forget(dead_lease);
    assert!(dead_token > token);
    let changed = Allocator::open(dir.path(), pool(3)).unwrap();
    let next = changed.allocate("b", me).unwrap();
    assert_eq!(next.index(), 0);
    assert!(
        next.token() > dead_token,
        "tokens go on from the old journal"
    );
    assert!(matches!(
        alloc.allocate("c", me),
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

#[test]
fn a_change_that_never_reached_the_journal_never_happened() {
    // A journal on a filesystem that fills up: the lease whose line did not fit is refused,
    // and neither this allocator nor another one counts it.
    let dir = tempfile::tempdir().unwrap();
    let full = SmallTmpfs::mount(dir.path());
    // Room to give back once it is full.
    std::fs::write(full.0.join("pad"), [0u8; 4096]).unwrap();
    let big = IdPool::new(1 << 20, 4000 * 65536, 65536).unwrap();
    let alloc = Allocator::open(&full.0, big).unwrap();
    let me = Holder::current().unwrap();
    let mut held = Vec::new();
    let refused = loop {
        match alloc.allocate(&format!("c{}", held.len()), me) {
            Ok(lease) => held.push(lease),
            Err(err) => break err,
        }
        assert!(held.len() < 4000, "the filesystem never filled");
    };
    assert!(matches!(refused, AllocError::Io { .. }), "{refused}");
    assert_eq!(
        alloc.leases().unwrap().len(),
        held.len(),
        "no phantom lease"
    );
    let other = Allocator::open(&full.0, big).unwrap();
    assert_eq!(other.leases().unwrap().len(), held.len());
    // Space again: the allocator goes on from what the journal says.
    std::fs::remove_file(full.0.join("pad")).unwrap();
    held.pop().unwrap().release().unwrap();
    let again = alloc.allocate("again", me).unwrap();
    assert!(held.iter().all(|l| !l.block().overlaps(&again.block())));
    assert_eq!(other.leases().unwrap().len(), held.len() + 1);
}

/// A 16 KiB tmpfs mounted on a directory, unmounted when dropped.
struct SmallTmpfs(PathBuf);

impl SmallTmpfs {
    fn mount(dir: &Path) -> SmallTmpfs {
        let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: NUL-terminated strings.
        let mounted = unsafe {
            libc::mount(
                c"none".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=16k".as_ptr().cast(),
            )
        };
        assert_eq!(mounted, 0, "{}", io::Error::last_os_error());
        SmallTmpfs(dir.to_path_buf())
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn a_journal_removed_during_its_boot_is_not_started_again() {
    // Starting an empty one would hand out blocks that live containers hold.
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(3)).unwrap();
    let me = Holder::current().unwrap();
    let _a = alloc.allocate("a", me).unwrap();
    let journal = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".jsonl"))
        .unwrap();
    std::fs::remove_file(&journal).unwrap();
    let err = alloc.allocate("b", me).unwrap_err();
    assert!(matches!(err, AllocError::JournalGone { .. }), "{err}");
    let err = Allocator::open(dir.path(), pool(3)).unwrap_err();
    assert!(matches!(err, AllocError::JournalGone { .. }), "{err}");
    // Everything removed (every container deleted, the state wiped): a new start.
    std::fs::remove_file(dir.path().join(BEGUN)).unwrap();
    let fresh = Allocator::open(dir.path(), pool(3)).unwrap();
    assert!(fresh.leases().unwrap().is_empty());
}

#[test]
fn a_seeded_journal_begins_with_the_blocks_live_namespaces_map() {
    // A pool of this test's own; block 1 is mapped by a sleeping process in a user namespace.
    let pool = IdPool::new(0x7200_0000, 4 << 16, 1 << 16).unwrap();
    let _process = crate::live::MappedNamespace::new(pool.block(1).unwrap().mapping());
    let (seeded_dir, plain_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let seeded = Allocator::open_seeded(seeded_dir.path(), pool, Durability::Sync).unwrap();
    let plain = Allocator::open_with(plain_dir.path(), pool, Durability::Sync).unwrap();
    let me = Holder::current().unwrap();
    let indexes = |a: &Allocator| {
        [a.allocate("x", me).unwrap(), a.allocate("y", me).unwrap()].map(|lease| lease.index())
    };
    assert_eq!(indexes(&seeded), [0, 2], "block 1 is the live namespace's");
    assert_eq!(indexes(&plain), [0, 1], "an unseeded journal does not look");
}

#[test]
fn a_host_journal_never_leases_a_block_a_live_namespace_maps() {
    // Begun before the namespace existed: what another tool maps later (systemd-nspawn, a
    // runtime journaling elsewhere) is skipped when a block is chosen, not only when a
    // journal begins.
    let pool = IdPool::new(0x7300_0000, 3 << 16, 1 << 16).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let seeded = Allocator::open_seeded(dir.path(), pool, Durability::Sync).unwrap();
    let me = Holder::current().unwrap();
    let first = seeded.allocate("x", me).unwrap();
    assert_eq!(first.index(), 0);
    let foreign = crate::live::MappedNamespace::new(pool.block(1).unwrap().mapping());
    let next = seeded.allocate("y", me).unwrap();
    assert_eq!(next.index(), 2, "block 1 is the other namespace's");
    // Full now, block 1 included: refused rather than shared.
    let err = seeded.allocate("z", me).unwrap_err();
    assert!(matches!(err, AllocError::Exhausted { .. }), "{err}");
    drop(foreign);
    assert_eq!(seeded.allocate("z", me).unwrap().index(), 1);
}

#[test]
fn leases_kept_from_other_namespaces_are_refused_rather_than_reclaimed() {
    // From another PID namespace every holder would look gone; from another time namespace
    // every start time would read shifted. Either way opening would free every block.
    let dir = tempfile::tempdir().unwrap();
    let alloc = Allocator::open(dir.path(), pool(3)).unwrap();
    let lease = alloc.allocate("web", Holder::current().unwrap()).unwrap();
    let recorded = std::fs::read_to_string(dir.path().join(NAMESPACES)).unwrap();
    assert_eq!(recorded.trim(), own_namespaces().unwrap());
    std::fs::write(dir.path().join(NAMESPACES), "pid:1 time:1\n").unwrap();
    let err = Allocator::open(dir.path(), pool(3)).unwrap_err();
    assert!(
        matches!(&err, AllocError::OtherNamespaces { recorded, .. } if recorded == "pid:1 time:1"),
        "{err}"
    );
    // The lease was not touched.
    std::fs::write(dir.path().join(NAMESPACES), &recorded).unwrap();
    let again = Allocator::open(dir.path(), pool(3)).unwrap();
    assert_eq!(again.leases().unwrap().len(), 1);
    lease.release().unwrap();
}
