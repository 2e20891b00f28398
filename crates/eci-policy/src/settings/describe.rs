//! A human-readable account of the settings in force, for `eci-policy check` and for logs.

use std::fmt;

use super::{FsType, Policy, ProcFile, Setting};
use crate::docker_api::ListKind;
use crate::paths::{Access, Scope};

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

fn lock_mark(policy: &Policy, setting: &Setting) -> &'static str {
    if policy.locks.is_locked(setting) {
        " (locked)"
    } else {
        ""
    }
}

fn list_or_none(items: Vec<String>) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

impl Policy {
    fn describe_paths(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Host paths (the most specific rule decides):")?;
        for rule in self.paths.rules() {
            let what = match (rule.access, rule.scope) {
                (Access::Shared { read_only: true }, _) => "shared read-only",
                (Access::Shared { read_only: false }, _) => "shared",
                (Access::Restricted, Scope::Subtree) => "restricted",
                (Access::Restricted, Scope::Exact) => "restricted (this path only)",
            };
            writeln!(f, "  {:<40} {what} [{}]", rule.path.display(), rule.origin)?;
        }
        Ok(())
    }

    fn describe_docker_socket(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let socket = &self.docker_socket;
        let images = socket.images.images.iter().map(|i| i.to_string()).collect();
        writeln!(f, "Docker socket mounts:")?;
        writeln!(f, "  images allowed: {}", list_or_none(images))?;
        writeln!(
            f,
            "  images built from them allowed: {}",
            yes_no(socket.images.allow_derived_images)
        )?;
        let kind = match socket.commands.kind() {
            ListKind::Deny => "refused",
            ListKind::Allow => "allowed (all others refused)",
        };
        let rules = socket.commands.rules().iter().map(|(text, _)| text.clone());
        writeln!(
            f,
            "  engine commands {kind}: {}",
            list_or_none(rules.collect())
        )
    }

    fn describe_virtualization(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = ProcFile::ALL.into_iter().map(|file| {
            let on = if self.procfs.get(file) { "on" } else { "off" };
            let setting = Setting::Procfs(file);
            format!("{} {on}{}", file.name(), lock_mark(self, &setting))
        });
        writeln!(
            f,
            "procfs virtualization: {}",
            files.collect::<Vec<_>>().join(", ")
        )?;
        let sysctls = self.sysctls.iter().map(|(name, mode)| {
            let setting = Setting::Sysctl(name.to_string());
            format!("{name} {}{}", mode.name(), lock_mark(self, &setting))
        });
        writeln!(
            f,
            "Global sysctls: container-only unless listed: {}",
            list_or_none(sysctls.collect())
        )
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let locked = if self.locks.eci { " (locked)" } else { "" };
        let state = if self.eci_enabled { "on" } else { "off" };
        writeln!(f, "Enhanced Container Isolation: {state}{locked}")?;
        let pool = &self.id_pool;
        writeln!(
            f,
            "ID pool: host IDs {}-{}, {} blocks of {}",
            pool.start(),
            u64::from(pool.start()) + u64::from(pool.size()) - 1,
            pool.block_count(),
            pool.block_size()
        )?;
        writeln!(
            f,
            "Initial mounts: remount read-write allowed: {}{}; unmount allowed: {}{}",
            yes_no(self.immutability.allow_remount),
            lock_mark(self, &Setting::AllowRemount),
            yes_no(self.immutability.allow_unmount),
            lock_mark(self, &Setting::AllowUnmount)
        )?;
        let types = FsType::ALL
            .into_iter()
            .filter(|fs| self.mount_types.contains(*fs))
            .map(|fs| fs.name().to_string());
        writeln!(
            f,
            "Filesystems a container may mount: {}",
            list_or_none(types.collect())
        )?;
        self.describe_paths(f)?;
        let hooks = self.hook_dirs.iter().map(|d| d.display().to_string());
        writeln!(f, "OCI hook directories: {}", list_or_none(hooks.collect()))?;
        writeln!(
            f,
            "Read-write cgroup mounts delegated to the container: {}",
            yes_no(self.delegate_cgroups)
        )?;
        self.describe_docker_socket(f)?;
        self.describe_virtualization(f)
    }
}
