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

/// Reads and parses /proc/`pid`/mountinfo.
pub fn read(pid: i32) -> std::io::Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    parse(&text).map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
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
    }

    #[test]
    fn reads_this_process() {
        let mounts = read(std::process::id() as i32).unwrap();
        assert!(mounts
            .iter()
            .any(|m| m.mount_point == std::path::Path::new("/")));
    }
}
