//! Exclusive host ID blocks for containers and the user namespace maps that use them.
//!
//! Every container gets its own block of host IDs (65536 by default), so no two containers'
//! roots are the same host user. The [`Allocator`] records leases in a state directory shared by
//! every runtime process on the host; its record survives a crash of any of them.
//!
//! ```no_run
//! use eci_idmap::{write_id_maps, Allocator, Holder};
//! use eci_policy::settings::IdPool;
//!
//! let allocator = Allocator::open("/run/eci/idmap".as_ref(), IdPool::default())?;
//! let lease = allocator.allocate("web-1", Holder::current()?)?;
//! let child_pid = 4242; // a process that has just entered a new user namespace
//! write_id_maps(child_pid, &[lease.block().mapping()], &[lease.block().mapping()])?;
//! lease.add_holder(Holder::of(child_pid)?)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod allocator;
mod holder;
pub mod idmapped;
mod journal;
pub mod live;
mod maps;
pub mod reach;
pub mod shift;
pub mod subid;
pub mod table;
pub mod translate;

pub use allocator::{AllocError, Allocator, Durability, Lease, LeaseRecord};
pub use holder::{boot_id, start_time, Holder};
pub use maps::{map_text, write_id_maps, MapError};
