//! The redact pipeline: wires the stages on their own threads with bounded channels.
//!
//! ```text
//! GStreamer decode ──full+small──▶ detect ──▶ track ──▶ redact ──▶ GStreamer encode ─▶ temp file
//!                  └─audio──────▶ voice ─────────────────────────▶ (same encoder)
//! ```
//!
//! Owns: the order of stages, the channels between them, failure propagation, the watchdog,
//! and the commit of the output (temp name → fsync → rename) and the sidecar. Must not touch:
//! pixels, tensors or GStreamer elements directly — each stage's module does that.
//!
//! Fail closed: every stage reports its first error into one slot; on any error (or a stall,
//! or cancellation) the decoder and encoder are torn down, the temporary output is removed,
//! and nothing is written at the output path.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use gstreamer as gst;
use gstreamer_video as gst_video;

use crate::config::Config;
use crate::detect::tracker::{TrackLog, Tracker};
use crate::detect::zoom::Tile;
use crate::detect::{DetectError, DetectorImage, FaceDetector, SessionOptions};
use crate::fsutil::{TempFile, sha256_file};
use crate::media::decode::{DecodeConfig, Decoder, SmallSpec};
use crate::media::encode::{AudioEncodeSpec, EncodeConfig, Encoder, VideoEncodeSpec};
use crate::media::{MediaError, MediaInfo};
use crate::redact::video::{PlaneMut, redact_planes};
use crate::types::*;

/// Errors of a pipeline run. Each names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("{}: {source}", path.display())]
    Detect { path: PathBuf, source: DetectError },
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: cancelled", path.display())]
    Cancelled { path: PathBuf },
    #[error("{}: internal error: {message}", path.display())]
    Internal { path: PathBuf, message: String },
}

impl PipelineError {
    /// A short machine-readable class for reports and quarantine reasons.
    pub fn class(&self) -> &'static str {
        match self {
            PipelineError::Media(m) => match m {
                MediaError::NotFound { .. } => "not_found",
                MediaError::Unreadable { .. } => "unreadable",
                MediaError::Empty { .. } => "empty",
                MediaError::NotMedia { .. } => "not_media",
                MediaError::Unsupported { .. } => "unsupported",
                MediaError::Corrupt { .. } => "corrupt",
                MediaError::NoStreams { .. } => "no_streams",
                MediaError::MissingElement { .. } => "missing_element",
                MediaError::Encode { .. } => "encode_failed",
                MediaError::Stalled { .. } => "stalled",
                MediaError::Gst(_) => "gstreamer",
            },
            PipelineError::Detect { source, .. } => match source {
                DetectError::ModelMissing { .. } => "model_missing",
                DetectError::ModelChecksum { .. } => "model_checksum",
                DetectError::RuntimeMissing { .. } | DetectError::RuntimeLoad(_) => {
                    "runtime_missing"
                }
                DetectError::CudaUnavailable(_) => "cuda_unavailable",
                _ => "detector_failed",
            },
            PipelineError::Io { .. } => "io",
            PipelineError::Invalid { .. } => "invalid",
            PipelineError::Cancelled { .. } => "cancelled",
            PipelineError::Internal { .. } => "internal",
        }
    }
}

/// What a run does: the product (`Redact`) or the baselines `obscura bench` compares it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decode, detect, track, redact, encode.
    Redact,
    /// Decode and encode with the same settings; no detection or redaction. Never used for
    /// real outputs (it would write faces): only by the benchmark, into a scratch folder.
    TranscodeOnly,
    /// Decode only; nothing is written.
    DecodeOnly,
}

/// One file to process.
#[derive(Debug, Clone)]
pub struct Job {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Where the sidecar goes (default: OUTPUT + ".json").
    pub sidecar: Option<PathBuf>,
}

impl Job {
    pub fn sidecar_path(&self) -> PathBuf {
        self.sidecar.clone().unwrap_or_else(|| {
            let mut s = self.output.as_os_str().to_owned();
            s.push(".json");
            PathBuf::from(s)
        })
    }
}

/// Shared with whoever watches a run: progress counters and a cancel switch.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Frames finished (redacted and handed to the encoder).
    pub frames_done: Arc<AtomicU64>,
    /// Expected total frames (from the probe; 0 when unknown).
    pub frames_total: Arc<AtomicU64>,
    /// Set to stop the run; it then fails with [`PipelineError::Cancelled`].
    pub cancel: Arc<AtomicBool>,
}

/// The result of a successful run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub output: PathBuf,
    pub sidecar_path: PathBuf,
    pub sidecar: Sidecar,
}

/// Redacts one file: probe, detect faces, track, redact, encode, commit output and sidecar.
pub fn redact_file(job: &Job, cfg: &Config, ctl: &Control) -> Result<Outcome, PipelineError> {
    run(job, cfg, ctl, Mode::Redact)
}

/// Runs a job in any [`Mode`].
pub fn run(job: &Job, cfg: &Config, ctl: &Control, mode: Mode) -> Result<Outcome, PipelineError> {
    let started = Instant::now();
    let input = job.input.clone();
    let input_bytes = crate::media::probe::check_file(&input)?;
    if mode != Mode::DecodeOnly {
        check_output_path(&input, &job.output)?;
    }
    // Hash the input while it is being processed.
    let hash_thread = {
        let p = input.clone();
        std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || sha256_file(&p))
            .map_err(|e| internal(&input, format!("spawning hash thread: {e}")))?
    };

    let info = crate::media::probe(&input, Duration::from_secs(cfg.limits.probe_secs))?;
    let Some(video) = info.video.clone() else {
        return Err(PipelineError::Media(MediaError::Unsupported {
            path: input.clone(),
            detail: "no video stream (audio-only inputs are not supported by this command yet)"
                .into(),
        }));
    };
    if u64::from(video.width) * u64::from(video.height) > cfg.limits.max_frame_pixels {
        return Err(PipelineError::Media(MediaError::Unsupported {
            path: input.clone(),
            detail: format!(
                "frame size {}x{} exceeds the limit",
                video.width, video.height
            ),
        }));
    }
    ctl.frames_total
        .store(info.expected_frames().unwrap_or(0), Ordering::Relaxed);

    // The detector is loaded (and its model verified) before any pipeline starts.
    let detector = if mode == Mode::Redact {
        crate::detect::runtime::set_library_path(cfg.runtime.onnxruntime_lib.clone());
        let opts = SessionOptions {
            device: cfg.runtime.device,
            intra_threads: cfg.runtime.threads,
            ..Default::default()
        };
        Some(
            crate::detect::load_face_detector(
                cfg.detect.model,
                cfg.runtime.models_dir.as_deref(),
                cfg.detect.threshold,
                &opts,
            )
            .map_err(|source| PipelineError::Detect {
                path: input.clone(),
                source,
            })?,
        )
    } else {
        None
    };
    let (det_w, det_h) = cfg.detect.input_size_for(video.width, video.height);
    let detector_meta = detector
        .as_ref()
        .map(|d| (d.provider().name().to_string(), d.model().sha256.clone()));

    let has_audio = info.audio.is_some();
    let temp = TempFile::beside(&job.output).map_err(|source| PipelineError::Io {
        path: job.output.clone(),
        what: "preparing the output",
        source,
    })?;
    let encoder = if mode == Mode::DecodeOnly {
        None
    } else {
        let channels = info.audio.as_ref().map(|a| a.channels.max(1)).unwrap_or(1) as i32;
        let bitrate = if cfg.encode.audio_bitrate > 0 {
            cfg.encode.audio_bitrate
        } else {
            (64_000 * channels).min(256_000)
        };
        Some(Encoder::start(&EncodeConfig {
            path: temp.path().to_path_buf(),
            video: Some(VideoEncodeSpec {
                quality: cfg.encode.quality,
                threads: cfg.encode.threads,
                keyint_max: 0,
            }),
            audio: has_audio.then_some(AudioEncodeSpec { bitrate }),
            max_queue_bytes: (u64::from(video.width) * u64::from(video.height) * 3 / 2) * 4,
        })?)
    };
    let small = detector.as_ref().map(|d| SmallSpec {
        width: det_w,
        height: det_h,
        format: d.channel_order().gst_format(),
    });
    let (decoder, streams) = Decoder::start(&DecodeConfig {
        path: input.clone(),
        video: true,
        small,
        audio: has_audio && mode != Mode::DecodeOnly,
        vad: false,
        video_queue: cfg.limits.queue_frames,
        audio_queue: 64,
    })?;

    let stages = Stages::spawn(StageSetup {
        input: input.clone(),
        cfg: cfg.clone(),
        mode,
        detector,
        det_size: (det_w, det_h),
        frame_size: (video.width, video.height),
        zoom_tiles: match cfg.detect.zoom_for(video.width, video.height) {
            Some(z) if mode == Mode::Redact => {
                crate::detect::zoom::layout(video.width, video.height, z)
            }
            _ => Vec::new(),
        },
        fps: video.fps(),
        streams,
        encoder: encoder.as_ref(),
        ctl: ctl.clone(),
    })?;
    let result = supervise(&input, &stages, &decoder, encoder.as_ref(), ctl, cfg);
    let stage_results = stages.join();
    let frames = match (result, stage_results) {
        (Err(e), _) => {
            decoder.abort();
            drop(encoder);
            return Err(e);
        }
        (Ok(()), Err(e)) => {
            decoder.abort();
            drop(encoder);
            return Err(e);
        }
        (Ok(()), Ok(r)) => r,
    };
    decoder.finish(Duration::from_secs(cfg.limits.stall_secs))?;
    check_complete(&input, &info, &frames)?;
    if frames.frames == 0 {
        return Err(PipelineError::Media(MediaError::Corrupt {
            path: input.clone(),
            detail: "no decodable video frames".into(),
        }));
    }
    if let Some(enc) = encoder {
        enc.finish(Duration::from_secs(cfg.limits.stall_secs))?;
    }
    let input_sha = hash_thread
        .join()
        .map_err(|_| internal(&input, "hash thread panicked".into()))?
        .map_err(|source| PipelineError::Io {
            path: input.clone(),
            what: "hashing the input",
            source,
        })?;

    let wall = started.elapsed().as_secs_f64();
    let (output_info, output_path) = if mode == Mode::DecodeOnly {
        drop(temp);
        (
            OutputInfo {
                path: String::new(),
                sha256: String::new(),
                bytes: 0,
                container: String::new(),
                video_codec: None,
                audio_codec: None,
            },
            PathBuf::new(),
        )
    } else {
        let out_sha = sha256_file(temp.path()).map_err(|source| PipelineError::Io {
            path: job.output.clone(),
            what: "hashing the output",
            source,
        })?;
        let out_bytes = std::fs::metadata(temp.path()).map(|m| m.len()).unwrap_or(0);
        let committed = temp.commit().map_err(|source| PipelineError::Io {
            path: job.output.clone(),
            what: "committing the output",
            source,
        })?;
        (
            OutputInfo {
                path: committed.display().to_string(),
                sha256: out_sha,
                bytes: out_bytes,
                container: "mp4".into(),
                video_codec: Some("h264".into()),
                audio_codec: has_audio.then(|| "aac".into()),
            },
            committed,
        )
    };
    let sidecar = build_sidecar(SidecarParts {
        input: &input,
        input_sha,
        input_bytes,
        info: &info,
        output: output_info,
        cfg,
        det_size: (det_w, det_h),
        detector_meta,
        frames,
        wall,
    });
    let sidecar_path = job.sidecar_path();
    if mode != Mode::DecodeOnly {
        let json =
            serde_json::to_vec_pretty(&sidecar).map_err(|e| internal(&input, e.to_string()))?;
        crate::fsutil::write_atomic(&sidecar_path, &json).map_err(|source| PipelineError::Io {
            path: sidecar_path.clone(),
            what: "writing the sidecar",
            source,
        })?;
    }
    Ok(Outcome {
        output: output_path,
        sidecar_path,
        sidecar,
    })
}

fn internal(path: &Path, message: String) -> PipelineError {
    PipelineError::Internal {
        path: path.to_path_buf(),
        message,
    }
}

/// A truncated file decodes "cleanly" up to where it was cut (demuxers stop at the end of
/// the data), so compare where the streams actually ended with the duration the container
/// declares: the longest stream must reach it (within half a second and 2%).
fn check_complete(input: &Path, info: &MediaInfo, r: &StageResults) -> Result<(), PipelineError> {
    let Some(declared) = info.duration else {
        return Ok(());
    };
    let declared = declared.nseconds() as f64 / 1e9;
    let reached = r
        .video_end
        .max(r.audio_end)
        .map(|t| t.nseconds() as f64 / 1e9)
        .unwrap_or(0.0);
    if declared > 0.0 && reached + 0.5 + 0.02 * declared < declared {
        return Err(PipelineError::Media(MediaError::Corrupt {
            path: input.to_path_buf(),
            detail: format!(
                "truncated: the media ends at {reached:.2} s of the {declared:.2} s the file declares"
            ),
        }));
    }
    Ok(())
}

/// The output must not overwrite the input, and its folder must exist.
fn check_output_path(input: &Path, output: &Path) -> Result<(), PipelineError> {
    let invalid = |m: &str| PipelineError::Invalid {
        path: output.to_path_buf(),
        message: m.to_string(),
    };
    if output.file_name().is_none() {
        return Err(invalid("output must be a file path"));
    }
    if output.is_dir() {
        return Err(invalid("output is a folder; give a file path"));
    }
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(invalid("the output folder does not exist"));
    }
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(input), std::fs::canonicalize(output))
        && a == b
    {
        return Err(invalid("output would overwrite the input"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Stages
// ---------------------------------------------------------------------------------------------

/// What the stages produce when they end well.
#[derive(Debug, Default)]
struct StageResults {
    frames: u64,
    log: TrackLog,
    times: StageTimes,
    /// Where the decoded video and audio ended (last timestamp + duration).
    video_end: Option<gst::ClockTime>,
    audio_end: Option<gst::ClockTime>,
}

/// End time of a buffer, when it has a timestamp.
fn buffer_end(b: &gst::BufferRef) -> Option<gst::ClockTime> {
    b.pts()
        .map(|p| p + b.duration().unwrap_or(gst::ClockTime::ZERO))
}

struct StageSetup<'a> {
    input: PathBuf,
    cfg: Config,
    mode: Mode,
    detector: Option<Box<dyn FaceDetector>>,
    det_size: (u32, u32),
    frame_size: (u32, u32),
    zoom_tiles: Vec<Tile>,
    fps: f64,
    streams: crate::media::decode::Streams,
    encoder: Option<&'a Encoder>,
    ctl: Control,
}

/// The first error any stage hit; later errors are consequences and are dropped.
#[derive(Clone, Default)]
struct FirstError(Arc<Mutex<Option<PipelineError>>>);

impl FirstError {
    fn set(&self, e: PipelineError) {
        if let Ok(mut g) = self.0.lock()
            && g.is_none()
        {
            *g = Some(e);
        }
    }
    fn is_set(&self) -> bool {
        self.0.lock().map(|g| g.is_some()).unwrap_or(true)
    }
    fn take(&self) -> Option<PipelineError> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

struct Stages {
    handles: Vec<(&'static str, JoinHandle<()>)>,
    error: FirstError,
    /// Advances whenever any stage makes progress (frames or audio).
    ticks: Arc<AtomicU64>,
    results: Arc<Mutex<StageResults>>,
}

type DetectedFrame = (Frame, Option<Vec<Detection>>);

impl Stages {
    fn spawn(s: StageSetup<'_>) -> Result<Stages, PipelineError> {
        let error = FirstError::default();
        let ticks = Arc::new(AtomicU64::new(0));
        let results = Arc::new(Mutex::new(StageResults::default()));
        let q = s.cfg.limits.queue_frames;
        let (to_track, track_rx) = bounded::<DetectedFrame>(q);
        let (to_redact, redact_rx) = bounded::<TrackedFrame>(q);
        let mut handles = Vec::new();
        let spawn = |name: &'static str,
                     f: Box<dyn FnOnce() -> Result<(), PipelineError> + Send>| {
            let error = error.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                        .unwrap_or_else(|p| {
                            let msg = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            Err(PipelineError::Internal {
                                path: PathBuf::new(),
                                message: format!("stage {name} panicked: {msg}"),
                            })
                        });
                    if let Err(e) = r {
                        error.set(e);
                    }
                })
                .map(|h| (name, h))
        };

        let full = s
            .streams
            .full
            .ok_or_else(|| internal(&s.input, "no video stream receiver".into()))?;
        // detect
        {
            let ctx = DetectStage {
                input: s.input.clone(),
                full,
                small: s.streams.small,
                detector: s.detector,
                det_size: s.det_size,
                frame_size: s.frame_size,
                every: s.cfg.detect.every_for(s.fps),
                batch: s.cfg.detect.batch.max(1),
                zoom_tiles: s.zoom_tiles,
                zoom_every: s.cfg.zoom_every(s.frame_size.0, s.frame_size.1, s.fps),
                zoom_max_face: s.cfg.detect.zoom_max_face(),
                out: to_track,
                error: error.clone(),
                ticks: ticks.clone(),
                results: results.clone(),
            };
            handles.push(
                spawn("detect", Box::new(move || ctx.run()))
                    .map_err(|e| internal(&s.input, format!("spawning detect: {e}")))?,
            );
        }
        // track
        {
            let tracker_cfg = s.cfg.tracker_config(s.frame_size.0, s.frame_size.1, s.fps);
            let results = results.clone();
            let error2 = error.clone();
            handles.push(
                spawn(
                    "track",
                    Box::new(move || {
                        track_stage(track_rx, to_redact, tracker_cfg, results, error2)
                    }),
                )
                .map_err(|e| internal(&s.input, format!("spawning track: {e}")))?,
            );
        }
        // redact (+ hand-off to the encoder)
        {
            let ctx = RedactStage {
                input: s.input.clone(),
                rx: redact_rx,
                video_in: s.encoder.map(|e| e.video_handle()),
                style: if s.mode == Mode::Redact {
                    s.cfg.redact.style
                } else {
                    crate::redact::video::Style::Tag
                },
                params: s.cfg.redact.style_params(),
                margin: s.cfg.redact.margin,
                margin_px: s.cfg.redact.margin_px,
                error: error.clone(),
                ticks: ticks.clone(),
                ctl: s.ctl.clone(),
                results: results.clone(),
            };
            handles.push(
                spawn("redact", Box::new(move || ctx.run()))
                    .map_err(|e| internal(&s.input, format!("spawning redact: {e}")))?,
            );
        }
        // audio
        if let Some(audio_rx) = s.streams.audio {
            let audio_in = s.encoder.and_then(|e| e.audio_handle());
            let results2 = results.clone();
            let ticks = ticks.clone();
            let error2 = error.clone();
            handles.push(
                spawn(
                    "audio",
                    Box::new(move || {
                        audio_passthrough(audio_rx, audio_in, ticks, error2, results2)
                    }),
                )
                .map_err(|e| internal(&s.input, format!("spawning audio: {e}")))?,
            );
        }
        Ok(Stages {
            handles,
            error,
            ticks,
            results,
        })
    }

    fn all_finished(&self) -> bool {
        self.handles.iter().all(|(_, h)| h.is_finished())
    }

    fn join(self) -> Result<StageResults, PipelineError> {
        for (name, h) in self.handles {
            if h.join().is_err() {
                self.error.set(PipelineError::Internal {
                    path: PathBuf::new(),
                    message: format!("stage {name} panicked"),
                });
            }
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut r = self.results.lock().map_err(|_| PipelineError::Internal {
            path: PathBuf::new(),
            message: "results lock poisoned".into(),
        })?;
        Ok(std::mem::take(&mut *r))
    }
}

/// Watches the stages until they end, fail, stall or are cancelled. On anything but a clean
/// end it tears down decoder and encoder so that every blocked stage wakes up.
fn supervise(
    input: &Path,
    stages: &Stages,
    decoder: &Decoder,
    encoder: Option<&Encoder>,
    ctl: &Control,
    cfg: &Config,
) -> Result<(), PipelineError> {
    let stall = Duration::from_secs(cfg.limits.stall_secs);
    let mut last_ticks = stages.ticks.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    let abort_all = || {
        decoder.abort();
        if let Some(e) = encoder {
            e.abort();
        }
    };
    loop {
        if stages.all_finished() {
            return Ok(());
        }
        if stages.error.is_set() || decoder.failed() {
            abort_all();
            if decoder.failed() && !stages.error.is_set() {
                // The decoder's own error is the root cause; stages only saw the channels close.
                return Err(PipelineError::Media(decoder_error(decoder)));
            }
            return Ok(()); // the stage error is reported by join()
        }
        if ctl.cancel.load(Ordering::Relaxed) {
            abort_all();
            stages.error.set(PipelineError::Cancelled {
                path: input.to_path_buf(),
            });
            return Ok(());
        }
        let t = stages.ticks.load(Ordering::Relaxed);
        if t != last_ticks {
            last_ticks = t;
            last_change = Instant::now();
        } else if last_change.elapsed() > stall {
            abort_all();
            stages.error.set(PipelineError::Media(MediaError::Stalled {
                path: input.to_path_buf(),
                what: "processing".into(),
                secs: stall.as_secs(),
            }));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn decoder_error(decoder: &Decoder) -> MediaError {
    decoder
        .error_snapshot()
        .unwrap_or_else(|| MediaError::Corrupt {
            path: decoder.path().to_path_buf(),
            detail: "decoding failed".into(),
        })
}

struct DetectStage {
    input: PathBuf,
    full: Receiver<gst::Sample>,
    small: Option<Receiver<gst::Sample>>,
    detector: Option<Box<dyn FaceDetector>>,
    det_size: (u32, u32),
    frame_size: (u32, u32),
    every: u32,
    batch: usize,
    /// Zoom-pass tiles (empty: no zoom pass) and how often the pass runs.
    zoom_tiles: Vec<Tile>,
    zoom_every: u32,
    /// Largest face (frame pixels) the zoom pass reports.
    zoom_max_face: f32,
    out: Sender<DetectedFrame>,
    error: FirstError,
    ticks: Arc<AtomicU64>,
    results: Arc<Mutex<StageResults>>,
}

/// A frame waiting for the detector: its detector copy when the main pass runs on it, and
/// whether the zoom pass runs on it.
struct Pending {
    frame: Frame,
    small: Option<gst::Sample>,
    zoom: bool,
}

impl DetectStage {
    fn run(mut self) -> Result<(), PipelineError> {
        let _span = tracing::debug_span!("detect").entered();
        let mut index: u64 = 0;
        let mut pending: Vec<Pending> = Vec::new();
        let mut detect_time = Duration::ZERO;
        let has_detector = self.detector.is_some();
        loop {
            let Ok(full) = self.full.recv() else { break };
            let small = match &self.small {
                Some(rx) => match rx.recv() {
                    Ok(s) => Some(s),
                    Err(_) => {
                        if self.error.is_set() {
                            return Ok(());
                        }
                        return Err(internal(
                            &self.input,
                            "detector copy ended before the frames".into(),
                        ));
                    }
                },
                None => None,
            };
            let frame = sample_to_frame(&self.input, index, &full)?;
            let main = has_detector && index.is_multiple_of(u64::from(self.every));
            let zoom = has_detector
                && !self.zoom_tiles.is_empty()
                && index.is_multiple_of(u64::from(self.zoom_every));
            index += 1;
            self.ticks.fetch_add(1, Ordering::Relaxed);
            pending.push(Pending {
                frame,
                small: if main { small } else { None },
                zoom,
            });
            let mains = pending.iter().filter(|p| p.small.is_some()).count();
            // Zoom frames are not batched: they flush what is pending.
            if !has_detector || mains >= self.batch || zoom {
                let t = Instant::now();
                let ok = self.flush(std::mem::take(&mut pending))?;
                detect_time += t.elapsed();
                if !ok {
                    return Ok(());
                }
            }
        }
        if !pending.is_empty() {
            let t = Instant::now();
            self.flush(std::mem::take(&mut pending))?;
            detect_time += t.elapsed();
        }
        if let Ok(mut r) = self.results.lock() {
            r.times.detect = detect_time.as_secs_f64() * 1e3;
        }
        Ok(())
    }

    fn detect_err(&self, source: DetectError) -> PipelineError {
        PipelineError::Detect {
            path: self.input.clone(),
            source,
        }
    }

    /// Runs the main pass on the frames that have a detector copy (as one batch) and the zoom
    /// pass on the frames marked for it, then sends every frame on, in order. Returns false
    /// when downstream has gone (the run is failing).
    fn flush(&mut self, batch: Vec<Pending>) -> Result<bool, PipelineError> {
        let mut main: Vec<Vec<Detection>> = Vec::new();
        if let Some(det) = self.detector.as_mut() {
            let samples: Vec<&gst::Sample> =
                batch.iter().filter_map(|p| p.small.as_ref()).collect();
            if !samples.is_empty() {
                let maps = samples
                    .iter()
                    .map(|s| map_small(&self.input, s))
                    .collect::<Result<Vec<_>, _>>()?;
                let images: Vec<DetectorImage<'_>> = maps.iter().map(|m| m.image()).collect();
                let raw = det
                    .detect(&images)
                    .map_err(|source| PipelineError::Detect {
                        path: self.input.clone(),
                        source,
                    })?;
                let (sx, sy) = (
                    self.frame_size.0 as f32 / self.det_size.0 as f32,
                    self.frame_size.1 as f32 / self.det_size.1 as f32,
                );
                main = raw
                    .into_iter()
                    .map(|dets| self.to_frame(dets, (0.0, 0.0), (sx, sy), self.every))
                    .collect();
            }
        }
        let mut main = main.into_iter();
        for p in batch {
            let mut dets: Option<Vec<Detection>> =
                if p.small.is_some() { main.next() } else { None };
            if p.zoom {
                let z = self.zoom_detect(&p.frame)?;
                let mut all = dets.take().unwrap_or_default();
                all.extend(z);
                dets = Some(merge(all));
            }
            if self.out.send((p.frame, dets)).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Detections in frame pixels from detector-input boxes offset by `(ox, oy)` and scaled
    /// by `(sx, sy)`, clipped to the frame.
    fn to_frame(
        &self,
        dets: Vec<Detection>,
        (ox, oy): (f32, f32),
        (sx, sy): (f32, f32),
        revisit: u32,
    ) -> Vec<Detection> {
        let (fw, fh) = (self.frame_size.0 as f32, self.frame_size.1 as f32);
        dets.into_iter()
            .map(|d| {
                let b = d.bbox.scale(sx, sy);
                Detection {
                    bbox: crate::geom::BoxF::new(b.x + ox, b.y + oy, b.w, b.h).clip(fw, fh),
                    score: d.score,
                    revisit,
                }
            })
            .filter(|d| d.bbox.area() > 0.0)
            .collect()
    }

    /// The zoom pass on one frame: every tile rendered from the full-resolution planes, run
    /// as one batch.
    fn zoom_detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, PipelineError> {
        use gst_video::prelude::*;
        let Some(det) = self.detector.as_ref() else {
            return Ok(Vec::new());
        };
        let order = det.channel_order();
        let info = gst_video::VideoInfo::from_caps(&frame.caps)
            .map_err(|_| internal(&self.input, "frame caps are not raw video".into()))?;
        let vf = gst_video::VideoFrameRef::from_buffer_ref_readable(frame.buffer.as_ref(), &info)
            .map_err(|_| {
            internal(&self.input, "cannot map a frame for the zoom pass".into())
        })?;
        let strides = vf.plane_stride();
        let plane = |i: u32| vf.plane_data(i).unwrap_or(&[]);
        let planes = crate::detect::zoom::I420 {
            y: plane(0),
            u: plane(1),
            v: plane(2),
            strides: [
                strides[0] as usize,
                strides[1] as usize,
                strides[2] as usize,
            ],
            width: info.width(),
            height: info.height(),
        };
        // Tiles of one size go into one batch; edge tiles may differ by a few pixels.
        let mut out = Vec::new();
        let mut groups: Vec<((u32, u32), Vec<Tile>)> = Vec::new();
        for t in &self.zoom_tiles {
            match groups.iter_mut().find(|(k, _)| *k == (t.in_w, t.in_h)) {
                Some((_, v)) => v.push(*t),
                None => groups.push(((t.in_w, t.in_h), vec![*t])),
            }
        }
        for (_, tiles) in groups {
            let rendered: Vec<Vec<u8>> = tiles
                .iter()
                .map(|t| crate::detect::zoom::render(&planes, t, order))
                .collect();
            let images: Vec<DetectorImage<'_>> = tiles
                .iter()
                .zip(&rendered)
                .map(|(t, data)| DetectorImage {
                    data,
                    width: t.in_w,
                    height: t.in_h,
                    stride: t.in_w as usize * 3,
                })
                .collect();
            let det = self.detector.as_mut().expect("checked above");
            let raw = det.detect(&images).map_err(|e| self.detect_err(e))?;
            for (t, dets) in tiles.iter().zip(raw) {
                let (sx, sy) = t.back_scale();
                // The zoom pass is for small faces only: magnified large structures give
                // spurious big boxes, and large faces are the main pass's job.
                let found =
                    self.to_frame(dets, (t.x0 as f32, t.y0 as f32), (sx, sy), self.zoom_every);
                out.extend(
                    found
                        .into_iter()
                        .filter(|d| d.bbox.w.min(d.bbox.h) <= self.zoom_max_face),
                );
            }
        }
        Ok(out)
    }
}

/// Merges detections of several passes or overlapping tiles: greedy NMS at IoU 0.3.
fn merge(dets: Vec<Detection>) -> Vec<Detection> {
    let boxes: Vec<crate::geom::BoxF> = dets.iter().map(|d| d.bbox).collect();
    let scores: Vec<f32> = dets.iter().map(|d| d.score).collect();
    crate::geom::nms(&boxes, &scores, 0.3)
        .into_iter()
        .map(|i| dets[i])
        .collect()
}

/// A mapped detector copy.
struct SmallMap {
    frame: gst_video::VideoFrame<gst_video::video_frame::Readable>,
}

impl SmallMap {
    fn image(&self) -> DetectorImage<'_> {
        use gst_video::prelude::*;
        DetectorImage {
            data: self.frame.plane_data(0).unwrap_or(&[]),
            width: self.frame.width(),
            height: self.frame.height(),
            stride: self.frame.plane_stride()[0].max(0) as usize,
        }
    }
}

fn map_small(input: &Path, s: &gst::Sample) -> Result<SmallMap, PipelineError> {
    let bad = |m: &str| internal(input, format!("detector copy: {m}"));
    let caps = s.caps().ok_or_else(|| bad("no caps"))?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|_| bad("bad caps"))?;
    let buffer = s.buffer_owned().ok_or_else(|| bad("no buffer"))?;
    let frame = gst_video::VideoFrame::from_buffer_readable(buffer, &info)
        .map_err(|_| bad("cannot map"))?;
    Ok(SmallMap { frame })
}

fn sample_to_frame(input: &Path, index: u64, s: &gst::Sample) -> Result<Frame, PipelineError> {
    let buffer = s
        .buffer_owned()
        .ok_or_else(|| internal(input, format!("frame {index} has no buffer")))?;
    let caps = s
        .caps_owned()
        .ok_or_else(|| internal(input, format!("frame {index} has no caps")))?;
    Ok(Frame {
        index,
        pts: buffer.pts(),
        duration: buffer.duration(),
        caps,
        buffer,
    })
}

fn track_stage(
    rx: Receiver<DetectedFrame>,
    out: Sender<TrackedFrame>,
    cfg: crate::detect::tracker::TrackerConfig,
    results: Arc<Mutex<StageResults>>,
    error: FirstError,
) -> Result<(), PipelineError> {
    let _span = tracing::debug_span!("track").entered();
    let mut tracker: Tracker<Frame> = Tracker::new(cfg);
    let mut log = TrackLog::default();
    let mut busy = Duration::ZERO;
    let send = |e: crate::detect::tracker::Emitted<Frame>, log: &mut TrackLog| -> bool {
        log.record(e.index, e.payload.time_s(), &e.boxes);
        out.send(TrackedFrame {
            frame: e.payload,
            boxes: e.boxes,
        })
        .is_ok()
    };
    for (frame, dets) in rx.iter() {
        let t = Instant::now();
        let emitted = tracker.push(frame.index, frame, dets.as_deref());
        busy += t.elapsed();
        for e in emitted {
            if !send(e, &mut log) {
                return Ok(());
            }
        }
    }
    if error.is_set() {
        return Ok(());
    }
    for e in tracker.finish() {
        if !send(e, &mut log) {
            return Ok(());
        }
    }
    if let Ok(mut r) = results.lock() {
        r.log = log;
        r.times.track = busy.as_secs_f64() * 1e3;
    }
    Ok(())
}

struct RedactStage {
    input: PathBuf,
    rx: Receiver<TrackedFrame>,
    video_in: Option<crate::media::encode::VideoInput>,
    style: crate::redact::video::Style,
    params: crate::redact::video::StyleParams,
    margin: f32,
    margin_px: f32,
    error: FirstError,
    ticks: Arc<AtomicU64>,
    ctl: Control,
    results: Arc<Mutex<StageResults>>,
}

impl RedactStage {
    fn run(mut self) -> Result<(), PipelineError> {
        let _span = tracing::debug_span!("redact").entered();
        let mut frames = 0u64;
        let mut video_end = None;
        let (mut redact_t, mut push_t) = (Duration::ZERO, Duration::ZERO);
        let mut info: Option<(gst::Caps, gst_video::VideoInfo)> = None;
        for tf in self.rx.iter() {
            if self.error.is_set() {
                // Fail closed: once anything failed, nothing more goes to the encoder.
                return Ok(());
            }
            let TrackedFrame { frame, boxes } = tf;
            video_end = video_end.max(buffer_end(frame.buffer.as_ref()));
            let t = Instant::now();
            let caps = frame.caps.clone();
            let buffer = if self.style.modifies_pixels() && !boxes.is_empty() {
                if info.as_ref().is_none_or(|(c, _)| c != &caps) {
                    let vi = gst_video::VideoInfo::from_caps(&caps).map_err(|_| {
                        internal(&self.input, "frame caps are not raw video".into())
                    })?;
                    info = Some((caps.clone(), vi));
                }
                let vi = &info.as_ref().expect("set above").1;
                let (fw, fh) = (vi.width() as f32, vi.height() as f32);
                let regions: Vec<crate::geom::BoxF> = boxes
                    .iter()
                    .map(|b| {
                        crate::redact::video::redaction_region(&b.bbox, self.margin, self.margin_px)
                            .clip(fw, fh)
                    })
                    .collect();
                redact_buffer(
                    &self.input,
                    frame.buffer,
                    vi,
                    &regions,
                    self.style,
                    &self.params,
                )?
            } else {
                frame.buffer
            };
            redact_t += t.elapsed();
            if let Some(v) = self.video_in.as_mut() {
                let t = Instant::now();
                if let Err(e) = v.push(&caps, buffer) {
                    if self.error.is_set() {
                        return Ok(());
                    }
                    return Err(e.into());
                }
                push_t += t.elapsed();
            }
            frames += 1;
            self.ticks.fetch_add(1, Ordering::Relaxed);
            self.ctl.frames_done.fetch_add(1, Ordering::Relaxed);
        }
        if self.error.is_set() {
            return Ok(());
        }
        if let Some(v) = &self.video_in {
            v.end();
        }
        if let Ok(mut r) = self.results.lock() {
            r.frames = frames;
            r.video_end = video_end;
            r.times.redact = redact_t.as_secs_f64() * 1e3;
            r.times.encode_push = push_t.as_secs_f64() * 1e3;
        }
        Ok(())
    }
}

/// Redacts `regions` in an I420 buffer in place (copying it first only if it is shared).
fn redact_buffer(
    input: &Path,
    mut buffer: gst::Buffer,
    info: &gst_video::VideoInfo,
    regions: &[crate::geom::BoxF],
    style: crate::redact::video::Style,
    params: &crate::redact::video::StyleParams,
) -> Result<gst::Buffer, PipelineError> {
    use gst_video::prelude::*;
    buffer.make_mut();
    let mut vf = gst_video::VideoFrame::from_buffer_writable(buffer, info)
        .map_err(|_| internal(input, "cannot map a frame for writing".into()))?;
    let strides: Vec<usize> = vf
        .plane_stride()
        .iter()
        .map(|&s| s.max(0) as usize)
        .collect();
    let n = vf.n_planes() as usize;
    if n != 3 {
        return Err(internal(
            input,
            format!("expected 3 planes (I420), got {n}"),
        ));
    }
    let dims: Vec<(usize, usize)> = (0..3u8)
        .map(|c| (info.comp_width(c) as usize, info.comp_height(c) as usize))
        .collect();
    let [y, u, v, _] = vf.planes_data_mut();
    let mut planes = [
        PlaneMut {
            data: y,
            stride: strides[0],
            width: dims[0].0,
            height: dims[0].1,
            sub: 1,
            fill_value: 16,
        },
        PlaneMut {
            data: u,
            stride: strides[1],
            width: dims[1].0,
            height: dims[1].1,
            sub: 2,
            fill_value: 128,
        },
        PlaneMut {
            data: v,
            stride: strides[2],
            width: dims[2].0,
            height: dims[2].1,
            sub: 2,
            fill_value: 128,
        },
    ];
    redact_planes(&mut planes, regions, style, params);
    Ok(vf.into_buffer())
}

fn audio_passthrough(
    rx: Receiver<gst::Sample>,
    input: Option<crate::media::encode::AudioInput>,
    ticks: Arc<AtomicU64>,
    error: FirstError,
    results: Arc<Mutex<StageResults>>,
) -> Result<(), PipelineError> {
    let _span = tracing::debug_span!("audio").entered();
    let mut end = None;
    let Some(mut input) = input else {
        // Decode-only: drain.
        for s in rx.iter() {
            end = end.max(s.buffer().and_then(buffer_end));
            ticks.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut r) = results.lock() {
            r.audio_end = end;
        }
        return Ok(());
    };
    for s in rx.iter() {
        if error.is_set() {
            return Ok(());
        }
        let (Some(caps), Some(buf)) = (s.caps_owned(), s.buffer_owned()) else {
            continue;
        };
        end = end.max(buffer_end(buf.as_ref()));
        if let Err(e) = input.push(&caps, buf) {
            if error.is_set() {
                return Ok(());
            }
            return Err(e.into());
        }
        ticks.fetch_add(1, Ordering::Relaxed);
    }
    if !error.is_set() {
        input.end();
    }
    if let Ok(mut r) = results.lock() {
        r.audio_end = end;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sidecar
// ---------------------------------------------------------------------------------------------

struct SidecarParts<'a> {
    input: &'a Path,
    input_sha: String,
    input_bytes: u64,
    info: &'a MediaInfo,
    output: OutputInfo,
    cfg: &'a Config,
    det_size: (u32, u32),
    /// Execution provider and verified model sha256 of the detector that ran.
    detector_meta: Option<(String, String)>,
    frames: StageResults,
    wall: f64,
}

fn build_sidecar(p: SidecarParts<'_>) -> Sidecar {
    let cfg = p.cfg;
    let (provider, model_sha256) = p.detector_meta.unwrap_or_default();
    let (fw, fh, fps) = p
        .info
        .video
        .as_ref()
        .map(|v| (v.width, v.height, v.fps()))
        .unwrap_or((0, 0, 0.0));
    let tracker = cfg.tracker_config(fw, fh, fps);
    let frames = p.frames.frames;
    let per_frame = |ms: f64| if frames > 0 { ms / frames as f64 } else { 0.0 };
    let log = p.frames.log;
    let frames_with_faces = log.frames_with_faces();
    let face_boxes = log.face_boxes();
    let tracks = log.into_records();
    Sidecar {
        schema: SIDECAR_SCHEMA.into(),
        schema_version: SIDECAR_VERSION,
        obscura_version: env!("CARGO_PKG_VERSION").into(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        input: InputInfo {
            path: p.input.display().to_string(),
            sha256: p.input_sha,
            bytes: p.input_bytes,
            duration_s: p.info.duration_s(),
            video: p.info.video.as_ref().map(|v| VideoStreamInfo {
                width: v.width,
                height: v.height,
                fps_n: v.fps_n,
                fps_d: v.fps_d,
                fps: v.fps(),
                codec: v.codec.clone(),
            }),
            audio: p.info.audio.as_ref().map(|a| AudioStreamInfo {
                rate: a.rate,
                channels: a.channels,
                codec: a.codec.clone(),
            }),
        },
        output: p.output,
        detector: DetectorInfo {
            name: cfg.detect.model.name().into(),
            model: cfg.detect.model.file_name().into(),
            model_sha256,
            threshold: cfg.detect.threshold,
            input_size: [p.det_size.0, p.det_size.1],
            every: cfg.detect.every_for(fps),
            provider,
        },
        redaction: RedactionInfo {
            style: cfg.redact.style.name().into(),
            margin: cfg.redact.margin,
            tracker: TrackerInfo {
                lookback_frames: tracker.lookback,
                lookahead_frames: tracker.lookahead,
                max_gap_frames: tracker.max_gap,
            },
        },
        totals: Totals {
            frames,
            frames_with_faces,
            tracks: tracks.len() as u64,
            face_boxes,
            speech_s: 0.0,
        },
        faces: FacesInfo { tracks },
        voice: None,
        timing: Timing {
            wall_s: (p.wall * 1000.0).round() / 1000.0,
            fps: if p.wall > 0.0 {
                ((frames as f64 / p.wall) * 10.0).round() / 10.0
            } else {
                0.0
            },
            stage_ms_per_frame: StageTimes {
                detect: per_frame(p.frames.times.detect),
                track: per_frame(p.frames.times.track),
                redact: per_frame(p.frames.times.redact),
                encode_push: per_frame(p.frames.times.encode_push),
            },
        },
    }
}
