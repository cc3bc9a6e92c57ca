//! The one typed configuration: TOML, unknown keys rejected, validated at load, documented
//! defaults (`docs/config.md` lists every key). Command-line flags override fields after
//! loading, and the result is validated again.
//!
//! Owns: parsing and validation of settings. Must not touch: media, models or stores — other
//! modules receive already-valid values.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::tracker::{EDGE_REACH, TrackerConfig};
use crate::detect::{Device, ModelKind};
use crate::media::encode::Quality;
use crate::redact::video::{Style, StyleParams};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: invalid config: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: String, message: String },
}

/// Writes an `f32` setting as the short decimal it was written as (0.2, not 0.2000000029…).
fn short_f32<S: serde::Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((f64::from(*v) * 1e6).round() / 1e6)
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub runtime: RuntimeConfig,
    pub detect: DetectConfig,
    pub tracker: TrackerSettings,
    pub redact: RedactSettings,
    pub voice: VoiceSettings,
    pub encode: EncodeSettings,
    pub limits: Limits,
    /// Storage regions by name (`[a-z0-9-]+`).
    pub regions: std::collections::BTreeMap<String, RegionConfig>,
    /// Devices by id: region, account, flags.
    pub devices: std::collections::BTreeMap<String, DeviceConfig>,
    /// More devices from a TOML file of the same `[devices]` form, or a CSV
    /// `device,region,account,minor` (header line allowed).
    pub devices_file: Option<PathBuf>,
    pub retention: RetentionConfig,
    pub paths: PathsConfig,
    /// `obscura daemon`: listen address, workers, state folder.
    pub daemon: DaemonConfig,
    /// Watched inbox folders (`[[inbox]]`).
    pub inbox: Vec<InboxConfig>,
    /// RTSP cameras recorded into clips (`[[stream]]`).
    pub stream: Vec<StreamConfig>,
    /// Scale-out over NATS JetStream; without it the daemon works alone on local folders.
    pub queue: Option<QueueConfig>,
}

/// The daemon's own settings (`[daemon]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Address of /metrics, /healthz and /readyz (loopback by default).
    pub listen: String,
    /// Clips processed at once.
    pub workers: usize,
    /// The daemon's own folder: RTSP segments in progress (`spool/`) and finished
    /// (`streams/<device>/`), waiting for processing like inbox files.
    pub state_dir: PathBuf,
    /// An inbox file is taken once its size and mtime have not changed for this long.
    pub stable_secs: f64,
    /// How often inboxes are scanned, milliseconds.
    pub poll_ms: u64,
    /// /readyz reports not ready when more clips than this wait on disk.
    pub max_backlog: usize,
    /// On SIGTERM/SIGINT, clips in flight get this long to finish before they are abandoned
    /// (left in the inbox, reprocessed after restart).
    pub drain_secs: u64,
    /// Longest wait before retrying a clip that failed for a passing reason (store or disk).
    pub retry_max_secs: u64,
    /// Seconds with no clip in flight after which the decoded-frame memory kept for the next
    /// clip (`media::frame_memory`, up to `limits.max_held_mib`) is given back to the system;
    /// 0 keeps it.
    pub release_memory_after_secs: u64,
    /// /readyz reports not ready, naming the camera, when a `[[stream]]` has delivered no
    /// video for longer than this, or has had no segment recorded for longer than its
    /// `segment` plus this (seconds; 1..=86400, above every stream's `stall_secs`).
    pub stream_stale_secs: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: "127.0.0.1:9750".into(),
            workers: 2,
            state_dir: PathBuf::from("/var/lib/obscura/state"),
            stable_secs: 2.0,
            poll_ms: 500,
            max_backlog: 1000,
            drain_secs: 30,
            retry_max_secs: 300,
            release_memory_after_secs: 30,
            stream_stale_secs: 60,
        }
    }
}

/// Where an inbox file's device id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceFrom {
    /// `inbox/<device-id>/<file>` (default).
    #[default]
    ParentDir,
    /// Every file belongs to the inbox's `device`.
    Fixed,
}

/// One watched folder (`[[inbox]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub device_from: DeviceFrom,
    /// The device of every file, with `device_from = "fixed"`.
    #[serde(default)]
    pub device: Option<String>,
}

/// One RTSP camera (`[[stream]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub device: String,
    /// `rtsp://` or `rtsps://` URL (credentials in it are never logged).
    pub url: String,
    /// Longest clip, e.g. "60s": a clip holds the whole keyframe intervals (GOPs) that fit
    /// within it (cut only at keyframes, no frame lost; one longer GOP makes a clip alone).
    /// See docs/daemon.md for measured lengths.
    #[serde(default = "default_segment")]
    pub segment: String,
    /// Seconds without data before the stream is restarted.
    #[serde(default = "default_stream_stall")]
    pub stall_secs: u64,
    /// Longest wait between reconnection attempts (backoff doubles from 0.5 s up to this).
    #[serde(default = "default_backoff_max")]
    pub backoff_max_secs: u64,
    /// RTSP jitter buffer, milliseconds.
    #[serde(default = "default_latency")]
    pub latency_ms: u32,
    /// `record` (default): the camera's audio track (PCMU/PCMA, AAC, Opus) goes into each
    /// segment with the video and is redacted by `voice` like a file's; `drop`: video only.
    #[serde(default)]
    pub audio: StreamAudio,
}

/// What a recorder does with a camera's audio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamAudio {
    #[default]
    Record,
    Drop,
}

fn default_segment() -> String {
    "60s".into()
}
fn default_stream_stall() -> u64 {
    10
}
fn default_backoff_max() -> u64 {
    30
}
fn default_latency() -> u32 {
    200
}

impl StreamConfig {
    /// The segment length (validated at load).
    pub fn segment_duration(&self) -> std::time::Duration {
        parse_duration(&self.segment)
            .ok()
            .and_then(|d| d.to_std().ok())
            .unwrap_or(std::time::Duration::from_secs(60))
    }
}

/// NATS JetStream work queue (`[queue]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Server URL(s), comma-separated: `nats://127.0.0.1:4222`.
    pub nats: String,
    /// Work-queue stream name (created when missing); subjects `<subject>.<region>`.
    #[serde(default = "default_stream_name")]
    pub stream: String,
    /// Subject prefix of jobs; dead letters go to `<subject>.dead.<region>`.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Jobs pulled at once by this node (0: this node only publishes).
    #[serde(default = "default_queue_workers")]
    pub workers: usize,
    /// Regions this node may process (data residency); empty: all configured regions.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Seconds without an ack or progress report before a job is redelivered.
    #[serde(default = "default_ack_wait")]
    pub ack_wait_secs: u64,
    /// Deliveries before a job goes to the dead-letter subject and the quarantine.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: i64,
}

fn default_stream_name() -> String {
    "OBSCURA_CLIPS".into()
}
fn default_subject() -> String {
    "obscura.clips".into()
}
fn default_queue_workers() -> usize {
    1
}
fn default_ack_wait() -> u64 {
    60
}
fn default_max_deliver() -> i64 {
    3
}

/// One region's storage (URLs: `file:///abs/dir` or `s3://bucket/prefix?endpoint=…&region=…`;
/// credentials come from the environment, never from this file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Redacted media and sidecars.
    pub store: String,
    /// Encrypted originals; without it originals are never stored.
    #[serde(default)]
    pub vault: Option<String>,
    /// Per-clip keys of the vault, kept apart from it (default: the store's `keys/` prefix).
    #[serde(default)]
    pub keys: Option<String>,
    /// Whether this region stores media that was not redacted (`--style tag`, `--voice tag`
    /// or `keep`). Off by default: such a clip fails and goes to the quarantine.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_unredacted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub region: String,
    pub account: String,
    #[serde(default)]
    pub minor: bool,
}

/// Retention per classification, as durations like "30d", "12h", "1y".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub personal: String,
    pub non_personal: String,
    pub originals: String,
    /// Recorded in each clip's sidecar.
    pub legal_basis: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            personal: "30d".into(),
            non_personal: "365d".into(),
            originals: "7d".into(),
            legal_basis: "legitimate_interest".into(),
        }
    }
}

/// Local folders of the routing layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// Inputs that could not be processed are copied here with a reason file.
    pub quarantine: PathBuf,
    /// The append-only audit log.
    pub audit: PathBuf,
    /// The audit log's HMAC key (32 bytes, created 0600 on first append; default:
    /// `<audit>.key`). Losing it makes the log's HMAC entries unverifiable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_key: Option<PathBuf>,
    /// Scratch space for redacted outputs before they are uploaded.
    pub work: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            quarantine: PathBuf::from("/var/lib/obscura/quarantine"),
            audit: PathBuf::from("/var/lib/obscura/audit.jsonl"),
            audit_key: None,
            work: std::env::temp_dir().join("obscura-work"),
        }
    }
}

/// Parses "30d", "12h", "90m", "45s", "2w", "1y" (365 days).
pub fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("'{s}': expected a number and a unit such as 30d"))?;
    let d = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        "w" => chrono::Duration::try_weeks(n),
        "y" => chrono::Duration::try_days(n.saturating_mul(365)),
        _ => None,
    };
    d.ok_or_else(|| format!("'{s}': unit must be s, m, h, d, w or y"))
}

/// Checks an RTSP URL from the configuration before it reaches GStreamer: scheme, host, no
/// whitespace or control characters.
pub fn validate_stream_url(u: &str) -> Result<(), String> {
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    let url = url::Url::parse(u).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "rtsp" | "rtsps" | "rtspt") {
        return Err("must be an rtsp://, rtsps:// or rtspt:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(())
}

/// The URL without user name and password, for logs and metrics.
pub fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// What happens when voice activity detection cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VadFailure {
    /// The clip fails (default).
    #[default]
    Fail,
    /// The rest of the audio track is muted and the clip goes on (noted in the sidecar).
    Mute,
}

/// Voice redaction settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceSettings {
    /// `mute` (default), `bleep`, `disguise`, `tag` or `keep`.
    pub mode: crate::redact::audio::VoiceMode,
    /// VAD probability that starts speech.
    #[serde(serialize_with = "short_f32")]
    pub threshold: f32,
    /// Speech ends after the probability stays below this for `min_silence_s`; it also bounds
    /// the onset look-back. None: half of `threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_threshold: Option<f32>,
    /// Seconds before a segment's first confident window that it may reach back over
    /// windows at or above the end threshold (the onset of an utterance).
    pub onset_lookback_s: f64,
    /// Seconds redacted before and after each speech segment.
    pub pad_s: f64,
    /// Speech ends after this much silence (seconds).
    pub min_silence_s: f64,
    /// Speech segments shorter than this are ignored (seconds; 0 = none is).
    pub min_speech_s: f64,
    /// McAdams coefficient of `disguise` (0.5..1; lower is stronger).
    pub disguise_alpha: f64,
    /// `fail` (default) or `mute`: what happens when the VAD cannot run.
    pub on_vad_failure: VadFailure,
}

impl VoiceSettings {
    /// The probability under which speech ends (`end_threshold`, else half of `threshold`).
    pub fn end_threshold(&self) -> f32 {
        self.end_threshold.unwrap_or(self.threshold / 2.0)
    }
}

impl Default for VoiceSettings {
    fn default() -> Self {
        VoiceSettings {
            mode: crate::redact::audio::VoiceMode::Mute,
            threshold: 0.4,
            end_threshold: None,
            onset_lookback_s: 0.3,
            pad_s: 0.3,
            min_silence_s: 0.1,
            min_speech_s: 0.0,
            disguise_alpha: 0.8,
            on_vad_failure: VadFailure::Fail,
        }
    }
}

/// Where the ONNX Runtime library and the models are, and what runs inference.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so*` (file or folder). Default: `OBSCURA_ORT_LIB`, then the
    /// set-up script's copy, then `/usr/local/lib/obscura`.
    pub onnxruntime_lib: Option<PathBuf>,
    /// Folder holding the model files. Default: `OBSCURA_MODELS`, then `models/` beside the
    /// binary or the repository.
    pub models_dir: Option<PathBuf>,
    /// `cpu` (default), `cuda`, or `auto`.
    pub device: Device,
    /// ONNX Runtime intra-op threads per session (default 1). On a 2-core host one thread
    /// costs ~8% less CPU per file than two (the second thread's hand-offs cost more than it
    /// saves while decoder and encoder want the other core); raise it on hosts with cores to
    /// spare and one file at a time.
    pub threads: usize,
}

impl RuntimeConfig {
    /// The settings of every inference session built for this configuration.
    pub fn session_options(&self) -> crate::detect::SessionOptions {
        crate::detect::SessionOptions {
            device: self.device,
            intra_threads: self.threads,
            ..Default::default()
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            onnxruntime_lib: None,
            models_dir: None,
            device: Device::Cpu,
            threads: 1,
        }
    }
}

/// Detector input size: derived from the smallest face to find, or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSize {
    Auto,
    Fixed(u32, u32),
}

impl Serialize for InputSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InputSize::Auto => s.serialize_str("auto"),
            InputSize::Fixed(w, h) => s.serialize_str(&format!("{w}x{h}")),
        }
    }
}

impl<'de> Deserialize<'de> for InputSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for InputSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(InputSize::Auto);
        }
        let (w, h) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("'{s}': expected 'auto' or WIDTHxHEIGHT"))?;
        let p = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("'{s}': not a size"))
        };
        let (w, h) = (p(w)?, p(h)?);
        if w == 0 || h == 0 || w % 32 != 0 || h % 32 != 0 || w > 8192 || h > 8192 {
            return Err(format!(
                "'{s}': width and height must be multiples of 32 between 32 and 8192"
            ));
        }
        Ok(InputSize::Fixed(w, h))
    }
}

/// Face detection settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// `yunet` (default) or `centerface`.
    pub model: ModelKind,
    /// Minimum detector score, 0..1 (default 0.5: recall first; a cat's face may be blurred).
    #[serde(serialize_with = "short_f32")]
    pub threshold: f32,
    /// Smallest face (width in source pixels) that must be found; sets the `auto` input size.
    pub min_face_px: u32,
    /// `auto` (from `min_face_px`) or `WIDTHxHEIGHT` (multiples of 32).
    pub input_size: InputSize,
    /// Run the main pass on every n-th frame; the tracker fills the others. 0 (default) =
    /// about six times a second (every 5th frame at 30 fps, every 2nd at 12 fps).
    pub every: u32,
    /// Frames per main-pass detector run, and zoom tiles per run. 0 (default) = auto: 1 on
    /// the CPU (batching measured no faster there, and four 1344x800 zoom tiles in one run
    /// cost 11% more CPU and 110 MB more memory than one at a time: `obscura bench`), 8 with
    /// the CUDA provider.
    pub batch: usize,
    /// Every n-th zoom sweep covers the whole frame (default 4); the sweeps between look only
    /// where the picture changed since the last sweep and keep the faces found elsewhere.
    /// 1 = every sweep covers the whole frame.
    pub zoom_full_every: u32,
    /// Every n-th main pass covers the whole frame (default 4); the passes between, on a still
    /// camera, look only around what changed since the last pass (and at the whole of every
    /// face found there before) and keep the faces found elsewhere. 1 = every main pass covers
    /// the whole frame. Only with `batch` 1 (the CPU); batched runs always cover it all.
    pub main_full_every: u32,
    /// Zoom pass for faces too small for the main pass: `auto` (on when `min_face_px` < 16,
    /// at 24/min_face_px magnification), `off`, or a magnification factor (1.2..4).
    pub zoom: Zoom,
    /// Run the zoom pass on every n-th frame; 0 (default) = every `revisit_s` seconds. The
    /// tracker fills the frames between (file mode holds frames back that long).
    pub zoom_every: u32,
    /// Seconds between two zoom-pass looks at the picture (when `zoom_every` is 0): the
    /// longest a face too small for the main pass goes without being looked for. Default 1.
    /// The tracker covers a face found at one look back to the look before, so this bounds
    /// how late a face is found, not how long it shows; shorter costs more CPU (docs/config.md).
    #[serde(serialize_with = "short_f32")]
    pub revisit_s: f32,
    /// Between zoom sweeps, look again at each small face a sweep found, magnified, on every
    /// main-pass frame (a small tile around it), so that its track has its motion (default
    /// true). Off: a small face has one box a sweep, and the tracker carries it still between.
    pub follow: bool,
    /// Magnification of the zoom pass on a grey picture (a camera in night infrared mode:
    /// the chroma of the clip's first frame flat), where every sweep also magnifies all it
    /// looks at (no proposals). Default 3 (auto zoom is 2, with proposals): on the stress
    /// corpus's night clips YuNet-n found a 14 px face on the noisy grey picture only so
    /// (night_ir leaked 8.6% -> 2.6%, at 1.8x the CPU on those clips; with the follow look's
    /// lower threshold on grey pictures, 1.9%). A larger `zoom` is kept. 0 = grey pictures
    /// are swept as any other. Only where the zoom pass runs.
    #[serde(serialize_with = "short_f32")]
    pub grey_zoom: f32,
    /// A second detector every grey sweep also runs on the same tiles, its faces merged with
    /// the first's (default `yunet-s`; `none` = off). On the noisy grey picture a small
    /// face's score jumps from frame to frame, and a face both sweeps of its first second
    /// missed stayed unredacted for a second (night_ir: a 16 px face YuNet-n scored 0.18 and
    /// 0.16 on the two sweeps); YuNet-s misses other faces on other frames than YuNet-n
    /// does. Costs a second run of every grey sweep (YuNet-s is ~10% cheaper than YuNet-n);
    /// the session is built only when a clip turns out grey. Only where the zoom pass runs.
    pub grey_second_model: SecondModel,
    /// Stretch the luma range of grey, dark and washed-out frames (night infrared, dusk,
    /// fog: the 1st to 99th percentile spanning under 160 levels) to the detector's full
    /// input range, at most 3x (default false: on the stress corpus it left more faces
    /// showing, the sensor noise stretched with the picture). Only the detector's input
    /// changes.
    pub stretch_contrast: bool,
    /// The zoom pass first looks at what it sweeps without magnifying so much (the smallest
    /// face at 12 px: 1x for the default 2x, a quarter of the pixels) and magnifies only
    /// around what scores above this there; what scores above `threshold` there already is a
    /// face. Default 0.05 (YuNet-n scored every 12 px face of the bundled clips at 0.11 or
    /// more at 1x, 0.85 or more at 2x). 0 = off: every sweep magnifies all it looks at.
    /// YuNet only (CenterFace's scores were not measured this way).
    #[serde(serialize_with = "short_f32")]
    pub zoom_proposal_threshold: f32,
}

/// The second detector of grey sweeps (`detect.grey_second_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecondModel {
    None,
    YunetS,
}

impl SecondModel {
    /// The model it runs, if any.
    pub fn kind(self) -> Option<ModelKind> {
        match self {
            SecondModel::None => None,
            SecondModel::YunetS => Some(ModelKind::YunetS),
        }
    }
}

/// The zoom-pass setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zoom {
    Auto,
    Off,
    Factor(f32),
}

impl Serialize for Zoom {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Zoom::Auto => s.serialize_str("auto"),
            Zoom::Off => s.serialize_str("off"),
            Zoom::Factor(f) => short_f32(f, s),
        }
    }
}

impl<'de> Deserialize<'de> for Zoom {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(f) => Ok(Zoom::Factor(f as f32)),
            Raw::Word(w) => w.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl std::str::FromStr for Zoom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Zoom::Auto),
            "off" | "0" => Ok(Zoom::Off),
            other => other
                .parse::<f32>()
                .map(Zoom::Factor)
                .map_err(|_| format!("'{s}': expected auto, off or a factor such as 2")),
        }
    }
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            model: ModelKind::Yunet,
            threshold: 0.5,
            min_face_px: 12,
            input_size: InputSize::Auto,
            every: 0,
            batch: 0,
            zoom: Zoom::Auto,
            zoom_every: 0,
            revisit_s: REVISIT_S,
            follow: true,
            grey_zoom: 3.0,
            grey_second_model: SecondModel::YunetS,
            stretch_contrast: false,
            zoom_full_every: 4,
            main_full_every: 4,
            zoom_proposal_threshold: 0.05,
        }
    }
}

/// The smallest face, in detector-input pixels, that the detectors find reliably (YuNet-n
/// scored 0.79 on an 8 px face of the composite test image; 0.45 at 6 px).
pub const DETECTABLE_FACE_PX: f32 = 8.0;

/// How often the main pass runs by default, per second of video. Six times a second (every
/// 5th frame at 30 fps) redacted as many ground-truth faces as ten times a second on both
/// bundled clips at about 10% less CPU (README, "Throughput"); the tracker's look-back and
/// look-ahead grow with the gap.
pub const MAIN_PASS_HZ: f64 = 6.0;

/// Default seconds between zoom-pass looks (`detect.revisit_s`). It was scaled by frame area
/// (2 s at 720p, 4 s at 1080p and above) to keep the pass's cost per second flat; on still
/// cameras at 1080p and above that left slowly walking 14-24 px faces between sweeps for
/// seconds, where the faces found at two looks were too far apart to be joined into one track.
pub const REVISIT_S: f32 = 1.0;

impl DetectConfig {
    /// The smallest face the main pass must find: `min_face_px`, or 1.5 times that when the
    /// zoom pass covers the smallest faces (the two overlap up to [`Self::zoom_max_face`]).
    fn main_min_face(&self, w: u32, h: u32) -> f32 {
        let m = self.min_face_px.max(1) as f32;
        if self.zoom_for(w, h).is_some() {
            1.5 * m
        } else {
            m
        }
    }

    /// The main pass's input size for a `w x h` video.
    pub fn input_size_for(&self, w: u32, h: u32) -> (u32, u32) {
        use crate::geom::ceil_to_multiple;
        match self.input_size {
            InputSize::Fixed(dw, dh) => (dw, dh),
            InputSize::Auto => {
                let scale = (DETECTABLE_FACE_PX / self.main_min_face(w, h)).min(1.0);
                let dw = ceil_to_multiple(((w as f32 * scale).ceil() as u32).max(32), 32);
                let dh = ceil_to_multiple(((h as f32 * scale).ceil() as u32).max(32), 32);
                (dw, dh)
            }
        }
    }

    /// The zoom-pass magnification for a `w x h` video, if the pass runs. `auto` turns it on
    /// when faces smaller than 16 px must be found (compressed faces that small are not found
    /// reliably at 1x), at a magnification that makes `min_face_px` 24 px — unless a fixed
    /// main input size already shows such faces at 20 px or more.
    pub fn zoom_for(&self, w: u32, _h: u32) -> Option<f32> {
        match self.zoom {
            Zoom::Off => None,
            Zoom::Factor(f) => Some(f),
            Zoom::Auto => {
                if self.min_face_px >= 16 {
                    return None;
                }
                if let InputSize::Fixed(dw, _) = self.input_size
                    && self.min_face_px as f32 * dw as f32 / w.max(1) as f32 >= 20.0
                {
                    return None;
                }
                Some((24.0 / self.min_face_px as f32).clamp(1.5, 3.0))
            }
        }
    }

    /// The magnification at which a zoom sweep first looks for proposals (see
    /// `zoom_proposal_threshold`), if it does: the one that shows a `min_face_px` face at
    /// [`crate::detect::zoom::PROPOSAL_FACE_PX`]. None when the zoom pass does not run, the
    /// proposals are off or not for this detector, or that look would cost more than a third
    /// of the magnified one (a zoom factor under 1.75 for the smallest faces).
    pub fn zoom_proposal_for(&self, w: u32, h: u32) -> Option<f32> {
        let zoom = self.zoom_for(w, h)?;
        if self.zoom_proposal_threshold <= 0.0 || self.model != ModelKind::Yunet {
            return None;
        }
        let scale = crate::detect::zoom::PROPOSAL_FACE_PX / self.min_face_px.max(1) as f32;
        (scale * scale <= zoom * zoom / 3.0).then_some(scale)
    }

    /// How far (source pixels) a partial zoom sweep looks around a changed block: the
    /// smallest face the main pass finds (1.5 x `min_face_px`) plus two blocks, so that every
    /// face the main pass could miss lies whole inside the region looked at.
    pub fn zoom_change_pad(&self) -> u32 {
        (1.5 * self.min_face_px as f32).ceil() as u32 + 2 * crate::detect::zoom::CHANGE_BLOCK
    }

    /// How far around a changed block a partial main pass looks (frame pixels of a
    /// `frame_w` wide frame whose main pass is `det_w` wide): 16 detector pixels of context
    /// for a face that just came into view.
    pub fn main_change_pad(&self, frame_w: u32, det_w: u32) -> u32 {
        (16.0 * frame_w as f32 / det_w.max(1) as f32).ceil() as u32
    }

    /// Largest face (source pixels) the zoom pass reports; bigger ones are the main pass's.
    pub fn zoom_max_face(&self) -> f32 {
        4.0 * self.min_face_px as f32
    }

    /// Frames per main-pass run, and zoom tiles per run, on `provider` (see `batch`).
    pub fn batch_for(&self, provider: crate::detect::ActiveProvider) -> usize {
        match (self.batch, provider) {
            (0, crate::detect::ActiveProvider::Cuda) => 8,
            (0, crate::detect::ActiveProvider::Cpu) => 1,
            (n, _) => n,
        }
    }

    /// Frames between main passes for a video at `fps`: `every`, or [`MAIN_PASS_HZ`] times a
    /// second when it is 0 (auto).
    pub fn every_for(&self, fps: f64) -> u32 {
        if self.every > 0 {
            return self.every;
        }
        if fps.is_finite() && fps > 0.0 {
            ((fps / MAIN_PASS_HZ).round() as u32).clamp(1, 6)
        } else {
            1
        }
    }

    /// Frames between zoom passes for a `w x h` video at `fps`: `zoom_every`, or when it is 0
    /// (auto) `revisit_s` seconds — or less where a sweep is cheap: as often as the sweeps
    /// of 2 s at 1280x720 cost per second of video (0.5 s at 640x360, at most 4 a second).
    pub fn zoom_every_for(&self, w: u32, h: u32, fps: f64) -> u32 {
        if self.zoom_every > 0 {
            return self.zoom_every;
        }
        let fps = if fps.is_finite() && fps > 0.0 {
            fps
        } else {
            25.0
        };
        let cheap = (2.0 * (f64::from(w) * f64::from(h)) / (1280.0 * 720.0)).max(0.25);
        let secs = f64::from(self.revisit_s).min(cheap);
        ((secs * fps).round() as u32).clamp(1, 120)
    }
}

/// Tracker settings (frames).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSettings {
    pub lookback: u32,
    pub lookahead: u32,
    pub max_gap: u32,
    #[serde(serialize_with = "short_f32")]
    pub iou_match: f32,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        let t = TrackerConfig::default();
        TrackerSettings {
            lookback: t.lookback,
            lookahead: t.lookahead,
            max_gap: t.max_gap,
            iou_match: t.iou_match,
        }
    }
}

impl TrackerSettings {
    /// The tracker configuration for a main pass every `every` frames and passes that may
    /// run as seldom as every `sparsest` frames: look-back/ahead reach across one main run
    /// (faces of sparser passes reach further, per detection), and gaps of two runs of the
    /// sparsest pass are bridged.
    pub fn tracker_config(
        &self,
        every: u32,
        sparsest: u32,
        frame: Option<(f32, f32)>,
    ) -> TrackerConfig {
        TrackerConfig {
            iou_match: self.iou_match,
            lookback: self.lookback.max(every),
            lookahead: self.lookahead.max(every),
            max_gap: self.max_gap.max(2 * every).max(sparsest + every),
            frame,
            edge_back: EDGE_REACH,
        }
    }
}

/// Face redaction settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedactSettings {
    /// `blur` (default), `pixelate`, `fill`, `ellipse`, or `tag`.
    pub style: Style,
    /// Fraction of the box size added on each side before redacting (default 0.2).
    #[serde(serialize_with = "short_f32")]
    pub margin: f32,
    /// Pixels added on each side on top of `margin` (default 3; small faces' boxes are the
    /// least precise).
    #[serde(serialize_with = "short_f32")]
    pub margin_px: f32,
    /// Blur radius as a fraction of the region's longer side (default 1.0).
    #[serde(serialize_with = "short_f32")]
    pub blur_radius: f32,
    /// Contrast kept after blurring, 0..1 (default 0.25; 1 = plain blur).
    #[serde(serialize_with = "short_f32")]
    pub blur_contrast: f32,
    /// Pixelate: cells along the region's longer side (default 8, at most 8).
    pub pixelate_blocks: u32,
}

impl Default for RedactSettings {
    fn default() -> Self {
        let p = StyleParams::default();
        RedactSettings {
            style: Style::Blur,
            margin: 0.2,
            margin_px: 3.0,
            blur_radius: p.blur_radius_frac,
            blur_contrast: p.blur_contrast,
            pixelate_blocks: p.pixelate_blocks,
        }
    }
}

impl RedactSettings {
    pub fn style_params(&self) -> StyleParams {
        StyleParams {
            blur_radius_frac: self.blur_radius,
            blur_passes: StyleParams::default().blur_passes,
            blur_contrast: self.blur_contrast,
            pixelate_blocks: self.pixelate_blocks,
        }
    }
}

/// Output encoding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EncodeSettings {
    /// `fastest` (x264 ultrafast), `fast` (superfast + MB-tree, default), `balanced` (veryfast)
    /// or `high` (medium); docs/config.md says what each runs.
    pub quality: Quality,
    /// x264 threads (0 = automatic).
    pub threads: u32,
    /// AAC bit rate in bits per second (0 = 64 kb/s per channel, at most 256 kb/s).
    pub audio_bitrate: i32,
    /// Cap on the video bit rate in kbit/s (x264's VBV; 0 = none: the quality's CRF alone
    /// decides). Without a value x264enc capped every output at 2048 kbit/s, whatever its size.
    pub video_max_kbps: u32,
    /// x264 speed preset instead of the quality level's (`ultrafast`, `superfast`,
    /// `veryfast`, `faster`, `fast`, `medium`, `slow`, `slower`, `veryslow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Constant rate factor instead of the quality level's (0-51; lower: better, bigger).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crf: Option<u32>,
    /// x264 psychovisual tuning (`film`, `animation`, `grain`, `psnr`, `ssim`; unset or
    /// `none`: the preset's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tune: Option<String>,
    /// x264 options over the preset's, `key=value` joined by `:` (x264's own names, as in
    /// `subme=1:me=dia`), instead of the quality level's. An empty string: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x264_options: Option<String>,
    /// Cap the video bit rate at this many times the input's video bit rate (x264's VBV, as
    /// `video_max_kbps`; the smaller cap wins). 0 = off. An input whose bit rate cannot be
    /// told (no duration) is encoded by CRF alone.
    pub match_input_bitrate: f32,
}

/// x264 speed presets, fastest first.
pub const X264_PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

/// x264enc's `psy-tune` values.
pub const X264_TUNES: &[&str] = &["none", "film", "animation", "grain", "psnr", "ssim"];

impl EncodeSettings {
    /// The x264 settings for a video whose input stream runs at `input_kbps` (when known).
    pub fn video_spec(&self, input_kbps: Option<u32>) -> crate::media::encode::VideoEncodeSpec {
        let mut max_kbps = self.video_max_kbps;
        if self.match_input_bitrate > 0.0
            && let Some(k) = input_kbps.filter(|k| *k > 0)
        {
            let cap = ((k as f64 * self.match_input_bitrate as f64).round() as u32)
                .clamp(1, crate::media::encode::MAX_VIDEO_KBPS);
            max_kbps = if max_kbps == 0 {
                cap
            } else {
                max_kbps.min(cap)
            };
        }
        crate::media::encode::VideoEncodeSpec {
            preset: self
                .preset
                .clone()
                .unwrap_or_else(|| self.quality.preset().to_string()),
            crf: self.crf.unwrap_or_else(|| self.quality.crf()),
            tune: self
                .tune
                .clone()
                .or_else(|| self.quality.tune().map(String::from)),
            options: self
                .x264_options
                .clone()
                .or_else(|| self.quality.options().map(String::from)),
            threads: self.threads,
            keyint_max: 0,
            max_kbps,
        }
    }
}

impl Default for EncodeSettings {
    fn default() -> Self {
        EncodeSettings {
            quality: Quality::Fast,
            threads: 0,
            audio_bitrate: 0,
            video_max_kbps: 0,
            preset: None,
            crf: None,
            tune: None,
            x264_options: None,
            match_input_bitrate: 0.0,
        }
    }
}

/// Bounds that keep a bad input from hanging or exhausting the machine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Seconds without any progress before a clip is abandoned as stalled.
    pub stall_secs: u64,
    /// Seconds allowed for probing an input.
    pub probe_secs: u64,
    /// Frames held in the decoder's output channels and the tracker's output channel; 0
    /// (default) = auto: as many as fit in [`QUEUE_BUDGET_MIB`], between 4 and 32 (32 at
    /// 720p, 16 at 1080p, 4 at 4K). Deep queues let the decoder run ahead and the encoder keep
    /// working while the detector is busy with a zoom sweep; the other hand-offs hold 4.
    pub queue_frames: usize,
    /// Largest accepted frame (width x height), to refuse absurd declared sizes.
    pub max_frame_pixels: u64,
    /// Most memory (MiB) the tracker may hold in frames waiting for their final boxes: on
    /// large frames a sparse zoom pass is made more frequent to fit, and the look-back for
    /// faces that came in through the frame's edge (up to `EDGE_REACH`, 45 frames) gets what
    /// is left. The stages' own queues, the decoder's reference frames and the encoder's come
    /// on top (about 25 frames). Also the most
    /// decoded-frame memory a finished file leaves for the next one of the process
    /// (`media::frame_memory`: the next file's decoder reuses it instead of faulting in
    /// fresh pages).
    pub max_held_mib: u64,
    /// How frames wait for their final boxes (`auto`, `always`, `never`). `auto` (default):
    /// decoded once; one revisit's frames (`detect.revisit_s`) are always held, and
    /// `max_held_mib` bounds the look-back across the frame's edge beyond them (a revisit
    /// that does not fit — 4K with the defaults — is held anyway, above the budget).
    /// `always`: a first decode feeds the detector and the tracker, which then holds only
    /// boxes, and a second one, kept just behind the tracker, feeds the redaction and the
    /// encoder (one more decode's CPU; the look-back is whole at every size). `never`: the
    /// budget is hard, and sweeps run more often to fit (CPU).
    pub decode_twice: DecodeTwice,
}

/// When a clip's video is decoded twice (`limits.decode_twice`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DecodeTwice {
    /// Decoded once, one revisit always held.
    #[default]
    Auto,
    Always,
    Never,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            stall_secs: 60,
            probe_secs: 20,
            queue_frames: 0,
            max_frame_pixels: 8192 * 8192,
            max_held_mib: 192,
            decode_twice: DecodeTwice::Auto,
        }
    }
}

/// Memory (MiB of I420 frames) each deep channel between stages may hold when
/// `queue_frames` is auto.
pub const QUEUE_BUDGET_MIB: u64 = 48;

impl Limits {
    /// Frames in each deep channel between stages for `w x h` video: `queue_frames`, or when
    /// it is 0 as many as fit in [`QUEUE_BUDGET_MIB`], between 4 and 32.
    pub fn queue_frames_for(&self, w: u32, h: u32) -> usize {
        if self.queue_frames > 0 {
            return self.queue_frames;
        }
        let frame_bytes = (u64::from(w) * u64::from(h) * 3 / 2).max(1);
        (QUEUE_BUDGET_MIB * 1024 * 1024 / frame_bytes).clamp(4, 32) as usize
    }
}

impl Config {
    /// The tracker configuration for a `w x h` video at `fps`.
    pub fn tracker_config(&self, w: u32, h: u32, fps: f64) -> TrackerConfig {
        let every = self.detect.every_for(fps);
        let sparsest = match self.detect.zoom_for(w, h) {
            Some(_) => every.max(self.zoom_every(w, h, fps)),
            None => every,
        };
        let mut t = self
            .tracker
            .tracker_config(every, sparsest, Some((w as f32, h as f32)));
        // Held frames cost nothing when the video is decoded twice. Otherwise the look-back
        // across the edge gets what the budget leaves, never less than the gap the tracker
        // bridges anyway (which holds as many).
        if !self.decodes_twice(w, h, fps) {
            t.edge_back = EDGE_REACH
                .min(self.held_frames(w, h, fps))
                .max(t.max_gap.max(t.lookback));
        }
        t
    }

    /// Whether a `w x h` video at `fps` is decoded twice (`limits.decode_twice = "always"`).
    pub fn decodes_twice(&self, _w: u32, _h: u32, _fps: f64) -> bool {
        // Measured at 4K (where one revisit does not fit the default budget): decoding twice
        // cost 20-30% more CPU for 5-10% less memory than holding the revisit's frames, so
        // auto holds them. (Per size, so that a rule by size can come back.)
        self.limits.decode_twice == DecodeTwice::Always
    }

    /// Frames the tracker may hold back for `w x h` video within `limits.max_held_mib`
    /// (decoded I420 frames; a margin of `every + 8` is left for the frames in the stages).
    pub fn held_frames(&self, w: u32, h: u32, fps: f64) -> u32 {
        let frame_bytes = (u64::from(w) * u64::from(h) * 3 / 2).max(1);
        (self.limits.max_held_mib * 1024 * 1024 / frame_bytes)
            .saturating_sub(u64::from(self.detect.every_for(fps)) + 8)
            .clamp(1, u64::from(u32::MAX)) as u32
    }

    /// Frames between zoom passes: the revisit, made smaller only with
    /// `limits.decode_twice = "never"` so that the frames the tracker holds back (about
    /// `zoom_every + every` of them) fit in `limits.max_held_mib`.
    pub fn zoom_every(&self, w: u32, h: u32, fps: f64) -> u32 {
        let want = self.detect.zoom_every_for(w, h, fps);
        if self.limits.decode_twice != DecodeTwice::Never {
            return want.max(1);
        }
        want.min(self.held_frames(w, h, fps)).max(1)
    }

    /// The sha256 of the settings that shape an output (paths of the runtime, the models and
    /// the routing layer excluded): recorded in each sidecar, compared by `batch --resume`.
    pub fn fingerprint(&self) -> String {
        let mut c = self.clone();
        c.runtime.onnxruntime_lib = None;
        c.runtime.models_dir = None;
        c.regions.clear();
        c.devices.clear();
        c.devices_file = None;
        c.paths = PathsConfig::default();
        c.daemon = DaemonConfig::default();
        c.inbox.clear();
        c.stream.clear();
        c.queue = None;
        crate::fsutil::sha256_bytes(toml::to_string(&c).unwrap_or_default().as_bytes())
    }

    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        Ok(cfg)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value's range and consistency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.detect;
        if !(d.threshold > 0.0 && d.threshold < 1.0) {
            return Err(invalid(
                "detect.threshold",
                "must be between 0 and 1 (exclusive)",
            ));
        }
        if d.min_face_px < 4 || d.min_face_px > 4096 {
            return Err(invalid("detect.min_face_px", "must be between 4 and 4096"));
        }
        if d.every > 30 {
            return Err(invalid("detect.every", "must be between 0 (auto) and 30"));
        }
        if d.zoom_full_every == 0 || d.zoom_full_every > 60 {
            return Err(invalid(
                "detect.zoom_full_every",
                "must be between 1 (every sweep covers the whole frame) and 60",
            ));
        }
        if d.main_full_every == 0 || d.main_full_every > 60 {
            return Err(invalid(
                "detect.main_full_every",
                "must be between 1 (every main pass covers the whole frame) and 60",
            ));
        }
        if d.batch > 64 {
            return Err(invalid("detect.batch", "must be between 0 (auto) and 64"));
        }
        if let Zoom::Factor(f) = d.zoom
            && !(1.2..=4.0).contains(&f)
        {
            return Err(invalid(
                "detect.zoom",
                "must be auto, off, or between 1.2 and 4",
            ));
        }
        if d.grey_zoom != 0.0 && !(1.2..=4.0).contains(&d.grey_zoom) {
            return Err(invalid(
                "detect.grey_zoom",
                "must be 0 (off) or between 1.2 and 4",
            ));
        }
        if !(0.0..d.threshold).contains(&d.zoom_proposal_threshold) {
            return Err(invalid(
                "detect.zoom_proposal_threshold",
                "must be 0 (off) or above 0 and below detect.threshold",
            ));
        }
        if !(0.05..=10.0).contains(&d.revisit_s) {
            return Err(invalid(
                "detect.revisit_s",
                "must be between 0.05 and 10 (seconds)",
            ));
        }
        if d.zoom_every > 120 {
            return Err(invalid(
                "detect.zoom_every",
                "must be between 0 (auto) and 120",
            ));
        }
        if d.model == ModelKind::SileroVad {
            return Err(invalid(
                "detect.model",
                "must be a face detector: yunet or centerface",
            ));
        }
        let t = &self.tracker;
        if !(0.0..=1.0).contains(&t.iou_match) {
            return Err(invalid("tracker.iou_match", "must be between 0 and 1"));
        }
        if t.lookback > 120 || t.lookahead > 120 || t.max_gap > 120 {
            return Err(invalid(
                "tracker",
                "lookback, lookahead and max_gap must be at most 120 frames",
            ));
        }
        let r = &self.redact;
        if !(0.0..=1.0).contains(&r.margin) {
            return Err(invalid("redact.margin", "must be between 0 and 1"));
        }
        if !(0.0..=64.0).contains(&r.margin_px) {
            return Err(invalid("redact.margin_px", "must be between 0 and 64"));
        }
        if !(r.blur_radius >= 0.05 && r.blur_radius <= 1.0) {
            return Err(invalid("redact.blur_radius", "must be between 0.05 and 1"));
        }
        if !(0.0..=1.0).contains(&r.blur_contrast) {
            return Err(invalid("redact.blur_contrast", "must be between 0 and 1"));
        }
        if r.pixelate_blocks == 0 || r.pixelate_blocks > 8 {
            return Err(invalid(
                "redact.pixelate_blocks",
                "must be between 1 and 8 (a finer mosaic keeps faces recognisable)",
            ));
        }
        let v = &self.voice;
        if !(v.threshold > 0.0 && v.threshold < 1.0) {
            return Err(invalid(
                "voice.threshold",
                "must be between 0 and 1 (exclusive)",
            ));
        }
        if let Some(e) = v.end_threshold
            && !(e > 0.0 && e <= v.threshold)
        {
            return Err(invalid(
                "voice.end_threshold",
                "must be above 0 and at most voice.threshold",
            ));
        }
        if !(0.0..=1.0).contains(&v.onset_lookback_s) {
            return Err(invalid(
                "voice.onset_lookback_s",
                "must be between 0 and 1 second",
            ));
        }
        if !(0.0..=2.0).contains(&v.pad_s) {
            return Err(invalid("voice.pad_s", "must be between 0 and 2 seconds"));
        }
        if !(0.0..=2.0).contains(&v.min_silence_s) || !(0.0..=2.0).contains(&v.min_speech_s) {
            return Err(invalid(
                "voice",
                "min_silence_s and min_speech_s must be between 0 and 2 seconds",
            ));
        }
        if !(0.5..=1.0).contains(&v.disguise_alpha) {
            return Err(invalid("voice.disguise_alpha", "must be between 0.5 and 1"));
        }
        for (name, r) in &self.regions {
            crate::route::ids::region(name).map_err(|m| invalid(&format!("regions.{name}"), m))?;
            for (k, u) in [
                ("store", Some(&r.store)),
                ("vault", r.vault.as_ref()),
                ("keys", r.keys.as_ref()),
            ] {
                if let Some(u) = u {
                    crate::route::store::StoreUrl::parse(u)
                        .map_err(|m| invalid(&format!("regions.{name}.{k}"), m))?;
                }
            }
        }
        for (id, d) in &self.devices {
            crate::route::ids::device(id).map_err(|m| invalid(&format!("devices.{id}"), m))?;
            crate::route::ids::account(&d.account)
                .map_err(|m| invalid(&format!("devices.{id}.account"), m))?;
            if !self.regions.contains_key(&d.region) {
                return Err(invalid(
                    &format!("devices.{id}.region"),
                    format!("unknown region '{}'", d.region),
                ));
            }
        }
        let r = &self.retention;
        for (k, v) in [
            ("personal", &r.personal),
            ("non_personal", &r.non_personal),
            ("originals", &r.originals),
        ] {
            parse_duration(v).map_err(|m| invalid(&format!("retention.{k}"), m))?;
        }
        if self.runtime.threads == 0 || self.runtime.threads > 256 {
            return Err(invalid("runtime.threads", "must be between 1 and 256"));
        }
        if self.encode.audio_bitrate < 0 || self.encode.audio_bitrate > 512_000 {
            return Err(invalid(
                "encode.audio_bitrate",
                "must be between 0 and 512000",
            ));
        }
        if self.encode.video_max_kbps > crate::media::encode::MAX_VIDEO_KBPS {
            return Err(invalid(
                "encode.video_max_kbps",
                format!(
                    "must be between 0 (no cap) and {}",
                    crate::media::encode::MAX_VIDEO_KBPS
                ),
            ));
        }
        let e = &self.encode;
        if let Some(p) = &e.preset
            && !X264_PRESETS.contains(&p.as_str())
        {
            return Err(invalid(
                "encode.preset",
                format!("must be one of {}", X264_PRESETS.join(", ")),
            ));
        }
        if let Some(t) = &e.tune
            && !X264_TUNES.contains(&t.as_str())
        {
            return Err(invalid(
                "encode.tune",
                format!("must be one of {}", X264_TUNES.join(", ")),
            ));
        }
        if let Some(o) = &e.x264_options
            && !o.split(':').filter(|kv| !kv.is_empty()).all(|kv| {
                kv.split_once('=').is_some_and(|(k, v)| {
                    !k.is_empty()
                        && !v.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_')
                        && v.chars()
                            .all(|c| c.is_ascii_alphanumeric() || ".,-_".contains(c))
                })
            })
        {
            return Err(invalid(
                "encode.x264_options",
                "must be key=value pairs joined by ':' (x264's option names, e.g. subme=1:me=dia)",
            ));
        }
        if e.crf.is_some_and(|c| c > 51) {
            return Err(invalid("encode.crf", "must be between 0 and 51"));
        }
        if !(e.match_input_bitrate == 0.0 || (0.25..=10.0).contains(&e.match_input_bitrate)) {
            return Err(invalid(
                "encode.match_input_bitrate",
                "must be 0 (off) or between 0.25 and 10",
            ));
        }
        let l = &self.limits;
        if l.max_held_mib < 64 {
            return Err(invalid("limits.max_held_mib", "must be at least 64"));
        }
        if l.stall_secs == 0 || l.probe_secs == 0 {
            return Err(invalid(
                "limits",
                "stall_secs and probe_secs must be positive",
            ));
        }
        if l.queue_frames > 256 {
            return Err(invalid(
                "limits.queue_frames",
                "must be between 0 (auto) and 256",
            ));
        }
        self.validate_daemon()
    }

    fn validate_daemon(&self) -> Result<(), ConfigError> {
        let d = &self.daemon;
        d.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| invalid("daemon.listen", format!("'{}': {e}", d.listen)))?;
        if d.workers > 64 {
            return Err(invalid("daemon.workers", "must be between 0 and 64"));
        }
        if !(0.0..=3600.0).contains(&d.stable_secs) {
            return Err(invalid("daemon.stable_secs", "must be between 0 and 3600"));
        }
        if d.poll_ms < 10 || d.poll_ms > 60_000 {
            return Err(invalid("daemon.poll_ms", "must be between 10 and 60000"));
        }
        if d.max_backlog == 0 || d.retry_max_secs == 0 {
            return Err(invalid(
                "daemon",
                "max_backlog and retry_max_secs must be positive",
            ));
        }
        if !(1..=86_400).contains(&d.stream_stale_secs) {
            return Err(invalid(
                "daemon.stream_stale_secs",
                "must be between 1 and 86400",
            ));
        }
        for (i, b) in self.inbox.iter().enumerate() {
            let key = format!("inbox[{i}]");
            if !b.path.is_absolute() {
                return Err(invalid(&format!("{key}.path"), "must be an absolute path"));
            }
            match (b.device_from, &b.device) {
                (DeviceFrom::Fixed, Some(dev)) => {
                    crate::route::ids::device(dev)
                        .map_err(|m| invalid(&format!("{key}.device"), m))?;
                }
                (DeviceFrom::Fixed, None) => {
                    return Err(invalid(
                        &format!("{key}.device"),
                        "required with device_from = \"fixed\"",
                    ));
                }
                (DeviceFrom::ParentDir, Some(_)) => {
                    return Err(invalid(
                        &format!("{key}.device"),
                        "only with device_from = \"fixed\"",
                    ));
                }
                (DeviceFrom::ParentDir, None) => {}
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in self.stream.iter().enumerate() {
            let key = format!("stream[{i}]");
            crate::route::ids::device(&s.device)
                .map_err(|m| invalid(&format!("{key}.device"), m))?;
            if !seen.insert(s.device.as_str()) {
                return Err(invalid(
                    &format!("{key}.device"),
                    format!("device '{}' has two streams", s.device),
                ));
            }
            validate_stream_url(&s.url).map_err(|m| invalid(&format!("{key}.url"), m))?;
            let seg =
                parse_duration(&s.segment).map_err(|m| invalid(&format!("{key}.segment"), m))?;
            if seg < chrono::Duration::seconds(1) || seg > chrono::Duration::hours(1) {
                return Err(invalid(
                    &format!("{key}.segment"),
                    "must be between 1s and 1h",
                ));
            }
            if s.stall_secs == 0 || s.backoff_max_secs == 0 || s.latency_ms > 10_000 {
                return Err(invalid(
                    &key,
                    "stall_secs and backoff_max_secs must be positive, latency_ms at most 10000",
                ));
            }
            // A stream quiet for less than its stall_secs is still waited for by its recorder:
            // readiness must not give it up earlier than the recorder does.
            if d.stream_stale_secs <= s.stall_secs {
                return Err(invalid(
                    "daemon.stream_stale_secs",
                    format!(
                        "must be greater than {key}.stall_secs ({}): a stream is reported stale only after its recorder has given up waiting and reconnects",
                        s.stall_secs
                    ),
                ));
            }
        }
        if let Some(q) = &self.queue {
            for u in q.nats.split(',') {
                let url = url::Url::parse(u.trim())
                    .map_err(|e| invalid("queue.nats", format!("'{u}': {e}")))?;
                if !matches!(url.scheme(), "nats" | "tls") {
                    return Err(invalid(
                        "queue.nats",
                        "URLs must start with nats:// or tls://",
                    ));
                }
            }
            let token_ok = |t: &str| {
                !t.is_empty()
                    && t.len() <= 64
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            };
            if !token_ok(&q.stream) {
                return Err(invalid("queue.stream", "letters, digits, '_' and '-' only"));
            }
            if !q.subject.split('.').all(token_ok) {
                return Err(invalid(
                    "queue.subject",
                    "dot-separated tokens of letters, digits, '_' and '-'",
                ));
            }
            for r in &q.regions {
                if !self.regions.contains_key(r) {
                    return Err(invalid("queue.regions", format!("unknown region '{r}'")));
                }
            }
            if q.workers > 64 || q.ack_wait_secs == 0 || q.max_deliver < 1 {
                return Err(invalid(
                    "queue",
                    "workers at most 64, ack_wait_secs and max_deliver positive",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_documented_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.detect.threshold, 0.5);
        assert_eq!(c.redact.style, Style::Blur);
    }

    /// Issue #30 (storage parity): the encode overrides validate, and the input's bit rate
    /// becomes a cap only when asked for and known; the smaller of two caps wins.
    #[test]
    fn encode_overrides_validate_and_match_input_bitrate_caps_only_when_known() {
        for (bad, key) in [
            ("[encode]\npreset = \"warp\"\n", "encode.preset"),
            ("[encode]\ntune = \"zerolatency\"\n", "encode.tune"),
            ("[encode]\ncrf = 52\n", "encode.crf"),
            (
                "[encode]\nx264_options = \"subme\"\n",
                "encode.x264_options",
            ),
            (
                "[encode]\nx264_options = \"subme=1;rm -rf\"\n",
                "encode.x264_options",
            ),
            (
                "[encode]\nmatch_input_bitrate = 0.1\n",
                "encode.match_input_bitrate",
            ),
        ] {
            match Config::parse(bad) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let c = Config::parse(
            "[encode]\npreset = \"superfast\"\ncrf = 19\ntune = \"psnr\"\nx264_options = \"mbtree=1:rc-lookahead=5\"\n",
        )
        .unwrap();
        let v = c.encode.video_spec(Some(1000));
        assert_eq!(
            (
                v.preset.as_str(),
                v.crf,
                v.tune.as_deref(),
                v.options.as_deref()
            ),
            (
                "superfast",
                19,
                Some("psnr"),
                Some("mbtree=1:rc-lookahead=5")
            )
        );
        assert_eq!(v.max_kbps, 0, "no cap unless asked for");
        let mut e = EncodeSettings {
            match_input_bitrate: 1.5,
            ..EncodeSettings::default()
        };
        assert_eq!(e.video_spec(Some(1000)).max_kbps, 1500);
        assert_eq!(e.video_spec(None).max_kbps, 0, "unknown rate: CRF alone");
        e.video_max_kbps = 1200;
        assert_eq!(e.video_spec(Some(1000)).max_kbps, 1200);
        assert_eq!(e.video_spec(None).max_kbps, 1200);
        // Every quality level's own settings are ones x264 takes.
        for q in [
            Quality::Fastest,
            Quality::Fast,
            Quality::Balanced,
            Quality::High,
        ] {
            let v = EncodeSettings {
                quality: q,
                ..EncodeSettings::default()
            }
            .video_spec(None);
            assert!(X264_PRESETS.contains(&v.preset.as_str()), "{q:?}");
            assert!(v.tune.as_deref().is_none_or(|t| X264_TUNES.contains(&t)));
            let mut c = Config::default();
            c.encode.x264_options = v.options.clone();
            c.validate().unwrap_or_else(|e| panic!("{q:?}: {e}"));
        }
    }

    #[test]
    fn printed_defaults_parse_back_to_the_defaults() {
        let text = toml::to_string_pretty(&Config::default()).unwrap();
        assert!(text.contains("margin = 0.2\n"), "{text}");
        assert_eq!(Config::parse(&text).unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = Config::parse("[detect]\nthreshhold = 0.4\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("threshhold"), "{e}");
        assert!(Config::parse("[nonsense]\n").is_err());
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let e = Config::parse("[detect]\nthreshold = 1.5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("detect.threshold"), "{e}");
        let e = Config::parse("[redact]\npixelate_blocks = 16\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pixelate_blocks"), "{e}");
        let e = Config::parse("[encode]\nvideo_max_kbps = 3000000\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("encode.video_max_kbps"), "{e}");
        let c = Config::parse("[encode]\nvideo_max_kbps = 4000\n").unwrap();
        assert_eq!(c.encode.video_max_kbps, 4000);
    }

    #[test]
    fn input_size_parses_auto_and_fixed() {
        let c = Config::parse("[detect]\ninput_size = \"640x384\"\n").unwrap();
        assert_eq!(c.detect.input_size, InputSize::Fixed(640, 384));
        assert!(Config::parse("[detect]\ninput_size = \"641x384\"\n").is_err());
        assert!("auto".parse::<InputSize>().is_ok());
    }

    #[test]
    fn auto_input_size_keeps_the_main_pass_faces_at_8px() {
        // With the zoom pass on (min_face 12), the main pass covers faces from 18 px.
        let d = DetectConfig::default();
        assert_eq!(d.zoom_for(1280, 720), Some(2.0));
        assert_eq!(d.input_size_for(640, 360), (288, 160));
        assert_eq!(d.input_size_for(1280, 720), (576, 320));
        assert_eq!(d.input_size_for(1920, 1080), (864, 480));
        assert_eq!(d.input_size_for(16, 16), (32, 32));
        let no_zoom = DetectConfig {
            zoom: Zoom::Off,
            ..Default::default()
        };
        assert_eq!(no_zoom.input_size_for(1280, 720), (864, 480));
        assert_eq!(DetectConfig::default().zoom_every_for(1280, 720, 30.0), 30);
        assert_eq!(DetectConfig::default().zoom_every_for(3840, 2160, 20.0), 20);
        assert_eq!(DetectConfig::default().every_for(30.0), 5);
        assert_eq!(DetectConfig::default().every_for(25.0), 4);
        assert_eq!(DetectConfig::default().every_for(12.0), 2);
        assert_eq!(DetectConfig::default().every_for(5.0), 1);
        assert_eq!(DetectConfig::default().every_for(60.0), 6);
        assert_eq!(DetectConfig::default().zoom_every_for(640, 360, 12.0), 6);
        assert_eq!(DetectConfig::default().zoom_every_for(1920, 1080, 25.0), 25);
        let big = DetectConfig {
            min_face_px: 40,
            ..Default::default()
        };
        assert_eq!(big.input_size_for(1920, 1080), (384, 224));
    }

    #[test]
    fn zoom_proposals_look_at_the_smallest_face_at_12_px_and_only_where_that_pays() {
        let d = DetectConfig::default();
        assert_eq!(d.zoom_proposal_for(1280, 720), Some(1.0));
        assert_eq!(d.zoom_proposal_for(640, 360), Some(1.0));
        let eight = DetectConfig {
            min_face_px: 8,
            ..Default::default()
        };
        assert_eq!(eight.zoom_for(1280, 720), Some(3.0));
        assert_eq!(eight.zoom_proposal_for(1280, 720), Some(1.5));
        for off in [
            DetectConfig {
                zoom_proposal_threshold: 0.0,
                ..Default::default()
            },
            DetectConfig {
                model: ModelKind::Centerface,
                ..Default::default()
            },
            DetectConfig {
                min_face_px: 16,
                ..Default::default()
            },
            // At 1.5x the look at 1x would cost 44% of the magnified one.
            DetectConfig {
                zoom: Zoom::Factor(1.5),
                ..Default::default()
            },
        ] {
            assert_eq!(off.zoom_proposal_for(1280, 720), None, "{off:?}");
        }
        assert!(Config::parse("[detect]\ngrey_zoom = 0\n").is_ok());
        assert!(Config::parse("[detect]\ngrey_zoom = 2.5\n").is_ok());
        assert!(Config::parse("[detect]\ngrey_zoom = 1\n").is_err());
        assert!(Config::parse("[detect]\ngrey_zoom = 5\n").is_err());
        let none = Config::parse("[detect]\ngrey_second_model = \"none\"\n").unwrap();
        assert_eq!(none.detect.grey_second_model.kind(), None);
        assert_eq!(
            Config::default().detect.grey_second_model.kind(),
            Some(ModelKind::YunetS)
        );
        assert!(Config::parse("[detect]\ngrey_second_model = \"centerface\"\n").is_err());
        assert!(Config::parse("[detect]\nzoom_proposal_threshold = 0.2\n").is_ok());
        assert!(Config::parse("[detect]\nzoom_proposal_threshold = 0\n").is_ok());
        for bad in ["0.5", "0.7", "-0.1"] {
            let e = Config::parse(&format!("[detect]\nzoom_proposal_threshold = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("detect.zoom_proposal_threshold"), "{e}");
        }
    }

    #[test]
    fn a_device_in_an_unknown_region_is_an_error_not_a_default() {
        let text = "[regions.eu]\nstore = \"file:///tmp/x\"\n[devices]\n\"cam-1\" = { region = \"mars\", account = \"a\" }\n";
        let e = Config::parse(text).unwrap_err().to_string();
        assert!(e.contains("unknown region 'mars'"), "{e}");
        let bad_region = "[regions.\"EU/../x\"]\nstore = \"file:///tmp/x\"\n";
        assert!(Config::parse(bad_region).is_err());
        let bad_store = "[regions.eu]\nstore = \"ftp://x\"\n";
        assert!(
            Config::parse(bad_store)
                .unwrap_err()
                .to_string()
                .contains("regions.eu.store")
        );
        assert!(
            parse_duration("30d").is_ok()
                && parse_duration("1y").is_ok()
                && parse_duration("3 days").is_err()
        );
    }

    #[test]
    fn sparse_zoom_pass_is_bounded_by_held_memory_unless_the_video_is_decoded_twice() {
        let mut c = Config::default();
        assert_eq!(c.zoom_every(1280, 720, 30.0), 30);
        c.detect.revisit_s = 4.0;
        // Decoded once, 4K frames are 12 MiB: 512 MiB hold about 40 of them.
        c.limits.decode_twice = DecodeTwice::Never;
        c.limits.max_held_mib = 512;
        let z = c.zoom_every(3840, 2160, 30.0);
        assert!(z < 40 && z > 20, "{z}");
        // Auto: one revisit is held whatever the budget; always: decoded twice.
        c.limits.decode_twice = DecodeTwice::Auto;
        assert!(!c.decodes_twice(3840, 2160, 30.0));
        assert_eq!(c.zoom_every(3840, 2160, 30.0), 120);
        c.limits.decode_twice = DecodeTwice::Always;
        assert!(c.decodes_twice(3840, 2160, 30.0));
        assert_eq!(c.zoom_every(3840, 2160, 30.0), 120);
    }

    #[test]
    fn only_always_decodes_twice_and_the_setting_is_validated() {
        let mut c = Config::default();
        for (w, h, fps) in [(1280, 720, 30.0), (2560, 1440, 20.0), (3840, 2160, 15.0)] {
            assert!(!c.decodes_twice(w, h, fps));
        }
        c.limits.decode_twice = DecodeTwice::Always;
        assert!(c.decodes_twice(1280, 720, 30.0));
        assert!(Config::parse("[limits]\ndecode_twice = \"always\"\n").is_ok());
        assert!(Config::parse("[limits]\ndecode_twice = \"sometimes\"\n").is_err());
    }

    #[test]
    fn edge_look_back_is_bounded_by_held_memory_but_never_below_the_bridged_gap() {
        let mut c = Config::default();
        // 720p: the whole edge reach fits.
        assert_eq!(c.tracker_config(1280, 720, 25.0).edge_back, EDGE_REACH);
        // 1440p, decoded once: the look-back gets what the budget leaves.
        let t = c.tracker_config(2560, 1440, 20.0);
        assert!(
            t.edge_back < EDGE_REACH && t.edge_back >= t.max_gap,
            "{t:?}"
        );
        assert!(
            t.delay() <= u64::from(c.held_frames(2560, 1440, 20.0)),
            "{t:?}"
        );
        // 4K: one revisit does not fit the default budget and is held anyway, with no more
        // look-back than it; decoded twice, held frames cost nothing and the whole reach is kept.
        let t = c.tracker_config(3840, 2160, 15.0);
        assert_eq!(u64::from(t.edge_back), t.delay(), "{t:?}");
        assert_eq!(c.zoom_every(3840, 2160, 15.0), 15);
        c.limits.decode_twice = DecodeTwice::Always;
        assert_eq!(c.tracker_config(3840, 2160, 15.0).edge_back, EDGE_REACH);
        c.limits.decode_twice = DecodeTwice::Auto;
        // A small budget, decoded once: the hold is the gap the sparsest pass needs.
        c.limits.max_held_mib = 128;
        c.limits.decode_twice = DecodeTwice::Never;
        let t = c.tracker_config(2560, 1440, 20.0);
        assert_eq!(u64::from(t.edge_back), t.delay(), "{t:?}");
        assert!(
            t.delay() <= u64::from(c.held_frames(2560, 1440, 20.0)) + 8,
            "{t:?}"
        );
    }

    #[test]
    fn auto_queue_depth_follows_the_frame_size_and_a_fixed_one_wins() {
        let mut l = Limits::default();
        assert_eq!(l.queue_frames_for(1280, 720), 32);
        assert_eq!(l.queue_frames_for(640, 360), 32);
        assert_eq!(l.queue_frames_for(1920, 1080), 16);
        assert_eq!(l.queue_frames_for(3840, 2160), 4);
        assert_eq!(l.queue_frames_for(0, 0), 32);
        l.queue_frames = 6;
        assert_eq!(l.queue_frames_for(1280, 720), 6);
        let mut c = Config::default();
        c.limits.queue_frames = 257;
        assert!(c.validate().is_err());
        c.limits.queue_frames = 0;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn tracker_bridges_at_least_two_detector_runs() {
        let t = TrackerSettings::default().tracker_config(5, 12, None);
        assert!(t.max_gap >= 17 && t.lookback >= 5);
    }

    const REGION: &str = "[regions.eu]\nstore = \"file:///tmp/obscura-eu\"\n";

    #[test]
    fn daemon_sections_parse_with_documented_defaults() {
        let c = Config::parse(&format!(
            "{REGION}[[inbox]]\npath = \"/srv/inbox\"\n[[stream]]\ndevice = \"cam-1\"\nurl = \"rtsp://user:pw@10.0.0.5:554/s1\"\n[queue]\nnats = \"nats://127.0.0.1:4222\"\nregions = [\"eu\"]\n"
        ))
        .unwrap();
        assert_eq!(c.daemon.listen, "127.0.0.1:9750");
        assert_eq!(c.daemon.stream_stale_secs, 60);
        assert_eq!(c.inbox[0].device_from, DeviceFrom::ParentDir);
        assert_eq!(
            c.stream[0].segment_duration(),
            std::time::Duration::from_secs(60)
        );
        let q = c.queue.unwrap();
        assert_eq!((q.stream.as_str(), q.max_deliver), ("OBSCURA_CLIPS", 3));
        assert_eq!(
            redact_url("rtsp://user:pw@10.0.0.5:554/s1"),
            "rtsp://10.0.0.5:554/s1"
        );
    }

    #[test]
    fn untrusted_daemon_settings_are_refused() {
        for (bad, key) in [
            (
                "[[stream]]\ndevice = \"cam-1\"\nurl = \"file:///etc/passwd\"\n",
                "stream[0].url",
            ),
            (
                "[[stream]]\ndevice = \"cam-1\"\nurl = \"rtsp://h/a b\"\n",
                "stream[0].url",
            ),
            (
                "[[stream]]\ndevice = \"../x\"\nurl = \"rtsp://h/a\"\n",
                "stream[0].device",
            ),
            (
                "[[stream]]\ndevice = \"c\"\nurl = \"rtsp://h/a\"\n[[stream]]\ndevice = \"c\"\nurl = \"rtsp://h/b\"\n",
                "stream[1].device",
            ),
            (
                "[[stream]]\ndevice = \"c\"\nurl = \"rtsp://h/a\"\nsegment = \"0s\"\n",
                "stream[0].segment",
            ),
            ("[[inbox]]\npath = \"relative/inbox\"\n", "inbox[0].path"),
            (
                "[[inbox]]\npath = \"/i\"\ndevice_from = \"fixed\"\n",
                "inbox[0].device",
            ),
            (
                "[queue]\nnats = \"nats://h:4222\"\nregions = [\"us\"]\n",
                "queue.regions",
            ),
            ("[queue]\nnats = \"http://h:4222\"\n", "queue.nats"),
            (
                "[queue]\nnats = \"nats://h:4222\"\nsubject = \"a.>\"\n",
                "queue.subject",
            ),
            ("[daemon]\nlisten = \"localhost\"\n", "daemon.listen"),
            (
                "[daemon]\nstream_stale_secs = 0\n",
                "daemon.stream_stale_secs",
            ),
            (
                "[daemon]\nstream_stale_secs = 10\n[[stream]]\ndevice = \"c\"\nurl = \"rtsp://h/a\"\n",
                "daemon.stream_stale_secs",
            ),
        ] {
            match Config::parse(&format!("{REGION}{bad}")) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{bad}"),
                other => panic!("{bad}: expected an error for {key}, got {other:?}"),
            }
        }
        assert!(Config::parse("[[inbox]]\npath = \"/i\"\nwatch = true\n").is_err());
    }
}
