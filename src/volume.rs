//! The host facts spec hardening asks for: bind sources resolved against the bundle, and what a
//! Docker engine has at a volume's data directory (see [`eci_policy::volume`] for the rules).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use eci_policy::harden::HostPaths;
use eci_policy::volume::{
    EngineVolume, LocalVolumeOptions, VolumeData, VolumeSource, VOLUMES_DATABASE,
    VOLUME_OPTIONS_FILE,
};
use nix::sys::statfs::{statfs, TMPFS_MAGIC};

use crate::container::resolve_in_bundle;

/// Paths of a container's spec, as the host has them.
pub(crate) struct BundlePaths<'a> {
    /// The bundle directory relative paths are taken against.
    pub(crate) bundle: &'a Path,
}

impl HostPaths for BundlePaths<'_> {
    fn resolve(&mut self, path: &Path) -> std::io::Result<PathBuf> {
        resolve_in_bundle(self.bundle, path)
    }

    fn engine_volume(&mut self, data: &VolumeData<'_>) -> std::io::Result<Option<EngineVolume>> {
        let Some(source) = volume_source(data)? else {
            return Ok(None);
        };
        let data_dir = data.volume_dir().join("_data");
        let closed_to_others = !eci_idmap::reach::reachable_by_others(&data_dir)?;
        Ok(Some(EngineVolume {
            source,
            closed_to_others,
        }))
    }
}

/// What a Docker engine has at `data`, or `None` when the directories are not an engine's: the
/// volumes directory must hold the local driver's database, and it and the volume's directory
/// must be root's and writable by root alone, so that no other host user can have made them.
fn volume_source(data: &VolumeData<'_>) -> std::io::Result<Option<VolumeSource>> {
    let volume_dir = data.volume_dir();
    if !owned_by_root_alone(data.volumes_dir, true)?
        || !owned_by_root_alone(&volume_dir, true)?
        || !owned_by_root_alone(&data.volumes_dir.join(VOLUMES_DATABASE), false)?
    {
        return Ok(None);
    }
    let data_dir = volume_dir.join("_data");
    let data_stat = statx_nofollow(&data_dir)?;
    if data_stat.stx_mode as u32 & libc::S_IFMT != libc::S_IFDIR {
        return Ok(None);
    }
    if data_stat.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 == 0 {
        return Ok(Some(VolumeSource::Directory));
    }
    let options = match std::fs::read(volume_dir.join(VOLUME_OPTIONS_FILE)) {
        Ok(bytes) => LocalVolumeOptions::parse(&bytes).map_err(std::io::Error::other)?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => LocalVolumeOptions::default(),
        Err(err) => return Err(err),
    };
    Ok(Some(mounted_source(&data_dir, &data_stat, &options)?))
}

/// What is mounted at `data_dir`, which the local driver mounted with `options`: the options
/// say what it meant to mount, the kernel whether that is what is there.
fn mounted_source(
    data_dir: &Path,
    data_stat: &libc::statx,
    options: &LocalVolumeOptions,
) -> std::io::Result<VolumeSource> {
    if let Some(device) = options.bind_device() {
        let other = |what: String| Ok(VolumeSource::Other { what });
        if !device.is_absolute() {
            return other(format!("a bind of the relative path {}", device.display()));
        }
        let Ok(resolved) = std::fs::canonicalize(device) else {
            return other(format!("a bind of {}, which is gone", device.display()));
        };
        let device_stat = statx_nofollow(&resolved)?;
        let same = (
            device_stat.stx_dev_major,
            device_stat.stx_dev_minor,
            device_stat.stx_ino,
        ) == (
            data_stat.stx_dev_major,
            data_stat.stx_dev_minor,
            data_stat.stx_ino,
        );
        if !same {
            return other(format!(
                "a mount that is not the bind of {} its options name",
                resolved.display()
            ));
        }
        return Ok(VolumeSource::Bind { device: resolved });
    }
    let fs_type = statfs(data_dir)?.filesystem_type();
    if options.mount_type == "tmpfs" && fs_type == TMPFS_MAGIC {
        return Ok(VolumeSource::Tmpfs);
    }
    let named = if options.mount_type.is_empty() {
        format!("{:#x}", fs_type.0)
    } else {
        options.mount_type.clone()
    };
    Ok(VolumeSource::Other {
        what: format!("a filesystem of type {named}"),
    })
}

/// Whether `path` (not followed if a symlink) is root's and writable by no one else, and is a
/// directory or, when `directory` is false, a regular file. `false` when it is missing.
fn owned_by_root_alone(path: &Path, directory: bool) -> std::io::Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    let kind_fits = if directory {
        meta.is_dir()
    } else {
        meta.is_file()
    };
    Ok(kind_fits && meta.uid() == 0 && meta.mode() & 0o022 == 0)
}

/// statx of `path` without following a final symlink, with the mount-root attribute.
fn statx_nofollow(path: &Path) -> std::io::Result<libc::statx> {
    let name = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: an all-zero statx is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and outlives the call; `stx` is a valid out pointer.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC,
            libc::STATX_TYPE | libc::STATX_INO,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A data root of the engine's shape in a fresh directory under /tmp.
    fn data_root() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir_in("/tmp").unwrap();
        let volumes = root.path().join("volumes");
        std::fs::create_dir_all(volumes.join("v/_data")).unwrap();
        std::fs::write(volumes.join(VOLUMES_DATABASE), b"").unwrap();
        for dir in [volumes.clone(), volumes.join("v")] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o701)).unwrap();
        }
        (root, volumes)
    }

    fn data(volumes: &Path) -> VolumeData<'_> {
        VolumeData {
            volumes_dir: volumes,
            name: "v",
        }
    }

    #[test]
    fn a_plain_volume_of_an_engine_is_a_directory() {
        let (_root, volumes) = data_root();
        assert_eq!(
            volume_source(&data(&volumes)).unwrap(),
            Some(VolumeSource::Directory)
        );
    }

    #[test]
    fn directories_another_user_could_have_made_are_no_engines() {
        let (_root, volumes) = data_root();
        std::fs::set_permissions(volumes.join("v"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        assert_eq!(volume_source(&data(&volumes)).unwrap(), None);

        let (_root, volumes) = data_root();
        std::os::unix::fs::chown(volumes.join(VOLUMES_DATABASE), Some(1000), None).unwrap();
        assert_eq!(volume_source(&data(&volumes)).unwrap(), None);

        let (_root, volumes) = data_root();
        std::fs::remove_file(volumes.join(VOLUMES_DATABASE)).unwrap();
        assert_eq!(volume_source(&data(&volumes)).unwrap(), None);

        let (_root, volumes) = data_root();
        std::fs::remove_dir(volumes.join("v/_data")).unwrap();
        std::os::unix::fs::symlink("/etc", volumes.join("v/_data")).unwrap();
        assert_eq!(volume_source(&data(&volumes)).unwrap(), None);
    }

    fn write_options(volumes: &Path, json: &str) {
        std::fs::write(volumes.join("v").join(VOLUME_OPTIONS_FILE), json).unwrap();
    }

    #[test]
    fn what_the_driver_mounted_is_checked_against_its_options() {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        // In a mount namespace of this thread's own (the test thread ends with it).
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("needs root");
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap();
        let (root, volumes) = data_root();
        let data_dir = volumes.join("v/_data");
        let source = || volume_source(&data(&volumes)).unwrap().unwrap();
        let none = None::<&str>;

        mount(
            Some("tmpfs"),
            &data_dir,
            Some("tmpfs"),
            MsFlags::empty(),
            none,
        )
        .unwrap();
        write_options(
            &volumes,
            r#"{"MountType":"tmpfs","MountOpts":"","MountDevice":"tmpfs"}"#,
        );
        assert_eq!(source(), VolumeSource::Tmpfs);
        write_options(
            &volumes,
            r#"{"MountType":"ext4","MountDevice":"/dev/sda1"}"#,
        );
        assert_eq!(
            source(),
            VolumeSource::Other {
                what: "a filesystem of type ext4".into()
            }
        );
        umount2(&data_dir, MntFlags::MNT_DETACH).unwrap();

        // A bind of a tmpfs host directory (/run, say) is not the tmpfs the options name.
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        mount(
            Some("tmpfs"),
            &shared,
            Some("tmpfs"),
            MsFlags::empty(),
            none,
        )
        .unwrap();
        mount(Some(&shared), &data_dir, none, MsFlags::MS_BIND, none).unwrap();
        let bind = format!(
            r#"{{"MountType":"none","MountOpts":"bind","MountDevice":"{}"}}"#,
            shared.display()
        );
        write_options(&volumes, &bind);
        assert_eq!(
            source(),
            VolumeSource::Bind {
                device: shared.clone()
            }
        );
        let elsewhere = r#"{"MountType":"none","MountOpts":"rbind","MountDevice":"/etc"}"#;
        write_options(&volumes, elsewhere);
        assert!(
            matches!(source(), VolumeSource::Other { what } if what.contains("not the bind of /etc")),
        );
        write_options(
            &volumes,
            r#"{"MountType":"tmpfs","MountOpts":"bind","MountDevice":"tmpfs"}"#,
        );
        assert!(matches!(source(), VolumeSource::Other { what } if what.contains("relative")));
        std::fs::remove_file(volumes.join("v").join(VOLUME_OPTIONS_FILE)).unwrap();
        assert!(matches!(source(), VolumeSource::Other { what } if what.contains("0x1021994")));
        umount2(&data_dir, MntFlags::MNT_DETACH).unwrap();
        umount2(&shared, MntFlags::MNT_DETACH).unwrap();
    }
}
