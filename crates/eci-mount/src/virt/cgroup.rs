//! Where a container's cgroup figures live and how to read them, on cgroup v1, v2 and the
//! hybrid layout (v1 controllers beside a cgroup2 mount), decided per controller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::render::{parse_blkio, parse_cpu_list, parse_io_stat, CpuTime, DiskIo, Memory};

/// One controller's directory for the container, and whether it is a cgroup2 one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerDir {
    /// The container's directory in that hierarchy.
    pub dir: PathBuf,
    /// The hierarchy's root (limits of ancestors are read up to it).
    pub root: PathBuf,
    /// cgroup2.
    pub unified: bool,
}

/// The CPU quota set on the cgroup `dir` itself as (quota, period), if any.
fn quota_at(dir: &Path, unified: bool) -> Option<(u64, u64)> {
    if unified {
        let text = std::fs::read_to_string(dir.join("cpu.max")).ok()?;
        let mut words = text.split_whitespace();
        let quota = words.next()?.parse().ok()?;
        Some((quota, words.next()?.parse().ok()?))
    } else {
        let quota: i64 = read_signed(&dir.join("cpu.cfs_quota_us"))?;
        let period = read_number(&dir.join("cpu.cfs_period_us"))?;
        u64::try_from(quota).ok().map(|q| (q, period))
    }
}

/// The directories of the controllers eci reads for a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupDirs {
    /// memory.
    pub memory: Option<ControllerDir>,
    /// cpuset.
    pub cpuset: Option<ControllerDir>,
    /// cpu (the quota).
    pub cpu: Option<ControllerDir>,
    /// cpuacct (v1) or cpu (v2): the usage.
    pub cpuacct: Option<ControllerDir>,
    /// blkio (v1) or io (v2): the I/O done.
    pub blkio: Option<ControllerDir>,
}

impl CgroupDirs {
    /// The directories of the cgroup at `path` (as in the spec's `cgroupsPath`, from the root
    /// of each hierarchy), found from this process's mount table.
    pub fn resolve(path: &Path) -> std::io::Result<CgroupDirs> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let hierarchies = hierarchies(&mountinfo);
        let relative = path.strip_prefix("/").unwrap_or(path);
        let find = |controller: &str| {
            let v1 = hierarchies
                .iter()
                .find(|h| !h.unified && h.controllers.iter().any(|c| c == controller));
            let v2 = || {
                hierarchies.iter().find(|h| {
                    h.unified
                        && std::fs::read_to_string(h.mount.join("cgroup.controllers"))
                            .is_ok_and(|c| c.split_whitespace().any(|c| c == controller))
                })
            };
            v1.or_else(v2).map(|h| ControllerDir {
                dir: h.mount.join(relative),
                root: h.mount.clone(),
                unified: h.unified,
            })
        };
        let memory = find("memory");
        let cpu = find("cpu");
        let cpuacct = find("cpuacct").or_else(|| cpu.clone().filter(|c| c.unified));
        Ok(CgroupDirs {
            memory,
            cpuset: find("cpuset"),
            cpu,
            cpuacct,
            blkio: find("blkio").or_else(|| find("io")),
        })
    }

    /// The memory figures; without a memory controller, none are known (no limit, no use).
    pub fn memory(&self) -> Memory {
        let Some(c) = &self.memory else {
            return Memory::default();
        };
        let stat = read_stat(&c.dir.join("memory.stat"));
        let get = |keys: &[&str]| keys.iter().find_map(|k| stat.get(*k).copied()).unwrap_or(0);
        let (limit_file, usage_file) = if c.unified {
            ("memory.max", "memory.current")
        } else {
            ("memory.limit_in_bytes", "memory.usage_in_bytes")
        };
        let limit = smallest_up_to_root(c, limit_file);
        let usage = read_number(&c.dir.join(usage_file)).unwrap_or(0);
        let (swap_limit, swap_usage) = if c.unified {
            (
                smallest_up_to_root(c, "memory.swap.max"),
                read_number(&c.dir.join("memory.swap.current")).unwrap_or(0),
            )
        } else {
            // v1 counts memory and swap together.
            let both = smallest_up_to_root(c, "memory.memsw.limit_in_bytes");
            let both_usage = read_number(&c.dir.join("memory.memsw.usage_in_bytes"));
            (
                both.zip(limit).map(|(b, l)| b.saturating_sub(l)),
                both_usage.map_or(0, |b| b.saturating_sub(usage)),
            )
        };
        Memory {
            limit,
            usage,
            cache: get(&["file", "total_cache"]),
            anon: get(&["anon", "total_rss"]),
            shmem: get(&["shmem", "total_shmem"]),
            active_anon: get(&["active_anon", "total_active_anon"]),
            inactive_anon: get(&["inactive_anon", "total_inactive_anon"]),
            active_file: get(&["active_file", "total_active_file"]),
            inactive_file: get(&["inactive_file", "total_inactive_file"]),
            mapped: get(&["file_mapped", "total_mapped_file"]),
            dirty: get(&["file_dirty", "total_dirty"]),
            writeback: get(&["file_writeback", "total_writeback"]),
            unevictable: get(&["unevictable", "total_unevictable"]),
            swap_limit,
            swap_usage,
        }
    }

    /// The container's cpuset, or `host` if it has none.
    pub fn cpuset(&self, host: &[u32]) -> Vec<u32> {
        let Some(c) = &self.cpuset else {
            return host.to_vec();
        };
        let names: &[&str] = if c.unified {
            &["cpuset.cpus.effective"]
        } else {
            &["cpuset.effective_cpus", "cpuset.cpus"]
        };
        names
            .iter()
            .find_map(|n| std::fs::read_to_string(c.dir.join(n)).ok())
            .and_then(|text| parse_cpu_list(&text))
            .filter(|cpus| !cpus.is_empty())
            .unwrap_or_else(|| host.to_vec())
    }

    /// The CPU quota as (quota, period) in microseconds, if limited: the tightest of the
    /// container's own and its ancestors' below the hierarchy's root (a pod's, a
    /// `--cgroup-parent`'s), as the kernel holds the container to each.
    pub fn quota(&self) -> Option<(u64, u64)> {
        let c = self.cpu.as_ref()?;
        let below_root = c
            .dir
            .ancestors()
            .take_while(|d| d.starts_with(&c.root) && *d != c.root);
        let quotas = below_root.filter_map(|dir| quota_at(dir, c.unified));
        // The smallest quota/period, compared without division.
        quotas.min_by_key(|&(quota, period)| (u128::from(quota) << 64) / u128::from(period.max(1)))
    }

    /// CPU time used, per visible CPU, in USER_HZ ticks. v1 gives it per host CPU; v2 only in
    /// total, which is spread evenly (as is, on v1, the time of CPUs a quota hides).
    pub fn cpu_usage(&self, visible: &[u32]) -> Vec<CpuTime> {
        let mut out = vec![CpuTime::default(); visible.len()];
        let Some(c) = &self.cpuacct else {
            return out;
        };
        if c.unified {
            let stat = read_stat(&c.dir.join("cpu.stat"));
            let n = visible.len().max(1) as u64;
            let ticks = |usec: u64| usec / 10_000 / n;
            for t in &mut out {
                t.user = ticks(stat.get("user_usec").copied().unwrap_or(0));
                t.system = ticks(stat.get("system_usec").copied().unwrap_or(0));
            }
        } else {
            let per_cpu = |name: &str| -> Vec<u64> {
                std::fs::read_to_string(c.dir.join(name))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            };
            let (user, system) = (
                per_cpu("cpuacct.usage_percpu_user"),
                per_cpu("cpuacct.usage_percpu_sys"),
            );
            spread_per_cpu(&mut out, visible, &user, &system);
        }
        out
    }

    /// The I/O the container did, by device. cgroup v1 counts in the throttling files, and
    /// (since Linux 6.10) only on devices where some cgroup has a throttling limit; else in
    /// BFQ's files, when the device uses BFQ. Where neither counts, there is nothing to show.
    pub fn disk_io(&self) -> DiskIo {
        let Some(c) = &self.blkio else {
            return DiskIo::new();
        };
        let read = |name: &str| std::fs::read_to_string(c.dir.join(name)).unwrap_or_default();
        if c.unified {
            return parse_io_stat(&read("io.stat"));
        }
        ["blkio.throttle.", "blkio.bfq."]
            .iter()
            .map(|prefix| {
                parse_blkio(
                    &read(&format!("{prefix}io_serviced_recursive")),
                    &read(&format!("{prefix}io_service_bytes_recursive")),
                )
            })
            .find(|io| !io.is_empty())
            .unwrap_or_default()
    }
}

/// A cgroup hierarchy mounted on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// cgroup2.
    pub unified: bool,
    /// Its mount options naming controllers (and `name=...` for named v1 hierarchies).
    pub controllers: Vec<String>,
}

/// The cgroup hierarchies this process sees mounted (the first mount of each, at its root).
pub fn mounted_hierarchies() -> std::io::Result<Vec<Hierarchy>> {
    Ok(hierarchies(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// The cgroup and cgroup2 mounts of a mountinfo text (the first of each, at its root).
fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount), Some(fstype)) = (fields.get(3), fields.get(4), right.first())
        else {
            continue;
        };
        if *root != "/" {
            continue;
        }
        let controllers = match *fstype {
            "cgroup2" => Vec::new(),
            "cgroup" => right
                .get(2)
                .map_or_else(Vec::new, |o| o.split(',').map(str::to_string).collect()),
            _ => continue,
        };
        let hierarchy = Hierarchy {
            mount: PathBuf::from(mount),
            unified: *fstype == "cgroup2",
            controllers,
        };
        if !out.iter().any(|h| {
            h.unified == hierarchy.unified && h.controllers == hierarchy.controllers && !h.unified
        }) {
            out.push(hierarchy);
        }
    }
    out
}

/// Fills `out` with v1's per-host-CPU `user` and `system` nanoseconds for each `visible` CPU,
/// in USER_HZ ticks. The container runs on CPUs a quota hides too (a quota of one CPU in a
/// cpuset of two leaves one visible, and the kernel runs it on either): their time is spread
/// evenly over the visible ones, so that none of it goes missing.
fn spread_per_cpu(out: &mut [CpuTime], visible: &[u32], user: &[u64], system: &[u64]) {
    const NS_PER_TICK: u64 = 10_000_000;
    let hidden = |per_cpu: &[u64]| -> u64 {
        let all: u64 = per_cpu.iter().fold(0, |sum, v| sum.saturating_add(*v));
        let shown = visible.iter().filter_map(|cpu| per_cpu.get(*cpu as usize));
        all.saturating_sub(shown.fold(0, |sum, v| sum.saturating_add(*v)))
    };
    let share = |per_cpu: &[u64]| hidden(per_cpu) / (visible.len().max(1) as u64);
    let (user_share, system_share) = (share(user), share(system));
    for (t, cpu) in out.iter_mut().zip(visible) {
        let on = |per_cpu: &[u64]| per_cpu.get(*cpu as usize).copied().unwrap_or(0);
        t.user = on(user).saturating_add(user_share) / NS_PER_TICK;
        t.system = on(system).saturating_add(system_share) / NS_PER_TICK;
    }
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_signed(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The smallest limit in `file` from the container's directory up to the hierarchy's root;
/// "max" (v2) and v1's huge "unlimited" numbers count as none.
fn smallest_up_to_root(c: &ControllerDir, file: &str) -> Option<u64> {
    const UNLIMITED: u64 = 1 << 62;
    let mut smallest: Option<u64> = None;
    let mut dir = c.dir.as_path();
    loop {
        if let Some(limit) = read_number(&dir.join(file)).filter(|l| *l < UNLIMITED) {
            smallest = Some(smallest.map_or(limit, |s| s.min(limit)));
        }
        if dir == c.root {
            return smallest;
        }
        match dir.parent() {
            Some(parent) if parent.starts_with(&c.root) => dir = parent,
            _ => return smallest,
        }
    }
}

/// A "key value" file such as memory.stat or cpu.stat.
fn read_stat(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_and_v2_hierarchies() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                    32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                    90 80 0:32 /x /other rw - cgroup cgroup rw,memory\n";
        let found = hierarchies(text);
        assert_eq!(found.len(), 3);
        assert!(found[1].controllers.contains(&"memory".to_string()));
        assert!(found[2].unified);
    }

    #[test]
    fn time_on_cpus_a_quota_hides_is_spread_over_the_visible_ones() {
        let tick = 10_000_000;
        let mut out = vec![CpuTime::default(); 1];
        // Visible: CPU 0 only; the container also ran 4 ticks of user time on CPU 1.
        spread_per_cpu(&mut out, &[0], &[2 * tick, 4 * tick], &[tick, 0]);
        assert_eq!((out[0].user, out[0].system), (6, 1));
        // Nothing hidden: each visible CPU keeps its own.
        let mut out = vec![CpuTime::default(); 2];
        spread_per_cpu(&mut out, &[0, 1], &[2 * tick, 4 * tick], &[tick, 0]);
        assert_eq!((out[0].user, out[1].user, out[1].system), (2, 4, 0));
    }

    proptest::proptest! {
        #[test]
        fn spreading_never_loses_more_than_rounding(
            per_cpu in proptest::collection::vec(0u64..1 << 50, 1..8),
            cut in 1usize..8,
        ) {
            let visible: Vec<u32> = (0..per_cpu.len().min(cut) as u32).collect();
            let mut out = vec![CpuTime::default(); visible.len()];
            spread_per_cpu(&mut out, &visible, &per_cpu, &per_cpu);
            let total: u64 = per_cpu.iter().sum::<u64>() / 10_000_000;
            let shown: u64 = out.iter().map(|t| t.user).sum();
            proptest::prop_assert!(shown <= total && total - shown <= 2 * visible.len() as u64);
        }
    }

    #[test]
    fn the_hosts_own_cgroup_resolves() {
        let dirs = CgroupDirs::resolve(Path::new("/")).unwrap();
        assert!(dirs.memory.is_some(), "{dirs:?}");
        assert!(!dirs.cpuset(&[0]).is_empty());
    }
}
