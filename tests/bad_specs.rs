//! Bad specs give clear errors and leave nothing behind: no ID lease, cgroup, mount or process.
//! One test, so that nothing else runs in this process while it checks.

mod common;

use std::path::Path;

use common::{join_namespace, probe_mount, runtime, STATE_DIR};
use eci::oci_spec::runtime::{
    LinuxIdMappingBuilder, LinuxNamespaceType, LinuxSeccompAction, LinuxSeccompBuilder,
    LinuxSyscallBuilder, Mount, Spec,
};
use eci::{ContainerConfig, Error, HostRootfs};

fn attempt(name: &str, edit: impl FnOnce(&mut Spec)) -> (String, Result<eci::Container, Error>) {
    let (id, result, rootfs) = attempt_keeping(name, edit);
    rootfs.remove().unwrap();
    (id, result)
}

/// [`attempt`], with the rootfs kept (for the caller to remove).
fn attempt_keeping(
    name: &str,
    edit: impl FnOnce(&mut Spec),
) -> (String, Result<eci::Container, Error>, HostRootfs) {
    let id = format!("bad-{}-{name}", std::process::id());
    let rootfs = HostRootfs::create(&Path::new(STATE_DIR).join("rootfs").join(&id)).unwrap();
    let mut spec = rootfs.spec(vec!["true".into()]);
    let mut mounts = spec.mounts().clone().unwrap();
    mounts.push(probe_mount());
    spec.set_mounts(Some(mounts));
    edit(&mut spec);
    let result = runtime().create(ContainerConfig::new(id.clone(), spec));
    (id, result, rootfs)
}

fn expect_error(
    name: &str,
    edit: impl FnOnce(&mut Spec),
    check: impl FnOnce(&Error) -> bool,
) -> String {
    let (id, result) = attempt(name, edit);
    match result {
        Ok(_) => panic!("{name}: the bad spec was accepted"),
        Err(err) => {
            assert!(check(&err), "{name}: unexpected error: {err}");
            eprintln!("{name}: {err}");
        }
    }
    id
}

fn children() -> Vec<String> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(list.split_whitespace().map(str::to_string));
    }
    out
}

#[test]
fn bad_specs_are_refused_with_clear_errors_and_leave_nothing_behind() {
    let mut ids = Vec::new();
    ids.push(expect_error(
        "missing-rootfs",
        |spec| {
            spec.root_mut()
                .as_mut()
                .unwrap()
                .set_path("/nonexistent/rootfs".into());
        },
        |e| {
            matches!(e, Error::Path { what: "rootfs", .. })
                && e.to_string().contains("/nonexistent/rootfs")
        },
    ));
    // A sysctl key with an empty part names, to the kernel, a file its spelling hides: here
    // the congestion control whose write would load a module for the container.
    ids.push(expect_error(
        "sysctl-empty-part",
        |spec| {
            let mut linux = spec.linux().clone().unwrap();
            let key = "net.ipv4..tcp_congestion_control".to_string();
            linux.set_sysctl(Some([(key, "bbr".to_string())].into()));
            spec.set_linux(Some(linux));
        },
        |e| matches!(e, Error::Spec(_)) && e.to_string().contains("is not a sysctl name"),
    ));
    // Personality flags are not applied: refused rather than dropped.
    ids.push(expect_error(
        "personality-flags",
        |spec| {
            let mut linux = spec.linux().clone().unwrap();
            let personality = eci::oci_spec::runtime::LinuxPersonalityBuilder::default()
                .flags(vec!["ADDR_NO_RANDOMIZE".to_string()])
                .build()
                .unwrap();
            linux.set_personality(Some(personality));
            spec.set_linux(Some(linux));
        },
        |e| matches!(e, Error::Process(_)) && e.to_string().contains("ADDR_NO_RANDOMIZE"),
    ));
    // A host tree as the root: idmapped into the block, it would hand the container's root the
    // host's files as their owners, as a bind of it would.
    for (name, host_tree, readonly, refused) in [
        ("root-etc", "/etc", true, "inside the restricted path /etc"),
        ("root-var", "/var", true, "lies beneath it"),
        (
            "root-var-log",
            "/var/log",
            true,
            "neither under a shared path",
        ),
        (
            "root-home",
            "/home",
            true,
            "host users other than root can reach it",
        ),
        (
            "root-usr-rw",
            "/usr",
            false,
            "the shared path /usr (built-in default) is read-only",
        ),
    ] {
        ids.push(expect_error(
            name,
            |spec| {
                let root = spec.root_mut().as_mut().unwrap();
                root.set_path(host_tree.into());
                root.set_readonly(Some(readonly));
            },
            |e| matches!(e, Error::Root(_)) && e.to_string().contains(refused),
        ));
    }
    ids.push(expect_error(
        "overlapping-mappings",
        |spec| {
            let m = |c: u32, h: u32| {
                LinuxIdMappingBuilder::default()
                    .container_id(c)
                    .host_id(h)
                    .size(100u32)
                    .build()
                    .unwrap()
            };
            let mut linux = spec.linux().clone().unwrap();
            linux.set_uid_mappings(Some(vec![m(0, 100_000), m(50, 200_000)]));
            spec.set_linux(Some(linux));
        },
        |e| e.to_string().contains("uidMappings") && e.to_string().contains("overlap"),
    ));
    ids.push(expect_error(
        "cgroup-path-escapes",
        |spec| {
            let mut linux = spec.linux().clone().unwrap();
            linux.set_cgroups_path(Some("/../../../etc/eci-escape".into()));
            spec.set_linux(Some(linux));
        },
        |e| matches!(e, Error::CgroupPath(_)),
    ));
    assert!(!std::path::Path::new("/etc/eci-escape").exists());
    for (name, path) in [
        ("cgroup-path-relative", "eci/relative"),
        ("cgroup-path-root", "/"),
    ] {
        ids.push(expect_error(
            name,
            |spec| {
                let mut linux = spec.linux().clone().unwrap();
                linux.set_cgroups_path(Some(path.into()));
                spec.set_linux(Some(linux));
            },
            |e| matches!(e, Error::CgroupPath(_)),
        ));
    }
    let unified = |key: &str| {
        let key = key.to_string();
        move |spec: &mut Spec| {
            let mut linux = spec.linux().clone().unwrap();
            let mut resources = linux.resources().clone().unwrap_or_default();
            resources.set_unified(Some([(key, "1".to_string())].into()));
            linux.set_resources(Some(resources));
            spec.set_linux(Some(linux));
        }
    };
    ids.push(expect_error(
        "unified-core-file",
        unified("../../cgroup.procs"),
        |e| {
            e.to_string()
                .contains("unified key '../../cgroup.procs' is refused")
        },
    ));
    // libcgroups would leave the limit out on v1 without a word.
    if Path::new("/sys/fs/cgroup/memory/tasks").exists() {
        ids.push(expect_error("unified-on-v1", unified("memory.high"), |e| {
            e.to_string().contains(
                "unified sets cgroup v2 files, and this host's controllers are on cgroup v1",
            )
        }));
    }
    ids.push(expect_error(
        "relative-destination",
        |spec| {
            let mut mount = Mount::default();
            mount.set_destination("data".into());
            mount.set_typ(Some("tmpfs".into()));
            spec.mounts_mut().as_mut().unwrap().push(mount);
        },
        |e| e.to_string().contains("'data' is not absolute"),
    ));
    // Joining the host's network namespace, by whatever path: refused, and checked before
    // anything is made.
    ids.push(expect_error(
        "join-host-network",
        |spec| join_namespace(spec, LinuxNamespaceType::Network, "/proc/self/ns/net"),
        |e| matches!(e, Error::Join(_)) && e.to_string().contains("it is the host's"),
    ));
    ids.push(expect_error(
        "join-a-pid-namespace",
        |spec| join_namespace(spec, LinuxNamespaceType::Pid, "/proc/self/ns/pid"),
        |e| {
            e.to_string()
                .contains("only network, IPC and UTS namespaces may be shared")
        },
    ));
    // A seccomp profile with a listener of its own, which would be asked before eci's.
    ids.push(expect_error(
        "seccomp-notify",
        |spec| {
            let notify = LinuxSyscallBuilder::default()
                .names(vec!["mount".to_string()])
                .action(LinuxSeccompAction::ScmpActNotify)
                .build()
                .unwrap();
            let seccomp = LinuxSeccompBuilder::default()
                .default_action(LinuxSeccompAction::ScmpActAllow)
                .syscalls(vec![notify])
                .build()
                .unwrap();
            spec.linux_mut()
                .as_mut()
                .unwrap()
                .set_seccomp(Some(seccomp));
        },
        |e| matches!(e, Error::Profile(_)) && e.to_string().contains("SCMP_ACT_NOTIFY"),
    ));
    // An AppArmor profile this host cannot apply (it has no AppArmor): not dropped silently.
    if !common::apparmor_enabled() {
        ids.push(expect_error(
            "apparmor-without-apparmor",
            |spec| {
                let process = spec.process_mut().as_mut().unwrap();
                process.set_apparmor_profile(Some("docker-default".into()));
            },
            |e| matches!(e, Error::Unsupported(_)) && e.to_string().contains("without AppArmor"),
        ));
    }
    // OCI fields eci does not apply: refused, never dropped.
    type Edit = fn(&mut Spec);
    let unapplied: [(&str, Edit, &str); 5] = [
        (
            "net-devices",
            |spec| {
                let devices = [("eth9".to_string(), Default::default())]
                    .into_iter()
                    .collect();
                spec.linux_mut()
                    .as_mut()
                    .unwrap()
                    .set_net_devices(Some(devices));
            },
            "linux.netDevices",
        ),
        (
            "memory-policy",
            |spec| {
                let policy =
                    serde_json::from_str(r#"{"mode": "MPOL_BIND", "nodes": "0"}"#).unwrap();
                spec.linux_mut()
                    .as_mut()
                    .unwrap()
                    .set_memory_policy(Some(policy));
            },
            "linux.memoryPolicy",
        ),
        (
            "scheduler",
            |spec| {
                let scheduler =
                    serde_json::from_str(r#"{"policy": "SCHED_FIFO", "priority": 1}"#).unwrap();
                spec.process_mut()
                    .as_mut()
                    .unwrap()
                    .set_scheduler(Some(scheduler));
            },
            "process.scheduler",
        ),
        (
            "io-priority",
            |spec| {
                let priority =
                    serde_json::from_str(r#"{"class": "IOPRIO_CLASS_RT", "priority": 0}"#).unwrap();
                spec.process_mut()
                    .as_mut()
                    .unwrap()
                    .set_io_priority(Some(priority));
            },
            "process.ioPriority",
        ),
        (
            "idmapped-tmpfs",
            |spec| {
                let mut mount = Mount::default();
                mount.set_destination("/data".into());
                mount.set_typ(Some("tmpfs".into()));
                mount.set_options(Some(vec!["idmap".into()]));
                spec.mounts_mut().as_mut().unwrap().push(mount);
            },
            "no bind",
        ),
    ];
    for (name, edit, field) in unapplied {
        ids.push(expect_error(name, edit, |e| e.to_string().contains(field)));
    }
    // Refused by the kernel in the mounter, after the init exists.
    ids.push(expect_error(
        "kernel-refuses-mount",
        |spec| {
            let mut mount = Mount::default();
            mount.set_destination("/data".into());
            mount.set_typ(Some("tmpfs".into()));
            mount.set_options(Some(vec!["size=not-a-size".into()]));
            spec.mounts_mut().as_mut().unwrap().push(mount);
        },
        |e| matches!(e, Error::Setup { .. }) && e.to_string().contains("mounting tmpfs at /data"),
    ));
    // Created, but the program does not exist: start fails, delete cleans up.
    let (id, created, rootfs) = attempt_keeping("no-such-program", |spec| {
        spec.process_mut()
            .as_mut()
            .unwrap()
            .set_args(Some(vec!["/no/such/program".into()]));
    });
    let mut container = created.expect("creating succeeds; exec is at start");
    let err = container.start().unwrap_err();
    assert!(
        err.to_string().contains("executing '/no/such/program'"),
        "{err}"
    );
    container.delete().unwrap();
    rootfs.remove().unwrap();
    ids.push(id);
    // Created, then its rootfs directory removed: the root is an unlinked directory, of which
    // getcwd(2) cannot say where it is, so start refuses to run there (as runc does).
    let (id, created) = attempt("rootfs-removed", |_| {});
    let mut container = created.expect("creating succeeds");
    let err = container.start().unwrap_err();
    assert!(
        err.to_string().contains("is inside the container's root"),
        "{err}"
    );
    container.delete().unwrap();
    ids.push(id);

    // A spec file with an unknown namespace type.
    let bundle = tempfile::tempdir().unwrap();
    let mut json = serde_json::to_value(Spec::default()).unwrap();
    json["linux"]["namespaces"][0]["type"] = "bogus".into();
    std::fs::write(
        bundle.path().join("config.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    let err = eci::load_spec(bundle.path()).unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `bogus`") && err.to_string().contains("line"),
        "{err}"
    );

    // Nothing is left behind.
    let leases = runtime().allocator().leases().unwrap();
    for id in &ids {
        assert!(
            !leases.iter().any(|l| &l.owner == id),
            "lease of {id} left behind"
        );
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let dir = hierarchy.path().join("eci").join(id);
            assert!(!dir.exists(), "cgroup {} left behind", dir.display());
        }
    }
    // The runtime's own virtual files server is mounted there; nothing else may be.
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let virtual_files = format!("{STATE_DIR}/virtual/");
    let leftover: Vec<&str> = host_mounts
        .lines()
        .filter(|l| l.contains(STATE_DIR) && !l.contains(&virtual_files))
        .collect();
    assert!(
        leftover.is_empty(),
        "a mount under {STATE_DIR} is visible on the host: {leftover:?}"
    );
    // A child killed on the way may still be exiting, reaped a moment later (its exit waits
    // for the cgroup migration lock while a start primes it): wait a little, never forever.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !children().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(children(), Vec::<String>::new(), "processes left behind");
}
