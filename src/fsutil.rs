//! Durable file commits and hashing.
//!
//! Owns: the "temporary name in the same folder → fsync → rename → fsync folder" protocol
//! every output goes through, so that a crash or failure never leaves a partial file at the
//! final name, and sha256 of files. Must not touch: media or models.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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

impl TempFile {
    /// Reserves a temporary name in `target`'s folder. The file itself is created by whoever
    /// writes it (e.g. a GStreamer filesink) or by [`TempFile::create`].
    pub fn beside(target: &Path) -> std::io::Result<TempFile> {
        let dir = parent_dir(target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "out".into());
        let unique = format!(
            "{TEMP_PREFIX}{}-{}-{}",
            std::process::id(),
            next_counter(),
            // Keep the extension last: some tools decide the format from it.
            name
        );
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

/// fsyncs a folder so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `data` to `target` atomically (temp name, fsync, rename, fsync folder).
pub fn write_atomic(target: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = TempFile::beside(target)?;
    {
        let mut f = tmp.create()?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    tmp.commit()?;
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
}
