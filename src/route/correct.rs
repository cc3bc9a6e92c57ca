//! Corrections of a clip's record (`obscura correct`): its recording time, the account its
//! device is mapped to for that clip, and its classification. The router re-issues the
//! clip's sidecar with the retention recomputed from the corrected record (a hold still
//! wins: retention never deletes a held clip) and records each change in the audit log.
//!
//! Fail closed: a personal clip becomes non-personal only with an explicit reason (every
//! correction needs one) and the change is recorded as a downgrade; a correction that would
//! take a clip out of a hold or a restriction in force is refused (hold or restrict the clip
//! by its id first). Re-redaction from the vault original (changed settings, manual regions)
//! is not done here.
//!
//! Owns: the correction record kept in the sidecar and the rules on what may change. Must
//! not touch: stores or the audit log (the router reads, writes and records).

use serde::{Deserialize, Serialize};

/// The stored value of a personal clip's classification.
pub const PERSONAL: &str = "personal";
/// The stored value of a non-personal clip's classification.
pub const NON_PERSONAL: &str = "non_personal";

/// One corrected field of a clip's record, kept in the sidecar (`clip.corrections`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Correction {
    /// `recorded_at`, `account` or `classification`.
    pub field: String,
    pub old: String,
    pub new: String,
    pub reason: String,
    /// Who corrected it (`--by`, else `$USER`).
    pub by: String,
    pub at: String,
}

/// Reads a classification as given on the command line: `personal`, or `non-personal`
/// (`non_personal` accepted); returns the stored form.
pub fn parse_classification(s: &str) -> Result<&'static str, String> {
    match s {
        "personal" => Ok(PERSONAL),
        "non-personal" | "non_personal" => Ok(NON_PERSONAL),
        other => Err(format!(
            "classification {other:?} is not one of: personal, non-personal"
        )),
    }
}

/// Whether a change of classification lowers the protection of a clip.
pub fn is_downgrade(old: &str, new: &str) -> bool {
    old != NON_PERSONAL && new == NON_PERSONAL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifications_read_in_both_spellings_and_downgrades_are_named() {
        assert_eq!(parse_classification("non-personal"), Ok(NON_PERSONAL));
        assert_eq!(parse_classification("non_personal"), Ok(NON_PERSONAL));
        assert_eq!(parse_classification("personal"), Ok(PERSONAL));
        assert!(parse_classification("Personal").is_err());
        assert!(is_downgrade(PERSONAL, NON_PERSONAL));
        assert!(!is_downgrade(NON_PERSONAL, PERSONAL));
        assert!(!is_downgrade(NON_PERSONAL, NON_PERSONAL));
    }
}
