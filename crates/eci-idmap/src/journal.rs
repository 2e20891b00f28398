//! The lease record on disk: an append-only journal of JSON lines, one per change.
//!
//! The first line is a header naming the boot and the pool; every later line is one change
//! (a lease, a holder added, a release). A change costs one appended line and one fdatasync,
//! whatever the number of leases. Each process keeps the state in memory and reads only what
//! others appended since. A crash mid-write can only leave an unterminated last line, which
//! counts as never written and is cut off by the next writer. Any other line that cannot be read
//! is corruption and an error. When the journal has grown to several times the live leases it is
//! compacted: a new file with the header and the live leases replaces it (temp file, fsync,
//! rename, fsync of the directory); other processes notice the new inode and read it whole.

use serde::{Deserialize, Serialize};

use crate::holder::Holder;

/// The journal's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Header {
    pub eci_leases: u32,
    pub boot_id: String,
    pub pool_start: u32,
    pub pool_size: u32,
    pub block_size: u32,
    /// The next lease token; kept across compaction so tokens never repeat.
    pub next_token: u64,
}

/// Lease tokens (in lines and as a header's next one) are below this; a journal naming one
/// that is not is corrupt. Counting one a lease, no journal reaches it, and every token handed
/// out after the largest read (by a lease or an adoption) still has one after it.
pub(crate) const TOKEN_LIMIT: u64 = 1 << 62;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
pub(crate) enum Entry {
    /// Block `index` leased to `owner`, kept alive by `holder`.
    Lease {
        index: u32,
        token: u64,
        owner: String,
        holder: Holder,
    },
    /// Another process keeps the lease alive.
    Hold {
        index: u32,
        token: u64,
        holder: Holder,
    },
    /// The lease ended.
    Release { index: u32, token: u64 },
    /// Changes made together, written as one line so that a write cut short loses all of
    /// them or none (a release, and the lease that keeps the block for holders still alive).
    Batch { entries: Vec<Entry> },
}

/// The journal version this code writes and reads.
pub(crate) const VERSION: u32 = 1;

/// Splits `bytes` into complete lines; returns them and the length of the complete part (an
/// unterminated tail is a write that never finished).
pub(crate) fn complete_lines(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let lines = bytes[..complete]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    (lines, complete)
}
