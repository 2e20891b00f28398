//! ID block allocation with 10,000 live leases: the in-memory table alone, and the allocator on
//! this machine's disk (journal append under a flock), with an fdatasync per change (`Sync`) and
//! without (`BootScoped`).

use criterion::{criterion_group, criterion_main, Criterion};
use eci::eci_idmap::table::BlockTable;
use eci::eci_idmap::{Allocator, Durability, Holder};
use eci::eci_policy::settings::IdPool;

const LIVE: u32 = 10_000;

fn in_memory(c: &mut Criterion) {
    let mut table = BlockTable::new(16_384);
    for _ in 0..LIVE {
        table.take_lowest();
    }
    c.bench_function("idmap/in_memory_allocate_release_10k_live", |b| {
        b.iter(|| {
            let index = table.take_lowest().expect("free blocks remain");
            table.release(index);
        })
    });
}

fn durable(c: &mut Criterion) {
    for durability in [Durability::Sync, Durability::BootScoped] {
        on_disk(c, durability);
    }
}

fn on_disk(c: &mut Criterion, durability: Durability) {
    // On the root filesystem (ext4 here), like /run/eci on this machine.
    let dir = tempfile::tempdir_in("/var/tmp").expect("a directory on disk");
    let pool = IdPool::new(1 << 28, 16_384 * 65_536, 65_536).expect("pool");
    let allocator = Allocator::open_with(dir.path(), pool, durability).expect("allocator");
    let me = Holder::current().expect("holder");
    let live: Vec<_> = (0..LIVE)
        .map(|i| allocator.allocate(&format!("live-{i}"), me).expect("lease"))
        .collect();
    let mut group = c.benchmark_group(format!("idmap/{durability:?}"));
    group.sample_size(50);
    group.bench_function("allocate_release_10k_live", |b| {
        b.iter(|| {
            allocator
                .allocate("bench", me)
                .expect("lease")
                .release()
                .expect("release")
        })
    });
    group.bench_function("container_start_pattern_10k_live", |b| {
        // What a container start and delete do: lease, add the init as holder, release.
        b.iter(|| {
            let lease = allocator.allocate("bench", me).expect("lease");
            lease.add_holder(me).expect("holder");
            lease.release().expect("release");
        })
    });
    group.finish();
    drop(live);
}

criterion_group!(benches, in_memory, durable);
criterion_main!(benches);
