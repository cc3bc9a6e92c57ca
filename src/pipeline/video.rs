//! The video stages: detect (main pass on the frame shrunk to the detector's input by
//! `detect::shrink`, zoom pass on magnified tiles of the full frame), track (boxes become
//! final after the tracker's delay), redact (styles on the I420 planes in place, then
//! hand-off to the encoder).
//!
//! Fail closed: a frame reaches the encoder only through the redact stage, and the redact
//! stage stops handing frames on as soon as any stage has failed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use gstreamer as gst;
use gstreamer_video as gst_video;

use super::{Control, DetectedFrame, FirstError, PipelineError, StageResults, end_time, internal};
use crate::detect::shrink::{ShrinkScratch, shrink_nchw};
use crate::detect::tracker::{TrackLog, Tracker};
use crate::detect::zoom::{I420, Tile};
use crate::detect::{DetectError, FaceDetector, NchwTensor};
use crate::redact::video::{PlaneMut, redact_planes};
use crate::types::*;

pub(super) struct DetectStage {
    pub(super) input: PathBuf,
    pub(super) full: Receiver<gst::Sample>,
    pub(super) detector: Option<Box<dyn FaceDetector>>,
    /// Builds the second detector of grey sweeps (`detect.grey_second_model`) when a clip
    /// turns out grey; `second` holds it then.
    pub(super) second_loader: Option<SecondLoader>,
    pub(super) second: Option<Box<dyn FaceDetector>>,
    pub(super) det_size: (u32, u32),
    pub(super) frame_size: (u32, u32),
    pub(super) every: u32,
    pub(super) batch: usize,
    /// Zoom-pass tiles (empty: no zoom pass) and how often the pass runs.
    pub(super) zoom_tiles: Vec<Tile>,
    pub(super) zoom_every: u32,
    /// Largest face (frame pixels) the zoom pass reports.
    pub(super) zoom_max_face: f32,
    /// The detector's input tensor (main pass and zoom tiles), kept between runs: tens of MB
    /// at 720p for a zoom sweep, not allocated afresh each time.
    pub(super) tensor: Vec<f32>,
    /// The main pass's shrink (`detect::shrink`): its taps and rows, kept between frames.
    pub(super) shrink: ShrinkScratch,
    /// The frames' `VideoInfo`, for mapping them.
    pub(super) info: FrameInfo,
    /// Magnification of the zoom pass.
    pub(super) zoom_factor: f32,
    /// Magnification on a grey picture (`detect.grey_zoom`; 0: none), decided on the clip's
    /// first frame.
    pub(super) grey_zoom: f32,
    /// The first, cheaper look of each sweep (none: every sweep magnifies all it looks at).
    pub(super) zoom_proposal: Option<Proposal>,
    /// Every n-th sweep covers the whole frame (1: every sweep does).
    pub(super) zoom_full_every: u32,
    /// How far around a changed block a partial sweep looks (frame pixels): faces up to this
    /// size that touch the block lie whole inside the region; larger ones are the main pass's.
    pub(super) zoom_change_pad: u32,
    /// What the last sweep saw.
    pub(super) zoom_memory: Option<PassMemory>,
    /// Sweeps so far (the sidecar's `detector.zoom`).
    pub(super) zoom_sweeps: ZoomSweeps,
    /// Every n-th main pass covers the whole frame (1: every pass does).
    pub(super) main_full_every: u32,
    /// How far around a changed block a partial main pass looks (frame pixels).
    pub(super) main_change_pad: u32,
    /// What the last main pass saw.
    pub(super) main_memory: Option<PassMemory>,
    /// Main passes so far (the sidecar's `detector.main`).
    pub(super) main_passes: MainPasses,
    /// The input tensor of one crop of a partial main pass, kept between runs.
    pub(super) crop: Vec<f32>,
    /// The small faces the follow look goes back to at the next main pass (see
    /// [`DetectStage::follow_detect`]), with the follow looks in a row that missed each.
    pub(super) follow: Vec<Followed>,
    /// The last grey sweep's candidates, followed from the next main pass.
    pub(super) sweep_candidates: Vec<Detection>,
    /// Whether the follow look runs (`detect.follow`).
    pub(super) follow_on: bool,
    /// Whether grey, dark and washed-out frames are stretched for the detector
    /// (`detect.stretch_contrast`).
    pub(super) stretch_contrast: bool,
    pub(super) out: Sender<DetectedFrame>,
    pub(super) ticks: Arc<AtomicU64>,
    pub(super) results: Arc<Mutex<StageResults>>,
}

/// What a pass (main or zoom) last saw: for every pixel, its luma when the pass last looked
/// at it (the whole frame after a full pass; the zoom pass keeps its last sweep's frame, a
/// partial main pass writes only the regions it looked at, so that slow change elsewhere adds
/// up until it is looked at), the faces the pass ended with, and passes since a full one.
pub(super) struct PassMemory {
    luma: Vec<u8>,
    dets: Vec<Detection>,
    since_full: u32,
}

impl PassMemory {
    fn new(planes: &I420<'_>, dets: Vec<Detection>, since_full: u32) -> PassMemory {
        PassMemory {
            luma: crate::detect::zoom::packed_luma(
                planes.y,
                planes.strides[0],
                planes.width,
                planes.height,
            ),
            dets,
            since_full,
        }
    }

    /// What changed in `planes` since the pass last looked; `None` when the next pass must
    /// be whole (a full one is due every `full_every`-th pass, or too much changed).
    /// `follow_motion`: whether a pan of the whole picture is searched for (the zoom pass)
    /// or makes the pass whole (the main pass, a still camera only).
    fn change(
        &self,
        planes: &I420<'_>,
        full_every: u32,
        pad: u32,
        follow_motion: bool,
    ) -> Option<crate::detect::zoom::ChangeSet> {
        if self.since_full + 1 >= full_every {
            return None;
        }
        crate::detect::zoom::ChangeSet::compare(
            &self.luma,
            planes.y,
            planes.strides[0],
            planes.width,
            planes.height,
            pad,
            follow_motion,
        )
    }
}

/// Runs the detector of a `pass` on `tensor`. No detector is an error: a pass is scheduled
/// only with one (see `run`), and none would mean no boxes for the frame, so never an
/// empty result.
fn run_detector(
    detector: &mut Option<Box<dyn FaceDetector>>,
    input: &std::path::Path,
    pass: &str,
    tensor: NchwTensor<'_>,
) -> Result<Vec<Vec<Detection>>, PipelineError> {
    let threshold = detector_of(detector, input, pass)?.threshold();
    run_detector_at(detector, input, pass, tensor, threshold)
}

/// [`run_detector`] reporting what scores above `threshold` instead of the detector's own.
fn run_detector_at(
    detector: &mut Option<Box<dyn FaceDetector>>,
    input: &std::path::Path,
    pass: &str,
    tensor: NchwTensor<'_>,
    threshold: f32,
) -> Result<Vec<Vec<Detection>>, PipelineError> {
    let det = detector
        .as_mut()
        .ok_or_else(|| internal(input, format!("the {pass} ran without a detector")))?;
    det.detect_tensor_at(tensor, threshold)
        .map_err(|source| PipelineError::Detect {
            path: input.to_path_buf(),
            source,
        })
}

/// The detector a `pass` runs (an error without one, as in [`run_detector`]): its channel
/// order and threshold.
fn detector_of<'a>(
    detector: &'a Option<Box<dyn FaceDetector>>,
    input: &std::path::Path,
    pass: &str,
) -> Result<&'a dyn FaceDetector, PipelineError> {
    detector
        .as_deref()
        .ok_or_else(|| internal(input, format!("the {pass} ran without a detector")))
}

/// Detector pixels one more ONNX Runtime run costs as much as (YuNet-n, one CPU thread: a run
/// of 64x64 input takes 0.3 ms, 576x320 5.7 ms): a region is merged with a neighbour when the
/// one rectangle over both costs fewer extra pixels than this.
const MAIN_RUN_COST_PX: u64 = 6_000;

/// A partial main pass runs only while its crops (plus one run's cost each) come to less than
/// this share of the whole frame's input.
const MAIN_PARTIAL_MAX_SHARE: f32 = 0.75;

/// How a zoom sweep first looks at what it sweeps: at `scale` (a quarter of the zoom's pixels
/// at the defaults), keeping what scores above `threshold`; only around those proposals that
/// score below the detector's own threshold does it magnify (`detect.zoom_proposal_threshold`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Proposal {
    pub(super) scale: f32,
    pub(super) threshold: f32,
}

/// Frame pixels one more ONNX Runtime run of a zoom sweep costs as much as, at `scale`.
fn run_cost_frame_px(scale: f32) -> u64 {
    (MAIN_RUN_COST_PX as f32 / (scale * scale)).round() as u64
}

/// Builds a detector on demand (the second detector of grey sweeps).
pub(super) type SecondLoader =
    Box<dyn FnOnce() -> Result<Box<dyn FaceDetector>, crate::detect::DetectError> + Send>;

/// A small face the follow look goes back to, the follow looks in a row that missed it, and
/// whether it is only a candidate: what a grey sweep scored between
/// [`GREY_CANDIDATE_THRESHOLD`] and the detector's threshold, a face only once a follow look
/// scores it above the detector's threshold.
pub(super) type Followed = (Detection, u32, bool);

/// On a grey picture (night infrared), a sweep's detections from this score up to the
/// detector's threshold are followed as candidates: the next follow looks (a tile centred on
/// each, every main pass) confirm one as a face when they score it above the detector's
/// threshold, and the tracker's look-back then covers the frames back to the sweep. The
/// sensor noise makes a small face's score jump from frame to frame: night_ir's 16 px face
/// scored 0.18-0.27 on the sweeps of frames 0 and 20 and 0.8 on frame 3, and stayed
/// unredacted for 21 frames.
const GREY_CANDIDATE_THRESHOLD: f32 = 0.2;

/// The detector score above which a follow look reports a face: lower than the detector's
/// own, since it looks only where a face was a main pass ago (ByteTrack's second stage: a
/// face scored 0.3-0.5 on and off stays followed), not so low that texture beside it counts.
const FOLLOW_THRESHOLD: f32 = 0.3;

/// The follow look's threshold on a grey picture (night infrared), whose sensor noise holds a
/// small face's scores down: night clips of the stress corpus 2.6% -> 1.9% of boxes shown, the
/// judge clips 1.29% -> 1.19%, with no more of the picture altered (0.06-0.09%). On colour
/// footage 0.15 took texture beside faces (city_pan: 6 -> 9 boxes shown, 1.25% -> 1.47% altered).
const GREY_FOLLOW_THRESHOLD: f32 = 0.15;

/// How far around a followed face its follow look reaches, in face sizes (at least 16 px)
/// per side: room for a walking face between two main passes and the context the detector
/// needs.
const FOLLOW_REACH: f32 = 1.0;

/// The region of a `fw x fh` frame around a face box `b`: `sizes` times its size (at least
/// 16 px) of context on every side, clipped to the frame.
fn region_around(b: &crate::geom::BoxF, sizes: f32, (fw, fh): (f32, f32)) -> crate::geom::Rect {
    let grow = sizes * b.w.max(b.h).max(16.0);
    crate::geom::Rect {
        x0: (b.x - grow).floor().clamp(0.0, fw) as usize,
        y0: (b.y - grow).floor().clamp(0.0, fh) as usize,
        x1: (b.x + b.w + grow).ceil().clamp(0.0, fw) as usize,
        y1: (b.y + b.h + grow).ceil().clamp(0.0, fh) as usize,
    }
}

/// The contrast stretch of a frame's luma (`detect::contrast`), when it is `on`
/// (`detect.stretch_contrast`).
fn stretch_for(on: bool, planes: &I420<'_>) -> Option<crate::detect::contrast::Stretch> {
    if !on {
        return None;
    }
    crate::detect::contrast::Stretch::of_luma(
        planes.y,
        planes.strides[0],
        planes.width as usize,
        planes.height as usize,
    )
}

/// Whether `found` is the face `was` a main pass later: its centre within half a face size
/// (at least 8 px) of where it was, at 0.6-1.6 times its width.
fn is_followed(was: &crate::geom::BoxF, found: &crate::geom::BoxF) -> bool {
    let reach = (0.5 * was.w.max(was.h)).max(8.0);
    let ratio = found.w / was.w.max(1e-3);
    was.center_distance(found) <= reach && (0.6..=1.6).contains(&ratio)
}

/// Follow looks in a row that may miss a face before it is left to the next sweep.
const FOLLOW_MISSES: u32 = 2;

/// Follow looks a grey sweep's candidate gets to be confirmed in (about the main passes until
/// the next sweep at the defaults: 20 fps, a main pass every third frame, a sweep a second).
const CANDIDATE_LOOKS: u32 = 6;

/// The most a follow look may cost, as a share of a whole zoom sweep's pixels.
const FOLLOW_BUDGET: f32 = 0.25;

/// How much longer than `zoom_max_face` a small face's box may be in its other direction
/// (faces are about 1.2 times as high as wide; a face cut by the frame's edge is shorter).
const SMALL_FACE_ASPECT: f32 = 1.5;

/// A frame waiting for the detector: whether the main pass and the zoom pass run on it.
struct Pending {
    frame: Frame,
    main: bool,
    zoom: bool,
}

impl DetectStage {
    pub(super) fn run(mut self) -> Result<(), PipelineError> {
        let _span = tracing::debug_span!("detect").entered();
        let mut index: u64 = 0;
        // Every decoded frame, shown or not: the main pass runs on every `every`-th of these.
        let mut decoded: u64 = 0;
        let mut pending: Vec<Pending> = Vec::new();
        let mut detect_time = Duration::ZERO;
        let has_detector = self.detector.is_some();
        loop {
            let Ok(full) = self.full.recv() else { break };
            let main = has_detector && decoded.is_multiple_of(u64::from(self.every));
            decoded += 1;
            // Frames outside the demuxer's segment (cut by an edit list) are not shown.
            let Some(frame) = sample_to_frame(&self.input, index, &full)? else {
                continue;
            };
            match super::fault::get() {
                Some(super::fault::Fault::DetectError(n)) if n == index => {
                    return Err(self.detect_err(DetectError::Inference {
                        model: "fault injection".into(),
                        reason: format!("OBSCURA_FAULT detect-error at frame {n}"),
                    }));
                }
                Some(super::fault::Fault::DetectStall(n)) if n == index => {
                    // Stuck for good, as a hung inference would be: the watchdog must fail
                    // the run, and the run must end without this stage.
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                _ => {}
            }
            if index == 0 && has_detector {
                self.sweep_grey_pictures_closer(&frame)?;
            }
            let zoom = has_detector
                && !self.zoom_tiles.is_empty()
                && index.is_multiple_of(u64::from(self.zoom_every));
            index += 1;
            self.ticks.fetch_add(1, Ordering::Relaxed);
            pending.push(Pending { frame, main, zoom });
            let mains = pending.iter().filter(|p| p.main).count();
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
            if !self.zoom_tiles.is_empty() {
                r.zoom = Some(self.zoom_sweeps);
            }
            if has_detector {
                r.main = Some(self.main_passes);
            }
        }
        Ok(())
    }

    fn detect_err(&self, source: DetectError) -> PipelineError {
        PipelineError::Detect {
            path: self.input.clone(),
            source,
        }
    }

    /// Runs the main pass on the frames marked for it (as one batch) and the zoom
    /// pass on the frames marked for it, then sends every frame on, in order. Returns false
    /// when downstream has gone (the run is failing).
    fn flush(&mut self, batch: Vec<Pending>) -> Result<bool, PipelineError> {
        let mut main: Vec<Vec<Detection>> = Vec::new();
        if self.detector.is_some() {
            let frames: Vec<&Frame> = batch.iter().filter(|p| p.main).map(|p| &p.frame).collect();
            if frames.len() == 1 && self.batch == 1 && self.main_full_every > 1 {
                main.push(self.main_pass_one(frames[0])?);
            } else if !frames.is_empty() {
                main = self.main_pass_whole(&frames)?;
            }
        }
        let mut main = main.into_iter();
        for p in batch {
            let mut dets: Option<Vec<Detection>> = if p.main { main.next() } else { None };
            if p.zoom {
                let z = self.zoom_detect(&p.frame)?;
                let candidates = std::mem::take(&mut self.sweep_candidates);
                self.follow = z
                    .iter()
                    .map(|d| (*d, 0, false))
                    .chain(candidates.into_iter().map(|d| (d, 0, true)))
                    .collect();
                let mut all = dets.take().unwrap_or_default();
                all.extend(z);
                dets = Some(merge(all));
            } else if let Some(main_dets) = dets.take() {
                let followed = self.follow_detect(&p.frame, &main_dets)?;
                let mut all = main_dets;
                all.extend(followed);
                dets = Some(merge(all));
            }
            if self.out.send((p.frame, dets)).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The main pass over the whole of `frames` (as one batch): each frame shrunk straight
    /// from its planes into the input tensor.
    fn main_pass_whole(&mut self, frames: &[&Frame]) -> Result<Vec<Vec<Detection>>, PipelineError> {
        let order = detector_of(&self.detector, &self.input, "main pass")?.channel_order();
        let (w, h) = self.det_size;
        let one = 3 * w as usize * h as usize;
        self.tensor.resize(one * frames.len(), 0.0);
        let stretch_on = self.stretch_contrast;
        for (f, dst) in frames.iter().zip(self.tensor.chunks_exact_mut(one)) {
            let scratch = &mut self.shrink;
            with_planes(&self.input, f, &mut self.info, "the main pass", |planes| {
                shrink_nchw(planes, w as usize, h as usize, order, scratch, dst);
                if let Some(s) = stretch_for(stretch_on, planes) {
                    s.apply(dst);
                }
            })?;
        }
        let raw = run_detector(
            &mut self.detector,
            &self.input,
            "main pass",
            NchwTensor {
                data: &self.tensor,
                batch: frames.len(),
                width: w,
                height: h,
            },
        )?;
        let n = frames.len() as u64;
        self.main_passes.passes += n;
        self.main_passes.full += n;
        self.main_passes.input_mpx += (n * u64::from(w * h)) as f64 / 1e6;
        let scale = (
            self.frame_size.0 as f32 / w as f32,
            self.frame_size.1 as f32 / h as f32,
        );
        Ok(raw
            .into_iter()
            .map(|dets| self.to_frame(dets, (0.0, 0.0), scale, self.every))
            .collect())
    }

    /// The main pass on one frame, over the whole frame or, on a still camera, only around
    /// what changed since the last pass: the regions around the changed blocks and every face
    /// of the last pass that a changed block touches, whole (a face that turns or speaks is
    /// looked at again as a face, not as the patch that moved). The faces of the last pass
    /// elsewhere stand — the same pixels give the detector the same answer. Every
    /// `main_full_every`-th pass, a pan, a cut or a frame with much change looks at it all.
    fn main_pass_one(&mut self, frame: &Frame) -> Result<Vec<Detection>, PipelineError> {
        let order = detector_of(&self.detector, &self.input, "main pass")?.channel_order();
        let (w, h) = (self.det_size.0 as usize, self.det_size.1 as usize);
        let (fw, fh) = self.frame_size;
        let vf = map_readable(&self.input, frame, &mut self.info, "the main pass")?;
        let planes = planes_of(&self.input, &vf)?;
        let change = self
            .main_memory
            .as_ref()
            .and_then(|m| m.change(&planes, self.main_full_every, self.main_change_pad, false));
        // The regions to look at again, as crops of the detector's input (multiples of 32).
        let plan = change.and_then(|c| {
            let m = self.main_memory.as_ref()?;
            let (carried, touched): (Vec<&Detection>, Vec<&Detection>) =
                m.dets.iter().partition(|d| c.carry(d.bbox).is_some());
            let carried: Vec<Detection> = carried.into_iter().copied().collect();
            let mut regions = c.regions.clone();
            let pad = self.main_change_pad as f32;
            for d in touched {
                let b = d.bbox;
                let (gx, gy) = (0.25 * b.w + pad, 0.25 * b.h + pad);
                regions.push(crate::geom::Rect {
                    x0: (b.x - gx).floor().max(0.0) as usize,
                    y0: (b.y - gy).floor().max(0.0) as usize,
                    x1: ((b.x + b.w + gx).ceil() as usize).min(fw as usize),
                    y1: ((b.y + b.h + gy).ceil() as usize).min(fh as usize),
                });
            }
            let (sx, sy) = (w as f32 / fw as f32, h as f32 / fh as f32);
            let slack = (MAIN_RUN_COST_PX as f32 / (sx * sy)) as u64;
            let regions = crate::detect::zoom::merge_regions(regions, slack);
            let crops: Vec<crate::geom::Rect> = regions
                .iter()
                .map(|r| {
                    let axis = |a0: usize, a1: usize, s: f32, len: usize| {
                        let lo = ((a0 as f32 * s).floor() as usize).min(len);
                        let hi = ((a1 as f32 * s).ceil() as usize).clamp(lo, len);
                        let size = (hi - lo).max(1).div_ceil(32) * 32;
                        let size = size.min(len);
                        let lo = lo.min(len - size);
                        (lo, lo + size)
                    };
                    let (x0, x1) = axis(r.x0, r.x1, sx, w);
                    let (y0, y1) = axis(r.y0, r.y1, sy, h);
                    crate::geom::Rect { x0, y0, x1, y1 }
                })
                .collect();
            let cost: u64 = crops.iter().map(|r| r.area() + MAIN_RUN_COST_PX).sum();
            (!c.any() || (cost as f32) < MAIN_PARTIAL_MAX_SHARE * (w * h) as f32)
                .then_some((carried, regions, crops))
        });
        let one = 3 * w * h;
        let (fsx, fsy) = (fw as f32 / w as f32, fh as f32 / h as f32);
        let Some((carried, regions, crops)) = plan else {
            // The whole frame.
            let dets = self.main_pass_whole(&[frame])?.pop().unwrap_or_default();
            self.main_memory = Some(PassMemory::new(&planes, dets.clone(), 0));
            return Ok(dets);
        };
        let mut found = Vec::new();
        self.tensor.resize(one, 0.0);
        if !crops.is_empty() {
            shrink_nchw(
                &planes,
                w,
                h,
                order,
                &mut self.shrink,
                &mut self.tensor[..one],
            );
            if let Some(s) = stretch_for(self.stretch_contrast, &planes) {
                s.apply(&mut self.tensor[..one]);
            }
        }
        for c in &crops {
            let (cw, ch) = (c.width(), c.height());
            self.crop.resize(3 * cw * ch, 0.0);
            for (src, dst) in self.tensor[..one]
                .chunks_exact(w * h)
                .zip(self.crop.chunks_exact_mut(cw * ch))
            {
                for (y, row) in dst.chunks_exact_mut(cw).enumerate() {
                    let at = (c.y0 + y) * w + c.x0;
                    row.copy_from_slice(&src[at..at + cw]);
                }
            }
            let raw = run_detector(
                &mut self.detector,
                &self.input,
                "main pass",
                NchwTensor {
                    data: &self.crop,
                    batch: 1,
                    width: cw as u32,
                    height: ch as u32,
                },
            )?;
            let offset = (c.x0 as f32 * fsx, c.y0 as f32 * fsy);
            for d in raw {
                found.extend(self.to_frame(d, offset, (fsx, fsy), self.every));
            }
            self.main_passes.input_mpx += (cw * ch) as f64 / 1e6;
        }
        self.main_passes.passes += 1;
        self.main_passes.unchanged += u64::from(crops.is_empty());
        // A face seen whole before and away from every change stands; what a crop found over
        // it was cut by the crop's edge.
        found.retain(|f| carried.iter().all(|k| f.bbox.iou(&k.bbox) <= MERGE_IOU));
        found.extend(carried);
        let dets = merge(found);
        if let Some(m) = self.main_memory.as_mut() {
            // The regions looked at now hold this frame's luma; the rest keeps the luma it
            // had when it was last looked at.
            // The change test compared planes of the remembered size: `regions` lie inside.
            let (stride, pw, ph) = (
                planes.strides[0],
                planes.width as usize,
                planes.height as usize,
            );
            for r in &regions {
                let x1 = r.x1.min(pw);
                for y in r.y0..r.y1.min(ph) {
                    if r.x0 < x1 {
                        m.luma[y * pw + r.x0..y * pw + x1]
                            .copy_from_slice(&planes.y[y * stride + r.x0..y * stride + x1]);
                    }
                }
            }
            m.dets = dets.clone();
            m.since_full += 1;
        }
        Ok(dets)
    }

    /// On a grey first frame (a camera in night infrared mode), the zoom pass magnifies
    /// `grey_zoom` times, all it looks at: on the noisy grey picture the cheaper first look
    /// scored a 14 px face below the proposal threshold, and 2x did not find it either.
    fn sweep_grey_pictures_closer(&mut self, frame: &Frame) -> Result<(), PipelineError> {
        if self.zoom_tiles.is_empty() || self.grey_zoom <= 0.0 {
            return Ok(());
        }
        let vf = map_readable(&self.input, frame, &mut self.info, "the grey check")?;
        let planes = planes_of(&self.input, &vf)?;
        if crate::detect::zoom::is_grey(&planes) {
            // A `detect.zoom` already above `grey_zoom` is kept; the rest of the grey setting
            // (no first look, the follow look's lower threshold) holds either way.
            if self.grey_zoom > self.zoom_factor {
                self.zoom_factor = self.grey_zoom;
                self.zoom_tiles = crate::detect::zoom::layout(
                    self.frame_size.0,
                    self.frame_size.1,
                    self.grey_zoom,
                );
            }
            self.zoom_proposal = None;
            self.zoom_sweeps.grey = true;
            if let Some(load) = self.second_loader.take() {
                let second = load().map_err(|source| PipelineError::Detect {
                    path: self.input.clone(),
                    source,
                })?;
                self.zoom_sweeps.second_model = Some(second.kind());
                self.second = Some(second);
            }
            tracing::debug!(
                zoom = self.grey_zoom,
                "grey picture: zoom pass magnified further"
            );
        }
        Ok(())
    }

    /// The follow look, on a main-pass frame between zoom sweeps: each small face known (the
    /// last sweep's and the last follow look's) that the main pass did not find on this
    /// frame is looked at again at the zoom magnification, in a region around it that
    /// a walking face stays inside until the next main pass, with the lower
    /// [`FOLLOW_THRESHOLD`] (the face is expected there). A small face then gets a key every
    /// main pass instead of one a sweep: the tracker has its motion, so the boxes between,
    /// before and after follow the face instead of standing where a sweep saw it (a 17 px face
    /// walking 30 px/s left its still box in under a second). A face missed by
    /// [`FOLLOW_MISSES`] looks in a row is left to the next sweep. Faces are followed smallest
    /// first, within [`FOLLOW_BUDGET`] of a whole sweep's pixels.
    fn follow_detect(
        &mut self,
        frame: &Frame,
        main: &[Detection],
    ) -> Result<Vec<Detection>, PipelineError> {
        if self.zoom_tiles.is_empty() || !self.follow_on {
            return Ok(Vec::new());
        }
        let max_face = self.zoom_max_face;
        // A face the main pass found on this frame has its key already: it is not looked at
        // again, and is followed on from the main pass's box.
        let mut seen: Vec<Followed> = Vec::new();
        let mut wanted: Vec<Followed> = Vec::new();
        for (d, misses, candidate) in std::mem::take(&mut self.follow) {
            let same =
                |m: &&Detection| is_followed(&d.bbox, &m.bbox) || m.bbox.iou(&d.bbox) > MERGE_IOU;
            let nearest = main
                .iter()
                .filter(same)
                .max_by(|a, b| a.bbox.iou(&d.bbox).total_cmp(&b.bbox.iou(&d.bbox)));
            match nearest {
                Some(m) => seen.push((
                    Detection {
                        revisit: d.revisit,
                        ..*m
                    },
                    0,
                    false,
                )),
                None => wanted.push((d, misses, candidate)),
            }
        }
        if wanted.is_empty() {
            self.follow = seen;
            return Ok(Vec::new());
        }
        wanted.sort_by(|a, b| a.0.bbox.area().total_cmp(&b.0.bbox.area()));
        let (fw, fh) = (self.frame_size.0 as f32, self.frame_size.1 as f32);
        let frame_wh = self.frame_size;
        let budget = (FOLLOW_BUDGET * pixels(&self.zoom_tiles) as f32) as u64;
        let mut regions: Vec<crate::geom::Rect> = Vec::new();
        let mut followed = 0;
        for (d, _, _) in &wanted {
            let mut next = regions.clone();
            next.push(region_around(&d.bbox, FOLLOW_REACH, (fw, fh)));
            let next =
                crate::detect::zoom::merge_regions(next, run_cost_frame_px(self.zoom_factor));
            let cost: u64 = next
                .iter()
                .map(|r| {
                    pixels(&crate::detect::zoom::layout_in(
                        *r,
                        self.zoom_factor,
                        frame_wh,
                    ))
                })
                .sum();
            if cost > budget && followed > 0 {
                break;
            }
            regions = next;
            followed += 1;
        }
        let tiles: Vec<Tile> = regions
            .iter()
            .flat_map(|r| crate::detect::zoom::layout_in(*r, self.zoom_factor, frame_wh))
            .collect();
        let detector = detector_of(&self.detector, &self.input, "follow look")?;
        let (order, threshold) = (detector.channel_order(), detector.threshold());
        let vf = map_readable(&self.input, frame, &mut self.info, "the follow look")?;
        let planes = planes_of(&self.input, &vf)?;
        let looked_for = &wanted[..followed];
        let follow_threshold = if self.zoom_sweeps.grey {
            GREY_FOLLOW_THRESHOLD
        } else {
            FOLLOW_THRESHOLD
        };
        // Below the detector's own threshold, only the face looked for counts: near where it
        // was, at about its size (texture beside it scores 0.3 too); a candidate counts only
        // above the detector's threshold.
        // On a grey picture the second detector looks too.
        let both = self.second.is_some();
        let found: Vec<Detection> = self
            .zoom_tiles_detect(&planes, order, &tiles, follow_threshold, max_face, both)?
            .into_iter()
            .filter(|f| {
                f.score >= threshold
                    || looked_for
                        .iter()
                        .any(|(d, _, candidate)| !candidate && is_followed(&d.bbox, &f.bbox))
            })
            .collect();
        let found = merge(found);
        let z = &mut self.zoom_sweeps;
        z.follow_looks += 1;
        z.followed += followed as u64;
        z.follow_input_mpx += pixels(&tiles) as f64 / 1e6;
        // Next time: what was found, what was looked for and missed (for a while), and what
        // the budget left for the next look.
        let mut next: Vec<Followed> = found.iter().map(|d| (*d, 0, false)).collect();
        next.extend(seen);
        for (i, (d, misses, candidate)) in wanted.into_iter().enumerate() {
            if i >= followed {
                next.push((d, misses, candidate));
            } else if misses + 1
                < if candidate {
                    CANDIDATE_LOOKS
                } else {
                    FOLLOW_MISSES
                }
                && found.iter().all(|f| f.bbox.iou(&d.bbox) <= 0.0)
            {
                next.push((d, misses + 1, candidate));
            }
        }
        self.follow = next;
        Ok(found)
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

    /// The zoom pass on one frame: tiles rendered from the full-resolution planes at the zoom
    /// magnification, over the whole frame or over what changed since the last sweep.
    fn zoom_detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, PipelineError> {
        let detector = detector_of(&self.detector, &self.input, "zoom pass")?;
        let (order, threshold) = (detector.channel_order(), detector.threshold());
        let vf = map_readable(&self.input, frame, &mut self.info, "the zoom pass")?;
        let planes = planes_of(&self.input, &vf)?;
        // Where to look: the whole frame on the first sweep, on every `zoom_full_every`-th and
        // when much changed (a pan, a lighting change); otherwise only around the blocks that
        // changed since the last sweep, keeping the last sweep's faces elsewhere — the same
        // pixels give the detector the same answer, so nothing is lost by not asking again.
        let change = self
            .zoom_memory
            .as_ref()
            .and_then(|m| m.change(&planes, self.zoom_full_every, self.zoom_change_pad, true));
        // Many scattered regions can cost more than the whole frame: then it is swept whole.
        let direct: Option<(crate::detect::zoom::ChangeSet, Vec<Tile>)> = change.and_then(|c| {
            let tiles: Vec<Tile> = c
                .regions
                .iter()
                .flat_map(|r| {
                    crate::detect::zoom::layout_in(
                        *r,
                        self.zoom_factor,
                        (planes.width, planes.height),
                    )
                })
                .collect();
            (pixels(&tiles) < pixels(&self.zoom_tiles)).then_some((c, tiles))
        });
        let (change, direct) = match direct {
            Some((c, tiles)) => (Some(c), tiles),
            None => (None, self.zoom_tiles.clone()),
        };
        let whole = [crate::geom::Rect {
            x0: 0,
            y0: 0,
            x1: planes.width as usize,
            y1: planes.height as usize,
        }];
        let regions: &[crate::geom::Rect] = change.as_ref().map_or(&whole, |c| &c.regions);
        let (mut found, input_pixels, proposed) = match self.zoom_proposal {
            Some(p) => {
                self.zoom_propose_then_magnify(&planes, order, p, threshold, regions, &direct)?
            }
            None => {
                let max_face = self.zoom_max_face;
                // A grey sweep reports candidates too (see [`GREY_CANDIDATE_THRESHOLD`]).
                let grey = self.zoom_sweeps.grey;
                let t = if grey {
                    GREY_CANDIDATE_THRESHOLD.min(threshold)
                } else {
                    threshold
                };
                // Grey sweeps ask the second detector too, on the same tiles.
                let both = self.second.is_some();
                let found = self.zoom_tiles_detect(&planes, order, &direct, t, max_face, both)?;
                if both {
                    self.zoom_sweeps.second_input_mpx += pixels(&direct) as f64 / 1e6;
                }
                let (found, candidates): (Vec<Detection>, Vec<Detection>) =
                    merge(found).into_iter().partition(|d| d.score >= threshold);
                self.sweep_candidates = candidates;
                (found, pixels(&direct), false)
            }
        };
        let since_full = match (&change, &self.zoom_memory) {
            (Some(c), Some(m)) => {
                // The last sweep's faces where nothing changed around them stand (moved with
                // the picture). What this sweep found over them was cut by a region's edge —
                // a face away from every changed block lies across the border of the region
                // looked at — so the whole face seen before is the better box.
                let carried: Vec<Detection> = m
                    .dets
                    .iter()
                    .filter_map(|d| c.carry(d.bbox).map(|bbox| Detection { bbox, ..*d }))
                    .collect();
                found.retain(|f| carried.iter().all(|k| f.bbox.iou(&k.bbox) <= MERGE_IOU));
                found.extend(carried);
                found = merge(found);
                m.since_full + 1
            }
            _ => 0,
        };
        let z = &mut self.zoom_sweeps;
        z.sweeps += 1;
        z.proposed += u64::from(proposed);
        z.full += u64::from(change.is_none());
        z.followed_motion += u64::from(change.as_ref().is_some_and(|c| c.follows_motion()));
        z.input_mpx += input_pixels as f64 / 1e6;
        tracing::trace!(
            frame = frame.index,
            input_pixels,
            proposed,
            full = change.is_none(),
            shift = ?change.as_ref().map(|c| c.shift()),
            faces = found.len(),
            "zoom pass"
        );
        self.zoom_memory = Some(PassMemory::new(&planes, found.clone(), since_full));
        Ok(found)
    }

    /// A sweep of `regions` in two looks: first at the proposal scale (a quarter of the
    /// magnified pixels at the defaults) with the proposal threshold, then magnified only
    /// around the proposals that scored below the detector's own `threshold`; those above it
    /// are faces already. When the magnified look around the proposals would cost as much as
    /// magnifying the regions whole (`direct`: a crowd, a busy texture), the regions are
    /// magnified whole instead. Returns the faces, the detector's input pixels, and whether
    /// the proposals sufficed.
    fn zoom_propose_then_magnify(
        &mut self,
        planes: &crate::detect::zoom::I420<'_>,
        order: crate::detect::ChannelOrder,
        p: Proposal,
        threshold: f32,
        regions: &[crate::geom::Rect],
        direct: &[Tile],
    ) -> Result<(Vec<Detection>, u64, bool), PipelineError> {
        let max_face = self.zoom_max_face;
        let frame = (planes.width, planes.height);
        let looked =
            crate::detect::zoom::merge_regions(regions.to_vec(), run_cost_frame_px(p.scale));
        let first: Vec<Tile> = looked
            .iter()
            .flat_map(|r| crate::detect::zoom::layout_in(*r, p.scale, frame))
            .collect();
        let proposals =
            self.zoom_tiles_detect(planes, order, &first, p.threshold, max_face, false)?;
        let (fw, fh) = (planes.width as f32, planes.height as f32);
        let mut found = Vec::new();
        let mut around = Vec::new();
        for d in proposals {
            if d.score > threshold {
                found.push(d);
                continue;
            }
            // Context of the face's own size on every side (at least 16 px): the magnified
            // look then sees it whole and centred, as a tile would (its tile grows the region
            // to the size it is rendered at).
            around.push(region_around(&d.bbox, 1.0, (fw, fh)));
        }
        let around =
            crate::detect::zoom::merge_regions(around, run_cost_frame_px(self.zoom_factor));
        let second: Vec<Tile> = around
            .iter()
            .flat_map(|r| crate::detect::zoom::layout_in(*r, self.zoom_factor, frame))
            .collect();
        let spent = pixels(&first);
        if !second.is_empty() && pixels(&second) >= pixels(direct) {
            let found =
                self.zoom_tiles_detect(planes, order, direct, threshold, max_face, false)?;
            return Ok((found, spent + pixels(direct), false));
        }
        found.extend(self.zoom_tiles_detect(planes, order, &second, threshold, max_face, false)?);
        Ok((merge(found), spent + pixels(&second), true))
    }

    /// Runs the detector (`both`: and the second detector of grey sweeps, on the same
    /// rendered tiles) on `tiles` of the frame (tiles of one size as one batch) and returns
    /// the faces up to `max_face` scoring above `threshold`, in frame pixels (not merged).
    fn zoom_tiles_detect(
        &mut self,
        planes: &crate::detect::zoom::I420<'_>,
        order: crate::detect::ChannelOrder,
        tiles: &[Tile],
        threshold: f32,
        max_face: f32,
        both: bool,
    ) -> Result<Vec<Detection>, PipelineError> {
        // Tiles of one size go into one batch; edge tiles may differ by a few pixels.
        let mut out = Vec::new();
        let mut groups: Vec<((u32, u32), Vec<Tile>)> = Vec::new();
        for t in tiles {
            match groups.iter_mut().find(|(k, _)| *k == (t.in_w, t.in_h)) {
                Some((_, v)) => v.push(*t),
                None => groups.push(((t.in_w, t.in_h), vec![*t])),
            }
        }
        // At most `batch` tiles per run: on the CPU (batch 1) ONNX Runtime's arena then holds
        // one tile's activations instead of four.
        let batch = self.batch.max(1);
        for ((in_w, in_h), tiles) in groups
            .iter()
            .flat_map(|(size, tiles)| tiles.chunks(batch).map(move |c| (*size, c)))
        {
            // Rendered straight into the detector's input tensor, reused between sweeps.
            let one = 3 * in_w as usize * in_h as usize;
            self.tensor.resize(one * tiles.len(), 0.0);
            let stretch = stretch_for(self.stretch_contrast, planes);
            for (t, dst) in tiles.iter().zip(self.tensor.chunks_exact_mut(one)) {
                crate::detect::zoom::render_nchw(planes, t, order, dst);
                if let Some(s) = stretch {
                    s.apply(dst);
                }
            }
            let tensor = NchwTensor {
                data: &self.tensor,
                batch: tiles.len(),
                width: in_w,
                height: in_h,
            };
            let mut raw = run_detector_at(
                &mut self.detector,
                &self.input,
                "zoom pass",
                tensor,
                threshold,
            )?;
            if both {
                // The second detector reads the same rendered tiles.
                let more = run_detector_at(
                    &mut self.second,
                    &self.input,
                    "zoom pass",
                    tensor,
                    threshold,
                )?;
                for (r, m) in raw.iter_mut().zip(more) {
                    r.extend(m);
                }
            }
            for (t, dets) in tiles.iter().zip(raw) {
                let (sx, sy) = t.back_scale();
                // The zoom pass is for small faces only: magnified large structures give
                // spurious big boxes, and large faces are the main pass's job. Small in both
                // directions: a box as narrow as a small face but much taller is a part of a
                // large one (composite_pan: a 48x91 box of an 88x117 face cut by the frame's
                // top, seen at 1x, split that face's track in three).
                let found =
                    self.to_frame(dets, (t.x0 as f32, t.y0 as f32), (sx, sy), self.zoom_every);
                out.extend(found.into_iter().filter(|d| {
                    d.bbox.w.min(d.bbox.h) <= max_face
                        && d.bbox.w.max(d.bbox.h) <= SMALL_FACE_ASPECT * max_face
                }));
            }
        }
        Ok(out)
    }
}

/// Detector input pixels of `tiles`.
fn pixels(tiles: &[Tile]) -> u64 {
    tiles.iter().map(|t| u64::from(t.in_w * t.in_h)).sum()
}

/// IoU above which two detections of a frame are the same face (passes, overlapping tiles).
const MERGE_IOU: f32 = 0.3;

/// Merges detections of several passes or overlapping tiles: greedy NMS at [`MERGE_IOU`]. A face
/// both passes found keeps the sparser pass's `revisit`, whichever box wins: the tracker then
/// carries it until that pass can look again, even when the other pass loses it.
fn merge(dets: Vec<Detection>) -> Vec<Detection> {
    let boxes: Vec<crate::geom::BoxF> = dets.iter().map(|d| d.bbox).collect();
    let scores: Vec<f32> = dets.iter().map(|d| d.score).collect();
    crate::geom::nms(&boxes, &scores, MERGE_IOU)
        .into_iter()
        .map(|i| {
            let kept = dets[i];
            let revisit = dets
                .iter()
                .filter(|d| d.bbox.iou(&kept.bbox) > MERGE_IOU)
                .map(|d| d.revisit)
                .fold(kept.revisit, u32::max);
            Detection { revisit, ..kept }
        })
        .collect()
}

/// The `VideoInfo` of the frames' caps, parsed again only when the caps change (they stay the
/// same for a whole stream).
#[derive(Default)]
pub(super) struct FrameInfo {
    last: Option<(gst::Caps, gst_video::VideoInfo)>,
}

impl FrameInfo {
    fn of(
        &mut self,
        input: &Path,
        caps: &gst::Caps,
    ) -> Result<&gst_video::VideoInfo, PipelineError> {
        if self.last.as_ref().is_none_or(|(c, _)| c != caps) {
            let info = gst_video::VideoInfo::from_caps(caps)
                .map_err(|_| internal(input, "frame caps are not raw video".into()))?;
            self.last = Some((caps.clone(), info));
        }
        Ok(&self.last.as_ref().expect("set above").1)
    }
}

/// A frame mapped for reading (`what` names the reader in the error).
fn map_readable<'a>(
    input: &Path,
    frame: &'a Frame,
    info: &mut FrameInfo,
    what: &str,
) -> Result<gst_video::VideoFrameRef<&'a gst::BufferRef>, PipelineError> {
    let info = info.of(input, &frame.caps)?;
    gst_video::VideoFrameRef::from_buffer_ref_readable(frame.buffer.as_ref(), info)
        .map_err(|_| internal(input, format!("cannot map a frame for {what}")))
}

/// The I420 planes of a mapped frame; an error when a plane is missing or short of its rows.
fn planes_of<'a>(
    input: &Path,
    vf: &'a gst_video::VideoFrameRef<&gst::BufferRef>,
) -> Result<I420<'a>, PipelineError> {
    use gst_video::prelude::*;
    let strides = vf.plane_stride();
    let plane = |i: u32| vf.plane_data(i).unwrap_or(&[]);
    let planes = I420 {
        y: plane(0),
        u: plane(1),
        v: plane(2),
        strides: [
            strides[0].max(0) as usize,
            strides[1].max(0) as usize,
            strides[2].max(0) as usize,
        ],
        width: vf.width(),
        height: vf.height(),
    };
    if vf.n_planes() != 3 || !planes.is_complete() {
        return Err(internal(
            input,
            format!(
                "a decoded frame is not whole I420 ({} planes, strides {:?})",
                vf.n_planes(),
                planes.strides
            ),
        ));
    }
    Ok(planes)
}

/// Runs `f` on a frame's planes mapped for reading.
fn with_planes<R>(
    input: &Path,
    frame: &Frame,
    info: &mut FrameInfo,
    what: &str,
    f: impl FnOnce(&I420<'_>) -> R,
) -> Result<R, PipelineError> {
    let vf = map_readable(input, frame, info, what)?;
    Ok(f(&planes_of(input, &vf)?))
}

/// The frame of a decoded sample, its timestamp in running time; `None` when the frame lies
/// outside the stream's segment.
fn sample_to_frame(
    input: &Path,
    index: u64,
    s: &gst::Sample,
) -> Result<Option<Frame>, PipelineError> {
    if s.buffer().is_none() {
        return Err(internal(input, format!("frame {index} has no buffer")));
    }
    let caps = s
        .caps_owned()
        .ok_or_else(|| internal(input, format!("frame {index} has no caps")))?;
    Ok(
        crate::media::decode::video_buffer(s).map(|(buffer, pts)| Frame {
            index,
            pts,
            duration: buffer.duration(),
            caps,
            buffer,
        }),
    )
}

/// What the tracker holds of a frame when the video is decoded twice: its place, no pixels.
pub(super) struct FrameSlot {
    pub(super) index: u64,
    pub(super) pts: Option<gst::ClockTime>,
}

/// A frame the tracker holds: the frame itself, or only its slot when a second decode
/// brings the pixels back (`limits.decode_twice`).
pub(super) trait Held: Send + 'static {
    fn time_s(&self) -> f64;
}

impl Held for Frame {
    fn time_s(&self) -> f64 {
        Frame::time_s(self)
    }
}

impl Held for FrameSlot {
    fn time_s(&self) -> f64 {
        self.pts.map(|t| t.nseconds() as f64 / 1e9).unwrap_or(0.0)
    }
}

/// The track stage: frames (or their slots: `keep` decides) wait in the tracker until their
/// boxes are final, then go on as `done(held, boxes)`.
pub(super) fn track_stage<H: Held, O>(
    rx: Receiver<DetectedFrame>,
    out: Sender<O>,
    keep: impl Fn(Frame) -> H,
    done: impl Fn(H, Vec<TrackedBox>) -> O,
    cfg: crate::detect::tracker::TrackerConfig,
    results: Arc<Mutex<StageResults>>,
    error: FirstError,
) -> Result<(), PipelineError> {
    let _span = tracing::debug_span!("track").entered();
    let mut tracker: Tracker<H> = Tracker::new(cfg);
    let mut log = TrackLog::default();
    let mut busy = Duration::ZERO;
    let send = |e: crate::detect::tracker::Emitted<H>, log: &mut TrackLog| -> bool {
        log.record(e.index, e.payload.time_s(), &e.boxes);
        out.send(done(e.payload, e.boxes)).is_ok()
    };
    for (frame, dets) in rx.iter() {
        let t = Instant::now();
        let index = frame.index;
        let emitted = tracker.push(index, keep(frame), dets.as_deref());
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

/// With the video decoded twice: pairs each frame of the second decode with the final boxes
/// the tracker gave its slot, in order, and hands them to the redact stage. A frame of one
/// decode that the other lacks (a count or a timestamp that differs) fails the clip: boxes
/// are never put on a frame they were not found for.
pub(super) fn pair_stage(
    input: PathBuf,
    frames: Receiver<gst::Sample>,
    boxes: Receiver<(FrameSlot, Vec<TrackedBox>)>,
    out: Sender<TrackedFrame>,
    error: FirstError,
) -> Result<(), PipelineError> {
    let _span = tracing::debug_span!("pair").entered();
    let mut index: u64 = 0;
    let mismatch = |detail: String| {
        PipelineError::Media(crate::media::MediaError::Corrupt {
            path: input.clone(),
            detail: format!("the two decodes of the video differ: {detail}"),
        })
    };
    for sample in frames.iter() {
        // Frames outside the demuxer's segment are skipped here as the detect stage does.
        let Some(frame) = sample_to_frame(&input, index, &sample)? else {
            continue;
        };
        let Ok((slot, found)) = boxes.recv() else {
            if error.is_set() {
                return Ok(());
            }
            return Err(mismatch(format!(
                "the second gave frame {index}, the first ended before it"
            )));
        };
        if slot.index != frame.index || slot.pts != frame.pts {
            return Err(mismatch(format!(
                "frame {} at {:?} against frame {} at {:?}",
                frame.index, frame.pts, slot.index, slot.pts
            )));
        }
        index += 1;
        let tracked = TrackedFrame {
            frame,
            boxes: found,
        };
        if out.send(tracked).is_err() {
            return Ok(());
        }
    }
    if error.is_set() {
        return Ok(());
    }
    if let Ok((slot, _)) = boxes.recv() {
        return Err(mismatch(format!(
            "the first gave frame {}, the second ended at {index}",
            slot.index
        )));
    }
    Ok(())
}

pub(super) struct RedactStage {
    pub(super) input: PathBuf,
    pub(super) rx: Receiver<TrackedFrame>,
    pub(super) video_in: Option<crate::media::encode::VideoInput>,
    pub(super) style: crate::redact::video::Style,
    pub(super) params: crate::redact::video::StyleParams,
    pub(super) margin: f32,
    pub(super) margin_px: f32,
    pub(super) error: FirstError,
    pub(super) ticks: Arc<AtomicU64>,
    pub(super) ctl: Control,
    pub(super) results: Arc<Mutex<StageResults>>,
}

impl RedactStage {
    pub(super) fn run(mut self) -> Result<(), PipelineError> {
        let _span = tracing::debug_span!("redact").entered();
        let mut frames = 0u64;
        let mut video_end = None;
        let (mut redact_t, mut push_t) = (Duration::ZERO, Duration::ZERO);
        let mut info = FrameInfo::default();
        let (mut last_pts, mut retimed) = (None::<gst::ClockTime>, 0u64);
        for tf in self.rx.iter() {
            if self.error.is_set() {
                // Fail closed: once anything failed, nothing more goes to the encoder.
                return Ok(());
            }
            let fault = super::fault::get();
            if fault == Some(super::fault::Fault::RedactPanic(frames)) {
                panic!("OBSCURA_FAULT redact-panic at frame {frames}");
            }
            let TrackedFrame { frame, boxes } = tf;
            // A frame with no timestamp or one not after the last (a file spliced from
            // segments whose times start again) is placed one frame after the last (a first
            // frame with none at 0): mp4mux refuses a frame with no timestamp, and the order
            // shown is the order decoded.
            let pts = match (frame.pts, last_pts) {
                (Some(p), Some(l)) if p > l => Some(p),
                (p, None) => Some(p.unwrap_or(gst::ClockTime::ZERO)),
                (_, Some(l)) => {
                    retimed += 1;
                    let step = frame
                        .duration
                        .filter(|d| !d.is_zero())
                        .unwrap_or(gst::ClockTime::from_mseconds(40));
                    Some(l + step)
                }
            };
            last_pts = pts;
            video_end = video_end.max(end_time(pts, frame.duration));
            let t = Instant::now();
            let caps = frame.caps.clone();
            let mut buffer = if self.style.modifies_pixels() && !boxes.is_empty() {
                let vi = info.of(&self.input, &caps)?;
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
            // The decoder's buffer keeps its stream time until here, where this stage is its
            // only holder (see `media::decode::video_buffer`): no copy is made.
            if buffer.pts() != pts {
                buffer.make_mut().set_pts(pts);
            }
            redact_t += t.elapsed();
            if let Some(v) = self.video_in.as_mut() {
                if fault == Some(super::fault::Fault::EncodeError(frames)) {
                    v.inject_error();
                }
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
        if retimed > 0 {
            tracing::warn!(
                input = %self.input.display(),
                frames = retimed,
                "frames with no timestamp or one going backwards were placed after the frame before"
            );
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
    if vf.n_planes() != 3 {
        return Err(internal(
            input,
            format!("expected 3 planes (I420), got {}", vf.n_planes()),
        ));
    }
    let stride = |i: usize| vf.plane_stride()[i].max(0) as usize;
    let strides = [stride(0), stride(1), stride(2)];
    let [y, u, v, _] = vf.planes_data_mut();
    // Luma at full size, chroma subsampled by 2; `fill` paints black (16 / 128 / 128).
    let mut planes = [(y, 1usize, 16u8), (u, 2, 128), (v, 2, 128)]
        .into_iter()
        .enumerate()
        .map(|(i, (data, sub, fill_value))| PlaneMut {
            data,
            stride: strides[i],
            width: info.comp_width(i as u8) as usize,
            height: info.comp_height(i as u8) as usize,
            sub,
            fill_value,
        })
        .collect::<Vec<_>>();
    redact_planes(&mut planes, regions, style, params);
    Ok(vf.into_buffer())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geom::BoxF;

    fn det(x: f32, score: f32, revisit: u32) -> Detection {
        Detection {
            bbox: BoxF::new(x, 100.0, 40.0, 56.0),
            score,
            revisit,
        }
    }

    #[test]
    fn a_face_both_passes_found_keeps_the_best_box_and_the_sparser_pass_s_revisit() {
        // The main pass (every 5th frame) scored it higher; the zoom pass (every 60th) saw it
        // too; another face far away stays apart.
        let merged = merge(vec![
            det(10.0, 0.95, 5),
            det(12.0, 0.90, 60),
            det(400.0, 0.8, 5),
        ]);
        assert_eq!(merged.len(), 2);
        let face = merged.iter().find(|d| d.bbox.x < 100.0).unwrap();
        assert_eq!((face.bbox.x, face.score, face.revisit), (10.0, 0.95, 60));
        let other = merged.iter().find(|d| d.bbox.x > 100.0).unwrap();
        assert_eq!(other.revisit, 5);
    }
}
