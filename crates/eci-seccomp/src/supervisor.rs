//! One thread that serves the listeners of many containers: epoll over every listener, each
//! notification handed to that container's handler, the answer sent back.
//!
//! If the supervisor (or the whole runtime) dies, the listeners close and the kernel fails every
//! pending and future trapped call with ENOSYS: the container keeps running, its mounts fail,
//! nothing is performed unvetted.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use eci_ns::sys::{check_int, retry, Errno};

use crate::notify::{Listener, Notification, Reply};

/// Decides and performs trapped syscalls for one container.
pub trait Handler: Send + Sync {
    /// Answers one notification. Must check [`Listener::is_valid`] after reading the caller's
    /// memory and before acting on what it read.
    fn handle(&self, notification: &Notification, listener: &Listener) -> Reply;
}

struct Entry {
    listener: Listener,
    handler: Arc<dyn Handler>,
}

struct Shared {
    epoll: OwnedFd,
    wake: OwnedFd,
    entries: Mutex<HashMap<u64, Arc<Entry>>>,
    stopping: AtomicBool,
    next_token: AtomicU64,
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

/// A registered listener. Dropping it stops serving that listener and closes it, after which
/// the container's trapped calls fail with ENOSYS.
#[derive(Debug)]
pub struct Registration {
    shared: std::sync::Weak<Shared>,
    token: u64,
}

const WAKE_TOKEN: u64 = 0;

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
        epoll_add(epoll.as_raw_fd(), wake.as_raw_fd(), WAKE_TOKEN)?;
        let shared = Arc::new(Shared {
            epoll,
            wake,
            entries: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            next_token: AtomicU64::new(WAKE_TOKEN + 1),
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

    /// Serves `listener` with `handler` until the registration is dropped or every process of
    /// the container has exited.
    pub fn register(
        &self,
        listener: OwnedFd,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<Registration> {
        let token = self.shared.next_token.fetch_add(1, Ordering::Relaxed);
        let fd = listener.as_raw_fd();
        let entry = Arc::new(Entry {
            listener: Listener::new(listener),
            handler,
        });
        self.shared
            .entries
            .lock()
            .expect("supervisor lock")
            .insert(token, entry);
        if let Err(err) = epoll_add(self.shared.epoll.as_raw_fd(), fd, token) {
            self.shared
                .entries
                .lock()
                .expect("supervisor lock")
                .remove(&token);
            return Err(err);
        }
        Ok(Registration {
            shared: Arc::downgrade(&self.shared),
            token,
        })
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

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            remove(&shared, self.token);
        }
    }
}

fn remove(shared: &Shared, token: u64) {
    let entry = shared
        .entries
        .lock()
        .expect("supervisor lock")
        .remove(&token);
    if let Some(entry) = entry {
        // SAFETY: removing an fd from our epoll set; a NULL event is allowed for DEL.
        unsafe {
            libc::epoll_ctl(
                shared.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                entry.listener.as_raw_fd(),
                std::ptr::null_mut(),
            )
        };
    }
}

fn epoll_add(epoll: RawFd, fd: RawFd, token: u64) -> std::io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: event is a valid epoll_event.
    check_int(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) })?;
    Ok(())
}

fn serve(shared: &Shared) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 32];
    while !shared.stopping.load(Ordering::SeqCst) {
        let ready = retry(|| {
            // SAFETY: events is a valid buffer of the given length.
            check_int(unsafe {
                libc::epoll_wait(
                    shared.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    -1,
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
            let token = event.u64;
            if token == WAKE_TOKEN {
                continue;
            }
            let entry = shared
                .entries
                .lock()
                .expect("supervisor lock")
                .get(&token)
                .cloned();
            let Some(entry) = entry else { continue };
            if event.events & libc::EPOLLIN as u32 != 0 {
                serve_one(&entry);
            } else if event.events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                // Every process that ran the filter is gone.
                remove(shared, token);
            }
        }
    }
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
    let reply = entry.handler.handle(&notification, &entry.listener);
    if let Err(errno) = entry.listener.respond(notification.id, reply) {
        tracing::warn!(
            pid = notification.pid,
            "answering a seccomp notification: {errno}"
        );
    }
}
