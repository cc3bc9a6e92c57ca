//! Disclosure packages for a law-enforcement or court request (`obscura disclose`): a folder
//! with the redacted media and the sidecars of the selected clips (their decrypted originals
//! with `--originals`), a manifest listing every file with its sha256 and size, and the
//! manifest's Ed25519 signature under the region's disclosure key.
//!
//! Layout: `manifest.json`, `manifest.sig` (the 64 raw signature bytes over `manifest.json`
//! exactly as written), `signing-key.pub.pem` (the public key, SubjectPublicKeyInfo PEM: the
//! recipient can check the signature with `openssl pkeyutl -verify -pubin -inkey
//! signing-key.pub.pem -rawin -in manifest.json -sigfile manifest.sig`), and
//! `clips/<clip>/{media.<ext>, sidecar.json, original.<ext>}`. The package is written under a
//! temporary name beside its final folder and renamed into place once complete: a failed
//! disclosure leaves nothing at the final name.
//!
//! Owns: the package layout, the manifest format, the signing key's encoding, writing a
//! package (0700 folders, 0600 files, each file durable) and verifying one. Must not touch:
//! stores, the vault or the audit log (the router selects the clips, holds the key in the
//! region's key store and records the disclosure).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::Selector;

/// The manifest's `format`.
pub const FORMAT: &str = "obscura-disclosure/1";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const PUBLIC_KEY: &str = "signing-key.pub.pem";
/// The signing key's object in a region's key store (the 32-byte Ed25519 seed), created on
/// first use.
pub const SIGNING_KEY: &str = "keys/disclose/ed25519.key";
/// Its public key, beside it (PEM), for the operator to hand to recipients apart from any
/// package.
pub const SIGNING_PUB: &str = "keys/disclose/ed25519.pub.pem";
/// Prefix of the temporary folder a package is written in, beside its final folder.
pub const STAGING_PREFIX: &str = ".obscura-disclose-";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum DiscloseError {
    /// The folder is not a package, or the out folder cannot take one.
    #[error("{}: {why}", path.display())]
    Unusable { path: PathBuf, why: String },
    /// A key file that cannot be read as an Ed25519 public key, or a stored signing key that
    /// is not one.
    #[error("{}: {why}", path.display())]
    BadKey { path: PathBuf, why: String },
    /// The signature does not match the manifest under the key checked against.
    #[error("{}: the signature does not match {MANIFEST} under {key} (the manifest was changed, or another key signed it)", path.display())]
    BadSignature { path: PathBuf, key: String },
    /// Files changed, missing or added since the package was signed.
    #[error("{}: the package does not match its signed manifest: {}", path.display(), problems.join("; "))]
    Tampered {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DiscloseError {
    /// Exit status class (see `cli::exit`): 1 a package that fails verification, 2 a folder
    /// or key file that cannot be used, 4 a package that could not be written.
    pub fn exit_code(&self) -> u8 {
        match self {
            DiscloseError::BadSignature { .. } | DiscloseError::Tampered { .. } => 1,
            DiscloseError::Unusable { .. } | DiscloseError::BadKey { .. } => 2,
            DiscloseError::Io { .. } => 4,
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiscloseError + '_ {
    move |source| DiscloseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What was asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Selection {
    pub scope: Selector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `--originals`.
    pub originals: bool,
}

/// A clip given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GivenClip {
    pub id: String,
    pub device: String,
    pub account: String,
    pub region: String,
    pub recorded_at: String,
    /// The cases of the holds in force over it.
    pub holds: Vec<String>,
    /// Restricted, given because a hold of the disclosure's case covers it.
    pub restricted: bool,
    /// Its original is in the package.
    pub original: bool,
}

/// Something selected and not given, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Withheld {
    pub clip: String,
    /// `clip` (nothing of it given) or `original` (its redacted media given, not the original).
    pub what: String,
    pub why: String,
}

/// A file of the package.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Relative to the package folder, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub clip: String,
    /// media | sidecar | original
    pub kind: String,
}

/// The signed manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub case: String,
    pub recipient: String,
    /// Who made the disclosure (`--by`, else `$USER`).
    pub by: String,
    pub created_at: String,
    /// The region whose key signed it.
    pub region: String,
    pub selection: Selection,
    pub clips: Vec<GivenClip>,
    #[serde(default)]
    pub withheld: Vec<Withheld>,
    pub files: Vec<FileEntry>,
    /// The signer's Ed25519 public key, hex.
    pub public_key: String,
}

/// The signing key from its stored bytes (the 32-byte seed).
pub fn signing_key(stored: &[u8], path: &Path) -> Result<SigningKey, DiscloseError> {
    let seed: [u8; 32] = stored.try_into().map_err(|_| DiscloseError::BadKey {
        path: path.to_path_buf(),
        why: format!(
            "not an Ed25519 signing key ({} bytes, 32 expected)",
            stored.len()
        ),
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A fresh signing key's seed.
pub fn new_signing_key() -> [u8; 32] {
    super::vault::new_key()
}

/// The public key as SubjectPublicKeyInfo PEM.
pub fn public_pem(key: &VerifyingKey) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

/// Reads a public key: SubjectPublicKeyInfo PEM (as in packages) or 64 hex digits.
pub fn parse_public(text: &str, path: &Path) -> Result<VerifyingKey, DiscloseError> {
    let bad = |why: String| DiscloseError::BadKey {
        path: path.to_path_buf(),
        why,
    };
    let t = text.trim();
    let raw: Vec<u8> = if let Some(body) = t
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|b| b.strip_suffix("-----END PUBLIC KEY-----"))
    {
        let b64: String = body.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(format!("not PEM: {e}")))?;
        der.strip_prefix(&SPKI_PREFIX[..])
            .ok_or_else(|| bad("not an Ed25519 public key (SubjectPublicKeyInfo)".into()))?
            .to_vec()
    } else {
        hex::decode(t).map_err(|_| {
            bad("neither a PEM public key nor 64 hex digits of an Ed25519 key".into())
        })?
    };
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| bad(format!("{} key bytes, 32 expected", raw.len())))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| bad(format!("not an Ed25519 public key: {e}")))
}

/// Checks a package's out folder before anything is gathered: it may exist only as an empty
/// folder.
pub fn check_out(out: &Path) -> Result<(), DiscloseError> {
    let unusable = |why: &str| DiscloseError::Unusable {
        path: out.to_path_buf(),
        why: why.to_string(),
    };
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(out)(e)),
        Ok(m) if !m.is_dir() => Err(unusable(
            "exists and is not a folder; --out names a new or empty folder",
        )),
        Ok(_) => {
            let mut entries = std::fs::read_dir(out).map_err(io(out))?;
            if entries.next().is_some() {
                Err(unusable(
                    "exists and is not empty; --out names a new or empty folder (nothing written)",
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// A package being written in a temporary folder beside its final one; dropped without
/// [`Package::commit`], the temporary folder is removed.
pub struct Package {
    staging: PathBuf,
    out: PathBuf,
    files: Vec<FileEntry>,
    committed: bool,
}

impl Package {
    /// Starts a package for `out` (see [`check_out`]). Temporary folders of killed runs beside
    /// it are removed first (they hold personal data).
    pub fn start(out: &Path) -> Result<Package, DiscloseError> {
        check_out(out)?;
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| DiscloseError::Unusable {
                path: out.to_path_buf(),
                why: "names no folder".into(),
            })?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        crate::fsutil::create_private_dir_all(&parent).map_err(io(&parent))?;
        crate::fsutil::sweep_stale(&parent, Some(STAGING_PREFIX));
        let staging = tempfile::Builder::new()
            .prefix(&format!("{STAGING_PREFIX}{}-", crate::fsutil::owner_tag()))
            .suffix(&format!("-{}", crate::fsutil::fit_name(&name, 100)))
            .tempdir_in(&parent)
            .map_err(io(&parent))?
            .keep();
        crate::fsutil::set_mode(&staging, crate::fsutil::PRIVATE_DIR).map_err(io(&staging))?;
        Ok(Package {
            staging,
            out: out.to_path_buf(),
            files: Vec::new(),
            committed: false,
        })
    }

    /// Adds `clips/<clip>/<name>`, durably, 0600.
    pub fn add(
        &mut self,
        clip: &str,
        name: &str,
        kind: &str,
        data: &[u8],
    ) -> Result<(), DiscloseError> {
        let dir = self.staging.join("clips").join(clip);
        crate::fsutil::create_private_dir_all(&dir).map_err(io(&dir))?;
        let p = dir.join(name);
        crate::fsutil::write_atomic_private(&p, data).map_err(io(&p))?;
        self.files.push(FileEntry {
            path: format!("clips/{clip}/{name}"),
            sha256: crate::fsutil::sha256_bytes(data),
            bytes: data.len() as u64,
            clip: clip.to_string(),
            kind: kind.to_string(),
        });
        Ok(())
    }

    /// The files added so far.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// Writes the public key, the manifest (its `files` and `public_key` filled in here) and
    /// its signature, all still under the temporary name. Returns the manifest's bytes.
    pub fn seal(
        &mut self,
        mut manifest: Manifest,
        key: &SigningKey,
    ) -> Result<Vec<u8>, DiscloseError> {
        let public = key.verifying_key();
        manifest.files = self.files.clone();
        manifest.public_key = hex::encode(public.as_bytes());
        let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        let sig = key.sign(&body);
        for (name, data) in [
            (PUBLIC_KEY, public_pem(&public).into_bytes()),
            (MANIFEST, body.clone()),
            (SIGNATURE, sig.to_bytes().to_vec()),
        ] {
            let p = self.staging.join(name);
            crate::fsutil::write_atomic_private(&p, &data).map_err(io(&p))?;
        }
        Ok(body)
    }

    /// Renames the sealed package to its final folder (replacing it when it is an empty
    /// folder) and makes that durable.
    pub fn commit(mut self) -> Result<PathBuf, DiscloseError> {
        check_out(&self.out)?;
        std::fs::rename(&self.staging, &self.out).map_err(io(&self.out))?;
        self.committed = true;
        let parent = match self.out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        crate::fsutil::sync_dir(parent).map_err(io(parent))?;
        Ok(self.out.clone())
    }
}

impl Drop for Package {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// What `disclose verify` found (all of it checked).
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub ok: bool,
    pub case: String,
    pub recipient: String,
    pub created_at: String,
    pub region: String,
    pub clips: usize,
    pub files: usize,
    pub withheld: usize,
    pub public_key: String,
    /// `--key` (the key given) or `package` (the key inside the package).
    pub key_from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Verifies the package in `dir`: the signature over `manifest.json` under `key` (else the
/// key inside the package), the package's key file against the manifest, and every file:
/// each listed one present with its sha256 and size, nothing else there.
pub fn verify(dir: &Path, key: Option<&Path>) -> Result<Verified, DiscloseError> {
    let not_package = |why: String| DiscloseError::Unusable {
        path: dir.to_path_buf(),
        why,
    };
    if !dir.is_dir() {
        return Err(not_package("not a folder".into()));
    }
    let mp = dir.join(MANIFEST);
    let body = std::fs::read(&mp).map_err(|e| {
        not_package(format!(
            "no readable {MANIFEST} ({e}): not a disclosure package"
        ))
    })?;
    let sp = dir.join(SIGNATURE);
    let sig = std::fs::read(&sp).map_err(|e| DiscloseError::Tampered {
        path: dir.to_path_buf(),
        problems: vec![format!("{SIGNATURE}: {e}")],
    })?;
    let pp = dir.join(PUBLIC_KEY);
    let packaged = std::fs::read_to_string(&pp)
        .ok()
        .and_then(|t| parse_public(&t, &pp).ok());
    let (public, key_from) = match key {
        Some(k) => {
            let t = std::fs::read_to_string(k).map_err(|e| DiscloseError::BadKey {
                path: k.to_path_buf(),
                why: e.to_string(),
            })?;
            (parse_public(&t, k)?, "--key")
        }
        None => (
            packaged.ok_or_else(|| DiscloseError::Tampered {
                path: dir.to_path_buf(),
                problems: vec![format!(
                    "{PUBLIC_KEY} is missing or not an Ed25519 public key (pass --key)"
                )],
            })?,
            "package",
        ),
    };
    let key_hex = hex::encode(public.as_bytes());
    let bad_sig = || DiscloseError::BadSignature {
        path: dir.to_path_buf(),
        key: format!("key {key_hex} (from {key_from})"),
    };
    let sig = Signature::from_slice(&sig).map_err(|_| bad_sig())?;
    public.verify(&body, &sig).map_err(|_| bad_sig())?;
    let m: Manifest = serde_json::from_slice(&body).map_err(|e| DiscloseError::Tampered {
        path: dir.to_path_buf(),
        problems: vec![format!("{MANIFEST}: signed but not a manifest: {e}")],
    })?;
    let mut problems = Vec::new();
    if m.format != FORMAT {
        problems.push(format!(
            "{MANIFEST}: format {:?}, expected {FORMAT:?}",
            m.format
        ));
    }
    if m.public_key != key_hex {
        problems.push(format!(
            "{MANIFEST} names signer {} but key {key_hex} was checked",
            m.public_key
        ));
    }
    if packaged.is_none_or(|p| p != public) {
        problems.push(format!(
            "{PUBLIC_KEY}: not the key that signed the manifest"
        ));
    }
    let found = walk(dir, &mut problems);
    let mut listed = BTreeSet::new();
    for f in &m.files {
        if !safe_relative(&f.path) || [MANIFEST, SIGNATURE, PUBLIC_KEY].contains(&f.path.as_str()) {
            problems.push(format!("{MANIFEST} lists an unsafe path {:?}", f.path));
            continue;
        }
        if !listed.insert(f.path.clone()) {
            problems.push(format!("{MANIFEST} lists {} twice", f.path));
            continue;
        }
        if !found.contains(&f.path) {
            problems.push(format!("{} is missing", f.path));
            continue;
        }
        let p = dir.join(&f.path);
        match (std::fs::metadata(&p), crate::fsutil::sha256_file(&p)) {
            (Ok(md), Ok(h)) => {
                if md.len() != f.bytes || h != f.sha256 {
                    problems.push(format!(
                        "{} was changed ({} bytes, sha256 {h}; the manifest says {} bytes, sha256 {})",
                        f.path,
                        md.len(),
                        f.bytes,
                        f.sha256
                    ));
                }
            }
            (Err(e), _) | (_, Err(e)) => problems.push(format!("{}: {e}", f.path)),
        }
    }
    for extra in found.iter().filter(|p| {
        !listed.contains(*p) && ![MANIFEST, SIGNATURE, PUBLIC_KEY].contains(&p.as_str())
    }) {
        problems.push(format!("{extra} is not in the manifest (added)"));
    }
    if !problems.is_empty() {
        return Err(DiscloseError::Tampered {
            path: dir.to_path_buf(),
            problems,
        });
    }
    Ok(Verified {
        ok: true,
        case: m.case,
        recipient: m.recipient,
        created_at: m.created_at,
        region: m.region,
        clips: m.clips.len(),
        files: m.files.len(),
        withheld: m.withheld.len(),
        public_key: key_hex,
        key_from: key_from.into(),
        note: (key_from == "package").then(|| {
            "checked against the key inside the package: this proves the package is whole, not who made it; pass --key with the region's published key (keys/disclose/ed25519.pub.pem in its key store) to prove that".to_string()
        }),
    })
}

/// A relative path of plain names only.
fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\\')
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Every regular file under `dir`, relative and `/`-separated; links, other special files and
/// empty folders are problems (a package holds none).
fn walk(dir: &Path, problems: &mut Vec<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("{}: {e}", d.display()));
                continue;
            }
        };
        let mut empty = true;
        for e in entries.flatten() {
            empty = false;
            let name = e.file_name().to_string_lossy().to_string();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push((e.path(), r)),
                Ok(t) if t.is_file() => {
                    out.insert(r);
                }
                Ok(_) => problems.push(format!("{r} is not a plain file (added)")),
                Err(err) => problems.push(format!("{r}: {err}")),
            }
        }
        if empty && !rel.is_empty() {
            problems.push(format!(
                "{rel}/ is an empty folder not in the manifest (added)"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_read_back_from_pem_and_hex() {
        let k = SigningKey::from_bytes(&[7u8; 32]);
        let v = k.verifying_key();
        let pem = public_pem(&v);
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"),
            "{pem}"
        );
        assert_eq!(parse_public(&pem, Path::new("k")).unwrap(), v);
        assert_eq!(
            parse_public(&hex::encode(v.as_bytes()), Path::new("k")).unwrap(),
            v
        );
        assert!(
            parse_public(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
                Path::new("k")
            )
            .is_err()
        );
        assert!(parse_public("zz", Path::new("k")).is_err());
        assert!(signing_key(&[1u8; 31], Path::new("k")).is_err());
    }

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            case: "c".into(),
            recipient: "r".into(),
            by: "me".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            region: "eu".into(),
            selection: Selection {
                scope: Selector::Device("cam-1".into()),
                from: None,
                to: None,
                region: None,
                originals: false,
            },
            clips: vec![],
            withheld: vec![],
            files: vec![],
            public_key: String::new(),
        }
    }

    #[test]
    fn a_package_is_written_whole_and_a_signed_manifest_cannot_reach_outside_it() {
        let tmp = tempfile::tempdir().unwrap();
        // What a killed run left beside --out (its owner, pid 4194303, is gone) is removed.
        let stale = tmp
            .path()
            .join(format!("{STAGING_PREFIX}4194303.1-abc-pkg"));
        std::fs::create_dir(&stale).unwrap();
        let out = tmp.path().join("pkg");
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let mut p = Package::start(&out).unwrap();
        assert!(!stale.exists(), "a killed run's staging folder is swept");
        p.add(&"a".repeat(64), "media.mp4", "media", b"frames")
            .unwrap();
        assert!(!out.exists(), "nothing at --out before commit");
        p.seal(manifest(), &key).unwrap();
        p.commit().unwrap();
        let v = verify(&out, None).unwrap();
        assert_eq!((v.files, v.key_from.as_str()), (1, "package"));
        // Dropped before commit: nothing left, beside --out included.
        let out2 = tmp.path().join("pkg2");
        let mut p = Package::start(&out2).unwrap();
        p.add("b", "x", "media", b"y").unwrap();
        drop(p);
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("pkg")], "{left:?}");
        // A validly signed manifest naming a path outside the package is refused.
        let mut m = manifest();
        m.public_key = hex::encode(key.verifying_key().as_bytes());
        m.files.push(FileEntry {
            path: "../outside".into(),
            sha256: crate::fsutil::sha256_bytes(b""),
            bytes: 0,
            clip: "a".into(),
            kind: "media".into(),
        });
        std::fs::write(tmp.path().join("outside"), b"").unwrap();
        let body = serde_json::to_vec_pretty(&m).unwrap();
        std::fs::write(out.join(MANIFEST), &body).unwrap();
        std::fs::write(out.join(SIGNATURE), key.sign(&body).to_bytes()).unwrap();
        match verify(&out, None) {
            Err(DiscloseError::Tampered { problems, .. }) => {
                assert!(
                    problems.iter().any(|p| p.contains("unsafe path")),
                    "{problems:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_plain_relative_paths_are_safe() {
        assert!(safe_relative("clips/a/media.mp4"));
        for bad in ["", "/etc/passwd", "../x", "clips/../../x", "a\\b", "./x"] {
            assert!(!safe_relative(bad), "{bad:?}");
        }
    }
}
