//! Measuring redaction against ground truth: which ground-truth face boxes were redacted in
//! each frame, and how much of the picture outside faces was left alone.
//!
//! Owns: the ground-truth file format (`samples/*.gt.json`) and the two measures the project
//! promises: a box counts as redacted when the normalised correlation of the inner 70% of its
//! luma between input and output is below 0.5 — or when that output region is flat (luma
//! standard deviation under 2 levels), where the correlation is undefined and only measures
//! rounding; a pixel outside faces counts as unchanged when its luma differs by at most 10
//! levels (the output is re-encoded). Used by the integration
//! tests and by `obscura bench`. Must not touch: the redact pipeline itself (it only decodes
//! finished files).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use serde::{Deserialize, Serialize};

use crate::geom::BoxF;
use crate::media::MediaError;
use crate::media::decode::{DecodeConfig, Decoder};

/// Ground truth of a sample clip.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroundTruth {
    pub video: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub frames: u64,
    pub faces: Vec<GtFace>,
    /// Labelled speech intervals `[start_s, end_s]`.
    #[serde(default)]
    pub speech: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GtFace {
    pub id: u64,
    pub width_px: f64,
    /// `[frame, x, y, w, h]`, unclipped (may extend outside the frame).
    pub boxes: Vec<[f64; 5]>,
}

impl GroundTruth {
    pub fn load(path: &Path) -> std::io::Result<GroundTruth> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Ground-truth boxes in frame `i`: (face id, face width, box).
    pub fn boxes_at(&self, i: u64) -> Vec<(u64, f64, BoxF)> {
        self.faces
            .iter()
            .filter_map(|f| {
                f.boxes.iter().find(|b| b[0] as u64 == i).map(|b| {
                    (
                        f.id,
                        f.width_px,
                        BoxF::new(b[1] as f32, b[2] as f32, b[3] as f32, b[4] as f32),
                    )
                })
            })
            .collect()
    }
}

/// One ground-truth box that was not redacted.
#[derive(Debug, Clone, Serialize)]
pub struct Leak {
    pub frame: u64,
    pub face: u64,
    pub width_px: f64,
    pub ncc: f64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct EvalReport {
    pub frames_input: u64,
    pub frames_output: u64,
    /// Ground-truth boxes evaluated (visible inner region of at least 3x3 pixels).
    pub boxes: u64,
    pub redacted: u64,
    pub leaks: Vec<Leak>,
    /// Fraction of evaluated boxes not redacted.
    pub leak_rate: f64,
    /// Fraction of luma pixels outside (enlarged) faces that stayed within 10 levels.
    pub outside_unchanged: f64,
    /// Per face width: (boxes, redacted).
    pub by_width: BTreeMap<String, (u64, u64)>,
}

/// Normalised (zero-mean) correlation of two equally sized sample sets.
pub fn ncc(a: &[u8], b: &[u8]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n == 0.0 {
        return 0.0;
    }
    let ma = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 1e-9 || sbb <= 1e-9 {
        return 0.0;
    }
    sab / (saa * sbb).sqrt()
}

/// Below this luma standard deviation an output region is flat: nothing of the face is left.
pub const FLAT_STD: f64 = 2.0;

fn std_dev(v: &[u8]) -> f64 {
    let n = v.len().max(1) as f64;
    let m = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / n).sqrt()
}

/// A decoded luma plane.
struct Luma {
    w: usize,
    h: usize,
    data: Vec<u8>,
}

impl Luma {
    fn region(&self, r: &crate::geom::Rect) -> Vec<u8> {
        let mut v = Vec::with_capacity(r.width() * r.height());
        for y in r.y0..r.y1 {
            v.extend_from_slice(&self.data[y * self.w + r.x0..y * self.w + r.x1]);
        }
        v
    }
}

/// Decodes the luma planes of a video, one frame at a time.
struct LumaReader {
    _decoder: Decoder,
    rx: crossbeam_channel::Receiver<gstreamer::Sample>,
}

impl LumaReader {
    fn open(path: &Path) -> Result<LumaReader, MediaError> {
        let (decoder, streams) = Decoder::start(&DecodeConfig {
            path: path.to_path_buf(),
            video: true,
            audio: false,
            vad: false,
            video_queue: 4,
            audio_queue: 4,
        })?;
        let rx = streams.full.ok_or_else(|| MediaError::NoStreams {
            path: path.to_path_buf(),
        })?;
        Ok(LumaReader {
            _decoder: decoder,
            rx,
        })
    }

    fn next(&self) -> Option<Luma> {
        let s = self.rx.recv_timeout(Duration::from_secs(60)).ok()?;
        let info = gst_video::VideoInfo::from_caps(s.caps()?).ok()?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(s.buffer()?, &info).ok()?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        let stride = frame.plane_stride()[0] as usize;
        let plane = frame.plane_data(0).ok()?;
        let mut data = Vec::with_capacity(w * h);
        for y in 0..h {
            data.extend_from_slice(&plane[y * stride..y * stride + w]);
        }
        Some(Luma { w, h, data })
    }
}

/// The project's criterion: a box is redacted when the NCC of its inner 70% is below this.
pub const REDACTED_BELOW: f64 = 0.5;

/// Compares `output` with `input` against the ground truth.
pub fn evaluate(input: &Path, output: &Path, gt: &GroundTruth) -> Result<EvalReport, MediaError> {
    evaluate_with(input, output, gt, REDACTED_BELOW)
}

/// [`evaluate`] with another NCC bound (e.g. a looser one for the pixelate style, which keeps
/// a face's coarse layout on purpose).
pub fn evaluate_with(
    input: &Path,
    output: &Path,
    gt: &GroundTruth,
    redacted_below: f64,
) -> Result<EvalReport, MediaError> {
    let a = LumaReader::open(input)?;
    let b = LumaReader::open(output)?;
    let mut rep = EvalReport::default();
    let (mut outside_total, mut outside_same) = (0u64, 0u64);
    let mut i = 0u64;
    loop {
        let (fa, fb) = (a.next(), b.next());
        match (&fa, &fb) {
            (Some(_), Some(_)) => {
                rep.frames_input += 1;
                rep.frames_output += 1;
            }
            (Some(_), None) => rep.frames_input += 1,
            (None, Some(_)) => rep.frames_output += 1,
            (None, None) => break,
        }
        let (Some(fa), Some(fb)) = (fa, fb) else {
            continue;
        };
        if fa.w != fb.w || fa.h != fb.h {
            return Err(MediaError::Unsupported {
                path: output.to_path_buf(),
                detail: "output size differs from input".into(),
            });
        }
        let boxes = gt.boxes_at(i);
        for (face, width, bx) in &boxes {
            let inner = BoxF::new(
                bx.x + 0.15 * bx.w,
                bx.y + 0.15 * bx.h,
                0.7 * bx.w,
                0.7 * bx.h,
            );
            let Some(r) = inner.to_plane_rect(fa.w, fa.h, 1, 1) else {
                continue;
            };
            if r.width() < 3 || r.height() < 3 {
                continue;
            }
            let (orig, out) = (fa.region(&r), fb.region(&r));
            // NCC is scale-invariant: on a (nearly) constant region it measures nothing but
            // rounding steps of one or two levels, so such a region counts as redacted.
            let c = if std_dev(&out) < FLAT_STD {
                0.0
            } else {
                ncc(&orig, &out)
            };
            rep.boxes += 1;
            let e = rep.by_width.entry(format!("{width:.0}")).or_default();
            e.0 += 1;
            if c < redacted_below {
                rep.redacted += 1;
                e.1 += 1;
            } else {
                rep.leaks.push(Leak {
                    frame: i,
                    face: *face,
                    width_px: *width,
                    ncc: (c * 1000.0).round() / 1000.0,
                });
            }
        }
        // Outside faces: everything not within a generously enlarged ground-truth box.
        let mut mask = vec![false; fa.w * fa.h];
        for (_, _, bx) in &boxes {
            if let Some(r) = bx.enlarge(0.5).to_plane_rect(fa.w, fa.h, 1, 1) {
                for y in r.y0..r.y1 {
                    mask[y * fa.w + r.x0..y * fa.w + r.x1].fill(true);
                }
            }
        }
        for (k, (&x, &y)) in fa.data.iter().zip(&fb.data).enumerate() {
            if !mask[k] {
                outside_total += 1;
                if x.abs_diff(y) <= 10 {
                    outside_same += 1;
                }
            }
        }
        i += 1;
    }
    rep.leak_rate = if rep.boxes > 0 {
        (rep.boxes - rep.redacted) as f64 / rep.boxes as f64
    } else {
        0.0
    };
    rep.outside_unchanged = if outside_total > 0 {
        outside_same as f64 / outside_total as f64
    } else {
        1.0
    };
    Ok(rep)
}

/// Decoded audio, mixed down to mono: `(samples, rate)`. Timestamps follow the stream's
/// segment (as the pipeline sees them); gaps are not filled.
pub fn decode_audio(path: &Path) -> Result<(Vec<f32>, u32), MediaError> {
    let (decoder, streams) = Decoder::start(&DecodeConfig {
        path: path.to_path_buf(),
        video: false,
        audio: true,
        vad: false,
        video_queue: 4,
        audio_queue: 16,
    })?;
    let rx = streams.audio.ok_or_else(|| MediaError::NoStreams {
        path: path.to_path_buf(),
    })?;
    let mut out = Vec::new();
    let mut rate = 0;
    while let Ok(s) = rx.recv_timeout(Duration::from_secs(60)) {
        let Some(info) = s
            .caps()
            .and_then(|c| gstreamer_audio::AudioInfo::from_caps(c).ok())
        else {
            continue;
        };
        let Some(buf) = crate::media::decode::audio_buffer(&s) else {
            continue;
        };
        rate = info.rate();
        let ch = info.channels().max(1) as usize;
        if let Ok(map) = buf.map_readable() {
            let v: Vec<f32> = map
                .as_slice()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            out.extend(
                v.chunks_exact(ch)
                    .map(|f| f.iter().sum::<f32>() / ch as f32),
            );
        }
    }
    decoder.finish(Duration::from_secs(10))?;
    Ok((out, rate))
}

/// Energy (sum of squares) of `x` over the samples whose time `i / rate` satisfies `keep`.
pub fn energy(x: &[f32], rate: u32, keep: impl Fn(f64) -> bool) -> f64 {
    x.iter()
        .enumerate()
        .filter(|(i, _)| keep(*i as f64 / rate as f64))
        .map(|(_, v)| (*v as f64) * (*v as f64))
        .sum()
}

/// Decodes a video and returns the sha256 of each frame's luma plane (to compare two
/// encodes frame by frame).
pub fn luma_hashes(path: &Path) -> Result<Vec<String>, MediaError> {
    let r = LumaReader::open(path)?;
    let mut v = Vec::new();
    while let Some(f) = r.next() {
        v.push(crate::fsutil::sha256_bytes(&f.data));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ncc_of_identical_is_one_and_of_constant_is_zero() {
        let a: Vec<u8> = (0..100).map(|i| (i * 7 % 256) as u8).collect();
        assert!((ncc(&a, &a) - 1.0).abs() < 1e-9);
        assert_eq!(ncc(&a, &[5u8; 100]), 0.0);
        let inv: Vec<u8> = a.iter().map(|&v| 255 - v).collect();
        assert!((ncc(&a, &inv) + 1.0).abs() < 1e-9);
    }
}
