//! A running container's life after start: pause and resume, its process list, signals to
//! every process, and resource updates. Needs root and the cgroup freezer.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{create_full, create_with, runtime};
use eci::oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxMemoryBuilder, LinuxResources, LinuxResourcesBuilder, Process,
};
use eci::{Error, State, Stdio};

/// CPU time (user + system ticks) used so far by each of `pids`.
fn cpu_ticks(pids: &[i32]) -> Vec<u64> {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
            // utime and stime are fields 14 and 15; the split starts at field 3.
            fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
        })
        .collect()
}

fn memory_limit(bytes: i64) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(bytes).build().unwrap())
        .build()
        .unwrap()
}

#[test]
fn pause_freezes_every_process_until_resume() {
    let busy = "while :; do :; done & while :; do :; done";
    let mut c = create_with("pause", &["sh", "-c", busy], |_| {});
    let container = c.container();
    container.start().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pids = container.processes().unwrap();
    assert_eq!(pids.len(), 2, "the init and its busy child: {pids:?}");
    assert!(pids.contains(&container.pid()));

    container.pause().unwrap();
    assert_eq!(container.state(), State::Paused);
    let before = cpu_ticks(&pids);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(&pids), before, "no CPU time while paused");
    let exec = container.exec(Process::default(), Stdio::default());
    assert!(
        matches!(exec, Err(Error::State { .. })),
        "no exec into a frozen container"
    );
    assert!(matches!(container.pause(), Err(Error::State { .. })));

    container.resume().unwrap();
    assert_eq!(container.state(), State::Running);
    // Both run again (within 3 s, however busy the machine is).
    let mut after = before.clone();
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        after = cpu_ticks(&pids);
        if after.iter().zip(&before).all(|(a, b)| a > b) {
            break;
        }
    }
    assert!(
        after.iter().zip(&before).all(|(a, b)| a > b),
        "both run again: {before:?} -> {after:?}"
    );
}

#[test]
fn a_container_whose_init_was_killed_before_its_start_fails_each_start_and_deletes() {
    // The first start finds the init gone; a second one has nothing left to reach (it panicked
    // once, the channel taken by the first).
    let mut c = create_with("killed-before-start", &["true"], |_| {});
    c.container().kill(libc::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(c.container().start().is_err(), "the init is gone");
    let again = c.container().start().unwrap_err();
    assert!(
        again
            .to_string()
            .contains("an earlier start could not reach its init"),
        "{again}"
    );
}

#[test]
fn a_paused_container_can_be_deleted() {
    let mut c = create_with("pause-delete", &["sleep", "1000"], |_| {});
    c.container().start().unwrap();
    c.container().pause().unwrap();
    let container = c.container.take().unwrap();
    let pid = container.pid();
    container.delete().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the frozen init was killed and reaped"
    );
}

#[test]
fn kill_all_reaches_every_process_even_when_paused() {
    // The init survives SIGTERM (it has a handler); its children only die if the signal
    // reaches them too, which a signal to the init alone would not do.
    let script = "trap 'echo trapped' TERM; sleep 1000 & sleep 1000 & wait; wait; echo done";
    let mut c = create_with("kill-all", &["sh", "-c", script], |_| {});
    c.container().start().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(c.container().processes().unwrap().len(), 3);
    c.container().pause().unwrap();
    c.container().kill_all(libc::SIGTERM).unwrap();
    assert_eq!(c.container().state(), State::Paused, "still paused");
    c.container().resume().unwrap();
    let (code, out) = c.finish();
    assert_eq!((code, out.as_str()), (0, "trapped\ndone\n"));
}

#[test]
fn an_update_changes_limits_but_not_the_device_rules() {
    let (reader, mut writer) = std::io::pipe().unwrap();
    let stdin = Some(std::os::fd::OwnedFd::from(reader));
    let script = "read go; grep MemTotal /proc/meminfo";
    let mut c = create_full(runtime(), "update", &["sh", "-c", script], stdin, |spec| {
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_resources(Some(memory_limit(256 << 20)));
        spec.set_linux(Some(linux));
    });
    let devices = format!(
        "/sys/fs/cgroup/devices/eci/{}/devices.list",
        c.container().id()
    );
    let rules = std::fs::read_to_string(&devices).unwrap();
    // The safe set alone: none of what libcgroups adds on v1 beyond it (mknod of anything,
    // the host's console).
    for extra in ["c *:* m", "b *:* m", "c 5:1 rwm"] {
        assert!(!rules.lines().any(|l| l == extra), "{extra} in {rules}");
    }
    c.container().start().unwrap();

    let mut update = memory_limit(128 << 20);
    let mut everything = LinuxDeviceCgroup::default();
    everything.set_allow(true);
    everything.set_access(Some("rwm".into()));
    update.set_devices(Some(vec![everything]));
    c.container().update(&update).unwrap();
    assert_eq!(
        std::fs::read_to_string(&devices).unwrap(),
        rules,
        "the device rules stay the safe set"
    );
    writeln!(writer, "go").unwrap();
    let (code, out) = c.finish();
    assert_eq!((code, out.as_str()), (0, "MemTotal:         131072 kB\n"));
    assert!(
        matches!(c.container().update(&update), Err(Error::State { .. })),
        "a stopped container has nothing to update"
    );
}

/// On cgroup v1 an update never lets the container at more devices, not even for a moment:
/// libcgroups writes its own rules (the host's console among them) on every apply, in an order
/// of its choosing, and an update that fails part way once left them in place. Nor does it
/// reset the rules, which the kernel refuses where the container made cgroups of its own.
#[test]
fn an_update_never_widens_the_v1_device_rules_even_when_it_fails() {
    let mut c = create_with("update-devices", &["sleep", "1000"], |_| {});
    let id = c.container().id().to_string();
    let cgroup = std::path::Path::new("/sys/fs/cgroup/devices/eci").join(&id);
    if !cgroup.is_dir() || !std::path::Path::new("/sys/fs/cgroup/freezer/eci").is_dir() {
        eprintln!("skipped: no cgroup v1 devices and freezer hierarchies");
        return;
    }
    let rules = std::fs::read_to_string(cgroup.join("devices.list")).unwrap();
    c.container().start().unwrap();
    // As Docker inside a delegated container does; gone before the container is deleted.
    let inner = common::MadeDir::create(cgroup.join("inner"));
    let freezer = format!("/sys/fs/cgroup/freezer/eci/{id}/freezer.state");
    let failing = {
        let mut memory = LinuxMemoryBuilder::default().build().unwrap();
        memory.set_swappiness(Some(200));
        LinuxResourcesBuilder::default()
            .memory(memory)
            .build()
            .unwrap()
    };
    for round in 0..10 {
        let error = c.container().update(&failing).unwrap_err().to_string();
        assert!(error.contains("swappiness"), "round {round}: {error}");
        let after = std::fs::read_to_string(cgroup.join("devices.list")).unwrap();
        assert_eq!(after, rules, "round {round}: after a failed update");
        let limit = memory_limit((200 + round) << 20);
        c.container().update(&limit).unwrap();
        let after = std::fs::read_to_string(cgroup.join("devices.list")).unwrap();
        assert_eq!(after, rules, "round {round}: after an update");
        let state = std::fs::read_to_string(&freezer).unwrap();
        assert_eq!(state.trim(), "THAWED", "round {round}: runs on");
    }
    let limit = format!("/sys/fs/cgroup/memory/eci/{id}/memory.limit_in_bytes");
    let limit = std::fs::read_to_string(limit).unwrap();
    assert_eq!(limit.trim(), (209u64 << 20).to_string());
    // A paused container stays paused.
    c.container().pause().unwrap();
    c.container().update(&memory_limit(300 << 20)).unwrap();
    let state = std::fs::read_to_string(&freezer).unwrap();
    assert_eq!(state.trim(), "FROZEN");
    c.container().resume().unwrap();
    drop(inner);
}

#[test]
fn a_cgroup_that_holds_processes_is_not_shared() {
    // Two containers given one cgroup path: the second would share the first's limits and
    // freezer, and its kill --all would reach the first's processes.
    let path = format!("/eci/shared-{}", std::process::id());
    let with_path = |spec: &mut eci::oci_spec::runtime::Spec| {
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_cgroups_path(Some(path.clone().into()));
        spec.set_linux(Some(linux));
    };
    let mut first = create_with("cgroup-first", &["sleep", "1000"], with_path);
    first.container().start().unwrap();
    let shared = first.container().cgroup_path().unwrap().to_path_buf();
    let second = try_create_at(runtime(), "cgroup-second", &shared, |_| {});
    match second {
        Err(Error::Cgroup { reason, .. }) => {
            assert!(reason.contains("already holds processes"), "{reason}")
        }
        other => panic!("expected a cgroup error, got {other:?}"),
    }
}

#[test]
fn a_cgroup_that_holds_processes_in_one_hierarchy_only_is_not_taken() {
    // A host service's cgroup may exist in the memory hierarchy alone (this machine's control
    // service has one so): the container's limits would bind it there, and its delete kill it.
    let name = format!("eci-service-{}", std::process::id());
    let service = std::path::Path::new("/sys/fs/cgroup/memory").join(&name);
    std::fs::create_dir(&service).unwrap();
    let mut process = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    std::fs::write(service.join("cgroup.procs"), process.id().to_string()).unwrap();
    let taken = try_create_at(
        runtime(),
        "cgroup-service",
        std::path::Path::new(&format!("/{name}")),
        |_| {},
    );
    let alive = process.try_wait().unwrap().is_none();
    process.kill().unwrap();
    process.wait().unwrap();
    let _ = std::fs::remove_dir(&service);
    match taken {
        Err(Error::Cgroup { reason, .. }) => {
            assert!(reason.contains("already holds processes"), "{reason}")
        }
        other => panic!("expected a cgroup error, got {other:?}"),
    }
    assert!(alive, "the service's process lives on");
    for hierarchy in ["devices", "pids", "cpu"] {
        let made = std::path::Path::new("/sys/fs/cgroup")
            .join(hierarchy)
            .join(&name);
        assert!(!made.exists(), "{} left behind", made.display());
    }
}

#[test]
fn a_container_whose_cgroup_cannot_be_removed_keeps_its_id_block() {
    // A process left below the container's cgroup (a host process put in a cgroup made below
    // its memory cgroup alone, where neither the container's kill nor the cgroup manager's
    // reach) keeps the cgroup from being removed.
    // The delete failed, but gave the container's ID block back all the same, for the next
    // container while processes with its IDs may be left.
    let memory = std::path::Path::new("/sys/fs/cgroup/memory");
    if !memory.join("eci").exists() {
        eprintln!("skipped: no cgroup v1 memory hierarchy");
        return;
    }
    let mut test = create_with("cgroup-busy", &["true"], |_| {});
    let id = test.container().id().to_string();
    let path = test.container().cgroup_path().unwrap().to_path_buf();
    assert_eq!(test.run_to_end().0, 0);
    let relative = path.strip_prefix("/").unwrap();
    let mut process = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let below = memory.join(relative).join("left");
    std::fs::create_dir(&below).unwrap();
    std::fs::write(below.join("cgroup.procs"), process.id().to_string()).unwrap();
    let deleted = test.container.take().unwrap().delete();
    let kept = runtime()
        .allocator()
        .leases()
        .unwrap()
        .iter()
        .any(|lease| lease.owner == id);
    process.kill().unwrap();
    process.wait().unwrap();
    let _ = std::fs::remove_dir(&below);
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(relative));
    }
    let err = deleted.expect_err("a cgroup with a process in it was removed");
    assert!(kept, "the ID block went back to the pool: {err}");
}

/// Tries to create a container running `true` in `runtime` at `cgroups_path`, with the spec
/// also edited by `edit`; its rootfs is removed again whatever the outcome.
fn try_create_at(
    runtime: &eci::Runtime,
    name: &str,
    cgroups_path: &std::path::Path,
    edit: impl FnOnce(&mut eci::oci_spec::runtime::Spec),
) -> Result<eci::Container, Error> {
    common::try_create(runtime, name, |spec| {
        let mut linux = spec.linux().clone().unwrap();
        linux.set_cgroups_path(Some(cgroups_path.to_path_buf()));
        spec.set_linux(Some(linux));
        edit(spec);
    })
}

#[test]
fn the_init_is_in_its_cgroup_in_every_hierarchy_before_it_starts() {
    // With limits, which are written once the init has joined (cgroup v1): still before
    // `create` returns.
    let mut c = create_with("in-cgroup", &["sleep", "1000"], |spec| {
        let resources: LinuxResources = serde_json::from_value(
            serde_json::json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 42}}),
        )
        .unwrap();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_resources(Some(resources));
        spec.set_linux(Some(linux));
    });
    let container = c.container();
    let path = container
        .cgroup_path()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let listed = std::fs::read_to_string(format!("/proc/{}/cgroup", container.pid())).unwrap();
    // Every v1 hierarchy with a controller eci manages, as the kernel sees the init.
    let managed = [
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "hugetlb",
        "memory",
        "pids",
        "perf_event",
        "blkio",
        "net_prio",
        "net_cls",
        "freezer",
    ];
    let mut seen = 0;
    for line in listed.lines() {
        let fields: Vec<&str> = line.splitn(3, ':').collect();
        if fields[1].split(',').any(|c| managed.contains(&c)) {
            assert_eq!(fields[2], path, "{line}");
            seen += 1;
        }
    }
    if seen == 0 {
        eprintln!("skipped: no cgroup v1 controllers here");
    }
    // And the cgroup lists it: exactly the init, nothing else.
    let procs = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{path}/cgroup.procs"));
    if let Ok(procs) = procs {
        assert_eq!(procs.trim(), container.pid().to_string());
    }
    let limit = |file: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{file}"));
    if let Ok(pids_max) = limit(&format!("pids{path}/pids.max")) {
        assert_eq!(pids_max.trim(), "42");
    }
    if let Ok(memory) = limit(&format!("memory{path}/memory.limit_in_bytes")) {
        assert_eq!(memory.trim(), (64u64 << 20).to_string());
    }
}

#[test]
fn a_read_write_cgroup_mount_is_delegated_and_the_containers_own_limits_stay_the_hosts() {
    // The pids hierarchy of cgroup v1, or the cgroup2 tree.
    let (pids, hierarchy) = if std::path::Path::new("/sys/fs/cgroup/pids").is_dir() {
        ("/sys/fs/cgroup/pids", "pids")
    } else {
        ("/sys/fs/cgroup", ".")
    };
    // Docker in the container makes cgroups below the container's and moves processes there;
    // the container's own limit is not its to raise.
    let script = format!(
        "cd /sys/fs/cgroup/{hierarchy} && mkdir inner && echo 5 > inner/pids.max \
         && cat inner/pids.max && echo $$ > inner/cgroup.procs && grep -c /inner /proc/self/cgroup; \
         (echo 100000 > pids.max) 2>&1 | grep -c 'Permission denied'; \
         echo $$ > cgroup.procs; echo back=$?; \
         cd inner && {}",
        common::DEEPER_THAN_PATH_MAX
    );
    let runtime = common::delegating_runtime();
    let mut c = common::create_in(runtime, "delegated", &["sh", "-c", &script], |spec| {
        common::with_cgroup_mount(spec, false);
    });
    let own = std::path::Path::new(pids)
        .join("eci")
        .join(c.container().id());
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["5", "1", "1", "back=0", "deep"],
        "{out}"
    );
    // The cgroups it made go with the container's: a chain until the shell's own path passed
    // PATH_MAX too, longer still on the host.
    assert!(own.join("inner").is_dir());
    drop(c);
    assert!(!own.exists(), "{} is left behind", own.display());
}

#[test]
fn kill_all_reaches_a_process_in_a_delegated_cgroup_deeper_than_path_max() {
    common::kill_all_reaches_a_process_past_path_max();
}

/// cgroup v1 lets a delegated container rename its cgroups (within their parent), and a walk
/// of its tree reads a level's names before it enters them: a process whose cgroup keeps
/// changing its name, among many siblings, was missed, by the process list and by `kill
/// --all` (and by the kill of whatever holds a dying init, so a delete could wait for good).
#[test]
fn a_delegated_container_renaming_its_v1_cgroups_hides_no_process() {
    let v1 = ["devices", "freezer"].map(|h| std::path::Path::new("/sys/fs/cgroup").join(h));
    if !v1.iter().all(|h| h.join("eci").is_dir()) {
        eprintln!("skipped: no cgroup v1 devices and freezer hierarchies");
        return;
    }
    let script = "cd /sys/fs/cgroup/devices && seq 3000 | xargs mkdir && mkdir h \
         && { sleep 1000 & echo $! > h/cgroup.procs; } && echo ready \
         && exec /probe keep-renaming /sys/fs/cgroup/devices h";
    let runtime = common::delegating_runtime();
    let mut c = common::create_in(runtime, "v1-renaming", &["sh", "-c", script], |spec| {
        common::with_cgroup_mount(spec, false);
    });
    c.container().start().unwrap();
    assert_eq!(c.read_stdout_line(), "ready\n");
    // The shell has become the renamer (named after the file it runs).
    let comm = format!("/proc/{}/comm", c.container().pid());
    let waited = std::time::Instant::now();
    while std::fs::read_to_string(&comm).unwrap() != "probe\n" {
        assert!(waited.elapsed() < Duration::from_secs(10), "no renamer");
        std::thread::sleep(Duration::from_millis(5));
    }
    for round in 0..20 {
        let listed = c.container().processes().unwrap();
        assert_eq!(
            listed.len(),
            2,
            "round {round}: the sleep is listed: {listed:?}"
        );
    }
    c.container().kill_all(libc::SIGKILL).unwrap();
    assert_eq!(c.finish().0, 128 + libc::SIGKILL);
}

#[test]
fn a_cgroup_mount_is_delegated_only_read_write_and_where_the_settings_say() {
    let script = "cd /sys/fs/cgroup; [ -d pids ] && cd pids; mkdir inner 2>&1; echo made=$?";
    let delegating = common::delegating_runtime();
    for (runtime, read_only) in [(delegating, true), (runtime(), false)] {
        let mut c = common::create_in(runtime, "not-delegated", &["sh", "-c", script], |spec| {
            common::with_cgroup_mount(spec, read_only);
        });
        let (code, out) = c.run_to_end();
        assert_eq!(code, 0, "{out}");
        assert!(out.ends_with("made=1\n"), "read-only {read_only}: {out}");
        assert!(out.contains("Read-only file system"), "{out}");
    }
}

#[test]
fn a_delegated_container_gets_no_v1_freezer_of_its_own() {
    // A child freezer cgroup it froze would keep its processes from dying of SIGKILL and its
    // init from being reaped (checked by hand: wait() never returned until it was thawed).
    if !std::path::Path::new("/sys/fs/cgroup/freezer").is_dir() {
        return;
    }
    let script = "ls /sys/fs/cgroup";
    let runtime = common::delegating_runtime();
    let mut c = common::create_in(runtime, "no-freezer", &["sh", "-c", script], |spec| {
        common::with_cgroup_mount(spec, false);
    });
    let (code, out) = c.run_to_end();
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l == "pids"), "{out}");
    assert!(!out.lines().any(|l| l == "freezer"), "{out}");
}

#[test]
fn no_container_is_made_inside_a_cgroup_delegated_to_another() {
    // Docker's --cgroup-parent may name another container's cgroup; one given to its
    // container is that container's to rearrange (on cgroup v2, to move processes into).
    let runtime = common::delegating_runtime();
    let mut owner = common::create_in(runtime, "delegator", &["sleep", "1000"], |spec| {
        common::with_cgroup_mount(spec, false);
    });
    let inside = owner.container().cgroup_path().unwrap().join("guest");
    let created = try_create_at(runtime, "guest", &inside, |_| {});
    let Err(err) = created else {
        panic!("a container was made in another's delegated cgroup");
    };
    assert!(
        err.to_string().contains("was delegated to a container"),
        "{err}"
    );
}

#[test]
fn no_container_is_made_below_a_cgroup_that_holds_processes() {
    // Docker's --cgroup-parent may name another container's cgroup, or a host service's: a
    // container made there would count against their limits, and be frozen and killed with
    // them.
    let mut running = common::create_with("parent", &["sleep", "1000"], |_| {});
    running.container().start().unwrap();
    let below = running.container().cgroup_path().unwrap().join("guest");
    let Err(err) = try_create_at(common::runtime(), "guest", &below, |_| {}) else {
        panic!("a container was made below another's cgroup");
    };
    assert!(
        err.to_string().contains("holds processes of its own"),
        "{err}"
    );
    // The refusal made nothing there.
    let cgroup = running.container().cgroup_path().unwrap().to_path_buf();
    let relative = cgroup.strip_prefix("/").unwrap();
    // Every hierarchy: cgroup2 alone, or v1 ones (and cgroup2) below /sys/fs/cgroup.
    let root = std::path::Path::new("/sys/fs/cgroup");
    let below = std::fs::read_dir(root).unwrap().flatten().map(|e| e.path());
    let containers: Vec<_> = std::iter::once(root.to_path_buf())
        .chain(below)
        .map(|hierarchy| hierarchy.join(relative))
        .filter(|dir| dir.is_dir())
        .collect();
    assert!(!containers.is_empty(), "the container's cgroup is nowhere");
    for dir in containers {
        assert!(!dir.join("guest").exists(), "{}", dir.display());
    }
}

#[test]
fn a_cgroup_that_exists_already_is_never_delegated() {
    // A spec may name any cgroup path, a host service's among them: it is not given away.
    let hierarchy = if std::path::Path::new("/sys/fs/cgroup/pids").is_dir() {
        "/sys/fs/cgroup/pids"
    } else {
        "/sys/fs/cgroup"
    };
    let name = format!("eci-test-existing-{}", std::process::id());
    let existing = std::path::Path::new(hierarchy).join(&name);
    std::fs::create_dir(&existing).unwrap();
    let path = std::path::Path::new("/").join(&name);
    let created = try_create_at(common::delegating_runtime(), "existing", &path, |spec| {
        common::with_cgroup_mount(spec, false)
    });
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&existing).unwrap());
    std::fs::remove_dir(&existing).unwrap();
    let Err(err) = created else {
        panic!("a delegation of an existing cgroup was accepted");
    };
    assert!(err.to_string().contains("exists already"), "{err}");
    assert_eq!(owner, 0);
}
