//! Side work on CPU time nothing else wants, until someone waits for it, or for a bounded time.
//!
//! A container's start waits on other processes about half of the time (the mounter, the
//! init, the files daemon), and on a machine with few CPUs the work it does beside its
//! critical path (libcgroups' manager, the mount helper's host half) slowed that path by about
//! as much as the work cost. A thread that does such work calls [`Yielding::begin`] and runs
//! as SCHED_IDLE: it gets what the CPUs would otherwise spend idle. Whoever comes to wait for
//! the work calls [`Yielding::hurry`], which puts the thread back to SCHED_OTHER (its nice
//! value never changed), so a busy machine never leaves a waited-for thread starving.
//!
//! Side work makes system calls, and a system call may hold a lock other processes of the host
//! wait for (a mount namespace's, the cgroup hierarchy's). On a machine busy with other work an
//! idle-priority thread can go without the CPU for a long time, and so would they. So the
//! yielding is bounded: after [`Yielding::LIMIT`] (or the limit given to
//! [`Yielding::with_limit`]) a watcher thread puts the worker back to SCHED_OTHER even if no one
//! waits for it yet. A thread only yields where it can be put back: with CAP_SYS_NICE in the
//! host's user namespace or an RLIMIT_NICE of at least 20 (leaving SCHED_IDLE needs either).
//! A thread that is not SCHED_OTHER to begin with (a program run with a real-time policy) is
//! left as it is. Only speed depends on any of this.
//!
//! ```
//! use std::sync::Arc;
//! use eci_ns::yielding::Yielding;
//!
//! let yielding = Arc::new(Yielding::new());
//! let worker = std::thread::spawn({
//!     let yielding = Arc::clone(&yielding);
//!     move || {
//!         let _done = yielding.begin();
//!         (0..1000u64).sum::<u64>()
//!     }
//! });
//! // Now the result is needed: the worker runs at its own priority again.
//! yielding.hurry();
//! assert_eq!(worker.join().unwrap(), 499500);
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The priority of one thread's side work. Shared between the thread and whoever waits for it.
#[derive(Debug)]
pub struct Yielding {
    state: Mutex<State>,
    limit: Duration,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    NotStarted,
    /// Working as thread `tid`, moved from SCHED_OTHER to SCHED_IDLE; `watcher` raises it
    /// again at the limit.
    Yielding {
        tid: libc::pid_t,
        watcher: std::thread::Thread,
    },
    /// Hurried: at its own priority (or never lowered).
    Urgent,
    /// The thread is done; its id may belong to another thread by now.
    Done,
}

impl Default for Yielding {
    fn default() -> Yielding {
        Yielding::new()
    }
}

impl Yielding {
    /// How long a thread yields at most. A start's side work takes 1-3 ms at idle priority on
    /// an otherwise quiet machine, and is waited for within about as long.
    pub const LIMIT: Duration = Duration::from_millis(10);

    /// Nothing started yet; yields for [`Yielding::LIMIT`] at most.
    pub const fn new() -> Yielding {
        Yielding::with_limit(Yielding::LIMIT)
    }

    /// Nothing started yet; yields for `limit` at most.
    pub const fn with_limit(limit: Duration) -> Yielding {
        Yielding {
            state: Mutex::new(State::NotStarted),
            limit,
        }
    }

    /// In the working thread, first: moves it to SCHED_IDLE, unless it was hurried already or
    /// could not be moved back, and starts the watcher that bounds it. The returned guard marks
    /// the work done when dropped (also on a panic); from then on nothing touches the thread.
    pub fn begin(self: &Arc<Self>) -> Done<'_> {
        let mut state = self.state();
        // SAFETY: gettid takes no arguments.
        let tid = unsafe { libc::gettid() };
        let may_yield = matches!(*state, State::NotStarted)
            && policy_of(tid) == Some(libc::SCHED_OTHER)
            && may_leave_idle();
        // The watcher first, while this thread is still SCHED_OTHER: a thread inherits its
        // creator's policy, and an idle watcher on a busy machine would wake as late as the
        // worker. Unbounded, the worker does not yield at all.
        if let Some(watcher) = may_yield.then(|| self.watch()).flatten() {
            if set_policy(tid, libc::SCHED_IDLE) {
                *state = State::Yielding { tid, watcher };
            } else {
                watcher.unpark();
            }
        }
        Done(self)
    }

    /// A thread that hurries the worker at the limit, unless it is hurried or done first.
    fn watch(self: &Arc<Self>) -> Option<std::thread::Thread> {
        let deadline = Instant::now() + self.limit;
        let yielding = Arc::downgrade(self);
        let watcher = std::thread::Builder::new()
            .name("eci-yield-limit".into())
            .stack_size(WATCHER_STACK)
            .spawn(move || loop {
                let Some(yielding) = yielding.upgrade() else {
                    return;
                };
                if !matches!(*yielding.state(), State::Yielding { .. }) {
                    return;
                }
                let now = Instant::now();
                if now >= deadline {
                    yielding.hurry();
                    return;
                }
                drop(yielding);
                std::thread::park_timeout(deadline - now);
            });
        watcher.ok().map(|handle| handle.thread().clone())
    }

    /// In a thread that waits for the work (or in the worker, once the part that may yield is
    /// over): back to SCHED_OTHER. The lock keeps the worker from finishing meanwhile, so the
    /// thread id is still its own.
    pub fn hurry(&self) {
        let mut state = self.state();
        match &*state {
            State::Yielding { tid, watcher } => {
                set_policy(*tid, libc::SCHED_OTHER);
                watcher.unpark();
            }
            State::Done => return,
            State::NotStarted | State::Urgent => {}
        }
        *state = State::Urgent;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned state is still a state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The watcher's stack: it only sleeps and makes one system call.
const WATCHER_STACK: usize = 64 * 1024;

/// Marks a [`Yielding`]'s work done when dropped.
#[derive(Debug)]
pub struct Done<'a>(&'a Yielding);

impl Drop for Done<'_> {
    /// Runs in the worker itself: if it still yields, it takes its own priority back (it may
    /// go on with other work) and lets the watcher go.
    fn drop(&mut self) {
        let before = std::mem::replace(&mut *self.0.state(), State::Done);
        if let State::Yielding { tid, watcher } = before {
            set_policy(tid, libc::SCHED_OTHER);
            watcher.unpark();
        }
    }
}

/// The capability that lets a thread leave SCHED_IDLE (linux/capability.h).
const CAP_SYS_NICE: u32 = 23;

/// Whether this thread could be moved back from SCHED_IDLE: leaving it needs CAP_SYS_NICE in
/// the host's user namespace or an RLIMIT_NICE of at least 20 (nice 0). Without either (a
/// runtime in a container, or in a user namespace of its own), a thread never hurried would
/// stay idle.
fn may_leave_idle() -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) } == 0 && limit.rlim_cur >= 20 {
        return true;
    }
    in_host_user_namespace() && has_effective_cap(CAP_SYS_NICE)
}

/// Whether this thread is in the initial user namespace, whose inode number the kernel fixes
/// (PROC_USER_INIT_INO).
fn in_host_user_namespace() -> bool {
    const INITIAL: &str = "user:[4026531837]";
    std::fs::read_link("/proc/thread-self/ns/user").is_ok_and(|link| link.as_os_str() == INITIAL)
}

/// Whether the calling thread has capability `cap` in its effective set.
fn has_effective_cap(cap: u32) -> bool {
    cap < 64 && crate::sys::effective_caps(0).is_ok_and(|effective| effective & (1 << cap) != 0)
}

/// A thread's scheduling policy; `None` if it cannot be read.
fn policy_of(tid: libc::pid_t) -> Option<libc::c_int> {
    // SAFETY: sched_getscheduler takes a plain integer; with a thread id it reads that thread.
    let policy = unsafe { libc::sched_getscheduler(tid) };
    (policy >= 0).then_some(policy)
}

/// Moves thread `tid` to `policy` (SCHED_OTHER or SCHED_IDLE, whose priority is 0); whether
/// it moved. Leaving SCHED_IDLE needs CAP_SYS_NICE (or a raised RLIMIT_NICE).
fn set_policy(tid: libc::pid_t, policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a valid sched_param; with a thread id it changes that thread alone.
    unsafe { libc::sched_setscheduler(tid, policy, &param) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_worker_yields_until_it_is_hurried() {
        // A limit no loaded machine reaches before the asserts.
        let yielding = Arc::new(Yielding::with_limit(Duration::from_secs(60)));
        let (started, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel());
        let (tid_to_main, go_on) = (started.0, release.1);
        let thread = std::thread::spawn({
            let yielding = Arc::clone(&yielding);
            move || {
                let _done = yielding.begin();
                // SAFETY: gettid takes no arguments.
                tid_to_main.send(unsafe { libc::gettid() }).unwrap();
                go_on.recv().unwrap();
            }
        });
        let tid = started.1.recv().unwrap();
        assert_eq!(policy_of(tid), Some(libc::SCHED_IDLE), "yields meanwhile");
        // Its watcher does not: it must wake at the limit on a busy machine. A new thread names
        // itself once it runs, which on a loaded machine may be after the worker got here.
        let started_at = Instant::now();
        let watchers = loop {
            let watchers = named_threads("eci-yield-limit");
            if !watchers.is_empty() || started_at.elapsed() > Duration::from_secs(30) {
                break watchers;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(!watchers.is_empty(), "a watcher runs");
        for watcher in watchers {
            assert_eq!(
                policy_of(watcher),
                Some(libc::SCHED_OTHER),
                "watcher {watcher}"
            );
        }
        yielding.hurry();
        assert_eq!(
            policy_of(tid),
            Some(libc::SCHED_OTHER),
            "the waiter gives it its priority back"
        );
        release.0.send(()).unwrap();
        thread.join().unwrap();
        assert!(matches!(*yielding.state(), State::Done));
        // Once it is done, its thread id is no longer its own: nothing is changed.
        yielding.hurry();
        assert!(matches!(*yielding.state(), State::Done));
    }

    /// The ids of this process's threads called `name`.
    fn named_threads(name: &str) -> Vec<libc::pid_t> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim() == name)
            })
            .filter_map(|task| task.file_name().to_str()?.parse().ok())
            .collect()
    }

    #[test]
    fn a_worker_hurried_before_it_begins_never_yields() {
        // SAFETY: gettid takes no arguments.
        let me = unsafe { libc::gettid() };
        let yielding = Arc::new(Yielding::new());
        yielding.hurry();
        let done = yielding.begin();
        assert_eq!(policy_of(me), Some(libc::SCHED_OTHER));
        drop(done);
    }

    #[test]
    fn a_worker_can_hurry_itself_once_its_side_work_is_done() {
        let yielding = Arc::new(Yielding::with_limit(Duration::from_secs(60)));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _done = yielding.begin();
                // SAFETY: gettid takes no arguments.
                let me = unsafe { libc::gettid() };
                assert_eq!(policy_of(me), Some(libc::SCHED_IDLE));
                yielding.hurry();
                assert_eq!(policy_of(me), Some(libc::SCHED_OTHER));
            });
        });
    }

    #[test]
    fn a_worker_no_one_hurries_is_raised_at_the_limit() {
        // It may hold a lock other processes wait for: it yields for a bounded time only. (Long
        // enough that a loaded machine still finds it yielding at first.)
        let yielding = Arc::new(Yielding::with_limit(Duration::from_millis(300)));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _done = yielding.begin();
                // SAFETY: gettid takes no arguments.
                let me = unsafe { libc::gettid() };
                assert_eq!(policy_of(me), Some(libc::SCHED_IDLE));
                let raised = (0..300).any(|_| {
                    std::thread::sleep(Duration::from_millis(10));
                    policy_of(me) == Some(libc::SCHED_OTHER)
                });
                assert!(raised, "raised by the watcher");
            });
        });
        assert!(matches!(*yielding.state(), State::Done));
    }

    #[test]
    fn a_thread_that_could_not_leave_idle_never_enters_it() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid out pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) }, 0);
        assert!(
            limit.rlim_cur < 20,
            "RLIMIT_NICE lets any thread leave SCHED_IDLE here"
        );
        let yielding = Arc::new(Yielding::new());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // Capabilities are per thread: this one alone loses CAP_SYS_NICE.
                drop_effective_cap(CAP_SYS_NICE);
                let _done = yielding.begin();
                // SAFETY: gettid takes no arguments.
                let me = unsafe { libc::gettid() };
                assert_eq!(policy_of(me), Some(libc::SCHED_OTHER), "it did not yield");
            });
        });
    }

    /// Removes `cap` from the calling thread's effective set.
    fn drop_effective_cap(cap: u32) {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        let mut header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let mut data = [[0u32; 3]; 2];
        // SAFETY: valid version-3 capget and capset arguments for the calling thread.
        unsafe {
            assert_eq!(
                libc::syscall(
                    libc::SYS_capget,
                    &mut header as *mut Header,
                    data.as_mut_ptr()
                ),
                0
            );
            data[(cap / 32) as usize][0] &= !(1 << (cap % 32));
            assert_eq!(
                libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()),
                0
            );
        }
        assert!(!has_effective_cap(cap));
    }
}
