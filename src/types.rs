//! Types that cross pipeline stages: decoded frames, detections, tracked boxes, and the
//! sidecar that describes a processed clip.
//!
//! Owns: the data shapes only. Must not touch: GStreamer pipelines, models or files — stages
//! produce and consume these values, nothing here does I/O.
//!
//! The sidecar schema is a public contract (documented in `docs/sidecar.md`): fields are only
//! ever added, never renamed or removed, and `schema_version` moves when meaning changes.

use gstreamer as gst;
use serde::{Deserialize, Serialize};

use crate::geom::BoxF;

/// A decoded full-resolution frame in I420, as it travels decode → detect → track → redact →
/// encode. The buffer is redacted in place and handed to the encoder unchanged otherwise.
#[derive(Debug)]
pub struct Frame {
    /// 0-based decode order index.
    pub index: u64,
    /// Presentation time in running time (the demuxer's segment applied; starts at 0).
    pub pts: Option<gst::ClockTime>,
    pub duration: Option<gst::ClockTime>,
    /// The decoded stream's caps (I420, size, rate, colorimetry), passed on to the encoder.
    pub caps: gst::Caps,
    /// The decoder's own buffer, shared with nobody once the decoder's branches are done with
    /// it; its timestamps are still the stream's (the redact stage sets `pts` on it).
    pub buffer: gst::Buffer,
}

impl Frame {
    /// Presentation time in seconds (0 when the decoder gave none).
    pub fn time_s(&self) -> f64 {
        self.pts.map(|t| t.nseconds() as f64 / 1e9).unwrap_or(0.0)
    }
}

/// One face found by a detector, in full-frame input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub bbox: BoxF,
    pub score: f32,
    /// Frames until the pass that found this face runs again (1 for a detector that runs on
    /// every frame). The tracker extends the face at least this far on both sides.
    pub revisit: u32,
}

/// How a tracked box for one frame came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxSource {
    /// The detector found the face in this frame.
    Detected,
    /// Between two detections of the same track (a gap, or a frame the detector skipped).
    Interpolated,
    /// Before the first or after the last detection (look-back / look-ahead).
    Extended,
}

/// A face box for one frame, belonging to a track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackedBox {
    pub track_id: u64,
    pub bbox: BoxF,
    pub score: f32,
    pub source: BoxSource,
}

/// A frame whose face boxes are final: the tracker's output, the redactor's input.
#[derive(Debug)]
pub struct TrackedFrame {
    pub frame: Frame,
    pub boxes: Vec<TrackedBox>,
}

// ---------------------------------------------------------------------------------------------
// Sidecar
// ---------------------------------------------------------------------------------------------

/// An `f32` field of the sidecar, refused when beyond `f32`'s range ([`crate::geom::FiniteF32`]).
fn finite_f32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    crate::geom::FiniteF32::deserialize(d).map(|f| f.0)
}

pub const SIDECAR_SCHEMA: &str = "obscura.sidecar";
pub const SIDECAR_VERSION: u32 = 1;

/// Everything Obscura knows about one processed clip. Serialised as the JSON sidecar.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sidecar {
    pub schema: String,
    pub schema_version: u32,
    pub obscura_version: String,
    /// RFC 3339 UTC time the sidecar was written.
    pub created_at: String,
    pub input: InputInfo,
    pub output: OutputInfo,
    /// The face detector that ran; absent for audio-only inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<DetectorInfo>,
    /// How faces were redacted; absent for audio-only inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<RedactionInfo>,
    #[serde(default)]
    pub faces: FacesInfo,
    /// Voice activity and its redaction; absent when the clip has no audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<VoiceInfo>,
    pub totals: Totals,
    pub timing: Timing,
    /// Fingerprint of the settings that produced the output (`batch --resume` compares it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputInfo {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub duration_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoStreamInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioStreamInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VideoStreamInfo {
    pub width: u32,
    pub height: u32,
    /// Frames per second as a fraction; 0/1 for variable frame rate.
    pub fps_n: i32,
    pub fps_d: i32,
    pub fps: f64,
    pub codec: String,
    /// The input container's display orientation (GStreamer's `image-orientation` value,
    /// e.g. `rotate-90`, `flip-rotate-0`), only when it is not the identity. `width`/`height`
    /// are the displayed size; the output holds upright pixels with no rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orientation: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AudioStreamInfo {
    pub rate: u32,
    pub channels: u32,
    pub codec: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputInfo {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DetectorInfo {
    pub name: String,
    pub model: String,
    pub model_sha256: String,
    #[serde(deserialize_with = "finite_f32")]
    pub threshold: f32,
    /// Detector input size `[w, h]` in pixels.
    pub input_size: [u32; 2],
    /// The detector runs on every `every`-th frame; the tracker fills the others.
    pub every: u32,
    /// Execution provider that ran it: `cpu` or `cuda`.
    pub provider: String,
    /// What the main pass did: how many runs covered the whole frame; absent in sidecars
    /// written before it could look at only part of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<MainPasses>,
    /// What the zoom pass (small faces) did; absent when it was off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zoom: Option<ZoomSweeps>,
}

/// The zoom pass over one clip: how many sweeps, how many covered the whole frame, how many
/// followed a picture that moved as a whole (a pan or tilt), and what the detector was given.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct ZoomSweeps {
    pub sweeps: u64,
    /// Over the whole frame: the first, every `zoom_full_every`-th, and where too much changed.
    pub full: u64,
    /// Partial sweeps after the camera moved: only what entered the frame or moved on its own
    /// was looked at again.
    pub followed_motion: u64,
    /// Sweeps that magnified only around what a first, cheaper look proposed
    /// (`detect.zoom_proposal_threshold`); the others magnified all they looked at.
    #[serde(default)]
    pub proposed: u64,
    /// Follow looks (magnified, around the small faces known, on main-pass frames between
    /// sweeps) and the faces they looked for in all.
    #[serde(default)]
    pub follow_looks: u64,
    #[serde(default)]
    pub followed: u64,
    /// Detector input of the follow looks, megapixels.
    #[serde(default)]
    pub follow_input_mpx: f64,
    /// Detector input over all sweeps (both looks), megapixels.
    pub input_mpx: f64,
    /// The picture was grey (night infrared): sweeps at `detect.grey_zoom`, no proposals.
    #[serde(default)]
    pub grey: bool,
    /// The second detector grey sweeps also ran (`detect.grey_second_model`), and its input
    /// over all sweeps, megapixels (besides `input_mpx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_model: Option<crate::detect::ModelKind>,
    #[serde(default)]
    pub second_input_mpx: f64,
}

/// The main pass over one clip: how many frames it ran on, how many of those it looked at
/// whole, how many it skipped altogether (nothing changed), and what the detector was given.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct MainPasses {
    pub passes: u64,
    /// Over the whole frame: the first, every `main_full_every`-th, after a camera moved or
    /// where too much changed.
    pub full: u64,
    /// Nothing changed: the faces of the pass before stood, the detector did not run.
    pub unchanged: u64,
    /// Detector input over all passes, megapixels.
    pub input_mpx: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RedactionInfo {
    pub style: String,
    /// Fraction of the box width/height added on every side before redacting.
    #[serde(deserialize_with = "finite_f32")]
    pub margin: f32,
    pub tracker: TrackerInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackerInfo {
    pub lookback_frames: u32,
    pub lookahead_frames: u32,
    pub max_gap_frames: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FacesInfo {
    pub tracks: Vec<TrackRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackRecord {
    pub id: u64,
    pub first_frame: u64,
    pub last_frame: u64,
    pub first_t: f64,
    pub last_t: f64,
    #[serde(deserialize_with = "finite_f32")]
    pub max_score: f32,
    pub boxes: Vec<TrackBoxRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackBoxRecord {
    pub frame: u64,
    pub t: f64,
    /// `[x, y, w, h]` in input pixels (the detector's box, before the redaction margin).
    #[serde(rename = "box")]
    pub bbox: BoxF,
    #[serde(deserialize_with = "finite_f32")]
    pub score: f32,
    pub source: BoxSource,
}

/// Voice activity segments and how they were treated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VoiceInfo {
    /// What was done to speech: mute, bleep, disguise, tag or keep.
    pub mode: String,
    /// VAD model and its sha256 (empty in `keep` mode, where no VAD runs).
    pub model: String,
    pub model_sha256: String,
    #[serde(deserialize_with = "finite_f32")]
    pub threshold: f32,
    /// Seconds redacted before and after each segment.
    pub pad_s: f64,
    /// Total length of the segments (unpadded), seconds.
    pub speech_s: f64,
    /// Speech segments as the VAD found them (before padding), in stream seconds.
    pub segments: Vec<VoiceSegment>,
    /// The VAD could not run and the audio track was muted from that point on (`mode` is
    /// then `mute`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vad_failed: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct VoiceSegment {
    pub start_s: f64,
    pub end_s: f64,
    #[serde(deserialize_with = "finite_f32")]
    pub score: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Totals {
    pub frames: u64,
    pub frames_with_faces: u64,
    pub tracks: u64,
    pub face_boxes: u64,
    #[serde(default)]
    pub speech_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Timing {
    pub wall_s: f64,
    /// Frames per second over the whole run (frames / wall_s); 0 for audio-only clips.
    pub fps: f64,
    /// Time spent per stage, summed over the run, in milliseconds per frame.
    #[serde(default)]
    pub stage_ms_per_frame: StageTimes,
    /// Voice activity detection cost: milliseconds per second of audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vad_ms_per_audio_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct StageTimes {
    pub detect: f64,
    pub track: f64,
    pub redact: f64,
    pub encode_push: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIP: &str = include_str!("../fuzz/seeds/sidecar/clip.json");

    /// What the sidecar fuzz target found in CI: a score of 1.1e50 parsed as an `f32` became
    /// infinity, which serializes as `null`, so the parsed sidecar did not parse again. Numbers
    /// beyond `f32`'s range are now refused when read, in scores, thresholds and boxes.
    #[test]
    fn regression_a_sidecar_number_beyond_f32_parsed_but_did_not_serialize_back() {
        let ok: Sidecar = serde_json::from_str(CLIP).unwrap();
        let again: Sidecar = serde_json::from_slice(&serde_json::to_vec(&ok).unwrap()).unwrap();
        assert_eq!(again, ok);
        let huge = "111111111111111111111111111111111111111111111111110.0";
        for (field, replacement) in [
            ("\"score\": 0.9312", format!("\"score\": {huge}")),
            (
                "\"max_score\": 0.9318227",
                format!("\"max_score\": -{huge}"),
            ),
            ("\"threshold\": 0.5", format!("\"threshold\": {huge}")),
            ("\"margin\": 0.2", format!("\"margin\": {huge}")),
        ] {
            assert!(CLIP.contains(field), "{field}");
            let bad = CLIP.replacen(field, &replacement, 1);
            let err = serde_json::from_str::<Sidecar>(&bad).unwrap_err();
            assert!(err.to_string().contains("out of range"), "{field}: {err}");
        }
        // The first box's first coordinate.
        assert_eq!(CLIP.matches("110.89,").count(), 1);
        let bad = CLIP.replacen("110.89,", &format!("{huge},"), 1);
        let err = serde_json::from_str::<Sidecar>(&bad).unwrap_err();
        assert!(err.to_string().contains("out of range"), "box: {err}");
    }
}
