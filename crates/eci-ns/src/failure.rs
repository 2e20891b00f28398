//! How a child process reports what went wrong: a fixed record that crosses the channel without
//! allocating, which the parent turns back into a typed error.

use crate::channel::{Channel, Message};
use crate::sys::Errno;

/// Message kind of a failure report.
pub const FAILURE: u32 = 0xFA11;

/// Where in the start of a container a child failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Stage {
    /// The setup process creating the setup mount namespace.
    SetupNamespace = 1,
    /// Creating the container's init process.
    Clone = 2,
    /// The setup process joining the init's namespaces.
    JoinNamespaces = 3,
    /// Preparing the container's mounts (the step is the caller's).
    Mounts = 4,
    /// The init entering its own namespaces.
    InitNamespaces = 5,
    /// The init's final preparation and exec (the step is the caller's).
    Init = 6,
    /// A helper joining the container's namespaces.
    Helper = 7,
    /// A child died without reporting.
    Died = 8,
    /// The mounter waiting for the init's own mount namespace, to make the mounts that must
    /// not be locked against unmounting.
    LateMounts = 9,
}

impl Stage {
    fn from_u16(value: u16) -> Option<Stage> {
        use Stage::*;
        [
            SetupNamespace,
            Clone,
            JoinNamespaces,
            Mounts,
            InitNamespaces,
            Init,
            Helper,
            Died,
            LateMounts,
        ]
        .into_iter()
        .find(|s| *s as u16 == value)
    }

    /// What the stage does, for errors.
    pub fn describe(&self) -> &'static str {
        match self {
            Stage::SetupNamespace => "creating the setup mount namespace",
            Stage::Clone => "creating the container's init process",
            Stage::JoinNamespaces => "joining the container's namespaces for setup",
            Stage::Mounts => "setting up the container's mounts",
            Stage::InitNamespaces => "entering the container's own namespaces",
            Stage::Init => "preparing and starting the container process",
            Stage::Helper => "starting a helper in the container's namespaces",
            Stage::Died => "waiting for a child process",
            Stage::LateMounts => "waiting for the container's own mount namespace",
        }
    }
}

/// A failure in a child: the stage, a stage-specific step number and the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Where.
    pub stage: Stage,
    /// Which step of the stage (meaning defined by whoever ran it).
    pub step: u32,
    /// The error.
    pub errno: Errno,
}

impl Failure {
    /// A failure at `stage`, `step` with the thread's current errno.
    pub fn last_errno(stage: Stage, step: u32) -> Failure {
        Failure {
            stage,
            step,
            errno: Errno::last(),
        }
    }

    /// The message that carries it.
    pub fn to_message(self) -> Message {
        Message {
            kind: FAILURE,
            a: self.errno.0,
            b: self.stage as i32,
            c: self.step,
        }
    }

    /// Reads a failure back from a message.
    pub fn from_message(msg: &Message) -> Option<Failure> {
        (msg.kind == FAILURE).then_some(())?;
        let stage = Stage::from_u16(u16::try_from(msg.b).ok()?)?;
        Some(Failure {
            stage,
            step: msg.c,
            errno: Errno(msg.a),
        })
    }

    /// Reports the failure on `channel` and exits the child. Never returns.
    pub fn report_and_exit(self, channel: &Channel) -> ! {
        let _ = channel.send(self.to_message());
        crate::sys::exit(FAILURE_EXIT_CODE)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (step {}): {}",
            self.stage.describe(),
            self.step,
            self.errno
        )
    }
}

/// Exit code of a child that reported a failure before exiting.
pub const FAILURE_EXIT_CODE: i32 = 125;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_message() {
        let failure = Failure {
            stage: Stage::Mounts,
            step: 7,
            errno: Errno(libc::EPERM),
        };
        assert_eq!(Failure::from_message(&failure.to_message()), Some(failure));
        assert_eq!(Failure::from_message(&Message::of(1)), None);
    }
}
