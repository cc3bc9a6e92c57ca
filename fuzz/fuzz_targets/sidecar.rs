//! The sidecar parser (what `--resume`, ingest and the store read back): any bytes give a
//! sidecar or an error, never a panic; a sidecar that parses serializes and parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use obscura::types::Sidecar;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = serde_json::from_slice::<Sidecar>(data) {
        let json = serde_json::to_vec(&s).expect("a parsed sidecar serializes");
        let again: Sidecar = serde_json::from_slice(&json).expect("and parses again");
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&s).unwrap()
        );
    }
    let _ = serde_json::from_slice::<obscura::route::StoredSidecar>(data);
});
