//! Encoding the redacted streams with GStreamer:
//!
//! ```text
//! appsrc "video" (I420) ! queue ! x264enc ! h264parse ─┐
//!                                                      ├ mp4mux ! filesink (temporary name)
//! appsrc "audio" (F32) ! queue ! audiorate ! audioconvert ! audioresample ! avenc_aac ! aacparse ─┘
//! ```
//!
//! Audio-only outputs use the same audio chain with another encoder and container:
//! Opus in Ogg, FLAC, MP3 (LAME, CBR) or 16-bit PCM WAV ([`OutputFormat`]).
//!
//! Buffers keep their original timestamps; `audiorate` turns any timestamp gaps into samples
//! so that the AAC track cannot drift from the video. `appsrc` blocks when its queue is full,
//! which is the backpressure into the redact stage. The file is only complete after
//! [`Encoder::finish`] saw end of stream on the bus (mp4mux writes its index last); the
//! caller then fsyncs and renames it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::{MediaError, make};

/// x264 speed/quality trade-off. What each costs and stores against the input (non-face
/// PSNR, bytes, CPU per frame): README "Storage".
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    Default,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    /// x264 `ultrafast`, CRF 23: the least encoder CPU, ~1.5-2.5x the input's bytes (the
    /// default before issue #30).
    Fastest,
    /// x264 `superfast` with MB-tree (5-frame look-ahead), one B-frame, PSNR tuning, CRF 20
    /// (default: the knee of bytes against encoder CPU).
    #[default]
    Fast,
    /// x264 `veryfast`, CRF 18 (its adaptive quantization and psy kept).
    Balanced,
    /// x264 `medium`, CRF 19.
    High,
}

/// The default level's CRF.
const FAST_CRF: u32 = 20;

impl Quality {
    pub fn preset(&self) -> &'static str {
        match self {
            Quality::Fastest => "ultrafast",
            Quality::Fast => "superfast",
            Quality::Balanced => "veryfast",
            Quality::High => "medium",
        }
    }
    pub fn crf(&self) -> u32 {
        match self {
            Quality::Fastest => 23,
            Quality::Fast => FAST_CRF,
            Quality::Balanced => 18,
            Quality::High => 19,
        }
    }
    /// x264 psychovisual tuning (`None`: the preset's own). `fast` tunes for PSNR (no
    /// adaptive quantization, no psy-RD) as `ultrafast` in effect does.
    pub fn tune(&self) -> Option<&'static str> {
        match self {
            Quality::Fast => Some("psnr"),
            _ => None,
        }
    }
    /// x264 options over the preset's (`None`: the preset alone). `fast`: MB-tree with a
    /// 5-frame look-ahead, which `superfast` leaves off — most of `veryfast`'s saving in bytes
    /// for a fraction of its CPU — and one B-frame instead of three (the same bytes on the
    /// samples; three cost 2.2x `ultrafast`'s encoder CPU on a moving 1080p picture).
    pub fn options(&self) -> Option<&'static str> {
        match self {
            Quality::Fast => Some("mbtree=1:rc-lookahead=5:bframes=1"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VideoEncodeSpec {
    /// x264 speed preset (`ultrafast` ... `veryslow`).
    pub preset: String,
    /// Constant rate factor (x264enc's `quantizer` in its `qual` pass).
    pub crf: u32,
    /// x264's psychovisual tuning (`film`, `grain`, ...; `None`: the preset's own).
    pub tune: Option<String>,
    /// Further x264 options over the preset's (x264enc's `option-string`, `key=value:...`).
    pub options: Option<String>,
    /// Encoder threads (0 = x264's automatic choice).
    pub threads: u32,
    /// Maximum keyframe interval in frames (0 = x264's default).
    pub keyint_max: u32,
    /// Cap on the bit rate in kbit/s (0: none).
    pub max_kbps: u32,
}

/// The largest video bit rate cap x264enc takes (kbit/s); also what "no cap" is set to.
pub const MAX_VIDEO_KBPS: u32 = 2_048_000;

#[derive(Debug, Clone)]
pub struct AudioEncodeSpec {
    /// AAC bit rate in bits per second.
    pub bitrate: i32,
}

/// The encoder elements (after conversion/resampling) for an audio codec.
fn audio_encoder(codec: AudioCodec, bitrate: i32) -> Result<Vec<gst::Element>, MediaError> {
    let caps = |c: gst::Caps| -> Result<gst::Element, MediaError> {
        let f = make("capsfilter")?;
        f.set_property("caps", &c);
        Ok(f)
    };
    Ok(match codec {
        AudioCodec::Aac => {
            let enc = make("avenc_aac")?;
            enc.set_property("bitrate", bitrate);
            drop_priming_frame(&enc)?;
            vec![enc, make("aacparse")?]
        }
        AudioCodec::Opus => {
            let enc = make("opusenc")?;
            enc.set_property("bitrate", bitrate.clamp(6000, 510_000));
            vec![
                caps(
                    gst::Caps::builder("audio/x-raw")
                        .field("rate", 48000i32)
                        .build(),
                )?,
                enc,
            ]
        }
        AudioCodec::Flac => vec![
            caps(
                gst::Caps::builder("audio/x-raw")
                    .field("format", "S16LE")
                    .build(),
            )?,
            make("flacenc")?,
        ],
        AudioCodec::Mp3 => {
            let enc = make("lamemp3enc")?;
            enc.set_property_from_str("target", "bitrate");
            enc.set_property("cbr", true);
            enc.set_property("bitrate", (bitrate / 1000).clamp(32, 320));
            vec![enc]
        }
        AudioCodec::Pcm16 => vec![
            caps(
                gst::Caps::builder("audio/x-raw")
                    .field("format", "S16LE")
                    .build(),
            )?,
            make("wavenc")?,
        ],
    })
}

/// The AAC encoder starts with one frame (1024 samples) of priming, and mp4mux writes no edit
/// list to hide it: played back, the audio would lag the video by 1024 samples (64 ms at
/// 16 kHz). Dropping the first encoded frame and moving the rest 1024 samples earlier puts
/// the sound back on the input's timeline; only the first 64 ms lose the overlap of the
/// dropped frame (a short fade-in).
fn drop_priming_frame(enc: &gst::Element) -> Result<(), MediaError> {
    let pad = enc
        .static_pad("src")
        .ok_or_else(|| MediaError::Gst("AAC encoder without a source pad".into()))?;
    let shift: std::sync::Mutex<Option<gst::ClockTime>> = std::sync::Mutex::new(None);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        let Ok(mut shift) = shift.lock() else {
            return gst::PadProbeReturn::Ok;
        };
        match *shift {
            None => {
                *shift = Some(buffer.duration().unwrap_or(gst::ClockTime::ZERO));
                gst::PadProbeReturn::Drop
            }
            Some(d) => {
                let b = buffer.make_mut();
                if let Some(p) = b.pts() {
                    b.set_pts(p.saturating_sub(d));
                }
                if let Some(t) = b.dts() {
                    b.set_dts(t.saturating_sub(d));
                }
                gst::PadProbeReturn::Ok
            }
        }
    });
    Ok(())
}

/// Audio codecs Obscura writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    Aac,
    Opus,
    Flac,
    Mp3,
    /// 16-bit PCM in WAV.
    Pcm16,
}

impl AudioCodec {
    pub fn name(&self) -> &'static str {
        match self {
            AudioCodec::Aac => "aac",
            AudioCodec::Opus => "opus",
            AudioCodec::Flac => "flac",
            AudioCodec::Mp3 => "mp3",
            AudioCodec::Pcm16 => "pcm_s16le",
        }
    }
}

/// Output containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Mp4,
    Ogg,
    Flac,
    Mp3,
    Wav,
}

impl Container {
    pub fn name(&self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Ogg => "ogg",
            Container::Flac => "flac",
            Container::Mp3 => "mp3",
            Container::Wav => "wav",
        }
    }
    fn muxer(&self) -> Option<&'static str> {
        match self {
            Container::Mp4 => Some("mp4mux"),
            Container::Ogg => Some("oggmux"),
            Container::Flac | Container::Mp3 | Container::Wav => None,
        }
    }
}

/// Container extensions that name a format other than the ones written here; an output
/// named so is refused rather than filled with MP4.
const NOT_WRITTEN: &[(&str, &str)] = &[
    ("mkv", "Matroska"),
    ("mka", "Matroska"),
    ("webm", "WebM"),
    ("avi", "AVI"),
    ("ts", "MPEG-TS"),
    ("mts", "MPEG-TS"),
    ("m2ts", "MPEG-TS"),
    ("mpg", "MPEG-PS"),
    ("mpeg", "MPEG-PS"),
    ("flv", "FLV"),
    ("wmv", "ASF"),
    ("wma", "ASF"),
    ("asf", "ASF"),
    ("mxf", "MXF"),
    ("ogv", "Ogg video"),
    ("3gp", "3GPP"),
    ("aif", "AIFF"),
    ("aiff", "AIFF"),
];

/// What an output file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFormat {
    pub container: Container,
    pub audio: AudioCodec,
}

impl OutputFormat {
    pub const MP4: OutputFormat = OutputFormat {
        container: Container::Mp4,
        audio: AudioCodec::Aac,
    };

    /// The format for writing `output`: by its extension when it names one (`.mp4 .m4v .mov`
    /// → H.264/AAC in MP4; `.m4a .aac` → AAC in MP4; `.ogg .opus .oga` → Opus in Ogg;
    /// `.flac`; `.mp3`; `.wav` → 16-bit PCM), otherwise MP4 for video and the input's codec
    /// family for audio-only inputs. Video always goes into MP4. An extension naming a
    /// container this does not write (`.mkv`, `.avi`, `.ts`, …) is an error: a file named
    /// `.mkv` holding MP4 misleads whatever reads it next.
    pub fn for_output(
        output: &Path,
        has_video: bool,
        input_audio_codec: Option<&str>,
    ) -> Result<OutputFormat, String> {
        let ext = output
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        let by_ext = match ext.as_str() {
            "mp4" | "m4v" | "mov" | "m4a" | "aac" => Some(OutputFormat::MP4),
            "ogg" | "opus" | "oga" => Some(OutputFormat {
                container: Container::Ogg,
                audio: AudioCodec::Opus,
            }),
            "flac" => Some(OutputFormat {
                container: Container::Flac,
                audio: AudioCodec::Flac,
            }),
            "mp3" => Some(OutputFormat {
                container: Container::Mp3,
                audio: AudioCodec::Mp3,
            }),
            "wav" => Some(OutputFormat {
                container: Container::Wav,
                audio: AudioCodec::Pcm16,
            }),
            _ => None,
        };
        if let Some((_, name)) = NOT_WRITTEN.iter().find(|(e, _)| *e == ext) {
            let instead = if has_video {
                ".mp4 (video is written as H.264/AAC in MP4)"
            } else {
                ".wav, .flac, .mp3, .m4a, .ogg or .opus"
            };
            return Err(format!(
                "a .{ext} ({name}) file is not written here: name the output {instead}"
            ));
        }
        if has_video {
            return match by_ext {
                None => Ok(OutputFormat::MP4),
                Some(f) if f.container == Container::Mp4 => Ok(f),
                Some(f) => Err(format!(
                    "the input has video, which a .{ext} ({}) file cannot hold: use .mp4",
                    f.container.name()
                )),
            };
        }
        Ok(by_ext.unwrap_or_else(|| Self::same_family(input_audio_codec.unwrap_or(""))))
    }

    /// The output format in the same codec family as an input audio codec description.
    pub fn same_family(codec: &str) -> OutputFormat {
        let c = codec.to_ascii_lowercase();
        if c.contains("flac") {
            OutputFormat {
                container: Container::Flac,
                audio: AudioCodec::Flac,
            }
        } else if c.contains("layer 3") || c.contains("mp3") {
            OutputFormat {
                container: Container::Mp3,
                audio: AudioCodec::Mp3,
            }
        } else if c.contains("opus") || c.contains("vorbis") {
            OutputFormat {
                container: Container::Ogg,
                audio: AudioCodec::Opus,
            }
        } else if c.contains("pcm") || c.contains("raw") || c.contains("wav") {
            OutputFormat {
                container: Container::Wav,
                audio: AudioCodec::Pcm16,
            }
        } else {
            OutputFormat::MP4
        }
    }

    /// The usual file extension.
    pub fn extension(&self) -> &'static str {
        match (self.container, self.audio) {
            (Container::Mp4, _) => "mp4",
            (Container::Ogg, _) => "ogg",
            (Container::Flac, _) => "flac",
            (Container::Mp3, _) => "mp3",
            (Container::Wav, _) => "wav",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EncodeConfig {
    pub path: PathBuf,
    pub format: OutputFormat,
    pub video: Option<VideoEncodeSpec>,
    pub audio: Option<AudioEncodeSpec>,
    /// Maximum bytes queued in each appsrc before `push` blocks.
    pub max_queue_bytes: u64,
}

/// A running encode pipeline writing to `path`.
pub struct Encoder {
    pipeline: gst::Pipeline,
    path: PathBuf,
    video: Option<gst_app::AppSrc>,
    audio: Option<gst_app::AppSrc>,
    finished: bool,
    /// The end of stream came while [`Encoder::error`] looked for errors (it takes every
    /// message off the bus): an audio-only file can be complete before `finish` is called.
    eos_seen: std::sync::atomic::AtomicBool,
}

fn appsrc(name: &str, max_bytes: u64) -> gst_app::AppSrc {
    gst_app::AppSrc::builder()
        .name(name)
        .format(gst::Format::Time)
        .is_live(false)
        .block(true)
        .max_bytes(max_bytes)
        .build()
}

impl Encoder {
    pub fn start(cfg: &EncodeConfig) -> Result<Encoder, MediaError> {
        super::init()?;
        let gst_err = |e: glib::BoolError| MediaError::Gst(e.to_string());
        let pipeline = gst::Pipeline::with_name("obscura-encode");
        let sink = make("filesink")?;
        sink.set_property("location", cfg.path.to_string_lossy().to_string());
        sink.set_property("sync", false);
        sink.set_property("async", false);
        pipeline.add(&sink).map_err(gst_err)?;
        // The element the encoded streams go into: a muxer, or the file itself for formats
        // whose encoder writes a complete file (FLAC, MP3, WAV).
        let into: gst::Element = match cfg.format.container.muxer() {
            Some(m) => {
                let mux = make(m)?;
                pipeline.add(&mux).map_err(gst_err)?;
                mux.link(&sink).map_err(gst_err)?;
                mux
            }
            None => sink.clone(),
        };

        let mut video = None;
        if let Some(v) = &cfg.video {
            if cfg.format.container != Container::Mp4 {
                return Err(MediaError::Encode {
                    path: cfg.path.clone(),
                    detail: format!("a {} file cannot hold video", cfg.format.container.name()),
                });
            }
            let src = appsrc("video", cfg.max_queue_bytes);
            let q = make("queue")?;
            let enc = make("x264enc")?;
            enc.set_property_from_str("speed-preset", &v.preset);
            enc.set_property_from_str("pass", "qual");
            enc.set_property("quantizer", v.crf);
            if let Some(t) = &v.tune {
                enc.set_property_from_str("psy-tune", t);
            }
            if let Some(o) = v.options.as_deref().filter(|o| !o.is_empty()) {
                enc.set_property("option-string", o);
            }
            // In its constant-quality mode x264enc turns `bitrate` (default 2048 kbit/s) into
            // x264's VBV cap: left alone, every output — 1080p and 4K included — was held to
            // 2 Mbit/s and lost quality wherever the picture was busy.
            let cap = if v.max_kbps == 0 {
                MAX_VIDEO_KBPS
            } else {
                v.max_kbps
            };
            enc.set_property("bitrate", cap);
            enc.set_property("threads", v.threads);
            if v.keyint_max > 0 {
                enc.set_property("key-int-max", v.keyint_max);
            }
            let parse = make("h264parse")?;
            pipeline
                .add_many([src.upcast_ref(), &q, &enc, &parse])
                .map_err(gst_err)?;
            gst::Element::link_many([src.upcast_ref(), &q, &enc, &parse, &into])
                .map_err(|e| MediaError::Gst(format!("linking video encoder: {e}")))?;
            video = Some(src);
        }
        let mut audio = None;
        if let Some(a) = &cfg.audio {
            let src = appsrc("audio", cfg.max_queue_bytes);
            // No dither: untouched samples (tag/keep, outside speech) convert back exactly.
            let conv = make("audioconvert")?;
            conv.set_property_from_str("dithering", "none");
            conv.set_property_from_str("noise-shaping", "none");
            let mut chain: Vec<gst::Element> = vec![
                src.clone().upcast(),
                make("queue")?,
                // Timestamp gaps become samples: the encoded track cannot drift.
                make("audiorate")?,
                conv,
                make("audioresample")?,
            ];
            chain.extend(audio_encoder(cfg.format.audio, a.bitrate)?);
            pipeline.add_many(chain.iter()).map_err(gst_err)?;
            let mut linked = chain.clone();
            linked.push(into.clone());
            gst::Element::link_many(linked.iter())
                .map_err(|e| MediaError::Gst(format!("linking audio encoder: {e}")))?;
            audio = Some(src);
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Encode {
                path: cfg.path.clone(),
                detail: format!("cannot start the encoder: {e}"),
            })?;
        Ok(Encoder {
            pipeline,
            path: cfg.path.clone(),
            video,
            audio,
            finished: false,
            eos_seen: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// A handle for pushing video frames from the redact stage.
    pub fn video_handle(&self) -> VideoInput {
        VideoInput {
            src: self.video.clone(),
            path: self.path.clone(),
            caps_set: None,
        }
    }

    /// Tears the pipeline down now (on a failure elsewhere): blocked pushes return.
    pub fn abort(&self) {
        super::shutdown(&self.pipeline);
    }

    /// A handle for pushing audio from another thread than video.
    pub fn audio_handle(&self) -> Option<AudioInput> {
        self.audio.clone().map(|src| AudioInput {
            src,
            path: self.path.clone(),
            caps_set: None,
        })
    }

    /// Ends every track and waits (up to `timeout`) until the file is complete.
    pub fn finish(mut self, timeout: Duration) -> Result<(), MediaError> {
        for src in [&self.video, &self.audio].into_iter().flatten() {
            let _ = src.end_of_stream();
        }
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| MediaError::Gst("encoder without a bus".into()))?;
        let msg = match self.error() {
            Some(e) => Err(e),
            None if self.eos_seen.load(std::sync::atomic::Ordering::Acquire) => Ok(None),
            None => Ok(bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(timeout.as_nanos().min(u64::MAX as u128) as u64),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )),
        };
        let result = match msg {
            Err(e) => Err(e),
            Ok(None) if self.eos_seen.load(std::sync::atomic::Ordering::Acquire) => Ok(()),
            Ok(msg) => match msg {
                None => Err(MediaError::Stalled {
                    path: self.path.clone(),
                    what: "encoding (end of stream never came)".into(),
                    secs: timeout.as_secs(),
                }),
                Some(m) => match m.view() {
                    gst::MessageView::Eos(_) => Ok(()),
                    gst::MessageView::Error(e) => Err(self.encode_error(e)),
                    _ => Err(MediaError::Gst("unexpected bus message".into())),
                },
            },
        };
        self.finished = true;
        super::shutdown(&self.pipeline);
        result
    }

    /// The error the encoder's pipeline posted, if it did (the message is taken off the bus:
    /// the caller fails the run with it). Without this a failed encoder stopped taking frames
    /// and the run waited for the stall watchdog (mp4mux refusing a frame with no timestamp:
    /// 60 s, then "stalled"). Every message before it is taken off too, and an end of stream
    /// among them is remembered for `finish` (`pop_filtered` would have dropped it, and
    /// `finish` then waited for one that had already come: regression_audio_only_eos_*).
    pub fn error(&self) -> Option<MediaError> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop() {
            match msg.view() {
                gst::MessageView::Error(e) => return Some(self.encode_error(e)),
                gst::MessageView::Eos(_) => {
                    self.eos_seen
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                _ => {}
            }
        }
        None
    }

    fn encode_error(&self, e: &gst::message::Error) -> MediaError {
        MediaError::Encode {
            path: self.path.clone(),
            // One line: GStreamer's debug text spans several.
            detail: match e.debug() {
                Some(d) if !d.trim().is_empty() => {
                    format!("{} ({})", e.error(), d.lines().last().unwrap_or("").trim())
                }
                _ => e.error().to_string(),
            },
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if !self.finished {
            super::shutdown(&self.pipeline);
        }
    }
}

/// Pushes redacted video frames into an encoder.
pub struct VideoInput {
    src: Option<gst_app::AppSrc>,
    path: PathBuf,
    caps_set: Option<gst::Caps>,
}

impl VideoInput {
    /// Pushes one frame (I420 with the caps of the decoded stream). The format may not change
    /// in the middle of a stream.
    pub fn push(&mut self, caps: &gst::Caps, buffer: gst::Buffer) -> Result<(), MediaError> {
        let src = self.src.as_ref().ok_or_else(|| MediaError::Encode {
            path: self.path.clone(),
            detail: "no video track configured".into(),
        })?;
        match &self.caps_set {
            None => {
                src.set_caps(Some(caps));
                self.caps_set = Some(caps.clone());
            }
            Some(c) if c != caps => {
                return Err(MediaError::Unsupported {
                    path: self.path.clone(),
                    detail: "video format changes in the middle of the stream".into(),
                });
            }
            Some(_) => {}
        }
        src.push_buffer(buffer)
            .map(|_| ())
            .map_err(|flow| MediaError::Encode {
                path: self.path.clone(),
                detail: format!("video encoder refused a frame: {flow:?}"),
            })
    }

    /// Fault injection only (`OBSCURA_FAULT=encode-error@frame=N`, see `pipeline/fault.rs`):
    /// posts an error from the video source, as a failing encoder element does.
    pub fn inject_error(&self) {
        if let Some(src) = &self.src {
            gst::element_error!(
                src,
                gst::StreamError::Encode,
                ["injected encoder fault (OBSCURA_FAULT)"]
            );
        }
    }

    /// Ends the video track.
    pub fn end(&self) {
        if let Some(src) = &self.src {
            let _ = src.end_of_stream();
        }
    }
}

/// Pushes audio into an encoder from its own thread.
pub struct AudioInput {
    src: gst_app::AppSrc,
    path: PathBuf,
    caps_set: Option<gst::Caps>,
}

impl AudioInput {
    pub fn push(&mut self, caps: &gst::Caps, buffer: gst::Buffer) -> Result<(), MediaError> {
        if self.caps_set.as_ref() != Some(caps) {
            self.src.set_caps(Some(caps));
            self.caps_set = Some(caps.clone());
        }
        self.src
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|flow| MediaError::Encode {
                path: self.path.clone(),
                detail: format!("audio encoder refused a buffer: {flow:?}"),
            })
    }

    /// Ends the audio track.
    pub fn end(&self) {
        let _ = self.src.end_of_stream();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_format_follows_the_extension_and_otherwise_the_input() {
        let f = |p: &str, v: bool, c: Option<&str>| OutputFormat::for_output(Path::new(p), v, c);
        assert_eq!(f("a.mp4", true, None).unwrap(), OutputFormat::MP4);
        assert_eq!(f("a.whatever", true, None).unwrap(), OutputFormat::MP4);
        assert!(f("a.wav", true, None).unwrap_err().contains("cannot hold"));
        // A container this does not write is refused, not filled with MP4 or WAV.
        for name in ["a.mkv", "a.AVI", "a.ts", "a.webm"] {
            let e = f(name, true, None).unwrap_err();
            assert!(
                e.contains("is not written here") && e.contains(".mp4"),
                "{e}"
            );
        }
        let e = f("a.mka", false, Some("Uncompressed 16-bit PCM audio")).unwrap_err();
        assert!(e.contains(".wav"), "{e}");
        assert_eq!(f("a.flac", false, None).unwrap().container, Container::Flac);
        assert_eq!(f("a.OPUS", false, None).unwrap().audio, AudioCodec::Opus);
        assert_eq!(
            f("a.out", false, Some("MPEG-1 Layer 3 (MP3)"))
                .unwrap()
                .audio,
            AudioCodec::Mp3
        );
        assert_eq!(
            f("a.out", false, Some("Free Lossless Audio Codec (FLAC)"))
                .unwrap()
                .audio,
            AudioCodec::Flac
        );
        assert_eq!(
            f("a.out", false, Some("Uncompressed 16-bit PCM audio"))
                .unwrap()
                .container,
            Container::Wav
        );
        assert_eq!(
            f("a.out", false, Some("MPEG-4 AAC")).unwrap(),
            OutputFormat::MP4
        );
    }

    /// An audio-only file's one track ends before `finish` is called; the end of stream then
    /// reaches the bus while the supervisor polls `error`. It was dropped there
    /// (`pop_filtered`), and `finish` waited out its timeout: a complete file failed as
    /// "stalled" (seen in a batch of WAV files on a loaded machine).
    #[test]
    fn regression_audio_only_eos_seen_while_polling_errors_is_not_lost() {
        crate::media::init().expect("GStreamer");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let format = OutputFormat::for_output(&path, false, None).unwrap();
        let enc = Encoder::start(&EncodeConfig {
            path: path.clone(),
            format,
            video: None,
            audio: Some(AudioEncodeSpec { bitrate: 64_000 }),
            max_queue_bytes: 1 << 20,
        })
        .unwrap();
        let mut a = enc.audio_handle().unwrap();
        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", "F32LE")
            .field("layout", "interleaved")
            .field("rate", 16_000i32)
            .field("channels", 1i32)
            .build();
        let bytes: Vec<u8> = (0..16_000)
            .flat_map(|i| (0.1f32 * (i as f32 * 0.05).sin()).to_le_bytes())
            .collect();
        let mut buf = gst::Buffer::from_mut_slice(bytes);
        buf.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        buf.get_mut()
            .unwrap()
            .set_duration(gst::ClockTime::from_seconds(1));
        a.push(&caps, buf).unwrap();
        a.end();
        // Poll as the supervisor does until the end of stream has come and gone off the bus
        // (a hang guard by poll count, not a speed check).
        let mut polls = 0;
        while !enc.eos_seen.load(std::sync::atomic::Ordering::Acquire) {
            assert!(enc.error().is_none());
            polls += 1;
            assert!(polls < 6000, "no end of stream after {polls} polls");
            std::thread::sleep(Duration::from_millis(5));
        }
        enc.finish(Duration::from_secs(2))
            .expect("the end of stream already came");
        assert!(std::fs::metadata(&path).unwrap().len() > 30_000);
    }
}
