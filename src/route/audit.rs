//! The append-only audit log: one JSON object per line, each carrying the sha256 of the
//! previous line's entry, so that removing, reordering or editing any line breaks the chain.
//! No personal data in clear: ids, object keys, hashes, reasons.
//!
//! Owns: appending (under an exclusive file lock, fsynced) and verification.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The chain's first `prev`.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    pub prev: String,
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

fn entry_hash(e: &Entry) -> String {
    let mut unhashed = e.clone();
    unhashed.hash = String::new();
    let json = serde_json::to_vec(&unhashed).unwrap_or_default();
    crate::fsutil::sha256_bytes(&json)
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
}

pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn new(path: &Path) -> AuditLog {
        AuditLog {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one event; the file is locked for the read-append so that concurrent writers
    /// (several processes) keep one chain.
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
        let last = last_entry(&self.path).map_err(|e| self.io(e))?;
        let (seq, prev) = match last.entry {
            Some(e) => (e.seq.saturating_add(1), e.hash),
            None => (1, GENESIS.to_string()),
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
            prev,
            hash: String::new(),
        };
        e.hash = entry_hash(&e);
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

    /// Checks the whole chain; returns the number of entries, or the first broken one.
    pub fn verify(&self) -> Result<u64, AuditError> {
        let f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io(e)),
        };
        let mut prev = GENESIS.to_string();
        let mut n = 0u64;
        for (i, line) in BufReader::new(f).lines().enumerate() {
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
            if entry_hash(&e) != e.hash {
                return Err(broken("its content does not match its hash".into()));
            }
            prev = e.hash.clone();
            n += 1;
        }
        Ok(n)
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
        assert_eq!(log.verify().unwrap(), 3);
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
        assert_eq!(log.verify().unwrap(), 1);
        log.append(ev("erase")).unwrap();
        assert_eq!(log.verify().unwrap(), 2);
    }
}
