use super::*;
use crate::settings::Policy;
use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, MountBuilder};
use proptest::prelude::*;

fn block() -> IdBlock {
    IdBlock::new(1 << 28, 65536).unwrap()
}

fn run(spec: Spec) -> Result<Hardened, HardenError> {
    let policy = Policy::default();
    let ctx = HardenContext {
        policy: &policy,
        block: block(),
        runtime_caps: CapSet::ALL,
    };
    harden(spec, &ctx, &mut |p: &Path| Ok(p.to_path_buf()))
}

fn spec_with_namespaces(types: &[LinuxNamespaceType]) -> Spec {
    let namespaces: Vec<_> = types
        .iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(*t).build().unwrap())
        .collect();
    let mut spec = Spec::default();
    spec.set_linux(Some(
        LinuxBuilder::default()
            .namespaces(namespaces)
            .build()
            .unwrap(),
    ));
    spec
}

#[test]
fn default_spec_gets_a_user_namespace_and_the_block() {
    let hardened = run(Spec::default()).unwrap();
    let linux = hardened.spec.linux().clone().unwrap();
    let types: Vec<_> = linux
        .namespaces()
        .clone()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert!(types.contains(&LinuxNamespaceType::User));
    let map = linux.gid_mappings().clone().unwrap();
    assert_eq!(
        (map[0].container_id(), map[0].host_id(), map[0].size()),
        (0, 1 << 28, 65536)
    );
}

#[test]
fn a_time_namespace_is_added_while_uptime_reflects_the_container() {
    let types = |hardened: &Hardened| -> Vec<LinuxNamespaceType> {
        let linux = hardened.spec.linux().clone().unwrap();
        linux
            .namespaces()
            .clone()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect()
    };
    let hardened = run(Spec::default()).unwrap();
    assert!(types(&hardened).contains(&LinuxNamespaceType::Time));
    assert!(hardened.report.contains(&Change::AddedNamespace("time")));

    let mut policy = Policy::default();
    policy.procfs.set(ProcFile::Uptime, false);
    let ctx = HardenContext {
        policy: &policy,
        block: block(),
        runtime_caps: CapSet::ALL,
    };
    let hardened = harden(Spec::default(), &ctx, &mut |p: &Path| Ok(p.to_path_buf())).unwrap();
    assert!(!types(&hardened).contains(&LinuxNamespaceType::Time));
}

/// The default spec with its `typ` namespace replaced by one joined at `path`.
fn joining(mut spec: Spec, typ: LinuxNamespaceType, path: &str) -> Spec {
    let mut linux = spec.linux().clone().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap();
    namespaces.retain(|n| n.typ() != typ);
    let joined = LinuxNamespaceBuilder::default().typ(typ).path(path);
    namespaces.push(joined.build().unwrap());
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    spec
}

#[test]
fn joining_a_namespace_that_is_always_the_containers_own_is_refused_by_name() {
    use LinuxNamespaceType::*;
    for (typ, name) in [
        (Pid, "pid"),
        (User, "user"),
        (Mount, "mount"),
        (Cgroup, "cgroup"),
    ] {
        let err = run(joining(Spec::default(), typ, "/proc/42/ns/x")).unwrap_err();
        assert!(
            matches!(err, HardenError::JoinNamespace { ns, .. } if ns == name),
            "{err}"
        );
        assert!(err.to_string().contains("/proc/42/ns/x"), "{err}");
    }
}

#[test]
fn network_ipc_and_uts_namespaces_may_be_joined_for_the_runtime_to_check() {
    use LinuxNamespaceType::*;
    let mut spec = Spec::default();
    for (typ, path) in [(Network, "/proc/42/ns/net"), (Ipc, "/proc/42/ns/ipc")] {
        spec = joining(spec, typ, path);
    }
    spec = joining(spec, Uts, "/run/pod/uts");
    spec.set_hostname(None);
    let hardened = run(spec).unwrap();
    assert_eq!(
        joined_namespaces(&hardened.spec),
        [
            (Network, "/proc/42/ns/net".into()),
            (Ipc, "/proc/42/ns/ipc".into()),
            (Uts, "/run/pod/uts".into())
        ]
    );
}

#[test]
fn a_joined_namespace_needs_an_absolute_path() {
    for path in ["", "proc/42/ns/net"] {
        let spec = joining(Spec::default(), LinuxNamespaceType::Network, path);
        let err = run(spec).unwrap_err();
        assert!(
            matches!(
                err,
                HardenError::RelativeNamespacePath { ns: "network", .. }
            ),
            "{err}"
        );
    }
}

#[test]
fn settings_of_a_joined_namespace_are_refused() {
    use LinuxNamespaceType::*;
    let with_sysctl = |typ, key: &str| {
        let mut spec = joining(Spec::default(), typ, "/proc/42/ns/x");
        spec.set_hostname(None);
        let mut linux = spec.linux().clone().unwrap();
        linux.set_sysctl(Some([(key.to_string(), "1".to_string())].into()));
        spec.set_linux(Some(linux));
        spec
    };
    for (typ, key, ns) in [
        (Network, "net.ipv4.ip_forward", "network"),
        (Ipc, "kernel.shmmni", "ipc"),
        (Ipc, "fs.mqueue.msg_max", "ipc"),
        (Uts, "kernel.domainname", "uts"),
    ] {
        let err = run(with_sysctl(typ, key)).unwrap_err();
        assert!(
            matches!(&err, HardenError::SysctlOfJoined { key: k, ns: n } if k == key && *n == ns),
            "{err}"
        );
    }
    // Spelt with slashes, the sysctl is in the same namespace.
    assert!(matches!(
        run(with_sysctl(Network, "net/ipv4/ip_forward")).unwrap_err(),
        HardenError::SysctlOfJoined { .. }
    ));
    // A sysctl of a namespace the container owns is still its own to set.
    run(with_sysctl(Network, "kernel.shmmni")).unwrap();
    run(with_sysctl(Ipc, "net.ipv4.ip_forward")).unwrap();

    let mut spec = joining(Spec::default(), Uts, "/proc/42/ns/uts");
    spec.set_hostname(Some("mine".into()));
    let err = run(spec).unwrap_err();
    assert!(matches!(err, HardenError::HostnameOfJoined), "{err}");
    // An empty name sets nothing, as runc reads it.
    let mut spec = joining(Spec::default(), Uts, "/proc/42/ns/uts");
    spec.set_hostname(Some(String::new()));
    run(spec).unwrap();
    let mut spec = joining(Spec::default(), Uts, "/proc/42/ns/uts");
    spec.set_hostname(None);
    spec.set_domainname(Some("example.org".into()));
    let err = run(spec).unwrap_err();
    assert!(matches!(err, HardenError::HostnameOfJoined), "{err}");
}

#[test]
fn leaving_out_the_pid_namespace_means_host_pid_and_is_refused() {
    use LinuxNamespaceType::*;
    let err = run(spec_with_namespaces(&[Network, Ipc, Uts, Mount])).unwrap_err();
    assert!(matches!(err, HardenError::HostNamespace("pid")), "{err}");
}

#[test]
fn overlapping_spec_mappings_are_an_error() {
    let mut spec = Spec::default();
    let mut linux = spec.linux().clone().unwrap();
    let m = |c, h, s| {
        from_mapping(IdMapping {
            container_start: c,
            host_start: h,
            size: s,
        })
    };
    linux.set_uid_mappings(Some(vec![m(0, 1000, 100), m(50, 5000, 100)]));
    spec.set_linux(Some(linux));
    let err = run(spec).unwrap_err();
    assert!(err.to_string().starts_with("linux.uidMappings"), "{err}");
}

#[test]
fn a_spec_without_process_or_root_is_refused() {
    let mut spec = Spec::default();
    spec.set_process(None);
    assert!(matches!(
        run(spec).unwrap_err(),
        HardenError::MissingProcess
    ));
    let mut spec = Spec::default();
    spec.set_root(None);
    assert!(matches!(run(spec).unwrap_err(), HardenError::MissingRoot));
}

#[test]
fn relative_mount_destination_is_an_error() {
    let mut spec = Spec::default();
    spec.set_mounts(Some(vec![MountBuilder::default()
        .destination("tmp")
        .typ("tmpfs")
        .source("tmpfs")
        .build()
        .unwrap()]));
    assert!(matches!(
        run(spec).unwrap_err(),
        HardenError::RelativeMountDestination(_)
    ));
}

fn kernel_fs_at(dest: &str, typ: &str) -> Spec {
    let mut spec = Spec::default();
    spec.set_mounts(Some(vec![MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(typ)
        .build()
        .unwrap()]));
    spec
}

#[test]
fn a_procfs_or_sysfs_elsewhere_is_refused_by_name() {
    // Outside /proc the masks (/proc/timer_list, ...) and the virtual files would not cover it.
    let err = run(kernel_fs_at("/host-proc", "proc")).unwrap_err();
    assert!(matches!(
        err,
        HardenError::KernelFsElsewhere { fstype: "proc", .. }
    ));
    assert!(err.to_string().contains("/host-proc"), "{err}");
    let err = run(kernel_fs_at("/sys/fs/../../s", "sysfs")).unwrap_err();
    assert!(err.to_string().contains("sysfs mount at /s"), "{err}");
    // At their own places they stay, however the spec spells the path.
    assert!(run(kernel_fs_at("/proc/", "proc")).is_ok());
    assert!(run(kernel_fs_at("/sys", "sysfs")).is_ok());
}

proptest! {
    #[test]
    fn a_procfs_or_sysfs_is_kept_only_at_its_home(
        parts in proptest::collection::vec("proc|sys|fs|\\.\\.|\\.|[a-z]{1,3}", 1..5),
        typ in "proc|sysfs|tmpfs",
    ) {
        let dest = format!("/{}", parts.join("/"));
        let normal = crate::paths::normalize(Path::new(&dest)).unwrap();
        let home = match typ.as_str() {
            "proc" => Some(Path::new("/proc")),
            "sysfs" => Some(Path::new("/sys")),
            _ => None,
        };
        let result = run(kernel_fs_at(&dest, &typ));
        if normal == Path::new("/") {
            prop_assert!(matches!(result, Err(HardenError::MountOverRoot)));
        } else if home.is_none_or(|home| normal == home) {
            prop_assert!(result.is_ok(), "{:?}", result.err());
        } else {
            let refused = matches!(result, Err(HardenError::KernelFsElsewhere { .. }));
            prop_assert!(refused, "{}", dest);
        }
    }
}

#[test]
fn bind_of_a_restricted_path_names_the_rule() {
    let mut spec = Spec::default();
    spec.set_mounts(Some(vec![MountBuilder::default()
        .destination("/host-etc")
        .typ("bind")
        .source("/etc")
        .options(vec!["rbind".to_string()])
        .build()
        .unwrap()]));
    let err = run(spec).unwrap_err();
    assert!(matches!(err, HardenError::RestrictedSource { .. }));
    assert!(err.to_string().contains("/etc"), "{err}");
}

/// The options hardening leaves on a bind of the host's /usr (shared read-only) asked with
/// `options`, and whether it reported making it read-only.
fn usr_bind_options(options: &[&str]) -> (Vec<String>, bool) {
    let mut spec = Spec::default();
    spec.set_mounts(Some(vec![MountBuilder::default()
        .destination("/usr")
        .typ("bind")
        .source("/usr")
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap()]));
    let hardened = run(spec).unwrap();
    let usr = hardened.spec.mounts().clone().unwrap();
    let usr = usr
        .iter()
        .find(|m| m.destination() == Path::new("/usr"))
        .unwrap();
    let forced = hardened
        .report
        .iter()
        .any(|c| matches!(c, Change::ForcedReadOnly(d) if d == Path::new("/usr")));
    (usr.options().clone().unwrap(), forced)
}

#[test]
fn shared_read_only_binds_become_read_only_all_through() {
    let (options, forced) = usr_bind_options(&["rbind", "rw"]);
    assert_eq!(
        options,
        ["rbind", IDMAP_SYSTEM_IF_SUPPORTED, "rro", "rprivate"]
    );
    assert!(forced);
    // A later `rw` does not undo an `ro` the spec gave itself.
    let (options, forced) = usr_bind_options(&["rbind", "ro", "rw", "nosuid"]);
    assert_eq!(
        options,
        [
            "rbind",
            "nosuid",
            IDMAP_SYSTEM_IF_SUPPORTED,
            "rro",
            "rprivate"
        ]
    );
    assert!(forced);
    let (options, forced) = usr_bind_options(&["rbind", "rro"]);
    assert_eq!(
        options,
        ["rbind", IDMAP_SYSTEM_IF_SUPPORTED, "rro", "rprivate"]
    );
    assert!(!forced, "asked as it is made");
    // Private whatever the spec asks: a slave would receive the host's later mounts there,
    // writable, and so would the submounts of a tree made private or unbindable at its top
    // alone. A recursive private or unbindable one stays.
    for propagation in [
        "rslave",
        "slave",
        "rshared",
        "shared",
        "private",
        "unbindable",
    ] {
        let (options, forced) = usr_bind_options(&["rbind", propagation, "rro"]);
        assert_eq!(
            options,
            ["rbind", IDMAP_SYSTEM_IF_SUPPORTED, "rro", "rprivate"],
            "{propagation}"
        );
        assert!(forced, "{propagation}");
    }
    let (options, _) = usr_bind_options(&["rbind", "runbindable"]);
    assert_eq!(
        options,
        ["rbind", "runbindable", IDMAP_SYSTEM_IF_SUPPORTED, "rro"]
    );
}

proptest! {
    #[test]
    fn a_shared_read_only_bind_ends_read_only_whatever_its_words(
        words in proptest::collection::vec(
            prop::sample::select(&["ro", "rw", "rro", "nosuid", "rbind", "bind", "rslave"][..]),
            0..8,
        ),
    ) {
        let (options, _) = usr_bind_options(&words);
        let access: Vec<&String> = options
            .iter()
            .filter(|o| ["ro", "rw", "rro"].contains(&o.as_str()))
            .collect();
        prop_assert_eq!(access, vec!["rro"]);
    }
}

#[test]
fn default_mounts_come_parent_first() {
    let hardened = run(Spec::default()).unwrap();
    let dests: Vec<_> = hardened
        .spec
        .mounts()
        .clone()
        .unwrap()
        .iter()
        .map(|m| m.destination().clone())
        .collect();
    let dev = dests.iter().position(|d| d == Path::new("/dev")).unwrap();
    let pts = dests
        .iter()
        .position(|d| d == Path::new("/dev/pts"))
        .unwrap();
    assert!(dev < pts);
}

#[test]
fn the_specs_own_mounts_keep_their_order() {
    let mount = |dest: &str, typ: &str| {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(typ)
            .build()
            .unwrap()
    };
    let mut spec = Spec::default();
    spec.set_mounts(Some(vec![
        mount("/data/x", "tmpfs"),
        mount("/dev", "tmpfs"),
        mount("/data", "tmpfs"),
    ]));
    let hardened = run(spec).unwrap();
    let dests: Vec<_> = hardened
        .spec
        .mounts()
        .clone()
        .unwrap()
        .iter()
        .map(|m| m.destination().clone())
        .collect();
    let at = |d: &str| dests.iter().position(|x| x == Path::new(d)).unwrap();
    assert!(
        at("/data/x") < at("/data"),
        "the spec's order is kept: {dests:?}"
    );
    assert_eq!(at("/dev/pts"), at("/dev") + 1, "{dests:?}");
    assert!(at("/proc") < at("/data/x"));
}

#[test]
fn privileged_device_lists_are_cut_to_the_safe_set() {
    use oci_spec::runtime::LinuxDeviceBuilder;
    let mut spec = Spec::default();
    let mut linux = spec.linux().clone().unwrap();
    let dev = |path: &str, typ, major, minor| {
        LinuxDeviceBuilder::default()
            .path(path)
            .typ(typ)
            .major(major)
            .minor(minor)
            .build()
            .unwrap()
    };
    linux.set_devices(Some(vec![
        dev("/dev/null", LinuxDeviceType::C, 1, 3),
        dev("/dev/sda", LinuxDeviceType::B, 8, 0),
        dev("/dev/mem", LinuxDeviceType::C, 1, 1),
    ]));
    spec.set_linux(Some(linux));
    let hardened = run(spec).unwrap();
    let kept = hardened
        .spec
        .linux()
        .clone()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert_eq!(kept.len(), 1);
    assert!(hardened
        .report
        .contains(&Change::DroppedDevice(PathBuf::from("/dev/sda"))));
    assert!(hardened
        .report
        .contains(&Change::DroppedDevice(PathBuf::from("/dev/mem"))));
}

#[test]
fn global_sysctls_are_refused() {
    let mut spec = Spec::default();
    let mut linux = spec.linux().clone().unwrap();
    linux.set_sysctl(Some([("kernel.panic".to_string(), "1".to_string())].into()));
    spec.set_linux(Some(linux));
    assert!(matches!(run(spec).unwrap_err(), HardenError::GlobalSysctl(k) if k == "kernel.panic"));
    // Spelt with slashes, or with a part the kernel skips, a sysctl is the same file: judged
    // by the name the kernel reads, or refused.
    let with = |key: &str| {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap();
        linux.set_sysctl(Some([(key.to_string(), "1".to_string())].into()));
        spec.set_linux(Some(linux));
        run(spec)
    };
    assert!(matches!(
        with("kernel/panic"),
        Err(HardenError::GlobalSysctl(_))
    ));
    assert!(matches!(
        with("net/core/rmem_max"),
        Err(HardenError::GlobalSysctl(_))
    ));
    for key in [
        "net.ipv4..tcp_congestion_control",
        "net/ipv4/../../kernel/core_pattern",
        "net.ipv4.ip_forward.",
    ] {
        assert!(
            matches!(with(key), Err(HardenError::SysctlName(_))),
            "{key}"
        );
    }
    with("net/ipv4/conf/eth0.100/forwarding").unwrap();
    with("net.ipv4.ip_forward").unwrap();
    assert!(is_namespaced_sysctl("net.ipv4.ip_forward"));
    assert!(is_namespaced_sysctl("kernel.shmmax"));
    assert!(!is_namespaced_sysctl("net.core.rmem_max"));
    assert!(!is_namespaced_sysctl("vm.overcommit_memory"));
    assert!(!is_namespaced_sysctl("net.netfilter.nf_conntrack_max"));
}

#[test]
fn capabilities_never_exceed_the_runtime() {
    let mut spec = Spec::default();
    let all: Capabilities = [Capability::SysAdmin, Capability::SysModule]
        .into_iter()
        .collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(all.clone()));
    caps.set_effective(Some(all));
    spec.process_mut()
        .as_mut()
        .unwrap()
        .set_capabilities(Some(caps));
    let policy = Policy::default();
    let runtime = CapSet(1 << number(Capability::SysAdmin));
    let ctx = HardenContext {
        policy: &policy,
        block: block(),
        runtime_caps: runtime,
    };
    let hardened = harden(spec, &ctx, &mut |p: &Path| Ok(p.to_path_buf())).unwrap();
    let caps = hardened
        .spec
        .process()
        .clone()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap();
    assert_eq!(caps.bounding().clone().unwrap().len(), 1);
    let dropped = hardened.report.iter().find_map(|c| match c {
        Change::DroppedCapabilities(list) => Some(list.clone()),
        _ => None,
    });
    let dropped = dropped.expect("a capability was dropped");
    assert!(dropped.contains(&"CAP_SYS_MODULE".to_string()));
    assert!(!dropped.contains(&"CAP_SYS_ADMIN".to_string()));
}

use oci_spec::runtime::Capability;

fn any_namespaces() -> impl Strategy<Value = Vec<(LinuxNamespaceType, bool)>> {
    use LinuxNamespaceType::*;
    proptest::collection::vec(
        (
            prop::sample::select(vec![Mount, Cgroup, Uts, Ipc, User, Pid, Network, Time]),
            any::<bool>(),
        ),
        0..10,
    )
}

proptest! {
    #[test]
    fn hardened_specs_always_have_a_private_user_namespace_and_the_block(list in any_namespaces()) {
        let namespaces: Vec<_> = list.iter().map(|(t, join)| {
            let mut b = LinuxNamespaceBuilder::default().typ(*t);
            if *join { b = b.path("/proc/1/ns/x"); }
            b.build().unwrap()
        }).collect();
        let mut spec = Spec::default();
        spec.set_linux(Some(LinuxBuilder::default().namespaces(namespaces).build().unwrap()));
        if let Ok(hardened) = run(spec) {
            let linux = hardened.spec.linux().clone().unwrap();
            let ns = linux.namespaces().clone().unwrap();
            // Only the shareable types keep a path, for the runtime to check and join.
            let joinable = [LinuxNamespaceType::Network, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts];
            prop_assert!(ns.iter().all(|n| n.path().is_none() || joinable.contains(&n.typ())));
            prop_assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none()));
            for required in [LinuxNamespaceType::User, LinuxNamespaceType::Pid, LinuxNamespaceType::Network, LinuxNamespaceType::Mount] {
                prop_assert!(ns.iter().any(|n| n.typ() == required));
            }
            let uid = linux.uid_mappings().clone().unwrap();
            prop_assert_eq!(uid.len(), 1);
            prop_assert_eq!(uid[0].host_id(), 1 << 28);
        }
    }
}

mod docker_socket {
    use super::*;
    use crate::image::{Digest, ImageIdentity, ImagePattern, KnownDigests};

    fn digest(fill: char) -> Digest {
        Digest::parse(&format!("sha256:{}", fill.to_string().repeat(64))).unwrap()
    }

    fn socket_spec(source: &str) -> Spec {
        let mut spec = Spec::default();
        spec.set_mounts(Some(vec![MountBuilder::default()
            .destination("/var/run/docker.sock")
            .typ("bind")
            .source(source)
            .options(vec!["rbind".to_string()])
            .build()
            .unwrap()]));
        spec
    }

    fn policy_allowing(entry: &str) -> Policy {
        let mut policy = Policy::default();
        policy.docker_socket.images.images = vec![ImagePattern::parse(entry).unwrap()];
        policy
    }

    fn known() -> KnownDigests {
        let mut known = KnownDigests::default();
        known.insert(&"docker:cli".parse().unwrap(), digest('a'));
        known
    }

    fn run_as(
        policy: &Policy,
        image: Option<&ImageIdentity>,
        base: Option<&ImageIdentity>,
        source: &str,
    ) -> Result<Hardened, HardenError> {
        run_spec_as(policy, image, base, socket_spec(source))
    }

    fn run_spec_as(
        policy: &Policy,
        image: Option<&ImageIdentity>,
        base: Option<&ImageIdentity>,
        spec: Spec,
    ) -> Result<Hardened, HardenError> {
        let ctx = HardenContext {
            policy,
            block: block(),
            runtime_caps: CapSet::ALL,
        };
        let known = known();
        let image = image.map(|image| ImageContext {
            image,
            base,
            known: &known,
        });
        // /var/run is a symlink to /run on most hosts; the resolver says so.
        let mut resolve = |p: &Path| {
            Ok(p.strip_prefix("/var/run")
                .map_or(p.to_path_buf(), |rest| Path::new("/run").join(rest)))
        };
        harden_with_image(spec, &ctx, image.as_ref(), &mut resolve)
    }

    #[test]
    fn an_allowed_image_still_gets_no_idmapped_socket() {
        // The engine's socket is host root's: idmapped, container root would be its owner.
        let cli = identity("docker:cli", Some('a'));
        let policy = policy_allowing("docker:cli");
        let mut spec = socket_spec("/var/run/docker.sock");
        let mut mounts = spec.mounts().clone().unwrap();
        mounts[0].set_options(Some(vec!["rbind".to_string(), "idmap".to_string()]));
        spec.set_mounts(Some(mounts));
        let err = run_spec_as(&policy, Some(&cli), None, spec).unwrap_err();
        assert!(matches!(err, HardenError::IdmapRefused { .. }), "{err}");
        assert!(run_as(&policy, Some(&cli), None, "/var/run/docker.sock").is_ok());
    }

    fn identity(reference: &str, fill: Option<char>) -> ImageIdentity {
        ImageIdentity {
            reference: reference.parse().unwrap(),
            digest: fill.map(digest),
        }
    }

    #[test]
    fn refused_without_an_image_or_by_default() {
        let err = run(socket_spec("/run/docker.sock")).unwrap_err();
        assert!(
            matches!(err, HardenError::DockerSocket { image: None, .. }),
            "{err}"
        );
        let cli = identity("docker:cli", Some('a'));
        let err = run_as(&Policy::default(), Some(&cli), None, "/var/run/docker.sock").unwrap_err();
        assert!(
            err.to_string().contains("docker.io/library/docker:cli"),
            "{err}"
        );
        assert!(err.to_string().contains("/run/docker.sock"), "{err}");
    }

    #[test]
    fn allowed_for_a_listed_image_whose_digest_the_registry_confirms() {
        let policy = policy_allowing("docker:cli");
        let cli = identity("docker:cli", Some('a'));
        let hardened = run_as(&policy, Some(&cli), None, "/var/run/docker.sock").unwrap();
        let mounts = hardened.spec.mounts().clone().unwrap();
        let socket = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/var/run/docker.sock"))
            .unwrap();
        assert_eq!(
            socket.source().as_deref(),
            Some(Path::new("/run/docker.sock"))
        );
        assert!(hardened.report.iter().any(|c| matches!(
            c,
            Change::DockerSocketAllowed { derived: false, entry, .. } if entry == "docker.io/library/docker:cli"
        )));
    }

    #[test]
    fn a_retagged_image_is_refused() {
        let policy = policy_allowing("docker:cli");
        let impostor = identity("docker:cli", Some('e'));
        let err = run_as(&policy, Some(&impostor), None, "/run/docker.sock").unwrap_err();
        assert!(matches!(err, HardenError::DockerSocket { .. }), "{err}");
    }

    #[test]
    fn a_derived_image_follows_its_base_when_allowed() {
        let mut policy = policy_allowing("docker:cli");
        let built = identity("my-tool", None);
        let base = identity("docker:cli", Some('a'));
        let hardened = run_as(&policy, Some(&built), Some(&base), "/run/docker.sock").unwrap();
        assert!(hardened
            .report
            .iter()
            .any(|c| matches!(c, Change::DockerSocketAllowed { derived: true, .. })));
        policy.docker_socket.images.allow_derived_images = false;
        assert!(run_as(&policy, Some(&built), Some(&base), "/run/docker.sock").is_err());
    }

    #[test]
    fn sharing_the_sockets_directory_does_not_hand_it_out() {
        let mut policy = Policy::default();
        policy.paths.share(Path::new("/run"), false).unwrap();
        let err = run_as(&policy, None, None, "/run").unwrap_err();
        assert!(
            matches!(&err, HardenError::HoldsRestricted { rule, .. } if rule == Path::new("/run/containerd")),
            "{err}"
        );
        policy
            .paths
            .share(Path::new("/run/docker.sock"), false)
            .unwrap();
        let err = run_as(&policy, None, None, "/run/docker.sock").unwrap_err();
        assert!(
            matches!(err, HardenError::DockerSocket { .. }),
            "path rules never allow the socket: {err}"
        );
    }
}

/// Resources with the given limits; `None` leaves a section out.
fn resources(
    memory: Option<(Option<i64>, Option<i64>)>,
    shares: Option<u64>,
    pids: Option<i64>,
    devices: Option<Vec<LinuxDeviceCgroup>>,
) -> LinuxResources {
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder};
    let mut r = LinuxResources::default();
    if let Some((limit, reservation)) = memory {
        let mut m = LinuxMemoryBuilder::default().build().unwrap();
        m.set_limit(limit);
        m.set_reservation(reservation);
        r.set_memory(Some(m));
    }
    if let Some(shares) = shares {
        r.set_cpu(Some(
            LinuxCpuBuilder::default().shares(shares).build().unwrap(),
        ));
    }
    if let Some(pids) = pids {
        r.set_pids(Some(
            LinuxPidsBuilder::default().limit(pids).build().unwrap(),
        ));
    }
    r.set_devices(devices);
    r
}

proptest! {
    #[test]
    fn an_update_changes_limits_but_never_the_device_rules(
        current_limit in proptest::option::of(1i64..1 << 40),
        current_reservation in proptest::option::of(1i64..1 << 40),
        new_limit in proptest::option::of(1i64..1 << 40),
        shares in proptest::option::of(2u64..262_144),
        pids in proptest::option::of(1i64..1 << 20),
        allow_all in any::<bool>(),
    ) {
        let current = resources(
            Some((current_limit, current_reservation)),
            None,
            Some(100),
            Some(safe_device_cgroup()),
        );
        let mut everything = LinuxDeviceCgroup::default();
        everything.set_allow(true);
        let devices = allow_all.then(|| vec![everything]);
        let update = resources(new_limit.map(|l| (Some(l), None)), shares, pids, devices);
        let updated = updated_resources(&current, &update).unwrap();
        prop_assert_eq!(updated.devices().clone(), Some(safe_device_cgroup()));
        let memory = updated.memory().unwrap();
        prop_assert_eq!(memory.limit(), new_limit.or(current_limit));
        prop_assert_eq!(memory.reservation(), current_reservation);
        prop_assert_eq!(updated.cpu().as_ref().and_then(|c| c.shares()), shares);
        prop_assert_eq!(updated.pids().as_ref().map(|p| p.limit()), Some(pids.unwrap_or(100)));
    }
}

fn with_unified(keys: &[&str]) -> LinuxResources {
    let unified = keys
        .iter()
        .map(|k| (k.to_string(), "1".to_string()))
        .collect();
    let mut resources = LinuxResources::default();
    resources.set_unified(Some(unified));
    resources
}

#[test]
fn unified_keys_are_limits_on_the_containers_own_cgroup() {
    for key in [
        "memory.high",
        "memory.swap.max",
        "cpu.weight",
        "io.max",
        "pids.max",
        "hugetlb.2MB.max",
        "cgroup.max.depth",
    ] {
        assert_eq!(
            refused_unified_key(Some(&with_unified(&[key]))),
            None,
            "{key}"
        );
    }
    for key in [
        "cgroup.procs",
        "cgroup.kill",
        "cgroup.subtree_control",
        "../cgroup.procs",
        "/etc/passwd",
        "memory.high/../../x",
        "devices.allow",
        "memory",
        "memory.",
        "",
        "cpuset.cpus.partition",
        "io.latency",
    ] {
        let refused = refused_unified_key(Some(&with_unified(&["memory.max", key])));
        assert_eq!(refused.map(|(k, _)| k), Some(key.to_string()), "{key}");
    }
}

#[test]
fn unified_values_that_take_from_the_host_are_refused() {
    let with = |key: &str, value: &str| {
        let mut resources = LinuxResources::default();
        resources.set_unified(Some([(key.to_string(), value.to_string())].into()));
        refused_unified_key(Some(&resources)).map(|(k, _)| k)
    };
    for value in ["no-change", "restrict-to-be", "idle", "idle\n"] {
        assert_eq!(with("io.prio.class", value), None, "{value}");
    }
    for value in ["promote-to-rt", "none-to-rt", "rt", ""] {
        assert_eq!(
            with("io.prio.class", value),
            Some("io.prio.class".to_string()),
            "{value}"
        );
    }
    assert_eq!(with("memory.min", "max"), Some("memory.min".to_string()));
    // The delegation caps may be lowered, never lifted.
    for (key, low, high) in [
        ("cgroup.max.descendants", "100", "1025"),
        ("cgroup.max.depth", "4", "33"),
    ] {
        assert_eq!(with(key, low), None, "{key}");
        for value in [high, "max", "-1", ""] {
            assert_eq!(with(key, value), Some(key.to_string()), "{key}={value}");
        }
    }
    assert_eq!(
        with("memory.low", "1G"),
        None,
        "a best effort, as Docker sets it"
    );
}

#[test]
fn a_spec_or_update_writing_outside_its_limits_is_refused() {
    let mut spec = spec_with_namespaces(&[
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
    ]);
    let mut linux = spec.linux().clone().unwrap();
    linux.set_resources(Some(with_unified(&["cgroup.procs"])));
    spec.set_linux(Some(linux));
    let err = run(spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        "linux.resources.unified key 'cgroup.procs' is refused: core cgroup files other than \
         cgroup.max.depth and cgroup.max.descendants move, freeze or kill processes"
    );
    let current = with_unified(&["memory.high"]);
    let update = with_unified(&["../../cgroup.procs"]);
    assert!(matches!(
        updated_resources(&current, &update),
        Err(ResourceUpdateError::UnifiedKey { .. })
    ));
}

proptest! {
    #[test]
    fn a_unified_key_that_leaves_the_directory_is_always_refused(
        before in "[a-z.]{0,12}",
        after in "[a-z.]{0,12}",
        sep in prop::sample::select(vec!["/", "..", "\0", " ", "\n"]),
    ) {
        let key = format!("{before}{sep}{after}");
        prop_assert!(refused_unified_key(Some(&with_unified(&[&key]))).is_some());
    }

    #[test]
    fn a_controllers_file_is_allowed_and_a_core_file_refused(
        controller in prop::sample::select(UNIFIED_CONTROLLERS.to_vec()),
        file in "[a-z_]{1,12}(\\.[a-z_]{1,8})?",
    ) {
        let key = format!("{controller}.{file}");
        let refused = refused_unified_key(Some(&with_unified(&[&key]))).is_some();
        let beyond_own = ["cpuset.cpus.partition", "cpuset.cpus.exclusive", "io.latency"];
        prop_assert_eq!(refused, beyond_own.contains(&key.as_str()));
        let core = format!("cgroup.{file}");
        let core_refused = refused_unified_key(Some(&with_unified(&[&core]))).is_some();
        prop_assert_eq!(core_refused, core != "cgroup.max.depth" && core != "cgroup.max.descendants");
    }
}

proptest! {
    #[test]
    fn real_time_priority_and_a_negative_nice_are_never_granted_and_other_limits_stay(
        rtprio in (0u64..100, 0u64..100), nice in (0u64..60, 0u64..60), nofile in 1u64..1_048_576
    ) {
        use oci_spec::runtime::{PosixRlimitBuilder, PosixRlimitType};
        let limit = |typ, soft, hard| {
            PosixRlimitBuilder::default().typ(typ).soft(soft).hard(hard).build().unwrap()
        };
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        process.set_rlimits(Some(vec![
            limit(PosixRlimitType::RlimitNofile, nofile, nofile),
            limit(PosixRlimitType::RlimitRtprio, rtprio.0, rtprio.1),
            limit(PosixRlimitType::RlimitNice, nice.0, nice.1),
        ]));
        spec.set_process(Some(process));
        let hardened = run(spec).unwrap();
        let limits = hardened.spec.process().as_ref().unwrap().rlimits().clone().unwrap();
        let of = |typ| {
            let found: Vec<_> = limits.iter().filter(|l| l.typ() == typ).collect();
            assert_eq!(found.len(), 1);
            (found[0].soft(), found[0].hard())
        };
        prop_assert_eq!(limits.len(), 3);
        prop_assert_eq!(of(PosixRlimitType::RlimitNofile), (nofile, nofile));
        prop_assert_eq!(of(PosixRlimitType::RlimitRtprio), (0, 0));
        prop_assert_eq!(of(PosixRlimitType::RlimitNice), (nice.0.min(20), nice.1.min(20)));
        let reported = |name| hardened.report.contains(&Change::ClampedRlimit(name));
        prop_assert_eq!(reported("RLIMIT_RTPRIO"), rtprio != (0, 0));
        prop_assert_eq!(reported("RLIMIT_NICE"), nice.0 > 20 || nice.1 > 20);
    }
}

#[test]
fn real_time_priority_is_set_to_zero_when_the_spec_leaves_it_out() {
    use oci_spec::runtime::PosixRlimitType;
    let hardened = run(Spec::default()).unwrap();
    let limits = hardened
        .spec
        .process()
        .as_ref()
        .unwrap()
        .rlimits()
        .clone()
        .unwrap();
    let rtprio: Vec<_> = limits
        .iter()
        .filter(|l| l.typ() == PosixRlimitType::RlimitRtprio)
        .map(|l| (l.soft(), l.hard()))
        .collect();
    assert_eq!(rtprio, [(0, 0)], "not the runtime's own, inherited");
    let nice: Vec<_> = limits
        .iter()
        .filter(|l| l.typ() == PosixRlimitType::RlimitNice)
        .map(|l| (l.soft(), l.hard()))
        .collect();
    assert_eq!(nice, [(0, 0)], "not the runtime's own, inherited");
    assert!(!hardened
        .report
        .contains(&Change::ClampedRlimit("RLIMIT_RTPRIO")));
}

proptest! {
    #[test]
    fn the_oom_score_adjustment_is_never_below_zero(asked in proptest::option::of(-1000i32..=1000)) {
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        process.set_oom_score_adj(asked);
        spec.set_process(Some(process));
        let hardened = run(spec).unwrap();
        let settled = hardened.spec.process().as_ref().unwrap().oom_score_adj();
        // Not the spawner's own (the shim's -998) when the spec says nothing.
        prop_assert_eq!(settled, Some(asked.unwrap_or(0).max(0)));
        let raised = asked.filter(|a| *a < 0).map(Change::RaisedOomScoreAdj);
        let reported = hardened.report.iter().find(|c| matches!(c, Change::RaisedOomScoreAdj(_)));
        prop_assert_eq!(reported, raised.as_ref());
    }
}

/// A host whose paths are already resolved and whose engine has `volume` at every volume data
/// directory, closed to other users or not; counts the questions about volumes.
struct VolumeHost {
    volume: std::io::Result<Option<VolumeSource>>,
    closed_to_others: bool,
    asked: usize,
    /// A directory that keeps others out, as [`ClosedHost`]'s.
    closed_dir: Option<PathBuf>,
}

impl HostPaths for VolumeHost {
    fn resolve(&mut self, path: &Path) -> std::io::Result<PathBuf> {
        Ok(path.to_path_buf())
    }

    fn engine_volume(&mut self, data: &VolumeData<'_>) -> std::io::Result<Option<EngineVolume>> {
        self.asked += 1;
        assert_eq!(data.name, "vol");
        match &self.volume {
            Ok(source) => Ok(source.clone().map(|source| EngineVolume {
                source,
                identity: Some(identity()),
                closed_to_others: self.closed_to_others,
            })),
            Err(err) => Err(std::io::Error::new(err.kind(), err.to_string())),
        }
    }

    fn closed_between(&mut self, rule: &Path, path: &Path) -> std::io::Result<Option<PathBuf>> {
        match &self.closed_dir {
            Some(closed) => ClosedHost {
                closed: closed.clone(),
            }
            .closed_between(rule, path),
            None => Ok(None),
        }
    }
}

/// Hardens a spec binding `source` (with `options`) at /data under `policy`, asking `host`.
fn harden_bind(
    policy: &Policy,
    source: &str,
    options: &[&str],
    host: &mut dyn HostPaths,
) -> Result<Hardened, HardenError> {
    let ctx = HardenContext {
        policy,
        block: block(),
        runtime_caps: CapSet::ALL,
    };
    let mut spec = Spec::default();
    spec.set_mounts(Some(vec![MountBuilder::default()
        .destination("/data")
        .typ("bind")
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap()]));
    harden(spec, &ctx, host)
}

/// [`harden_bind`] with `host`: the hardened spec and how many times the host was asked about
/// a volume.
fn bind_volume_with(
    policy: &Policy,
    source: &str,
    options: &[&str],
    host: VolumeHost,
) -> (Result<Hardened, HardenError>, usize) {
    let mut host = host;
    let hardened = harden_bind(policy, source, options, &mut host);
    (hardened, host.asked)
}

fn closed(volume: std::io::Result<Option<VolumeSource>>) -> VolumeHost {
    VolumeHost {
        volume,
        closed_to_others: true,
        asked: 0,
        closed_dir: None,
    }
}

fn bind_volume(
    source: &str,
    volume: std::io::Result<Option<VolumeSource>>,
) -> (Result<Hardened, HardenError>, usize) {
    bind_volume_with(&Policy::default(), source, &["rbind"], closed(volume))
}

fn data_mount(hardened: &Hardened) -> &Mount {
    let mounts = hardened.spec.mounts().as_ref().unwrap();
    mounts
        .iter()
        .find(|m| m.destination() == Path::new("/data"))
        .unwrap()
}

fn data_options(hardened: Result<Hardened, HardenError>) -> Vec<String> {
    data_mount(&hardened.unwrap()).options().clone().unwrap()
}

const VOLUME: &str = "/var/lib/docker/volumes/vol/_data";

fn identity() -> DirIdentity {
    DirIdentity {
        dev_major: 8,
        dev_minor: 1,
        ino: 2,
        handle_type: 1,
        handle: vec![2, 0, 0, 0, 7, 0, 0, 0],
    }
}

const IDENTITY_OPTION: &str = "x-eci.identity=8:1:2:1:0200000007000000";

#[test]
fn a_directory_or_tmpfs_volume_of_the_engine_is_bound_read_write_and_idmapped() {
    for source in [VolumeSource::Directory, VolumeSource::Tmpfs] {
        let (hardened, asked) = bind_volume(VOLUME, Ok(Some(source.clone())));
        let hardened = hardened.unwrap();
        assert_eq!(asked, 1);
        let options = data_mount(&hardened).options().clone().unwrap();
        assert_eq!(
            options,
            ["rbind", "rprivate", IDENTITY_OPTION, IDMAP_IF_SUPPORTED]
        );
        assert!(hardened.report.contains(&Change::EngineVolume {
            destination: "/data".into(),
            name: "vol".into(),
            source: source.clone(),
            idmapped: true,
        }));
        // Where host users may reach it, a setuid program made there by the container's root
        // would be host root's: a plain bind then.
        let reached = VolumeHost {
            closed_to_others: false,
            ..closed(Ok(Some(source)))
        };
        let (hardened, _) = bind_volume_with(&Policy::default(), VOLUME, &["rbind"], reached);
        assert_eq!(
            data_options(hardened),
            ["rbind", "rprivate", IDENTITY_OPTION]
        );
    }
}

#[test]
fn a_volume_never_propagates_what_is_mounted_there_later() {
    let (hardened, _) = bind_volume_with(
        &Policy::default(),
        VOLUME,
        &["rbind", "rslave", "ro", "shared"],
        closed(Ok(Some(VolumeSource::Directory))),
    );
    assert_eq!(
        data_options(hardened),
        [
            "rbind",
            "ro",
            "rprivate",
            IDENTITY_OPTION,
            IDMAP_IF_SUPPORTED
        ]
    );
}

#[test]
fn a_spec_cannot_give_eci_s_own_options() {
    let (hardened, asked) = bind_volume_with(
        &Policy::default(),
        "/srv/x",
        &[
            "rbind",
            IDMAP_IF_SUPPORTED,
            "x-eci.identity=1:2:3:4",
            "x-eci.other",
        ],
        closed(Ok(Some(VolumeSource::Directory))),
    );
    assert_eq!(asked, 0);
    assert_eq!(data_options(hardened), ["rbind", "rprivate"]);
    // On a volume, eci's own replace them.
    let (hardened, _) = bind_volume_with(
        &Policy::default(),
        VOLUME,
        &["rbind", "x-eci.identity=8:1:3:1:0300000007000000"],
        closed(Ok(Some(VolumeSource::Directory))),
    );
    assert_eq!(
        data_options(hardened),
        ["rbind", "rprivate", IDENTITY_OPTION, IDMAP_IF_SUPPORTED]
    );
}

#[test]
fn a_bind_volume_is_judged_by_the_path_it_binds() {
    let bind = |device: &str| {
        Ok(Some(VolumeSource::Bind {
            device: device.into(),
        }))
    };
    let (hardened, _) = bind_volume(VOLUME, bind("/srv/db"));
    assert_eq!(
        data_options(hardened),
        ["rbind", "rprivate", IDENTITY_OPTION],
        "as a bind of /srv/db would be, but private"
    );

    let (hardened, _) = bind_volume(VOLUME, bind("/usr/share"));
    let options = data_options(hardened);
    assert!(
        options.iter().any(|o| o == "rro"),
        "/usr is shared read-only"
    );

    let (refused, _) = bind_volume(VOLUME, bind("/etc"));
    let err = refused.unwrap_err();
    let HardenError::VolumeDevice {
        name,
        device,
        reason,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(
        (name.as_str(), device.as_path()),
        ("vol", Path::new("/etc"))
    );
    assert!(
        matches!(**reason, HardenError::RestrictedSource { .. }),
        "{reason}"
    );
    assert!(err.to_string().contains("volume vol"), "{err}");

    let (refused, _) = bind_volume(VOLUME, bind("/var/lib/docker/volumes/w/_data"));
    assert!(
        matches!(refused, Err(HardenError::VolumeDevice { .. })),
        "no volume through another"
    );
}

/// A [`VolumeHost`] with the host's procfs mounted at /srv/chroot/proc.
struct ChrootHost(VolumeHost);

impl HostPaths for ChrootHost {
    fn resolve(&mut self, path: &Path) -> std::io::Result<PathBuf> {
        self.0.resolve(path)
    }

    fn engine_volume(&mut self, data: &VolumeData<'_>) -> std::io::Result<Option<EngineVolume>> {
        self.0.engine_volume(data)
    }

    fn kernel_mount(
        &mut self,
        path: &Path,
        recursive: bool,
    ) -> std::io::Result<Option<(PathBuf, String)>> {
        let proc = Path::new("/srv/chroot/proc");
        let shows = path.starts_with(proc) || (recursive && proc.starts_with(path));
        Ok(shows.then(|| (proc.to_path_buf(), "proc".to_string())))
    }
}

#[test]
fn a_bind_that_would_show_a_kernel_filesystem_of_the_hosts_is_refused() {
    let host = || {
        ChrootHost(closed(Ok(Some(VolumeSource::Bind {
            device: "/srv/chroot".into(),
        }))))
    };
    let policy = Policy::default();
    let refused = harden_bind(&policy, "/srv/chroot", &["rbind"], &mut host());
    assert!(
        matches!(&refused, Err(HardenError::KernelFilesystem { mount, fstype, .. }) if mount == Path::new("/srv/chroot/proc") && fstype == "proc"),
        "{refused:?}"
    );
    assert!(harden_bind(&policy, "/srv/chroot", &["bind"], &mut host()).is_ok());
    // A volume binding it, whatever its own options.
    let refused = harden_bind(&policy, VOLUME, &["bind"], &mut host());
    let Err(HardenError::VolumeDevice { reason, .. }) = &refused else {
        panic!("{refused:?}");
    };
    assert!(
        matches!(**reason, HardenError::KernelFilesystem { .. }),
        "{reason}"
    );
}

#[test]
fn a_bind_volume_gets_no_more_than_a_bind_of_its_device() {
    let bind = |device: &str| {
        Ok(Some(VolumeSource::Bind {
            device: device.into(),
        }))
    };
    // Beyond a directory closed to others in an administrator's share: refused, as the
    // device bound straight would be.
    let host = VolumeHost {
        closed_dir: Some(PathBuf::from("/tmp/systemd-private-1")),
        ..closed(bind("/tmp/systemd-private-1/tmp"))
    };
    let (refused, _) = bind_volume_with(&Policy::default(), VOLUME, &["rbind"], host);
    let Err(HardenError::VolumeDevice { reason, .. }) = &refused else {
        panic!("{refused:?}");
    };
    assert!(
        matches!(**reason, HardenError::ClosedOnTheWay { .. }),
        "{reason}"
    );
    // In a read-only share: idmapped for the system IDs alone, never through the container's
    // whole map, and a spec's own idmap is refused.
    let (hardened, _) = bind_volume(VOLUME, bind("/usr/share"));
    let options = data_options(hardened);
    assert!(
        options.iter().any(|o| o == IDMAP_SYSTEM_IF_SUPPORTED),
        "{options:?}"
    );
    assert!(
        !options.iter().any(|o| o == IDMAP_IF_SUPPORTED),
        "{options:?}"
    );
    for option in ["idmap", "ridmap"] {
        let (refused, _) = bind_volume_with(
            &Policy::default(),
            VOLUME,
            &["rbind", option],
            closed(bind("/usr/share")),
        );
        assert!(
            matches!(refused, Err(HardenError::IdmapRefused { .. })),
            "{option}: {refused:?}"
        );
    }
}

#[test]
fn other_volumes_and_lookalikes_are_refused() {
    let (refused, _) = bind_volume(
        VOLUME,
        Ok(Some(VolumeSource::Other {
            what: "an nfs4 filesystem".into(),
        })),
    );
    let err = refused.unwrap_err();
    assert!(matches!(err, HardenError::VolumeFilesystem { .. }), "{err}");
    assert!(err.to_string().contains("an nfs4 filesystem"), "{err}");

    let (refused, asked) = bind_volume(VOLUME, Ok(None));
    assert_eq!(asked, 1);
    assert!(matches!(refused, Err(HardenError::RestrictedSource { .. })));

    let unknown = VolumeHost {
        volume: Ok(Some(VolumeSource::Directory)),
        closed_to_others: true,
        asked: 0,
        closed_dir: None,
    };
    struct NoIdentity(VolumeHost);
    impl HostPaths for NoIdentity {
        fn resolve(&mut self, path: &Path) -> std::io::Result<PathBuf> {
            self.0.resolve(path)
        }
        fn engine_volume(
            &mut self,
            data: &VolumeData<'_>,
        ) -> std::io::Result<Option<EngineVolume>> {
            let found = self.0.engine_volume(data)?;
            Ok(found.map(|volume| EngineVolume {
                identity: None,
                ..volume
            }))
        }
    }
    let unidentified = harden_bind(&Policy::default(), VOLUME, &[], &mut NoIdentity(unknown));
    assert!(
        matches!(unidentified, Err(HardenError::UnreadableVolume { .. })),
        "a volume mounted without knowing which directory it is"
    );

    let (refused, _) = bind_volume(VOLUME, Err(std::io::ErrorKind::PermissionDenied.into()));
    assert!(matches!(refused, Err(HardenError::UnreadableVolume { .. })));

    let directory = || Ok(Some(VolumeSource::Directory));
    for lookalike in [
        "/var/lib/docker/overlay2/x/diff",
        "/var/lib/docker/overlay2/x/diff/volumes/vol/_data",
        "/var/lib/docker.old/volumes/vol/_data",
        "/root/volumes/vol/_data",
    ] {
        let (refused, asked) = bind_volume(lookalike, directory());
        assert_eq!(asked, 0, "{lookalike}: no engine's data root");
        assert!(refused.is_err(), "{lookalike}");
    }

    let (allowed, asked) = bind_volume("/tmp/volumes/vol/_data", directory());
    assert_eq!(asked, 0, "a shared path is not asked about");
    assert!(!allowed
        .unwrap()
        .report
        .iter()
        .any(|c| matches!(c, Change::EngineVolume { .. })));
}

#[test]
fn only_rules_on_the_whole_data_root_give_way_to_its_volumes() {
    let settings = |extensions: &str| {
        crate::document::parse(&format!(
            r#"{{"enhancedContainerIsolation": {{"value": true}}, "eci": {extensions}}}"#
        ))
        .unwrap()
    };
    let directory = || closed(Ok(Some(VolumeSource::Directory)));
    let bind =
        |policy: &Policy, source: &str| bind_volume_with(policy, source, &["rbind"], directory()).0;
    // The administrator's rule on the volumes, or on one volume, holds.
    for rule in ["/var/lib/docker/volumes", "/var/lib/docker/volumes/vol"] {
        let policy = settings(&format!(r#"{{"restrictedPaths": [{{"path": "{rule}"}}]}}"#));
        assert!(
            matches!(
                bind(&policy, VOLUME),
                Err(HardenError::RestrictedSource { .. })
            ),
            "{rule}"
        );
    }
    let inside =
        settings(r#"{"restrictedPaths": [{"path": "/var/lib/docker/volumes/vol/_data/key"}]}"#);
    assert!(matches!(
        bind(&inside, VOLUME),
        Err(HardenError::HoldsRestricted { .. })
    ));
    // One on a tree that holds the whole data root gives way, as the built-in one does.
    let policy = settings(r#"{"restrictedPaths": [{"path": "/var/lib"}]}"#);
    assert!(bind(&policy, VOLUME).is_ok());
    // Another engine's root, named in the settings: restricted, but its volumes pass, and a
    // data root outside every rule too.
    let policy = settings(r#"{"engineDataRoots": ["/srv/docker", "/data/docker"]}"#);
    assert!(matches!(
        bind(&policy, "/srv/docker/overlay2"),
        Err(HardenError::RestrictedSource { .. })
    ));
    assert!(bind(&policy, "/srv/docker/volumes/vol/_data").is_ok());
    assert!(bind(&policy, "/data/docker/volumes/vol/_data").is_ok());
    assert!(bind(&Policy::default(), "/data/docker/volumes/vol/_data").is_err());
}

#[test]
fn a_share_is_never_idmapped_through_the_containers_map() {
    // Idmapped so, container root would act as the owner of every file there: write host
    // root's, read host users' private ones (read-only: `-v /home:/h:ro,idmap`).
    for asked in ["idmap", "ridmap"] {
        for access in ["rw", "ro"] {
            let (refused, _) = bind_volume_with(
                &Policy::default(),
                "/srv/x",
                &["rbind", access, asked],
                closed(Ok(None)),
            );
            let err = refused.unwrap_err();
            assert!(
                matches!(&err, HardenError::IdmapRefused { path, option, .. }
                    if path == Path::new("/srv/x") && option == asked),
                "{err}"
            );
            assert!(err.to_string().contains("/srv/x"), "{err}");
        }
    }
    // Not unasked either (a writable share plain, a read-only one for host root's files
    // alone, where the policy shares it read-only).
    for access in ["rw", "ro"] {
        let (hardened, _) = bind_volume_with(
            &Policy::default(),
            "/srv/x",
            &["rbind", access],
            closed(Ok(None)),
        );
        assert_eq!(data_options(hardened), ["rbind", access, "rprivate"]);
    }
    let mut spec = Spec::default();
    spec.set_mounts(Some(vec![MountBuilder::default()
        .destination("/usr")
        .typ("bind")
        .source("/usr")
        .options(vec!["rbind".to_string(), "ro".into(), "idmap".into()])
        .build()
        .unwrap()]));
    let err = run(spec).unwrap_err();
    assert!(
        matches!(&err, HardenError::IdmapRefused { path, .. } if path == Path::new("/usr")),
        "{err}"
    );
}

#[test]
fn a_volume_host_users_reach_is_never_idmapped() {
    let reached = VolumeHost {
        volume: Ok(Some(VolumeSource::Directory)),
        closed_to_others: false,
        asked: 0,
        closed_dir: None,
    };
    let (refused, _) = bind_volume_with(&Policy::default(), VOLUME, &["rbind", "idmap"], reached);
    assert!(matches!(
        refused.unwrap_err(),
        HardenError::IdmapRefused { .. }
    ));
    // Closed to them, it may be.
    let (hardened, _) = bind_volume_with(
        &Policy::default(),
        VOLUME,
        &["rbind", "idmap"],
        closed(Ok(Some(VolumeSource::Directory))),
    );
    assert!(data_options(hardened).contains(&"idmap".to_string()));
}

proptest! {
    /// A key is accepted only when the file it names, read as the kernel reads a path (empty
    /// and `.` parts skipped, `..` going up), has the very parts of the name that is checked.
    #[test]
    fn a_sysctl_file_is_the_name_checked(key in "[a-z./]{1,12}") {
        if let (Some(name), Some(file)) = (sysctl_name(&key), sysctl_file(&key)) {
            let mut read: Vec<&str> = Vec::new();
            for part in file.trim_start_matches("/proc/sys/").split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        read.pop();
                    }
                    part => read.push(part),
                }
            }
            prop_assert_eq!(read.join("."), name);
        } else {
            prop_assert!(sysctl_name(&key).is_none() && sysctl_file(&key).is_none());
        }
    }
}

/// A host whose paths are already resolved and where `closed` keeps others out.
struct ClosedHost {
    closed: PathBuf,
}

impl HostPaths for ClosedHost {
    fn resolve(&mut self, path: &Path) -> std::io::Result<PathBuf> {
        Ok(path.to_path_buf())
    }

    fn closed_between(&mut self, rule: &Path, path: &Path) -> std::io::Result<Option<PathBuf>> {
        let between = self.closed.starts_with(rule) && self.closed != rule;
        let above = path.starts_with(&self.closed) && path != self.closed;
        Ok((between && above).then(|| self.closed.clone()))
    }
}

#[test]
fn a_bind_beyond_a_directory_closed_to_others_is_refused_in_an_administrators_share() {
    let mut host = ClosedHost {
        closed: PathBuf::from("/tmp/systemd-private-1"),
    };
    let policy = Policy::default();
    let refused = harden_bind(&policy, "/tmp/systemd-private-1/tmp", &["rbind"], &mut host);
    assert!(
        matches!(&refused, Err(HardenError::ClosedOnTheWay { closed, .. }) if *closed == host.closed),
        "{refused:?}"
    );
    // The closed directory itself, and what lies elsewhere, are bound.
    for source in ["/tmp/systemd-private-1", "/tmp/open/tmp"] {
        assert!(
            harden_bind(&policy, source, &["rbind"], &mut host).is_ok(),
            "{source}"
        );
    }
    // A directory the embedding runtime shares is the container's own: not judged.
    let mut policy = Policy::default();
    policy
        .paths
        .share(Path::new("/srv/engine/c1"), false)
        .unwrap();
    host.closed = PathBuf::from("/srv/engine/c1/mounts");
    assert!(harden_bind(&policy, "/srv/engine/c1/mounts/shm", &["rbind"], &mut host).is_ok());
    policy = Policy::default();
    let refused = harden_bind(&policy, "/srv/engine/c1/mounts/shm", &["rbind"], &mut host);
    assert!(
        matches!(refused, Err(HardenError::ClosedOnTheWay { .. })),
        "{refused:?}"
    );
}
