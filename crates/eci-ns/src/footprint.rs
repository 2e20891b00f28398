//! The resident footprint of a long-lived process: giving back what it touched only once.
//!
//! A monitor or helper that starts a container runs much more code than it runs afterwards
//! while it waits. Every page of program text or read-only data it touched stays mapped and
//! counts in its RSS until the kernel reclaims it under memory pressure. [`trim`] does the
//! same as that reclaim, but now: it unmaps the process's clean read-only file pages (they
//! stay in the page cache, shared with every other process mapping them, and fault back in
//! from there the next time they are used) and returns the allocator's free memory.
//!
//! A page is only unmapped when the kernel reports that nothing in its mapping differs from
//! the file: no anonymous (copied-on-write) page and nothing swapped out, which is what the
//! loader's relocated read-only data (RELRO) has. Unmapping such a page would bring back the
//! file's unrelocated bytes, so those mappings are left alone.
//!
//! The list comes from smaps and the pages are dropped a mapping at a time after it, so no
//! other thread of the process may unmap a file mapping meanwhile (munmap of a mapped file,
//! dlclose): a range taken over by a new writable mapping in between would lose its contents.
//! eci's long-lived processes map no file after they start.
//!
//! ```
//! let trimmed = eci_ns::footprint::trim().unwrap();
//! // The program keeps running: what it needs faults back in.
//! assert!(trimmed.mappings > 0);
//! ```

/// What [`trim`] gave back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trimmed {
    /// How many file mappings were unmapped from this process's page tables.
    pub mappings: usize,
    /// Their resident size before, in KiB: what the process's RSS fell by (before anything
    /// faulted back in).
    pub unmapped_kib: u64,
    /// Mappings the kernel refused to unmap (madvise failed); they keep their pages and the
    /// others are unmapped all the same.
    pub refused: usize,
}

/// Why [`trim`] could not read what to unmap.
#[derive(Debug, thiserror::Error)]
pub enum FootprintError {
    /// /proc/self/smaps could not be opened or read, or was not procfs's.
    #[error("reading /proc/self/smaps: {0}")]
    Smaps(#[source] std::io::Error),
}

/// A mapping whose resident pages can be dropped and read back from its file unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanMapping {
    /// The first address.
    pub start: usize,
    /// The address after the last byte.
    pub end: usize,
    /// Resident KiB, as smaps reported them.
    pub rss_kib: u64,
}

/// Unmaps this process's clean read-only file pages and trims the allocator's free memory.
///
/// Other threads may go on running (one that needs an unmapped page faults it back in from
/// the page cache) as long as none unmaps a file mapping meanwhile (see the module's
/// documentation). A debugger's breakpoint in program text is a copied page and keeps its
/// mapping resident. Costs a read of /proc/self/smaps (a walk of every mapping, 1-2 ms for
/// eci-runc) and one madvise(2) a mapping; meant for a process that has gone idle. Opens
/// /proc/self/smaps by path: the process's root must be one it trusts.
pub fn trim() -> Result<Trimmed, FootprintError> {
    let trimmed = unmap_clean_pages()?;
    trim_allocator();
    Ok(trimmed)
}

/// [`trim`] without the allocator: allocation-free and async-signal-safe (open, fstatfs,
/// read, madvise and close only), so a helper forked from a threaded process may call it.
pub fn unmap_clean_pages() -> Result<Trimmed, FootprintError> {
    SmapsFile::open()
        .and_then(|smaps| smaps.unmap_clean_pages())
        .map_err(FootprintError::Smaps)
}

/// A forked helper's wait that unmaps the pages its start touched once it has been idle for
/// [`IdleTrim::IDLE_MS`] the first time. Allocation-free, for helpers that loop on poll(2).
///
/// It opens the helper's smaps when it is made: a helper that later takes a container's
/// root (to resolve a caller's paths) must not open `/proc/self/smaps` there, where the
/// container decides what that path holds.
///
/// ```
/// use eci_ns::footprint::IdleTrim;
/// let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
/// let mut idle = IdleTrim::open();
/// std::io::Write::write_all(&mut &theirs, b"x").unwrap();
/// idle.wait_readable(std::os::fd::AsRawFd::as_raw_fd(&mine)); // readable at once
/// assert!(!idle.trimmed());
/// ```
#[derive(Debug)]
pub struct IdleTrim {
    /// None once trimmed, or if it could not be opened (then the helper keeps its pages).
    smaps: Option<SmapsFile>,
    trimmed: bool,
}

impl IdleTrim {
    /// How long the helper waits, idle, before it gives its start's pages back.
    pub const IDLE_MS: libc::c_int = 2000;

    /// Opens this process's smaps now, while its root is still its own.
    pub fn open() -> IdleTrim {
        IdleTrim {
            smaps: SmapsFile::open().ok(),
            trimmed: false,
        }
    }

    /// The poll(2) timeout to wait with: [`IdleTrim::IDLE_MS`] until the helper has trimmed,
    /// then none (-1).
    pub fn poll_timeout(&self) -> libc::c_int {
        if self.trimmed {
            -1
        } else {
            Self::IDLE_MS
        }
    }

    /// Call when poll(2) timed out: unmaps the clean pages, once. A failure is not retried:
    /// the helper just keeps its pages.
    pub fn idle(&mut self) {
        self.trimmed = true;
        if let Some(smaps) = self.smaps.take() {
            let _ = smaps.unmap_clean_pages();
        }
    }

    /// Whether the helper has trimmed.
    pub fn trimmed(&self) -> bool {
        self.trimmed
    }

    /// Waits until `fd` has something (or hung up or failed), trimming on the way if the
    /// wait is long; returns at once if poll(2) fails for another reason than a signal.
    pub fn wait_readable(&mut self, fd: std::os::fd::RawFd) {
        let mut pollfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd.
            match unsafe { libc::poll(&mut pollfd, 1, self.poll_timeout()) } {
                0 => self.idle(),
                -1 if crate::sys::Errno::last().0 == libc::EINTR => {}
                _ => return,
            }
        }
    }
}

/// /proc/self/smaps, read with plain syscalls.
#[derive(Debug)]
struct SmapsFile(std::os::fd::OwnedFd);

impl SmapsFile {
    /// Opens it and checks that it is procfs's: never a FIFO (O_NONBLOCK: the open cannot
    /// wait) or a plain file someone wrote. That does not make an untrusted root safe (a bind
    /// of another process's smaps is procfs's too): callers open it in their own root.
    fn open() -> std::io::Result<SmapsFile> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOFOLLOW;
        // SAFETY: a NUL-terminated path; the descriptor returned is ours alone.
        let fd = crate::sys::check_int(unsafe { libc::open(c"/proc/self/smaps".as_ptr(), flags) })?;
        // SAFETY: fd was just opened and is owned by nothing else.
        let file = SmapsFile(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        // SAFETY: statfs is plain data; all-zero is a valid value.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: fs is writable and the descriptor is open.
        crate::sys::check_int(unsafe { libc::fstatfs(file.0.as_raw_fd(), &mut fs) })?;
        if fs.f_type != libc::PROC_SUPER_MAGIC {
            return Err(std::io::Error::from_raw_os_error(libc::EXDEV));
        }
        Ok(file)
    }

    fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        crate::sys::retry(|| {
            // SAFETY: buf is writable for its length.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            crate::sys::check(n as libc::c_long).map(|n| n as usize)
        })
        .map_err(Into::into)
    }

    /// Reads the file from its start and unmaps each clean mapping as soon as its block has
    /// been read. Allocation-free.
    fn unmap_clean_pages(&self) -> std::io::Result<Trimmed> {
        use std::os::fd::AsRawFd;
        // SAFETY: lseek on a descriptor we hold.
        crate::sys::check(unsafe { libc::lseek(self.0.as_raw_fd(), 0, libc::SEEK_SET) })?;
        let mut scanner = SmapsScanner::default();
        let mut trimmed = Trimmed::default();
        let mut unmap = |mapping: CleanMapping| {
            // Only page table entries change, never the mappings smaps is walking through.
            if unmap_pages(&mapping) {
                trimmed.mappings += 1;
                trimmed.unmapped_kib += mapping.rss_kib;
            } else {
                trimmed.refused += 1;
            }
        };
        let mut line = LineBuffer::default();
        let mut chunk = [0u8; 4096];
        loop {
            let read = self.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            for &byte in &chunk[..read] {
                if byte != b'\n' {
                    line.push(byte);
                } else if let Some(mapping) = scanner.line(line.take()) {
                    unmap(mapping);
                }
            }
        }
        let last = scanner.line(line.take());
        last.into_iter().chain(scanner.finish()).for_each(unmap);
        Ok(trimmed)
    }
}

/// The start of one line: smaps lines that matter are short, and a longer one (a long path)
/// keeps its first bytes, which hold every field read.
struct LineBuffer {
    bytes: [u8; 256],
    len: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer {
            bytes: [0; 256],
            len: 0,
        }
    }
}

impl LineBuffer {
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn take(&mut self) -> &[u8] {
        let len = std::mem::take(&mut self.len);
        &self.bytes[..len]
    }
}

/// Drops a clean mapping's pages; whether the kernel did.
fn unmap_pages(mapping: &CleanMapping) -> bool {
    // SAFETY: the range is one of this process's private, read-only file mappings with no
    // page of its own (smaps said so and nothing here writes to read-only memory), so
    // dropping its pages changes no byte the process can read: they come back from the file.
    let ret = unsafe {
        libc::madvise(
            mapping.start as *mut libc::c_void,
            mapping.end - mapping.start,
            libc::MADV_DONTNEED,
        )
    };
    ret == 0
}

#[cfg(target_env = "gnu")]
fn trim_allocator() {
    // SAFETY: malloc_trim takes the allocator's own locks; any thread may call it.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(target_env = "gnu"))]
fn trim_allocator() {}

/// The mappings of an smaps text (proc(5)) whose resident pages may be dropped: private,
/// read-only, backed by a file, resident, with no anonymous, swapped or locked page. A block
/// missing any of those fields, or one that does not parse, is never chosen.
pub fn clean_mappings(smaps: &str) -> Vec<CleanMapping> {
    let mut scanner = SmapsScanner::default();
    let mut chosen: Vec<CleanMapping> = smaps
        .lines()
        .filter_map(|line| scanner.line(line.as_bytes()))
        .collect();
    chosen.extend(scanner.finish());
    chosen
}

/// Reads smaps a line at a time, without allocating, and hands back each clean mapping (as
/// [`clean_mappings`] chooses them) once its block has ended.
#[derive(Default)]
pub struct SmapsScanner {
    current: Option<Block>,
}

impl SmapsScanner {
    /// One line, without its newline; the mapping whose block this line ended, if clean.
    pub fn line(&mut self, line: &[u8]) -> Option<CleanMapping> {
        match Block::from_header(line) {
            Some(block) => self.current.replace(block).and_then(Block::clean),
            None => {
                if let Some(block) = self.current.as_mut() {
                    block.read_field(line);
                }
                None
            }
        }
    }

    /// The last block's mapping, if clean.
    pub fn finish(&mut self) -> Option<CleanMapping> {
        self.current.take().and_then(Block::clean)
    }
}

/// One mapping's block of smaps, as far as it has been read.
struct Block {
    start: usize,
    end: usize,
    eligible: bool,
    rss: Option<u64>,
    anonymous: Option<u64>,
    swap: Option<u64>,
    locked: Option<u64>,
}

/// Fields of a line, split at ASCII whitespace.
fn fields(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
}

fn number(field: &[u8], radix: u32) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(field).ok()?, radix).ok()
}

impl Block {
    /// `START-END PERMS OFFSET DEV INODE [PATH]`.
    fn from_header(line: &[u8]) -> Option<Block> {
        let mut fields = fields(line);
        let range = fields.next()?;
        let dash = range.iter().position(|&b| b == b'-')?;
        let start = usize::try_from(number(&range[..dash], 16)?).ok()?;
        let end = usize::try_from(number(&range[dash + 1..], 16)?).ok()?;
        let perms = fields.next()?;
        number(fields.next()?, 16)?;
        if !fields.next()?.contains(&b':') {
            return None;
        }
        let inode = number(fields.next()?, 10)?;
        let path = fields.next().unwrap_or_default();
        let eligible = perms.len() == 4
            && perms[0] == b'r'
            && perms[1] == b'-'
            && perms[3] == b'p'
            && inode != 0
            && path.first() == Some(&b'/')
            && start < end;
        Some(Block {
            start,
            end,
            eligible,
            rss: None,
            anonymous: None,
            swap: None,
            locked: None,
        })
    }

    /// `Key:   N kB` lines; others are ignored.
    fn read_field(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return;
        };
        let slot = match &line[..colon] {
            b"Rss" => &mut self.rss,
            b"Anonymous" => &mut self.anonymous,
            b"Swap" => &mut self.swap,
            b"Locked" => &mut self.locked,
            _ => return,
        };
        let mut value = fields(&line[colon + 1..]);
        let kib = match (value.next(), value.next(), value.next()) {
            (Some(n), Some(b"kB"), None) => number(n, 10),
            _ => None,
        };
        // A field seen twice or unreadable makes the block unreadable: never chosen.
        *slot = match (*slot, kib) {
            (None, Some(kib)) => Some(kib),
            _ => {
                self.eligible = false;
                None
            }
        };
    }

    fn clean(self) -> Option<CleanMapping> {
        let (rss, anonymous, swap, locked) = (self.rss?, self.anonymous?, self.swap?, self.locked?);
        (self.eligible && rss > 0 && anonymous == 0 && swap == 0 && locked == 0).then_some(
            CleanMapping {
                start: self.start,
                end: self.end,
                rss_kib: rss,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(header: &str, rss: u64, anonymous: u64, swap: u64, locked: u64) -> String {
        format!(
            "{header}\nSize:               2048 kB\nRss:       {rss} kB\nPss:        1 kB\n\
             Anonymous:    {anonymous} kB\nSwap:      {swap} kB\nLocked:   {locked} kB\n\
             VmFlags: rd ex mr mw me\n"
        )
    }

    const TEXT: &str = "55d1c3a00000-55d1c3e00000 r-xp 00200000 08:01 1234    /usr/bin/eci-runc";

    #[test]
    fn program_text_is_chosen_and_relocated_data_is_not() {
        let relro = "55d1c4000000-55d1c4060000 r--p 00800000 08:01 1234    /usr/bin/eci-runc";
        let smaps = block(TEXT, 3132, 0, 0, 0) + &block(relro, 360, 360, 0, 0);
        assert_eq!(
            clean_mappings(&smaps),
            vec![CleanMapping {
                start: 0x55d1c3a00000,
                end: 0x55d1c3e00000,
                rss_kib: 3132
            }]
        );
    }

    #[test]
    fn a_block_missing_a_field_is_never_chosen() {
        let without_swap = block(TEXT, 100, 0, 0, 0).replace("Swap:      0 kB\n", "");
        assert!(clean_mappings(&without_swap).is_empty());
        let twice = block(TEXT, 100, 0, 0, 0).replace("Pss:", "Rss: 1 kB\nPss:");
        assert!(clean_mappings(&twice).is_empty());
    }

    #[test]
    fn anonymous_device_and_special_mappings_are_not_chosen() {
        for header in [
            "7f0000000000-7f0000100000 r--p 00000000 00:00 0 ",
            "7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]",
            "7f0000000000-7f0000100000 r--s 00000000 00:05 77   /dev/zero",
            "7f0000000000-7f0000100000 rw-p 00000000 08:01 99   /usr/lib/libc.so.6",
            "7f0000000000-7f0000100000 ---p 00000000 08:01 99   /usr/lib/libc.so.6",
        ] {
            assert!(
                clean_mappings(&block(header, 8, 0, 0, 0)).is_empty(),
                "{header}"
            );
        }
    }

    /// A mapping the process wrote to (as the loader writes relocations before it makes them
    /// read-only) keeps its bytes: only untouched file pages are dropped.
    #[test]
    fn trim_drops_a_file_mapping_and_keeps_a_written_one() {
        let file = std::env::temp_dir().join(format!("eci-footprint-{}", std::process::id()));
        std::fs::write(&file, vec![7u8; 64 * 4096]).unwrap();
        let fd = std::fs::File::open(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        let map = |prot| {
            use std::os::fd::AsRawFd;
            // SAFETY: a new private mapping of a file this test owns.
            let at = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    64 * 4096,
                    prot,
                    libc::MAP_PRIVATE,
                    fd.as_raw_fd(),
                    0,
                )
            };
            assert_ne!(at, libc::MAP_FAILED);
            at as *mut u8
        };
        let read_only = map(libc::PROT_READ);
        let written = map(libc::PROT_READ | libc::PROT_WRITE);
        // SAFETY: both mappings are 64 pages long and `written` is writable.
        let touched: u32 = (0..64)
            .map(|page| unsafe {
                *written.add(page * 4096) = 9;
                u32::from(*read_only.add(page * 4096))
            })
            .sum();
        assert_eq!(touched, 7 * 64);
        // SAFETY: the mapping is ours; read-only from now on, as RELRO is.
        unsafe { libc::mprotect(written as *mut libc::c_void, 64 * 4096, libc::PROT_READ) };
        let resident = |at: *mut u8| rss_of(at as usize);
        assert_eq!((resident(read_only), resident(written)), (256, 256));
        let trimmed = trim().unwrap();
        assert!(trimmed.unmapped_kib >= 256, "{trimmed:?}");
        assert_eq!((resident(read_only), resident(written)), (0, 256));
        // SAFETY: both mappings are still 64 pages long.
        let (first, copied) = unsafe { (*read_only, *written.add(63 * 4096)) };
        assert_eq!((first, copied), (7, 9));
        // SAFETY: unmapping the test's own mappings.
        unsafe {
            libc::munmap(read_only as *mut libc::c_void, 64 * 4096);
            libc::munmap(written as *mut libc::c_void, 64 * 4096);
        }
    }

    /// A helper that took a root someone else controls (as the mount helper takes its
    /// callers') must not read that root's /proc/self/smaps: one that claims the whole address
    /// space is clean would have it unmap its stack and data.
    #[test]
    fn a_forged_smaps_under_another_root_is_never_read() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc/self")).unwrap();
        let forged = block("0-7ffffffff000 r--p 00000000 08:01 1 /x", 1 << 20, 0, 0, 0);
        std::fs::write(root.path().join("proc/self/smaps"), forged).unwrap();
        let root = std::ffi::CString::new(root.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: the child makes only syscalls and exits.
        match unsafe { crate::sys::fork() }.unwrap() {
            crate::sys::Forked::Child => {
                let mut idle = IdleTrim::open();
                // SAFETY: a NUL-terminated path.
                if unsafe { libc::chroot(root.as_ptr()) } != 0 {
                    crate::sys::exit(3);
                }
                let refused = unmap_clean_pages().is_err();
                idle.idle();
                crate::sys::exit(if refused { 0 } else { 2 });
            }
            crate::sys::Forked::Parent { pid, .. } => {
                let status = crate::sys::waitpid(pid).unwrap();
                assert_eq!(
                    crate::pidfd::ExitStatus::from_wait_status(status),
                    crate::pidfd::ExitStatus::Exited(0)
                );
            }
        }
    }

    /// The resident KiB of the mapping that starts at `start`.
    fn rss_of(start: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let header = format!("{start:x}-");
        smaps
            .lines()
            .skip_while(|l| !l.starts_with(&header))
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("no mapping at {header}"))
    }

    #[test]
    fn a_long_path_is_cut_and_its_mapping_still_read() {
        let path = format!("/{}", "d/".repeat(300));
        let header = format!("7f0000000000-7f0000100000 r--p 00000000 08:01 99 {path}");
        let mut scanner = SmapsScanner::default();
        let mut line = LineBuffer::default();
        let mut chosen = Vec::new();
        for text in block(&header, 12, 0, 0, 0).lines() {
            text.bytes().for_each(|b| line.push(b));
            chosen.extend(scanner.line(line.take()));
        }
        chosen.extend(scanner.finish());
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].rss_kib, 12);
    }

    #[test]
    fn a_long_idle_wait_trims_and_still_returns_when_something_comes() {
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let late = std::thread::spawn(move || {
            let after = IdleTrim::IDLE_MS as u64 + 300;
            std::thread::sleep(std::time::Duration::from_millis(after));
            std::io::Write::write_all(&mut &theirs, b"x").unwrap();
            theirs
        });
        let mut idle = IdleTrim::open();
        idle.wait_readable(std::os::fd::AsRawFd::as_raw_fd(&mine));
        assert!(idle.trimmed());
        assert_eq!(idle.poll_timeout(), -1);
        drop(late.join().unwrap());
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in ".{0,400}") {
            let _ = clean_mappings(&text);
        }

        #[test]
        fn any_bytes_scan_without_panicking(
            lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..20)
        ) {
            let mut scanner = SmapsScanner::default();
            for line in &lines {
                let _ = scanner.line(line);
            }
            let _ = scanner.finish();
        }

        /// Exactly the mappings that satisfy every condition are chosen, in order.
        #[test]
        fn only_clean_private_read_only_file_mappings_are_chosen(
            maps in proptest::collection::vec(
                (0usize..1 << 20, 1usize..64, prop::sample::select(vec!["r-xp", "r--p", "rw-p", "r--s", "---p"]),
                 0u64..3, 0u64..4, 0u64..2, 0u64..2, 0u64..2, any::<bool>()),
                0..12,
            )
        ) {
            let mut text = String::new();
            let mut expected = Vec::new();
            let mut next = 0x1000usize;
            for (gap, pages, perms, inode, rss, anonymous, swap, locked, named) in maps {
                let start = next + gap * 4096;
                let end = start + pages * 4096;
                next = end;
                let path = if named { "/lib/x.so" } else { "" };
                let header = format!("{start:x}-{end:x} {perms} 00000000 08:01 {inode} {path}");
                text += &block(&header, rss, anonymous, swap, locked);
                let clean = perms.starts_with("r-") && perms.ends_with('p') && inode != 0 && named
                    && rss > 0 && anonymous == 0 && swap == 0 && locked == 0;
                if clean {
                    expected.push(CleanMapping { start, end, rss_kib: rss });
                }
            }
            prop_assert_eq!(clean_mappings(&text), expected);
        }
    }
}
