//! Untrusted ids (device, account, region, clip): whatever a validator accepts cannot name
//! another folder or hide, and joined to a base folder stays one component under it.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use obscura::route::ids;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let checks: [(&str, fn(&str) -> Result<(), String>, usize); 4] = [
        ("device", ids::device, 64),
        ("account", ids::account, 64),
        ("region", ids::region, 32),
        ("clip", ids::clip, 64),
    ];
    for (kind, check, max) in checks {
        if check(&s).is_ok() {
            assert!(
                !s.is_empty() && s.len() <= max,
                "{kind}: length {}",
                s.len()
            );
            assert!(s.is_ascii(), "{kind}: non-ASCII {s:?}");
            assert!(
                !s.contains(['/', '\\', '\0']) && !s.contains("..") && !s.starts_with(['.', '-']),
                "{kind}: path syntax in {s:?}"
            );
            assert!(s.chars().all(|c| !c.is_control() && !c.is_whitespace()));
            let p = Path::new("/base").join(&*s);
            let comps: Vec<Component> = p.components().collect();
            assert_eq!(comps.len(), 3, "{kind}: {s:?} is not one component");
            assert!(matches!(comps[2], Component::Normal(_)));
            assert!(p.starts_with("/base"));
        }
    }
});
