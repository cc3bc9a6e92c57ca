//! Routing: classify each clip, store it in its device's region with retention metadata, and
//! the operations behind the privacy promises — erase, export, hold, restrict, correct, disclose,
//! retention sweep — each recorded in the append-only audit log.
//!
//! Owns: the region stores and their key layout, clip records (the sidecar's `clip` section),
//! quarantine, and the audit trail. Must not touch: media processing (it calls `pipeline`).
//!
//! Store layout (per region): `clips/<id>/media.<ext>` and `clips/<id>/sidecar.json` (written
//! last: a clip exists once its sidecar does), `holds/cases/<hash>.json` (one hold record per
//! case and scope, see [`holds`]); the vault holds
//! `originals/<id>.enc`, the key store `keys/<id>.key` (and the region's disclosure signing
//! key, see [`disclose`]). Clip ids derive from the input's sha256
//! and the device ([`clip_id`]), so
//! ingesting the same input twice finds the first clip and writes nothing.

pub mod audit;
pub mod correct;
pub mod disclose;
pub mod holds;
pub mod ids;
pub mod restrict;
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
use holds::HoldRecord;
use restrict::RestrictRecord;
use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("unknown device '{id}' (not in the configuration; known devices: {known})")]
    UnknownDevice { id: String, known: String },
    /// A device, account or clip named on the command line that nothing knows.
    #[error("unknown {kind} '{id}': {known}; nothing was changed")]
    Unknown {
        kind: &'static str,
        id: String,
        known: String,
    },
    #[error("no hold of case '{case}' is in force ({known}); nothing was changed")]
    UnknownCase { case: String, known: String },
    #[error("no restriction over {scope} is in force ({known}); nothing was changed")]
    UnknownRestriction { scope: String, known: String },
    /// A bad argument of a privacy operation (case name, hold window).
    #[error("{0}")]
    Invalid(String),
    /// The recording time of a clip is outside what is accepted.
    #[error("recorded_at {0}")]
    RecordedAt(String),
    /// The output was not redacted and the region does not accept unredacted media.
    #[error(
        "{what} not redacted, and region '{region}' does not accept unredacted media (regions.{region}.accept_unredacted = false): not stored"
    )]
    Unredacted { region: String, what: String },
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
    Disclose(#[from] disclose::DiscloseError),
    /// `disclose --originals` over clips that no hold of the disclosure's case covers.
    #[error(
        "--originals refused: no hold of case '{case}' is in force over {clips}; originals are disclosed only for a case that holds every selected clip (hold set --case); nothing was written"
    )]
    OriginalsNotHeld { case: String, clips: String },
    #[error("{0}")]
    Config(String),
}

impl RouteError {
    /// Exit status class (see `cli::exit`).
    pub fn exit_code(&self) -> u8 {
        match self {
            RouteError::Pipeline(e) => crate::cli::exit_code_for(e),
            RouteError::Disclose(e) => e.exit_code(),
            RouteError::UnknownDevice { .. }
            | RouteError::UnknownRegion(_)
            | RouteError::InvalidId(_)
            | RouteError::RecordedAt(_)
            | RouteError::Unredacted { .. }
            | RouteError::Minor { .. } => 1,
            RouteError::Config(_)
            | RouteError::Unknown { .. }
            | RouteError::UnknownCase { .. }
            | RouteError::UnknownRestriction { .. }
            | RouteError::OriginalsNotHeld { .. }
            | RouteError::Invalid(_) => 2,
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
    /// Whether a hold was in force when the record was last written (at ingest and at every
    /// hold change); the hold records themselves are what erase and sweep check.
    pub hold: bool,
    /// The holds in force then (case, scope, who, when, why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<HoldRecord>,
    /// Whether a restriction of use was in force when the record was last written (at
    /// ingest and at every restriction, hold or correction change); the restriction records
    /// themselves are what export and disclose check. Records written before this field
    /// existed read as not restricted until their next rewrite.
    #[serde(default)]
    pub restricted: bool,
    /// The restrictions in force then (scope, who, when, why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restrictions: Vec<RestrictRecord>,
    /// Corrections made to this record (`obscura correct`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrections: Vec<correct::Correction>,
    /// False when the stored media was not redacted (`--style tag`, `--voice tag|keep`):
    /// only regions with `accept_unredacted` store such clips. Records written before this
    /// field existed read as redacted.
    #[serde(default = "redacted_default")]
    pub redacted: bool,
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

fn redacted_default() -> bool {
    true
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

/// A `--from`/`--to` window that ends before it starts is refused.
fn check_window(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<(), RouteError> {
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(RouteError::Invalid(format!(
            "--from {} is after --to {}",
            rfc3339(f),
            rfc3339(t)
        )));
    }
    Ok(())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One object to upload: store, key, bytes, metadata/tags.
type Put<'a> = (Store, String, Bytes, Vec<(&'a str, String)>);

/// Selects clips for erase, export and hold; a hold record's scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
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
    pub fn matches(&self, c: &ClipInfo) -> bool {
        match self {
            Selector::Device(d) => &c.device == d,
            Selector::Account(a) => &c.account == a,
            Selector::Clip(id) => &c.id == id,
        }
    }
    /// `("device", "cam-1")`.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Selector::Device(d) => ("device", d),
            Selector::Account(a) => ("account", a),
            Selector::Clip(c) => ("clip", c),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, id) = self.parts();
        write!(f, "{kind} {id}")
    }
}

/// A new hold: what `obscura hold set` asks for.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub scope: Selector,
    pub case: String,
    pub reason: String,
    pub by: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// What a hold change did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct HoldReport {
    pub action: String,
    pub case: String,
    /// The records set or released.
    pub records: Vec<HoldRecord>,
    /// Stored clips the records cover now.
    pub clips: Vec<String>,
    /// Of those, the clips still held by another case after a release.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub still_held: Vec<String>,
}

/// How far in the future of now a recording time may be (clock skew between a camera and
/// this host).
pub const RECORDED_AT_MAX_SKEW_S: i64 = 300;
/// The earliest recording time accepted.
pub const RECORDED_AT_FLOOR: &str = "2000-01-01T00:00:00Z";
/// The forms of a recording time, for error messages.
pub const RECORDED_AT_FORMATS: &str =
    "RFC 3339 such as 2026-11-29T08:00:00Z or 2026-11-29T09:00:00+01:00, or 20261129T080000Z";

/// Parses a recording time given by an operator: RFC 3339, or the compact UTC form of file
/// names (`20261129T080000Z`, fractions allowed), then checks it with [`check_recorded_at`].
pub fn parse_recorded_at(s: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            let stem = s.strip_suffix('Z')?;
            let fmt = if stem.contains('.') {
                "%Y%m%dT%H%M%S%.f"
            } else {
                "%Y%m%dT%H%M%S"
            };
            chrono::NaiveDateTime::parse_from_str(stem, fmt)
                .ok()
                .map(|t| t.and_utc())
        })
        .ok_or_else(|| format!("'{s}' is not a time; accepted: {RECORDED_AT_FORMATS}"))?;
    check_recorded_at(t)?;
    Ok(t)
}

/// A recording time must lie between [`RECORDED_AT_FLOOR`] and now plus
/// [`RECORDED_AT_MAX_SKEW_S`]: a time in the future would stretch the clip's retention.
pub fn check_recorded_at(t: DateTime<Utc>) -> Result<(), String> {
    let floor = DateTime::parse_from_rfc3339(RECORDED_AT_FLOOR)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let latest = now() + chrono::Duration::seconds(RECORDED_AT_MAX_SKEW_S);
    if t < floor {
        return Err(format!(
            "{} is before {RECORDED_AT_FLOOR}, the earliest accepted (formats: {RECORDED_AT_FORMATS})",
            rfc3339(t)
        ));
    }
    if t > latest {
        return Err(format!(
            "{} is in the future: at most {} minutes after now ({}) is accepted (formats: {RECORDED_AT_FORMATS})",
            rfc3339(t),
            RECORDED_AT_MAX_SKEW_S / 60,
            rfc3339(now())
        ));
    }
    Ok(())
}

/// Up to 20 names, sorted, for an error message.
fn name_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = names.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    match v.len() {
        0 => "none".into(),
        n if n > 20 => format!("{}, … ({n} in all)", v[..20].join(", ")),
        _ => v.join(", "),
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
    /// For each held clip, the cases holding it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub held_by: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SweepReport {
    pub dry_run: bool,
    pub expired: Vec<String>,
    pub held: Vec<String>,
    /// For each held clip, the cases holding it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub held_by: BTreeMap<String, Vec<String>>,
    /// Clips deleted whole (with `dry_run`: that the sweep would delete).
    pub deleted: Vec<String>,
    /// Clips whose original alone was past its retention and was shredded (with `dry_run`:
    /// would be).
    pub originals_deleted: Vec<String>,
    /// Every object removed — keys, originals, media, sidecars — by URI (with `dry_run`: every
    /// object the sweep would remove).
    pub removed: Vec<String>,
    /// Half-written files that killed processes left in folder stores, removed (counted
    /// only, with `dry_run`).
    pub interrupted_removed: usize,
    /// Where the audit chain's head was anchored (each region's `audit/head.json`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audit_anchored: Vec<String>,
}

/// Where a region store keeps its copy of the audit chain's head.
pub const AUDIT_HEAD_KEY: &str = "audit/head.json";

impl Router {
    /// How long a personal or non-personal clip is kept (`retention.personal` /
    /// `retention.non_personal`): one rule for ingest and `correct`.
    fn retention_for(&self, personal: bool) -> Result<chrono::Duration, RouteError> {
        let r = &self.cfg.retention;
        parse_duration(if personal {
            &r.personal
        } else {
            &r.non_personal
        })
        .map_err(RouteError::Config)
    }

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
            audit: AuditLog::with_key(&cfg.paths.audit, cfg.paths.audit_key.as_deref()),
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
            .ok_or_else(|| RouteError::UnknownDevice {
                id: id.to_string(),
                known: name_list(self.devices.keys().map(String::as_str)),
            })
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
        if let Some(t) = recorded_at {
            check_recorded_at(t).map_err(RouteError::RecordedAt)?;
        }
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
        // Classify, failing closed: a face or speech found makes a clip personal whatever
        // the redaction did; so does audio that no voice detector checked (`--voice tag` or
        // `keep`, or a VAD that failed).
        let faces = out.sidecar.totals.tracks;
        let speech = out.sidecar.totals.speech_s;
        let look = Classified::of(&out.sidecar, &self.cfg);
        let labels = look.labels(faces, speech);
        let personal = !labels.is_empty();
        if dev.minor && personal {
            return Err(RouteError::Minor {
                device: device_id.to_string(),
            });
        }
        if let Some(what) = look.unredacted()
            && !self
                .cfg
                .regions
                .get(&dev.region)
                .is_some_and(|r| r.accept_unredacted)
        {
            return Err(RouteError::Unredacted {
                region: dev.region.clone(),
                what,
            });
        }
        let redacted = look.unredacted().is_none();
        let recorded = recorded_at.unwrap_or_else(now);
        let r = &self.cfg.retention;
        let retain_until = recorded + self.retention_for(personal)?;
        let classification = if personal {
            correct::PERSONAL
        } else {
            correct::NON_PERSONAL
        }
        .to_string();
        let meta = |kind: &str| -> Vec<(&'static str, String)> {
            vec![
                ("obscura-clip", clip_id.clone()),
                ("obscura-kind", kind.to_string()),
                ("obscura-region", dev.region.clone()),
                ("obscura-classification", classification.clone()),
                ("obscura-retain-until", rfc3339(retain_until)),
                ("obscura-redacted", redacted.to_string()),
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
            holds: Vec::new(),
            restricted: false,
            restrictions: Vec::new(),
            corrections: Vec::new(),
            redacted,
            objects: objects.clone(),
        };
        // Holds already in force over the device or the account cover the new clip too.
        let mut clip = clip;
        clip.holds = holds_over(&self.hold_records()?, &clip);
        clip.hold = !clip.holds.is_empty();
        // So do restrictions over them.
        clip.restrictions = restrictions_over(&self.restrictions()?, &clip);
        clip.restricted = !clip.restrictions.is_empty();
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
        // Upload in order; the sidecar last. On failure remove what was put. Keys and
        // originals are the owner's only in a folder store.
        let mut done: Vec<(Store, String)> = Vec::new();
        for (st, key, data, m) in puts {
            let private = key.starts_with("keys/") || key.starts_with("originals/");
            let put = if private {
                self.rt.block_on(st.put_private(&key, data, &m))
            } else {
                self.rt.block_on(st.put(&key, data, &m))
            };
            if let Err(e) = put {
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
            .block_on(
                r.keys
                    .put_private(&kkey, Bytes::copy_from_slice(&key), &meta),
            )
            .map_err(RouteError::Store)?;
        if let Err(e) = self
            .rt
            .block_on(target.put_private(&okey, Bytes::from(enc), &meta))
        {
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
        // Durably: the input is removed once its copy is committed here. Copies hold personal
        // data: the folder is the owner's only (0700), each copy and reason 0600.
        crate::fsutil::create_private_dir_all(dir)
            .and_then(|()| crate::fsutil::set_mode(dir, crate::fsutil::PRIVATE_DIR))
            .map_err(|source| RouteError::Io {
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
            // Not `fs::copy`: it would give the copy the input's permissions.
            tmp.create_private()
                .and_then(|mut to| {
                    std::io::copy(&mut std::fs::File::open(input)?, &mut to)?;
                    Ok(())
                })
                .map_err(|source| RouteError::Io {
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
        crate::fsutil::write_atomic_private(
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

    /// Every hold record in force, read from every region (a record is stored in the regions
    /// of what it covers; reading them all means a device that moved region stays covered).
    /// Earlier versions' single holds (`holds/<clip>.json`) read as case `legacy`.
    pub fn hold_records(&self) -> Result<Vec<StoredHold>, RouteError> {
        Ok(self
            .records("holds", "a hold record", holds::parse)?
            .into_iter()
            .map(|(region, key, record)| StoredHold {
                region,
                key,
                record,
            })
            .collect())
    }

    /// Every record under `prefix` in every region, as `(region, key, record)`. A record that
    /// `parse` cannot read fails the operation: a hold or a restriction that cannot be read
    /// must never be taken for none.
    fn records<T>(
        &self,
        prefix: &str,
        what: &str,
        parse: impl Fn(&str, &[u8]) -> Option<T>,
    ) -> Result<Vec<(String, String, T)>, RouteError> {
        let mut out = Vec::new();
        for (name, r) in &self.regions {
            for key in self
                .rt
                .block_on(r.store.list(prefix))
                .map_err(RouteError::Store)?
            {
                let Some(b) = self
                    .rt
                    .block_on(r.store.get(&key))
                    .map_err(RouteError::Store)?
                else {
                    continue;
                };
                let Some(record) = parse(&key, &b) else {
                    return Err(RouteError::Store(format!(
                        "{}: not {what}; fix or remove it",
                        r.store.uri(&key)
                    )));
                };
                out.push((name.clone(), key, record));
            }
        }
        Ok(out)
    }

    /// The stored clips, each with the hold records in force over it.
    fn clips_with_holds(&self) -> Result<(Vec<StoredSidecar>, Vec<StoredHold>), RouteError> {
        Ok((self.clips()?, self.hold_records()?))
    }

    /// Refuses a device, account or clip that neither the configuration nor the stores know:
    /// a typo must not look like "nothing to do" to a legal hold or an erasure request.
    fn check_known(&self, sel: &Selector, clips: &[StoredSidecar]) -> Result<(), RouteError> {
        sel.validate()?;
        let stored = || clips.iter().map(|s| &s.clip);
        let (known, names): (bool, Vec<&str>) = match sel {
            Selector::Device(d) => (
                self.devices.contains_key(d) || stored().any(|c| &c.device == d),
                self.devices
                    .keys()
                    .map(String::as_str)
                    .chain(stored().map(|c| c.device.as_str()))
                    .collect(),
            ),
            Selector::Account(a) => (
                self.devices.values().any(|d| &d.account == a) || stored().any(|c| &c.account == a),
                self.devices
                    .values()
                    .map(|d| d.account.as_str())
                    .chain(stored().map(|c| c.account.as_str()))
                    .collect(),
            ),
            Selector::Clip(id) => (stored().any(|c| &c.id == id), Vec::new()),
        };
        if known {
            return Ok(());
        }
        let (kind, id) = sel.parts();
        let known = match sel {
            Selector::Clip(_) => {
                format!("no stored clip has this id ({} clips stored)", clips.len())
            }
            Selector::Device(_) => format!(
                "not in the configuration and no stored clip has it (known devices: {})",
                name_list(names)
            ),
            Selector::Account(_) => format!(
                "no configured device and no stored clip has it (known accounts: {})",
                name_list(names)
            ),
        };
        Err(RouteError::Unknown {
            kind,
            id: id.to_string(),
            known,
        })
    }

    /// Rewrites a clip's stored record where the holds or restrictions in force over it
    /// changed (`clip.hold`, `clip.holds`, `clip.restricted`, `clip.restrictions`).
    fn refresh_record(
        &self,
        s: &StoredSidecar,
        holds: &[StoredHold],
        restrictions: &[StoredRestriction],
    ) -> Result<(), RouteError> {
        let now_held = holds_over(holds, &s.clip);
        let now_restricted = restrictions_over(restrictions, &s.clip);
        if now_held == s.clip.holds
            && s.clip.hold != now_held.is_empty()
            && now_restricted == s.clip.restrictions
            && s.clip.restricted != now_restricted.is_empty()
        {
            return Ok(());
        }
        let mut s2 = s.clone();
        s2.clip.hold = !now_held.is_empty();
        s2.clip.holds = now_held;
        s2.clip.restricted = !now_restricted.is_empty();
        s2.clip.restrictions = now_restricted;
        self.put_record(&s2)
    }

    /// Writes a clip's stored record (its sidecar) in place: the store's put is durable
    /// (temporary name, fsync, rename, fsync of the folder in a folder store), with the
    /// record's state as object metadata.
    fn put_record(&self, s: &StoredSidecar) -> Result<(), RouteError> {
        let r = self.region(&s.clip.region)?;
        let sk = format!("clips/{}/sidecar.json", s.clip.id);
        let meta = [
            ("obscura-clip", s.clip.id.clone()),
            ("obscura-kind", "sidecar".to_string()),
            ("obscura-region", s.clip.region.clone()),
            ("obscura-classification", s.clip.classification.clone()),
            ("obscura-retain-until", s.clip.retain_until.clone()),
            ("obscura-redacted", s.clip.redacted.to_string()),
            ("obscura-hold", s.clip.hold.to_string()),
            ("obscura-restricted", s.clip.restricted.to_string()),
        ];
        let body = serde_json::to_vec_pretty(s).map_err(|e| RouteError::Store(e.to_string()))?;
        self.rt
            .block_on(r.store.put(&sk, Bytes::from(body), &meta))
            .map_err(RouteError::Store)
    }

    /// The objects [`Router::delete_clip`] removes, in its order: original and key first
    /// (crypto-shred), media, then the sidecar last (so a half-finished erase is found and
    /// finished by the next one). With `originals_only`, the key and the original alone.
    fn clip_objects(&self, c: &ClipInfo, originals_only: bool) -> Vec<(Store, String, String)> {
        let Ok(r) = self.region(&c.region) else {
            return Vec::new();
        };
        let kinds: &[&str] = if originals_only {
            &["key", "original"]
        } else {
            &["key", "original", "media"]
        };
        let mut v = Vec::new();
        for kind in kinds {
            for o in c.objects.iter().filter(|o| o.kind == *kind) {
                let st = match *kind {
                    "key" => &r.keys,
                    "original" => r.vault.as_ref().unwrap_or(&r.store),
                    _ => &r.store,
                };
                v.push((st.clone(), o.key.clone(), o.uri.clone()));
            }
        }
        if !originals_only {
            let sk = format!("clips/{}/sidecar.json", c.id);
            v.push((r.store.clone(), sk.clone(), r.store.uri(&sk)));
        }
        v
    }

    /// Deletes every object of a clip (see [`Router::clip_objects`]); returns their URIs.
    fn delete_clip(&self, c: &ClipInfo) -> Result<Vec<String>, RouteError> {
        let mut gone = Vec::new();
        for (st, key, uri) in self.clip_objects(c, false) {
            self.rt
                .block_on(st.delete(&key))
                .map_err(RouteError::Store)?;
            gone.push(uri);
        }
        Ok(gone)
    }

    /// Erases the selected clips everywhere, except clips on hold (reported with their cases).
    pub fn erase(&self, sel: &Selector) -> Result<EraseReport, RouteError> {
        let (clips, all_holds) = self.clips_with_holds()?;
        self.check_known(sel, &clips)?;
        let mut rep = EraseReport::default();
        for s in &clips {
            let c = &s.clip;
            if !sel.matches(c) {
                continue;
            }
            let held = holds_over(&all_holds, c);
            if !held.is_empty() {
                rep.held.push(c.id.clone());
                rep.held_by
                    .insert(c.id.clone(), held.into_iter().map(|h| h.case).collect());
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

    /// The regions a hold record over `scope` is stored in: those of the clips it covers now
    /// and, for a device or account, those its configured devices write to.
    fn hold_regions(&self, scope: &Selector, clips: &[StoredSidecar]) -> Vec<String> {
        let mut v: Vec<String> = clips
            .iter()
            .filter(|s| scope.matches(&s.clip))
            .map(|s| s.clip.region.clone())
            .collect();
        for (id, d) in &self.devices {
            let covers = match scope {
                Selector::Device(x) => x == id,
                Selector::Account(a) => a == &d.account,
                Selector::Clip(_) => false,
            };
            if covers {
                v.push(d.region.clone());
            }
        }
        v.sort();
        v.dedup();
        v
    }

    /// Sets a hold: one record per case and scope, added to those in force (setting the same
    /// case on the same scope again replaces its reason). A device or account hold also
    /// covers clips ingested later. The records of the covered clips are rewritten to show it.
    pub fn hold_set(&self, req: &HoldRequest) -> Result<HoldReport, RouteError> {
        holds::check_case(&req.case).map_err(RouteError::Invalid)?;
        if req.reason.trim().is_empty() {
            return Err(RouteError::Invalid(
                "the reason is empty (--reason says why the hold is set)".into(),
            ));
        }
        check_window(req.from, req.to)?;
        let (clips, mut all_holds) = self.clips_with_holds()?;
        self.check_known(&req.scope, &clips)?;
        let record = HoldRecord {
            case: req.case.clone(),
            scope: req.scope.clone(),
            reason: req.reason.clone(),
            by: req.by.clone(),
            set_at: rfc3339(now()),
            from: req.from.map(rfc3339),
            to: req.to.map(rfc3339),
        };
        let key = record.key();
        let body = Bytes::from(serde_json::to_vec_pretty(&record).unwrap_or_default());
        let mut uris = Vec::new();
        for region in self.hold_regions(&req.scope, &clips) {
            let r = self.region(&region)?;
            self.rt
                .block_on(r.store.put(&key, body.clone(), &[]))
                .map_err(RouteError::Store)?;
            uris.push(r.store.uri(&key));
            all_holds.retain(|h| !(h.key == key && h.region == region));
            all_holds.push(StoredHold {
                region,
                key: key.clone(),
                record: record.clone(),
            });
        }
        let (kind, id) = req.scope.parts();
        self.audit.append(Event {
            action: "hold_set".into(),
            clip: matches!(req.scope, Selector::Clip(_)).then(|| id.to_string()),
            device: matches!(req.scope, Selector::Device(_)).then(|| id.to_string()),
            account: matches!(req.scope, Selector::Account(_)).then(|| id.to_string()),
            region: None,
            objects: uris,
            detail: Some(format!(
                "case {:?}; {kind} {id}; window {}; by {:?}; reason {:?}",
                record.case,
                record.window(),
                record.by,
                record.reason
            )),
        })?;
        let mut covered = Vec::new();
        let restrictions = self.restrictions()?;
        for s in clips.iter().filter(|s| record.covers(&s.clip)) {
            self.refresh_record(s, &all_holds, &restrictions)?;
            covered.push(s.clip.id.clone());
        }
        Ok(HoldReport {
            action: "set".into(),
            case: req.case.clone(),
            records: vec![record],
            clips: covered,
            still_held: Vec::new(),
        })
    }

    /// Releases the holds of one case (only those over `scope` when given); the other cases
    /// stay in force. Each released record is an audit entry.
    pub fn hold_release(
        &self,
        case: &str,
        scope: Option<&Selector>,
        reason: &str,
        by: &str,
    ) -> Result<HoldReport, RouteError> {
        holds::check_case(case).map_err(RouteError::Invalid)?;
        let (clips, all_holds) = self.clips_with_holds()?;
        if let Some(sel) = scope {
            self.check_known(sel, &clips)?;
        }
        let (gone, kept): (Vec<StoredHold>, Vec<StoredHold>) = all_holds
            .into_iter()
            .partition(|h| h.record.case == case && scope.is_none_or(|sel| &h.record.scope == sel));
        if gone.is_empty() {
            let mut cases: Vec<String> = kept.iter().map(|h| h.record.case.clone()).collect();
            cases.sort();
            cases.dedup();
            return Err(RouteError::UnknownCase {
                case: case.to_string(),
                known: match scope {
                    Some(sel) => format!(
                        "over {sel}; cases in force: {}",
                        name_list(cases.iter().map(String::as_str))
                    ),
                    None => format!(
                        "cases in force: {}",
                        name_list(cases.iter().map(String::as_str))
                    ),
                },
            });
        }
        // One record per scope, possibly stored in several regions.
        let mut records: Vec<HoldRecord> = Vec::new();
        for h in &gone {
            let r = self.region(&h.region)?;
            self.rt
                .block_on(r.store.delete(&h.key))
                .map_err(RouteError::Store)?;
            if !records.contains(&h.record) {
                records.push(h.record.clone());
            }
        }
        for rec in &records {
            let (kind, id) = rec.scope.parts();
            let uris = gone
                .iter()
                .filter(|h| &h.record == rec)
                .filter_map(|h| self.region(&h.region).ok().map(|r| r.store.uri(&h.key)))
                .collect();
            self.audit.append(Event {
                action: "hold_release".into(),
                clip: matches!(rec.scope, Selector::Clip(_)).then(|| id.to_string()),
                device: matches!(rec.scope, Selector::Device(_)).then(|| id.to_string()),
                account: matches!(rec.scope, Selector::Account(_)).then(|| id.to_string()),
                region: None,
                objects: uris,
                detail: Some(format!(
                    "case {case:?}; {kind} {id}; by {by:?}; reason {:?}",
                    if reason.is_empty() { "-" } else { reason }
                )),
            })?;
        }
        let mut rep = HoldReport {
            action: "release".into(),
            case: case.to_string(),
            records: records.clone(),
            ..Default::default()
        };
        let restrictions = self.restrictions()?;
        for s in clips
            .iter()
            .filter(|s| records.iter().any(|r| r.covers(&s.clip)))
        {
            self.refresh_record(s, &kept, &restrictions)?;
            rep.clips.push(s.clip.id.clone());
            if !holds_over(&kept, &s.clip).is_empty() {
                rep.still_held.push(s.clip.id.clone());
            }
        }
        Ok(rep)
    }

    /// The hold records in force; with a selector, those that cover the selected clips or the
    /// selected device or account itself (a device hold is listed for its account too).
    pub fn hold_list(&self, sel: Option<&Selector>) -> Result<Vec<HoldListed>, RouteError> {
        let (clips, all_holds) = self.clips_with_holds()?;
        if let Some(sel) = sel {
            self.check_known(sel, &clips)?;
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for h in all_holds {
            if !seen.insert(h.key.clone()) {
                continue;
            }
            let covered: Vec<String> = clips
                .iter()
                .filter(|s| h.record.covers(&s.clip))
                .map(|s| s.clip.id.clone())
                .collect();
            let relevant = match sel {
                None => true,
                Some(sel) => {
                    &h.record.scope == sel
                        || clips
                            .iter()
                            .any(|s| sel.matches(&s.clip) && h.record.covers(&s.clip))
                        || match (&h.record.scope, sel) {
                            (Selector::Device(d), Selector::Account(a)) => {
                                self.devices.get(d).is_some_and(|x| &x.account == a)
                            }
                            (Selector::Account(a), Selector::Device(d)) => {
                                self.devices.get(d).is_some_and(|x| &x.account == a)
                            }
                            _ => false,
                        }
                }
            };
            if relevant {
                out.push(HoldListed {
                    record: h.record,
                    clips: covered,
                });
            }
        }
        out.sort_by(|a, b| {
            (&a.record.case, &a.record.set_at).cmp(&(&b.record.case, &b.record.set_at))
        });
        Ok(out)
    }

    /// Deletes clips past `retain_until` that are not on hold (and originals past their own
    /// retention); with `dry_run`, reports exactly what it would remove and removes nothing.
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
        let (clips, all_holds) = self.clips_with_holds()?;
        for s in &clips {
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
            let held = holds_over(&all_holds, c);
            if !held.is_empty() {
                rep.held.push(c.id.clone());
                rep.held_by
                    .insert(c.id.clone(), held.into_iter().map(|h| h.case).collect());
                continue;
            }
            if expired {
                rep.expired.push(c.id.clone());
                if dry_run {
                    rep.removed
                        .extend(self.clip_objects(c, false).into_iter().map(|o| o.2));
                } else {
                    let gone = self.delete_clip(c)?;
                    rep.removed.extend(gone.iter().cloned());
                    self.audit.append(Event {
                        action: "sweep_delete".into(),
                        clip: Some(c.id.clone()),
                        region: Some(c.region.clone()),
                        objects: gone,
                        detail: Some(format!("retain_until {}", c.retain_until)),
                        ..Default::default()
                    })?;
                }
                rep.deleted.push(c.id.clone());
            } else if originals_expired && c.objects.iter().any(|o| o.kind == "original") {
                // Only the original's retention ran out: shred it (key, then data) and rewrite
                // the record without them.
                let shred = self.clip_objects(c, true);
                rep.originals_deleted.push(c.id.clone());
                if dry_run {
                    rep.removed.extend(shred.into_iter().map(|o| o.2));
                    continue;
                }
                let mut gone = Vec::new();
                for (st, key, uri) in shred {
                    self.rt
                        .block_on(st.delete(&key))
                        .map_err(RouteError::Store)?;
                    gone.push(uri);
                }
                rep.removed.extend(gone.iter().cloned());
                let r = self.region(&c.region)?;
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
            }
        }
        if !dry_run {
            rep.audit_anchored = self.anchor_audit_head()?;
        }
        Ok(rep)
    }

    /// Puts the audit chain's head into every region's store (`audit/head.json`): a copy out
    /// of reach of whoever can write the local log and its head file.
    fn anchor_audit_head(&self) -> Result<Vec<String>, RouteError> {
        let Some(head) = self.audit.head()? else {
            return Ok(Vec::new());
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&head).unwrap_or_default());
        let mut uris = Vec::new();
        for r in self.regions.values() {
            self.rt
                .block_on(r.store.put(AUDIT_HEAD_KEY, body.clone(), &[]))
                .map_err(RouteError::Store)?;
            uris.push(r.store.uri(AUDIT_HEAD_KEY));
        }
        Ok(uris)
    }

    /// Verifies the audit log: its chain, its head file, and the heads anchored in the region
    /// stores (the log must reach each of them).
    pub fn verify_audit(&self) -> Result<audit::Verified, RouteError> {
        let v = self.audit.verify()?;
        for r in self.regions.values() {
            let Some(b) = self
                .rt
                .block_on(r.store.get(AUDIT_HEAD_KEY))
                .map_err(RouteError::Store)?
            else {
                continue;
            };
            let uri = r.store.uri(AUDIT_HEAD_KEY);
            let head: audit::Head = serde_json::from_slice(&b)
                .map_err(|e| RouteError::Store(format!("{uri}: not an audit head: {e}")))?;
            self.audit.check_anchor(&v, &head, &uri)?;
        }
        Ok(v)
    }

    /// Every restriction in force, read from every region. One that cannot be read fails the
    /// operation (never taken for "not restricted").
    pub fn restrictions(&self) -> Result<Vec<StoredRestriction>, RouteError> {
        Ok(self
            .records(restrict::PREFIX, "a restriction record", |_, b| {
                restrict::parse(b)
            })?
            .into_iter()
            .map(|(region, key, record)| StoredRestriction {
                region,
                key,
                record,
            })
            .collect())
    }

    /// Restricts the use of a clip, a device's or an account's clips (stored in the regions
    /// a hold over the same scope would be). Setting it again replaces the reason.
    pub fn restrict_set(
        &self,
        scope: &Selector,
        reason: &str,
        by: &str,
    ) -> Result<RestrictReport, RouteError> {
        if reason.trim().is_empty() {
            return Err(RouteError::Invalid(
                "the reason is empty (--reason says what the person objects to)".into(),
            ));
        }
        let clips = self.clips()?;
        self.check_known(scope, &clips)?;
        let record = RestrictRecord {
            scope: scope.clone(),
            reason: reason.to_string(),
            by: by.to_string(),
            set_at: rfc3339(now()),
        };
        let key = record.key();
        let body = Bytes::from(serde_json::to_vec_pretty(&record).unwrap_or_default());
        let mut uris = Vec::new();
        for region in self.hold_regions(scope, &clips) {
            let r = self.region(&region)?;
            self.rt
                .block_on(r.store.put(&key, body.clone(), &[]))
                .map_err(RouteError::Store)?;
            uris.push(r.store.uri(&key));
        }
        self.audit_restrict("restrict_set", scope, uris, by, reason)?;
        // The records of the covered clips show it.
        let (holds, restrictions) = (self.hold_records()?, self.restrictions()?);
        let mut covered = Vec::new();
        for s in clips.iter().filter(|s| record.covers(&s.clip)) {
            self.refresh_record(s, &holds, &restrictions)?;
            covered.push(s.clip.id.clone());
        }
        Ok(RestrictReport {
            action: "set".into(),
            clips: covered,
            records: vec![record],
        })
    }

    /// Ends the restriction over `scope` (exit 2 when none is in force).
    pub fn restrict_release(
        &self,
        scope: &Selector,
        reason: &str,
        by: &str,
    ) -> Result<RestrictReport, RouteError> {
        let clips = self.clips()?;
        self.check_known(scope, &clips)?;
        let (gone, kept): (Vec<StoredRestriction>, Vec<StoredRestriction>) = self
            .restrictions()?
            .into_iter()
            .partition(|r| &r.record.scope == scope);
        if gone.is_empty() {
            let mut scopes: Vec<String> = kept.iter().map(|r| r.record.scope.to_string()).collect();
            scopes.sort();
            scopes.dedup();
            return Err(RouteError::UnknownRestriction {
                scope: scope.to_string(),
                known: format!(
                    "restrictions in force: {}",
                    name_list(scopes.iter().map(String::as_str))
                ),
            });
        }
        let mut uris = Vec::new();
        for r in &gone {
            let st = &self.region(&r.region)?.store;
            self.rt
                .block_on(st.delete(&r.key))
                .map_err(RouteError::Store)?;
            uris.push(st.uri(&r.key));
        }
        let reason = if reason.is_empty() { "-" } else { reason };
        self.audit_restrict("restrict_release", scope, uris, by, reason)?;
        // The records of the clips it covered show what is still in force.
        let holds = self.hold_records()?;
        let mut covered = Vec::new();
        for s in clips.iter().filter(|s| scope.matches(&s.clip)) {
            self.refresh_record(s, &holds, &kept)?;
            covered.push(s.clip.id.clone());
        }
        Ok(RestrictReport {
            action: "release".into(),
            records: vec![gone[0].record.clone()],
            clips: covered,
        })
    }

    fn audit_restrict(
        &self,
        action: &str,
        scope: &Selector,
        objects: Vec<String>,
        by: &str,
        reason: &str,
    ) -> Result<(), RouteError> {
        let (kind, id) = scope.parts();
        self.audit.append(Event {
            action: action.into(),
            clip: matches!(scope, Selector::Clip(_)).then(|| id.to_string()),
            device: matches!(scope, Selector::Device(_)).then(|| id.to_string()),
            account: matches!(scope, Selector::Account(_)).then(|| id.to_string()),
            region: None,
            objects,
            detail: Some(format!("{kind} {id}; by {by:?}; reason {reason:?}")),
        })?;
        Ok(())
    }

    /// The restrictions in force; with a selector, those over the selected clips or the
    /// selected scope itself.
    pub fn restrict_list(&self, sel: Option<&Selector>) -> Result<Vec<RestrictListed>, RouteError> {
        let clips = self.clips()?;
        if let Some(sel) = sel {
            self.check_known(sel, &clips)?;
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for r in self.restrictions()? {
            if !seen.insert(r.key.clone()) {
                continue;
            }
            let covered: Vec<String> = clips
                .iter()
                .filter(|s| r.record.covers(&s.clip))
                .map(|s| s.clip.id.clone())
                .collect();
            let relevant = sel.is_none_or(|sel| {
                &r.record.scope == sel
                    || clips
                        .iter()
                        .any(|s| sel.matches(&s.clip) && r.record.covers(&s.clip))
            });
            if relevant {
                out.push(RestrictListed {
                    record: r.record,
                    clips: covered,
                });
            }
        }
        out.sort_by(|a, b| a.record.set_at.cmp(&b.record.set_at));
        Ok(out)
    }

    /// Corrects a clip's record (recording time, account, classification) and re-issues its
    /// sidecar with the retention recomputed from the corrected record (see [`correct`]).
    /// Refused, with nothing changed: an unknown clip or account (exit 2), no change asked,
    /// an empty reason, a recording time out of bounds, a correction that would take the
    /// clip out of a hold or a restriction in force.
    pub fn correct(&self, req: &CorrectRequest) -> Result<CorrectReport, RouteError> {
        if req.reason.trim().is_empty() {
            return Err(RouteError::Invalid(
                "the reason is empty (--reason says why the record is corrected)".into(),
            ));
        }
        if req.recorded_at.is_none() && req.account.is_none() && req.classification.is_none() {
            return Err(RouteError::Invalid(
                "nothing to correct: give --recorded-at, --account or --classification".into(),
            ));
        }
        let sel = Selector::Clip(req.clip.clone());
        let (clips, all_holds) = self.clips_with_holds()?;
        self.check_known(&sel, &clips)?;
        let Some(s) = clips.iter().find(|s| s.clip.id == req.clip) else {
            return Err(RouteError::Store(format!("clip {} vanished", req.clip)));
        };
        let old = &s.clip;
        let mut new = old.clone();
        let at = rfc3339(now());
        let mut changes: Vec<correct::Correction> = Vec::new();
        let mut change = |field: &str, old: &str, new: &str| {
            if old != new {
                changes.push(correct::Correction {
                    field: field.to_string(),
                    old: old.to_string(),
                    new: new.to_string(),
                    reason: req.reason.clone(),
                    by: req.by.clone(),
                    at: at.clone(),
                });
            }
        };
        if let Some(t) = req.recorded_at {
            check_recorded_at(t).map_err(RouteError::RecordedAt)?;
            new.recorded_at = rfc3339(t);
            change("recorded_at", &old.recorded_at, &new.recorded_at);
        }
        if let Some(a) = &req.account {
            ids::account(a).map_err(RouteError::Invalid)?;
            let known = self.devices.values().any(|d| &d.account == a)
                || clips.iter().any(|s| &s.clip.account == a);
            if !known {
                return Err(RouteError::Unknown {
                    kind: "account",
                    id: a.clone(),
                    known: format!(
                        "no configured device and no stored clip has it (known accounts: {})",
                        name_list(
                            self.devices
                                .values()
                                .map(|d| d.account.as_str())
                                .chain(clips.iter().map(|s| s.clip.account.as_str()))
                        )
                    ),
                });
            }
            new.account = a.clone();
            change("account", &old.account, &new.account);
        }
        if let Some(c) = &req.classification {
            let c = correct::parse_classification(c).map_err(RouteError::Invalid)?;
            new.classification = c.to_string();
            change("classification", &old.classification, &new.classification);
        }
        if changes.is_empty() {
            return Err(RouteError::Invalid(format!(
                "nothing to correct: clip {} already has these values",
                old.id
            )));
        }
        // Retention from the corrected record; originals keep their own (shorter) period
        // while they are still stored.
        let recorded = DateTime::parse_from_rfc3339(&new.recorded_at)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| RouteError::Store(format!("recorded_at {}: {e}", new.recorded_at)))?;
        let keep = self.retention_for(new.classification != correct::NON_PERSONAL)?;
        new.retain_until = rfc3339(recorded + keep);
        if new.originals_retain_until.is_some() {
            let o = parse_duration(&self.cfg.retention.originals).map_err(RouteError::Config)?;
            new.originals_retain_until = Some(rfc3339(recorded + o));
        }
        // Fail closed: no correction takes a clip out of a case holding it or out of a
        // restriction (another record of the same case, or another restriction, over the
        // corrected clip keeps it in).
        let restrictions = self.restrictions()?;
        let held_after = holds_over(&all_holds, &new);
        let restricted_after = restrictions_over(&restrictions, &new);
        let mut lost: Vec<String> = holds_over(&all_holds, old)
            .into_iter()
            .filter(|h| !held_after.iter().any(|a| a.case == h.case))
            .map(|h| format!("the hold of case {:?} over {}", h.case, h.scope))
            .collect();
        if restricted_after.is_empty() {
            lost.extend(
                restrictions_over(&restrictions, old)
                    .into_iter()
                    .map(|x| format!("the restriction over {}", x.scope)),
            );
        }
        if !lost.is_empty() {
            return Err(RouteError::Invalid(format!(
                "the correction would take clip {} out of {}; set it over the clip first (hold set --clip ID --case CASE, restrict set --clip ID), then correct; nothing was changed",
                old.id,
                lost.join(" and ")
            )));
        }
        new.holds = holds_over(&all_holds, &new);
        new.hold = !new.holds.is_empty();
        new.restrictions = restrictions_over(&restrictions, &new);
        new.restricted = !new.restrictions.is_empty();
        new.corrections.extend(changes.iter().cloned());
        let s2 = StoredSidecar {
            sidecar: s.sidecar.clone(),
            clip: new,
        };
        self.put_record(&s2)?;
        let reg = self.region(&old.region)?;
        let uri = reg.store.uri(&format!("clips/{}/sidecar.json", old.id));
        let downgrade = req.classification.is_some()
            && correct::is_downgrade(&old.classification, &s2.clip.classification);
        self.audit.append(Event {
            action: "correct".into(),
            clip: Some(old.id.clone()),
            device: Some(old.device.clone()),
            account: Some(s2.clip.account.clone()),
            region: Some(old.region.clone()),
            objects: vec![uri.clone()],
            detail: Some(format!(
                "{}; retain until {} -> {}; {}by {:?}; reason {:?}",
                changes
                    .iter()
                    .map(|c| format!("{} {:?} -> {:?}", c.field, c.old, c.new))
                    .collect::<Vec<_>>()
                    .join("; "),
                old.retain_until,
                s2.clip.retain_until,
                if downgrade {
                    "DOWNGRADE personal -> non_personal; "
                } else {
                    ""
                },
                req.by,
                req.reason
            )),
        })?;
        Ok(CorrectReport {
            clip: old.id.clone(),
            changes,
            retain_until: s2.clip.retain_until.clone(),
            originals_retain_until: s2.clip.originals_retain_until.clone(),
            hold: s2.clip.hold,
            downgrade,
            sidecar: uri,
        })
    }

    /// Gathers an account's clips (records and media, from every region) into `out`; each
    /// record shows the holds in force now. Returns the clips and those holds. The folders
    /// made here are 0700, the files 0600.
    ///
    /// Restricted clips (see [`restrict`]) are left out and listed under `withheld`, unless
    /// `case` names a hold in force that covers the clip (a case naming no hold in force is
    /// an error, before anything is written).
    pub fn export(
        &self,
        account: &str,
        out: &Path,
        case: Option<&str>,
    ) -> Result<ExportReport, RouteError> {
        let sel = Selector::Account(account.to_string());
        let (clips, all_holds) = self.clips_with_holds()?;
        self.check_known(&sel, &clips)?;
        let restrictions = self.restrictions()?;
        if let Some(case) = case {
            holds::check_case(case).map_err(RouteError::Invalid)?;
            if !all_holds.iter().any(|h| h.record.case == case) {
                let mut cases: Vec<&str> =
                    all_holds.iter().map(|h| h.record.case.as_str()).collect();
                cases.sort();
                cases.dedup();
                return Err(RouteError::UnknownCase {
                    case: case.to_string(),
                    known: format!("cases in force: {}", name_list(cases)),
                });
            }
        }
        crate::fsutil::create_private_dir_all(out).map_err(|source| RouteError::Io {
            path: out.to_path_buf(),
            source,
        })?;
        let mut rep = ExportReport {
            account: account.to_string(),
            out: out.to_path_buf(),
            case: case.map(str::to_string),
            ..Default::default()
        };
        for s in &clips {
            let c = &s.clip;
            if c.account != account {
                continue;
            }
            let restricted = restrictions_over(&restrictions, c);
            if !restricted.is_empty() {
                let excepted =
                    case.is_some_and(|k| holds_over(&all_holds, c).iter().any(|h| h.case == k));
                if !excepted {
                    rep.withheld.insert(c.id.clone(), restricted);
                    continue;
                }
                rep.restricted_exported.push(c.id.clone());
            }
            let r = self.region(&c.region)?;
            let dir = out.join(&c.id);
            let io = |source| RouteError::Io {
                path: dir.clone(),
                source,
            };
            crate::fsutil::create_private_dir_all(&dir).map_err(io)?;
            for o in c.objects.iter().filter(|o| o.kind == "media") {
                if let Some(b) = self
                    .rt
                    .block_on(r.store.get(&o.key))
                    .map_err(RouteError::Store)?
                {
                    let name = o.key.rsplit('/').next().unwrap_or("media");
                    crate::fsutil::write_atomic_private(&dir.join(name), &b).map_err(io)?;
                }
            }
            let mut s2 = s.clone();
            s2.clip.holds = holds_over(&all_holds, c);
            s2.clip.hold = !s2.clip.holds.is_empty();
            s2.clip.restrictions = restrictions_over(&restrictions, c);
            s2.clip.restricted = !s2.clip.restrictions.is_empty();
            for h in &s2.clip.holds {
                if !rep.holds.contains(h) {
                    rep.holds.push(h.clone());
                }
            }
            crate::fsutil::write_atomic_private(
                &dir.join("sidecar.json"),
                &serde_json::to_vec_pretty(&s2).unwrap_or_default(),
            )
            .map_err(io)?;
            rep.clips.push(c.id.clone());
        }
        if !rep.withheld.is_empty() {
            rep.note = Some(format!(
                "{} restricted clip(s) left out (the person objected to their use; `--case` naming a hold in force over a clip exports it)",
                rep.withheld.len()
            ));
        }
        self.audit.append(Event {
            action: "export".into(),
            account: Some(account.to_string()),
            detail: Some(format!(
                "{} clips; {} withheld as restricted; {} restricted exported for case {:?}",
                rep.clips.len(),
                rep.withheld.len(),
                rep.restricted_exported.len(),
                case.unwrap_or("-")
            )),
            ..Default::default()
        })?;
        Ok(rep)
    }

    /// The region's disclosure signing key (Ed25519), from its key store; created there on
    /// first use (0600 in a folder store), with its public key beside it.
    fn disclosure_key(&self, region: &str) -> Result<ed25519_dalek::SigningKey, RouteError> {
        let r = self.region(region)?;
        let path = PathBuf::from(r.keys.uri(disclose::SIGNING_KEY));
        let get = || {
            self.rt
                .block_on(r.keys.get(disclose::SIGNING_KEY))
                .map_err(RouteError::Store)
        };
        if let Some(b) = get()? {
            return Ok(disclose::signing_key(&b, &path)?);
        }
        let seed = disclose::new_signing_key();
        let key = disclose::signing_key(&seed, &path)?;
        let meta = vec![("obscura-kind", "disclosure-key".to_string())];
        self.rt
            .block_on(r.keys.put_private(
                disclose::SIGNING_KEY,
                Bytes::copy_from_slice(&seed),
                &meta,
            ))
            .map_err(RouteError::Store)?;
        self.rt
            .block_on(r.keys.put(
                disclose::SIGNING_PUB,
                Bytes::from(disclose::public_pem(&key.verifying_key())),
                &meta,
            ))
            .map_err(RouteError::Store)?;
        // Two first disclosures at once: the key stored last is the one in force.
        match get()? {
            Some(b) => Ok(disclose::signing_key(&b, &path)?),
            None => Ok(key),
        }
    }

    /// Builds a disclosure package (see [`disclose`]) for a law-enforcement or court request:
    /// the redacted media and the sidecars of the selected clips (with `originals`, their
    /// decrypted originals), a manifest of every file with its sha256, signed with the
    /// region's disclosure key. Restricted clips are withheld (listed, with why) unless a
    /// hold of the request's case covers them, and so are clips stored unredacted unless
    /// `originals` is given; `originals` is refused unless such a hold covers every selected
    /// clip. Unknown ids, an unusable out folder or a refusal are
    /// errors before anything is written. Audited (case, recipient, clips, manifest hash).
    pub fn disclose(&self, req: &DiscloseRequest) -> Result<DiscloseReport, RouteError> {
        holds::check_case(&req.case).map_err(RouteError::Invalid)?;
        let recipient = req.recipient.trim();
        if recipient.is_empty() || recipient.len() > 256 || recipient.chars().any(char::is_control)
        {
            return Err(RouteError::Invalid(
                "--recipient names who receives the package (1 to 256 bytes, no control characters)".into(),
            ));
        }
        check_window(req.from, req.to)?;
        if let Some(region) = &req.region
            && !self.regions.contains_key(region)
        {
            return Err(RouteError::Unknown {
                kind: "region",
                id: region.clone(),
                known: format!(
                    "known regions: {}",
                    name_list(self.regions.keys().map(String::as_str))
                ),
            });
        }
        disclose::check_out(&req.out)?;
        let (clips, all_holds) = self.clips_with_holds()?;
        self.check_known(&req.scope, &clips)?;
        let within = |c: &ClipInfo| {
            let t = DateTime::parse_from_rfc3339(&c.recorded_at)
                .ok()
                .map(|d| d.with_timezone(&Utc));
            let after = req.from.is_none_or(|f| t.is_some_and(|t| t >= f));
            let before = req.to.is_none_or(|u| t.is_some_and(|t| t <= u));
            after && before
        };
        let selected: Vec<&StoredSidecar> = clips
            .iter()
            .filter(|s| req.scope.matches(&s.clip) && within(&s.clip))
            .filter(|s| req.region.as_ref().is_none_or(|r| &s.clip.region == r))
            .collect();
        let window = match (req.from, req.to) {
            (None, None) => String::new(),
            (f, t) => format!(
                " recorded within {}..{}",
                f.map(rfc3339).unwrap_or_default(),
                t.map(rfc3339).unwrap_or_default()
            ),
        };
        let mut regions: Vec<&str> = selected.iter().map(|s| s.clip.region.as_str()).collect();
        regions.sort_unstable();
        regions.dedup();
        let region = match regions.as_slice() {
            [] => {
                return Err(RouteError::Invalid(format!(
                    "no stored clip of {}{window}{}: nothing to disclose; nothing was written",
                    req.scope,
                    req.region
                        .as_ref()
                        .map(|r| format!(" in region {r}"))
                        .unwrap_or_default()
                )));
            }
            [one] => one.to_string(),
            many => {
                return Err(RouteError::Invalid(format!(
                    "the clips of {}{window} are stored in regions {}; a package is signed by one region's key: add --region (one package per region); nothing was written",
                    req.scope,
                    many.join(", ")
                )));
            }
        };
        let held_by_case =
            |c: &ClipInfo| holds_over(&all_holds, c).iter().any(|h| h.case == req.case);
        if req.originals {
            let refused: Vec<&str> = selected
                .iter()
                .filter(|s| !held_by_case(&s.clip))
                .map(|s| s.clip.id.as_str())
                .collect();
            if !refused.is_empty() {
                return Err(RouteError::OriginalsNotHeld {
                    case: req.case.clone(),
                    clips: format!("clip(s) {}", name_list(refused)),
                });
            }
        }
        let restrictions = self.restrictions()?;
        let r = self.region(&region)?;
        let key = self.disclosure_key(&region)?;
        let mut pkg = disclose::Package::start(&req.out)?;
        let mut rep = DiscloseReport {
            out: req.out.clone(),
            case: req.case.clone(),
            recipient: recipient.to_string(),
            region: region.clone(),
            ..Default::default()
        };
        let mut given = Vec::new();
        let mut sources = Vec::new();
        for s in &selected {
            let c = &s.clip;
            let held = holds_over(&all_holds, c);
            let by_case = held.iter().any(|h| h.case == req.case);
            let restricted = restrictions_over(&restrictions, c);
            if !restricted.is_empty() && !by_case {
                rep.withheld.push(disclose::Withheld {
                    clip: c.id.clone(),
                    what: "clip".into(),
                    why: format!(
                        "restricted (the person objected to its use: {}); no hold of case '{}' covers it",
                        restricted
                            .iter()
                            .map(|x| format!("{} by {} at {}: {}", x.scope, x.by, x.set_at, x.reason))
                            .collect::<Vec<_>>()
                            .join("; "),
                        req.case
                    ),
                });
                continue;
            }
            // Media stored unredacted (a region with `accept_unredacted`) is as good as the
            // original: given only on the terms of `--originals`.
            if !c.redacted && !req.originals {
                rep.withheld.push(disclose::Withheld {
                    clip: c.id.clone(),
                    what: "clip".into(),
                    why: format!(
                        "its media is stored unredacted (region {}); it is given only as an original: --originals, under a hold of case '{}'",
                        c.region, req.case
                    ),
                });
                continue;
            }
            for o in c.objects.iter().filter(|o| o.kind == "media") {
                let b = self
                    .rt
                    .block_on(r.store.get(&o.key))
                    .map_err(RouteError::Store)?
                    .ok_or_else(|| RouteError::Store(format!("{}: missing", o.uri)))?;
                let name = o.key.rsplit('/').next().unwrap_or("media");
                pkg.add(&c.id, name, "media", &b)?;
                sources.push(o.uri.clone());
            }
            let mut s2 = (*s).clone();
            s2.clip.holds = held.clone();
            s2.clip.hold = !held.is_empty();
            s2.clip.restricted = !restricted.is_empty();
            s2.clip.restrictions = restricted.clone();
            pkg.add(
                &c.id,
                "sidecar.json",
                "sidecar",
                &serde_json::to_vec_pretty(&s2).unwrap_or_default(),
            )?;
            sources.push(r.store.uri(&format!("clips/{}/sidecar.json", c.id)));
            let mut original = false;
            if req.originals {
                match self.original_of(s)? {
                    Some((plain, uri)) => {
                        pkg.add(&c.id, &format!("original.{}", original_ext(s)), "original", &plain)?;
                        sources.push(uri);
                        rep.originals.push(c.id.clone());
                        original = true;
                    }
                    None => rep.withheld.push(disclose::Withheld {
                        clip: c.id.clone(),
                        what: "original".into(),
                        why: "no original is stored (the region has no vault, or the original's retention ended)".into(),
                    }),
                }
            }
            given.push(disclose::GivenClip {
                id: c.id.clone(),
                device: c.device.clone(),
                account: c.account.clone(),
                region: c.region.clone(),
                recorded_at: c.recorded_at.clone(),
                holds: held.iter().map(|h| h.case.clone()).collect(),
                restricted: !restricted.is_empty(),
                original,
            });
            rep.clips.push(c.id.clone());
        }
        let manifest = disclose::Manifest {
            format: disclose::FORMAT.into(),
            case: req.case.clone(),
            recipient: recipient.to_string(),
            by: req.by.clone(),
            created_at: rfc3339(now()),
            region: region.clone(),
            selection: disclose::Selection {
                scope: req.scope.clone(),
                from: req.from.map(rfc3339),
                to: req.to.map(rfc3339),
                region: req.region.clone(),
                originals: req.originals,
            },
            clips: given,
            withheld: rep.withheld.clone(),
            files: Vec::new(),
            public_key: String::new(),
        };
        let body = pkg.seal(manifest, &key)?;
        rep.files = pkg.files().len();
        rep.manifest_sha256 = crate::fsutil::sha256_bytes(&body);
        rep.public_key = hex::encode(key.verifying_key().as_bytes());
        // Recorded before the package appears at its name: a disclosure is never given
        // without its audit entry (a failed rename leaves an entry for a package not made).
        let (kind, id) = req.scope.parts();
        self.audit.append(Event {
            action: "disclose".into(),
            clip: matches!(req.scope, Selector::Clip(_)).then(|| id.to_string()),
            device: matches!(req.scope, Selector::Device(_)).then(|| id.to_string()),
            account: matches!(req.scope, Selector::Account(_)).then(|| id.to_string()),
            region: Some(region.clone()),
            objects: sources,
            detail: Some(format!(
                "case {:?}; recipient {:?}; by {:?}; {kind} {id}{window}; clips given [{}]; originals [{}]; withheld [{}]; manifest sha256 {}; signed by {}; out {}",
                req.case,
                recipient,
                req.by,
                rep.clips.join(", "),
                rep.originals.join(", "),
                rep.withheld
                    .iter()
                    .map(|w| format!("{} {}", w.what, w.clip))
                    .collect::<Vec<_>>()
                    .join(", "),
                rep.manifest_sha256,
                rep.public_key,
                req.out.display()
            )),
        })?;
        pkg.commit()?;
        Ok(rep)
    }

    /// A clip's original, decrypted with its key and checked against the input's sha256 in
    /// its sidecar, with the original's URI; `None` when none is stored.
    fn original_of(&self, s: &StoredSidecar) -> Result<Option<(Vec<u8>, String)>, RouteError> {
        let c = &s.clip;
        let (Some(o), Some(k)) = (
            c.objects.iter().find(|o| o.kind == "original"),
            c.objects.iter().find(|o| o.kind == "key"),
        ) else {
            return Ok(None);
        };
        let r = self.region(&c.region)?;
        let Some(vault) = r.vault.as_ref() else {
            return Ok(None);
        };
        let (Some(enc), Some(key)) = (
            self.rt
                .block_on(vault.get(&o.key))
                .map_err(RouteError::Store)?,
            self.rt
                .block_on(r.keys.get(&k.key))
                .map_err(RouteError::Store)?,
        ) else {
            return Ok(None);
        };
        let key: [u8; 32] = key
            .as_ref()
            .try_into()
            .map_err(|_| RouteError::Store(format!("{}: not a key", k.uri)))?;
        let plain = vault::decrypt(&key, &enc)?;
        if crate::fsutil::sha256_bytes(&plain) != s.sidecar.input.sha256 {
            return Err(RouteError::Store(format!(
                "{}: decrypted, its sha256 is not the input's in the clip's sidecar",
                o.uri
            )));
        }
        Ok(Some((plain, o.uri.clone())))
    }
}

/// A disclosure: what `obscura disclose` asks for.
#[derive(Debug, Clone)]
pub struct DiscloseRequest {
    pub scope: Selector,
    /// The request's case: restricted clips and originals are given only where a hold of
    /// this case covers them.
    pub case: String,
    pub recipient: String,
    pub by: String,
    /// Only clips recorded at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only clips recorded at or before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only clips stored in this region (a package is signed by one region's key).
    pub region: Option<String>,
    /// Also the decrypted originals (each selected clip must be held by `case`).
    pub originals: bool,
    pub out: PathBuf,
}

/// What a disclosure gave.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DiscloseReport {
    pub out: PathBuf,
    pub case: String,
    pub recipient: String,
    pub region: String,
    /// The clips given.
    pub clips: Vec<String>,
    /// Of those, the clips whose original was given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub originals: Vec<String>,
    /// What was selected and not given, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<disclose::Withheld>,
    pub files: usize,
    /// sha256 of `manifest.json` as signed.
    pub manifest_sha256: String,
    /// The signer's public key, hex.
    pub public_key: String,
}

/// A hold record as stored: where, under which key.
#[derive(Debug, Clone)]
pub struct StoredHold {
    pub region: String,
    pub key: String,
    pub record: HoldRecord,
}

/// A hold in force and the stored clips it covers now.
#[derive(Debug, Clone, Serialize)]
pub struct HoldListed {
    #[serde(flatten)]
    pub record: HoldRecord,
    pub clips: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ExportReport {
    pub account: String,
    pub clips: Vec<String>,
    pub out: PathBuf,
    /// The holds in force over the exported clips.
    pub holds: Vec<HoldRecord>,
    /// The hold case that `--case` named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    /// Restricted clips left out, each with the restrictions over it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub withheld: BTreeMap<String, Vec<RestrictRecord>>,
    /// Restricted clips exported because a hold of `case` covers them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restricted_exported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A restriction record as stored: where, under which key.
#[derive(Debug, Clone)]
pub struct StoredRestriction {
    pub region: String,
    pub key: String,
    pub record: RestrictRecord,
}

/// A restriction in force and the stored clips it covers now.
#[derive(Debug, Clone, Serialize)]
pub struct RestrictListed {
    #[serde(flatten)]
    pub record: RestrictRecord,
    pub clips: Vec<String>,
}

/// What a restriction change did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RestrictReport {
    /// set | release
    pub action: String,
    pub records: Vec<RestrictRecord>,
    /// The stored clips the records cover.
    pub clips: Vec<String>,
}

/// A correction of a clip's record: what `obscura correct` asks for.
#[derive(Debug, Clone)]
pub struct CorrectRequest {
    pub clip: String,
    pub recorded_at: Option<DateTime<Utc>>,
    pub account: Option<String>,
    /// `personal` or `non-personal`.
    pub classification: Option<String>,
    pub reason: String,
    pub by: String,
}

/// What a correction changed.
#[derive(Debug, Clone, Serialize)]
pub struct CorrectReport {
    pub clip: String,
    pub changes: Vec<correct::Correction>,
    /// The clip's retention, recomputed (a hold in force still keeps it past this).
    pub retain_until: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub originals_retain_until: Option<String>,
    pub hold: bool,
    /// True when a personal clip was made non-personal.
    pub downgrade: bool,
    /// The re-issued sidecar.
    pub sidecar: String,
}

/// The restrictions (one per scope, however many regions store it) over `c`.
fn restrictions_over(all: &[StoredRestriction], c: &ClipInfo) -> Vec<RestrictRecord> {
    let mut v: Vec<RestrictRecord> = Vec::new();
    for r in all.iter().filter(|r| r.record.covers(c)) {
        if !v.contains(&r.record) {
            v.push(r.record.clone());
        }
    }
    v
}

/// The extension of a clip's original file: its input's, where that is a short plain one.
fn original_ext(s: &StoredSidecar) -> String {
    Path::new(&s.sidecar.input.path)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| !e.is_empty() && e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "bin".into())
}

/// The records (one per case and scope, however many regions store it) that cover `c`.
fn holds_over(all: &[StoredHold], c: &ClipInfo) -> Vec<HoldRecord> {
    let mut v: Vec<HoldRecord> = Vec::new();
    for h in all.iter().filter(|h| h.record.covers(c)) {
        if !v.contains(&h.record) {
            v.push(h.record.clone());
        }
    }
    v.sort_by(|a, b| (&a.case, &a.set_at).cmp(&(&b.case, &b.set_at)));
    v
}

/// What a redacted output says about how far it can be trusted: whether its audio was
/// checked for speech and whether faces and voices were really redacted.
struct Classified {
    audio: bool,
    /// Audio that no voice detector checked (voice mode `tag`/`keep`, or the VAD failed).
    audio_unchecked: bool,
    faces_unredacted: bool,
    voices_unredacted: bool,
}

impl Classified {
    fn of(s: &Sidecar, cfg: &Config) -> Classified {
        use crate::redact::audio::VoiceMode;
        let audio = s.input.audio.is_some();
        let video = s.input.video.is_some();
        let voice = s.voice.as_ref();
        let audio_unchecked = audio
            && (matches!(cfg.voice.mode, VoiceMode::Tag | VoiceMode::Keep)
                || voice.is_none_or(|v| v.vad_failed || v.model_sha256.is_empty()));
        let voices_unredacted = audio
            && !voice.is_some_and(|v| matches!(v.mode.as_str(), "mute" | "bleep" | "disguise"));
        let faces_unredacted = video
            && s.redaction
                .as_ref()
                .is_none_or(|r| r.style == crate::redact::video::Style::Tag.name());
        Classified {
            audio,
            audio_unchecked,
            faces_unredacted,
            voices_unredacted,
        }
    }

    /// `face` (a face track), `voice` (speech found), `audio` (audio that was not checked for
    /// speech: personal until shown otherwise).
    fn labels(&self, faces: u64, speech_s: f64) -> Vec<String> {
        let mut labels = Vec::new();
        if faces > 0 {
            labels.push("face".to_string());
        }
        if speech_s > 0.0 {
            labels.push("voice".to_string());
        } else if self.audio && self.audio_unchecked {
            labels.push("audio".to_string());
        }
        labels
    }

    /// What was left unredacted, if anything.
    fn unredacted(&self) -> Option<String> {
        match (self.faces_unredacted, self.voices_unredacted) {
            (true, true) => Some("faces and voices were".into()),
            (true, false) => Some("faces were".into()),
            (false, true) => Some("voices were".into()),
            (false, false) => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A time in 2030 was taken as the recording time (from a file name or `--recorded-at`)
    /// and stretched the clip's retention by years.
    #[test]
    fn regression_a_recording_time_in_the_future_stretched_retention() {
        let soon = now() + chrono::Duration::seconds(RECORDED_AT_MAX_SKEW_S - 30);
        assert!(check_recorded_at(soon).is_ok());
        let later = now() + chrono::Duration::seconds(RECORDED_AT_MAX_SKEW_S + 30);
        let e = check_recorded_at(later).unwrap_err();
        assert!(e.contains("future") && e.contains("RFC 3339"), "{e}");
        let e = parse_recorded_at("1999-12-31T23:59:59Z").unwrap_err();
        assert!(e.contains(RECORDED_AT_FLOOR), "{e}");
        assert!(parse_recorded_at("2030-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn recording_times_are_read_in_rfc_3339_and_in_the_file_name_form() {
        let want = DateTime::parse_from_rfc3339("2026-11-29T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for s in [
            "2026-11-29T08:00:00Z",
            "2026-11-29T09:00:00+01:00",
            "20261129T080000Z",
        ] {
            assert_eq!(parse_recorded_at(s).unwrap(), want, "{s}");
        }
        for s in ["2026-11-29", "20261129T080000", "yesterday", ""] {
            let e = parse_recorded_at(s).unwrap_err();
            assert!(
                e.contains("RFC 3339") && e.contains("20261129T080000Z"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_hold_scope_reads_as_kind_and_id() {
        let s = Selector::Device("cam-1".into());
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, r#"{"kind":"device","id":"cam-1"}"#);
        assert_eq!(serde_json::from_str::<Selector>(&j).unwrap(), s);
    }
}
