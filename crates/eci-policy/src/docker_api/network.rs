//! What a network create request sent through a proxied engine socket may ask for. The engine
//! sets a network up on the host, as root: a bridge it names after an existing host interface
//! is taken over (and deleted with the network), an address range it is given is routed to the
//! network whatever the host routed there before (a cloud's metadata service, an internal
//! service), a `macvlan` or `ipvlan` parent puts containers on a physical network past the
//! host's firewall, and IPv6 switches host-wide forwarding on. So a network made through the
//! socket is a plain bridge whose addresses the engine picks from its own pools.
//!
//! Networks are scoped to the socket's runtime, as volumes are ([`super::volumes`]): a network
//! made through the socket is labelled [`SCOPE_LABEL`] with the runtime, and a container may
//! join, and a request act on, only such a network or one of the engine's own (`bridge`,
//! `host`, `none`). A database's internal network of a `runc` project is otherwise one `docker
//! network connect` away. The engine finds a network by full ID, then by name, then by ID
//! prefix, and a container's endpoint finds its network again at every start, by the
//! endpoint's `NetworkID` if it has one: so a proxy resolves each network once
//! ([`network_in_scope`] gives its full ID) and pins it, naming it by that ID in the request
//! target and in each endpoint's `NetworkID` ([`pin_create_networks`],
//! [`pin_connect_network`]). Names checked now would otherwise find another network once the
//! checked one is gone, or one made later.
//!
//! ```
//! use eci_policy::docker_api::network::{network_in_scope, vet_network_create_body};
//!
//! let app = br#"{"Name":"app","Driver":"bridge","Internal":true}"#;
//! let vetted: serde_json::Value = serde_json::from_slice(&vet_network_create_body(app, "eci").unwrap()).unwrap();
//! assert_eq!(vetted["Labels"]["org.eci.runtime"], "eci");
//! let takeover = br#"{"Name":"n","Options":{"com.docker.network.bridge.name":"eth0"}}"#;
//! assert!(vet_network_create_body(takeover, "eci").is_err());
//!
//! let theirs = serde_json::json!({"Name": "db-net", "Id": "4f".repeat(32), "Labels": {}});
//! assert!(network_in_scope(&theirs, "db-net", "eci").is_err());
//! ```

use serde_json::{Map, Value};

use super::create::{only_exact_spellings, CreateRefusal};
use super::volumes::{scoped_labels, SCOPE_LABEL};

/// The engine's own networks, which every container may join.
pub const PREDEFINED_NETWORKS: &[&str] = &["bridge", "host", "none"];

/// Why a network is out of a proxied socket's reach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkRefusal {
    /// Neither made through a socket of this runtime nor one of the engine's own.
    #[error("the network {reference} was not made through a socket of the runtime '{runtime}' ({}): this socket reaches only the networks labelled for its runtime and the engine's own (bridge, host, none)", owner.as_deref().map_or_else(|| "it has no label".to_string(), |owner| format!("it was made for '{owner}'")))]
    OutOfScope {
        /// The network as the request named it.
        reference: String,
        /// The runtime its label names, if any.
        owner: Option<String>,
        /// The socket's runtime.
        runtime: String,
    },
    /// The engine's answer names no full ID to pin the network by.
    #[error("the engine's description of the network {0} has no full ID")]
    NoId(String),
}

/// Checks that the engine's description of a network (its answer to an inspect of
/// `reference`) is in the scope of `runtime`, or one of the [`PREDEFINED_NETWORKS`]: its full
/// ID, by which the request is then to name it.
pub fn network_in_scope(
    network: &Value,
    reference: &str,
    runtime: &str,
) -> Result<String, NetworkRefusal> {
    let name = network["Name"].as_str().unwrap_or_default();
    let owner = network["Labels"][SCOPE_LABEL].as_str();
    if owner != Some(runtime) && !PREDEFINED_NETWORKS.contains(&name) {
        return Err(NetworkRefusal::OutOfScope {
            reference: reference.to_string(),
            owner: owner.map(str::to_string),
            runtime: runtime.to_string(),
        });
    }
    match network["Id"].as_str() {
        Some(id) if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(id.to_string())
        }
        _ => Err(NetworkRefusal::NoId(reference.to_string())),
    }
}

/// The networks a container create body joins, as it names them: `HostConfig.NetworkMode`
/// unless it is one of the engine's modes (`default`, `bridge`, `host`, `none`,
/// `container:...`), and each key of `NetworkingConfig.EndpointsConfig`. An endpoint may not
/// name its network itself (`NetworkID`) nor its endpoint (`EndpointID`): the engine would
/// join that network instead of the key's.
///
/// ```
/// use eci_policy::docker_api::network::network_references;
/// let body = br#"{"HostConfig":{"NetworkMode":"app"},
///                 "NetworkingConfig":{"EndpointsConfig":{"app":{},"cache":{}}}}"#;
/// assert_eq!(network_references(body).unwrap(), ["app", "cache"]);
/// let spelt = br#"{"NetworkingConfig":{"EndpointsConfig":{"app":{"networkid":"db"}}}}"#;
/// assert!(network_references(spelt).is_err());
/// ```
pub fn network_references(body: &[u8]) -> Result<Vec<String>, CreateRefusal> {
    let request: Value =
        serde_json::from_slice(body).map_err(|e| CreateRefusal::NotAnObject(e.to_string()))?;
    let mut references = Vec::new();
    if let Some(mode) = user_network_mode(&request)? {
        references.push(mode.to_string());
    }
    for (key, endpoint) in endpoints(&request)?.into_iter().flatten() {
        // The engine reads an endpoint under "" as a network of its list, not a mode.
        if key.is_empty() {
            return Err(CreateRefusal::Malformed("an endpoint's network name"));
        }
        check_endpoint(endpoint)?;
        if is_user_defined(key) && !references.contains(key) {
            references.push(key.clone());
        }
    }
    Ok(references)
}

/// Whether the engine reads `name` (a network mode, or the network of an endpoint) as a
/// network of its list rather than one of its modes: `default`, `bridge`, `host`, `none`,
/// `container:...`.
fn is_user_defined(name: &str) -> bool {
    let mode = matches!(name, "" | "default") || PREDEFINED_NETWORKS.contains(&name);
    !mode && !name.starts_with("container:")
}

/// The create body with each user-defined network it joins pinned to the full ID `resolved`
/// gives for its reference ([`network_references`]): in its endpoint's `NetworkID`. When the
/// body has no endpoint at all, one is made for `HostConfig.NetworkMode` (the engine joins the
/// mode's network only then). An endpoint's own `NetworkID` must be that same ID
/// (a copy of an inspected container's settings carries it); its `EndpointID`, which the
/// engine clears anyway, is dropped.
///
/// ```
/// use eci_policy::docker_api::network::pin_create_networks;
/// let id = "9f".repeat(32);
/// let body = br#"{"HostConfig":{"NetworkMode":"app"}}"#;
/// let pinned = pin_create_networks(body, &[("app".into(), id.clone())]).unwrap();
/// let pinned: serde_json::Value = serde_json::from_slice(&pinned).unwrap();
/// assert_eq!(pinned["NetworkingConfig"]["EndpointsConfig"]["app"]["NetworkID"], id.as_str());
/// ```
pub fn pin_create_networks(
    body: &[u8],
    resolved: &[(String, String)],
) -> Result<Vec<u8>, CreateRefusal> {
    let mut request: Value =
        serde_json::from_slice(body).map_err(|e| CreateRefusal::NotAnObject(e.to_string()))?;
    let mode = user_network_mode(&request)?.map(str::to_string);
    // Objects where they are to be indexed below.
    endpoints(&request)?;
    let id_of = |reference: &str| {
        resolved
            .iter()
            .find(|(r, _)| r == reference)
            .map(|(_, id)| id.clone())
            .ok_or(CreateRefusal::Malformed(
                "a network the proxy did not look up",
            ))
    };
    let Value::Object(fields) = &mut request else {
        return Err(CreateRefusal::NotAnObject("not an object".into()));
    };
    let config = fields
        .entry("NetworkingConfig")
        .or_insert_with(|| Value::Object(Map::new()));
    if config.is_null() {
        *config = Value::Object(Map::new());
    }
    let endpoints = &mut config["EndpointsConfig"];
    if endpoints.is_null() {
        *endpoints = Value::Object(Map::new());
    }
    let Value::Object(endpoints) = endpoints else {
        return Err(CreateRefusal::Malformed("NetworkingConfig.EndpointsConfig"));
    };
    let joins_the_mode = endpoints.is_empty();
    for (key, endpoint) in endpoints.iter_mut() {
        if is_user_defined(key) {
            pin_endpoint(endpoint, &id_of(key)?)?;
        }
    }
    if let (Some(mode), true) = (mode, joins_the_mode) {
        let mut endpoint = Value::Object(Map::new());
        pin_endpoint(&mut endpoint, &id_of(&mode)?)?;
        endpoints.insert(mode, endpoint);
    }
    Ok(request.to_string().into_bytes())
}

/// A network connect body with its endpoint pinned to the network `id` (the full ID the
/// request target names): the engine would join the network of an endpoint's `NetworkID`
/// instead, so the endpoint's own `NetworkID` must be that ID or nothing.
///
/// ```
/// use eci_policy::docker_api::network::pin_connect_network;
/// let id = "9f".repeat(32);
/// let pinned = pin_connect_network(br#"{"Container":"web"}"#, &id).unwrap();
/// let pinned: serde_json::Value = serde_json::from_slice(&pinned).unwrap();
/// assert_eq!(pinned["EndpointConfig"]["NetworkID"], id.as_str());
/// let elsewhere = br#"{"Container":"web","EndpointConfig":{"NetworkID":"db"}}"#;
/// assert!(pin_connect_network(elsewhere, &id).is_err());
/// ```
pub fn pin_connect_network(body: &[u8], id: &str) -> Result<Vec<u8>, CreateRefusal> {
    let mut request: Value =
        serde_json::from_slice(body).map_err(|e| CreateRefusal::NotAnObject(e.to_string()))?;
    let Value::Object(fields) = &mut request else {
        return Err(CreateRefusal::NotAnObject("not an object".into()));
    };
    only_exact_spellings(fields, &["EndpointConfig"])?;
    let endpoint = fields
        .entry("EndpointConfig")
        .or_insert_with(|| Value::Object(Map::new()));
    pin_endpoint(endpoint, id)?;
    Ok(request.to_string().into_bytes())
}

/// Pins an endpoint's settings (an object, or nothing yet) to the network `id`: its
/// `NetworkID` becomes `id`, and must have been `id` or nothing; its `EndpointID` is dropped.
fn pin_endpoint(endpoint: &mut Value, id: &str) -> Result<(), CreateRefusal> {
    check_endpoint(endpoint)?;
    if endpoint.is_null() {
        *endpoint = Value::Object(Map::new());
    }
    let Value::Object(settings) = endpoint else {
        return Err(CreateRefusal::Malformed("an endpoint's settings"));
    };
    match settings.get("NetworkID") {
        None | Some(Value::Null) => {}
        Some(Value::String(given)) if given.is_empty() || given == id => {}
        Some(_) => return Err(CreateRefusal::EndpointNetwork("NetworkID".into())),
    }
    settings.remove("EndpointID");
    settings.insert("NetworkID".into(), Value::String(id.to_string()));
    Ok(())
}

/// `HostConfig.NetworkMode` if it names a network (not one of the engine's modes).
fn user_network_mode(request: &Value) -> Result<Option<&str>, CreateRefusal> {
    match &request["HostConfig"]["NetworkMode"] {
        Value::Null => Ok(None),
        Value::String(mode) => Ok(is_user_defined(mode).then_some(mode.as_str())),
        _ => Err(CreateRefusal::Malformed("HostConfig.NetworkMode")),
    }
}

/// `NetworkingConfig.EndpointsConfig`, if the body has one.
fn endpoints(request: &Value) -> Result<Option<&Map<String, Value>>, CreateRefusal> {
    let config = match &request["NetworkingConfig"] {
        Value::Null => return Ok(None),
        Value::Object(config) => config,
        _ => return Err(CreateRefusal::Malformed("NetworkingConfig")),
    };
    only_exact_spellings(config, &["EndpointsConfig"])?;
    match &config["EndpointsConfig"] {
        Value::Null => Ok(None),
        Value::Object(endpoints) => Ok(Some(endpoints)),
        _ => Err(CreateRefusal::Malformed("NetworkingConfig.EndpointsConfig")),
    }
}

/// An endpoint's settings: an object (or nothing) whose network and endpoint IDs, if given, are
/// spelt exactly (Go's decoder would read `networkid` as `NetworkID` too, and the last one
/// given wins).
fn check_endpoint(endpoint: &Value) -> Result<(), CreateRefusal> {
    match endpoint {
        Value::Null => Ok(()),
        Value::Object(settings) => only_exact_spellings(settings, &["NetworkID", "EndpointID"]),
        _ => Err(CreateRefusal::Malformed("an endpoint's settings")),
    }
}

/// Driver options a network made through the socket may carry: they change only the network's
/// own bridge.
pub const SAFE_NETWORK_OPTIONS: &[&str] = &[
    "com.docker.network.bridge.enable_icc",
    "com.docker.network.driver.mtu",
];

/// Checks the body of `POST /networks/create` and returns the body to send on, as read here and
/// labelled as made for `runtime` ([`SCOPE_LABEL`]).
pub fn vet_network_create_body(body: &[u8], runtime: &str) -> Result<Vec<u8>, CreateRefusal> {
    let mut request: Value =
        serde_json::from_slice(body).map_err(|e| CreateRefusal::NotAnObject(e.to_string()))?;
    let Value::Object(fields) = &mut request else {
        return Err(CreateRefusal::NotAnObject("not an object".into()));
    };
    check_network_fields(fields)?;
    let labels = scoped_labels(fields.get("Labels"), runtime)?;
    fields.insert("Labels".into(), Value::Object(labels));
    Ok(request.to_string().into_bytes())
}

/// The fields of a network create that would have the engine set up more than a plain bridge.
fn check_network_fields(fields: &Map<String, Value>) -> Result<(), CreateRefusal> {
    let checked = [
        "Labels",
        "Driver",
        "Options",
        "IPAM",
        "EnableIPv6",
        "ConfigFrom",
        "ConfigOnly",
        "Ingress",
        "Scope",
    ];
    only_exact_spellings(fields, &checked)?;
    let refused = |what: String| Err(CreateRefusal::NetworkOption(what));
    match fields.get("Driver") {
        None | Some(Value::Null) => {}
        Some(Value::String(driver)) if driver.is_empty() || driver == "bridge" => {}
        Some(other) => return refused(format!("Driver {other}")),
    }
    if let Some(Value::Object(options)) = fields.get("Options") {
        if let Some(key) = options
            .keys()
            .find(|key| !SAFE_NETWORK_OPTIONS.contains(&key.as_str()))
        {
            return refused(format!("Options {key}"));
        }
    } else if !matches!(fields.get("Options"), None | Some(Value::Null)) {
        return Err(CreateRefusal::Malformed("Options"));
    }
    for flag in ["EnableIPv6", "ConfigOnly", "Ingress"] {
        if !matches!(
            fields.get(flag),
            None | Some(Value::Null | Value::Bool(false))
        ) {
            return refused(flag.to_string());
        }
    }
    if !matches!(fields.get("ConfigFrom"), None | Some(Value::Null)) {
        return refused("ConfigFrom".into());
    }
    match fields.get("Scope") {
        None | Some(Value::Null) => {}
        Some(Value::String(scope)) if scope.is_empty() || scope == "local" => {}
        Some(other) => return refused(format!("Scope {other}")),
    }
    check_ipam(fields.get("IPAM"))
}

/// `IPAM`: the engine's own driver, with no address of the caller's and no options.
fn check_ipam(ipam: Option<&Value>) -> Result<(), CreateRefusal> {
    let fields = match ipam {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err(CreateRefusal::Malformed("IPAM")),
    };
    only_exact_spellings(fields, &["Driver", "Config", "Options"])?;
    match fields.get("Driver") {
        None | Some(Value::Null) => {}
        Some(Value::String(driver)) if driver.is_empty() || driver == "default" => {}
        Some(other) => return Err(CreateRefusal::NetworkOption(format!("IPAM.Driver {other}"))),
    }
    for key in ["Config", "Options"] {
        let empty = match fields.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::Array(list)) => list.is_empty(),
            Some(Value::Object(map)) => map.is_empty(),
            Some(_) => false,
        };
        if !empty {
            return Err(CreateRefusal::NetworkOption(format!("IPAM.{key}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_a_plain_bridge_with_the_engine_s_addresses_passes() {
        for body in [
            &br#"{"Name":"a"}"#[..],
            br#"{"Name":"a","Driver":"bridge","Internal":true,"Attachable":true,"Labels":{"x":"y"}}"#,
            br#"{"Name":"a","Options":{"com.docker.network.driver.mtu":"1400"},"IPAM":{"Driver":"default","Config":[]}}"#,
            br#"{"Name":"a","EnableIPv6":false,"CheckDuplicate":true}"#,
        ] {
            assert!(
                vet_network_create_body(body, "eci").is_ok(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for (body, what) in [
            (
                &br#"{"Name":"a","Driver":"macvlan","Options":{"parent":"eth0"}}"#[..],
                "Driver \"macvlan\"",
            ),
            (
                br#"{"Name":"a","Options":{"com.docker.network.bridge.name":"docker0"}}"#,
                "Options com.docker.network.bridge.name",
            ),
            (
                br#"{"Name":"a","IPAM":{"Config":[{"Subnet":"169.254.169.252/30"}]}}"#,
                "IPAM.Config",
            ),
            (
                br#"{"Name":"a","IPAM":{"Options":{"x":"y"}}}"#,
                "IPAM.Options",
            ),
            (
                br#"{"Name":"a","IPAM":{"Driver":"custom"}}"#,
                "IPAM.Driver \"custom\"",
            ),
            (br#"{"Name":"a","EnableIPv6":true}"#, "EnableIPv6"),
            (
                br#"{"Name":"a","ConfigFrom":{"Network":"c"}}"#,
                "ConfigFrom",
            ),
            (br#"{"Name":"a","Ingress":true}"#, "Ingress"),
            (br#"{"Name":"a","Scope":"swarm"}"#, "Scope \"swarm\""),
        ] {
            assert_eq!(
                vet_network_create_body(body, "eci"),
                Err(CreateRefusal::NetworkOption(what.into())),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let spelt = br#"{"Name":"a","driver":"macvlan"}"#;
        assert!(matches!(
            vet_network_create_body(spelt, "eci"),
            Err(CreateRefusal::Spelling(..))
        ));
        let twice =
            br#"{"Name":"a","Options":{"com.docker.network.bridge.name":"eth0"},"Options":{}}"#;
        let sent: Value =
            serde_json::from_slice(&vet_network_create_body(twice, "eci").unwrap()).unwrap();
        assert_eq!(sent["Options"], serde_json::json!({}), "sent on as read");
    }

    #[test]
    fn a_network_is_reached_only_in_scope_and_by_its_full_id() {
        let id = "3f".repeat(32);
        let network = |name: &str, labels: Value| serde_json::json!({"Name": name, "Id": id, "Labels": labels});
        let ours = serde_json::json!({SCOPE_LABEL: "eci"});
        for (name, labels) in [
            ("app", ours.clone()),
            ("db", ours.clone()),
            ("bridge", Value::Null),
            ("none", serde_json::json!({})),
        ] {
            assert_eq!(
                network_in_scope(&network(name, labels), "x", "eci"),
                Ok(id.clone()),
                "{name}"
            );
        }
        for (labels, owner) in [
            (Value::Null, None),
            (serde_json::json!({SCOPE_LABEL: "runc"}), Some("runc")),
        ] {
            assert_eq!(
                network_in_scope(&network("db-net", labels), "db-net", "eci"),
                Err(NetworkRefusal::OutOfScope {
                    reference: "db-net".into(),
                    owner: owner.map(str::to_string),
                    runtime: "eci".into()
                })
            );
        }
        let short = serde_json::json!({"Name": "app", "Id": "3f3f", "Labels": ours});
        assert_eq!(
            network_in_scope(&short, "app", "eci"),
            Err(NetworkRefusal::NoId("app".into()))
        );
    }

    #[test]
    fn every_user_network_a_create_joins_is_pinned_to_its_id() {
        let body = br#"{"HostConfig":{"NetworkMode":"app"},
            "NetworkingConfig":{"EndpointsConfig":{"app":{},"cache":{"Aliases":["c"]},"bridge":{}}}}"#;
        assert_eq!(network_references(body).unwrap(), ["app", "cache"]);
        let resolved = [
            ("app".to_string(), "a".repeat(64)),
            ("cache".to_string(), "c".repeat(64)),
        ];
        let pinned: Value =
            serde_json::from_slice(&pin_create_networks(body, &resolved).unwrap()).unwrap();
        assert_eq!(
            pinned["NetworkingConfig"]["EndpointsConfig"],
            serde_json::json!({
                "app": {"NetworkID": "a".repeat(64)},
                "cache": {"Aliases": ["c"], "NetworkID": "c".repeat(64)},
                "bridge": {},
            })
        );
        let app = "a".repeat(64);
        let in_create = |endpoint: &str| {
            format!(r#"{{"NetworkingConfig":{{"EndpointsConfig":{{"app":{endpoint}}}}}}}"#)
        };
        let in_connect =
            |endpoint: &str| format!(r#"{{"Container":"c","EndpointConfig":{endpoint}}}"#);
        let resolved = [("app".to_string(), app.clone())];
        // Another spelling of NetworkID would win over the pinned one in Go's decoder.
        for endpoint in [
            r#"{"networkid":"db"}"#,
            r#"{"NetworkID":null,"networkid":"db"}"#,
            r#"{"NetworkId":""}"#,
            r#"{"endpointid":"e"}"#,
            r#"[]"#,
        ] {
            assert!(
                network_references(in_create(endpoint).as_bytes()).is_err(),
                "{endpoint}"
            );
            assert!(
                pin_connect_network(in_connect(endpoint).as_bytes(), &app).is_err(),
                "{endpoint}"
            );
        }
        // Another network than the key's.
        let other = format!(r#"{{"NetworkID":"{}"}}"#, "b".repeat(64));
        for endpoint in [r#"{"NetworkID":"db"}"#, other.as_str()] {
            assert_eq!(
                pin_create_networks(in_create(endpoint).as_bytes(), &resolved),
                Err(CreateRefusal::EndpointNetwork("NetworkID".into())),
                "{endpoint}"
            );
            assert!(pin_connect_network(in_connect(endpoint).as_bytes(), &app).is_err());
        }
        // A copy of an inspected container's endpoint: its own network, an endpoint ID dropped.
        let copied = format!(r#"{{"NetworkID":"{app}","EndpointID":"e1","Aliases":["x"]}}"#);
        let pinned = pin_create_networks(in_create(&copied).as_bytes(), &resolved).unwrap();
        let pinned: Value = serde_json::from_slice(&pinned).unwrap();
        assert_eq!(
            pinned["NetworkingConfig"]["EndpointsConfig"]["app"],
            serde_json::json!({"NetworkID": app, "Aliases": ["x"]})
        );
        // The mode's network is joined only when there is no endpoint: none is added then.
        let beside_bridge = br#"{"HostConfig":{"NetworkMode":"m"},"NetworkingConfig":{"EndpointsConfig":{"bridge":{}}}}"#;
        let resolved = [("m".to_string(), "c".repeat(64))];
        let pinned: Value =
            serde_json::from_slice(&pin_create_networks(beside_bridge, &resolved).unwrap())
                .unwrap();
        assert_eq!(
            pinned["NetworkingConfig"]["EndpointsConfig"],
            serde_json::json!({"bridge": {}})
        );
        for odd in [
            &br#"{"NetworkingConfig":[]}"#[..],
            br#"{"NetworkingConfig":{"EndpointsConfig":7}}"#,
        ] {
            assert!(pin_create_networks(odd, &[]).is_err(), "no panic either");
        }
        let both = br#"{"HostConfig":{"NetworkMode":"m"},"NetworkingConfig":{"EndpointsConfig":{"app":{}}}}"#;
        let resolved = [
            ("m".to_string(), "c".repeat(64)),
            ("app".to_string(), app.clone()),
        ];
        let pinned: Value =
            serde_json::from_slice(&pin_create_networks(both, &resolved).unwrap()).unwrap();
        assert_eq!(
            pinned["NetworkingConfig"]["EndpointsConfig"],
            serde_json::json!({"app": {"NetworkID": app}})
        );
        let unnamed = br#"{"NetworkingConfig":{"EndpointsConfig":{"":{}}}}"#;
        assert!(network_references(unnamed).is_err());
        let spelt = br#"{"Container":"c","endpointconfig":{"NetworkID":"db"}}"#;
        assert!(matches!(
            pin_connect_network(spelt, "a"),
            Err(CreateRefusal::Spelling(..))
        ));
    }

    #[test]
    fn a_create_joins_the_networks_it_names() {
        for (body, references) in [
            (r#"{}"#, vec![]),
            (r#"{"HostConfig":{"NetworkMode":"bridge"}}"#, vec![]),
            (r#"{"HostConfig":{"NetworkMode":"container:web"}}"#, vec![]),
            (
                r#"{"HostConfig":{"NetworkMode":"app"},"NetworkingConfig":{"EndpointsConfig":{"app":{"Aliases":["a"]}}}}"#,
                vec!["app"],
            ),
            (
                r#"{"NetworkingConfig":{"EndpointsConfig":{"bridge":{},"default":{},"db":{}}}}"#,
                vec!["db"],
            ),
        ] {
            assert_eq!(
                network_references(body.as_bytes()).unwrap(),
                references,
                "{body}"
            );
        }
        for body in [
            r#"{"HostConfig":{"NetworkMode":7}}"#,
            r#"{"NetworkingConfig":{"endpointsconfig":{"db":{}}}}"#,
            r#"{"NetworkingConfig":{"EndpointsConfig":["db"]}}"#,
        ] {
            assert!(network_references(body.as_bytes()).is_err(), "{body}");
        }
        let spelt = br#"{"networkingconfig":{"EndpointsConfig":{"db":{}}}}"#;
        assert!(matches!(
            super::super::create::vet_create_body(spelt, "eci"),
            Err(CreateRefusal::Spelling(..))
        ));
        let labelled = br#"{"Name":"n","Labels":{"org.eci.runtime":"eci"}}"#;
        assert!(matches!(
            vet_network_create_body(labelled, "eci"),
            Err(CreateRefusal::Label(_))
        ));
    }

    proptest! {
        #[test]
        fn a_pinned_create_names_each_user_network_by_its_id(
            names in proptest::collection::vec("[a-z][a-z0-9_.-]{0,8}", 1..4)
        ) {
            let endpoints: Map<String, Value> = names.iter().map(|n| (n.clone(), serde_json::json!({}))).collect();
            let body = serde_json::json!({"HostConfig": {"NetworkMode": names[0]},
                                          "NetworkingConfig": {"EndpointsConfig": endpoints}});
            let body = body.to_string().into_bytes();
            let references = network_references(&body).unwrap();
            let resolved: Vec<(String, String)> = references.iter()
                .map(|r| (r.clone(), format!("{:0>64x}", r.len()))).collect();
            let pinned: Value = serde_json::from_slice(&pin_create_networks(&body, &resolved).unwrap()).unwrap();
            for (reference, id) in &resolved {
                prop_assert!(!PREDEFINED_NETWORKS.contains(&reference.as_str()));
                prop_assert_eq!(&pinned["NetworkingConfig"]["EndpointsConfig"][reference]["NetworkID"], &Value::String(id.clone()));
            }
        }

        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = vet_network_create_body(&body, "eci");
        }
    }
}
