use super::*;
use crate::docker_api::Reason;
use crate::paths::Access;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/settings-example.json"
));
const SETTINGS_DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/settings.md"
));

fn error(text: &str) -> SettingsError {
    parse(text).expect_err("the document is invalid")
}

fn p(path: &str) -> ResolvedPath {
    ResolvedPath::from_resolved(Path::new(path)).unwrap()
}

#[test]
fn an_empty_document_is_the_default_policy() {
    assert_eq!(parse("{}").unwrap(), Policy::default());
    assert_eq!(
        parse(r#"{"eci": {}, "enhancedContainerIsolation": {}}"#).unwrap(),
        Policy::default()
    );
    assert_eq!(parse(" {\n}\n").unwrap(), Policy::default());
}

#[test]
fn the_documented_example_parses_into_what_it_says() {
    assert!(
        SETTINGS_DOC.contains(EXAMPLE.trim()),
        "docs/settings.md shows the example file"
    );
    let policy = parse(EXAMPLE).unwrap();
    assert!(policy.eci_enabled && policy.locks.eci);
    assert_eq!(policy.docker_socket.images.images.len(), 4);
    let push = policy
        .docker_socket
        .commands
        .decide("POST", "/v1.45/images/x/push", "");
    assert_eq!((push.allowed, push.reason), (false, Reason::Listed("push")));
    assert!(matches!(
        policy.paths.decide(&p("/srv/projects/app")),
        PathDecision::Shared {
            origin: RuleOrigin::Settings,
            ..
        }
    ));
    assert!(matches!(
        policy.paths.decide(&p("/srv/projects/secrets.env")),
        PathDecision::Restricted {
            origin: RuleOrigin::Settings,
            ..
        }
    ));
    assert_eq!(
        policy.paths.decide(&p("/mnt/usb")),
        PathDecision::NotShared,
        "the list replaces the defaults"
    );
    assert!(matches!(
        policy.paths.decide(&p("/etc/passwd")),
        PathDecision::Restricted {
            origin: RuleOrigin::Default,
            ..
        }
    ));
    assert!(!policy.procfs.get(ProcFile::Diskstats));
    assert!(policy.locks.is_locked(&Setting::Procfs(ProcFile::Sysinfo)));
    assert!(policy.locks.is_locked(&Setting::AllowRemount));
    assert!(!policy.locks.is_locked(&Setting::AllowUnmount));
    assert_eq!(policy.sysctls.mode("fs.file-max"), SysctlMode::LargestWins);
    // Its hook directory is under /usr, which is still bound (read-only) whole.
    let usr = ResolvedPath::from_resolved(std::path::Path::new("/usr")).unwrap();
    assert!(matches!(
        policy.paths.decide(&usr),
        PathDecision::Shared {
            read_only: true,
            ..
        }
    ));
    assert!(!policy.mount_types.allows(b"ramfs"));
    assert_eq!(
        policy.hook_dirs,
        vec![PathBuf::from("/usr/libexec/oci/hooks.d")]
    );
}

#[test]
fn type_errors_name_the_field_line_and_column() {
    let text = "{\n  \"enhancedContainerIsolation\": {\n    \"dockerSocketMount\": {\n      \"commandList\": { \"type\": \"denny\" }\n    }\n  }\n}";
    let err = error(text);
    assert_eq!(
        err.path,
        "enhancedContainerIsolation.dockerSocketMount.commandList.type"
    );
    assert_eq!((err.line, err.column), (4, 38), "the end of the bad value");
    assert_eq!((err.line, err.column), end_of(text, "\"denny\""));
    assert!(err.to_string().contains("unknown variant `denny`"), "{err}");
    assert!(err.to_string().contains("line 4, column 38"), "{err}");
}

#[test]
fn unknown_fields_are_errors() {
    let err = error(
        "{\"eci\": {\"immutability\": {\"allowRemount\": {\"value\": true, \"lock\": true}}}}",
    );
    assert_eq!(err.path, "eci.immutability.allowRemount.lock");
    assert!(err.to_string().contains("unknown field `lock`"), "{err}");
    let err = error("{\"exposeDockerAPIOnTCP2375\": {\"value\": false}}");
    assert_eq!(err.path, "exposeDockerAPIOnTCP2375");
    let err = error("{\"eci\": {\"procfs\": {\"memInfo\": {\"value\": true}}}}");
    assert_eq!(err.path, "eci.procfs.memInfo");
}

#[test]
fn malformed_json_names_where_it_broke() {
    let err = error("{\"eci\": {\"sharedPaths\": [ {\"path\": \"/a\"} ");
    assert_eq!(err.path, "eci.sharedPaths");
    assert!(matches!(err.problem, Problem::Syntax(_)));
    let err = error("{} trailing");
    assert_eq!((err.path.as_str(), err.line, err.column), (".", 1, 4));
    let err = error("");
    assert_eq!(err.path, ".");
    let err = error("{\"\": 1}");
    assert_eq!(err.path, "\"\"", "a field named by the empty string");
    let err = error("{\"eci\": {\"sysctls\": {\"kernel.panic\": {}, \"kernel.panic\": {}}}}");
    assert_eq!(err.path, "eci.sysctls");
    assert!(
        err.to_string().contains("duplicate key `kernel.panic`"),
        "{err}"
    );
    let err = error("{\"eci\": {\"idPool\": {\"start\": -1}}}");
    assert_eq!(err.path, "eci.idPool.start");
}

/// The line and column of the last character of `marker` in `text` (which holds it once): where
/// serde_json reports a value it stopped at, the closing quote of a string, the `{` of an object.
fn end_of(text: &str, marker: &str) -> (usize, usize) {
    let end = text.find(marker).expect("the marker is in the text") + marker.len();
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1);
    (line, column)
}

#[test]
fn semantic_errors_name_the_field_line_and_column() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "{\"eci\": {\n \"sharedPaths\": [\n  {\"path\": \"/home\"},\n  {\"path\": \"data\"}\n ]}}",
            "eci.sharedPaths[1].path",
            "\"data\"",
            "not absolute",
        ),
        (
            "{\"eci\": {\"sharedPaths\": [{\"path\": \"/etc/app\"}]}}",
            "eci.sharedPaths[0].path",
            "\"/etc/app\"",
            "inside the restricted path /etc (built-in default)",
        ),
        (
            "{\"eci\": {\"engineDataRoots\": [\"/srv/docker\"], \"sharedPaths\": [{\"path\": \"/srv/docker/overlay2\"}]}}",
            "eci.sharedPaths[0].path",
            "\"/srv/docker/overlay2\"",
            "inside the restricted path /srv/docker (settings)",
        ),
        (
            "{\"eci\": {\"sharedPaths\": [{\"path\": \"/srv\"}, {\"path\": \"/srv/\"}]}}",
            "eci.sharedPaths[1].path",
            "\"/srv/\"",
            "listed twice",
        ),
        (
            "{\"eci\": {\"sysctls\": {\"kernel.panic_on_opps\": {\"locked\": true}}}}",
            "eci.sysctls.kernel.panic_on_opps",
            "opps\": {",
            "not one eci emulates",
        ),
        (
            "{\"eci\": {\"sysctls\": {\"kernel.sysrq\": {\"value\": \"enable-wins\"}}}}",
            "eci.sysctls.kernel.sysrq",
            "sysrq\": {",
            "cannot be enable-wins",
        ),
        (
            "{\"eci\": {\"restrictedPaths\": [{\"path\": \"secret\"}]}}",
            "eci.restrictedPaths[0].path",
            "\"secret\"",
            "not absolute",
        ),
        (
            "{\"eci\": {\n  \"idPool\": {\"start\": 0}}}",
            "eci.idPool",
            "\"idPool\": {",
            "host IDs 0-65535 are never handed out",
        ),
        (
            "{\"enhancedContainerIsolation\": {\"dockerSocketMount\": {\"imageList\": {\"images\": [\"ok\", \"Bad\"]}}}}",
            "enhancedContainerIsolation.dockerSocketMount.imageList.images[1]",
            "\"Bad\"",
            "must be lower-case",
        ),
        (
            "{\"enhancedContainerIsolation\": {\"dockerSocketMount\": {\"commandList\": {\"commands\": [\"compose\"]}}}}",
            "enhancedContainerIsolation.dockerSocketMount.commandList.commands[0]",
            "\"compose\"",
            "'compose' is not a docker command",
        ),
        (
            "{\"eci\": {\"sysctls\": {\"net.ipv4.ip_forward\": {\"value\": \"largest-wins\"}}}}",
            "eci.sysctls.net.ipv4.ip_forward",
            "\"net.ipv4.ip_forward\": {",
            "is namespaced",
        ),
        (
            "{\"eci\": {\"mountTypes\": [\"tmpfs\", \"ext4\"]}}",
            "eci.mountTypes[1]",
            "\"ext4\"",
            "'ext4' is not a filesystem type",
        ),
        (
            "{\"eci\": {\"hookDirectories\": [\"hooks\"]}}",
            "eci.hookDirectories[0]",
            "\"hooks\"",
            "not absolute",
        ),
        (
            "{\"eci\": {\"engineSockets\": [\"/run/user/1000/docker.sock\", \"docker.sock\"]}}",
            "eci.engineSockets[1]",
            "\"docker.sock\"",
            "not absolute",
        ),
        (
            "{\"eci\": {\"engineDataRoots\": [\"docker\"]}}",
            "eci.engineDataRoots[0]",
            "\"docker\"",
            "not absolute",
        ),
        ("{\"configurationFileVersion\": 3}", "configurationFileVersion", ": 3", "version 3"),
    ];
    for (text, path, marker, message) in cases {
        let err = error(text);
        assert_eq!(err.path, *path, "{text}");
        assert_eq!((err.line, err.column), end_of(text, marker), "{err}");
        assert!(err.to_string().contains(message), "{err}");
        assert!(!matches!(err.problem, Problem::Syntax(_)), "{err}");
    }
}

#[test]
fn engine_sockets_add_to_the_docker_sockets() {
    let policy =
        parse(r#"{"eci": {"engineSockets": ["/run/user/1000//docker.sock", "/run/docker.sock"]}}"#)
            .unwrap();
    assert_eq!(
        policy.docker_socket.sockets,
        [
            "/run/docker.sock",
            "/var/run/docker.sock",
            "/run/user/1000/docker.sock"
        ]
        .map(std::path::PathBuf::from)
    );
}

#[test]
fn engine_data_roots_add_to_the_default_and_are_restricted() {
    let policy =
        parse(r#"{"eci": {"engineDataRoots": ["/home/alice/.local/share/docker/"]}}"#).unwrap();
    let root = "/home/alice/.local/share/docker";
    assert_eq!(
        policy.engine_data_roots,
        ["/var/lib/docker", root].map(std::path::PathBuf::from)
    );
    // /home is shared by default; the data root in it is not.
    let layers =
        ResolvedPath::from_resolved(std::path::Path::new(root).join("overlay2").as_path()).unwrap();
    assert!(matches!(
        policy.paths.decide(&layers),
        PathDecision::Restricted { .. }
    ));
}

#[test]
fn a_hook_directory_that_is_itself_a_share_becomes_read_only() {
    let policy = parse(r#"{"eci": {"hookDirectories": ["/opt"]}}"#).unwrap();
    let path = ResolvedPath::from_resolved(std::path::Path::new("/opt/hook.json")).unwrap();
    assert!(
        matches!(
            policy.paths.decide(&path),
            PathDecision::Shared {
                read_only: true,
                ..
            }
        ),
        "{:?}",
        policy.paths.decide(&path)
    );
}

#[test]
fn hook_directories_are_never_writable_by_a_bind() {
    let policy = parse(
        r#"{"eci": {"hookDirectories": ["/opt/hooks/", "/usr/libexec/oci/hooks.d", "/etc/hooks"]}}"#,
    )
    .unwrap();
    assert_eq!(policy.hook_dirs.len(), 3);
    let decide = |path: &str| {
        let path = ResolvedPath::from_resolved(std::path::Path::new(path)).unwrap();
        policy.paths.decide(&path)
    };
    // Under the writable /opt: read-only, and /opt is writable no more as a whole.
    assert!(matches!(
        decide("/opt/hooks/bin"),
        PathDecision::Shared {
            read_only: true,
            ..
        }
    ));
    assert!(matches!(
        decide("/opt"),
        PathDecision::ContainsReadOnly { .. }
    ));
    assert!(matches!(
        decide("/opt/app"),
        PathDecision::Shared {
            read_only: false,
            ..
        }
    ));
    // Under the read-only /usr, and the restricted /etc, nothing changes: /usr is still bound.
    assert!(matches!(
        decide("/usr"),
        PathDecision::Shared {
            read_only: true,
            ..
        }
    ));
    assert!(matches!(
        decide("/etc/hooks"),
        PathDecision::Restricted { .. }
    ));
}

#[test]
fn engine_storage_adds_to_the_default_holds_roots_and_is_restricted() {
    let policy = parse(r#"{"eci": {"engineStorage": ["/srv/containers/"]}}"#).unwrap();
    let mut expected: Vec<std::path::PathBuf> = crate::settings::DEFAULT_ENGINE_STORAGE
        .iter()
        .map(std::path::PathBuf::from)
        .collect();
    expected.push("/srv/containers".into());
    assert_eq!(policy.engine_storage, expected);
    let root = ResolvedPath::from_resolved(std::path::Path::new(
        "/srv/containers/storage/overlay/1/merged",
    ))
    .unwrap();
    assert!(matches!(
        policy.paths.decide(&root),
        PathDecision::Restricted { .. }
    ));
    assert_eq!(
        policy.decide_root(&root, true),
        Ok(crate::root::RootAccess::EngineTree)
    );
    assert!(parse(r#"{"eci": {"engineStorage": ["containers"]}}"#).is_err());
}

#[test]
fn an_engine_socket_cannot_be_reached_through_its_directory() {
    // /home is shared by default; the socket in it is reached only through the proxy.
    let socket = "/home/alice/.docker/desktop/docker.sock";
    let policy = parse(&format!(r#"{{"eci": {{"engineSockets": ["{socket}"]}}}}"#)).unwrap();
    let decide = |path: &str| {
        let path = ResolvedPath::from_resolved(std::path::Path::new(path)).unwrap();
        matches!(
            policy.paths.decide(&path),
            PathDecision::ContainsRestricted { .. }
        )
    };
    assert!(decide("/home/alice/.docker/desktop"));
    assert!(decide("/home/alice"));
    let sibling = ResolvedPath::from_resolved(std::path::Path::new("/home/bob")).unwrap();
    assert!(matches!(
        policy.paths.decide(&sibling),
        PathDecision::Shared { .. }
    ));
}

#[test]
fn a_lock_without_a_value_keeps_the_default() {
    let policy = parse(r#"{"eci": {"procfs": {"swaps": {"locked": true}}}}"#).unwrap();
    assert!(policy.procfs.get(ProcFile::Swaps));
    assert!(policy.locks.is_locked(&Setting::Procfs(ProcFile::Swaps)));
    let defaults =
        parse(r#"{"enhancedContainerIsolation": {"dockerSocketMount": {"imageList": {}}}}"#)
            .unwrap();
    assert!(
        defaults.docker_socket.images.allow_derived_images,
        "Docker's default"
    );
}

/// Documents built from the document's own vocabulary, so that the parser's deeper checks run.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let keys = prop::sample::select(vec![
        "enhancedContainerIsolation",
        "dockerSocketMount",
        "imageList",
        "images",
        "commandList",
        "type",
        "commands",
        "value",
        "locked",
        "eci",
        "sharedPaths",
        "restrictedPaths",
        "path",
        "scope",
        "readOnly",
        "idPool",
        "start",
        "size",
        "blockSize",
        "immutability",
        "allowRemount",
        "procfs",
        "meminfo",
        "sysctls",
        "kernel.panic",
        "mountTypes",
        "hookDirectories",
        "engineSockets",
        "engineDataRoots",
        "engineStorage",
        "allowDerivedImages",
        "configurationFileVersion",
        "bogus",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![
            "deny",
            "allow",
            "/home",
            "etc",
            "/etc/x",
            "docker:cli",
            "Bad",
            "*",
            "push",
            "system*",
            "compose",
            "exact",
            "subtree",
            "largest-wins",
            "tmpfs",
            "ext4",
            "",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((keys.clone(), inner), 0..4).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                )
            }),
        ]
    })
}

#[test]
fn a_problem_inside_a_struct_written_as_an_array_has_a_place() {
    // serde reads a struct from an array of its fields: the third is `eci`.
    let text = "[\n  null,\n  null,\n  {\n    \"mountTypes\": [\n      \"deny\"\n    ]\n  }\n]";
    let err = parse(text).unwrap_err();
    assert_eq!(err.path, "eci.mountTypes[0]");
    assert!(err.line >= 1 && err.column >= 1, "{err}");
}

proptest! {
    #[test]
    fn any_text_gives_a_policy_or_an_error_with_a_place(text in "\\PC{0,80}") {
        if let Err(err) = parse(&text) {
            prop_assert!(!err.path.is_empty());
            prop_assert!(err.line >= 1, "{}", err);
        }
    }

    #[test]
    fn structured_documents_give_a_policy_or_an_error_with_a_place(value in json_value()) {
        let text = serde_json::to_string_pretty(&value).unwrap();
        if let Err(err) = parse(&text) {
            prop_assert!(!err.path.is_empty());
            prop_assert!(err.line >= 1 && err.column >= 1, "{}\n{}", err, text);
        }
    }

    #[test]
    fn a_restricted_path_is_never_allowed_through_any_spelling(
        shared in proptest::collection::vec("/[ab](/[ab]){0,2}", 0..4),
        restricted in proptest::collection::vec(("/[ab](/[ab]){0,2}", any::<bool>()), 1..4),
        target in 0..3usize,
        suffix in proptest::collection::vec(prop_oneof![Just(".."), Just("."), Just(""), Just("a"), Just("b")], 0..5),
    ) {
        let shared_json: Vec<String> = shared.iter().map(|p| format!("{{\"path\": \"{p}\"}}")).collect();
        let restricted_json: Vec<String> = restricted.iter().map(|(p, exact)| {
            let scope = if *exact { "exact" } else { "subtree" };
            format!("{{\"path\": \"{p}\", \"scope\": \"{scope}\"}}")
        }).collect();
        let text = format!(
            "{{\"eci\": {{\"sharedPaths\": [{}], \"restrictedPaths\": [{}]}}}}",
            shared_json.join(","), restricted_json.join(",")
        );
        let Ok(policy) = parse(&text) else {
            return Ok(());
        };
        let (rule, exact) = &restricted[target % restricted.len()];
        let spelled = format!("{rule}/{}", suffix.join("/"));
        let resolved = ResolvedPath::from_resolved(Path::new(&spelled)).unwrap();
        let inside = if *exact { resolved.as_path() == Path::new(rule) } else { resolved.as_path().starts_with(rule) };
        let allowed = matches!(policy.paths.decide(&resolved), PathDecision::Shared { .. });
        prop_assert!(!(inside && allowed), "{} allowed by {}", spelled, text);
        let restricted_rules = policy.paths.rules().filter(|r| r.access == Access::Restricted).count();
        prop_assert!(restricted_rules >= restricted.len().min(1));
    }
}

#[test]
fn cgroups_are_delegated_only_where_the_settings_say() {
    assert!(!parse("{}").unwrap().delegate_cgroups);
    assert!(
        parse(r#"{"eci": {"delegateCgroups": true}}"#)
            .unwrap()
            .delegate_cgroups
    );
    let err = parse(r#"{"eci": {"delegateCgroups": "yes"}}"#).unwrap_err();
    assert!(err.to_string().contains("delegateCgroups"), "{err}");
}
