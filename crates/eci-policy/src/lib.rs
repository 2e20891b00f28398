//! Pure isolation decisions for eci. Nothing here makes a syscall, so every function is cheap to
//! call, deterministic and easy to test exhaustively.
//!
//! - [`ids`]: host ID blocks and user namespace mappings;
//! - [`settings`]: the settings every decision reads ([`Policy`]) and its built-in defaults;
//! - [`document`]: the JSON settings document an administrator writes, parsed into a [`Policy`];
//! - [`overrides`]: per-container overrides from OCI annotations, and the locks that forbid them;
//! - [`paths`]: which host paths may be bind-mounted;
//! - [`reach`]: whether host users other than root can reach a directory;
//! - [`root`]: which host directories may be a container's root filesystem;
//! - [`harden`]: turning any OCI spec into one that eci will run;
//! - [`volume`]: which Docker volumes a container may mount, though they live in the engine's
//!   data root;
//! - [`image`]: image references, and which images may mount the Docker socket;
//! - [`docker_api`]: which docker command an Engine API request is, and whether it is allowed;
//! - [`mount`]: the verdict on each mount syscall a container makes;
//! - [`caps`]: capability numbers.
//!
//! ```
//! use eci_policy::harden::{harden, HardenContext};
//! use eci_policy::{caps::CapSet, Policy};
//! use oci_spec::runtime::Spec;
//! use std::path::Path;
//!
//! let policy = Policy::default();
//! let block = policy.id_pool.block(0).unwrap();
//! let ctx = HardenContext { policy: &policy, block, runtime_caps: CapSet::ALL };
//! let hardened = harden(Spec::default(), &ctx, &mut |p: &Path| Ok(p.to_path_buf())).unwrap();
//! for change in &hardened.report {
//!     println!("{change}");
//! }
//! ```

pub mod caps;
pub mod docker_api;
pub mod document;
pub mod harden;
pub mod ids;
pub mod image;
pub mod mount;
pub mod overrides;
pub mod paths;
pub mod reach;
pub mod root;
pub mod settings;
pub mod volume;

pub use settings::Policy;
