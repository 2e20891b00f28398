//! Real containers in real namespaces, each asserting from inside. Needs root.

mod common;

use common::{create_with, probe, run, runtime};

#[test]
fn uid_map_shows_the_allocated_block_and_the_command_runs_as_root() {
    let mut c = create_with(
        "uidmap",
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u; echo $$",
        ],
        |_| {},
    );
    let mapping = c.container().id_mapping();
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let expected = vec![
        "0".to_string(),
        mapping.host_start.to_string(),
        "65536".to_string(),
    ];
    assert_eq!(lines[0], expected, "uid_map: {out}");
    assert_eq!(lines[1], expected, "gid_map: {out}");
    assert_eq!(lines[2], ["0"], "uid inside");
    assert_eq!(lines[3], ["1"], "the command is pid 1");
    assert!(
        mapping.host_start >= 65536,
        "container root is never a host system user"
    );
}

#[test]
fn two_containers_at_once_get_disjoint_blocks() {
    let mut a = create_with("disjoint-a", &["true"], |_| {});
    let mut b = create_with("disjoint-b", &["true"], |_| {});
    let (ma, mb) = (a.container().id_mapping(), b.container().id_mapping());
    let a_range = u64::from(ma.host_start)..u64::from(ma.host_start) + u64::from(ma.size);
    assert!(
        !a_range.contains(&u64::from(mb.host_start)),
        "{ma} overlaps {mb}"
    );
    assert!(
        !a_range.contains(&(u64::from(mb.host_start) + u64::from(mb.size) - 1)),
        "{ma} overlaps {mb}"
    );
    let leases = runtime().allocator().leases().unwrap();
    for id in [a.container().id(), b.container().id()] {
        assert_eq!(
            leases.iter().filter(|l| l.owner == id).count(),
            1,
            "one lease for {id}"
        );
    }
    assert_eq!(a.run_to_end().0, 0);
    assert_eq!(b.run_to_end().0, 0);
}

#[test]
fn runtimes_with_different_state_directories_never_share_a_block() {
    // eci-runc keeps its state under each engine's --root; Docker's and containerd's differ,
    // and their containers must still get blocks of their own.
    let dir = tempfile::tempdir().unwrap();
    let other = eci::Runtime::new(eci::RuntimeConfig {
        state_dir: dir.path().join("other-state"),
        policy: runtime().policy().clone(),
        ..Default::default()
    })
    .unwrap();
    let mut a = create_with("own-state", &["true"], |_| {});
    let a_id = a.container().id().to_string();
    let leases = other.allocator().leases().unwrap();
    assert!(
        leases.iter().any(|l| l.owner == a_id),
        "one journal for both"
    );
    let mut b = common::create_in(&other, "other-state", &["true"], |_| {});
    let (ma, mb) = (a.container().id_mapping(), b.container().id_mapping());
    assert!(
        ma.host_start + ma.size <= mb.host_start || mb.host_start + mb.size <= ma.host_start,
        "{ma} overlaps {mb}"
    );
    assert_eq!(a.run_to_end().0, 0);
    assert_eq!(b.run_to_end().0, 0);
}

#[test]
fn a_lease_journal_or_state_directory_is_the_runtimes_own_and_closed_to_others() {
    // Whoever may write the journal could put two containers on one ID block.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let config =
        |state_dir: std::path::PathBuf, leases_dir: std::path::PathBuf| eci::RuntimeConfig {
            state_dir,
            leases_dir,
            policy: runtime().policy().clone(),
            ..Default::default()
        };
    // Another user's is refused.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(1000), None).unwrap();
    for (state, leases, what) in [
        (dir.path().join("state"), theirs.clone(), "lease journal"),
        (theirs.clone(), dir.path().join("idmap"), "state"),
    ] {
        let err = eci::Runtime::new(config(state, leases)).unwrap_err();
        assert!(
            matches!(&err, eci::Error::SharedDir { what: w, owner: 1000, .. } if *w == what),
            "{err}"
        );
    }
    // Its own, open to others (a tmpfs root, say), is closed to their writes and serves.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    eci::Runtime::new(config(dir.path().join("state"), open.clone())).unwrap();
    assert_eq!(std::fs::metadata(&open).unwrap().mode() & 0o7777, 0o755);
    // Its own, but in a directory another user may write or owns: they could rename it away
    // and put one of theirs in its place after the check. A sticky directory of root's (as
    // /tmp, which holds all of these) lets nobody else move the runtime's entry.
    let writable = dir.path().join("writable");
    std::fs::create_dir(&writable).unwrap();
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o777)).unwrap();
    for (parent, leases) in [(&writable, true), (&theirs, false)] {
        let parent = &std::fs::canonicalize(parent).unwrap();
        let inside = parent.join("eci");
        let (state, idmap) = if leases {
            (dir.path().join("state"), inside.clone())
        } else {
            (inside.clone(), dir.path().join("idmap"))
        };
        let err = eci::Runtime::new(config(state, idmap)).unwrap_err();
        assert!(
            matches!(&err, eci::Error::MovableDir { movable, path, .. }
                if movable == parent && *path == inside),
            "{err}"
        );
    }
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o1777)).unwrap();
    eci::Runtime::new(config(dir.path().join("state"), writable.join("eci"))).unwrap();
}

#[test]
fn a_block_leased_by_an_earlier_version_is_not_handed_out_again() {
    // Earlier versions journaled leases in STATE_DIR/idmap. A container such a runtime
    // started keeps its block when a runtime of this version opens the same state directory.
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let config = |leases_dir: Option<std::path::PathBuf>| {
        let mut config = eci::RuntimeConfig {
            state_dir: state_dir.clone(),
            policy: runtime().policy().clone(),
            ..Default::default()
        };
        if let Some(leases_dir) = leases_dir {
            config.leases_dir = leases_dir;
        }
        config
    };
    let earlier = eci::Runtime::new(config(Some(state_dir.join("idmap")))).unwrap();
    let mut old = common::create_in(&earlier, "earlier", &["true"], |_| {});
    let old_id = old.container().id().to_string();
    let older = earlier.allocator().leases().unwrap();
    let older = older.iter().find(|l| l.owner == old_id).unwrap();
    let now = eci::Runtime::new(config(None)).unwrap();
    // The block's lease in the host-wide journal is kept alive by the earlier one's holders
    // (a lease of its own, or, where a container of this version holds the block too, one
    // they were added to). Not by this process, which holds every lease it makes: a test
    // beside this one that held the block too and ended has released it for this process
    // while the earlier container's init keeps it.
    let leases = now.allocator().leases().unwrap();
    let adopted = leases.iter().find(|l| l.index == older.index).unwrap();
    let me = std::process::id() as i32;
    let others = || older.holders.iter().filter(|h| h.pid != me);
    assert!(others().count() > 0, "{older:?}");
    assert!(
        others().all(|h| adopted.holders.contains(h)),
        "{older:?} not taken into {adopted:?}"
    );
    let old_mapping = old.container().id_mapping();
    let mut new = common::create_in(&now, "now", &["true"], |_| {});
    assert_ne!(
        new.container().id_mapping().host_start,
        old_mapping.host_start
    );
    assert_eq!(new.run_to_end().0, 0);
    drop(old);
}

#[test]
fn a_journal_started_again_beside_running_containers_does_not_hand_out_their_blocks() {
    // The lease directory is removed while a container runs (an administrator's rm -rf of
    // /run/eci, say): the next runtime starts a new journal, which must not give the running
    // container's block to another. It reads the blocks from the live user namespaces.
    let dir = tempfile::tempdir().unwrap();
    let leases_dir = dir.path().join("idmap");
    let config = || eci::RuntimeConfig {
        state_dir: dir.path().join("state"),
        leases_dir: leases_dir.clone(),
        policy: runtime().policy().clone(),
        ..Default::default()
    };
    let first = eci::Runtime::new(config()).unwrap();
    let mut running = common::create_in(&first, "before-removal", &["sleep", "30"], |_| {});
    running.container().start().unwrap();
    let block = running.container().id_mapping().host_start;
    std::fs::remove_dir_all(&leases_dir).unwrap();
    let again = eci::Runtime::new(config()).unwrap();
    let held = again.allocator().leases().unwrap();
    assert!(
        held.iter().any(|l| again
            .allocator()
            .pool()
            .block(l.index)
            .unwrap()
            .host_start()
            == block),
        "{held:?}"
    );
    let mut next = common::create_in(&again, "after-removal", &["true"], |_| {});
    assert_ne!(next.container().id_mapping().host_start, block);
    assert_eq!(next.run_to_end().0, 0);
    // The first runtime's journal is gone: its delete frees everything but says the lease
    // could not be ended (the block stays held until its process is seen gone).
    running.container().kill(libc::SIGKILL).unwrap();
    running.container().wait().unwrap();
    let deleted = running.container.take().unwrap().delete();
    assert!(matches!(deleted, Err(eci::Error::Ids(_))), "{deleted:?}");
}

#[test]
fn a_read_only_bind_cannot_be_made_writable() {
    // /usr is bound read-only with nosuid,nodev; keeping those (as mount(8) does) is allowed,
    // dropping read-only is not.
    let answers = probe(
        "remount",
        &[
            "remount-rw",
            "/usr",
            "nosuid,nodev",
            ",",
            "remount-rw",
            "/probe",
            ",",
            "remount-ro",
            "/usr",
            "nosuid,nodev",
            ",",
            "remount-ro",
            "/probe",
        ],
    );
    assert_eq!(answers, ["EPERM", "EPERM", "ok", "ok"]);
}

#[test]
fn host_mounts_under_a_bind_are_never_writable_as_host_root() {
    // Docker's `-v DIR:DIR:ro` is a recursive read-only bind: read-only on top, while mounts the
    // host has under DIR come along as they are. A bind idmapped with its submounts let
    // container root write a host root's file on such a submount (it read as its own).
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let c = |p: &std::path::Path| std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let target = c(&sub);
    // SAFETY: NUL-terminated strings.
    let mounted = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=1m,mode=755".as_ptr().cast(),
        )
    };
    assert_eq!(mounted, 0, "{}", std::io::Error::last_os_error());
    struct Unmount(std::ffi::CString);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let _unmount = Unmount(target);
    std::fs::write(sub.join("file"), "host\n").unwrap();
    let source = dir.path().to_path_buf();
    let mut c = create_with(
        "bind-submounts",
        &[
            "sh",
            "-c",
            "(echo container > /h/sub/file) 2>/dev/null; echo $?; \
             touch /h/sub/new 2>/dev/null; echo $?",
        ],
        |spec| {
            let mut mounts = spec.mounts().clone().unwrap_or_default();
            let mut bind = eci::oci_spec::runtime::Mount::default();
            bind.set_destination("/h".into());
            bind.set_typ(Some("bind".into()));
            bind.set_source(Some(source));
            bind.set_options(Some(vec!["rbind".into(), "ro".into()]));
            mounts.push(bind);
            spec.set_mounts(Some(mounts));
        },
    );
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    let codes: Vec<&str> = out.lines().collect();
    assert!(
        codes.len() == 2 && codes.iter().all(|c| *c != "0"),
        "both refused: {out}"
    );
    assert_eq!(std::fs::read_to_string(sub.join("file")).unwrap(), "host\n");
    assert!(!sub.join("new").exists());
}

/// A tmpfs (mode `mode`) mounted at `at` on the host, detached on drop.
struct HostTmpfs(std::ffi::CString);

impl HostTmpfs {
    fn mount(at: &std::path::Path, mode: &str) -> HostTmpfs {
        let target = std::ffi::CString::new(at.to_str().unwrap()).unwrap();
        let data = std::ffi::CString::new(format!("size=1m,mode={mode}")).unwrap();
        // SAFETY: NUL-terminated strings.
        let mounted = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(mounted, 0, "{}", std::io::Error::last_os_error());
        HostTmpfs(target)
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn mounts_under_a_path_shared_read_only_are_read_only_too() {
    // The path rules make a bind of a path shared read-only read-only on every mount of its
    // tree (`rro`), whatever the spec asks: with `ro` on top alone, a mount the host has under
    // the path would stay writable in the container. Here one open to all, and a spec that
    // says `ro` and then `rw`.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let _tmpfs = HostTmpfs::mount(&sub, "1777");
    for file in [dir.path().join("file"), sub.join("file")] {
        std::fs::write(&file, "host\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let (shared_ro, _state) = common::runtime_sharing(dir.path(), true);
    let source = dir.path().to_path_buf();
    let args = [
        "/probe",
        "write",
        "/h/file",
        "x",
        ",",
        "write",
        "/h/sub/file",
        "x",
    ];
    let mut c = common::create_in(&shared_ro, "shared-ro-submount", &args, |spec| {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        let mut bind = eci::oci_spec::runtime::Mount::default();
        bind.set_destination("/h".into());
        bind.set_typ(Some("bind".into()));
        bind.set_source(Some(source));
        bind.set_options(Some(vec!["rbind".into(), "ro".into(), "rw".into()]));
        mounts.push(bind);
        spec.set_mounts(Some(mounts));
    });
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["EROFS", "EROFS"]);
    assert_eq!(std::fs::read_to_string(sub.join("file")).unwrap(), "host\n");
}

#[test]
fn nothing_is_created_in_a_host_directory_the_containers_root_may_not_write() {
    // A mount point missing under a bind of a host directory: the mounter makes it with the
    // rights the container's root has there (none over host root's 0755 directory), not with
    // the host's capabilities it holds.
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let source = host.clone();
    let created = common::try_create(runtime(), "host-point", |spec| {
        let mounts = spec.mounts_mut().get_or_insert_with(Vec::new);
        let mut bind = eci::oci_spec::runtime::Mount::default();
        bind.set_destination("/o".into());
        bind.set_typ(Some("bind".into()));
        bind.set_source(Some(source));
        bind.set_options(Some(vec!["rbind".into(), "rw".into()]));
        mounts.push(bind);
        let mut tmpfs = eci::oci_spec::runtime::Mount::default();
        tmpfs.set_destination("/o/made/deeper".into());
        tmpfs.set_typ(Some("tmpfs".into()));
        tmpfs.set_source(Some("tmpfs".into()));
        mounts.push(tmpfs);
    });
    let Err(err) = created else {
        panic!("the create was not refused")
    };
    assert!(
        err.to_string()
            .contains("/o/made/deeper: permission denied"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0, "{err}");
}

#[test]
fn a_containers_process_starts_with_none_of_the_runtimes_signal_handlers() {
    // From its creation the container may signal its init (and an exec'd process) before the
    // program runs: a handler of the runtime's run there (a self-pipe's write, say) would act
    // in the runtime's name. The kernel clears them at the clone.
    extern "C" fn noted(_: libc::c_int) {}
    // SAFETY: a handler that does nothing, for a signal nothing else in this test binary uses.
    unsafe { libc::signal(libc::SIGPWR, noted as *const () as libc::sighandler_t) };
    let mut created = create_with("no-handlers", &["true"], |_| {});
    let pid = created.container().pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(caught & 1 << (libc::SIGPWR - 1), 0, "SigCgt {caught:#x}");
    assert_eq!(created.run_to_end().0, 0);
}

#[test]
fn a_runtime_under_a_real_time_policy_runs_containers_without_it() {
    // An administrator may run the runtime under `chrt`; its containers' processes must not
    // take the host's CPUs ahead of every ordinary process.
    let (code, out) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let fifo = libc::sched_param { sched_priority: 1 };
                // SAFETY: plain system calls on this thread, with a valid sched_param.
                let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) };
                assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
                let policy = ["sh", "-c", "cut -d' ' -f41 /proc/self/stat"];
                let ran = create_with("not-real-time", &policy, |_| {}).run_to_end();
                let other = libc::sched_param { sched_priority: 0 };
                // SAFETY: as above.
                unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &other) };
                ran
            })
            .join()
            .unwrap()
    });
    assert_eq!((code, out.trim()), (0, "0"), "SCHED_OTHER is policy 0");
}

#[test]
fn a_runtime_at_a_raised_priority_runs_containers_at_an_ordinary_one() {
    // Nor may they keep a negative nice value or the real-time I/O class of a runtime run
    // under `nice -n -5 ionice -c1`, nor lower their nice value below 0 themselves. (An
    // RLIMIT_NICE a spec asks above 20 is clamped by the hardening; this VM's root lacks
    // CAP_SYS_RESOURCE, so no limit above the runtime's own could be set here at all.)
    let (code, out) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                const IOPRIO_RT: libc::c_long = 1 << 13;
                // SAFETY: plain system calls on this thread.
                unsafe {
                    assert_eq!(libc::setpriority(libc::PRIO_PROCESS, 0, -5), 0);
                    assert_eq!(libc::syscall(libc::SYS_ioprio_set, 1, 0, IOPRIO_RT), 0);
                }
                let script = [
                    "sh",
                    "-c",
                    "cut -d' ' -f19 /proc/self/stat; ionice; grep 'Max nice' /proc/self/limits \
                     | tr -s ' '; nice -n -1 cut -d' ' -f19 /proc/self/stat 2>/dev/null",
                ];
                let ran = create_with("ordinary-priority", &script, |_| {}).run_to_end();
                // SAFETY: as above; back to an ordinary thread's priorities.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, 0, 0);
                    libc::syscall(libc::SYS_ioprio_set, 1, 0, 0);
                }
                ran
            })
            .join()
            .unwrap()
    });
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "best-effort: prio 4", "Max nice priority 0 0 ", "0"],
        "nice 0, best-effort I/O, RLIMIT_NICE 0 (not the runtime's), and nice stays 0"
    );
}

#[test]
fn the_execution_domain_is_the_specs_never_the_runtimes() {
    // A runtime run under `setarch -R` (ADDR_NO_RANDOMIZE) does not hand it to its containers;
    // a spec's LINUX32 domain is applied.
    const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0040000;
    let (plain, linux32) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: personality takes an integer; it is this thread's.
                assert_ne!(unsafe { libc::personality(ADDR_NO_RANDOMIZE) }, -1);
                let script = ["sh", "-c", "cat /proc/self/personality; uname -m"];
                let plain = create_with("personality", &script, |_| {}).run_to_end();
                let linux32 = create_with("personality-32", &script, |spec| {
                    let mut linux = spec.linux().clone().unwrap();
                    let domain = eci::oci_spec::runtime::LinuxPersonalityDomain::PerLinux32;
                    let personality = eci::oci_spec::runtime::LinuxPersonalityBuilder::default()
                        .domain(domain)
                        .build()
                        .unwrap();
                    linux.set_personality(Some(personality));
                    spec.set_linux(Some(linux));
                })
                .run_to_end();
                // SAFETY: as above; back to the default.
                unsafe { libc::personality(0) };
                (plain, linux32)
            })
            .join()
            .unwrap()
    });
    let lines = |(code, out): &(i32, String)| {
        assert_eq!(*code, 0, "{out}");
        out.lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(lines(&plain), ["00000000", std::env::consts::ARCH]);
    assert_eq!(lines(&linux32)[0], "00000008");
}

#[test]
fn masks_cannot_be_removed() {
    // Every default mask that exists on this kernel (/proc/kcore only with CONFIG_PROC_KCORE).
    let masked: Vec<&str> = eci::eci_policy::settings::DEFAULT_MASKED_PATHS
        .iter()
        .copied()
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    assert!(
        masked.contains(&"/proc/kallsyms"),
        "the host has no /proc/kallsyms to test with"
    );
    let mut commands = Vec::new();
    for path in &masked {
        commands.extend(["umount", path, ",", "umount", path, "detach", ","]);
    }
    commands.extend(["umount", "/proc/sys"]);
    let answers = probe("mask", &commands);
    assert_eq!(answers.len(), masked.len() * 2 + 1);
    assert!(
        answers.iter().all(|a| a == "EPERM"),
        "{masked:?}: {answers:?}"
    );
}

#[test]
fn the_tests_containers_hold_every_capability_the_runtime_may_give() {
    // What the refusals in these tests prove rests on it: a container that lacked
    // CAP_SYS_ADMIN or CAP_SYS_MODULE would be refused by the kernel, not by eci. Every
    // capability the runtime's own bounding set has (this machine's runtime lacks one).
    let line = |status: &str, key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap()
    };
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let (code, out) = run("capeff", &["cat", "/proc/self/status"]);
    assert_eq!(code, 0, "{out}");
    let bounding = line(&host, "CapBnd:");
    assert_eq!(line(&out, "CapEff:"), bounding);
    assert_eq!(line(&out, "CapBnd:"), bounding);
}

#[test]
fn kernel_modules_cannot_be_loaded() {
    let answers = probe(
        "modules",
        &[
            "syscall",
            "init_module",
            ",",
            "syscall",
            "finit_module",
            ",",
            "syscall",
            "delete_module",
        ],
    );
    assert_eq!(answers, ["EPERM", "EPERM", "EPERM"]);
}

#[test]
fn a_mount_through_the_i386_entry_meets_enosys() {
    // x86-64 runs i386 programs' system calls (int 0x80) with the i386 numbers: a filter that
    // read them as x86-64 ones would take this mount (21) for access(2) and let it through,
    // unvetted. Natively, in a private mount namespace, the very call mounts.
    let dir = tempfile::tempdir().unwrap();
    let native = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(common::PROBE)
        .arg("i386-mount")
        .arg(dir.path())
        .output()
        .unwrap();
    let native = String::from_utf8_lossy(&native.stdout);
    if native.trim() != "ok" {
        eprintln!("skipped: the i386 entry does not mount here ({native:?})");
        return;
    }
    let script = "mkdir -p /tmp/x && /probe i386-mount /tmp/x; \
                  grep -c ' /tmp/x ' /proc/self/mountinfo || true";
    let (code, out) = run("i386-mount", &["sh", "-c", script]);
    assert_eq!((code, out.as_str()), (0, "ENOSYS\n0\n"));
}

#[test]
fn the_hosts_global_tunables_cannot_be_written() {
    // The classic ways out through procfs and sysfs, from a container with every capability:
    // a core_pattern the host kernel runs as root, a /sys or /proc/sys made writable again, a
    // global memory setting. (This kernel has no modprobe path and no magic SysRq file, so
    // those cannot be tried here.)
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let answers = probe(
        "tunables",
        &[
            "write",
            "/proc/sys/kernel/core_pattern",
            "|/tmp/x",
            ",",
            "remount-rw",
            "/sys",
            ",",
            "remount-rw",
            "/proc/sys",
            ",",
            "write",
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "never",
        ],
    );
    // core_pattern is the host root's, whom the container's IDs cannot name (EACCES); the
    // remounts are the mount vetter's refusals; /sys is read-only.
    assert_eq!(answers, ["EACCES", "EPERM", "EPERM", "EROFS"]);
    let after = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    assert_eq!(before, after);
}

#[test]
fn the_hosts_disk_cannot_be_read_or_mounted_through_a_node_of_the_image() {
    // An image may ship device nodes anywhere in its tree (here one of the host's root disk,
    // read-only attempts only): opened or mounted, it would be the host's file system.
    use std::os::unix::fs::MetadataExt;
    let disk = std::fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc::major(disk), libc::minor(disk));
    if major == 0 {
        eprintln!("skipped: the host's root is on no block device");
        return;
    }
    let script = format!(
        "head -c 1 /disk >/dev/null 2>/tmp/err; echo $? $(cut -d: -f3 /tmp/err); \
         mkdir -p /tmp/m && /probe mount-ro /disk /tmp/m ext4; \
         mknod /tmp/b b {major} {minor} 2>/tmp/err; echo $? $(cut -d: -f3 /tmp/err)"
    );
    let (code, out) = create_with("block-node", &["sh", "-c", &script], |spec| {
        let root = spec.root().as_ref().unwrap().path().clone();
        let node =
            std::ffi::CString::new(root.join("disk").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; the node is made in the test's own rootfs.
        let made = unsafe {
            libc::mknod(
                node.as_ptr(),
                libc::S_IFBLK | 0o666,
                libc::makedev(major, minor),
            )
        };
        assert_eq!(made, 0, "{}", std::io::Error::last_os_error());
    })
    .run_to_end();
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "1 Operation not permitted\nEPERM\n1 Operation not permitted\n"
        ),
        "the disk read, mounted, or a node of it made"
    );
}

#[test]
fn global_kernel_operations_are_refused() {
    // Each with zero arguments: natively these answer EFAULT, EINVAL, EBADF, ENOSYS (this
    // kernel has no kexec, iopl or dcookies) or even succeed; eci's filter answers EPERM first.
    let names: &[&str] = &[
        "kexec_load",
        #[cfg(target_arch = "x86_64")]
        "kexec_file_load",
        #[cfg(target_arch = "x86_64")]
        "iopl",
        #[cfg(target_arch = "x86_64")]
        "ioperm",
        "swapon",
        "swapoff",
        "acct",
        "settimeofday",
        "clock_settime",
        "open_by_handle_at",
        "bpf",
        "syslog",
        "perf_event_open",
        "quotactl",
        "quotactl_fd",
        "lookup_dcookie",
        "vhangup",
    ];
    let mut commands = Vec::new();
    for name in names {
        commands.extend(["syscall", name, ","]);
    }
    commands.pop();
    let answers = probe("global", &commands);
    let expected = vec!["EPERM"; names.len()];
    assert_eq!(answers, expected, "{names:?}");
}

#[test]
fn the_kernel_keyrings_are_refused_as_if_absent() {
    // ENOSYS, not EPERM: runc and crun in the container then go on without a session keyring.
    // Natively, with zero arguments, add_key and request_key answer EFAULT and keyctl EINVAL.
    let answers = probe(
        "keyrings",
        &[
            "syscall",
            "keyctl",
            ",",
            "syscall",
            "add_key",
            ",",
            "syscall",
            "request_key",
        ],
    );
    assert_eq!(answers, ["ENOSYS", "ENOSYS", "ENOSYS"]);
}

#[test]
fn io_uring_and_vsock_sockets_are_refused_as_if_absent() {
    // A ring's operations go round every seccomp rule; vsock sockets reach past the
    // container's network namespace (a virtual machine's host, the guest's vsock services).
    // Both work here natively. Family 40 is AF_VSOCK; 4294967336 is 40 with bit 32 set, which
    // the kernel drops.
    let vsock = libc::AF_VSOCK.to_string();
    let high = (libc::AF_VSOCK as u64 | 1 << 32).to_string();
    let inet = libc::AF_INET.to_string();
    let answers = probe(
        "ring-vsock",
        &[
            "syscall",
            "io_uring_setup",
            ",",
            "socket",
            &vsock,
            ",",
            "socket",
            &high,
            ",",
            "socket",
            &inet,
        ],
    );
    assert_eq!(answers, ["ENOSYS", "EAFNOSUPPORT", "EAFNOSUPPORT", "ok"]);
}

#[test]
fn a_tmpfs_mounted_inside_works_and_is_visible() {
    let (code, out) = run(
        "tmpfs",
        &["sh", "-c", "/probe mount tmpfs /mnt tmpfs size=1m && echo hello > /mnt/f && cat /mnt/f && grep -c ' /mnt tmpfs ' /proc/self/mounts"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ok", "hello", "1"]);
}

#[test]
fn the_exit_code_comes_back() {
    assert_eq!(run("exit", &["sh", "-c", "exit 42"]).0, 42);
    // A signal from the runtime: the init of a PID namespace only takes SIGKILL uninvited.
    let mut c = create_with("killed", &["sleep", "100"], |_| {});
    c.container().start().unwrap();
    c.container().kill(libc::SIGKILL).unwrap();
    assert_eq!(c.container().wait().unwrap().code(), 128 + libc::SIGKILL);
}

#[test]
fn a_competing_seccomp_notifier_is_refused() {
    // A notifier of the container's own would be asked before ours: refused with the errno the
    // kernel gives for a second listener in a chain.
    assert_eq!(probe("notifier", &["seccomp-listener"]), ["EBUSY"]);
}

#[test]
fn the_new_mount_api_is_refused_so_mount_falls_back() {
    // Natively, with zero arguments, these answer EBADF, EINVAL or EFAULT.
    let answers = probe(
        "newapi",
        &[
            "syscall",
            "fsopen",
            ",",
            "syscall",
            "open_tree",
            ",",
            "syscall",
            "mount_setattr",
            ",",
            "syscall",
            "fsconfig",
            ",",
            "syscall",
            "fsmount",
            ",",
            "syscall",
            "fspick",
            ",",
            "syscall",
            "move_mount",
        ],
    );
    assert_eq!(answers, ["ENOSYS"; 7]);
}

#[test]
fn a_terminal_comes_from_the_containers_devpts() {
    use std::io::Read;
    let mut c = common::create_with(
        "terminal",
        &[
            "sh",
            "-c",
            "tty; test -t 0 && test -t 1 && echo both-ttys; ps -o tty= -p $$ 2>/dev/null; exit 4",
        ],
        |spec| {
            let mut process = spec.process().clone().unwrap();
            process.set_terminal(Some(true));
            spec.set_process(Some(process));
        },
    );
    let console = c
        .container()
        .take_console()
        .expect("a terminal was asked for");
    assert!(c.container().take_console().is_none(), "handed over once");
    c.container().start().unwrap();
    let mut master = std::fs::File::from(console);
    let mut out = Vec::new();
    // Reading the master ends with EIO once every holder of the slave has gone.
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    assert_eq!(c.container().wait().unwrap().code(), 4);
    let out = String::from_utf8_lossy(&out).replace('\r', "");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"/dev/pts/0"), "{out:?}");
    assert_eq!(lines.get(1), Some(&"both-ttys"), "{out:?}");
}

#[test]
fn the_oom_score_adjustment_is_the_specs_and_never_below_zero() {
    // A container's processes do not inherit the runtime's adjustment (containerd's shim runs
    // at -998), nor ask for a negative one. Lowering one's own needs CAP_SYS_RESOURCE, which
    // this machine's root lacks: the runtime raises its own instead, and its containers still
    // get what the spec says.
    std::fs::write("/proc/self/oom_score_adj", "500").unwrap();
    let adjusted = |asked: Option<i32>| {
        let mut c = create_with(
            "oom-score",
            &["sh", "-c", "cat /proc/self/oom_score_adj"],
            |spec| {
                let mut process = spec.process().clone().unwrap();
                process.set_oom_score_adj(asked);
                spec.set_process(Some(process));
            },
        );
        let raised = c
            .container()
            .hardening_report()
            .iter()
            .any(|change| matches!(change, eci::Change::RaisedOomScoreAdj(_)));
        let (code, out) = c.run_to_end();
        assert_eq!(code, 0, "{out}");
        (out.trim().to_string(), raised)
    };
    assert_eq!(adjusted(None), ("0".to_string(), false));
    assert_eq!(adjusted(Some(300)), ("300".to_string(), false));
    assert_eq!(adjusted(Some(-700)), ("0".to_string(), true));
}

#[test]
fn a_second_procfs_from_the_spec_is_refused_and_nothing_is_leased() {
    // Outside /proc the masks and the virtual files would not cover it: the host's timer_list
    // and meminfo would show there.
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let rootfs = eci::HostRootfs::create(&dir.path().join("rootfs")).unwrap();
    for (typ, dest) in [("proc", "/host-proc"), ("sysfs", "/host-sys")] {
        let mut spec = rootfs.spec(vec!["true".into()]);
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        let mut mount = eci::oci_spec::runtime::Mount::default();
        mount.set_destination(dest.into());
        mount.set_typ(Some(typ.into()));
        mount.set_source(Some(typ.into()));
        mounts.push(mount);
        spec.set_mounts(Some(mounts));
        let id = common::unique_id("second-procfs");
        let err = runtime()
            .create(eci::ContainerConfig::new(id.clone(), spec))
            .unwrap_err();
        assert!(
            matches!(
                &err,
                eci::Error::Spec(eci::eci_policy::harden::HardenError::KernelFsElsewhere { .. })
            ),
            "{err}"
        );
        assert!(err.to_string().contains(dest), "{err}");
        let leases = runtime().allocator().leases().unwrap();
        assert!(leases.iter().all(|l| l.owner != id), "nothing leased");
    }
}

#[test]
fn a_rootfs_that_host_users_can_reach_is_refused() {
    use eci::eci_policy::root::RootRefusal;
    use std::os::unix::fs::PermissionsExt;
    // An idmapped rootfs lets the container's root act as the owner of every file there (host
    // users' private files, read-only or not), and stores what it creates as host root (a
    // setuid binary made there would make them root): outside an engine's storage it must be
    // closed to host users other than root.
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let rootfs = eci::HostRootfs::create(&dir.path().join("rootfs")).unwrap();
    let chmod =
        |mode| std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    let spec = |read_only| {
        let mut spec = rootfs.spec(vec![
            "sh".into(),
            "-c".into(),
            "touch /made 2>/dev/null".into(),
        ]);
        let mut root = spec.root().clone().unwrap();
        root.set_readonly(Some(read_only));
        spec.set_root(Some(root));
        spec
    };
    let run = |spec| {
        let id = common::unique_id("reach");
        let mut container = runtime().create(eci::ContainerConfig::new(id, spec))?;
        container.start()?;
        let code = container.wait()?.code();
        container.delete()?;
        Ok::<_, eci::Error>(code)
    };

    chmod(0o755);
    // Writable, read-only but remountable (allowRemount), and read-only: all refused.
    let mut remountable = spec(true);
    let annotations = [("org.eci.allowRemount".to_string(), "true".to_string())];
    remountable.set_annotations(Some(annotations.into_iter().collect()));
    for (name, spec) in [
        ("reach-writable", spec(false)),
        ("reach-remount", remountable),
        ("reach-read-only", spec(true)),
    ] {
        let id = common::unique_id(name);
        let err = runtime()
            .create(eci::ContainerConfig::new(id.clone(), spec))
            .unwrap_err();
        assert!(
            matches!(&err, eci::Error::Root(RootRefusal::ReachableByOthers { path }) if path == rootfs.path()),
            "{name}: {err}"
        );
        let leases = runtime().allocator().leases().unwrap();
        assert!(
            leases.iter().all(|l| l.owner != id),
            "{name}: lease released"
        );
    }
    // Closed to others, a read-only one runs (the touch fails), and so does a writable one.
    chmod(0o700);
    assert_eq!(run(spec(true)).unwrap(), 1);
    assert!(!rootfs.path().join("made").exists());
    assert_eq!(run(spec(false)).unwrap(), 0);
    assert!(rootfs.path().join("made").exists());
    rootfs.remove().unwrap();
}

#[test]
fn a_bind_never_shows_a_procfs_of_the_hosts_under_a_shared_path() {
    use std::os::unix::fs::PermissionsExt;
    // `arch-chroot /srv/x`, a debootstrap chroot: the host's procfs under a shared path. A
    // recursive bind of the path would carry it into the container, unmasked (the host's
    // processes and their command lines).
    std::fs::create_dir_all("/srv").unwrap();
    let chroot = tempfile::Builder::new()
        .prefix("eci-chroot")
        .tempdir_in("/srv")
        .unwrap();
    std::fs::set_permissions(chroot.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let proc = chroot.path().join("proc");
    std::fs::create_dir(&proc).unwrap();
    let _mounted = common::Mounted::proc_at(&proc);
    let binding = |source: &std::path::Path, option: &str| {
        let (source, option) = (source.to_path_buf(), option.to_string());
        move |spec: &mut eci::oci_spec::runtime::Spec| {
            let mut bind = common::read_only_bind(&source, "/x");
            bind.set_options(Some(vec![option, "ro".into()]));
            spec.mounts_mut().as_mut().unwrap().push(bind);
        }
    };
    for (source, option) in [(chroot.path(), "rbind"), (proc.join("1").as_path(), "bind")] {
        let refused = common::try_create(runtime(), "host-proc", binding(source, option));
        let Err(err) = refused else {
            panic!("{} was bound ({option})", source.display())
        };
        assert!(
            matches!(&err, eci::Error::Spec(eci::eci_policy::harden::HardenError::KernelFilesystem { mount, fstype, .. }) if *mount == proc && fstype == "proc"),
            "{err}"
        );
    }
    // A plain bind takes no submount.
    let plain = common::try_create(runtime(), "host-proc", binding(chroot.path(), "bind"));
    plain.unwrap().delete().unwrap();
}

#[test]
fn a_shared_path_gives_only_what_any_host_user_reaches() {
    use std::os::unix::fs::PermissionsExt;
    // The mounter passes, as root, a directory that keeps host users out: a root service's
    // PrivateTmp (/tmp/systemd-private-*/tmp, 1777 in a 0700 directory) is no host user's to
    // read or fill, so it is not the container's, though /tmp is shared.
    let private = common::closed_tempdir("eci-private");
    let inner = private.path().join("tmp");
    std::fs::create_dir(&inner).unwrap();
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let binding = |source: &std::path::Path| {
        let source = source.to_path_buf();
        move |spec: &mut eci::oci_spec::runtime::Spec| {
            let mut bind = common::read_only_bind(&source, "/x");
            bind.set_options(Some(vec!["rbind".into()]));
            spec.mounts_mut().as_mut().unwrap().push(bind);
        }
    };
    let refused = common::try_create(runtime(), "private-tmp", binding(&inner));
    let Err(err) = refused else {
        panic!("the private tmp was bound")
    };
    assert!(
        err.to_string()
            .contains("lets only its owner and group through"),
        "{err}"
    );
    // The closed directory itself is bound: its own mode keeps the container out as it keeps
    // host users out.
    let script = ["sh", "-c", "ls /x 2>&1; echo listed=$?"];
    let (code, out) =
        common::create_with("private-dir", &script, binding(private.path())).run_to_end();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Permission denied") && out.ends_with("listed=2\n"),
        "{out}"
    );
    // A user's closed home directory is passed: its user binds projects from it.
    let user = format!("eci{}", std::process::id());
    let added = std::process::Command::new("useradd")
        .args(["--no-create-home", "--home-dir"])
        .arg(private.path())
        .arg(&user)
        .status()
        .unwrap();
    assert!(added.success());
    struct Removed(String);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::process::Command::new("userdel").arg(&self.0).status();
        }
    }
    let _removed = Removed(user.clone());
    let chowned = std::process::Command::new("chown")
        .arg(format!("{user}:{user}"))
        .arg(private.path())
        .status()
        .unwrap();
    assert!(chowned.success());
    let script = ["sh", "-c", "test -d /x && echo bound"];
    let (code, out) = common::create_with("home-tmp", &script, binding(&inner)).run_to_end();
    assert_eq!((code, out.as_str()), (0, "bound\n"));
}

#[test]
fn a_bind_of_the_rootfs_or_of_what_holds_it_is_refused() {
    use eci::eci_policy::root::RootRefusal;
    // The mounter builds the container's mounts in its rootfs (a fresh procfs, unmasked until
    // the masks come last): a bind of a path in it, or of one holding it, would copy them.
    let dir = common::closed_tempdir("eci-root");
    let rootfs = eci::HostRootfs::create(&dir.path().join("rootfs")).unwrap();
    // (A path inside a root closed to others, as one outside an engine's storage must be, is
    // refused before that: its closed directory keeps host users out.)
    let proc = rootfs.path().join("proc");
    let err = runtime()
        .create(eci::ContainerConfig::new(
            common::unique_id("bind-rootfs-proc"),
            {
                let mut spec = rootfs.spec(vec!["true".into()]);
                let mounts = spec.mounts_mut().as_mut().unwrap();
                mounts.push(common::read_only_bind(&proc, "/hostproc"));
                spec
            },
        ))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("lets only its owner and group through"),
        "{err}"
    );
    let source = dir.path().to_path_buf();
    let mut spec = rootfs.spec(vec!["true".into()]);
    spec.mounts_mut()
        .as_mut()
        .unwrap()
        .push(common::read_only_bind(&source, "/hostproc"));
    let id = common::unique_id("bind-rootfs-parent");
    let err = runtime()
        .create(eci::ContainerConfig::new(id, spec))
        .unwrap_err();
    assert!(
        matches!(&err, eci::Error::Root(RootRefusal::BindOfRoot { bind, .. }) if *bind == source),
        "{err}"
    );
    rootfs.remove().unwrap();
}

#[test]
fn the_init_never_starts_in_the_runtimes_working_directory() {
    // runc's CVE-2024-21626, another way in: the init kept the runtime's working directory, a
    // host directory (pivot_root moves only one that is the old root), until it changed to
    // the spec's cwd by path; a cwd of /proc/self/cwd named that very directory, so the
    // process started on the host's file system (here the package's, with Cargo.toml).
    use std::os::unix::fs::PermissionsExt;
    let here = std::env::current_dir().unwrap();
    let mode = std::fs::metadata(&here).unwrap().permissions().mode();
    assert!(
        here.join("Cargo.toml").exists() && mode & 0o005 == 0o005,
        "the test runs in a directory anyone may search: {}",
        here.display()
    );
    let (code, out) = create_with("cwd-magic", &["sh", "-c", "ls; pwd"], |spec| {
        let mut process = spec.process().clone().unwrap();
        process.set_cwd("/proc/self/cwd".into());
        spec.set_process(Some(process));
    })
    .run_to_end();
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("Cargo.toml"),
        "started in the host's {}: {out}",
        here.display()
    );
    assert!(out.ends_with("\n/\n"), "started in its root: {out}");
}

#[test]
fn a_file_mask_is_the_null_device_whatever_the_containers_dev_holds() {
    // A /dev bound from a host directory may hold a `null` leading to the very file to hide:
    // the mask would bind that file over itself, and every file mask would show its contents.
    use std::os::unix::fs::PermissionsExt;
    let dev = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dev.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink("/proc/timer_list", dev.path().join("null")).unwrap();
    let script = "stat -L -c '%F %t:%T' /proc/timer_list";
    let (code, out) = create_with("mask-null", &["sh", "-c", script], |spec| {
        let mut bind = common::read_only_bind(dev.path(), "/dev");
        bind.set_options(Some(vec!["bind".into()]));
        spec.mounts_mut().as_mut().unwrap().push(bind);
    })
    .run_to_end();
    assert_eq!(
        (code, out.trim()),
        (0, "character special file 1:3"),
        "{out}"
    );
}

#[test]
fn a_procfs_or_sysfs_goes_where_its_path_says_or_nowhere() {
    // An image's symlinks would move them: /sys -> /dev/shm and the image's /dev/shm ->
    // /hidden put a sysfs mounted before /dev at /hidden; the /dev tmpfs mounted next covers
    // the image's /dev, so /sys then names the empty /dev/shm tmpfs, and the masks
    // (/sys/firmware) and the virtual files miss the sysfs, whole at /hidden. (The same with
    // /proc fails later, by luck: the init needs a procfs at /proc.)
    for fs in ["sys", "proc"] {
        let dir = common::closed_tempdir("eci-root");
        let rootfs = eci::HostRootfs::create(&dir.path().join("rootfs")).unwrap();
        let root = rootfs.path();
        std::fs::remove_dir(root.join(fs)).unwrap();
        std::os::unix::fs::symlink("/dev/shm", root.join(fs)).unwrap();
        std::os::unix::fs::symlink("/hidden", root.join("dev/shm")).unwrap();
        std::fs::create_dir(root.join("hidden")).unwrap();
        let mut spec = rootfs.spec(vec!["ls".into(), "/hidden".into()]);
        // The spec's own mount of it first, before /dev's.
        let mut own = eci::oci_spec::runtime::Mount::default();
        own.set_destination(format!("/{fs}").into());
        own.set_typ(Some(if fs == "sys" { "sysfs" } else { "proc" }.into()));
        own.set_source(Some(own.typ().clone().unwrap().into()));
        let mounts = spec.mounts_mut().get_or_insert_with(Vec::new);
        mounts.retain(|m| m.destination() != own.destination());
        mounts.insert(0, own);
        let id = common::unique_id("kernel-fs-link");
        let err = match runtime().create(eci::ContainerConfig::new(id, spec).bundle(dir.path())) {
            Ok(mut container) => {
                container.start().unwrap();
                container.wait().unwrap();
                container.delete().unwrap();
                panic!("/{fs} was mounted through the image's symlinks");
            }
            Err(err) => err.to_string(),
        };
        assert!(
            err.contains(&format!("/{fs}")) && err.contains("symbolic links"),
            "{fs}: {err}"
        );
        rootfs.remove().unwrap();
    }
}

#[test]
fn a_mount_whose_destination_leads_to_the_root_changes_nothing_of_the_root() {
    // Looked up again after the mount, a destination leading to / finds the rootfs's root, not
    // the filesystem just mounted on it: its propagation (or devpts's owner) would be set there.
    let dir = common::closed_tempdir("eci-root");
    let rootfs = eci::HostRootfs::create(&dir.path().join("rootfs")).unwrap();
    std::os::unix::fs::symlink("/", rootfs.path().join("to-root")).unwrap();
    let mut spec = rootfs.spec(vec!["true".into()]);
    let mut tmpfs = eci::oci_spec::runtime::Mount::default();
    tmpfs.set_destination("/to-root".into());
    tmpfs.set_typ(Some("tmpfs".into()));
    tmpfs.set_source(Some("tmpfs".into()));
    tmpfs.set_options(Some(vec!["rprivate".into()]));
    spec.mounts_mut().as_mut().unwrap().push(tmpfs);
    let id = common::unique_id("to-root");
    let err = runtime()
        .create(eci::ContainerConfig::new(id, spec))
        .unwrap_err();
    assert!(
        err.to_string().contains("/to-root") && err.to_string().contains("cross-device"),
        "{err}"
    );
    rootfs.remove().unwrap();
}

#[test]
fn what_the_host_mounts_under_a_bind_later_does_not_reach_the_container() {
    // A bind whose spec names no propagation is private (as Docker's): a slave of the host's
    // mount, it would show what the host mounts there after the start, never vetted.
    use nix::mount::{mount, umount, MsFlags};
    use std::io::Write;
    let shared = tempfile::tempdir_in("/tmp").unwrap();
    let later = shared.path().join("later");
    std::fs::create_dir(&later).unwrap();
    // A shared mount of the host's (this VM's are private), as systemd makes them.
    let none = None::<&str>;
    mount(
        Some(shared.path()),
        shared.path(),
        none,
        MsFlags::MS_BIND,
        none,
    )
    .unwrap();
    mount(none, shared.path(), none, MsFlags::MS_SHARED, none).unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    let stdin = Some(std::os::fd::OwnedFd::from(reader));
    let script = ["sh", "-c", "read go; ls /data/later"];
    let mut c = common::create_full(runtime(), "bind-private", &script, stdin, |spec| {
        let mut bind = common::read_only_bind(shared.path(), "/data");
        bind.set_options(Some(vec!["rbind".into()]));
        spec.mounts_mut().as_mut().unwrap().push(bind);
    });
    c.container().start().unwrap();
    mount(Some("tmpfs"), &later, Some("tmpfs"), MsFlags::empty(), none).unwrap();
    std::fs::write(later.join("host-file"), b"").unwrap();
    writeln!(writer, "go").unwrap();
    let (code, out) = c.finish();
    umount(&later).unwrap();
    umount(shared.path()).unwrap();
    assert_eq!(
        (code, out.as_str()),
        (0, ""),
        "the host's later mount is not seen"
    );
}

#[test]
fn a_congestion_control_sysctl_takes_only_an_algorithm_loaded_already() {
    // Set to one the kernel lacks by a writer with the host's CAP_NET_ADMIN (the mounter),
    // the kernel would load the module tcp_NAME: a module load the container could not make.
    let with = |value: &str| {
        let value = value.to_string();
        move |spec: &mut eci::oci_spec::runtime::Spec| {
            let mut linux = spec.linux().clone().unwrap_or_default();
            let key = "net.ipv4.tcp_congestion_control".to_string();
            linux.set_sysctl(Some([(key, value)].into_iter().collect()));
            spec.set_linux(Some(linux));
        }
    };
    let host = || std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap();
    // One a network namespace other than the host's may choose (loaded, unrestricted).
    let allowed =
        std::fs::read_to_string("/proc/sys/net/ipv4/tcp_allowed_congestion_control").unwrap();
    let loaded = allowed.split_whitespace().last().unwrap().to_string();
    let before = host();
    let script = ["cat", "/proc/sys/net/ipv4/tcp_congestion_control"];
    let (code, out) = create_with("congestion", &script, with(&loaded)).run_to_end();
    assert_eq!((code, out.trim()), (0, loaded.as_str()));
    assert_eq!(host(), before, "the host's algorithm is unchanged");

    // One nobody loaded, and two names at once, each loaded (the kernel looks them up as one,
    // and would load the module `tcp_NAME NAME`).
    let two = format!("{loaded} {loaded}");
    for value in ["eci-not-loaded", two.as_str()] {
        let refused = common::try_create(runtime(), "congestion-unloaded", with(value));
        let Err(err) = refused else {
            panic!("{value} was set")
        };
        let text = err.to_string();
        assert!(
            text.contains(&format!("net.ipv4.tcp_congestion_control={value}"))
                && text.contains("no such file"),
            "{text}"
        );
    }
}

#[test]
fn a_uts_sysctl_changes_the_containers_names_not_the_hosts() {
    let host = || std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    let before = host();
    let (code, out) = create_with(
        "domainname",
        &["cat", "/proc/sys/kernel/domainname"],
        |spec| {
            let mut linux = spec.linux().clone().unwrap_or_default();
            let sysctls = [("kernel.domainname".to_string(), "eci-domain".to_string())];
            linux.set_sysctl(Some(sysctls.into_iter().collect()));
            spec.set_linux(Some(linux));
        },
    )
    .run_to_end();
    assert_eq!((code, out.as_str()), (0, "eci-domain\n"));
    assert_eq!(host(), before, "the host's domain name is unchanged");
}
