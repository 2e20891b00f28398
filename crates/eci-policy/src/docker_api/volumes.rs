//! Which of the engine's volumes a proxied socket reaches.
//!
//! The engine keeps one set of volumes for all its containers, whatever runtime they run with.
//! Through a socket a container holds, a named volume of another runtime's container (a
//! database's, say, run with `runc`) could be mounted, read and written as root (eci binds
//! volumes idmapped), and removed. So a volume made through a proxied socket carries the label
//! [`SCOPE_LABEL`] with the socket's runtime, and the socket reaches only volumes that carry it
//! with that runtime:
//! - `volume create` gets the label ([`vet_volume_create_body`](super::create::vet_volume_create_body));
//! - a container create that mounts a named volume has the proxy look it up, and make it if
//!   the engine has none ([`volume_claims`]), and passes only if the volume is in scope
//!   ([`mountable_volume`]);
//! - an inspect, update or remove of a volume passes only for one in scope
//!   ([`volume_in_scope`]), and a list or a prune is filtered by the label
//!   ([`scope_filter`] with [`with_label_filter`](super::with_label_filter)).
//!
//! Anonymous volumes (an image's `VOLUME`, a `-v /path`) are made by the engine, unlabelled, for
//! one container: they are removed with it, and are out of scope for everything else.
//!
//! ```
//! use eci_policy::docker_api::volumes::{mountable_volume, volume_claims};
//!
//! let body = br#"{"HostConfig":{"Binds":["db:/var/lib/db"]}}"#;
//! let claims = volume_claims(body, "eci").unwrap();
//! let create: serde_json::Value = serde_json::from_slice(&claims[0].body).unwrap();
//! assert_eq!(create["Labels"]["org.eci.runtime"], "eci");
//!
//! let made_here = serde_json::json!({"Name": "db", "Driver": "local",
//!                                    "Labels": {"org.eci.runtime": "eci"}});
//! assert!(mountable_volume(&made_here, "eci").is_ok());
//! let runc_s = serde_json::json!({"Name": "db", "Driver": "local", "Labels": null});
//! assert!(mountable_volume(&runc_s, "eci").is_err());
//! ```

use serde_json::{Map, Value};

use super::create::{check_volume, only_exact_spellings, CreateRefusal};
use crate::overrides::ANNOTATION_PREFIX;

/// The label a volume made through a proxied socket carries: the runtime whose containers it
/// was made for.
pub const SCOPE_LABEL: &str = "org.eci.runtime";

/// The `label` filter (`key=value`) that keeps the volumes in the scope of `runtime`.
pub fn scope_filter(runtime: &str) -> String {
    format!("{SCOPE_LABEL}={runtime}")
}

/// Why a volume is out of a proxied socket's reach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeRefusal {
    /// Not made through a socket of this runtime.
    #[error("the volume {name} was not made through a socket of the runtime '{runtime}' ({}): this socket reaches only volumes labelled for its runtime", owner.as_deref().map_or_else(|| "it has no label".to_string(), |owner| format!("it was made for '{owner}'")))]
    OutOfScope {
        /// The volume.
        name: String,
        /// The runtime its label names, if any.
        owner: Option<String>,
        /// The socket's runtime.
        runtime: String,
    },
    /// A `local` volume the engine mounts with options other than a tmpfs's.
    #[error("the volume {0} has mount options (a bind of a host path, a disk): the engine would copy an image's files into it as root")]
    MountOptions(String),
}

/// Checks that the engine's description of a volume (its answer to an inspect or a create)
/// carries [`SCOPE_LABEL`] with `runtime`.
pub fn volume_in_scope(volume: &Value, runtime: &str) -> Result<(), VolumeRefusal> {
    let owner = volume["Labels"][SCOPE_LABEL].as_str();
    if owner == Some(runtime) {
        return Ok(());
    }
    Err(VolumeRefusal::OutOfScope {
        name: volume["Name"].as_str().unwrap_or("?").to_string(),
        owner: owner.map(str::to_string),
        runtime: runtime.to_string(),
    })
}

/// Checks a volume a container created through the socket would mount: in scope, and not a
/// `local` volume the engine mounts with options other than a tmpfs's (a bind of a host path,
/// a disk, a network filesystem), since the engine fills an empty volume from the image, as
/// root, setuid bits and all. A quota (`size`) mounts nothing.
pub fn mountable_volume(volume: &Value, runtime: &str) -> Result<(), VolumeRefusal> {
    volume_in_scope(volume, runtime)?;
    // The rule a volume made through the socket passed: plain or tmpfs, if `local`.
    check_volume(Some(&volume["Driver"]), Some(&volume["Options"])).map_err(|_| {
        VolumeRefusal::MountOptions(volume["Name"].as_str().unwrap_or("?").to_string())
    })
}

/// A volume a container create mounts by name, and the body of the `POST /volumes/create`
/// that makes it as the engine would (same driver, options and labels), labelled in scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeClaim {
    /// The volume's name.
    pub name: String,
    /// The body of the volume create.
    pub body: Vec<u8>,
}

/// The named volumes a (vetted) container create body mounts, each with the volume create a
/// proxy sends for one the engine does not have: `HostConfig.Binds` entries whose source is a name (made with
/// `HostConfig.VolumeDriver`), and `HostConfig.Mounts` of type `volume` with a `Source` (made
/// with their `VolumeOptions`). Labels under `org.eci.` are refused.
///
/// ```
/// use eci_policy::docker_api::volumes::volume_claims;
/// let body = br#"{"HostConfig":{"Binds":["db:/db","/srv:/s","/anon"],
///                 "Mounts":[{"Type":"volume","Source":"logs","Target":"/l",
///                            "VolumeOptions":{"Labels":{"app":"web"}}}]}}"#;
/// let claims = volume_claims(body, "eci").unwrap();
/// let names: Vec<_> = claims.iter().map(|c| c.name.as_str()).collect();
/// assert_eq!(names, ["db", "logs"]);
/// let logs: serde_json::Value = serde_json::from_slice(&claims[1].body).unwrap();
/// assert_eq!(logs["Labels"], serde_json::json!({"app": "web", "org.eci.runtime": "eci"}));
/// ```
pub fn volume_claims(body: &[u8], runtime: &str) -> Result<Vec<VolumeClaim>, CreateRefusal> {
    let request: Value =
        serde_json::from_slice(body).map_err(|e| CreateRefusal::NotAnObject(e.to_string()))?;
    let host_config = &request["HostConfig"];
    let mut claims = Vec::new();
    let driver = match &host_config["VolumeDriver"] {
        Value::Null => None,
        Value::String(driver) => Some(driver.as_str()),
        _ => return Err(CreateRefusal::Malformed("HostConfig.VolumeDriver")),
    };
    let binds = host_config["Binds"].as_array().into_iter().flatten();
    for bind in binds.filter_map(Value::as_str) {
        if let Some((name, _, _)) = super::create::named_volume_bind(bind) {
            let create = volume_create(name, driver, None, None, runtime)?;
            claims.push(create);
        }
    }
    let mounts = host_config["Mounts"].as_array().into_iter().flatten();
    for mount in mounts.filter(|mount| mount["Type"] == "volume") {
        let Some(name) = mount["Source"].as_str().filter(|name| !name.is_empty()) else {
            continue;
        };
        let options = &mount["VolumeOptions"];
        let config = &options["DriverConfig"];
        let driver = match &config["Name"] {
            Value::Null => None,
            Value::String(driver) => Some(driver.as_str()),
            _ => return Err(CreateRefusal::Malformed("volume driver")),
        };
        let labels = Some(&options["Labels"]).filter(|labels| !labels.is_null());
        let driver_options = Some(&config["Options"]).filter(|options| !options.is_null());
        claims.push(volume_create(
            name,
            driver,
            driver_options,
            labels,
            runtime,
        )?);
    }
    Ok(claims)
}

/// The claim of volume `name` made with `driver`, `options` and `labels`.
fn volume_create(
    name: &str,
    driver: Option<&str>,
    options: Option<&Value>,
    labels: Option<&Value>,
    runtime: &str,
) -> Result<VolumeClaim, CreateRefusal> {
    let mut create = Map::new();
    create.insert("Name".into(), Value::String(name.into()));
    if let Some(driver) = driver.filter(|driver| !driver.is_empty()) {
        create.insert("Driver".into(), Value::String(driver.into()));
    }
    if let Some(options) = options {
        create.insert("DriverOpts".into(), options.clone());
    }
    create.insert(
        "Labels".into(),
        Value::Object(scoped_labels(labels, runtime)?),
    );
    Ok(VolumeClaim {
        name: name.to_string(),
        body: Value::Object(create).to_string().into_bytes(),
    })
}

/// `labels` (an object of strings, or nothing) with [`SCOPE_LABEL`] set to `runtime`; a label
/// under `org.eci.` is refused (it would claim another scope).
pub(crate) fn scoped_labels(
    labels: Option<&Value>,
    runtime: &str,
) -> Result<Map<String, Value>, CreateRefusal> {
    let mut labels = match labels {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(labels)) if labels.values().all(Value::is_string) => labels.clone(),
        Some(_) => return Err(CreateRefusal::Malformed("Labels")),
    };
    if let Some(key) = labels
        .keys()
        .find(|key| key.to_ascii_lowercase().starts_with(ANNOTATION_PREFIX))
    {
        return Err(CreateRefusal::Label(key.clone()));
    }
    labels.insert(SCOPE_LABEL.into(), Value::String(runtime.into()));
    Ok(labels)
}

/// Checks a volume create's fields as the engine reads them (`Driver`, `DriverOpts`,
/// `Labels`) and labels it in scope.
pub(super) fn vet_volume_create_fields(
    fields: &mut Map<String, Value>,
    runtime: &str,
) -> Result<(), CreateRefusal> {
    only_exact_spellings(
        fields,
        &[
            "Name",
            "Driver",
            "DriverOpts",
            "Labels",
            "ClusterVolumeSpec",
        ],
    )?;
    check_volume(fields.get("Driver"), fields.get("DriverOpts"))?;
    // A swarm manager makes a cluster volume of it, through a CSI plugin: swarm's changes are
    // refused through the socket.
    if !matches!(fields.get("ClusterVolumeSpec"), None | Some(Value::Null)) {
        return Err(CreateRefusal::VolumeType(
            "cluster (ClusterVolumeSpec)".into(),
        ));
    }
    let labels = scoped_labels(fields.get("Labels"), runtime)?;
    fields.insert("Labels".into(), Value::Object(labels));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_volume_is_in_scope_only_with_the_runtimes_label() {
        let labelled = |labels: Value| serde_json::json!({"Name": "v", "Labels": labels});
        assert!(volume_in_scope(&labelled(serde_json::json!({SCOPE_LABEL: "eci"})), "eci").is_ok());
        for (labels, owner) in [
            (Value::Null, None),
            (serde_json::json!({}), None),
            (serde_json::json!({"app": "eci"}), None),
            (serde_json::json!({SCOPE_LABEL: "runc"}), Some("runc")),
            (serde_json::json!({SCOPE_LABEL: "ECI"}), Some("ECI")),
            (serde_json::json!({SCOPE_LABEL: 1}), None),
        ] {
            assert_eq!(
                volume_in_scope(&labelled(labels.clone()), "eci"),
                Err(VolumeRefusal::OutOfScope {
                    name: "v".into(),
                    owner: owner.map(str::to_string),
                    runtime: "eci".into()
                }),
                "{labels}"
            );
        }
    }

    #[test]
    fn a_volume_with_host_mount_options_is_not_mounted() {
        let volume = |driver: &str, options: Value| {
            serde_json::json!({"Name": "v", "Driver": driver, "Options": options,
                               "Labels": {SCOPE_LABEL: "eci"}})
        };
        for (driver, options) in [
            ("local", Value::Null),
            ("local", serde_json::json!({})),
            ("local", serde_json::json!({"size": "1G"})),
            (
                "local",
                serde_json::json!({"type": "tmpfs", "device": "tmpfs"}),
            ),
            (
                "a-plugin",
                serde_json::json!({"o": "bind", "device": "/etc"}),
            ),
        ] {
            assert!(mountable_volume(&volume(driver, options), "eci").is_ok());
        }
        for options in [
            serde_json::json!({"o": "bind", "device": "/etc"}),
            serde_json::json!({"type": "nfs", "device": ":/"}),
            serde_json::json!({"type": "tmpfs", "o": "bind", "device": "/etc"}),
            serde_json::json!("odd"),
        ] {
            assert_eq!(
                mountable_volume(&volume("local", options), "eci"),
                Err(VolumeRefusal::MountOptions("v".into()))
            );
        }
    }

    #[test]
    fn claims_make_volumes_as_the_engine_would_and_in_scope() {
        let body = br#"{"HostConfig":{"VolumeDriver":"a-plugin","Binds":["db:/db:ro","/srv:/s"],
            "Mounts":[{"Type":"volume","Source":"t","Target":"/t","VolumeOptions":{
                "DriverConfig":{"Name":"local","Options":{"type":"tmpfs","device":"tmpfs"}}}},
                {"Type":"volume","Target":"/anonymous"},{"Type":"bind","Source":"/srv","Target":"/b"}]}}"#;
        let claims = volume_claims(body, "eci").unwrap();
        let bodies: Vec<Value> = claims
            .iter()
            .map(|claim| serde_json::from_slice(&claim.body).unwrap())
            .collect();
        assert_eq!(
            bodies,
            [
                serde_json::json!({"Name": "db", "Driver": "a-plugin", "Labels": {SCOPE_LABEL: "eci"}}),
                serde_json::json!({"Name": "t", "Driver": "local",
                    "DriverOpts": {"type": "tmpfs", "device": "tmpfs"}, "Labels": {SCOPE_LABEL: "eci"}}),
            ]
        );
        for labels in [r#"{"org.eci.runtime":"runc"}"#, r#"{"ORG.ECI.x":"y"}"#] {
            let body = format!(
                r#"{{"HostConfig":{{"Mounts":[{{"Type":"volume","Source":"v","VolumeOptions":{{"Labels":{labels}}}}}]}}}}"#
            );
            assert!(matches!(
                volume_claims(body.as_bytes(), "eci"),
                Err(CreateRefusal::Label(_))
            ));
        }
        let odd = br#"{"HostConfig":{"VolumeDriver":7,"Binds":["db:/db"]}}"#;
        assert!(volume_claims(odd, "eci").is_err());
    }

    #[test]
    fn a_volume_create_is_labelled_in_scope_and_may_not_claim_one() {
        let vet = |body: &str| super::super::create::vet_volume_create_body(body.as_bytes(), "eci");
        let vetted: Value =
            serde_json::from_slice(&vet(r#"{"Name":"v","Labels":{"app":"web"}}"#).unwrap())
                .unwrap();
        assert_eq!(
            vetted["Labels"],
            serde_json::json!({"app": "web", SCOPE_LABEL: "eci"})
        );
        for (body, refusal) in [
            (
                r#"{"Labels":{"org.eci.runtime":"eci"}}"#,
                CreateRefusal::Label(SCOPE_LABEL.into()),
            ),
            (
                r#"{"Labels":{"Org.Eci.x":""}}"#,
                CreateRefusal::Label("Org.Eci.x".into()),
            ),
            (r#"{"Labels":{"a":1}}"#, CreateRefusal::Malformed("Labels")),
            (
                r#"{"labels":{}}"#,
                CreateRefusal::Spelling("labels".into(), "Labels"),
            ),
            (
                r#"{"name":"theirs"}"#,
                CreateRefusal::Spelling("name".into(), "Name"),
            ),
            (
                r#"{"Name":"c","ClusterVolumeSpec":{"Group":"g"}}"#,
                CreateRefusal::VolumeType("cluster (ClusterVolumeSpec)".into()),
            ),
        ] {
            assert_eq!(vet(body), Err(refusal), "{body}");
        }
    }

    proptest! {
        #[test]
        fn every_claim_is_labelled_in_scope(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(claims) = volume_claims(&body, "eci") {
                for claim in claims {
                    let create: Value = serde_json::from_slice(&claim.body).unwrap();
                    prop_assert_eq!(&create["Labels"][SCOPE_LABEL], "eci");
                }
            }
        }

        #[test]
        fn a_named_bind_is_always_claimed(name in "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}", target in "/[a-z]{1,8}") {
            let body = serde_json::json!({"HostConfig": {"Binds": [format!("{name}:{target}")]}});
            let claims = volume_claims(body.to_string().as_bytes(), "eci").unwrap();
            prop_assert_eq!(claims.len(), 1);
            prop_assert_eq!(&claims[0].name, &name);
        }
    }
}
