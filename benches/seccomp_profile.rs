//! `seccomp_profile`: compiling a spec's seccomp profile of Docker's shape, which every
//! `create` and `exec` of a container without `--privileged` does.
//!
//! The profile: ERRNO by default, 300 syscalls allowed outright, personality allowed for five
//! personas, clone allowed without namespace flags, clone3 answering ENOSYS (Docker 20.10's
//! default profile, as dockerd hands it to the runtime, has this shape: 357 names, of which
//! this architecture knows about 300).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use eci::eci_seccomp::profile::Profile;
use eci::oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

fn rule(names: Vec<String>, action: LinuxSeccompAction) -> LinuxSyscall {
    LinuxSyscallBuilder::default()
        .names(names)
        .action(action)
        .build()
        .unwrap()
}

fn with_arg(mut rule: LinuxSyscall, value: u64, op: LinuxSeccompOperator) -> LinuxSyscall {
    let arg = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(value)
        .op(op)
        .build()
        .unwrap();
    rule.set_args(Some(vec![arg]));
    rule
}

fn docker_shaped() -> LinuxSeccomp {
    let conditional = ["personality", "clone", "clone3"];
    let allowed: Vec<String> = syscalls::Sysno::iter()
        .map(|s| s.name().to_string())
        .filter(|n| !conditional.contains(&n.as_str()))
        .take(300)
        .collect();
    let mut rules = vec![rule(allowed, LinuxSeccompAction::ScmpActAllow)];
    for persona in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
        rules.push(with_arg(
            rule(vec!["personality".into()], LinuxSeccompAction::ScmpActAllow),
            persona,
            LinuxSeccompOperator::ScmpCmpEq,
        ));
    }
    rules.push(with_arg(
        rule(vec!["clone".into()], LinuxSeccompAction::ScmpActAllow),
        0x7E02_0000,
        LinuxSeccompOperator::ScmpCmpMaskedEq,
    ));
    let mut clone3 = rule(vec!["clone3".into()], LinuxSeccompAction::ScmpActErrno);
    clone3.set_errno_ret(Some(libc::ENOSYS as u32));
    rules.push(clone3);
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .syscalls(rules)
        .build()
        .unwrap()
}

fn compile(c: &mut Criterion) {
    let profile = docker_shaped();
    let compiled = Profile::compile(&profile).unwrap();
    let lengths: Vec<usize> = compiled.programs().iter().map(Vec::len).collect();
    println!("filters {lengths:?} instructions");
    c.bench_function("compile a Docker-shaped profile", |b| {
        b.iter(|| Profile::compile(black_box(&profile)).unwrap())
    });
}

criterion_group!(benches, compile);
criterion_main!(benches);
