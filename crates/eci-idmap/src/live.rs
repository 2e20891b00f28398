//! The ID blocks live processes use, read from the kernel rather than from a journal: every user
//! namespace on the host whose `uid_map` or `gid_map` reaches into a pool's blocks. A journal
//! that starts empty while containers run (its directory was removed, or an engine's runtime
//! of an earlier version kept its own) would otherwise hand their blocks out again. Read only
//! from the host's user namespace (elsewhere the maps do not read exactly, and nothing is
//! found); namespaces that no process is in (kept by a bind mount or a descriptor) are not
//! seen. A process the runtime may not inspect (outside its Landlock domain or its security
//! module's reach) is known by its maps, which anyone may read; any other failure to read a
//! process fails the scan.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use eci_policy::settings::IdPool;

use crate::{Holder, LeaseRecord};

/// How the owner of a lease [`blocks_in_use`] found begins (`userns:INODE`): no container's.
/// [`crate::Allocator::allocate`] refuses owners that begin so, so that
/// [`LeaseRecord::found_live`] tells these leases apart: whoever mapped them (another runtime, a
/// host user's tool) is not known to be a container of this journal's.
pub const FOUND_LIVE_PREFIX: &str = "userns:";

/// At most this many processes of one user namespace hold its blocks: the longest-running ones
/// (a container's init first, whose end ends its PID namespace).
const HOLDERS_PER_NAMESPACE: usize = 4;

/// One lease record per block of `pool` that some live user namespace other than the caller's
/// maps host IDs of, held by the namespace's longest-running processes (owner
/// `userns:INODE`, or a number from its maps above 2^63 for a namespace the runtime may not
/// name), for [`crate::Allocator::adopt`]. Processes that end during the scan are
/// skipped; a /proc that cannot be listed is an error.
///
/// ```no_run
/// use eci_idmap::Allocator;
/// use eci_policy::settings::IdPool;
/// let pool = IdPool::default();
/// let allocator = Allocator::open("/run/eci/idmap".as_ref(), pool)?;
/// allocator.adopt(&eci_idmap::live::blocks_in_use(pool)?)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn blocks_in_use(pool: IdPool) -> io::Result<Vec<LeaseRecord>> {
    blocks_in_use_under(Path::new("/proc"), pool)
}

fn blocks_in_use_under(proc: &Path, pool: IdPool) -> io::Result<Vec<LeaseRecord>> {
    let namespaces = scan(proc, pool, true)?;
    let mut records = Vec::new();
    for (ns, (blocks, mut holders)) in namespaces {
        holders.sort_by_key(|h| (h.start_time, h.pid));
        holders.truncate(HOLDERS_PER_NAMESPACE);
        if holders.is_empty() {
            continue;
        }
        records.extend(blocks.into_iter().map(|index| LeaseRecord {
            index,
            owner: format!("{FOUND_LIVE_PREFIX}{ns}"),
            token: 0,
            holders: holders.clone(),
        }));
    }
    Ok(records)
}

/// The blocks of `pool` that some live user namespace other than the caller's maps host IDs
/// of: [`blocks_in_use`] without the holders (one read of /proc/PID/stat fewer for every
/// process of such a namespace), for a choice of a block to lease.
///
/// ```no_run
/// use eci_policy::settings::IdPool;
/// let taken = eci_idmap::live::blocks_mapped(IdPool::default())?;
/// println!("{} blocks of the pool are mapped by live namespaces", taken.len());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn blocks_mapped(pool: IdPool) -> io::Result<std::collections::BTreeSet<u32>> {
    let namespaces = scan(Path::new("/proc"), pool, false)?;
    Ok(namespaces
        .into_values()
        .flat_map(|(blocks, _)| blocks)
        .collect())
}

/// User namespaces by inode: the blocks their maps reach and the processes found in them.
type Namespaces = BTreeMap<u64, (Vec<u32>, Vec<Holder>)>;

/// Each user namespace other than the caller's, once, with the blocks of `pool` its maps reach
/// (read from the first process found in it) and, `with_holders`, its processes. Nothing from
/// outside the host's user namespace: read from a user namespace of its own, a map names only
/// each extent's first ID in the reader's terms (the count stays the parent's), and the
/// initial namespace's map would look like all of the pool.
fn scan(proc: &Path, pool: IdPool, with_holders: bool) -> io::Result<Namespaces> {
    let mut namespaces = Namespaces::new();
    if !in_initial_namespace(proc)? {
        return Ok(namespaces);
    }
    let own = namespace_of(&proc.join("self"))?;
    for entry in std::fs::read_dir(proc)? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let dir = proc.join(pid.to_string());
        let ns = match namespace_of(&dir) {
            Ok(ns) => ns,
            Err(err) if gone(&err) => continue,
            // Its namespace cannot be named, but its maps can be read, and they tell the
            // blocks it uses: keyed by them instead.
            Err(err) if hidden(&err) => match hidden_namespace(&dir) {
                Ok(Some(key)) => key,
                Ok(None) => continue,
                Err(err) if gone(&err) => continue,
                Err(err) => return Err(unreadable(&dir, err)),
            },
            Err(err) => return Err(unreadable(&dir, err)),
        };
        if ns == own {
            continue;
        }
        let (blocks, holders) = match namespaces.entry(ns) {
            std::collections::btree_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => match blocks_of(&dir, pool) {
                Ok(blocks) => slot.insert((blocks, Vec::new())),
                // Gone meanwhile (or hidden): the next process of the namespace, if any, tells.
                Err(err) if gone(&err) || hidden(&err) => continue,
                // Anything else (no descriptor or memory left) would make a namespace's blocks
                // look free: no answer rather than a wrong one.
                Err(err) => return Err(unreadable(&dir, err)),
            },
        };
        if blocks.is_empty() || !with_holders {
            continue;
        }
        if let Ok(holder) = Holder::of(pid) {
            holders.push(holder);
        }
    }
    Ok(namespaces)
}

/// Whether `err`, from a process's /proc directory, means the process has ended.
fn gone(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

/// Whether `err`, from a process's /proc directory, means the runtime may not look at it: a
/// runtime confined by Landlock or a security module cannot name the namespaces of processes
/// outside its confinement (this VM's own init, for one). Refusing every allocation for that
/// would leave such a runtime with none; their maps are read instead ([`hidden_namespace`]).
fn hidden(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EACCES | libc::EPERM))
}

/// A key for the user namespace of the process at `dir`, whose namespace file the runtime may
/// not read: made from its maps, which anyone may read (two namespaces with the same maps
/// share a key, and their blocks are the same), with the top bit set, which no namespace's
/// inode number has. `None` for the initial namespace (its maps are the whole range).
fn hidden_namespace(dir: &Path) -> io::Result<Option<u64>> {
    use std::hash::{Hash, Hasher};
    let uid_map = std::fs::read_to_string(dir.join("uid_map"))?;
    if eci_policy::ids::parse_map_file(&uid_map) == Some(vec![whole_range()]) {
        return Ok(None);
    }
    let gid_map = std::fs::read_to_string(dir.join("gid_map"))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&uid_map, &gid_map).hash(&mut hasher);
    Ok(Some(hasher.finish() | 1 << 63))
}

/// The initial user namespace's one extent: every ID onto itself.
fn whole_range() -> eci_policy::ids::IdMapping {
    eci_policy::ids::IdMapping {
        container_start: 0,
        host_start: 0,
        size: u32::MAX,
    }
}

/// `err` from reading `dir`, naming it.
fn unreadable(dir: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("reading {}: {err}", dir.display()))
}

/// Whether the process reading `proc` is in the initial user namespace: its map is the
/// whole ID range onto itself.
fn in_initial_namespace(proc: &Path) -> io::Result<bool> {
    let text = std::fs::read_to_string(proc.join("self/uid_map"))?;
    Ok(eci_policy::ids::parse_map_file(&text) == Some(vec![whole_range()]))
}

/// The inode number of the user namespace of the process at `dir`.
fn namespace_of(dir: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(dir.join("ns/user"))?.ino())
}

/// The blocks of `pool` that the process at `dir`'s ID maps reach, in order, each once.
fn blocks_of(dir: &Path, pool: IdPool) -> io::Result<Vec<u32>> {
    let mut blocks = Vec::new();
    for file in ["uid_map", "gid_map"] {
        let text = std::fs::read_to_string(dir.join(file))?;
        let mappings = eci_policy::ids::parse_map_file(&text).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("malformed {file}"))
        })?;
        for mapping in mappings {
            blocks.extend(pool.blocks_touched(mapping.host_start, mapping.size));
        }
    }
    blocks.sort_unstable();
    blocks.dedup();
    Ok(blocks)
}

/// For tests: a sleeping process in a user namespace of its own whose uid and gid maps are
/// `mapping`; killed and reaped when dropped (also when a test fails first).
#[cfg(test)]
pub(crate) struct MappedNamespace(std::process::Child);

#[cfg(test)]
impl MappedNamespace {
    pub(crate) fn new(mapping: eci_policy::ids::IdMapping) -> MappedNamespace {
        let child = std::process::Command::new("unshare")
            .args(["--user", "sleep", "30"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("unshare (util-linux) runs");
        let process = MappedNamespace(child);
        let dir = Path::new("/proc").join(process.pid().to_string());
        let own = namespace_of(Path::new("/proc/self")).unwrap();
        // The maps can be written once unshare has made the namespace.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while namespace_of(&dir).unwrap() == own && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        crate::write_id_maps(process.pid(), &[mapping], &[mapping]).unwrap();
        process
    }

    pub(crate) fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

#[cfg(test)]
impl Drop for MappedNamespace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eci_policy::ids::IdMapping;

    #[test]
    fn a_process_whose_maps_cannot_be_read_fails_the_scan_and_an_ended_one_is_skipped() {
        // A /proc of files: the reader in the initial namespace, process 10 in another user
        // namespace whose uid_map cannot be read (a directory: EISDIR, as EMFILE or ENOMEM
        // would be), process 11 gone (no ns/user). Skipping 10 as if it had ended made every
        // block it maps look free.
        let proc = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = proc.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("self/uid_map", "0 0 4294967295\n");
        write("self/ns/user", "");
        write("10/ns/user", "");
        std::fs::create_dir_all(proc.path().join("10/uid_map")).unwrap();
        std::fs::create_dir_all(proc.path().join("11")).unwrap();
        let pool = IdPool::default();
        let err = blocks_in_use_under(proc.path(), pool).unwrap_err();
        assert!(err.to_string().contains("/10"), "{err}");
        // With 10's maps readable and mapping nothing of the pool, nothing is in use.
        std::fs::remove_dir(proc.path().join("10/uid_map")).unwrap();
        write("10/uid_map", "0 1000 1\n");
        write("10/gid_map", "0 1000 1\n");
        assert_eq!(blocks_in_use_under(proc.path(), pool).unwrap(), vec![]);
    }

    #[test]
    fn a_hidden_namespace_is_known_by_its_maps_and_the_initial_one_is_skipped() {
        // A process whose namespace file the runtime may not read (outside its Landlock
        // domain) was skipped whole, so the blocks its maps reach looked free.
        let dir = tempfile::tempdir().unwrap();
        let write = |uid: &str, gid: &str| {
            std::fs::write(dir.path().join("uid_map"), uid).unwrap();
            std::fs::write(dir.path().join("gid_map"), gid).unwrap();
        };
        write("0 0 4294967295\n", "0 0 4294967295\n");
        assert_eq!(hidden_namespace(dir.path()).unwrap(), None);
        write("0 268435456 65536\n", "0 268435456 65536\n");
        let key = hidden_namespace(dir.path()).unwrap().expect("a key");
        assert!(key >= 1 << 63, "no inode number is that large");
        assert_eq!(hidden_namespace(dir.path()).unwrap(), Some(key));
        write("0 268500992 65536\n", "0 268500992 65536\n");
        assert_ne!(hidden_namespace(dir.path()).unwrap(), Some(key));
    }

    #[test]
    fn a_live_namespace_mapping_a_block_holds_it_and_the_callers_own_does_not() {
        // A pool of its own, far from any other test's: block 2 is mapped by a sleeping
        // process in a user namespace of its own (uid and gid maps one ID each, 100 into it).
        let pool = IdPool::new(0x7100_0000, 4 << 16, 1 << 16).unwrap();
        let one = IdMapping {
            container_start: 0,
            host_start: 0x7100_0000u32 + (2 << 16) + 100,
            size: 1,
        };
        let process = MappedNamespace::new(one);
        let records = blocks_in_use(pool).unwrap();
        let pid = process.pid();
        drop(process);
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].index, 2);
        assert_eq!(records[0].holders[0].pid, pid);
        // Once it is gone, nothing holds the pool.
        assert!(blocks_in_use(pool).unwrap().is_empty());
    }
}
