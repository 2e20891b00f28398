//! /proc/PID/mountinfo, parsed.

use std::path::PathBuf;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Mount ID (as statx STATX_MNT_ID reports it).
    pub id: u32,
    /// Parent mount ID.
    pub parent: u32,
    /// Device number, major.
    pub major: u32,
    /// Device number, minor.
    pub minor: u32,
    /// Root of the mount within its filesystem.
    pub root: PathBuf,
    /// Mount point, relative to the reading process's root.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`/`ro`, `nosuid`, ...).
    pub options: Vec<String>,
    /// Optional fields (`shared:N`, `master:N`, ...).
    pub optional: Vec<String>,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Superblock options.
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// True if the mount itself is read-only.
    pub fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// A malformed mountinfo line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mountinfo line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// Parses the whole text of a mountinfo file.
///
/// ```
/// let text = "36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n";
/// let mounts = eci_mount::mountinfo::parse(text).unwrap();
/// assert_eq!(mounts[0].mount_point, std::path::Path::new("/mnt/parent dir"));
/// assert_eq!(mounts[0].fstype, "ext3");
/// ```
pub fn parse(text: &str) -> Result<Vec<MountInfo>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            parse_line(l).map_err(|reason| ParseError {
                line: i + 1,
                reason,
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<MountInfo, &'static str> {
    let mut fields = line.split(' ');
    let mut next = |what| fields.next().ok_or(what);
    let id = next("no mount id")?.parse().map_err(|_| "bad mount id")?;
    let parent = next("no parent id")?.parse().map_err(|_| "bad parent id")?;
    let (major, minor) = next("no device")?.split_once(':').ok_or("bad device")?;
    let major = major.parse().map_err(|_| "bad major")?;
    let minor = minor.parse().map_err(|_| "bad minor")?;
    let root = PathBuf::from(unescape(next("no root")?));
    let mount_point = PathBuf::from(unescape(next("no mount point")?));
    let options = next("no options")?.split(',').map(str::to_string).collect();
    let mut optional = Vec::new();
    loop {
        match next("no separator")? {
            "-" => break,
            field => optional.push(field.to_string()),
        }
    }
    let fstype = unescape(next("no filesystem type")?);
    let source = unescape(next("no source")?);
    let super_options = next("no superblock options")?
        .split(',')
        .map(str::to_string)
        .collect();
    Ok(MountInfo {
        id,
        parent,
        major,
        minor,
        root,
        mount_point,
        options,
        optional,
        fstype,
        source,
        super_options,
    })
}

/// Undoes the kernel's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The layers of an overlay mount, as its mount options name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayRoot {
    /// Lower layers, uppermost first.
    pub lower: Vec<PathBuf>,
    /// The writable layer: (the directory holding both, upper's name, work's name). The kernel
    /// wants upper and work on one mount, so they are idmapped through their common parent.
    pub upper: Option<(PathBuf, std::ffi::OsString, std::ffi::OsString)>,
    /// Its other options (`uuid=on`, `index=off`, ...), to give the rebuilt overlay the same
    /// behaviour: (key, value), `None` for a flag.
    pub options: Vec<(String, Option<String>)>,
}

/// The layers and options of the overlay mounted at `mount_point` (the topmost mount there), if
/// it can be rebuilt: not one with data-only layers, nor a read-only superblock, nor upper and
/// work directories in different places.
///
/// ```
/// use std::path::Path;
/// let text = "90 30 0:50 / /c/merged rw - overlay overlay rw,lowerdir=/l/a:/l/b,upperdir=/c/diff,workdir=/c/work\n";
/// let mounts = eci_mount::mountinfo::parse(text).unwrap();
/// let root = eci_mount::mountinfo::overlay_root(&mounts, Path::new("/c/merged")).unwrap();
/// assert_eq!(root.lower, [Path::new("/l/a"), Path::new("/l/b")]);
/// assert_eq!(root.upper.unwrap().0, Path::new("/c"));
/// ```
pub fn overlay_root(mounts: &[MountInfo], mount_point: &std::path::Path) -> Option<OverlayRoot> {
    let mount = mounts.iter().rev().find(|m| m.mount_point == mount_point)?;
    if mount.fstype != "overlay" || mount.root != std::path::Path::new("/") {
        return None;
    }
    let (mut lower, mut upper, mut work) = (None, None, None);
    let mut options = Vec::new();
    for option in &mount.super_options {
        match option.split_once('=') {
            Some(("lowerdir", value)) => lower = Some(split_lower(value)?),
            Some(("upperdir", value)) => upper = Some(PathBuf::from(unescape(value))),
            Some(("workdir", value)) => work = Some(PathBuf::from(unescape(value))),
            Some(("datadir" | "lowerdir+" | "datadir+", _)) => return None,
            Some((key, value)) => options.push((key.to_string(), Some(unescape(value)))),
            None if option == "rw" => {}
            None if option == "ro" => return None,
            None => options.push((option.clone(), None)),
        }
    }
    let upper = match (upper, work) {
        (Some(upper), Some(work))
            if upper.parent().is_some() && upper.parent() == work.parent() =>
        {
            let parent = upper.parent()?.to_path_buf();
            Some((parent, upper.file_name()?.into(), work.file_name()?.into()))
        }
        (None, None) => None,
        _ => return None,
    };
    Some(OverlayRoot {
        lower: lower?,
        upper,
        options,
    })
}

/// `lowerdir`'s layers: separated by `:`, a layer's own colons escaped as `\:`. An empty layer
/// (`::`, which starts data-only layers) is not a plain overlay.
fn split_lower(value: &str) -> Option<Vec<PathBuf>> {
    let mut layers = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.push(chars.next()?),
            ':' => layers.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    layers.push(current);
    if layers.iter().any(String::is_empty) {
        return None;
    }
    Some(layers.iter().map(|l| PathBuf::from(unescape(l))).collect())
}

/// Reads and parses /proc/`pid`/mountinfo. A path in it need not be UTF-8 (the kernel escapes
/// only whitespace and backslashes): such bytes read as U+FFFD, as escaped ones do. Refusing
/// the whole table instead would let any mount at such a path (one a container made, seen
/// through a shared volume) fail every reader.
pub fn read(pid: i32) -> std::io::Result<Vec<MountInfo>> {
    let bytes = std::fs::read(format!("/proc/{pid}/mountinfo"))?;
    parse(&String::from_utf8_lossy(&bytes))
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn escape(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                ' ' => "\\040".to_string(),
                '\t' => "\\011".to_string(),
                '\n' => "\\012".to_string(),
                '\\' => "\\134".to_string(),
                c => c.to_string(),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn round_trips_escaped_paths(id in 1u32..10000, path in "/[a-z \\t\\\\]{0,20}", opt in prop::bool::ANY) {
            let line = format!(
                "{id} 1 0:{id} / {} {} shared:3 - tmpfs tmp rw\n",
                escape(&path),
                if opt { "ro,nosuid" } else { "rw" }
            );
            let parsed = parse(&line).unwrap();
            prop_assert_eq!(parsed[0].id, id);
            prop_assert_eq!(parsed[0].mount_point.to_str().unwrap(), path.as_str());
            prop_assert_eq!(parsed[0].read_only(), opt);
        }

        #[test]
        fn never_panics(text in ".{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn overlay_layers_round_trip(
            lower in prop::collection::vec("/[a-z:]{1,12}", 1..6),
            upper in prop::option::of("[a-z]{1,8}"),
        ) {
            let escaped: Vec<String> = lower.iter().map(|l| l.replace(':', "\\:")).collect();
            let mut options = format!("rw,lowerdir={}", escaped.join(":"));
            if let Some(name) = &upper {
                options.push_str(&format!(",upperdir=/c/{name}/diff,workdir=/c/{name}/work"));
            }
            let line = format!("90 30 0:50 / /m rw - overlay overlay {options}\n");
            let mounts = parse(&line).unwrap();
            let root = overlay_root(&mounts, std::path::Path::new("/m")).unwrap();
            let expected: Vec<PathBuf> = lower.iter().map(PathBuf::from).collect();
            prop_assert_eq!(root.lower, expected);
            prop_assert_eq!(
                root.upper,
                upper.map(|n| (PathBuf::from(format!("/c/{n}")), "diff".into(), "work".into()))
            );
        }

        #[test]
        fn overlay_parsing_never_panics(options in "[a-z=:/,\\\\]{0,60}") {
            let line = format!("90 30 0:50 / /m rw - overlay overlay {options}\n");
            if let Ok(mounts) = parse(&line) {
                let _ = overlay_root(&mounts, std::path::Path::new("/m"));
            }
        }
    }

    #[test]
    fn overlays_that_are_not_plain_are_left_alone() {
        for options in [
            "rw,lowerdir=/a::/b,upperdir=/c/u,workdir=/c/w",
            "rw,lowerdir=/a,upperdir=/c/u,workdir=/d/w",
            "rw,lowerdir=/a,upperdir=/c/u",
            "ro,lowerdir=/a",
        ] {
            let line = format!("90 30 0:50 / /m rw - overlay overlay {options}\n");
            let mounts = parse(&line).unwrap();
            assert_eq!(
                overlay_root(&mounts, std::path::Path::new("/m")),
                None,
                "{options}"
            );
        }
    }

    #[test]
    fn reads_this_process() {
        let mounts = read(std::process::id() as i32).unwrap();
        assert!(mounts
            .iter()
            .any(|m| m.mount_point == std::path::Path::new("/")));
    }
}
