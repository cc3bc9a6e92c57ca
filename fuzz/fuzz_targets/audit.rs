//! The audit log reader: `audit verify` on any file content ends with a count or a broken-
//! entry error, never a panic; when a log verifies, an append keeps it verifying (n + 1), and
//! when it does not, an append either refuses or leaves a log that still does not verify
//! (never silently "repairs" a broken chain).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use obscura::route::audit::{AuditLog, Event};

fn dir() -> &'static tempfile::TempDir {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

fuzz_target!(|data: &[u8]| {
    let path = dir().path().join("audit.jsonl");
    std::fs::write(&path, data).expect("write");
    let log = AuditLog::new(&path);
    // Each input is a log alone: no key and no head left from the previous input.
    let _ = std::fs::remove_file(log.key_path());
    let _ = std::fs::remove_file(log.head_path());
    let before = log.verify();
    let appended = log.append(Event {
        action: "fuzz".into(),
        ..Default::default()
    });
    match (before, appended) {
        (Ok(v), Ok(e)) => {
            assert_eq!(e.seq, v.entries + 1, "sequence continues");
            assert_eq!(log.verify().expect("still verifies").entries, v.entries + 1);
        }
        (Ok(_), Err(e)) => panic!("a verified log refused an append: {e}"),
        (Err(_), _) => assert!(log.verify().is_err(), "a broken chain became valid"),
    }
});
