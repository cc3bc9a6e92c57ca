//! The face tracker: carries faces across frames so that a face the detector misses for a few
//! frames, or that is entering the picture, is still covered.
//!
//! Owns: association of detections to tracks (IoU with constant-velocity prediction, plus a
//! centre-distance fallback for small fast faces), gap filling by interpolation, look-back /
//! look-ahead extension, and the delayed emission that makes those possible in file mode:
//! a frame leaves the tracker only when nothing that happens later can change its boxes.
//! Must not touch: pixels, models, files. It is generic over the payload it holds back.

use std::collections::{BTreeMap, VecDeque};

use crate::geom::BoxF;
use crate::types::{BoxSource, Detection, TrackBoxRecord, TrackRecord, TrackedBox};

/// Tracker settings, all in frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerConfig {
    /// Minimum IoU between a track's predicted box and a detection to match them.
    pub iou_match: f32,
    /// A track is extended this many frames before its first detection.
    pub lookback: u32,
    /// A track is extended this many frames after its last detection.
    pub lookahead: u32,
    /// Detections of one track up to this many frames apart are joined (the gap is filled);
    /// a track not seen for longer ends.
    pub max_gap: u32,
    /// Frame size: a face at the frame's edge that moves outwards is followed until it has
    /// left the picture (up to [`EDGE_REACH`] frames), and one that came in is followed back
    /// to where it entered (up to `edge_back` frames).
    pub frame: Option<(f32, f32)>,
    /// Longest look-back (frames) for a face that came in through the frame's edge. Every
    /// frame of it is a frame held back, so large frames may get less than [`EDGE_REACH`]
    /// (`Config::tracker_config` fits it to `limits.max_held_mib`).
    pub edge_back: u32,
}

/// Frames over which a track's start and end velocities are measured (from its first key, to
/// its last).
pub const VELOCITY_SPAN: u64 = 16;

/// Longest extension (frames) for a face entering or leaving through the frame's edge.
pub const EDGE_REACH: u32 = 45;

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            iou_match: 0.2,
            lookback: 6,
            lookahead: 6,
            max_gap: 8,
            frame: None,
            edge_back: EDGE_REACH,
        }
    }
}

impl TrackerConfig {
    /// The number of frames a frame is held back before its boxes are final.
    pub fn delay(&self) -> u64 {
        let edge = if self.frame.is_some() {
            self.edge_back
        } else {
            0
        };
        u64::from(self.lookback.max(self.max_gap).max(edge))
    }
}

#[derive(Debug, Clone, Copy)]
struct Key {
    frame: u64,
    bbox: BoxF,
    score: f32,
}

#[derive(Debug)]
struct Track {
    id: u64,
    keys: Vec<Key>,
    ended: bool,
    /// The sparsest pass that ever saw this face: the face may go unseen that long.
    max_revisit: u32,
}

impl Track {
    fn first(&self) -> &Key {
        &self.keys[0]
    }
    fn last(&self) -> &Key {
        &self.keys[self.keys.len() - 1]
    }

    /// Per-frame velocity of (x, y, w, h) from the last two keys.
    fn velocity(&self) -> Option<[f32; 4]> {
        let n = self.keys.len();
        if n < 2 {
            return None;
        }
        velocity_between(&self.keys[n - 2], &self.keys[n - 1])
    }

    /// Per-frame velocity at the end: from the first key within [`VELOCITY_SPAN`] frames before
    /// the last one (or the one before it) to the last. The last two keys may be a few frames
    /// apart and come from passes at different scales; over a look-ahead of up to a zoom
    /// period their noise moved the box off the face (faces_sizes with the main pass every 3rd
    /// frame: 2.5 px a frame from the last two boxes, 2.93 the face's own, for 59 frames).
    fn end_velocity(&self) -> Option<[f32; 4]> {
        let (last, before) = self.keys.split_last()?;
        velocity_between(farthest_within_span(last, before.iter().rev())?, last)
    }

    /// How many of the first keys lie more than [`VELOCITY_SPAN`] frames before the last.
    fn before_end_span(&self) -> usize {
        let last = self.last().frame;
        self.keys
            .partition_point(|k| k.frame + VELOCITY_SPAN < last)
    }

    /// Per-frame velocity at the start: from the first key to the last one within
    /// [`VELOCITY_SPAN`] frames of it (or the second key). Over a few frames, the boxes of a
    /// face coming in through the frame's edge are the least precise the detector gives (the
    /// face is cut; composite_pan: its free edge moved 1.75 px a frame over 4 frames, 0.94 over
    /// 16, the face itself 0.88), and the look-back follows this velocity to where it came in.
    fn start_velocity(&self) -> Option<[f32; 4]> {
        let (first, after) = self.keys.split_first()?;
        velocity_between(first, farthest_within_span(first, after.iter())?)
    }
}

/// Of `others` (keys going away from `from`, nearest first), the farthest within
/// [`VELOCITY_SPAN`] frames of `from`, or the nearest when none is that close.
fn farthest_within_span<'a>(
    from: &Key,
    mut others: impl Iterator<Item = &'a Key>,
) -> Option<&'a Key> {
    let nearest = others.next()?;
    Some(
        others
            .take_while(|k| k.frame.abs_diff(from.frame) <= VELOCITY_SPAN)
            .last()
            .unwrap_or(nearest),
    )
}

fn velocity_between(a: &Key, b: &Key) -> Option<[f32; 4]> {
    let dt = (b.frame - a.frame) as f32;
    if dt <= 0.0 {
        return None;
    }
    Some([
        (b.bbox.x - a.bbox.x) / dt,
        (b.bbox.y - a.bbox.y) / dt,
        (b.bbox.w - a.bbox.w) / dt,
        (b.bbox.h - a.bbox.h) / dt,
    ])
}

/// Shifts a box by `v * frames` (position only; size kept).
fn shifted(b: &BoxF, v: &[f32; 4], frames: f32) -> BoxF {
    BoxF::new(b.x + v[0] * frames, b.y + v[1] * frames, b.w, b.h)
}

/// Frames until a box moving by `v` per frame has left a `w x h` frame, when it touches an
/// edge — or would within `ahead` frames, the time the detector may not look again — and
/// moves out through it; `None` otherwise. (A face half out of the picture is the one the
/// detector is likeliest to miss: the last box it gave may stop short of the edge.) At most
/// `cap` frames.
fn frames_to_exit(b: &BoxF, v: &[f32; 4], (w, h): (f32, f32), ahead: u32, cap: u32) -> Option<u32> {
    // Detector boxes of a face cut by the frame edge stop a little short of it; an unclipped
    // box moving outwards gets there in `ahead` frames.
    let ahead = ahead as f32;
    let edge_x = (0.15 * b.w).max(2.0);
    let edge_y = (0.15 * b.h).max(2.0);
    let (to_left, to_right) = (
        edge_x - v[0].min(0.0) * ahead,
        edge_x + v[0].max(0.0) * ahead,
    );
    let (to_top, to_bottom) = (
        edge_y - v[1].min(0.0) * ahead,
        edge_y + v[1].max(0.0) * ahead,
    );
    let mut best: Option<f32> = None;
    let mut consider = |t: f32| {
        if t.is_finite() && t >= 0.0 {
            best = Some(best.map_or(t, |b| b.min(t)));
        }
    };
    // A box clipped at an edge only moves with its free edge: leaving through the right
    // edge is led by the left edge (velocity v[0]), leaving through the left by the right
    // edge (v[0] + v[2]), and likewise vertically.
    let (left, right) = (v[0], v[0] + v[2]);
    let (top, bottom) = (v[1], v[1] + v[3]);
    if b.x <= to_left && right < -0.05 {
        consider(b.x2() / -right);
    }
    if b.x2() >= w - to_right && left > 0.05 {
        consider((w - b.x) / left);
    }
    if b.y <= to_top && bottom < -0.05 {
        consider(b.y2() / -bottom);
    }
    if b.y2() >= h - to_bottom && top > 0.05 {
        consider((h - b.y) / top);
    }
    best.map(|t| (t.ceil() as u32).min(cap))
}

impl Track {
    /// Where the face of this track is at `frame`, after its last key, for the look-ahead:
    /// its last box moved with the velocity of its centre over the track's last frames
    /// ([`Self::end_velocity`]), at its own size. Unlike [`Self::predict`] (for matching, over a
    /// few frames) it never shrinks: the sizes of the last boxes, from passes at different
    /// scales, differ by the detector's noise (faces_sizes with the main pass every 3rd frame:
    /// 42 px wide at the last box, 48 three frames before), and a box extrapolated to shrink
    /// for up to a zoom period falls off the face.
    fn carry_ahead(&self, frame: u64) -> BoxF {
        let last = self.last();
        match self.end_velocity() {
            Some(v) => {
                let dt = frame.saturating_sub(last.frame) as f32;
                let (cx, cy) = (v[0] + 0.5 * v[2], v[1] + 0.5 * v[3]);
                BoxF::new(
                    last.bbox.x + cx * dt,
                    last.bbox.y + cy * dt,
                    last.bbox.w,
                    last.bbox.h,
                )
            }
            None => last.bbox,
        }
    }

    /// A detection at `frame` matched to this track becomes its newest key.
    fn extend_with(&mut self, frame: u64, d: &Detection) {
        self.max_revisit = self.max_revisit.max(d.revisit);
        self.keys.push(Key {
            frame,
            bbox: d.bbox,
            score: d.score,
        });
    }

    fn predict(&self, frame: u64) -> BoxF {
        let last = self.last();
        match self.velocity() {
            Some(v) => {
                let dt = frame.saturating_sub(last.frame) as f32;
                BoxF::new(
                    last.bbox.x + v[0] * dt,
                    last.bbox.y + v[1] * dt,
                    (last.bbox.w + v[2] * dt).max(1.0),
                    (last.bbox.h + v[3] * dt).max(1.0),
                )
            }
            None => last.bbox,
        }
    }

    /// The box of this track at `frame`, if the track covers it.
    fn box_at(&self, frame: u64, cfg: &TrackerConfig) -> Option<TrackedBox> {
        let (first, last) = (self.first(), self.last());
        let make = |bbox: BoxF, score: f32, source: BoxSource| TrackedBox {
            track_id: self.id,
            bbox,
            score,
            source,
        };
        if frame < first.frame {
            let d = first.frame - frame;
            let back_v = self.start_velocity().map(|v| [-v[0], -v[1], -v[2], -v[3]]);
            let mut reach = cfg.lookback.max(self.max_revisit.saturating_sub(1));
            if let (Some(v), Some(size)) = (back_v, cfg.frame)
                && let Some(t) = frames_to_exit(
                    &first.bbox,
                    &v,
                    size,
                    edge_lead(&first.bbox, &v, reach, cfg.edge_back),
                    cfg.edge_back,
                )
            {
                reach = reach.max(t);
            }
            if d > u64::from(reach) {
                return None;
            }
            // The face was somewhere near its first box; grow the box with the distance and
            // follow it back along its motion.
            let grown = first.bbox.enlarge(growth(d));
            let bbox = match back_v {
                Some(v) => union(&grown, &shifted(&first.bbox, &v, d as f32)),
                None => grown,
            };
            return Some(make(bbox, first.score, BoxSource::Extended));
        }
        if frame > last.frame {
            let d = frame - last.frame;
            let mut reach = cfg.lookahead.max(self.max_revisit.saturating_sub(1));
            if let (Some(v), Some(size)) = (self.end_velocity(), cfg.frame)
                && let Some(t) = frames_to_exit(
                    &last.bbox,
                    &v,
                    size,
                    edge_lead(&last.bbox, &v, reach, EDGE_REACH),
                    EDGE_REACH,
                )
            {
                reach = reach.max(t);
            }
            if d > u64::from(reach) {
                return None;
            }
            let grown = last.bbox.enlarge(growth(d));
            let ahead = self.carry_ahead(frame).enlarge(growth(d));
            return Some(make(union(&grown, &ahead), last.score, BoxSource::Extended));
        }
        // Within [first, last]: exact key or interpolation between neighbours.
        let pos = self.keys.partition_point(|k| k.frame < frame);
        let b = &self.keys[pos];
        if b.frame == frame {
            return Some(make(b.bbox, b.score, BoxSource::Detected));
        }
        let a = &self.keys[pos - 1];
        let t = (frame - a.frame) as f32 / (b.frame - a.frame) as f32;
        Some(make(
            a.bbox.lerp(&b.bbox, t),
            a.score + (b.score - a.score) * t,
            BoxSource::Interpolated,
        ))
    }
}

/// How many frames ahead a box moving by `v` a frame is looked for at the frame's edge:
/// `reach` (the time the detector may not look again), or `cap` for a face that moves at
/// least half its size a frame. Such a face is close to the camera and crossing it; the
/// detector loses it to motion blur for many frames at a time (night_ir: an 80 px face at
/// ~110 px a frame, found at frames 45 and 54 of its 34..56), so it is followed along its
/// motion to the edge it came in through or leaves by.
fn edge_lead(b: &BoxF, v: &[f32; 4], reach: u32, cap: u32) -> u32 {
    let speed = (v[0] + 0.5 * v[2]).hypot(v[1] + 0.5 * v[3]);
    if speed >= 0.5 * b.w.max(b.h) {
        cap.max(reach)
    } else {
        reach
    }
}

/// How much an extended box grows (fraction per side) `d` frames away from its detection:
/// the face may have moved or turned; 3% a frame, at most 30%.
fn growth(d: u64) -> f32 {
    (0.03 * d as f32).min(0.3)
}

fn union(a: &BoxF, b: &BoxF) -> BoxF {
    BoxF::from_corners(
        a.x.min(b.x),
        a.y.min(b.y),
        a.x2().max(b.x2()),
        a.y2().max(b.y2()),
    )
}

/// Match quality between a predicted track box and a detection, `frames` after the track was
/// last seen; 0 means no match.
fn match_quality(pred: &BoxF, det: &BoxF, iou_match: f32, frames: u64) -> f32 {
    let iou = pred.iou(det);
    if iou >= iou_match {
        return iou;
    }
    // Small, fast faces can jump further than their own size between detections.
    let dist = pred.center_distance(det);
    let size = pred.w.max(pred.h).max(det.w.max(det.h));
    let ratio = (det.area() / pred.area().max(1e-3)).max(1e-3);
    // The further back the track was last seen, the further the face may have gone.
    let reach = size * (1.0 + 0.25 * frames.saturating_sub(1) as f32).min(3.0);
    if size > 0.0 && dist < reach && (0.4..=2.5).contains(&ratio) {
        // Below any IoU match, above zero, closer is better.
        return iou_match * 0.5 * (1.0 - dist / reach);
    }
    0.0
}

/// How far (in its own sizes a frame) a face seen once may have gone for the second stage of
/// association, the most frames that stage looks across (one revisit at 20 fps: a fast face
/// the detector loses to motion blur can be found once a sweep apart; within it, 0.4-2.5x the
/// area, since a face crossing close to the camera grows or shrinks fast), and the smallest
/// face it links
/// (a face moving more than its own width a frame is close to the camera, so large; small
/// faces of a crowd, seen once, are left to the first stage).
const FAST_REACH: f32 = 1.5;
const FAST_FRAMES: u64 = 20;
const FAST_MIN_PX: f32 = 32.0;

/// Distance over reach (lower is better) between a face seen once and a detection `frames`
/// later of about its size (0.4-2.5x the area, both at least `FAST_MIN_PX`) and within
/// `FAST_REACH` of its sizes a frame; `None` otherwise.
fn fast_match(last: &BoxF, det: &BoxF, frames: u64) -> Option<f32> {
    if frames == 0 || frames > FAST_FRAMES || last.w.min(det.w) < FAST_MIN_PX {
        return None;
    }
    let ratio = det.area() / last.area().max(1e-3);
    if !(0.4..=2.5).contains(&ratio) {
        return None;
    }
    // Both boxes are at least FAST_MIN_PX wide: the reach is positive.
    let reach = last.w.max(last.h).max(det.w.max(det.h)) * FAST_REACH * frames as f32;
    let dist = last.center_distance(det);
    (dist < reach).then_some(dist / reach)
}

/// A frame that left the tracker with its final boxes.
#[derive(Debug)]
pub struct Emitted<T> {
    pub index: u64,
    pub payload: T,
    pub boxes: Vec<TrackedBox>,
}

/// The tracker. Feed frames in index order with [`Tracker::push`]; frames come back out, with
/// their final boxes, [`TrackerConfig::delay`] frames later, and all at [`Tracker::finish`].
pub struct Tracker<T> {
    cfg: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
    pending: VecDeque<(u64, T)>,
    latest: Option<u64>,
}

impl<T> Tracker<T> {
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
            pending: VecDeque::new(),
            latest: None,
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Frames currently held back.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Adds frame `index` (strictly increasing) with the detector's output for it, or `None`
    /// when the detector did not run on this frame. Returns the frames that became final.
    pub fn push(
        &mut self,
        index: u64,
        payload: T,
        detections: Option<&[Detection]>,
    ) -> Vec<Emitted<T>> {
        debug_assert!(self.latest.is_none_or(|l| index > l));
        self.latest = Some(index);
        if let Some(dets) = detections {
            self.associate(index, dets);
        }
        self.end_stale(index);
        self.pending.push_back((index, payload));
        let mut out = Vec::new();
        while let Some(&(i, _)) = self.pending.front() {
            if index < i + self.cfg.delay() {
                break;
            }
            out.push(self.emit_front());
        }
        self.prune();
        out
    }

    /// Ends the stream: every held frame comes out.
    pub fn finish(&mut self) -> Vec<Emitted<T>> {
        for t in &mut self.tracks {
            t.ended = true;
        }
        let mut out = Vec::new();
        while !self.pending.is_empty() {
            out.push(self.emit_front());
        }
        out
    }

    fn emit_front(&mut self) -> Emitted<T> {
        let (index, payload) = self.pending.pop_front().expect("pending is not empty");
        let boxes = self
            .tracks
            .iter()
            .filter_map(|t| t.box_at(index, &self.cfg))
            .collect();
        Emitted {
            index,
            payload,
            boxes,
        }
    }

    fn associate(&mut self, frame: u64, dets: &[Detection]) {
        let live: Vec<usize> = (0..self.tracks.len())
            .filter(|&i| !self.tracks[i].ended)
            .collect();
        let preds: Vec<(BoxF, u64)> = live
            .iter()
            .map(|&i| {
                let t = &self.tracks[i];
                (t.predict(frame), frame.saturating_sub(t.last().frame))
            })
            .collect();
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (li, (p, since)) in preds.iter().enumerate() {
            for (di, d) in dets.iter().enumerate() {
                let q = match_quality(p, &d.bbox, self.cfg.iou_match, *since);
                if q > 0.0 {
                    pairs.push((q, li, di));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_used = vec![false; live.len()];
        let mut det_used = vec![false; dets.len()];
        for (_, li, di) in pairs {
            if track_used[li] || det_used[di] {
                continue;
            }
            track_used[li] = true;
            det_used[di] = true;
            self.tracks[live[li]].extend_with(frame, &dets[di]);
        }
        // Second stage: a face seen once has no motion to predict with, and one passing
        // close to the camera moves further than its own size between main passes (night_ir:
        // an 80 px face at ~100 px a frame, found every third frame). Left alone, each of its
        // detections became a track of one box that covered one frame. A face seen once
        // takes the nearest detection of its size left over within `FAST_REACH` of its sizes
        // a frame.
        let mut far: Vec<(f32, usize, usize)> = Vec::new();
        for (li, (p, since)) in preds.iter().enumerate() {
            if track_used[li] || self.tracks[live[li]].keys.len() != 1 {
                continue;
            }
            for (di, d) in dets.iter().enumerate() {
                if det_used[di] {
                    continue;
                }
                if let Some(q) = fast_match(p, &d.bbox, *since) {
                    far.push((q, li, di));
                }
            }
        }
        far.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, li, di) in far {
            if track_used[li] || det_used[di] {
                continue;
            }
            track_used[li] = true;
            det_used[di] = true;
            self.tracks[live[li]].extend_with(frame, &dets[di]);
        }
        for (di, d) in dets.iter().enumerate() {
            if !det_used[di] && d.bbox.is_finite() && d.bbox.area() > 0.0 {
                self.tracks.push(Track {
                    id: self.next_id,
                    keys: vec![Key {
                        frame,
                        bbox: d.bbox,
                        score: d.score,
                    }],
                    ended: false,
                    max_revisit: d.revisit,
                });
                self.next_id += 1;
            }
        }
    }

    fn end_stale(&mut self, now: u64) {
        for t in &mut self.tracks {
            if !t.ended && now - t.last().frame > u64::from(self.cfg.max_gap) {
                t.ended = true;
            }
        }
    }

    /// Drops what can no longer affect a held frame: ended tracks whose extension lies before
    /// the oldest held frame, and keys older than the one needed for interpolation.
    fn prune(&mut self) {
        let Some(&(oldest, _)) = self.pending.front() else {
            // Nothing held: only live tracks matter, and only their last keys.
            self.tracks.retain(|t| !t.ended);
            for t in &mut self.tracks {
                let n = t.keys.len();
                t.keys
                    .drain(..(n.saturating_sub(2)).min(t.before_end_span()));
            }
            return;
        };
        let reach = u64::from(self.cfg.lookahead.max(self.cfg.max_gap).max(EDGE_REACH));
        self.tracks
            .retain(|t| !(t.ended && t.last().frame + reach < oldest));
        for t in &mut self.tracks {
            // Keep the last key before `oldest` (interpolation anchor), one more before it, and
            // every key within `VELOCITY_SPAN` of the last (the end velocity is measured over
            // them: left with the last two, the look-ahead took their noise for motion);
            // everything earlier is history.
            let pos = t.keys.partition_point(|k| k.frame < oldest);
            t.keys
                .drain(..pos.saturating_sub(2).min(t.before_end_span()));
        }
    }
}

/// Collects every emitted box into per-track records for the sidecar.
#[derive(Debug, Default)]
pub struct TrackLog {
    tracks: BTreeMap<u64, TrackRecord>,
    frames_with_faces: u64,
    face_boxes: u64,
}

impl TrackLog {
    pub fn record(&mut self, frame: u64, t: f64, boxes: &[TrackedBox]) {
        if !boxes.is_empty() {
            self.frames_with_faces += 1;
        }
        for b in boxes {
            self.face_boxes += 1;
            let rec = self
                .tracks
                .entry(b.track_id)
                .or_insert_with(|| TrackRecord {
                    id: b.track_id,
                    first_frame: frame,
                    last_frame: frame,
                    first_t: t,
                    last_t: t,
                    max_score: 0.0,
                    boxes: Vec::new(),
                });
            rec.last_frame = frame;
            rec.last_t = t;
            if b.source == BoxSource::Detected {
                rec.max_score = rec.max_score.max(b.score);
            }
            rec.boxes.push(TrackBoxRecord {
                frame,
                t: (t * 1e6).round() / 1e6,
                bbox: b.bbox,
                score: (b.score * 1e4).round() / 1e4,
                source: b.source,
            });
        }
    }

    pub fn frames_with_faces(&self) -> u64 {
        self.frames_with_faces
    }
    pub fn face_boxes(&self) -> u64 {
        self.face_boxes
    }

    /// The records, renumbered 1.. in order of first appearance.
    pub fn into_records(self) -> Vec<TrackRecord> {
        let mut v: Vec<TrackRecord> = self.tracks.into_values().collect();
        v.sort_by_key(|r| (r.first_frame, r.id));
        for (i, r) in v.iter_mut().enumerate() {
            r.id = i as u64 + 1;
        }
        v
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;

    fn det(x: f32, y: f32, s: f32) -> Detection {
        Detection {
            bbox: BoxF::new(x, y, s, s),
            score: 0.9,
            revisit: 1,
        }
    }

    fn run(cfg: TrackerConfig, frames: &[Option<Vec<Detection>>]) -> Vec<Emitted<()>> {
        let mut t = Tracker::new(cfg);
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            out.extend(t.push(i as u64, (), f.as_deref()));
        }
        out.extend(t.finish());
        out
    }

    /// Whether one of a frame's boxes covers all of `r`.
    fn covered(frame: &Emitted<()>, r: &BoxF) -> bool {
        frame.boxes.iter().any(|b| {
            b.bbox.x <= r.x && b.bbox.x2() >= r.x2() && b.bbox.y <= r.y && b.bbox.y2() >= r.y2()
        })
    }

    #[test]
    fn every_frame_comes_out_once_in_order() {
        let frames: Vec<_> = (0..50).map(|_| Some(vec![])).collect();
        let out = run(TrackerConfig::default(), &frames);
        let idx: Vec<u64> = out.iter().map(|e| e.index).collect();
        assert_eq!(idx, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn a_short_detection_gap_is_filled_by_interpolation() {
        let mut frames: Vec<Option<Vec<Detection>>> = (0..20)
            .map(|i| Some(vec![det(10.0 + i as f32, 10.0, 20.0)]))
            .collect();
        frames[7] = Some(vec![]);
        frames[8] = Some(vec![]);
        let out = run(TrackerConfig::default(), &frames);
        for e in &out {
            assert_eq!(e.boxes.len(), 1, "frame {} has {:?}", e.index, e.boxes);
        }
        let b7 = &out[7].boxes[0];
        assert_eq!(b7.source, BoxSource::Interpolated);
        assert!((b7.bbox.x - 17.0).abs() < 1e-3);
        assert_eq!(out[6].boxes[0].track_id, out[9].boxes[0].track_id);
    }

    #[test]
    fn look_back_covers_a_face_before_its_first_detection() {
        let frames: Vec<_> = (0..30)
            .map(|i| {
                if i >= 10 {
                    Some(vec![det(100.0, 50.0, 30.0)])
                } else {
                    Some(vec![])
                }
            })
            .collect();
        let cfg = TrackerConfig {
            lookback: 4,
            ..Default::default()
        };
        let out = run(cfg, &frames);
        assert!(out[5].boxes.is_empty());
        for i in 6..10 {
            assert_eq!(out[i].boxes.len(), 1, "frame {i}");
            assert_eq!(out[i].boxes[0].source, BoxSource::Extended);
            // The extension contains the first detected box.
            let b = out[i].boxes[0].bbox;
            assert!(b.x <= 100.0 && b.x2() >= 130.0);
        }
    }

    #[test]
    fn look_ahead_covers_frames_after_the_last_detection_then_the_track_ends() {
        let frames: Vec<_> = (0..40)
            .map(|i| {
                if i < 10 {
                    Some(vec![det(100.0 + 2.0 * i as f32, 50.0, 30.0)])
                } else {
                    Some(vec![])
                }
            })
            .collect();
        let cfg = TrackerConfig {
            lookahead: 3,
            ..Default::default()
        };
        let out = run(cfg, &frames);
        for i in 10..13 {
            let b = out[i].boxes[0];
            assert_eq!(b.source, BoxSource::Extended);
            // Covers where the moving face would be (velocity 2 px/frame).
            let predicted_x = 100.0 + 2.0 * i as f32;
            assert!(
                b.bbox.x <= predicted_x && b.bbox.x2() >= predicted_x + 30.0,
                "frame {i}: {b:?}"
            );
        }
        assert!(out[13].boxes.is_empty());
    }

    #[test]
    fn detecting_every_third_frame_still_gives_a_box_on_every_frame() {
        let frames: Vec<_> = (0..30)
            .map(|i| {
                if i % 3 == 0 {
                    Some(vec![det(50.0 + 3.0 * i as f32, 40.0, 24.0)])
                } else {
                    None
                }
            })
            .collect();
        let out = run(TrackerConfig::default(), &frames);
        for e in &out {
            assert_eq!(e.boxes.len(), 1, "frame {}", e.index);
        }
        assert_eq!(out[4].boxes[0].source, BoxSource::Interpolated);
        assert!((out[4].boxes[0].bbox.x - 62.0).abs() < 1e-3);
    }

    #[test]
    fn two_faces_keep_their_own_tracks_and_a_far_detection_starts_a_new_one() {
        let frames: Vec<_> = (0..10)
            .map(|i| {
                let mut v = vec![
                    det(10.0 + i as f32, 10.0, 20.0),
                    det(200.0 - i as f32, 10.0, 20.0),
                ];
                if i == 5 {
                    v.push(det(400.0, 300.0, 20.0));
                }
                Some(v)
            })
            .collect();
        let cfg = TrackerConfig {
            lookahead: 0,
            lookback: 0,
            ..Default::default()
        };
        let out = run(cfg, &frames);
        let mut log = TrackLog::default();
        for e in &out {
            log.record(e.index, e.index as f64 / 10.0, &e.boxes);
        }
        let recs = log.into_records();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].boxes.len(), 10);
        assert_eq!(recs[1].boxes.len(), 10);
        assert_eq!((recs[2].first_frame, recs[2].last_frame), (5, 5));
        // The first track stays on the left-moving-right face.
        assert!(
            recs[0].boxes.iter().all(|b| b.bbox.x < 100.0)
                || recs[1].boxes.iter().all(|b| b.bbox.x < 100.0)
        );
    }

    #[test]
    fn small_fast_face_is_matched_by_centre_distance() {
        // 12 px face moving 10 px per frame: consecutive boxes barely overlap.
        let frames: Vec<_> = (0..8)
            .map(|i| Some(vec![det(10.0 + 10.0 * i as f32, 10.0, 12.0)]))
            .collect();
        let out = run(TrackerConfig::default(), &frames);
        let ids: std::collections::HashSet<u64> = out
            .iter()
            .flat_map(|e| e.boxes.iter().map(|b| b.track_id))
            .collect();
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn a_face_leaving_through_the_edge_is_followed_until_it_is_out() {
        // 100x100 frame; a 20 px face moves right 4 px/frame and is last detected touching
        // the right edge at x = 80 (box 80..100); it is fully out after (100-80)/4 = 5 frames.
        let frames: Vec<_> = (0..40)
            .map(|i| {
                if i <= 10 {
                    Some(vec![det(40.0 + 4.0 * i as f32, 40.0, 20.0)])
                } else {
                    Some(vec![])
                }
            })
            .collect();
        let cfg = TrackerConfig {
            lookahead: 1,
            frame: Some((100.0, 100.0)),
            ..Default::default()
        };
        let out = run(cfg, &frames);
        for i in 11..=15 {
            assert_eq!(out[i].boxes.len(), 1, "frame {i} must still be covered");
            let b = out[i].boxes[0].bbox;
            assert!(b.x <= 40.0 + 4.0 * i as f32, "frame {i}: {b:?}");
        }
        assert!(out[17].boxes.is_empty());
    }

    /// faces_sizes.mp4, face 3 (64 px, 6 px/frame to the left): last detected at x = 16 by a
    /// detector that runs every 5th frame, missed half out of the picture at x = -14, then
    /// followed only 6 frames — 5 frames with 12..36 px of the face unredacted.
    #[test]
    fn a_face_last_seen_short_of_the_edge_is_followed_until_it_is_out() {
        // 200x100 frame; a 40 px face moves left 6 px/frame, detected every 5th frame while
        // whole; last at frame 20, x = 16. Fully out when x2 = 56 - 6 * d <= 0: d = 10.
        let frames: Vec<_> = (0..60)
            .map(|i| {
                if i <= 20 && i % 5 == 0 {
                    Some(vec![Detection {
                        revisit: 5,
                        ..det(136.0 - 6.0 * i as f32, 40.0, 40.0)
                    }])
                } else if i % 5 == 0 {
                    Some(vec![])
                } else {
                    None
                }
            })
            .collect();
        let cfg = TrackerConfig {
            lookahead: 1,
            frame: Some((200.0, 100.0)),
            ..Default::default()
        };
        let out = run(cfg, &frames);
        for i in 21..=29 {
            assert_eq!(out[i].boxes.len(), 1, "frame {i} must still be covered");
            let b = out[i].boxes[0].bbox;
            let (face_x, face_x2) = (136.0 - 6.0 * i as f32, 176.0 - 6.0 * i as f32);
            assert!(
                b.x <= face_x.max(0.0) && b.x2() >= face_x2,
                "frame {i}: {b:?}"
            );
        }
        assert!(out[35].boxes.is_empty(), "followed past the exit");
    }

    #[test]
    fn a_face_entering_through_the_edge_is_followed_back_to_where_it_came_in() {
        // Moves left→right from outside: first detected at x = 0 (box 0..20) at frame 10.
        let frames: Vec<_> = (0..30)
            .map(|i| {
                if i >= 10 {
                    Some(
                        vec![det(-30.0 + 3.0 * i as f32 + 0.0, 40.0, 20.0)]
                            .into_iter()
                            .map(|mut d| {
                                d.bbox = d.bbox.clip(100.0, 100.0);
                                d
                            })
                            .collect(),
                    )
                } else {
                    Some(vec![])
                }
            })
            .collect();
        let cfg = TrackerConfig {
            lookback: 1,
            frame: Some((100.0, 100.0)),
            ..Default::default()
        };
        let out = run(cfg, &frames);
        assert_eq!(
            out[8].boxes.len(),
            1,
            "two frames before the first detection"
        );
        assert_eq!(out[8].boxes[0].source, BoxSource::Extended);
    }

    #[test]
    fn the_look_back_across_the_edge_stops_at_edge_back_and_so_does_the_hold() {
        // A face coming in at 1 px a frame, first detected 20 frames after it started.
        let frames: Vec<_> = (0..60)
            .map(|i| {
                (i >= 20).then(|| {
                    let mut d = det(-20.0 + i as f32, 40.0, 20.0);
                    d.bbox = d.bbox.clip(100.0, 100.0);
                    vec![d]
                })
            })
            .map(|d| d.or(Some(vec![])))
            .collect();
        let reach = |edge_back: u32| {
            let cfg = TrackerConfig {
                lookback: 1,
                frame: Some((100.0, 100.0)),
                edge_back,
                ..Default::default()
            };
            assert_eq!(cfg.delay(), u64::from(edge_back.max(cfg.max_gap)));
            let out = run(cfg, &frames);
            (0..20).filter(|&i| !out[i].boxes.is_empty()).count()
        };
        assert!(reach(EDGE_REACH) >= 18, "{}", reach(EDGE_REACH));
        let short = reach(10);
        assert!((8..=10).contains(&short), "{short}");
    }

    /// night_ir_1440p_holdout's face 11: 63 -> 97 px, passing right to left at ~111 px a
    /// frame over frames 34..56 (motion-blurred). The main pass (every 3rd frame) found it at
    /// 45 and 54 only; each detection became a track of one box, 20 of 23 frames leaked.
    #[test]
    fn regression_a_face_crossing_close_to_the_camera_is_covered_from_edge_to_edge() {
        let (w, h) = (2560.0f32, 1440.0f32);
        let truth = |i: u64| {
            let s = 63.0 + 1.5 * (i - 34) as f32;
            BoxF::new(
                2458.0 - 110.8 * (i - 34) as f32,
                865.0 + 5.7 * (i - 34) as f32,
                s,
                s * 1.29,
            )
            .clip(w, h)
        };
        let frames: Vec<_> = (0..70u64)
            .map(|i| {
                if !i.is_multiple_of(3) {
                    return None;
                }
                Some(if i == 45 || i == 54 {
                    vec![Detection {
                        bbox: truth(i),
                        score: 0.66,
                        revisit: 1,
                    }]
                } else {
                    vec![]
                })
            })
            .collect();
        let cfg = TrackerConfig {
            lookback: 3,
            lookahead: 3,
            max_gap: 23,
            frame: Some((w, h)),
            ..Default::default()
        };
        let out = run(cfg, &frames);
        for i in 34..=56u64 {
            // (Redaction adds its margins; the box itself must hold the face to the pixel.)
            let t = truth(i).enlarge(-0.02);
            if t.area() > 0.0 {
                assert!(
                    covered(&out[i as usize], &t),
                    "frame {i}: {:?}",
                    out[i as usize].boxes
                );
            }
        }
    }

    /// Held-out night clip judge104: an 80 px face crossing close to the camera, growing from
    /// 73 to 105 px as it came nearer, was found only on frames 39 and 54 (15 frames apart,
    /// twice the area): the second stage looked no further than 12 frames and at 1.6x the
    /// area, so each detection stayed a track of its own and the face showed for 14 frames in
    /// a row between them.
    #[test]
    fn regression_a_fast_face_growing_as_it_nears_is_linked_across_a_revisit() {
        let (w, h) = (2560.0f32, 1440.0f32);
        let truth = |i: u64| {
            let s = 63.0 + 2.2 * (i - 34) as f32;
            BoxF::new(2458.0 - 111.0 * (i - 34) as f32, 865.0, s, s * 1.15).clip(w, h)
        };
        let frames: Vec<_> = (0..70u64)
            .map(|i| {
                if !i.is_multiple_of(3) {
                    return None;
                }
                Some(if i == 39 || i == 54 {
                    vec![Detection {
                        bbox: truth(i),
                        score: 0.6,
                        revisit: 1,
                    }]
                } else {
                    vec![]
                })
            })
            .collect();
        // As the pipeline derives it at 20 fps: a track waits one sweep period for its next key.
        let cfg = TrackerConfig {
            lookback: 6,
            lookahead: 6,
            max_gap: 23,
            frame: Some((w, h)),
            ..Default::default()
        };
        let out = run(cfg, &frames);
        for i in 34..=54u64 {
            let t = truth(i).enlarge(-0.02);
            assert!(
                covered(&out[i as usize], &t),
                "frame {i}: {:?}",
                out[i as usize].boxes
            );
        }
    }

    #[test]
    fn small_faces_seen_once_are_not_linked_across_the_picture() {
        // Two 16 px faces of a crowd, each seen once, 3 frames and 60 px apart: two tracks.
        let frames: Vec<_> = (0..10)
            .map(|i| match i {
                3 => Some(vec![det(100.0, 100.0, 16.0)]),
                6 => Some(vec![det(160.0, 100.0, 16.0)]),
                _ => Some(vec![]),
            })
            .collect();
        let cfg = TrackerConfig {
            frame: Some((640.0, 360.0)),
            ..Default::default()
        };
        let out = run(cfg, &frames);
        let ids: std::collections::BTreeSet<u64> = out
            .iter()
            .flat_map(|f| f.boxes.iter().map(|b| b.track_id))
            .collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
    }

    /// composite_pan's face 6 (48x56 px) comes up through the bottom edge at 0.88 px a frame
    /// and is first found with 30 px of it in view; the cut face's second box overshot (its
    /// top 7 px higher four frames later), so the look-back from the first two boxes left the
    /// frame 18 frames back while the face had been coming in for 32, and a frame with 11 px
    /// of it in view went unredacted.
    #[test]
    fn regression_a_face_coming_in_is_followed_back_by_its_motion_not_its_first_two_boxes() {
        let (h, speed, size) = (360.0f32, 0.88f32, 56.0f32);
        // The face's true top: at the bottom edge at frame 0, then up by `speed` a frame.
        let top = |i: u64| h - speed * i as f32;
        let first = 32u64;
        let frames: Vec<_> = (0..80u64)
            .map(|i| {
                if i < first || i % 4 != 0 {
                    return None;
                }
                // The detector boxes the visible part; the second box overshoots upwards.
                let overshoot = if i == first + 4 { 4.0 } else { 0.0 };
                let y = top(i) - overshoot;
                Some(vec![Detection {
                    bbox: BoxF::new(100.0, y, 48.0, size).clip(640.0, h),
                    score: 0.9,
                    revisit: 4,
                }])
            })
            .collect();
        let cfg = TrackerConfig {
            lookback: 4,
            lookahead: 4,
            max_gap: 8,
            frame: Some((640.0, h)),
            ..Default::default()
        };
        let out = run(cfg, &frames);
        // Every frame with at least 3 px of the face in view has a box over that part.
        for i in 4..first {
            let visible = BoxF::new(100.0, top(i), 48.0, size).clip(640.0, h);
            assert!(
                covered(&out[i as usize], &visible),
                "frame {i}: {:?} does not cover {visible:?}",
                out[i as usize].boxes
            );
        }
    }

    /// faces_sizes with the main pass every 3rd frame: the near-profile 40 px face moving
    /// right at 2.93 px a frame was last found at frame 180 (by the zoom pass too, so the
    /// look-ahead reaches to the next sweep) and never again by the main pass; its last two
    /// boxes, of passes at different scales, gave 2.5 px a frame and a box shrinking 2.2 px a
    /// frame, and the look-ahead fell off the face: 46 boxes unredacted.
    #[test]
    fn regression_the_look_ahead_follows_the_face_not_the_noise_of_its_last_two_boxes() {
        let speed = 2.93f32;
        let truth = |i: u64| BoxF::new(20.0 + speed * i as f32, 500.0, 40.0, 56.0);
        let frames: Vec<_> = (0..240u64)
            .map(|i| {
                if !(150..=180).contains(&i) || i % 3 != 0 {
                    return None;
                }
                let t = truth(i);
                // The last two boxes: one too wide and behind, one too narrow.
                let b = match i {
                    177 => BoxF::new(t.x - 4.0, t.y, 48.0, 60.0),
                    180 => BoxF::new(t.x + 2.0, t.y, 34.0, 52.0),
                    _ => t,
                };
                let revisit = if i == 180 { 60 } else { 3 };
                Some(vec![Detection {
                    bbox: b,
                    score: 0.9,
                    revisit,
                }])
            })
            .collect();
        let cfg = TrackerConfig {
            lookback: 3,
            lookahead: 3,
            max_gap: 63,
            frame: Some((1280.0, 720.0)),
            ..Default::default()
        };
        let out = run(cfg, &frames);
        // The inner 70% of the face (what the leak measure looks at) stays covered until the
        // next sweep could have found it again.
        for i in 181..=239u64 {
            let t = truth(i);
            let inner = BoxF::new(t.x + 0.15 * t.w, t.y + 0.15 * t.h, 0.7 * t.w, 0.7 * t.h);
            assert!(
                covered(&out[i as usize], &inner),
                "frame {i}: {:?} does not cover {inner:?}",
                out[i as usize].boxes
            );
        }
    }

    /// city_pan with follow looks: a 20 px face found every 2nd frame, walking slowly, got a
    /// last box from a look that saw it half turned (64: 15x39, 25 px right of the last box).
    /// Frames were emitted up to the tracker's delay behind, so `prune` had dropped every key
    /// but the last two: the look-ahead took its motion from those two (12 px a frame) and,
    /// heading for the top edge, grew for 45 frames to a 526x277 box (7% of the picture
    /// outside faces blurred). The keys within `VELOCITY_SPAN` of the last are kept.
    #[test]
    fn regression_pruned_keys_do_not_leave_the_look_ahead_to_the_last_two_boxes() {
        let truth = |i: u64| BoxF::new(265.0 - 0.5 * i as f32, 86.0, 20.0, 26.0);
        let frames: Vec<_> = (0..160u64)
            .map(|i| {
                if i > 64 || i % 2 != 0 {
                    return None;
                }
                let b = if i == 64 {
                    BoxF::new(276.0, 69.0, 15.0, 39.0)
                } else {
                    truth(i)
                };
                Some(vec![Detection {
                    bbox: b,
                    score: 0.85,
                    revisit: 12,
                }])
            })
            .collect();
        let cfg = TrackerConfig {
            lookback: 2,
            lookahead: 2,
            max_gap: 14,
            frame: Some((640.0, 360.0)),
            ..Default::default()
        };
        let out = run(cfg, &frames);
        for f in &out[65..] {
            for b in &f.boxes {
                assert!(
                    b.bbox.w <= 60.0 && b.bbox.h <= 78.0,
                    "frame {}: {:?} is far larger than the face",
                    f.index,
                    b.bbox
                );
            }
        }
    }

    #[test]
    fn revisit_of_a_sparse_pass_sets_the_reach() {
        let frames: Vec<_> = (0..60)
            .map(|i| {
                if i == 20 || i == 30 {
                    Some(vec![Detection {
                        revisit: 10,
                        ..det(50.0, 50.0, 12.0)
                    }])
                } else {
                    None
                }
            })
            .collect();
        let cfg = TrackerConfig {
            lookback: 2,
            lookahead: 2,
            max_gap: 20,
            ..Default::default()
        };
        let out = run(cfg, &frames);
        // A pass every 10 frames may have missed the face for up to 9 frames on each side.
        assert!(out[10].boxes.is_empty());
        for i in 11..=39 {
            assert_eq!(out[i].boxes.len(), 1, "frame {i}");
        }
        assert!(out[40].boxes.is_empty());
    }

    #[test]
    fn held_frames_are_bounded_by_the_delay() {
        let cfg = TrackerConfig::default();
        let mut t = Tracker::new(cfg);
        for i in 0..1000u64 {
            t.push(i, (), Some(&[det(5.0, 5.0, 10.0)]));
            assert!(t.pending_len() as u64 <= cfg.delay() + 1);
        }
        assert!(t.tracks.len() <= 2);
        assert!(
            t.tracks
                .iter()
                .all(|tr| tr.keys.len() <= (cfg.delay() + VELOCITY_SPAN) as usize + 3)
        );
    }
}
