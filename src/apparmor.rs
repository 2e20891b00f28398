//! The AppArmor profile a spec's process asks for (`process.apparmorProfile`). Docker asks for
//! `docker-default` for every container on a host with AppArmor, and `unconfined` for one with
//! `--privileged`.
//!
//! As runc does, the init asks the kernel to confine what it executes next with the profile
//! ("change on exec", through procfs), so the profile holds from the container's first
//! instruction and the runtime's own work before it is not confined by it. On a host without
//! AppArmor a profile cannot be applied: `unconfined` asks for nothing and is accepted, any
//! other profile is refused rather than silently dropped.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The profile that confines nothing.
const UNCONFINED: &str = "unconfined";

/// Whether the kernel enforces AppArmor here (runc's test: securityfs has it and the module
/// says enabled): whether a spec's `process.apparmorProfile` other than `unconfined` can be
/// applied.
///
/// ```
/// // A host without AppArmor applies no profile; eci then refuses specs that name one.
/// let _ = eci::apparmor_enabled();
/// ```
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        std::path::Path::new("/sys/kernel/security/apparmor").exists()
            && std::fs::read("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|text| text.starts_with(b"Y"))
    })
}

/// Fails, before anything is set up, for a profile this host cannot apply.
pub(crate) fn check(profile: &str) -> Result<()> {
    if profile.contains('\0') {
        return Err(Error::Unsupported(
            "an AppArmor profile name with a NUL byte",
        ));
    }
    if !enabled() && profile != UNCONFINED {
        return Err(Error::Unsupported(
            "an AppArmor profile on a host without AppArmor (only \"unconfined\" is accepted)",
        ));
    }
    Ok(())
}

/// What the init writes to have its next exec confined, prepared before the fork: it then
/// writes it with async-signal-safe calls only.
#[derive(Debug, Clone)]
pub(crate) struct OnExec {
    file: &'static CStr,
    request: CString,
    profile: String,
}

impl OnExec {
    /// For `profile`, already [`check`]ed; `None` where there is nothing to apply (a host
    /// without AppArmor, asked for `unconfined`).
    pub(crate) fn prepare(profile: &str) -> Option<OnExec> {
        if !enabled() {
            return None;
        }
        // The LSM's own attribute directory (Linux 5.8 and later), else the shared one.
        let file = if std::path::Path::new("/proc/self/attr/apparmor").is_dir() {
            c"/proc/thread-self/attr/apparmor/exec"
        } else {
            c"/proc/thread-self/attr/exec"
        };
        let request = CString::new(format!("exec {profile}")).ok()?;
        Some(OnExec {
            file,
            request,
            profile: profile.to_string(),
        })
    }

    /// Where to write, and what.
    pub(crate) fn request(&self) -> (&CStr, &[u8]) {
        (self.file, self.request.as_bytes())
    }

    /// The profile's name, for errors.
    pub(crate) fn profile(&self) -> &str {
        &self.profile
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfined_is_all_a_host_without_apparmor_accepts() {
        if enabled() {
            return;
        }
        check(UNCONFINED).unwrap();
        assert!(OnExec::prepare(UNCONFINED).is_none());
        let refused = check("docker-default").unwrap_err().to_string();
        assert!(refused.contains("without AppArmor"), "{refused}");
        assert!(check("a\0b").is_err());
    }
}
