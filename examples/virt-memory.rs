//! Memory the virtual files server spends per served container: mounts a server, registers
//! 1,000 containers, reads each one's files once (filling its caches), and prints the growth of
//! this process's resident set per container. Needs root and /dev/fuse.
//!
//!     cargo run --release --example virt-memory

use std::path::Path;
use std::time::Instant;

use eci::eci_mount::virt::{CgroupDirs, VirtualFs, SERVED};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() -> std::io::Result<()> {
    const CONTAINERS: u64 = 1000;
    let dir = tempfile::tempdir()?;
    let fs = VirtualFs::mount(dir.path())?;
    let dirs = CgroupDirs::resolve(Path::new("/"))?;
    let before = rss_kib();
    for n in 0..CONTAINERS {
        let served = fs.register(&format!("c{n}"), dirs.clone(), Instant::now())?;
        for (file, _) in SERVED {
            std::fs::read(served.files.join(file.name()))?;
        }
    }
    let after = rss_kib();
    println!(
        "{CONTAINERS} containers: {} KiB more resident, {:.1} KiB per container",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / CONTAINERS as f64
    );
    Ok(())
}
