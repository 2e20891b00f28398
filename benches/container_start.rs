//! `container_start`: create, start and wait for `/bin/true` in a privileged container rooted in
//! the host's /usr, then delete it. Needs root. Compare with runtimes using
//! `scripts/bench-start`, which times whole CLI runs of eci, runc and crun side by side.

use criterion::{criterion_group, criterion_main, Criterion};
use eci::{ContainerConfig, HostRootfs, Runtime, RuntimeConfig};

fn container_start(c: &mut Criterion) {
    let runtime = Runtime::new(RuntimeConfig {
        state_dir: "/run/eci-bench".into(),
        ..Default::default()
    })
    .expect("a runtime (the bench needs root)");
    let pid = std::process::id();
    let rootfs = HostRootfs::create(
        &runtime
            .state_dir()
            .join("rootfs")
            .join(format!("bench-{pid}")),
    )
    .expect("rootfs");
    let spec = rootfs.spec(vec!["/bin/true".into()]);
    let mut n = 0u64;
    c.bench_function("container_start", |b| {
        b.iter(|| {
            n += 1;
            let config = ContainerConfig::new(format!("bench-{pid}-{n}"), spec.clone());
            let mut container = runtime.create(config).expect("create");
            container.start().expect("start");
            assert_eq!(container.wait().expect("wait").code(), 0);
            container.delete().expect("delete");
        })
    });
    rootfs.remove().expect("remove rootfs");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = container_start
}
criterion_main!(benches);
