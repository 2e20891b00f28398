//! What a network create request sent through a proxied engine socket may ask for. The engine
//! sets a network up on the host, as root: a bridge it names after an existing host interface
//! is taken over (and deleted with the network), an address range it is given is routed to the
//! network whatever the host routed there before (a cloud's metadata service, an internal
//! service), a `macvlan` or `ipvlan` parent puts containers on a physical network past the
//! host's firewall, and IPv6 switches host-wide forwarding on. So a network made through the
//! socket is a plain bridge whose addresses the engine picks from its own pools.
//!
//! ```
//! use eci_policy::docker_api::network::vet_network_create_body;
//!
//! assert!(vet_network_create_body(br#"{"Name":"app","Driver":"bridge","Internal":true}"#).is_ok());
//! let takeover = br#"{"Name":"n","Options":{"com.docker.network.bridge.name":"eth0"}}"#;
//! assert!(vet_network_create_body(takeover).is_err());
//! ```

use serde_json::Value;

use super::create::{only_exact_spellings, CreateRefusal};

/// Driver options a network made through the socket may carry: they change only the network's
/// own bridge.
pub const SAFE_NETWORK_OPTIONS: &[&str] = &[
    "com.docker.network.bridge.enable_icc",
    "com.docker.network.driver.mtu",
];

/// Checks the body of `POST /networks/create` and returns the body to send on, as read here.
pub fn vet_network_create_body(body: &[u8]) -> Result<Vec<u8>, CreateRefusal> {
    let request: Value =
        serde_json::from_slice(body).map_err(|e| CreateRefusal::NotAnObject(e.to_string()))?;
    let Value::Object(fields) = &request else {
        return Err(CreateRefusal::NotAnObject("not an object".into()));
    };
    let checked = [
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
    check_ipam(fields.get("IPAM"))?;
    Ok(request.to_string().into_bytes())
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
                vet_network_create_body(body).is_ok(),
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
                vet_network_create_body(body),
                Err(CreateRefusal::NetworkOption(what.into())),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let spelt = br#"{"Name":"a","driver":"macvlan"}"#;
        assert!(matches!(
            vet_network_create_body(spelt),
            Err(CreateRefusal::Spelling(..))
        ));
        let twice =
            br#"{"Name":"a","Options":{"com.docker.network.bridge.name":"eth0"},"Options":{}}"#;
        let sent: Value = serde_json::from_slice(&vet_network_create_body(twice).unwrap()).unwrap();
        assert_eq!(sent["Options"], serde_json::json!({}), "sent on as read");
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = vet_network_create_body(&body);
        }
    }
}
