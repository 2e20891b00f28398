//! # eci: Enhanced Container Isolation as a library
//!
//! Containers that may be privileged, run Docker or Kubernetes inside, and still cannot reach
//! the host's kernel, files or other containers. This crate is the one facade to link against;
//! the work is done by its member crates:
//!
//! | crate | does |
//! | --- | --- |
//! | [`eci_policy`] | pure decisions: settings, spec hardening, mount verdicts |
//! | [`eci_idmap`] | exclusive host ID blocks, crash-safe; user namespace maps |
//! | [`eci_ns`] | clone3 into namespaces, parent/child channel, pidfds, helpers |
//! | [`eci_mount`] | the container's mount table, locked by the kernel |
//! | [`eci_seccomp`] | BPF filters and the supervisor that vets mount calls |
//!
//! Every container gets, whatever its spec asks:
//! - its own user namespace, mapped to an exclusive block of host IDs;
//! - new PID, network, IPC, UTS, mount and cgroup namespaces (sharing the host's is refused);
//! - initial mounts the kernel locks (no unmounting a mask, no remounting read-only writable);
//! - a seccomp filter refusing global kernel operations, and a supervisor that vets and itself
//!   performs the container's mount calls.
//!
//! ```no_run
//! use eci::{ContainerConfig, HostRootfs, Runtime, RuntimeConfig};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let rootfs = HostRootfs::create("/run/eci/rootfs/hello".as_ref())?;
//! let spec = rootfs.spec(vec!["sh".into(), "-c".into(), "id; cat /proc/self/uid_map".into()]);
//! let mut container = runtime.create(ContainerConfig::new("hello", spec))?;
//! println!("container root is host uid {}", container.id_mapping().host_start);
//! container.start()?;
//! let status = container.wait()?;
//! container.delete()?;
//! rootfs.remove()?;
//! std::process::exit(status.code());
//! # Ok::<(), eci::Error>(())
//! ```

mod apparmor;
mod cgroup;
mod cgroupfs;
mod container;
mod device_filter;
pub mod docker_proxy;
mod error;
mod exec;
mod init;
mod orphan;
pub mod probe;
mod rootfs;
mod runtime;
mod supervise;
mod takeover;
mod virt;
mod volume;

pub use apparmor::enabled as apparmor_enabled;
pub use container::{valid_container_id, Container, ContainerConfig, ContainerImage, State, Stdio};
pub use eci_idmap::Durability;
pub use eci_ns::{ExitStatus, InitParent};
pub use eci_policy::harden::Change;
pub use eci_policy::ids::IdMapping;
pub use eci_policy::Policy;
pub use error::{load_settings, load_spec, Error, Result};
pub use exec::ExecProcess;
pub use init::ProcessError;
pub use orphan::{orphan_init, orphan_paused, remove_orphan, signal_orphan};
pub use rootfs::{all_capabilities, privileged_spec, HostRootfs};
pub use runtime::{Runtime, RuntimeConfig, HOST_LEASES_DIR};
pub use takeover::TakenOver;
pub use virt::VirtualFilesServer;

pub use eci_idmap;
pub use eci_mount;
pub use eci_ns;
pub use eci_policy;
pub use eci_seccomp;
pub use oci_spec;
