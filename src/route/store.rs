//! Object stores of a region: `file://` folders (the embedded default) and `s3://` buckets
//! (any S3-compatible endpoint) through the `object_store` crate.
//!
//! Owns: parsing store URLs, putting objects (atomically visible and durable: a folder
//! store's puts go through `fsutil`'s temporary name → fsync → rename → fsync folder, the
//! temporary name unlisted; S3 puts through one PUT) with retention tags and metadata where
//! the store supports them, getting, listing, deleting, and removing what a killed process
//! left half-written in a folder store.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload, TagSet};

#[derive(Debug, Clone, PartialEq)]
pub enum StoreUrl {
    File {
        root: std::path::PathBuf,
    },
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
        allow_http: bool,
    },
}

impl StoreUrl {
    pub fn parse(s: &str) -> Result<StoreUrl, String> {
        let u = url::Url::parse(s).map_err(|e| format!("'{s}': not a URL ({e})"))?;
        match u.scheme() {
            "file" => {
                let p = u
                    .to_file_path()
                    .map_err(|_| format!("'{s}': a file URL needs an absolute path"))?;
                Ok(StoreUrl::File { root: p })
            }
            "s3" => {
                let bucket = u
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| format!("'{s}': no bucket"))?
                    .to_string();
                let mut endpoint = None;
                let mut region = None;
                let mut allow_http = false;
                for (k, v) in u.query_pairs() {
                    match k.as_ref() {
                        "endpoint" => {
                            allow_http |= v.starts_with("http://");
                            endpoint = Some(v.to_string());
                        }
                        "region" => region = Some(v.to_string()),
                        other => {
                            return Err(format!(
                                "'{s}': unknown parameter '{other}' (endpoint, region)"
                            ));
                        }
                    }
                }
                Ok(StoreUrl::S3 {
                    bucket,
                    prefix: u.path().trim_matches('/').to_string(),
                    endpoint,
                    region,
                    allow_http,
                })
            }
            other => Err(format!("'{s}': unsupported scheme '{other}' (file, s3)")),
        }
    }
}

/// A connected store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub url: String,
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    tags: bool,
    /// For a folder store: its folder.
    local: Option<Folder>,
}

/// The folder of a `file://` store.
#[derive(Clone)]
struct Folder {
    /// With symbolic links resolved once at open.
    root: std::path::PathBuf,
    /// The store itself (`Store::inner`), for the file that holds a key.
    fs: Arc<LocalFileSystem>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Store {
    pub fn open(url: &str) -> Result<Store, String> {
        match StoreUrl::parse(url)? {
            StoreUrl::File { root } => {
                crate::fsutil::create_dir_all_durable(&root)
                    .map_err(|e| format!("{}: {e}", root.display()))?;
                // A root that is itself a link (an operator's choice) is resolved here once;
                // links below it are refused (see `confined`).
                let root =
                    std::fs::canonicalize(&root).map_err(|e| format!("{}: {e}", root.display()))?;
                let fs =
                    Arc::new(LocalFileSystem::new_with_prefix(&root).map_err(|e| e.to_string())?);
                Ok(Store {
                    url: url.into(),
                    inner: fs.clone(),
                    prefix: String::new(),
                    tags: false,
                    local: Some(Folder { root, fs }),
                })
            }
            StoreUrl::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                allow_http,
            } => {
                let mut b =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&bucket);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                }
                if let Some(r) = region {
                    b = b.with_region(r);
                }
                b = b.with_allow_http(allow_http);
                let s3 = b.build().map_err(|e| e.to_string())?;
                Ok(Store {
                    url: url.into(),
                    inner: Arc::new(s3),
                    prefix,
                    tags: true,
                    local: None,
                })
            }
        }
    }

    fn path(&self, key: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// The URI of an object, for reports.
    pub fn uri(&self, key: &str) -> String {
        format!(
            "{}/{key}",
            self.url
                .trim_end_matches('/')
                .split('?')
                .next()
                .unwrap_or(&self.url)
        )
    }

    /// For a folder store: refuses a key whose path below the root passes through a symbolic
    /// link. One planted inside the store (say `clips` → elsewhere) would otherwise let a clip
    /// be written, read or deleted outside it.
    fn confined(&self, key: &str) -> Result<(), String> {
        let Some(folder) = &self.local else {
            return Ok(());
        };
        let mut p = folder.root.clone();
        for part in self.path(key).parts() {
            p.push(part.as_ref());
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "{}: {} is a symbolic link inside the store; refusing to follow it",
                        self.uri(key),
                        p.display()
                    ));
                }
                Ok(_) => {}
                Err(_) => break, // not there (yet): nothing below it can be a link
            }
        }
        Ok(())
    }

    /// For a folder store: the file that holds `key`.
    fn file_of(&self, key: &str) -> Option<Result<std::path::PathBuf, String>> {
        let folder = self.local.as_ref()?;
        Some(
            folder
                .fs
                .path_to_filesystem(&self.path(key))
                .map_err(|e| format!("{}: {e}", self.uri(key))),
        )
    }

    pub async fn put(&self, key: &str, data: Bytes, meta: &[(&str, String)]) -> Result<(), String> {
        self.put_with(key, data, meta, false).await
    }

    /// As [`Store::put`], for keys and originals: in a folder store the file is readable by
    /// its owner only (0600) and the folders made for it are 0700, its own folder included.
    pub async fn put_private(
        &self,
        key: &str,
        data: Bytes,
        meta: &[(&str, String)],
    ) -> Result<(), String> {
        self.put_with(key, data, meta, true).await
    }

    async fn put_with(
        &self,
        key: &str,
        data: Bytes,
        meta: &[(&str, String)],
        private: bool,
    ) -> Result<(), String> {
        self.confined(key)?;
        if let Some(file) = self.file_of(key) {
            // Not `object_store`'s own local put: it neither fsyncs the file nor its folder
            // (a power cut after the input was acknowledged could lose the clip), and a
            // process killed mid-put leaves its `name#1` beside the object for good.
            let file = file?;
            let uri = self.uri(key);
            return tokio::task::spawn_blocking(move || commit_file(&file, &data, private))
                .await
                .map_err(|e| format!("{uri}: {e}"))?
                .map_err(|e| format!("{uri}: {e}"));
        }
        let mut opts = PutOptions::default();
        if self.tags {
            let mut t = TagSet::default();
            let mut a = Attributes::new();
            for (k, v) in meta {
                t.push(k, v);
                a.insert(Attribute::Metadata(k.to_string().into()), v.clone().into());
            }
            opts.tags = t;
            opts.attributes = a;
        }
        self.inner
            .put_opts(&self.path(key), PutPayload::from_bytes(data), opts)
            .await
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", self.uri(key)))
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, String> {
        self.confined(key)?;
        match self.inner.get(&self.path(key)).await {
            Ok(r) => r.bytes().await.map(Some).map_err(|e| e.to_string()),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.uri(key))),
        }
    }

    /// User metadata of an object (S3 `x-amz-meta-*`), as the store returns it.
    pub async fn metadata(&self, key: &str) -> Result<Vec<(String, String)>, String> {
        self.confined(key)?;
        let r = self
            .inner
            .get(&self.path(key))
            .await
            .map_err(|e| format!("{}: {e}", self.uri(key)))?;
        Ok(r.attributes
            .iter()
            .filter_map(|(k, v)| match k {
                Attribute::Metadata(name) => Some((name.to_string(), v.to_string())),
                _ => None,
            })
            .collect())
    }

    /// Deletes an object; in a folder store also what killed processes left half-written
    /// beside it (an erased clip leaves nothing of its own behind).
    pub async fn delete(&self, key: &str) -> Result<(), String> {
        self.confined(key)?;
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(format!("{}: {e}", self.uri(key))),
        }
        if let Some(Ok(file)) = self.file_of(key)
            && let Some(dir) = file.parent()
        {
            crate::fsutil::sweep_stale(dir, None);
        }
        Ok(())
    }

    /// For a folder store: removes, everywhere below its root, the temporary files of
    /// processes that no longer run, and `object_store`'s own staging files (`name#<digits>`,
    /// left by puts of Obscura before 2026-12-05) untouched for an hour; with `dry_run` only
    /// counts them. Returns how many; 0 for other stores.
    pub fn sweep_interrupted(&self, dry_run: bool) -> usize {
        let Some(folder) = &self.local else {
            return 0;
        };
        let mut n = 0;
        let mut dirs = vec![folder.root.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                // Links are not followed (see `confined`).
                let Ok(kind) = e.file_type() else { continue };
                if kind.is_dir() {
                    dirs.push(e.path());
                    continue;
                }
                if !kind.is_file() {
                    continue;
                }
                let name = e.file_name().to_string_lossy().to_string();
                let stale = crate::fsutil::is_stale_temp(&name)
                    || (legacy_staging(&name)
                        && e.metadata()
                            .ok()
                            .and_then(|m| m.modified().ok())
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|age| age >= LEGACY_STAGING_AGE));
                if !stale {
                    continue;
                }
                if dry_run {
                    n += 1;
                } else if std::fs::remove_file(e.path()).is_ok() {
                    tracing::info!(path = %e.path().display(), "removed what an interrupted put left");
                    n += 1;
                }
            }
        }
        n
    }

    /// Keys (relative to the store) under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        self.confined(prefix)?;
        let p = self.path(prefix);
        let metas: Vec<_> = self
            .inner
            .list(Some(&p))
            .try_collect()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        Ok(metas
            .into_iter()
            .map(|m| {
                let loc = m.location.to_string();
                loc.strip_prefix(&strip).map(str::to_string).unwrap_or(loc)
            })
            .collect())
    }
}

/// Commits `data` as `file` of a folder store: missing folders created durably, what killed
/// processes left in the folder removed, then written under an unlisted temporary name,
/// fsynced, renamed, and the folder fsynced.
/// With `private`, the file is 0600 and its folder (and those made for it) 0700.
fn commit_file(file: &std::path::Path, data: &[u8], private: bool) -> std::io::Result<()> {
    let dir = file
        .parent()
        .ok_or_else(|| std::io::Error::other("an object's file has no folder"))?;
    if !private {
        crate::fsutil::create_dir_all_durable(dir)?;
        crate::fsutil::sweep_stale(dir, None);
        return crate::fsutil::write_through(crate::fsutil::TempFile::beside_unlisted(file)?, data);
    }
    crate::fsutil::create_private_dir_all(dir)?;
    crate::fsutil::set_mode(dir, crate::fsutil::PRIVATE_DIR)?;
    crate::fsutil::sweep_stale(dir, None);
    let tmp = crate::fsutil::TempFile::beside_unlisted(file)?;
    std::io::Write::write_all(&mut tmp.create_private()?, data)?;
    tmp.commit()?;
    Ok(())
}

/// How long an `object_store` staging file stays untouched before the sweep takes it for a
/// killed put's (it carries no owner mark to ask).
const LEGACY_STAGING_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// `object_store`'s name for a local put in progress: `name#<digits>`.
fn legacy_staging(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(stem, digits)| {
        !stem.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    }) && !name.starts_with(crate::fsutil::TEMP_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        assert_eq!(
            StoreUrl::parse("file:///var/x").unwrap(),
            StoreUrl::File {
                root: "/var/x".into()
            }
        );
        match StoreUrl::parse("s3://b/clips/eu?endpoint=http://127.0.0.1:9000&region=eu-west-1")
            .unwrap()
        {
            StoreUrl::S3 {
                bucket,
                prefix,
                allow_http,
                ..
            } => {
                assert_eq!(
                    (bucket.as_str(), prefix.as_str(), allow_http),
                    ("b", "clips/eu", true)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            StoreUrl::parse("ftp://x")
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(
            StoreUrl::parse("s3://b?secret=1")
                .unwrap_err()
                .contains("unknown parameter")
        );
        assert!(StoreUrl::parse("relative/path").is_err());
    }
}

#[cfg(test)]
mod folder_store_tests {
    use super::*;
    use crate::fsutil::{TEMP_PREFIX, UNLISTED_SUFFIX};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    }

    /// CI of 2026-12-04: the daemon SIGKILLed inside a put into a folder store left
    /// `clips/<id>/sidecar.json#1` (`object_store`'s staging name) in the store for good; its
    /// puts were not fsynced either. A killed put's file is now an owner-marked, unlisted
    /// temporary that the next put into the folder, a delete, or the retention sweep removes.
    #[test]
    fn regression_a_put_killed_midway_leaves_nothing_in_the_store_for_good() {
        let d = tempfile::tempdir().unwrap();
        let st = Store::open(&format!("file://{}", d.path().display())).unwrap();
        let rt = rt();
        let dead = 4_194_304 + 17; // above any pid_max: no such process
        let clip = d.path().join("clips/c1");
        std::fs::create_dir_all(&clip).unwrap();
        let torn = clip.join(format!(
            "{TEMP_PREFIX}{dead}-0-sidecar.json{UNLISTED_SUFFIX}"
        ));
        std::fs::write(&torn, b"{half").unwrap();
        // What a live process is writing right now (this one) is neither listed nor removed.
        let live = crate::fsutil::TempFile::beside_unlisted(&clip.join("media.mp4")).unwrap();
        std::fs::write(live.path(), b"in flight").unwrap();
        assert_eq!(rt.block_on(st.list("clips")).unwrap(), Vec::<String>::new());

        rt.block_on(st.put("clips/c1/sidecar.json", Bytes::from_static(b"{}"), &[]))
            .unwrap();
        assert!(
            !torn.exists(),
            "the dead process's half-written file is gone"
        );
        assert!(live.path().exists(), "a live writer's file is kept");
        assert_eq!(
            rt.block_on(st.list("clips")).unwrap(),
            vec!["clips/c1/sidecar.json".to_string()]
        );
        assert_eq!(
            rt.block_on(st.get("clips/c1/sidecar.json")).unwrap(),
            Some(Bytes::from_static(b"{}"))
        );
        drop(live);
        assert_eq!(names(&clip), vec!["sidecar.json"]);

        // Leftovers of the old puts: an hour old, swept; fresh ones kept (no owner to ask).
        let old = clip.join("media.mp4#1");
        let fresh = clip.join("sidecar.json#2");
        std::fs::write(&old, b"x").unwrap();
        std::fs::write(&fresh, b"x").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - LEGACY_STAGING_AGE * 2)
            .unwrap();
        let torn2 = d
            .path()
            .join(format!("{TEMP_PREFIX}{dead}-3-other{UNLISTED_SUFFIX}"));
        std::fs::write(&torn2, b"x").unwrap();
        assert_eq!(st.sweep_interrupted(true), 2, "dry run counts");
        assert!(old.exists() && torn2.exists());
        assert_eq!(st.sweep_interrupted(false), 2);
        assert!(!old.exists() && !torn2.exists() && fresh.exists());

        // Deleting an object removes dead writers' files beside it.
        std::fs::write(&torn, b"{half").unwrap();
        rt.block_on(st.delete("clips/c1/sidecar.json")).unwrap();
        assert_eq!(names(&clip), vec!["sidecar.json#2"]);
    }

    #[test]
    fn a_put_into_new_folders_creates_them_and_writes_whole() {
        let d = tempfile::tempdir().unwrap();
        let st = Store::open(&format!("file://{}", d.path().display())).unwrap();
        let rt = rt();
        let data = Bytes::from(vec![7u8; 1 << 20]);
        rt.block_on(st.put("a/b/c/media.mp4", data.clone(), &[]))
            .unwrap();
        assert_eq!(rt.block_on(st.get("a/b/c/media.mp4")).unwrap(), Some(data));
        assert_eq!(names(&d.path().join("a/b/c")), vec!["media.mp4"]);
        // Overwrite is whole as well.
        rt.block_on(st.put("a/b/c/media.mp4", Bytes::from_static(b"v2"), &[]))
            .unwrap();
        assert_eq!(
            std::fs::read(d.path().join("a/b/c/media.mp4")).unwrap(),
            b"v2"
        );
    }
}
