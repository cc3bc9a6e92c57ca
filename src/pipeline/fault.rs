//! Fault injection for the fail-closed suite (RELIABILITY.md, suite 3). Compiled in always and
//! inert unless the environment variable `OBSCURA_FAULT` is set, which is read once per
//! process:
//!
//! | `OBSCURA_FAULT`            | what happens at video frame N (0-based)                          |
//! |----------------------------|------------------------------------------------------------------|
//! | `detect-error@frame=N`     | the detector returns an inference error for the batch holding N  |
//! | `detect-stall@frame=N`     | the detect stage hangs for good (the watchdog must fail the run) |
//! | `redact-panic@frame=N`     | the redact stage panics before redacting frame N                 |
//! | `encode-error@frame=N`     | the video encoder's source posts an error, as a failing encoder does |
//! | `teardown-hang@count=N`    | the first N teardowns of an RTSP recorder's pipeline never return (as one stuck in `gst_pad_stop_task` under load) |
//!
//! Any other value is ignored with a warning. Never set in production.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    DetectError(u64),
    DetectStall(u64),
    RedactPanic(u64),
    EncodeError(u64),
    TeardownHang(u64),
}

fn parse(s: &str) -> Option<Fault> {
    let (kind, at) = s.trim().split_once('@')?;
    if kind == "teardown-hang" {
        return Some(Fault::TeardownHang(
            at.strip_prefix("count=")?.parse().ok()?,
        ));
    }
    let n: u64 = at.strip_prefix("frame=")?.parse().ok()?;
    Some(match kind {
        "detect-error" => Fault::DetectError(n),
        "detect-stall" => Fault::DetectStall(n),
        "redact-panic" => Fault::RedactPanic(n),
        "encode-error" => Fault::EncodeError(n),
        _ => return None,
    })
}

/// Whether this teardown of a recorder's pipeline is to hang (`teardown-hang@count=N`: the
/// first N of the process do).
pub fn teardown_hangs() -> bool {
    static SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    match get() {
        Some(Fault::TeardownHang(n)) => SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n,
        _ => false,
    }
}

/// The fault requested for this process, if any.
pub(crate) fn get() -> Option<Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    *FAULT.get_or_init(|| {
        let v = std::env::var("OBSCURA_FAULT").ok()?;
        let f = parse(&v);
        match f {
            Some(f) => tracing::warn!(?f, "fault injection active (OBSCURA_FAULT)"),
            None => tracing::warn!(value = %v, "OBSCURA_FAULT not understood; ignored"),
        }
        f
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_parse_and_anything_else_is_inert() {
        assert_eq!(parse("detect-error@frame=30"), Some(Fault::DetectError(30)));
        assert_eq!(parse("encode-error@frame=0"), Some(Fault::EncodeError(0)));
        assert_eq!(parse("detect-stall@frame=5"), Some(Fault::DetectStall(5)));
        assert_eq!(parse("redact-panic@frame=7"), Some(Fault::RedactPanic(7)));
        assert_eq!(parse("teardown-hang@count=1"), Some(Fault::TeardownHang(1)));
        assert_eq!(parse("teardown-hang@frame=1"), None);
        for bad in [
            "",
            "detect-error",
            "detect-error@30",
            "x@frame=1",
            "detect-error@frame=-1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
