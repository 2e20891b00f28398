//! Containers a create shares namespaces with: `HostConfig.NetworkMode`, `IpcMode` and
//! `PidMode` of the form `container:NAME` (`docker run --network container:web`). Through a
//! proxied socket NAME must be a container of the holder's runtime, as for every other request
//! on a container; the proxy asks the engine, and the create goes on naming the container by
//! its full ID ([`pin_shared_containers`]): the engine looks the name up again at every start,
//! by which time it may be another container's. (The runtime checks on its own that a joined
//! namespace is a container's; this keeps the socket's reach to its own runtime's containers.)
//!
//! ```
//! use eci_policy::docker_api::sharing::{pin_shared_containers, shared_containers};
//!
//! let body = br#"{"HostConfig":{"NetworkMode":"container:web","IpcMode":"private"}}"#;
//! assert_eq!(shared_containers(body).unwrap(), ["web"]);
//! let id = "ab".repeat(32);
//! let pinned = pin_shared_containers(body, &[("web".into(), id.clone())]).unwrap();
//! let pinned: serde_json::Value = serde_json::from_slice(&pinned).unwrap();
//! assert_eq!(pinned["HostConfig"]["NetworkMode"], format!("container:{id}"));
//! ```

use serde_json::Value;

use super::create::CreateRefusal;

/// The `HostConfig` fields that may name a container whose namespace a create joins.
pub const SHARING_MODES: [&str; 3] = ["NetworkMode", "IpcMode", "PidMode"];

const PREFIX: &str = "container:";

/// The container a sharing mode names, if it names one.
fn named_container<'a>(
    mode: &'a Value,
    field: &'static str,
) -> Result<Option<&'a str>, CreateRefusal> {
    let Some(text) = mode.as_str() else {
        return match mode {
            Value::Null => Ok(None),
            _ => Err(CreateRefusal::SharedContainer(field, mode.to_string())),
        };
    };
    match text.strip_prefix(PREFIX) {
        None => Ok(None),
        Some("") => Err(CreateRefusal::SharedContainer(field, text.to_string())),
        Some(name) => Ok(Some(name)),
    }
}

fn parse(body: &[u8]) -> Result<Value, CreateRefusal> {
    match serde_json::from_slice(body) {
        Ok(request @ Value::Object(_)) => Ok(request),
        Ok(_) => Err(CreateRefusal::NotAnObject("not an object".into())),
        Err(e) => Err(CreateRefusal::NotAnObject(e.to_string())),
    }
}

/// The containers (as the request names them) whose namespaces a create body joins, each
/// once, in the order of [`SHARING_MODES`]. The body is one [`super::create::vet_create_body`]
/// returned, whose `HostConfig` keys are spelled exactly.
pub fn shared_containers(body: &[u8]) -> Result<Vec<String>, CreateRefusal> {
    let request = parse(body)?;
    let mut names: Vec<String> = Vec::new();
    for field in SHARING_MODES {
        if let Some(name) = named_container(&request["HostConfig"][field], field)? {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// The body with every `container:NAME` replaced by `container:ID`, from `resolved` (name, full
/// ID) pairs; a name missing from them is refused.
pub fn pin_shared_containers(
    body: &[u8],
    resolved: &[(String, String)],
) -> Result<Vec<u8>, CreateRefusal> {
    let mut request = parse(body)?;
    for field in SHARING_MODES {
        let Some(mode) = request.get_mut("HostConfig").and_then(|h| h.get_mut(field)) else {
            continue;
        };
        let Some(name) = named_container(mode, field)? else {
            continue;
        };
        let (_, id) = resolved
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| CreateRefusal::SharedContainer(field, name.to_string()))?;
        *mode = Value::String(format!("{PREFIX}{id}"));
    }
    serde_json::to_vec(&request).map_err(|e| CreateRefusal::NotAnObject(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_sharing_mode_names_its_container_once() {
        let body = br#"{"HostConfig":{"NetworkMode":"container:web","IpcMode":"container:db",
            "PidMode":"container:web"}}"#;
        assert_eq!(shared_containers(body).unwrap(), ["web", "db"]);
        for none in [
            &br#"{}"#[..],
            br#"{"HostConfig":null}"#,
            br#"{"HostConfig":{"NetworkMode":"bridge","IpcMode":"shareable","PidMode":null}}"#,
            br#"{"HostConfig":{"NetworkMode":"app-net","IpcMode":"","PidMode":"host"}}"#,
        ] {
            assert!(shared_containers(none).unwrap().is_empty());
        }
    }

    #[test]
    fn a_mode_that_names_no_container_clearly_is_refused() {
        for body in [
            &br#"{"HostConfig":{"NetworkMode":"container:"}}"#[..],
            br#"{"HostConfig":{"IpcMode":7}}"#,
            br#"{"HostConfig":{"PidMode":["container:web"]}}"#,
            br#"[]"#,
        ] {
            assert!(
                shared_containers(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn pinning_names_each_container_by_id_and_refuses_one_not_resolved() {
        let body = br#"{"Image":"x","HostConfig":{"NetworkMode":"container:web","PidMode":"container:web","IpcMode":"container:db","Memory":5}}"#;
        let resolved = [
            ("web".to_string(), "1".repeat(64)),
            ("db".to_string(), "2".repeat(64)),
        ];
        let pinned: Value =
            serde_json::from_slice(&pin_shared_containers(body, &resolved).unwrap()).unwrap();
        assert_eq!(
            pinned["HostConfig"]["NetworkMode"],
            format!("container:{}", "1".repeat(64))
        );
        assert_eq!(
            pinned["HostConfig"]["PidMode"],
            format!("container:{}", "1".repeat(64))
        );
        assert_eq!(
            pinned["HostConfig"]["IpcMode"],
            format!("container:{}", "2".repeat(64))
        );
        assert_eq!(pinned["HostConfig"]["Memory"], 5);
        assert_eq!(pinned["Image"], "x");
        let untouched = br#"{"HostConfig":{"Memory":5}}"#;
        let pinned = pin_shared_containers(untouched, &[]).unwrap();
        assert_eq!(pinned, untouched);
        let err = pin_shared_containers(body, &resolved[..1]).unwrap_err();
        assert!(err.to_string().contains("db"), "{err}");
    }

    proptest! {
        #[test]
        fn after_pinning_every_container_mode_names_a_resolved_id(
            modes in proptest::collection::vec(
                prop_oneof![
                    Just(None),
                    Just(Some("bridge".to_string())),
                    "[a-z]{1,4}".prop_map(|n| Some(format!("container:{n}"))),
                ],
                3,
            )
        ) {
            let mut host_config = serde_json::Map::new();
            for (field, mode) in SHARING_MODES.iter().zip(&modes) {
                if let Some(mode) = mode {
                    host_config.insert(field.to_string(), Value::String(mode.clone()));
                }
            }
            let body = serde_json::to_vec(&serde_json::json!({"HostConfig": host_config})).unwrap();
            let names = shared_containers(&body).unwrap();
            let resolved: Vec<(String, String)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), format!("{i:064x}")))
                .collect();
            let pinned: Value =
                serde_json::from_slice(&pin_shared_containers(&body, &resolved).unwrap()).unwrap();
            for field in SHARING_MODES {
                if let Some(text) = pinned["HostConfig"][field].as_str() {
                    if let Some(id) = text.strip_prefix(PREFIX) {
                        prop_assert!(resolved.iter().any(|(_, r)| r == id));
                    }
                }
            }
            prop_assert_eq!(shared_containers(&serde_json::to_vec(&pinned).unwrap()).unwrap().len(), names.len());
        }
    }
}
