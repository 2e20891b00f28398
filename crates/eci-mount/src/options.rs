//! OCI mount options: the words of a spec's `options` list turned into mount(2) flags, a
//! propagation change and the filesystem-specific data string.

/// MS_NOSYMFOLLOW (Linux 5.10); not in every libc yet.
pub const MS_NOSYMFOLLOW: libc::c_ulong = 256;

/// Parsed mount options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountOptions {
    /// mount(2) flags to set. MS_REC beside MS_RDONLY (the word `rro`) makes a recursive
    /// bind read-only all through: every mount under it too, where `ro` makes only its top
    /// mount read-only, as a remount would.
    pub flags: libc::c_ulong,
    /// Propagation flags to apply after mounting (MS_PRIVATE, MS_SLAVE, ... with MS_REC).
    pub propagation: libc::c_ulong,
    /// A bind mount (`bind` or `rbind`).
    pub bind: bool,
    /// A recursive bind mount (`rbind`).
    pub recursive: bool,
    /// An idmapped bind (`idmap` or `ridmap`): files appear with container-relative owners.
    pub idmap: bool,
    /// `ridmap`: the mounts under the bind are idmapped too (with `idmap`, only its own).
    pub idmap_submounts: bool,
    /// [`eci_policy::harden::IDMAP_IF_SUPPORTED`]: idmapped where the filesystem allows, plain
    /// otherwise.
    pub idmap_if_supported: bool,
    /// [`eci_policy::harden::IDMAP_SYSTEM_IF_SUPPORTED`]: idmapped so that only the host's
    /// system IDs have an owner inside, where the filesystem allows; plain otherwise.
    pub idmap_system_if_supported: bool,
    /// [`eci_policy::volume::IDENTITY_OPTION`]: the directory a bind's source must still be.
    pub identity: Option<eci_policy::volume::DirIdentity>,
    /// Filesystem-specific options, comma-separated, in the given order.
    pub data: String,
}

/// An option this parser refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// An empty word.
    #[error("empty mount option")]
    Empty,
    /// An identity option that does not read as one.
    #[error("malformed mount option '{0}'")]
    Malformed(String),
    /// Options a bind does not apply (not mount flags, propagation or eci's own).
    #[error(
        "bind options '{0}' are not supported (recursive attributes such as rnosuid among them)"
    )]
    NotForBind(String),
}

/// Parses a spec's options.
///
/// ```
/// use eci_mount::options::parse;
/// let opts = parse(&["rbind", "ro", "nosuid", "rslave", "mode=755"]).unwrap();
/// assert!(opts.bind && opts.recursive);
/// assert_eq!(opts.flags, libc::MS_RDONLY | libc::MS_NOSUID);
/// assert_eq!(opts.propagation, libc::MS_SLAVE | libc::MS_REC);
/// assert_eq!(opts.data, "mode=755");
/// ```
pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<MountOptions, OptionError> {
    let mut out = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for word in words {
        let word = word.as_ref();
        if word.is_empty() {
            return Err(OptionError::Empty);
        }
        if word == "rro" {
            out.flags |= libc::MS_RDONLY | libc::MS_REC;
            continue;
        }
        if let Some((set, flag)) = flag_word(word) {
            if flag == libc::MS_RDONLY {
                // `ro` and `rw` after `rro` say again what the top mount is, and only that.
                out.flags &= !libc::MS_REC;
            }
            if set {
                out.flags |= flag;
            } else {
                out.flags &= !flag;
            }
            if flag == libc::MS_STRICTATIME && set {
                out.flags &= !(libc::MS_RELATIME | libc::MS_NOATIME);
            }
            continue;
        }
        if let Some(propagation) = propagation_word(word) {
            out.propagation = propagation;
            continue;
        }
        match word {
            "bind" => out.bind = true,
            "rbind" => {
                out.bind = true;
                out.recursive = true;
            }
            "idmap" => out.idmap = true,
            eci_policy::harden::IDMAP_IF_SUPPORTED => out.idmap_if_supported = true,
            eci_policy::harden::IDMAP_SYSTEM_IF_SUPPORTED => out.idmap_system_if_supported = true,
            _ if word.starts_with(eci_policy::volume::IDENTITY_OPTION) => {
                let identity = eci_policy::volume::DirIdentity::from_option(word)
                    .ok_or_else(|| OptionError::Malformed(word.to_string()))?;
                out.identity = Some(identity);
            }
            "ridmap" => {
                out.idmap = true;
                out.idmap_submounts = true;
            }
            // runc's own extension; a tmpfs here starts empty.
            "tmpcopyup" => {}
            _ => data.push(word),
        }
    }
    out.data = data.join(",");
    Ok(out)
}

/// (set?, flag) for the words that are mount(2) flags.
fn flag_word(word: &str) -> Option<(bool, libc::c_ulong)> {
    Some(match word {
        "ro" => (true, libc::MS_RDONLY),
        "rw" => (false, libc::MS_RDONLY),
        "nosuid" => (true, libc::MS_NOSUID),
        "suid" => (false, libc::MS_NOSUID),
        "nodev" => (true, libc::MS_NODEV),
        "dev" => (false, libc::MS_NODEV),
        "noexec" => (true, libc::MS_NOEXEC),
        "exec" => (false, libc::MS_NOEXEC),
        "sync" => (true, libc::MS_SYNCHRONOUS),
        "async" => (false, libc::MS_SYNCHRONOUS),
        "dirsync" => (true, libc::MS_DIRSYNC),
        "mand" => (true, libc::MS_MANDLOCK),
        "nomand" => (false, libc::MS_MANDLOCK),
        "noatime" => (true, libc::MS_NOATIME),
        "atime" => (false, libc::MS_NOATIME),
        "nodiratime" => (true, libc::MS_NODIRATIME),
        "diratime" => (false, libc::MS_NODIRATIME),
        "relatime" => (true, libc::MS_RELATIME),
        "norelatime" => (false, libc::MS_RELATIME),
        "strictatime" => (true, libc::MS_STRICTATIME),
        "nostrictatime" => (false, libc::MS_STRICTATIME),
        "nosymfollow" => (true, MS_NOSYMFOLLOW),
        "symfollow" => (false, MS_NOSYMFOLLOW),
        _ => return None,
    })
}

fn propagation_word(word: &str) -> Option<libc::c_ulong> {
    Some(match word {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

/// The rootfs propagation named by a spec's `rootfsPropagation`, if valid.
pub fn rootfs_propagation(word: &str) -> Option<libc::c_ulong> {
    propagation_word(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WORDS: &[&str] = &[
        "ro",
        "rw",
        "rro",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "bind",
        "rbind",
        "rprivate",
        "slave",
        "relatime",
        "strictatime",
        "noatime",
        "mode=755",
        "size=1m",
        "uid=5",
    ];

    proptest! {
        #[test]
        fn the_last_word_about_a_flag_wins(words in proptest::collection::vec(prop::sample::select(WORDS), 0..12)) {
            let parsed = parse(&words).unwrap();
            let last = |on: &str, off: &str| words.iter().rposition(|w| *w == on).map(|i| (i, true))
                .max(words.iter().rposition(|w| *w == off).map(|i| (i, false)))
                .is_some_and(|(_, set)| set);
            let last_access = words.iter().rev().find(|w| matches!(**w, "ro" | "rw" | "rro"));
            prop_assert_eq!(parsed.flags & libc::MS_RDONLY != 0, matches!(last_access, Some(&"ro" | &"rro")));
            prop_assert_eq!(parsed.flags & libc::MS_REC != 0, last_access == Some(&"rro"));
            prop_assert_eq!(parsed.flags & libc::MS_NOSUID != 0, last("nosuid", "suid"));
            prop_assert_eq!(parsed.bind, words.iter().any(|w| *w == "bind" || *w == "rbind"));
            let data: Vec<&str> = words.iter().copied().filter(|w| w.contains('=')).collect();
            prop_assert_eq!(parsed.data, data.join(","));
        }

        #[test]
        fn parsing_never_panics(words in proptest::collection::vec(".{0,12}", 0..8)) {
            let _ = parse(&words);
        }
    }

    #[test]
    fn idmap_is_a_request_not_data() {
        let opts = parse(&["rbind", "ridmap"]).unwrap();
        assert!(opts.idmap && opts.bind && opts.recursive && opts.data.is_empty());
        assert!(opts.idmap_submounts);
        assert!(!parse(&["rbind", "idmap"]).unwrap().idmap_submounts);
        let opts = parse(&["rbind", eci_policy::harden::IDMAP_IF_SUPPORTED]).unwrap();
        assert!(opts.idmap_if_supported && !opts.idmap && opts.data.is_empty());
        let opts = parse(&["rbind", "x-eci.identity=2:3:4:1:ab"]).unwrap();
        let identity = opts.identity.unwrap();
        assert_eq!((identity.dev_minor, identity.ino), (3, 4));
        assert!(opts.data.is_empty());
        assert!(matches!(
            parse(&["x-eci.identity=2:3:4"]),
            Err(OptionError::Malformed(_))
        ));
    }
}
