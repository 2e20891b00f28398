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
//! Code that runs after a trim faults its text back in, and the kernel maps 64 KiB around each
//! such fault: returning through the allocator and an event loop to poll(2) maps back hundreds
//! of KiB. [`trim_then_poll`] and [`IdleTrim::poll`] therefore drop the pages as the very last
//! thing before the wait, with raw system calls in between, and the calling thread's stack
//! pages below the frame that waits go too (a deep call during the start made them resident).
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

use crate::sys::poll;

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
    /// KiB of the calling thread's stack, below what it is using, whose pages were dropped
    /// (a deep call made them resident once; they come back as zeroed pages if reached again).
    pub stack_kib: u64,
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
/// mapping resident. Also drops the calling thread's stack pages below the ones it is using.
/// Costs a read of /proc/self/smaps (a walk of every mapping, 1-2 ms for eci-runc) and one
/// madvise(2) a mapping; meant for a process that has gone idle. Opens /proc/self/smaps by
/// path: the process's root must be one it trusts.
pub fn trim() -> Result<Trimmed, FootprintError> {
    let mut plan = plan()?;
    trim_allocator();
    plan.drop_now();
    Ok(plan.trimmed)
}

/// [`trim`], then poll(2) on `fds` for up to `timeout_ms` (-1: no limit), as a process that
/// waits for its next piece of work does. The pages are dropped right before the wait, with
/// nothing but raw system calls in between, so that the code that waits does not fault back
/// in what was just given back: about 64 KiB of text stays mapped, where returning through the
/// allocator and an event loop to a poll(2) maps back hundreds. If smaps cannot be read, the
/// process keeps its pages and just waits.
///
/// ```
/// use std::os::fd::AsRawFd;
/// let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
/// std::io::Write::write_all(&mut &theirs, b"x").unwrap();
/// let mut fds = [libc::pollfd { fd: mine.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
/// let (trimmed, ready) = eci_ns::footprint::trim_then_poll(&mut fds, -1);
/// assert!(trimmed.unwrap().mappings > 0);
/// assert_eq!(ready.unwrap(), 1);
/// ```
pub fn trim_then_poll(
    fds: &mut [libc::pollfd],
    timeout_ms: libc::c_int,
) -> (
    Result<Trimmed, FootprintError>,
    crate::sys::SysResult<usize>,
) {
    match plan() {
        Ok(mut plan) => {
            trim_allocator();
            let ready = drop_then_poll(&mut plan, Some((fds, timeout_ms)));
            (Ok(plan.trimmed), ready)
        }
        Err(err) => (Err(err), poll(fds, timeout_ms)),
    }
}

/// poll(2) on `fds`; if `idle_ms` pass without anything, [`trim_then_poll`] and wait on
/// without a limit: the wait of a process that has just done a burst of work (started a
/// container, an exec) and may now wait for long. What the trim gave back, if it ran, and how
/// many of `fds` have something; a signal ends the wait with EINTR.
///
/// ```
/// use std::os::fd::AsRawFd;
/// let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
/// std::io::Write::write_all(&mut &theirs, b"x").unwrap();
/// let mut fds = [libc::pollfd { fd: mine.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
/// let (trimmed, ready) = eci_ns::footprint::poll_trimming_once_idle(&mut fds, 2000);
/// assert!(trimmed.is_none(), "something came at once");
/// assert_eq!(ready.unwrap(), 1);
/// ```
pub fn poll_trimming_once_idle(
    fds: &mut [libc::pollfd],
    idle_ms: libc::c_int,
) -> (
    Option<Result<Trimmed, FootprintError>>,
    crate::sys::SysResult<usize>,
) {
    match poll(fds, idle_ms) {
        Ok(0) => {
            let (trimmed, ready) = trim_then_poll(fds, -1);
            (Some(trimmed), ready)
        }
        ready => (None, ready),
    }
}

/// [`trim`] without the allocator: allocation-free and async-signal-safe (open, fstatfs,
/// read, madvise and close only), so a helper forked from a threaded process may call it.
pub fn unmap_clean_pages() -> Result<Trimmed, FootprintError> {
    let mut plan = plan()?;
    plan.drop_now();
    Ok(plan.trimmed)
}

/// What to drop, from /proc/self/smaps opened now.
fn plan() -> Result<Plan, FootprintError> {
    SmapsFile::open()
        .and_then(|smaps| smaps.plan())
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
    fn poll_timeout(&self) -> libc::c_int {
        if self.trimmed {
            -1
        } else {
            Self::IDLE_MS
        }
    }

    /// Unmaps the clean pages now, once; a failure is not retried: the helper just keeps its
    /// pages.
    pub fn idle(&mut self) {
        if let Some(mut plan) = self.take_plan() {
            plan.drop_now();
        }
    }

    /// Marks the trim done and reads what it drops, if smaps was opened and reads.
    fn take_plan(&mut self) -> Option<Plan> {
        self.trimmed = true;
        self.smaps.take().and_then(|smaps| smaps.plan().ok())
    }

    /// Whether the helper has trimmed.
    pub fn trimmed(&self) -> bool {
        self.trimmed
    }

    /// poll(2) on `fds` until one has something: the first time nothing came for
    /// [`IdleTrim::IDLE_MS`], it unmaps the clean pages and goes on waiting, without a limit,
    /// as [`trim_then_poll`] does. A signal ends the wait with EINTR, as poll(2) would.
    pub fn poll(&mut self, fds: &mut [libc::pollfd]) -> crate::sys::SysResult<usize> {
        let ready = poll(fds, self.poll_timeout())?;
        if ready > 0 || self.trimmed {
            return Ok(ready);
        }
        match self.take_plan() {
            Some(mut plan) => drop_then_poll(&mut plan, Some((fds, -1))),
            None => poll(fds, -1),
        }
    }

    /// Waits until `fd` has something (or hung up or failed), trimming on the way if the
    /// wait is long; returns at once if poll(2) fails for another reason than a signal.
    pub fn wait_readable(&mut self, fd: std::os::fd::RawFd) {
        let mut pollfd = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        while let Err(crate::sys::Errno(libc::EINTR)) = self.poll(&mut pollfd) {}
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

    /// Reads the file from its start: the clean mappings to drop and the calling thread's
    /// stack mapping. Allocation-free. Mappings beyond what a plan holds are dropped at once.
    fn plan(&self) -> std::io::Result<Plan> {
        use std::os::fd::AsRawFd;
        // SAFETY: lseek on a descriptor we hold.
        crate::sys::check(unsafe { libc::lseek(self.0.as_raw_fd(), 0, libc::SEEK_SET) })?;
        let here = 0u8;
        let mut scanner = SmapsScanner {
            stack_at: std::ptr::addr_of!(here) as usize,
            ..SmapsScanner::default()
        };
        let mut plan = Plan::default();
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
                    plan.add(mapping);
                }
            }
        }
        let last = scanner.line(line.take());
        last.into_iter()
            .chain(scanner.finish())
            .for_each(|mapping| plan.add(mapping));
        plan.stack = scanner.stack;
        Ok(plan)
    }
}

/// How many clean mappings a plan holds to drop right before a wait (eci-runc has about 15);
/// any more are dropped while smaps is read, and may fault back in before the wait.
const HELD: usize = 64;

/// What one trim drops, read from smaps before anything is dropped.
struct Plan {
    held: [CleanMapping; HELD],
    count: usize,
    /// The calling thread's stack: (first address, end).
    stack: Option<(usize, usize)>,
    trimmed: Trimmed,
}

impl Default for Plan {
    fn default() -> Self {
        let none = CleanMapping {
            start: 0,
            end: 0,
            rss_kib: 0,
        };
        Plan {
            held: [none; HELD],
            count: 0,
            stack: None,
            trimmed: Trimmed::default(),
        }
    }
}

impl Plan {
    /// Drops what the plan holds, without a wait after.
    fn drop_now(&mut self) {
        // Without a wait there is no poll(2) to fail.
        let _ = drop_then_poll(self, None);
    }

    fn add(&mut self, mapping: CleanMapping) {
        match self.held.get_mut(self.count) {
            Some(slot) => {
                *slot = mapping;
                self.count += 1;
            }
            None => self.dropped(&mapping, raw::madvise_dontneed(mapping.start, mapping.end)),
        }
    }

    #[inline(always)]
    fn dropped(&mut self, mapping: &CleanMapping, done: bool) {
        if done {
            self.trimmed.mappings += 1;
            self.trimmed.unmapped_kib += mapping.rss_kib;
        } else {
            self.trimmed.refused += 1;
        }
    }
}

/// Drops what `plan` holds, then, if asked, polls: raw system calls only from the first drop
/// to the wait, so that this function's own page of text is the only one that faults back in
/// before it. Never inlined, to stay that small.
#[inline(never)]
fn drop_then_poll(
    plan: &mut Plan,
    wait: Option<(&mut [libc::pollfd], libc::c_int)>,
) -> crate::sys::SysResult<usize> {
    for index in 0..plan.count.min(HELD) {
        let mapping = plan.held[index];
        // Only page table entries change: smaps said these pages hold the file's bytes.
        let done = raw::madvise_dontneed(mapping.start, mapping.end);
        plan.dropped(&mapping, done);
    }
    if let Some((start, end)) = plan.stack {
        // Everything below what this frame uses (with a page to spare for the red zone and
        // the system calls below) is dead: no frame lives there. A signal handler that runs
        // there later gets fresh zeroed pages.
        let here = 0u8;
        let used = std::ptr::addr_of!(here) as usize;
        let below = (used & !(PAGE - 1)).saturating_sub(PAGE);
        if start <= used && used < end && start < below && raw::madvise_dontneed(start, below) {
            plan.trimmed.stack_kib = ((below - start) / 1024) as u64;
        }
    }
    match wait {
        None => Ok(0),
        Some((fds, timeout_ms)) => raw::poll(fds, timeout_ms),
    }
}

const PAGE: usize = 4096;

/// System calls made without the C library's wrappers, whose text a trim may have dropped.
mod raw {
    /// madvise(MADV_DONTNEED) over `start..end`; whether the kernel did.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn madvise_dontneed(start: usize, end: usize) -> bool {
        let advice = libc::MADV_DONTNEED as usize;
        // SAFETY: callers pass ranges whose pages hold nothing the process still needs:
        // clean read-only file pages (they come back from the file) or dead stack.
        unsafe { syscall3(libc::SYS_madvise, start, end - start, advice) == 0 }
    }

    /// poll(2).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn poll(
        fds: &mut [libc::pollfd],
        timeout_ms: libc::c_int,
    ) -> crate::sys::SysResult<usize> {
        let (at, count) = (fds.as_mut_ptr() as usize, fds.len());
        // SAFETY: `fds` is a valid, writable array of its length.
        let ret = unsafe { syscall3(libc::SYS_poll, at, count, timeout_ms as usize) };
        if ret < 0 {
            Err(crate::sys::Errno(-ret as i32))
        } else {
            Ok(ret as usize)
        }
    }

    /// A three-argument system call; the kernel's return (a negative errno on failure).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn syscall3(number: libc::c_long, a: usize, b: usize, c: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller vouches for the call; `syscall` clobbers rcx and r11 only.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") number as isize => ret,
                in("rdi") a,
                in("rsi") b,
                in("rdx") c,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    // Elsewhere the C library's wrappers: correct, they just fault their page back in.

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) fn madvise_dontneed(start: usize, end: usize) -> bool {
        // SAFETY: as on x86_64.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) == 0 }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) fn poll(
        fds: &mut [libc::pollfd],
        timeout_ms: libc::c_int,
    ) -> crate::sys::SysResult<usize> {
        crate::sys::poll(fds, timeout_ms)
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
    /// An address on the calling thread's stack, to find its mapping by (0: none).
    stack_at: usize,
    /// The mapping holding `stack_at`, if it is certainly a stack (see [`Block::stack_kind`]).
    stack: Option<(usize, usize)>,
    /// Where the last mapping that was only a guard (`---p`) ended.
    guard_end: Option<usize>,
}

impl SmapsScanner {
    /// One line, without its newline; the mapping whose block this line ended, if clean.
    pub fn line(&mut self, line: &[u8]) -> Option<CleanMapping> {
        match Block::from_header(line) {
            Some(block) => {
                // The process's main stack, or a thread's, which starts at its guard: anything
                // else (an anonymous mapping the kernel merged with a stack that has no guard)
                // may hold someone's data below the stack pointer.
                let starts_at_guard = self.guard_end == Some(block.start);
                let stack = match block.stack_kind {
                    StackKind::Main => true,
                    StackKind::Maybe => starts_at_guard,
                    StackKind::No => false,
                };
                if stack && (block.start..block.end).contains(&self.stack_at) {
                    self.stack = Some((block.start, block.end));
                }
                self.guard_end = block.guard.then_some(block.end);
                self.current.replace(block).and_then(Block::clean)
            }
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
    /// Whether it may be a stack.
    stack_kind: StackKind,
    /// `---p`: a guard, such as the one below every thread's stack.
    guard: bool,
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

/// What a mapping's header says about whether it is a stack.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StackKind {
    /// Not writable and private, or a file's.
    No,
    /// `[stack]`: the main thread's.
    Main,
    /// Anonymous, private and writable: a thread's stack if a guard lies right below it.
    Maybe,
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
            stack_kind: match (perms == b"rw-p" && inode == 0, path) {
                (false, _) => StackKind::No,
                (true, b"[stack]") => StackKind::Main,
                (true, _) => StackKind::Maybe,
            },
            guard: perms == b"---p",
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

    /// A deep call left its stack pages resident; a trim drops those below the frame that
    /// trims, and the thread runs on (its frames above are untouched).
    #[test]
    fn trim_drops_the_stack_below_the_caller_and_keeps_its_frames() {
        #[inline(never)]
        fn deep(depth: usize) -> u64 {
            let mut frame = [depth as u8; 16 * 1024];
            let frame = std::hint::black_box(&mut frame);
            frame[0] = frame[0].wrapping_add(1);
            let below = if depth == 0 { 0 } else { deep(depth - 1) };
            below + u64::from(frame[0]) + u64::from(frame[16 * 1024 - 1])
        }
        let thread = std::thread::Builder::new().stack_size(2 << 20);
        let checked = thread.spawn(|| {
            let kept = std::hint::black_box([7u8; 4096]);
            assert!(deep(32) > 0);
            let here = std::ptr::addr_of!(kept) as usize;
            let before = rss_containing(here);
            let trimmed = trim().unwrap();
            let after = rss_containing(here);
            // 33 frames of 16 KiB were touched; all but the trimming frames' go.
            assert!(trimmed.stack_kib >= 400, "{trimmed:?}");
            assert!(before >= after + 400, "{before} -> {after} KiB");
            assert_eq!(kept, [7u8; 4096]);
        });
        checked.unwrap().join().unwrap();
    }

    /// Only a mapping that is certainly a stack has its pages below the stack pointer dropped:
    /// the main thread's, or one right above a guard. An anonymous mapping the kernel merged
    /// with a guardless stack may hold other data there.
    #[test]
    fn only_a_stack_with_a_guard_below_or_the_main_stack_is_taken_for_one() {
        let found = |headers: &[&str], at: usize| {
            let mut scanner = SmapsScanner {
                stack_at: at,
                ..SmapsScanner::default()
            };
            for header in headers {
                scanner.line(header.as_bytes());
            }
            scanner.stack
        };
        let guard = "7f0000000000-7f0000001000 ---p 00000000 00:00 0 ";
        let thread = "7f0000001000-7f0000200000 rw-p 00000000 00:00 0 ";
        let main = "7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0          [stack]";
        let inside = 0x7f0000100000;
        assert_eq!(
            found(&[guard, thread], inside),
            Some((0x7f0000001000, 0x7f0000200000))
        );
        assert_eq!(found(&[thread], inside), None);
        let apart = "7f0000000000-7f0000000800 ---p 00000000 00:00 0 ";
        assert_eq!(found(&[apart, thread], inside), None);
        assert_eq!(found(&[guard, thread], 0x7f0000300000), None);
        assert_eq!(
            found(&[main], 0x7ffc00010000),
            Some((0x7ffc00000000, 0x7ffc00021000))
        );
        let file = "7f0000001000-7f0000200000 rw-p 00000000 08:01 7 /lib/x.so";
        assert_eq!(found(&[guard, file], inside), None);
    }

    /// The resident KiB of the mapping holding `address`.
    fn rss_containing(address: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let contains = |line: &str| {
            let range = line.split_whitespace().next().unwrap_or_default();
            let Some((start, end)) = range.split_once('-') else {
                return false;
            };
            let parse = |n| usize::from_str_radix(n, 16).ok();
            matches!((parse(start), parse(end)), (Some(s), Some(e)) if s <= address && address < e)
        };
        smaps
            .lines()
            .skip_while(|l| !contains(l))
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("no mapping holds {address:x}"))
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
