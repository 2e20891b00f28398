//! The text of each virtual file, from the host's file and the container's figures. Pure: every
//! function here is a string transformation, tested with proptest.

use std::fmt::Write as _;
use std::time::Duration;

/// The container's memory, in bytes, as its cgroup reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// The effective limit (the smallest of the cgroup's and its ancestors'), if any.
    pub limit: Option<u64>,
    /// What the cgroup uses, page cache included.
    pub usage: u64,
    /// Page cache.
    pub cache: u64,
    /// Anonymous memory.
    pub anon: u64,
    /// Shared memory (tmpfs, shm).
    pub shmem: u64,
    /// Active and inactive anonymous and file pages.
    pub active_anon: u64,
    /// See `active_anon`.
    pub inactive_anon: u64,
    /// See `active_anon`.
    pub active_file: u64,
    /// See `active_anon`.
    pub inactive_file: u64,
    /// Mapped file pages.
    pub mapped: u64,
    /// Dirty pages.
    pub dirty: u64,
    /// Pages under writeback.
    pub writeback: u64,
    /// Unevictable pages.
    pub unevictable: u64,
    /// The swap the container may use, if limited.
    pub swap_limit: Option<u64>,
    /// The swap it uses.
    pub swap_usage: u64,
}

/// The host's meminfo lines that describe the kernel rather than anyone's use of memory; they
/// are passed through unchanged. Every other line the host has and eci cannot compute for the
/// container (slab, page tables, ...) is left out rather than shown with the host's value, and
/// so are the DirectMap lines: they add up to about the host's RAM.
const KERNEL_LINES: [&str; 7] = [
    "VmallocTotal",
    "HugePages_Total",
    "HugePages_Free",
    "HugePages_Rsvd",
    "HugePages_Surp",
    "Hugepagesize",
    "Hugetlb",
];

/// The value of a `Key:   123 kB` line of the host's meminfo, in bytes.
pub fn meminfo_value(host: &str, key: &str) -> Option<u64> {
    host.lines()
        .find_map(|line| {
            let (k, rest) = line.split_once(':')?;
            (k == key).then(|| rest.split_whitespace().next()?.parse::<u64>().ok())?
        })
        .map(|kb| kb.saturating_mul(1024))
}

/// The totals meminfo and sysinfo(2) share, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// The limit, never more than the host has.
    pub total: u64,
    /// What is not used.
    pub free: u64,
    /// Free plus reclaimable page cache.
    pub available: u64,
    /// Swap the container may use.
    pub swap_total: u64,
    /// Of which unused.
    pub swap_free: u64,
}

/// The container's totals: from its limit (never more than the host has) and its use.
pub fn totals(host: &str, m: &Memory) -> Totals {
    let host_total = meminfo_value(host, "MemTotal").unwrap_or(u64::MAX);
    let total = m.limit.map_or(host_total, |l| l.min(host_total));
    let free = total - m.usage.min(total);
    let available = free
        .saturating_add(m.cache.saturating_sub(m.shmem))
        .min(total);
    let host_swap = meminfo_value(host, "SwapTotal").unwrap_or(0);
    let swap_total = m.swap_limit.map_or(host_swap, |l| l.min(host_swap));
    Totals {
        total,
        free,
        available,
        swap_total,
        swap_free: swap_total.saturating_sub(m.swap_usage),
    }
}

/// /proc/meminfo for a container: totals from its limit (never more than the host has), use
/// from its cgroup.
pub fn meminfo(host: &str, m: &Memory) -> String {
    let Totals {
        total,
        free,
        available,
        swap_total,
        swap_free,
    } = totals(host, m);
    let used = total - free;
    let lines: [(&str, u64); 21] = [
        ("MemTotal", total),
        ("MemFree", free),
        ("MemAvailable", available),
        ("Buffers", 0),
        ("Cached", m.cache.saturating_sub(m.shmem.min(m.cache))),
        ("SwapCached", 0),
        ("Active", m.active_anon + m.active_file),
        ("Inactive", m.inactive_anon + m.inactive_file),
        ("Active(anon)", m.active_anon),
        ("Inactive(anon)", m.inactive_anon),
        ("Active(file)", m.active_file),
        ("Inactive(file)", m.inactive_file),
        ("Unevictable", m.unevictable),
        ("SwapTotal", swap_total),
        ("SwapFree", swap_free),
        ("Dirty", m.dirty),
        ("Writeback", m.writeback),
        ("AnonPages", m.anon),
        ("Mapped", m.mapped),
        ("Shmem", m.shmem),
        ("Committed_AS", used),
    ];
    let mut out = String::with_capacity(1024);
    for (key, bytes) in lines {
        kb_line(&mut out, key, bytes / 1024);
    }
    for line in host.lines() {
        let key = line.split(':').next().unwrap_or_default();
        if KERNEL_LINES.contains(&key) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn kb_line(out: &mut String, key: &str, kb: u64) {
    let label = format!("{key}:");
    let _ = writeln!(out, "{label:<16}{kb:>8} kB");
}

/// A set of CPUs, as cpuset lists them ("0-3,8").
pub fn parse_cpu_list(list: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b || b - a > 4096 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

/// A CPU list in cpuset's notation.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
        i += 1;
    }
    out
}

/// The CPUs a container sees: those of its cpuset, cut to its CPU quota (rounded up), in order.
pub fn visible_cpus(cpuset: &[u32], quota: Option<(u64, u64)>) -> Vec<u32> {
    let count = match quota {
        Some((quota, period)) if period > 0 => quota.div_ceil(period).max(1) as usize,
        _ => usize::MAX,
    };
    cpuset.iter().copied().take(count).collect()
}

/// /sys/devices/system/cpu/online: the container's CPUs, numbered from 0.
pub fn cpu_online(visible: usize) -> String {
    match visible {
        0 | 1 => "0\n".to_string(),
        n => format!("0-{}\n", n - 1),
    }
}

/// /proc/cpuinfo for a container: the host's entries for its CPUs, renumbered from 0.
pub fn cpuinfo(host: &str, visible: &[u32]) -> String {
    let mut out = String::with_capacity(host.len());
    for (index, cpu) in visible.iter().enumerate() {
        let Some(block) = host
            .split("\n\n")
            .find(|block| processor_of(block) == Some(*cpu))
        else {
            continue;
        };
        for line in block.lines() {
            if line.starts_with("processor") {
                let _ = writeln!(out, "processor\t: {index}");
            } else if line.starts_with("siblings") || line.starts_with("cpu cores") {
                let key = line.split(':').next().unwrap_or_default();
                let _ = writeln!(out, "{key}: {}", visible.len());
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

fn processor_of(block: &str) -> Option<u32> {
    let line = block.lines().find(|l| l.starts_with("processor"))?;
    line.split(':').nth(1)?.trim().parse().ok()
}

/// One CPU's time, in USER_HZ ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Time in user mode.
    pub user: u64,
    /// Time in the kernel.
    pub system: u64,
}

/// /proc/stat for a container: a `cpu` line and one per visible CPU from its cgroup's usage,
/// idle being the rest of the time since it started; `btime` is its start. The host's counters
/// that belong to no cgroup (intr, ctxt, softirq) are left out; `processes`, `procs_running` and
/// `procs_blocked` are the container's when given.
pub fn stat(usage: &[CpuTime], uptime: Duration, btime: u64, tasks: &Tasks) -> String {
    let ticks = uptime.as_millis() as u64 / 10;
    let mut out = String::with_capacity(256);
    let idle = |t: &CpuTime| ticks.saturating_sub(t.user + t.system);
    let total = usage.iter().fold((0, 0, 0), |(u, s, i), t| {
        (u + t.user, s + t.system, i + idle(t))
    });
    let _ = writeln!(
        out,
        "cpu  {} 0 {} {} 0 0 0 0 0 0",
        total.0, total.1, total.2
    );
    for (n, t) in usage.iter().enumerate() {
        let _ = writeln!(
            out,
            "cpu{n} {} 0 {} {} 0 0 0 0 0 0",
            t.user,
            t.system,
            idle(t)
        );
    }
    let _ = writeln!(out, "btime {btime}");
    let _ = writeln!(out, "processes {}", tasks.total);
    let _ = writeln!(out, "procs_running {}", tasks.running);
    let _ = writeln!(out, "procs_blocked {}", tasks.blocked);
    out
}

/// The container's tasks, for /proc/stat and /proc/loadavg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tasks {
    /// Processes (for /proc/stat) or threads (for /proc/loadavg) now in the container.
    pub total: u64,
    /// Threads running, as the kernel's procs_running counts them.
    pub running: u64,
    /// Threads in uninterruptible sleep (the kernel's procs_blocked counts those waiting on
    /// I/O, most of them; it keeps no such count per cgroup).
    pub blocked: u64,
}

/// /proc/swaps for a container: the header, and one line for the swap it may use, if any.
pub fn swaps(m: &Memory, host_swap_total: u64) -> String {
    let mut out = String::from("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
    let size = m
        .swap_limit
        .map_or(host_swap_total, |l| l.min(host_swap_total));
    if size > 0 {
        let _ = writeln!(
            out,
            "none\t\t\t\t\tvirtual\t\t{}\t\t{}\t\t0",
            size / 1024,
            m.swap_usage.min(size) / 1024
        );
    }
    out
}

/// Load averages as the kernel keeps them: fixed point with 11 fractional bits, moved every
/// [`LoadAverage::INTERVAL`] toward the number of active (running or uninterruptible) threads,
/// over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadAverage(pub [u64; 3]);

const FSHIFT: u32 = 11;
const FIXED_1: u64 = 1 << FSHIFT;
/// exp(-5 s / 1, 5 and 15 min) in fixed point: the kernel's EXP_1, EXP_5 and EXP_15.
const DECAY: [u64; 3] = [1884, 2014, 2037];
/// More active threads than this count as this many (keeps the arithmetic in range).
const MOST_ACTIVE: u64 = 1 << 32;

impl LoadAverage {
    /// How often the kernel samples, and so how often [`LoadAverage::sample`] is meant to run.
    pub const INTERVAL: Duration = Duration::from_secs(5);

    /// One sample: `active` threads were running or in uninterruptible sleep.
    pub fn sample(&mut self, active: u64) {
        let active = active.min(MOST_ACTIVE) * FIXED_1;
        for (load, decay) in self.0.iter_mut().zip(DECAY) {
            let mut next = *load * decay + active * (FIXED_1 - decay);
            // Round up while rising, as the kernel does, so that a steady load is reached.
            if active >= *load {
                next += FIXED_1 - 1;
            }
            *load = next / FIXED_1;
        }
    }

    /// The averages as sysinfo(2) reports them (16 fractional bits).
    pub fn for_sysinfo(&self) -> [u64; 3] {
        self.0.map(|load| load << (16 - FSHIFT))
    }
}

/// /proc/loadavg for a container: its load averages, its running and total threads, and the
/// largest PID in use in its namespace (the kernel shows the last one allocated, which no
/// cgroup records).
pub fn loadavg(load: &LoadAverage, running: u64, threads: u64, last_pid: u64) -> String {
    let mut out = String::with_capacity(48);
    for average in load.0 {
        // Rounded to the hundredth shown, as the kernel does.
        let average = average + FIXED_1 / 200;
        let fraction = ((average & (FIXED_1 - 1)) * 100) >> FSHIFT;
        let _ = write!(out, "{}.{fraction:02} ", average >> FSHIFT);
    }
    let _ = writeln!(out, "{running}/{threads} {last_pid}");
    out
}

/// What a container read from and wrote to one block device, as its cgroup counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceIo {
    /// Read requests completed.
    pub reads: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Write requests completed.
    pub writes: u64,
    /// Bytes written.
    pub written_bytes: u64,
    /// Discard requests completed.
    pub discards: u64,
    /// Bytes discarded.
    pub discarded_bytes: u64,
}

/// The I/O of a container by device (major, minor).
pub type DiskIo = std::collections::BTreeMap<(u32, u32), DeviceIo>;

/// cgroup v1's `blkio.*io_serviced*` (requests) and `blkio.*io_service_bytes*` (bytes) files:
/// lines of `MAJ:MIN Read|Write|Discard|Sync|Async|Total N`.
pub fn parse_blkio(serviced: &str, service_bytes: &str) -> DiskIo {
    let mut io = DiskIo::new();
    for (text, bytes) in [(serviced, false), (service_bytes, true)] {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(device), Some(kind), Some(value), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                continue;
            };
            let (Some(device), Ok(value)) = (parse_device(device), value.parse::<u64>()) else {
                continue;
            };
            let entry = io.entry(device).or_default();
            let field = match (kind, bytes) {
                ("Read", false) => &mut entry.reads,
                ("Read", true) => &mut entry.read_bytes,
                ("Write", false) => &mut entry.writes,
                ("Write", true) => &mut entry.written_bytes,
                ("Discard", false) => &mut entry.discards,
                ("Discard", true) => &mut entry.discarded_bytes,
                _ => continue,
            };
            *field = value;
        }
    }
    io
}

/// cgroup v2's `io.stat`: lines of `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N`.
pub fn parse_io_stat(text: &str) -> DiskIo {
    let mut io = DiskIo::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(device) = words.next().and_then(parse_device) else {
            continue;
        };
        let mut entry = DeviceIo::default();
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse() else {
                continue;
            };
            match key {
                "rbytes" => entry.read_bytes = value,
                "wbytes" => entry.written_bytes = value,
                "rios" => entry.reads = value,
                "wios" => entry.writes = value,
                "dbytes" => entry.discarded_bytes = value,
                "dios" => entry.discards = value,
                _ => {}
            }
        }
        io.insert(device, entry);
    }
    io
}

fn parse_device(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// /proc/diskstats for a container: the host's devices, each with the container's own request
/// and sector counts (zero where it did no I/O). The times, merges and requests in flight are
/// not kept per cgroup and read 0; the host's are never shown.
pub fn diskstats(host: &str, io: &DiskIo) -> String {
    let mut out = String::with_capacity(host.len());
    for line in host.lines() {
        let mut words = line.split_whitespace();
        let (Some(major), Some(minor), Some(name)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else {
            continue;
        };
        let d = io.get(&(major, minor)).copied().unwrap_or_default();
        // Fields after the name: reads, merged, sectors, ms; writes, merged, sectors, ms; in
        // flight, ms, weighted ms; discards, merged, sectors, ms; flushes, ms.
        let mut fields = [0u64; 17];
        fields[0] = d.reads;
        fields[2] = d.read_bytes / 512;
        fields[4] = d.writes;
        fields[6] = d.written_bytes / 512;
        fields[11] = d.discards;
        fields[13] = d.discarded_bytes / 512;
        // As many fields as the host's kernel prints.
        let count = words.count().clamp(11, fields.len());
        let _ = write!(out, "{major:4} {minor:7} {name}");
        for value in &fields[..count] {
            let _ = write!(out, " {value}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOST: &str = "MemTotal:       24683664 kB\nMemFree:        22674576 kB\nSlab:  157132 kB\nSwapTotal: 0 kB\nHugepagesize:       2048 kB\nDirectMap4k:      169836 kB\nDirectMap2M:    24997888 kB\n";

    #[test]
    fn meminfo_shows_the_limit_and_the_use() {
        let m = Memory {
            limit: Some(256 << 20),
            usage: 100 << 20,
            cache: 40 << 20,
            ..Default::default()
        };
        let text = meminfo(HOST, &m);
        assert!(
            text.starts_with("MemTotal:         262144 kB\nMemFree:          159744 kB\n"),
            "{text}"
        );
        assert_eq!(meminfo_value(&text, "MemAvailable"), Some(196 << 20));
        assert!(
            text.contains("Hugepagesize:       2048 kB"),
            "kernel lines pass through"
        );
        assert!(!text.contains("Slab"), "host use is never shown");
        assert!(!text.contains("DirectMap"), "nor the host's size");
    }

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(parse_cpu_list("0-3,8\n"), Some(vec![0, 1, 2, 3, 8]));
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8]), "0-3,8");
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(visible_cpus(&[0, 1], Some((50_000, 100_000))), [0]);
        assert_eq!(visible_cpus(&[0, 1], Some((150_000, 100_000))), [0, 1]);
        assert_eq!(cpu_online(1), "0\n");
        assert_eq!(cpu_online(4), "0-3\n");
    }

    #[test]
    fn cpuinfo_keeps_the_containers_cpus_renumbered() {
        let host = "processor\t: 0\nmodel name\t: A\nsiblings\t: 2\n\nprocessor\t: 1\nmodel name\t: B\nsiblings\t: 2\n";
        let text = cpuinfo(host, &[1]);
        assert_eq!(text, "processor\t: 0\nmodel name\t: B\nsiblings\t: 1\n\n");
    }

    #[test]
    fn stat_counts_from_the_start() {
        let text = stat(
            &[CpuTime {
                user: 30,
                system: 20,
            }],
            Duration::from_secs(2),
            1000,
            &Tasks::default(),
        );
        assert!(
            text.starts_with("cpu  30 0 20 150 0 0 0 0 0 0\ncpu0 30 0 20 150 "),
            "{text}"
        );
    }

    #[test]
    fn load_averages_move_like_the_kernels() {
        let mut load = LoadAverage::default();
        assert_eq!(loadavg(&load, 0, 3, 7), "0.00 0.00 0.00 0/3 7\n");
        // One busy thread for a minute: the 1-minute average reaches 1 - 1/e.
        for _ in 0..12 {
            load.sample(1);
        }
        assert!(loadavg(&load, 1, 3, 7).starts_with("0.63 0.18 0.06 1/3 7"));
        for _ in 0..1000 {
            load.sample(2);
        }
        assert!(loadavg(&load, 2, 3, 7).starts_with("2.00 2.00 2.00 "));
        assert_eq!(load.for_sysinfo()[0] >> 16, 2);
    }

    #[test]
    fn disk_io_from_v1_and_v2_files() {
        let v1 = parse_blkio(
            "254:0 Read 121\n254:0 Write 103\n254:0 Total 224\nTotal 224\n",
            "254:0 Read 6639616\n254:0 Write 6561792\nTotal 13201408\n",
        );
        let v2 = parse_io_stat(
            "254:0 rbytes=6639616 wbytes=6561792 rios=121 wios=103 dbytes=0 dios=0\n",
        );
        assert_eq!(v1, v2);
        let host = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n \
                    254       0 vda 833433 42082 57967170 1020311 740543 171432 101263232 2187545 0 233108 3328799 90533 83 71120936 73422 216608 47520\n";
        assert_eq!(
            diskstats(host, &v1),
            "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n \
              254       0 vda 121 0 12968 0 103 0 12816 0 0 0 0 0 0 0 0 0 0\n"
        );
    }

    proptest! {
        #[test]
        fn meminfo_never_shows_more_than_the_limit_or_the_host(
            limit in proptest::option::of(0u64..1 << 40),
            usage in 0u64..1 << 41,
            cache in 0u64..1 << 41,
            shmem in 0u64..1 << 41,
        ) {
            let m = Memory { limit, usage, cache, shmem, ..Default::default() };
            let text = meminfo(HOST, &m);
            let total = meminfo_value(&text, "MemTotal").unwrap();
            prop_assert!(total <= 24683664 * 1024);
            if let Some(limit) = limit {
                prop_assert!(total <= limit);
            }
            prop_assert!(meminfo_value(&text, "MemFree").unwrap() <= total);
            prop_assert!(meminfo_value(&text, "MemAvailable").unwrap() <= total);
        }

        #[test]
        fn cpu_lists_parse_what_they_format(cpus in proptest::collection::btree_set(0u32..512, 0..64)) {
            let cpus: Vec<u32> = cpus.into_iter().collect();
            prop_assert_eq!(parse_cpu_list(&format_cpu_list(&cpus)), Some(cpus));
        }

        #[test]
        fn a_load_average_never_exceeds_the_most_active_threads(
            samples in proptest::collection::vec(0u64..10_000, 0..400),
        ) {
            let mut load = LoadAverage::default();
            for active in &samples {
                load.sample(*active);
            }
            let most = samples.iter().copied().max().unwrap_or(0);
            for average in load.0 {
                prop_assert!(average <= most * FIXED_1);
            }
        }

        #[test]
        fn disk_io_parsing_never_panics(text in "[0-9: a-zA-Z=\\n]{0,200}") {
            let _ = parse_blkio(&text, &text);
            let _ = parse_io_stat(&text);
            let _ = diskstats(&text, &DiskIo::new());
        }

        #[test]
        fn cpu_list_parsing_never_panics(text in "[0-9,\\-]{0,40}") {
            let _ = parse_cpu_list(&text);
        }
    }
}
