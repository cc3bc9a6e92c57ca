//! The append-only audit log: one JSON object per line, each carrying an HMAC-SHA256 (under
//! the audit key, a file apart from the log) over its content and the previous entry's MAC, so
//! that removing, reordering or editing any line breaks the chain, and so does re-chaining the
//! log without the key. The chain's head (last sequence number and MAC) is anchored in a head
//! file beside the log after each append (and in each region's store at every retention sweep,
//! see `Router::sweep`): a log whose tail was cut off has fewer entries than its head.
//!
//! Logs of earlier versions were chained with plain sha256 (no `chain` field): such entries
//! verify as legacy up to the first HMAC entry, which chains onto the last legacy one (so the
//! legacy part cannot be edited either once an HMAC entry follows it). After the HMAC chain
//! has begun, a sha256-chained entry is an error.
//!
//! No personal data in clear: ids, object keys, hashes, reasons.
//!
//! Owns: appending (under an exclusive file lock, fsynced), the audit key (created on first
//! append, 0600), the head file, and verification. Must not touch: stores (the router puts the
//! head into the region stores).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The chain's first `prev`.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The `chain` of an HMAC-SHA256-chained entry (absent on sha256-chained legacy entries).
pub const CHAIN_HMAC: &str = "hmac-sha256";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub time: String,
    /// ingest | quarantine | erase | export | hold_set | hold_release | sweep_delete | …
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `hmac-sha256`; absent on legacy (plain sha256) entries, whose bytes it must not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    pub prev: String,
    /// The entry's MAC (HMAC entries) or sha256 (legacy entries), hex.
    pub hash: String,
}

/// What an entry says, before it is sequenced and chained.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub action: String,
    pub clip: Option<String>,
    pub device: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
    pub objects: Vec<String>,
    pub detail: Option<String>,
}

/// The anchored head of the chain: the last entry's sequence number and MAC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Head {
    pub seq: u64,
    pub mac: String,
    /// The first HMAC-chained entry.
    pub hmac_from: u64,
    pub time: String,
}

/// The bytes an entry's hash or MAC is computed over: the entry with an empty `hash`.
fn unhashed(e: &Entry) -> Vec<u8> {
    let mut unhashed = e.clone();
    unhashed.hash = String::new();
    serde_json::to_vec(&unhashed).unwrap_or_default()
}

/// The sha256 of a legacy entry (versions before the HMAC chain).
pub fn legacy_hash(e: &Entry) -> String {
    crate::fsutil::sha256_bytes(&unhashed(e))
}

fn entry_mac(key: &[u8; 32], e: &Entry) -> String {
    hex::encode(hmac_sha256(key, &unhashed(e)))
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log {}: entry {line} is broken: {why}", path.display())]
    Broken {
        path: PathBuf,
        line: u64,
        why: String,
    },
    /// Fewer entries than an anchored head says: the tail was cut off.
    #[error(
        "audit log {}: it ends at entry {entries} but its head anchored in {anchor} says {head}: entries {} to {head} were cut off",
        path.display(), entries + 1
    )]
    Cut {
        path: PathBuf,
        entries: u64,
        head: u64,
        anchor: String,
    },
    #[error(
        "audit key {}: missing, so entries from {from} on (HMAC-chained) cannot be verified; restore the key",
        key.display()
    )]
    KeyMissing { key: PathBuf, from: u64 },
    #[error("audit key {}: {why}", key.display())]
    BadKey { key: PathBuf, why: String },
    /// The key exists but the head file does not: the head was removed (with the log
    /// rewritten, or its tail cut) or never written.
    #[error(
        "audit head {}: missing while the audit key {} exists; the log cannot be checked for a cut tail",
        head.display(), key.display()
    )]
    HeadMissing { head: PathBuf, key: PathBuf },
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Verified {
    pub entries: u64,
    /// Entries chained with plain sha256 by earlier versions (editable by whoever can write
    /// the log, unless an HMAC entry follows them).
    pub legacy_entries: u64,
    /// The first HMAC-chained entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac_from: Option<u64>,
    /// The head the log was checked against (its sequence number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
    /// Each entry's hash or MAC, in order (to check further anchors against).
    #[serde(skip)]
    hashes: Vec<String>,
}

pub struct AuditLog {
    path: PathBuf,
    key: PathBuf,
    head: PathBuf,
}

/// `<path><suffix>`: `audit.jsonl` → `audit.jsonl.key`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

impl AuditLog {
    /// The log at `path`, its key at `<path>.key` and its head at `<path>.head`.
    pub fn new(path: &Path) -> AuditLog {
        AuditLog::with_key(path, None)
    }

    /// The log at `path`, its key at `key` (`paths.audit_key`) when given.
    pub fn with_key(path: &Path, key: Option<&Path>) -> AuditLog {
        AuditLog {
            path: path.to_path_buf(),
            key: key.map_or_else(|| beside(path, ".key"), Path::to_path_buf),
            head: beside(path, ".head"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn key_path(&self) -> &Path {
        &self.key
    }

    pub fn head_path(&self) -> &Path {
        &self.head
    }

    fn io(&self, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The key, or `None` when there is no key file.
    fn load_key(&self) -> Result<Option<[u8; 32]>, AuditError> {
        let bytes = match std::fs::read(&self.key) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(AuditError::BadKey {
                    key: self.key.clone(),
                    why: e.to_string(),
                });
            }
        };
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| AuditError::BadKey {
            key: self.key.clone(),
            why: format!("{} bytes where 32 were expected", b.len()),
        })?;
        Ok(Some(key))
    }

    /// The key, created (32 random bytes, 0600, in a 0700 folder) when there is none. Two
    /// processes creating it at once end up with the same key (link, never overwrite).
    fn key_or_create(&self) -> Result<[u8; 32], AuditError> {
        if let Some(k) = self.load_key()? {
            return Ok(k);
        }
        let bad = |e: std::io::Error| AuditError::BadKey {
            key: self.key.clone(),
            why: format!("cannot create it: {e}"),
        };
        if let Some(dir) = self.key.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fsutil::create_private_dir_all(dir).map_err(bad)?;
        }
        let tmp = crate::fsutil::TempFile::beside(&self.key).map_err(bad)?;
        {
            let mut f = tmp.create_private().map_err(bad)?;
            f.write_all(&super::vault::new_key()).map_err(bad)?;
            f.sync_all().map_err(bad)?;
        }
        match std::fs::hard_link(tmp.path(), &self.key) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(bad(e)),
        }
        drop(tmp);
        let dir = self.key.parent().filter(|d| !d.as_os_str().is_empty());
        crate::fsutil::sync_dir(dir.unwrap_or(Path::new("."))).map_err(bad)?;
        self.load_key()?.ok_or_else(|| AuditError::BadKey {
            key: self.key.clone(),
            why: "vanished after it was created".into(),
        })
    }

    /// The anchored head in the head file, if any.
    pub fn head(&self) -> Result<Option<Head>, AuditError> {
        let io = |source| AuditError::Io {
            path: self.head.clone(),
            source,
        };
        match std::fs::read(&self.head) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// Appends one event; the file is locked for the read-append so that concurrent writers
    /// (several processes) keep one chain. The head file is rewritten (durably) under the
    /// same lock.
    pub fn append(&self, ev: Event) -> Result<Entry, AuditError> {
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            crate::fsutil::create_private_dir_all(dir).map_err(|e| self.io(e))?;
        }
        // A new log's entry in its folder is made durable with its first line.
        let created = !self.path.exists();
        // The log names devices, accounts and clips: the owner's only (0600).
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(crate::fsutil::PRIVATE_FILE)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        if created {
            crate::fsutil::set_mode(&self.path, crate::fsutil::PRIVATE_FILE)
                .map_err(|e| self.io(e))?;
        }
        use std::os::fd::AsRawFd;
        // SAFETY: flock on an open descriptor; released when the file is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(self.io(std::io::Error::last_os_error()));
        }
        let key = self.key_or_create()?;
        let last = last_entry(&self.path).map_err(|e| self.io(e))?;
        let (seq, prev) = match &last.entry {
            Some(e) => (e.seq.saturating_add(1), e.hash.clone()),
            None => (1, GENESIS.to_string()),
        };
        let hmac_from = match (&last.entry, self.head()?) {
            (Some(l), Some(h)) if l.chain.is_some() => h.hmac_from,
            _ => seq,
        };
        let mut e = Entry {
            seq,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            action: ev.action,
            clip: ev.clip,
            device: ev.device,
            account: ev.account,
            region: ev.region,
            objects: ev.objects,
            detail: ev.detail,
            chain: Some(CHAIN_HMAC.into()),
            prev,
            hash: String::new(),
        };
        e.hash = entry_mac(&key, &e);
        let mut line = Vec::new();
        if !last.ends_with_newline {
            // A last line without its newline would glue onto the new entry.
            line.push(b'\n');
        }
        line.extend(serde_json::to_vec(&e).map_err(|x| self.io(std::io::Error::other(x)))?);
        line.push(b'\n');
        if let Err(x) = f.write_all(&line).and_then(|_| f.sync_all()) {
            // A partial line (disk full) would break the chain for good: cut it off again
            // (the lock is still held, so nobody appended after it).
            let _ = f.set_len(last.len);
            let _ = f.sync_all();
            return Err(self.io(x));
        }
        if created {
            let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
            crate::fsutil::sync_dir(dir.unwrap_or(Path::new("."))).map_err(|x| self.io(x))?;
        }
        let head = Head {
            seq,
            mac: e.hash.clone(),
            hmac_from,
            time: e.time.clone(),
        };
        crate::fsutil::write_atomic_private(
            &self.head,
            &serde_json::to_vec(&head).unwrap_or_default(),
        )
        .map_err(|source| AuditError::Io {
            path: self.head.clone(),
            source,
        })?;
        Ok(e)
    }

    /// Whether an entry with `action` for `clip` exists.
    pub fn has(&self, action: &str, clip: &str) -> Result<bool, AuditError> {
        let f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.io(e)),
        };
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|e| self.io(e))?;
            if let Ok(e) = serde_json::from_str::<Entry>(&line)
                && e.action == action
                && e.clip.as_deref() == Some(clip)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Checks the whole chain and the head file; returns what it found, or the first broken
    /// entry.
    pub fn verify(&self) -> Result<Verified, AuditError> {
        let key = self.load_key()?;
        let head = self.head()?;
        let mut v = Verified::default();
        let f = match std::fs::File::open(&self.path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io(e)),
        };
        let mut prev = GENESIS.to_string();
        for (i, line) in f
            .into_iter()
            .flat_map(|f| BufReader::new(f).lines())
            .enumerate()
        {
            let line_no = i as u64 + 1;
            let broken = |why: String| AuditError::Broken {
                path: self.path.clone(),
                line: line_no,
                why,
            };
            let line = line.map_err(|e| self.io(e))?;
            let e: Entry =
                serde_json::from_str(&line).map_err(|x| broken(format!("not an entry: {x}")))?;
            if e.seq != line_no {
                return Err(broken(format!(
                    "sequence {} where {line_no} was expected",
                    e.seq
                )));
            }
            if e.prev != prev {
                return Err(broken("does not follow the previous entry".into()));
            }
            match e.chain.as_deref() {
                None => {
                    if let Some(from) = v.hmac_from {
                        return Err(broken(format!(
                            "chained with plain sha256 after the HMAC chain began at entry \
                             {from}: the log was rewritten without the audit key"
                        )));
                    }
                    if legacy_hash(&e) != e.hash {
                        return Err(broken("its content does not match its hash".into()));
                    }
                    v.legacy_entries += 1;
                }
                Some(CHAIN_HMAC) => {
                    let Some(key) = &key else {
                        return Err(AuditError::KeyMissing {
                            key: self.key.clone(),
                            from: line_no,
                        });
                    };
                    if entry_mac(key, &e) != e.hash {
                        return Err(broken(
                            "its MAC does not match its content (edited, or chained without \
                             the audit key)"
                                .into(),
                        ));
                    }
                    v.hmac_from.get_or_insert(line_no);
                }
                Some(other) => return Err(broken(format!("unknown chain {other:?}"))),
            }
            prev = e.hash.clone();
            v.hashes.push(e.hash);
            v.entries += 1;
        }
        match head {
            Some(h) => {
                self.check_anchor(&v, &h, &self.head.display().to_string())?;
                v.head = Some(h.seq);
            }
            None if key.is_some() => {
                return Err(AuditError::HeadMissing {
                    head: self.head.clone(),
                    key: self.key.clone(),
                });
            }
            None => {}
        }
        Ok(v)
    }

    /// Checks a verified log against an anchored head (the head file, or a copy in a store
    /// named by `anchor`): the log must reach the head's entry, and that entry must be the
    /// one anchored.
    pub fn check_anchor(&self, v: &Verified, h: &Head, anchor: &str) -> Result<(), AuditError> {
        if h.seq > v.entries {
            return Err(AuditError::Cut {
                path: self.path.clone(),
                entries: v.entries,
                head: h.seq,
                anchor: anchor.to_string(),
            });
        }
        if h.seq == 0 {
            return Ok(());
        }
        if v.hashes[(h.seq - 1) as usize] != h.mac {
            return Err(AuditError::Broken {
                path: self.path.clone(),
                line: h.seq,
                why: format!("it is not the entry anchored in {anchor} (the log was rewritten)"),
            });
        }
        Ok(())
    }
}

struct Last {
    entry: Option<Entry>,
    /// The file's length before the append.
    len: u64,
    ends_with_newline: bool,
}

/// The log's last entry. A last line that is not an entry is an error: starting a new chain
/// after it (as if the log were empty) would silently break the chain for every later entry.
fn last_entry(path: &Path) -> std::io::Result<Last> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let len = text.len() as u64;
    let ends_with_newline = text.is_empty() || text.ends_with(b"\n");
    let Some(line) = text
        .split(|b| *b == b'\n')
        .rev()
        .find(|l| !l.trim_ascii().is_empty())
    else {
        return Ok(Last {
            entry: None,
            len,
            ends_with_newline,
        });
    };
    let entry = serde_json::from_slice(line).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the last entry is broken ({e}); run `obscura audit verify`"),
        )
    })?;
    Ok(Last {
        entry: Some(entry),
        len,
        ends_with_newline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str) -> Event {
        Event {
            action: action.into(),
            clip: Some("abc".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_chain_verifies_and_any_edit_breaks_it_at_that_line() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&d.path().join("audit.jsonl"));
        for a in ["ingest", "hold_set", "erase"] {
            log.append(ev(a)).unwrap();
        }
        assert_eq!(log.verify().unwrap().entries, 3);
        let text = std::fs::read_to_string(log.path()).unwrap();
        let tampered = text.replacen("hold_set", "hold_release", 1);
        std::fs::write(log.path(), tampered).unwrap();
        match log.verify() {
            Err(AuditError::Broken { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
        // Deleting a line breaks the chain too.
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(log.path(), format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        assert!(matches!(
            log.verify(),
            Err(AuditError::Broken { line: 2, .. })
        ));
    }

    /// A torn last line (a write cut short, e.g. by a full disk) made the next append start
    /// a new chain at seq 1 in the middle of the file: the log could never verify again.
    #[test]
    fn regression_torn_last_line_restarted_the_chain() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&d.path().join("audit.jsonl"));
        log.append(ev("ingest")).unwrap();
        let good = std::fs::read(log.path()).unwrap();
        let mut torn = good.clone();
        torn.extend_from_slice(b"{\"seq\":2,\"time\":\"20");
        std::fs::write(log.path(), &torn).unwrap();
        let err = log.append(ev("erase")).unwrap_err();
        assert!(err.to_string().contains("last entry is broken"), "{err}");
        assert_eq!(std::fs::read(log.path()).unwrap(), torn, "nothing appended");
    }

    /// A valid last entry without its final newline had the next entry glued onto it.
    #[test]
    fn regression_missing_final_newline_glued_two_entries() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&d.path().join("audit.jsonl"));
        log.append(ev("ingest")).unwrap();
        let mut text = std::fs::read(log.path()).unwrap();
        assert_eq!(text.pop(), Some(b'\n'));
        std::fs::write(log.path(), &text).unwrap();
        assert_eq!(log.verify().unwrap().entries, 1);
        log.append(ev("erase")).unwrap();
        assert_eq!(log.verify().unwrap().entries, 2);
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (test case 6).
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn legacy_line(seq: u64, prev: &str) -> Entry {
        let mut e = Entry {
            seq,
            time: "2026-01-01T00:00:00.000Z".into(),
            action: "ingest".into(),
            clip: Some("abc".into()),
            device: None,
            account: None,
            region: None,
            objects: vec![],
            detail: None,
            chain: None,
            prev: prev.into(),
            hash: String::new(),
        };
        e.hash = legacy_hash(&e);
        e
    }

    /// An earlier version's sha256 chain is read as legacy up to where the HMAC chain starts,
    /// and the first HMAC entry seals it: editing a legacy entry afterwards is found.
    #[test]
    fn a_legacy_sha256_log_verifies_as_legacy_and_the_hmac_chain_continues_it() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&d.path().join("audit.jsonl"));
        let a = legacy_line(1, GENESIS);
        let b = legacy_line(2, &a.hash);
        let text = format!(
            "{}\n{}\n",
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        // The legacy bytes are exactly those earlier versions wrote (no `chain` field).
        assert!(!text.contains("chain"));
        std::fs::write(log.path(), &text).unwrap();
        let v = log.verify().unwrap();
        assert_eq!((v.entries, v.legacy_entries, v.hmac_from), (2, 2, None));
        log.append(ev("erase")).unwrap();
        let v = log.verify().unwrap();
        assert_eq!((v.entries, v.legacy_entries, v.hmac_from), (3, 2, Some(3)));
        assert_eq!(v.head, Some(3));
        // Re-hashing an edited legacy entry (sha256 needs no key) breaks the HMAC entry after it.
        let mut a2 = a.clone();
        a2.action = "export".into();
        a2.hash = legacy_hash(&a2);
        let mut b2 = b.clone();
        b2.prev = a2.hash.clone();
        b2.hash = legacy_hash(&b2);
        let all = std::fs::read_to_string(log.path()).unwrap();
        let third = all.lines().nth(2).unwrap();
        std::fs::write(
            log.path(),
            format!(
                "{}\n{}\n{third}\n",
                serde_json::to_string(&a2).unwrap(),
                serde_json::to_string(&b2).unwrap()
            ),
        )
        .unwrap();
        assert!(matches!(
            log.verify(),
            Err(AuditError::Broken { line: 3, .. })
        ));
    }

    #[test]
    fn a_cut_tail_and_a_missing_key_or_head_are_found() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&d.path().join("audit.jsonl"));
        for a in ["ingest", "hold_set", "erase"] {
            log.append(ev(a)).unwrap();
        }
        let text = std::fs::read_to_string(log.path()).unwrap();
        let two: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        std::fs::write(log.path(), &two).unwrap();
        match log.verify() {
            Err(AuditError::Cut { entries, head, .. }) => assert_eq!((entries, head), (2, 3)),
            other => panic!("{other:?}"),
        }
        std::fs::write(log.path(), &text).unwrap();
        assert_eq!(log.verify().unwrap().entries, 3);
        let key = std::fs::read(log.key_path()).unwrap();
        assert_eq!(key.len(), 32);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(log.key_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_file(log.key_path()).unwrap();
        assert!(matches!(
            log.verify(),
            Err(AuditError::KeyMissing { from: 1, .. })
        ));
        std::fs::write(log.key_path(), &key).unwrap();
        std::fs::remove_file(log.head_path()).unwrap();
        assert!(matches!(log.verify(), Err(AuditError::HeadMissing { .. })));
    }
}
