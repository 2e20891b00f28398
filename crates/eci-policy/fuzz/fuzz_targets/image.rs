//! Image references and image list entries: no panic, and whatever parses round-trips through
//! its canonical form.
#![no_main]

use eci_policy::image::{ImagePattern, ImageRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = ImageRef::parse(text) {
        let canonical = reference.to_string();
        assert_eq!(
            ImageRef::parse(&canonical).as_ref(),
            Ok(&reference),
            "{canonical}"
        );
    }
    if let Ok(pattern) = ImagePattern::parse(text) {
        let canonical = pattern.to_string();
        assert_eq!(
            ImagePattern::parse(&canonical).as_ref(),
            Ok(&pattern),
            "{canonical}"
        );
    }
});
