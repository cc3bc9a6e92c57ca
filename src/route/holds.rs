//! Legal holds as records: one per case and scope (a clip, a device or an account, optionally
//! limited to clips recorded within `[from, to]`), with who set it, when and why. A clip is
//! held while any record in force covers it; records are checked when something is about to
//! be deleted (erase, retention sweep), so a device or account hold also covers clips ingested
//! after it was set.
//!
//! Owns: the record format, its object key, what a record covers, and reading the single-hold
//! files of earlier versions (`holds/<clip>.json`, read as case `legacy`). Must not touch:
//! stores or the audit log (the router puts, deletes and records).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ClipInfo, Selector};

/// The case of holds written by versions that kept one hold per clip.
pub const LEGACY_CASE: &str = "legacy";

/// Where hold records live in a region store.
pub const PREFIX: &str = "holds/cases";

/// A hold in force.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HoldRecord {
    /// The case (matter, ticket, request) the hold belongs to; `hold release --case` ends it.
    pub case: String,
    /// What it covers.
    pub scope: Selector,
    pub reason: String,
    /// Who set it (`--by`, else `$USER`).
    pub by: String,
    pub set_at: String,
    /// Only clips recorded at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Only clips recorded at or before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// The single-hold file of earlier versions: `holds/<clip>.json`.
#[derive(Debug, Clone, Deserialize)]
struct LegacyHold {
    clip: String,
    reason: String,
    set_at: String,
}

impl HoldRecord {
    /// The record's key in a store: one per case and scope, so that setting a second case
    /// never replaces the first.
    pub fn key(&self) -> String {
        let (kind, id) = self.scope.parts();
        let h = crate::fsutil::sha256_bytes(format!("{}\0{kind}\0{id}", self.case).as_bytes());
        format!("{PREFIX}/{h}.json")
    }

    /// Whether the record covers the clip: its scope matches and the clip was recorded within
    /// `[from, to]` (a bound that cannot be read covers everything: a hold never fails open).
    pub fn covers(&self, c: &ClipInfo) -> bool {
        if !self.scope.matches(c) {
            return false;
        }
        let Some(t) = parse_time(&c.recorded_at) else {
            return true;
        };
        let after_from = self
            .from
            .as_deref()
            .and_then(parse_time)
            .is_none_or(|f| t >= f);
        let before_to = self
            .to
            .as_deref()
            .and_then(parse_time)
            .is_none_or(|u| t <= u);
        after_from && before_to
    }

    /// One line for a table.
    pub fn window(&self) -> String {
        match (&self.from, &self.to) {
            (None, None) => "-".into(),
            (f, t) => format!(
                "{}..{}",
                f.as_deref().unwrap_or(""),
                t.as_deref().unwrap_or("")
            ),
        }
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Reads a stored hold object: a record (`holds/cases/…`) or an earlier version's single
/// hold (`holds/<clip>.json`, case `legacy`). `None` for anything else.
pub fn parse(key: &str, bytes: &[u8]) -> Option<HoldRecord> {
    if key.starts_with(&format!("{PREFIX}/")) {
        return serde_json::from_slice(bytes).ok();
    }
    let legacy: LegacyHold = serde_json::from_slice(bytes).ok()?;
    super::ids::clip(&legacy.clip).ok()?;
    Some(HoldRecord {
        case: LEGACY_CASE.into(),
        scope: Selector::Clip(legacy.clip),
        reason: legacy.reason,
        by: "unknown".into(),
        set_at: legacy.set_at,
        from: None,
        to: None,
    })
}

/// Checks a case name: 1..128 bytes, no control characters.
pub fn check_case(case: &str) -> Result<(), String> {
    if case.trim().is_empty() {
        return Err("the case is empty (--case names the matter the hold is for)".into());
    }
    if case.len() > 128 {
        return Err(format!("case {case:?} is longer than 128 bytes"));
    }
    if case.chars().any(char::is_control) {
        return Err(format!("case {case:?} contains a control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(device: &str, recorded_at: &str) -> ClipInfo {
        ClipInfo {
            id: "a".repeat(64),
            device: device.into(),
            account: "acct-1".into(),
            region: "eu".into(),
            recorded_at: recorded_at.into(),
            ingested_at: recorded_at.into(),
            classification: "personal".into(),
            labels: vec![],
            face_tracks: 0,
            speech_s: 0.0,
            legal_basis: "x".into(),
            retain_until: recorded_at.into(),
            originals_retain_until: None,
            hold: false,
            holds: vec![],
            restricted: false,
            restrictions: vec![],
            corrections: vec![],
            redacted: true,
            objects: vec![],
        }
    }

    fn rec(case: &str, scope: Selector) -> HoldRecord {
        HoldRecord {
            case: case.into(),
            scope,
            reason: "r".into(),
            by: "me".into(),
            set_at: "2026-01-01T00:00:00Z".into(),
            from: None,
            to: None,
        }
    }

    #[test]
    fn two_cases_on_one_scope_are_two_records() {
        let a = rec("case us-7", Selector::Device("cam-1".into()));
        let b = rec("case us-8", Selector::Device("cam-1".into()));
        assert_ne!(a.key(), b.key());
        assert_eq!(
            a.key(),
            rec("case us-7", Selector::Device("cam-1".into())).key()
        );
        assert_ne!(
            a.key(),
            rec("case us-7", Selector::Account("cam-1".into())).key()
        );
    }

    #[test]
    fn a_window_limits_what_a_hold_covers() {
        let mut r = rec("c", Selector::Device("cam-1".into()));
        r.from = Some("2026-01-01T00:00:00Z".into());
        r.to = Some("2026-01-31T00:00:00Z".into());
        assert!(r.covers(&clip("cam-1", "2026-01-10T00:00:00Z")));
        assert!(!r.covers(&clip("cam-1", "2026-02-10T00:00:00Z")));
        assert!(!r.covers(&clip("cam-1", "2025-12-10T00:00:00Z")));
        assert!(!r.covers(&clip("cam-2", "2026-01-10T00:00:00Z")));
        // An unreadable time never lets a held clip go.
        assert!(r.covers(&clip("cam-1", "garbage")));
    }

    #[test]
    fn an_earlier_versions_single_hold_reads_as_case_legacy() {
        let id = "b".repeat(64);
        let body =
            format!(r#"{{"clip":"{id}","reason":"case 42","set_at":"2026-01-01T00:00:00Z"}}"#);
        let r = parse(&format!("holds/{id}.json"), body.as_bytes()).unwrap();
        assert_eq!(r.case, LEGACY_CASE);
        assert_eq!(r.scope, Selector::Clip(id));
        assert_eq!(r.reason, "case 42");
        let bad = parse(
            "holds/x.json",
            br#"{"clip":"../x","reason":"","set_at":""}"#,
        );
        assert!(bad.is_none());
    }

    #[test]
    fn case_names_are_checked() {
        assert!(check_case("case us-7").is_ok());
        assert!(check_case(" ").is_err());
        assert!(check_case("a\nb").is_err());
        assert!(check_case(&"x".repeat(129)).is_err());
    }
}
