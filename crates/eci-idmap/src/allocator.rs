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
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use eci_policy::ids::IdBlock;
use eci_policy::settings::IdPool;

use crate::holder::{boot_id, Holder};
use crate::journal::{complete_lines, Entry, Header, VERSION};
use crate::table::BlockTable;

const LOCK: &str = "lock";
/// Names the boot whose journal was started: a journal of this boot that is missing was
/// removed, and starting an empty one would hand out blocks live containers hold.
const BEGUN: &str = "begun";

/// The file that names the PID and time namespaces the directory's holders are judged from
/// ([`Allocator::open`]).
const NAMESPACES: &str = "namespaces";

/// The journal of this boot. Leases only mean something within one boot (every holder dies
/// with the machine), so each boot has a journal of its own and those of earlier boots are
/// removed.
fn journal_name(boot: &str) -> String {
    format!("leases-{boot}.jsonl")
}

/// How hard a change is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fdatasync after every change; compaction writes a temp file, fsyncs it, renames it and
    /// fsyncs the directory. Each sync costs about 1.3 ms on this project's machine.
    #[default]
    Sync,
    /// No syncs. A runtime that crashes loses nothing it wrote (the page cache is shared by
    /// every process), and a machine that crashes ends every holder, after which the next boot
    /// uses a journal of its own. What is lost is only the record of a boot that is over.
    BootScoped,
}

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
    /// The directory's holders are judged from other PID or time namespaces than the caller's.
    #[error("lease record directory {} is kept from {recorded}, not from this process's {ours}: from here every holder would look gone (or its start time other) and each container's block would be handed out again; give this runtime a leases directory of its own, or run it in the host's PID and time namespaces", path.parent().map_or_else(|| path.display().to_string(), |d| d.display().to_string()))]
    OtherNamespaces {
        /// The file that names them.
        path: PathBuf,
        /// What it names.
        recorded: String,
        /// This process's.
        ours: String,
    },
    /// This boot's record was removed while containers may still hold blocks in it.
    #[error("lease record {path} of this boot is gone; refusing to start a new one while containers may hold blocks (restore it, or delete every container and {begun})", begun = begun.display())]
    JournalGone {
        /// The record file.
        path: PathBuf,
        /// The file that says this boot had one.
        begun: PathBuf,
    },
    /// The record was written for a different pool, and a block of it is still held.
    #[error("lease record {path} is for pool {recorded}, not {requested}, and a container still holds a block of it: delete every container of the old pool before changing it")]
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
    /// An owner name the record cannot hold, or one kept for blocks found in use.
    #[error(
        "lease owner '{0}' is empty, longer than 256 bytes or begins with \"userns:\" (kept for \
         blocks found mapped by live user namespaces)"
    )]
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

impl LeaseRecord {
    /// Whether this lease records a block found mapped by a live user namespace
    /// ([`crate::live::blocks_in_use`]), rather than one leased to an owner that asked.
    ///
    /// ```
    /// let found = eci_idmap::LeaseRecord {
    ///     index: 3,
    ///     owner: "userns:4026532281".into(),
    ///     token: 7,
    ///     holders: vec![],
    /// };
    /// assert!(found.found_live());
    /// ```
    pub fn found_live(&self) -> bool {
        self.owner.starts_with(crate::live::FOUND_LIVE_PREFIX)
    }
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
    /// Applies one line's `entry`.
    fn apply(&mut self, entry: &Entry) -> Result<(), String> {
        match entry {
            Entry::Batch { entries } => {
                for entry in entries {
                    if matches!(entry, Entry::Batch { .. }) {
                        return Err("a batch inside a batch".into());
                    }
                    self.apply_change(entry)?;
                }
            }
            entry => self.apply_change(entry)?,
        }
        self.lines += 1;
        Ok(())
    }

    fn apply_change(&mut self, entry: &Entry) -> Result<(), String> {
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
                if *token >= crate::journal::TOKEN_LIMIT {
                    return Err(format!(
                        "lease token {token} is not below {}",
                        crate::journal::TOKEN_LIMIT
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
            Entry::Batch { .. } => return Err("a batch inside a batch".into()),
        }
        Ok(())
    }

    /// The entries that recreate the live leases, with all their holders. (Dead holders are
    /// kept: whether a holder lives depends on the reader's view of /proc, which another
    /// runtime's may not share, and a holder dropped for good could free a block in use.)
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
    /// The journal as last opened, with its (device, inode).
    journal: Option<(File, (u64, u64))>,
    /// Bytes of it read.
    offset: u64,
    state: State,
}

impl Cache {
    /// Drops what it knows: the next catch-up reads the journal whole.
    fn forget(&mut self, pool: IdPool) {
        self.journal = None;
        self.offset = 0;
        self.state = State::empty(pool);
    }
}

/// The changes that take `records` (another journal's leases, or live namespaces' blocks)
/// into `state`: a lease where a block is free, a holder added where it is not. Records may
/// name one block more than once (two user namespaces mapping the same block): a later one
/// joins the lease an earlier one made. Dead holders, and ones already recorded, are skipped.
fn adoption(state: &State, records: &[LeaseRecord], pool: IdPool) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut next_token = state.next_token;
    // Leases as these changes leave them.
    let mut leases: BTreeMap<u32, (u64, Vec<Holder>)> = BTreeMap::new();
    for record in records {
        if record.index >= pool.block_count() {
            continue;
        }
        let live: Vec<Holder> = record
            .holders
            .iter()
            .copied()
            .filter(Holder::is_alive)
            .collect();
        let recorded = state.leases.get(&record.index);
        let (token, known) = match leases.entry(record.index) {
            std::collections::btree_map::Entry::Occupied(lease) => lease.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => match recorded {
                Some(lease) => slot.insert((lease.token, lease.holders.clone())),
                None => {
                    let Some(first) = live.first() else { continue };
                    let token = next_token;
                    next_token += 1;
                    entries.push(Entry::Lease {
                        index: record.index,
                        token,
                        owner: record.owner.clone(),
                        holder: *first,
                    });
                    slot.insert((token, vec![*first]))
                }
            },
        };
        for holder in live {
            if !known.contains(&holder) {
                known.push(holder);
                entries.push(Entry::Hold {
                    index: record.index,
                    token: *token,
                    holder,
                });
            }
        }
    }
    entries
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    pool: IdPool,
    durability: Durability,
    /// This boot's journal.
    journal: PathBuf,
    /// The lock file, kept open; flock on it excludes other processes.
    lock: File,
    /// Whether a journal begun here first takes in the blocks live user namespaces map
    /// ([`Allocator::open_seeded`]).
    seed_from_live: bool,
    /// Excludes the threads of this process (a flock is shared by everyone using the same open
    /// file), then guards what was read.
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

    /// What tells this lease from every other of the same block (see [`LeaseRecord::token`]).
    pub fn token(&self) -> u64 {
        self.token
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
        allocator.add_hold(self.index, self.token, &self.owner, holder)
    }

    /// Leaves the block leased for as long as any of its holders lives (the process that
    /// leased it is one, and it gives it back only by [`Lease::release`] or a drop): for a
    /// container that may have left processes behind with its IDs.
    ///
    /// ```no_run
    /// use eci_idmap::{Allocator, Holder};
    /// let allocator = Allocator::open("/run/eci/idmap".as_ref(), Default::default())?;
    /// let lease = allocator.allocate("web", Holder::current()?)?;
    /// // The container's cgroup could not be removed: some of its processes may be left.
    /// lease.keep();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keep(mut self) {
        self.allocator = None;
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

impl State {
    fn holds(&self, index: u32, token: u64) -> bool {
        self.leases.get(&index).is_some_and(|l| l.token == token)
    }
}

/// An exclusive flock, released when dropped.
struct Locked<'a>(&'a File);

impl<'a> Locked<'a> {
    fn take(file: &'a File, path: &Path) -> Result<Locked<'a>, AllocError> {
        loop {
            // SAFETY: flock on an open fd.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                let locked = Locked(file);
                // A lock file removed or replaced since it was opened excludes nobody: the
                // processes that open it now lock another.
                let ours = file.metadata().map(|m| (m.dev(), m.ino()));
                let now = std::fs::metadata(path).map(|m| (m.dev(), m.ino()));
                return match (ours, now) {
                    (Ok(ours), Ok(now)) if ours == now => Ok(locked),
                    (Err(source), _) | (_, Err(source)) => Err(AllocError::Io {
                        what: "locking",
                        path: path.to_path_buf(),
                        source,
                    }),
                    _ => Err(AllocError::Io {
                        what: "locking",
                        path: path.to_path_buf(),
                        source: io::Error::other(
                            "the lock file was removed or replaced since this runtime opened it",
                        ),
                    }),
                };
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(AllocError::Io {
                    what: "locking",
                    path: path.to_path_buf(),
                    source: err,
                });
            }
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: flock on an open fd.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
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

/// This process's PID and time namespaces, as `pid:INODE time:INODE`.
fn own_namespaces() -> io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let inode = |name: &str| std::fs::metadata(format!("/proc/self/ns/{name}")).map(|m| m.ino());
    // A kernel without time namespaces (before 5.6) has one clock for all.
    let time = match inode("time") {
        Err(err) if err.kind() == io::ErrorKind::NotFound => 0,
        other => other?,
    };
    Ok(format!("pid:{} time:{time}", inode("pid")?))
}

/// Fails unless the leases in `dir` are judged from this process's PID and time namespaces.
/// A holder is a pid and a start time read from /proc: from another PID namespace every
/// holder's entry is missing, and from another time namespace every start time reads
/// shifted, so opening would release every live container's block. The first opener records
/// its own; a directory from before the record was kept takes the next opener's.
fn check_namespaces(dir: &Path) -> Result<(), AllocError> {
    let path = dir.join(NAMESPACES);
    let ours = own_namespaces().map_err(io_err("reading the namespaces of", &path))?;
    for _ in 0..2 {
        match std::fs::read_to_string(&path) {
            Ok(recorded) if recorded.trim() == ours => return Ok(()),
            Ok(recorded) => {
                return Err(AllocError::OtherNamespaces {
                    path,
                    recorded: recorded.trim().to_string(),
                    ours,
                })
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err("reading", &path)(err)),
        }
        // Written whole into a file of its own and linked in: two openers at once, one wins
        // and the other reads what it wrote.
        let partial = dir.join(format!("{NAMESPACES}.{}", std::process::id()));
        std::fs::write(&partial, format!("{ours}\n")).map_err(io_err("writing", &partial))?;
        let linked = std::fs::hard_link(&partial, &path);
        let _ = std::fs::remove_file(&partial);
        match linked {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io_err("writing", &path)(err)),
        }
    }
    Err(io_err("writing", &path)(io::Error::other(
        "it keeps changing",
    )))
}

impl Allocator {
    /// Opens (creating if needed) the allocator in `dir` for `pool` with [`Durability::Sync`],
    /// and reclaims leases whose holders are all gone. Fails if `dir` is kept from other PID
    /// or time namespaces than this process's ([`AllocError::OtherNamespaces`]).
    pub fn open(dir: &Path, pool: IdPool) -> Result<Allocator, AllocError> {
        Allocator::open_with(dir, pool, Durability::Sync)
    }

    /// Like [`Allocator::open`], with the given durability.
    pub fn open_with(
        dir: &Path,
        pool: IdPool,
        durability: Durability,
    ) -> Result<Allocator, AllocError> {
        Allocator::open_as(dir, pool, durability, false)
    }

    /// Like [`Allocator::open_with`], for the host's journal: whenever a journal is begun
    /// here (the first this boot, or after its directory was removed), it first takes in, under
    /// the lock, every block a live user namespace maps ([`crate::live::blocks_in_use`]), so
    /// that containers started before it, or by a runtime that journaled elsewhere, keep
    /// their blocks.
    ///
    /// ```no_run
    /// use eci_idmap::{Allocator, Durability};
    /// use eci_policy::settings::IdPool;
    /// let host = Allocator::open_seeded("/run/eci/idmap".as_ref(), IdPool::default(), Durability::Sync)?;
    /// # Ok::<(), eci_idmap::AllocError>(())
    /// ```
    pub fn open_seeded(
        dir: &Path,
        pool: IdPool,
        durability: Durability,
    ) -> Result<Allocator, AllocError> {
        Allocator::open_as(dir, pool, durability, true)
    }

    fn open_as(
        dir: &Path,
        pool: IdPool,
        durability: Durability,
        seed_from_live: bool,
    ) -> Result<Allocator, AllocError> {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        check_namespaces(dir)?;
        let boot = boot_id().map_err(io_err("reading the boot id for", dir))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(io_err("opening", &lock_path))?;
        let cache = Cache {
            journal: None,
            offset: 0,
            state: State::empty(pool),
        };
        let inner = Inner {
            dir: dir.to_path_buf(),
            pool,
            durability,
            journal: dir.join(journal_name(&boot)),
            lock,
            seed_from_live,
            cache: Mutex::new(cache),
        };
        let allocator = Allocator {
            inner: Arc::new(inner),
        };
        allocator.change(|state| Ok((state.dead_leases(), ())))?;
        allocator.remove_other_boots()?;
        Ok(allocator)
    }

    /// The pool blocks come from.
    pub fn pool(&self) -> IdPool {
        self.inner.pool
    }

    /// Leases the lowest free block to `owner`, kept alive by `holder`. When the pool is full,
    /// blocks whose holders are all gone are reclaimed first. A host journal skips blocks a
    /// live user namespace maps (see [`Allocator::open_seeded`]).
    pub fn allocate(&self, owner: &str, holder: Holder) -> Result<Lease, AllocError> {
        if owner.is_empty()
            || owner.len() > 256
            || owner.starts_with(crate::live::FOUND_LIVE_PREFIX)
        {
            return Err(AllocError::Owner(owner.to_string()));
        }
        let pool = self.inner.pool;
        let mapped = self.mapped_elsewhere()?;
        let (index, token) = self.change(|state| {
            let mut entries = Vec::new();
            let index = match state.table.lowest_free_except(&mapped) {
                Some(index) => index,
                None => {
                    entries = state.dead_leases();
                    let freed = entries.iter().filter_map(|e| match e {
                        Entry::Release { index, .. } if !mapped.contains(index) => Some(*index),
                        _ => None,
                    });
                    freed.min().ok_or(AllocError::Exhausted {
                        pool_size: pool.size(),
                        start: pool.start(),
                        blocks: pool.block_count(),
                        block_size: pool.block_size(),
                        in_use: state.leases.len() as u32,
                    })?
                }
            };
            let token = state.next_token;
            entries.push(Entry::Lease {
                index,
                token,
                owner: owner.to_string(),
                holder,
            });
            Ok((entries, (index, token)))
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

    /// For the host's journal ([`Allocator::open_seeded`]): the blocks a live user namespace
    /// maps ([`crate::live::blocks_in_use`]), which are never handed out, leased here or not:
    /// a namespace another tool made (systemd-nspawn picks its ranges from a span that holds
    /// the default pool, Incus's isolated maps may too), or a container whose process lives
    /// on past its lease. Empty for a journal of its own (tests, a user's pool).
    fn mapped_elsewhere(&self) -> Result<std::collections::BTreeSet<u32>, AllocError> {
        if !self.inner.seed_from_live {
            return Ok(std::collections::BTreeSet::new());
        }
        crate::live::blocks_mapped(self.inner.pool).map_err(io_err(
            "reading which ID blocks live user namespaces use, for a lease in",
            &self.inner.dir,
        ))
    }

    /// Whether `dir` holds a journal of this boot (an allocator was opened there since the
    /// machine started). Creates nothing.
    pub fn has_journal(dir: &Path) -> bool {
        boot_id().is_ok_and(|boot| dir.join(journal_name(&boot)).exists())
    }

    /// Takes in the live leases of another journal of the same pool (`records`, as another
    /// allocator's [`Allocator::leases`] lists them), so that their blocks are not handed out
    /// here while their holders live: one made where a block is free, a holder added to the
    /// lease there where it is not (a block the two journals both gave out stays taken until
    /// every holder of either is gone). Holders already recorded, and dead ones, are skipped,
    /// so adopting the same records again changes nothing. The number of holders added.
    ///
    /// ```no_run
    /// use eci_idmap::Allocator;
    /// use eci_policy::settings::IdPool;
    /// let pool = IdPool::default();
    /// let host_wide = Allocator::open("/run/eci/idmap".as_ref(), pool)?;
    /// let older = Allocator::open("/run/eci-runc/.eci/idmap".as_ref(), pool)?;
    /// host_wide.adopt(&older.leases()?)?;
    /// # Ok::<(), eci_idmap::AllocError>(())
    /// ```
    pub fn adopt(&self, records: &[LeaseRecord]) -> Result<usize, AllocError> {
        self.change(|state| {
            let entries = adoption(state, records, self.inner.pool);
            let added = entries.len();
            Ok((entries, added))
        })
    }

    /// Every recorded lease, live or not yet reclaimed.
    pub fn leases(&self) -> Result<Vec<LeaseRecord>, AllocError> {
        self.change(|state| Ok((Vec::new(), state.leases.values().cloned().collect())))
    }

    /// Adds `holder` to a lease that [`Allocator::leases`] listed, made by another process: one
    /// that needs the block to stay leased while it runs, such as a container that joined the
    /// namespaces of the lease's container (they stay owned by that container's IDs, which must
    /// not go to another container meanwhile). Fails with [`AllocError::LeaseGone`] if that
    /// lease has ended since.
    ///
    /// ```no_run
    /// use eci_idmap::{Allocator, Holder};
    /// use eci_policy::settings::IdPool;
    ///
    /// let allocator = Allocator::open("/run/eci/ids".as_ref(), IdPool::default())?;
    /// if let Some(web) = allocator.leases()?.into_iter().find(|l| l.owner == "web") {
    ///     allocator.hold(&web, Holder::current()?)?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn hold(&self, lease: &LeaseRecord, holder: Holder) -> Result<(), AllocError> {
        self.add_hold(lease.index, lease.token, &lease.owner, holder)
    }

    fn add_hold(
        &self,
        index: u32,
        token: u64,
        owner: &str,
        holder: Holder,
    ) -> Result<(), AllocError> {
        self.change(|state| {
            if !state.holds(index, token) {
                return Err(AllocError::LeaseGone {
                    index,
                    owner: owner.to_string(),
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

    /// Ends lease `token` of block `index`. Holders [`Allocator::adopt`] added to it from
    /// another journal, still alive, keep the block under a lease of their own: the journals
    /// had both given it out, and theirs still runs.
    fn release_lease(&self, index: u32, token: u64) -> Result<(), AllocError> {
        // The releasing runtime holds its own leases as long as it lives. By pid alone: a
        // holder with our pid and another start time is dead anyway, and reading our own start
        // time could fail, which would keep the block for as long as we run.
        let me = std::process::id() as i32;
        self.change(|state| {
            let Some(lease) = state.leases.get(&index).filter(|l| l.token == token) else {
                return Ok((Vec::new(), ()));
            };
            let mut entries = vec![Entry::Release { index, token }];
            let others: Vec<Holder> = lease
                .holders
                .iter()
                .copied()
                .filter(|h| h.pid != me && h.is_alive())
                .collect();
            if let Some((first, rest)) = others.split_first() {
                let token = state.next_token;
                entries.push(Entry::Lease {
                    index,
                    token,
                    owner: lease.owner.clone(),
                    holder: *first,
                });
                entries.extend(rest.iter().map(|&holder| Entry::Hold {
                    index,
                    token,
                    holder,
                }));
            }
            Ok((entries, ()))
        })
    }

    /// Under the lock: catches up with the journal, lets `decide` look at the state and name
    /// the changes, then appends and applies them.
    fn change<T>(
        &self,
        decide: impl FnOnce(&State) -> Result<(Vec<Entry>, T), AllocError>,
    ) -> Result<T, AllocError> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        let _locked = Locked::take(&self.inner.lock, &self.inner.dir.join(LOCK))?;
        if let Err(err) = self.catch_up(&mut cache) {
            // What it applied before the error may be half a change: read it all again next
            // time.
            cache.forget(self.inner.pool);
            return Err(err);
        }
        let (entries, out) = decide(&cache.state)?;
        if !entries.is_empty() {
            // Written first: a change that did not reach the journal never happened. After a
            // failed write the cache is read again from the journal, whatever of it landed (a
            // line cut short is cut off), rather than kept with a change other processes never
            // saw (a block released only here would be leased twice).
            if let Err(err) = self.append(&mut cache, &entries) {
                cache.forget(self.inner.pool);
                return Err(err);
            }
            cache
                .state
                .apply(&one_line(&entries))
                .expect("decisions are consistent with the state");
            // The change is in the journal: a compaction that fails leaves it as it was, to be
            // compacted next time, and must not report the change as failed.
            if let Err(err) = self.compact_if_large(&mut cache) {
                tracing::warn!("compacting the lease journal: {err}");
            }
        }
        Ok(out)
    }

    /// Removes the journals of earlier boots: every holder they name is gone.
    fn remove_other_boots(&self) -> Result<(), AllocError> {
        let _cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        let _locked = Locked::take(&self.inner.lock, &self.inner.dir.join(LOCK))?;
        let dir = &self.inner.dir;
        for entry in std::fs::read_dir(dir).map_err(io_err("listing", dir))? {
            let path = entry.map_err(io_err("listing", dir))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with("leases-") && path != self.inner.journal {
                std::fs::remove_file(&path)
                    .map_err(io_err("removing the journal of an earlier boot", &path))?;
            }
        }
        Ok(())
    }

    /// Brings the cache up to date with the journal (re-reading it whole when another process
    /// replaced it, creating it when missing).
    fn catch_up(&self, cache: &mut Cache) -> Result<(), AllocError> {
        let path = &self.inner.journal;
        let current = match std::fs::metadata(path) {
            Ok(meta) => Some((meta.dev(), meta.ino())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(err) => return Err(io_err("reading", path)(err)),
        };
        if current.is_none() || current != cache.journal.as_ref().map(|(_, id)| *id) {
            cache.forget(self.inner.pool);
            if current.is_none() {
                return self.begin_journal(cache);
            }
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(path)
                .map_err(io_err("opening", path))?;
            cache.journal = Some((file, current.expect("checked above")));
        }
        let (file, _) = cache.journal.as_mut().expect("opened above");
        // Cut short beneath us (journals are only appended to, or replaced whole): what was
        // read from it may no longer hold, and appending would go past a hole.
        let len = file.metadata().map_err(io_err("reading", path))?.len();
        if len < cache.offset {
            let line = cache.state.lines + 1;
            return Err(AllocError::Corrupt {
                path: path.clone(),
                line,
                reason: format!(
                    "the journal is {len} bytes, shorter than the {} read",
                    cache.offset
                ),
            });
        }
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(cache.offset))
            .map_err(io_err("reading", path))?;
        file.read_to_end(&mut tail)
            .map_err(io_err("reading", path))?;
        let (lines, complete) = complete_lines(&tail);
        // A journal is made whole, header first (a temp file renamed into place): one without
        // a complete header was cut short or overwritten, and every lease it held is unknown.
        if cache.offset == 0 && lines.is_empty() {
            return Err(AllocError::Corrupt {
                path: path.clone(),
                line: 1,
                reason: "no complete header".into(),
            });
        }
        let first_line = cache.state.lines + usize::from(cache.offset > 0) + 1;
        for (i, line) in lines.iter().enumerate() {
            let number = first_line + i;
            let corrupt = |reason: String| AllocError::Corrupt {
                path: path.clone(),
                line: number,
                reason,
            };
            if cache.offset == 0 && i == 0 {
                match self.read_header(line, path) {
                    Ok(header) => cache.state.next_token = header.next_token,
                    Err(changed @ AllocError::PoolChanged { .. }) => {
                        return self.start_over_unless_held(cache, &lines, changed);
                    }
                    Err(err) => return Err(err),
                }
                continue;
            }
            let entry: Entry = serde_json::from_slice(line).map_err(|e| corrupt(e.to_string()))?;
            cache.state.apply(&entry).map_err(corrupt)?;
        }
        if complete < tail.len() {
            // A write that never finished: it was not acknowledged, so it never happened.
            let end = cache.offset + complete as u64;
            file.set_len(end)
                .map_err(io_err("cutting an unfinished write from", path))?;
            tracing::warn!(path = %path.display(), "cut an unfinished write from the lease journal");
        }
        cache.offset += complete as u64;
        Ok(())
    }

    /// A journal of another pool (`lines`, header first) whose leases are all dead is
    /// started again with this one, under the lock: no container holds a block of the old
    /// pool, so none can be given out twice. Tokens go on from where it stopped. While one
    /// lives, the pool cannot change (`changed`).
    fn start_over_unless_held(
        &self,
        cache: &mut Cache,
        lines: &[&[u8]],
        changed: AllocError,
    ) -> Result<(), AllocError> {
        let Ok(header) = serde_json::from_slice::<Header>(lines[0]) else {
            return Err(changed);
        };
        let Ok(recorded) = IdPool::new(header.pool_start, header.pool_size, header.block_size)
        else {
            return Err(changed);
        };
        let mut old = State::empty(recorded);
        old.next_token = header.next_token;
        for line in &lines[1..] {
            let applied = serde_json::from_slice::<Entry>(line)
                .map_err(|e| e.to_string())
                .and_then(|entry| old.apply(&entry));
            if applied.is_err() {
                return Err(changed);
            }
        }
        let held = old
            .leases
            .values()
            .any(|lease| lease.holders.iter().any(Holder::is_alive));
        if held {
            return Err(changed);
        }
        tracing::info!(
            path = %self.inner.journal.display(),
            "no container holds a block of the pool the lease journal was started with: \
             starting it again with the new pool"
        );
        cache.forget(self.inner.pool);
        cache.state.next_token = old.next_token;
        self.start_journal(cache)
    }

    /// Reads the header, checking its version, pool and boot.
    fn read_header(&self, line: &[u8], path: &Path) -> Result<Header, AllocError> {
        let corrupt = |reason: String| AllocError::Corrupt {
            path: path.to_path_buf(),
            line: 1,
            reason,
        };
        let header: Header =
            serde_json::from_slice(line).map_err(|e| corrupt(format!("header: {e}")))?;
        if header.eci_leases != VERSION {
            return Err(corrupt(format!(
                "version {} is not {VERSION}",
                header.eci_leases
            )));
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
        if header.next_token >= crate::journal::TOKEN_LIMIT {
            return Err(corrupt(format!(
                "next token {} is not below {}",
                header.next_token,
                crate::journal::TOKEN_LIMIT
            )));
        }
        let boot = boot_id().map_err(io_err("reading the boot id for", path))?;
        if header.boot_id != boot {
            return Err(corrupt(format!(
                "written in boot {}, not this one ({boot})",
                header.boot_id
            )));
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

    fn synced(&self) -> bool {
        self.inner.durability == Durability::Sync
    }

    /// Starts this boot's journal, unless it had one already (see [`BEGUN`]).
    fn begin_journal(&self, cache: &mut Cache) -> Result<(), AllocError> {
        let begun = self.inner.dir.join(BEGUN);
        let boot = boot_id().map_err(io_err("reading the boot id for", &begun))?;
        match std::fs::read_to_string(&begun) {
            Ok(text) if text.trim() == boot => {
                return Err(AllocError::JournalGone {
                    path: self.inner.journal.clone(),
                    begun,
                })
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err("reading", &begun)(err)),
        }
        if self.inner.seed_from_live {
            let live = crate::live::blocks_in_use(self.inner.pool).map_err(io_err(
                "reading which ID blocks live user namespaces use, for a new journal in",
                &self.inner.dir,
            ))?;
            for entry in adoption(&cache.state, &live, self.inner.pool) {
                cache
                    .state
                    .apply(&entry)
                    .expect("an adoption is consistent with the state it was made for");
            }
        }
        self.start_journal(cache)?;
        std::fs::write(&begun, format!("{boot}\n")).map_err(io_err("writing", &begun))
    }

    /// Replaces the journal with a header and the cached live leases: temp file, (fsync,)
    /// rename, (fsync of the directory).
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
        let path = &self.inner.journal;
        let tmp = path.with_extension("jsonl.tmp");
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        file.write_all(text.as_bytes())
            .map_err(io_err("writing", &tmp))?;
        if self.synced() {
            file.sync_all().map_err(io_err("syncing", &tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io_err("renaming over", path))?;
        if self.synced() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("syncing directory", dir))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err("opening", path))?;
        let meta = file.metadata().map_err(io_err("reading", path))?;
        cache.journal = Some((file, (meta.dev(), meta.ino())));
        cache.offset = meta.len();
        cache.state.lines = cache.state.leases.values().map(|l| l.holders.len()).sum();
        Ok(())
    }

    /// Appends `entries` as one line (a batch if there are several): a write cut short (a
    /// full file system, a kill) leaves an unfinished line, which the next reader cuts, and so
    /// none of them, never a release without the lease that was to follow it.
    fn append(&self, cache: &mut Cache, entries: &[Entry]) -> Result<(), AllocError> {
        let path = &self.inner.journal;
        let mut text = serde_json::to_string(&one_line(entries)).expect("an entry serialises");
        text.push('\n');
        let (file, _) = cache.journal.as_mut().expect("caught up before appending");
        file.write_all(text.as_bytes())
            .map_err(io_err("appending to", path))?;
        if self.synced() {
            file.sync_data().map_err(io_err("syncing", path))?;
        }
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

/// `entries`, one or more, as the one journal line that records them.
fn one_line(entries: &[Entry]) -> Entry {
    match entries {
        [entry] => entry.clone(),
        entries => Entry::Batch {
            entries: entries.to_vec(),
        },
    }
}

#[cfg(test)]
mod tests;
