//! The redact pipeline: wires the stages on their own threads with bounded channels.
//!
//! ```text
//! GStreamer decode ──frames─────▶ detect ──▶ track ──▶ redact ──▶ GStreamer encode ─▶ temp file
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

use crossbeam_channel::bounded;
use gstreamer as gst;

pub(crate) mod fault;
mod video;
mod voice;

use video::{DetectStage, FrameSlot, RedactStage, pair_stage, track_stage};

use crate::config::{Config, VadFailure};
use crate::detect::tracker::TrackLog;
use crate::detect::vad::{SegmenterConfig, Vad};
use crate::detect::zoom::Tile;
use crate::detect::{DetectError, FaceDetector};
use crate::fsutil::{TempFile, sha256_file};
use crate::media::decode::{DecodeConfig, Decoder};
use crate::media::encode::OutputFormat;
use crate::media::encode::{AudioEncodeSpec, EncodeConfig, Encoder};
use crate::media::{MediaError, MediaInfo};
use crate::redact::audio::VoiceMode;
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
    /// The GStreamer video decoder that ran (`avdec_h264`, `nvh264dec`, …); none for audio.
    pub video_decoder: Option<String>,
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
        check_name_length(&job.output)?;
        check_name_length(&job.sidecar_path())?;
    }
    // Hash the input while it is being processed.
    let hash_thread = {
        let p = input.clone();
        std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || sha256_file(&p))
            .map_err(|e| internal(&input, format!("spawning hash thread: {e}")))?
    };

    // The first file of a process builds its model sessions while GStreamer probes it.
    crate::detect::runtime::set_library_path(cfg.runtime.onnxruntime_lib.clone());
    let warm = (mode == Mode::Redact).then(|| warm_sessions(cfg)).flatten();
    let info = crate::media::probe(&input, Duration::from_secs(cfg.limits.probe_secs));
    if let Some(w) = warm {
        let _ = w.join();
    }
    let info = info?;
    let video = info.video.clone();
    if let Some(v) = &video
        && u64::from(v.width) * u64::from(v.height) > cfg.limits.max_frame_pixels
    {
        return Err(PipelineError::Media(MediaError::Unsupported {
            path: input.clone(),
            detail: format!("frame size {}x{} exceeds the limit", v.width, v.height),
        }));
    }
    let has_audio = info.audio.is_some();
    let format = if mode == Mode::DecodeOnly {
        OutputFormat::MP4
    } else {
        OutputFormat::for_output(
            &job.output,
            video.is_some(),
            info.audio.as_ref().map(|a| a.codec.as_str()),
        )
        .map_err(|message| PipelineError::Invalid {
            path: job.output.clone(),
            message,
        })?
    };
    ctl.frames_total
        .store(info.expected_frames().unwrap_or(0), Ordering::Relaxed);

    // Models are loaded (and verified) before any pipeline starts.
    let opts = cfg.runtime.session_options();
    let detect_err = |source| PipelineError::Detect {
        path: input.clone(),
        source,
    };
    let detector = match (&video, mode) {
        (Some(_), Mode::Redact) => Some(
            crate::detect::load_face_detector(
                cfg.detect.model,
                cfg.runtime.models_dir.as_deref(),
                cfg.detect.threshold,
                &opts,
            )
            .map_err(detect_err)?,
        ),
        _ => None,
    };
    let voice_mode = if mode == Mode::Redact && has_audio {
        cfg.voice.mode
    } else {
        VoiceMode::Keep
    };
    let vad = if voice_mode.needs_vad() {
        // Verified by `build_session`, on the very bytes it loads.
        let loaded = Vad::load(cfg.runtime.models_dir.as_deref(), &opts);
        match loaded {
            Ok(v) => Some(v),
            Err(e) if cfg.voice.on_vad_failure == VadFailure::Mute => {
                tracing::error!(error = %e, "voice activity detection unavailable: muting the whole audio track");
                None
            }
            Err(e) => return Err(detect_err(e)),
        }
    } else {
        None
    };
    let vad_meta = vad.as_ref().map(|v| v.model().sha256.clone());
    let (det_w, det_h) = video
        .as_ref()
        .map(|v| cfg.detect.input_size_for(v.width, v.height))
        .unwrap_or((0, 0));
    let detector_meta = detector
        .as_ref()
        .map(|d| (d.provider().name().to_string(), d.model().sha256.clone()));

    if mode != Mode::DecodeOnly {
        // What a killed run left beside this output (its temporary file) goes now.
        crate::fsutil::sweep_stale(
            job.output
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
            None,
        );
    }
    let temp = TempFile::beside(&job.output).map_err(|source| PipelineError::Io {
        path: job.output.clone(),
        what: "preparing the output",
        source,
    })?;
    // Frames the decoder's channels and the tracker's output channel hold: deep enough at
    // 720p that the decoder runs ahead and the encoder keeps busy through a zoom sweep. The
    // other hand-offs stay short (every frame held is memory touched once more per file).
    let queue_frames = video
        .as_ref()
        .map_or(4, |v| cfg.limits.queue_frames_for(v.width, v.height));
    let encoder = if mode == Mode::DecodeOnly {
        None
    } else {
        let channels = info.audio.as_ref().map(|a| a.channels.max(1)).unwrap_or(1) as i32;
        let bitrate = if cfg.encode.audio_bitrate > 0 {
            cfg.encode.audio_bitrate
        } else if format.audio == crate::media::encode::AudioCodec::Mp3 {
            // LAME needs more than AAC/Opus for the same quality.
            (128_000 * channels).min(320_000)
        } else {
            (64_000 * channels).min(256_000)
        };
        Some(Encoder::start(&EncodeConfig {
            path: temp.path().to_path_buf(),
            format,
            video: video.as_ref().map(|_| {
                cfg.encode
                    .video_spec(info.video_kbps(std::fs::metadata(&input).ok().map(|m| m.len())))
            }),
            audio: has_audio.then_some(AudioEncodeSpec { bitrate }),
            max_queue_bytes: video
                .as_ref()
                .map(|v| (u64::from(v.width) * u64::from(v.height) * 3 / 2) * SHORT_QUEUE as u64)
                .unwrap_or(1 << 20),
        })?)
    };
    crate::media::choose_video_decoders(cfg.runtime.device != crate::detect::Device::Cpu)?;
    // A finished file's decoded-frame memory waits for the next one, up to what one file's
    // tracker may hold.
    crate::media::frame_memory::set_capacity(
        usize::try_from(cfg.limits.max_held_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
    );
    let (fw, fh, fps) = video
        .as_ref()
        .map(|v| (v.width, v.height, v.fps()))
        .unwrap_or((0, 0, 0.0));
    let twice = mode == Mode::Redact && video.is_some() && cfg.decodes_twice(fw, fh, fps);
    // The first decode (video only) feeds the detector when the video is decoded twice.
    // Frames in flight are the memory a second decode is for: every hand-off stays short.
    let queue_frames = if twice { SHORT_QUEUE } else { queue_frames };
    let first = if twice {
        Some(Decoder::start(&DecodeConfig {
            path: input.clone(),
            video: true,
            audio: false,
            vad: false,
            video_queue: queue_frames,
            audio_queue: 1,
        })?)
    } else {
        None
    };
    let (decoder, streams) = Decoder::start(&DecodeConfig {
        path: input.clone(),
        video: video.is_some(),
        audio: has_audio && mode != Mode::DecodeOnly,
        vad: vad.is_some(),
        // Behind the tracker, the second decode needs no more than the hand-off.
        video_queue: if twice { SHORT_QUEUE } else { queue_frames },
        audio_queue: 64,
    })?;
    let (first_decoder, first_decode) = first.unzip();
    let decoders: Vec<&Decoder> = std::iter::once(&decoder)
        .chain(first_decoder.as_ref())
        .collect();
    let stages = Stages::spawn(StageSetup {
        input: input.clone(),
        cfg: cfg.clone(),
        mode,
        detector,
        vad,
        voice_mode,
        det_size: (det_w, det_h),
        frame_size: (fw, fh),
        queue_frames,
        zoom_tiles: match cfg.detect.zoom_for(fw, fh) {
            Some(z) if mode == Mode::Redact && video.is_some() => {
                crate::detect::zoom::layout(fw, fh, z)
            }
            _ => Vec::new(),
        },
        fps,
        streams,
        first_decode,
        encoder: encoder.as_ref(),
        ctl: ctl.clone(),
    })?;
    let result = supervise(&input, &stages, &decoders, encoder.as_ref(), ctl, cfg);
    // A failed run waits a bounded time for its stages: one stuck for good (a hung inference)
    // would otherwise hold the run forever after the watchdog fired.
    let failing = result.is_err() || stages.error.is_set();
    let stage_results = stages.join(failing.then_some(ABANDON_STUCK_STAGES_AFTER));
    let frames = match (result, stage_results) {
        (Err(e), _) | (Ok(()), Err(e)) => {
            decoders.iter().for_each(|d| d.abort());
            drop(encoder);
            return Err(e);
        }
        (Ok(()), Ok(r)) => r,
    };
    drop(decoders);
    let video_decoder = decoder.video_decoder();
    if let Some(d) = first_decoder {
        d.finish(Duration::from_secs(cfg.limits.stall_secs))?;
    }
    decoder.finish(Duration::from_secs(cfg.limits.stall_secs))?;
    check_complete(&input, &info, &frames)?;
    if video.is_some() && frames.frames == 0 {
        return Err(PipelineError::Media(MediaError::Corrupt {
            path: input.clone(),
            detail: "no decodable video frames".into(),
        }));
    }
    if video.is_none() && has_audio && mode != Mode::DecodeOnly && frames.audio_samples == 0 {
        return Err(PipelineError::Media(MediaError::Corrupt {
            path: input.clone(),
            detail: "no decodable audio".into(),
        }));
    }
    if let Some(enc) = encoder {
        enc.finish(Duration::from_secs(cfg.limits.stall_secs))
            .map_err(|e| name_input(&input, e))?;
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
                container: format.container.name().into(),
                video_codec: video.as_ref().map(|_| "h264".into()),
                audio_codec: has_audio.then(|| format.audio.name().into()),
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
        voice_mode,
        vad_meta,
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
        video_decoder,
    })
}

/// The encoder's errors name its temporary file, which no longer exists when the error is
/// shown: name the input, as every other error does.
fn name_input(input: &Path, e: MediaError) -> PipelineError {
    PipelineError::Media(match e {
        MediaError::Encode { detail, .. } => MediaError::Encode {
            path: input.to_path_buf(),
            detail,
        },
        MediaError::Stalled { what, secs, .. } => MediaError::Stalled {
            path: input.to_path_buf(),
            what,
            secs,
        },
        MediaError::Unsupported { detail, .. } => MediaError::Unsupported {
            path: input.to_path_buf(),
            detail,
        },
        other => other,
    })
}

/// Stage threads catch their panics and report them as the run's error (naming the input);
/// the default hook would also print the panic to stderr, breaking the one-line contract.
/// Installed once; panics on any other thread still go to the previous hook.
fn quiet_stage_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let stage = std::thread::current()
                .name()
                .is_some_and(|n| STAGE_NAMES.contains(&n));
            if stage {
                tracing::debug!(%info, "stage panicked (reported as the run's error)");
            } else {
                previous(info);
            }
        }));
    });
}

const STAGE_NAMES: [&str; 4] = ["detect", "track", "redact", "voice"];

/// How long a failing run waits for its stages to stop before abandoning them.
const ABANDON_STUCK_STAGES_AFTER: Duration = Duration::from_secs(5);

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

/// A name past the file-name limit (the sidecar's `OUTPUT.json` can pass it where the output
/// itself does not) fails now, before any work, not after the whole clip was processed.
fn check_name_length(path: &Path) -> Result<(), PipelineError> {
    match path.file_name() {
        Some(n) if n.len() > crate::fsutil::NAME_MAX => Err(PipelineError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "the file name is {} bytes; file systems take at most {}",
                n.len(),
                crate::fsutil::NAME_MAX
            ),
        }),
        _ => Ok(()),
    }
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
    /// Audio sample frames handed to the encoder.
    audio_samples: u64,
    voice: Option<voice::VoiceOutcome>,
    /// What the zoom pass did, when it ran.
    zoom: Option<ZoomSweeps>,
    /// What the main pass did, when a detector ran.
    main: Option<MainPasses>,
}

/// End time of a buffer, when it has a timestamp.
fn buffer_end(b: &gst::BufferRef) -> Option<gst::ClockTime> {
    end_time(b.pts(), b.duration())
}

/// End time of something shown from `pts` for `duration` (none: an instant).
fn end_time(
    pts: Option<gst::ClockTime>,
    duration: Option<gst::ClockTime>,
) -> Option<gst::ClockTime> {
    pts.map(|p| p + duration.unwrap_or(gst::ClockTime::ZERO))
}

/// Frames held by the hand-offs that need no depth: detector to tracker (the tracker holds
/// frames itself) and redactor to encoder (behind the tracker's deep output channel).
const SHORT_QUEUE: usize = 4;

/// When no session for the face detector is pooled yet (the first file of a process), builds
/// the detector's and the voice detector's sessions on a thread of their own, so that the
/// 0.1–0.2 s this takes overlaps GStreamer's probe; dropped, they wait in the pool for the
/// loads that follow (which verify the model files again and report any failure — the
/// warm-up's own errors are ignored). `None` when there is nothing to warm.
fn warm_sessions(cfg: &Config) -> Option<JoinHandle<()>> {
    let dir = cfg.runtime.models_dir.clone();
    let opts = cfg.runtime.session_options();
    let model = crate::detect::ModelFile::locate(cfg.detect.model, dir.as_deref()).ok()?;
    if crate::detect::runtime::idle_sessions(&model, &opts) > 0 {
        return None;
    }
    let (kind, threshold, vad) = (
        cfg.detect.model,
        cfg.detect.threshold,
        cfg.voice.mode.needs_vad(),
    );
    std::thread::Builder::new()
        .name("warm-up".into())
        .spawn(move || {
            let _ = crate::detect::load_face_detector(kind, dir.as_deref(), threshold, &opts);
            if vad {
                let _ = Vad::load(dir.as_deref(), &opts);
            }
        })
        .ok()
}

struct StageSetup<'a> {
    input: PathBuf,
    cfg: Config,
    mode: Mode,
    detector: Option<Box<dyn FaceDetector>>,
    vad: Option<Vad>,
    voice_mode: VoiceMode,
    det_size: (u32, u32),
    frame_size: (u32, u32),
    /// Frames in the tracker's output channel (see `limits.queue_frames`).
    queue_frames: usize,
    zoom_tiles: Vec<Tile>,
    fps: f64,
    streams: crate::media::decode::Streams,
    /// The first decode's streams (video only) when the video is decoded twice.
    first_decode: Option<crate::media::decode::Streams>,
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
    input: PathBuf,
    handles: Vec<(&'static str, JoinHandle<()>)>,
    error: FirstError,
    /// Advances whenever any stage makes progress (frames or audio).
    ticks: Arc<AtomicU64>,
    results: Arc<Mutex<StageResults>>,
}

type DetectedFrame = (Frame, Option<Vec<Detection>>);

impl Stages {
    fn spawn(s: StageSetup<'_>) -> Result<Stages, PipelineError> {
        quiet_stage_panics();
        let error = FirstError::default();
        let ticks = Arc::new(AtomicU64::new(0));
        let results = Arc::new(Mutex::new(StageResults::default()));
        let (to_track, track_rx) = bounded::<DetectedFrame>(SHORT_QUEUE);
        let (to_redact, redact_rx) = bounded::<TrackedFrame>(s.queue_frames);
        let mut handles = Vec::new();
        let spawn = |name: &'static str,
                     f: Box<dyn FnOnce() -> Result<(), PipelineError> + Send>| {
            let error = error.clone();
            let input = s.input.clone();
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
                                path: input.clone(),
                                message: format!("stage {name} panicked: {msg}"),
                            })
                        });
                    if let Err(e) = r {
                        // Errors from the encoder's inputs name its temporary file.
                        error.set(match e {
                            PipelineError::Media(m) => name_input(&input, m),
                            other => other,
                        });
                    }
                })
                .map(|h| (name, h))
        };

        // With the video decoded twice the first decode feeds the detector and the second
        // the redaction; otherwise one decode feeds both, its frames held by the tracker.
        let (detect_frames, output_frames) = match s.first_decode {
            Some(first) => (first.full, s.streams.full),
            None => (s.streams.full, None),
        };
        if let Some(full) = detect_frames {
            let batch = s
                .detector
                .as_ref()
                .map_or(1, |d| s.cfg.detect.batch_for(d.provider()));
            // The second detector of grey sweeps, built when a clip turns out grey.
            let second_loader = s
                .cfg
                .detect
                .grey_second_model
                .kind()
                .filter(|_| s.detector.is_some() && s.cfg.detect.grey_zoom > 0.0)
                .map(|kind| {
                    let dir = s.cfg.runtime.models_dir.clone();
                    let (threshold, opts) =
                        (s.cfg.detect.threshold, s.cfg.runtime.session_options());
                    Box::new(move || {
                        crate::detect::load_face_detector(kind, dir.as_deref(), threshold, &opts)
                    }) as video::SecondLoader
                });
            let ctx = DetectStage {
                input: s.input.clone(),
                full,
                detector: s.detector,
                second_loader,
                second: None,
                det_size: s.det_size,
                frame_size: s.frame_size,
                every: s.cfg.detect.every_for(s.fps),
                batch,
                zoom_tiles: s.zoom_tiles,
                zoom_every: s.cfg.zoom_every(s.frame_size.0, s.frame_size.1, s.fps),
                zoom_max_face: s.cfg.detect.zoom_max_face(),
                tensor: Vec::new(),
                shrink: Default::default(),
                info: Default::default(),
                zoom_factor: s
                    .cfg
                    .detect
                    .zoom_for(s.frame_size.0, s.frame_size.1)
                    .unwrap_or(1.0),
                grey_zoom: s.cfg.detect.grey_zoom,
                zoom_proposal: s
                    .cfg
                    .detect
                    .zoom_proposal_for(s.frame_size.0, s.frame_size.1)
                    .map(|scale| video::Proposal {
                        scale,
                        threshold: s.cfg.detect.zoom_proposal_threshold,
                    }),
                zoom_full_every: s.cfg.detect.zoom_full_every.max(1),
                zoom_change_pad: s.cfg.detect.zoom_change_pad(),
                zoom_memory: None,
                zoom_sweeps: ZoomSweeps::default(),
                main_full_every: s.cfg.detect.main_full_every.max(1),
                main_change_pad: s.cfg.detect.main_change_pad(s.frame_size.0, s.det_size.0),
                main_memory: None,
                main_passes: MainPasses::default(),
                crop: Vec::new(),
                follow: Vec::new(),
                sweep_candidates: Vec::new(),
                follow_on: s.cfg.detect.follow,
                stretch_contrast: s.cfg.detect.stretch_contrast,
                out: to_track,
                ticks: ticks.clone(),
                results: results.clone(),
            };
            handles.push(
                spawn("detect", Box::new(move || ctx.run()))
                    .map_err(|e| internal(&s.input, format!("spawning detect: {e}")))?,
            );
            let tracker_cfg = s.cfg.tracker_config(s.frame_size.0, s.frame_size.1, s.fps);
            let (results2, error2) = (results.clone(), error.clone());
            let track: Box<dyn FnOnce() -> Result<(), PipelineError> + Send> = match output_frames {
                // Decoded twice: the tracker holds slots, and the second decode's frames meet
                // their final boxes in the pair stage.
                Some(second) => {
                    let (to_pair, pair_rx) = bounded::<(FrameSlot, Vec<TrackedBox>)>(SHORT_QUEUE);
                    let (input, error3) = (s.input.clone(), error.clone());
                    handles.push(
                        spawn(
                            "pair",
                            Box::new(move || pair_stage(input, second, pair_rx, to_redact, error3)),
                        )
                        .map_err(|e| internal(&s.input, format!("spawning pair: {e}")))?,
                    );
                    Box::new(move || {
                        track_stage(
                            track_rx,
                            to_pair,
                            |f: Frame| FrameSlot {
                                index: f.index,
                                pts: f.pts,
                            },
                            |slot, boxes| (slot, boxes),
                            tracker_cfg,
                            results2,
                            error2,
                        )
                    })
                }
                None => Box::new(move || {
                    track_stage(
                        track_rx,
                        to_redact,
                        |f| f,
                        |frame, boxes| TrackedFrame { frame, boxes },
                        tracker_cfg,
                        results2,
                        error2,
                    )
                }),
            };
            handles.push(
                spawn("track", track)
                    .map_err(|e| internal(&s.input, format!("spawning track: {e}")))?,
            );
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
        if let Some(main) = s.streams.audio {
            let v = &s.cfg.voice;
            let ctx = voice::VoiceStage {
                input: s.input.clone(),
                mode: s.voice_mode,
                main,
                vad_rx: s.streams.vad,
                vad: s.vad,
                segmenter: SegmenterConfig {
                    threshold: v.threshold,
                    end_threshold: v.end_threshold(),
                    min_silence_s: v.min_silence_s,
                    min_speech_s: v.min_speech_s,
                    onset_lookback_s: v.onset_lookback_s,
                },
                pad_s: v.pad_s,
                disguise_alpha: v.disguise_alpha,
                mute_on_vad_failure: v.on_vad_failure == VadFailure::Mute,
                out: s.encoder.and_then(|e| e.audio_handle()),
                error: error.clone(),
                ticks: ticks.clone(),
                results: results.clone(),
            };
            handles.push(
                spawn("voice", Box::new(move || ctx.run()))
                    .map_err(|e| internal(&s.input, format!("spawning voice: {e}")))?,
            );
        }
        Ok(Stages {
            input: s.input.clone(),
            handles,
            error,
            ticks,
            results,
        })
    }

    fn all_finished(&self) -> bool {
        self.handles.iter().all(|(_, h)| h.is_finished())
    }

    /// Joins every stage. With `give_up_after` (the run is failing), stages still running
    /// after that long are abandoned (detached; they own everything they use) and the run's
    /// error is returned.
    fn join(self, give_up_after: Option<Duration>) -> Result<StageResults, PipelineError> {
        if let Some(limit) = give_up_after {
            let t = Instant::now();
            while !self.all_finished() && t.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !self.all_finished() {
                let stuck: Vec<&str> = self
                    .handles
                    .iter()
                    .filter(|(_, h)| !h.is_finished())
                    .map(|(n, _)| *n)
                    .collect();
                tracing::info!(
                    ?stuck,
                    "stages did not stop after the run failed; abandoned"
                );
                return Err(self
                    .error
                    .take()
                    .unwrap_or_else(|| PipelineError::Internal {
                        path: self.input.clone(),
                        message: format!("stages {stuck:?} did not stop"),
                    }));
            }
        }
        for (name, h) in self.handles {
            if h.join().is_err() {
                self.error.set(PipelineError::Internal {
                    path: self.input.clone(),
                    message: format!("stage {name} panicked"),
                });
            }
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut r = self.results.lock().map_err(|_| PipelineError::Internal {
            path: self.input.clone(),
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
    decoders: &[&Decoder],
    encoder: Option<&Encoder>,
    ctl: &Control,
    cfg: &Config,
) -> Result<(), PipelineError> {
    let stall = Duration::from_secs(cfg.limits.stall_secs);
    let mut last_ticks = stages.ticks.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    let abort_all = || {
        decoders.iter().for_each(|d| d.abort());
        if let Some(e) = encoder {
            e.abort();
        }
    };
    loop {
        if stages.all_finished() {
            return Ok(());
        }
        let failed = decoders.iter().find(|d| d.failed());
        if stages.error.is_set() || failed.is_some() {
            abort_all();
            if let Some(d) = failed
                && !stages.error.is_set()
            {
                // The decoder's own error is the root cause; stages only saw the channels close.
                return Err(PipelineError::Media(decoder_error(d)));
            }
            return Ok(()); // the stage error is reported by join()
        }
        if let Some(e) = encoder.and_then(Encoder::error) {
            stages.error.set(name_input(input, e));
            abort_all();
            return Ok(());
        }
        // The cause is recorded before the abort: a stage that then sees its encoder
        // flushing must not become the reported reason (the first error set wins).
        if ctl.cancel.load(Ordering::Relaxed) {
            stages.error.set(PipelineError::Cancelled {
                path: input.to_path_buf(),
            });
            abort_all();
            return Ok(());
        }
        let t = stages.ticks.load(Ordering::Relaxed);
        if t != last_ticks {
            last_ticks = t;
            last_change = Instant::now();
        } else if last_change.elapsed() > stall {
            stages.error.set(PipelineError::Media(MediaError::Stalled {
                path: input.to_path_buf(),
                what: "processing".into(),
                secs: stall.as_secs(),
            }));
            abort_all();
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
    voice_mode: VoiceMode,
    /// Verified sha256 of the VAD model, when it ran.
    vad_meta: Option<String>,
    frames: StageResults,
    wall: f64,
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

fn build_sidecar(p: SidecarParts<'_>) -> Sidecar {
    let cfg = p.cfg;
    let (fw, fh, fps) = p
        .info
        .video
        .as_ref()
        .map(|v| (v.width, v.height, v.fps()))
        .unwrap_or((0, 0, 0.0));
    let frames = p.frames.frames;
    let per_frame = |ms: f64| if frames > 0 { ms / frames as f64 } else { 0.0 };
    let detector = p
        .detector_meta
        .map(|(provider, model_sha256)| DetectorInfo {
            name: cfg.detect.model.name().into(),
            model: cfg.detect.model.file_name().into(),
            model_sha256,
            threshold: cfg.detect.threshold,
            input_size: [p.det_size.0, p.det_size.1],
            every: cfg.detect.every_for(fps),
            provider,
            main: p.frames.main.map(|m| MainPasses {
                input_mpx: round(m.input_mpx, 3),
                ..m
            }),
            zoom: p.frames.zoom.map(|z| ZoomSweeps {
                input_mpx: round(z.input_mpx, 3),
                ..z
            }),
        });
    let redaction = detector.as_ref().map(|_| {
        let tracker = cfg.tracker_config(fw, fh, fps);
        RedactionInfo {
            style: cfg.redact.style.name().into(),
            margin: cfg.redact.margin,
            tracker: TrackerInfo {
                lookback_frames: tracker.lookback,
                lookahead_frames: tracker.lookahead,
                max_gap_frames: tracker.max_gap,
            },
        }
    });
    let voice_outcome = p.frames.voice;
    let voice = p.info.audio.as_ref().and(voice_outcome.as_ref()).map(|v| {
        let segments: Vec<VoiceSegment> = v
            .segments
            .iter()
            .map(|g| VoiceSegment {
                start_s: round(g.start_s, 3),
                end_s: round(g.end_s, 3),
                score: (g.score * 1000.0).round() / 1000.0,
            })
            .collect();
        let vad_ran = p.vad_meta.is_some();
        VoiceInfo {
            mode: if v.vad_failed || (p.voice_mode.needs_vad() && !vad_ran) {
                VoiceMode::Mute.name().into()
            } else {
                p.voice_mode.name().into()
            },
            model: if vad_ran {
                crate::detect::ModelKind::SileroVad.file_name().into()
            } else {
                String::new()
            },
            model_sha256: p.vad_meta.clone().unwrap_or_default(),
            threshold: cfg.voice.threshold,
            pad_s: cfg.voice.pad_s,
            speech_s: round(segments.iter().map(|g| g.end_s - g.start_s).sum(), 3),
            segments,
            vad_failed: v.vad_failed || (p.voice_mode.needs_vad() && !vad_ran),
        }
    });
    let speech_s = voice.as_ref().map(|v| v.speech_s).unwrap_or(0.0);
    let vad_ms_per_audio_s = voice_outcome
        .as_ref()
        .filter(|v| v.audio_s > 0.0 && p.vad_meta.is_some())
        .map(|v| round(v.vad_ms / v.audio_s, 3));
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
                orientation: (!v.orientation.is_identity()).then(|| v.orientation.tag().into()),
            }),
            audio: p.info.audio.as_ref().map(|a| AudioStreamInfo {
                rate: a.rate,
                channels: a.channels,
                codec: a.codec.clone(),
            }),
        },
        output: p.output,
        detector,
        redaction,
        totals: Totals {
            frames,
            frames_with_faces,
            tracks: tracks.len() as u64,
            face_boxes,
            speech_s,
        },
        faces: FacesInfo { tracks },
        voice,
        timing: Timing {
            wall_s: round(p.wall, 3),
            fps: if p.wall > 0.0 {
                round(frames as f64 / p.wall, 1)
            } else {
                0.0
            },
            stage_ms_per_frame: StageTimes {
                detect: per_frame(p.frames.times.detect),
                track: per_frame(p.frames.times.track),
                redact: per_frame(p.frames.times.redact),
                encode_push: per_frame(p.frames.times.encode_push),
            },
            vad_ms_per_audio_s,
        },
        settings_sha256: Some(cfg.fingerprint()),
    }
}
