//! A parent/child channel: a SOCK_SEQPACKET socket pair carrying small fixed messages, byte
//! payloads and file descriptors. Every operation is allocation-free, so both ends may be used
//! between fork and exec.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::sys::{check, check_int, retry, Errno, SysResult};

/// Most file descriptors one message carries.
pub const MAX_FDS: usize = 16;

/// A fixed 16-byte message: a kind and three numbers whose meaning the kind defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// What the message is.
    pub kind: u32,
    /// First argument.
    pub a: i32,
    /// Second argument.
    pub b: i32,
    /// Third argument.
    pub c: u32,
}

impl Message {
    /// A message with no arguments.
    pub const fn of(kind: u32) -> Message {
        Message {
            kind,
            a: 0,
            b: 0,
            c: 0,
        }
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..4].copy_from_slice(&self.kind.to_ne_bytes());
        out[4..8].copy_from_slice(&self.a.to_ne_bytes());
        out[8..12].copy_from_slice(&self.b.to_ne_bytes());
        out[12..16].copy_from_slice(&self.c.to_ne_bytes());
        out
    }

    fn from_bytes(b: &[u8; 16]) -> Message {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Message {
            kind: u32::from_ne_bytes(word(0)),
            a: i32::from_ne_bytes(word(4)),
            b: i32::from_ne_bytes(word(8)),
            c: u32::from_ne_bytes(word(12)),
        }
    }
}

/// Room for the control message that carries up to [`MAX_FDS`] descriptors.
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_ROOM]);

/// One control message header (16 bytes on 64-bit Linux) and MAX_FDS descriptors, rounded up.
const CMSG_ROOM: usize = 16 + MAX_FDS * std::mem::size_of::<RawFd>() + 16;

/// Descriptors received with a message.
#[derive(Debug, Default)]
pub struct ReceivedFds {
    fds: [RawFd; MAX_FDS],
    count: usize,
}

impl ReceivedFds {
    /// How many arrived.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if none arrived.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Takes ownership of the next descriptor.
    pub fn take(&mut self) -> Option<OwnedFd> {
        let next = self.fds[..self.count].iter_mut().find(|fd| **fd >= 0)?;
        let fd = std::mem::replace(next, -1);
        // SAFETY: the kernel installed this fd for us with SCM_RIGHTS and nothing else owns it.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The raw descriptors not yet taken.
    pub fn raw(&self) -> &[RawFd] {
        &self.fds[..self.count]
    }
}

impl Drop for ReceivedFds {
    fn drop(&mut self) {
        for fd in self.fds[..self.count].iter().filter(|fd| **fd >= 0) {
            crate::sys::close(*fd);
        }
    }
}

/// One end of a channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair, both ends close-on-exec.
    ///
    /// ```
    /// use eci_ns::channel::{Channel, Message};
    /// let (a, b) = Channel::pair().unwrap();
    /// a.send(Message::of(7)).unwrap();
    /// assert_eq!(b.recv().unwrap().map(|(m, _)| m.kind), Some(7));
    /// ```
    pub fn pair() -> std::io::Result<(Channel, Channel)> {
        let mut fds = [-1; 2];
        // SAFETY: fds is a valid array of two ints.
        check_int(unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        })?;
        // SAFETY: socketpair returned two new fds that we now own.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Sends a message.
    pub fn send(&self, msg: Message) -> SysResult<()> {
        self.send_bytes(&msg.to_bytes(), &[])
    }

    /// Sends a message with descriptors.
    pub fn send_with_fds(&self, msg: Message, fds: &[RawFd]) -> SysResult<()> {
        self.send_bytes(&msg.to_bytes(), fds)
    }

    /// Sends one datagram of `bytes` with up to [`MAX_FDS`] descriptors. An empty one without
    /// descriptors is refused (EINVAL): the other end would read it as the end of the stream.
    pub fn send_bytes(&self, bytes: &[u8], fds: &[RawFd]) -> SysResult<()> {
        self.send_bytes_with(bytes, fds, 0)
    }

    /// Like [`Channel::send_bytes`] but EAGAIN instead of waiting when the other end is behind.
    pub fn try_send_bytes(&self, bytes: &[u8]) -> SysResult<()> {
        self.send_bytes_with(bytes, &[], libc::MSG_DONTWAIT)
    }

    fn send_bytes_with(&self, bytes: &[u8], fds: &[RawFd], flags: libc::c_int) -> SysResult<()> {
        // An empty message without descriptors reads as the end of the stream at the other end
        // (see `recv_bytes`), which would take this end for gone.
        if fds.len() > MAX_FDS || bytes.is_empty() && fds.is_empty() {
            return Err(Errno(libc::EINVAL));
        }
        let mut iov = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let mut cmsg = CmsgBuf([0; CMSG_ROOM]);
        // SAFETY: an all-zero msghdr is valid.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        if !fds.is_empty() {
            let payload = std::mem::size_of_val(fds) as u32;
            // SAFETY: CMSG_SPACE is pure arithmetic.
            hdr.msg_controllen = unsafe { libc::CMSG_SPACE(payload) } as usize;
            hdr.msg_control = cmsg.0.as_mut_ptr().cast();
            // SAFETY: msg_control points at a buffer large enough for one header plus MAX_FDS
            // ints, so CMSG_FIRSTHDR is non-null and CMSG_DATA has room for `fds`.
            unsafe {
                let header = libc::CMSG_FIRSTHDR(&hdr);
                (*header).cmsg_level = libc::SOL_SOCKET;
                (*header).cmsg_type = libc::SCM_RIGHTS;
                (*header).cmsg_len = libc::CMSG_LEN(payload) as usize;
                std::ptr::copy_nonoverlapping(
                    fds.as_ptr(),
                    libc::CMSG_DATA(header).cast(),
                    fds.len(),
                );
            }
        }
        let fd = self.fd.as_raw_fd();
        retry(|| {
            // SAFETY: hdr points at live buffers for the duration of the call.
            let sent = unsafe { libc::sendmsg(fd, &hdr, libc::MSG_NOSIGNAL | flags) };
            check(sent as libc::c_long)
        })
        .map(drop)
    }

    /// Receives one message; `None` when the other end has closed.
    pub fn recv(&self) -> SysResult<Option<(Message, ReceivedFds)>> {
        self.recv_with(0)
    }

    /// Like [`Channel::recv`] but EAGAIN instead of waiting when nothing is there.
    pub fn try_recv(&self) -> SysResult<Option<(Message, ReceivedFds)>> {
        self.recv_with(libc::MSG_DONTWAIT)
    }

    fn recv_with(&self, flags: libc::c_int) -> SysResult<Option<(Message, ReceivedFds)>> {
        let mut buf = [0u8; 16];
        match self.recv_bytes_with(&mut buf, flags)? {
            None => Ok(None),
            Some((16, fds)) => Ok(Some((Message::from_bytes(&buf), fds))),
            Some(_) => Err(Errno(libc::EBADMSG)),
        }
    }

    /// Receives one datagram into `buf`: its length and descriptors, or `None` at end of stream.
    /// A datagram longer than `buf` is an error (EMSGSIZE).
    pub fn recv_bytes(&self, buf: &mut [u8]) -> SysResult<Option<(usize, ReceivedFds)>> {
        self.recv_bytes_with(buf, 0)
    }

    /// Like [`Channel::recv_bytes`] but EAGAIN instead of waiting when nothing is there.
    pub fn try_recv_bytes(&self, buf: &mut [u8]) -> SysResult<Option<(usize, ReceivedFds)>> {
        self.recv_bytes_with(buf, libc::MSG_DONTWAIT)
    }

    fn recv_bytes_with(
        &self,
        buf: &mut [u8],
        flags: libc::c_int,
    ) -> SysResult<Option<(usize, ReceivedFds)>> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut cmsg = CmsgBuf([0; CMSG_ROOM]);
        // SAFETY: an all-zero msghdr is valid.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = cmsg.0.as_mut_ptr().cast();
        hdr.msg_controllen = cmsg.0.len();
        let fd = self.fd.as_raw_fd();
        let len = retry(|| {
            // SAFETY: hdr points at live buffers for the duration of the call.
            let received = unsafe { libc::recvmsg(fd, &mut hdr, libc::MSG_CMSG_CLOEXEC | flags) };
            check(received as libc::c_long)
        })? as usize;
        let fds = collect_fds(&hdr);
        if hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(Errno(libc::EMSGSIZE));
        }
        if len == 0 && fds.is_empty() {
            return Ok(None);
        }
        Ok(Some((len, fds)))
    }

    /// Makes a receive that waits longer than `timeout` fail with EAGAIN (`None`: wait as long
    /// as it takes), so that a peer that never answers cannot hold the receiver for good.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (ours, _theirs) = eci_ns::channel::Channel::pair().unwrap();
    /// ours.set_receive_timeout(Some(Duration::from_millis(10))).unwrap();
    /// assert_eq!(ours.recv().unwrap_err().0, libc::EAGAIN);
    /// ```
    pub fn set_receive_timeout(&self, timeout: Option<std::time::Duration>) -> SysResult<()> {
        // The kernel reads zero as "no timeout".
        let timeout = timeout.map_or(std::time::Duration::ZERO, |t| {
            t.max(std::time::Duration::from_micros(1))
        });
        let value = libc::timeval {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        // SAFETY: a valid timeval of the size given.
        check_int(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&value as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// The raw socket.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<OwnedFd> for Channel {
    /// One end of a `SOCK_SEQPACKET` pair made elsewhere (passed over another channel).
    fn from(fd: OwnedFd) -> Channel {
        Channel { fd }
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn collect_fds(hdr: &libc::msghdr) -> ReceivedFds {
    let mut out = ReceivedFds {
        fds: [-1; MAX_FDS],
        count: 0,
    };
    // SAFETY: hdr was filled in by recvmsg; the CMSG macros walk only within msg_controllen.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(hdr);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header).cast::<RawFd>();
                let bytes = (*header).cmsg_len - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    if out.count < MAX_FDS {
                        out.fds[out.count] = fd;
                        out.count += 1;
                    } else {
                        crate::sys::close(fd);
                    }
                }
            }
            header = libc::CMSG_NXTHDR(hdr, header);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_messages_bytes_and_fds() {
        let (a, b) = Channel::pair().unwrap();
        let (x, _y) = Channel::pair().unwrap();
        a.send_with_fds(
            Message {
                kind: 1,
                a: -2,
                b: 3,
                c: 4,
            },
            &[x.raw_fd()],
        )
        .unwrap();
        let (msg, mut fds) = b.recv().unwrap().unwrap();
        assert_eq!(
            msg,
            Message {
                kind: 1,
                a: -2,
                b: 3,
                c: 4
            }
        );
        assert_eq!(fds.len(), 1);
        assert!(fds.take().is_some());
        assert_eq!(
            a.send_bytes(b"", &[]),
            Err(Errno(libc::EINVAL)),
            "reads as an end"
        );
        a.send_bytes(b"hello", &[]).unwrap();
        let mut buf = [0u8; 5];
        assert_eq!(b.recv_bytes(&mut buf).unwrap().map(|(n, _)| n), Some(5));
        assert_eq!(&buf, b"hello");
        a.send_bytes(b"too long", &[]).unwrap();
        assert_eq!(b.recv_bytes(&mut buf).unwrap_err(), Errno(libc::EMSGSIZE));
        drop(a);
        assert!(b.recv().unwrap().is_none());
    }
}
