//! Writing a child's user namespace ID maps: directly as root, or through newuidmap and
//! newgidmap (Debian's uidmap package) as a user with delegated subordinate IDs.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

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
    /// newuidmap or newgidmap could not run or refused.
    #[error("{program} for pid {pid} {outcome}")]
    Helper {
        /// newuidmap or newgidmap.
        program: &'static str,
        /// The target process.
        pid: i32,
        /// What happened, with its error output.
        outcome: String,
    },
}

/// The text the kernel expects in a map file, one mapping per line.
pub fn map_text(mappings: &[IdMapping]) -> String {
    mappings
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_start, m.host_start, m.size))
        .collect()
}

/// Writes `uid_map` and `gid_map` of process `pid`: directly when the caller is root, through
/// newuidmap and newgidmap otherwise (the IDs must be delegated to the caller in /etc/subuid and
/// /etc/subgid). Either way setgroups(2) stays allowed inside: root writes gid_map with
/// CAP_SETGID, and newgidmap is privileged.
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
    if nix::unistd::geteuid().is_root() {
        write_directly(pid, uid, gid)
    } else {
        run_helper("newuidmap", pid, uid)?;
        run_helper("newgidmap", pid, gid)
    }
}

fn write_directly(pid: i32, uid: &[IdMapping], gid: &[IdMapping]) -> Result<(), MapError> {
    for (file, mappings) in [("uid_map", uid), ("gid_map", gid)] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        // Each map is written once, in one write, as the kernel requires.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(map_text(mappings).as_bytes()))
            .map_err(|source| MapError::Write { path, source })?;
    }
    Ok(())
}

fn run_helper(program: &'static str, pid: i32, mappings: &[IdMapping]) -> Result<(), MapError> {
    let mut command = Command::new(program);
    command.arg(pid.to_string());
    for m in mappings {
        command.args([
            m.container_start.to_string(),
            m.host_start.to_string(),
            m.size.to_string(),
        ]);
    }
    let output = command.output().map_err(|e| MapError::Helper {
        program,
        pid,
        outcome: format!("could not run ({e}); install the uidmap package"),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(MapError::Helper {
            program,
            pid,
            outcome: format!("failed ({}): {stderr}", output.status),
        });
    }
    Ok(())
}
