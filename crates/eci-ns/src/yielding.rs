//! Side work on CPU time nothing else wants, until someone waits for it.
//!
//! A container's start waits on other processes about half of the time (the mounter, the
//! init, the files daemon), and on a machine with few CPUs the work it does beside its
//! critical path (libcgroups' manager, the mount helper's host half) slowed that path by about
//! as much as the work cost. A thread that does such work calls [`Yielding::begin`] and runs
//! as SCHED_IDLE: it gets what the CPUs would otherwise spend idle. Whoever comes to wait for
//! the work calls [`Yielding::hurry`], which puts the thread back to SCHED_OTHER (its nice
//! value never changed), so a busy machine never leaves a waited-for thread starving. A thread
//! that is not SCHED_OTHER to begin with (a program run with a real-time policy) is left as it
//! is. Only speed depends on any of this.
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

use std::sync::Mutex;

/// The priority of one thread's side work. Shared between the thread and whoever waits for it.
#[derive(Debug, Default)]
pub struct Yielding(Mutex<State>);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    NotStarted,
    /// Working as thread `tid`, moved from SCHED_OTHER to SCHED_IDLE.
    Yielding { tid: libc::pid_t },
    /// Hurried: at its own priority (or never lowered).
    Urgent,
    /// The thread is done; its id may belong to another thread by now.
    Done,
}

impl Yielding {
    /// Nothing started yet.
    pub const fn new() -> Yielding {
        Yielding(Mutex::new(State::NotStarted))
    }

    /// In the working thread, first: moves it to SCHED_IDLE, unless it was hurried already.
    /// The returned guard marks the work done when dropped (also on a panic); from then on
    /// nothing touches the thread.
    pub fn begin(&self) -> Done<'_> {
        let mut state = self.state();
        if *state == State::NotStarted {
            // SAFETY: gettid takes no arguments.
            let tid = unsafe { libc::gettid() };
            if policy_of(tid) == Some(libc::SCHED_OTHER) && set_policy(tid, libc::SCHED_IDLE) {
                *state = State::Yielding { tid };
            }
        }
        Done(self)
    }

    /// In a thread that waits for the work (or in the worker, once the part that may yield is
    /// over): back to SCHED_OTHER. The lock keeps the worker from finishing meanwhile, so the
    /// thread id is still its own.
    pub fn hurry(&self) {
        let mut state = self.state();
        match *state {
            State::Yielding { tid } => {
                set_policy(tid, libc::SCHED_OTHER);
            }
            State::Done => return,
            State::NotStarted | State::Urgent => {}
        }
        *state = State::Urgent;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned state is still a state.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Marks a [`Yielding`]'s work done when dropped.
#[derive(Debug)]
pub struct Done<'a>(&'a Yielding);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        *self.0.state() = State::Done;
    }
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
        let yielding = Arc::new(Yielding::new());
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
        yielding.hurry();
        assert_eq!(
            policy_of(tid),
            Some(libc::SCHED_OTHER),
            "the waiter gives it its priority back"
        );
        release.0.send(()).unwrap();
        thread.join().unwrap();
        assert_eq!(*yielding.state(), State::Done);
        // Once it is done, its thread id is no longer its own: nothing is changed.
        yielding.hurry();
        assert_eq!(*yielding.state(), State::Done);
    }

    #[test]
    fn a_worker_hurried_before_it_begins_never_yields() {
        // SAFETY: gettid takes no arguments.
        let me = unsafe { libc::gettid() };
        let yielding = Yielding::new();
        yielding.hurry();
        let done = yielding.begin();
        assert_eq!(policy_of(me), Some(libc::SCHED_OTHER));
        drop(done);
    }

    #[test]
    fn a_worker_can_hurry_itself_once_its_side_work_is_done() {
        let yielding = Yielding::new();
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
}
