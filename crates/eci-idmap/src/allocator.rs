//! The durable, shared allocator of container ID blocks.
//!
//! One journal per state directory ([`crate::journal`]) records every lease. Every change takes
//! an exclusive `flock` on a lock file, so runtimes in different processes never hand out the
//! same block, reads what other processes appended since, and appends its own change with one
//! fdatasync. A record that cannot be read is an error, never a reset: resetting could hand out a
//! block that a live container still uses.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use eci_policy::ids::IdBlock;
use eci_policy::settings::IdPool;
use nix::fcntl::{Flock, FlockArg};

use crate::holder::{boot_id, Holder};
use crate::journal::{complete_lines, Entry, Header, VERSION};
use crate::table::BlockTable;

const JOURNAL: &str = "leases.jsonl";
const JOURNAL_TMP: &str = "leases.jsonl.tmp";
const LOCK: &str = "lock";

/// Errors of the allocator. Each names the file or the numbers involved.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// Every block of the pool is leased to a live holder.
    #[error("ID pool exhausted: the pool of {pool_size} IDs from host ID {start} has {blocks} blocks of {block_size}, and all {in_use} are in use")]
    Exhausted {
        /// IDs in the pool.
        pool_size: u32,
        /// First ID of the pool.
        start: u32,
        /// Blocks in the pool.
        blocks: u32,
        /// IDs per block.
        block_size: u32,
        /// Blocks leased to live holders.
        in_use: u32,
    },
    /// The record exists but cannot be understood.
    #[error("lease record {path} is corrupt at line {line}: {reason}; refusing to reset it while containers may hold blocks")]
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
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
    /// An owner name the record cannot hold.
    #[error("lease owner '{0}' is empty or longer than 256 bytes")]
    Owner(String),
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

/// One lease as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The leases as of the last read of the journal.
#[derive(Debug, Clone)]
struct State {
    leases: BTreeMap<u32, LeaseRecord>,
    table: BlockTable,
    next_token: u64,
    /// Change lines in the journal (for deciding when to compact).
    lines: usize,
}

impl State {
    fn empty(pool: IdPool) -> State {
        State {
            leases: BTreeMap::new(),
            table: BlockTable::new(pool.block_count()),
            next_token: 1,
            lines: 0,
        }
    }

    /// Applies one change, checking that it is consistent with the state.
    fn apply(&mut self, entry: &Entry) -> Result<(), String> {
        match entry {
            Entry::Lease {
                index,
                token,
                owner,
                holder,
            } => {
                if !self.table.take(*index) {
                    return Err(format!(
                        "block {index} is leased twice or lies outside the pool"
                    ));
                }
                self.next_token = self.next_token.max(token + 1);
                let record = LeaseRecord {
                    index: *index,
                    owner: owner.clone(),
                    token: *token,
                    holders: vec![*holder],
                };
                self.leases.insert(*index, record);
            }
            Entry::Hold {
                index,
                token,
                holder,
            } => {
                let lease = self.leases.get_mut(index).filter(|l| l.token == *token);
                let lease = lease
                    .ok_or_else(|| format!("holder added to block {index}, which is not leased"))?;
                if !lease.holders.contains(holder) {
                    lease.holders.push(*holder);
                }
            }
            Entry::Release { index, token } => {
                if self.leases.get(index).is_none_or(|l| l.token != *token) {
                    return Err(format!("release of block {index}, which is not leased"));
                }
                self.leases.remove(index);
                self.table.release(*index);
            }
        }
        self.lines += 1;
        Ok(())
    }

    /// The entries that recreate the live leases.
    fn snapshot(&self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.leases.len());
        for lease in self.leases.values() {
            let mut holders = lease.holders.iter();
            let Some(first) = holders.next() else {
                continue;
            };
            out.push(Entry::Lease {
                index: lease.index,
                token: lease.token,
                owner: lease.owner.clone(),
                holder: *first,
            });
            out.extend(holders.map(|h| Entry::Hold {
                index: lease.index,
                token: lease.token,
                holder: *h,
            }));
        }
        out
    }

    fn dead_leases(&self) -> Vec<Entry> {
        self.leases
            .values()
            .filter(|l| !l.holders.iter().any(Holder::is_alive))
            .map(|l| {
                tracing::info!(block = l.index, owner = %l.owner, "reclaiming the ID block of a dead holder");
                Entry::Release { index: l.index, token: l.token }
            })
            .collect()
    }
}

/// What this process last read of the journal.
#[derive(Debug)]
struct Cache {
    /// (device, inode) of the journal read.
    identity: Option<(u64, u64)>,
    /// Bytes of it read.
    offset: u64,
    state: State,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    pool: IdPool,
    cache: Mutex<Cache>,
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
        let (index, token) = (self.index, self.token);
        allocator.change(|state| {
            if state.leases.get(&index).is_none_or(|l| l.token != token) {
                return Err(AllocError::LeaseGone {
                    index,
                    owner: self.owner.clone(),
                });
            }
            Ok((
                vec![Entry::Hold {
                    index,
                    token,
                    holder,
                }],
                (),
            ))
        })
    }

    /// Returns the block to the pool.
    pub fn release(mut self) -> Result<(), AllocError> {
        let allocator = self
            .allocator
            .take()
            .expect("a live lease has its allocator");
        allocator.release_lease(self.index, self.token)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(allocator) = self.allocator.take() {
            if let Err(err) = allocator.release_lease(self.index, self.token) {
                tracing::warn!(block = self.index, owner = %self.owner, "releasing ID block: {err}");
            }
        }
    }
}

/// The allocator of one state directory. Cheap to clone; clones share what was read.
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
    inner: Arc<Inner>,
}

impl Allocator {
    /// Opens (creating if needed) the allocator in `dir` for `pool`, and reclaims leases whose
    /// holders are all gone.
    pub fn open(dir: &Path, pool: IdPool) -> Result<Allocator, AllocError> {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let cache = Cache {
            identity: None,
            offset: 0,
            state: State::empty(pool),
        };
        let allocator = Allocator {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                pool,
                cache: Mutex::new(cache),
            }),
        };
        allocator.change(|state| Ok((state.dead_leases(), ())))?;
        Ok(allocator)
    }

    /// The pool blocks come from.
    pub fn pool(&self) -> IdPool {
        self.inner.pool
    }

    /// Leases the lowest free block to `owner`, kept alive by `holder`.
    pub fn allocate(&self, owner: &str, holder: Holder) -> Result<Lease, AllocError> {
        if owner.is_empty() || owner.len() > 256 {
            return Err(AllocError::Owner(owner.to_string()));
        }
        let pool = self.inner.pool;
        let (index, token) = self.change(|state| {
            let mut released = Vec::new();
            if state.table.free_count() == 0 {
                released = state.dead_leases();
                for entry in &released {
                    state
                        .apply(entry)
                        .expect("releasing a recorded lease is consistent");
                }
            }
            let Some(index) = state.table.take_lowest() else {
                return Err(AllocError::Exhausted {
                    pool_size: pool.size(),
                    start: pool.start(),
                    blocks: pool.block_count(),
                    block_size: pool.block_size(),
                    in_use: state.leases.len() as u32,
                });
            };
            // Undo the take: `change` applies the entry itself.
            state.table.release(index);
            let token = state.next_token;
            released.push(Entry::Lease {
                index,
                token,
                owner: owner.to_string(),
                holder,
            });
            Ok((released, (index, token)))
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
        self.change(|state| Ok((Vec::new(), state.leases.values().cloned().collect())))
    }

    fn release_lease(&self, index: u32, token: u64) -> Result<(), AllocError> {
        self.change(|state| {
            let recorded = state.leases.get(&index).is_some_and(|l| l.token == token);
            Ok((
                if recorded {
                    vec![Entry::Release { index, token }]
                } else {
                    Vec::new()
                },
                (),
            ))
        })
    }

    /// Under the lock: catches up with the journal, lets `decide` look at the state (entries it
    /// already applied to `state` must not be returned twice), then appends and applies the
    /// entries it returns, with one fdatasync.
    fn change<T>(
        &self,
        decide: impl FnOnce(&mut State) -> Result<(Vec<Entry>, T), AllocError>,
    ) -> Result<T, AllocError> {
        let _lock = self.lock()?;
        let mut cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut journal = self.catch_up(&mut cache)?;
        let mut scratch = cache.state.clone();
        let (entries, out) = decide(&mut scratch)?;
        if !entries.is_empty() {
            for entry in &entries {
                cache
                    .state
                    .apply(entry)
                    .expect("decisions are consistent with the state");
            }
            self.append(&mut journal, &mut cache, &entries)?;
            self.compact_if_large(&mut cache)?;
        }
        Ok(out)
    }

    fn lock(&self) -> Result<Flock<File>, AllocError> {
        let path = self.inner.dir.join(LOCK);
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

    /// Opens the journal (creating it) and brings the cache up to date with it.
    fn catch_up(&self, cache: &mut Cache) -> Result<File, AllocError> {
        let path = self.inner.dir.join(JOURNAL);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        let meta = file.metadata().map_err(io_err("reading", &path))?;
        let identity = (meta.dev(), meta.ino());
        if cache.identity != Some(identity) || meta.len() < cache.offset {
            cache.identity = Some(identity);
            cache.offset = 0;
            cache.state = State::empty(self.inner.pool);
            if meta.len() == 0 {
                self.start_journal(cache)?;
                return self.catch_up(cache);
            }
        }
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(cache.offset))
            .map_err(io_err("reading", &path))?;
        file.read_to_end(&mut tail)
            .map_err(io_err("reading", &path))?;
        let (lines, complete) = complete_lines(&tail);
        let first_line = cache.state.lines + usize::from(cache.offset > 0) + 1;
        for (i, line) in lines.iter().enumerate() {
            let number = first_line + i;
            let corrupt = |reason: String| AllocError::Corrupt {
                path: path.clone(),
                line: number,
                reason,
            };
            if cache.offset == 0 && i == 0 {
                let header = self.read_header(line, &path)?;
                if header.boot_id != boot_id().map_err(io_err("reading the boot id for", &path))? {
                    // Every holder died with that boot.
                    cache.identity = None;
                    self.start_journal(cache)?;
                    return self.catch_up(cache);
                }
                cache.state.next_token = header.next_token;
                continue;
            }
            let entry: Entry = serde_json::from_slice(line).map_err(|e| corrupt(e.to_string()))?;
            cache.state.apply(&entry).map_err(corrupt)?;
        }
        if complete < tail.len() {
            // A write that never finished: it was not acknowledged, so it never happened.
            let end = cache.offset + complete as u64;
            file.set_len(end)
                .map_err(io_err("cutting an unfinished write from", &path))?;
            tracing::warn!(path = %path.display(), "cut an unfinished write from the lease journal");
        }
        cache.offset += complete as u64;
        Ok(file)
    }

    /// Reads the header, checking its version and pool.
    fn read_header(&self, line: &[u8], path: &Path) -> Result<Header, AllocError> {
        let header: Header = serde_json::from_slice(line).map_err(|e| AllocError::Corrupt {
            path: path.to_path_buf(),
            line: 1,
            reason: format!("header: {e}"),
        })?;
        if header.eci_leases != VERSION {
            let reason = format!("version {} is not {VERSION}", header.eci_leases);
            return Err(AllocError::Corrupt {
                path: path.to_path_buf(),
                line: 1,
                reason,
            });
        }
        let requested = self.header(String::new(), 0);
        let pool = |h: &Header| {
            format!(
                "{}+{} in blocks of {}",
                h.pool_start, h.pool_size, h.block_size
            )
        };
        if (header.pool_start, header.pool_size, header.block_size)
            != (
                requested.pool_start,
                requested.pool_size,
                requested.block_size,
            )
        {
            return Err(AllocError::PoolChanged {
                path: path.to_path_buf(),
                recorded: pool(&header),
                requested: pool(&requested),
            });
        }
        Ok(header)
    }

    fn header(&self, boot_id: String, next_token: u64) -> Header {
        let pool = self.inner.pool;
        Header {
            eci_leases: VERSION,
            boot_id,
            pool_start: pool.start(),
            pool_size: pool.size(),
            block_size: pool.block_size(),
            next_token,
        }
    }

    /// Replaces the journal with a header and the cached live leases.
    fn start_journal(&self, cache: &mut Cache) -> Result<(), AllocError> {
        let dir = &self.inner.dir;
        let boot = boot_id().map_err(io_err("reading the boot id for", dir))?;
        let header = self.header(boot, cache.state.next_token);
        let mut text = serde_json::to_string(&header).expect("a header serialises");
        text.push('\n');
        for entry in cache.state.snapshot() {
            text.push_str(&serde_json::to_string(&entry).expect("an entry serialises"));
            text.push('\n');
        }
        let tmp = dir.join(JOURNAL_TMP);
        let path = dir.join(JOURNAL);
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        file.write_all(text.as_bytes())
            .map_err(io_err("writing", &tmp))?;
        file.sync_all().map_err(io_err("syncing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("renaming over", &path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing directory", dir))?;
        let meta = std::fs::metadata(&path).map_err(io_err("reading", &path))?;
        cache.identity = Some((meta.dev(), meta.ino()));
        cache.offset = meta.len();
        cache.state.lines = cache.state.leases.values().map(|l| l.holders.len()).sum();
        Ok(())
    }

    fn append(
        &self,
        journal: &mut File,
        cache: &mut Cache,
        entries: &[Entry],
    ) -> Result<(), AllocError> {
        let path = self.inner.dir.join(JOURNAL);
        let mut text = String::new();
        for entry in entries {
            text.push_str(&serde_json::to_string(entry).expect("an entry serialises"));
            text.push('\n');
        }
        journal
            .write_all(text.as_bytes())
            .map_err(io_err("appending to", &path))?;
        journal.sync_data().map_err(io_err("syncing", &path))?;
        cache.offset += text.len() as u64;
        Ok(())
    }

    fn compact_if_large(&self, cache: &mut Cache) -> Result<(), AllocError> {
        let live: usize = cache.state.leases.values().map(|l| l.holders.len()).sum();
        if cache.state.lines > 4 * live + 256 {
            self.start_journal(cache)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
