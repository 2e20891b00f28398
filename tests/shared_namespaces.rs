//! A container may join another container's network, IPC and UTS namespaces (Docker's
//! `--network container:NAME`, a pod's shared network), and gains no privilege over them: they
//! stay owned by the other container's user namespace. Namespaces owned by the host's user
//! namespace (the host's own, or a container's without a user namespace) are refused.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{create_with, join_namespace, probe_mount, runtime, STATE_DIR};
use eci::oci_spec::runtime::LinuxNamespaceType;
use eci::{ContainerConfig, Error, HostRootfs};

fn ns_link(pid: i32, name: &str) -> String {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{name}")).unwrap();
    link.display().to_string()
}

#[test]
fn a_container_joins_another_containers_network_ipc_and_uts_without_privilege_over_them() {
    let owner_probes =
        "/probe link-up lo , tcp-accept 7301 , packet-socket , mount-ro sysfs /sys sysfs";
    let mut owner = create_with(
        "ns-owner",
        &owner_probes.split(' ').collect::<Vec<_>>(),
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

    let joiner_probes = "/probe ns net , ns ipc , ns uts , tcp-connect 7301 , packet-socket , \
                         link-up lo , sethostname joiner , mount-ro sysfs /sys sysfs";
    let mut joiner = create_with(
        "ns-joiner",
        &joiner_probes.split_whitespace().collect::<Vec<_>>(),
        |spec| {
            for (typ, name) in [
                (LinuxNamespaceType::Network, "net"),
                (LinuxNamespaceType::Ipc, "ipc"),
                (LinuxNamespaceType::Uts, "uts"),
            ] {
                join_namespace(spec, typ, &format!("/proc/{pid}/ns/{name}"));
            }
            // An empty hostname sets nothing: allowed with a joined UTS namespace.
            spec.set_hostname(Some(String::new()));
        },
    );
    // The joiner holds the owner's ID block: the namespaces it joined stay owned by those IDs.
    let owner_id = owner.container().id().to_string();
    let joiner_pid = joiner.container().pid();
    let leases = runtime().allocator().leases().unwrap();
    let owners = leases.iter().find(|l| l.owner == owner_id).unwrap();
    assert!(
        owners.holders.iter().any(|h| h.pid == joiner_pid),
        "{owners:?}"
    );
    let (code, out) = joiner.run_to_end();
    assert_eq!(code, 0, "{out}");
    let answers: Vec<&str> = out.lines().collect();
    // In the owner's namespaces, reaching its loopback; but its root holds no capability over
    // them: no sniffing socket, no interface changes, no hostname, no sysfs of its own (the
    // kernel's rule, which the mount helper keeps though it could build one).
    let expected = [net.as_str(), ipc.as_str(), uts.as_str(), "ok"]
        .into_iter()
        .chain(["EPERM"; 4]);
    assert_eq!(answers, expected.collect::<Vec<_>>(), "{out}");
    // The owner's root does hold them, in its own user namespace.
    let (code, out) = owner.finish();
    assert_eq!((code, out.as_str()), (0, "accepted\nok\nok\n"));
}

/// A `sleep` that util-linux's `unshare` started with `flags`; killed when dropped.
struct Unshared(Child);

impl Unshared {
    /// Started, once its network namespace is no longer the test's.
    fn start(flags: &[&str]) -> Unshared {
        let mut args = flags.to_vec();
        args.extend(["sleep", "60"]);
        let child = Unshared(Command::new("unshare").args(args).spawn().unwrap());
        let pid = child.0.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
            == std::fs::read_link("/proc/self/ns/net").ok()
        {
            assert!(Instant::now() < deadline, "unshare did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }
}

impl Drop for Unshared {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Creating a container that joins the network namespace of `pid`: the error.
fn join_refused(name: &str, pid: u32) -> Error {
    let id = common::unique_id(name);
    let rootfs =
        HostRootfs::create(&Path::new(STATE_DIR).join("rootfs").join(&id)).expect("rootfs");
    let mut spec = rootfs.spec(vec!["/probe".into(), "ns".into(), "net".into()]);
    spec.mounts_mut().as_mut().unwrap().push(probe_mount());
    join_namespace(
        &mut spec,
        LinuxNamespaceType::Network,
        &format!("/proc/{pid}/ns/net"),
    );
    let created = runtime().create(ContainerConfig::new(id.clone(), spec));
    rootfs.remove().unwrap();
    let err = created.expect_err("joining the namespace was accepted");
    let leases = runtime().allocator().leases().unwrap();
    assert!(!leases.iter().any(|l| l.owner == id), "lease left behind");
    err
}

#[test]
fn the_network_namespace_of_a_container_without_a_user_namespace_is_refused() {
    let rootful = Unshared::start(&["-n"]);
    let err = join_refused("ns-rootful", rootful.0.id());
    assert!(
        matches!(&err, Error::Join(_)) && err.to_string().contains("no user namespace of its own"),
        "{err}"
    );
}

#[test]
fn a_namespace_no_container_of_the_runtime_owns_is_refused() {
    // A user namespace made by a host user's tool (a rootless container, a sandbox): below the
    // runtime's, but holding no ID block of its journal.
    let foreign = Unshared::start(&["-U", "-n"]);
    let err = join_refused("ns-foreign", foreign.0.id());
    assert!(matches!(&err, Error::JoinForeign(_)), "{err}");
    assert!(
        err.to_string()
            .contains("no process of it holds an ID block"),
        "{err}"
    );
}

#[test]
fn a_namespace_the_journal_found_mapping_its_pool_is_refused() {
    // A journal that begins while other user namespaces map blocks of its pool (after a boot,
    // under another runtime's containers or a host tool's) takes those blocks as leases of
    // their own (`userns:INODE`, held by their processes), as here. Joining such a namespace
    // was accepted, where the same namespace made after the journal began was refused.
    use std::os::unix::fs::MetadataExt;
    let foreign = Unshared::start(&["-U", "-n"]);
    let pid = foreign.0.id() as i32;
    let allocator = runtime().allocator();
    let pool = allocator.pool();
    let leased: Vec<u32> = allocator
        .leases()
        .unwrap()
        .iter()
        .map(|l| l.index)
        .collect();
    let index = (0..pool.block_count())
        .rev()
        .find(|i| !leased.contains(i))
        .expect("a free block");
    let block = pool.block(index).unwrap().mapping();
    eci::eci_idmap::write_id_maps(pid, &[block], &[block]).unwrap();
    let user_ns = std::fs::metadata(format!("/proc/{pid}/ns/user")).unwrap();
    let found = eci::eci_idmap::LeaseRecord {
        index,
        owner: format!(
            "{}{}",
            eci::eci_idmap::live::FOUND_LIVE_PREFIX,
            user_ns.ino()
        ),
        token: 0,
        holders: vec![eci::eci_idmap::Holder::of(pid).unwrap()],
    };
    assert_eq!(allocator.adopt(&[found]).unwrap(), 1);
    let err = join_refused("ns-found", foreign.0.id());
    assert!(matches!(&err, Error::JoinForeign(_)), "{err}");
}

#[test]
fn a_joiner_of_a_joiner_holds_the_block_of_the_namespace_it_joined() {
    // web; j joins web's network (and holds web's block); c joins j's IPC namespace, which
    // j's own block owns: c must hold j's block, not web's.
    let mut web = create_with("chain-web", &["sleep", "100"], |_| {});
    let web_pid = web.container().pid();
    let mut j = create_with("chain-j", &["sleep", "100"], |spec| {
        let path = format!("/proc/{web_pid}/ns/net");
        join_namespace(spec, LinuxNamespaceType::Network, &path);
    });
    let j_pid = j.container().pid();
    let mut c = create_with("chain-c", &["true"], |spec| {
        let path = format!("/proc/{j_pid}/ns/ipc");
        join_namespace(spec, LinuxNamespaceType::Ipc, &path);
    });
    let c_pid = c.container().pid();
    let leases = runtime().allocator().leases().unwrap();
    let holders_of = |container: &mut common::TestContainer| {
        let id = container.container().id().to_string();
        let lease = leases.iter().find(|l| l.owner == id).unwrap();
        lease.holders.iter().map(|h| h.pid).collect::<Vec<_>>()
    };
    assert!(holders_of(&mut web).contains(&j_pid));
    assert!(holders_of(&mut j).contains(&c_pid), "{leases:?}");
    assert!(!holders_of(&mut web).contains(&c_pid), "{leases:?}");
}
