//! The durable, shared allocator of container ID blocks.
//!
//! One JSON record per state directory lists every lease. Every change takes an exclusive
//! `flock` on a lock file (so runtimes in different processes never hand out the same block),
//! re-reads the record, and replaces it with a temp file + fsync + rename + directory fsync, so a
//! crash at any point leaves either the old record or the new one. A record that cannot be read is
//! an error, never a reset: resetting could hand out a block a live container still uses.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use eci_policy::ids::IdBlock;
use eci_policy::settings::IdPool;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::holder::{boot_id, Holder};
use crate::table::BlockTable;

const RECORD: &str = "leases.json";
const RECORD_TMP: &str = "leases.json.tmp";
const LOCK: &str = "lock";
const VERSION: u32 = 1;

/// Errors of the allocator. Each names the file or the numbers involved.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// Every block of the pool is leased to a live holder.
    #[error("ID pool exhausted: all {blocks} blocks of {block_size} IDs from host ID {start} are in use")]
    Exhausted {
        /// Blocks in the pool (all in use).
        blocks: u32,
        /// IDs per block.
        block_size: u32,
        /// First ID of the pool.
        start: u32,
    },
    /// The record exists but cannot be understood.
    #[error("lease record {path} is corrupt: {reason}; refusing to reset it while containers may hold blocks")]
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The record was written for a different pool.
    #[error("lease record {path} is for pool {recorded}, not {requested}; delete every container before changing the pool")]
    PoolChanged {
        /// The record file.
        path: PathBuf,
        /// The pool in the record.
        recorded: String,
        /// The pool asked for.
        requested: String,
    },
    /// The lease is no longer in the record (it was released or reclaimed).
    #[error("lease of block {index} for '{owner}' is no longer recorded")]
    LeaseGone {
        /// Block index.
        index: u32,
        /// Owner named at allocation.
        owner: String,
    },
    /// A filesystem operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AllocError + 'a {
    move |source| AllocError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PoolRecord {
    start: u32,
    size: u32,
    block_size: u32,
}

impl From<IdPool> for PoolRecord {
    fn from(pool: IdPool) -> Self {
        Self {
            start: pool.start(),
            size: pool.size(),
            block_size: pool.block_size(),
        }
    }
}

impl std::fmt::Display for PoolRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}+{} in blocks of {}",
            self.start, self.size, self.block_size
        )
    }
}

/// One lease as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseRecord {
    /// Block index in the pool.
    pub index: u32,
    /// Who asked for it (a container ID).
    pub owner: String,
    /// Distinguishes this lease from a later one of the same block.
    pub token: u64,
    /// The lease is alive while any holder is.
    pub holders: Vec<Holder>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Record {
    version: u32,
    boot_id: String,
    pool: PoolRecord,
    next_token: u64,
    leases: Vec<LeaseRecord>,
}

/// A block leased to one container. Dropping it releases the block (best effort; use
/// [`Lease::release`] to see errors).
#[derive(Debug)]
#[must_use = "dropping a lease releases its block"]
pub struct Lease {
    block: IdBlock,
    index: u32,
    owner: String,
    token: u64,
    allocator: Option<Allocator>,
}

impl Lease {
    /// The leased host IDs.
    pub fn block(&self) -> IdBlock {
        self.block
    }

    /// The block's index in the pool.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Who the lease was made for.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Adds a process that keeps the lease alive (the container's init, once it exists).
    pub fn add_holder(&self, holder: Holder) -> Result<(), AllocError> {
        let allocator = self
            .allocator
            .as_ref()
            .expect("a live lease has its allocator");
        allocator.update(|record| {
            let lease = find_lease(record, self.index, self.token).ok_or_else(|| {
                AllocError::LeaseGone {
                    index: self.index,
                    owner: self.owner.clone(),
                }
            })?;
            if !lease.holders.contains(&holder) {
                lease.holders.push(holder);
            }
            Ok(())
        })
    }

    /// Returns the block to the pool.
    pub fn release(mut self) -> Result<(), AllocError> {
        let allocator = self
            .allocator
            .take()
            .expect("a live lease has its allocator");
        allocator.release_record(self.index, self.token)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(allocator) = self.allocator.take() {
            if let Err(err) = allocator.release_record(self.index, self.token) {
                tracing::warn!(block = self.index, owner = %self.owner, "releasing ID block: {err}");
            }
        }
    }
}

fn find_lease(record: &mut Record, index: u32, token: u64) -> Option<&mut LeaseRecord> {
    record
        .leases
        .iter_mut()
        .find(|l| l.index == index && l.token == token)
}

/// The allocator of one state directory.
///
/// ```no_run
/// use eci_idmap::{Allocator, Holder};
/// use eci_policy::settings::IdPool;
///
/// let allocator = Allocator::open("/run/eci/idmap".as_ref(), IdPool::default())?;
/// let lease = allocator.allocate("my-container", Holder::current()?)?;
/// println!("container root is host uid {}", lease.block().host_start());
/// lease.release()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Allocator {
    dir: PathBuf,
    pool: IdPool,
}

impl Allocator {
    /// Opens (creating if needed) the allocator in `dir` for `pool`, and reclaims leases whose
    /// holders are all gone.
    pub fn open(dir: &Path, pool: IdPool) -> Result<Allocator, AllocError> {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let allocator = Allocator {
            dir: dir.to_path_buf(),
            pool,
        };
        allocator.update(|record| {
            reclaim_dead(record);
            Ok(())
        })?;
        Ok(allocator)
    }

    /// The pool blocks come from.
    pub fn pool(&self) -> IdPool {
        self.pool
    }

    /// Leases the lowest free block to `owner`, kept alive by `holder`.
    pub fn allocate(&self, owner: &str, holder: Holder) -> Result<Lease, AllocError> {
        let pool = self.pool;
        let (index, token) = self.update(|record| {
            let mut table = table_of(record, pool);
            if table.free_count() == 0 {
                reclaim_dead(record);
                table = table_of(record, pool);
            }
            let index = table.take_lowest().ok_or(AllocError::Exhausted {
                blocks: pool.block_count(),
                block_size: pool.block_size(),
                start: pool.start(),
            })?;
            let token = record.next_token;
            record.next_token += 1;
            record.leases.push(LeaseRecord {
                index,
                owner: owner.to_string(),
                token,
                holders: vec![holder],
            });
            Ok((index, token))
        })?;
        let block = pool
            .block(index)
            .expect("the table only hands out blocks of the pool");
        Ok(Lease {
            block,
            index,
            owner: owner.to_string(),
            token,
            allocator: Some(self.clone()),
        })
    }

    /// Every recorded lease, live or not yet reclaimed.
    pub fn leases(&self) -> Result<Vec<LeaseRecord>, AllocError> {
        let _lock = self.lock()?;
        Ok(self.read()?.leases)
    }

    fn release_record(&self, index: u32, token: u64) -> Result<(), AllocError> {
        self.update(|record| {
            record
                .leases
                .retain(|l| !(l.index == index && l.token == token));
            Ok(())
        })
    }

    /// Runs `change` on the record under the lock and writes the result durably.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Record) -> Result<T, AllocError>,
    ) -> Result<T, AllocError> {
        let _lock = self.lock()?;
        let mut record = self.read()?;
        let before = record.clone();
        let out = change(&mut record)?;
        if record != before {
            self.write(&record)?;
        }
        Ok(out)
    }

    fn lock(&self) -> Result<Flock<File>, AllocError> {
        let path = self.dir.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| AllocError::Io {
            what: "locking",
            path,
            source: errno.into(),
        })
    }

    fn read(&self) -> Result<Record, AllocError> {
        let path = self.dir.join(RECORD);
        let boot = boot_id().map_err(io_err("reading the boot id for", &path))?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Ok(Record {
                    version: VERSION,
                    boot_id: boot,
                    pool: self.pool.into(),
                    next_token: 1,
                    leases: Vec::new(),
                })
            }
            Err(err) => return Err(io_err("reading", &path)(err)),
        };
        let mut record: Record =
            serde_json::from_slice(&bytes).map_err(|err| AllocError::Corrupt {
                path: path.clone(),
                reason: err.to_string(),
            })?;
        self.check(&path, &record)?;
        if record.boot_id != boot {
            // Every holder died with the previous boot.
            record.boot_id = boot;
            record.leases.clear();
        }
        Ok(record)
    }

    fn check(&self, path: &Path, record: &Record) -> Result<(), AllocError> {
        let corrupt = |reason: String| AllocError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if record.version != VERSION {
            return Err(corrupt(format!(
                "version {} is not {VERSION}",
                record.version
            )));
        }
        let requested = PoolRecord::from(self.pool);
        if record.pool != requested {
            return Err(AllocError::PoolChanged {
                path: path.to_path_buf(),
                recorded: record.pool.to_string(),
                requested: requested.to_string(),
            });
        }
        let mut table = BlockTable::new(self.pool.block_count());
        for lease in &record.leases {
            if !table.take(lease.index) {
                return Err(corrupt(format!(
                    "block {} is leased twice or lies outside the pool",
                    lease.index
                )));
            }
            if lease.token >= record.next_token {
                return Err(corrupt(format!(
                    "lease token {} is not below next token",
                    lease.token
                )));
            }
        }
        Ok(())
    }

    fn write(&self, record: &Record) -> Result<(), AllocError> {
        let tmp = self.dir.join(RECORD_TMP);
        let path = self.dir.join(RECORD);
        let bytes = serde_json::to_vec_pretty(record).expect("the record always serialises");
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        file.write_all(&bytes).map_err(io_err("writing", &tmp))?;
        file.sync_all().map_err(io_err("syncing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("renaming over", &path))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_err("syncing directory", &self.dir))
    }
}

fn table_of(record: &Record, pool: IdPool) -> BlockTable {
    let mut table = BlockTable::new(pool.block_count());
    for lease in &record.leases {
        table.take(lease.index);
    }
    table
}

fn reclaim_dead(record: &mut Record) {
    record.leases.retain(|lease| {
        let alive = lease.holders.iter().any(Holder::is_alive);
        if !alive {
            tracing::info!(block = lease.index, owner = %lease.owner, "reclaiming ID block of a dead holder");
        }
        alive
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(blocks: u32) -> IdPool {
        IdPool::new(1 << 28, blocks * 65536, 65536).unwrap()
    }

    #[test]
    fn blocks_are_exclusive_and_reused_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = Allocator::open(dir.path(), pool(3)).unwrap();
        let me = Holder::current().unwrap();
        let a = alloc.allocate("a", me).unwrap();
        let b = alloc.allocate("b", me).unwrap();
        assert!(!a.block().overlaps(&b.block()));
        let (a_index, b_start) = (a.index(), b.block().host_start());
        a.release().unwrap();
        let c = alloc.allocate("c", me).unwrap();
        assert_eq!(c.index(), a_index);
        assert_ne!(c.block().host_start(), b_start);
        drop(b);
        assert_eq!(alloc.leases().unwrap().len(), 1);
    }

    #[test]
    fn exhaustion_names_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = Allocator::open(dir.path(), pool(1)).unwrap();
        let me = Holder::current().unwrap();
        let _held = alloc.allocate("a", me).unwrap();
        let err = alloc.allocate("b", me).unwrap_err();
        assert!(matches!(
            err,
            AllocError::Exhausted {
                blocks: 1,
                block_size: 65536,
                ..
            }
        ));
        assert!(err.to_string().contains("all 1 blocks"));
    }

    #[test]
    fn dead_holders_are_reclaimed_when_the_pool_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = Allocator::open(dir.path(), pool(1)).unwrap();
        let me = Holder::current().unwrap();
        let dead = Holder {
            start_time: me.start_time + 1,
            ..me
        };
        std::mem::forget(alloc.allocate("ghost", dead).unwrap());
        let lease = alloc.allocate("live", me).unwrap();
        assert_eq!(lease.index(), 0);
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RECORD), b"{ not json").unwrap();
        let err = Allocator::open(dir.path(), pool(2)).unwrap_err();
        assert!(matches!(err, AllocError::Corrupt { .. }), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join(RECORD)).unwrap(),
            b"{ not json"
        );
    }

    #[test]
    fn a_changed_pool_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let alloc = Allocator::open(dir.path(), pool(2)).unwrap();
        let _lease = alloc.allocate("a", Holder::current().unwrap()).unwrap();
        assert!(matches!(
            Allocator::open(dir.path(), pool(3)),
            Err(AllocError::PoolChanged { .. })
        ));
    }
}
