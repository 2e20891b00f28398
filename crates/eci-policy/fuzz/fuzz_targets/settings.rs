//! The settings parser: any text gives a policy or an error that says where, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match eci_policy::document::parse(text) {
        Ok(policy) => {
            // Printing walks every part of the policy.
            let _ = policy.to_string();
        }
        Err(err) => {
            assert!(!err.path.is_empty(), "an error without a path: {err}");
            assert!(err.line >= 1, "an error without a line: {err}");
        }
    }
});
