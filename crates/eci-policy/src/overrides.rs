//! Per-container overrides of the settings, asked for with OCI annotations, and the locks that
//! forbid them.
//!
//! A container may ask for a different value of a few settings: `org.eci.allowRemount=true`,
//! `org.eci.allowUnmount=true`, `org.eci.procfs.meminfo=false`,
//! `org.eci.sysctl.vm.overcommit_memory=largest-wins`. A setting the administrator locked
//! cannot be changed this way; asking is an error that names the setting, so the container does
//! not start with settings it did not expect. Nothing else can be overridden per container:
//! isolation itself, the shared and restricted paths, the ID pool, hook directories and the
//! Docker socket rules are the administrator's alone.
//!
//! ```
//! use eci_policy::overrides::Overrides;
//! use eci_policy::Policy;
//!
//! let overrides = Overrides::from_annotations([("org.eci.allowRemount", "true")]).unwrap();
//! let effective = Policy::default().with_overrides(&overrides).unwrap();
//! assert!(effective.immutability.allow_remount);
//!
//! let locked = eci_policy::document::parse(
//!     r#"{"eci": {"immutability": {"allowRemount": {"locked": true}}}}"#).unwrap();
//! let err = locked.with_overrides(&overrides).unwrap_err();
//! assert!(err.to_string().contains("eci.immutability.allowRemount"));
//! ```

use crate::settings::{
    check_global_sysctl, check_sysctl_rule, Policy, ProcFile, Setting, SysctlError, SysctlMode,
};

/// The prefix of every annotation eci reads.
pub const ANNOTATION_PREFIX: &str = "org.eci.";

/// One requested override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Override {
    /// `org.eci.allowRemount`
    AllowRemount(bool),
    /// `org.eci.allowUnmount`
    AllowUnmount(bool),
    /// `org.eci.procfs.<file>`
    Procfs(ProcFile, bool),
    /// `org.eci.sysctl.<name>`
    Sysctl(String, SysctlMode),
}

impl Override {
    /// The setting the override changes.
    pub fn setting(&self) -> Setting {
        match self {
            Override::AllowRemount(_) => Setting::AllowRemount,
            Override::AllowUnmount(_) => Setting::AllowUnmount,
            Override::Procfs(file, _) => Setting::Procfs(*file),
            Override::Sysctl(name, _) => Setting::Sysctl(name.clone()),
        }
    }
}

/// Why an override cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// An `org.eci.` annotation that names no overridable setting.
    #[error("annotation {0} names no setting a container may override (allowRemount, allowUnmount, procfs.<file>, sysctl.<name>)")]
    Unknown(String),
    /// A value the setting cannot take.
    #[error("annotation {annotation}={value}: expected {expected}")]
    Value {
        /// The annotation.
        annotation: String,
        /// The value given.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A sysctl that cannot have a rule.
    #[error("annotation {annotation}: {source}")]
    Sysctl {
        /// The annotation.
        annotation: String,
        /// What is wrong with the sysctl.
        source: SysctlError,
    },
    /// The administrator locked the setting.
    #[error(
        "{setting} is locked by the administrator and cannot be overridden for this container"
    )]
    Locked {
        /// The locked setting.
        setting: Setting,
    },
}

/// The overrides a container asks for, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Overrides(Vec<Override>);

impl Overrides {
    /// Overrides from explicit values. A sysctl that cannot have its mode is refused when they
    /// are applied ([`Policy::with_overrides`]).
    pub fn new(overrides: Vec<Override>) -> Overrides {
        Overrides(overrides)
    }

    /// The overrides the `org.eci.` annotations ask for; other annotations are ignored. Unknown
    /// `org.eci.` keys are errors: a misspelt override must not silently do nothing.
    pub fn from_annotations<K, V>(
        annotations: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Overrides, OverrideError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut ours: Vec<(String, String)> = annotations
            .into_iter()
            .filter(|(key, _)| key.as_ref().starts_with(ANNOTATION_PREFIX))
            .map(|(key, value)| (key.as_ref().to_string(), value.as_ref().to_string()))
            .collect();
        ours.sort();
        let parsed = ours
            .iter()
            .map(|(key, value)| parse_annotation(key, value))
            .collect::<Result<_, _>>()?;
        Ok(Overrides(parsed))
    }

    /// The overrides.
    pub fn iter(&self) -> impl Iterator<Item = &Override> {
        self.0.iter()
    }
}

fn parse_annotation(key: &str, value: &str) -> Result<Override, OverrideError> {
    let name = &key[ANNOTATION_PREFIX.len()..];
    let flag = || parse_bool(key, value);
    match name {
        "allowRemount" => return Ok(Override::AllowRemount(flag()?)),
        "allowUnmount" => return Ok(Override::AllowUnmount(flag()?)),
        _ => {}
    }
    if let Some(file) = name.strip_prefix("procfs.").and_then(ProcFile::parse) {
        return Ok(Override::Procfs(file, flag()?));
    }
    if let Some(sysctl) = name.strip_prefix("sysctl.") {
        let sysctl_error = |source| OverrideError::Sysctl {
            annotation: key.to_string(),
            source,
        };
        check_global_sysctl(sysctl).map_err(sysctl_error)?;
        let mode = SysctlMode::parse(value).ok_or_else(|| OverrideError::Value {
            annotation: key.to_string(),
            value: value.to_string(),
            expected: "container-only, largest-wins, enable-wins or always-host",
        })?;
        check_sysctl_rule(sysctl, mode).map_err(sysctl_error)?;
        return Ok(Override::Sysctl(sysctl.to_string(), mode));
    }
    Err(OverrideError::Unknown(key.to_string()))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, OverrideError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(OverrideError::Value {
            annotation: key.to_string(),
            value: value.to_string(),
            expected: "true or false",
        }),
    }
}

impl Policy {
    /// The policy for one container: these settings with the container's overrides applied. An
    /// override of a locked setting is an error, unless it asks for the value already in force.
    pub fn with_overrides(&self, overrides: &Overrides) -> Result<Policy, OverrideError> {
        let mut policy = self.clone();
        for wanted in overrides.iter() {
            let setting = wanted.setting();
            if self.locks.is_locked(&setting) && !self.already(wanted) {
                return Err(OverrideError::Locked { setting });
            }
            policy.apply(wanted)?;
        }
        Ok(policy)
    }

    /// True if the override asks for the value already in force.
    fn already(&self, wanted: &Override) -> bool {
        match wanted {
            Override::AllowRemount(on) => self.immutability.allow_remount == *on,
            Override::AllowUnmount(on) => self.immutability.allow_unmount == *on,
            Override::Procfs(file, on) => self.procfs.get(*file) == *on,
            Override::Sysctl(name, mode) => self.sysctls.mode(name) == *mode,
        }
    }

    /// Applies one override. A sysctl is checked again: [`Overrides::new`] takes any, where
    /// [`Overrides::from_annotations`] checked them.
    fn apply(&mut self, wanted: &Override) -> Result<(), OverrideError> {
        match wanted {
            Override::AllowRemount(on) => self.immutability.allow_remount = *on,
            Override::AllowUnmount(on) => self.immutability.allow_unmount = *on,
            Override::Procfs(file, on) => self.procfs.set(*file, *on),
            Override::Sysctl(name, mode) => {
                let sysctl_error = |source| OverrideError::Sysctl {
                    annotation: format!("{ANNOTATION_PREFIX}sysctl.{name}"),
                    source,
                };
                check_global_sysctl(name).map_err(sysctl_error)?;
                self.sysctls.set(name, *mode).map_err(sysctl_error)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked_everything() -> Policy {
        crate::document::parse(
            r#"{"eci": {
                "immutability": {"allowRemount": {"value": false, "locked": true},
                                 "allowUnmount": {"value": true, "locked": true}},
                "procfs": {"meminfo": {"locked": true}},
                "sysctls": {"fs.file-max": {"value": "largest-wins", "locked": true},
                            "kernel.panic": {"value": "always-host"}}
            }}"#,
        )
        .unwrap()
    }

    #[test]
    fn annotations_become_overrides_and_others_are_ignored() {
        let overrides = Overrides::from_annotations([
            ("org.eci.allowUnmount", "true"),
            ("org.eci.procfs.cpuOnline", "false"),
            ("org.eci.sysctl.kernel.panic", "container-only"),
            ("com.example.other", "whatever"),
        ])
        .unwrap();
        let policy = Policy::default().with_overrides(&overrides).unwrap();
        assert!(policy.immutability.allow_unmount);
        assert!(!policy.procfs.get(ProcFile::CpuOnline));
        assert_eq!(
            policy.sysctls.mode("kernel.panic"),
            SysctlMode::ContainerOnly
        );
        assert_eq!(overrides.iter().count(), 3);
    }

    #[test]
    fn bad_annotations_are_errors_that_name_them() {
        let err = |key: &str, value: &str| Overrides::from_annotations([(key, value)]).unwrap_err();
        assert_eq!(
            err("org.eci.allowRemout", "true"),
            OverrideError::Unknown("org.eci.allowRemout".into())
        );
        assert!(matches!(
            err("org.eci.allowRemount", "yes"),
            OverrideError::Value { .. }
        ));
        assert!(matches!(
            err("org.eci.procfs.meminf", "true"),
            OverrideError::Unknown(_)
        ));
        assert!(matches!(
            err("org.eci.sysctl.net.ipv4.ip_forward", "largest-wins"),
            OverrideError::Sysctl {
                source: SysctlError::Namespaced(_),
                ..
            }
        ));
        assert!(matches!(
            err("org.eci.sysctl.vm.swappiness", "max"),
            OverrideError::Value { .. }
        ));
        // A rule on a sysctl eci does not emulate would do nothing; one that lets a container
        // switch sysrq on for the host would harm it.
        assert!(matches!(
            err("org.eci.sysctl.vm.swappiness", "largest-wins"),
            OverrideError::Sysctl {
                source: SysctlError::NotEmulated(_),
                ..
            }
        ));
        assert!(matches!(
            err("org.eci.sysctl.kernel.sysrq", "enable-wins"),
            OverrideError::Sysctl {
                source: SysctlError::ModeRefused { .. },
                ..
            }
        ));
    }

    #[test]
    fn locked_settings_cannot_be_overridden() {
        let policy = locked_everything();
        for (key, value, setting) in [
            ("org.eci.allowRemount", "true", Setting::AllowRemount),
            ("org.eci.allowUnmount", "false", Setting::AllowUnmount),
            (
                "org.eci.procfs.meminfo",
                "false",
                Setting::Procfs(ProcFile::Meminfo),
            ),
            (
                "org.eci.sysctl.fs.file-max",
                "container-only",
                Setting::Sysctl("fs.file-max".into()),
            ),
        ] {
            let overrides = Overrides::from_annotations([(key, value)]).unwrap();
            let err = policy.with_overrides(&overrides).unwrap_err();
            assert_eq!(
                err,
                OverrideError::Locked {
                    setting: setting.clone()
                },
                "{key}"
            );
            assert!(err.to_string().contains(&setting.json_path()));
        }
    }

    #[test]
    fn asking_for_the_locked_value_or_an_unlocked_setting_is_fine() {
        let policy = locked_everything();
        let overrides = Overrides::from_annotations([
            ("org.eci.allowRemount", "false"),
            ("org.eci.sysctl.kernel.panic", "container-only"),
            ("org.eci.procfs.uptime", "false"),
        ])
        .unwrap();
        let effective = policy.with_overrides(&overrides).unwrap();
        assert!(!effective.immutability.allow_remount);
        assert_eq!(
            effective.sysctls.mode("kernel.panic"),
            SysctlMode::ContainerOnly
        );
        assert!(!effective.procfs.get(ProcFile::Uptime));
        assert!(effective.procfs.get(ProcFile::Meminfo));
    }

    #[test]
    fn explicit_overrides_are_checked_as_annotations_are() {
        // Both a rule the sysctl cannot have and a namespaced sysctl: errors, never a panic.
        for (name, mode) in [
            ("kernel.sysrq", SysctlMode::EnableWins),
            ("net.ipv4.ip_forward", SysctlMode::LargestWins),
        ] {
            let overrides = Overrides::new(vec![Override::Sysctl(name.into(), mode)]);
            let err = Policy::default().with_overrides(&overrides).unwrap_err();
            assert!(matches!(err, OverrideError::Sysctl { .. }), "{name}: {err}");
        }
    }
}
