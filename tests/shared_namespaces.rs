//! A container may join another container's network, IPC and UTS namespaces (Docker's
//! `--network container:NAME`, a pod's shared network), and gains no privilege over them: they
//! stay owned by the other container's user namespace. Namespaces owned by the host's user
//! namespace (the host's own, or a container's without a user namespace) are refused.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{create_with, probe_mount, runtime, STATE_DIR};
use eci::oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, Spec};
use eci::{ContainerConfig, Error, HostRootfs};

/// Replaces the spec's `typ` namespace by the one at `path`.
fn join(spec: &mut Spec, typ: LinuxNamespaceType, path: &str) {
    let mut linux = spec.linux().clone().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap();
    namespaces.retain(|ns| ns.typ() != typ);
    let joined = LinuxNamespaceBuilder::default().typ(typ).path(path);
    namespaces.push(joined.build().unwrap());
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
}

fn ns_link(pid: i32, name: &str) -> String {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{name}")).unwrap();
    link.display().to_string()
}

#[test]
fn a_container_joins_another_containers_network_ipc_and_uts_without_privilege_over_them() {
    let mut owner = create_with(
        "ns-owner",
        &[
            "/probe",
            "link-up",
            "lo",
            ",",
            "tcp-accept",
            "7301",
            ",",
            "packet-socket",
        ],
        |_| {},
    );
    owner.container().start().unwrap();
    // The owner's root holds its network namespace: it brings loopback up.
    assert_eq!(owner.read_stdout_line().trim(), "ok");
    assert_eq!(owner.read_stdout_line().trim(), "listening");
    let pid = owner.container().pid();
    let (net, ipc, uts) = (
        ns_link(pid, "net"),
        ns_link(pid, "ipc"),
        ns_link(pid, "uts"),
    );

    let mut joiner = create_with(
        "ns-joiner",
        &[
            "/probe",
            "ns",
            "net",
            ",",
            "ns",
            "ipc",
            ",",
            "ns",
            "uts",
            ",",
            "tcp-connect",
            "7301",
            ",",
            "packet-socket",
            ",",
            "link-up",
            "lo",
            ",",
            "sethostname",
            "joiner",
        ],
        |spec| {
            for (typ, name) in [
                (LinuxNamespaceType::Network, "net"),
                (LinuxNamespaceType::Ipc, "ipc"),
                (LinuxNamespaceType::Uts, "uts"),
            ] {
                join(spec, typ, &format!("/proc/{pid}/ns/{name}"));
            }
            spec.set_hostname(None);
        },
    );
    let (code, out) = joiner.run_to_end();
    assert_eq!(code, 0, "{out}");
    let answers: Vec<&str> = out.lines().collect();
    // In the owner's namespaces, reaching its loopback; but its root holds no capability over
    // them: no sniffing socket, no interface changes, no hostname.
    assert_eq!(
        answers,
        [
            net.as_str(),
            ipc.as_str(),
            uts.as_str(),
            "ok",
            "EPERM",
            "EPERM",
            "EPERM"
        ],
        "{out}"
    );
    // The owner's root does hold them, in its own user namespace.
    let (code, out) = owner.finish();
    assert_eq!((code, out.as_str()), (0, "accepted\nok\n"));
}

/// A `sleep` in a network namespace of its own but the host's user namespace, as a container
/// without a user namespace (runc's default) has; killed when dropped.
struct Rootful(Child);

impl Drop for Rootful {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_network_namespace_of_a_container_without_a_user_namespace_is_refused() {
    let rootful = Rootful(
        Command::new("unshare")
            .args(["-n", "sleep", "60"])
            .spawn()
            .unwrap(),
    );
    let pid = rootful.0.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
        == std::fs::read_link("/proc/self/ns/net").ok()
    {
        assert!(Instant::now() < deadline, "unshare did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let id = common::unique_id("ns-rootful");
    let rootfs =
        HostRootfs::create(&Path::new(STATE_DIR).join("rootfs").join(&id)).expect("rootfs");
    let mut spec = rootfs.spec(vec!["/probe".into(), "ns".into(), "net".into()]);
    spec.mounts_mut().as_mut().unwrap().push(probe_mount());
    join(
        &mut spec,
        LinuxNamespaceType::Network,
        &format!("/proc/{pid}/ns/net"),
    );
    let created = runtime().create(ContainerConfig::new(id.clone(), spec));
    rootfs.remove().unwrap();
    let err = created.expect_err("joining a rootful namespace was accepted");
    assert!(
        matches!(&err, Error::Join(_)) && err.to_string().contains("no user namespace of its own"),
        "{err}"
    );
    let leases = runtime().allocator().leases().unwrap();
    assert!(!leases.iter().any(|l| l.owner == id), "lease left behind");
}
