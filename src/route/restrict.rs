//! Restrictions of use: a person objects to the use of their clips (a clip, a device or an
//! account). The clips stay stored and retention still runs, but `export` leaves them out
//! (listed under `withheld` with the restriction) unless `--case` names a hold in force that
//! covers the clip (the legal exception). One record per scope, stored like hold records in
//! the regions of what it covers and read from all.
//!
//! Owns: the record format, its object key and what a record covers. Must not touch: stores
//! or the audit log (the router puts, deletes and records).

use serde::{Deserialize, Serialize};

use super::{ClipInfo, Selector};

/// Where restriction records live in a region store.
pub const PREFIX: &str = "restrictions";

/// A restriction in force.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RestrictRecord {
    /// What it covers.
    pub scope: Selector,
    pub reason: String,
    /// Who set it (`--by`, else `$USER`).
    pub by: String,
    pub set_at: String,
}

impl RestrictRecord {
    /// The record's key in a store: one per scope (setting it again replaces the reason).
    pub fn key(&self) -> String {
        key_of(&self.scope)
    }

    pub fn covers(&self, c: &ClipInfo) -> bool {
        self.scope.matches(c)
    }
}

/// The key of the restriction over `scope`.
pub fn key_of(scope: &Selector) -> String {
    let (kind, id) = scope.parts();
    let h = crate::fsutil::sha256_bytes(format!("{kind}\0{id}").as_bytes());
    format!("{PREFIX}/{h}.json")
}

/// Reads a stored restriction; `None` when it is not one.
pub fn parse(bytes: &[u8]) -> Option<RestrictRecord> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_per_scope() {
        let a = Selector::Device("cam-1".into());
        let b = Selector::Account("cam-1".into());
        assert_ne!(key_of(&a), key_of(&b));
        assert_eq!(key_of(&a), key_of(&Selector::Device("cam-1".into())));
        assert!(key_of(&a).starts_with("restrictions/"));
        assert!(parse(b"{}").is_none());
    }
}
