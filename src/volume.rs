//! The host facts spec hardening asks for: bind sources resolved against the bundle, and what a
//! Docker engine has at a volume's data directory (see [`eci_policy::volume`] for the rules).

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use eci_policy::harden::HostPaths;
use eci_policy::volume::{
    DirIdentity, EngineVolume, LocalVolumeOptions, VolumeData, VolumeSource, VOLUMES_DATABASE,
    VOLUME_OPTIONS_FILE,
};
use nix::sys::statfs::{fstatfs, TMPFS_MAGIC};

use crate::container::resolve_in_bundle;

/// Paths of a container's spec, as the host has them.
pub(crate) struct BundlePaths<'a> {
    /// The bundle directory relative paths are taken against.
    bundle: &'a Path,
    /// The runtime's mount table, read once when first asked about.
    mounts: Option<Vec<eci_mount::mountinfo::MountInfo>>,
}

impl<'a> BundlePaths<'a> {
    /// The paths of a spec whose bundle is `bundle`.
    pub(crate) fn new(bundle: &'a Path) -> BundlePaths<'a> {
        BundlePaths {
            bundle,
            mounts: None,
        }
    }
}

impl HostPaths for BundlePaths<'_> {
    fn resolve(&mut self, path: &Path) -> std::io::Result<PathBuf> {
        resolve_in_bundle(self.bundle, path)
    }

    fn closed_between(&mut self, rule: &Path, path: &Path) -> std::io::Result<Option<PathBuf>> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        const OTHERS_SEARCH: u32 = 0o001;
        let Ok(below) = path.strip_prefix(rule) else {
            return Ok(None);
        };
        // The source itself is not judged: bound plain (a writable share), its own mode keeps
        // the container out as it keeps other host users out. (In a read-only share, bound
        // idmapped, container root is its files' owners anyway: see ARCHITECTURE.md.)
        let Some(parent) = below.parent() else {
            return Ok(None);
        };
        // A source in the container's own bundle (`bundle/data` beside its root, where the
        // caller put them) is the container's, however closed the directories holding it.
        let bundle = std::fs::canonicalize(self.bundle).ok();
        if bundle.is_some_and(|bundle| path.starts_with(bundle)) {
            return Ok(None);
        }
        let mut dir = rule.to_path_buf();
        for name in parent.components() {
            dir.push(name);
            let meta = std::fs::symlink_metadata(&dir)?;
            if meta.permissions().mode() & OTHERS_SEARCH != 0 {
                continue;
            }
            // A user's home directory, 0700 or 0750 on most distributions, is passed: its
            // user binds projects from it (`-v $HOME/src:/src`). Beyond it the container then
            // reads what that user lets others read, which other host users cannot reach
            // (eci cannot tell who asked for the container: /home is shared for its users).
            if !is_owners_home(&dir, meta.uid()) {
                return Ok(Some(dir));
            }
        }
        Ok(None)
    }

    fn kernel_mount(
        &mut self,
        path: &Path,
        recursive: bool,
    ) -> std::io::Result<Option<(PathBuf, String)>> {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        // The mount the path shows, as the kernel resolves it: the top of what is stacked or
        // moved there, whatever order the table lists them in.
        let flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT;
        let id = eci_ns::sys::mount_id_at(libc::AT_FDCWD, &name, flags)?;
        // Read once a create; again if the path's mount is newer than the table read.
        for fresh in [false, true] {
            if fresh || self.mounts.is_none() {
                // This thread's namespace, in which the path was resolved.
                let text = std::fs::read_to_string("/proc/thread-self/mountinfo")?;
                let mounts = eci_mount::mountinfo::parse(&text).map_err(std::io::Error::other)?;
                self.mounts = Some(mounts);
            }
            let mounts = self.mounts.as_deref().unwrap_or_default();
            if let Some(found) = kernel_mount_in(mounts, path, id, recursive) {
                return Ok(found);
            }
        }
        Err(std::io::Error::other(format!(
            "the mount of {} is not in the mount table",
            path.display()
        )))
    }

    fn engine_volume(&mut self, data: &VolumeData<'_>) -> std::io::Result<Option<EngineVolume>> {
        let Some((source, identity)) = volume_source(data)? else {
            return Ok(None);
        };
        let data_dir = data.volume_dir().join("_data");
        let closed_to_others = !eci_idmap::reach::reachable_by_others(&data_dir)?;
        Ok(Some(EngineVolume {
            source,
            identity,
            closed_to_others,
        }))
    }
}

/// In the mount table `mounts`, of which `id` is the mount `path` shows: the mount of a kernel
/// filesystem that a bind of `path` would show, that one or, if `recursive`, one of the
/// mounts below it under `path` (what open_tree's recursive copy takes). `None` if `id` is not
/// in the table; `Some(None)` if no kernel filesystem is shown.
fn kernel_mount_in(
    mounts: &[eci_mount::mountinfo::MountInfo],
    path: &Path,
    id: u64,
    recursive: bool,
) -> Option<Option<(PathBuf, String)>> {
    use eci_policy::harden::shows_host_kernel_objects;
    let own = mounts.iter().find(|m| u64::from(m.id) == id)?;
    let mut tree = vec![own];
    let mut next = 0;
    while recursive && next < tree.len() {
        let parent = tree[next].id;
        tree.extend(
            mounts.iter().filter(|m| {
                m.parent == parent && m.id != parent && m.mount_point.starts_with(path)
            }),
        );
        next += 1;
    }
    Some(
        tree.into_iter()
            .find(|m| shows_host_kernel_objects(&m.fstype))
            .map(|m| (m.mount_point.clone(), m.fstype.clone())),
    )
}

/// Whether `dir` is the home directory, as the user database has it, of `uid`, a user other
/// than root.
fn is_owners_home(dir: &Path, uid: u32) -> bool {
    if uid == 0 {
        return false;
    }
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => std::fs::canonicalize(&user.dir).is_ok_and(|home| home == dir),
        _ => false,
    }
}

/// What a Docker engine has at `data`, and which directory it is (the mounter binds it only if it
/// finds the same one), or `None` when the directories are not an engine's: the volumes
/// directory must hold the local driver's database, and it and the volume's directory must be
/// root's and writable by root alone, so that no other host user can have made them.
fn volume_source(
    data: &VolumeData<'_>,
) -> std::io::Result<Option<(VolumeSource, Option<DirIdentity>)>> {
    // Each directory opened once, the next one inside it, none through a symlink: the options
    // read and the directory judged are one volume's, whatever the engine removes and makes
    // meanwhile, and what is judged is the directory opened, whatever the path names later.
    let Some(volumes) = open_dir(None, data.volumes_dir)? else {
        return Ok(None);
    };
    if !owned_by_root_alone(&volumes, None)?
        || !owned_by_root_alone(&volumes, Some(VOLUMES_DATABASE))?
    {
        return Ok(None);
    }
    let Some(volume) = open_dir(Some(&volumes), Path::new(data.name))? else {
        return Ok(None);
    };
    if !owned_by_root_alone(&volume, None)? {
        return Ok(None);
    }
    let Some(opened) = open_dir(Some(&volume), Path::new("_data"))? else {
        return Ok(None);
    };
    let data_dir = data.volume_dir().join("_data");
    let data_stat = statx_fd(opened.as_raw_fd())?;
    let options = read_options(&volume, &data.volume_dir())?;
    let source = if !is_mount_root(&data_stat, &data_dir)? {
        // The driver mounts a volume with options only while a container uses it: checked
        // now, it would be bound as the empty directory and show whatever the driver mounts
        // later, through propagation or by winning the race to the mounter.
        if options.asks_for_a_mount() {
            VolumeSource::Other {
                what: "nothing yet (its options ask for a mount, made when a container using it \
                       starts)"
                    .into(),
            }
        } else {
            VolumeSource::Directory
        }
    } else {
        mounted_source(&opened, &data_stat, &options)?
    };
    if matches!(source, VolumeSource::Other { .. }) {
        return Ok(Some((source, None)));
    }
    let identity = eci_mount::exec::dir_identity(opened.as_fd()).map_err(|err| {
        std::io::Error::new(
            err.kind(),
            format!("telling which directory {} is: {err}", data_dir.display()),
        )
    })?;
    Ok(Some((source, Some(identity))))
}

/// `path` opened as a directory (O_PATH), inside `dir` if given; `None` if it is missing, not a
/// directory, or reached through a symlink.
fn open_dir(dir: Option<&OwnedFd>, path: &Path) -> std::io::Result<Option<OwnedFd>> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    let at = dir.map_or(libc::AT_FDCWD, |dir| dir.as_raw_fd());
    match openat2(at, path, how) {
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        Ok(fd) => Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) })),
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
            Ok(None)
        }
        Err(errno) => Err(errno.into()),
    }
}

/// The local driver's options for the volume whose directory is `volume` (`shown` in errors):
/// none when it keeps no options file. The file is root's, in a directory only root may
/// write; still read without following a link, and at most [`MOST_OPTIONS_BYTES`].
fn read_options(volume: &OwnedFd, shown: &Path) -> std::io::Result<LocalVolumeOptions> {
    use nix::fcntl::{openat, OFlag};
    use std::io::Read;
    let path = shown.join(VOLUME_OPTIONS_FILE);
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = match openat(
        Some(volume.as_raw_fd()),
        VOLUME_OPTIONS_FILE,
        flags,
        nix::sys::stat::Mode::empty(),
    ) {
        // SAFETY: openat returned a new descriptor that nothing else owns.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        Err(nix::errno::Errno::ENOENT) => return Ok(LocalVolumeOptions::default()),
        Err(errno) => {
            return Err(std::io::Error::new(
                std::io::Error::from(errno).kind(),
                format!("{}: {errno}", path.display()),
            ))
        }
    };
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.take(MOST_OPTIONS_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MOST_OPTIONS_BYTES {
        return Err(std::io::Error::other(format!(
            "{} is over {MOST_OPTIONS_BYTES} bytes",
            path.display()
        )));
    }
    LocalVolumeOptions::parse(&bytes)
        .map_err(|err| std::io::Error::other(format!("{}: {err}", path.display())))
}

/// The most a volume's options file may hold (the driver writes well under 1 KiB).
const MOST_OPTIONS_BYTES: u64 = 64 * 1024;

/// Whether `stat` (of `path`) is of a mount's root; an error where the kernel cannot say
/// (STATX_ATTR_MOUNT_ROOT is Linux 5.8's).
fn is_mount_root(stat: &libc::statx, path: &Path) -> std::io::Result<bool> {
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stat.stx_attributes_mask & bit == 0 {
        return Err(std::io::Error::other(format!(
            "the kernel does not say whether {} is a mount (STATX_ATTR_MOUNT_ROOT, Linux 5.8)",
            path.display()
        )));
    }
    Ok(stat.stx_attributes & bit != 0)
}

/// What is mounted at `data_dir`, which the local driver mounted with `options`: the options
/// say what it meant to mount, the kernel whether that is what is there.
fn mounted_source(
    data_dir: &OwnedFd,
    data_stat: &libc::statx,
    options: &LocalVolumeOptions,
) -> std::io::Result<VolumeSource> {
    if let Some(device) = options.bind_device() {
        let other = |what: String| Ok(VolumeSource::Other { what });
        if !device.is_absolute() {
            return other(format!("a bind of the relative path {}", device.display()));
        }
        // Opened once: the path checked and the directory compared are the same one, however
        // the path's directories change meanwhile.
        let Ok(opened) = open_path(device) else {
            return other(format!("a bind of {}, which is gone", device.display()));
        };
        let resolved = std::fs::read_link(format!("/proc/self/fd/{}", opened.as_raw_fd()))?;
        let device_stat = statx_fd(opened.as_raw_fd())?;
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
    let fs_type = fstatfs(data_dir)?.filesystem_type();
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

/// `path` opened as a place (O_PATH), symlinks followed.
fn open_path(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)
}

/// Whether `dir` (or `name` inside it, not followed if a symlink) is root's and writable by no
/// one else, and is a directory (or, for `name`, a regular file). `false` when it is missing.
fn owned_by_root_alone(dir: &OwnedFd, name: Option<&str>) -> std::io::Result<bool> {
    use nix::sys::stat::{fstat, fstatat, SFlag};
    let stat = match name {
        None => fstat(dir.as_raw_fd()),
        Some(name) => fstatat(
            Some(dir.as_raw_fd()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ),
    };
    let stat = match stat {
        Ok(stat) => stat,
        Err(nix::errno::Errno::ENOENT) => return Ok(false),
        Err(errno) => return Err(errno.into()),
    };
    let kind = SFlag::from_bits_truncate(stat.st_mode & libc::S_IFMT);
    let kind_fits = kind
        == if name.is_none() {
            SFlag::S_IFDIR
        } else {
            SFlag::S_IFREG
        };
    Ok(kind_fits && stat.st_uid == 0 && stat.st_mode & 0o022 == 0)
}

/// statx of what `fd` is.
fn statx_fd(fd: RawFd) -> std::io::Result<libc::statx> {
    statx_at(fd, c"", libc::AT_EMPTY_PATH)
}

fn statx_at(dir: RawFd, name: &CStr, flags: libc::c_int) -> std::io::Result<libc::statx> {
    // SAFETY: an all-zero statx is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and outlives the call; `stx` is a valid out pointer.
    let rc = unsafe {
        libc::statx(
            dir,
            name.as_ptr(),
            flags | libc::AT_STATX_DONT_SYNC,
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

    #[test]
    fn a_bind_shows_the_kernel_filesystem_it_lies_in_and_recursively_those_beneath() {
        // A procfs moved over a tmpfs at /mnt/m is listed before it, and on top.
        let table = "\
1 0 8:1 / / rw - ext4 /dev/vda rw
2 1 0:5 / /srv rw - tmpfs tmpfs rw
3 2 0:6 / /srv/chroot/proc rw - proc proc rw
4 2 0:7 / /srv/chroot/home rw - tmpfs tmpfs rw
5 1 0:8 / /mnt/p rw - proc proc rw
6 5 0:9 / /mnt/p rw - tmpfs tmpfs rw
7 8 0:10 / /mnt/m rw - proc proc rw
8 1 0:11 / /mnt/m rw - tmpfs tmpfs rw
9 3 0:12 / /srv/chroot/proc/fs/nfsd rw - nfsd nfsd rw
";
        let mounts = eci_mount::mountinfo::parse(table).unwrap();
        let found = |path: &str, id, recursive| {
            let found = kernel_mount_in(&mounts, Path::new(path), id, recursive).unwrap();
            found.map(|(at, fstype)| format!("{} {fstype}", at.display()))
        };
        assert_eq!(
            found("/srv", 2, true).as_deref(),
            Some("/srv/chroot/proc proc")
        );
        assert_eq!(
            found("/srv", 2, false),
            None,
            "a plain bind takes no submount"
        );
        assert_eq!(found("/srv/chroot/home", 4, true), None);
        assert_eq!(
            found("/srv/chroot/proc/1", 3, false).as_deref(),
            Some("/srv/chroot/proc proc")
        );
        assert_eq!(
            found("/srv/chroot/proc/fs/nfsd", 9, false).as_deref(),
            Some("/srv/chroot/proc/fs/nfsd nfsd")
        );
        // A tmpfs on top of a procfs shows no procfs; a procfs on top of a tmpfs does.
        assert_eq!(found("/mnt/p/x", 6, false), None);
        assert_eq!(found("/mnt/m/1", 7, false).as_deref(), Some("/mnt/m proc"));
        assert_eq!(
            found("/srv/chroot/procs", 2, true),
            None,
            "a name that only begins alike"
        );
        assert_eq!(
            kernel_mount_in(&mounts, Path::new("/x"), 99, true),
            None,
            "not in the table"
        );
    }

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

    fn source_of(volumes: &Path) -> Option<VolumeSource> {
        volume_source(&data(volumes))
            .unwrap()
            .map(|(source, _)| source)
    }

    fn identity_of(volumes: &Path) -> DirIdentity {
        volume_source(&data(volumes)).unwrap().unwrap().1.unwrap()
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
        assert_eq!(source_of(&volumes), Some(VolumeSource::Directory));
    }

    #[test]
    fn directories_another_user_could_have_made_are_no_engines() {
        let (_root, volumes) = data_root();
        std::fs::set_permissions(volumes.join("v"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        assert_eq!(source_of(&volumes), None);

        let (_root, volumes) = data_root();
        std::os::unix::fs::chown(volumes.join(VOLUMES_DATABASE), Some(1000), None).unwrap();
        assert_eq!(source_of(&volumes), None);

        let (_root, volumes) = data_root();
        std::fs::remove_file(volumes.join(VOLUMES_DATABASE)).unwrap();
        assert_eq!(source_of(&volumes), None);

        let (_root, volumes) = data_root();
        std::fs::remove_dir(volumes.join("v/_data")).unwrap();
        std::os::unix::fs::symlink("/etc", volumes.join("v/_data")).unwrap();
        assert_eq!(source_of(&volumes), None);
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
        let source = || source_of(&volumes).unwrap();
        let none = None::<&str>;

        let plain = identity_of(&volumes);
        let opened = std::fs::File::open(&data_dir).unwrap();
        assert_eq!(
            plain,
            eci_mount::exec::dir_identity(opened.as_fd()).unwrap()
        );
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
        let mounted = identity_of(&volumes);
        assert_ne!(mounted, plain, "a mount there is another directory");
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

        // A bind volume: the directory its options name must be the one mounted there.
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

        // Not mounted: a plain volume is its directory, one with options is not mounted yet
        // and would show what the driver mounts later.
        assert_eq!(source(), VolumeSource::Directory);
        write_options(&volumes, &bind);
        assert!(
            matches!(source(), VolumeSource::Other { what } if what.starts_with("nothing yet"))
        );
    }

    #[test]
    fn an_options_file_that_is_no_regular_file_is_an_error() {
        let (_root, volumes) = data_root();
        let options = volumes.join("v").join(VOLUME_OPTIONS_FILE);
        std::os::unix::fs::symlink("/etc/passwd", &options).unwrap();
        assert!(volume_source(&data(&volumes)).is_err());
        std::fs::remove_file(&options).unwrap();
        std::fs::write(&options, vec![b' '; 70 * 1024]).unwrap();
        let err = volume_source(&data(&volumes)).unwrap_err();
        assert!(err.to_string().contains("over 65536 bytes"), "{err}");
    }
}
