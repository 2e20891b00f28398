//! One thread that serves the listeners of many containers: epoll over every listener (and
//! over each container's init pidfd, to notice exits, and its handler's event channel), each
//! notification handed to that container's handler.
//!
//! If the supervisor (or the whole runtime) dies, the listeners close and the kernel fails every
//! pending and future trapped call with ENOSYS: the container keeps running, its mounts fail,
//! nothing is performed unvetted. A handler whose helper dies may start another on the same
//! listener ([`EventOutcome::Replaced`]).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use eci_ns::sys::{check_int, retry, Errno};

use crate::notify::{Listener, Notification, Reply};

/// Decides and performs trapped syscalls for one container.
pub trait Handler: Send + Sync {
    /// Handles one notification: returns the answer, or `None` when the handler answers it
    /// itself (it must then check [`Listener::is_valid`] after reading the caller's memory and
    /// before acting on what it read).
    fn handle(&self, notification: &Notification, listener: &Listener) -> Option<Reply>;

    /// True when the handler receives from the listener itself (a helper holding a descriptor
    /// of it); the supervisor then only keeps the listener open and watches the handler.
    fn serves_itself(&self) -> bool {
        false
    }

    /// A descriptor that becomes readable when the handler has something to say.
    fn event_fd(&self) -> Option<RawFd> {
        None
    }

    /// Called when [`Handler::event_fd`] is readable: what the supervisor does next. A handler
    /// should handle a bounded number of events per call (epoll calls again while more wait),
    /// so that one busy container cannot starve the others.
    fn on_event(&self) -> EventOutcome {
        EventOutcome::Served
    }

    /// Called about once a second: a handler whose calls are served elsewhere (a helper) may
    /// check that they make progress. It must not block.
    fn watch(&self) {}

    /// The supervisor stopped watching this handler (its registration ended, or watching it
    /// failed): whatever still serves the listener must stop, so that nothing answers calls
    /// unwatched.
    fn retire(&self) {}
}

/// What a handler's event left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Handled; keep watching the same descriptor.
    Served,
    /// The handler replaced whatever was behind its event descriptor (a helper that died and
    /// was started again): watch [`Handler::event_fd`] anew.
    Replaced,
    /// The handler is gone for good: end the registration, closing the supervisor's descriptor
    /// of the listener.
    Gone,
}

struct Entry {
    listener: Listener,
    handler: Arc<dyn Handler>,
    /// The container's init: when it exits, the registration ends.
    exit: Option<OwnedFd>,
}

/// What an epoll token points at: the entry, in the upper bits, and which of its descriptors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Listener = 0,
    Events = 1,
    Exit = 2,
}

fn token(entry: u64, source: Source) -> u64 {
    entry << 2 | source as u64
}

fn untoken(token: u64) -> (u64, Option<Source>) {
    let source = match token & 3 {
        0 => Some(Source::Listener),
        1 => Some(Source::Events),
        2 => Some(Source::Exit),
        _ => None,
    };
    (token >> 2, source)
}

struct Shared {
    epoll: OwnedFd,
    wake: OwnedFd,
    entries: Mutex<HashMap<u64, Arc<Entry>>>,
    stopping: AtomicBool,
    next_entry: AtomicU64,
}

/// The running supervisor. Dropping it stops the thread; registered listeners close with it.
pub struct Supervisor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

/// A registered listener. Dropping it stops serving that listener and closes it; once every
/// other descriptor of it is closed too, the container's trapped calls fail with ENOSYS.
#[derive(Debug)]
pub struct Registration {
    shared: std::sync::Weak<Shared>,
    entry: u64,
}

/// Entry 0 is the wake-up eventfd.
const WAKE: u64 = 0;

impl Supervisor {
    /// Starts the supervisor thread.
    pub fn start() -> std::io::Result<Supervisor> {
        // SAFETY: plain syscalls returning new fds we own.
        let epoll =
            unsafe { OwnedFd::from_raw_fd(check_int(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: as above.
        let wake = unsafe {
            OwnedFd::from_raw_fd(check_int(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        };
        epoll_add(
            epoll.as_raw_fd(),
            wake.as_raw_fd(),
            token(WAKE, Source::Listener),
        )?;
        let shared = Arc::new(Shared {
            epoll,
            wake,
            entries: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            next_entry: AtomicU64::new(WAKE + 1),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("eci-seccomp-supervisor".into())
            .spawn(move || serve(&thread_shared))?;
        Ok(Supervisor {
            shared,
            thread: Some(thread),
        })
    }

    /// Serves `listener` with `handler` until the registration is dropped, the process behind
    /// `exit` (a pidfd, usually the container's init) exits, or every process that ran the
    /// filter has exited (the listener hangs up: a process added to a container, gone, whose
    /// children, a daemon it started, live on keep it).
    pub fn register(
        &self,
        listener: Listener,
        handler: Arc<dyn Handler>,
        exit: Option<OwnedFd>,
    ) -> std::io::Result<Registration> {
        let id = self.shared.next_entry.fetch_add(1, Ordering::Relaxed);
        // The listener is watched either way: for calls when the supervisor serves them, and
        // for its hangup alone (no process runs the filter any more) when the handler does.
        let listener_interest = match handler.serves_itself() {
            false => libc::EPOLLIN as u32,
            true => 0,
        };
        let mut fds = vec![(listener.as_raw_fd(), Source::Listener, listener_interest)];
        let readable = libc::EPOLLIN as u32;
        fds.extend(handler.event_fd().map(|fd| (fd, Source::Events, readable)));
        fds.extend(
            exit.as_ref()
                .map(|fd| (fd.as_raw_fd(), Source::Exit, readable)),
        );
        let entry = Arc::new(Entry {
            listener,
            handler,
            exit,
        });
        self.shared
            .entries
            .lock()
            .expect("supervisor lock")
            .insert(id, Arc::clone(&entry));
        let registration = Registration {
            shared: Arc::downgrade(&self.shared),
            entry: id,
        };
        for (fd, source, interest) in fds {
            epoll_watch(
                self.shared.epoll.as_raw_fd(),
                fd,
                token(id, source),
                interest,
            )?;
        }
        Ok(registration)
    }

    /// Number of listeners being served.
    pub fn listeners(&self) -> usize {
        self.shared.entries.lock().expect("supervisor lock").len()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our eventfd.
        unsafe { libc::write(self.shared.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.entries.lock().expect("supervisor lock").clear();
    }
}

impl Registration {
    /// Whether the listener is still served: not once its process has exited, its last
    /// process using the filter has, or its handler is gone.
    pub fn is_active(&self) -> bool {
        self.shared.upgrade().is_some_and(|shared| {
            let entries = shared.entries.lock().expect("supervisor lock");
            entries.contains_key(&self.entry)
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            remove(&shared, self.entry);
        }
    }
}

fn remove(shared: &Shared, id: u64) {
    let entry = shared.entries.lock().expect("supervisor lock").remove(&id);
    let Some(entry) = entry else { return };
    let fds = [
        Some(entry.listener.as_raw_fd()),
        entry.handler.event_fd(),
        entry.exit.as_ref().map(AsRawFd::as_raw_fd),
    ];
    for fd in fds.into_iter().flatten() {
        // SAFETY: removing an fd from our epoll set; a NULL event is allowed for DEL.
        unsafe {
            libc::epoll_ctl(
                shared.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }
    // After the descriptors are out of the epoll set: retiring closes the handler's.
    entry.handler.retire();
}

/// Watches a handler's new event descriptor. The old one was closed with whatever it belonged
/// to, which took it out of the epoll set; the new one may have the same number.
fn rewatch(shared: &Shared, id: u64, entry: &Entry) {
    let Some(fd) = entry.handler.event_fd() else {
        return;
    };
    let epoll = shared.epoll.as_raw_fd();
    // Added under the lock, so that a registration dropped meanwhile is not watched again.
    let entries = shared.entries.lock().expect("supervisor lock");
    if !entries.contains_key(&id) {
        drop(entries);
        entry.handler.retire();
        return;
    }
    let added = epoll_add(epoll, fd, token(id, Source::Events));
    drop(entries);
    match added {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
        Err(err) => {
            tracing::warn!("watching a replaced seccomp handler: {err}; its container's trapped calls now fail");
            remove(shared, id);
        }
    }
}

fn epoll_add(epoll: RawFd, fd: RawFd, token: u64) -> std::io::Result<()> {
    epoll_watch(epoll, fd, token, libc::EPOLLIN as u32)
}

/// Adds `fd` to the epoll set for `interest` (0: only its hangup and errors, which epoll
/// always reports).
fn epoll_watch(epoll: RawFd, fd: RawFd, token: u64, interest: u32) -> std::io::Result<()> {
    let mut event = libc::epoll_event {
        events: interest,
        u64: token,
    };
    // SAFETY: event is a valid epoll_event.
    check_int(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) })?;
    Ok(())
}

/// How often every handler's [`Handler::watch`] is called.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn serve(shared: &Shared) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 32];
    let mut watched = std::time::Instant::now();
    while !shared.stopping.load(Ordering::SeqCst) {
        if watched.elapsed() >= WATCH_EVERY {
            watch_all(shared);
            watched = std::time::Instant::now();
        }
        let epoll = shared.epoll.as_raw_fd();
        let ready = retry(|| {
            // SAFETY: events is a valid buffer of the given length.
            check_int(unsafe {
                libc::epoll_wait(
                    epoll,
                    events.as_mut_ptr(),
                    events.len() as i32,
                    WATCH_EVERY.as_millis() as i32,
                )
            })
        });
        let ready = match ready {
            Ok(n) => n as usize,
            Err(errno) => {
                tracing::error!("supervisor epoll_wait: {errno}");
                return;
            }
        };
        for event in &events[..ready] {
            let (id, source) = untoken(event.u64);
            if id == WAKE {
                continue;
            }
            let entry = shared
                .entries
                .lock()
                .expect("supervisor lock")
                .get(&id)
                .cloned();
            let (Some(entry), Some(source)) = (entry, source) else {
                continue;
            };
            let hangup = event.events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
            match source {
                Source::Listener if event.events & libc::EPOLLIN as u32 != 0 => serve_one(&entry),
                // Every process that ran the filter is gone.
                Source::Listener if hangup => remove(shared, id),
                Source::Listener => {}
                // The registration ends with its process: a helper that died with it (or was
                // killed with its cgroup) is not replaced for nothing.
                Source::Events if has_exited(&entry) => remove(shared, id),
                Source::Events => match entry.handler.on_event() {
                    EventOutcome::Served => {}
                    EventOutcome::Replaced => rewatch(shared, id, &entry),
                    EventOutcome::Gone => {
                        // Fail closed: with the handler gone, nothing may answer "allowed".
                        tracing::warn!(
                            "a seccomp handler is gone; its container's trapped calls now fail"
                        );
                        remove(shared, id);
                    }
                },
                Source::Exit => remove(shared, id),
            }
        }
    }
}

/// Calls every registered handler's [`Handler::watch`], outside the lock.
fn watch_all(shared: &Shared) {
    let entries: Vec<_> = shared
        .entries
        .lock()
        .expect("supervisor lock")
        .values()
        .cloned()
        .collect();
    for entry in entries {
        entry.handler.watch();
    }
}

/// Whether the process an entry lasts as long as has exited (its pidfd reads as readable).
fn has_exited(entry: &Entry) -> bool {
    let Some(exit) = &entry.exit else {
        return false;
    };
    let mut pfd = libc::pollfd {
        fd: exit.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
}

fn serve_one(entry: &Entry) {
    let notification = match entry.listener.receive() {
        Ok(Some(n)) => n,
        Ok(None) => return,
        Err(Errno(errno)) => {
            tracing::warn!("receiving a seccomp notification: errno {errno}");
            return;
        }
    };
    if let Some(reply) = entry.handler.handle(&notification, &entry.listener) {
        if let Err(errno) = entry.listener.respond(notification.id, reply) {
            tracing::warn!(
                pid = notification.pid,
                "answering a seccomp notification: {errno}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A handler with an event pending from the start, counting what the supervisor asks.
    struct Pending {
        events: OwnedFd,
        on_event: AtomicUsize,
        retired: AtomicUsize,
    }

    impl Handler for Pending {
        fn handle(&self, _: &Notification, _: &Listener) -> Option<Reply> {
            None
        }
        fn event_fd(&self) -> Option<RawFd> {
            Some(self.events.as_raw_fd())
        }
        fn on_event(&self) -> EventOutcome {
            self.on_event.fetch_add(1, Ordering::SeqCst);
            EventOutcome::Replaced
        }
        fn retire(&self) {
            self.retired.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn readable() -> OwnedFd {
        let (reader, mut writer) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut writer, b"x").unwrap();
        OwnedFd::from(reader)
    }

    #[test]
    fn a_handler_whose_process_has_exited_is_retired_not_served() {
        // Its helper died with the process: replacing it would only start a helper for a
        // registration that is about to end (and, with the helper in the container's memory
        // cgroup, keep that cgroup busy while it is removed). Epoll reports the event before
        // the exit, in the order they were added.
        let supervisor = Supervisor::start().unwrap();
        let handler = Arc::new(Pending {
            events: readable(),
            on_event: AtomicUsize::new(0),
            retired: AtomicUsize::new(0),
        });
        let (quiet, _writer) = std::io::pipe().unwrap();
        let listener = Listener::new(OwnedFd::from(quiet));
        let _registration = supervisor
            .register(listener, handler.clone(), Some(readable()))
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while handler.retired.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "never retired");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(handler.on_event.load(Ordering::SeqCst), 0);
    }
}
