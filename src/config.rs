//! The one typed configuration: TOML, unknown keys rejected, validated at load, documented
//! defaults (`docs/config.md` lists every key). Command-line flags override fields after
//! loading, and the result is validated again.
//!
//! Owns: parsing and validation of settings. Must not touch: media, models or stores — other
//! modules receive already-valid values.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::tracker::TrackerConfig;
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
    pub encode: EncodeSettings,
    pub limits: Limits,
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
    /// ONNX Runtime intra-op threads per session (default 2).
    pub threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            onnxruntime_lib: None,
            models_dir: None,
            device: Device::Cpu,
            threads: 2,
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
    pub threshold: f32,
    /// Smallest face (width in source pixels) that must be found; sets the `auto` input size.
    pub min_face_px: u32,
    /// `auto` (from `min_face_px`) or `WIDTHxHEIGHT` (multiples of 32).
    pub input_size: InputSize,
    /// Run the detector on every n-th frame; the tracker fills the others (default 1).
    pub every: u32,
    /// Frames per detector run (default 1 on CPU).
    pub batch: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            model: ModelKind::Yunet,
            threshold: 0.5,
            min_face_px: 12,
            input_size: InputSize::Auto,
            every: 1,
            batch: 1,
        }
    }
}

/// The smallest face, in detector-input pixels, that the detectors find reliably (YuNet-n
/// scored 0.79 on an 8 px face of the composite test image; 0.45 at 6 px).
pub const DETECTABLE_FACE_PX: f32 = 8.0;

impl DetectConfig {
    /// The detector input size for a `w x h` video.
    pub fn input_size_for(&self, w: u32, h: u32) -> (u32, u32) {
        use crate::geom::ceil_to_multiple;
        match self.input_size {
            InputSize::Fixed(dw, dh) => (dw, dh),
            InputSize::Auto => {
                let scale = (DETECTABLE_FACE_PX / self.min_face_px.max(1) as f32).min(1.0);
                let dw = ceil_to_multiple(((w as f32 * scale).ceil() as u32).max(32), 32);
                let dh = ceil_to_multiple(((h as f32 * scale).ceil() as u32).max(32), 32);
                (dw, dh)
            }
        }
    }
}

/// Tracker settings (frames).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSettings {
    pub lookback: u32,
    pub lookahead: u32,
    pub max_gap: u32,
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
    /// The tracker configuration for a detector running every `every` frames: gaps of at
    /// least two detector runs are always bridged.
    pub fn tracker_config(&self, every: u32) -> TrackerConfig {
        TrackerConfig {
            iou_match: self.iou_match,
            lookback: self.lookback.max(every),
            lookahead: self.lookahead.max(every),
            max_gap: self.max_gap.max(2 * every),
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
    pub margin: f32,
    /// Blur radius as a fraction of the region's longer side (default 1/3).
    pub blur_radius: f32,
    /// Pixelate: cells along the region's longer side (default 8, at most 8).
    pub pixelate_blocks: u32,
}

impl Default for RedactSettings {
    fn default() -> Self {
        let p = StyleParams::default();
        RedactSettings {
            style: Style::Blur,
            margin: 0.2,
            blur_radius: p.blur_radius_frac,
            pixelate_blocks: p.pixelate_blocks,
        }
    }
}

impl RedactSettings {
    pub fn style_params(&self) -> StyleParams {
        StyleParams {
            blur_radius_frac: self.blur_radius,
            blur_passes: StyleParams::default().blur_passes,
            pixelate_blocks: self.pixelate_blocks,
        }
    }
}

/// Output encoding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EncodeSettings {
    /// `fast` (x264 ultrafast, default), `balanced` (veryfast) or `high` (medium).
    pub quality: Quality,
    /// x264 threads (0 = automatic).
    pub threads: u32,
    /// AAC bit rate in bits per second (0 = 64 kb/s per channel, at most 256 kb/s).
    pub audio_bitrate: i32,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        EncodeSettings {
            quality: Quality::Fast,
            threads: 0,
            audio_bitrate: 0,
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
    /// Frames held in each bounded channel between stages.
    pub queue_frames: usize,
    /// Largest accepted frame (width x height), to refuse absurd declared sizes.
    pub max_frame_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            stall_secs: 60,
            probe_secs: 20,
            queue_frames: 4,
            max_frame_pixels: 8192 * 8192,
        }
    }
}

impl Config {
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
        if d.every == 0 || d.every > 30 {
            return Err(invalid("detect.every", "must be between 1 and 30"));
        }
        if d.batch == 0 || d.batch > 64 {
            return Err(invalid("detect.batch", "must be between 1 and 64"));
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
        if !(r.blur_radius >= 0.05 && r.blur_radius <= 1.0) {
            return Err(invalid("redact.blur_radius", "must be between 0.05 and 1"));
        }
        if r.pixelate_blocks == 0 || r.pixelate_blocks > 8 {
            return Err(invalid(
                "redact.pixelate_blocks",
                "must be between 1 and 8 (a finer mosaic keeps faces recognisable)",
            ));
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
        let l = &self.limits;
        if l.stall_secs == 0 || l.probe_secs == 0 || l.queue_frames == 0 || l.queue_frames > 256 {
            return Err(invalid(
                "limits",
                "stall_secs, probe_secs and queue_frames must be positive (queue_frames at most 256)",
            ));
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
    }

    #[test]
    fn input_size_parses_auto_and_fixed() {
        let c = Config::parse("[detect]\ninput_size = \"640x384\"\n").unwrap();
        assert_eq!(c.detect.input_size, InputSize::Fixed(640, 384));
        assert!(Config::parse("[detect]\ninput_size = \"641x384\"\n").is_err());
        assert!("auto".parse::<InputSize>().is_ok());
    }

    #[test]
    fn auto_input_size_keeps_12px_faces_at_8px() {
        let d = DetectConfig::default();
        assert_eq!(d.input_size_for(640, 360), (448, 256));
        assert_eq!(d.input_size_for(1280, 720), (864, 480));
        assert_eq!(d.input_size_for(1920, 1080), (1280, 736));
        assert_eq!(d.input_size_for(16, 16), (32, 32));
        let big = DetectConfig {
            min_face_px: 40,
            ..Default::default()
        };
        assert_eq!(big.input_size_for(1920, 1080), (384, 224));
    }

    #[test]
    fn tracker_bridges_at_least_two_detector_runs() {
        let t = TrackerSettings::default().tracker_config(5);
        assert!(t.max_gap >= 10 && t.lookback >= 5);
    }
}
