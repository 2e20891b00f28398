use std::io::Read;

use super::http::*;
use super::*;
use eci_policy::docker_api::{CommandRule, ListKind};
use proptest::prelude::*;

/// An engine that answers `200` with an empty body to every request head it parses (bodies
/// by Content-Length only) and keeps each request line it saw.
fn engine(path: &Path) -> Arc<std::sync::Mutex<Vec<String>>> {
    let listener = UnixListener::bind(path).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let record = Arc::clone(&record);
            std::thread::spawn(move || {
                let mut side = Side::new(stream);
                let mut out = side.stream.try_clone().unwrap();
                while let Ok(Some(head)) = read_request(&mut side) {
                    record
                        .lock()
                        .unwrap()
                        .push(format!("{} {}", head.method, head.target));
                    let skipped = match head.framing {
                        Framing::Length(n) => side.copy(n, &mut std::io::sink()),
                        _ => Ok(()),
                    };
                    let answered = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    // As the engine does after `Connection: close` or HTTP/1.0 (the proxy's
                    // own questions, which read to the end).
                    if skipped.is_err() || answered.is_err() || head.close {
                        return;
                    }
                }
            });
        }
    });
    seen
}

/// A proxy's state (for the eci runtime, with `commands`) in front of an [`engine`] in a
/// directory of its own: (the directory, the state, the request lines the engine saw).
fn proxy_to_a_plain_engine(
    commands: CommandList,
) -> (
    tempfile::TempDir,
    Arc<Shared>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("engine.sock");
    let seen = engine(&upstream);
    let shared = Arc::new(Shared::new(&upstream, commands, eci_runtime()));
    (dir, shared, seen)
}

fn eci_runtime() -> CreateRuntime {
    CreateRuntime::Named("eci".into())
}

/// An engine that keeps the body of each request it reads (by Content-Length) and answers 201,
/// but for the proxy's own questions (unversioned, unrecorded) about its volumes: made for the
/// eci runtime, `optioned` (a bind of /etc) and `quota` (a plain one with a size); `foreign`
/// (unlabelled, as one made by a runc container); `unrecorded` (unlabelled, but labelled as
/// a create asks, as a driver's volume the engine has no record of); and those the proxy has
/// it make. Its
/// networks: `ours-net` (made for eci), `theirs-net` and `bridge`.
fn recording_engine(path: &Path) -> Recorded {
    let listener = UnixListener::bind(path).unwrap();
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&bodies);
    let scoped = serde_json::json!({"org.eci.runtime": "eci"});
    let volumes: std::collections::HashMap<String, serde_json::Value> = [
        ("optioned", serde_json::json!({"o": "bind", "device": "/etc"}), &scoped),
        ("quota", serde_json::json!({"size": "1G"}), &scoped),
        ("foreign", serde_json::Value::Null, &serde_json::Value::Null),
        ("unrecorded", serde_json::Value::Null, &serde_json::Value::Null),
    ]
    .into_iter()
    .map(|(name, options, labels)| {
        let volume = serde_json::json!({"Name": name, "Driver": "local", "Options": options, "Labels": labels});
        (name.to_string(), volume)
    })
    .collect();
    // Each connection served on a thread of its own, as the engine does: the proxy asks its
    // questions while a request it passed on keeps its connection.
    let volumes = Arc::new(std::sync::Mutex::new(volumes));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (volumes, record, scoped) =
                (Arc::clone(&volumes), Arc::clone(&record), scoped.clone());
            std::thread::spawn(move || {
                let mut side = Side::new(stream);
                let mut out = side.stream.try_clone().unwrap();
                while let Ok(Some(head)) = read_request(&mut side) {
                    let mut volumes = volumes.lock().unwrap();
                    let mut body = Vec::new();
                    if let Framing::Length(n) = head.framing {
                        side.copy(n, &mut body).unwrap();
                    }
                    let answer = if head.method == "GET" && head.target.starts_with("/networks/") {
                        let name = &head.target["/networks/".len()..];
                        // Found as the engine finds one: by name or by an ID prefix.
                        let (name, labels, id) = match name {
                            "ours-net" | "0a0a" => ("ours-net", scoped.clone(), "0a".repeat(32)),
                            "theirs-net" => (name, serde_json::json!({}), "0b".repeat(32)),
                            "bridge" => (name, serde_json::json!({}), "0c".repeat(32)),
                            _ => (name, serde_json::Value::Null, String::new()),
                        };
                        let network = serde_json::json!({"Name": name, "Id": id, "Labels": labels});
                        Some(Some(network).filter(|_| !labels.is_null()))
                    } else if head.method == "GET" && head.target.starts_with("/volumes/") {
                        Some(volumes.get(&head.target["/volumes/".len()..]).cloned())
                    } else if head.method == "DELETE" && head.target.starts_with("/volumes/") {
                        let removed = volumes.remove(&head.target["/volumes/".len()..]);
                        Some(removed.map(|_| serde_json::Value::Null))
                    } else if head.method == "POST" && head.target == "/volumes/create" {
                        let create: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let name = create["Name"].as_str().unwrap().to_string();
                        let made = serde_json::json!({"Name": name, "Driver": "local",
                        "Options": create["DriverOpts"], "Labels": create["Labels"]});
                        // As the engine does for a volume its driver has but it has no record
                        // of: it takes the labels of the create.
                        if name == "of-a-missing-plugin" {
                            let why = r#"{"message":"plugin \"x\" not found"}"#;
                            let answer = format!(
                                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{why}",
                                why.len()
                            );
                            let _ = out.write_all(answer.as_bytes());
                            break;
                        } else if name == "unrecorded" {
                            Some(Some(made))
                        } else if name == "raced" {
                            // Made by another request of the same scope between the proxy's
                            // lookup and its create: the engine answers with that one.
                            let theirs = serde_json::json!({"Name": name, "Driver": "local",
                                "Labels": {"org.eci.runtime": "eci"}});
                            Some(Some(volumes.entry(name).or_insert(theirs).clone()))
                        } else {
                            Some(Some(volumes.entry(name).or_insert(made).clone()))
                        }
                    } else {
                        None
                    };
                    if let Some(answer) = answer {
                        let answer = match answer {
                            Some(found) => format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{found}",
                                found.to_string().len()
                            ),
                            None => {
                                "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}".to_string()
                            }
                        };
                        // HTTP/1.0, as the proxy asks: the answer ends with the connection.
                        let _ = out.write_all(answer.as_bytes());
                        break;
                    }
                    // A create of an image it does not have, it refuses.
                    let missing_image = br#""Image":"missing""#;
                    let answer: &[u8] = if body
                        .windows(missing_image.len())
                        .any(|w| w == missing_image)
                    {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"
                    } else {
                        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"
                    };
                    record.lock().unwrap().push(body);
                    if out.write_all(answer).is_err() {
                        break;
                    }
                }
            });
        }
    });
    bodies
}

/// A proxy (with the default policy, for the eci runtime) in front of a [`recording_engine`]
/// in a directory of its own: (the directory, the proxy's state, the bodies the engine got).
fn proxy_to_a_recording_engine() -> (tempfile::TempDir, Arc<Shared>, Recorded) {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("engine.sock");
    let bodies = recording_engine(&upstream);
    let shared = Arc::new(Shared::new(
        &upstream,
        CommandList::default(),
        eci_runtime(),
    ));
    (dir, shared, bodies)
}

/// The status line of the proxy's answer to one request, `method target` with `body`, after
/// which the connection closes.
fn status_line(shared: &Arc<Shared>, method: &str, target: &str, body: &str) -> String {
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let back = exchange(shared, request.as_bytes());
    let back = String::from_utf8_lossy(&back).to_string();
    back.lines().next().unwrap_or_default().to_string()
}

/// The bodies a [`recording_engine`] got.
type Recorded = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

#[test]
fn a_create_runs_with_the_holders_runtime_or_is_refused() {
    let (_dir, shared, bodies) = proxy_to_a_recording_engine();
    let create = |head_end: &str, body: &str| {
        let request = format!(
            "POST /v1.43/containers/create?name=x HTTP/1.1{head_end}Host: d{head_end}\
             Content-Length: {}{head_end}Connection: close{head_end}{head_end}{body}",
            body.len()
        );
        let back = exchange(&shared, request.as_bytes());
        let back = String::from_utf8_lossy(&back).to_string();
        back.lines().next().unwrap_or_default().to_string()
    };
    // Filled in, with lines ending in CRLF or (as httparse allows) LF.
    for head_end in ["\r\n", "\n"] {
        let status = create(
            head_end,
            r#"{"Image":"a","HostConfig":{"Privileged":true}}"#,
        );
        assert_eq!(status, "HTTP/1.1 201 Created");
        let sent = bodies
            .lock()
            .unwrap()
            .pop()
            .expect("the engine got the create");
        let sent: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(sent["HostConfig"]["Runtime"], "eci");
        assert_eq!(sent["HostConfig"]["Privileged"], true);
    }
    // Another runtime, eci's annotations, a chunked body: refused before the engine.
    let runc = create("\r\n", r#"{"Image":"a","HostConfig":{"Runtime":"runc"}}"#);
    assert_eq!(runc, "HTTP/1.1 403 Forbidden");
    let relaxed = r#"{"HostConfig":{"Annotations":{"org.eci.allowUnmount":"true"}}}"#;
    assert_eq!(create("\r\n", relaxed), "HTTP/1.1 403 Forbidden");
    let chunked = "POST /v1.43/containers/create HTTP/1.1\r\nHost: d\r\n\
                   Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    let back = exchange(&shared, chunked.as_bytes());
    assert!(String::from_utf8_lossy(&back).starts_with("HTTP/1.1 400 Bad Request"));
    let start = "POST /v1.23/containers/x/start HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n\r\n{}";
    let back = exchange(&shared, start.as_bytes());
    assert!(String::from_utf8_lossy(&back).starts_with("HTTP/1.1 403 Forbidden"));
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(
        bodies.lock().unwrap().is_empty(),
        "nothing refused reached the engine"
    );
}

#[test]
fn what_the_engine_would_do_on_the_host_for_the_caller_is_refused() {
    let (_dir, shared, bodies) = proxy_to_a_recording_engine();
    let post = |target: &str, body: &str| status_line(&shared, "POST", target, body);
    let nfs = r#"{"Name":"n","DriverOpts":{"type":"nfs","o":"addr=127.0.0.1","device":":/"}}"#;
    assert_eq!(post("/v1.41/volumes/create", nfs), "HTTP/1.1 403 Forbidden");
    // A bind volume of a path the rules refuse: the engine binds it into its storage for any
    // container using it, and for `docker cp`.
    let etc = r#"{"Name":"e","DriverOpts":{"type":"none","o":"bind","device":"/etc"}}"#;
    assert_eq!(post("/v1.41/volumes/create", etc), "HTTP/1.1 403 Forbidden");
    let etc_mount = r#"{"Image":"a","HostConfig":{"Mounts":[{"Type":"volume","Source":"e","Target":"/e",
        "VolumeOptions":{"DriverConfig":{"Options":{"type":"none","o":"bind","device":"/etc"}}}}]}}"#;
    assert_eq!(
        post("/v1.41/containers/create", etc_mount),
        "HTTP/1.1 403 Forbidden"
    );
    let gelf = r#"{"Image":"a","HostConfig":{"LogConfig":{"Type":"gelf","Config":{"gelf-address":"udp://127.0.0.1:9"}}}}"#;
    assert_eq!(
        post("/v1.41/containers/create", gelf),
        "HTTP/1.1 403 Forbidden"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(
        bodies.lock().unwrap().is_empty(),
        "nothing refused reached the engine"
    );

    // A network that would take over a host interface.
    let takeover = r#"{"Name":"n","Options":{"com.docker.network.bridge.name":"lo"}}"#;
    assert_eq!(
        post("/v1.41/networks/create", takeover),
        "HTTP/1.1 403 Forbidden"
    );
    // Even of a shared path: the engine would copy an image's files into it as root.
    let shared_bind = r#"{"Name":"s","DriverOpts":{"type":"none","o":"bind","device":"/srv/s"}}"#;
    assert_eq!(
        post("/v1.41/volumes/create", shared_bind),
        "HTTP/1.1 403 Forbidden"
    );
    // So is a create that mounts an existing volume with mount options.
    let optioned = r#"{"Image":"a","HostConfig":{"Binds":["optioned:/o"]}}"#;
    assert_eq!(
        post("/v1.41/containers/create", optioned),
        "HTTP/1.1 403 Forbidden"
    );
    // A quota mounts nothing: such a volume may be mounted.
    let quota = r#"{"Image":"a","HostConfig":{"Binds":["quota:/q"]}}"#;
    assert_eq!(
        post("/v1.41/containers/create", quota),
        "HTTP/1.1 201 Created"
    );
    bodies.lock().unwrap().clear();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(
        bodies.lock().unwrap().is_empty(),
        "nothing refused reached the engine"
    );
    let tmpfs = r#"{"Name":"t","DriverOpts":{"type":"tmpfs","device":"tmpfs"}}"#;
    assert_eq!(post("/v1.41/volumes/create", tmpfs), "HTTP/1.1 201 Created");
    let sent = || -> serde_json::Value {
        let body = bodies.lock().unwrap().pop().expect("the engine got it");
        serde_json::from_slice(&body).unwrap()
    };
    let mut expected = serde_json::from_str::<serde_json::Value>(tmpfs).unwrap();
    expected["Labels"] = serde_json::json!({"org.eci.runtime": "eci"});
    assert_eq!(sent(), expected);
    // A key given twice goes on once, as the proxy read it (the engine would merge the two).
    let twice = r#"{"Name":"v","DriverOpts":{"type":"nfs","o":"addr=127.0.0.1","device":":/"},"DriverOpts":{}}"#;
    assert_eq!(post("/v1.41/volumes/create", twice), "HTTP/1.1 201 Created");
    let once =
        serde_json::json!({"Name": "v", "DriverOpts": {}, "Labels": {"org.eci.runtime": "eci"}});
    assert_eq!(sent(), once);
}

#[test]
fn volumes_reach_only_those_made_through_the_socket() {
    let (_dir, shared, bodies) = proxy_to_a_recording_engine();
    let ask = |method: &str, target: &str, body: &str| status_line(&shared, method, target, body);
    // Another runtime's volume is neither mounted (by name or as a Mounts volume), nor
    // inspected, updated, removed or made again; nor may a label claim a scope.
    for create in [
        r#"{"Image":"a","HostConfig":{"Binds":["foreign:/f"]}}"#,
        r#"{"Image":"a","HostConfig":{"Binds":["unrecorded:/f"]}}"#,
        r#"{"Image":"a","HostConfig":{"Mounts":[{"Type":"volume","Source":"foreign","Target":"/f"}]}}"#,
        r#"{"Image":"a","HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v",
            "VolumeOptions":{"Labels":{"org.eci.runtime":"eci"}}}]}}"#,
    ] {
        let status = ask("POST", "/v1.43/containers/create", create);
        assert_eq!(status, "HTTP/1.1 403 Forbidden", "{create}");
    }
    for (method, target) in [
        ("GET", "/v1.43/volumes/foreign"),
        ("DELETE", "/v1.43/volumes/foreign?force=1"),
        ("DELETE", "/volumes/fo%72eign"),
        ("PUT", "/v1.43/volumes/foreign?version=1"),
    ] {
        assert_eq!(
            ask(method, target, ""),
            "HTTP/1.1 403 Forbidden",
            "{target}"
        );
    }
    for create in [
        r#"{"Name":"foreign"}"#,
        r#"{"name":"foreign"}"#,
        r#"{"Name":"x","Labels":{"org.eci.runtime":"eci"}}"#,
    ] {
        let status = ask("POST", "/v1.43/volumes/create", create);
        assert_eq!(status, "HTTP/1.1 403 Forbidden", "{create}");
    }
    // One the engine does not have is answered here: passed on, its name could by then be a
    // host volume's, made meanwhile.
    for method in ["GET", "DELETE"] {
        let status = ask(method, "/v1.43/volumes/never-made", "");
        assert_eq!(status, "HTTP/1.1 404 Not Found", "{method}");
    }
    // As the engine answers `docker volume rm -f` of a missing one.
    let status = ask("DELETE", "/v1.43/volumes/never-made?force=1", "");
    assert_eq!(status, "HTTP/1.1 204 No Content");
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(
        bodies.lock().unwrap().is_empty(),
        "nothing refused reached the engine"
    );
    // The engine's reason when it cannot make one reaches the client.
    let missing = r#"{"Image":"a","HostConfig":{"Binds":["of-a-missing-plugin:/p"]}}"#;
    let request = format!(
        "POST /v1.43/containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{missing}",
        missing.len()
    );
    let back = String::from_utf8_lossy(&exchange(&shared, request.as_bytes())).to_string();
    assert!(
        back.starts_with("HTTP/1.1 403") && back.contains("not found"),
        "{back}"
    );
    // A volume a create mounts by name is made first, in scope: a second container mounts
    // it, and requests on it reach the engine.
    let fresh = r#"{"Image":"a","HostConfig":{"Binds":["fresh:/f"]}}"#;
    for _ in 0..2 {
        let status = ask("POST", "/v1.43/containers/create", fresh);
        assert_eq!(status, "HTTP/1.1 201 Created");
    }
    for (method, target) in [
        ("GET", "/v1.43/volumes/fresh"),
        ("DELETE", "/v1.43/volumes/fresh"),
    ] {
        assert_eq!(ask(method, target, ""), "HTTP/1.1 201 Created", "{target}");
    }
    // A volume made for a create the engine then refuses goes again; one that was there
    // before stays, and so does one of that name another request made meanwhile.
    let refused = r#"{"Image":"missing",
        "HostConfig":{"Binds":["for-nothing:/n","fresh:/f","raced:/r"]}}"#;
    let status = ask("POST", "/v1.43/containers/create", refused);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let volume = |name| engine::volume(&shared.upstream, name).unwrap();
    let left = volume("for-nothing");
    assert!(left.is_none(), "the volume made for it is gone: {left:?}");
    assert!(volume("fresh").is_some());
    assert!(volume("raced").is_some(), "another request's volume stays");
}

#[test]
fn networks_reach_only_those_made_through_the_socket_and_the_engines_own() {
    let (_dir, shared, bodies) = proxy_to_a_recording_engine();
    let ask = |method: &str, target: &str, body: &str| status_line(&shared, method, target, body);
    let joins = |network: &str| {
        format!(
            r#"{{"Image":"a","HostConfig":{{"NetworkMode":"{network}"}},
                "NetworkingConfig":{{"EndpointsConfig":{{"{network}":{{}}}}}}}}"#
        )
    };
    for (method, target, body) in [
        ("POST", "/v1.43/containers/create", joins("theirs-net")),
        ("POST", "/v1.43/networks/theirs-net/connect", String::new()),
        (
            "POST",
            "/v1.43/networks/theirs-net/disconnect",
            String::new(),
        ),
        ("GET", "/v1.43/networks/theirs-net", String::new()),
        ("DELETE", "/v1.43/networks/theirs%2Dnet", String::new()),
        // Nor another network than the endpoint's own.
        (
            "POST",
            "/v1.43/containers/create",
            joins("ours-net").replace("{}}}", r#"{"NetworkID":"theirs-net"}}}"#),
        ),
        (
            "POST",
            "/v1.43/networks/create",
            r#"{"Name":"n","Labels":{"org.eci.runtime":"eci"}}"#.to_string(),
        ),
    ] {
        let status = ask(method, target, &body);
        assert_eq!(status, "HTTP/1.1 403 Forbidden", "{method} {target}");
    }
    // Nor one the engine does not have (yet): it would look the name up again at start.
    let later = [
        ("POST", "/v1.43/containers/create", joins("later-net")),
        (
            "POST",
            "/v1.43/networks/later-net/connect",
            r#"{"Container":"c"}"#.to_string(),
        ),
        // Nor, by its name, a request on one: it could act on a host network made meanwhile.
        ("GET", "/v1.43/networks/later-net", String::new()),
        ("DELETE", "/v1.43/networks/later-net", String::new()),
        (
            "POST",
            "/v1.43/networks/later-net/disconnect",
            r#"{"Container":"c"}"#.to_string(),
        ),
    ];
    for (method, target, body) in later {
        let status = ask(method, target, &body);
        assert_eq!(status, "HTTP/1.1 404 Not Found", "{method} {target}");
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(
        bodies.lock().unwrap().is_empty(),
        "nothing refused reached the engine"
    );
    for network in ["ours-net", "0a0a", "bridge"] {
        let status = ask("POST", "/v1.43/containers/create", &joins(network));
        assert_eq!(status, "HTTP/1.1 201 Created", "{network}");
        let sent = bodies.lock().unwrap().pop().unwrap();
        let sent: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        let endpoint = &sent["NetworkingConfig"]["EndpointsConfig"][network];
        let pinned = (network != "bridge").then(|| "0a".repeat(32));
        assert_eq!(
            endpoint["NetworkID"].as_str(),
            pinned.as_deref(),
            "{network}"
        );
    }
    assert_eq!(
        ask("DELETE", "/v1.43/networks/ours-net", ""),
        "HTTP/1.1 201 Created"
    );
    assert_eq!(
        ask("POST", "/v1.43/networks/create", r#"{"Name":"n"}"#),
        "HTTP/1.1 201 Created"
    );
    let sent = bodies.lock().unwrap().pop().unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(
        sent["Labels"],
        serde_json::json!({"org.eci.runtime": "eci"})
    );
}

#[test]
fn lists_and_prunes_answer_only_for_what_the_socket_made() {
    let (_dir, shared, seen) = proxy_to_a_plain_engine(CommandList::default());
    let status = |request: &str| {
        let back = exchange(&shared, request.as_bytes());
        let back = String::from_utf8_lossy(&back).to_string();
        back.lines().next().unwrap_or_default().to_string()
    };
    let scoped = "%22org.eci.runtime%3Deci%22%3Atrue";
    for (request, sent) in [
        (
            "GET /v1.43/volumes HTTP/1.1\r\nHost: d\r\n\r\n",
            format!("GET /v1.43/volumes?filters=%7B%22label%22%3A%7B{scoped}%7D%7D"),
        ),
        (
            "POST /v1.43/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%7D HTTP/1.1\r\n\
             Host: d\r\n\r\n",
            format!(
                "POST /v1.43/volumes/prune?filters=%7B%22all%22%3A%7B%22true%22%3Atrue%7D%2C\
                 %22label%22%3A%7B{scoped}%7D%7D"
            ),
        ),
    ] {
        assert_eq!(status(request), "HTTP/1.1 200 OK");
        assert_eq!(seen.lock().unwrap().pop().as_ref(), Some(&sent));
    }
    for collection in ["networks", "containers"] {
        let prune = format!("POST /v1.43/{collection}/prune HTTP/1.1\r\nHost: d\r\n\r\n");
        assert_eq!(status(&prune), "HTTP/1.1 200 OK");
        let sent =
            format!("POST /v1.43/{collection}/prune?filters=%7B%22label%22%3A%7B{scoped}%7D%7D");
        assert_eq!(seen.lock().unwrap().pop(), Some(sent));
    }
    for query in [
        "filters=1",
        "filters=%7B%7D&filters=%7B%7D",
        "filters=%7B%22label%22%3A%5B1%5D%7D",
    ] {
        let request = format!("GET /v1.43/volumes?{query} HTTP/1.1\r\nHost: d\r\n\r\n");
        assert_eq!(status(&request), "HTTP/1.1 400 Bad Request", "{query}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing refused reached the engine"
    );
}

#[test]
fn binds_reach_only_what_the_path_rules_share_and_are_never_made_by_the_engine() {
    let (_dir, shared, bodies) = proxy_to_a_recording_engine();
    // (status line, the whole answer, the body the engine got if it got one)
    let create = |host_config: &str| {
        let body = format!(r#"{{"Image":"a","HostConfig":{host_config}}}"#);
        let request = format!(
            "POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let back = String::from_utf8_lossy(&exchange(&shared, request.as_bytes())).to_string();
        let status = back.lines().next().unwrap_or_default().to_string();
        let sent = bodies.lock().unwrap().pop();
        let sent = sent.map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap());
        (status, back, sent)
    };
    let forbidden = |host_config: &str, reason: &str| {
        let (status, back, sent) = create(host_config);
        assert_eq!(status, "HTTP/1.1 403 Forbidden", "{host_config}");
        assert!(back.contains(reason), "{back}");
        assert_eq!(sent, None, "the engine never saw it");
    };
    // Existing or missing, a path the rules refuse: `docker cp` would have the engine bind it.
    forbidden(
        r#"{"Binds":["/etc:/e"]}"#,
        "is refused by the rule for /etc",
    );
    let missing = format!("/etc/eci-test-{}/x", std::process::id());
    forbidden(
        &format!(r#"{{"Binds":["{missing}:/x"]}}"#),
        "is refused by the rule for /etc",
    );
    forbidden(
        r#"{"Mounts":[{"Type":"bind","Source":"/root/eci-missing","Target":"/x"}]}"#,
        "is refused by the rule for /root",
    );
    forbidden(r#"{"Binds":["/var/lib:/x"]}"#, "is not in the shared paths");
    // Through a symlink in a shared directory, by where the path really leads, which the
    // answer does not tell (a host link's target is none of the caller's business).
    let shared_dir = tempfile::tempdir_in("/tmp").unwrap();
    std::os::unix::fs::symlink("/etc", shared_dir.path().join("etc")).unwrap();
    let linked = format!(
        r#"{{"Binds":["{}/etc/new:/x"]}}"#,
        shared_dir.path().display()
    );
    forbidden(
        &linked,
        "leads, through a link, to a path this socket may not bind",
    );
    // A shared path, missing or not, read-only or not, and a volume pass; the host binds go
    // on as Mounts binds, which the engine never creates (it refuses the create of a missing
    // one; this engine here answers 201 to anything).
    let fresh = format!(
        r#"{{"Binds":["{}/new:/x","/usr:/u:ro","data:/d"]}}"#,
        shared_dir.path().display()
    );
    let (status, _, sent) = create(&fresh);
    assert_eq!(status, "HTTP/1.1 201 Created");
    let host_config = &sent.expect("the engine got the create")["HostConfig"];
    assert_eq!(host_config["Binds"], serde_json::json!(["data:/d:nocopy"]));
    let mounts = host_config["Mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 2);
    assert!(mounts.iter().all(|m| m["Type"] == "bind"), "{mounts:?}");
    assert!(!shared_dir.path().join("new").exists());
    forbidden(r#"{"binds":["/etc/new:/x"]}"#, "stands for 'Binds'");
}

/// An engine that knows `containers` (name, full ID, runtime) and has `default_runtime`: it
/// answers inspecting one (by name or ID) with its facts, `/info` with its default runtime, and
/// any other request with 200, keeping its request line.
fn engine_with(
    path: &Path,
    containers: &'static [(&'static str, &'static str, &'static str)],
    default_runtime: &'static str,
) -> Arc<std::sync::Mutex<Vec<String>>> {
    let listener = UnixListener::bind(path).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut side = Side::new(stream);
            let mut out = side.stream.try_clone().unwrap();
            let Ok(Some(head)) = read_request(&mut side) else {
                continue;
            };
            let inspected = head
                .target
                .strip_prefix("/containers/")
                .and_then(|t| t.strip_suffix("/json"))
                .filter(|_| head.method == "GET");
            let info = format!(r#"{{"DefaultRuntime":"{default_runtime}"}}"#);
            let network = head
                .target
                .strip_prefix("/networks/")
                .filter(|_| head.method == "GET")
                .map(|name| {
                    let id = "f".repeat(64);
                    format!(
                        r#"{{"Name":"{name}","Id":"{id}","Labels":{{"org.eci.runtime":"eci"}}}}"#
                    )
                });
            let answer = match inspected {
                _ if head.method == "GET" && head.target == "/info" => format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{info}",
                    info.len()
                ),
                // Every network is one the socket made.
                _ if network.is_some() => {
                    let network = network.unwrap_or_default();
                    format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{network}",
                        network.len()
                    )
                }
                Some(asked) => match containers
                    .iter()
                    .find(|(n, id, _)| *n == asked || *id == asked)
                {
                    Some((name, id, runtime)) => {
                        // A container named "bound..." has a bind mount, "volumed..." a volume;
                        // the others a tmpfs alone.
                        let mounts = if name.starts_with("bound") {
                            r#"[{"Type":"bind","Source":"/tmp/x","Destination":"/x"}]"#
                        } else if name.starts_with("volumed") {
                            r#"[{"Type":"volume","Name":"v","Destination":"/v"}]"#
                        } else {
                            r#"[{"Type":"tmpfs","Destination":"/t"}]"#
                        };
                        let body = format!(
                            r#"{{"Id":"{id}","HostConfig":{{"Runtime":"{runtime}"}},"Mounts":{mounts}}}"#
                        );
                        format!(
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    None => "HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\n{}".to_string(),
                },
                None => {
                    let mut body = Vec::new();
                    if let Framing::Length(n) = head.framing {
                        let _ = side.copy(n, &mut body);
                    }
                    let body = String::from_utf8_lossy(&body);
                    let line = format!("{} {} {body}", head.method, head.target);
                    record.lock().unwrap().push(line.trim_end().to_string());
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                }
            };
            let _ = out.write_all(answer.as_bytes());
        }
    });
    seen
}

#[test]
fn a_request_on_a_container_reaches_only_the_holders_runtime_by_full_id() {
    const ECI_ID: &str = "e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1";
    const RUNC_ID: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
    const BOUND_ID: &str = "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1";
    const OPTIONED_ID: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";
    static CONTAINERS: [(&str, &str, &str); 4] = [
        ("web", ECI_ID, "eci"),
        ("host-tool", RUNC_ID, "runc"),
        ("bound", BOUND_ID, "eci"),
        ("volumed", OPTIONED_ID, "eci"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("engine.sock");
    let seen = engine_with(&upstream, &CONTAINERS, "runc");
    let shared = Arc::new(Shared::new(
        &upstream,
        CommandList::default(),
        eci_runtime(),
    ));
    let status = |request: &str| {
        let back = exchange(&shared, request.as_bytes());
        String::from_utf8_lossy(&back)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let close = "HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n";
    assert_eq!(
        status(&format!(
            "POST /v1.43/containers/web/kill?signal=HUP {close}"
        )),
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        status(&format!("POST /v1.43/containers/host-tool/kill {close}")),
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(
        status(&format!("POST /v1.43/containers/a1a1/kill {close}")),
        "HTTP/1.1 404 Not Found"
    );
    // An absolute URL whose authority Go's parser ends at a `?`: the query checked was not
    // the one the container's request went on with (by its full ID, in origin form), so a
    // `docker top` with ps options that list the host's processes got through.
    let before = seen.lock().unwrap().len();
    for target in [
        "http://d?x/v1.43/containers/web/top?ps_args=-oargs",
        "http://d#x/v1.43/containers/web/top?ps_args=-oargs",
        "http://u@d/v1.43/containers/web/top",
        "http://d",
        "*",
    ] {
        assert_eq!(
            status(&format!("GET {target} {close}")),
            "HTTP/1.1 400 Bad Request",
            "{target}"
        );
    }
    assert_eq!(
        status(&format!(
            "GET http://d/v1.43/containers/web/top?ps_args=-oargs {close}"
        )),
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(
        status(&format!(
            "POST http://docker:2375/v1.43/containers/web/kill {close}"
        )),
        "HTTP/1.1 200 OK"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut passed = seen.lock().unwrap();
    assert_eq!(
        passed[before..],
        [format!("POST /v1.43/containers/{ECI_ID}/kill")]
    );
    passed.truncate(before);
    drop(passed);
    // `docker cp` has the engine mount the container's binds itself: not with any.
    let copy = |name: &str| {
        status(&format!(
            "GET /v1.43/containers/{name}/archive?path=/ {close}"
        ))
    };
    assert_eq!(copy("web"), "HTTP/1.1 200 OK");
    assert_eq!(copy("bound"), "HTTP/1.1 403 Forbidden");
    assert_eq!(copy("volumed"), "HTTP/1.1 403 Forbidden");
    let put = format!("PUT /v1.43/containers/bound/archive?path=/ {close}");
    assert_eq!(status(&put), "HTTP/1.1 403 Forbidden");
    let head = format!("HEAD /v1.43/containers/volumed/archive?path=/ {close}");
    assert_eq!(status(&head), "HTTP/1.1 403 Forbidden");
    // A commit names its container in the query, a network connect in its body.
    let commit = |query: &str| status(&format!("POST /v1.43/commit?{query} {close}"));
    assert_eq!(commit("container=host-tool"), "HTTP/1.1 403 Forbidden");
    assert_eq!(
        commit("contain%65r=host-tool&repo=x"),
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(
        commit("container=web&container=host-tool"),
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(commit("repo=x&container=web"), "HTTP/1.1 200 OK");
    let connect = |body: &str| {
        status(&format!(
            "POST /v1.43/networks/n/connect HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    };
    assert_eq!(
        connect(r#"{"Container":"host-tool"}"#),
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(
        connect(r#"{"container":"host-tool"}"#),
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(connect(r#"{"Container":"web"}"#), "HTTP/1.1 200 OK");
    // It goes on naming the network by full ID, its endpoint pinned to that network (below).
    let network_id = "f".repeat(64);
    assert_eq!(
        connect(r#"{"Container":"web","EndpointConfig":{"NetworkID":"db"}}"#),
        "HTTP/1.1 403 Forbidden"
    );
    let disconnect = |body: &str| {
        status(&format!(
            "POST /v1.43/networks/n/disconnect HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    };
    // A forced disconnect of a container that is gone removes its stale endpoint.
    assert_eq!(
        disconnect(r#"{"Container":"gone","Force":true}"#),
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        disconnect(r#"{"Container":"gone"}"#),
        "HTTP/1.1 404 Not Found"
    );
    // Builds on the host's network, and BuildKit's, are refused.
    assert_eq!(
        status(&format!("POST /v1.43/build?networkmode=host {close}")),
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(
        status(&format!("POST /v1.43/grpc {close}")),
        "HTTP/1.1 403 Forbidden"
    );
    // However the options come: after a `;` (which Go's parser skips), or in a form body.
    let semicolon = "POST /v1.43/build?networkmode=none;&networkmode=host";
    assert_eq!(
        status(&format!("{semicolon} {close}")),
        "HTTP/1.1 403 Forbidden"
    );
    let multipart = "POST /v1.43/build?remote=x HTTP/1.1\r\nHost: d\r\n\
                     Content-Type:  Multipart/Form-Data; boundary=b\r\nContent-Length: 3\r\n\r\nabc";
    assert_eq!(status(multipart), "HTTP/1.1 400 Bad Request");
    // Spellings Go reads as a form and a byte-wise reading would not: a no-break space after
    // the type, a dotted capital I (Go lowercases it to i).
    for content_type in [
        "application/x-www-form-urlencoded\u{a0}",
        "appl\u{130}cation/x-www-form-urlencoded",
    ] {
        let request = format!(
            "POST /v1.43/build?t=x HTTP/1.1\r\nHost: d\r\nContent-Type: {content_type}\r\n\
             Content-Length: 3\r\n\r\nabc"
        );
        assert_eq!(
            status(&request),
            "HTTP/1.1 400 Bad Request",
            "{content_type}"
        );
    }
    // An escape Go refuses hides nothing: "%+0" is no escape (Go skips that pair and reads
    // the next), so the query is refused as undecodable.
    let hidden = "POST /v1.43/build?networkmode=%+0&networkmode=host";
    assert_eq!(
        status(&format!("{hidden} {close}")),
        "HTTP/1.1 403 Forbidden"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            format!("POST /v1.43/containers/{ECI_ID}/kill?signal=HUP"),
            format!("GET /v1.43/containers/{ECI_ID}/archive?path=/"),
            format!("POST /v1.43/commit?repo=x&container={ECI_ID}"),
            format!(
                r#"POST /v1.43/networks/{network_id}/connect {{"Container":"{ECI_ID}","EndpointConfig":{{"NetworkID":"{network_id}"}}}}"#
            ),
            format!(
                r#"POST /v1.43/networks/{network_id}/disconnect {{"Container":"gone","Force":true}}"#
            ),
        ],
        "only the allowed requests, naming the container by its full ID"
    );

    // A create sharing a container's namespaces (`--network container:web`): only a container
    // of the holder's runtime, named on by its full ID.
    seen.lock().unwrap().clear();
    let create = |host_config: &str| {
        let body = format!(r#"{{"Image":"x","HostConfig":{host_config}}}"#);
        status(&format!(
            "POST /v1.43/containers/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    };
    for refused in [
        r#"{"NetworkMode":"container:host-tool"}"#,
        r#"{"IpcMode":"container:host-tool"}"#,
        r#"{"PidMode":"container:host-tool"}"#,
        r#"{"NetworkMode":"container:web","PidMode":"container:host-tool"}"#,
        r#"{"networkmode":"container:host-tool"}"#,
        r#"{"IPCMode":"container:host-tool"}"#,
        r#"{"NetworkMode":"container:"}"#,
    ] {
        assert_eq!(create(refused), "HTTP/1.1 403 Forbidden", "{refused}");
    }
    assert_eq!(
        create(r#"{"IpcMode":"container:a1a1"}"#),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        create(r#"{"NetworkMode":"container:web","IpcMode":"container:web"}"#),
        "HTTP/1.1 200 OK"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let sent: serde_json::Value = serde_json::from_str(
        seen[0]
            .strip_prefix("POST /v1.43/containers/create ")
            .unwrap(),
    )
    .unwrap();
    let pinned = format!("container:{ECI_ID}");
    assert_eq!(sent["HostConfig"]["NetworkMode"], pinned.as_str());
    assert_eq!(sent["HostConfig"]["IpcMode"], pinned.as_str());
}

#[test]
fn the_holders_runtime_is_that_of_the_engines_container_of_its_full_id() {
    // A holder named by something other than its engine container's full ID (a library user's
    // own name for it): the engine resolves a name too, and a container of that name run with
    // runc made every create through the socket run with runc.
    const ECI_ID: &str = "e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2";
    const RUNC_ID: &str = "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2";
    static CONTAINERS: [(&str, &str, &str); 2] =
        [("web", ECI_ID, "eci"), ("web-1", RUNC_ID, "runc")];
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("engine.sock");
    let seen = engine_with(&upstream, &CONTAINERS, "runc");
    let create = "POST /v1.43/containers/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\
                  Content-Length: 2\r\n\r\n{}";
    for (holder, expected) in [
        ("web-1", "HTTP/1.1 403 Forbidden"),
        (&RUNC_ID[..12], "HTTP/1.1 403 Forbidden"),
        (ECI_ID, "HTTP/1.1 200 OK"),
    ] {
        let shared = Arc::new(Shared::new(
            &upstream,
            CommandList::default(),
            CreateRuntime::OfContainer(holder.to_string()),
        ));
        let back = exchange(&shared, create.as_bytes());
        let status = String::from_utf8_lossy(&back)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(status, expected, "{holder}");
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains(r#""Runtime":"eci""#), "{seen:?}");
}

#[test]
fn plugins_swarm_and_builds_with_another_default_runtime_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let close = "HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n";
    let status = |shared: &Arc<Shared>, request: &str| {
        let back = exchange(shared, format!("{request} {close}").as_bytes());
        String::from_utf8_lossy(&back)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    // The engine's default runtime is runc: a classic build's steps would run as host root.
    let upstream = dir.path().join("runc-default.sock");
    let seen = engine_with(&upstream, &[], "runc");
    let shared = Arc::new(Shared::new(
        &upstream,
        CommandList::default(),
        eci_runtime(),
    ));
    for request in [
        "POST /v1.43/build?t=app",
        "POST /v1.43/plugins/pull?remote=vieux/sshfs",
        "POST /v1.43/plugins/sshfs/enable",
        "POST /v1.43/plugins/sshfs/set",
        "POST /v1.43/swarm/init",
        "POST /v1.43/swarm/join",
        "POST /v1.43/services/create",
        "POST /v1.43/services/web/update?version=3",
        // Not the socket's to take away: the engine's plugins, the swarm's objects.
        "POST /v1.43/plugins/authz/disable",
        "DELETE /v1.43/plugins/authz",
        "DELETE /v1.43/services/web",
        "DELETE /v1.43/nodes/n1",
        "POST /v1.43/swarm/leave",
        "GET /v1.43/configs/c1",
        "GET /v1.43/configs",
        "DELETE /v1.43/secrets/s1",
    ] {
        assert_eq!(
            status(&shared, request),
            "HTTP/1.1 403 Forbidden",
            "{request}"
        );
    }
    assert_eq!(status(&shared, "GET /v1.43/plugins"), "HTTP/1.1 200 OK");
    // With eci the default, builds pass; plugins and swarm still do not.
    let upstream = dir.path().join("eci-default.sock");
    let seen_eci = engine_with(&upstream, &[], "eci");
    let shared = Arc::new(Shared::new(
        &upstream,
        CommandList::default(),
        eci_runtime(),
    ));
    assert_eq!(
        status(&shared, "POST /v1.43/build?t=app"),
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        status(&shared, "POST /v1.43/swarm/init"),
        "HTTP/1.1 403 Forbidden"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(*seen.lock().unwrap(), ["GET /v1.43/plugins"]);
    assert_eq!(*seen_eci.lock().unwrap(), ["POST /v1.43/build?t=app"]);
}

#[test]
fn a_head_gets_its_new_target() {
    let head = b"POST /containers/web/exec HTTP/1.1\r\nHost: d\r\n\r\n";
    assert_eq!(
        head_with_target(head, "/containers/e1/exec").unwrap(),
        b"POST /containers/e1/exec HTTP/1.1\r\nHost: d\r\n\r\n"
    );
    assert_eq!(head_with_target(b"GARBAGE\r\n\r\n", "/x"), None);
}

#[test]
fn a_head_gets_its_new_body_and_length() {
    let head = b"POST /c HTTP/1.1\r\nHost: d\r\ncontent-LENGTH: 2\r\nX: y\r\n\r\n";
    let rebuilt = head_with_body(head, b"{\"a\":1}");
    assert_eq!(
        String::from_utf8(rebuilt).unwrap(),
        "POST /c HTTP/1.1\r\nHost: d\r\nX: y\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
    );
}

fn deny_volumes_and_push() -> CommandList {
    let rules = ["volume*", "push"]
        .map(|r| (r.to_string(), CommandRule::parse(r).unwrap()))
        .to_vec();
    CommandList::new(ListKind::Deny, rules)
}

/// Sends `bytes` as a client, then reads whatever comes back until the proxy closes.
fn exchange(shared: &Arc<Shared>, bytes: &[u8]) -> Vec<u8> {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let slot = Slot {
        shared: Arc::clone(shared),
        id: shared.next_connection.fetch_add(1, Ordering::Relaxed),
    };
    let proxy = std::thread::spawn(move || {
        let _ = serve(theirs, &slot);
    });
    let _ = ours.write_all(bytes);
    let _ = ours.shutdown(std::net::Shutdown::Write);
    let mut back = Vec::new();
    let _ = ours.read_to_end(&mut back);
    proxy.join().expect("the proxy never panics");
    back
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "POST", "DELETE", "HEAD"]);
    let target = prop::sample::select(vec![
        "/v1.41/containers/json",
        "/v1.41/volumes",
        "/v1.41/volumes/create",
        "/v1.41/images/app/push?tag=1",
        "/_ping",
        "/v1.41/containers/x/../../volumes",
        "/v1.41/volumes%2f",
        "/containers/json?x=/volumes",
        "http://docker/v1.41/volumes",
    ]);
    let framing = prop::sample::select(vec![
        "",
        "Content-Length: 3\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
        "Content-Length: 3\r\nContent-Length: 4\r\n",
        "Connection: close\r\n",
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n",
    ]);
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]);
    (method, target, framing, "[a-z]{0,3}", version).prop_map(|(m, t, f, body, v)| {
        let body = if f.contains("chunked") {
            format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
        } else if f.contains("Content-Length: 3") {
            format!("{body:.3}{}", "xxx".get(body.len().min(3)..).unwrap_or(""))
        } else {
            String::new()
        };
        format!("{m} {t} {v}\r\nHost: d\r\n{f}\r\n{body}").into_bytes()
    })
}

#[test]
fn requests_the_engine_could_read_otherwise_are_refused() {
    let (_dir, shared, seen) = proxy_to_a_plain_engine(deny_volumes_and_push());
    let hidden = "GET /v1.41/volumes HTTP/1.1\r\nHost: d\r\n\r\n";
    let status = |bytes: String| {
        let back = exchange(&shared, bytes.as_bytes());
        String::from_utf8_lossy(&back)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let post = "POST /v1.41/containers/prune HTTP/1.1\r\nHost: d\r\n";
    assert_eq!(
        status(format!("{post}Content-Length: +5\r\n\r\nxxxxx{hidden}")),
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(
        status(format!(
            "{post}Expect: 100-continue\r\nContent-Length: 5\r\n\r\nxxxxx"
        )),
        "HTTP/1.1 400 Bad Request"
    );
    let post10 = "POST /v1.41/containers/prune HTTP/1.0\r\nHost: d\r\n";
    assert_eq!(
        status(format!(
            "{post10}Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\r\n{hidden}"
        )),
        "HTTP/1.1 400 Bad Request"
    );
    let create = "POST /v1.41/images/create?fromImage=alpine HTTP/1.1\r\nHost: d\r\n";
    let form = "fromImage=&fromSrc=http://x/a.tar";
    assert_eq!(
        status(format!(
            "{create}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        )),
        "HTTP/1.1 400 Bad Request"
    );
    // An empty chunk size, and trailers: the proxy stops there.
    status(format!(
        "{post}Transfer-Encoding: chunked\r\n\r\n\r\n\r\n{hidden}"
    ));
    status(format!(
        "{post}Transfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n\r\n{hidden}"
    ));
    // A chunk size ended by a bare LF: the proxy stops there, before anything after it.
    status(format!(
        "{post}Transfer-Encoding: chunked\r\n\r\n5\nxxxxx\r\n0\r\n\r\n{hidden}"
    ));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let seen = seen.lock().unwrap();
    assert!(
        !seen.iter().any(|line| line.contains("volumes")),
        "{seen:?}"
    );
}

#[test]
fn an_engine_that_answers_while_it_reads_does_not_stall() {
    // `docker load`: the engine streams progress while it reads the upload. 2 MiB each way
    // is far more than the sockets buffer.
    const SIZE: usize = 2 << 20;
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("engine.sock");
    let listener = UnixListener::bind(&upstream).unwrap();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut side = Side::new(stream);
        let mut out = side.stream.try_clone().unwrap();
        read_request(&mut side).unwrap().unwrap();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
        out.write_all(head.as_bytes()).unwrap();
        // One piece of progress for each piece read, in turn: it reads no further until
        // its progress has gone somewhere.
        let piece = 64 * 1024;
        for _ in 0..SIZE / piece {
            if side.copy(piece as u64, &mut std::io::sink()).is_err()
                || out.write_all(&vec![b'p'; piece]).is_err()
            {
                return;
            }
        }
    });
    let shared = Arc::new(Shared::new(
        &upstream,
        CommandList::default(),
        eci_runtime(),
    ));
    let (ours, theirs) = UnixStream::pair().unwrap();
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let slot = Slot {
        shared: Arc::clone(&shared),
        id: 0,
    };
    std::thread::spawn(move || serve(theirs, &slot));
    let mut reader = ours.try_clone().unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut answer = vec![0u8; 64 + SIZE];
        let mut got = 0;
        while got < SIZE + 38 {
            match reader.read(&mut answer[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        let _ = done.send(got);
    });
    let mut writer = ours;
    std::thread::spawn(move || {
        let head = format!(
            "POST /v1.41/images/load HTTP/1.1\r\nHost: d\r\nContent-Length: {SIZE}\r\n\r\n"
        );
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&vec![b'u'; SIZE]);
    });
    let got = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the answer came through while the upload went up");
    assert!(got >= SIZE, "{got}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn only_allowed_requests_reach_the_engine(
        requests in proptest::collection::vec(request(), 1..4),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let commands = deny_volumes_and_push();
        let (_dir, shared, seen) = proxy_to_a_plain_engine(commands.clone());
        let mut bytes: Vec<u8> = requests.concat();
        bytes.extend_from_slice(&noise);
        exchange(&shared, &bytes);
        exchange(&shared, &noise);
        // The engine's threads record as they read; give them a moment to finish.
        std::thread::sleep(std::time::Duration::from_millis(5));
        for line in seen.lock().unwrap().iter() {
            let (method, target) = line.split_once(' ').unwrap();
            let allowed = eci_policy::docker_api::classify_target(method, target)
                .is_some_and(|api| commands.decide_endpoint(api).allowed);
            prop_assert!(allowed, "{line} reached the engine");
        }
    }
}

fn headers(pairs: &[(&'static str, &'static [u8])]) -> Vec<httparse::Header<'static>> {
    pairs
        .iter()
        .map(|(name, value)| httparse::Header { name, value })
        .collect()
}

#[test]
fn framing_is_refused_when_it_could_be_read_two_ways() {
    let both = headers(&[("Content-Length", b"5"), ("Transfer-Encoding", b"chunked")]);
    assert!(framing(&both).is_err());
    let two = headers(&[("content-length", b"5"), ("Content-Length", b"6")]);
    assert!(framing(&two).is_err());
    let gzip = headers(&[("Transfer-Encoding", b"gzip, chunked")]);
    assert!(framing(&gzip).is_err());
    let same = headers(&[("content-length", b"5"), ("Content-Length", b"5")]);
    assert_eq!(framing(&same).unwrap(), Framing::Length(5));
    let chunked = headers(&[("Transfer-Encoding", b"Chunked"), ("Upgrade", b"tcp")]);
    assert_eq!(framing(&chunked).unwrap(), Framing::Chunked);
}

/// An engine that answers every request but `GET /stall`, which it reads and never answers.
fn stalling_engine(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut side = Side::new(stream);
                let mut out = side.stream.try_clone().unwrap();
                while let Ok(Some(head)) = read_request(&mut side) {
                    if head.target == "/stall" {
                        std::thread::sleep(std::time::Duration::from_secs(600));
                    }
                    if out
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
}

/// Whether the proxy closed `stream` within 5 s: its end read, or a reset (a socket closed
/// with what was sent on it unread).
fn closed(stream: &mut UnixStream) -> bool {
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(err) => err.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// A request's answer on `stream`: its status line.
fn status_of(stream: &mut UnixStream, request: &[u8]) -> String {
    stream.write_all(request).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut answer = [0u8; 64];
    let read = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..read])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A proxy listening in `dir`, with the default policy, in front of the engine at `upstream`.
fn proxy_in(dir: &Path, upstream: &Path) -> DockerProxy {
    let policy = eci_policy::Policy::default();
    DockerProxy::start(&dir.join("proxy.sock"), upstream, &policy, eci_runtime()).unwrap()
}

#[test]
fn idle_connections_give_their_places_to_newcomers_busy_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("engine.sock");
    stalling_engine(&upstream);
    let proxy = proxy_in(dir.path(), &upstream);
    let ping = b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n";
    // Every place taken by a connection that asks nothing; the first of them asks once at
    // the end, which leaves the second the one that has waited longest.
    let pause = || std::thread::sleep(std::time::Duration::from_millis(50));
    let mut first = UnixStream::connect(proxy.path()).unwrap();
    pause();
    let mut second = UnixStream::connect(proxy.path()).unwrap();
    pause();
    let rest: Vec<UnixStream> = (2..MOST_CONNECTIONS)
        .map(|_| UnixStream::connect(proxy.path()).unwrap())
        .collect();
    pause();
    assert_eq!(status_of(&mut first, ping), "HTTP/1.1 200 OK");
    let mut newcomer = UnixStream::connect(proxy.path()).unwrap();
    assert_eq!(status_of(&mut newcomer, ping), "HTTP/1.1 200 OK");
    assert!(closed(&mut second), "the longest waiting is displaced");
    assert_eq!(status_of(&mut first, ping), "HTTP/1.1 200 OK");
    drop((first, rest, newcomer));
    // Every place taken by a connection in the middle of a request: a newcomer is turned away.
    let stall = b"GET /stall HTTP/1.1\r\nHost: d\r\n\r\n";
    let wait_for_free = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while proxy.shared.connections.load(Ordering::SeqCst) > 0 {
        assert!(
            std::time::Instant::now() < wait_for_free,
            "places given back"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _busy: Vec<UnixStream> = (0..MOST_CONNECTIONS)
        .map(|_| {
            let mut stream = UnixStream::connect(proxy.path()).unwrap();
            stream.write_all(stall).unwrap();
            stream
        })
        .collect();
    let wait_for_busy = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while proxy
        .shared
        .live
        .lock()
        .unwrap()
        .values()
        .any(|c| c.waiting_since.is_some() || c.streams.len() < 2)
    {
        assert!(
            std::time::Instant::now() < wait_for_busy,
            "all asked the engine"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut turned_away = UnixStream::connect(proxy.path()).unwrap();
    // Closed perhaps before this is written.
    let _ = turned_away.write_all(ping);
    assert!(closed(&mut turned_away), "no place for it");
}

#[test]
fn a_body_that_stalls_is_cut_off_and_the_engine_let_go() {
    // An engine that waits for a whole body before it answers, as dockerd does.
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("engine.sock");
    let seen = engine(&upstream);
    let proxy = proxy_in(dir.path(), &upstream);
    let mut stalled = UnixStream::connect(proxy.path()).unwrap();
    let head = "POST /v1.41/images/load HTTP/1.1\r\nHost: d\r\nContent-Length: 9\r\n\r\nabc";
    stalled.write_all(head.as_bytes()).unwrap();
    assert!(closed(&mut stalled), "the client is let go");
    let wait = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while proxy.shared.connections.load(Ordering::SeqCst) > 0 {
        assert!(std::time::Instant::now() < wait, "its place is given back");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the request reached the engine"
    );
}

#[test]
fn a_request_head_that_stalls_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("engine.sock");
    engine(&upstream);
    let proxy = proxy_in(dir.path(), &upstream);
    let mut stalled = UnixStream::connect(proxy.path()).unwrap();
    stalled.write_all(b"GET /_ping HTTP/1.1\r\nHost:").unwrap();
    let started = std::time::Instant::now();
    assert!(closed(&mut stalled));
    // The timer may have started a little before this test's clock.
    let slack = std::time::Duration::from_millis(100);
    assert!(
        started.elapsed() + slack >= HEAD_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    // A connection that keeps asking is not.
    let mut asking = UnixStream::connect(proxy.path()).unwrap();
    let ping = b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n";
    for _ in 0..3 {
        assert_eq!(status_of(&mut asking, ping), "HTTP/1.1 200 OK");
        std::thread::sleep(HEAD_TIMEOUT / 2);
    }
}

#[test]
fn a_registry_digest_is_what_the_engine_says_or_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let digest = format!("sha256:{}", "d".repeat(64));
    let known_answer = format!(r#"{{"Descriptor":{{"digest":"{digest}"}}}}"#);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut side = Side::new(stream);
            let mut out = side.stream.try_clone().unwrap();
            let Ok(Some(head)) = read_request(&mut side) else {
                continue;
            };
            let (status, body) = match head.target.as_str() {
                "/distribution/docker.io/library/docker:cli/json" => {
                    ("200 OK", known_answer.as_str())
                }
                "/distribution/docker.io/library/docker:odd/json" => {
                    ("200 OK", r#"{"Descriptor":{}}"#)
                }
                _ => ("404 Not Found", r#"{"message":"no such manifest"}"#),
            };
            let answer = format!(
                "HTTP/1.0 {status}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = out.write_all(answer.as_bytes());
        }
    });
    let questions: Vec<eci_policy::image::ImageRef> = ["docker:cli", "docker:odd", "docker:gone"]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
    let answers: Vec<_> = questions
        .iter()
        .map(|question| registry_digest(&path, question))
        .collect();
    let digest = eci_policy::image::Digest::parse(&digest).unwrap();
    assert_eq!(answers[0], Ok(digest));
    assert_eq!(
        answers[1],
        Err("the engine's answer about docker.io/library/docker:odd names no digest".into())
    );
    assert_eq!(
        answers[2],
        Err("the registry has no manifest for docker.io/library/docker:gone".into())
    );
}

/// An engine that knows one container, created as `named` from the image `image_id`, whose
/// repository digests are `repo_digests`, keeps its images in containerd's store or not, and
/// answers the other targets of `routes` with their bodies (404 for the rest).
fn image_engine(
    path: &Path,
    named: &'static str,
    image_id: String,
    repo_digests: String,
    containerd: bool,
    routes: Vec<(String, String)>,
) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut side = Side::new(stream);
            let mut out = side.stream.try_clone().unwrap();
            let Ok(Some(head)) = read_request(&mut side) else {
                continue;
            };
            let (driver, driver_type) = if containerd {
                ("overlayfs", "io.containerd.snapshotter.v1")
            } else {
                ("overlay2", "")
            };
            let body = if head.target.starts_with("/containers/json") {
                Some(format!(
                    r#"[{{"Id":"{}","Image":"{named}","ImageID":"{image_id}"}}]"#,
                    "c".repeat(64)
                ))
            } else if head.target == "/info" {
                Some(format!(
                    r#"{{"Driver":"{driver}","DriverStatus":[["driver-type","{driver_type}"]]}}"#
                ))
            } else if head.target == format!("/images/{image_id}/json") {
                Some(format!(
                    r#"{{"RepoDigests":{repo_digests},"RootFS":{{"Layers":["l1","l2"]}}}}"#
                ))
            } else {
                routes
                    .iter()
                    .find(|(target, _)| *target == head.target)
                    .map(|(_, body)| body.clone())
            };
            let answer = match body {
                Some(body) => format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\n{}".to_string(),
            };
            let _ = out.write_all(answer.as_bytes());
        }
    });
}

#[test]
fn an_image_s_digest_is_one_the_engine_can_vouch_for() {
    let real = format!("sha256:{}", "1".repeat(64));
    let own = format!("sha256:{}", "2".repeat(64));
    // A loaded archive can name its image docker:0-@REAL in containerd's store: the image's
    // own digest (its ID there) counts, not its names.
    let forged =
        format!(r#"["docker.io/library/docker:0-@{real}","docker.io/library/docker@{own}"]"#);
    for (containerd, expected) in [(true, &own), (false, &real)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sock");
        image_engine(
            &path,
            "docker:cli",
            own.clone(),
            forged.clone(),
            containerd,
            Vec::new(),
        );
        let list = eci_policy::image::ImageList::default();
        let image = image_from_engine(&path, &"c".repeat(64), &list, &mut Vec::new())
            .unwrap()
            .unwrap();
        let digest = image.image.digest.map(|d| d.to_string());
        assert_eq!(
            digest.as_deref(),
            Some(expected.as_str()),
            "containerd store: {containerd}"
        );
    }
    // A container created from an image ID (or a prefix of one) names no repository.
    for named in ["2222", "sha256:22222222"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sock");
        image_engine(
            &path,
            named,
            own.clone(),
            "[]".to_string(),
            false,
            Vec::new(),
        );
        let list = eci_policy::image::ImageList::default();
        let found = image_from_engine(&path, &"c".repeat(64), &list, &mut Vec::new());
        assert!(found.unwrap().is_none(), "{named}");
    }
}

#[test]
fn a_base_counts_only_if_the_store_vouches_for_its_digest() {
    // The image runs layers l1, l2; the allowed docker:cli is, says the registry, BASE, and
    // the store has an image named docker@BASE with layers l1.
    let base = format!("sha256:{}", "b".repeat(64));
    let own = format!("sha256:{}", "3".repeat(64));
    let list = eci_policy::image::ImageList {
        images: vec!["docker:cli".parse().unwrap()],
        allow_derived_images: true,
    };
    let distribution = format!(r#"{{"Descriptor":{{"digest":"{base}"}}}}"#);
    let found = |id: &str, repo_digests: &str| {
        format!(r#"{{"Id":"{id}","RepoDigests":{repo_digests},"RootFS":{{"Layers":["l1"]}}}}"#)
    };
    let by_digest = format!("/images/docker.io/library/docker@{base}/json");
    let pulled = format!(r#"["docker.io/library/docker@{base}"]"#);
    let other_id = format!("sha256:{}", "9".repeat(64));
    for (containerd, answer, vouched) in [
        // The classic store: found by a digest it recorded at a pull.
        (false, found(&other_id, &pulled), true),
        (false, found(&other_id, "[]"), false),
        // containerd's: only if the image's own ID is the digest, not a name given to it.
        (true, found(&base, &pulled), true),
        (true, found(&other_id, &pulled), false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.sock");
        let routes = vec![
            (
                "/distribution/docker.io/library/docker:cli/json".to_string(),
                distribution.clone(),
            ),
            (by_digest.clone(), answer),
        ];
        image_engine(
            &path,
            "my/app:1",
            own.clone(),
            "[]".to_string(),
            containerd,
            routes,
        );
        let image = image_from_engine(&path, &"c".repeat(64), &list, &mut Vec::new())
            .unwrap()
            .unwrap();
        let granted = list.decide(&image.image, image.base.as_ref(), &image.known);
        assert_eq!(granted.is_some(), vouched, "containerd store: {containerd}");
    }
}

#[test]
fn a_refused_bind_never_says_where_a_host_link_leads() {
    let rules = BindRules::of(&eci_policy::Policy::default());
    // The host's processes, and links into them, which mean the proxy's here and the
    // engine's there (/dev/fd/N): refused without following them.
    let dir = tempfile::tempdir().unwrap();
    let into_proc = dir.path().join("into-proc");
    std::os::unix::fs::symlink("/proc/self/cwd", &into_proc).unwrap();
    for source in ["/proc/1/cwd", "/dev/fd/0", "/dev/stdin", "/sys/fs/cgroup"] {
        let why = rules.refusal([source.to_string()]).unwrap();
        assert!(why.contains("never shared"), "{why}");
        assert!(!why.contains("/root"), "{why}");
    }
    let why = rules.refusal([into_proc.display().to_string()]).unwrap();
    assert!(why.contains("leads into, /proc"), "{why}");
    // A link elsewhere: refused, naming only the path given.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("/etc/ssh", &link).unwrap();
    let why = rules.refusal([link.display().to_string()]).unwrap();
    assert!(why.contains("through a link"), "{why}");
    assert!(!why.contains("/etc"), "{why}");
}
