//! What a network create request sent through a proxied engine socket may ask for. The engine
//! sets a network up on the host, as root: a bridge it names after an existing host interface
//! is taken over (and deleted with the network), an address range it is given is routed to the
//! network whatever the host routed there before (a cloud's metadata service, an internal
//! service), a `macvlan` or `ipvlan` parent puts containers on a physical network past the
//! host's firewall, and IPv6 switches host-wide forwarding on. So a network made through the
//! socket is a plain bridge whose addresses the engine picks from its own pools.
//!
//!
//! Networks are scoped to the socket's runtime, as volumes are ([`super::volumes`]): a network
//! made through the socket is labelled [`SCOPE_LABEL`] with the runtime, and a container may
//! join, and a request act on, only such a network or one of the engine's own (`bridge`,
//! `host`, `none`). A database's internal network of a `runc` project is otherwise one `docker
//! network connect` away. The engine finds a network by full ID, then by name, then by ID
//! prefix: a name that could be an ID prefix must be given as the full ID
//! ([`network_in_scope`]), since once its network is removed the same words would find
//! another.
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
    #[error("the network {reference} was not made through a socket of the runtime '{runtime}' ({}): this socket reaches only the networks it made and the engine's own (bridge, host, none)", owner.as_deref().map_or_else(|| "it has no label".to_string(), |owner| format!("it was made for '{owner}'")))]
    OutOfScope {
        /// The network as the request named it.
        reference: String,
        /// The runtime its label names, if any.
        owner: Option<String>,
        /// The socket's runtime.
        runtime: String,
    },
    /// Named by words the engine could read as another network's ID prefix.
    #[error("the network {reference} is named by an ID prefix, or by a name that could be one: name it by its full ID ({id})")]
    Ambiguous {
        /// The network as the request named it.
        reference: String,
        /// Its full ID.
        id: String,
    },
}

/// Checks that the engine's description of a network (its answer to an inspect of
/// `reference`) is in the scope of `runtime`, or one of the [`PREDEFINED_NETWORKS`], and that
/// `reference` will name that same network: its full ID, or its name if no ID could begin
/// with it.
pub fn network_in_scope(
    network: &Value,
    reference: &str,
    runtime: &str,
) -> Result<(), NetworkRefusal> {
    let name = network["Name"].as_str().unwrap_or_default();
    let id = network["Id"].as_str().unwrap_or_default();
    let owner = network["Labels"][SCOPE_LABEL].as_str();
    if owner != Some(runtime) && !PREDEFINED_NETWORKS.contains(&name) {
        return Err(NetworkRefusal::OutOfScope {
            reference: reference.to_string(),
            owner: owner.map(str::to_string),
            runtime: runtime.to_string(),
        });
    }
    let could_be_an_id = reference.bytes().all(|b| b.is_ascii_hexdigit());
    if reference == id || (reference == name && !could_be_an_id) {
        return Ok(());
    }
    Err(NetworkRefusal::Ambiguous {
        reference: reference.to_string(),
        id: id.to_string(),
    })
}

/// The networks a container create body joins, as it names them: `HostConfig.NetworkMode`
/// unless it is one of the engine's modes (`default`, `bridge`, `host`, `none`,
/// `container:...`), and each key of `NetworkingConfig.EndpointsConfig`.
///
/// ```
/// use eci_policy::docker_api::network::network_references;
/// let body = br#"{"HostConfig":{"NetworkMode":"app"},
///                 "NetworkingConfig":{"EndpointsConfig":{"app":{},"cache":{}}}}"#;
/// assert_eq!(network_references(body).unwrap(), ["app", "cache"]);
/// ```
pub fn network_references(body: &[u8]) -> Result<Vec<String>, CreateRefusal> {
    let request: Value =
        serde_json::from_slice(body).map_err(|e| CreateRefusal::NotAnObject(e.to_string()))?;
    let mut references = Vec::new();
    match &request["HostConfig"]["NetworkMode"] {
        Value::Null => {}
        Value::String(mode) => {
            let engines = matches!(mode.as_str(), "" | "default" | "bridge" | "host" | "none");
            if !engines && !mode.starts_with("container:") {
                references.push(mode.clone());
            }
        }
        _ => return Err(CreateRefusal::Malformed("HostConfig.NetworkMode")),
    }
    let endpoints = match &request["NetworkingConfig"] {
        Value::Null => return Ok(references),
        Value::Object(config) => {
            only_exact_spellings(config, &["EndpointsConfig"])?;
            &config["EndpointsConfig"]
        }
        _ => return Err(CreateRefusal::Malformed("NetworkingConfig")),
    };
    match endpoints {
        Value::Null => {}
        Value::Object(endpoints) => references.extend(
            endpoints
                .keys()
                .filter(|key| !references.contains(key))
                .cloned()
                .collect::<Vec<_>>(),
        ),
        _ => return Err(CreateRefusal::Malformed("NetworkingConfig.EndpointsConfig")),
    }
    Ok(references)
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
    fn a_network_is_reached_only_in_scope_and_by_words_that_cannot_drift() {
        let id = "3f".repeat(32);
        let network = |name: &str, labels: Value| serde_json::json!({"Name": name, "Id": id, "Labels": labels});
        let ours = serde_json::json!({SCOPE_LABEL: "eci"});
        for (name, labels, reference) in [
            ("app", ours.clone(), "app"),
            ("app", ours.clone(), id.as_str()),
            ("bridge", Value::Null, "bridge"),
            ("none", serde_json::json!({}), "none"),
        ] {
            assert!(
                network_in_scope(&network(name, labels), reference, "eci").is_ok(),
                "{name} {reference}"
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
        // An ID prefix, or a name made of hex digits, would find another network once this
        // one is gone.
        for (name, reference) in [("app", "3f3f"), ("cafe", "cafe"), ("app", "App")] {
            assert_eq!(
                network_in_scope(&network(name, ours.clone()), reference, "eci"),
                Err(NetworkRefusal::Ambiguous {
                    reference: reference.into(),
                    id: id.clone()
                })
            );
        }
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
                r#"{"NetworkingConfig":{"EndpointsConfig":{"bridge":{},"db":{}}}}"#,
                vec!["bridge", "db"],
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
        fn a_scoped_network_passes_by_its_id_whatever_its_name(name in "[a-z0-9_.-]{1,12}") {
            let network = serde_json::json!({"Name": name, "Id": "0a".repeat(32),
                                             "Labels": {SCOPE_LABEL: "eci"}});
            prop_assert!(network_in_scope(&network, &"0a".repeat(32), "eci").is_ok());
            let by_name = network_in_scope(&network, &name, "eci");
            prop_assert_eq!(by_name.is_ok(), !name.bytes().all(|b| b.is_ascii_hexdigit()));
        }

        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = vet_network_create_body(&body, "eci");
        }
    }
}
