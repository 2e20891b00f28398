//! A long-lived helper in real namespaces (needs root).

use std::io::Write;
use std::os::fd::AsRawFd;

use eci_ns::channel::{Channel, ReceivedFds};
use eci_ns::helper::{Helper, HelperError, HelperSpec, MAX_RESPONSE};
use eci_ns::{Namespaces, PidFd};

/// A runtime that kills a helper must still learn what it said before it died (a call it had
/// handed on, which would otherwise wait for good).
#[test]
fn what_a_killed_helper_sent_before_it_died_can_still_be_read() {
    let me = PidFd::open(std::process::id() as i32).unwrap();
    let (wake_read, mut wake_write) = std::io::pipe().unwrap();
    let wake = wake_read.as_raw_fd();
    let watched = std::sync::atomic::AtomicI32::new(wake);
    let on_ready = |channel: &Channel| {
        let mut byte = 0u8;
        // SAFETY: a one-byte read into a local.
        unsafe { libc::read(wake, (&raw mut byte).cast(), 1) };
        let _ = channel.try_send_bytes(b"event");
    };
    let serve = |_: &[u8], _: &mut ReceivedFds, _: &mut [u8; MAX_RESPONSE]| None;
    let mut helper = Helper::start(&HelperSpec {
        target: &me,
        join: Namespaces::UTS,
        join_via: None,
        keep: &[wake],
        before_join: None,
        after_join: None,
        serve: &serve,
        watch: Some((&watched, &on_ready)),
        orphaned: None,
    })
    .unwrap();
    wake_write.write_all(b"x").unwrap();
    let mut ready = libc::pollfd {
        fd: helper.channel_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let polled = unsafe { libc::poll(&mut ready, 1, 5_000) };
    assert_eq!(polled, 1, "the event comes");

    helper.kill();
    assert_eq!(helper.pid(), 0);
    let mut buf = [0u8; 64];
    assert_eq!(helper.try_recv(&mut buf).unwrap(), Some(5));
    assert_eq!(&buf[..5], b"event");
    assert!(matches!(helper.try_recv(&mut buf), Err(HelperError::Gone)));
}
