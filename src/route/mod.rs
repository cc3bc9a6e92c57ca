//! Routing: classify each clip, store it in its device's region with retention metadata, and
//! the operations behind the privacy promises — erase, export, hold, retention sweep — each
//! recorded in the append-only audit log.
//!
//! Owns: the region stores and their key layout, clip records (the sidecar's `clip` section),
//! quarantine, and the audit trail. Must not touch: media processing (it calls `pipeline`).
//!
//! Store layout (per region): `clips/<id>/media.<ext>` and `clips/<id>/sidecar.json` (written
//! last: a clip exists once its sidecar does), `holds/<id>.json`; the vault holds
//! `originals/<id>.enc`, the key store `keys/<id>.key`. Clip ids derive from the input's sha256
//! and the device ([`clip_id`]), so
//! ingesting the same input twice finds the first clip and writes nothing.

pub mod audit;
pub mod ids;
pub mod store;
pub mod vault;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Config, DeviceConfig, parse_duration};
use crate::pipeline::{Control, Job, PipelineError};
use crate::types::Sidecar;
use audit::{AuditLog, Event};
use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("unknown device '{0}' (not in the configuration)")]
    UnknownDevice(String),
    #[error("unknown region '{0}'")]
    UnknownRegion(String),
    #[error("invalid id: {0}")]
    InvalidId(String),
    #[error("device '{device}' is marked minor and the clip holds personal data: not stored")]
    Minor { device: String },
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("store: {0}")]
    Store(String),
    #[error("{0}")]
    Audit(#[from] audit::AuditError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("vault: {0}")]
    Vault(#[from] vault::VaultError),
    #[error("{0}")]
    Config(String),
}

impl RouteError {
    /// Exit status class (see `cli::exit`).
    pub fn exit_code(&self) -> u8 {
        match self {
            RouteError::Pipeline(e) => crate::cli::exit_code_for(e),
            RouteError::UnknownDevice(_)
            | RouteError::UnknownRegion(_)
            | RouteError::InvalidId(_)
            | RouteError::Minor { .. } => 1,
            RouteError::Config(_) => 2,
            _ => 4,
        }
    }

    /// True when the input itself is at fault (corrupt, unsupported, unknown device, minor…):
    /// retrying cannot help, the input belongs in the quarantine. False for passing causes
    /// (store unreachable, disk full, cancelled, environment), where the input is kept.
    pub fn is_permanent(&self) -> bool {
        match self {
            RouteError::Pipeline(PipelineError::Cancelled { .. }) => false,
            e => e.exit_code() == 1,
        }
    }

    /// True when the run was cancelled (shutdown): not the input's fault, nothing to record.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, RouteError::Pipeline(PipelineError::Cancelled { .. }))
    }
}

/// A stored object of a clip.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredObject {
    /// media | sidecar | original | key
    pub kind: String,
    pub key: String,
    pub uri: String,
    pub sha256: String,
    pub bytes: u64,
}

/// The routing record of a clip, stored in its sidecar as `clip`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClipInfo {
    pub id: String,
    pub device: String,
    pub account: String,
    pub region: String,
    pub recorded_at: String,
    pub ingested_at: String,
    /// `personal` (a face or a voice was found) or `non_personal`.
    pub classification: String,
    /// What made it personal: `face`, `voice`.
    pub labels: Vec<String>,
    pub face_tracks: u64,
    pub speech_s: f64,
    pub legal_basis: String,
    pub retain_until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originals_retain_until: Option<String>,
    /// Hold state when the record was written; current holds are `holds/<id>.json`.
    pub hold: bool,
    /// Every object stored for the clip, with its sha256 (the sidecar itself excluded).
    pub objects: Vec<StoredObject>,
}

/// The sidecar as stored: the redaction sidecar plus the clip record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSidecar {
    #[serde(flatten)]
    pub sidecar: Sidecar,
    pub clip: ClipInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hold {
    pub clip: String,
    pub reason: String,
    pub set_at: String,
}

struct Region {
    store: Store,
    vault: Option<Store>,
    keys: Store,
}

/// The routing layer over a configuration.
pub struct Router {
    cfg: Config,
    regions: BTreeMap<String, Region>,
    devices: BTreeMap<String, DeviceConfig>,
    audit: AuditLog,
    rt: tokio::runtime::Runtime,
}

fn now() -> DateTime<Utc> {
    // Tests move the clock with OBSCURA_NOW (RFC 3339); nothing else reads it.
    std::env::var("OBSCURA_NOW")
        .ok()
        .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(Utc::now)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One object to upload: store, key, bytes, metadata/tags.
type Put<'a> = (Store, String, Bytes, Vec<(&'a str, String)>);

/// Selects clips for erase and hold.
#[derive(Debug, Clone)]
pub enum Selector {
    Device(String),
    Account(String),
    Clip(String),
}

impl Selector {
    fn validate(&self) -> Result<(), RouteError> {
        match self {
            Selector::Device(d) => ids::device(d),
            Selector::Account(a) => ids::account(a),
            Selector::Clip(c) => ids::clip(c),
        }
        .map_err(RouteError::InvalidId)
    }
    fn matches(&self, c: &ClipInfo) -> bool {
        match self {
            Selector::Device(d) => &c.device == d,
            Selector::Account(a) => &c.account == a,
            Selector::Clip(id) => &c.id == id,
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct IngestReport {
    pub clip: String,
    pub region: String,
    pub classification: String,
    /// False when the clip was already stored (re-ingest is idempotent).
    pub stored: bool,
    pub objects: Vec<String>,
    pub retain_until: String,
    /// Frames processed (0 when the clip was already stored).
    #[serde(skip_serializing_if = "is_zero")]
    pub frames: u64,
    /// Face tracks found.
    pub face_tracks: u64,
    /// Seconds of speech found.
    pub speech_s: f64,
    /// The processing timings of this run (absent when the clip was already stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<crate::types::Timing>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct EraseReport {
    pub erased: Vec<String>,
    pub held: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SweepReport {
    pub dry_run: bool,
    pub expired: Vec<String>,
    pub held: Vec<String>,
    pub deleted: Vec<String>,
    pub originals_deleted: Vec<String>,
    /// Half-written files that killed processes left in folder stores, removed (counted
    /// only, with `dry_run`).
    pub interrupted_removed: usize,
}

impl Router {
    pub fn new(cfg: &Config) -> Result<Router, RouteError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RouteError::Config(format!("runtime: {e}")))?;
        let mut regions = BTreeMap::new();
        for (name, r) in &cfg.regions {
            ids::region(name).map_err(RouteError::Config)?;
            let store = Store::open(&r.store).map_err(RouteError::Config)?;
            let vault = r
                .vault
                .as_deref()
                .map(Store::open)
                .transpose()
                .map_err(RouteError::Config)?;
            let keys = match &r.keys {
                Some(k) => Store::open(k).map_err(RouteError::Config)?,
                None => store.clone(),
            };
            regions.insert(name.clone(), Region { store, vault, keys });
        }
        let mut devices = cfg.devices.clone();
        if let Some(f) = &cfg.devices_file {
            devices.extend(load_devices_file(f)?);
        }
        for (id, d) in &devices {
            ids::device(id).map_err(|m| RouteError::Config(format!("devices: {m}")))?;
            if !regions.contains_key(&d.region) {
                return Err(RouteError::Config(format!(
                    "device '{id}': unknown region '{}'",
                    d.region
                )));
            }
        }
        Ok(Router {
            cfg: cfg.clone(),
            regions,
            devices,
            audit: AuditLog::new(&cfg.paths.audit),
            rt,
        })
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    fn region(&self, name: &str) -> Result<&Region, RouteError> {
        self.regions
            .get(name)
            .ok_or_else(|| RouteError::UnknownRegion(name.to_string()))
    }

    /// Looks the device up (validating the untrusted id first).
    pub fn device(&self, id: &str) -> Result<&DeviceConfig, RouteError> {
        ids::device(id).map_err(RouteError::InvalidId)?;
        self.devices
            .get(id)
            .ok_or_else(|| RouteError::UnknownDevice(id.to_string()))
    }

    /// Redacts, classifies and stores one input for `device`. On any failure nothing is
    /// stored and the input is copied to the quarantine folder with a reason file.
    pub fn ingest(
        &self,
        input: &Path,
        device: &str,
        recorded_at: Option<DateTime<Utc>>,
        ctl: &Control,
    ) -> Result<IngestReport, RouteError> {
        match self.try_ingest(input, device, recorded_at, ctl) {
            Ok(r) => Ok(r),
            Err(e) if e.is_cancelled() => Err(e),
            Err(RouteError::Minor { device }) => {
                // A minor's personal data is not kept anywhere, the quarantine included.
                // The caller's file is left alone here, so a failed audit entry is only logged.
                let _ = self.refuse_minor(input, &device);
                Err(RouteError::Minor { device })
            }
            Err(e) => {
                let q = self.quarantine(input, device, &e);
                if let Err(qe) = q {
                    tracing::error!(error = %qe, "could not quarantine {}", input.display());
                }
                Err(e)
            }
        }
    }

    /// [`Router::ingest`] without the quarantine: the caller decides what a failure means
    /// (the daemon keeps inputs that failed for a passing reason and retries them).
    pub fn try_ingest(
        &self,
        input: &Path,
        device_id: &str,
        recorded_at: Option<DateTime<Utc>>,
        ctl: &Control,
    ) -> Result<IngestReport, RouteError> {
        let dev = self.device(device_id)?.clone();
        let region = self.region(&dev.region)?;
        let input_sha = crate::fsutil::sha256_file(input).map_err(|source| RouteError::Io {
            path: input.to_path_buf(),
            source,
        })?;
        let clip_id = clip_id(&input_sha, device_id);
        // Work folders carry their owner's mark: those of killed runs are swept here, before
        // anything can return early — a run killed after storing its clip leaves its folder,
        // and the re-runs that follow may all be duplicates.
        crate::fsutil::sweep_stale(&self.cfg.paths.work, Some("ingest-"));
        // Idempotent: the clip exists once its sidecar does.
        let sidecar_key = format!("clips/{clip_id}/sidecar.json");
        if let Some(existing) = self
            .rt
            .block_on(region.store.get(&sidecar_key))
            .map_err(RouteError::Store)?
        {
            let s: StoredSidecar = serde_json::from_slice(&existing)
                .map_err(|e| RouteError::Store(format!("{sidecar_key}: {e}")))?;
            // A run killed after the sidecar was stored but before its audit entry: the
            // entry is written now (once), so that every stored clip is in the audit log.
            if !self.audit.has("ingest", &clip_id)? {
                self.audit.append(Event {
                    action: "ingest".into(),
                    clip: Some(clip_id.clone()),
                    device: Some(device_id.to_string()),
                    account: Some(dev.account.clone()),
                    region: Some(dev.region.clone()),
                    objects: s.clip.objects.iter().map(|o| o.uri.clone()).collect(),
                    detail: Some(format!(
                        "{}; retain until {}; recorded on re-ingest (the first run was interrupted)",
                        s.clip.classification, s.clip.retain_until
                    )),
                })?;
            }
            return Ok(IngestReport {
                clip: clip_id,
                region: dev.region.clone(),
                classification: s.clip.classification,
                stored: false,
                objects: s
                    .clip
                    .objects
                    .iter()
                    .map(|o| o.uri.clone())
                    .chain([region.store.uri(&sidecar_key)])
                    .collect(),
                retain_until: s.clip.retain_until,
                face_tracks: s.clip.face_tracks,
                speech_s: s.clip.speech_s,
                ..Default::default()
            });
        }
        // Redact into the work folder.
        std::fs::create_dir_all(&self.cfg.paths.work).map_err(|source| RouteError::Io {
            path: self.cfg.paths.work.clone(),
            source,
        })?;
        let work = tempfile::Builder::new()
            .prefix(&format!("ingest-{}-", crate::fsutil::owner_tag()))
            .tempdir_in(&self.cfg.paths.work)
            .map_err(|source| RouteError::Io {
                path: self.cfg.paths.work.clone(),
                source,
            })?;
        let info = crate::media::probe(
            input,
            std::time::Duration::from_secs(self.cfg.limits.probe_secs),
        )
        .map_err(PipelineError::from)?;
        let ext = if info.video.is_some() {
            "mp4".to_string()
        } else {
            crate::media::encode::OutputFormat::for_output(
                Path::new("x"),
                false,
                info.audio.as_ref().map(|a| a.codec.as_str()),
            )
            .map(|f| f.extension().to_string())
            .unwrap_or_else(|_| "mp4".into())
        };
        let job = Job {
            input: input.to_path_buf(),
            output: work.path().join(format!("media.{ext}")),
            sidecar: None,
        };
        let out = crate::pipeline::redact_file(&job, &self.cfg, ctl)?;
        // Classify.
        let faces = out.sidecar.totals.tracks;
        let speech = out.sidecar.totals.speech_s;
        let mut labels = Vec::new();
        if faces > 0 {
            labels.push("face".to_string());
        }
        if speech > 0.0 {
            labels.push("voice".to_string());
        }
        let personal = !labels.is_empty();
        if dev.minor && personal {
            return Err(RouteError::Minor {
                device: device_id.to_string(),
            });
        }
        let recorded = recorded_at.unwrap_or_else(now);
        let r = &self.cfg.retention;
        let keep = parse_duration(if personal {
            &r.personal
        } else {
            &r.non_personal
        })
        .map_err(RouteError::Config)?;
        let retain_until = recorded + keep;
        let classification = if personal { "personal" } else { "non_personal" }.to_string();
        let meta = |kind: &str| -> Vec<(&'static str, String)> {
            vec![
                ("obscura-clip", clip_id.clone()),
                ("obscura-kind", kind.to_string()),
                ("obscura-region", dev.region.clone()),
                ("obscura-classification", classification.clone()),
                ("obscura-retain-until", rfc3339(retain_until)),
            ]
        };
        let mut objects = Vec::new();
        // Media.
        let media = std::fs::read(&out.output).map_err(|source| RouteError::Io {
            path: out.output.clone(),
            source,
        })?;
        let media_key = format!("clips/{clip_id}/media.{ext}");
        objects.push(StoredObject {
            kind: "media".into(),
            key: media_key.clone(),
            uri: region.store.uri(&media_key),
            sha256: crate::fsutil::sha256_bytes(&media),
            bytes: media.len() as u64,
        });
        let mut puts: Vec<Put<'_>> = vec![(
            region.store.clone(),
            media_key,
            Bytes::from(media),
            meta("media"),
        )];
        // Original, encrypted, only where the region has a vault.
        let mut originals_retain_until = None;
        if let Some(v) = &region.vault {
            let until = recorded + parse_duration(&r.originals).map_err(RouteError::Config)?;
            originals_retain_until = Some(rfc3339(until));
            let key = vault::new_key();
            let plain = std::fs::read(input).map_err(|source| RouteError::Io {
                path: input.to_path_buf(),
                source,
            })?;
            let enc = vault::encrypt(&key, &plain)?;
            let okey = format!("originals/{clip_id}.enc");
            let kkey = format!("keys/{clip_id}.key");
            objects.push(StoredObject {
                kind: "original".into(),
                key: okey.clone(),
                uri: v.uri(&okey),
                sha256: crate::fsutil::sha256_bytes(&enc),
                bytes: enc.len() as u64,
            });
            objects.push(StoredObject {
                kind: "key".into(),
                key: kkey.clone(),
                uri: region.keys.uri(&kkey),
                sha256: crate::fsutil::sha256_bytes(&key),
                bytes: 32,
            });
            let mut m = meta("original");
            m[4].1 = rfc3339(until);
            // Key first: an original never exists without its key (so it can always be shredded).
            puts.insert(
                0,
                (
                    region.keys.clone(),
                    kkey,
                    Bytes::copy_from_slice(&key),
                    m.clone(),
                ),
            );
            puts.push((v.clone(), okey, Bytes::from(enc), m));
        }
        let clip = ClipInfo {
            id: clip_id.clone(),
            device: device_id.to_string(),
            account: dev.account.clone(),
            region: dev.region.clone(),
            recorded_at: rfc3339(recorded),
            ingested_at: rfc3339(now()),
            classification: classification.clone(),
            labels,
            face_tracks: faces,
            speech_s: speech,
            legal_basis: r.legal_basis.clone(),
            retain_until: rfc3339(retain_until),
            originals_retain_until,
            hold: false,
            objects: objects.clone(),
        };
        let stored = StoredSidecar {
            sidecar: out.sidecar.clone(),
            clip,
        };
        let sidecar_bytes =
            serde_json::to_vec_pretty(&stored).map_err(|e| RouteError::Store(e.to_string()))?;
        puts.push((
            region.store.clone(),
            sidecar_key.clone(),
            Bytes::from(sidecar_bytes),
            meta("sidecar"),
        ));
        // Upload in order; the sidecar last. On failure remove what was put.
        let mut done: Vec<(Store, String)> = Vec::new();
        for (st, key, data, m) in puts {
            if let Err(e) = self.rt.block_on(st.put(&key, data, &m)) {
                for (s2, k2) in done.iter().rev() {
                    let _ = self.rt.block_on(s2.delete(k2));
                }
                return Err(RouteError::Store(e));
            }
            done.push((st, key));
        }
        let uris: Vec<String> = objects
            .iter()
            .map(|o| o.uri.clone())
            .chain([region.store.uri(&sidecar_key)])
            .collect();
        self.audit.append(Event {
            action: "ingest".into(),
            clip: Some(clip_id.clone()),
            device: Some(device_id.to_string()),
            account: Some(dev.account.clone()),
            region: Some(dev.region.clone()),
            objects: uris.clone(),
            detail: Some(format!(
                "{classification}; retain until {}",
                rfc3339(retain_until)
            )),
        })?;
        Ok(IngestReport {
            clip: clip_id,
            region: dev.region,
            classification,
            stored: true,
            objects: uris,
            retain_until: rfc3339(retain_until),
            frames: out.sidecar.totals.frames,
            face_tracks: faces,
            speech_s: speech,
            timing: Some(out.sidecar.timing.clone()),
        })
    }

    /// Records that a minor's clip with personal data was refused: no media, no copy, only
    /// an audit entry naming the device and the input. The caller deletes the input only after
    /// this returned `Ok`: a refusal that could not be recorded keeps the input for a retry.
    pub fn refuse_minor(&self, input: &Path, device: &str) -> Result<(), RouteError> {
        let account = self.devices.get(device).map(|d| d.account.clone());
        let region = self.devices.get(device).map(|d| d.region.clone());
        let r = self.audit.append(Event {
            action: "refuse-minor".into(),
            clip: None,
            device: Some(device.to_string()),
            account,
            region,
            objects: Vec::new(),
            detail: Some(format!(
                "{}: personal data from a minor's device; not stored, not quarantined",
                input
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
            )),
        });
        r.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "audit entry for a refused minor's clip not written");
            RouteError::from(e)
        })
    }

    /// The region and the store staged clips live in (its vault, else its store), after
    /// checking the staging name (a clip id).
    fn staging(&self, region: &str, name: &str) -> Result<(&Region, &Store), RouteError> {
        ids::clip(name).map_err(RouteError::InvalidId)?;
        let r = self.region(region)?;
        Ok((r, r.vault.as_ref().unwrap_or(&r.store)))
    }

    /// Stages a raw clip for a queue worker in `region`: encrypted with a fresh key (the key in
    /// the region's key store, written first), the ciphertext in the region's vault or, without
    /// one, its store, under `staging/`. Raw media never sits unencrypted in a store. Returns
    /// the staged object's URI.
    pub fn staging_put(
        &self,
        region: &str,
        name: &str,
        plain: &[u8],
    ) -> Result<String, RouteError> {
        let (r, target) = self.staging(region, name)?;
        let key = vault::new_key();
        let enc = vault::encrypt(&key, plain)?;
        let meta = vec![("obscura-kind", "staging".to_string())];
        let (kkey, okey) = (
            format!("keys/staging/{name}.key"),
            format!("staging/{name}.enc"),
        );
        self.rt
            .block_on(r.keys.put(&kkey, Bytes::copy_from_slice(&key), &meta))
            .map_err(RouteError::Store)?;
        if let Err(e) = self.rt.block_on(target.put(&okey, Bytes::from(enc), &meta)) {
            let _ = self.rt.block_on(r.keys.delete(&kkey));
            return Err(RouteError::Store(e));
        }
        Ok(target.uri(&okey))
    }

    /// The staged clip `name`, decrypted; `None` when it is gone.
    pub fn staging_get(&self, region: &str, name: &str) -> Result<Option<Vec<u8>>, RouteError> {
        let (r, target) = self.staging(region, name)?;
        let Some(key) = self
            .rt
            .block_on(r.keys.get(&format!("keys/staging/{name}.key")))
            .map_err(RouteError::Store)?
        else {
            return Ok(None);
        };
        let Some(enc) = self
            .rt
            .block_on(target.get(&format!("staging/{name}.enc")))
            .map_err(RouteError::Store)?
        else {
            return Ok(None);
        };
        let key: [u8; 32] = key
            .as_ref()
            .try_into()
            .map_err(|_| RouteError::Store(format!("keys/staging/{name}.key: not a key")))?;
        Ok(Some(vault::decrypt(&key, &enc)?))
    }

    /// Removes a staged clip: its key first (what is left can no longer be read).
    pub fn staging_delete(&self, region: &str, name: &str) -> Result<(), RouteError> {
        let (r, target) = self.staging(region, name)?;
        self.rt
            .block_on(r.keys.delete(&format!("keys/staging/{name}.key")))
            .map_err(RouteError::Store)?;
        self.rt
            .block_on(target.delete(&format!("staging/{name}.enc")))
            .map_err(RouteError::Store)
    }

    /// Whether the clip is committed in `region` (its sidecar exists).
    pub fn clip_stored(&self, region: &str, clip: &str) -> Result<bool, RouteError> {
        ids::clip(clip).map_err(RouteError::InvalidId)?;
        let r = self.region(region)?;
        Ok(self
            .rt
            .block_on(r.store.get(&format!("clips/{clip}/sidecar.json")))
            .map_err(RouteError::Store)?
            .is_some())
    }

    /// Copies the input to the quarantine folder with a reason file (the input itself stays).
    pub fn quarantine(
        &self,
        input: &Path,
        device: &str,
        err: &RouteError,
    ) -> Result<PathBuf, RouteError> {
        let dir = &self.cfg.paths.quarantine;
        // Durably: the input is removed once its copy is committed here.
        crate::fsutil::create_dir_all_durable(dir).map_err(|source| RouteError::Io {
            path: dir.clone(),
            source,
        })?;
        crate::fsutil::sweep_stale(dir, None);
        let name: String = input
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect()
            })
            .unwrap_or_else(|| "input".into());
        let stamp = now().format("%Y%m%dT%H%M%S%.3fZ");
        // Stamp + name + ".reason.json" within the file-name limit, however long the
        // input's name was.
        let name = crate::fsutil::fit_name(name.trim_start_matches('.'), 200);
        let target = dir.join(format!("{stamp}-{name}"));
        if input.is_file() {
            let tmp =
                crate::fsutil::TempFile::beside(&target).map_err(|source| RouteError::Io {
                    path: target.clone(),
                    source,
                })?;
            std::fs::copy(input, tmp.path()).map_err(|source| RouteError::Io {
                path: target.clone(),
                source,
            })?;
            tmp.commit().map_err(|source| RouteError::Io {
                path: target.clone(),
                source,
            })?;
        }
        let reason = serde_json::json!({
            "input": input.display().to_string(),
            "device": ids::device(device).is_ok().then_some(device),
            "error": err.to_string(),
            "time": rfc3339(now()),
        });
        let mut reason_path = target.clone().into_os_string();
        reason_path.push(".reason.json");
        crate::fsutil::write_atomic(
            Path::new(&reason_path),
            &serde_json::to_vec_pretty(&reason).unwrap_or_default(),
        )
        .map_err(|source| RouteError::Io {
            path: target.clone(),
            source,
        })?;
        self.audit.append(Event {
            action: "quarantine".into(),
            device: ids::device(device).is_ok().then(|| device.to_string()),
            detail: Some(err.to_string()),
            ..Default::default()
        })?;
        Ok(target)
    }

    /// Every stored clip in every region.
    pub fn clips(&self) -> Result<Vec<StoredSidecar>, RouteError> {
        let mut out = Vec::new();
        for r in self.regions.values() {
            for key in self
                .rt
                .block_on(r.store.list("clips"))
                .map_err(RouteError::Store)?
            {
                if !key.ends_with("/sidecar.json") {
                    continue;
                }
                if let Some(b) = self
                    .rt
                    .block_on(r.store.get(&key))
                    .map_err(RouteError::Store)?
                {
                    match serde_json::from_slice::<StoredSidecar>(&b) {
                        Ok(s) => out.push(s),
                        Err(e) => tracing::warn!(key, error = %e, "unreadable clip sidecar"),
                    }
                }
            }
        }
        Ok(out)
    }

    fn held(&self, c: &ClipInfo) -> Result<Option<Hold>, RouteError> {
        let r = self.region(&c.region)?;
        let b = self
            .rt
            .block_on(r.store.get(&format!("holds/{}.json", c.id)))
            .map_err(RouteError::Store)?;
        Ok(b.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Deletes every object of a clip: original and key first (crypto-shred), media, then the
    /// sidecar last (so a half-finished erase is found and finished by the next one).
    fn delete_clip(&self, c: &ClipInfo) -> Result<Vec<String>, RouteError> {
        let r = self.region(&c.region)?;
        let mut gone = Vec::new();
        for kind in ["key", "original", "media"] {
            for o in c.objects.iter().filter(|o| o.kind == kind) {
                let st = match kind {
                    "key" => &r.keys,
                    "original" => r.vault.as_ref().unwrap_or(&r.store),
                    _ => &r.store,
                };
                self.rt
                    .block_on(st.delete(&o.key))
                    .map_err(RouteError::Store)?;
                gone.push(o.uri.clone());
            }
        }
        let sk = format!("clips/{}/sidecar.json", c.id);
        self.rt
            .block_on(r.store.delete(&sk))
            .map_err(RouteError::Store)?;
        gone.push(r.store.uri(&sk));
        Ok(gone)
    }

    /// Erases the selected clips everywhere, except clips on hold (reported).
    pub fn erase(&self, sel: &Selector) -> Result<EraseReport, RouteError> {
        sel.validate()?;
        let mut rep = EraseReport::default();
        for s in self.clips()? {
            let c = &s.clip;
            if !sel.matches(c) {
                continue;
            }
            if self.held(c)?.is_some() {
                rep.held.push(c.id.clone());
                continue;
            }
            let gone = self.delete_clip(c)?;
            self.audit.append(Event {
                action: "erase".into(),
                clip: Some(c.id.clone()),
                device: Some(c.device.clone()),
                account: Some(c.account.clone()),
                region: Some(c.region.clone()),
                objects: gone,
                detail: Some(format!("{sel:?}")),
            })?;
            rep.erased.push(c.id.clone());
        }
        Ok(rep)
    }

    /// Sets or releases a hold on the selected clips.
    pub fn hold(&self, set: bool, sel: &Selector, reason: &str) -> Result<Vec<String>, RouteError> {
        sel.validate()?;
        let mut ids_done = Vec::new();
        for s in self.clips()? {
            let c = &s.clip;
            if !sel.matches(c) {
                continue;
            }
            let r = self.region(&c.region)?;
            let key = format!("holds/{}.json", c.id);
            if set {
                let h = Hold {
                    clip: c.id.clone(),
                    reason: reason.to_string(),
                    set_at: rfc3339(now()),
                };
                self.rt
                    .block_on(r.store.put(
                        &key,
                        Bytes::from(serde_json::to_vec_pretty(&h).unwrap_or_default()),
                        &[],
                    ))
                    .map_err(RouteError::Store)?;
            } else {
                self.rt
                    .block_on(r.store.delete(&key))
                    .map_err(RouteError::Store)?;
            }
            self.audit.append(Event {
                action: if set { "hold_set" } else { "hold_release" }.into(),
                clip: Some(c.id.clone()),
                device: Some(c.device.clone()),
                account: Some(c.account.clone()),
                region: Some(c.region.clone()),
                objects: vec![r.store.uri(&key)],
                detail: Some(reason.to_string()),
            })?;
            ids_done.push(c.id.clone());
        }
        Ok(ids_done)
    }

    /// Deletes clips past `retain_until` that are not on hold (and originals past their own
    /// retention); with `dry_run`, only reports.
    pub fn sweep(&self, dry_run: bool) -> Result<SweepReport, RouteError> {
        let t = now();
        let mut rep = SweepReport {
            dry_run,
            ..Default::default()
        };
        let mut swept = std::collections::BTreeSet::new();
        for r in self.regions.values() {
            for st in [Some(&r.store), r.vault.as_ref(), Some(&r.keys)]
                .into_iter()
                .flatten()
            {
                if swept.insert(st.url.clone()) {
                    rep.interrupted_removed += st.sweep_interrupted(dry_run);
                }
            }
        }
        for s in self.clips()? {
            let c = &s.clip;
            let expired = DateTime::parse_from_rfc3339(&c.retain_until)
                .map(|d| d.with_timezone(&Utc) <= t)
                .unwrap_or(false);
            let originals_expired = c
                .originals_retain_until
                .as_deref()
                .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
                .is_some_and(|d| d.with_timezone(&Utc) <= t);
            if !expired && !originals_expired {
                continue;
            }
            if self.held(c)?.is_some() {
                rep.held.push(c.id.clone());
                continue;
            }
            if expired {
                rep.expired.push(c.id.clone());
                if !dry_run {
                    let gone = self.delete_clip(c)?;
                    self.audit.append(Event {
                        action: "sweep_delete".into(),
                        clip: Some(c.id.clone()),
                        region: Some(c.region.clone()),
                        objects: gone,
                        detail: Some(format!("retain_until {}", c.retain_until)),
                        ..Default::default()
                    })?;
                    rep.deleted.push(c.id.clone());
                }
            } else if originals_expired
                && c.objects.iter().any(|o| o.kind == "original")
                && !dry_run
            {
                // Only the original's retention ran out: shred it (key, then data) and rewrite
                // the record without them.
                let r = self.region(&c.region)?;
                let mut gone = Vec::new();
                for o in c
                    .objects
                    .iter()
                    .filter(|o| o.kind == "key" || o.kind == "original")
                {
                    let st = if o.kind == "key" {
                        &r.keys
                    } else {
                        r.vault.as_ref().unwrap_or(&r.store)
                    };
                    self.rt
                        .block_on(st.delete(&o.key))
                        .map_err(RouteError::Store)?;
                    gone.push(o.uri.clone());
                }
                let mut s2 = s.clone();
                s2.clip
                    .objects
                    .retain(|o| o.kind != "key" && o.kind != "original");
                s2.clip.originals_retain_until = None;
                let sk = format!("clips/{}/sidecar.json", c.id);
                self.rt
                    .block_on(r.store.put(
                        &sk,
                        Bytes::from(serde_json::to_vec_pretty(&s2).unwrap_or_default()),
                        &[],
                    ))
                    .map_err(RouteError::Store)?;
                self.audit.append(Event {
                    action: "sweep_originals".into(),
                    clip: Some(c.id.clone()),
                    region: Some(c.region.clone()),
                    objects: gone,
                    ..Default::default()
                })?;
                rep.originals_deleted.push(c.id.clone());
            }
        }
        Ok(rep)
    }

    /// Gathers an account's clips (records and media, from every region) into `out`.
    pub fn export(&self, account: &str, out: &Path) -> Result<Vec<String>, RouteError> {
        ids::account(account).map_err(RouteError::InvalidId)?;
        std::fs::create_dir_all(out).map_err(|source| RouteError::Io {
            path: out.to_path_buf(),
            source,
        })?;
        let mut exported = Vec::new();
        for s in self.clips()? {
            let c = &s.clip;
            if c.account != account {
                continue;
            }
            let r = self.region(&c.region)?;
            let dir = out.join(&c.id);
            std::fs::create_dir_all(&dir).map_err(|source| RouteError::Io {
                path: dir.clone(),
                source,
            })?;
            for o in c.objects.iter().filter(|o| o.kind == "media") {
                if let Some(b) = self
                    .rt
                    .block_on(r.store.get(&o.key))
                    .map_err(RouteError::Store)?
                {
                    let name = o.key.rsplit('/').next().unwrap_or("media");
                    crate::fsutil::write_atomic(&dir.join(name), &b).map_err(|source| {
                        RouteError::Io {
                            path: dir.clone(),
                            source,
                        }
                    })?;
                }
            }
            crate::fsutil::write_atomic(
                &dir.join("sidecar.json"),
                &serde_json::to_vec_pretty(&s).unwrap_or_default(),
            )
            .map_err(|source| RouteError::Io {
                path: dir.clone(),
                source,
            })?;
            exported.push(c.id.clone());
        }
        self.audit.append(Event {
            action: "export".into(),
            account: Some(account.to_string()),
            detail: Some(format!("{} clips", exported.len())),
            ..Default::default()
        })?;
        Ok(exported)
    }
}

/// The clip id: content-derived, so that re-ingesting an input is idempotent, and bound to the
/// device, so that the same bytes from two devices are two clips (each with its own region,
/// account and rules): sha256 of `"<input sha256>/<device id>"`.
pub fn clip_id(input_sha256: &str, device: &str) -> String {
    crate::fsutil::sha256_bytes(format!("{input_sha256}/{device}").as_bytes())
}

/// Loads devices from a TOML file (`[devices]` table or top-level table) or a CSV
/// `device,region,account,minor`.
fn load_devices_file(path: &Path) -> Result<BTreeMap<String, DeviceConfig>, RouteError> {
    let text = std::fs::read_to_string(path).map_err(|source| RouteError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |m: String| RouteError::Config(format!("{}: {m}", path.display()));
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        let mut out = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split(',').map(|s| s.trim()).collect();
            if line.trim().is_empty() || (i == 0 && f.first() == Some(&"device")) {
                continue;
            }
            if f.len() < 3 {
                return Err(bad(format!(
                    "line {}: expected device,region,account[,minor]",
                    i + 1
                )));
            }
            ids::device(f[0]).map_err(|m| bad(format!("line {}: {m}", i + 1)))?;
            ids::account(f[2]).map_err(|m| bad(format!("line {}: {m}", i + 1)))?;
            let minor = matches!(
                f.get(3).map(|s| s.to_ascii_lowercase()).as_deref(),
                Some("true" | "1" | "yes")
            );
            out.insert(
                f[0].to_string(),
                DeviceConfig {
                    region: f[1].to_string(),
                    account: f[2].to_string(),
                    minor,
                },
            );
        }
        return Ok(out);
    }
    #[derive(Deserialize)]
    struct File {
        devices: BTreeMap<String, DeviceConfig>,
    }
    toml::from_str::<File>(&text)
        .map(|f| f.devices)
        .or_else(|_| toml::from_str::<BTreeMap<String, DeviceConfig>>(&text))
        .map_err(|e| bad(e.to_string()))
}
