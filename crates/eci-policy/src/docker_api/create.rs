//! What a container create request sent through a proxied engine socket may ask for. The
//! request line says only that it creates a container; the body says how. Two of its fields
//! would let a container with the socket escape eci altogether:
//! - `HostConfig.Runtime`: the engine always has `runc` (and its shim names) registered, and a
//!   container it runs there has no user namespace, so its root is host root;
//! - `HostConfig.Annotations` (API 1.43 on) reach the OCI spec, where `org.eci.*` annotations
//!   relax the settings for that container unless the administrator locked them.
//!
//! A container created through the socket therefore runs with the runtime of the container
//! that holds the socket (filled in when the body names none), and may not carry eci's
//! annotations.
//!
//! ```
//! use eci_policy::docker_api::create::{vet_create_body, CreateRefusal};
//!
//! let body = br#"{"Image":"alpine","HostConfig":{"Privileged":true}}"#;
//! let vetted = vet_create_body(body, "eci").unwrap();
//! let json: serde_json::Value = serde_json::from_slice(&vetted).unwrap();
//! assert_eq!(json["HostConfig"]["Runtime"], "eci");
//!
//! let escape = br#"{"Image":"alpine","HostConfig":{"Runtime":"runc"}}"#;
//! assert!(matches!(vet_create_body(escape, "eci"), Err(CreateRefusal::Runtime { .. })));
//! ```

use serde_json::{Map, Value};

use crate::overrides::ANNOTATION_PREFIX;

/// Why a create request's body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateRefusal {
    /// The body is not a JSON object (the engine would refuse it too).
    #[error("the container create body is not a JSON object: {0}")]
    NotAnObject(String),
    /// `HostConfig` is there but not an object.
    #[error("the container create body's HostConfig is not a JSON object")]
    HostConfig,
    /// The body asks for another runtime.
    #[error("containers created through this socket run with the runtime '{required}' (the one the container holding the socket runs with), not '{asked}'")]
    Runtime {
        /// What the body asked for.
        asked: String,
        /// The only runtime allowed.
        required: String,
    },
    /// A key the engine would read as one of the fields checked here, spelt otherwise: Go's
    /// JSON decoder matches field names without regard to case (and with Unicode folding, so
    /// `ſ` is `s`), and the last of two matching keys wins.
    #[error("the container create body's key '{0}' stands for '{1}' in another spelling; use '{1}' as it is spelt")]
    Spelling(String, &'static str),
    /// The body carries an annotation that would change eci's settings.
    #[error("the annotation '{0}' changes eci's settings, which a container created through this socket may not")]
    Annotation(String),
}

/// Checks the body of `POST /containers/create` and returns the body to send on: the same
/// request, run with `runtime`. Refuses another runtime and annotations under `org.eci.`.
pub fn vet_create_body(body: &[u8], runtime: &str) -> Result<Vec<u8>, CreateRefusal> {
    let mut request: Value =
        serde_json::from_slice(body).map_err(|e| CreateRefusal::NotAnObject(e.to_string()))?;
    let Value::Object(request_fields) = &mut request else {
        return Err(CreateRefusal::NotAnObject("not an object".into()));
    };
    only_exact_spellings(request_fields, &["HostConfig"])?;
    let host_config = request_fields
        .entry("HostConfig")
        .or_insert_with(|| Value::Object(Map::new()));
    if host_config.is_null() {
        *host_config = Value::Object(Map::new());
    }
    let Value::Object(host_config) = host_config else {
        return Err(CreateRefusal::HostConfig);
    };
    only_exact_spellings(host_config, &["Runtime", "Annotations"])?;
    match host_config.get("Runtime") {
        None | Some(Value::Null) => {}
        Some(Value::String(asked)) if asked.is_empty() || asked == runtime => {}
        Some(other) => {
            let asked = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string);
            return Err(CreateRefusal::Runtime {
                asked,
                required: runtime.to_string(),
            });
        }
    }
    host_config.insert("Runtime".into(), Value::String(runtime.into()));
    if let Some(Value::Object(annotations)) = host_config.get("Annotations") {
        if let Some(key) = annotations
            .keys()
            .find(|key| key.to_ascii_lowercase().starts_with(ANNOTATION_PREFIX))
        {
            return Err(CreateRefusal::Annotation(key.clone()));
        }
    }
    Ok(request.to_string().into_bytes())
}

/// Refuses a key of `fields` that Go's decoder would match to one of `names` but that is not
/// spelt as it: the proxy would check one key and the engine use another.
fn only_exact_spellings(
    fields: &Map<String, Value>,
    names: &[&'static str],
) -> Result<(), CreateRefusal> {
    for key in fields.keys() {
        if let Some(name) = names
            .iter()
            .find(|name| folds_to(key, name) && key != *name)
        {
            return Err(CreateRefusal::Spelling(key.clone(), name));
        }
    }
    Ok(())
}

/// Whether `key` equals `name` under Unicode simple case folding, as Go's `EqualFold` compares
/// (ſ, U+017F, folds to s; the Kelvin sign to k).
pub fn folds_to(key: &str, name: &str) -> bool {
    let fold = |c: char| -> String { c.to_uppercase().flat_map(char::to_lowercase).collect() };
    let folded = |text: &str| -> String { text.chars().map(fold).collect() };
    folded(key) == folded(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn runtime_of(body: &[u8]) -> Value {
        serde_json::from_slice::<Value>(body).unwrap()["HostConfig"]["Runtime"].clone()
    }

    #[test]
    fn the_holders_runtime_is_filled_in_or_required() {
        for body in [
            &br#"{"Image":"a"}"#[..],
            br#"{"Image":"a","HostConfig":null}"#,
            br#"{"Image":"a","HostConfig":{"Runtime":""}}"#,
            br#"{"Image":"a","HostConfig":{"Runtime":null}}"#,
            br#"{"Image":"a","HostConfig":{"Runtime":"eci"}}"#,
        ] {
            assert_eq!(runtime_of(&vet_create_body(body, "eci").unwrap()), "eci");
        }
        for (body, asked) in [
            (&br#"{"HostConfig":{"Runtime":"runc"}}"#[..], "runc"),
            (
                br#"{"HostConfig":{"Runtime":"io.containerd.runc.v2"}}"#,
                "io.containerd.runc.v2",
            ),
            (br#"{"HostConfig":{"Runtime":"ECI"}}"#, "ECI"),
            (br#"{"HostConfig":{"Runtime":7}}"#, "7"),
        ] {
            assert_eq!(
                vet_create_body(body, "eci"),
                Err(CreateRefusal::Runtime {
                    asked: asked.into(),
                    required: "eci".into()
                })
            );
        }
    }

    #[test]
    fn eci_annotations_and_malformed_bodies_are_refused() {
        let body = br#"{"HostConfig":{"Annotations":{"org.eci.allowRemount":"true"}}}"#;
        assert_eq!(
            vet_create_body(body, "eci"),
            Err(CreateRefusal::Annotation("org.eci.allowRemount".into()))
        );
        let upper = br#"{"HostConfig":{"Annotations":{"ORG.ECI.allowUnmount":"true"}}}"#;
        assert!(matches!(
            vet_create_body(upper, "eci"),
            Err(CreateRefusal::Annotation(_))
        ));
        let other = br#"{"HostConfig":{"Annotations":{"com.example":"x"}}}"#;
        assert!(vet_create_body(other, "eci").is_ok());
        assert!(matches!(
            vet_create_body(b"[]", "eci"),
            Err(CreateRefusal::NotAnObject(_))
        ));
        assert!(matches!(
            vet_create_body(b"{", "eci"),
            Err(CreateRefusal::NotAnObject(_))
        ));
        assert_eq!(
            vet_create_body(br#"{"HostConfig":[]}"#, "eci"),
            Err(CreateRefusal::HostConfig)
        );
    }

    #[test]
    fn other_spellings_of_the_checked_keys_are_refused() {
        for body in [
            &br#"{"Image":"a","HostConfig":{"runtime":"runc","Privileged":true}}"#[..],
            br#"{"Image":"a","HostConfig":{"Runtime":"eci","RUNTIME":"runc"}}"#,
            br#"{"Image":"a","hostconfig":{"Runtime":"runc"}}"#,
            "{\"Image\":\"a\",\"Ho\u{17f}tConfig\":{\"Runtime\":\"runc\"}}".as_bytes(),
            br#"{"HostConfig":{"annotations":{"org.eci.allowRemount":"true"}}}"#,
            "{\"HostConfig\":{\"Annotation\u{17f}\":{\"org.eci.allowRemount\":\"true\"}}}"
                .as_bytes(),
        ] {
            assert!(
                matches!(
                    vet_create_body(body, "eci"),
                    Err(CreateRefusal::Spelling(..))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(folds_to("\u{212a}ey", "key"), "the Kelvin sign");
        assert!(!folds_to("Runtimes", "Runtime"));
    }

    proptest! {
        #[test]
        fn a_key_in_any_case_is_refused_unless_exact(mask in any::<u16>()) {
            let key: String = "Runtime"
                .chars()
                .enumerate()
                .map(|(i, c)| if mask >> i & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect();
            let body = format!(r#"{{"HostConfig":{{"{key}":"runc"}}}}"#);
            let verdict = vet_create_body(body.as_bytes(), "eci");
            if key == "Runtime" {
                prop_assert!(matches!(verdict, Err(CreateRefusal::Runtime { .. })), "{:?}", verdict);
            } else {
                prop_assert!(matches!(verdict, Err(CreateRefusal::Spelling(..))), "{:?}", verdict);
            }
        }

        #[test]
        fn whatever_passes_runs_with_the_holders_runtime_and_keeps_the_rest(
            image in "[a-z]{1,8}", runtime in proptest::option::of("[a-z.]{0,12}"),
            privileged in any::<bool>(), key in "[a-zA-Z.]{1,16}"
        ) {
            let mut host_config = serde_json::json!({"Privileged": privileged, "Annotations": {key.clone(): "v"}});
            if let Some(runtime) = &runtime {
                host_config["Runtime"] = Value::String(runtime.clone());
            }
            let body = serde_json::json!({"Image": image, "HostConfig": host_config}).to_string();
            match vet_create_body(body.as_bytes(), "eci") {
                Ok(vetted) => {
                    let vetted: Value = serde_json::from_slice(&vetted).unwrap();
                    prop_assert_eq!(&vetted["HostConfig"]["Runtime"], "eci");
                    prop_assert_eq!(&vetted["Image"], &Value::String(image));
                    prop_assert_eq!(&vetted["HostConfig"]["Privileged"], &Value::Bool(privileged));
                    prop_assert!(!key.to_ascii_lowercase().starts_with("org.eci."));
                }
                Err(CreateRefusal::Runtime { asked, .. }) => {
                    prop_assert_eq!(Some(asked), runtime.filter(|r| !r.is_empty() && r != "eci"));
                }
                Err(CreateRefusal::Annotation(found)) => prop_assert_eq!(found, key),
                Err(other) => prop_assert!(false, "{other}"),
            }
        }

        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = vet_create_body(&body, "eci");
        }
    }
}
