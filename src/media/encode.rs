//! Encoding the redacted streams with GStreamer:
//!
//! ```text
//! appsrc "video" (I420) ! queue ! x264enc ! h264parse ─┐
//!                                                      ├ mp4mux ! filesink (temporary name)
//! appsrc "audio" (F32) ! queue ! audiorate ! audioconvert ! avenc_aac ! aacparse ─┘
//! ```
//!
//! Buffers keep their original timestamps; `audiorate` turns any timestamp gaps into samples
//! so that the AAC track cannot drift from the video. `appsrc` blocks when its queue is full,
//! which is the backpressure into the redact stage. The file is only complete after
//! [`Encoder::finish`] saw end of stream on the bus (mp4mux writes its index last); the
//! caller then fsyncs and renames it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::{MediaError, make};

/// x264 speed/quality trade-off.
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
    /// x264 `ultrafast`, CRF 23 (default: the encoder is the bottleneck on CPU hosts).
    #[default]
    Fast,
    /// x264 `veryfast`, CRF 21.
    Balanced,
    /// x264 `medium`, CRF 19.
    High,
}

impl Quality {
    pub fn preset(&self) -> &'static str {
        match self {
            Quality::Fast => "ultrafast",
            Quality::Balanced => "veryfast",
            Quality::High => "medium",
        }
    }
    pub fn crf(&self) -> u32 {
        match self {
            Quality::Fast => 23,
            Quality::Balanced => 21,
            Quality::High => 19,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VideoEncodeSpec {
    pub quality: Quality,
    /// Encoder threads (0 = x264's automatic choice).
    pub threads: u32,
    /// Maximum keyframe interval in frames (0 = x264's default).
    pub keyint_max: u32,
}

#[derive(Debug, Clone)]
pub struct AudioEncodeSpec {
    /// AAC bit rate in bits per second.
    pub bitrate: i32,
}

#[derive(Debug, Clone)]
pub struct EncodeConfig {
    pub path: PathBuf,
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
        let pipeline = gst::Pipeline::with_name("obscura-encode");
        let mux = make("mp4mux")?;
        let sink = make("filesink")?;
        sink.set_property("location", cfg.path.to_string_lossy().to_string());
        sink.set_property("sync", false);
        sink.set_property("async", false);
        pipeline
            .add_many([&mux, &sink])
            .map_err(|e| MediaError::Gst(e.to_string()))?;
        mux.link(&sink)
            .map_err(|e| MediaError::Gst(e.to_string()))?;

        let mut video = None;
        if let Some(v) = &cfg.video {
            let src = appsrc("video", cfg.max_queue_bytes);
            let q = make("queue")?;
            let enc = make("x264enc")?;
            enc.set_property_from_str("speed-preset", v.quality.preset());
            enc.set_property_from_str("pass", "qual");
            enc.set_property("quantizer", v.quality.crf());
            enc.set_property("threads", v.threads);
            if v.keyint_max > 0 {
                enc.set_property("key-int-max", v.keyint_max);
            }
            let parse = make("h264parse")?;
            pipeline
                .add_many([src.upcast_ref(), &q, &enc, &parse])
                .map_err(|e| MediaError::Gst(e.to_string()))?;
            gst::Element::link_many([src.upcast_ref(), &q, &enc, &parse, &mux])
                .map_err(|e| MediaError::Gst(format!("linking video encoder: {e}")))?;
            video = Some(src);
        }
        let mut audio = None;
        if let Some(a) = &cfg.audio {
            let src = appsrc("audio", cfg.max_queue_bytes);
            let q = make("queue")?;
            let rate = make("audiorate")?;
            let conv = make("audioconvert")?;
            let resample = make("audioresample")?;
            let enc = make("avenc_aac")?;
            enc.set_property("bitrate", a.bitrate);
            let parse = make("aacparse")?;
            pipeline
                .add_many([src.upcast_ref(), &q, &rate, &conv, &resample, &enc, &parse])
                .map_err(|e| MediaError::Gst(e.to_string()))?;
            gst::Element::link_many([
                src.upcast_ref(),
                &q,
                &rate,
                &conv,
                &resample,
                &enc,
                &parse,
                &mux,
            ])
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
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(timeout.as_nanos().min(u64::MAX as u128) as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        let result = match msg {
            None => Err(MediaError::Stalled {
                path: self.path.clone(),
                what: "encoding (end of stream never came)".into(),
                secs: timeout.as_secs(),
            }),
            Some(m) => match m.view() {
                gst::MessageView::Eos(_) => Ok(()),
                gst::MessageView::Error(e) => Err(MediaError::Encode {
                    path: self.path.clone(),
                    detail: format!("{} ({})", e.error(), e.debug().unwrap_or_default()),
                }),
                _ => Err(MediaError::Gst("unexpected bus message".into())),
            },
        };
        self.finished = true;
        super::shutdown(&self.pipeline);
        result
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
