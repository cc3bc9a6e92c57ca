//! Media in and out through GStreamer: probing inputs, decoding to raw frames and audio,
//! encoding the redacted result, and classifying GStreamer failures into clear errors.
//!
//! Owns: every GStreamer pipeline and element. Must not touch: detection, tracking or
//! redaction decisions — it hands out raw buffers and takes raw buffers back.

pub mod decode;
pub mod encode;
pub mod frame_memory;
pub mod probe;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

pub use probe::{MediaInfo, Orientation, probe};

/// What went wrong with a media file, classified. Every variant names the file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MediaError {
    #[error("{}: file not found", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: cannot read: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}: empty file (0 bytes)", path.display())]
    Empty { path: PathBuf },
    #[error("{}: not a media file GStreamer recognises ({detail})", path.display())]
    NotMedia { path: PathBuf, detail: String },
    #[error("{}: unsupported format or codec: {detail}", path.display())]
    Unsupported { path: PathBuf, detail: String },
    #[error("{}: corrupt or truncated media: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{}: no video or audio stream", path.display())]
    NoStreams { path: PathBuf },
    #[error("GStreamer element '{element}' is missing: install the Debian package {package}")]
    MissingElement { element: String, package: String },
    #[error("{}: encoding failed: {detail}", path.display())]
    Encode { path: PathBuf, detail: String },
    #[error("{}: {what} made no progress for {secs} s (stalled)", path.display())]
    Stalled {
        path: PathBuf,
        what: String,
        secs: u64,
    },
    #[error("GStreamer: {0}")]
    Gst(String),
}

static INIT: OnceLock<Result<(), String>> = OnceLock::new();

/// Initialises GStreamer once per process.
pub fn init() -> Result<(), MediaError> {
    INIT.get_or_init(|| {
        // GLib/GStreamer print their warnings and assertion failures (common on corrupt
        // input, e.g. "Got data flow before segment event") straight to stderr, which breaks
        // the one-error-line contract: route them to the log (visible with -vv / RUST_LOG).
        glib::log_set_default_handler(|domain, level, message| {
            let domain = domain.unwrap_or("glib");
            match level {
                glib::LogLevel::Error | glib::LogLevel::Critical | glib::LogLevel::Warning => {
                    tracing::debug!(target: "glib", domain, ?level, "{message}")
                }
                _ => tracing::trace!(target: "glib", domain, ?level, "{message}"),
            }
        });
        gst::init().map_err(|e| e.to_string())
    })
    .clone()
    .map_err(MediaError::Gst)
}

/// GStreamer's NVDEC decoders (gst-plugins-bad `nvcodec`; they exist only where the NVIDIA
/// driver's decoder library is found).
pub const NVDEC_DECODERS: [&str; 2] = ["nvh264dec", "nvh265dec"];

/// Whether video decoding may use NVDEC, decided once per process from the device setting:
/// with `gpu` the NVDEC decoders (where present) are ranked above the software ones so that
/// `decodebin` picks them, and a log line says which decoder family is used; without it they
/// are ranked out, so that `--device cpu` decodes on the CPU even on a GPU host. Returns the
/// NVDEC decoders that are available (empty: software decoding).
pub fn choose_video_decoders(gpu: bool) -> Result<Vec<&'static str>, MediaError> {
    static CHOSEN: OnceLock<Vec<&'static str>> = OnceLock::new();
    init()?;
    Ok(CHOSEN
        .get_or_init(|| {
            let present: Vec<(&'static str, gst::ElementFactory)> = NVDEC_DECODERS
                .iter()
                .filter_map(|n| gst::ElementFactory::find(n).map(|f| (*n, f)))
                .collect();
            for (_, f) in &present {
                f.set_rank(if gpu {
                    gst::Rank::PRIMARY + 100
                } else {
                    gst::Rank::NONE
                });
            }
            let names: Vec<&'static str> = present.iter().map(|(n, _)| *n).collect();
            if gpu {
                if names.is_empty() {
                    tracing::warn!(
                        "NVDEC unavailable (no nvh264dec/nvh265dec: GStreamer's nvcodec plugin needs the NVIDIA driver); decoding video on the CPU"
                    );
                } else {
                    tracing::info!(decoders = ?names, "decoding H.264/H.265 with NVDEC");
                }
                names
            } else {
                Vec::new()
            }
        })
        .clone())
}

/// Elements the redact pipeline needs, with the Debian package that provides each.
pub const REQUIRED_ELEMENTS: &[(&str, &str)] = &[
    ("filesrc", "libgstreamer1.0-0"),
    ("filesink", "libgstreamer1.0-0"),
    ("queue", "libgstreamer1.0-0"),
    ("tee", "libgstreamer1.0-0"),
    ("fakesink", "libgstreamer1.0-0"),
    ("decodebin", "gstreamer1.0-plugins-base"),
    ("videoconvert", "gstreamer1.0-plugins-base"),
    ("audioconvert", "gstreamer1.0-plugins-base"),
    ("audioresample", "gstreamer1.0-plugins-base"),
    ("audiorate", "gstreamer1.0-plugins-base"),
    ("appsrc", "gstreamer1.0-plugins-base"),
    ("appsink", "gstreamer1.0-plugins-base"),
    ("x264enc", "gstreamer1.0-plugins-ugly"),
    ("h264parse", "gstreamer1.0-plugins-bad"),
    ("mp4mux", "gstreamer1.0-plugins-good"),
    ("videoflip", "gstreamer1.0-plugins-good"),
    ("qtdemux", "gstreamer1.0-plugins-good"),
    ("matroskademux", "gstreamer1.0-plugins-good"),
    ("avidemux", "gstreamer1.0-plugins-good"),
    ("aacparse", "gstreamer1.0-plugins-good"),
    ("tsdemux", "gstreamer1.0-plugins-bad"),
    ("avdec_h264", "gstreamer1.0-libav"),
    ("avenc_aac", "gstreamer1.0-libav"),
];

/// Checks that every element in `elements` exists; the error names the Debian package.
pub fn check_elements(elements: &[(&str, &str)]) -> Result<(), MediaError> {
    init()?;
    for (name, package) in elements {
        if gst::ElementFactory::find(name).is_none() {
            return Err(MediaError::MissingElement {
                element: name.to_string(),
                package: package.to_string(),
            });
        }
    }
    Ok(())
}

pub(crate) fn make(factory: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory).build().map_err(|_| {
        let package = REQUIRED_ELEMENTS
            .iter()
            .find(|(n, _)| *n == factory)
            .map(|(_, p)| p.to_string())
            .unwrap_or_else(|| "providing it (see README)".into());
        MediaError::MissingElement {
            element: factory.to_string(),
            package,
        }
    })
}

/// Turns a GStreamer error (from a bus message or the discoverer) into a classified error.
pub(crate) fn classify(path: &Path, err: &glib::Error, debug: Option<&str>) -> MediaError {
    let path = path.to_path_buf();
    let msg = err.message().to_string();
    let detail = match debug {
        Some(d) if !d.is_empty() => format!("{msg} ({})", last_line(d)),
        _ => msg.clone(),
    };
    let lower = format!("{msg} {}", debug.unwrap_or("")).to_lowercase();
    if let Some(e) = err.kind::<gst::ResourceError>() {
        return match e {
            gst::ResourceError::NotFound => MediaError::NotFound { path },
            _ => MediaError::Unreadable {
                path,
                reason: detail,
            },
        };
    }
    if let Some(e) = err.kind::<gst::StreamError>() {
        return match e {
            gst::StreamError::TypeNotFound | gst::StreamError::WrongType => {
                MediaError::NotMedia { path, detail }
            }
            gst::StreamError::CodecNotFound
            | gst::StreamError::NotImplemented
            | gst::StreamError::Decrypt
            | gst::StreamError::DecryptNokey => MediaError::Unsupported { path, detail },
            _ => MediaError::Corrupt { path, detail },
        };
    }
    if let Some(gst::CoreError::MissingPlugin) = err.kind::<gst::CoreError>() {
        return MediaError::Unsupported { path, detail };
    }
    if lower.contains("missing") && lower.contains("plugin") {
        return MediaError::Unsupported { path, detail };
    }
    MediaError::Corrupt { path, detail }
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s).trim()
}

/// A `file://` URI for a local path (made absolute).
pub(crate) fn file_uri(path: &Path) -> Result<String, MediaError> {
    let abs = std::path::absolute(path).map_err(|e| MediaError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    glib::filename_to_uri(&abs, None)
        .map(|u| u.to_string())
        .map_err(|e| MediaError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Sets a pipeline to `Null` and waits, logging instead of failing: used on every exit path.
pub(crate) fn shutdown(pipeline: &gst::Pipeline) {
    if let Err(e) = pipeline.set_state(gst::State::Null) {
        tracing::warn!(error = %e, "pipeline did not stop cleanly");
    }
}
