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

pub mod voice;
pub use voice::{VoiceReport, VoiceSummary};

/// Ground truth of a sample clip.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroundTruth {
    /// The clip's file name, beside the ground truth. Empty: `NAME.gt.json`'s `NAME.*`.
    #[serde(default)]
    pub video: String,
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
    /// 0 with no `frames` and no `faces`: an audio-only clip.
    #[serde(default)]
    pub fps: f64,
    #[serde(default)]
    pub frames: u64,
    #[serde(default)]
    pub faces: Vec<GtFace>,
    /// Labelled speech intervals `[start_s, end_s]`.
    #[serde(default)]
    pub speech: Vec<[f64; 2]>,
    /// What kind of footage this is (stress corpus: `night_ir`, `dusk`, ...); groups the
    /// table of a folder's evaluation. None: the clip's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// `tune` or `holdout` (stress corpus): whether defaults were tuned on the clip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Speech power over noise power of a mixed clip (voice corpus); groups the voice table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snr_db: Option<f64>,
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

    /// Whether the clip has faces to evaluate (a video with frames or boxes).
    pub fn has_video(&self) -> bool {
        self.frames > 0 || !self.faces.is_empty()
    }

    /// Whether the clip's voice is evaluated: labelled speech, or an audio-only clip (whose
    /// empty label says there is no speech in it).
    pub fn has_voice(&self) -> bool {
        !self.speech.is_empty() || !self.has_video()
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

/// How long one ground-truth face was left showing.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct FaceExposure {
    pub face: u64,
    pub width_px: f64,
    /// Evaluated boxes of this face (frames in which it is visible).
    pub boxes: u64,
    pub leaked: u64,
    /// First frame in which the face is visible (evaluated).
    pub first_frame: u64,
    /// Visible frames that were left unredacted before its first redacted frame (all of its
    /// frames when it never was), and the same in seconds.
    pub delay_frames: u64,
    pub delay_s: f64,
    /// The longest run of consecutive visible frames left unredacted (frames in which the
    /// face is hidden neither count nor break a run), in frames and seconds, and the frame it
    /// starts at.
    pub longest_run_frames: u64,
    pub longest_run_s: f64,
    pub longest_run_from: Option<u64>,
}

/// Ground-truth face width classes of the leak table (pixels).
pub const SIZE_CLASSES: [(f64, &str); 5] = [
    (0.0, "<12"),
    (12.0, "12-15"),
    (16.0, "16-23"),
    (24.0, "24-39"),
    (40.0, "40+"),
];

/// The size class of a face `width` px wide.
pub fn size_class(width: f64) -> &'static str {
    SIZE_CLASSES
        .iter()
        .rev()
        .find(|(lo, _)| width >= *lo)
        .map_or(SIZE_CLASSES[0].1, |(_, name)| name)
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct EvalReport {
    pub frames_input: u64,
    pub frames_output: u64,
    /// The ground truth's frame rate (turns frame counts into seconds).
    pub fps: f64,
    /// Ground-truth boxes evaluated (visible inner region of at least 3x3 pixels).
    pub boxes: u64,
    pub redacted: u64,
    pub leaks: Vec<Leak>,
    /// Fraction of evaluated boxes not redacted.
    pub leak_rate: f64,
    /// Fraction of luma pixels outside (enlarged) faces that stayed within 10 levels.
    pub outside_unchanged: f64,
    /// Fraction of luma pixels outside (enlarged) faces changed by more than 10 levels
    /// (`1 - outside_unchanged`): over-redaction, plus re-encoding noise.
    pub outside_altered: f64,
    /// Per face width: (boxes, redacted).
    pub by_width: BTreeMap<String, (u64, u64)>,
    /// Per size class ([`SIZE_CLASSES`]): (boxes, redacted).
    pub by_size: BTreeMap<String, (u64, u64)>,
    /// Every ground-truth face that was visible, in id order.
    pub faces: Vec<FaceExposure>,
    /// The longest run of unredacted frames of any face, in frames and seconds, and whose.
    pub longest_run_frames: u64,
    pub longest_run_s: f64,
    pub longest_run_face: Option<u64>,
    /// The longest delay from a face's first visible frame to its first redacted one.
    pub max_delay_frames: u64,
    pub max_delay_s: f64,
}

/// Running account of one face while the frames go by.
#[derive(Default)]
struct FaceAcc {
    width: f64,
    boxes: u64,
    leaked: u64,
    first: Option<u64>,
    redacted_once: bool,
    delay: u64,
    run: u64,
    run_from: u64,
    longest: u64,
    longest_from: Option<u64>,
}

impl FaceAcc {
    fn see(&mut self, frame: u64, width: f64, redacted: bool) {
        self.width = width;
        self.boxes += 1;
        self.first.get_or_insert(frame);
        if redacted {
            self.redacted_once = true;
            self.run = 0;
            return;
        }
        self.leaked += 1;
        if !self.redacted_once {
            self.delay += 1;
        }
        if self.run == 0 {
            self.run_from = frame;
        }
        self.run += 1;
        if self.run > self.longest {
            self.longest = self.run;
            self.longest_from = Some(self.run_from);
        }
    }

    fn finish(&self, face: u64, fps: f64) -> FaceExposure {
        let secs = |n: u64| if fps > 0.0 { n as f64 / fps } else { 0.0 };
        FaceExposure {
            face,
            width_px: self.width,
            boxes: self.boxes,
            leaked: self.leaked,
            first_frame: self.first.unwrap_or(0),
            delay_frames: self.delay,
            delay_s: secs(self.delay),
            longest_run_frames: self.longest,
            longest_run_s: secs(self.longest),
            longest_run_from: self.longest_from,
        }
    }
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
    let mut rep = EvalReport {
        fps: gt.fps,
        ..EvalReport::default()
    };
    let mut faces: BTreeMap<u64, FaceAcc> = BTreeMap::new();
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
            let redacted = c < redacted_below;
            faces.entry(*face).or_default().see(i, *width, redacted);
            let e = rep.by_width.entry(format!("{width:.0}")).or_default();
            e.0 += 1;
            e.1 += u64::from(redacted);
            let e = rep
                .by_size
                .entry(size_class(*width).to_string())
                .or_default();
            e.0 += 1;
            e.1 += u64::from(redacted);
            if redacted {
                rep.redacted += 1;
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
    rep.outside_altered = 1.0 - rep.outside_unchanged;
    rep.faces = faces
        .iter()
        .map(|(&id, acc)| acc.finish(id, gt.fps))
        .collect();
    for f in &rep.faces {
        if f.longest_run_frames > rep.longest_run_frames {
            rep.longest_run_frames = f.longest_run_frames;
            rep.longest_run_s = f.longest_run_s;
            rep.longest_run_face = Some(f.face);
        }
        if f.delay_frames > rep.max_delay_frames {
            rep.max_delay_frames = f.delay_frames;
            rep.max_delay_s = f.delay_s;
        }
    }
    Ok(rep)
}

/// One clip of a folder's evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct ClipEval {
    /// The video's file name.
    pub name: String,
    pub condition: String,
    pub split: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snr_db: Option<f64>,
    /// Whether faces were to be evaluated, and whether the voice was.
    pub faces_expected: bool,
    pub voice_expected: bool,
    pub report: Option<EvalReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<VoiceReport>,
    /// Why the clip could not be evaluated (output missing, undecodable, another size).
    pub error: Option<String>,
}

/// The exposure figures of a group of clips.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct ExposureSummary {
    /// The group: a condition, `all (tune)`, `all (holdout)` or `all`.
    pub group: String,
    pub clips: usize,
    pub boxes: u64,
    pub leaked: u64,
    pub leak_rate: f64,
    /// The longest run of unredacted frames of any face, and where (`clip#face@frame`).
    pub longest_run_frames: u64,
    pub longest_run_s: f64,
    pub longest_run_at: Option<String>,
    pub max_delay_frames: u64,
    pub max_delay_s: f64,
    /// The largest share of the picture outside faces that was altered, of any clip.
    pub outside_altered_max: f64,
    /// Clips that could not be evaluated.
    pub errors: usize,
}

impl ExposureSummary {
    fn of<'a>(group: &str, clips: impl IntoIterator<Item = &'a ClipEval>) -> ExposureSummary {
        let mut s = ExposureSummary {
            group: group.to_string(),
            ..ExposureSummary::default()
        };
        for c in clips.into_iter().filter(|c| c.faces_expected) {
            s.clips += 1;
            let Some(r) = &c.report else {
                s.errors += 1;
                continue;
            };
            s.boxes += r.boxes;
            s.leaked += r.boxes - r.redacted;
            for f in &r.faces {
                if f.longest_run_frames > s.longest_run_frames {
                    s.longest_run_frames = f.longest_run_frames;
                    s.longest_run_s = f.longest_run_s;
                    s.longest_run_at = Some(format!(
                        "{}#{}@{}",
                        c.name,
                        f.face,
                        f.longest_run_from.unwrap_or(0)
                    ));
                }
            }
            if r.max_delay_frames > s.max_delay_frames {
                s.max_delay_frames = r.max_delay_frames;
                s.max_delay_s = r.max_delay_s;
            }
            s.outside_altered_max = s.outside_altered_max.max(r.outside_altered);
        }
        s.leak_rate = if s.boxes > 0 {
            s.leaked as f64 / s.boxes as f64
        } else {
            0.0
        };
        s
    }
}

/// A folder's evaluation: each clip, each condition, each split and all of it.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusReport {
    pub clips: Vec<ClipEval>,
    /// One row per condition (name order), then `all (tune)` and `all (holdout)` where the
    /// clips say their split, then `all`.
    pub summary: Vec<ExposureSummary>,
    /// The voice side where clips have it: one row per condition, per SNR, per split, all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub voice_summary: Vec<VoiceSummary>,
}

impl CorpusReport {
    fn new(clips: Vec<ClipEval>) -> CorpusReport {
        let mut conditions: Vec<&str> = clips
            .iter()
            .filter(|c| c.faces_expected)
            .map(|c| c.condition.as_str())
            .collect();
        conditions.sort_unstable();
        conditions.dedup();
        let mut summary: Vec<ExposureSummary> = conditions
            .iter()
            .map(|k| ExposureSummary::of(k, clips.iter().filter(|c| c.condition == *k)))
            .collect();
        for split in ["tune", "holdout"] {
            let of_split = || {
                clips
                    .iter()
                    .filter(|c| c.faces_expected && c.split.as_deref() == Some(split))
            };
            if of_split().next().is_some() {
                summary.push(ExposureSummary::of(&format!("all ({split})"), of_split()));
            }
        }
        summary.push(ExposureSummary::of("all", &clips));
        let voice_summary = voice_rows(&clips);
        if !clips.iter().any(|c| c.faces_expected) {
            summary.clear();
        }
        CorpusReport {
            clips,
            summary,
            voice_summary,
        }
    }

    /// The overall row of the faces (empty where no clip has faces).
    pub fn all(&self) -> ExposureSummary {
        self.summary.last().cloned().unwrap_or_default()
    }

    /// Clips that could not be evaluated, faces or voice.
    pub fn errors(&self) -> usize {
        self.clips.iter().filter(|c| c.error.is_some()).count()
    }

    /// The table `obscura eval` prints for a folder.
    pub fn table(&self) -> String {
        let mut t = String::new();
        if !self.summary.is_empty() {
            t.push_str(&self.faces_table());
        }
        if !self.voice_summary.is_empty() {
            if !t.is_empty() {
                t.push('\n');
            }
            t.push_str(&voice::table(&self.voice_summary));
        }
        for c in &self.clips {
            if let Some(e) = &c.error {
                t.push_str(&format!("{}: {e}\n", c.name));
            }
        }
        t
    }

    fn faces_table(&self) -> String {
        let mut t = format!(
            "{:<16} {:>5} {:>7} {:>7} {:>7} {:>13} {:>13} {:>9}\n",
            "condition",
            "clips",
            "boxes",
            "leaked",
            "leak%",
            "longest run",
            "max delay",
            "altered%"
        );
        for s in &self.summary {
            let frames_s = |n: u64, secs: f64| format!("{n} ({secs:.2}s)");
            t.push_str(&format!(
                "{:<16} {:>5} {:>7} {:>7} {:>7.2} {:>13} {:>13} {:>9.2}{}\n",
                s.group,
                s.clips,
                s.boxes,
                s.leaked,
                100.0 * s.leak_rate,
                frames_s(s.longest_run_frames, s.longest_run_s),
                frames_s(s.max_delay_frames, s.max_delay_s),
                100.0 * s.outside_altered_max,
                if s.errors > 0 {
                    format!("  ({} not evaluated)", s.errors)
                } else {
                    String::new()
                }
            ));
        }
        t
    }
}

/// Whether a clip's time outside speech counts for the muted figures: not where its noise is
/// speech itself (`babble`, which may be muted) or where there is no noise (`clean`).
fn muted_counts(c: &ClipEval) -> bool {
    !matches!(c.condition.as_str(), "babble" | "clean")
}

/// The voice rows of a folder: per condition, per SNR, per split, then all.
fn voice_rows(clips: &[ClipEval]) -> Vec<VoiceSummary> {
    let voiced: Vec<&ClipEval> = clips.iter().filter(|c| c.voice_expected).collect();
    if voiced.is_empty() {
        return Vec::new();
    }
    let of = |group: &str, keep: &dyn Fn(&ClipEval) -> bool| {
        VoiceSummary::of(
            group,
            voiced
                .iter()
                .filter(|c| keep(c))
                .map(|c| (c.name.as_str(), c.voice.as_ref(), muted_counts(c))),
        )
    };
    let mut rows = Vec::new();
    let mut conditions: Vec<&str> = voiced.iter().map(|c| c.condition.as_str()).collect();
    conditions.sort_unstable();
    conditions.dedup();
    for k in conditions {
        rows.push(of(k, &|c| c.condition == k));
    }
    let mut snrs: Vec<i64> = voiced
        .iter()
        .filter_map(|c| c.snr_db.map(|d| d.round() as i64))
        .collect();
    snrs.sort_unstable_by(|a, b| b.cmp(a));
    snrs.dedup();
    for d in snrs {
        rows.push(of(&format!("{d} dB"), &|c| {
            c.snr_db.map(|x| x.round() as i64) == Some(d)
        }));
    }
    for split in ["tune", "holdout"] {
        if voiced.iter().any(|c| c.split.as_deref() == Some(split)) {
            rows.push(of(&format!("all ({split})"), &|c| {
                c.split.as_deref() == Some(split)
            }));
        }
    }
    rows.push(of("all", &|_| true));
    rows
}

/// Evaluates every clip of `inputs` that has ground truth (`*.gt.json`, naming its video)
/// against the file of the same name in `outputs` (what `obscura batch inputs --out outputs`
/// writes). A clip that cannot be evaluated is reported with its error; no ground truth at
/// all is an error.
pub fn evaluate_folder(
    inputs: &Path,
    outputs: &Path,
    redacted_below: f64,
) -> std::io::Result<CorpusReport> {
    let mut gts: Vec<std::path::PathBuf> = std::fs::read_dir(inputs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".gt.json"))
        })
        .collect();
    gts.sort();
    if gts.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: no ground truth (*.gt.json) in it", inputs.display()),
        ));
    }
    let mut clips = Vec::new();
    for p in gts {
        let gt = GroundTruth::load(&p)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        // The video is named by the ground truth: a bare file name beside it, nothing else.
        let named = if gt.video.is_empty() {
            clip_beside(&p)
        } else {
            Some(gt.video.clone())
        };
        // The clip is named by the ground truth: a bare file name beside it, nothing else.
        let name = named
            .as_deref()
            .and_then(|v| Path::new(v).file_name())
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let condition = gt.condition.clone().unwrap_or_else(|| {
            Path::new(&name)
                .file_stem()
                .map_or(name.clone(), |s| s.to_string_lossy().to_string())
        });
        let (faces_expected, voice_expected) = (gt.has_video(), gt.has_voice());
        let (mut report, mut voice, mut error) = (None, None, None);
        if name.is_empty() || Some(&name) != named.as_ref() {
            error = Some(format!(
                "{}: 'video' must be a file name beside it (or left out, with one NAME.* beside it)",
                p.display()
            ));
        } else {
            let (input, output) = (inputs.join(&name), outputs.join(&name));
            if faces_expected {
                match evaluate_with(&input, &output, &gt, redacted_below) {
                    Ok(r) => report = Some(r),
                    Err(e) => error = Some(e.to_string()),
                }
            }
            if voice_expected && error.is_none() {
                match voice::evaluate(&input, &output, &gt.speech) {
                    Ok(r) => voice = Some(r),
                    Err(e) => error = Some(format!("voice: {e}")),
                }
            }
        }
        clips.push(ClipEval {
            name,
            condition,
            split: gt.split.clone(),
            snr_db: gt.snr_db,
            faces_expected,
            voice_expected,
            report,
            voice,
            error,
        });
    }
    Ok(CorpusReport::new(clips))
}

/// The one media file `NAME.*` beside `NAME.gt.json` (none, or more than one: `None`).
fn clip_beside(gt: &Path) -> Option<String> {
    let stem = gt.file_name()?.to_str()?.strip_suffix(".gt.json")?;
    let mut found = std::fs::read_dir(gt.parent()?)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            Path::new(n).file_stem().and_then(|s| s.to_str()) == Some(stem) && !n.ends_with(".json")
        });
    let one = found.next()?;
    found.next().is_none().then_some(one)
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

    /// Feeds a face's frames (frame, redacted) and returns its exposure at 10 fps.
    fn exposure(frames: &[(u64, bool)]) -> FaceExposure {
        let mut acc = FaceAcc::default();
        for &(i, red) in frames {
            acc.see(i, 16.0, red);
        }
        acc.finish(7, 10.0)
    }

    #[test]
    fn the_longest_run_and_the_delay_count_visible_unredacted_frames() {
        // Frames 3..=5 left showing before the first redaction, then one frame, then a hidden
        // gap (8, 9 not visible) inside a run of three.
        let e = exposure(&[
            (3, false),
            (4, false),
            (5, false),
            (6, true),
            (7, false),
            (10, false),
            (11, false),
            (12, true),
        ]);
        assert_eq!((e.boxes, e.leaked, e.first_frame), (8, 6, 3));
        assert_eq!((e.delay_frames, e.longest_run_frames), (3, 3));
        assert_eq!(e.longest_run_from, Some(3));
        assert!((e.delay_s - 0.3).abs() < 1e-9);
        let later = exposure(&[(0, true), (1, false), (2, false), (3, false), (4, false)]);
        assert_eq!((later.delay_frames, later.longest_run_frames), (0, 4));
        assert_eq!(later.longest_run_from, Some(1));
    }

    #[test]
    fn a_face_never_redacted_is_delayed_by_all_its_frames_and_one_always_redacted_by_none() {
        let never = exposure(&[(0, false), (1, false), (5, false)]);
        assert_eq!((never.delay_frames, never.longest_run_frames), (3, 3));
        let always = exposure(&[(0, true), (1, true)]);
        assert_eq!(
            (
                always.delay_frames,
                always.longest_run_frames,
                always.leaked
            ),
            (0, 0, 0)
        );
        assert_eq!(always.longest_run_from, None);
    }

    #[test]
    fn size_classes_cover_every_width() {
        assert_eq!(size_class(3.0), "<12");
        assert_eq!(size_class(12.0), "12-15");
        assert_eq!(size_class(15.9), "12-15");
        assert_eq!(size_class(23.5), "16-23");
        assert_eq!(size_class(24.0), "24-39");
        assert_eq!(size_class(400.0), "40+");
    }

    #[test]
    fn a_folder_summary_groups_by_condition_and_split() {
        let clip = |name: &str, cond: &str, split: &str, boxes, redacted, run| ClipEval {
            name: name.into(),
            condition: cond.into(),
            split: Some(split.into()),
            report: Some(EvalReport {
                boxes,
                redacted,
                fps: 10.0,
                outside_altered: 0.01,
                faces: vec![FaceExposure {
                    face: 1,
                    longest_run_frames: run,
                    longest_run_s: run as f64 / 10.0,
                    longest_run_from: Some(4),
                    ..FaceExposure::default()
                }],
                ..EvalReport::default()
            }),
            snr_db: None,
            faces_expected: true,
            voice_expected: false,
            voice: None,
            error: None,
        };
        let mut bad = clip("c.mp4", "dusk", "holdout", 0, 0, 0);
        bad.report = None;
        bad.error = Some("missing".into());
        let r = CorpusReport::new(vec![
            clip("a.mp4", "night", "tune", 100, 99, 1),
            clip("b.mp4", "night", "holdout", 100, 97, 3),
            bad,
        ]);
        let groups: Vec<&str> = r.summary.iter().map(|s| s.group.as_str()).collect();
        assert_eq!(
            groups,
            ["dusk", "night", "all (tune)", "all (holdout)", "all"]
        );
        let night = &r.summary[1];
        assert_eq!(
            (night.boxes, night.leaked, night.longest_run_frames),
            (200, 4, 3)
        );
        assert_eq!(night.longest_run_at.as_deref(), Some("b.mp4#1@4"));
        assert_eq!(r.all().errors, 1);
        assert!(r.table().contains("c.mp4: missing"));
    }
}
