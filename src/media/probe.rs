//! Probing an input before processing: does it exist, is it media, which streams does it
//! have, with which sizes and codecs. Uses GStreamer's discoverer, bounded by a timeout.
//!
//! Sizes are the *displayed* ones: a stream whose container turns it (an MP4/MOV display
//! matrix, read by qtdemux into the `image-orientation` tag) reports its width and height as a
//! viewer sees them, swapped for a quarter turn, because the decoder applies the same turn
//! (`media::decode`) and everything downstream (detector sizes, encoder caps) works on
//! upright frames. The stored orientation is kept in [`VideoProbe::orientation`].

use std::path::Path;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer_pbutils as pbutils;
use gstreamer_pbutils::prelude::*;

use super::{MediaError, classify, file_uri, init};

#[derive(Debug, Clone, PartialEq)]
pub struct VideoProbe {
    pub width: u32,
    pub height: u32,
    pub fps_n: i32,
    pub fps_d: i32,
    pub codec: String,
    /// How the container says the stored pixels are turned for display (identity when it
    /// says nothing). `width`/`height` already have it applied.
    pub orientation: Orientation,
}

/// The container's display orientation, as GStreamer's `image-orientation` tag names it:
/// rotate the stored picture clockwise by the given angle, after mirroring it left-right
/// for the `Flip*` variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Orientation {
    #[default]
    Identity,
    Rotate90,
    Rotate180,
    Rotate270,
    FlipRotate0,
    FlipRotate90,
    FlipRotate180,
    FlipRotate270,
}

impl Orientation {
    /// Parses the tag's value (`rotate-90`, `flip-rotate-0`, ...); anything else is identity.
    pub fn from_tag(value: &str) -> Orientation {
        match value {
            "rotate-90" => Orientation::Rotate90,
            "rotate-180" => Orientation::Rotate180,
            "rotate-270" => Orientation::Rotate270,
            "flip-rotate-0" => Orientation::FlipRotate0,
            "flip-rotate-90" => Orientation::FlipRotate90,
            "flip-rotate-180" => Orientation::FlipRotate180,
            "flip-rotate-270" => Orientation::FlipRotate270,
            _ => Orientation::Identity,
        }
    }

    /// The tag's value for it (`rotate-0` for identity).
    pub fn tag(self) -> &'static str {
        match self {
            Orientation::Identity => "rotate-0",
            Orientation::Rotate90 => "rotate-90",
            Orientation::Rotate180 => "rotate-180",
            Orientation::Rotate270 => "rotate-270",
            Orientation::FlipRotate0 => "flip-rotate-0",
            Orientation::FlipRotate90 => "flip-rotate-90",
            Orientation::FlipRotate180 => "flip-rotate-180",
            Orientation::FlipRotate270 => "flip-rotate-270",
        }
    }

    pub fn is_identity(self) -> bool {
        self == Orientation::Identity
    }

    /// A quarter turn: the displayed picture is the stored one with width and height swapped.
    pub fn swaps_axes(self) -> bool {
        matches!(
            self,
            Orientation::Rotate90
                | Orientation::Rotate270
                | Orientation::FlipRotate90
                | Orientation::FlipRotate270
        )
    }
}

impl VideoProbe {
    pub fn fps(&self) -> f64 {
        if self.fps_d == 0 {
            0.0
        } else {
            self.fps_n as f64 / self.fps_d as f64
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioProbe {
    pub rate: u32,
    pub channels: u32,
    pub codec: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    pub duration: Option<gst::ClockTime>,
    pub container: Option<String>,
    pub video: Option<VideoProbe>,
    pub audio: Option<AudioProbe>,
}

impl MediaInfo {
    pub fn duration_s(&self) -> f64 {
        self.duration
            .map(|d| d.nseconds() as f64 / 1e9)
            .unwrap_or(0.0)
    }
    /// Expected number of video frames (for progress), when duration and rate are known.
    pub fn expected_frames(&self) -> Option<u64> {
        let v = self.video.as_ref()?;
        let fps = v.fps();
        (fps > 0.0).then(|| (self.duration_s() * fps).round() as u64)
    }
}

/// Checks the file itself (exists, regular, non-empty, readable) with a classified error.
pub fn check_file(path: &Path) -> Result<u64, MediaError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::NotFound {
            path: path.to_path_buf(),
        },
        _ => MediaError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })?;
    if !meta.is_file() {
        return Err(MediaError::Unreadable {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    if meta.len() == 0 {
        return Err(MediaError::Empty {
            path: path.to_path_buf(),
        });
    }
    std::fs::File::open(path).map_err(|e| MediaError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(meta.len())
}

fn caps_codec(caps: Option<gst::Caps>) -> String {
    caps.map(|c| pbutils::pb_utils_get_codec_description(&c).to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Probes `path` with a `timeout`. Classifies every failure.
pub fn probe(path: &Path, timeout: std::time::Duration) -> Result<MediaInfo, MediaError> {
    check_file(path)?;
    init()?;
    let uri = file_uri(path)?;
    let to_ct = gst::ClockTime::from_nseconds(timeout.as_nanos().min(u64::MAX as u128) as u64);
    let discoverer = pbutils::Discoverer::new(to_ct).map_err(|e| MediaError::Gst(e.to_string()))?;
    let info = discoverer
        .discover_uri(&uri)
        .map_err(|e| classify_discoverer(path, &e))?;
    match info.result() {
        pbutils::DiscovererResult::Ok => {}
        pbutils::DiscovererResult::MissingPlugins => {
            let details = info.missing_elements_installer_details();
            return Err(MediaError::Unsupported {
                path: path.to_path_buf(),
                detail: format!(
                    "no GStreamer plugin for it ({})",
                    details
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
        }
        pbutils::DiscovererResult::Timeout => {
            return Err(MediaError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("probing timed out after {} s", timeout.as_secs()),
            });
        }
        other => {
            return Err(MediaError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("probe result {other:?}"),
            });
        }
    }
    let video = info.video_streams().into_iter().next().map(|v| {
        let orientation = v
            .tags()
            .and_then(|t| t.get::<gst::tags::ImageOrientation>())
            .map(|o| Orientation::from_tag(o.get()))
            .unwrap_or_default();
        let (width, height) = if orientation.swaps_axes() {
            (v.height(), v.width())
        } else {
            (v.width(), v.height())
        };
        VideoProbe {
            width,
            height,
            fps_n: v.framerate().numer(),
            fps_d: v.framerate().denom(),
            codec: caps_codec(v.caps()),
            orientation,
        }
    });
    let audio = info.audio_streams().into_iter().next().map(|a| AudioProbe {
        rate: a.sample_rate(),
        channels: a.channels(),
        codec: caps_codec(a.caps()),
    });
    // The discoverer accepts an image or a stream of unknown caps as "video"; a zero size
    // means it could not decode a frame.
    if let Some(v) = &video
        && (v.width == 0 || v.height == 0)
    {
        return Err(MediaError::Corrupt {
            path: path.to_path_buf(),
            detail: "video stream without a decodable frame size".into(),
        });
    }
    if video.is_none() && audio.is_none() {
        return Err(MediaError::NoStreams {
            path: path.to_path_buf(),
        });
    }
    let container = info.stream_info().and_then(|s| {
        s.downcast_ref::<pbutils::DiscovererContainerInfo>()
            .map(|_| caps_codec(s.caps()))
    });
    Ok(MediaInfo {
        duration: info.duration(),
        container,
        video,
        audio,
    })
}

fn classify_discoverer(path: &Path, e: &glib::Error) -> MediaError {
    classify(path, e, None)
}

#[cfg(test)]
mod tests {
    use super::Orientation;

    #[test]
    fn every_image_orientation_tag_reads_back_and_quarter_turns_swap_the_axes() {
        let all = [
            (Orientation::Identity, false),
            (Orientation::Rotate90, true),
            (Orientation::Rotate180, false),
            (Orientation::Rotate270, true),
            (Orientation::FlipRotate0, false),
            (Orientation::FlipRotate90, true),
            (Orientation::FlipRotate180, false),
            (Orientation::FlipRotate270, true),
        ];
        for (o, swaps) in all {
            assert_eq!(Orientation::from_tag(o.tag()), o);
            assert_eq!(o.swaps_axes(), swaps, "{o:?}");
        }
        assert_eq!(Orientation::from_tag("sideways"), Orientation::Identity);
    }
}
