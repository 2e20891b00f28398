//! The Docker socket in a container: refused unless the container's image is in
//! `dockerSocketMount.imageList`, and then reached only through a proxy that enforces
//! `dockerSocketMount.commandList`, for the init and for processes added later. The engine is a
//! stand-in that answers every request it gets and counts them. Needs root.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::probe_mount;
use eci::eci_policy::docker_api::{CommandList, CommandRule, ListKind};
use eci::eci_policy::image::{Digest, ImageIdentity, ImagePattern, KnownDigests};
use eci::oci_spec::runtime::Mount;
use eci::{ContainerConfig, ContainerImage, HostRootfs, Policy, Runtime, RuntimeConfig, Stdio};

/// An engine that answers `200 []` to every request and counts the requests it saw.
fn fake_engine(path: &Path) -> Arc<AtomicUsize> {
    let listener = UnixListener::bind(path).unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    while line != "\r\n" {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                  Content-Length: 2\r\n\r\n[]";
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    seen
}

fn digest() -> Digest {
    Digest::parse(&format!("sha256:{}", "7".repeat(64))).unwrap()
}

fn image(reference: &str) -> ContainerImage {
    ContainerImage {
        image: ImageIdentity {
            reference: reference.parse().unwrap(),
            digest: Some(digest()),
        },
        base: None,
        known: KnownDigests::default(),
    }
}

#[test]
fn the_engine_socket_is_reached_through_the_command_list_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let engine = std::fs::canonicalize(dir.path())
        .unwrap()
        .join("engine.sock");
    let seen = fake_engine(&engine);
    let mut policy = Policy::default();
    policy
        .paths
        .share(Path::new(common::PROBE).parent().unwrap(), true)
        .unwrap();
    policy.docker_socket.sockets.push(engine.clone());
    let allowed = format!("eci-test/dind@{}", digest());
    policy.docker_socket.images.images = vec![ImagePattern::parse(&allowed).unwrap()];
    policy.docker_socket.commands = CommandList::new(
        ListKind::Deny,
        vec![("volume*".into(), CommandRule::parse("volume*").unwrap())],
    );
    let state = dir.path().join("state");
    let runtime = Runtime::new(RuntimeConfig {
        state_dir: state.clone(),
        policy,
        ..Default::default()
    })
    .unwrap();

    let script = "/probe http /var/run/docker.sock GET /v1.41/containers/json , \
                  http /var/run/docker.sock GET /v1.41/volumes; stat -c %u /var/run/docker.sock";
    let attempt_with = |name: &str, image: Option<ContainerImage>, script: &str| {
        let id = common::unique_id(name);
        let rootfs = HostRootfs::create(&runtime.state_dir().join("rootfs").join(&id)).unwrap();
        let mut spec = rootfs.spec(vec!["sh".into(), "-c".into(), script.into()]);
        let mut socket = Mount::default();
        socket.set_destination(PathBuf::from("/var/run/docker.sock"));
        socket.set_typ(Some("bind".into()));
        socket.set_source(Some(engine.clone()));
        socket.set_options(Some(vec!["bind".into()]));
        spec.mounts_mut()
            .as_mut()
            .unwrap()
            .extend([probe_mount(), socket]);
        let (reader, writer) = std::io::pipe().unwrap();
        let stdio = Stdio {
            stdout: Some(writer.into()),
            ..Stdio::default()
        };
        let mut config = ContainerConfig::new(id, spec).stdio(stdio);
        if let Some(image) = image {
            config = config.image(image);
        }
        let created = runtime.create(config);
        (created, reader, rootfs)
    };
    let attempt = |name: &str, image: Option<ContainerImage>| attempt_with(name, image, script);

    // Without a known image, or with one the list does not name, the bind is refused.
    for (name, image) in [
        ("no-image", None),
        ("other-image", Some(image("eci-test/other:1"))),
    ] {
        let (created, _, rootfs) = attempt(name, image);
        let err = created.expect_err("the socket is refused");
        assert!(
            err.to_string()
                .contains("is not in dockerSocketMount.imageList"),
            "{name}: {err}"
        );
        rootfs.remove().unwrap();
    }

    // An allowed image reaches the engine, through the proxy: listing passes, volumes do not.
    let reference = format!("eci-test/dind@{}", digest());
    let (created, mut reader, rootfs) = attempt("allowed", Some(image(&reference)));
    let mut container = created.unwrap();
    container.start().unwrap();
    assert_eq!(container.wait().unwrap().code(), 0);
    let mut out = String::new();
    reader.read_to_string(&mut out).unwrap();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["HTTP/1.1 200 OK", "HTTP/1.1 403 Forbidden", "0"],
        "the socket belongs to the container's root"
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the refused request never reached the engine"
    );
    let proxies = state.join("docker-proxy");
    let own = std::fs::read_dir(&proxies)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert_eq!(std::fs::read_dir(&own).unwrap().count(), 1, "one socket");
    container.delete().unwrap();
    assert_eq!(
        std::fs::read_dir(&proxies).unwrap().count(),
        0,
        "the proxy's socket and directory go with the container"
    );
    rootfs.remove().unwrap();

    // A process added later is hardened with the same image, and gets the same proxy.
    let (created, _reader, rootfs) = attempt_with("exec", Some(image(&reference)), "sleep 100");
    let mut container = created.unwrap();
    container.start().unwrap();
    let mut process = eci::oci_spec::runtime::Process::default();
    process.set_args(Some(
        [
            "/probe",
            "http",
            "/var/run/docker.sock",
            "GET",
            "/v1.41/volumes",
        ]
        .map(String::from)
        .to_vec(),
    ));
    process.set_cwd(PathBuf::from("/"));
    let (reader, writer) = std::io::pipe().unwrap();
    let stdio = Stdio {
        stdout: Some(writer.into()),
        ..Stdio::default()
    };
    let mut exec = container.exec(process, stdio).unwrap();
    assert_eq!(exec.wait().unwrap().code(), 0);
    let mut out = String::new();
    BufReader::new(reader).read_to_string(&mut out).unwrap();
    assert_eq!(out, "HTTP/1.1 403 Forbidden\n");
    container.delete().unwrap();
    rootfs.remove().unwrap();
}
