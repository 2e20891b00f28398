//! The container's mount table, built so that the kernel locks it.
//!
//! The runtime plans every mount from the hardened spec ([`plan::MountPlan::from_spec`]); the
//! mounter process of `eci-ns` executes the plan ([`plan::MountPlan::execute`]) with host
//! credentials in a mount namespace owned by the host user namespace, then pivots into the
//! rootfs. When the container's init later enters a mount namespace of its own, every one of
//! these mounts is locked: it cannot be unmounted to reveal what it covers, nor made writable.
//!
//! - [`options`]: OCI mount options to mount(2) flags;
//! - [`plan`]: the plan (rootfs, spec mounts, a minimal /dev, masks, read-only paths);
//! - [`exec`]: its allocation-free execution;
//! - [`mountinfo`]: reading /proc/PID/mountinfo.
//!
//! ```no_run
//! use eci_mount::plan::MountPlan;
//! use eci_policy::ids::IdBlock;
//!
//! let spec = oci_spec::runtime::Spec::load("bundle/config.json")?;
//! let block = IdBlock::new(1 << 28, 65536).unwrap();
//! let plan = MountPlan::from_spec(&spec, "/abs/bundle/rootfs".as_ref(), block)?;
//! // In the mounter process (see eci_ns::spawn), which knows the init and whether the runtime
//! // could idmap the rootfs:
//! let ctx = eci_mount::exec::ExecContext {
//!     init_pid: 4242,
//!     rootfs: eci_mount::exec::RootfsMount::Idmapped,
//!     // A plan without late mounts (MountPlan::with_unmountable) needs no second phase.
//!     late: None,
//! };
//! if let Err(failure) = plan.execute(&ctx) {
//!     eprintln!("{}: {}", plan.explain(failure.step), failure.errno);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod exec;
pub mod mountinfo;
pub mod options;
pub mod plan;
pub mod virt;

pub use plan::{MountPlan, PlanError};
