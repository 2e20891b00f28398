//! A FUSE mount's `fd=` option, which names a descriptor of the caller's, not of the helper
//! that performs the mount: found, and rewritten to the helper's copy of that descriptor.
//! Pure and allocation-free (the helper runs after fork).

/// Whether `fstype` is FUSE's (`fuse`, `fuseblk`, `fuse.sshfs`, ...).
pub(crate) fn is_fuse(fstype: &[u8]) -> bool {
    fstype == b"fuse" || fstype == b"fuseblk" || fstype.starts_with(b"fuse.")
}

/// The `fd=` option of mount data: `Ok(Some((value, start, end)))` with the byte range of its
/// value, `Ok(None)` without one. More than one, or a value that is not a descriptor number,
/// is an error: the kernel would read another than the one rewritten.
pub(crate) fn device_fd(data: &[u8]) -> Result<Option<(i32, usize, usize)>, ()> {
    let mut found = None;
    let mut start = 0;
    for option in data.split(|b| *b == b',') {
        let end = start + option.len();
        if let Some(value) = option.strip_prefix(b"fd=") {
            if found.is_some() {
                return Err(());
            }
            let number = parse_fd(value).ok_or(())?;
            found = Some((number, start + 3, end));
        } else if option == b"fd" {
            return Err(());
        }
        start = end + 1;
    }
    Ok(found)
}

fn parse_fd(value: &[u8]) -> Option<i32> {
    if value.is_empty() || value.len() > 10 {
        return None;
    }
    value.iter().try_fold(0i32, |n, digit| {
        let digit = digit.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(i32::from(digit))
    })
}

/// `data` with the value in `start..end` replaced by `fd`, NUL-terminated in `out`; `None` if
/// it does not fit.
pub(crate) fn with_fd(
    data: &[u8],
    (start, end): (usize, usize),
    fd: i32,
    out: &mut [u8],
) -> Option<usize> {
    let mut digits = [0u8; 20];
    let len = eci_ns::sys::write_decimal(&mut digits, u64::try_from(fd).ok()?);
    let total = start + len + (data.len() - end);
    if total + 1 > out.len() {
        return None;
    }
    out[..start].copy_from_slice(&data[..start]);
    out[start..start + len].copy_from_slice(&digits[..len]);
    out[start + len..total].copy_from_slice(&data[end..]);
    out[total] = 0;
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rewritten(data: &[u8], fd: i32) -> Option<String> {
        let (_, start, end) = device_fd(data).ok()??;
        let mut out = [0u8; 256];
        let len = with_fd(data, (start, end), fd, &mut out)?;
        Some(String::from_utf8_lossy(&out[..len]).into_owned())
    }

    #[test]
    fn the_callers_descriptor_becomes_the_helpers() {
        let data = b"fd=3,rootmode=40000,user_id=0,group_id=0";
        assert_eq!(device_fd(data), Ok(Some((3, 3, 4))));
        assert_eq!(
            rewritten(data, 17).unwrap(),
            "fd=17,rootmode=40000,user_id=0,group_id=0"
        );
        assert_eq!(
            rewritten(b"rootmode=40000,fd=12", 5).unwrap(),
            "rootmode=40000,fd=5"
        );
        assert_eq!(device_fd(b"rootmode=40000"), Ok(None));
        assert_eq!(device_fd(b"fd=3,fd=4"), Err(()));
        assert_eq!(device_fd(b"fd=-1"), Err(()));
        assert_eq!(device_fd(b"fd=99999999999"), Err(()));
        assert_eq!(device_fd(b"fd"), Err(()));
        assert!(is_fuse(b"fuse.sshfs") && is_fuse(b"fuse") && !is_fuse(b"fusectl"));
    }

    proptest! {
        #[test]
        fn only_the_value_changes(
            before in "([a-z_]{1,8}=[0-9a-z]{0,6},){0,3}",
            after in "(,[a-z_]{1,8}=[0-9a-z]{0,6}){0,3}",
            fd in 0i32..100_000,
            new in 0i32..100_000,
        ) {
            let data = format!("{before}fd={fd}{after}");
            prop_assume!(!before.starts_with("fd=") && !before.contains(",fd=") && !after.contains(",fd="));
            prop_assert_eq!(device_fd(data.as_bytes()).unwrap().map(|f| f.0), Some(fd));
            prop_assert_eq!(rewritten(data.as_bytes(), new).unwrap(), format!("{before}fd={new}{after}"));
        }

        #[test]
        fn any_data_is_read_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Some((_, start, end))) = device_fd(&data) {
                let mut out = [0u8; 512];
                let _ = with_fd(&data, (start, end), i32::MAX, &mut out);
            }
        }
    }
}
