//! Durable file commits and hashing.
//!
//! Owns: the "temporary name in the same folder → fsync → rename → fsync folder" protocol
//! every output goes through, so that a crash or failure never leaves a partial file at the
//! final name, and sha256 of files. Must not touch: media or models.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use std::os::unix::fs::PermissionsExt;

/// Mode of files that hold personal data or keys (vault keys and originals, quarantine
/// copies, exports, the audit log): the owner reads and writes, nobody else.
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of the folders Obscura creates for such files.
pub const PRIVATE_DIR: u32 = 0o700;

/// sha256 of a file's contents, lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The longest file name (one path component, in bytes) that Linux file systems take.
pub const NAME_MAX: usize = 255;

/// `name` cut to at most `max` bytes (on a character boundary), keeping a short extension
/// (up to 16 bytes with its dot) at the end; unchanged when it fits.
pub fn fit_name(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let floor = |s: &str, mut n: usize| {
        n = n.min(s.len());
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        n
    };
    match name.rfind('.') {
        Some(dot) if name.len() - dot <= 16 && name.len() - dot < max => {
            let ext = &name[dot..];
            let stem = &name[..floor(name, max - ext.len()).min(dot)];
            format!("{stem}{ext}")
        }
        _ => name[..floor(name, max)].to_string(),
    }
}

/// sha256 of bytes, lower-case hex.
pub fn sha256_bytes(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A file being written under a temporary name beside its final path. Dropped without
/// [`TempFile::commit`], it is removed: nothing ever appears at the final name unless the
/// whole write succeeded.
#[derive(Debug)]
pub struct TempFile {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

/// Prefix of every temporary file Obscura writes (so leftovers from a crash are recognisable
/// and can be swept).
pub const TEMP_PREFIX: &str = ".obscura-tmp-";

/// Ending of the temporary names of [`TempFile::beside_unlisted`].
pub const UNLISTED_SUFFIX: &str = "#0";

impl TempFile {
    /// Reserves a temporary name in `target`'s folder. The file itself is created by whoever
    /// writes it (e.g. a GStreamer filesink) or by [`TempFile::create`].
    pub fn beside(target: &Path) -> std::io::Result<TempFile> {
        Self::beside_ending(target, "")
    }

    /// Like [`TempFile::beside`], the name ending in [`UNLISTED_SUFFIX`]: for files inside a
    /// folder object store, whose listings skip such names (the `object_store` crate takes a
    /// name ending `#<digits>` for an upload in progress), so that no reader ever lists a
    /// half-written object.
    pub fn beside_unlisted(target: &Path) -> std::io::Result<TempFile> {
        Self::beside_ending(target, UNLISTED_SUFFIX)
    }

    fn beside_ending(target: &Path, ending: &str) -> std::io::Result<TempFile> {
        let dir = parent_dir(target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "out".into());
        let prefix = format!("{TEMP_PREFIX}{}-{}-", owner_tag(), next_counter());
        // The prefix makes the name unique; the target's name follows, shortened where the
        // two together would pass the file-name limit (a legal 250-byte name must still be
        // writable), its extension kept last: some tools decide the format from it.
        let unique = prefix.clone()
            + &fit_name(&name, NAME_MAX.saturating_sub(prefix.len() + ending.len()))
            + ending;
        Ok(TempFile {
            temp: dir.join(unique),
            target: target.to_path_buf(),
            committed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.temp
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Creates (truncates) the temporary file for writing.
    pub fn create(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.temp)
    }

    /// Like [`TempFile::create`], readable and writable by the owner only ([`PRIVATE_FILE`]):
    /// for files that hold personal data or keys.
    pub fn create_private(&self) -> std::io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE)
            .open(&self.temp)?;
        // The mode of `open` only applies to a file it creates, and goes through the umask.
        f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))?;
        Ok(f)
    }

    /// fsyncs the temporary file, renames it to the target and fsyncs the folder.
    pub fn commit(mut self) -> std::io::Result<PathBuf> {
        File::open(&self.temp)?.sync_all()?;
        std::fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        sync_dir(parent_dir(&self.target))?;
        Ok(self.target.clone())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

fn next_counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static C: AtomicU64 = AtomicU64::new(0);
    C.fetch_add(1, Ordering::Relaxed)
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// This process's mark in the names of what it leaves while it runs (temporary files, work
/// folders): `<pid>.<start>`, where `<start>` is when the process started (clock ticks since
/// boot, `/proc/<pid>/stat`). A pid alone is not enough to tell that an owner is gone: pids
/// are reused (`pid_max` is 32768 on many machines), and a killed run's leftovers were kept
/// for as long as some other process held its pid. Where `/proc` cannot be read the mark is
/// the pid alone.
pub fn owner_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let pid = std::process::id();
        match process_start(pid) {
            Some(start) => format!("{pid}.{start}"),
            None => pid.to_string(),
        }
    })
}

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')': the fields
    // after the last ')' start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` exists (or exists under another user).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether the process that wrote an owner mark ([`owner_tag`]) still runs: its pid exists
/// and, when the mark has a start time, the process now holding that pid started then. A
/// live pid whose start time cannot be read counts as the owner (kept, never removed).
fn owner_alive(pid: u32, start: Option<u64>) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    match (start, process_start(pid)) {
        (Some(mark), Some(now)) => mark == now,
        _ => true,
    }
}

/// The owner mark in a name `PREFIX<pid>[.<start>]-…`, when the name has that form.
fn owner_after(name: &str, prefix: &str) -> Option<(u32, Option<u64>)> {
    let mark = name.strip_prefix(prefix)?.split('-').next()?;
    match mark.split_once('.') {
        Some((pid, start)) => Some((pid.parse().ok()?, Some(start.parse().ok()?))),
        None => Some((mark.parse().ok()?, None)),
    }
}

/// Whether `name` is a temporary file ([`TEMP_PREFIX`]`<owner>-…`) of a process that no
/// longer runs.
pub fn is_stale_temp(name: &str) -> bool {
    owner_after(name, TEMP_PREFIX).is_some_and(|(pid, start)| !owner_alive(pid, start))
}

/// Removes what a killed process (SIGKILL, power loss) left in `dir`: temporary files
/// ([`TEMP_PREFIX`]`<owner>-…`) and, when `work_prefix` is given, work folders
/// (`<work_prefix><owner>-…`) of processes that no longer run ([`owner_tag`]). What live
/// processes are writing (concurrent runs, this one) is kept. Returns how many entries were
/// removed.
pub fn sweep_stale(dir: &Path, work_prefix: Option<&str>) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let ((pid, start), is_dir) = if let Some(owner) = owner_after(&name, TEMP_PREFIX) {
            (owner, false)
        } else if let Some(owner) = work_prefix.and_then(|p| owner_after(&name, p)) {
            (owner, true)
        } else {
            continue;
        };
        if owner_alive(pid, start) {
            continue;
        }
        let path = e.path();
        let r = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match r {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed what an interrupted run left");
                removed += 1;
            }
            Err(err) => tracing::debug!(path = %path.display(), %err, "could not remove"),
        }
    }
    removed
}

/// fsyncs a folder so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `data` to `target` atomically (temp name, fsync, rename, fsync folder).
pub fn write_atomic(target: &Path, data: &[u8]) -> std::io::Result<()> {
    write_through(TempFile::beside(target)?, data)
}

/// Writes `data` to `tmp` and commits it to its target (fsync, rename, fsync folder).
pub fn write_through(tmp: TempFile, data: &[u8]) -> std::io::Result<()> {
    tmp.create()?.write_all(data)?;
    tmp.commit()?;
    Ok(())
}

/// Writes `data` to `target` atomically, as [`write_atomic`], readable by the owner only
/// ([`PRIVATE_FILE`]).
pub fn write_atomic_private(target: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = TempFile::beside(target)?;
    tmp.create_private()?.write_all(data)?;
    tmp.commit()?;
    Ok(())
}

/// Sets `path`'s permission bits to `mode`.
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// As [`create_dir_all_durable`], the folders it creates open to their owner only
/// ([`PRIVATE_DIR`]); folders that exist already are left as they are.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    create_dir_all_with(dir, Some(PRIVATE_DIR))
}

/// Creates `dir` with the folders above it that are missing, each one's entry made durable in
/// its parent: a file renamed into a new folder is not durable until the folder is.
pub fn create_dir_all_durable(dir: &Path) -> std::io::Result<()> {
    create_dir_all_with(dir, None)
}

fn create_dir_all_with(dir: &Path, mode: Option<u32>) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.is_dir() {
        missing.push(d);
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    match mode {
        Some(mode) => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)?;
            // The umask may have taken bits off; never adds any to folders that existed.
            for m in &missing {
                set_mode(m, mode)?;
            }
        }
        None => std::fs::create_dir_all(dir)?,
    }
    for m in missing {
        sync_dir(parent_dir(m))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_temp_file_disappears_and_target_is_untouched() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("out.mp4");
        {
            let t = TempFile::beside(&target).unwrap();
            std::fs::write(t.path(), b"partial").unwrap();
            assert!(t.path().exists());
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    /// A legal 250-byte output name could not be written: the temporary name beside it
    /// (prefix + name) passed the 255-byte limit and the encoder failed to open it.
    #[test]
    fn regression_issue_6_a_long_output_name_is_still_writable() {
        let d = tempfile::tempdir().unwrap();
        for name in [
            format!("{}.mp4", "c".repeat(246)),
            format!("{}.mp4.json", "é".repeat(120)),
            "x".repeat(255),
        ] {
            let target = d.path().join(&name);
            write_atomic(&target, b"ok").unwrap();
            assert_eq!(std::fs::read(&target).unwrap(), b"ok", "{name}");
            let t = TempFile::beside(&target).unwrap();
            let temp = t.path().file_name().unwrap().to_str().unwrap().to_string();
            assert!(
                temp.len() <= NAME_MAX && temp.starts_with(TEMP_PREFIX),
                "{temp}"
            );
            if name.ends_with(".mp4") {
                assert!(temp.ends_with(".mp4"), "{temp}");
            }
        }
    }

    #[test]
    fn fitted_names_keep_their_extension_and_their_characters_whole() {
        assert_eq!(fit_name("short.mp4", 200), "short.mp4");
        assert_eq!(fit_name("abcdefgh.mp4", 8), "abcd.mp4");
        assert_eq!(fit_name("ééé.mp4", 8), "éé.mp4"); // 'é' is 2 bytes: not cut in half
        assert_eq!(fit_name("abcdefgh", 5), "abcde");
        assert_eq!(fit_name("a.verylongextensionhere", 6), "a.very");
        for n in 0..30 {
            assert!(fit_name(&"ü".repeat(20), n).len() <= n);
        }
    }

    #[test]
    fn commit_moves_into_place() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("x.json");
        write_atomic(&target, b"{}").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"{}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn sha256_matches_known_value() {
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), sha256_bytes(b"abc"));
    }

    /// A run killed with SIGKILL left its temporary output (and ingest its work folder)
    /// behind for good: nothing ever removed them. They are swept when the next run writes
    /// into the same folder, unless their process still runs.
    #[test]
    fn regression_temp_files_of_killed_runs_were_never_removed() {
        let d = tempfile::tempdir().unwrap();
        // A pid that cannot exist (above the kernel's pid_max limit of 2^22).
        let dead = 4_194_304 + 17;
        let live = std::process::id();
        let stale = d.path().join(format!("{TEMP_PREFIX}{dead}-0-out.mp4"));
        let mine = d.path().join(format!("{TEMP_PREFIX}{live}-0-out.mp4"));
        let work = d.path().join(format!("ingest-{dead}-abc"));
        let other = d.path().join("keep.mp4");
        for f in [&stale, &mine, &other] {
            std::fs::write(f, b"x").unwrap();
        }
        std::fs::create_dir_all(work.join("sub")).unwrap();
        std::fs::write(work.join("sub/media.mp4"), b"x").unwrap();
        assert_eq!(sweep_stale(d.path(), None), 1);
        assert!(!stale.exists() && mine.exists() && other.exists() && work.exists());
        assert_eq!(sweep_stale(d.path(), Some("ingest-")), 1);
        assert!(!work.exists() && mine.exists() && other.exists());
    }

    /// CI: a killed ingest's work folder (raw input inside) was kept after every re-run, as
    /// its pid had been taken by another live process (pid_max 32768, pids near 29700). The
    /// owner mark now carries the process's start time: a live pid that started at another
    /// time is not the owner.
    #[test]
    fn regression_a_reused_pid_kept_a_killed_runs_work_folder() {
        let d = tempfile::tempdir().unwrap();
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = other.id();
        let start = process_start(pid).expect("/proc/<pid>/stat is readable here");
        let reused = d.path().join(format!("ingest-{pid}.{}-abc", start + 1));
        let owned = d.path().join(format!("ingest-{pid}.{start}-def"));
        let stale_temp = d
            .path()
            .join(format!("{TEMP_PREFIX}{pid}.{}-0-out.mp4", start + 7));
        let live_temp = d
            .path()
            .join(format!("{TEMP_PREFIX}{pid}.{start}-0-out.mp4"));
        // This process's own mark, and its pid with another start (a run before it).
        let mine = d
            .path()
            .join(format!("{TEMP_PREFIX}{}-3-out.mp4", owner_tag()));
        let my_pid_earlier = d
            .path()
            .join(format!("{TEMP_PREFIX}{}.1-3-out.mp4", std::process::id()));
        for dir in [&reused, &owned] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("media.flac"), b"x").unwrap();
        }
        for f in [&stale_temp, &live_temp, &mine, &my_pid_earlier] {
            std::fs::write(f, b"x").unwrap();
        }
        assert_eq!(sweep_stale(d.path(), Some("ingest-")), 3);
        assert!(!reused.exists() && !stale_temp.exists() && !my_pid_earlier.exists());
        assert!(owned.exists() && live_temp.exists() && mine.exists());
        other.kill().unwrap();
        other.wait().unwrap();
        assert_eq!(sweep_stale(d.path(), Some("ingest-")), 2);
        assert!(!owned.exists() && !live_temp.exists() && mine.exists());
    }

    #[test]
    fn owner_marks_parse_with_and_without_a_start_time() {
        assert_eq!(
            owner_after(".obscura-tmp-12.345-0-x.mp4", TEMP_PREFIX),
            Some((12, Some(345)))
        );
        assert_eq!(
            owner_after(".obscura-tmp-12-0-x.mp4", TEMP_PREFIX),
            Some((12, None))
        );
        assert_eq!(owner_after(".obscura-tmp-12.x-0-x.mp4", TEMP_PREFIX), None);
        assert_eq!(owner_after("ingest-x-1", "ingest-"), None);
        let (pid, start) = owner_after(&format!("ingest-{}-z", owner_tag()), "ingest-").unwrap();
        assert_eq!(pid, std::process::id());
        assert!(start.is_some());
        assert!(owner_alive(pid, start));
    }
}
