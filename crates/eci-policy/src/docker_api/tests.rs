use super::*;
use proptest::prelude::*;

const DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/docker-api-commands.md"
));

/// One row of the published table.
#[derive(Debug, Clone)]
struct DocRow {
    method: String,
    path: String,
    query: Option<String>,
    commands: Vec<String>,
    groups: Vec<String>,
}

fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').to_string()
}

fn list(cell: &str) -> Vec<String> {
    cell.split(',').map(unquote).collect()
}

/// The rows of the table under "## The table".
fn doc_rows() -> Vec<DocRow> {
    let section = DOC
        .split("\n## The table")
        .nth(1)
        .expect("the page has a '## The table' section");
    section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 5, "row {line}");
            let query = unquote(cells[2]);
            DocRow {
                method: unquote(cells[0]),
                path: unquote(cells[1]),
                query: (!query.is_empty()).then_some(query),
                commands: list(cells[3]),
                groups: list(cells[4]),
            }
        })
        .collect()
}

/// A concrete request path for a documented pattern.
fn fill(pattern: &str, name: &str, id: &str) -> String {
    pattern
        .replace("{name}", name)
        .replace("{id}", id)
        .replace("{checkpoint}", "cp1")
}

fn query_for(row: &DocRow) -> String {
    match row.query.as_deref() {
        Some("fromImage") => "fromImage=alpine&tag=3".to_string(),
        Some("fromSrc") => "fromSrc=-&repo=imported".to_string(),
        Some(other) => panic!("the test does not know query {other}"),
        None => String::new(),
    }
}

fn assert_row_matches(row: &DocRow, api: Option<Api>, request: &str) {
    let api = api.unwrap_or_else(|| panic!("{request} did not classify"));
    let endpoint = api.endpoint();
    assert_eq!(endpoint.method.as_str(), row.method, "{request}");
    assert_eq!(endpoint.path, row.path, "{request}");
    assert_eq!(endpoint.query, row.query.as_deref(), "{request}");
    assert_eq!(endpoint.commands, row.commands, "{request}");
    let groups: Vec<&str> = endpoint.groups.iter().map(|g| g.name()).collect();
    assert_eq!(groups, row.groups, "{request}");
}

#[test]
fn the_table_is_in_api_order() {
    for (index, endpoint) in ENDPOINTS.iter().enumerate() {
        assert_eq!(endpoint.api as usize, index, "{endpoint}");
    }
}

#[test]
fn every_documented_row_classifies_to_its_commands() {
    let rows = doc_rows();
    assert_eq!(
        rows.len(),
        ENDPOINTS.len(),
        "the page and the code list the same endpoints"
    );
    for row in &rows {
        for (name, id) in [("web", "n0d3"), ("docker.io/library/alpine:3", "x")] {
            let path = fill(&row.path, name, id);
            let query = query_for(row);
            for prefix in ["", "/v1.24", "/v1.47"] {
                let full = format!("{prefix}{path}");
                let request = format!("{} {full}?{query}", row.method);
                assert_row_matches(row, classify(&row.method, &full, &query), &request);
            }
        }
    }
}

#[test]
fn every_endpoint_is_documented_once() {
    let rows = doc_rows();
    for endpoint in ENDPOINTS {
        let documented = rows
            .iter()
            .filter(|row| {
                row.method == endpoint.method.as_str()
                    && row.path == endpoint.path
                    && row.query.as_deref() == endpoint.query
            })
            .count();
        assert_eq!(documented, 1, "{endpoint}");
    }
}

#[test]
fn every_alias_names_a_command_of_the_table() {
    for (alias, command) in ALIASES {
        assert_eq!(
            CommandRule::parse(alias),
            Ok(CommandRule::Command(command)),
            "{alias}"
        );
        assert!(
            DOC.contains(&format!("| `{alias}` | `{command}` |")),
            "{alias} is documented"
        );
    }
}

#[test]
fn requests_the_engine_would_not_serve_classify_to_nothing() {
    let refused = [
        ("GET", "/containers//json", ""),
        ("GET", "/containers/x/../json", ""),
        ("GET", "/containers/./json", ""),
        ("GET", "/containers/json/", ""),
        ("GET", "/v1.43", ""),
        ("GET", "/v1.43/", ""),
        ("GET", "containers/json", ""),
        ("get", "/containers/json", ""),
        ("OPTIONS", "/containers/json", ""),
        ("PATCH", "/containers/x/update", ""),
        ("POST", "/containers/x/copy", ""),
        ("POST", "/containers/x/attach/ws", ""),
        ("GET", "/containers/attach/ws", ""),
        ("GET", "/nodes/a/b", ""),
        ("POST", "/networks/", ""),
        ("GET", "/images/x/pu%7", ""),
        ("GET", "/images/x/%ff", ""),
        ("POST", "/images/create", "fromImage=a;b"),
        ("POST", "/images/create", "fromImage=%zz"),
        ("GET", "/v1.43/v1.43/info", ""),
        ("GET", "/", ""),
        ("GET", "", ""),
    ];
    for (method, path, query) in refused {
        assert_eq!(
            classify(method, path, query),
            None,
            "{method} {path}?{query}"
        );
    }
}

#[test]
fn escapes_and_queries_are_read_like_the_engine_reads_them() {
    assert_eq!(
        classify("POST", "/images/x/pu%73h", ""),
        Some(Api::ImagePush)
    );
    assert_eq!(
        classify("POST", "/%761.43/images/x/push", ""),
        Some(Api::ImagePush)
    );
    assert_eq!(
        classify("GET", "/images/a%2Fb/json", ""),
        Some(Api::ImageInspect)
    );
    assert_eq!(classify("GET", "/images/a%2F%2Fb/json", ""), None);
    let create = |query| classify("POST", "/images/create", query);
    assert_eq!(create("fromImage=alpine"), Some(Api::ImagePull));
    assert_eq!(create("from%49mage=alpine"), Some(Api::ImagePull));
    assert_eq!(create("fromImage=&fromSrc=-"), Some(Api::ImageImport));
    assert_eq!(
        create("fromImage=&fromImage=alpine"),
        Some(Api::ImageImport)
    );
    assert_eq!(create(""), Some(Api::ImageImport));
    assert_eq!(
        classify_target("POST", "http://docker/v1.45/images/create?fromImage=x"),
        Some(Api::ImagePull)
    );
    assert_eq!(
        classify_target("GET", "/v1.45/containers/json?all=1"),
        Some(Api::ContainerList)
    );
    assert_eq!(
        classify("GET", "/version", ""),
        Some(Api::Version),
        "not a version prefix"
    );
    assert_eq!(
        classify("DELETE", "/containers/a/checkpoints/b", ""),
        Some(Api::CheckpointDelete)
    );
    assert_eq!(
        classify("DELETE", "/containers/a/b/checkpoints/c", ""),
        Some(Api::ContainerDelete)
    );
}

fn rules(texts: &[&str]) -> Vec<(String, CommandRule)> {
    texts
        .iter()
        .map(|text| (text.to_string(), CommandRule::parse(text).unwrap()))
        .collect()
}

#[test]
fn deny_lists_refuse_what_they_name_and_nothing_else() {
    let list = CommandList::new(ListKind::Deny, rules(&["push", "build", "system*"]));
    let push = list.decide("POST", "/v1.43/images/myimage/push", "tag=latest");
    assert!(!push.allowed);
    assert_eq!(push.reason, Reason::Listed("push"));
    assert!(
        !list.decide("POST", "/session", "").allowed,
        "BuildKit builds are builds"
    );
    let prune = list.decide("POST", "/containers/prune", "");
    assert_eq!(prune.reason, Reason::Listed("system*"));
    assert!(!list.decide("GET", "/info", "").allowed);
    let ps = list.decide("GET", "/containers/json", "all=1");
    assert!(ps.allowed);
    assert_eq!(ps.reason, Reason::NotListed);
    let ping = list.decide("GET", "/_ping", "");
    assert!(ping.allowed, "negotiation is never refused");
    let unknown = list.decide("GET", "/containers/x/unknown", "");
    assert_eq!(
        (unknown.allowed, unknown.reason),
        (false, Reason::Unclassified)
    );
}

#[test]
fn allow_lists_allow_only_what_they_name() {
    let list = CommandList::new(ListKind::Allow, rules(&["run", "container ls", "volume*"]));
    for (method, path) in [
        ("POST", "/containers/create"),
        ("POST", "/containers/x/start"),
        ("POST", "/containers/x/attach"),
        ("POST", "/containers/x/wait"),
        ("GET", "/containers/json"),
        ("POST", "/volumes/create"),
        ("DELETE", "/volumes/data"),
        ("HEAD", "/_ping"),
    ] {
        assert!(list.decide(method, path, "").allowed, "{method} {path}");
    }
    for (method, path) in [
        ("DELETE", "/containers/x"),
        ("POST", "/images/create"),
        ("POST", "/networks/create"),
        ("GET", "/nope"),
    ] {
        assert!(!list.decide(method, path, "").allowed, "{method} {path}");
    }
    let everything = CommandList::new(ListKind::Allow, rules(&["*"]));
    assert!(ENDPOINTS
        .iter()
        .all(|e| everything.decide_endpoint(e.api).allowed));
}

#[test]
fn every_wildcard_docker_documents_covers_its_commands() {
    let covered = |rule: &str, command: &str| {
        let rule = CommandRule::parse(rule).unwrap();
        ENDPOINTS
            .iter()
            .filter(|e| e.commands.contains(&command))
            .all(|e| rule.covers(e))
    };
    assert!(covered("container*", "ps"));
    assert!(covered("container*", "exec"));
    assert!(covered("image*", "pull"));
    assert!(covered("image*", "build"));
    assert!(covered("volume*", "volume create"));
    assert!(covered("network*", "network connect"));
    assert!(covered("build*", "builder prune"));
    assert!(covered("system*", "system df"));
    assert!(covered("system*", "events"));
    assert!(!covered("container*", "pull"));
}

#[test]
fn unknown_entries_are_errors_that_name_them() {
    assert_eq!(
        CommandRule::parse("compose"),
        Err(CommandError::Unknown("compose".into()))
    );
    assert_eq!(
        CommandRule::parse("containers*"),
        Err(CommandError::UnknownGroup("containers*".into()))
    );
    assert_eq!(
        CommandRule::parse(""),
        Err(CommandError::Unknown(String::new()))
    );
}

fn segment() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,6}"
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(segment(), 1..4).prop_map(|parts| parts.join("/"))
}

proptest! {
    #[test]
    fn documented_endpoints_classify_and_name_their_container_whatever_the_names_and_version(
        index in 0..ENDPOINTS.len(),
        name in name(),
        id in "[a-zA-Z0-9_-]{1,12}",
        version in proptest::option::of("[0-9]{1,2}\\.[0-9]{1,2}"),
    ) {
        let rows = doc_rows();
        let row = &rows[index];
        let prefix = version.map(|v| format!("/v{v}")).unwrap_or_default();
        let path = format!("{prefix}{}", fill(&row.path, &name, &id));
        let query = query_for(row);
        let request = format!("{} {path}?{query}", row.method);
        assert_row_matches(row, classify(&row.method, &path, &query), &request);

        let target = format!("{path}?{query}");
        let found = container_of_target(&row.method, &target);
        let scoped = row.path.starts_with("/containers/{");
        let expected = scoped.then(|| if row.path.starts_with("/containers/{id}") { id.clone() } else { name.clone() });
        prop_assert_eq!(found.as_ref().map(|f| f.name.clone()), expected, "{}", target);
        if let Some(found) = found {
            // Renamed to an ID, the request still classifies the same.
            let renamed = found.with_id("0123abcd");
            prop_assert_eq!(
                classify_target(&row.method, &renamed),
                classify_target(&row.method, &target),
                "{}", renamed
            );
            prop_assert_eq!(container_of_target(&row.method, &renamed).map(|f| f.name), Some("0123abcd".to_string()));
        }
        let exec = exec_of_target(&row.method, &target);
        prop_assert_eq!(exec.is_some(), row.path.starts_with("/exec/{"), "{}", target);
        // What a proxy must scope it finds: a request naming an object never goes unscoped.
        let api = classify(&row.method, &path, &query).unwrap();
        let named = match api.names_object_in() {
            Some("containers") => container_of_target(&row.method, &target).is_some(),
            Some("exec") => exec.is_some(),
            Some("volumes") => volume_of_target(&row.method, &target).is_some(),
            Some("networks") => network_of_target(&row.method, &target).is_some(),
            Some(other) => panic!("unknown collection {other}"),
            None => true,
        };
        prop_assert!(named, "{}", target);
    }

    #[test]
    fn host_network_and_buildkit_builds_are_refused_however_spelt(
        mode in "[hH][oO][sS][tT]", encode in any::<bool>(),
        before in "(t|q|rm|pull|nocache|dockerfile|target)=[a-z0-9]{0,6}"
    ) {
        let key = if encode { "network%6Dode" } else { "networkmode" };
        let query = format!("{before}&{key}={mode}");
        prop_assert!(query_refusal(Api::Build, &query).is_some(), "{}", query);
        let buildkit = format!("{before}&version=2");
        prop_assert!(query_refusal(Api::Build, &buildkit).is_some());
        let later = format!("networkmode=none&{key}={mode}");
        prop_assert_eq!(query_refusal(Api::Build, &later), None, "the engine reads the first");
        prop_assert_eq!(query_refusal(Api::Build, &before), None);
    }

    #[test]
    fn an_attach_that_replays_the_output_is_a_logs_request_too(
        truthy in "(1|true|TRUE|yes|on|x|%20true)",
        falsy in "(0|false|False|no|none|NONE|%200)",
        other in "(stream|stdout|stderr|stdin)=[01]",
    ) {
        let replays = format!("{other}&logs={truthy}");
        let streams_only = format!("{other}&logs={falsy}");
        let first_false = format!("logs={falsy}&logs={truthy}");
        for api in [Api::ContainerAttach, Api::ContainerAttachWebsocket] {
            prop_assert!(reads_logs(api, &replays), "{}", replays);
            prop_assert!(!reads_logs(api, &streams_only), "{}", streams_only);
            prop_assert!(!reads_logs(api, &first_false), "the engine reads the first");
            prop_assert!(!reads_logs(api, &other));
        }
        prop_assert!(!reads_logs(Api::ContainerLogs, &replays));
    }

    #[test]
    fn top_passes_only_standard_ps_formats(
        selector in "(-[CGgpqstUuOoNk]|[pqtUoOkN]|[0-9]{1,5}|--[a-z]+|-o[a-z]+=PID)",
        format in "(-ef|-eLf|aux|-A|ax|-elf|auxf|-eF)",
    ) {
        prop_assert_eq!(query_refusal(Api::ContainerTop, ""), None);
        let plain = format!("ps_args={format}");
        prop_assert_eq!(query_refusal(Api::ContainerTop, &plain), None, "{}", plain);
        let spaced = format!("ps_args={format}%20{}", selector.replace('=', "%3D"));
        prop_assert!(query_refusal(Api::ContainerTop, &spaced).is_some(), "{}", spaced);
        let first = format!("ps_args={}&ps_args={format}", selector.replace('=', "%3D"));
        prop_assert!(query_refusal(Api::ContainerTop, &first).is_some(), "the engine reads the first");
    }

    #[test]
    fn what_the_engine_would_fetch_for_a_build_or_an_import_is_refused(
        url in "(https?|git)://[a-z0-9.]{1,20}(:[0-9]{1,5})?/[a-z/]{0,12}",
        before in "[a-z]{1,6}=[a-z0-9]{0,6}",
    ) {
        let remote = format!("{before}&remote={url}");
        prop_assert!(query_refusal(Api::Build, &remote).is_some(), "{}", remote);
        let import = format!("{before}&fromSrc={url}");
        prop_assert!(query_refusal(Api::ImageImport, &import).is_some(), "{}", import);
        // The engine reads the first value: an empty remote, the body's context; "-", the
        // body's tarball.
        let body_context = format!("remote=&remote={url}");
        prop_assert_eq!(query_refusal(Api::Build, &body_context), None);
        let body_tarball = format!("fromSrc=-&fromSrc={url}&{before}");
        prop_assert_eq!(query_refusal(Api::ImageImport, &body_tarball), None);
        let later = format!("fromSrc={url}&fromSrc=-");
        prop_assert!(query_refusal(Api::ImageImport, &later).is_some());
    }

    #[test]
    fn classification_never_panics(method in "[A-Z]{0,7}", path in "\\PC{0,60}", query in "\\PC{0,30}") {
        let first = classify(&method, &path, &query);
        prop_assert_eq!(first, classify(&method, &path, &query));
    }

    #[test]
    fn path_like_noise_never_panics(path in "(/(v1\\.4[0-7]|containers|images|x|%2[fF]|\\.\\.|\\.|json|ws|attach|create|%|)){0,6}") {
        let _ = classify("GET", &path, "fromImage=%");
        let _ = classify("POST", &path, "");
        let _ = classify("DELETE", &path, "");
    }
}

#[test]
fn every_documented_way_to_run_outside_the_runtime_is_caught() {
    // From the published table: the commands that install or start plugins, make this engine a
    // swarm node or give it services, and classic builds.
    let plugin = [
        "plugin install",
        "plugin enable",
        "plugin upgrade",
        "plugin create",
        "plugin set",
    ];
    let swarm = [
        "swarm init",
        "swarm join",
        "swarm update",
        "node update",
        "service create",
        "service update",
    ];
    for row in doc_rows() {
        let path = fill(&row.path, "web", "n0d3");
        let api = classify(&row.method, &path, &query_for(&row)).unwrap();
        let names = |list: &[&str]| {
            row.method == "POST" && row.commands.iter().any(|c| list.contains(&c.as_str()))
        };
        let expected = if names(&plugin) {
            Some(OutsideRuntime::Plugin)
        } else if names(&swarm) {
            Some(OutsideRuntime::Swarm)
        } else if api == Api::Build {
            Some(OutsideRuntime::DefaultRuntime)
        } else {
            None
        };
        assert_eq!(outside_runtime(api), expected, "{} {path}", row.method);
    }
}

#[test]
fn names_and_queries_are_read_as_the_engine_reads_them() {
    // Go's query parser skips a pair holding ';': the proxy refuses such a query.
    assert!(query_container("container=a;&container=b", "container").is_err());
    assert!(query_refusal(Api::Build, "version=1;&version=2").is_some());
    // Nor a pair with an escape it refuses ("%+0": a sign, not two hex digits), which it
    // skips as well: what follows would be the first value the engine reads.
    for query in [
        "version=%+0&version=2",
        "networkmode=%+0&networkmode=host",
        "version=%-1&version=2",
        "version=% 2&version=2",
    ] {
        assert!(query_refusal(Api::Build, query).is_some(), "{query}");
    }
    assert!(query_refusal(Api::Build, "t=%41%6a").is_none());
    for query in [
        "networkmode=container:web",
        "networkmode=Container:web",
        "networkmode=container%3Aweb",
    ] {
        assert!(query_refusal(Api::Build, query).is_some(), "{query}");
    }
    for fine in [
        "networkmode=none",
        "networkmode=default",
        "networkmode=bridge",
    ] {
        assert!(query_refusal(Api::Build, fine).is_none(), "{fine}");
    }
    // A named network (another project's, say; "Bridge" is one to the engine), a cgroup of the
    // build's choosing, and a parameter the proxy does not know are refused.
    for refused in [
        "networkmode=containers",
        "networkmode=Bridge",
        "cgroupparent=/",
        "t=a&session=x",
    ] {
        assert!(query_refusal(Api::Build, refused).is_some(), "{refused}");
    }
    assert!(query_refusal(Api::Build, "cgroupparent=").is_none());
    // The engine's exec route takes everything before the action as the ID.
    assert_eq!(
        exec_of_target("POST", "/v1.43/exec/a/b/start").as_deref(),
        Some("a/b")
    );
    // A checkpoint's decoded name goes back encoded: it cannot become a query.
    let delete =
        container_of_target("DELETE", "/v1.43/containers/web/checkpoints/c%3Fx=1").unwrap();
    assert_eq!(
        delete.with_id("e1"),
        "/v1.43/containers/e1/checkpoints/c%3Fx%3D1"
    );
}

/// The `filters` of a query [`with_label_filter`] made, as the engine would read them.
fn sent_filters(query: &str) -> serde_json::Value {
    let filters = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("filters="))
        .unwrap();
    serde_json::from_str(&percent_decode(filters, true).unwrap()).unwrap()
}

#[test]
fn a_label_filter_is_added_to_what_the_query_filters() {
    let scope = "org.eci.runtime=eci";
    let added = |query: &str| sent_filters(&with_label_filter(query, scope).unwrap());
    assert_eq!(added(""), serde_json::json!({"label": {scope: true}}));
    assert_eq!(
        added("filters="),
        serde_json::json!({"label": {scope: true}})
    );
    // Both of the engine's forms, and the client's own labels kept (the engine ANDs them).
    let legacy = r#"{"label":["app=web"],"dangling":["true"]}"#;
    let current = r#"{"label":{"app=web":true},"dangling":{"true":true}}"#;
    for filters in [legacy, current] {
        let query = format!("filters={}&all=1", filters.replace('"', "%22"));
        assert_eq!(
            added(&query),
            serde_json::json!({"label": {"app=web": true, scope: true}, "dangling": {"true": true}})
        );
        assert!(with_label_filter(&query, scope)
            .unwrap()
            .starts_with("all=1&"));
    }
    // A client cannot unset the label by giving it as false: the engine reads keys only.
    let unset = format!(r#"filters={{"label":{{"{scope}":false}}}}"#);
    assert_eq!(added(&unset), serde_json::json!({"label": {scope: true}}));
    for query in [
        "filters=%7B",
        "filters=%5B%5D",
        r#"filters={"label":"app"}"#,
        r#"filters={"label":{"app":"yes"}}"#,
        "filters=%7B%7D&filters=%7B%7D",
        "filters=%7B%7D;x",
        "filters=%zz",
    ] {
        assert!(with_label_filter(query, scope).is_err(), "{query}");
    }
}

/// A request target's path and query as Go's `url.ParseRequestURI` reads an absolute URL: the
/// query after the target's first `?`, the path from the first `/` of the authority and path
/// before it.
fn go_path_and_query(target: &str) -> (&str, &str) {
    let rest = target.strip_prefix("http://").unwrap();
    let (before, query) = rest.split_once('?').unwrap_or((rest, ""));
    (before.find('/').map_or("", |slash| &before[slash..]), query)
}

proptest! {
    #[test]
    fn an_absolute_url_is_read_in_origin_form_as_the_engine_reads_it_or_not_at_all(
        authority in "[a-z0-9.:?#@/%\\[\\]-]{0,8}",
        path in "(/[a-z?#=&/]{0,8}){0,3}",
    ) {
        let target = format!("http://{authority}{path}");
        if let Some(origin) = origin_form(&target) {
            let ours = origin.split_once('?').unwrap_or((origin, ""));
            prop_assert_eq!(ours, go_path_and_query(&target), "{}", target);
        }
    }
    #[test]
    fn a_filtered_query_always_carries_the_label(query in "[a-z=&%{}\":,\\[\\]0-9]{0,40}") {
        if let Ok(sent) = with_label_filter(&query, "org.eci.runtime=eci") {
            let filters = sent_filters(&sent);
            prop_assert_eq!(&filters["label"]["org.eci.runtime=eci"], &serde_json::Value::Bool(true));
            prop_assert_eq!(sent.matches("filters=").count(), 1);
        }
    }
}
