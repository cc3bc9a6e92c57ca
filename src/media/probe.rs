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
    /// The stream's bit rate in kbit/s as the container or the stream's tags state it (MP4:
    /// from the track's sample sizes and duration); `None` when nothing says it.
    pub bitrate_kbps: Option<u32>,
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
    /// The video stream's bit rate in kbit/s: the stated one, otherwise estimated from the
    /// file's size over its duration (less the audio's share, taken as 64 kbit/s per channel
    /// up to 256): an upper bound that errs towards keeping quality. `None` without video,
    /// or when neither a rate nor a duration is known.
    pub fn video_kbps(&self, file_bytes: Option<u64>) -> Option<u32> {
        let v = self.video.as_ref()?;
        if let Some(k) = v.bitrate_kbps.filter(|k| *k > 0) {
            return Some(k);
        }
        let secs = self.duration_s();
        let bytes = file_bytes?;
        if secs < 0.1 || bytes == 0 {
            return None;
        }
        let total = bytes as f64 * 8.0 / 1000.0 / secs;
        let audio = self
            .audio
            .as_ref()
            .map_or(0.0, |a| (64.0 * a.channels.max(1) as f64).min(256.0));
        let k = (total - audio).max(total * 0.5).round();
        (k >= 1.0).then(|| k.min(u32::MAX as f64) as u32)
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
            bitrate_kbps: [v.bitrate(), v.max_bitrate()]
                .into_iter()
                .find(|b| *b > 0)
                .or_else(|| {
                    v.tags()
                        .and_then(|t| t.get::<gst::tags::Bitrate>().map(|b| b.get()))
                        .filter(|b| *b > 0)
                })
                .map(|b| b.div_ceil(1000)),
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
    use super::*;

    /// The stated video rate wins; without one the file's rate over its duration less the
    /// audio's share; without a duration, none (the encoder then keeps to its CRF).
    #[test]
    fn video_kbps_is_stated_or_estimated_or_unknown() {
        let video = |bitrate_kbps| VideoProbe {
            width: 640,
            height: 360,
            fps_n: 25,
            fps_d: 1,
            codec: "H.264".into(),
            orientation: Orientation::Identity,
            bitrate_kbps,
        };
        let mut m = MediaInfo {
            duration: Some(gst::ClockTime::from_seconds(10)),
            container: None,
            video: Some(video(Some(800))),
            audio: None,
        };
        assert_eq!(m.video_kbps(Some(10_000_000)), Some(800));
        m.video = Some(video(None));
        assert_eq!(m.video_kbps(Some(1_000_000)), Some(800));
        m.audio = Some(AudioProbe {
            rate: 48_000,
            channels: 2,
            codec: "AAC".into(),
        });
        assert_eq!(m.video_kbps(Some(1_000_000)), Some(672));
        assert_eq!(m.video_kbps(None), None);
        m.duration = None;
        assert_eq!(m.video_kbps(Some(1_000_000)), None);
        m.video = None;
        assert_eq!(m.video_kbps(Some(1_000_000)), None);
    }

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
