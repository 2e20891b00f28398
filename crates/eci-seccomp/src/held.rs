//! Freeing a helper that the container's own FUSE server holds.
//!
//! The helper reads a caller's arguments and looks its paths up as container root, whose IDs
//! the container's FUSE mounts map: a pointer into a mapped file of a FUSE server that never
//! answers a read, or a path below its mount, keeps the helper waiting for the server, and
//! once the server has read the request not even SIGKILL ends that wait. Every later trapped
//! call of the container then waits behind it, and deleting the container hangs too (the
//! server's process, killed, cannot finish exiting while the helper's read holds its memory
//! map). The supervisor therefore watches how long the helper has been on one call; every
//! [`HELD_AFTER`] on the same call it aborts, through the host's FUSE control filesystem,
//! every FUSE connection with requests waiting that is mounted where the caller or the helper
//! is and not in the runtime's own mount namespace (eci's virtual files and the host's FUSE
//! mounts are there). The helper's wait then ends with an error, and it answers the call and
//! goes on. Another FUSE filesystem of the container's that has requests waiting at that
//! moment is aborted as well (nothing says which connection holds the helper). Not found this
//! way, so the call stays held: a FUSE mount neither the caller's nor the helper's namespace
//! shows (unmounted first, its file still mapped; or outside the caller's root).
//!
//! ```
//! use eci_seccomp::held::fuse_devices;
//! let mountinfo = "36 25 0:51 / /mnt/s rw,nosuid - fuse.sshfs host:/ rw,user_id=0\n\
//!                  37 25 0:52 / /tmp rw - tmpfs tmpfs rw\n";
//! assert_eq!(fuse_devices(mountinfo), [(0, 51)]);
//! ```

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// How long the helper may be on one call before the FUSE connections that may hold it are
/// aborted (and again after as long, while it stays on that call): far longer than any mount
/// takes that does not wait on a server.
pub const HELD_AFTER: Duration = Duration::from_secs(10);

/// Where the host's FUSE control filesystem is mounted.
const FUSECTL: &str = "/sys/fs/fuse/connections";
/// The control filesystem's magic number (statfs).
const FUSECTL_SUPER_MAGIC: i64 = 0x6573_5543;

/// The device numbers (major, minor) of the FUSE filesystems (`fuse`, `fuse.*`, `fuseblk`)
/// in a `/proc/PID/mountinfo` text, each once, in the order found. Lines that do not parse
/// are skipped.
pub fn fuse_devices(mountinfo: &str) -> Vec<(u32, u32)> {
    let mut devices = Vec::new();
    let mut seen = HashSet::new();
    for line in mountinfo.lines() {
        let Some((mount, filesystem)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = filesystem.split(' ').next().unwrap_or_default();
        let is_fuse = fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse.");
        let device = mount.split(' ').nth(2).and_then(|d| d.split_once(':'));
        let device =
            device.and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
        if let (true, Some(device)) = (is_fuse, device) {
            if seen.insert(device) {
                devices.push(device);
            }
        }
    }
    devices
}

/// Aborts the FUSE connections with requests waiting that are mounted in the mount namespace
/// of the held call's `caller` or of the `helper` holding it, and not in this process's: how
/// many were aborted. Fails, saying so, where the host has no FUSE control filesystem at its
/// place: then nothing can be freed.
pub fn abort_waiting_connections(helper: i32, caller: u32) -> std::io::Result<usize> {
    if !is_fusectl(Path::new(FUSECTL)) {
        return Err(std::io::Error::other(format!(
            "no FUSE control filesystem at {FUSECTL}: a held helper cannot be freed"
        )));
    }
    let own: HashSet<_> = fuse_devices(&std::fs::read_to_string("/proc/self/mountinfo")?)
        .into_iter()
        .collect();
    // Either may have ended meanwhile.
    let devices_of = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .map_or_else(|_| Vec::new(), |text| fuse_devices(&text))
    };
    let mut candidates = devices_of(&caller.to_string());
    candidates.extend(devices_of(&helper.to_string()));
    let mut tried = HashSet::new();
    let mut aborted = 0;
    for device in candidates {
        if own.contains(&device) || !tried.insert(device) {
            continue;
        }
        if abort_if_waiting(Path::new(FUSECTL), device)? {
            aborted += 1;
        }
    }
    Ok(aborted)
}

/// Whether `dir` is a FUSE control filesystem.
fn is_fusectl(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is valid; statfs fills it in from a NUL-terminated path.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let stated = unsafe { libc::statfs(path.as_ptr(), &mut fs) } == 0;
    stated && fs.f_type as i64 == FUSECTL_SUPER_MAGIC
}

/// Aborts connection `device` under the control filesystem at `fusectl` if it has requests
/// waiting. FUSE names a connection by its device number, which is the minor alone for the
/// anonymous major 0 every FUSE mount has; a connection gone meanwhile is not aborted.
fn abort_if_waiting(fusectl: &Path, (major, minor): (u32, u32)) -> std::io::Result<bool> {
    if major != 0 {
        return Ok(false);
    }
    let dir = fusectl.join(minor.to_string());
    let waiting = match std::fs::read_to_string(dir.join("waiting")) {
        Ok(waiting) => waiting,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    if waiting.trim().parse::<u64>().unwrap_or(0) == 0 {
        return Ok(false);
    }
    std::fs::write(dir.join("abort"), "1")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fuse_filesystems_are_found_by_type_once_each() {
        let text = "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    2 1 0:40 / /a rw - fuse eci-virtual rw\n\
                    3 1 0:40 /x /b rw - fuse eci-virtual rw\n\
                    4 1 0:41 / /c rw,nosuid - fuse.sshfs h:/ rw\n\
                    5 1 8:2 / /d rw - fuseblk /dev/sdb1 rw\n\
                    6 1 0:42 / /e rw shared:5 - fusectl fusectl rw\n\
                    7 1 0:43 / /with\\040space rw - fuse.x y rw\n\
                    garbage\n";
        assert_eq!(fuse_devices(text), [(0, 40), (0, 41), (8, 2), (0, 43)]);
    }

    #[test]
    fn only_a_connection_with_requests_waiting_is_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let fusectl = dir.path().to_path_buf();
        for (name, waiting) in [("40", "0\n"), ("41", "2\n")] {
            std::fs::create_dir(fusectl.join(name)).unwrap();
            std::fs::write(fusectl.join(name).join("waiting"), waiting).unwrap();
        }
        assert!(!abort_if_waiting(&fusectl, (0, 40)).unwrap());
        assert!(abort_if_waiting(&fusectl, (0, 41)).unwrap());
        assert!(
            !abort_if_waiting(&fusectl, (0, 99)).unwrap(),
            "gone meanwhile"
        );
        assert!(
            !abort_if_waiting(&fusectl, (8, 41)).unwrap(),
            "not an anonymous device"
        );
        assert!(!fusectl.join("40/abort").exists());
        assert_eq!(
            std::fs::read_to_string(fusectl.join("41/abort")).unwrap(),
            "1"
        );
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panic(text in "\\PC*") {
            let found = fuse_devices(&text);
            let mut unique = found.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(found.len(), unique.len());
        }
    }
}
