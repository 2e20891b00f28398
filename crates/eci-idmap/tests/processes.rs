//! Several processes on one record: exclusion under contention and recovery after kill -9.
//! The test binary re-runs itself as the worker processes (the ignored `worker` test).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use eci_idmap::{Allocator, Holder};
use eci_policy::settings::IdPool;

const MODE: &str = "ECI_IDMAP_WORKER";
const DIR: &str = "ECI_IDMAP_DIR";

fn pool(blocks: u32) -> IdPool {
    IdPool::new(1 << 28, blocks * 65536, 65536).unwrap()
}

fn spawn_worker(mode: &str, dir: &Path, id: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "worker",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode)
        .env(DIR, dir)
        .env("ECI_IDMAP_WORKER_ID", id.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Run by the other tests in child processes; does nothing when run by hand.
#[test]
#[ignore = "a worker process for the other tests"]
fn worker() {
    let (Ok(mode), Ok(dir)) = (std::env::var(MODE), std::env::var(DIR)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let id: usize = std::env::var("ECI_IDMAP_WORKER_ID")
        .unwrap()
        .parse()
        .unwrap();
    let me = Holder::current().unwrap();
    match mode.as_str() {
        "contend" => {
            let alloc = Allocator::open(&dir.join("record"), pool(3)).unwrap();
            for i in 0..1000 {
                let lease = alloc.allocate(&format!("w{id}-{i}"), me).unwrap();
                // Independent of the allocator: creating the marker fails if another process
                // holds the same block right now.
                let marker = dir.join("owned").join(lease.index().to_string());
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&marker)
                    .unwrap_or_else(|e| {
                        panic!("block {} handed out twice: {e}", lease.index());
                    });
                std::fs::remove_file(&marker).unwrap();
                lease.release().unwrap();
            }
        }
        "crash" => {
            let alloc = Allocator::open(&dir, pool(4096)).unwrap();
            for i in 0.. {
                std::mem::forget(alloc.allocate(&format!("c{id}-{i}"), me).unwrap());
            }
        }
        other => panic!("unknown worker mode {other}"),
    }
}

#[test]
fn two_processes_allocating_at_once_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("owned")).unwrap();
    let mut workers: Vec<Child> = (0..2)
        .map(|id| spawn_worker("contend", dir.path(), id))
        .collect();
    for w in &mut workers {
        assert!(
            w.wait().unwrap().success(),
            "a worker saw a block handed out twice or failed"
        );
    }
    let alloc = Allocator::open(&dir.path().join("record"), pool(3)).unwrap();
    assert_eq!(
        alloc.leases().unwrap(),
        Vec::new(),
        "every lease was released"
    );
}

#[test]
fn killing_an_allocating_process_never_corrupts_the_record_and_its_leases_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = std::process::id() as u64;
    for round in 0..100 {
        let mut child = spawn_worker("crash", dir.path(), round);
        // A pseudo-random moment, so that the kill lands at every point of an allocation.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(5 + (seed >> 33) % 25));
        child.kill().unwrap();
        child.wait().unwrap();
        let alloc = Allocator::open(dir.path(), pool(4096)).unwrap_or_else(|e| {
            panic!("round {round}: the record does not open after kill -9: {e}")
        });
        let live = alloc.leases().unwrap();
        assert_eq!(
            live,
            Vec::new(),
            "round {round}: leases of the dead process were not reclaimed"
        );
    }
}
