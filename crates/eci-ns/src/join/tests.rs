use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::*;

/// A `sleep` started by util-linux's `unshare` with `flags`, once it runs in the namespaces
/// asked for; killed when dropped.
struct Unshared(Child);

impl Unshared {
    fn start(flags: &[&str]) -> Unshared {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["sleep", "60"]);
        let child = Unshared(Command::new("unshare").args(&args).spawn().unwrap());
        // Until unshare has executed sleep, its /proc entries still show the test's namespaces.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{}/exe", child.pid()))
            .is_ok_and(|exe| !exe.ends_with("sleep"))
        {
            assert!(Instant::now() < deadline, "unshare did not start sleep");
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn ns(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{name}", self.pid()))
    }
}

impl Drop for Unshared {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_namespace_owned_by_a_user_namespace_below_is_joinable() {
    let container = Unshared::start(&["-U", "-n", "-i", "-u"]);
    for (kind, name) in [
        (Namespaces::NET, "net"),
        (Namespaces::IPC, "ipc"),
        (Namespaces::UTS, "uts"),
    ] {
        let joinable = JoinableNamespace::open(&container.ns(name), kind).unwrap();
        assert_eq!(joinable.kind(), kind);
        let theirs = identity_of_path(&container.ns(name)).unwrap();
        assert_eq!(identity(joinable.file()).unwrap(), theirs);
        let owner = identity_of_path(&container.ns("user")).unwrap();
        assert_eq!(joinable.owner(), owner);
    }
}

#[test]
fn a_namespace_owned_two_user_namespaces_below_is_joinable() {
    let nested = Unshared::start(&["-U", "-r", "unshare", "-U", "-n"]);
    JoinableNamespace::open(&nested.ns("net"), Namespaces::NET).unwrap();
}

#[test]
fn the_runtimes_own_namespaces_are_refused() {
    for (kind, name) in [
        (Namespaces::NET, "net"),
        (Namespaces::IPC, "ipc"),
        (Namespaces::UTS, "uts"),
    ] {
        let path = PathBuf::from(format!("/proc/self/ns/{name}"));
        let err = JoinableNamespace::open(&path, kind).unwrap_err();
        assert!(matches!(err, JoinError::NotAContainers { .. }), "{err}");
        assert!(err.to_string().contains("it is the host's"), "{err}");
    }
}

#[test]
fn a_namespace_of_a_container_without_a_user_namespace_is_refused() {
    let rootful = Unshared::start(&["-n"]);
    let err = JoinableNamespace::open(&rootful.ns("net"), Namespaces::NET).unwrap_err();
    assert!(matches!(err, JoinError::NotAContainers { .. }), "{err}");
}

#[test]
fn other_files_and_types_are_refused() {
    let container = Unshared::start(&["-U", "-n"]);
    let err = JoinableNamespace::open(&container.ns("user"), Namespaces::NET).unwrap_err();
    assert!(matches!(err, JoinError::WrongType { .. }), "{err}");
    let err = JoinableNamespace::open(&container.ns("uts"), Namespaces::NET).unwrap_err();
    assert!(matches!(err, JoinError::WrongType { .. }), "{err}");
    let err = JoinableNamespace::open("/etc/hostname".as_ref(), Namespaces::NET).unwrap_err();
    assert!(matches!(err, JoinError::NotANamespace { .. }), "{err}");
    let err = JoinableNamespace::open("/dev/null".as_ref(), Namespaces::NET).unwrap_err();
    assert!(matches!(err, JoinError::NotANamespace { .. }), "{err}");
    let err = JoinableNamespace::open("/nonexistent/ns".as_ref(), Namespaces::NET).unwrap_err();
    assert!(
        matches!(&err, JoinError::Open { source, .. } if source.raw_os_error() == Some(libc::ENOENT)),
        "{err}"
    );
    let err = JoinableNamespace::open("proc/self/ns/net".as_ref(), Namespaces::NET).unwrap_err();
    assert!(matches!(err, JoinError::Relative { .. }), "{err}");
    for kind in [
        Namespaces::PID,
        Namespaces::USER,
        Namespaces::MOUNT,
        Namespaces::CGROUP,
        Namespaces::TIME,
        Namespaces::NET | Namespaces::IPC,
    ] {
        let err = JoinableNamespace::open(&container.ns("net"), kind).unwrap_err();
        assert!(matches!(err, JoinError::NotJoinable { .. }), "{err}");
    }
}
