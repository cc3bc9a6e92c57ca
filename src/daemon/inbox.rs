//! Watched folders: finds files that are complete (size and mtime unchanged for
//! `stable_secs`), names their device, and hands them out oldest first, each at most once at
//! a time. The inbox itself is the journal: a file stays there until its outputs are
//! committed, so after a crash every unfinished clip is simply found again (and re-ingest is
//! idempotent by content-derived clip id).
//!
//! Owns: scanning and the per-file state (stable since, claimed, retry after). Must not touch:
//! processing or removal — workers report back what happened.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::config::DeviceFrom;

/// One clip to process.
#[derive(Debug, Clone)]
pub struct Work {
    pub path: PathBuf,
    /// Untrusted until the router validates it (folder name).
    pub device: String,
    pub recorded_at: Option<DateTime<Utc>>,
    pub bytes: u64,
}

/// What a worker did with a [`Work`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed (or quarantined) and removed from the inbox.
    Removed,
    /// Kept for a passing reason; try again later.
    Retry,
    /// Abandoned on shutdown; stays for the next start.
    Abandoned,
}

/// A watched folder.
#[derive(Debug, Clone)]
pub struct Watched {
    pub root: PathBuf,
    pub device_from: DeviceFrom,
    pub device: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    size: u64,
    mtime: SystemTime,
    since: Instant,
}

/// Scanner state over all watched folders.
#[derive(Debug)]
pub struct Scanner {
    watched: Vec<Watched>,
    stable: Duration,
    retry_max: Duration,
    seen: HashMap<PathBuf, Seen>,
    claimed: HashSet<PathBuf>,
    retry: HashMap<PathBuf, (Instant, u32)>,
}

/// Names that are still being written by convention (upload then rename) or are ours.
pub fn is_in_progress_name(name: &str) -> bool {
    name.starts_with('.')
        || name.contains(".obscura-tmp-")
        || [".part", ".tmp", ".partial", ".uploading", ".crdownload"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// `20261129T063100Z…` or `20261129T063100.250Z…` at the start of a file name: when the clip
/// was recorded. Otherwise `None` (the file's mtime is used).
pub fn recorded_at_from_name(name: &str) -> Option<DateTime<Utc>> {
    let stem: String = name
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, 'T' | '.'))
        .collect();
    let rest = &name[stem.len()..];
    if !rest.starts_with('Z') {
        return None;
    }
    let fmt = if stem.contains('.') {
        "%Y%m%dT%H%M%S%.f"
    } else {
        "%Y%m%dT%H%M%S"
    };
    NaiveDateTime::parse_from_str(&stem, fmt)
        .ok()
        .map(|t| t.and_utc())
}

impl Scanner {
    pub fn new(watched: Vec<Watched>, stable: Duration, retry_max: Duration) -> Scanner {
        Scanner {
            watched,
            stable,
            retry_max,
            seen: HashMap::new(),
            claimed: HashSet::new(),
            retry: HashMap::new(),
        }
    }

    /// Files ready now (stable, not claimed, not waiting for a retry), oldest first.
    pub fn ready(&mut self) -> Vec<Work> {
        let now = Instant::now();
        let mut found: Vec<(SystemTime, Work)> = Vec::new();
        let mut present = HashSet::new();
        for w in self.watched.clone() {
            for (path, device) in candidates(&w) {
                let Ok(md) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                // Regular files only: a symlink could point anywhere on the machine.
                if !md.file_type().is_file() {
                    continue;
                }
                present.insert(path.clone());
                let mtime = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let entry = self.seen.entry(path.clone()).or_insert(Seen {
                    size: md.len(),
                    mtime,
                    since: now,
                });
                if entry.size != md.len() || entry.mtime != mtime {
                    *entry = Seen {
                        size: md.len(),
                        mtime,
                        since: now,
                    };
                }
                if now.duration_since(entry.since) < self.stable
                    || self.claimed.contains(&path)
                    || self.retry.get(&path).is_some_and(|(at, _)| *at > now)
                {
                    continue;
                }
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let recorded_at =
                    recorded_at_from_name(&name).or_else(|| Some(DateTime::<Utc>::from(mtime)));
                found.push((
                    mtime,
                    Work {
                        path,
                        device,
                        recorded_at,
                        bytes: md.len(),
                    },
                ));
            }
        }
        // Forget files that went away.
        self.seen.retain(|p, _| present.contains(p));
        self.retry.retain(|p, _| present.contains(p));
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
        found.into_iter().map(|(_, w)| w).collect()
    }

    pub fn claim(&mut self, path: &Path) {
        self.claimed.insert(path.to_path_buf());
    }

    /// A worker finished with `path`.
    pub fn finished(&mut self, path: &Path, outcome: Outcome) {
        self.claimed.remove(path);
        match outcome {
            Outcome::Removed => {
                self.seen.remove(path);
                self.retry.remove(path);
            }
            Outcome::Retry => {
                let attempts = self.retry.get(path).map_or(0, |r| r.1) + 1;
                let wait = Duration::from_millis(500)
                    .saturating_mul(1u32 << attempts.min(16))
                    .min(self.retry_max);
                self.retry
                    .insert(path.to_path_buf(), (Instant::now() + wait, attempts));
            }
            Outcome::Abandoned => {}
        }
    }

    pub fn claimed(&self) -> usize {
        self.claimed.len()
    }
}

/// Files of a watched folder with the device each belongs to.
fn candidates(w: &Watched) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let list = |dir: &Path| -> Vec<std::fs::DirEntry> {
        std::fs::read_dir(dir)
            .map(|r| r.filter_map(Result::ok).collect())
            .unwrap_or_default()
    };
    match w.device_from {
        DeviceFrom::Fixed => {
            let device = w.device.clone().unwrap_or_default();
            for e in list(&w.root) {
                let name = e.file_name().to_string_lossy().to_string();
                if !is_in_progress_name(&name) && e.file_type().is_ok_and(|t| t.is_file()) {
                    out.push((e.path(), device.clone()));
                }
            }
        }
        DeviceFrom::ParentDir => {
            for d in list(&w.root) {
                let dev = d.file_name().to_string_lossy().to_string();
                let is_dir = d.file_type().is_ok_and(|t| t.is_dir());
                if is_dir {
                    if dev.starts_with('.') {
                        continue;
                    }
                    for e in list(&d.path()) {
                        let name = e.file_name().to_string_lossy().to_string();
                        if !is_in_progress_name(&name) && e.file_type().is_ok_and(|t| t.is_file()) {
                            out.push((e.path(), dev.clone()));
                        }
                    }
                } else if d.file_type().is_ok_and(|t| t.is_file()) && !is_in_progress_name(&dev) {
                    // A file outside any device folder: it has no device. The router refuses
                    // the empty id and the file goes to the quarantine with that reason.
                    out.push((d.path(), String::new()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_time_comes_from_a_timestamped_name() {
        let t = recorded_at_from_name("20261129T063100Z-00003.mp4").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-29T06:31:00+00:00");
        let t = recorded_at_from_name("20261129T063100.250Z.mp4").unwrap();
        assert_eq!(t.timestamp_millis() % 1000, 250);
        assert!(recorded_at_from_name("clip.mp4").is_none());
        assert!(recorded_at_from_name("20261399T000000Z.mp4").is_none());
        assert!(recorded_at_from_name("20261129T063100.mp4").is_none());
    }

    #[test]
    fn in_progress_names_are_skipped() {
        for n in [".x.mp4", "a.mp4.part", "a.tmp", "b.mp4.obscura-tmp-123"] {
            assert!(is_in_progress_name(n), "{n}");
        }
        assert!(!is_in_progress_name("a.mp4"));
    }

    #[test]
    fn a_file_is_ready_only_once_stable_and_once_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("cam-1");
        std::fs::create_dir(&dev).unwrap();
        std::fs::write(dev.join("a.mp4"), b"1234").unwrap();
        std::fs::write(dev.join("b.mp4.part"), b"1234").unwrap();
        let mut s = Scanner::new(
            vec![Watched {
                root: dir.path().to_path_buf(),
                device_from: DeviceFrom::ParentDir,
                device: None,
            }],
            Duration::from_millis(150),
            Duration::from_secs(1),
        );
        assert!(s.ready().is_empty(), "not yet stable");
        std::thread::sleep(Duration::from_millis(200));
        let r = s.ready();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].device, "cam-1");
        s.claim(&r[0].path);
        assert!(s.ready().is_empty(), "claimed");
        s.finished(&r[0].path, Outcome::Retry);
        assert!(s.ready().is_empty(), "waiting for the retry");
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(s.ready().len(), 1, "retried after the backoff");
        // A growing file starts its stability period again.
        std::fs::write(dev.join("a.mp4"), b"123456").unwrap();
        assert!(s.ready().is_empty());
    }

    #[test]
    fn symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("cam-1");
        std::fs::create_dir(&dev).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dev.join("x.mp4")).unwrap();
        let mut s = Scanner::new(
            vec![Watched {
                root: dir.path().to_path_buf(),
                device_from: DeviceFrom::ParentDir,
                device: None,
            }],
            Duration::ZERO,
            Duration::from_secs(1),
        );
        assert!(s.ready().is_empty());
    }
}
