//! Docker's named and anonymous volumes. Their data lives under the engine's data root
//! (`/var/lib/docker/volumes/NAME/_data`), a tree no container may bind by default: it also holds
//! every image layer and every other container's files. A volume's own data directory is the
//! exception, since the engine made it to be mounted into containers. Only the data roots the
//! policy names count ([`crate::Policy::engine_data_roots`]: a tree shaped like one elsewhere,
//! in an image layer say, is anyone's), and only against a rule that restricts the whole data
//! root (or no rule at all): a rule on the volumes, or on one volume, still holds. The engine's
//! `local` driver may also have mounted something else there (`--opt type=none --opt o=bind
//! --opt device=/etc` makes any host path a "volume"), so what it is decides whether it is
//! allowed:
//!
//! - a plain directory, or a tmpfs the driver made: allowed, idmapped when no host user but root
//!   can reach it (its files then show the owners they have on disk, as in any other container
//!   that mounts the volume);
//! - a bind of a host path: allowed when that path is, by the same rules as any bind;
//! - anything else (a block device's filesystem, NFS, CIFS, an overlay of host paths): refused,
//!   since its contents may be the host's own files.
//!
//! Telling what is mounted takes syscalls: the caller finds out ([`VolumeSource`]); this module
//! recognises the path and reads the driver's record of the options.
//!
//! ```
//! use eci_policy::volume::{volume_data, LocalVolumeOptions};
//! use std::path::{Path, PathBuf};
//!
//! let roots = [PathBuf::from("/var/lib/docker")];
//! let data = volume_data(Path::new("/var/lib/docker/volumes/db/_data"), &roots).unwrap();
//! assert_eq!(data.volumes_dir, Path::new("/var/lib/docker/volumes"));
//! assert_eq!(data.name, "db");
//! let in_a_layer = Path::new("/var/lib/docker/overlay2/x/diff/volumes/db/_data");
//! assert!(volume_data(in_a_layer, &roots).is_none());
//!
//! let opts = br#"{"MountType":"none","MountOpts":"bind","MountDevice":"/srv/db"}"#;
//! let opts = LocalVolumeOptions::parse(opts).unwrap();
//! assert_eq!(opts.bind_device(), Some(Path::new("/srv/db")));
//! ```

use std::path::{Component, Path, PathBuf};

/// The file, in the volumes directory, that marks it as a Docker engine's: the local driver's
/// database of volumes.
pub const VOLUMES_DATABASE: &str = "metadata.db";

/// The file, in a volume's directory, where the local driver keeps the options it mounts with.
pub const VOLUME_OPTIONS_FILE: &str = "opts.json";

/// A host path shaped as a volume's data directory: `VOLUMES_DIR/NAME/_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeData<'p> {
    /// The volumes directory of the engine's data root.
    pub volumes_dir: &'p Path,
    /// The volume's name.
    pub name: &'p str,
}

impl VolumeData<'_> {
    /// The volume's own directory, which holds `_data` and the options file.
    pub fn volume_dir(&self) -> PathBuf {
        self.volumes_dir.join(self.name)
    }
}

/// Recognises `path` (absolute, with every symlink resolved) as `ROOT/volumes/NAME/_data`, for
/// `ROOT` one of `data_roots` and `NAME` a name Docker gives volumes ([`valid_volume_name`]).
/// Says nothing about whether an engine made it: the caller checks that on the host.
pub fn volume_data<'p>(path: &'p Path, data_roots: &[PathBuf]) -> Option<VolumeData<'p>> {
    if !path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return None;
    }
    if path.file_name()? != "_data" {
        return None;
    }
    let volume_dir = path.parent()?;
    let name = volume_dir.file_name()?.to_str()?;
    let volumes_dir = volume_dir.parent()?;
    let root = volumes_dir.parent()?;
    let known_root = data_roots.iter().any(|r| r.as_path() == root);
    if volumes_dir.file_name()? != "volumes" || !known_root || !valid_volume_name(name) {
        return None;
    }
    Some(VolumeData { volumes_dir, name })
}

/// Whether Docker would name a volume `name`: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (an anonymous
/// volume's is 64 hexadecimal digits).
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// What the engine has at a volume's data directory, as the caller found it on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSource {
    /// A directory on the data root's own filesystem, not a mount point.
    Directory,
    /// A tmpfs mounted there (`--opt type=tmpfs`).
    Tmpfs,
    /// A bind of a host directory (`--opt o=bind --opt device=PATH`), with the device path
    /// resolved and found to be the very directory mounted there.
    Bind {
        /// The host directory bound there, every symlink resolved.
        device: PathBuf,
    },
    /// Anything else mounted there.
    Other {
        /// What the caller could say about it: its filesystem type, or how the options file and
        /// the mount disagree.
        what: String,
    },
}

/// Which directory a path named when it was checked: its device, inode and file handle (which
/// name_to_handle_at(2) gives, with the inode's generation: an inode number freed by a removed
/// volume and given to a new directory gets a new generation). The mounter opens the path again
/// later and binds what it finds only if it is still this directory: the engine may have
/// removed the volume and made another of the same name meanwhile, with a host path mounted
/// there. (Mount IDs cannot tell: the mounter works in a copy of the host's mount namespace,
/// where every mount has an ID of its own.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirIdentity {
    /// The device's major number.
    pub dev_major: u32,
    /// The device's minor number.
    pub dev_minor: u32,
    /// The inode number.
    pub ino: u64,
    /// The file handle's type, as the filesystem encodes it.
    pub handle_type: i32,
    /// The file handle's bytes (at most [`MOST_HANDLE_BYTES`]).
    pub handle: Vec<u8>,
}

/// The most bytes a file handle has (MAX_HANDLE_SZ).
pub const MOST_HANDLE_BYTES: usize = 128;

/// The mount option, eci's own, that carries a [`DirIdentity`] to the mounter.
pub const IDENTITY_OPTION: &str = "x-eci.identity=";

impl DirIdentity {
    /// The mount option that carries it:
    /// `x-eci.identity=MAJOR:MINOR:INODE:HANDLE_TYPE:HANDLE_IN_HEX`.
    ///
    /// ```
    /// use eci_policy::volume::DirIdentity;
    /// let id = DirIdentity { dev_major: 8, dev_minor: 1, ino: 42, handle_type: 1, handle: vec![0xab, 1] };
    /// assert_eq!(id.to_option(), "x-eci.identity=8:1:42:1:ab01");
    /// assert_eq!(DirIdentity::from_option(&id.to_option()), Some(id));
    /// ```
    pub fn to_option(&self) -> String {
        let hex: String = self.handle.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{IDENTITY_OPTION}{}:{}:{}:{}:{hex}",
            self.dev_major, self.dev_minor, self.ino, self.handle_type
        )
    }

    /// Reads the option back; `None` when `option` is not one.
    pub fn from_option(option: &str) -> Option<DirIdentity> {
        let mut parts = option.strip_prefix(IDENTITY_OPTION)?.split(':');
        let mut number = || -> Option<i128> { parts.next()?.parse().ok() };
        let (dev_major, dev_minor, ino, handle_type) = (number()?, number()?, number()?, number()?);
        let hex = parts.next()?;
        let well_formed = hex.len() % 2 == 0
            && hex.len() <= 2 * MOST_HANDLE_BYTES
            && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if parts.next().is_some() || !well_formed {
            return None;
        }
        let handle = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(DirIdentity {
            dev_major: u32::try_from(dev_major).ok()?,
            dev_minor: u32::try_from(dev_minor).ok()?,
            ino: u64::try_from(ino).ok()?,
            handle_type: i32::try_from(handle_type).ok()?,
            handle,
        })
    }
}

/// What the caller found at a volume's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVolume {
    /// What is there.
    pub source: VolumeSource,
    /// Which directory it is: needed for what may be mounted, not asked of what is refused
    /// (an overlay gives no file handle).
    pub identity: Option<DirIdentity>,
    /// Whether the directories above it keep every host user but root out (see
    /// [`crate::reach`]), as Docker's 0710 data root does. Only then may a directory or tmpfs
    /// volume be idmapped, so that its files keep the owners they have for every other
    /// container: what the container's root creates there is host root's, and a setuid program
    /// made there must be out of host users' reach.
    pub closed_to_others: bool,
}

/// The options the `local` driver keeps for a volume in its options file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct LocalVolumeOptions {
    /// `--opt type`: the filesystem type, `none` for a bind.
    #[serde(rename = "MountType", default)]
    pub mount_type: String,
    /// `--opt o`: the mount options, comma-separated.
    #[serde(rename = "MountOpts", default)]
    pub mount_opts: String,
    /// `--opt device`: what is mounted, a host path for a bind.
    #[serde(rename = "MountDevice", default)]
    pub mount_device: String,
}

impl LocalVolumeOptions {
    /// Parses the options file.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Whether the driver mounts something for the volume when a container uses it: a device
    /// or a type is set (the driver's own test).
    pub fn asks_for_a_mount(&self) -> bool {
        !self.mount_device.is_empty() || !self.mount_type.is_empty()
    }

    /// The host path the volume binds, when its options ask for a bind (`bind` or `rbind`, as
    /// mount(8) reads them whatever the type says).
    pub fn bind_device(&self) -> Option<&Path> {
        let binds = self
            .mount_opts
            .split(',')
            .any(|o| o == "bind" || o == "rbind");
        (binds && !self.mount_device.is_empty()).then(|| Path::new(&self.mount_device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roots() -> Vec<PathBuf> {
        vec![
            PathBuf::from("/var/lib/docker"),
            PathBuf::from("/var/lib/docker/eci-test-1"),
        ]
    }

    #[test]
    fn only_the_data_directory_of_a_volume_of_a_known_root_is_recognised() {
        let roots = roots();
        let data = volume_data(
            Path::new("/var/lib/docker/eci-test-1/volumes/v1/_data"),
            &roots,
        )
        .unwrap();
        assert_eq!(
            data.volumes_dir,
            Path::new("/var/lib/docker/eci-test-1/volumes")
        );
        assert_eq!(data.name, "v1");
        assert_eq!(
            data.volume_dir(),
            Path::new("/var/lib/docker/eci-test-1/volumes/v1")
        );
        for path in [
            "/var/lib/docker/volumes/v1",
            "/var/lib/docker/volumes/v1/_data/sub",
            "/var/lib/docker/volumes/_data",
            "/volumes/v1/_data/..",
            "/var/lib/docker/volumes/v1/../_data",
            "/var/lib/docker/volume/v1/_data",
            "/var/lib/docker/overlay2/l/diff/volumes/v1/_data",
            "/var/lib/docker/eci-test-2/volumes/v1/_data",
            "/var/lib/docker/volumes/v/_data",
            "/var/lib/docker/volumes/-v/_data",
            "/var/lib/docker/volumes/v:1/_data",
            "volumes/v1/_data",
            "/",
        ] {
            assert_eq!(volume_data(Path::new(path), &roots), None, "{path}");
        }
        let anonymous = format!("/var/lib/docker/volumes/{}/_data", "a1".repeat(32));
        assert!(volume_data(Path::new(&anonymous), &roots).is_some());
    }

    #[test]
    fn the_options_file_says_whether_the_volume_is_a_bind() {
        let parse = |s: &str| LocalVolumeOptions::parse(s.as_bytes()).unwrap();
        let tmpfs = parse(
            r#"{"MountType":"tmpfs","MountOpts":"size=10m","MountDevice":"tmpfs","Quota":{"Size":0}}"#,
        );
        assert_eq!(tmpfs.bind_device(), None);
        let bind = parse(r#"{"MountType":"none","MountOpts":"ro,rbind","MountDevice":"/etc"}"#);
        assert_eq!(bind.bind_device(), Some(Path::new("/etc")));
        let ext4 =
            parse(r#"{"MountType":"ext4","MountOpts":"bindings=1","MountDevice":"/dev/sda1"}"#);
        assert_eq!(ext4.bind_device(), None);
        assert_eq!(parse("{}"), LocalVolumeOptions::default());
        assert!(LocalVolumeOptions::parse(b"[").is_err());
    }

    proptest! {
        #[test]
        fn a_recognised_path_is_rebuilt_from_its_parts(
            dirs in proptest::collection::vec("[a-z_]{1,6}", 0..4), name in "[a-zA-Z0-9_.-]{1,12}",
            known in any::<bool>(),
        ) {
            let mut root = PathBuf::from("/");
            root.extend(&dirs);
            let path = root.join("volumes").join(&name).join("_data");
            let roots = if known { vec![root.clone()] } else { roots() };
            let valid = name.len() >= 2 && name.as_bytes()[0].is_ascii_alphanumeric();
            let expected = valid && roots.contains(&root);
            match volume_data(&path, &roots) {
                Some(data) => {
                    prop_assert!(expected);
                    prop_assert_eq!(data.volume_dir().join("_data"), path.clone());
                    prop_assert_eq!(data.name, name.as_str());
                }
                None => prop_assert!(!expected),
            }
        }

        #[test]
        fn an_identity_reads_back_and_nothing_else_reads_as_one(
            dev_major in any::<u32>(), dev_minor in any::<u32>(), ino in any::<u64>(),
            handle_type in any::<i32>(),
            handle in proptest::collection::vec(any::<u8>(), 0..=MOST_HANDLE_BYTES),
            junk in ".{0,24}",
        ) {
            let id = DirIdentity { dev_major, dev_minor, ino, handle_type, handle };
            prop_assert_eq!(DirIdentity::from_option(&id.to_option()), Some(id.clone()));
            let extended = format!("{}:1", id.to_option());
            prop_assert_eq!(DirIdentity::from_option(&extended), None);
            if let Some(read) = DirIdentity::from_option(&junk) {
                prop_assert_eq!(read.to_option(), junk);
            }
        }

        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = LocalVolumeOptions::parse(&bytes).map(|o| o.bind_device().map(Path::to_path_buf));
        }
    }
}
