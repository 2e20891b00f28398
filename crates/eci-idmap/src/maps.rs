//! Writing a child's user namespace ID maps.

use std::io::Write;
use std::path::PathBuf;

use eci_policy::ids::{validate_mappings, IdMapping, MappingError};

/// Why maps could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The mappings are invalid.
    #[error(transparent)]
    Invalid(#[from] MappingError),
    /// The kernel refused the write.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The map file.
        path: PathBuf,
        /// The kernel's error.
        source: std::io::Error,
    },
}

/// The text the kernel expects in a map file, one mapping per line.
pub fn map_text(mappings: &[IdMapping]) -> String {
    mappings
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_start, m.host_start, m.size))
        .collect()
}

/// Writes `uid_map` and `gid_map` of process `pid` directly, as a runtime with CAP_SETUID and
/// CAP_SETGID in the parent user namespace may. Each map is written once, in one write, as the
/// kernel requires.
///
/// ```no_run
/// use eci_idmap::write_id_maps;
/// use eci_policy::ids::IdBlock;
/// let block = IdBlock::new(1 << 28, 65536).unwrap();
/// write_id_maps(1234, &[block.mapping()], &[block.mapping()])?;
/// # Ok::<(), eci_idmap::MapError>(())
/// ```
pub fn write_id_maps(pid: i32, uid: &[IdMapping], gid: &[IdMapping]) -> Result<(), MapError> {
    validate_mappings(uid)?;
    validate_mappings(gid)?;
    for (file, mappings) in [("uid_map", uid), ("gid_map", gid)] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(map_text(mappings).as_bytes()))
            .map_err(|source| MapError::Write { path, source })?;
    }
    Ok(())
}
