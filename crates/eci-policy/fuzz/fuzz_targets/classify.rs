//! The Engine API classifier: any method and request target classifies (or not) without a
//! panic, the same way every time, and a decision agrees with the classification.
#![no_main]

use eci_policy::docker_api::{classify_target, CommandList, CommandRule, ListKind};
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"];

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let Ok(target) = std::str::from_utf8(rest) else {
        return;
    };
    let method = METHODS[usize::from(*first) % METHODS.len()];
    let api = classify_target(method, target);
    assert_eq!(api, classify_target(method, target));
    if let Some(api) = api {
        assert_eq!(api.endpoint().method.as_str(), method);
    }
    let deny_all = CommandList::new(ListKind::Deny, vec![("*".into(), CommandRule::Everything)]);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let decision = deny_all.decide(method, path, query);
    assert!(!decision.allowed || decision.endpoint.is_some_and(|e| e.api.is_negotiation()));
});
