//! Object stores of a region: `file://` folders (the embedded default) and `s3://` buckets
//! (any S3-compatible endpoint) through the `object_store` crate.
//!
//! Owns: parsing store URLs, putting objects (atomically visible: local puts go through a
//! temporary file and a rename, S3 puts through one PUT or a completed multipart upload) with
//! retention tags and metadata where the store supports them, getting, listing, deleting.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
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
    /// For a folder store: its root, with symbolic links resolved once at open.
    local_root: Option<std::path::PathBuf>,
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
                std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
                // A root that is itself a link (an operator's choice) is resolved here once;
                // links below it are refused (see `confined`).
                let root =
                    std::fs::canonicalize(&root).map_err(|e| format!("{}: {e}", root.display()))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| e.to_string())?;
                Ok(Store {
                    url: url.into(),
                    inner: Arc::new(fs),
                    prefix: String::new(),
                    tags: false,
                    local_root: Some(root),
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
                    local_root: None,
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
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let mut p = root.clone();
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

    pub async fn put(&self, key: &str, data: Bytes, meta: &[(&str, String)]) -> Result<(), String> {
        self.confined(key)?;
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

    pub async fn delete(&self, key: &str) -> Result<(), String> {
        self.confined(key)?;
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(format!("{}: {e}", self.uri(key))),
        }
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
