//! A root filesystem made from the host's own programs: /usr, /bin, /sbin and /lib* bound
//! read-only, with a small /etc of its own. Nothing to download; any Linux host works.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxNamespace, LinuxNamespaceType, Mount, Process, Root, Spec,
};

use crate::error::{Error, Result};

/// Host directories bound read-only into the root (symlinks, as on merged-/usr systems, are
/// copied as symlinks).
const HOST_DIRS: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Directories that are mount points or otherwise expected.
const EMPTY_DIRS: [&str; 11] = [
    "etc", "proc", "sys", "dev", "tmp", "run", "root", "home", "mnt", "var/tmp", "usr",
];

/// Tmpfs mounts that make a read-only root usable.
const TMPFS_DIRS: [&str; 4] = ["/tmp", "/run", "/var/tmp", "/root"];

const ETC_FILES: [(&str, &str); 6] = [
    ("passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
    ("group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"),
    ("hostname", "eci\n"),
    ("hosts", "127.0.0.1\tlocalhost eci\n::1\tlocalhost ip6-localhost\n"),
    ("nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n"),
    ("resolv.conf", ""),
];

/// A root directory built from the host's programs. Removed by [`HostRootfs::remove`].
#[derive(Debug)]
pub struct HostRootfs {
    dir: PathBuf,
    binds: Vec<PathBuf>,
}

impl HostRootfs {
    /// Builds the root in `dir`, which must not exist yet.
    ///
    /// ```no_run
    /// let rootfs = eci::HostRootfs::create("/run/eci/rootfs/demo".as_ref())?;
    /// let spec = rootfs.spec(vec!["sh".into(), "-c".into(), "id".into()]);
    /// # Ok::<(), eci::Error>(())
    /// ```
    pub fn create(dir: &Path) -> Result<HostRootfs> {
        std::fs::create_dir_all(dir.parent().unwrap_or(Path::new("/")))
            .map_err(Error::io("creating the rootfs parent"))?;
        std::fs::create_dir(dir)
            .map_err(Error::io(format!("creating the rootfs {}", dir.display())))?;
        let built = Self::fill(dir);
        if built.is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
        built
    }

    fn fill(dir: &Path) -> Result<HostRootfs> {
        let io = |what: &str, path: &Path| Error::io(format!("{what} {}", path.display()));
        for sub in EMPTY_DIRS {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(io("creating", &path))?;
        }
        let mut binds = Vec::new();
        for host in HOST_DIRS {
            let host = Path::new(host);
            let inside = dir.join(host.strip_prefix("/").expect("absolute"));
            match std::fs::symlink_metadata(host) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let target = std::fs::read_link(host).map_err(io("reading", host))?;
                    let _ = std::fs::remove_dir(&inside);
                    std::os::unix::fs::symlink(&target, &inside).map_err(io("linking", &inside))?;
                }
                Ok(meta) if meta.is_dir() => {
                    std::fs::create_dir_all(&inside).map_err(io("creating", &inside))?;
                    binds.push(host.to_path_buf());
                }
                _ => {}
            }
        }
        for (name, text) in ETC_FILES {
            let path = dir.join("etc").join(name);
            std::fs::write(&path, text).map_err(io("writing", &path))?;
        }
        let mtab = dir.join("etc/mtab");
        std::os::unix::fs::symlink("../proc/self/mounts", &mtab).map_err(io("linking", &mtab))?;
        Ok(HostRootfs {
            dir: dir.to_path_buf(),
            binds,
        })
    }

    /// Copies a program into the root's own `/.eci/bin` (on the spec's PATH) as `name`.
    pub fn add_tool(&self, program: &Path, name: &str) -> Result<()> {
        let bin = self.dir.join(".eci/bin");
        std::fs::create_dir_all(&bin).map_err(Error::io(format!("creating {}", bin.display())))?;
        std::fs::copy(program, bin.join(name))
            .map_err(Error::io(format!("copying {}", program.display())))?;
        Ok(())
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A spec that runs `args` as root with every capability (inside the container's own user
    /// namespace): a privileged container, which eci keeps from reaching the host.
    pub fn spec(&self, args: Vec<String>) -> Spec {
        privileged_spec(&self.dir, args, &self.binds)
    }

    /// Removes the root directory (nothing is mounted on it outside the container).
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir)
            .map_err(Error::io(format!("removing {}", self.dir.display())))
    }
}

/// A spec for a privileged container over `root` (read-only) running `args` as root with every
/// capability, with `binds` (host directories) bound read-only at the same paths and tmpfs at
/// /tmp, /run, /var/tmp and /root.
pub fn privileged_spec(root: &Path, args: Vec<String>, binds: &[PathBuf]) -> Spec {
    let mut spec = Spec::default();
    let mut root_entry = Root::default();
    root_entry.set_path(root.to_path_buf());
    root_entry.set_readonly(Some(true));
    spec.set_root(Some(root_entry));
    spec.set_hostname(Some("eci".into()));
    let mut mounts: Vec<Mount> = Vec::new();
    for host in binds {
        let mut bind = Mount::default();
        bind.set_destination(host.clone());
        bind.set_typ(Some("bind".into()));
        bind.set_source(Some(host.clone()));
        bind.set_options(Some(vec![
            "rbind".into(),
            "ro".into(),
            "nosuid".into(),
            "nodev".into(),
        ]));
        mounts.push(bind);
    }
    for dest in TMPFS_DIRS {
        let mut tmpfs = Mount::default();
        tmpfs.set_destination(PathBuf::from(dest));
        tmpfs.set_typ(Some("tmpfs".into()));
        tmpfs.set_source(Some("tmpfs".into()));
        tmpfs.set_options(Some(vec![
            "nosuid".into(),
            "nodev".into(),
            "mode=1777".into(),
        ]));
        mounts.push(tmpfs);
    }
    spec.set_mounts(Some(mounts));
    let mut process = Process::default();
    process.set_args(Some(args));
    process.set_env(Some(vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/.eci/bin".into(),
        "HOME=/root".into(),
        "TERM=xterm".into(),
    ]));
    process.set_no_new_privileges(Some(false));
    process.set_rlimits(None);
    process.set_capabilities(Some(all_capabilities()));
    spec.set_process(Some(process));
    let mut linux = spec.linux().clone().unwrap_or_default();
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::User,
    ];
    linux.set_namespaces(Some(
        namespaces
            .into_iter()
            .map(|typ| {
                let mut ns = LinuxNamespace::default();
                ns.set_typ(typ);
                ns
            })
            .collect(),
    ));
    spec.set_linux(Some(linux));
    spec
}

/// Every capability, as `docker run --privileged` asks.
pub fn all_capabilities() -> LinuxCapabilities {
    use Capability::*;
    let all: oci_spec::runtime::Capabilities = [
        AuditControl,
        AuditRead,
        AuditWrite,
        BlockSuspend,
        Bpf,
        CheckpointRestore,
        Chown,
        DacOverride,
        DacReadSearch,
        Fowner,
        Fsetid,
        IpcLock,
        IpcOwner,
        Kill,
        Lease,
        LinuxImmutable,
        MacAdmin,
        MacOverride,
        Mknod,
        NetAdmin,
        NetBindService,
        NetBroadcast,
        NetRaw,
        Perfmon,
        Setgid,
        Setfcap,
        Setpcap,
        Setuid,
        SysAdmin,
        SysBoot,
        SysChroot,
        SysModule,
        SysNice,
        SysPacct,
        SysPtrace,
        SysRawio,
        SysResource,
        SysTime,
        SysTtyConfig,
        Syslog,
        WakeAlarm,
    ]
    .into_iter()
    .collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(all.clone()));
    caps.set_effective(Some(all.clone()));
    caps.set_permitted(Some(all));
    caps.set_inheritable(None);
    caps.set_ambient(None);
    caps
}
